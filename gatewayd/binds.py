"""ESME binds to operator SMSCs: connect, bind, serve, reconnect; and MT submission over them.

Each configured SMSC gets a :class:`SmscLink`: one nursery holding one task per bind
(a transceiver, or a transmitter and a receiver). A bind task loops for ever: connect, bind,
serve until the connection ends, wait a capped and jittered backoff, again. A refused bind
(wrong password, unknown system_id) is logged as such and retried after the same backoff,
never in a tight loop. Whatever goes wrong inside one bind stays in its nursery.

MTs go out through :meth:`SmscLink.submit`, which picks a bound transmitter, honours the
per-SMSC rate cap and backs off when the SMSC answers ESME_RTHROTTLED or ESME_RMSGQFUL.
Requests waiting for the rate cap go in priority order: a reply submitted while bulk MTs
wait takes the next token. Whenever one goes, every waiter the bucket has a token for goes
with it, in the same turn of the event loop; and bulk waiters wake a few milliseconds after
their token is due, so that bulk MTs leave in small bursts (one write to the socket, one
read of the answers, one store batch) rather than each in a turn of its own.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
from typing import Awaitable, Callable

import attrs
import structlog
import trio

from gatewayd.config import SmscConfig
from gatewayd.errors import GatewayError
from gatewayd.pacing import Backoff, Penalty, TokenBucket
from gatewayd.smpp.constants import BindMode, CommandStatus, describe_status
from gatewayd.smpp.pdus import Bind, Pdu
from gatewayd.smpp.session import SessionConfig, SmppSession
from gatewayd.smpp.states import Role
from gatewayd.transport import BindFailed, SmppConnection, WireObserver

__all__ = ["RequestHandler", "SmscLink", "NoBind", "session_config_for", "serve_requests", "Connector"]

log = structlog.get_logger("gatewayd.binds")

#: Called for every request the SMSC sends (deliver_sm, data_sm, ...); must answer it.
RequestHandler = Callable[[SmppConnection, Pdu], Awaitable[None]]

#: Opens the byte stream to an SMSC: (host, port) -> stream. TCP by default.
Connector = Callable[[str, int], Awaitable[trio.abc.Stream]]

_THROTTLING = (CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL)

#: Seconds a bulk request waiting for the rate cap sleeps past the time its token is due, so
#: that the tokens of several bulk requests come due together (never more than the bucket
#: holds: see SmscLink._bulk_tick).
BULK_TICK = 0.005


class NoBind(GatewayError):
    """No bind of this SMSC can carry the request now (none is bound, or all are draining)."""


@attrs.define(eq=False)
class _Waiter:
    """A request waiting for the rate cap; ordered by priority, then arrival."""

    priority: int
    seq: int
    #: Set when the waiter should look again: it became first in line, or the line changed.
    nudged: trio.Event = attrs.Factory(trio.Event)
    #: A token was taken for it by the waiter that went before it: it may go.
    released: bool = False

    def __lt__(self, other: _Waiter) -> bool:
        return (self.priority, self.seq) < (other.priority, other.seq)


def session_config_for(cfg: SmscConfig) -> SessionConfig:
    """The session timings and limits configured for an SMSC."""
    return SessionConfig(
        window=cfg.window,
        response_timeout=cfg.response_timeout,
        bind_timeout=cfg.bind_timeout,
        enquire_link_interval=cfg.enquire_link_interval,
        dead_peer_timeout=cfg.dead_peer_timeout,
        max_pdu_length=cfg.max_pdu_length,
    )


async def serve_requests(conn: SmppConnection, handler: RequestHandler, *, workers: int = 1) -> None:
    """Hand every request from the peer to ``handler`` until the connection ends.

    ``workers`` tasks take requests concurrently, so while one waits for its store commit the
    others carry on and their writes share the next commit; the SMSC's window bounds how many
    are in flight. Each worker handles the requests already queued back to back before
    yielding, so the answers to a burst leave together in one write.
    """

    async def worker() -> None:
        async for pdu in conn.requests:
            await handler(conn, pdu)
            while True:
                try:
                    pdu = conn.requests.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                await handler(conn, pdu)

    async with trio.open_nursery() as nursery:
        for _ in range(max(1, workers)):
            nursery.start_soon(worker)


class SmscLink:
    """The binds to one SMSC and the MT path over them.

    Args:
        cfg: the SMSC's settings.
        handler: what to do with the SMSC's requests (MOs, receipts).
        rng: jitter source for the reconnect backoff.
        connect: how to open the stream (tests pass in-memory streams).
    """

    def __init__(
        self,
        cfg: SmscConfig,
        handler: RequestHandler,
        *,
        rng: Callable[[], float] = random.random,
        connect: Connector = trio.open_tcp_stream,
    ) -> None:
        self.cfg = cfg
        self._handler = handler
        self._rng = rng
        self._connect = connect
        #: Concurrent handlers of the SMSC's requests on each bind (its window bounds them anyway).
        self.request_workers = max(1, min(cfg.window, 256))
        #: Connections currently bound, by mode.
        self.bound: dict[BindMode, SmppConnection] = {}
        self._bound_changed = trio.Event()
        burst = max(1.0, min(cfg.max_mt_per_second, float(cfg.window)))
        self._bucket = TokenBucket(cfg.max_mt_per_second, burst=burst, now=trio.current_time())
        # The bucket fills by rate * tick while a bulk waiter oversleeps: that must fit in it,
        # or the oversleeping would cost throughput.
        self._bulk_tick = min(BULK_TICK, (burst - 1.0) / cfg.max_mt_per_second)
        self._penalty = Penalty()
        # Requests waiting for the rate cap (a heap), and the send time the bucket gave the
        # first of them; the others hold no place in the bucket until they are first.
        self._waiting: list[_Waiter] = []
        self._slot: float | None = None
        self._arrivals = itertools.count()
        self._cancel_scope = trio.CancelScope()
        self._draining = False
        self._turn = itertools.count()
        #: Called after a bind of this SMSC comes up or goes down (status line, metrics).
        self.on_bound_change: Callable[[], None] = lambda: None
        #: Makes the byte observer of each new connection (PDU metrics); None for none.
        self.wire_observer: Callable[[], WireObserver] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold every bind of this SMSC until :meth:`stop` or cancellation."""
        with self._cancel_scope, structlog.contextvars.bound_contextvars(smsc=self.cfg.name):
            async with trio.open_nursery() as nursery:
                for mode in self.cfg.binds:
                    nursery.start_soon(self._keep_bound, mode)
                task_status.started()

    async def stop(self, grace: float) -> None:
        """Drain and unbind: no new MT, wait up to ``grace`` for outstanding responses, unbind.

        Returns once every connection is closed and the bind tasks are gone.
        """
        self._draining = True
        with trio.move_on_after(grace):
            for conn in list(self.bound.values()):
                await conn.wait_idle()
        async with trio.open_nursery() as nursery:
            for conn in list(self.bound.values()):
                nursery.start_soon(conn.unbind, min(grace, 5.0) or 1.0)
        self._cancel_scope.cancel()

    @property
    def is_up(self) -> bool:
        """True when at least one bind can submit."""
        return any(mode.can_submit for mode in self.bound)

    async def wait_bound(self, mode: BindMode | None = None) -> SmppConnection:
        """Wait until a bind (of ``mode``, or any) is up, and return its connection."""
        while True:
            for bound_mode, conn in self.bound.items():
                if mode is None or bound_mode is mode:
                    return conn
            await self._bound_changed.wait()

    def _set_bound(self, mode: BindMode, conn: SmppConnection | None) -> None:
        if conn is None:
            self.bound.pop(mode, None)
        else:
            self.bound[mode] = conn
        self._bound_changed.set()
        self._bound_changed = trio.Event()
        self.on_bound_change()

    async def _keep_bound(self, mode: BindMode) -> None:
        backoff = Backoff(self.cfg.reconnect_delay, self.cfg.reconnect_max_delay, self._rng)
        with structlog.contextvars.bound_contextvars(bind=mode.value):
            while not self._draining:
                if await self._bind_once(mode):
                    backoff.reset()
                if self._draining:
                    return
                delay = backoff.next_delay()
                log.info("bind_retry_scheduled", retry_in=round(delay, 2))
                await trio.sleep(delay)

    async def _bind_once(self, mode: BindMode) -> bool:
        """One connection's life. Returns True when it got bound."""
        cfg = self.cfg
        try:
            with trio.fail_after(cfg.bind_timeout):
                stream = await self._connect(cfg.host, cfg.port)
        except (OSError, trio.TooSlowError) as exc:
            log.warning("smsc_connect_failed", host=cfg.host, port=cfg.port, error=str(exc) or type(exc).__name__)
            return False
        session = SmppSession(Role.ESME, session_config_for(cfg), now=trio.current_time())
        observer = self.wire_observer() if self.wire_observer is not None else None
        conn = SmppConnection(stream, session, name=f"{cfg.name}/{mode.value}", request_buffer=max(1000, 4 * cfg.window), observer=observer)
        bound = False
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            try:
                result = await conn.bind(
                    Bind(
                        mode=mode,
                        system_id=cfg.system_id,
                        password=cfg.password,
                        system_type=cfg.system_type,
                        interface_version=cfg.interface_version,
                        addr_ton=cfg.addr_ton,
                        addr_npi=cfg.addr_npi,
                        address_range=cfg.address_range,
                    )
                )
            except BindFailed as exc:
                status = None if exc.command_status is None else describe_status(exc.command_status)
                log.error("bind_rejected", status=status, reason=str(exc))
                conn.abort("bind failed")
            else:
                bound = True
                log.info("bind_established", smsc_system_id=result.system_id, host=cfg.host, port=cfg.port)
                self._set_bound(mode, conn)
                nursery.start_soon(functools.partial(serve_requests, conn, self._handler, workers=self.request_workers))
                await conn.wait_closed()
                self._set_bound(mode, None)
                if self._draining:
                    log.info("bind_closed", reason=conn.close_reason)
                else:
                    log.warning("bind_lost", reason=conn.close_reason)
        return bound

    # -- MT ---------------------------------------------------------------------------------

    def _transmitter(self) -> SmppConnection:
        candidates = [c for m, c in self.bound.items() if m.can_submit and not c.closed]
        if self._draining or not candidates:
            raise NoBind(f"{self.cfg.name}: no transmitter bound" if not self._draining else f"{self.cfg.name}: draining")
        return candidates[next(self._turn) % len(candidates)]

    async def submit(self, pdu: Pdu, *, max_throttled: int = 5, priority: int = 0) -> Pdu:
        """Send an MT request (submit_sm or data_sm) and return the SMSC's final answer.

        Waits for the rate cap and any throttling pause first; waiting requests go in order of
        ``priority`` (lower first, as in the outbox), then of arrival. An ESME_RTHROTTLED or
        ESME_RMSGQFUL answer pauses this SMSC's MT traffic (doubling each time) and the same
        request is tried again, up to ``max_throttled`` times.

        Raises:
            NoBind: no transmitter is bound, or the link is draining.
            ConnectionGone, ResponseTimeout: as :meth:`SmppConnection.request`.
        """
        for attempt in itertools.count():
            await self._pace(priority)
            response = await self._transmitter().request(pdu)
            if response.command_status not in _THROTTLING or attempt >= max_throttled:
                if response.ok:
                    self._penalty.clear()
                return response
            pause = self._penalty.complain(trio.current_time())
            log.warning("smsc_throttled", status=describe_status(response.command_status), pause=pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pace(self, priority: int) -> None:
        """Wait until the rate cap and any throttling pause let this request go.

        Only the first waiter in line takes a token from the bucket (borrowing it if need
        be) and sleeps until its time; a more urgent request arriving meanwhile becomes first
        and inherits that time, so it never queues behind tokens handed out to bulk traffic.
        When the first one goes, it takes tokens for those behind it while the bucket has them.
        """
        if not self._waiting and self._slot is None:
            # Nobody in line and no token taken ahead: with a token in the bucket, go now.
            now = trio.current_time()
            if self._penalty.until <= now:
                delay = self._bucket.reserve(now)
                if delay <= 0:
                    return
                # Borrowed: this request is first in line, and waits for it as below.
                self._slot = now + delay
        me = _Waiter(priority, next(self._arrivals))
        heapq.heappush(self._waiting, me)
        self._nudge_first()
        try:
            while True:
                me.nudged = trio.Event()
                if me.released:
                    return
                if self._waiting[0] is not me:
                    await me.nudged.wait()
                    continue
                now = trio.current_time()
                if self._slot is None:
                    self._slot = now + self._bucket.reserve(now)
                ready = max(self._slot, self._penalty.until)
                if ready <= now:
                    self._slot = None
                    heapq.heappop(self._waiting)
                    self._release_ready(now)
                    return
                with trio.move_on_at(ready if priority == 0 else ready + self._bulk_tick):
                    await me.nudged.wait()
        except BaseException:
            if me in self._waiting:
                self._waiting.remove(me)
                heapq.heapify(self._waiting)
                self._nudge_first()
            raise

    def _release_ready(self, now: float) -> None:
        """Let the waiters go that the bucket has a token for now, in order; the next one in
        line keeps the token it borrowed, and is nudged to sleep until it is due."""
        while self._waiting and self._penalty.until <= now:
            delay = self._bucket.reserve(now)
            if delay > 0:
                self._slot = now + delay
                break
            waiter = heapq.heappop(self._waiting)
            waiter.released = True
            waiter.nudged.set()
        self._nudge_first()

    def _nudge_first(self) -> None:
        if self._waiting:
            self._waiting[0].nudged.set()

