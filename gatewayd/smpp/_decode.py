"""Frame -> PDU value decoding; the public entry point is :func:`gatewayd.smpp.codec.decode`.

Each body decoder works on the frame twice over: as ``bytes`` for octets and as a latin-1
``str`` of the same length for C-strings, so that a C-string is one ``str.index`` plus one
slice (latin-1 maps byte ``n`` to code point ``n``, so offsets agree and no byte is lost).
Truncated input surfaces as ``IndexError``/``ValueError``/``struct.error`` from those
primitives; :func:`decode` turns every one of them into a :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from typing import Callable

from gatewayd.smpp.constants import BindMode, CommandId, CommandStatus
from gatewayd.smpp.errors import DecodeError
from gatewayd.smpp.pdus import (
    AlertNotification,
    AnyPdu,
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
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    Unbind,
    UnbindResp,
)

__all__ = ["decode", "HEADER", "UNSUPPORTED_COMMANDS"]

#: command_length, command_id, command_status, sequence_number.
HEADER = struct.Struct(">LLLL")
_unpack_header = HEADER.unpack_from
_unpack_tl = struct.Struct(">HH").unpack_from

#: Known SMPP 3.4 commands the gateway does not implement: answered like unknown ones.
UNSUPPORTED_COMMANDS = frozenset(
    {
        CommandId.QUERY_SM,
        CommandId.QUERY_SM_RESP,
        CommandId.CANCEL_SM,
        CommandId.CANCEL_SM_RESP,
        CommandId.REPLACE_SM,
        CommandId.REPLACE_SM_RESP,
        CommandId.SUBMIT_MULTI,
        CommandId.SUBMIT_MULTI_RESP,
    }
)


class _Malformed(Exception):
    """Raised inside a body decoder when the cause maps to a specific command_status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _tlvs(frame: bytes, pos: int, end: int) -> Tlvs:
    """Split ``frame[pos:end]`` into ``(tag, value)`` pairs, each honoured by its own length."""
    if pos == end:
        return ()
    out = []
    append = out.append
    while pos < end:
        if pos + 4 > end:
            raise _Malformed(f"truncated TLV header at offset {pos}", CommandStatus.ESME_RINVOPTPARSTREAM)
        tag, length = _unpack_tl(frame, pos)
        pos += 4
        stop = pos + length
        if stop > end:
            raise _Malformed(
                f"TLV 0x{tag:04x} value of {length} octets overruns the PDU at offset {pos}",
                CommandStatus.ESME_RINVOPTPARSTREAM,
            )
        append((tag, frame[pos:stop]))
        pos = stop
    return tuple(out)


