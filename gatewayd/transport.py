"""Drive one :class:`~gatewayd.smpp.session.SmppSession` over one trio stream.

I/O adapter: session <-> trio. Three tasks per connection, all in the connection's own
nursery:

* the **reader** feeds received bytes to the session and dispatches the events;
* the **writer** is the only task that writes to the stream: it sleeps until woken, then
  sends everything the session has queued in one ``send_all`` (so a burst of responses
  costs one system call, and byte order is the order of session calls);
* the **timer** sleeps until ``session.next_deadline()`` and then calls ``on_timer``.

Requests from the peer that the application must answer arrive on :attr:`SmppConnection.requests`,
a bounded channel. When the application falls behind and the channel is full, the request
is answered at once with ESME_RTHROTTLED (the SMSC will retry it), so a slow database
never blocks the reader and never loses a message.
"""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Callable, Protocol

import attrs
import structlog
import trio

from gatewayd.errors import GatewayError
from gatewayd.smpp.constants import CommandStatus, describe_status
from gatewayd.smpp.errors import LocalProtocolError
from gatewayd.smpp.events import (
    BindRejected,
    Bound,
    ConnectionClosed,
    Event,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Unbound,
)
from gatewayd.smpp.pdus import Bind, Pdu, Unbind
from gatewayd.smpp.session import SmppSession
from gatewayd.smpp.states import State

__all__ = ["SmppConnection", "ConnectionGone", "ResponseTimeout", "BindFailed", "RECEIVE_SIZE", "WireObserver"]

log = structlog.get_logger("gatewayd.transport")

#: Bytes asked of the stream per read.
RECEIVE_SIZE = 65536

#: Seconds the writer gets to send the last queued bytes once the session has closed.
FLUSH_GRACE = 1.0


class WireObserver(Protocol):
    """Sees the bytes of one connection (the PDU metrics); called on every read and write, so it must be cheap."""

    def received(self, data: bytes) -> None:
        """A chunk read from the peer."""

    def sent(self, data: bytes) -> None:
        """A chunk of whole PDUs the session queued for the peer."""


class ConnectionGone(GatewayError):
    """The connection closed before the request got a response (it may or may not have arrived)."""


class ResponseTimeout(GatewayError):
    """The peer did not answer the request within the response timeout."""


class BindFailed(GatewayError):
    """The peer refused our bind, or did not answer it.

    Attributes:
        command_status: the bind_resp status, or None when there was no answer.
    """

    def __init__(self, message: str, command_status: int | None = None) -> None:
        super().__init__(message)
        self.command_status = command_status


#: Called with a request's response, or with the error that ended the wait for it.
OnResponse = Callable[[Pdu | None, Exception | None], None]


@attrs.define
class _Waiter:
    """One request awaiting its response: a task waits on ``done``, or ``callback`` is called."""

    done: trio.Event | None = attrs.Factory(trio.Event)
    response: Pdu | None = None
    error: Exception | None = None
    callback: OnResponse | None = None

    def settle(self, response: Pdu | None, error: Exception | None) -> None:
        if self.callback is not None:
            self.callback(response, error)
            return
        self.response, self.error = response, error
        assert self.done is not None
        self.done.set()


#: Tells this process's connections from those of earlier runs and other nodes.
_PROCESS = uuid.uuid4().hex[:12]
_SERIALS = itertools.count(1)


