"""The SMPP 3.4 session: a sans-I/O state machine for one connection, either end.

:class:`SmppSession` takes bytes and the current time, and gives back events plus the bytes
to send. It never touches a socket, never reads a clock and never logs; the trio code in
:mod:`gatewayd.transport` moves the bytes and the time.

What it does on its own, through :meth:`SmppSession.data_to_send`:

* answers enquire_link and unbind (then reports :class:`~gatewayd.smpp.events.Unbound`);
* answers a PDU it cannot decode: generic_nack (ESME_RINVCMDID) for an unknown command, the
  matching ``*_resp`` with the decoder's status for a broken body, generic_nack
  (ESME_RINVCMDLEN) and CLOSED when the framing is lost;
* answers a request that is wrong for the bind state with ESME_RINVBNDSTS (ESME_RALYBND for
  a second bind) and stays in its state;
* sends enquire_link after ``enquire_link_interval`` without traffic from the peer, and
  closes after ``dead_peer_timeout`` of silence;
* times out requests that got no response.

What it leaves to the application: every response that needs a decision, above all
deliver_sm_resp, which must only go out once the message is stored.
"""

from __future__ import annotations

from typing import Callable

import attrs

from gatewayd.smpp import codec
from gatewayd.smpp.constants import BindMode, CommandId, CommandStatus, RESPONSE_BIT
from gatewayd.smpp.errors import DecodeError, FramingError, LocalProtocolError, WindowFull
from gatewayd.smpp.events import (
    BindRejected,
    Bound,
    ClosedReason,
    ConnectionClosed,
    Event,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Unbound,
)
from gatewayd.smpp.pdus import (
    AlertNotification,
    Bind,
    BindResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gatewayd.smpp.states import BOUND_STATE, SENDER, Input, Role, State, next_state
from gatewayd.smpp.window import MAX_SEQUENCE, Sequencer, Window

__all__ = ["SessionConfig", "SmppSession"]

_BOUND_STATES = (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)

#: How to build the error response to a request we cannot serve, by request command id.
_ERROR_RESPONSE: dict[int, Callable[[int, int], Pdu]] = {
    CommandId.BIND_TRANSMITTER: lambda seq, st: BindResp(sequence=seq, command_status=st, mode=BindMode.TRANSMITTER),
    CommandId.BIND_RECEIVER: lambda seq, st: BindResp(sequence=seq, command_status=st, mode=BindMode.RECEIVER),
    CommandId.BIND_TRANSCEIVER: lambda seq, st: BindResp(sequence=seq, command_status=st, mode=BindMode.TRANSCEIVER),
    CommandId.SUBMIT_SM: lambda seq, st: SubmitSmResp(sequence=seq, command_status=st),
    CommandId.DELIVER_SM: lambda seq, st: DeliverSmResp(sequence=seq, command_status=st),
    CommandId.DATA_SM: lambda seq, st: DataSmResp(sequence=seq, command_status=st),
    CommandId.UNBIND: lambda seq, st: UnbindResp(sequence=seq, command_status=st),
    CommandId.ENQUIRE_LINK: lambda seq, st: EnquireLinkResp(sequence=seq, command_status=st),
}

#: Requests that take no response at all (SMPP 3.4 sections 4.1.7 and 4.12).
_NO_RESPONSE = (CommandId.ALERT_NOTIFICATION, CommandId.OUTBIND)


@attrs.frozen
class SessionConfig:
    """Timing and limits of one session.

    Attributes:
        window: how many message requests (submit_sm, data_sm, deliver_sm) may await a response.
        response_timeout: seconds to wait for the response to any request but a bind.
        bind_timeout: seconds to wait for a bind response before giving the connection up.
        enquire_link_interval: seconds of silence from the peer before we send enquire_link.
        dead_peer_timeout: seconds of silence from the peer before the session closes.
        max_pdu_length: the largest command_length accepted from the peer.
    """

    window: int = 10
    response_timeout: float = 10.0
    bind_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    dead_peer_timeout: float = 90.0
    max_pdu_length: int = codec.DEFAULT_MAX_PDU_LENGTH


class SmppSession:
    """One SMPP connection's protocol state, as ESME or as SMSC.

    Args:
        role: which end we are.
        config: timing and limits.
        now: the current time (any monotonic clock, in seconds).
        sequencer: the source of sequence numbers (a fresh one from 1 by default).
    """

    def __init__(
        self,
        role: Role,
        config: SessionConfig | None = None,
        *,
        now: float = 0.0,
        sequencer: Sequencer | None = None,
    ) -> None:
        self.role = role
        self.config = config or SessionConfig()
        self.state = State.OPEN
        #: The mode of the current bind, once bound.
        self.mode: BindMode | None = None
        #: The peer's system_id, once bound.
        self.peer_system_id: str | None = None
        self._window = Window(self.config.window, sequencer)
        self._reader = codec.FrameReader(self.config.max_pdu_length)
        self._out = bytearray()
        self._last_received = now
        self._last_enquire = now
        self._enquire_pending = False
        # Inbound requests the application still has to answer: sequence -> command_id.
        self._unanswered: dict[int, int] = {}
        self._pending_bind: Bind | None = None

    # -- what the transport asks -------------------------------------------------------

    @property
    def is_bound(self) -> bool:
        """True in one of the three bound states."""
        return self.state in _BOUND_STATES

    @property
    def can_submit(self) -> bool:
        """True when a message request could be sent now: bound for it and the window has room."""
        wanted = Input.SUBMIT if self.role is Role.ESME else Input.DELIVER
        return next_state(self.state, wanted) is not None and self._window.has_room

    @property
    def in_flight(self) -> int:
        """How many of our message requests await a response."""
        return self._window.in_flight

    @property
    def unanswered(self) -> int:
        """How many of the peer's requests the application has not answered yet."""
        return len(self._unanswered)

    def data_to_send(self) -> bytes:
        """Return and forget the bytes queued for the peer."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has something to do, or None if never."""
        if self.state is State.CLOSED:
            return None
        deadlines = []
        request_deadline = self._window.next_deadline()
        if request_deadline is not None:
            deadlines.append(request_deadline)
        if self.state in _BOUND_STATES or self.state is State.UNBINDING:
            deadlines.append(self._last_received + self.config.dead_peer_timeout)
            if not self._enquire_pending and self.state is not State.UNBINDING:
                deadlines.append(max(self._last_received, self._last_enquire) + self.config.enquire_link_interval)
        return min(deadlines) if deadlines else None

    # -- time ----------------------------------------------------------------------------

    def on_timer(self, now: float) -> list[Event]:
        """Act on everything due at ``now``: request timeouts, enquire_link, dead peer.

        Returns:
            The events that resulted, in order.
        """
        events: list[Event] = []
        if self.state is State.CLOSED:
            return events
        for gone in self._window.pop_expired(now):
            request = gone.request
            if isinstance(request, (Bind, Unbind)):
                events.append(ResponseTimedOut(request))
                self._close(events, ClosedReason.HANDSHAKE_TIMEOUT, f"no {type(request).__name__.lower()} response")
                return events
            if isinstance(request, EnquireLink):
                self._enquire_pending = False
                continue
            events.append(ResponseTimedOut(request))
        if self.state in _BOUND_STATES or self.state is State.UNBINDING:
            silent = now - self._last_received
            if silent >= self.config.dead_peer_timeout:
                self._close(events, ClosedReason.PEER_DEAD, f"nothing received for {silent:.1f}s")
                return events
            due = max(self._last_received, self._last_enquire) + self.config.enquire_link_interval
            if self.state is not State.UNBINDING and not self._enquire_pending and now >= due:
                self._send_request(EnquireLink(), now, Input.ENQUIRE_LINK)
                self._enquire_pending = True
                self._last_enquire = now
        return events

    # -- sending -------------------------------------------------------------------------

    def send(self, pdu: Pdu, now: float) -> Pdu:
        """Queue a PDU for the peer.

        A request gets a fresh sequence number and a deadline; a response must answer an
        inbound request that has not been answered yet.

        Args:
            pdu: the request (sequence ignored) or the response (sequence of its request).
            now: the current time.

        Returns:
            The PDU as sent (a request carries its allocated sequence number).

        Raises:
            WindowFull: a message request while the window is full (nothing is queued).
            LocalProtocolError: the PDU is not allowed in this state or for this role, or a
                response answers nothing; or a field cannot be encoded.
        """
        if pdu.is_response:
            self._send_response(pdu)
            return pdu
        return self._send_request(pdu, now, self._input_for(pdu, sender=self.role))

    def _send_request(self, pdu: Pdu, now: float, event: Input) -> Pdu:
        new_state = self._check(event, sender=self.role, what=type(pdu).__name__)
        counted = event in (Input.SUBMIT, Input.DELIVER) and pdu.command_id not in _NO_RESPONSE
        if counted and not self._window.has_room:
            raise WindowFull(f"{self._window.in_flight} requests outstanding, window is {self._window.size}")
        pdu = attrs.evolve(pdu, sequence=self._window.allocate())
        self._out += codec.encode(pdu)
        if pdu.command_id not in _NO_RESPONSE:
            timeout = self.config.bind_timeout if event is Input.BIND else self.config.response_timeout
            self._window.add(pdu, now, timeout, counted=counted)
        self.state = new_state
        return pdu

    def _send_response(self, pdu: Pdu) -> None:
        request_id = self._unanswered.get(pdu.sequence)
        if request_id is None:
            raise LocalProtocolError(f"{type(pdu).__name__} answers no unanswered request (sequence {pdu.sequence})")
        if not isinstance(pdu, GenericNack) and pdu.command_id != request_id | RESPONSE_BIT:
            raise LocalProtocolError(f"{type(pdu).__name__} does not answer {CommandId(request_id).name}")
        # Encode first: a response that cannot go on the wire must not change the state.
        data = codec.encode(pdu)
        if self._pending_bind is not None and self._pending_bind.sequence == pdu.sequence:
            assert isinstance(pdu, (BindResp, GenericNack)), "checked against the request above"
            self._answer_bind(pdu)
        elif request_id not in (CommandId.ENQUIRE_LINK, CommandId.UNBIND):
            self._check(Input.MESSAGE_RESPONSE, sender=self.role, what=type(pdu).__name__)
        self._out += data
        del self._unanswered[pdu.sequence]

    def _answer_bind(self, resp: BindResp | GenericNack) -> None:
        bind = self._pending_bind
        assert bind is not None, "an unanswered bind is always pending"
        if isinstance(resp, BindResp) and resp.mode is not bind.mode:
            raise LocalProtocolError(f"bind_resp for {resp.mode.value} answers a {bind.mode.value} bind")
        # A generic_nack answering a bind refuses it, as it does when the ESME receives one.
        if isinstance(resp, BindResp) and resp.ok:
            event, _ = BOUND_STATE[bind.mode]
            self.state = self._check(event, sender=self.role, what="bind_resp")
            self.mode, self.peer_system_id = bind.mode, bind.system_id
        else:
            self.state = self._check(Input.BIND_FAILED, sender=self.role, what="bind_resp")
        self._pending_bind = None

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means the peer closed the connection.

        Returns:
            The events that resulted, in order. Nothing is returned once CLOSED.
        """
        events: list[Event] = []
        if self.state is State.CLOSED:
            return events
        if not data:
            self._close(events, ClosedReason.CONNECTION_LOST, "peer closed the connection")
            return events
        self._last_received = now
        self._reader.feed(data)
        while self.state is not State.CLOSED:
            try:
                frame = self._reader.next_frame()
            except FramingError as exc:
                sequence = exc.sequence if exc.sequence is not None and exc.sequence <= MAX_SEQUENCE else 0
                self._out += codec.encode(GenericNack(sequence=sequence, command_status=exc.command_status))
                self._close(events, ClosedReason.FRAMING_ERROR, str(exc))
                break
            if frame is None:
                break
            try:
                pdu = codec.decode(frame)
            except DecodeError as exc:
                self._answer_undecodable(exc, events)
                continue
            if pdu.is_response:
                self._handle_response(pdu, now, events)
            else:
                self._handle_request(pdu, events)
        return events

    def connection_lost(self) -> list[Event]:
        """The transport lost the connection: close, reporting what stays unanswered."""
        events: list[Event] = []
        if self.state is not State.CLOSED:
            self._close(events, ClosedReason.CONNECTION_LOST, "connection lost")
        return events

    def _handle_request(self, pdu: Pdu, events: list[Event]) -> None:
        if pdu.sequence > MAX_SEQUENCE:
            # No answer can carry this sequence number, so neither we nor the application can reply.
            events.append(ProtocolViolation("sequence number out of range", pdu.command_id, pdu.sequence, None))
            return
        event = self._input_for(pdu, sender=self._peer_role)
        if SENDER.get(event, self._peer_role) is not self._peer_role:
            self._reject(pdu, CommandStatus.ESME_RINVCMDID, f"a {self.role.value} does not accept {type(pdu).__name__}", events)
            return
        new_state = next_state(self.state, event)
        if new_state is None:
            status = CommandStatus.ESME_RALYBND if event is Input.BIND and self.state is not State.BINDING else CommandStatus.ESME_RINVBNDSTS
            self._reject(pdu, status, f"{type(pdu).__name__} not allowed in state {self.state.value}", events)
            return
        self.state = new_state
        if isinstance(pdu, EnquireLink):
            self._out += codec.encode(pdu.response())
        elif isinstance(pdu, Unbind):
            self._out += codec.encode(pdu.response())
            self._finish_unbind(events, by_peer=True)
        else:
            if pdu.command_id not in _NO_RESPONSE:
                self._unanswered[pdu.sequence] = pdu.command_id
            if isinstance(pdu, Bind):
                self._pending_bind = pdu
            events.append(RequestReceived(pdu))

    def _handle_response(self, pdu: Pdu, now: float, events: list[Event]) -> None:
        outstanding = self._window.pop(pdu.sequence)
        if outstanding is None:
            events.append(ProtocolViolation("response to no outstanding request", pdu.command_id, pdu.sequence, None))
            return
        request = outstanding.request
        if not isinstance(pdu, GenericNack) and pdu.command_id != request.command_id | RESPONSE_BIT:
            # Still resolve the request: keeping it would only turn into a timeout and a resend.
            events.append(ProtocolViolation(f"{type(pdu).__name__} answers {type(request).__name__}", pdu.command_id, pdu.sequence, None))
            pdu = GenericNack(sequence=pdu.sequence, command_status=pdu.command_status or CommandStatus.ESME_RSYSERR)
        if isinstance(request, Bind):
            self._bind_answered(request, pdu, events)
        elif isinstance(request, Unbind):
            self.state = self._check(Input.UNBIND_RESP, sender=self._peer_role, what="unbind_resp")
            self._finish_unbind(events, by_peer=False)
        elif isinstance(request, EnquireLink):
            self._enquire_pending = False
            self.state = self._check(Input.ENQUIRE_LINK, sender=self._peer_role, what="enquire_link_resp")
        else:
            new_state = next_state(self.state, Input.MESSAGE_RESPONSE)
            if new_state is not None:
                self.state = new_state
            events.append(ResponseReceived(request, pdu, now - outstanding.sent_at))

    def _bind_answered(self, bind: Bind, resp: Pdu, events: list[Event]) -> None:
        if isinstance(resp, BindResp) and resp.ok:
            event, _ = BOUND_STATE[bind.mode]
            self.state = self._check(event, sender=self._peer_role, what="bind_resp")
            self.mode, self.peer_system_id = bind.mode, resp.system_id
            events.append(Bound(bind.mode, resp.system_id, bind, resp))
        else:
            self.state = self._check(Input.BIND_FAILED, sender=self._peer_role, what="bind_resp")
            events.append(BindRejected(resp.command_status or CommandStatus.ESME_RBINDFAIL, bind))

    def _answer_undecodable(self, exc: DecodeError, events: list[Event]) -> None:
        answered: int | None = None
        if (
            not exc.command_id & RESPONSE_BIT
            and exc.command_id != CommandId.ALERT_NOTIFICATION
            and exc.sequence <= MAX_SEQUENCE
        ):
            build = _ERROR_RESPONSE.get(exc.command_id)
            if build is None or exc.command_status == CommandStatus.ESME_RINVCMDID:
                answer: Pdu = GenericNack(sequence=exc.sequence, command_status=exc.command_status)
            else:
                answer = build(exc.sequence, exc.command_status)
            self._out += codec.encode(answer)
            answered = exc.command_status
        events.append(ProtocolViolation(str(exc), exc.command_id, exc.sequence, answered))

    def _reject(self, pdu: Pdu, status: int, description: str, events: list[Event]) -> None:
        answered: int | None = None
        if pdu.command_id not in _NO_RESPONSE:
            build = _ERROR_RESPONSE.get(pdu.command_id)
            if build is None or status == CommandStatus.ESME_RINVCMDID:
                answer: Pdu = GenericNack(sequence=pdu.sequence, command_status=status)
            else:
                answer = build(pdu.sequence, status)
            self._out += codec.encode(answer)
            answered = status
        events.append(ProtocolViolation(description, pdu.command_id, pdu.sequence, answered))

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _peer_role(self) -> Role:
        return Role.SMSC if self.role is Role.ESME else Role.ESME

    def _input_for(self, pdu: Pdu, *, sender: Role) -> Input:
        if isinstance(pdu, (SubmitSm, DeliverSm, DataSm, AlertNotification)):
            if isinstance(pdu, DataSm):
                return Input.SUBMIT if sender is Role.ESME else Input.DELIVER
            return Input.SUBMIT if isinstance(pdu, SubmitSm) else Input.DELIVER
        if isinstance(pdu, Bind):
            return Input.BIND
        if isinstance(pdu, EnquireLink):
            return Input.ENQUIRE_LINK
        if isinstance(pdu, Unbind):
            return Input.UNBIND
        if isinstance(pdu, Outbind):
            return Input.OUTBIND
        raise LocalProtocolError(f"{type(pdu).__name__} is not a request")

    def _check(self, event: Input, *, sender: Role, what: str) -> State:
        allowed_sender = SENDER.get(event)
        if allowed_sender is not None and allowed_sender is not sender:
            raise LocalProtocolError(f"a {sender.value} cannot send {what}")
        new_state = next_state(self.state, event)
        if new_state is None:
            raise LocalProtocolError(f"{what} not allowed in state {self.state.value}")
        return new_state

    def _finish_unbind(self, events: list[Event], *, by_peer: bool) -> None:
        self.state = State.CLOSED
        self._unanswered.clear()
        events.append(Unbound(by_peer, self._drain_unanswered()))

    def _close(self, events: list[Event], reason: ClosedReason, detail: str) -> None:
        self.state = State.CLOSED
        self._unanswered.clear()
        self._pending_bind = None
        events.append(ConnectionClosed(reason, self._drain_unanswered(), detail))

    def _drain_unanswered(self) -> tuple[Pdu, ...]:
        """Forget every outstanding request, returning the message requests among them."""
        return tuple(o.request for o in self._window.drain() if not isinstance(o.request, (Bind, Unbind, EnquireLink)))
