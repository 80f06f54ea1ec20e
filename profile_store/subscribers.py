"""Subscribers: phone numbers normalised to E.164, one row each.

Every other table refers to a subscriber by id, so the same person reached as "07700900123"
(national), "+447700900123" and "00447700900123" must become one row: numbers are
normalised with :func:`normalise_msisdn` before they are looked up.
"""

from __future__ import annotations

import functools
import re

import attrs
import phonenumbers
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from profile_store.schema import subscribers

__all__ = ["InvalidNumber", "RawNumber", "normalise_msisdn", "get_or_create_subscriber", "upsert_statement"]

#: SMPP type_of_number values (SMPP 3.4 section 5.2.5).
TON_INTERNATIONAL = 1
TON_NATIONAL = 2

#: E.164 allows at most 15 digits after the "+".
E164_MAX_DIGITS = 15

# Formatting characters some SMSCs and people leave in numbers; they carry no meaning.
_SEPARATORS = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"[0-9]+")


class InvalidNumber(ValueError):
    """The address is not a phone number (empty, alphanumeric, or too long for E.164)."""


def normalise_msisdn(addr: str, *, ton: int = TON_INTERNATIONAL, default_region: str | None = None) -> str:
    """The E.164 form ("+<digits>") of a subscriber's address.

    A "+" or "00" prefix, or TON 1 (international), means the digits start with a country
    code. TON 2 (national), or any other TON without a prefix, is read as a national number
    of ``default_region`` when one is given. phonenumbers does the parsing so national trunk
    prefixes are dropped ("07700900123" in GB is "+447700900123"); when it cannot make sense
    of the number (unknown country code, odd length) the digits are kept as they are, because
    an SMSC's idea of a valid number beats our copy of the numbering plans.

    Args:
        addr: source_addr or destination_addr as received or configured.
        ton: the address's type_of_number.
        default_region: ISO 3166 region ("GB") for national numbers; None: there are none.

    Returns:
        "+" followed by 1 to 15 digits.

    Raises:
        InvalidNumber: empty, containing anything but digits (and an optional leading "+"
            or separators), or longer than 15 digits. Alphanumeric senders are not subscribers.
    """
    return _normalised(addr, ton, default_region)


@attrs.frozen
class RawNumber:
    """An address as received, normalised only when someone needs its E.164 form: most
    receipts are matched by message id and never need their handset's number."""

    addr: str
    ton: int = TON_INTERNATIONAL
    default_region: str | None = None

    def e164(self) -> str | None:
        """The normalised number, or None when the address is not a phone number."""
        try:
            return normalise_msisdn(self.addr, ton=self.ton, default_region=self.default_region)
        except InvalidNumber:
            return None


# Parsing with phonenumbers costs as much as the statements that store an MO, and the same
# subscribers write again and again; the result depends on the arguments alone. Errors are
# not cached.
@functools.lru_cache(maxsize=100_000)
def _normalised(addr: str, ton: int, default_region: str | None) -> str:
    cleaned = _SEPARATORS.sub("", addr or "")
    international = ton == TON_INTERNATIONAL
    if cleaned.startswith("+"):
        cleaned, international = cleaned[1:], True
    elif cleaned.startswith("00"):
        cleaned, international = cleaned[2:], True
    if not _DIGITS.fullmatch(cleaned):
        raise InvalidNumber(f"not a phone number: {addr!r}")
    if international:
        result = _parsed("+" + cleaned, None)
    elif default_region is not None:
        result = _parsed(cleaned, default_region)
    else:
        result = None
    if result is None:
        result = "+" + cleaned
    if len(result) - 1 > E164_MAX_DIGITS:
        raise InvalidNumber(f"longer than {E164_MAX_DIGITS} digits: {addr!r}")
    return result


def _parsed(number: str, region: str | None) -> str | None:
    """phonenumbers' E.164 form, or None when it cannot parse the number."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not _DIGITS.fullmatch(formatted[1:]):
        return None
    # Only accept a form that reads back as itself, so normalising is idempotent and a
    # number stored once is always found again. An international number already in that
    # form was just read back by the parse above.
    if region is None and formatted == number:
        return formatted
    try:
        again = phonenumbers.format_number(phonenumbers.parse(formatted, None), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return None
    return formatted if again == formatted else None


def upsert_statement(dialect: str, *, unless: sa.ColumnElement[bool] | None = None) -> sa.Executable:
    """The statement behind :func:`get_or_create_subscriber`, for callers that extend it.

    It takes the parameters ``e164`` and ``now`` and returns the subscriber's id.

    Args:
        dialect: ``sqlite`` or ``postgresql``.
        unless: when this condition holds, nothing is written and no row is returned.

    Raises:
        NotImplementedError: another dialect.
    """
    if dialect == "postgresql":
        insert = postgresql.insert(subscribers)
    elif dialect == "sqlite":
        insert = sqlite.insert(subscribers)
    else:
        raise NotImplementedError(f"get_or_create_subscriber does not support {dialect}")
    now = sa.bindparam("now", type_=subscribers.c.last_seen_at.type)
    if unless is None:
        stmt = insert.values(msisdn=sa.bindparam("e164"), created_at=now, last_seen_at=now)
    else:
        e164 = sa.bindparam("e164", type_=subscribers.c.msisdn.type)
        stmt = insert.from_select(["msisdn", "created_at", "last_seen_at"], sa.select(e164, now, now).where(~unless))
    latest = sa.case(
        (stmt.excluded.last_seen_at > subscribers.c.last_seen_at, stmt.excluded.last_seen_at),
        else_=subscribers.c.last_seen_at,
    )
    stmt = stmt.on_conflict_do_update(index_elements=[subscribers.c.msisdn], set_={"last_seen_at": latest})
    return stmt.returning(subscribers.c.id)


# Built once: SQLAlchemy then reuses the compiled statement instead of rebuilding it per MO.
_UPSERT = {name: upsert_statement(name) for name in ("postgresql", "sqlite")}


def get_or_create_subscriber(conn: sa.Connection, msisdn_e164: str, now: float) -> int:
    """The id of the subscriber with this number, created if new; records it as seen at ``now``.

    One INSERT .. ON CONFLICT statement, so two nodes meeting a new number at the same time
    end up with one row (on PostgreSQL the second waits for the first to commit, then
    updates it).

    Args:
        conn: a connection inside the unit's transaction.
        msisdn_e164: from :func:`normalise_msisdn`.
        now: epoch seconds; ``last_seen_at`` never moves backwards.

    Returns:
        The subscriber's id.

    Raises:
        NotImplementedError: the database is neither SQLite nor PostgreSQL.
    """
    name = conn.dialect.name
    stmt = _UPSERT.get(name)
    if stmt is None:
        raise NotImplementedError(f"get_or_create_subscriber does not support {name}")
    return int(conn.execute(stmt, {"e164": msisdn_e164, "now": now}).scalar_one())
