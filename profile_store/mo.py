"""Mobile originated messages: storing each part, spotting redeliveries, reassembling.

Every deliver_sm / data_sm that is not a receipt becomes one ``mo_parts`` row before it is
acknowledged. A part that stands alone, or the part that completes a concatenated message,
also creates the ``mo_messages`` row that campaigns process. Everything lives in the tables,
so reassembly survives a restart: the rest of a message may arrive after the daemon (or
another node) restarted.

Redelivery: an SMSC that saw no deliver_sm_resp (timeout, lost connection) sends the same
MO again, and SMPP gives MOs no message id. A part is therefore a duplicate when a part with
the same SMSC, source, short code, esm_class, data_coding, payload and sar_* TLVs was
received within ``dedupe_window`` seconds *on another connection*: an SMSC redelivers what
it saw no answer for after the connection broke, so the same text twice on one live
connection is the subscriber answering "A" twice in a quiz, and counts twice. The
trade-off: an SMSC that resends on the same connection after its own response timeout
(we answer after a commit, in milliseconds) would have that MO processed twice, and one
whose two identical MOs from a subscriber arrive on two connections within the window
counts them once. Keep the window short (the SMSC's resend delay, not minutes).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

import attrs
import sqlalchemy as sa

from gatewayd.smpp.constants import Tag
from gatewayd.smpp.udh import ConcatInfo
from profile_store.locks import lock_key
from profile_store.prepared import Prepared
from profile_store.schema import MO_STATUSES, mo_messages, mo_parts, subscribers
from profile_store.subscribers import normalise_msisdn, upsert_statement
from profile_store.values import MoPartStatus, MoStatus, MoStored, StoredMo

__all__ = [
    "GAP",
    "MoPartIn",
    "sar_tlvs",
    "store_mo_part",
    "expire_incomplete",
    "pending_mos",
    "get_mo",
    "mark_mo",
]

#: Marks the place of missing parts in the text of an incomplete MO.
GAP = "…"

_SAR_TAGS = (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM)


def sar_tlvs(tlvs: Iterable[tuple[int, bytes]]) -> tuple[tuple[int, bytes], ...] | None:
    """The sar_* TLVs of a PDU in tag order (part of a redelivery's identity), or None."""
    found = sorted((int(tag), bytes(value)) for tag, value in tlvs if tag in _SAR_TAGS)
    return tuple(found) or None


@attrs.frozen
class MoPartIn:
    """One received MO part, as :func:`store_mo_part` needs it."""

    smsc: str
    source_addr: str
    source_addr_ton: int
    #: destination_addr: the short code the subscriber wrote to.
    short_code: str
    esm_class: int
    data_coding: int
    #: short_message (or message_payload) as received, UDH included.
    payload: bytes
    #: The decoded text, UDH removed.
    text: str
    concat: ConcatInfo | None
    #: The sar_* TLVs (see :func:`sar_tlvs`), or None.
    sar: tuple[tuple[int, bytes], ...] | None
    #: Epoch seconds.
    received_at: float
    #: The SMPP connection it arrived on; None when unknown (then any identical part counts).
    connection: str | None = None

    @classmethod
    def from_inbound(cls, message: Any) -> "MoPartIn":
        """Build from a :class:`gatewayd.ingest.InboundMessage` (read by attribute name).

        Args:
            message: has ``smsc``, ``source_addr``, ``destination_addr``, ``text``,
                ``data_coding``, ``concat``, ``received_at`` (an aware datetime) and ``pdu``
                (with ``source_addr_ton``, ``esm_class``, ``payload`` and ``tlvs``).
        """
        pdu = message.pdu
        return cls(
            smsc=message.smsc,
            source_addr=message.source_addr,
            source_addr_ton=pdu.source_addr_ton,
            short_code=message.destination_addr,
            esm_class=pdu.esm_class,
            data_coding=message.data_coding,
            payload=bytes(pdu.payload),
            text=message.text,
            concat=message.concat,
            sar=sar_tlvs(pdu.tlvs),
            received_at=message.received_at.timestamp(),
            connection=getattr(message, "connection", "") or None,
        )


def _dedupe_key(part: MoPartIn, msisdn: str) -> str:
    digest = hashlib.sha256()
    for field in (part.smsc, msisdn, part.short_code, str(part.esm_class), str(part.data_coding)):
        digest.update(field.encode("utf-8") + b"\x1f")
    digest.update(part.payload + b"\x1f")
    for tag, value in part.sar or ():
        digest.update(f"{tag}={value.hex()};".encode("ascii"))
    return digest.hexdigest()


def _concat_key(msisdn: str, short_code: str, concat: ConcatInfo) -> str:
    return f"{msisdn}|{short_code}|{concat.method.value}|{concat.reference}|{concat.total}"


# Every statement of the MO path is built once; those every MO runs are Prepared (compiled
# once per dialect, run on the DBAPI cursor).
_MO_SELECT = sa.select(*mo_messages.c, subscribers.c.msisdn).join(
    subscribers, subscribers.c.id == mo_messages.c.subscriber_id
)
_GET_MO = _MO_SELECT.where(mo_messages.c.id == sa.bindparam("mo_id"))
_PENDING_MOS = (
    _MO_SELECT.where(mo_messages.c.status == MoStatus.STORED.value, mo_messages.c.id > sa.bindparam("after_id"))
    .order_by(mo_messages.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_MO_COLUMNS = ("smsc", "subscriber_id", "short_code", "text", "data_coding", "parts", "complete", "received_at", "stored_at", "status")
_PART_COLUMNS = (
    "smsc",
    "subscriber_id",
    "short_code",
    "dedupe_key",
    "concat_key",
    "part_index",
    "part_total",
    "esm_class",
    "data_coding",
    "payload",
    "text",
    "received_at",
    "connection",
    "status",
    "mo_id",
)
_INSERT_MO = Prepared(sa.insert(mo_messages), keys=_MO_COLUMNS, returning_id=True)
_INSERT_PART = Prepared(sa.insert(mo_parts), keys=_PART_COLUMNS, returning_id=True)


def _twin_condition(late: bool) -> sa.ColumnElement[bool]:
    """An earlier part this one redelivers (parameters: see :func:`_twin_params`)."""
    c = mo_parts.c
    same = sa.and_(
        c.smsc == sa.bindparam("smsc"),
        c.dedupe_key == sa.bindparam("dedupe_key"),
        # An SMSC redelivers after losing our answer, on a new connection: an identical part
        # on the same connection is the subscriber's own second message.
        sa.or_(c.connection.is_(None), c.connection != sa.bindparam("connection")),
    )
    recent = c.received_at.between(sa.bindparam("lo"), sa.bindparam("hi"))
    if not late:
        return sa.and_(same, recent)
    assembled = sa.and_(
        c.status == MoPartStatus.ASSEMBLED.value,
        c.received_at.between(sa.bindparam("late_lo"), sa.bindparam("late_hi")),
    )
    # The range covering both windows keeps the lookup on the (smsc, dedupe_key, received_at)
    # index; without it SQLite may answer the OR with a scan of every recently assembled part.
    either = c.received_at.between(sa.bindparam("any_lo"), sa.bindparam("any_hi"))
    return sa.and_(same, either, sa.or_(recent, assembled))


#: The earliest twin's id, by whether late redeliveries of assembled parts count.
_TWIN = {
    late: sa.select(mo_parts.c.id).where(_twin_condition(late)).order_by(mo_parts.c.id).limit(1)
    for late in (False, True)
}
#: Records the sender as seen and returns its id, unless the part has a twin (no row then):
#: a fresh part, the common case, costs one statement for both.
_SUBSCRIBER_UNLESS_TWIN = {
    (dialect, late): Prepared(upsert_statement(dialect, unless=sa.exists().where(_twin_condition(late))))
    for dialect in ("sqlite", "postgresql")
    for late in (False, True)
}
_PENDING = (
    sa.select(
        mo_parts.c.id,
        mo_parts.c.smsc,
        mo_parts.c.subscriber_id,
        mo_parts.c.short_code,
        mo_parts.c.part_index,
        mo_parts.c.part_total,
        mo_parts.c.data_coding,
        mo_parts.c.text,
        mo_parts.c.received_at,
    )
    .where(mo_parts.c.concat_key == sa.bindparam("concat_key"), mo_parts.c.status == MoPartStatus.PENDING.value)
    .order_by(mo_parts.c.part_index, mo_parts.c.id)
)
_ATTACH = (
    sa.update(mo_parts)
    .where(mo_parts.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(status=sa.bindparam("new_status"), mo_id=sa.bindparam("new_mo_id"))
)
_MARK = (
    sa.update(mo_messages)
    .where(mo_messages.c.id == sa.bindparam("mo_id"))
    .values(status=sa.bindparam("new_status"), processed_at=sa.bindparam("now"), error=sa.bindparam("new_error"))
)
_MARK_WITH_ROUTE = _MARK.values(route=sa.bindparam("new_route"))


def get_mo(conn: sa.Connection, mo_id: int) -> StoredMo:
    """The MO with this id.

    Raises:
        LookupError: there is none.
    """
    row = conn.execute(_GET_MO, {"mo_id": mo_id}).mappings().first()
    if row is None:
        raise LookupError(f"no MO {mo_id}")
    return StoredMo.from_row(row)


def store_mo_part(
    conn: sa.Connection,
    part: MoPartIn,
    now: float,
    *,
    dedupe_window: float = 30.0,
    reassembly_window: float = 600.0,
    default_region: str | None = None,
    msisdn: str | None = None,
) -> MoStored:
    """Store one received MO part; create its MO when it stands alone or completes one.

    Parts of a concatenated MO are grouped by source, short code, method, reference and
    total. When every index 1..total is pending, the MO is created with their texts in order
    and received_at of the earliest part. A part whose index is already pending (redelivered
    outside the dedupe window) is stored but adds nothing to the text. A part identical to
    one already assembled into an MO within ``reassembly_window`` seconds is a late
    redelivery and counts as a duplicate, so it cannot start a bogus one-part message.

    Args:
        conn: a connection inside the unit's transaction.
        part: the part as received.
        now: epoch seconds (``stored_at``, subscriber ``last_seen_at``).
        dedupe_window: seconds within which an identical part is a redelivery.
        reassembly_window: seconds within which a part identical to an assembled one is a
            late redelivery.
        default_region: region for national source numbers (see :func:`normalise_msisdn`).
        msisdn: the source already normalised with these settings, by a caller that has
            parsed it anyway (the store writer then need not).

    Returns:
        Whether it was a duplicate, the part's id, and the MO it completed, if any.

    Raises:
        InvalidNumber: the source is not a phone number (an alphanumeric sender).
    """
    if msisdn is None:
        msisdn = normalise_msisdn(part.source_addr, ton=part.source_addr_ton, default_region=default_region)
    dedupe_key = _dedupe_key(part, msisdn)
    concat = part.concat
    concat_key = None if concat is None else _concat_key(msisdn, part.short_code, concat)
    lock_key(conn, "mo|" + (concat_key or dedupe_key))
    late = concat is not None
    params = _twin_params(part, dedupe_key, dedupe_window, reassembly_window if late else None)
    params.update(e164=msisdn, now=now)
    stmt = _SUBSCRIBER_UNLESS_TWIN.get((conn.dialect.name, late))
    if stmt is None:
        raise NotImplementedError(f"store_mo_part does not support {conn.dialect.name}")
    subscriber_id = stmt.scalar(conn, params)
    if subscriber_id is None:
        twin = int(conn.execute(_TWIN[late], params).scalar_one())
        return MoStored(duplicate=True, part_id=twin, mo=None)
    values = {
        "smsc": part.smsc,
        "subscriber_id": int(subscriber_id),
        "short_code": part.short_code,
        "dedupe_key": dedupe_key,
        "concat_key": concat_key,
        "part_index": None if concat is None else concat.index,
        "part_total": None if concat is None else concat.total,
        "esm_class": part.esm_class,
        "data_coding": part.data_coding,
        "payload": part.payload,
        "text": part.text,
        "received_at": part.received_at,
        "connection": part.connection,
    }
    if concat is None:
        # The message first, so its part is inserted already attached: no update afterwards.
        row = _insert_mo(conn, values, complete=True, parts=1, text=part.text, received_at=part.received_at, now=now)
        values["status"] = MoPartStatus.ASSEMBLED.value
        values["mo_id"] = row["id"]
        part_id = _INSERT_PART.insert_id(conn, values)
        return MoStored(duplicate=False, part_id=part_id, mo=_stored_mo(row, msisdn))
    values["status"] = MoPartStatus.PENDING.value
    values["mo_id"] = None
    part_id = _INSERT_PART.insert_id(conn, values)
    assert concat_key is not None
    rows = _pending(conn, concat_key)
    by_index = _first_by_index(rows)
    if set(by_index) != set(range(1, concat.total + 1)):
        return MoStored(duplicate=False, part_id=part_id, mo=None)
    ordered = [by_index[i] for i in range(1, concat.total + 1)]
    text = "".join(row["text"] for row in ordered)
    received_at = min(float(row["received_at"]) for row in ordered)
    row = _insert_mo(conn, ordered[0], complete=True, parts=concat.total, text=text, received_at=received_at, now=now)
    _attach(conn, rows, row["id"], MoPartStatus.ASSEMBLED)
    return MoStored(duplicate=False, part_id=part_id, mo=_stored_mo(row, msisdn))


def _twin_params(part: MoPartIn, dedupe_key: str, window: float, assembled_window: float | None) -> dict[str, Any]:
    """The parameters of :func:`_twin_condition` for this part."""
    at = part.received_at
    params: dict[str, Any] = {
        "smsc": part.smsc,
        "dedupe_key": dedupe_key,
        "connection": part.connection or "",
        "lo": at - window,
        "hi": at + window,
    }
    if assembled_window is not None:
        params["late_lo"] = at - assembled_window
        params["late_hi"] = at + assembled_window
        params["any_lo"] = at - max(window, assembled_window)
        params["any_hi"] = at + max(window, assembled_window)
    return params


def _pending(conn: sa.Connection, concat_key: str) -> list[sa.RowMapping]:
    return list(conn.execute(_PENDING, {"concat_key": concat_key}).mappings())


def _first_by_index(rows: Sequence[sa.RowMapping]) -> dict[int, sa.RowMapping]:
    """The earliest row of each valid index (a redelivered index adds nothing)."""
    found: dict[int, sa.RowMapping] = {}
    for row in rows:
        index, total = row["part_index"], row["part_total"]
        if index is not None and total is not None and 1 <= index <= total:
            found.setdefault(int(index), row)
    return found


def _insert_mo(
    conn: sa.Connection,
    first: Any,
    *,
    complete: bool,
    parts: int,
    text: str,
    received_at: float,
    now: float,
) -> dict[str, Any]:
    """Create the ``mo_messages`` row (``first``, a part, gives smsc, subscriber...).

    Returns:
        The row as written, ``id`` included.
    """
    values: dict[str, Any] = {
        "smsc": first["smsc"],
        "subscriber_id": int(first["subscriber_id"]),
        "short_code": first["short_code"],
        "text": text,
        "data_coding": int(first["data_coding"]),
        "parts": parts,
        "complete": complete,
        "received_at": float(received_at),
        "stored_at": now,
        "status": MoStatus.STORED.value,
    }
    values["id"] = _INSERT_MO.insert_id(conn, values)
    return values


def _stored_mo(row: dict[str, Any], msisdn: str) -> StoredMo:
    """The MO just written by :func:`_insert_mo`, without reading it back."""
    return StoredMo(
        id=row["id"],
        smsc=row["smsc"],
        subscriber_id=row["subscriber_id"],
        msisdn=msisdn,
        short_code=row["short_code"],
        text=row["text"],
        data_coding=row["data_coding"],
        parts=row["parts"],
        complete=row["complete"],
        received_at=row["received_at"],
        status=row["status"],
        route=None,
    )


def _attach(conn: sa.Connection, rows: Sequence[sa.RowMapping], mo_id: int, status: MoPartStatus) -> None:
    ids = [row["id"] for row in rows]
    conn.execute(_ATTACH, {"ids": ids, "new_status": status.value, "new_mo_id": mo_id})


def expire_incomplete(conn: sa.Connection, now: float, *, older_than: float, limit: int = 100) -> list[StoredMo]:
    """Give up waiting for the missing parts of concatenated MOs started long ago.

    Each group whose earliest pending part was received more than ``older_than`` seconds
    before ``now`` becomes an MO with ``complete`` false: the texts of the parts present in
    order, each run of missing parts marked with :data:`GAP`, ``parts`` the number present.
    Its parts become 'expired'.

    Args:
        conn: a connection inside the unit's transaction.
        now: epoch seconds.
        older_than: seconds a group may wait for its parts.
        limit: the most groups expired in one call (call again while it returns a full list).

    Returns:
        The incomplete MOs created, status 'stored', oldest first.
    """
    c = mo_parts.c
    cutoff = now - older_than
    first = sa.func.min(c.received_at)
    groups = conn.execute(
        sa.select(c.concat_key, first)
        .where(c.status == MoPartStatus.PENDING.value, c.concat_key.is_not(None))
        .group_by(c.concat_key)
        .having(first < cutoff)
        .order_by(first, c.concat_key)
        .limit(limit)
    ).all()
    expired: list[StoredMo] = []
    for concat_key, _ in groups:
        lock_key(conn, "mo|" + concat_key)
        # Read again under the lock: another node may have completed or expired the group.
        rows = _pending(conn, concat_key)
        if not rows or min(float(r["received_at"]) for r in rows) >= cutoff:
            continue
        by_index = _first_by_index(rows)
        if not by_index:
            present: list[sa.RowMapping] = [rows[0]]
            text = rows[0]["text"]
        else:
            total = max(int(rows[0]["part_total"] or 0), max(by_index))
            present = [by_index[i] for i in sorted(by_index)]
            text = _with_gaps(by_index, total)
        received_at = min(float(r["received_at"]) for r in rows)
        mo_id = _insert_mo(conn, rows[0], complete=False, parts=len(present), text=text, received_at=received_at, now=now)["id"]
        _attach(conn, rows, mo_id, MoPartStatus.EXPIRED)
        expired.append(get_mo(conn, mo_id))
    return expired


def _with_gaps(by_index: dict[int, sa.RowMapping], total: int) -> str:
    pieces: list[str] = []
    for index in range(1, total + 1):
        if index in by_index:
            pieces.append(by_index[index]["text"])
        elif not pieces or pieces[-1] is not GAP:
            pieces.append(GAP)
    return "".join(pieces)


def pending_mos(conn: sa.Connection, *, limit: int, after_id: int = 0) -> list[StoredMo]:
    """MOs stored but not yet processed (what to route again after a restart), by id.

    Args:
        conn: a connection.
        limit: the most MOs returned.
        after_id: only MOs with a larger id (page with the last id returned).
    """
    rows = conn.execute(_PENDING_MOS, {"after_id": after_id, "limit": limit}).mappings()
    return [StoredMo.from_row(row) for row in rows]


def mark_mo(
    conn: sa.Connection,
    mo_id: int,
    status: str,
    now: float,
    *,
    route: str | None = None,
    error: str | None = None,
) -> None:
    """Record what processing an MO did.

    Args:
        conn: a connection inside the unit's transaction.
        mo_id: the MO.
        status: 'processed', 'failed', 'ignored' (or 'stored' to process it again).
        now: epoch seconds (``processed_at``).
        route: the routing outcome (system keyword, campaign, no route); None keeps it.
        error: why processing failed, if it did.

    Raises:
        ValueError: ``status`` is not an MO status.
        LookupError: there is no MO ``mo_id``.
    """
    if status not in MO_STATUSES:
        raise ValueError(f"not an MO status: {status!r}")
    params: dict[str, Any] = {"mo_id": mo_id, "new_status": str(status), "now": now, "new_error": error}
    if route is None:
        result = conn.execute(_MARK, params)
    else:
        params["new_route"] = route
        result = conn.execute(_MARK_WITH_ROUTE, params)
    if result.rowcount == 0:
        raise LookupError(f"no MO {mo_id}")
