"""Tests of the SMPP wire codec: round trips, smpplib differential tests, fuzzing, framing."""

from __future__ import annotations

import logging
import struct
from typing import Any, Iterator

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from smpplib import command as smpplib_command
from smpplib import consts as smpplib_consts
from smpplib import smpp

from gatewayd.smpp.codec import (
    DEFAULT_MAX_PDU_LENGTH,
    FIELD_SPECS,
    UNSUPPORTED_COMMANDS,
    MIN_PDU_LENGTH,
    FrameReader,
    decode,
    encode,
    peek_header,
)
from gatewayd.smpp.constants import BindMode, CommandId, CommandStatus, Tag
from gatewayd.smpp.errors import DecodeError, EncodeError, FramingError
from gatewayd.smpp.pdus import (
    AlertNotification,
    Bind,
    BindResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    GenericNack,
    Outbind,
    SubmitSm,
    SubmitSmResp,
    find_tlv,
)
from tests import strategies as s


@pytest.fixture(autouse=True)
def _quiet_smpplib() -> Iterator[None]:
    logger = logging.getLogger("smpplib")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


class SeqGen:
    """The two members smpplib's PDU layer needs from a client."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence


def frame_of(command_id: int, body: bytes, *, sequence: int = 1, status: int = 0) -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command_id, status, sequence) + body


def with_length(frame: bytes, length: int | None = None) -> bytes:
    """The frame with its command_length rewritten (to its own size by default)."""
    return struct.pack(">L", len(frame) if length is None else length) + frame[4:]


def smpplib_name(pdu: Any) -> str:
    return CommandId(pdu.command_id).name.lower()


# --- round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(s.PDU_STRATEGIES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip_every_class(cls: type, data: st.DataObject) -> None:
    """Every PDU class decodes back to an equal value after encoding."""
    pdu = data.draw(s.PDU_STRATEGIES[cls])
    frame = encode(pdu)
    assert peek_header(frame) == (len(frame), pdu.command_id, pdu.command_status, pdu.sequence)
    assert decode(frame) == pdu


@given(s.pdus(latin1=True))
def test_round_trip_latin1(pdu: Any) -> None:
    """C-strings using all of latin-1 survive a round trip unchanged."""
    back = decode(encode(pdu))
    assert back == pdu
    assert type(back) is type(pdu)


@pytest.mark.parametrize("mode", list(BindMode))
def test_bind_mode_drives_command_id(mode: BindMode) -> None:
    """A bind and its response decode with the mode their command_id names."""
    bind = decode(encode(Bind(sequence=1, mode=mode, system_id="esme")))
    resp = decode(encode(BindResp(sequence=1, mode=mode, system_id="smsc")))
    assert isinstance(bind, Bind) and bind.mode is mode
    assert isinstance(resp, BindResp) and resp.mode is mode


def test_decoded_values_are_ordinary_instances() -> None:
    """Decoded values are frozen, hashable and equal to values built by hand."""
    pdu = DeliverSm(sequence=9, source_addr="4477", short_message=b"hi", tlvs=((Tag.MESSAGE_STATE, b"\x02"),))
    back = decode(encode(pdu))
    assert back == pdu and hash(back) == hash(pdu) and repr(back) == repr(pdu)
    assert type(back.short_message) is bytes and type(back.tlvs[0][1]) is bytes
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        back.sequence = 1  # type: ignore[misc]


# --- differential tests against smpplib ---------------------------------------------------


def _smpplib_tlv_params(name: str) -> dict[str, Any]:
    cls = type(smpp.make_pdu(name, client=SeqGen()))
    return {
        field: param
        for field, param in cls.params.items()
        if field in smpplib_consts.OPTIONAL_PARAMS and param.type is not smpplib_command.flag
    }


def _smpplib_tlv_value(param: Any) -> st.SearchStrategy[Any]:
    """A value for an smpplib make_pdu TLV kwarg that smpplib encodes and parses faithfully."""
    if param.type is int:
        return st.integers(0, (1 << (8 * param.size)) - 1)
    if param.type is str:
        return st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=param.max - 2)
    return st.binary(min_size=1, max_size=getattr(param, "size", None) or 40)


def smpplib_tlvs(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Distinct TLVs (as smpplib kwargs) from the table smpplib knows for command ``name``."""
    params = _smpplib_tlv_params(name)
    if not params:
        return st.just({})
    return st.dictionaries(st.sampled_from(sorted(params)), st.nothing(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: _smpplib_tlv_value(params[k]) for k in keys})
    )


