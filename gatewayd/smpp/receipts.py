"""Delivery receipts: parsing their text, what they mean, and correlating their message ids.

A receipt is a deliver_sm whose short_message follows the informal format of SMPP 3.4
appendix B (``id:... sub:... dlvrd:... submit date:... done date:... stat:... err:... text:...``)
and which may also carry the receipted_message_id and message_state TLVs. SMSCs vary the
format (key case, ``dlvr`` for ``dlvrd``, ``submit_date``, missing or extra fields), so
:func:`parse_receipt` is tolerant and never raises. SMSCs also vary how they write a message
id in the receipt compared with the submit_sm_resp (hex in one, decimal in the other,
leading zeros, case): :func:`normalise_message_id` gives both sides one canonical form per
the SMSC's ``message_id_format``. Pure functions, no I/O.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Iterable

import attrs

from gatewayd.smpp.constants import MessageState, Tag

__all__ = [
    "MESSAGE_ID_FORMATS",
    "DeliveryReceipt",
    "ReceiptOutcome",
    "parse_receipt",
    "final_status",
    "normalise_message_id",
]

#: The allowed values of ``SmscConfig.message_id_format``.
MESSAGE_ID_FORMATS = ("string", "decimal", "hex", "hex_submit_decimal_receipt", "decimal_submit_hex_receipt")


@attrs.frozen
class DeliveryReceipt:
    """What one receipt says; every field is None when the receipt did not say it."""

    #: receipted_message_id TLV when present, else the text's ``id:`` (raw, not normalised).
    message_id: str | None
    sub: str | None
    dlvrd: str | None
    #: ``YYMMDDhhmm[ss]`` as sent; not parsed, SMSCs disagree on the time zone.
    submit_date: str | None
    done_date: str | None
    #: Upper case: DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD, ENROUTE...
    stat: str | None
    err: str | None
    #: The start of the message text, running to the end of the receipt.
    text: str | None
    #: The message_state TLV (see :class:`~gatewayd.smpp.constants.MessageState`).
    message_state: int | None
    #: The network_error_code TLV: network type, then a 2-octet error code.
    network_error_code: bytes | None


# A key is a word at the start or after white space, followed by a colon. "submit date" and
# "done date" are the two keys with a space in them. Unknown keys are recognised too, so an
# extra vendor field ends the value before it instead of being glued onto it.
_KEY_WORD = r"(submit[ _\-]?date|done[ _\-]?date|[A-Za-z][A-Za-z0-9_\-]*)[ \t]*:"
_KEY_AT_START = re.compile(_KEY_WORD, re.IGNORECASE)
# Starting with the white space (rather than looking behind for it) lets the regex engine
# skip to the next white space instead of trying the key at every position.
_KEY_AFTER_SPACE = re.compile(r"\s" + _KEY_WORD, re.IGNORECASE)

_SEPARATORS = re.compile(r"[ _\-]")

_FIELD_NAMES = {
    "id": "id",
    "sub": "sub",
    "dlvrd": "dlvrd",
    "dlvr": "dlvrd",
    "submitdate": "submit_date",
    "donedate": "done_date",
    "stat": "stat",
    "err": "err",
    "text": "text",
}


@functools.lru_cache(maxsize=256)
def _field_name(key: str) -> str | None:
    """The field a key as written names ("Submit_Date" is submit_date), None for another key."""
    return _FIELD_NAMES.get(_SEPARATORS.sub("", key.lower()))


# The format of appendix B exactly as most SMSCs write it: read in one match, where the
# general scan below costs two searches and a key lookup per field. Values hold no white
# space, so no key can hide in one, and the scan would find the same fields.
_CANONICAL = re.compile(
    r"id:(\S*) sub:(\S*) dlvrd:(\S*) submit date:(\S*) done date:(\S*) stat:(\S*) err:(\S*)(?:\s+[Tt]ext:(.*))?\s*\Z",
    re.DOTALL,
)
_CANONICAL_NAMES = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err")


def _fields(text: str) -> dict[str, str]:
    """The known fields of a receipt text, first occurrence wins; ``text`` runs to the end."""
    match = _CANONICAL.match(text)
    if match is None:
        return _scan_fields(text)
    found = dict(zip(_CANONICAL_NAMES, match.groups()))
    if match.group(8) is not None:
        found["text"] = match.group(8).strip()
    return found


def _scan_fields(text: str) -> dict[str, str]:
    """:func:`_fields` for any layout: key by key, vendor variants and unknown keys included."""
    found: dict[str, str] = {}
    match = _KEY_AT_START.match(text) or _KEY_AFTER_SPACE.search(text)
    while match is not None:
        name = _field_name(match.group(1))
        if name == "text":
            # The message text may itself contain "key:" words: nothing after it is a field.
            found.setdefault("text", text[match.end() :].strip())
            break
        following = _KEY_AFTER_SPACE.search(text, match.end())
        if name is not None and name not in found:
            end = len(text) if following is None else following.start(1)
            found[name] = text[match.end() : end].strip()
        match = following
    return found


def _tlv(tlvs: Iterable[tuple[int, bytes]], tag: int) -> bytes | None:
    for t, value in tlvs:
        if t == tag:
            return bytes(value)
    return None


def parse_receipt(text: str | bytes, tlvs: Iterable[tuple[int, bytes]] = ()) -> DeliveryReceipt:
    """Read a delivery receipt; tolerant of vendor variants and never raises.

    Args:
        text: the decoded short_message (bytes are read as Latin-1).
        tlvs: the deliver_sm's optional parameters, ``(tag, value)`` pairs.

    Returns:
        The receipt, with None for every field that is missing, empty or unreadable.
    """
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("latin-1")
        fields = _fields(text.replace("\x00", " "))
    except Exception:
        fields = {}
    try:
        tlvs = tuple(tlvs)
        receipted = _tlv(tlvs, Tag.RECEIPTED_MESSAGE_ID)
        state = _tlv(tlvs, Tag.MESSAGE_STATE)
        network_error = _tlv(tlvs, Tag.NETWORK_ERROR_CODE)
    except Exception:
        receipted = state = network_error = None

    def get(name: str) -> str | None:
        return fields.get(name) or None

    message_id = None
    if receipted is not None:
        message_id = receipted.replace(b"\x00", b"").decode("latin-1").strip() or None
    stat = get("stat")
    return DeliveryReceipt(
        message_id=message_id or get("id"),
        sub=get("sub"),
        dlvrd=get("dlvrd"),
        submit_date=get("submit_date"),
        done_date=get("done_date"),
        stat=None if stat is None else stat.upper(),
        err=get("err"),
        text=get("text"),
        message_state=int.from_bytes(state, "big") if state and len(state) <= 4 else None,
        network_error_code=network_error,
    )


class ReceiptOutcome(enum.StrEnum):
    """The final outcomes a receipt can report, named as the ``mt_parts`` statuses."""

    DELIVERED = "delivered"
    EXPIRED = "expired"
    UNDELIVERED = "undelivered"


#: ``stat:`` values, including the spelled-out variants some SMSCs send. None: not final.
_STATS: dict[str, ReceiptOutcome | None] = {
    "DELIVRD": ReceiptOutcome.DELIVERED,
    "DELIVERED": ReceiptOutcome.DELIVERED,
    "EXPIRED": ReceiptOutcome.EXPIRED,
    "DELETED": ReceiptOutcome.UNDELIVERED,
    "UNDELIV": ReceiptOutcome.UNDELIVERED,
    "UNDELIVERABLE": ReceiptOutcome.UNDELIVERED,
    "REJECTD": ReceiptOutcome.UNDELIVERED,
    "REJECTED": ReceiptOutcome.UNDELIVERED,
    "ACCEPTD": None,
    "ACCEPTED": None,
    "ENROUTE": None,
    "UNKNOWN": None,
}

_STATES: dict[int, ReceiptOutcome | None] = {
    MessageState.DELIVERED: ReceiptOutcome.DELIVERED,
    MessageState.EXPIRED: ReceiptOutcome.EXPIRED,
    MessageState.DELETED: ReceiptOutcome.UNDELIVERED,
    MessageState.UNDELIVERABLE: ReceiptOutcome.UNDELIVERED,
    MessageState.REJECTED: ReceiptOutcome.UNDELIVERED,
    MessageState.ACCEPTED: None,
    MessageState.ENROUTE: None,
    MessageState.UNKNOWN: None,
}


def final_status(receipt: DeliveryReceipt) -> ReceiptOutcome | None:
    """The ``mt_parts`` status a receipt settles, or None when it reports no final outcome.

    ``stat:`` decides when the text has a stat this module knows; otherwise the
    message_state TLV does. ACCEPTD, ENROUTE and UNKNOWN (and anything unrecognised) are
    not final.

    Returns:
        A :class:`ReceiptOutcome` (a ``str``: "delivered", "expired" or "undelivered"), or None.
    """
    if receipt.stat is not None and receipt.stat in _STATS:
        return _STATS[receipt.stat]
    if receipt.message_state is not None:
        return _STATES.get(receipt.message_state)
    return None


_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")
#: mt_parts.smsc_message_id and dlr_events.smsc_message_id hold at most this many characters.
MAX_ID_LENGTH = 65


def normalise_message_id(raw: str, fmt: str, *, from_receipt: bool) -> str:
    """The canonical form of an SMSC message id, equal on both sides of one SMSC's traffic.

    Formats (``SmscConfig.message_id_format``):

    * ``string``: spaces and NULs stripped, lower case.
    * ``decimal``, ``hex``: a number in that base on both sides; canonical ``str(int)``.
    * ``hex_submit_decimal_receipt``: hex in submit_sm_resp, decimal in receipts.
    * ``decimal_submit_hex_receipt``: the reverse.

    An id that is not a number in the expected base (or whose decimal form would not fit
    the 65-character columns) falls back to the ``string`` rule, so it still correlates with
    itself.

    Args:
        raw: the id as received (submit_sm_resp message_id, receipted_message_id or ``id:``).
        fmt: one of :data:`MESSAGE_ID_FORMATS`.
        from_receipt: True for an id taken from a receipt, False for a submit_sm_resp's.

    Returns:
        The id to store and look up.

    Raises:
        ValueError: ``fmt`` is not a known format.
    """
    if fmt not in MESSAGE_ID_FORMATS:
        raise ValueError(f"unknown message_id_format {fmt!r}")
    text = raw.replace("\x00", "").strip()
    if fmt == "string":
        base = None
    elif fmt == "decimal":
        base = 10
    elif fmt == "hex":
        base = 16
    elif fmt == "hex_submit_decimal_receipt":
        base = 10 if from_receipt else 16
    else:
        base = 16 if from_receipt else 10
    if base == 10 and _DECIMAL.fullmatch(text):
        canonical = str(int(text, 10))
    elif base == 16 and (match := _HEX.fullmatch(text)):
        canonical = str(int(match.group(1), 16))
    else:
        return text.lower()
    return canonical if len(canonical) <= MAX_ID_LENGTH else text.lower()
