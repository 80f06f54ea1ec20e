"""PDU value -> frame encoding; the public entry point is :func:`gatewayd.smpp.codec.encode`.

The encoder is strict where smpplib is lenient: a value that does not fit its SMPP 3.4 field is
an :class:`EncodeError` naming the field, never truncated. submit_sm and deliver_sm have a hand
written fast path (one ``%``-format and one latin-1 encode for the whole mandatory body); every
PDU, and the fast path whenever it meets a bad value, goes through the field table below, which
checks field by field and so can name the culprit.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from gatewayd.smpp.errors import EncodeError
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
    Unbind,
    UnbindResp,
)

__all__ = ["encode", "FIELD_SPECS", "MAX_SEQUENCE", "MAX_SHORT_MESSAGE", "MAX_TLV_VALUE"]

#: Largest sequence_number (SMPP 3.4 section 3.2).
MAX_SEQUENCE = 0x7FFFFFFF
#: Largest short_message in octets (SMPP 3.4 section 5.2.22).
MAX_SHORT_MESSAGE = 254
#: Largest TLV value: its length field is 16 bits.
MAX_TLV_VALUE = 0xFFFF

_pack_header = struct.Struct(">LLLL").pack
_pack_tl = struct.Struct(">HH").pack

# Field kinds of the table.
_CSTR = "cstr"  # C-octet string, arg = maximum length without the NUL
_TIME = "time"  # C-octet string that is empty or exactly 16 characters (SMPP absolute/relative time)
_INT8 = "int8"  # one octet
_SM = "sm"  # short_message, preceded on the wire by its sm_length octet
_TLVS = "tlvs"

_Spec = tuple[tuple[str, str, int], ...]

_SHORT_MESSAGE_SPEC: _Spec = (
    ("service_type", _CSTR, 5),
    ("source_addr_ton", _INT8, 0),
    ("source_addr_npi", _INT8, 0),
    ("source_addr", _CSTR, 20),
    ("dest_addr_ton", _INT8, 0),
    ("dest_addr_npi", _INT8, 0),
    ("destination_addr", _CSTR, 20),
    ("esm_class", _INT8, 0),
    ("protocol_id", _INT8, 0),
    ("priority_flag", _INT8, 0),
    ("schedule_delivery_time", _TIME, 16),
    ("validity_period", _TIME, 16),
    ("registered_delivery", _INT8, 0),
    ("replace_if_present_flag", _INT8, 0),
    ("data_coding", _INT8, 0),
    ("sm_default_msg_id", _INT8, 0),
    ("short_message", _SM, MAX_SHORT_MESSAGE),
    ("tlvs", _TLVS, 0),
)

#: The body layout of every PDU class, in wire order: ``(field, kind, maximum)``.
FIELD_SPECS: dict[type, _Spec] = {
    Bind: (
        ("system_id", _CSTR, 15),
        ("password", _CSTR, 8),
        ("system_type", _CSTR, 12),
        ("interface_version", _INT8, 0),
        ("addr_ton", _INT8, 0),
        ("addr_npi", _INT8, 0),
        ("address_range", _CSTR, 40),
    ),
    BindResp: (("system_id", _CSTR, 15), ("tlvs", _TLVS, 0)),
    Outbind: (("system_id", _CSTR, 15), ("password", _CSTR, 8)),
    Unbind: (),
    UnbindResp: (),
    EnquireLink: (),
    EnquireLinkResp: (),
    GenericNack: (),
    SubmitSm: _SHORT_MESSAGE_SPEC,
    SubmitSmResp: (("message_id", _CSTR, 64),),
    DeliverSm: _SHORT_MESSAGE_SPEC,
    DeliverSmResp: (("message_id", _CSTR, 64),),
    DataSm: (
        ("service_type", _CSTR, 5),
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 64),
        ("dest_addr_ton", _INT8, 0),
        ("dest_addr_npi", _INT8, 0),
        ("destination_addr", _CSTR, 64),
        ("esm_class", _INT8, 0),
        ("registered_delivery", _INT8, 0),
        ("data_coding", _INT8, 0),
        ("tlvs", _TLVS, 0),
    ),
    DataSmResp: (("message_id", _CSTR, 64), ("tlvs", _TLVS, 0)),
    AlertNotification: (
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 64),
        ("esme_addr_ton", _INT8, 0),
        ("esme_addr_npi", _INT8, 0),
        ("esme_addr", _CSTR, 64),
        ("tlvs", _TLVS, 0),
    ),
}


def _cstr(name: str, value: Any, maximum: int, exact: bool = False) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(name, f"expected str, got {type(value).__name__}")
    if exact:
        if len(value) not in (0, maximum):
            raise EncodeError(name, f"must be empty or exactly {maximum} characters, got {len(value)}")
    elif len(value) > maximum:
        raise EncodeError(name, f"{len(value)} characters exceed the SMPP 3.4 maximum of {maximum}")
    if "\0" in value:
        raise EncodeError(name, "contains NUL")
    try:
        return value.encode("latin-1") + b"\0"
    except UnicodeEncodeError as exc:
        raise EncodeError(name, f"{value[exc.start]!r} is not a latin-1 character") from None


def _int8(name: str, value: Any) -> int:
    if not isinstance(value, int):
        raise EncodeError(name, f"expected int, got {type(value).__name__}")
    if not 0 <= value <= 0xFF:
        raise EncodeError(name, f"{value} is out of range 0..255")
    return value


def _octets(name: str, value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(name, f"expected bytes, got {type(value).__name__}")
    return bytes(value)


def _encode_tlvs(tlvs: Any) -> bytes:
    """Encode ``((tag, value), ...)``; fast, and precise about the culprit when it fails."""
    if not tlvs:
        return b""
    try:
        parts = []
        append = parts.append
        for tag, value in tlvs:
            if type(value) is not bytes:
                raise TypeError
            append(_pack_tl(tag, len(value)))
            append(value)
        return b"".join(parts)
    except (TypeError, ValueError, struct.error):
        pass
    if not isinstance(tlvs, (tuple, list)):
        raise EncodeError("tlvs", f"expected a tuple of (tag, value) pairs, got {type(tlvs).__name__}")
    parts = []
    for n, item in enumerate(tlvs):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise EncodeError("tlvs", f"item {n} is not a (tag, value) pair: {item!r}")
        tag, value = item
        if not isinstance(tag, int) or not 0 <= tag <= 0xFFFF:
            raise EncodeError("tlvs", f"item {n}: tag {tag!r} is not an int in 0..0xFFFF")
        value = _octets("tlvs", value)
        if len(value) > MAX_TLV_VALUE:
            raise EncodeError("tlvs", f"item {n}: value of {len(value)} octets exceeds {MAX_TLV_VALUE}")
        parts.append(_pack_tl(tag, len(value)))
        parts.append(value)
    return b"".join(parts)


def _encode_body(pdu: AnyPdu, spec: _Spec) -> bytes:
    """Encode a body field by field, raising EncodeError for the first invalid field."""
    parts: list[bytes] = []
    for name, kind, arg in spec:
        value = getattr(pdu, name)
        if kind is _CSTR:
            parts.append(_cstr(name, value, arg))
        elif kind is _INT8:
            parts.append(bytes((_int8(name, value),)))
        elif kind is _TIME:
            parts.append(_cstr(name, value, arg, exact=True))
        elif kind is _SM:
            value = _octets(name, value)
            if len(value) > arg:
                raise EncodeError(name, f"{len(value)} octets exceed the SMPP 3.4 maximum of {arg}")
            parts.append(bytes((len(value),)))
            parts.append(value)
        else:
            parts.append(_encode_tlvs(value))
    return b"".join(parts)


def _header(pdu: AnyPdu, body_length: int) -> bytes:
    seq = pdu.sequence
    status = pdu.command_status
    if not isinstance(seq, int) or not 0 <= seq <= MAX_SEQUENCE:
        raise EncodeError("sequence", f"{seq!r} is not an int in 0..0x7FFFFFFF")
    if not isinstance(status, int) or not 0 <= status <= 0xFFFFFFFF:
        raise EncodeError("command_status", f"{status!r} is not a 32-bit unsigned int")
    return _pack_header(16 + body_length, pdu.command_id, status, seq)


def _encode_generic(pdu: AnyPdu) -> bytes:
    body = _encode_body(pdu, FIELD_SPECS[type(pdu)])
    return _header(pdu, len(body)) + body


_SM_FORMAT = "%s\0%c%c%s\0%c%c%s\0%c%c%c%s\0%s\0%c%c%c%c%c"
_TIME_LENGTHS = (0, 16)


def _encode_short_message(pdu: SubmitSm | DeliverSm) -> bytes:
    st = pdu.service_type
    src = pdu.source_addr
    dst = pdu.destination_addr
    sched = pdu.schedule_delivery_time
    valid = pdu.validity_period
    sm = pdu.short_message
    octets = (
        pdu.source_addr_ton,
        pdu.source_addr_npi,
        pdu.dest_addr_ton,
        pdu.dest_addr_npi,
        pdu.esm_class,
        pdu.protocol_id,
        pdu.priority_flag,
        pdu.registered_delivery,
        pdu.replace_if_present_flag,
        pdu.data_coding,
        pdu.sm_default_msg_id,
    )
    try:
        # bytes() rejects non-ints and values outside 0..255 in one C call; join() rejects
        # non-str values, and the count catches a NUL inside any of the five C-strings.
        bytes(octets)
        if (
            len(st) > 5
            or len(src) > 20
            or len(dst) > 20
            or len(sched) not in _TIME_LENGTHS
            or len(valid) not in _TIME_LENGTHS
            or len(sm) > MAX_SHORT_MESSAGE
            or type(sm) is not bytes
            or "\0".join((st, src, dst, sched, valid)).count("\0") != 4
        ):
            return _encode_generic(pdu)
        body = (
            _SM_FORMAT
            % (
                st,
                octets[0],
                octets[1],
                src,
                octets[2],
                octets[3],
                dst,
                octets[4],
                octets[5],
                octets[6],
                sched,
                valid,
                octets[7],
                octets[8],
                octets[9],
                octets[10],
                len(sm),
            )
        ).encode("latin-1")
    except (TypeError, ValueError, OverflowError):
        return _encode_generic(pdu)
    tlvs = pdu.tlvs
    if tlvs:
        tail = _encode_tlvs(tlvs)
        return _header(pdu, len(body) + len(sm) + len(tail)) + body + sm + tail
    return _header(pdu, len(body) + len(sm)) + body + sm


def _encode_header_only(pdu: AnyPdu) -> bytes:
    return _header(pdu, 0)


_ENCODERS: dict[type, Callable[[Any], bytes]] = {cls: _encode_generic for cls in FIELD_SPECS}
_ENCODERS.update(
    {
        SubmitSm: _encode_short_message,
        DeliverSm: _encode_short_message,
        Unbind: _encode_header_only,
        UnbindResp: _encode_header_only,
        EnquireLink: _encode_header_only,
        EnquireLinkResp: _encode_header_only,
        GenericNack: _encode_header_only,
    }
)


def encode(pdu: AnyPdu) -> bytes:
    """Encode a PDU value into one frame, header included.

    Args:
        pdu: any PDU value from :mod:`gatewayd.smpp.pdus`; its ``sequence`` goes on the wire as is.

    Returns:
        The frame; its command_length equals its size.

    Raises:
        EncodeError: a field does not fit SMPP 3.4 (a C-string over its maximum, containing NUL
            or a non-latin-1 character; an octet outside 0..255; short_message over 254 octets;
            a bad TLV; a sequence outside 0..0x7FFFFFFF or a command_status outside 32 bits).
            ``field`` names the offending field.
    """
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise EncodeError("pdu", f"not a PDU value: {type(pdu).__name__}")
    return encoder(pdu)