def tlv_wire(name: str, kwargs: dict[str, Any]) -> dict[int, bytes]:
    """The (tag -> value) octets smpplib puts on the wire for TLV kwargs."""
    params = _smpplib_tlv_params(name)
    wire = {}
    for field, value in kwargs.items():
        param = params[field]
        if param.type is int:
            octets = value.to_bytes(param.size, "big")
        elif param.type is str:
            octets = value.encode() + b"\0"
        else:
            octets = value
        wire[smpplib_consts.OPTIONAL_PARAMS[field]] = octets
    return wire


def tlv_kwargs(name: str, tlvs: dict[int, bytes]) -> dict[str, Any]:
    """What smpplib's parser makes of TLVs written by :func:`tlv_wire`."""
    params = _smpplib_tlv_params(name)
    by_tag = {code: field for field, code in smpplib_consts.OPTIONAL_PARAMS.items()}
    out = {}
    for tag, octets in tlvs.items():
        field = by_tag[tag]
        param = params[field]
        if param.type is int:
            out[field] = int.from_bytes(octets, "big")
        elif param.type is str:
            out[field] = octets[:-1].decode()
        else:
            out[field] = octets
    return out


_DIFFERENTIAL = [
    (SubmitSm, "submit_sm"),
    (DeliverSm, "deliver_sm"),
    (Bind, "bind"),
    (BindResp, "bind_resp"),
    (SubmitSmResp, "submit_sm_resp"),
    (DeliverSmResp, "deliver_sm_resp"),
    (DataSm, "data_sm"),
    (DataSmResp, "data_sm_resp"),
    (AlertNotification, "alert_notification"),
    (GenericNack, "generic_nack"),
    (EnquireLink, "enquire_link"),
]
_CSTRING_FIELDS = {
    name
    for spec in FIELD_SPECS.values()
    for name, kind, _ in spec
    if kind in ("cstr", "time")
}


def _mandatory_fields(pdu: Any) -> dict[str, Any]:
    skip = {"sequence", "command_status", "mode", "tlvs"}
    return {a.name: getattr(pdu, a.name) for a in attrs.fields(type(pdu)) if a.name not in skip}


@st.composite
def _ours_with_smpplib_tlvs(draw: st.DrawFn, cls: type) -> Any:
    pdu = draw(s.PDU_STRATEGIES[cls])
    if "tlvs" not in attrs.fields_dict(cls):
        return pdu
    wire = tlv_wire(smpplib_name(pdu), draw(smpplib_tlvs(smpplib_name(pdu))))
    return attrs.evolve(pdu, tlvs=tuple(wire.items()))


@pytest.mark.parametrize("cls", [c for c, _ in _DIFFERENTIAL], ids=[n for _, n in _DIFFERENTIAL])
@given(data=st.data())
def test_smpplib_parses_what_we_encode(cls: type, data: st.DataObject) -> None:
    """smpplib's parse_pdu reads the same field values from our encoding as we put in."""
    pdu = data.draw(_ours_with_smpplib_tlvs(cls))
    parsed = smpp.parse_pdu(encode(pdu), client=SeqGen(), allow_unknown_opt_params=True)
    assert parsed.command == smpplib_name(pdu)
    assert (parsed.sequence, parsed.status) == (pdu.sequence, pdu.command_status)
    for field, value in _mandatory_fields(pdu).items():
        expected = value.encode("latin-1") if field in _CSTRING_FIELDS else value
        got = getattr(parsed, field)
        if field == "short_message" and got is None:
            got = b""  # smpplib stops parsing at the end of the body, leaving the empty last field unset
        assert got == expected, field
    for field, value in tlv_kwargs(parsed.command, dict(getattr(pdu, "tlvs", ()))).items():
        assert getattr(parsed, field) == value, field


