"""Tests for gatewayd.smpp.text: GSM 03.38 and UCS-2 codecs, the splitter and references."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gatewayd.smpp.constants import DataCoding, EsmClass, Tag
from gatewayd.smpp.text import (
    GSM_CHARACTERS,
    ConcatMethod,
    ConcatReferences,
    MessagePart,
    UnencodableError,
    choose_coding,
    decode_gsm,
    decode_short_message,
    decode_ucs2,
    encode_gsm,
    encode_ucs2,
    gsm_septets,
    is_gsm,
    split_text,
)

EXTENSION_CHARS = "\x0c^{}\\[~]|\u20ac"
gsm_chars = st.sampled_from(sorted(GSM_CHARACTERS))
# Extension characters are few among 138; weight them so escape pairs land on part boundaries.
gsm_text = st.text(st.one_of(gsm_chars, st.sampled_from(EXTENSION_CHARS)), max_size=700)
astral = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF)
any_text = st.text(st.one_of(st.characters(codec="utf-8"), astral), max_size=500)
methods = st.sampled_from(list(ConcatMethod))
references = st.integers(min_value=0, max_value=2**32)

UDH_LENGTH = {ConcatMethod.UDH8: 6, ConcatMethod.UDH16: 7, ConcatMethod.SAR: 0}
GSM_PART_LIMIT = {ConcatMethod.UDH8: 153, ConcatMethod.UDH16: 152, ConcatMethod.SAR: 153}
UCS2_PART_LIMIT = {ConcatMethod.UDH8: 134, ConcatMethod.UDH16: 132, ConcatMethod.SAR: 134}


# --- GSM 03.38 table -------------------------------------------------------------------------

DEFAULT_ALPHABET_BY_NAME = [
    (0x00, "COMMERCIAL AT"),
    (0x01, "POUND SIGN"),
    (0x02, "DOLLAR SIGN"),
    (0x03, "YEN SIGN"),
    (0x04, "LATIN SMALL LETTER E WITH GRAVE"),
    (0x05, "LATIN SMALL LETTER E WITH ACUTE"),
    (0x06, "LATIN SMALL LETTER U WITH GRAVE"),
    (0x07, "LATIN SMALL LETTER I WITH GRAVE"),
    (0x08, "LATIN SMALL LETTER O WITH GRAVE"),
    (0x09, "LATIN CAPITAL LETTER C WITH CEDILLA"),
    (0x0B, "LATIN CAPITAL LETTER O WITH STROKE"),
    (0x0C, "LATIN SMALL LETTER O WITH STROKE"),
    (0x0E, "LATIN CAPITAL LETTER A WITH RING ABOVE"),
    (0x0F, "LATIN SMALL LETTER A WITH RING ABOVE"),
    (0x10, "GREEK CAPITAL LETTER DELTA"),
    (0x11, "LOW LINE"),
    (0x12, "GREEK CAPITAL LETTER PHI"),
    (0x13, "GREEK CAPITAL LETTER GAMMA"),
    (0x14, "GREEK CAPITAL LETTER LAMDA"),
    (0x15, "GREEK CAPITAL LETTER OMEGA"),
    (0x16, "GREEK CAPITAL LETTER PI"),
    (0x17, "GREEK CAPITAL LETTER PSI"),
    (0x18, "GREEK CAPITAL LETTER SIGMA"),
    (0x19, "GREEK CAPITAL LETTER THETA"),
    (0x1A, "GREEK CAPITAL LETTER XI"),
    (0x1C, "LATIN CAPITAL LETTER AE"),
    (0x1D, "LATIN SMALL LETTER AE"),
    (0x1E, "LATIN SMALL LETTER SHARP S"),
    (0x1F, "LATIN CAPITAL LETTER E WITH ACUTE"),
    (0x24, "CURRENCY SIGN"),
    (0x40, "INVERTED EXCLAMATION MARK"),
    (0x5B, "LATIN CAPITAL LETTER A WITH DIAERESIS"),
    (0x5C, "LATIN CAPITAL LETTER O WITH DIAERESIS"),
    (0x5D, "LATIN CAPITAL LETTER N WITH TILDE"),
    (0x5E, "LATIN CAPITAL LETTER U WITH DIAERESIS"),
    (0x5F, "SECTION SIGN"),
    (0x60, "INVERTED QUESTION MARK"),
    (0x7B, "LATIN SMALL LETTER A WITH DIAERESIS"),
    (0x7C, "LATIN SMALL LETTER O WITH DIAERESIS"),
    (0x7D, "LATIN SMALL LETTER N WITH TILDE"),
    (0x7E, "LATIN SMALL LETTER U WITH DIAERESIS"),
    (0x7F, "LATIN SMALL LETTER A WITH GRAVE"),
]


@pytest.mark.parametrize(("septet", "name"), DEFAULT_ALPHABET_BY_NAME)
def test_default_alphabet_code_points(septet: int, name: str) -> None:
    """Each non-ASCII-looking character of the default alphabet encodes to its 03.38 septet."""
    char = unicodedata.lookup(name)
    assert encode_gsm(char) == bytes([septet])
    assert decode_gsm(bytes([septet])) == char


@pytest.mark.parametrize(
    ("char", "septets"),
    [
        ("\n", b"\x0a"),
        ("\r", b"\x0d"),
        (" ", b"\x20"),
        ("A", b"\x41"),
        ("z", b"\x7a"),
        ("0", b"\x30"),
        ("\x0c", b"\x1b\x0a"),
        ("^", b"\x1b\x14"),
        ("{", b"\x1b\x28"),
        ("}", b"\x1b\x29"),
        ("\\", b"\x1b\x2f"),
        ("[", b"\x1b\x3c"),
        ("~", b"\x1b\x3d"),
        ("]", b"\x1b\x3e"),
        ("|", b"\x1b\x40"),
        ("\u20ac", b"\x1b\x65"),
    ],
)
def test_ascii_and_extension_code_points(char: str, septets: bytes) -> None:
    """ASCII letters keep their code and extension characters become 0x1B plus their code."""
    assert encode_gsm(char) == septets
    assert decode_gsm(septets) == char
    assert gsm_septets(char) == len(septets)


@pytest.mark.parametrize(
    "char",
    ["`", "\u00e7", "\x1b", "\t", "\x00", "\x7f", "\u00e1", "\u03b1", "\u0391", "\ufffe"]
    + ["\U0001f600"],
)
def test_characters_outside_gsm(char: str) -> None:
    """Backtick, small c cedilla, ESC, tab, NUL, Greek small/look-alike letters are not GSM."""
    assert not is_gsm(char)
    with pytest.raises(UnencodableError) as info:
        encode_gsm("ok" + char)
    assert info.value.char == char
    assert choose_coding(char) == DataCoding.UCS2


def test_gsm_alphabet_has_138_characters() -> None:
    """The alphabet has 127 default characters (all but the escape) and 10 extension ones."""
    assert len(GSM_CHARACTERS) == 127 + 10
    assert "\x1b" not in GSM_CHARACTERS


def test_unencodable_error_reports_first_bad_character() -> None:
    """UnencodableError is a ValueError whose char is the first unencodable character."""
    with pytest.raises(ValueError) as info:
        encode_gsm("caf\u00e9 `x` \u00e7a")
    assert isinstance(info.value, UnencodableError)
    assert info.value.char == "`"


def test_agrees_with_gsm0338_package() -> None:
    """Our table encodes every BMP character exactly as the gsm0338 package does, except ESC."""
    gsm0338 = pytest.importorskip("gsm0338")
    codec = gsm0338.Codec()
    for code in range(0x10000):
        char = chr(code)
        if char == "\x1b":
            continue  # gsm0338 treats U+001B as encodable; it is the escape, not a character
        try:
            theirs: bytes | None = codec.encode(char)[0]
        except UnicodeError:
            theirs = None
        ours = encode_gsm(char) if is_gsm(char) else None
        assert ours == theirs, f"U+{code:04X}"
        if ours is not None:
            assert decode_gsm(ours) == codec.decode(ours)[0]


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\x80", "\ufffd"),
        (b"a\xffb", "a\ufffdb"),
        (b"a\x1b", "a"),
        (b"\x1b", ""),
        (b"\x1b\x41", "A"),
        (b"\x1b\x1b", " "),
        (b"\x1b\x1be", " e"),
        (b"\x1b\x1b\x1be", " \u20ac"),
        (b"\x1b\x80", "\ufffd"),
        (b"Hi \x00 \x01\x1b\x65", "Hi @ \u00a3\u20ac"),
    ],
)
def test_decode_gsm_tolerance(data: bytes, text: str) -> None:
    """decode_gsm maps stray high octets to U+FFFD and resolves odd escapes per 03.38."""
    assert decode_gsm(data) == text


@given(gsm_text)
def test_gsm_round_trip(text: str) -> None:
    """Any text over the GSM alphabet survives encode_gsm then decode_gsm unchanged."""
    data = encode_gsm(text)
    assert decode_gsm(data) == text
    assert gsm_septets(text) == len(data)
    assert len(data) == len(text) + sum(text.count(c) for c in EXTENSION_CHARS)
    assert data.isascii()


@given(st.one_of(any_text, gsm_text, st.text(st.one_of(gsm_chars, st.characters()))))
def test_is_gsm_agrees_with_encode(text: str) -> None:
    """is_gsm is true exactly when encode_gsm does not raise."""
    try:
        encode_gsm(text)
    except UnencodableError as exc:
        assert not is_gsm(text)
        assert exc.char in text
        assert exc.char not in GSM_CHARACTERS
        assert all(c in GSM_CHARACTERS for c in text[: text.index(exc.char)])
    else:
        assert is_gsm(text)
        assert all(c in GSM_CHARACTERS for c in text)


@given(st.binary(max_size=300))
def test_decode_gsm_never_raises(data: bytes) -> None:
    """decode_gsm returns text for any octets, and re-encoding clean septets gives them back."""
    text = decode_gsm(data)
    if data.isascii() and b"\x1b" not in data:
        assert encode_gsm(text) == data


# --- UCS-2 -----------------------------------------------------------------------------------


def test_ucs2_astral_uses_surrogate_pair() -> None:
    """An astral character is written as a UTF-16 surrogate pair."""
    assert encode_ucs2("a\U0001f600") == b"\x00a\xd8\x3d\xde\x00"
    assert decode_ucs2(b"\x00a\xd8\x3d\xde\x00") == "a\U0001f600"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\x00a\x00", "a\ufffd"),
        (b"\xd8\x3d\x00a", "\ufffda"),
        (b"\xde\x00\x00a", "\ufffda"),
        (b"\x00a\xd8\x3d", "a\ufffd"),
        (b"", ""),
    ],
)
def test_decode_ucs2_tolerance(data: bytes, text: str) -> None:
    """decode_ucs2 turns an odd trailing octet or a lone surrogate into U+FFFD."""
    assert decode_ucs2(data) == text


@given(any_text)
def test_ucs2_round_trip(text: str) -> None:
    """Any text, astral characters included, survives encode_ucs2 then decode_ucs2."""
    assert decode_ucs2(encode_ucs2(text)) == text


@given(st.binary(max_size=300))
def test_decode_ucs2_never_raises(data: bytes) -> None:
    """decode_ucs2 returns valid Unicode for any octets."""
    decode_ucs2(data).encode("utf-8")


def test_encode_ucs2_passes_lone_surrogates() -> None:
    """encode_ucs2 does not raise on a string holding a lone surrogate."""
    assert encode_ucs2("\ud800") == b"\xd8\x00"


def test_split_lone_surrogate_never_raises() -> None:
    """A lone surrogate in the text goes out as its code unit and reads back as U+FFFD."""
    (part,) = split_text("a\ud800", reference=0)
    assert part.short_message == b"\x00a\xd8\x00"
    assert decode_ucs2(part.short_message) == "a\ufffd"


# --- data_coding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "data_coding", "text"),
    [
        (b"Hi \x00", 0x00, "Hi @"),
        (b"Hi \xff", 0x01, "Hi \ufffd"),
        (b"caf\xe9", 0x02, "caf\u00e9"),
        (b"caf\xe9", 0x03, "caf\u00e9"),
        (b"caf\xe9", 0x04, "caf\u00e9"),
        (b"\xb0", 0x06, "\u0410"),
        (b"\xe0", 0x07, "\u05d0"),
        (b"\x00h\x00i", 0x08, "hi"),
        (b"\x00h\x00", 0x08, "h\ufffd"),
        (b"caf\xe9", 0x05, "caf\u00e9"),
        (b"\x00", 0x10, "@"),
        (b"\x00", 0x11, "@"),
        (b"\xe9", 0x15, "\u00e9"),
        (b"\x00h", 0x18, "h"),
        (b"\x00h", 0x1A, "h"),
        (b"\xe9", 0x1C, "\u00e9"),
        (b"\x00", 0x30, "\x00"),
        (b"\x00", 0x40, "@"),
        (b"\x00h", 0x48, "h"),
        (b"\x00", 0x80, "\x00"),
        (b"\x00", 0xC0, "@"),
        (b"\x00", 0xD3, "@"),
        (b"\x00h", 0xE0, "h"),
        (b"\x00\x1b\x65", 0xF0, "@\u20ac"),
        (b"\x00\x1b\x65", 0xF3, "@\u20ac"),
        (b"\x00", 0xF4, "\x00"),
        (b"\xe9", 0x100, "\u00e9"),
        (b"\xe9", -1, "\u00e9"),
    ],
)
def test_decode_short_message_by_data_coding(data: bytes, data_coding: int, text: str) -> None:
    """decode_short_message picks the alphabet from SMPP values and 03.38 coding groups."""
    assert decode_short_message(data, data_coding) == text


@given(st.binary(max_size=300), st.integers(min_value=-1000, max_value=1000))
def test_decode_short_message_never_raises(data: bytes, data_coding: int) -> None:
    """decode_short_message returns a str for any octets and any data_coding."""
    assert isinstance(decode_short_message(data, data_coding), str)


def test_choose_coding() -> None:
    """GSM text gets data_coding 0 and anything else UCS-2."""
    assert choose_coding("Hello \u20ac [x] \u00a7") == DataCoding.SMSC_DEFAULT
    assert choose_coding("Hello `x`") == DataCoding.UCS2
    assert choose_coding("") == DataCoding.SMSC_DEFAULT


# --- splitting -------------------------------------------------------------------------------


def _text_of(part: MessagePart, method: ConcatMethod) -> bytes:
    return part.short_message[UDH_LENGTH[method] :] if part.total > 1 else part.short_message


def _check_parts(
    text: str, parts: tuple[MessagePart, ...], method: ConcatMethod, reference: int
) -> None:
    total = len(parts)
    assert [p.index for p in parts] == list(range(1, total + 1))
    assert all(p.total == total for p in parts)
    assert len({p.data_coding for p in parts}) == 1
    ucs2 = parts[0].data_coding == DataCoding.UCS2
    chunks = [_text_of(p, method) for p in parts]
    if total == 1:
        assert parts[0].esm_class == 0 and parts[0].tlvs == ()
        assert len(chunks[0]) <= (140 if ucs2 else 160)
    else:
        limit = (UCS2_PART_LIMIT if ucs2 else GSM_PART_LIMIT)[method]
        for part, chunk in zip(parts, chunks):
            assert 0 < len(chunk) <= limit
            assert len(part.short_message) <= (140 if ucs2 else 160)
            if method is ConcatMethod.UDH8:
                assert part.esm_class == EsmClass.UDHI
                udh = bytes([5, 0, 3, reference & 0xFF, total, part.index])
                assert part.short_message[:6] == udh
            elif method is ConcatMethod.UDH16:
                ref = reference & 0xFFFF
                assert part.esm_class == EsmClass.UDHI
                udh = bytes([6, 8, 4, ref >> 8, ref & 0xFF, total, part.index])
                assert part.short_message[:7] == udh
            else:
                assert part.esm_class == 0
                assert part.tlvs == (
                    (Tag.SAR_MSG_REF_NUM, (reference & 0xFFFF).to_bytes(2, "big")),
                    (Tag.SAR_TOTAL_SEGMENTS, bytes([total])),
                    (Tag.SAR_SEGMENT_SEQNUM, bytes([part.index])),
                )
    for chunk in chunks:
        if ucs2:
            assert len(chunk) % 2 == 0
            assert not 0xDC <= chunk[0] <= 0xDF if chunk else True
            assert not 0xD8 <= chunk[-2] <= 0xDB if chunk else True
            assert chunk.decode("utf-16-be") is not None  # strict: no broken pair
        else:
            assert not chunk.endswith(b"\x1b")
    decode = decode_ucs2 if ucs2 else decode_gsm
    assert "".join(decode(c) for c in chunks) == text


@given(gsm_text, methods, references)
def test_split_gsm_text(text: str, method: ConcatMethod, reference: int) -> None:
    """GSM text splits into parts within the septet limits that rejoin to the exact text."""
    parts = split_text(text, reference=reference, method=method)
    assert parts[0].data_coding == DataCoding.SMSC_DEFAULT
    _check_parts(text, parts, method, reference)


@given(any_text, methods, references)
def test_split_any_text(text: str, method: ConcatMethod, reference: int) -> None:
    """Any text splits into parts within the octet limits that rejoin to the exact text."""
    parts = split_text(text, reference=reference, method=method)
    assert parts[0].data_coding == choose_coding(text)
    _check_parts(text, parts, method, reference)


@given(st.text(st.sampled_from("ab\U0001f600\u00e9"), min_size=60, max_size=400), methods)
def test_split_surrogates_near_boundaries(text: str, method: ConcatMethod) -> None:
    """Dense astral text never has a surrogate pair cut between two parts."""
    parts = split_text(text, reference=1, method=method, data_coding=DataCoding.UCS2)
    _check_parts(text, parts, method, 1)


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("", [0]),
        ("a" * 160, [160]),
        ("a" * 161, [153, 8]),
        ("\u20ac" * 80, [160]),
        ("\u20ac" * 81, [152, 10]),
        ("a" * 306, [153, 153]),
        ("a" * 307, [153, 153, 1]),
    ],
)
def test_split_gsm_sizes(text: str, sizes: list[int]) -> None:
    """GSM text fits 160 septets in one part and 153 per part with an 8-bit UDH."""
    parts = split_text(text, reference=9)
    assert [len(_text_of(p, ConcatMethod.UDH8)) for p in parts] == sizes


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("\u0416" * 70, [140]),
        ("\u0416" * 71, [134, 8]),
        ("\U0001f600" * 35, [140]),
        ("\U0001f600" * 36, [132, 12]),
    ],
)
def test_split_ucs2_sizes(text: str, sizes: list[int]) -> None:
    """UCS-2 text fits 70 code units in one part and 67 per part with an 8-bit UDH."""
    parts = split_text(text, reference=9)
    assert [len(_text_of(p, ConcatMethod.UDH8)) for p in parts] == sizes


def test_smpplib_bug_escape_pair_not_split() -> None:
    """A euro sign right after 152 septets moves whole to the next part (smpplib splits it)."""
    assert split_text("a" * 152 + "\u20ac", reference=1) == (
        MessagePart(b"a" * 152 + b"\x1b\x65", 0, 0, (), 1, 1),
    )
    parts = split_text("a" * 152 + "\u20ac" + "b" * 10, reference=1)
    assert parts[0].short_message[6:] == b"a" * 152
    assert parts[1].short_message[6:] == b"\x1b\x65" + b"b" * 10


def test_smpplib_bug_surrogate_pair_not_split() -> None:
    """An emoji straddling the 67th code unit moves whole to the next part (smpplib splits it)."""
    text = "a" * 66 + "\U0001f600" + "b" * 10
    parts = split_text(text, reference=1)
    assert parts[0].short_message[6:] == encode_ucs2("a" * 66)
    assert parts[1].short_message[6:8] == b"\xd8\x3d"
    assert "".join(p.short_message[6:].decode("utf-16-be") for p in parts) == text


def test_smpplib_bug_section_sign_and_backtick() -> None:
    """Section sign stays GSM (0x5F) and backtick is not turned into it (smpplib does both)."""
    assert split_text("\u00a7 1", reference=0)[0].short_message == b"\x5f 1"
    assert split_text("`", reference=0)[0].data_coding == DataCoding.UCS2


@pytest.mark.parametrize(
    ("method", "reference", "expected"),
    [
        (ConcatMethod.UDH8, 0x1234, bytes([5, 0, 3, 0x34, 2, 1])),
        (ConcatMethod.UDH16, 0x12345, bytes([6, 8, 4, 0x23, 0x45, 2, 1])),
        (ConcatMethod.SAR, 0x12345, b""),
    ],
)
def test_split_reference_masking(method: ConcatMethod, reference: int, expected: bytes) -> None:
    """The reference is masked to 8 bits for UDH8 and 16 bits for UDH16 and SAR."""
    first = split_text("x" * 200, reference=reference, method=method)[0]
    assert first.short_message[: len(expected)] == expected
    if method is ConcatMethod.SAR:
        assert first.tlvs[0] == (Tag.SAR_MSG_REF_NUM, b"\x23\x45")


def test_split_max_parts() -> None:
    """Text that needs more than max_parts parts raises ValueError."""
    assert len(split_text("a" * 306, reference=0, max_parts=2)) == 2
    with pytest.raises(ValueError, match="3 parts"):
        split_text("a" * 307, reference=0, max_parts=2)
    with pytest.raises(ValueError):
        split_text("a" * 153 * 256, reference=0)
    assert len(split_text("a" * 153 * 255, reference=0)) == 255
    with pytest.raises(ValueError):
        split_text("a", reference=0, max_parts=256)


def test_split_explicit_data_coding() -> None:
    """Explicit data_coding 0 insists on GSM, 8 forces UCS-2, 3 gives latin-1."""
    with pytest.raises(UnencodableError):
        split_text("\u0416", reference=0, data_coding=0)
    (part,) = split_text("hi", reference=0, data_coding=8)
    assert (part.short_message, part.data_coding) == (b"\x00h\x00i", 8)
    (part,) = split_text("caf\u00e9", reference=0, data_coding=3)
    assert (part.short_message, part.data_coding) == (b"caf\xe9", 3)
    assert len(split_text("\u00e9" * 141, reference=0, data_coding=3)) == 2
    with pytest.raises(UnencodableError):
        split_text("\u20ac", reference=0, data_coding=3)
    (part,) = split_text("@", reference=0, data_coding=0xF1)
    assert (part.short_message, part.data_coding) == (b"\x00", 0xF1)
    with pytest.raises(ValueError):
        split_text("hi", reference=0, data_coding=DataCoding.BINARY)


# --- references ------------------------------------------------------------------------------


@given(
    st.sampled_from([8, 16]),
    st.integers(min_value=0, max_value=2**20),
    st.lists(st.sampled_from(["447700900001", "447700900002", "1"]), max_size=600),
)
def test_references_do_not_repeat_per_destination(bits: int, start: int, calls: list[str]) -> None:
    """Each destination gets consecutive references, so none repeats within 2**bits calls."""
    refs = ConcatReferences(bits, start=lambda d: start + len(d))
    seen: dict[str, list[int]] = {}
    for destination in calls:
        seen.setdefault(destination, []).append(refs.next(destination))
    for destination, values in seen.items():
        first = (start + len(destination)) % (1 << bits)
        assert values == [(first + i) % (1 << bits) for i in range(len(values))]
        window = 1 << bits
        for i in range(0, len(values), window):
            assert len(set(values[i : i + window])) == len(values[i : i + window])


def test_references_wrap_after_256() -> None:
    """The 8-bit counter wraps to its start value after exactly 256 references."""
    refs = ConcatReferences(start=lambda d: 250)
    values = [refs.next("x") for _ in range(257)]
    assert len(set(values[:256])) == 256
    assert values[:7] == [250, 251, 252, 253, 254, 255, 0]
    assert values[256] == 250


def test_references_16_bit_do_not_repeat() -> None:
    """The 16-bit counter gives 65536 distinct references in a row to one destination."""
    refs = ConcatReferences(16)
    assert refs.bits == 16
    assert len({refs.next("x") for _ in range(65536)}) == 65536


def test_references_default_start_is_in_range() -> None:
    """Without a start function the first references fall within the bit width."""
    refs = ConcatReferences()
    starts = [refs.next(str(n)) for n in range(1000)]
    assert all(0 <= start <= 255 for start in starts)
    # Spread over the range, not one value for everyone (1000 draws cover nearly all 256).
    assert len(set(starts)) > 200
    wide = ConcatReferences(16)
    assert all(0 <= wide.next(str(n)) <= 65535 for n in range(1000))
    assert max(wide.next(f"x{n}") for n in range(1000)) > 255


def test_references_evict_least_recently_used() -> None:
    """Only max_destinations destinations are kept; the least recently used one goes first."""
    refs = ConcatReferences(start=lambda d: 0, max_destinations=2)
    assert [refs.next("a"), refs.next("b"), refs.next("a")] == [0, 0, 1]
    assert refs.next("c") == 0  # evicts "b", the least recently used
    assert len(refs) == 2
    assert refs.next("a") == 2
    assert refs.next("b") == 0


def test_references_reject_bad_arguments() -> None:
    """Only 8 and 16 bits are possible, and at least one destination must be remembered."""
    with pytest.raises(ValueError):
        ConcatReferences(12)
    with pytest.raises(ValueError):
        ConcatReferences(max_destinations=0)


def test_references_fix_smpplib_random_collisions() -> None:
    """2000 messages to 2000 destinations plus 255 to one never reuse a destination's reference."""
    refs = ConcatReferences()
    for n in range(2000):
        refs.next(f"4477009{n:05d}")
    values = [refs.next("447700900001") for _ in range(256)]
    assert len(set(values)) == 256


@given(st.text(max_size=50))
def test_split_single_part_equals_encoding(text: str) -> None:
    """A short text gives exactly its encoding as the one part's short_message."""
    assume(len(encode_ucs2(text)) <= 140)
    (part,) = split_text(text, reference=0)
    expected = encode_gsm(text) if is_gsm(text) else encode_ucs2(text)
    assert part.short_message == expected
