"""Delivery receipts: tolerant parsing, final outcomes, and message id correlation."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.simulator.smsc import receipt_text
from gatewayd.smpp.constants import MessageState, Tag
from gatewayd.smpp.receipts import (
    _FIELD_NAMES,
    MESSAGE_ID_FORMATS,
    DeliveryReceipt,
    ReceiptOutcome,
    _fields,
    final_status,
    normalise_message_id,
    parse_receipt,
)

STATS = ["DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD", "ENROUTE"]
_TEXT_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF)


def test_standard_receipt() -> None:
    """Every field of an appendix B receipt is read, the text running to the end with its spaces."""
    r = parse_receipt(
        "id:0123456789 sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 "
        "stat:DELIVRD err:000 text:Hello there stat:x"
    )
    assert r == DeliveryReceipt(
        message_id="0123456789",
        sub="001",
        dlvrd="001",
        submit_date="2401311200",
        done_date="2401311201",
        stat="DELIVRD",
        err="000",
        text="Hello there stat:x",
        message_state=None,
        network_error_code=None,
    )


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("ID:abc SUB:001 DLVRD:001 STAT:delivrd", "stat", "DELIVRD"),
        ("id:abc Stat:undeliv", "stat", "UNDELIV"),
        ("id:abc dlvr:001 stat:DELIVRD", "dlvrd", "001"),
        ("id:abc submit_date:2401311200 done_date:2401311201", "submit_date", "2401311200"),
        ("id:abc submit_date:2401311200 done_date:2401311201", "done_date", "2401311201"),
        ("id:abc submitdate:2401311200", "submit_date", "2401311200"),
        ("id:abc stat:DELIVRD mccmnc:20801 err:000 text:x", "err", "000"),
        ("id:abc stat:DELIVRD mccmnc:20801 err:000 text:x", "stat", "DELIVRD"),
        ("id:00001234 stat:DELIVRD", "message_id", "00001234"),
        ("stat:DELIVRD err:000", "message_id", None),
        ("id:abc stat: err:000", "stat", None),
        ("id:abc text:", "text", None),
        ("id:abc text:  two  spaces ", "text", "two  spaces"),
        ("id:abc\x00 stat:DELIVRD\x00", "stat", "DELIVRD"),
        ("complete garbage", "message_id", None),
        ("", "stat", None),
    ],
)
def test_vendor_variants(text: str, field: str, expected: str | None) -> None:
    """Keys in any case, dlvr, submit_date, extra and missing fields are all read as meant."""
    assert getattr(parse_receipt(text), field) == expected


def test_tlvs() -> None:
    """receipted_message_id wins over the text's id; message_state and network_error_code are read."""
    r = parse_receipt(
        b"id:1 stat:DELIVRD",
        [
            (Tag.RECEIPTED_MESSAGE_ID, b"00af\x00"),
            (Tag.MESSAGE_STATE, bytes([MessageState.DELIVERED])),
            (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x01"),
        ],
    )
    assert (r.message_id, r.message_state, r.network_error_code) == ("00af", 2, b"\x03\x00\x01")
    assert parse_receipt("id:7", [(Tag.RECEIPTED_MESSAGE_ID, b"\x00")]).message_id == "7"


@given(
    message_id=st.from_regex(r"[0-9A-Fa-f]{1,20}", fullmatch=True),
    stat=st.sampled_from(STATS),
    err=st.from_regex(r"[0-9]{3}", fullmatch=True),
    submitted=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
    done=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
    text=st.text(_TEXT_CHARS, max_size=40),
)
def test_simulator_receipts_round_trip(
    message_id: str, stat: str, err: str, submitted: dt.datetime, done: dt.datetime, text: str
) -> None:
    """What the simulator sends parses back to the values it was made from."""
    raw = receipt_text(message_id, stat=stat, err=err, submitted=submitted, done=done, text=text)
    r = parse_receipt(raw.decode("latin-1"))
    assert r.message_id == message_id
    assert (r.sub, r.dlvrd) == ("001", "001" if stat == "DELIVRD" else "000")
    assert (r.submit_date, r.done_date) == (submitted.strftime("%y%m%d%H%M"), done.strftime("%y%m%d%H%M"))
    assert (r.stat, r.err) == (stat, err)
    assert r.text == (text[:20].strip() or None)


# The receipt text parser as first written (every key found, then read), to check the one
# in use against.
_REFERENCE_KEY = re.compile(r"(?:^|(?<=\s))(submit[ _\-]?date|done[ _\-]?date|[A-Za-z][A-Za-z0-9_\-]*)[ \t]*:", re.IGNORECASE)


def reference_fields(text: str) -> dict[str, str]:
    """The known fields of a receipt text, first occurrence wins; ``text`` runs to the end."""
    found: dict[str, str] = {}
    matches = list(_REFERENCE_KEY.finditer(text))
    for n, match in enumerate(matches):
        name = _FIELD_NAMES.get(re.sub(r"[ _\-]", "", match.group(1).lower()))
        if name == "text":
            found.setdefault("text", text[match.end() :].strip())
            break
        end = matches[n + 1].start() if n + 1 < len(matches) else len(text)
        if name is not None and name not in found:
            found[name] = text[match.end() : end].strip()
    return found


# Pieces of receipts, including the letters that match [A-Za-z] only when case is ignored
# ("ſ", "K" the Kelvin sign, "İ", "ı") and white space that is not " " or "\t".
_KEYS = st.sampled_from(
    ["id", "ID", "sub", "dlvrd", "dlvr", "submit date", "SUBMIT DATE", "Submit_Date", "submitdate", "done-date",
     "done  date", "DONE date", "stat", "STAT", "err", "text", "Text", "mccmnc", "x-y_1", "ſtat", "İd", "ıd",
     "Kelvin", "submit", "date", "1d", "-id", "_x"]
)
_SPACES = st.sampled_from(["", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\xa0", "\u3000", "\x85", "\x00", "x"])
_COLONS = st.sampled_from([":", "::", " :", "\t:", " \t :", "\n:", "\xa0:", ""])
_WORDS = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F), max_size=6) | st.sampled_from(["DELIVRD", "001", "2607011200"])
_FIELD = st.tuples(_SPACES, _KEYS, _COLONS, _WORDS).map("".join)
_RECEIPT_TEXT = st.lists(_FIELD | _WORDS | _SPACES, max_size=10).map("".join)


@given(text=_RECEIPT_TEXT | st.text())
def test_fields_match_the_reference_parser(text: str) -> None:
    """The parser in use reads every text as the reference does."""
    assert _fields(text) == reference_fields(text)


@given(
    message_id=st.from_regex(r"[0-9A-Fa-f]{1,20}", fullmatch=True),
    stat=st.sampled_from(STATS),
    text=st.text(_TEXT_CHARS, max_size=40),
)
def test_simulator_receipt_fields_match_the_reference_parser(message_id: str, stat: str, text: str) -> None:
    """The receipts the simulator sends read the same with both parsers."""
    when = dt.datetime(2026, 7, 1, 12, 0)
    raw = receipt_text(message_id, stat=stat, err="000", submitted=when, done=when, text=text).decode("latin-1")
    assert _fields(raw) == reference_fields(raw)


# Values for the layout of appendix B: key-like words, colons and white space included, so
# both the one-match path and the fallback to the general scan are taken.
_VALUES = st.text(st.sampled_from("aZ09:_- \t\n\xa0\u3000x"), max_size=6) | _WORDS | st.sampled_from(["sub:1", "text:", " stat:X"])


@given(
    values=st.lists(_VALUES, min_size=7, max_size=7),
    text=st.none() | st.text(max_size=20) | _RECEIPT_TEXT,
    text_key=st.sampled_from([" text:", " Text:", "  text:", "\ttext:", " TEXT:", " text :"]),
    tail=st.sampled_from(["", " ", "\n", " x:1"]),
)
def test_appendix_b_layout_reads_as_the_reference_does(values: list[str], text: str | None, text_key: str, tail: str) -> None:
    """Receipts laid out as appendix B, the layout read in one match, with values, spacing and
    keys that break it: every one reads as the reference parser reads it."""
    keys = ["id:", " sub:", " dlvrd:", " submit date:", " done date:", " stat:", " err:"]
    raw = "".join(key + value for key, value in zip(keys, values))
    raw += "" if text is None else text_key + text
    raw += tail
    assert _fields(raw) == reference_fields(raw)


@given(
    text=st.text() | st.binary(),
    tlvs=st.lists(st.tuples(st.sampled_from([*Tag, 0x1400]), st.binary(max_size=8)), max_size=4),
)
def test_parse_never_raises(text: str | bytes, tlvs: list[tuple[int, bytes]]) -> None:
    """Any text and any TLVs give a receipt, never an exception."""
    assert isinstance(parse_receipt(text, tlvs), DeliveryReceipt)


def _receipt(stat: str | None = None, state: int | None = None) -> DeliveryReceipt:
    return DeliveryReceipt(None, None, None, None, None, stat, None, None, state, None)


@pytest.mark.parametrize(
    ("stat", "state", "expected"),
    [
        ("DELIVRD", None, "delivered"),
        ("DELIVERED", None, "delivered"),
        (None, MessageState.DELIVERED, "delivered"),
        ("EXPIRED", None, "expired"),
        (None, MessageState.EXPIRED, "expired"),
        ("DELETED", None, "undelivered"),
        ("UNDELIV", None, "undelivered"),
        ("REJECTD", None, "undelivered"),
        (None, MessageState.DELETED, "undelivered"),
        (None, MessageState.UNDELIVERABLE, "undelivered"),
        (None, MessageState.REJECTED, "undelivered"),
        ("ACCEPTD", None, None),
        ("ENROUTE", None, None),
        ("UNKNOWN", None, None),
        (None, MessageState.ACCEPTED, None),
        (None, MessageState.ENROUTE, None),
        (None, MessageState.UNKNOWN, None),
        (None, None, None),
        ("UNDELIV", MessageState.DELIVERED, "undelivered"),
        ("WHATEVER", MessageState.EXPIRED, "expired"),
    ],
)
def test_final_status(stat: str | None, state: int | None, expected: str | None) -> None:
    """stat decides the outcome; the message_state TLV decides when there is no known stat."""
    outcome = final_status(_receipt(stat, state))
    assert outcome == expected
    assert outcome is None or isinstance(outcome, ReceiptOutcome)


@pytest.mark.parametrize(
    ("submit", "receipt", "fmt"),
    [
        ("ABCdef01", " abcDEF01\x00", "string"),
        ("000123", "123", "decimal"),
        ("00ff", "FF", "hex"),
        ("0x1F", "1f", "hex"),
        ("0000ff", "255", "hex_submit_decimal_receipt"),
        ("255", "00FF", "decimal_submit_hex_receipt"),
        ("not-a-number", "NOT-A-NUMBER", "hex_submit_decimal_receipt"),
    ],
)
def test_normalise_correlates(submit: str, receipt: str, fmt: str) -> None:
    """The submit_sm_resp id and the receipt id of one message normalise equal."""
    assert normalise_message_id(submit, fmt, from_receipt=False) == normalise_message_id(receipt, fmt, from_receipt=True)


def test_normalise_canonical_forms() -> None:
    """Numbers become str(int); other ids lower case; an unknown format is refused."""
    assert normalise_message_id("00ff", "hex", from_receipt=True) == "255"
    assert normalise_message_id("0042", "decimal", from_receipt=False) == "42"
    assert normalise_message_id(" AbC ", "string", from_receipt=True) == "abc"
    assert normalise_message_id("12ab", "decimal", from_receipt=True) == "12ab"
    with pytest.raises(ValueError):
        normalise_message_id("1", "base64", from_receipt=True)


@given(
    n=st.integers(0, 2**80),
    zeros_a=st.integers(0, 4),
    zeros_b=st.integers(0, 4),
    upper=st.booleans(),
    fmt=st.sampled_from(MESSAGE_ID_FORMATS[1:]),
)
def test_same_number_normalises_equal(n: int, zeros_a: int, zeros_b: int, upper: bool, fmt: str) -> None:
    """One number written in each side's base, with any leading zeros and hex case, normalises equal."""

    def write(base: str, zeros: int) -> str:
        digits = format(n, "x") if base == "hex" else str(n)
        return "0" * zeros + (digits.upper() if upper else digits)

    bases = {
        "decimal": ("decimal", "decimal"),
        "hex": ("hex", "hex"),
        "hex_submit_decimal_receipt": ("hex", "decimal"),
        "decimal_submit_hex_receipt": ("decimal", "hex"),
    }[fmt]
    submit = normalise_message_id(write(bases[0], zeros_a), fmt, from_receipt=False)
    receipt = normalise_message_id(write(bases[1], zeros_b), fmt, from_receipt=True)
    assert submit == receipt == str(n)


@given(raw=st.text(), fmt=st.sampled_from(MESSAGE_ID_FORMATS), from_receipt=st.booleans())
def test_normalise_is_total_and_bounded(raw: str, fmt: str, from_receipt: bool) -> None:
    """Any id normalises without raising to text without NULs or surrounding spaces."""
    out = normalise_message_id(raw, fmt, from_receipt=from_receipt)
    assert "\x00" not in out and out == out.strip()
