"""Frozen values for every SMPP 3.4 PDU the gateway sends or receives.

These classes are the vocabulary shared by the codec (bytes <-> values), the session state
machine and the trio code around it. They hold decoded Python values: C-octet strings as
``str`` (decoded as latin-1, so no byte is ever lost), ``short_message`` as raw ``bytes``
(its meaning depends on data_coding and the UDH, see :mod:`gatewayd.smpp.text`), and the
optional parameters as an ordered tuple of ``(tag, value)`` pairs so that unknown and
vendor TLVs survive a decode.

A request is built without a sequence number (``sequence=0``); the session allocates one
when it is sent. Responses are built with :meth:`Pdu.response_to` style helpers on the
request so the sequence number is always copied from it.
"""

from __future__ import annotations

from typing import ClassVar, Union

import attrs

from gatewayd.smpp.constants import (
    INTERFACE_VERSION_34,
    BindMode,
    CommandId,
    CommandStatus,
    EsmClass,
    ESM_MESSAGE_TYPE_MASK,
    ESM_UDHI,
    Tag,
)

__all__ = [
    "Tlvs",
    "Pdu",
    "Bind",
    "BindResp",
    "Outbind",
    "Unbind",
    "UnbindResp",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "SubmitSm",
    "SubmitSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DataSm",
    "DataSmResp",
    "AlertNotification",
    "AnyPdu",
    "find_tlv",
    "BIND_COMMANDS",
]

#: Optional parameters in wire order: ``((tag, value), ...)``.
Tlvs = tuple[tuple[int, bytes], ...]


def find_tlv(tlvs: Tlvs, tag: int) -> bytes | None:
    """Return the value of the first TLV with ``tag``, or None when it is absent."""
    for t, value in tlvs:
        if t == tag:
            return value
    return None


@attrs.frozen(kw_only=True)
class Pdu:
    """Fields every PDU has: the header's sequence_number and command_status."""

    #: The class's command_id; generic code dispatches on it.
    command_id: ClassVar[CommandId]

    #: sequence_number, 1..0x7FFFFFFF once sent; 0 on a request not yet given to the session.
    sequence: int = 0
    #: command_status; always 0 on requests.
    command_status: int = 0

    @property
    def is_response(self) -> bool:
        """True for ``*_resp`` and generic_nack."""
        return self.command_id.is_response

    @property
    def ok(self) -> bool:
        """True when command_status is ESME_ROK."""
        return self.command_status == CommandStatus.ESME_ROK


@attrs.frozen(kw_only=True)
class _HeaderOnly(Pdu):
    """A PDU with no body."""


@attrs.frozen(kw_only=True)
class Bind(Pdu):
    """bind_transmitter, bind_receiver or bind_transceiver, by ``mode``."""

    mode: BindMode = BindMode.TRANSCEIVER
    system_id: str = ""
    password: str = attrs.field(default="", repr=False)
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    @property
    def command_id(self) -> CommandId:  # type: ignore[override]
        """bind_transmitter, bind_receiver or bind_transceiver, by mode."""
        return BIND_COMMANDS[self.mode][0]

    def response(self, status: int = 0, system_id: str = "") -> "BindResp":
        """The bind_*_resp answering this bind."""
        return BindResp(sequence=self.sequence, command_status=status, mode=self.mode, system_id=system_id)


@attrs.frozen(kw_only=True)
class BindResp(Pdu):
    """bind_*_resp; ``mode`` tells which bind it answers."""

    mode: BindMode = BindMode.TRANSCEIVER
    system_id: str = ""
    tlvs: Tlvs = ()

    @property
    def command_id(self) -> CommandId:  # type: ignore[override]
        """The bind_*_resp command id for this mode."""
        return BIND_COMMANDS[self.mode][1]

    @property
    def sc_interface_version(self) -> int | None:
        """The SMSC's interface version from the sc_interface_version TLV, when present."""
        value = find_tlv(self.tlvs, Tag.SC_INTERFACE_VERSION)
        return value[0] if value else None


@attrs.frozen(kw_only=True)
class Outbind(Pdu):
    """outbind: the SMSC asks the ESME to bind to it (SMPP 3.4 section 4.1.7)."""

    command_id: ClassVar[CommandId] = CommandId.OUTBIND

    system_id: str = ""
    password: str = attrs.field(default="", repr=False)


@attrs.frozen(kw_only=True)
class Unbind(_HeaderOnly):
    """unbind."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND

    def response(self, status: int = 0) -> "UnbindResp":
        """The unbind_resp answering this unbind."""
        return UnbindResp(sequence=self.sequence, command_status=status)


@attrs.frozen(kw_only=True)
class UnbindResp(_HeaderOnly):
    """unbind_resp."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@attrs.frozen(kw_only=True)
