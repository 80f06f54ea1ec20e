"""Text codecs for short_message octets and the splitter for long messages.

SMPP carries GSM 03.38 text *unpacked*: one septet per octet (data_coding 0). The SMSC packs
septets for the air interface, so the limits here are counted in septets: 160 for a single
message, 153 or 152 per part when a User Data Header takes room on the air. UCS-2 text
(data_coding 8) is UTF-16-BE, limited to 140 octets per message and 134 or 132 per part.

Everything on the inbound path (:func:`decode_gsm`, :func:`decode_ucs2`,
:func:`decode_short_message`) is tolerant and never raises: a malformed MO must not crash the
gateway. The outbound path (:func:`encode_gsm`, :func:`split_text`) is strict and raises
:class:`UnencodableError` rather than silently changing the text.
"""

from __future__ import annotations

import codecs
import collections
import enum
import random
from collections.abc import Callable

import attrs

from gatewayd.smpp.constants import ESM_UDHI, DataCoding, Tag

__all__ = [
    "GSM_CHARACTERS",
    "UnencodableError",
    "is_gsm",
    "encode_gsm",
    "decode_gsm",
    "gsm_septets",
    "encode_ucs2",
    "decode_ucs2",
    "decode_short_message",
    "choose_coding",
    "ConcatMethod",
    "MessagePart",
    "split_text",
    "ConcatReferences",
]

# GSM 03.38 default alphabet, indexed by septet. 0x1B is the escape to the extension table
# and is not a character; the NUL placeholder at that index is never used by the tables below.
_BASIC = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x00\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./"
    "0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmno"
    "pqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
_ESCAPE = 0x1B

# The extension table reached by 0x1B: septet -> character.
_EXTENSION = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "\u20ac",
}

#: Every character :func:`encode_gsm` accepts (default alphabet and extension table).
GSM_CHARACTERS: frozenset[str] = frozenset(
    [c for i, c in enumerate(_BASIC) if i != _ESCAPE] + list(_EXTENSION.values())
)

# Encoding goes through the C charmap codec, which maps one character to one octet. Extension
# characters are first encoded to the otherwise unused markers 0x80..0x89 and then expanded to
# their escape pair, which only costs anything for the rare message that has one.
_MARKERS = {0x80 + n: bytes((_ESCAPE, septet)) for n, septet in enumerate(_EXTENSION)}
_MARKER_OCTETS = bytes(_MARKERS)
# Filler for octets no character maps to. charmap_build still maps the filler character itself,
# so _charmap rejects U+FFFE (a noncharacter) explicitly.
_UNDEFINED = "\ufffe"


def _build_ascii_table() -> bytes:
    """bytes.translate table for the fast path taken by plain ASCII text.

    Octets above 0x7F in the result (an extension marker, or 0xFF for ASCII that GSM lacks,
    such as the backtick) send the text down the general path, which expands the markers and
    reports the error.
    """
    table = bytearray(b"\xff" * 256)
    for septet, char in enumerate(_BASIC):
        if septet != _ESCAPE and char.isascii():
            table[ord(char)] = septet
    for marker, char in zip(_MARKERS, _EXTENSION.values()):
        if char.isascii():
            table[ord(char)] = marker
    return bytes(table)


_ASCII_TABLE = _build_ascii_table()
_ENCODING_MAP = codecs.charmap_build(
    "".join(_UNDEFINED if i == _ESCAPE else c for i, c in enumerate(_BASIC))
    + "".join(_EXTENSION.values())
    + _UNDEFINED * (256 - 128 - len(_EXTENSION))
)

# Decoding: octets above 0x7F cannot occur in unpacked septets; they become U+FFFD rather than
# being masked to 7 bits, because masking would show a plausible but wrong character.
_REPLACEMENT = "\ufffd"
_DECODING_TABLE = (
    "".join("\x1b" if i == _ESCAPE else c for i, c in enumerate(_BASIC)) + _REPLACEMENT * 128
)
# (escape + decoded default-alphabet character, extension character) for decode_gsm. 1B 1B is
# reserved for a further extension table, and 03.38 says to display a space for it.
_UNESCAPES = tuple(("\x1b" + _BASIC[septet], char) for septet, char in _EXTENSION.items())

