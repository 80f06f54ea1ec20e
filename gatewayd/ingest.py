"""What happens to every message an SMSC hands over: deliver_sm and data_sm.

Today the pipeline is: decode the text and the concatenation info, write one canonical log
line, acknowledge. The single place where the durable store and routing plug in is
:attr:`Ingest.accept`: it receives each :class:`InboundMessage` and returns the status to
acknowledge with. The acknowledgement goes out only after ``accept`` returns, so once
``accept`` stores the message durably, an MO is acknowledged only after it is stored.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Awaitable, Callable, Iterable

import attrs
import structlog
import trio

from gatewayd.config import StoreConfig
from gatewayd.dispatch import Dispatcher, store_and_process
from gatewayd.smpp.constants import CommandStatus, Tag, describe_status
from gatewayd.smpp.errors import LocalProtocolError
from gatewayd.smpp.pdus import AlertNotification, DataSm, DeliverSm, Pdu, find_tlv
from gatewayd.smpp.text import decode_short_message
from gatewayd.smpp.udh import ConcatInfo, concat_info
from gatewayd.smpp.receipts import DeliveryReceipt, normalise_message_id, parse_receipt
from gatewayd.transport import SmppConnection
from profile_store.db import Store, StoreUnavailable
from profile_store.dlr import record_receipt
from profile_store.mo import MoPartIn, sar_tlvs, store_mo_part
from profile_store.subscribers import InvalidNumber, RawNumber, normalise_msisdn
from profile_store.values import StoredMo

__all__ = ["InboundMessage", "Ingest", "Accept", "acknowledge_only", "StoreAccept"]

log = structlog.get_logger("gatewayd.ingest")


@attrs.frozen
class InboundMessage:
    """One deliver_sm or data_sm as the gateway understands it: an MO part or a receipt."""

    #: The SMSC link it came from.
    smsc: str
    #: The subscriber's number for an MO, the recipient's for a receipt.
    source_addr: str
    #: The short code (MO) or our source address (receipt).
    destination_addr: str
    #: The decoded text, UDH removed.
    text: str
    data_coding: int
    #: Where this part belongs in a concatenated MO; None when it stands alone.
    concat: ConcatInfo | None
    #: True for a delivery receipt or intermediate notification.
    is_receipt: bool
    #: The receipted_message_id TLV of a receipt, when present.
    receipted_message_id: str | None
    received_at: dt.datetime
    #: The PDU as received, for whatever the store needs beyond the fields above.
    pdu: Pdu = attrs.field(repr=False, eq=False)
    #: The connection it arrived on (:attr:`SmppConnection.connection_id`); "" when unknown.
    connection: str = ""
    #: A receipt's fields, parsed once when decoded (see :attr:`receipt`).
    parsed: DeliveryReceipt | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def receipt(self) -> DeliveryReceipt:
        """The fields of a delivery receipt (all None for a message that is none)."""
        if self.parsed is not None:
            return self.parsed
        return parse_receipt(self.text, self.pdu.tlvs if isinstance(self.pdu, (DeliverSm, DataSm)) else ())

    @classmethod
    def from_pdu(cls, pdu: DeliverSm | DataSm, *, smsc: str, now: dt.datetime, connection: str = "") -> "InboundMessage":
        """Decode a deliver_sm or data_sm; never raises on odd content."""
        info, user_data = concat_info(esm_class=pdu.esm_class, payload=pdu.payload, tlvs=pdu.tlvs)
        receipted = find_tlv(pdu.tlvs, Tag.RECEIPTED_MESSAGE_ID)
        is_receipt = isinstance(pdu, DeliverSm) and pdu.is_receipt
        text = decode_short_message(user_data, pdu.data_coding)
        return cls(
            smsc=smsc,
            source_addr=pdu.source_addr,
            destination_addr=pdu.destination_addr,
            text=text,
            data_coding=pdu.data_coding,
            concat=info,
            is_receipt=is_receipt,
            receipted_message_id=None if receipted is None else receipted.rstrip(b"\x00").decode("latin-1"),
            received_at=now,
            pdu=pdu,
            connection=connection,
            parsed=parse_receipt(text, pdu.tlvs) if is_receipt else None,
        )


#: Takes a message and returns the command_status to acknowledge it with.
Accept = Callable[[InboundMessage], Awaitable[int]]


async def acknowledge_only(message: InboundMessage) -> int:
    """The pipeline until the store and routing take over: accept everything."""
    return CommandStatus.ESME_ROK


class StoreAccept:
    """The accept hook with a store: keep each MO part or receipt durably, then acknowledge.

    ESME_ROK is returned only once the part is committed; when the store cannot take it,
    ESME_RX_T_APPN makes the SMSC keep the message and deliver it again later. A redelivery
    is acknowledged and not processed again. A part that completes a message hands the
    assembled MO to ``on_mo`` (the dispatcher); with ``dispatcher``, when it offers to
    (:meth:`~gatewayd.dispatch.Dispatcher.deciding_on_store`), the MO is decided about in the unit that
    stores it instead (:func:`~gatewayd.dispatch.store_and_process`), so that its reply waits
    for one commit rather than two.

    Args:
        store: the store, its writer running.
        settings: the ``[store]`` settings (dedupe window, reassembly, receipt grace, region).
        message_id_format: the SMSC's message_id_format, by SMSC name (for receipts).
        on_mo: called with each newly complete MO after its commit, unless it was decided
            about in that commit.
        dispatcher: decides about MOs as they are stored, when it offers to.
        clock: wall-clock seconds.
    """

    def __init__(
        self,
        store: Store,
        *,
        settings: StoreConfig,
        message_id_format: Callable[[str], str] = lambda smsc: "string",
        on_mo: Callable[[StoredMo], None] = lambda mo: None,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self._format = message_id_format
        self._on_mo = on_mo
        self._dispatcher = dispatcher
        self._clock = clock

    async def __call__(self, message: InboundMessage) -> int:
        try:
            if message.is_receipt:
                await self._receipt(message)
            else:
                await self._mo(message)
        except StoreUnavailable as exc:
            log.error("message_not_stored", smsc=message.smsc, error=str(exc))
            return CommandStatus.ESME_RX_T_APPN
        return CommandStatus.ESME_ROK

    async def _mo(self, message: InboundMessage) -> None:
        pdu = message.pdu
        assert isinstance(pdu, (DeliverSm, DataSm))
        part = MoPartIn(
            smsc=message.smsc,
            source_addr=message.source_addr,
            source_addr_ton=pdu.source_addr_ton,
            short_code=message.destination_addr,
            esm_class=pdu.esm_class,
            data_coding=pdu.data_coding,
            payload=pdu.payload,
            text=message.text,
            concat=message.concat,
            sar=sar_tlvs(pdu.tlvs),
            received_at=message.received_at.timestamp(),
            connection=message.connection or None,
        )
        try:
            # Parsing a new number is the costliest step of storing its MO; done here, the
            # store writer (which every MO waits for in turn) need not.
            msisdn = normalise_msisdn(part.source_addr, ton=part.source_addr_ton, default_region=self.settings.default_region)
            options = {
                "dedupe_window": self.settings.dedupe_window,
                "reassembly_window": self.settings.reassembly_timeout,
                "default_region": self.settings.default_region,
                "msisdn": msisdn,
            }
            started = trio.current_time()
            inline = self._dispatcher.deciding_on_store() if self._dispatcher is not None else None
            if inline is None:
                stored, outcomes = await self.store.write_first(store_mo_part, part, self._clock(), **options), None
            else:
                assert self._dispatcher is not None
                try:
                    stored, outcomes = await self.store.write_first(store_and_process, part, self._clock(), inline, **options)
                finally:
                    self._dispatcher.stored_and_decided()
        except InvalidNumber as exc:
            # Nobody to answer or to keep a profile for; the SMSC must not retry it either.
            log.warning("mo_unaddressable", smsc=message.smsc, source_addr=message.source_addr, reason=str(exc))
            return
        if stored.duplicate:
            log.info("mo_duplicate", smsc=message.smsc, part_id=stored.part_id)
        elif outcomes is not None and self._dispatcher is not None:
            self._dispatcher.processed_on_store(outcomes, round((trio.current_time() - started) * 1000, 3))
        elif stored.mo is not None:
            self._on_mo(stored.mo)

    async def _receipt(self, message: InboundMessage) -> None:
        receipt = message.receipt
        message_id = normalise_message_id(receipt.message_id or "", self._format(message.smsc), from_receipt=True)
        pdu = message.pdu
        # Normalised by the writer, and only for a receipt its id does not match.
        recipient = RawNumber(message.source_addr, getattr(pdu, "source_addr_ton", 1), self.settings.default_region)
        recorded = await self.store.write_ahead(record_receipt, message.smsc, receipt, message_id, self._clock(), recipient=recipient)
        if not recorded.matched:
            log.info("receipt_held", smsc=message.smsc, message_id=message_id, stat=receipt.stat)
        elif recorded.by_content:
            log.info("receipt_matched_by_content", smsc=message.smsc, message_id=message_id, mt_id=recorded.mt_id)


class Ingest:
    """Receives the requests of every bind, answers them and logs one line per message.

    Args:
        accept: the pipeline hook (see the module docstring).
        short_codes: per SMSC name, the short codes it serves; MOs to other numbers are
            still acknowledged (the SMSC would only retry) but logged as a warning.
        clock: UTC wall-clock time for ``received_at``.
    """

    def __init__(
        self,
        accept: Accept = acknowledge_only,
        *,
        short_codes: dict[str, Iterable[str]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self.accept = accept
        self.short_codes = {name: frozenset(codes) for name, codes in (short_codes or {}).items()}
        self._clock = clock
        #: Called with each answered message, its ack status and seconds from read to ack (metrics).
        self.observer: Callable[[InboundMessage, int, float], None] | None = None

    async def handle(self, conn: SmppConnection, pdu: Pdu, *, smsc: str = "") -> None:
        """Process one request from an SMSC and answer it (see :data:`gatewayd.binds.RequestHandler`)."""
        if isinstance(pdu, (DeliverSm, DataSm)):
            await self._message(conn, pdu, smsc or conn.name)
        elif isinstance(pdu, AlertNotification):
            log.info("alert_notification_received", source_addr=pdu.source_addr)
        else:
            log.warning("request_ignored", command=type(pdu).__name__, sequence=pdu.sequence)

    async def _message(self, conn: SmppConnection, pdu: DeliverSm | DataSm, smsc: str) -> None:
        started = trio.current_time()
        message = InboundMessage.from_pdu(pdu, smsc=smsc, now=self._clock(), connection=conn.connection_id)
        try:
            status = await self.accept(message)
        except Exception:
            # The hook failed (a bug or a store outage): the SMSC keeps the message and retries.
            log.exception("message_not_accepted", smsc=smsc, sequence=pdu.sequence)
            status = CommandStatus.ESME_RX_T_APPN
        try:
            conn.answer(pdu.response(status))
        except LocalProtocolError as exc:
            log.warning("ack_not_sent", smsc=smsc, sequence=pdu.sequence, reason=str(exc))
            return
        elapsed = trio.current_time() - started
        if self.observer is not None:
            self.observer(message, status, elapsed)
        self._log(message, status, elapsed)

    def _log(self, message: InboundMessage, status: int, elapsed: float) -> None:
        fields = {
            "smsc": message.smsc,
            "source_addr": message.source_addr,
            "destination_addr": message.destination_addr,
            "data_coding": message.data_coding,
            "text": message.text,
            "ack": describe_status(status),
            "latency_ms": round(elapsed * 1000, 3),
        }
        if message.concat is not None:
            fields["part"] = f"{message.concat.index}/{message.concat.total}"
            fields["concat_ref"] = message.concat.reference
        if message.is_receipt:
            log.info("receipt_received", receipted_message_id=message.receipted_message_id, **fields)
            return
        codes = self.short_codes.get(message.smsc)
        if codes is not None and message.destination_addr not in codes:
            log.warning("mo_unknown_short_code", **fields)
        else:
            log.info("mo_received", **fields)