class EnquireLink(_HeaderOnly):
    """enquire_link."""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK

    def response(self, status: int = 0) -> "EnquireLinkResp":
        """The enquire_link_resp answering this enquire_link."""
        return EnquireLinkResp(sequence=self.sequence, command_status=status)


@attrs.frozen(kw_only=True)
class EnquireLinkResp(_HeaderOnly):
    """enquire_link_resp."""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@attrs.frozen(kw_only=True)
class GenericNack(_HeaderOnly):
    """generic_nack: the answer to a PDU whose header could not be acted on."""

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


@attrs.frozen(kw_only=True)
class _ShortMessage(Pdu):
    """The body shared by submit_sm and deliver_sm (SMPP 3.4 sections 4.4.1 and 4.6.1)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = attrs.field(default=b"", repr=False)
    tlvs: Tlvs = attrs.field(default=(), repr=False)

    @property
    def has_udh(self) -> bool:
        """True when short_message (or message_payload) starts with a User Data Header."""
        return bool(self.esm_class & ESM_UDHI)

    @property
    def payload(self) -> bytes:
        """The message octets: message_payload when present, else short_message."""
        value = find_tlv(self.tlvs, Tag.MESSAGE_PAYLOAD)
        return self.short_message if value is None else value


@attrs.frozen(kw_only=True)
class SubmitSm(_ShortMessage):
    """submit_sm: an MT from the gateway to the SMSC."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM

    def response(self, status: int = 0, message_id: str = "") -> "SubmitSmResp":
        """The submit_sm_resp answering this submit_sm."""
        return SubmitSmResp(sequence=self.sequence, command_status=status, message_id=message_id)


@attrs.frozen(kw_only=True)
class SubmitSmResp(Pdu):
    """submit_sm_resp carrying the SMSC's message id."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP

    message_id: str = ""


_RECEIPT_TYPES = (EsmClass.DELIVERY_RECEIPT, EsmClass.INTERMEDIATE_NOTIFICATION)


@attrs.frozen(kw_only=True)
class DeliverSm(_ShortMessage):
    """deliver_sm: an MO or a delivery receipt from the SMSC."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM

    @property
    def is_receipt(self) -> bool:
        """True when esm_class marks this deliver_sm as a delivery receipt or notification."""
        return (self.esm_class & ESM_MESSAGE_TYPE_MASK) in _RECEIPT_TYPES

    def response(self, status: int = 0) -> "DeliverSmResp":
        """The deliver_sm_resp answering this deliver_sm."""
        return DeliverSmResp(sequence=self.sequence, command_status=status)


@attrs.frozen(kw_only=True)
class DeliverSmResp(Pdu):
    """deliver_sm_resp (message_id is unused in SMPP 3.4 and sent empty)."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP

    message_id: str = ""


@attrs.frozen(kw_only=True)
class DataSm(Pdu):
    """data_sm, in either direction; the text travels in the message_payload TLV."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: Tlvs = attrs.field(default=(), repr=False)

    @property
    def payload(self) -> bytes:
        """The message octets from message_payload (empty when absent)."""
        return find_tlv(self.tlvs, Tag.MESSAGE_PAYLOAD) or b""

    def response(self, status: int = 0, message_id: str = "") -> "DataSmResp":
        """The data_sm_resp answering this data_sm."""
        return DataSmResp(sequence=self.sequence, command_status=status, message_id=message_id)


@attrs.frozen(kw_only=True)
class DataSmResp(Pdu):
    """data_sm_resp."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP

    message_id: str = ""
    tlvs: Tlvs = ()


@attrs.frozen(kw_only=True)
class AlertNotification(Pdu):
    """alert_notification: a subscriber became reachable (SMPP 3.4 section 4.12.1); no response."""

    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION

    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    tlvs: Tlvs = ()


#: Any PDU value the codec produces or accepts.
AnyPdu = Union[
    Bind,
    BindResp,
    Outbind,
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
    DeliverSm,
    DeliverSmResp,
    DataSm,
    DataSmResp,
    AlertNotification,
]

#: bind command ids by mode, and back.
BIND_COMMANDS: dict[BindMode, tuple[CommandId, CommandId]] = {
    BindMode.TRANSMITTER: (CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSMITTER_RESP),
    BindMode.RECEIVER: (CommandId.BIND_RECEIVER, CommandId.BIND_RECEIVER_RESP),
    BindMode.TRANSCEIVER: (CommandId.BIND_TRANSCEIVER, CommandId.BIND_TRANSCEIVER_RESP),
}