@pytest.mark.parametrize("cls", [c for c, _ in _DIFFERENTIAL], ids=[n for _, n in _DIFFERENTIAL])
@given(data=st.data())
def test_we_decode_what_smpplib_generates(cls: type, data: st.DataObject) -> None:
    """Our decoder reads the same values from smpplib's make_pdu().generate() as it was given."""
    pdu = data.draw(s.PDU_STRATEGIES[cls])
    if isinstance(pdu, Bind):
        pdu = attrs.evolve(pdu, interface_version=0x34)  # smpplib always sends 0x34
    if isinstance(pdu, (DataSm, AlertNotification)):
        # smpplib caps these addresses at 20 characters (SMPP 3.4 allows 64) and truncates beyond.
        addresses = ("source_addr", "destination_addr", "esme_addr")
        pdu = attrs.evolve(pdu, **{f: getattr(pdu, f)[:20] for f in addresses if hasattr(pdu, f)})
    name = smpplib_name(pdu)
    kwargs = _mandatory_fields(pdu)
    tlvs = data.draw(smpplib_tlvs(name)) if "tlvs" in attrs.fields_dict(cls) else {}
    if kwargs.get("short_message"):
        tlvs.pop("message_payload", None)  # smpplib refuses both at once
    made = smpp.make_pdu(name, client=SeqGen(), **kwargs, **tlvs)
    made.sequence = pdu.sequence
    made.status = pdu.command_status
    decoded = decode(made.generate())
    assert type(decoded) is type(pdu)
    if "tlvs" in attrs.fields_dict(cls):
        assert decoded == attrs.evolve(pdu, tlvs=decoded.tlvs)
        assert len(decoded.tlvs) == len(tlvs)
        assert dict(decoded.tlvs) == tlv_wire(name, tlvs)
    else:
        assert decoded == pdu


def test_smpplib_receipt_decodes() -> None:
    """A delivery receipt built by smpplib decodes with its receipted_message_id and message_state."""
    made = smpp.make_pdu(
        "deliver_sm",
        client=SeqGen(),
        source_addr="447700900123",
        destination_addr="ACME",
        esm_class=0x04,
        short_message=b"id:5f3a9c sub:001 dlvrd:001 stat:DELIVRD err:000 text:Hi",
        receipted_message_id="5f3a9c",
        message_state=2,
        network_error_code=b"\x03\x00\x00",
    )
    made.sequence = 4242
    pdu = decode(made.generate())
    assert isinstance(pdu, DeliverSm) and pdu.is_receipt and pdu.sequence == 4242
    assert find_tlv(pdu.tlvs, Tag.RECEIPTED_MESSAGE_ID) == b"5f3a9c\0"
    assert find_tlv(pdu.tlvs, Tag.MESSAGE_STATE) == b"\x02"
    assert find_tlv(pdu.tlvs, Tag.NETWORK_ERROR_CODE) == b"\x03\x00\x00"


# --- smpplib pitfalls handled -------------------------------------------------------------

_DLR_BODY = b"\0\x01\x01447700900123\0\x05\x00ACME\0\x04\x00\x00\0\0\x00\x00\x00\x00\x00"


def test_ussd_service_op_in_deliver_sm_is_kept() -> None:
    """A ussd_service_op TLV in deliver_sm is kept, where smpplib raises KeyError."""
    frame = frame_of(CommandId.DELIVER_SM, _DLR_BODY + struct.pack(">HHB", Tag.USSD_SERVICE_OP, 1, 2))
    with pytest.raises(KeyError):
        smpp.parse_pdu(frame, client=SeqGen(), allow_unknown_opt_params=True)
    assert decode(frame).tlvs == ((Tag.USSD_SERVICE_OP, b"\x02"),)


def test_two_octet_message_state_does_not_desync_the_tlv_stream() -> None:
    """A message_state TLV of length 2 does not swallow the receipted_message_id after it."""
    tlvs = struct.pack(">HHH", Tag.MESSAGE_STATE, 2, 2) + struct.pack(">HH", Tag.RECEIPTED_MESSAGE_ID, 4) + b"abc\0"
    frame = frame_of(CommandId.DELIVER_SM, _DLR_BODY + tlvs)
    assert getattr(smpp.parse_pdu(frame, client=SeqGen(), allow_unknown_opt_params=True), "receipted_message_id") is None
    assert decode(frame).tlvs == ((Tag.MESSAGE_STATE, b"\x00\x02"), (Tag.RECEIPTED_MESSAGE_ID, b"abc\0"))