_SAR_TAGS = (int(Tag.SAR_MSG_REF_NUM), int(Tag.SAR_TOTAL_SEGMENTS), int(Tag.SAR_SEGMENT_SEQNUM))


class UnencodableError(ValueError):
    """The text has a character the requested alphabet cannot represent.

    Attributes:
        char: the first character that cannot be encoded.
    """

    def __init__(self, char: str, alphabet: str = "GSM 03.38") -> None:
        super().__init__(f"{char!r} (U+{ord(char):04X}) cannot be encoded in {alphabet}")
        self.char = char


def _charmap(text: str) -> bytes:
    """Encode with extension characters as single marker octets (0x80..0x89)."""
    try:
        data, _ = codecs.charmap_encode(text, "strict", _ENCODING_MAP)
    except UnicodeEncodeError as exc:
        raise UnencodableError(text[exc.start]) from None
    if _UNDEFINED in text:
        raise UnencodableError(_UNDEFINED)
    return data


def is_gsm(text: str) -> bool:
    """Tell whether every character of ``text`` is in the GSM 03.38 alphabet or extension table."""
    if text.isascii() and text.encode("ascii").translate(_ASCII_TABLE).isascii():
        return True
    try:
        codecs.charmap_encode(text, "strict", _ENCODING_MAP)
    except UnicodeEncodeError:
        return False
    return _UNDEFINED not in text


def encode_gsm(text: str) -> bytes:
    """Encode text as unpacked GSM 03.38 septets, one per octet (data_coding 0).

    Args:
        text: the message text.

    Returns:
        One octet per septet; extension characters take two (0x1B and the code).

    Raises:
        UnencodableError: a character is not in the alphabet or its extension table.
    """
    if text.isascii():
        data = text.encode("ascii").translate(_ASCII_TABLE)
        if data.isascii():
            return data
    data = _charmap(text)
    if data.isascii():
        return data
    for marker, pair in _MARKERS.items():
        data = data.replace(bytes((marker,)), pair)
    return data


