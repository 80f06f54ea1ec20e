"""Tests for gatewayd.smpp.udh: UDH parsing and building, and inbound concatenation info."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.smpp.constants import EsmClass, Tag
from gatewayd.smpp.text import ConcatMethod, decode_short_message, split_text
from gatewayd.smpp.udh import (
    IEI_CONCAT_8BIT,
    IEI_CONCAT_16BIT,
    IEI_PORTS_16BIT,
    ConcatInfo,
    build_udh,
    concat_info,
    parse_udh,
)

UDHI = int(EsmClass.UDHI)
octets = st.integers(min_value=0, max_value=255)
# Elements other than the concatenation ones, as they may precede or follow them.
other_ies = st.tuples(
    octets.filter(lambda i: i not in (IEI_CONCAT_8BIT, IEI_CONCAT_16BIT)),
    st.binary(max_size=8),
)
tlv_lists = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from([Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM]),
            st.integers(min_value=0, max_value=0xFFFF),
        ),
        st.binary(max_size=4),
    ),
    max_size=6,
)


def _sar(ref: bytes, total: bytes, seqnum: bytes) -> tuple[tuple[int, bytes], ...]:
    return (
        (Tag.SAR_MSG_REF_NUM, ref),
        (Tag.SAR_TOTAL_SEGMENTS, total),
        (Tag.SAR_SEGMENT_SEQNUM, seqnum),
    )


# --- parse_udh / build_udh -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "ies", "rest"),
    [
        (b"\x00hello", (), b"hello"),
        (b"\x05\x00\x03\x2a\x02\x01hi", ((0, b"\x2a\x02\x01"),), b"hi"),
        (
            b"\x0b\x05\x04\x0b\x84\x23\xf0\x00\x03\x2a\x02\x01hi",
            ((5, b"\x0b\x84\x23\xf0"), (0, b"\x2a\x02\x01")),
            b"hi",
        ),
        (b"\x02\x70\x00", ((0x70, b""),), b""),
    ],
)
def test_parse_udh_examples(data: bytes, ies: tuple[tuple[int, bytes], ...], rest: bytes) -> None:
    """parse_udh returns the elements in order and the user data after the header."""
    assert parse_udh(data) == (ies, rest)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x05\x00\x03\x2a",
        b"\x01\x00",
        b"\x03\x00\x03\x2a",
        b"\x04\x00\x00\x00",
    ],
)
def test_parse_udh_rejects_malformed(data: bytes) -> None:
    """An empty buffer, a UDHL past the end, or an element overrunning the header is ValueError."""
    with pytest.raises(ValueError):
        parse_udh(data)


@given(st.binary(max_size=300))
def test_parse_udh_raises_only_value_error(data: bytes) -> None:
    """On arbitrary octets parse_udh either parses or raises ValueError."""
    try:
        ies, rest = parse_udh(data)
    except ValueError:
        return
    assert build_udh(ies) + rest == data


@given(
    st.lists(st.tuples(octets, st.binary(max_size=20)), max_size=10),
    st.binary(max_size=50),
)
def test_build_then_parse_round_trip(ies: list[tuple[int, bytes]], rest: bytes) -> None:
    """parse_udh gives back the elements and user data that build_udh was given."""
    assert parse_udh(build_udh(ies) + rest) == (tuple(ies), rest)


def test_build_udh_examples_and_limits() -> None:
    """build_udh writes UDHL then each element; values and headers over 255 octets are refused."""
    assert build_udh([]) == b"\x00"
    assert build_udh([(0, b"\x01\x02\x01")]) == b"\x05\x00\x03\x01\x02\x01"
    with pytest.raises(ValueError):
        build_udh([(0x70, b"x" * 256)])
    with pytest.raises(ValueError):
        build_udh([(0x70, b"x" * 200), (0x71, b"y" * 60)])
    with pytest.raises(ValueError):
        build_udh([(256, b"")])


# --- concat_info -----------------------------------------------------------------------------


def test_concat_info_8bit_udh() -> None:
    """An 8-bit concatenation element gives reference, total and index, and is stripped."""
    info, data = concat_info(esm_class=UDHI, payload=b"\x05\x00\x03\x2a\x03\x02hello", tlvs=())
    assert info == ConcatInfo(0x2A, 3, 2, ConcatMethod.UDH8)
    assert data == b"hello"


def test_concat_info_16bit_after_port_addressing() -> None:
    """A 16-bit concatenation element is found after a port-addressing element."""
    payload = b"\x0c\x05\x04\x0b\x84\x23\xf0\x08\x04\x12\x34\x02\x01hi"
    info, data = concat_info(esm_class=UDHI | 0x04, payload=payload, tlvs=())
    assert info == ConcatInfo(0x1234, 2, 1, ConcatMethod.UDH16)
    assert data == b"hi"


def test_concat_info_sar_tlvs() -> None:
    """Without a UDH the three sar_* TLVs give the concatenation info."""
    tlvs = (
        (Tag.SAR_MSG_REF_NUM, b"\xbe\xef"),
        (Tag.RECEIPTED_MESSAGE_ID, b"x\x00"),
        (Tag.SAR_TOTAL_SEGMENTS, b"\x04"),
        (Tag.SAR_SEGMENT_SEQNUM, b"\x04"),
    )
    info, data = concat_info(esm_class=0, payload=b"text", tlvs=tlvs)
    assert info == ConcatInfo(0xBEEF, 4, 4, ConcatMethod.SAR)
    assert data == b"text"
    assert concat_info(esm_class=0, payload=b"text", tlvs=tlvs[:2]) == (None, b"text")


def test_concat_info_plain_message() -> None:
    """A message without UDHI and without sar_* TLVs has no concatenation info."""
    assert concat_info(esm_class=0, payload=b"\x05\x00\x03\x01\x02\x01", tlvs=()) == (
        None,
        b"\x05\x00\x03\x01\x02\x01",
    )


def test_concat_info_udh_without_concatenation() -> None:
    """A well-formed UDH without a concatenation element is still stripped from the text."""
    payload = b"\x06\x05\x04\x0b\x84\x23\xf0data"
    assert concat_info(esm_class=UDHI, payload=payload, tlvs=()) == (None, b"data")


@pytest.mark.parametrize(
    "payload",
    [b"\x05\x00\x03\x01\x00\x01x", b"\x05\x00\x03\x01\x02\x00x", b"\x05\x00\x03\x01\x02\x03x"],
)
def test_concat_info_absurd_numbers(payload: bytes) -> None:
    """Total 0, index 0 or index above total gives no concatenation info."""
    info, data = concat_info(esm_class=UDHI, payload=payload, tlvs=())
    assert info is None
    assert data == b"x"


@pytest.mark.parametrize(
    "payload", [b"", b"\x09\x00\x03\x01\x02\x01", b"\x05\x00\x07\x01\x02\x01hello", b"\x01\x00"]
)
def test_concat_info_malformed_udh(payload: bytes) -> None:
    """A malformed UDH gives no concatenation info and leaves the payload unchanged."""
    assert concat_info(esm_class=UDHI, payload=payload, tlvs=()) == (None, payload)


def test_concat_info_wrong_length_element_ignored() -> None:
    """A concatenation element of the wrong length is ignored rather than misread."""
    payload = b"\x06\x00\x04\x01\x02\x01\x00x"
    assert concat_info(esm_class=UDHI, payload=payload, tlvs=()) == (None, b"x")


@pytest.mark.parametrize(
    ("esm_class", "payload", "tlvs"),
    [
        (UDHI, b"\x05\x00\x03\x01\x00\x01x", ((Tag.SAR_MSG_REF_NUM, b"\x00\x01"),)),
        (0, b"x", _sar(b"\x00\x01", b"\x02", b"\x03")),
        (0, b"x", _sar(b"\x00\x00\x01", b"\x02", b"\x01")),
        (0, b"x", _sar(b"\x01", b"", b"\x01")),
        (0, b"x", _sar(b"\x01", b"\x00", b"\x00")),
    ],
)
def test_concat_info_bad_sar(
    esm_class: int, payload: bytes, tlvs: tuple[tuple[int, bytes], ...]
) -> None:
    """sar_* TLVs with wrong lengths or impossible numbers give no concatenation info."""
    info, _ = concat_info(esm_class=esm_class, payload=payload, tlvs=tlvs)
    assert info is None


@given(
    st.sampled_from([ConcatMethod.UDH8, ConcatMethod.UDH16]),
    st.integers(min_value=0, max_value=0xFFFF),
    st.integers(min_value=1, max_value=255).flatmap(
        lambda t: st.tuples(st.just(t), st.integers(min_value=1, max_value=t))
    ),
    st.lists(other_ies, max_size=4),
    st.data(),
)
def test_concat_element_found_in_any_position(
    method: ConcatMethod,
    reference: int,
    total_index: tuple[int, int],
    others: list[tuple[int, bytes]],
    data: st.DataObject,
) -> None:
    """The concatenation element is recognised wherever it sits among other elements."""
    total, index = total_index
    if method is ConcatMethod.UDH8:
        reference &= 0xFF
        element = (IEI_CONCAT_8BIT, bytes([reference, total, index]))
    else:
        element = (IEI_CONCAT_16BIT, reference.to_bytes(2, "big") + bytes([total, index]))
    position = data.draw(st.integers(min_value=0, max_value=len(others)))
    ies = [*others[:position], element, *others[position:]]
    info, rest = concat_info(esm_class=UDHI, payload=build_udh(ies) + b"body", tlvs=())
    assert info == ConcatInfo(reference, total, index, method)
    assert rest == b"body"


@given(
    st.permutations(
        [(IEI_PORTS_16BIT, b"\x0b\x84\x23\xf0"), (0x70, b""), (IEI_CONCAT_8BIT, b"\x07\x02\x02")]
    )
)
def test_concat_element_order_does_not_matter(ies: list[tuple[int, bytes]]) -> None:
    """Every ordering of the same elements gives the same concatenation info."""
    info, rest = concat_info(esm_class=UDHI, payload=build_udh(ies) + b"!", tlvs=())
    assert info == ConcatInfo(7, 2, 2, ConcatMethod.UDH8)
    assert rest == b"!"


@given(
    st.integers(min_value=-1, max_value=0x1FF),
    st.one_of(st.binary(max_size=300), st.binary(max_size=20).map(lambda b: bytes([len(b)]) + b)),
    tlv_lists,
)
def test_concat_info_never_raises(
    esm_class: int, payload: bytes, tlvs: list[tuple[int, bytes]]
) -> None:
    """concat_info returns sane info or None for any input, never an exception."""
    info, data = concat_info(esm_class=esm_class, payload=payload, tlvs=tlvs)
    assert isinstance(data, bytes)
    assert data == payload or payload.endswith(data)
    if info is not None:
        assert 1 <= info.index <= info.total <= 255


@given(
    st.text(
        st.one_of(st.characters(codec="utf-8"), st.sampled_from("a\u20ac\U0001f600")), max_size=600
    ),
    st.sampled_from(list(ConcatMethod)),
    st.integers(min_value=0, max_value=0xFFFF),
)
def test_concat_info_parses_split_text(text: str, method: ConcatMethod, reference: int) -> None:
    """Parts built by split_text are recognised by concat_info and reassemble to the text."""
    parts = split_text(text, reference=reference, method=method)
    infos = []
    pieces = []
    for part in parts:
        info, data = concat_info(
            esm_class=part.esm_class, payload=part.short_message, tlvs=part.tlvs
        )
        infos.append(info)
        pieces.append(decode_short_message(data, part.data_coding))
    if len(parts) == 1:
        assert infos == [None]
    else:
        mask = 0xFF if method is ConcatMethod.UDH8 else 0xFFFF
        total = len(parts)
        expected = [ConcatInfo(reference & mask, total, i, method) for i in range(1, total + 1)]
        assert infos == expected
    assert "".join(pieces) == text