def _header_only(cls: type) -> Callable[[bytes, int, int, int], AnyPdu]:
    """A decoder for a PDU without body; a stray body is ignored (generic_nack may carry one)."""

    def dec(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
        return cls(sequence=seq, command_status=status)  # type: ignore[no-any-return]

    return dec


def _short_message(cls: type[SubmitSm] | type[DeliverSm]) -> Callable[[bytes, int, int, int], AnyPdu]:
    """A decoder for the submit_sm / deliver_sm body layout."""

    def dec(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
        t = frame.decode("latin-1")
        i = t.index("\0", 16)
        service_type = t[16:i]
        source_addr_ton = frame[i + 1]
        source_addr_npi = frame[i + 2]
        j = t.index("\0", i + 3)
        source_addr = t[i + 3 : j]
        dest_addr_ton = frame[j + 1]
        dest_addr_npi = frame[j + 2]
        i = t.index("\0", j + 3)
        destination_addr = t[j + 3 : i]
        esm_class = frame[i + 1]
        protocol_id = frame[i + 2]
        priority_flag = frame[i + 3]
        j = t.index("\0", i + 4)
        schedule_delivery_time = t[i + 4 : j]
        i = t.index("\0", j + 1)
        validity_period = t[j + 1 : i]
        sm_length = frame[i + 5]  # checked first: it is the last of the five octets
        end = len(frame)
        i += 6
        stop = i + sm_length
        if stop > end:
            raise _Malformed(
                f"sm_length {sm_length} overruns the PDU ({end - i} octets left)",
                CommandStatus.ESME_RINVMSGLEN,
            )
        return cls(
            sequence=seq,
            command_status=status,
            service_type=service_type,
            source_addr_ton=source_addr_ton,
            source_addr_npi=source_addr_npi,
            source_addr=source_addr,
            dest_addr_ton=dest_addr_ton,
            dest_addr_npi=dest_addr_npi,
            destination_addr=destination_addr,
            esm_class=esm_class,
            protocol_id=protocol_id,
            priority_flag=priority_flag,
            schedule_delivery_time=schedule_delivery_time,
            validity_period=validity_period,
            registered_delivery=frame[i - 5],
            replace_if_present_flag=frame[i - 4],
            data_coding=frame[i - 3],
            sm_default_msg_id=frame[i - 2],
            short_message=frame[i:stop],
            tlvs=_tlvs(frame, stop, end) if stop < end else (),
        )

    return dec


def _message_id_resp(cls: type) -> Callable[[bytes, int, int, int], AnyPdu]:
    """A decoder for submit_sm_resp / deliver_sm_resp: an optional message_id, nothing else.

    An empty body is accepted: SMSCs omit the body of an error response, and a deliver_sm_resp
    body is often left out. Anything after the message_id (SMPP 5.0 TLVs) is ignored.
    """

    def dec(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
        if len(frame) == 16:
            return cls(sequence=seq, command_status=status)  # type: ignore[no-any-return]
        t = frame.decode("latin-1")
        return cls(sequence=seq, command_status=status, message_id=t[16 : t.index("\0", 16)])  # type: ignore[no-any-return]

    return dec


def _dec_data_sm_resp(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
    end = len(frame)
    if end == 16:
        return DataSmResp(sequence=seq, command_status=status)
    t = frame.decode("latin-1")
    i = t.index("\0", 16)
    return DataSmResp(sequence=seq, command_status=status, message_id=t[16:i], tlvs=_tlvs(frame, i + 1, end))


_BIND_MODES = {
    CommandId.BIND_TRANSMITTER: BindMode.TRANSMITTER,
    CommandId.BIND_RECEIVER: BindMode.RECEIVER,
    CommandId.BIND_TRANSCEIVER: BindMode.TRANSCEIVER,
    CommandId.BIND_TRANSMITTER_RESP: BindMode.TRANSMITTER,
    CommandId.BIND_RECEIVER_RESP: BindMode.RECEIVER,
    CommandId.BIND_TRANSCEIVER_RESP: BindMode.TRANSCEIVER,
}


def _dec_bind(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
    t = frame.decode("latin-1")
    i = t.index("\0", 16)
    j = t.index("\0", i + 1)
    k = t.index("\0", j + 1)
    interface_version = frame[k + 1]
    addr_ton = frame[k + 2]
    addr_npi = frame[k + 3]
    end = t.index("\0", k + 4)
    return Bind(
        sequence=seq,
        command_status=status,
        mode=_BIND_MODES[cid],
        system_id=t[16:i],
        password=t[i + 1 : j],
        system_type=t[j + 1 : k],
        interface_version=interface_version,
        addr_ton=addr_ton,
        addr_npi=addr_npi,
        address_range=t[k + 4 : end],
    )


def _dec_bind_resp(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
    end = len(frame)
    if end == 16:
        # A rejected bind often comes back header-only.
        return BindResp(sequence=seq, command_status=status, mode=_BIND_MODES[cid])
    t = frame.decode("latin-1")
    i = t.index("\0", 16)
    return BindResp(
        sequence=seq,
        command_status=status,
        mode=_BIND_MODES[cid],
        system_id=t[16:i],
        tlvs=_tlvs(frame, i + 1, end),
    )


def _dec_outbind(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
    t = frame.decode("latin-1")
    i = t.index("\0", 16)
    j = t.index("\0", i + 1)
    return Outbind(sequence=seq, command_status=status, system_id=t[16:i], password=t[i + 1 : j])


def _dec_data_sm(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
    t = frame.decode("latin-1")
    i = t.index("\0", 16)
    service_type = t[16:i]
    source_addr_ton = frame[i + 1]
    source_addr_npi = frame[i + 2]
    j = t.index("\0", i + 3)
    source_addr = t[i + 3 : j]
    dest_addr_ton = frame[j + 1]
    dest_addr_npi = frame[j + 2]
    i = t.index("\0", j + 3)
    destination_addr = t[j + 3 : i]
    data_coding = frame[i + 3]
    return DataSm(
        sequence=seq,
        command_status=status,
        service_type=service_type,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        dest_addr_ton=dest_addr_ton,
        dest_addr_npi=dest_addr_npi,
        destination_addr=destination_addr,
        esm_class=frame[i + 1],
        registered_delivery=frame[i + 2],
        data_coding=data_coding,
        tlvs=_tlvs(frame, i + 4, len(frame)),
    )


def _dec_alert_notification(frame: bytes, cid: int, status: int, seq: int) -> AnyPdu:
    t = frame.decode("latin-1")
    i = t.index("\0", 18)
    source_addr = t[18:i]
    esme_addr_ton = frame[i + 1]
    esme_addr_npi = frame[i + 2]
    j = t.index("\0", i + 3)
    return AlertNotification(
        sequence=seq,
        command_status=status,
        source_addr_ton=frame[16],
        source_addr_npi=frame[17],
        source_addr=source_addr,
        esme_addr_ton=esme_addr_ton,
        esme_addr_npi=esme_addr_npi,
        esme_addr=t[i + 3 : j],
        tlvs=_tlvs(frame, j + 1, len(frame)),
    )


_Decoder = Callable[[bytes, int, int, int], AnyPdu]

_DECODERS: dict[int, _Decoder] = {
    CommandId.BIND_TRANSMITTER: _dec_bind,
    CommandId.BIND_RECEIVER: _dec_bind,
    CommandId.BIND_TRANSCEIVER: _dec_bind,
    CommandId.BIND_TRANSMITTER_RESP: _dec_bind_resp,
    CommandId.BIND_RECEIVER_RESP: _dec_bind_resp,
    CommandId.BIND_TRANSCEIVER_RESP: _dec_bind_resp,
    CommandId.OUTBIND: _dec_outbind,
    CommandId.UNBIND: _header_only(Unbind),
    CommandId.UNBIND_RESP: _header_only(UnbindResp),
    CommandId.ENQUIRE_LINK: _header_only(EnquireLink),
    CommandId.ENQUIRE_LINK_RESP: _header_only(EnquireLinkResp),
    CommandId.GENERIC_NACK: _header_only(GenericNack),
    CommandId.SUBMIT_SM: _short_message(SubmitSm),
    CommandId.SUBMIT_SM_RESP: _message_id_resp(SubmitSmResp),
    CommandId.DELIVER_SM: _short_message(DeliverSm),
    CommandId.DELIVER_SM_RESP: _message_id_resp(DeliverSmResp),
    CommandId.DATA_SM: _dec_data_sm,
    CommandId.DATA_SM_RESP: _dec_data_sm_resp,
    CommandId.ALERT_NOTIFICATION: _dec_alert_notification,
}
# Plain int keys: the lookup key is the int unpacked from the header.
_DECODERS = {int(k): v for k, v in _DECODERS.items()}


def _command_name(cid: int) -> str:
    try:
        return CommandId(cid).name.lower()
    except ValueError:
        return f"command 0x{cid:08x}"


def decode(frame: bytes) -> AnyPdu:
    """Decode one complete frame (header included) into its PDU value.

    Args:
        frame: exactly one PDU, as returned by :meth:`FrameReader.next_frame`.

    Returns:
        The frozen PDU value.

    Raises:
        DecodeError: for any frame that is not a well-formed PDU of a supported command; it
            carries the header's command_id and sequence and the command_status to answer with.
    """
    if type(frame) is not bytes:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            frame = bytes(frame)  # slices of it become field values, which must be immutable bytes
        else:
            raise DecodeError(
                f"cannot decode a {type(frame).__name__}",
                command_id=0,
                sequence=0,
                command_status=CommandStatus.ESME_RSYSERR,
            )
    size = len(frame)
    if size < 16:
        padded = frame + bytes(16 - size)
        _, cid, _, seq = _unpack_header(padded)
        raise DecodeError(
            f"frame of {size} octets is shorter than a PDU header",
            command_id=cid if size >= 8 else 0,
            sequence=seq if size >= 16 else 0,
            command_status=CommandStatus.ESME_RINVCMDLEN,
        )
    length, cid, status, seq = _unpack_header(frame)
    if length != size:
        raise DecodeError(
            f"command_length {length} does not match the frame size {size}",
            command_id=cid,
            sequence=seq,
            command_status=CommandStatus.ESME_RINVCMDLEN,
        )
    decoder = _DECODERS.get(cid)
    if decoder is None:
        reason = "unsupported" if cid in UNSUPPORTED_COMMANDS else "unknown"
        raise DecodeError(
            f"{reason} {_command_name(cid)}",
            command_id=cid,
            sequence=seq,
            command_status=CommandStatus.ESME_RINVCMDID,
        )
    try:
        return decoder(frame, cid, status, seq)
    except _Malformed as exc:
        raise DecodeError(
            f"malformed {_command_name(cid)}: {exc}",
            command_id=cid,
            sequence=seq,
            command_status=exc.status,
        ) from None
    except (ValueError, IndexError, struct.error):
        # A missing NUL (str.index) or the body ending inside fixed octets (indexing).
        raise DecodeError(
            f"malformed {_command_name(cid)}: body ends inside a mandatory parameter"
            " (truncated field or C-string without NUL)",
            command_id=cid,
            sequence=seq,
            command_status=CommandStatus.ESME_RINVPARLEN,
        ) from None