def decode_gsm(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets; never raises.

    Tolerance rules: an octet above 0x7F becomes U+FFFD; an escape followed by a code the
    extension table does not define shows that code's default-alphabet character (03.38);
    0x1B 0x1B shows a space; a lone 0x1B at the end decodes to nothing.

    Args:
        data: one septet per octet.

    Returns:
        The decoded text.
    """
    text, _ = codecs.charmap_decode(data, "strict", _DECODING_TABLE)
    if "\x1b" in text:
        # str.replace works left to right without overlaps, so pairing off 1B 1B first leaves
        # every remaining escape followed by an ordinary character (or by nothing).
        text = text.replace("\x1b\x1b", " ")
        for pair, char in _UNESCAPES:
            text = text.replace(pair, char)
        # An escape to a code the extension table lacks shows the default character (03.38);
        # a trailing lone escape has nothing to extend and vanishes.
        text = text.replace("\x1b", "")
    return text


def gsm_septets(text: str) -> int:
    """Count the septets ``text`` takes in GSM 03.38; extension characters count two.

    Raises:
        UnencodableError: a character is not in the GSM alphabet.
    """
    data = _charmap(text)
    size = len(data)
    if data.isascii():
        return size
    return 2 * size - len(data.translate(None, _MARKER_OCTETS))


def encode_ucs2(text: str) -> bytes:
    """Encode text as UTF-16-BE (data_coding 8); astral characters become surrogate pairs.

    Lone surrogates in ``text`` are written as they are, so this never raises.
    """
    return text.encode("utf-16-be", "surrogatepass")


def decode_ucs2(data: bytes) -> str:
    """Decode UTF-16-BE (data_coding 8); never raises.

    A lone surrogate and an odd trailing octet each become U+FFFD, so the result is always
    valid Unicode that can be logged or stored as UTF-8.
    """
    return data.decode("utf-16-be", "replace")


def _decode_ascii(data: bytes) -> str:
    return data.decode("ascii", "replace")


def _decode_latin1(data: bytes) -> str:
    return data.decode("latin-1")


def _decode_iso8859_5(data: bytes) -> str:
    return data.decode("iso8859_5", "replace")


def _decode_iso8859_8(data: bytes) -> str:
    return data.decode("iso8859_8", "replace")


_GSM, _EIGHT_BIT, _UCS2 = "gsm", "8bit", "ucs2"
_ALPHABET_BITS = (_GSM, _EIGHT_BIT, _UCS2, _EIGHT_BIT)  # 0b11 is reserved: show raw octets


def _dcs_alphabet(data_coding: int) -> str:
    """The alphabet a GSM 03.38 data coding scheme (octet above 0x0F) announces."""
    group = data_coding >> 4
    if group <= 0x7:
        # General data coding (0x00-0x3F) and automatic deletion (0x40-0x7F) groups.
        if data_coding & 0x20:
            return _EIGHT_BIT  # compressed: no way to show it as text
        return _ALPHABET_BITS[(data_coding >> 2) & 0x3]
    if group in (0xC, 0xD):
        return _GSM  # message waiting indication, discard or store
    if group == 0xE:
        return _UCS2  # message waiting indication, store, UCS2
    if group == 0xF:
        return _EIGHT_BIT if data_coding & 0x04 else _GSM
    return _EIGHT_BIT  # reserved groups 0x80-0xBF


_ALPHABET_DECODERS: dict[str, Callable[[bytes], str]] = {
    _GSM: decode_gsm,
    _EIGHT_BIT: _decode_latin1,
    _UCS2: decode_ucs2,
}

_SMPP_DECODERS: dict[int, Callable[[bytes], str]] = {
    DataCoding.SMSC_DEFAULT: decode_gsm,
    DataCoding.IA5: _decode_ascii,
    DataCoding.BINARY_8BIT: _decode_latin1,
    DataCoding.LATIN_1: _decode_latin1,
    DataCoding.BINARY: _decode_latin1,
    0x06: _decode_iso8859_5,  # SMPP 3.4: Cyrillic
    0x07: _decode_iso8859_8,  # SMPP 3.4: Latin/Hebrew
    DataCoding.UCS2: decode_ucs2,
}

_DECODERS: tuple[Callable[[bytes], str], ...] = tuple(
    _SMPP_DECODERS.get(dc, _decode_latin1) if dc <= 0x0F else _ALPHABET_DECODERS[_dcs_alphabet(dc)]
    for dc in range(256)
)


def decode_short_message(data: bytes, data_coding: int) -> str:
    """Turn user data (without its UDH) into text according to data_coding; never raises.

    Rules: 0 is GSM 03.38 unpacked, 1 IA5 (octets above 0x7F become U+FFFD), 3 latin-1,
    6 ISO-8859-5, 7 ISO-8859-8, 8 UCS-2. Binary codings (2, 4) and every other SMPP value up
    to 0x0F are shown as latin-1 so that no octet is lost. Values 0x10-0xFF follow the GSM
    03.38 coding groups (general, automatic deletion, message waiting, data coding/class):
    their alphabet bits select GSM, UCS-2 or 8-bit (shown as latin-1); compressed and
    reserved values are shown as latin-1.

    Args:
        data: the user data octets.
        data_coding: the PDU's data_coding.

    Returns:
        The text.
    """
    decoder = _DECODERS[data_coding] if 0 <= data_coding <= 0xFF else _decode_latin1
    return decoder(data)


def choose_coding(text: str) -> int:
    """Pick the densest coding for ``text``: SMSC default (GSM 03.38) when possible, else UCS-2."""
    return DataCoding.SMSC_DEFAULT if is_gsm(text) else DataCoding.UCS2


class ConcatMethod(enum.Enum):
    """How the parts of a long message say that they belong together."""

    #: UDH with the 8-bit reference IE (00 03 ref total index).
    UDH8 = "udh8"
    #: UDH with the 16-bit reference IE (08 04 ref_hi ref_lo total index).
    UDH16 = "udh16"
    #: No UDH; the sar_msg_ref_num, sar_total_segments and sar_segment_seqnum TLVs.
    SAR = "sar"


@attrs.frozen
class MessagePart:
    """One submit_sm worth of a message: its short_message and the fields that go with it."""

    #: UDH (if any) followed by the encoded text.
    short_message: bytes
    #: 0x40 (UDHI) when short_message starts with a UDH, else 0.
    esm_class: int
    #: The data_coding the text was encoded with.
    data_coding: int
    #: Optional parameters to send with this part (the sar_* TLVs for ConcatMethod.SAR).
    tlvs: tuple[tuple[int, bytes], ...]
    #: Position of this part, 1-based.
    index: int
    #: Number of parts of the message.
    total: int


# Single message limit and per-part limit (octets of short_message after the UDH), by alphabet.
_SINGLE_LIMIT = {_GSM: 160, _UCS2: 140, _EIGHT_BIT: 140}
_PART_LIMIT = {
    _GSM: {ConcatMethod.UDH8: 153, ConcatMethod.UDH16: 152, ConcatMethod.SAR: 153},
    _UCS2: {ConcatMethod.UDH8: 134, ConcatMethod.UDH16: 132, ConcatMethod.SAR: 134},
    _EIGHT_BIT: {ConcatMethod.UDH8: 134, ConcatMethod.UDH16: 132, ConcatMethod.SAR: 134},
}


def _encode_for(text: str, data_coding: int | None) -> tuple[bytes, int, str]:
    if data_coding is None:
        data_coding = choose_coding(text)
    if data_coding == DataCoding.LATIN_1:
        try:
            return text.encode("latin-1"), data_coding, _EIGHT_BIT
        except UnicodeEncodeError as exc:
            raise UnencodableError(text[exc.start], "latin-1") from None
    alphabet = _dcs_alphabet(data_coding) if 0x10 <= data_coding <= 0xFF else None
    if data_coding == DataCoding.SMSC_DEFAULT or alphabet == _GSM:
        return encode_gsm(text), data_coding, _GSM
    if data_coding == DataCoding.UCS2 or alphabet == _UCS2:
        return encode_ucs2(text), data_coding, _UCS2
    raise ValueError(f"cannot split text for data_coding 0x{data_coding:02X}")


def _cut_points(data: bytes, alphabet: str, limit: int) -> list[int]:
    """Offsets where each part ends, never inside an escape pair or a surrogate pair."""
    ends: list[int] = []
    start, size = 0, len(data)
    while start < size:
        end = start + limit
        if end >= size:
            end = size
        elif alphabet == _GSM:
            # The encoder only emits 0x1B as the first octet of an escape pair.
            if data[end - 1] == _ESCAPE:
                end -= 1
        elif alphabet == _UCS2:
            if 0xD8 <= data[end - 2] <= 0xDB:  # high surrogate: its low half is next
                end -= 2
        ends.append(end)
        start = end
    return ends


def split_text(
    text: str,
    *,
    reference: int,
    method: ConcatMethod = ConcatMethod.UDH8,
    data_coding: int | None = None,
    max_parts: int = 255,
) -> tuple[MessagePart, ...]:
    """Encode ``text`` and split it into the parts of a concatenated message.

    Text that fits one message (160 GSM septets, 140 UCS-2 octets) gives a single part with
    no UDH and no TLVs. Longer text is cut into parts of at most 153/152/153 septets (GSM) or
    134/132/134 octets (UCS-2) for UDH8/UDH16/SAR, never inside a GSM escape pair or a UTF-16
    surrogate pair.

    Args:
        text: the message text.
        reference: the concatenation reference (see :class:`ConcatReferences`); masked to
            8 bits for UDH8 and 16 bits for UDH16 and SAR.
        method: how the parts are tied together.
        data_coding: None to use :func:`choose_coding`; 0 (or a GSM 03.38 coding group value
            with the GSM alphabet) for GSM; 8 (or a coding group value with UCS-2) for UCS-2;
            3 for latin-1.
        max_parts: the most parts the caller accepts, 1 to 255.

    Returns:
        The parts in order, index 1..total.

    Raises:
        UnencodableError: data_coding asks for an alphabet that cannot represent the text.
        ValueError: the text needs more than ``max_parts`` parts, max_parts is out of range,
            or data_coding is not a text coding this function can produce.
    """
    if not 1 <= max_parts <= 255:
        raise ValueError(f"max_parts must be 1..255, not {max_parts}")
    data, coding, alphabet = _encode_for(text, data_coding)
    if len(data) <= _SINGLE_LIMIT[alphabet]:
        return (MessagePart(data, esm_class=0, data_coding=coding, tlvs=(), index=1, total=1),)

    ends = _cut_points(data, alphabet, _PART_LIMIT[alphabet][method])
    total = len(ends)
    if total > max_parts:
        raise ValueError(f"the text needs {total} parts, more than the {max_parts} allowed")

    parts: list[MessagePart] = []
    start = 0
    for index, end in enumerate(ends, start=1):
        header, esm_class, tlvs = _concat_fields(method, reference, total, index)
        parts.append(
            MessagePart(
                short_message=header + data[start:end],
                esm_class=esm_class,
                data_coding=coding,
                tlvs=tlvs,
                index=index,
                total=total,
            )
        )
        start = end
    return tuple(parts)


def _concat_fields(
    method: ConcatMethod, reference: int, total: int, index: int
) -> tuple[bytes, int, tuple[tuple[int, bytes], ...]]:
    """The UDH, esm_class and TLVs that tie one part to the others."""
    if method is ConcatMethod.UDH8:
        return bytes((5, 0x00, 3, reference & 0xFF, total, index)), ESM_UDHI, ()
    if method is ConcatMethod.UDH16:
        ref = reference & 0xFFFF
        return bytes((6, 0x08, 4, ref >> 8, ref & 0xFF, total, index)), ESM_UDHI, ()
    tlvs = (
        (_SAR_TAGS[0], (reference & 0xFFFF).to_bytes(2, "big")),
        (_SAR_TAGS[1], bytes((total,))),
        (_SAR_TAGS[2], bytes((index,))),
    )
    return b"", 0, tlvs


class ConcatReferences:
    """Hands out concatenation references that do not repeat per destination.

    Each destination gets consecutive references, so a handset never sees the same
    reference twice among the last 256 (8-bit) or 65536 (16-bit) long messages sent to it.
    Only the ``max_destinations`` most recently used destinations are remembered.

    Args:
        bits: 8 for ConcatMethod.UDH8, 16 for UDH16 and SAR.
        start: gives the first reference for a destination not (or no longer) remembered;
            reduced modulo 2**bits. The default is random, so that after a restart the
            references do not start over where the previous process started them.
        max_destinations: how many destinations to remember.
    """

    def __init__(
        self,
        bits: int = 8,
        *,
        start: Callable[[str], int] | None = None,
        max_destinations: int = 100_000,
    ) -> None:
        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, not {bits}")
        if max_destinations < 1:
            raise ValueError("max_destinations must be at least 1")
        self._modulus = 1 << bits
        self._start = start if start is not None else self._random_start
        self._max = max_destinations
        self._next: collections.OrderedDict[str, int] = collections.OrderedDict()

    @property
    def bits(self) -> int:
        """Width of the references: 8 or 16."""
        return self._modulus.bit_length() - 1

    def _random_start(self, destination: str) -> int:
        # Unpredictable across restarts is all it needs (the module's generator is seeded
        # from the OS at start-up); the OS's own generator costs a system call per number.
        return random.getrandbits(self._modulus.bit_length() - 1)

    def next(self, destination: str) -> int:
        """Return the reference for the next long message to ``destination``."""
        pending = self._next
        value = pending.get(destination)
        if value is None:
            value = self._start(destination) % self._modulus
            if len(pending) >= self._max:
                pending.popitem(last=False)
        else:
            pending.move_to_end(destination)
        pending[destination] = (value + 1) % self._modulus
        return value

    def __len__(self) -> int:
        """Number of destinations currently remembered."""
        return len(self._next)