class SmppConnection:
    """One SMPP connection: a session, a stream and the tasks that join them.

    Args:
        stream: a connected trio stream.
        session: the protocol state for this connection.
        name: a label for logs (the SMSC name and bind mode).
        request_buffer: capacity of :attr:`requests`; keep it at least the peer's window.
        clock: returns the current time; ``trio.current_time`` by default.
        observer: sees the bytes read and written (PDU counters); None for none.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: SmppSession,
        *,
        name: str = "",
        request_buffer: int = 1000,
        clock: Callable[[], float] = trio.current_time,
        observer: WireObserver | None = None,
    ) -> None:
        self.stream = stream
        #: Unique among every connection of every run and node ("<process>:<n>").
        self.connection_id = f"{_PROCESS}:{next(_SERIALS)}"
        self._observer = observer
        self.session = session
        self.name = name
        self._clock = clock
        self._waiters: dict[int, _Waiter] = {}
        self._wake_writer = trio.Event()
        self._wake_timer = trio.Event()
        #: When the timer task wakes by itself; it is woken earlier only for an earlier deadline.
        self._timer_at = math.inf
        self._room = trio.lowlevel.ParkingLot()
        self._idle = trio.Event()
        self._bind_done = trio.Event()
        self._closed = trio.Event()
        self._writer_done = trio.Event()
        self._raw_out = bytearray()
        self._bind_result: Bound | BindRejected | None = None
        #: Why the connection ended, once it has.
        self.close_reason: str | None = None
        send, receive = trio.open_memory_channel[Pdu](request_buffer)
        self._requests_in = send
        #: Requests from the peer for the application: deliver_sm, submit_sm, bind (SMSC), ...
        self.requests: trio.MemoryReceiveChannel[Pdu] = receive
        self._cancel_scope: trio.CancelScope | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the session is CLOSED or the stream failed."""
        return self._closed.is_set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the connection until the session closes or the stream fails, then close the stream."""
        try:
            async with trio.open_nursery() as nursery:
                self._cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._timer)
                task_status.started()
                await self._closed.wait()
                # Let the writer send what the session queued last (an unbind_resp, a nack).
                with trio.move_on_after(FLUSH_GRACE):
                    await self._writer_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._mark_closed(self.close_reason or "stopped")
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    def abort(self, reason: str) -> None:
        """Close at once, without a handshake (the peer is gone or misbehaving)."""
        self._dispatch(self.session.connection_lost())
        self._mark_closed(reason)

    # -- requests of ours ----------------------------------------------------------------

    async def bind(self, bind: Bind) -> Bound:
        """Send a bind and wait for the answer.

        Returns:
            The Bound event.

        Raises:
            BindFailed: the peer refused the bind, did not answer it in time, or hung up.
        """
        self.send_nowait(bind)
        await self._bind_done.wait()
        result = self._bind_result
        if isinstance(result, Bound):
            return result
        if isinstance(result, BindRejected):
            raise BindFailed(f"bind rejected: {describe_status(result.command_status)}", result.command_status)
        raise BindFailed(f"no bind response: {self.close_reason or 'connection closed'}")

    async def request(self, pdu: Pdu) -> Pdu:
        """Send a message request once the window has room, and wait for its response.

        Returns:
            The response (its command_status may be an error) or a generic_nack.

        Raises:
            ConnectionGone: the connection closed before a response arrived.
            ResponseTimeout: the response did not arrive within the response timeout.
        """
        while not self.session.can_submit:
            if self.closed or self.session.state not in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
                raise ConnectionGone(f"{self.name}: not bound for requests ({self.session.state.value})")
            await self._room.park()
        sent = self.send_nowait(pdu)
        waiter = self._waiters[sent.sequence] = _Waiter()
        assert waiter.done is not None
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.response is not None
        return waiter.response

    def request_nowait(self, pdu: Pdu, on_response: OnResponse) -> None:
        """Send a message request now, with no task waiting for its answer: ``on_response``
        is called with the response (or generic_nack), or with the ConnectionGone or
        ResponseTimeout that ended the wait. It runs in the connection's tasks and must
        not raise. Costs less than :meth:`request` where many requests are in flight.

        Raises:
            LocalProtocolError: not bound for requests, or the window is full (WindowFull):
                check :attr:`SmppSession.can_submit` first.
        """
        sent = self.send_nowait(pdu)
        self._waiters[sent.sequence] = _Waiter(done=None, callback=on_response)

    def answer(self, response: Pdu) -> None:
        """Send the application's response to a request from :attr:`requests`.

        Raises:
            LocalProtocolError: it answers nothing, or not in this state (e.g. after the
                peer unbound: the peer will redeliver what we did not acknowledge).
        """
        self.session.send(response, self._clock())
        self._wake_writer.set()

    async def unbind(self, timeout: float) -> None:
        """Unbind gracefully: send unbind, wait up to ``timeout`` for the answer, close.

        Never raises for a peer that does not answer: the connection is closed anyway.
        """
        if self.session.is_bound:
            try:
                self.send_nowait(Unbind())
            except LocalProtocolError:
                pass
        with trio.move_on_after(timeout) as scope:
            scope.shield = True
            await self._closed.wait()
        if not self.closed:
            self.abort("unbind not answered")

    def inject_raw(self, data: bytes) -> None:
        """Queue bytes that bypass the session (the simulator's fault injection: garbage, bad lengths)."""
        self._raw_out += data
        self._wake_writer.set()

    async def wait_closed(self) -> None:
        """Wait until the connection has closed."""
        await self._closed.wait()

    async def wait_idle(self) -> None:
        """Wait until none of our message requests awaits a response."""
        while self.session.in_flight and not self.closed:
            self._idle = trio.Event()
            await self._idle.wait()

    # -- internals -------------------------------------------------------------------------

    def send_nowait(self, pdu: Pdu) -> Pdu:
        """Queue a request without waiting for any response (outbind, alert_notification).

        Returns:
            The request as sent, with its sequence number.

        Raises:
            LocalProtocolError: not allowed in this state or role; WindowFull.
        """
        sent = self.session.send(pdu, self._clock())
        self._wake_writer.set()
        self._deadlines_changed()
        return sent

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if self._observer is not None:
                    self._observer.received(data)
                self._dispatch(self.session.receive_data(data, self._clock()))
                if data:
                    self._wake_writer.set()
                    self._deadlines_changed()
                if self.session.state is State.CLOSED:
                    self._mark_closed(self.close_reason or "closed")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.abort(f"read failed: {exc!r}")

    async def _writer(self) -> None:
        try:
            while True:
                await self._wake_writer.wait()
                # One scheduling round lets the other ready tasks queue their PDUs too.
                await trio.lowlevel.cancel_shielded_checkpoint()
                self._wake_writer = trio.Event()
                data = self.session.data_to_send()
                if self._observer is not None and data:
                    self._observer.sent(data)
                if self._raw_out:
                    data, self._raw_out = bytes(self._raw_out) + data, bytearray()
                if data:
                    await self.stream.send_all(data)
                if self._closed.is_set() and not self._wake_writer.is_set():
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.abort(f"write failed: {exc!r}")
        finally:
            self._writer_done.set()

    def _deadlines_changed(self) -> None:
        # Most PDUs only move deadlines later (the dead-peer timer, the next enquire_link);
        # waking the timer task for each would cost more than working out the next deadline.
        deadline = self.session.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._wake_timer.set()

    async def _timer(self) -> None:
        while True:
            deadline = self.session.next_deadline()
            self._timer_at = math.inf if deadline is None else deadline
            with trio.move_on_at(self._timer_at):
                await self._wake_timer.wait()
            self._wake_timer = trio.Event()
            now = self._clock()
            if deadline is not None and now >= deadline:
                self._dispatch(self.session.on_timer(now))
                self._wake_writer.set()
                if self.session.state is State.CLOSED:
                    self._mark_closed(self.close_reason or "closed")

    def _mark_closed(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = self.close_reason or reason
        self._closed.set()
        self._wake_writer.set()
        self._requests_in.close()
        waiters, self._waiters = list(self._waiters.values()), {}
        for waiter in waiters:
            waiter.settle(None, ConnectionGone(f"{self.name}: {self.close_reason}"))
        self._room.unpark_all()
        self._idle.set()
        self._bind_done.set()

    def _resolve(self, sequence: int, response: Pdu | None, error: Exception | None) -> None:
        waiter = self._waiters.pop(sequence, None)
        if waiter is not None:
            waiter.settle(response, error)
        self._room.unpark()
        if not self.session.in_flight:
            self._idle.set()

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._deliver_request(event.pdu)
            elif isinstance(event, ResponseReceived):
                self._resolve(event.request.sequence, event.response, None)
            elif isinstance(event, ResponseTimedOut):
                if isinstance(event.request, Bind):
                    continue
                self._resolve(event.request.sequence, None, ResponseTimeout(f"{self.name}: no response in time"))
            elif isinstance(event, (Bound, BindRejected)):
                self._bind_result = event
                self._bind_done.set()
            elif isinstance(event, Unbound):
                self.close_reason = "unbound by peer" if event.by_peer else "unbound"
                self._mark_closed(self.close_reason)
            elif isinstance(event, ConnectionClosed):
                self.close_reason = f"{event.reason.value}: {event.detail}" if event.detail else event.reason.value
                self._mark_closed(self.close_reason)
            elif isinstance(event, ProtocolViolation):
                log.warning(
                    "pdu_rejected",
                    connection=self.name,
                    reason=event.description,
                    command_id=f"0x{event.command_id:08x}",
                    sequence=event.sequence,
                    answered_with=None if event.answered_with is None else describe_status(event.answered_with),
                )

    def _deliver_request(self, pdu: Pdu) -> None:
        try:
            self._requests_in.send_nowait(pdu)
        except trio.WouldBlock:
            self._throttle(pdu)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _throttle(self, pdu: Pdu) -> None:
        respond = getattr(pdu, "response", None)
        if respond is None:
            return
        try:
            self.session.send(respond(CommandStatus.ESME_RTHROTTLED), self._clock())
        except LocalProtocolError:
            return
        log.warning("request_throttled", connection=self.name, command=type(pdu).__name__, sequence=pdu.sequence)