def test_cstring_tlv_without_nul_is_kept_whole() -> None:
    """A receipted_message_id TLV without a trailing NUL keeps all of its octets."""
    frame = frame_of(CommandId.DELIVER_SM, _DLR_BODY + struct.pack(">HH", Tag.RECEIPTED_MESSAGE_ID, 3) + b"abc")
    assert smpp.parse_pdu(frame, client=SeqGen()).receipted_message_id == b"ab"
    assert decode(frame).tlvs == ((Tag.RECEIPTED_MESSAGE_ID, b"abc"),)


def test_generic_nack_with_a_body_decodes() -> None:
    """A generic_nack carrying a body decodes, the body ignored."""
    frame = frame_of(CommandId.GENERIC_NACK, b"\x00\x1e\x00\x02x\0", sequence=7, status=CommandStatus.ESME_RINVCMDID)
    assert decode(frame) == GenericNack(sequence=7, command_status=CommandStatus.ESME_RINVCMDID)


def test_unknown_and_repeated_tlvs_are_kept_in_wire_order() -> None:
    """Unknown and repeated TLVs are all kept, in the order they came."""
    tlvs = ((0x3177, b""), (0x1400, b"vendor"), (0x3177, b"\xff" * 300), (Tag.MESSAGE_STATE, b"\x02"))
    assert decode(encode(DeliverSm(sequence=1, tlvs=tlvs))).tlvs == tlvs


def test_overlong_cstring_is_accepted_on_decode() -> None:
    """A C-string over its SMPP 3.4 maximum still decodes (liberal in what we accept)."""
    body = b"\0\x01\x01" + b"4" * 40 + b"\0\x05\x00ACME\0\x00\x00\x00\0\0\x00\x00\x00\x00\x02hi"
    pdu = decode(frame_of(CommandId.DELIVER_SM, body))
    assert isinstance(pdu, DeliverSm) and pdu.source_addr == "4" * 40 and pdu.short_message == b"hi"


@pytest.mark.parametrize("cid", [CommandId.BIND_TRANSMITTER_RESP, CommandId.BIND_RECEIVER_RESP, CommandId.BIND_TRANSCEIVER_RESP])
def test_header_only_bind_resp_is_accepted(cid: CommandId) -> None:
    """A bind_*_resp rejecting the bind with no body decodes with an empty system_id."""
    pdu = decode(frame_of(cid, b"", sequence=3, status=CommandStatus.ESME_RBINDFAIL))
    assert isinstance(pdu, BindResp) and pdu.system_id == "" and pdu.command_id == cid
    assert pdu.command_status == CommandStatus.ESME_RBINDFAIL


@pytest.mark.parametrize("body", [b"", b"\0"])
def test_empty_message_id_responses(body: bytes) -> None:
    """submit_sm_resp, deliver_sm_resp and data_sm_resp accept an empty body or a lone NUL."""
    assert decode(frame_of(CommandId.SUBMIT_SM_RESP, body, status=0x58)) == SubmitSmResp(sequence=1, command_status=0x58)
    assert decode(frame_of(CommandId.DELIVER_SM_RESP, body)) == DeliverSmResp(sequence=1)
    assert decode(frame_of(CommandId.DATA_SM_RESP, body)) == DataSmResp(sequence=1)


def test_outbind_decodes() -> None:
    """outbind decodes its system_id and password."""
    assert decode(frame_of(CommandId.OUTBIND, b"smsc\0pw\0", sequence=5)) == Outbind(sequence=5, system_id="smsc", password="pw")


