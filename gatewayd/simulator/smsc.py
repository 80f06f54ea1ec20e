"""An SMSC simulator: the bundled demo peer, the test double and the benchmark target.

It is the SMSC role of the same :class:`~gatewayd.smpp.session.SmppSession` the gateway
uses, behind a trio TCP listener. It accepts binds with the configured credentials, answers
submit_sm and data_sm with message ids, sends delivery receipts the way operator SMSCs
format them, injects MOs (plain, UCS-2 and concatenated), and injects faults on demand:
dropped connections, delayed or withheld responses, throttling, garbage and oversize PDUs.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import struct
from typing import Callable

import attrs
import structlog
import trio

from gatewayd.smpp.constants import BindMode, CommandId, CommandStatus, EsmClass, MessageState, Tag
from gatewayd.smpp.errors import LocalProtocolError
from gatewayd.smpp.pdus import Bind, DataSm, DeliverSm, Pdu, SubmitSm
from gatewayd.smpp.session import SessionConfig, SmppSession
from gatewayd.smpp.states import Role
from gatewayd.smpp.text import ConcatMethod, ConcatReferences, decode_short_message, split_text
from gatewayd.transport import ConnectionGone, ResponseTimeout, SmppConnection

__all__ = ["Faults", "SmscSimulator", "receipt_text"]

log = structlog.get_logger("gatewayd.simulator")

_DLR_DATE = "%y%m%d%H%M"


@attrs.define
class Faults:
    """Misbehaviour to inject, changed by tests and by the CLI while the simulator runs.

    Attributes:
        response_delay: seconds to wait before answering each submit_sm / data_sm.
        withhold_responses: never answer submit_sm / data_sm (the gateway must time out).
        throttle_next: answer this many of the next submits with ESME_RTHROTTLED.
        reject_status: when non-zero, answer every submit with this status.
    """

    response_delay: float = 0.0
    withhold_responses: bool = False
    throttle_next: int = 0
    reject_status: int = 0


def receipt_text(message_id: str, *, stat: str, err: str, submitted: dt.datetime, done: dt.datetime, text: str) -> bytes:
    """Format a delivery receipt as SMSCs do (SMPP 3.4 appendix B).

    Returns:
        ``id:... sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:... err:... text:...``
    """
    delivered = "001" if stat == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted.strftime(_DLR_DATE)} "
        f"done date:{done.strftime(_DLR_DATE)} stat:{stat} err:{err} text:{text[:20]}"
    ).encode("latin-1", "replace")


@attrs.define(eq=False)
class _Receipt:
    """A receipt owed for a submit, until the ESME acknowledges it or the attempts run out."""

    #: The connection the submit came in on: the receipt goes back over it while it can.
    conn: SmppConnection
    submit: SubmitSm | DataSm
    message_id: str
    submitted: dt.datetime
    #: Built when first sent (its done date is then), kept for the retries.
    pdu: DeliverSm | None = None
    attempts: int = 0


class SmscSimulator:
    """A simulated SMSC listening on a TCP port.

    Args:
        system_id: the system_id ESMEs must bind with.
        password: the password ESMEs must bind with.
        name: our own system_id, returned in bind responses.
        delivery_receipts: send a receipt for every submit that asks for one.
        receipt_delay: seconds between a submit and its receipt.
        session_config: timing and window of each connection.
        clock: wall-clock time for receipt dates.
        history: how many submits :attr:`submitted` keeps.
        on_submit: called with every submit accepted (load generators time replies with it).
    """

    def __init__(
        self,
        *,
        system_id: str = "gatewayd",
        password: str = "secret",
        name: str = "smsc-sim",
        delivery_receipts: bool = True,
        receipt_delay: float = 0.0,
        session_config: SessionConfig | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
        history: int = 100_000,
        on_submit: Callable[[Pdu], None] | None = None,
    ) -> None:
        self.system_id = system_id
        self.password = password
        self.name = name
        self.delivery_receipts = delivery_receipts
        self.receipt_delay = receipt_delay
        #: Attempts at delivering a receipt, and the pause between them.
        self.receipt_attempts = 120
        self.receipt_retry_delay = 0.5
        self.session_config = session_config or SessionConfig(window=100, enquire_link_interval=30.0)
        self.faults = Faults()
        self._clock = clock
        self._ids = itertools.count(1)
        self._refs = ConcatReferences(8)
        #: Connections that completed a bind, in bind order.
        self.connections: list[SmppConnection] = []
        #: The most recent submits received (submit_sm and data_sm), oldest first.
        self.submitted: collections.deque[Pdu] = collections.deque(maxlen=history)
        self.on_submit = on_submit
        #: Counters: binds accepted/refused, submits, receipts sent, MOs acknowledged.
        self.stats: collections.Counter[str] = collections.Counter()
        self._bound_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        # Receipts waiting for their delay, in the order they fall due (the delay is one for
        # all), and the event that wakes the task that sends them.
        self._due_receipts: collections.deque[tuple[float, _Receipt]] = collections.deque()
        self._receipt_queued = trio.Event()
        self._rr = 0
        #: The TCP port, once listening.
        self.port: int | None = None

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started`` receives the port."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._release_receipts)
            listeners = await nursery.start(functools.partial(trio.serve_tcp, self.handle_stream, port, host=host))
            self.port = listeners[0].socket.getsockname()[1]
            log.info("simulator_listening", host=host, port=self.port)
            task_status.started(self.port)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the background work (receipts) without a listener, for streams given to :meth:`handle_stream`."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._release_receipts()

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one ESME connection until it closes (the listener calls this; tests may too)."""
        session = SmppSession(Role.SMSC, self.session_config, now=trio.current_time())
        conn = SmppConnection(stream, session, name=f"{self.name}-conn")
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            async for pdu in conn.requests:
                if isinstance(pdu, Bind):
                    self._answer_bind(conn, pdu)
                elif isinstance(pdu, (SubmitSm, DataSm)):
                    if self.faults.response_delay:
                        nursery.start_soon(self._answer_submit_later, conn, pdu)
                    else:
                        self._answer_submit(conn, pdu)
            # The request channel closes with the session; conn.run still flushes the last
            # bytes (an unbind_resp) before it returns, so it is not cancelled here.
        if conn.close_reason == "unbound by peer":
            self.stats["unbinds_received"] += 1
        if conn in self.connections:
            self.connections.remove(conn)
            self._notify_bound()

    def _answer_bind(self, conn: SmppConnection, bind: Bind) -> None:
        if bind.system_id != self.system_id:
            status = CommandStatus.ESME_RINVSYSID
        elif bind.password != self.password:
            status = CommandStatus.ESME_RINVPASWD
        else:
            status = CommandStatus.ESME_ROK
        if not self._answer(conn, bind.response(status, self.name)):
            return
        if status == CommandStatus.ESME_ROK:
            self.stats["binds_accepted"] += 1
            conn.name = f"{self.name}-{bind.mode.value}-{self.stats['binds_accepted']}"
            self.connections.append(conn)
            self._notify_bound()
        else:
            self.stats["binds_refused"] += 1
        log.info("simulator_bind", mode=bind.mode.value, accepted=status == CommandStatus.ESME_ROK)

    async def _answer_submit_later(self, conn: SmppConnection, pdu: SubmitSm | DataSm) -> None:
        await trio.sleep(self.faults.response_delay)
        if not conn.closed:
            self._answer_submit(conn, pdu)

    def _answer(self, conn: SmppConnection, response: Pdu) -> bool:
        """Answer a request; False when the connection closed while it waited in the queue.

        The ESME never saw the answer, so it resubmits: the message counts as not received.
        """
        try:
            conn.answer(response)
        except LocalProtocolError:
            self.stats["submits_unanswerable"] += 1
            return False
        return True

    def _answer_submit(self, conn: SmppConnection, pdu: SubmitSm | DataSm) -> None:
        faults = self.faults
        if faults.withhold_responses:
            self.stats["submits_withheld"] += 1
            return
        if faults.throttle_next > 0:
            faults.throttle_next -= 1
            self.stats["submits_throttled"] += 1
            self._answer(conn, pdu.response(CommandStatus.ESME_RTHROTTLED))
            return
        if faults.reject_status:
            self.stats["submits_rejected"] += 1
            self._answer(conn, pdu.response(faults.reject_status))
            return
        message_id = f"{next(self._ids):08x}"
        if not self._answer(conn, pdu.response(CommandStatus.ESME_ROK, message_id)):
            return
        self.submitted.append(pdu)
        if self.on_submit is not None:
            self.on_submit(pdu)
        self.stats["submits_accepted"] += 1
        self.stats[f"submits_accepted:{conn.name}"] += 1
        if self.delivery_receipts and pdu.registered_delivery & 0x03 and self._nursery is not None:
            receipt = _Receipt(conn, pdu, message_id, self._clock())
            if self.receipt_delay:
                self._due_receipts.append((trio.current_time() + self.receipt_delay, receipt))
                self._receipt_queued.set()
            else:
                self._send_receipt(receipt)

    async def _release_receipts(self) -> None:
        """Send each queued receipt when its delay is over: one timer for all of them, rather
        than a sleeping task each (at a thousand submits a second those sleeps cost the
        simulator more than answering the submits)."""
        due = self._due_receipts
        while True:
            if not due:
                self._receipt_queued = trio.Event()
                await self._receipt_queued.wait()
                continue
            now = trio.current_time()
            while due and due[0][0] <= now:
                self._send_receipt(due.popleft()[1])
            if due:
                await trio.sleep_until(due[0][0])

    def _send_receipt(self, receipt: _Receipt) -> None:
        """Send a receipt over the bind its message came in on (or another receiver), with no
        task of its own while the window has room: at thousands of receipts a second a task
        each costs the simulator more than the rest of the receipt."""
        if receipt.pdu is None:
            receipt.pdu = self._receipt_pdu(receipt)
        try:
            conn = self._receiver(prefer=receipt.conn)
        except LookupError:
            self._receipt_failed(receipt)
            return
        if conn.session.can_submit:
            conn.request_nowait(receipt.pdu, functools.partial(self._receipt_answered, receipt))
        else:
            assert self._nursery is not None
            self._nursery.start_soon(self._send_receipt_when_room, conn, receipt)

    async def _send_receipt_when_room(self, conn: SmppConnection, receipt: _Receipt) -> None:
        assert receipt.pdu is not None
        try:
            response: Pdu | None = await conn.request(receipt.pdu)
        except (ConnectionGone, ResponseTimeout):
            response = None
        self._receipt_answered(receipt, response, None)

    def _receipt_answered(self, receipt: _Receipt, response: Pdu | None, error: Exception | None) -> None:
        if response is not None and response.ok:
            self.stats["receipts_sent"] += 1
        else:
            self._receipt_failed(receipt)

    def _receipt_failed(self, receipt: _Receipt) -> None:
        """Like an operator SMSC, keep a receipt until the ESME acknowledges it: try again
        after :attr:`receipt_retry_delay`, :attr:`receipt_attempts` times in all."""
        receipt.attempts += 1
        if receipt.attempts >= self.receipt_attempts or self._nursery is None:
            self.stats["receipts_lost"] += 1
            return
        try:
            self._nursery.start_soon(self._retry_receipt, receipt)
        except RuntimeError:  # the simulator is stopping: its nursery takes no more tasks
            self.stats["receipts_lost"] += 1
            return
        self.stats["receipts_retried"] += 1

    async def _retry_receipt(self, receipt: _Receipt) -> None:
        await trio.sleep(self.receipt_retry_delay)
        self._send_receipt(receipt)

    def _receipt_pdu(self, receipt: _Receipt) -> DeliverSm:
        pdu = receipt.submit
        message_id = receipt.message_id
        text = decode_short_message(pdu.short_message if isinstance(pdu, SubmitSm) else pdu.payload, pdu.data_coding)
        body = receipt_text(message_id, stat="DELIVRD", err="000", submitted=receipt.submitted, done=self._clock(), text=text)
        return DeliverSm(
            source_addr_ton=pdu.dest_addr_ton,
            source_addr_npi=pdu.dest_addr_npi,
            source_addr=pdu.destination_addr,
            dest_addr_ton=pdu.source_addr_ton,
            dest_addr_npi=pdu.source_addr_npi,
            destination_addr=pdu.source_addr,
            esm_class=EsmClass.DELIVERY_RECEIPT,
            short_message=body,
            tlvs=(
                (Tag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00"),
                (Tag.MESSAGE_STATE, bytes([MessageState.DELIVERED])),
            ),
        )

    def _notify_bound(self) -> None:
        self._bound_changed.set()
        self._bound_changed = trio.Event()

    # -- what tests, benchmarks and the demo call -----------------------------------------------

    async def wait_bound(self, count: int = 1) -> None:
        """Wait until at least ``count`` connections are bound."""
        while len(self.connections) < count:
            await self._bound_changed.wait()

    def _receiver(self, prefer: SmppConnection | None = None) -> SmppConnection:
        """``prefer`` when it is bound and can receive (a receipt goes back over the bind its
        message came in on), else the next receiver in turn."""
        receiving = (BindMode.RECEIVER, BindMode.TRANSCEIVER)
        if prefer is not None and prefer in self.connections and not prefer.closed and prefer.session.mode in receiving:
            return prefer
        candidates = [c for c in self.connections if not c.closed and c.session.mode in receiving]
        if not candidates:
            raise LookupError("no ESME is bound as receiver or transceiver")
        self._rr = (self._rr + 1) % len(candidates)
        return candidates[self._rr]

    async def deliver(self, pdu: DeliverSm | DataSm) -> Pdu:
        """Send one deliver_sm (or data_sm) to a bound receiver and wait for its response.

        Raises:
            LookupError: no receiver is bound.
            ConnectionGone, ResponseTimeout: as :meth:`SmppConnection.request`.
        """
        return await self._receiver().request(pdu)

    def mo_pdus(
        self,
        source: str,
        destination: str,
        text: str,
        *,
        data_coding: int | None = None,
        method: ConcatMethod = ConcatMethod.UDH8,
    ) -> list[DeliverSm]:
        """Build the deliver_sm PDUs of an MO, split into parts when it is long."""
        parts = split_text(text, reference=self._refs.next(source), method=method, data_coding=data_coding)
        return [
            DeliverSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=source,
                destination_addr=destination,
                esm_class=part.esm_class,
                data_coding=part.data_coding,
                short_message=part.short_message,
                tlvs=part.tlvs,
            )
            for part in parts
        ]

    async def inject_mo(self, source: str, destination: str, text: str, **kwargs: object) -> list[int]:
        """Deliver an MO to the gateway, part after part.

        Returns:
            The command_status of each part's deliver_sm_resp.
        """
        statuses = []
        for pdu in self.mo_pdus(source, destination, text, **kwargs):  # type: ignore[arg-type]
            response = await self.deliver(pdu)
            statuses.append(response.command_status)
            if response.ok:
                self.stats["mo_acknowledged"] += 1
        return statuses

    def drop_connections(self) -> None:
        """Cut every connection at once, without unbind."""
        for conn in list(self.connections):
            conn.abort("dropped by fault injection")

    def send_garbage(self, data: bytes) -> None:
        """Write raw bytes to every bound connection, bypassing the protocol."""
        for conn in self.connections:
            conn.inject_raw(data)

    def send_oversize(self, length: int = 0x7FFFFFFF) -> None:
        """Send a header whose command_length is far beyond any sane maximum."""
        self.send_garbage(struct.pack(">LLLL", length, CommandId.DELIVER_SM, 0, 1))