# --- malformed input ----------------------------------------------------------------------


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes either decode or raise DecodeError, nothing else."""
    try:
        decode(data)
    except DecodeError:
        pass


@given(st.sampled_from(list(CommandId)), st.integers(0, 0x7FFFFFFF), st.binary(max_size=300))
def test_random_bodies_raise_decode_error_with_the_header(cid: int, seq: int, body: bytes) -> None:
    """A random body under a real command id decodes or raises DecodeError naming its header."""
    try:
        decode(frame_of(cid, body, sequence=seq))
    except DecodeError as exc:
        assert (exc.command_id, exc.sequence) == (cid, seq)
        assert exc.command_status in set(CommandStatus) - {CommandStatus.ESME_ROK}


@given(s.pdus(), st.data())
def test_truncated_frames_raise_decode_error(pdu: Any, data: st.DataObject) -> None:
    """A valid frame cut short (length fixed up) decodes or raises DecodeError with its sequence."""
    frame = encode(pdu)
    cut = with_length(frame[: data.draw(st.integers(16, len(frame)))])
    try:
        decode(cut)
    except DecodeError as exc:
        assert exc.sequence == pdu.sequence and exc.command_id == pdu.command_id


@given(s.pdus(), st.integers(0, 0xFFFFFFFF))
def test_command_length_mismatch_is_rinvcmdlen(pdu: Any, length: int) -> None:
    """A command_length different from the frame size is ESME_RINVCMDLEN."""
    frame = encode(pdu)
    assume(length != len(frame))
    with pytest.raises(DecodeError) as info:
        decode(with_length(frame, length))
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.sequence == pdu.sequence


@given(st.sampled_from([s.submit_sms(), s.deliver_sms()]).flatmap(lambda x: x), st.integers(1, 255))
def test_sm_length_overrun_is_rinvmsglen(pdu: Any, extra: int) -> None:
    """An sm_length reaching past the end of the PDU is ESME_RINVMSGLEN."""
    pdu = attrs.evolve(pdu, tlvs=())
    frame = bytearray(encode(pdu))
    at = len(frame) - len(pdu.short_message) - 1
    assume(frame[at] + extra <= 255)
    frame[at] += extra
    with pytest.raises(DecodeError) as info:
        decode(bytes(frame))
    assert info.value.command_status == CommandStatus.ESME_RINVMSGLEN
    assert info.value.sequence == pdu.sequence


_WITH_TLVS = st.one_of(s.submit_sms(), s.deliver_sms(), s.data_sms(), s.data_sm_resps(), s.bind_resps(), s.alert_notifications())


@given(_WITH_TLVS, st.binary(min_size=0, max_size=30), st.integers(1, 1000))
def test_tlv_value_overrun_is_rinvoptparstream(pdu: Any, value: bytes, extra: int) -> None:
    """A TLV whose length reaches past the end of the PDU is ESME_RINVOPTPARSTREAM."""
    frame = with_length(encode(pdu) + struct.pack(">HH", 0x1E, len(value) + extra) + value)
    with pytest.raises(DecodeError) as info:
        decode(frame)
    assert info.value.command_status == CommandStatus.ESME_RINVOPTPARSTREAM
    assert info.value.sequence == pdu.sequence


@given(_WITH_TLVS, st.binary(min_size=1, max_size=3))
def test_truncated_tlv_header_is_rinvoptparstream(pdu: Any, stub: bytes) -> None:
    """One to three stray octets after the last TLV are ESME_RINVOPTPARSTREAM."""
    with pytest.raises(DecodeError) as info:
        decode(with_length(encode(pdu) + stub))
    assert info.value.command_status == CommandStatus.ESME_RINVOPTPARSTREAM
    assert info.value.sequence == pdu.sequence


@given(st.one_of(s.submit_sm_resps(), s.deliver_sm_resps(), s.data_sm_resps(), s.bind_resps(), s.outbinds(), s.binds()))
def test_missing_nul_is_rinvparlen(pdu: Any) -> None:
    """A last C-string without its NUL (nothing after it) is ESME_RINVPARLEN."""
    pdu = attrs.evolve(pdu, tlvs=()) if "tlvs" in attrs.fields_dict(type(pdu)) else pdu
    frame = encode(pdu)
    assume(len(frame) > 17)  # a lone NUL removed leaves the accepted empty body
    with pytest.raises(DecodeError) as info:
        decode(with_length(frame[:-1]))
    assert info.value.command_status == CommandStatus.ESME_RINVPARLEN
    assert info.value.sequence == pdu.sequence


@pytest.mark.parametrize("cid", [0x99, 0x80000099, 0x00010200, *sorted(UNSUPPORTED_COMMANDS)])
def test_unknown_and_unsupported_commands_are_rinvcmdid(cid: int) -> None:
    """Unknown command ids and query_sm/cancel_sm/replace_sm/submit_multi are ESME_RINVCMDID."""
    with pytest.raises(DecodeError) as info:
        decode(frame_of(cid, b"abc\0", sequence=12345))
    assert (info.value.command_id, info.value.sequence) == (cid, 12345)
    assert info.value.command_status == CommandStatus.ESME_RINVCMDID


def test_short_input_is_rinvcmdlen() -> None:
    """Input shorter than a header raises DecodeError ESME_RINVCMDLEN, as does peek_header."""
    for data in (b"", b"\x00\x00\x00\x0c", bytes(15)):
        with pytest.raises(DecodeError) as info:
            decode(data)
        assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
        with pytest.raises(DecodeError):
            peek_header(data)


def test_bytes_like_input_decodes_to_bytes_values() -> None:
    """A bytearray or memoryview frame decodes to the same value, with bytes inside."""
    pdu = SubmitSm(sequence=2, short_message=b"x", tlvs=((1, b"y"),))
    frame = encode(pdu)
    for view in (bytearray(frame), memoryview(frame)):
        back = decode(view)  # type: ignore[arg-type]
        assert back == pdu and type(back.short_message) is bytes


# --- FrameReader --------------------------------------------------------------------------


@given(st.lists(s.pdus(), max_size=8), st.data())
def test_frame_reader_reassembles_any_chunking(pdus: list[Any], data: st.DataObject) -> None:
    """Any split of a stream of frames yields exactly those frames, in order."""
    frames = [encode(p) for p in pdus]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    reader = FrameReader()
    out = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
        reader.feed(stream[start:stop])
        while (frame := reader.next_frame()) is not None:
            out.append(frame)
    assert out == frames
    assert reader.pending == 0


def test_frame_reader_many_small_frames_in_one_feed() -> None:
    """A feed holding 100,000 small frames yields them all."""
    one = encode(EnquireLink(sequence=1))
    reader = FrameReader()
    reader.feed(one * 100_000 + one[:7])
    count = 0
    while reader.next_frame() is not None:
        count += 1
    assert count == 100_000 and reader.pending == 7
    reader.feed(one[7:])
    assert reader.next_frame() == one


@pytest.mark.parametrize("length", [0, 1, 15])
def test_frame_reader_rejects_short_command_length(length: int) -> None:
    """A command_length below 16 is a FramingError carrying the length and the sequence."""
    reader = FrameReader()
    reader.feed(struct.pack(">LLLL", length, 0x15, 0, 77))
    with pytest.raises(FramingError) as info:
        reader.next_frame()
    assert (info.value.command_length, info.value.sequence) == (length, 77)
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN


def test_frame_reader_rejects_long_command_length() -> None:
    """A command_length above max_length is a FramingError, with no sequence before 16 octets."""
    reader = FrameReader()
    reader.feed(struct.pack(">L", DEFAULT_MAX_PDU_LENGTH + 1) + b"\x00\x00")
    with pytest.raises(FramingError) as info:
        reader.next_frame()
    assert info.value.command_length == DEFAULT_MAX_PDU_LENGTH + 1 and info.value.sequence is None


@pytest.mark.parametrize("max_length", [MIN_PDU_LENGTH, 100, DEFAULT_MAX_PDU_LENGTH])
def test_frame_reader_accepts_exactly_max_length(max_length: int) -> None:
    """A frame of exactly max_length octets is returned whole."""
    frame = frame_of(CommandId.DATA_SM, bytes(max_length - 16))
    reader = FrameReader(max_length)
    reader.feed(frame[:-1])
    assert reader.next_frame() is None
    reader.feed(frame[-1:])
    assert reader.next_frame() == frame
    reader.feed(with_length(frame + b"x"))
    with pytest.raises(FramingError):
        reader.next_frame()


# --- strict encoder -----------------------------------------------------------------------

_TOO_LONG = [
    (Bind, "system_id", 15),
    (Bind, "password", 8),
    (Bind, "system_type", 12),
    (Bind, "address_range", 40),
    (BindResp, "system_id", 15),
    (Outbind, "system_id", 15),
    (Outbind, "password", 8),
    (SubmitSm, "service_type", 5),
    (SubmitSm, "source_addr", 20),
    (SubmitSm, "destination_addr", 20),
    (DeliverSm, "source_addr", 20),
    (DeliverSm, "destination_addr", 20),
    (DataSm, "service_type", 5),
    (DataSm, "source_addr", 64),
    (DataSm, "destination_addr", 64),
    (AlertNotification, "source_addr", 64),
    (AlertNotification, "esme_addr", 64),
    (SubmitSmResp, "message_id", 64),
    (DeliverSmResp, "message_id", 64),
    (DataSmResp, "message_id", 64),
]


@pytest.mark.parametrize(("cls", "field", "maximum"), _TOO_LONG, ids=lambda v: getattr(v, "__name__", str(v)))
def test_encode_rejects_overlong_cstrings(cls: type, field: str, maximum: int) -> None:
    """A C-string one character over its maximum is an EncodeError naming it; the maximum encodes."""
    assert decode(encode(cls(**{field: "9" * maximum}))) == cls(**{field: "9" * maximum})
    with pytest.raises(EncodeError) as info:
        encode(cls(**{field: "9" * (maximum + 1)}))
    assert info.value.field == field


@pytest.mark.parametrize("cls", [SubmitSm, DeliverSm])
@pytest.mark.parametrize("field", ["schedule_delivery_time", "validity_period"])
@pytest.mark.parametrize("size", [1, 15, 17])
def test_encode_rejects_times_not_16_characters(cls: type, field: str, size: int) -> None:
    """An SMPP time that is neither empty nor exactly 16 characters is an EncodeError."""
    with pytest.raises(EncodeError) as info:
        encode(cls(**{field: "0" * size}))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (SubmitSm(source_addr="12\x0034"), "source_addr"),
        (Bind(system_id="a\0"), "system_id"),
        (SubmitSm(destination_addr="€"), "destination_addr"),
        (DataSm(source_addr="ā"), "source_addr"),
        (SubmitSm(esm_class=256), "esm_class"),
        (DeliverSm(data_coding=-1), "data_coding"),
        (Bind(interface_version=0x100), "interface_version"),
        (AlertNotification(esme_addr_ton=300), "esme_addr_ton"),
        (SubmitSm(short_message=bytes(255)), "short_message"),
        (SubmitSm(short_message="text"), "short_message"),  # type: ignore[arg-type]
        (SubmitSm(source_addr=b"123"), "source_addr"),  # type: ignore[arg-type]
        (SubmitSm(tlvs=((Tag.MESSAGE_PAYLOAD, bytes(65536)),)), "tlvs"),
        (DataSm(tlvs=((0x10000, b""),)), "tlvs"),
        (DataSm(tlvs=((-1, b""),)), "tlvs"),
        (DataSmResp(tlvs=((1, "x"),)), "tlvs"),  # type: ignore[arg-type]
        (EnquireLink(sequence=0x80000000), "sequence"),
        (SubmitSm(sequence=-1), "sequence"),
        (SubmitSmResp(command_status=1 << 32), "command_status"),
        (GenericNack(command_status=-1), "command_status"),
    ],
    ids=repr,
)
def test_encode_rejects_invalid_values(pdu: Any, field: str) -> None:
    """An unencodable value is an EncodeError naming its field."""
    with pytest.raises(EncodeError) as info:
        encode(pdu)
    assert info.value.field == field


def test_encode_accepts_limits() -> None:
    """Values at the edge of their range encode and decode unchanged."""
    pdu = SubmitSm(
        sequence=0x7FFFFFFF,
        esm_class=255,
        short_message=bytes(254),
        schedule_delivery_time="251122103000000+",
        tlvs=((0xFFFF, bytes(65535)), (Tag.MESSAGE_STATE, b"\x02")),
    )
    assert decode(encode(pdu)) == pdu


def test_smpplib_truncates_silently_where_we_refuse() -> None:
    """smpplib cuts an over-long destination_addr to 20 digits; our encoder refuses it."""
    address = "4477009001234567890123"
    made = smpp.make_pdu("submit_sm", client=SeqGen(), source_addr="ACME", destination_addr=address, short_message=b"x")
    assert decode(made.generate()).destination_addr == address[:20]
    with pytest.raises(EncodeError) as info:
        encode(SubmitSm(source_addr="ACME", destination_addr=address, short_message=b"x"))
    assert info.value.field == "destination_addr"
