"""Units of work of the MT outbox: enqueue, claim, record each part's outcome, retry or fail.

Every function here is a unit for :meth:`profile_store.db.Store.write`: ``fn(conn, ...)``,
synchronous, run inside the writer's transaction, never committing, returning frozen values.
Times are passed in (UTC epoch seconds) so tests and the caller's clock agree. A unit that is
rolled back and run again (the writer retries a batch) leaves the same result.

The life of an MT: :func:`enqueue_mt` stores it ``queued`` with one ``pending`` row per part;
:func:`claim_due` hands due rows to one node (``sending``, with a lease); the node records
each part the SMSC accepts with :func:`part_accepted` (the MT is ``submitted`` once all are)
or the attempt's failure with :func:`attempt_failed` (``queued`` again with a backoff, or
``failed``). A node that dies mid-send leaves its claims to expire; the next claim resumes
them and sends only the parts still pending.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gatewayd.smpp.text import ConcatMethod, split_text
from profile_store.committer import runs_together
from profile_store.dlr import apply_held_by_content, apply_held_receipts_to_mt, lock_message_id, refresh_mt_status
from profile_store.mt_values import ClaimedMt, MtProgress, MtRequest, StoredMt, StoredMtPart
from profile_store.prepared import Prepared, first_inserted_id
from profile_store.schema import MT_QUEUED, MT_SENDING, dlr_events, mt_messages, mt_parts, subscribers
from profile_store.subscribers import get_or_create_subscriber, normalise_msisdn

__all__ = [
    "MtRequest",
    "StoredMt",
    "StoredMtPart",
    "ClaimedMt",
    "enqueue_claimed",
    "MtProgress",
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "exponential_backoff",
    "enqueue_mt",
    "NewMt",
    "new_mt",
    "insert_mts",
    "claim_due",
    "Screen",
    "part_accepted",
    "attempt_failed",
    "settle_mt",
    "release_claims",
    "outbox_counts",
    "get_mt",
    "get_parts",
]

#: First retry delay after a temporary failure, in seconds; it doubles with every attempt.
DEFAULT_BACKOFF_BASE = 5.0
#: Longest retry delay, in seconds.
DEFAULT_BACKOFF_CAP = 900.0

#: Part statuses that mean an SMSC has the part (accepted, or a receipt already came back).
_PART_ACCEPTED = ("accepted", "delivered", "undelivered", "expired")
#: MT statuses the sender still works on.
_ACTIVE = ("queued", "sending")

_MT_COLUMNS = [*mt_messages.c, subscribers.c.msisdn]


def _constants(*values: str) -> list[sa.ColumnElement[Any]]:
    """Status names written into the SQL: a constant list needs no parameter expanded per run."""
    return [sa.literal_column(f"'{value}'") for value in values]


# Statements are built once: building and hashing a statement costs more than SQLite takes
# to run it, and a statement object reused keeps its compiled form and cache key.
_m, _p = mt_messages.c, mt_parts.c

_MT_INSERTED = (
    "subscriber_id",
    "source_addr",
    "smsc",
    "text",
    "data_coding",
    "concat_ref",
    "parts_total",
    "priority",
    "registered_delivery",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "in_reply_to",
    "campaign",
    "claimed_by",
    "claim_expires_at",
    "created_at",
    "updated_at",
    "kind",
)
_INSERT_MT = Prepared(sa.insert(mt_messages), keys=_MT_INSERTED, returning_id=True)
_INSERT_PARTS = Prepared(sa.insert(mt_parts), keys=("mt_id", "part_index", "status"))

_SELECT_MT = (
    sa.select(*_MT_COLUMNS)
    .join_from(mt_messages, subscribers, _m.subscriber_id == subscribers.c.id)
    .where(_m.id == sa.bindparam("b_mt_id"))
)
_SELECT_PARTS = sa.select(mt_parts).where(_p.mt_id == sa.bindparam("b_mt_id")).order_by(_p.part_index)

# Due rows are found per priority, each a range on the partial index of queued rows
# (priority, next_attempt_at), whose WHERE MT_QUEUED matches: one query with "queued and
# due OR sending and expired" ordered by priority made SQLite read and sort every queued
# row at each claim (a million for a large multicast).
_DUE_ORDER = (_m.priority, _m.next_attempt_at, _m.id)
#: The lowest priority above ``b_after`` that has queued rows (an index seek).
_NEXT_QUEUED_PRIORITY = Prepared(
    sa.select(sa.func.min(_m.priority)).where(MT_QUEUED, _m.priority > sa.bindparam("b_after"))
)
_DUE_AT_PRIORITY = (
    sa.select(*_DUE_ORDER)
    .where(MT_QUEUED, _m.priority == sa.bindparam("b_priority"), _m.next_attempt_at <= sa.bindparam("b_now"))
    .order_by(_m.next_attempt_at, _m.id)
    .limit(sa.bindparam("b_limit"))
)
#: Sends whose claim ran out (their node died or stalled): few rows are ever ``sending``.
_EXPIRED_SENDS = (
    sa.select(*_DUE_ORDER)
    .where(MT_SENDING, _m.claim_expires_at < sa.bindparam("b_now"))
    .order_by(*_DUE_ORDER)
    .limit(sa.bindparam("b_limit"))
)
_SELECT_DUE = {
    "sqlite": (Prepared(_DUE_AT_PRIORITY), Prepared(_EXPIRED_SENDS)),
    "postgresql": (
        Prepared(_DUE_AT_PRIORITY.with_for_update(skip_locked=True)),
        Prepared(_EXPIRED_SENDS.with_for_update(skip_locked=True)),
    ),
}


def _due_ids(conn: Connection, now: float, limit: int) -> list[int]:
    """Up to ``limit`` ids of due MTs, replies (priority 0) first, then by due time and id."""
    statements = _SELECT_DUE.get(conn.dialect.name)
    if statements is None:
        raise NotImplementedError(f"claim_due does not support {conn.dialect.name}")
    due_at, expired = statements
    found = [tuple(row) for row in expired.all(conn, {"b_now": now, "b_limit": limit})]
    queued = 0
    priority = -1
    while queued < limit:
        priority = _NEXT_QUEUED_PRIORITY.scalar(conn, {"b_after": priority})
        if priority is None:
            break
        rows = due_at.all(conn, {"b_priority": priority, "b_now": now, "b_limit": limit - queued})
        found += [tuple(row) for row in rows]
        queued += len(rows)
    found.sort()
    return [int(row[2]) for row in found[:limit]]


# A claim's statements take its list of ids; they are Prepared (see profile_store.prepared),
# the list compiled once per power-of-two length.
_CLAIM = Prepared(
    sa.update(mt_messages)
    .where(_m.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(
        status="sending",
        claimed_by=sa.bindparam("b_node"),
        claim_expires_at=sa.bindparam("b_expires"),
        updated_at=sa.bindparam("b_now"),
    ),
    expanding="b_ids",
)
#: Pending parts of the listed MTs that are being sent (claimed, abandoned or released).
_MARK_UNCERTAIN = Prepared(
    sa.update(mt_parts)
    .where(
        _p.status == "pending",
        _p.mt_id.in_(
            sa.select(_m.id).where(_m.id.in_(sa.bindparam("b_ids", expanding=True)), _m.status == "sending").scalar_subquery()
        ),
    )
    .values(uncertain=True),
    expanding="b_ids",
)
_SELECT_CLAIMED = Prepared(
    sa.select(*_MT_COLUMNS)
    .join_from(mt_messages, subscribers, _m.subscriber_id == subscribers.c.id)
    .where(_m.id.in_(sa.bindparam("b_ids", expanding=True))),
    expanding="b_ids",
)
_SELECT_PENDING = Prepared(
    sa.select(_p.mt_id, _p.part_index)
    .where(_p.mt_id.in_(sa.bindparam("b_ids", expanding=True)), _p.status == "pending")
    .order_by(_p.mt_id, _p.part_index),
    expanding="b_ids",
)

#: What an SMSC's acceptance writes into the part.
_ACCEPTED_VALUES = {
    "status": "accepted",
    "smsc": sa.bindparam("b_smsc"),
    "smsc_message_id": sa.bindparam("b_message_id"),
    "submit_status": sa.bindparam("b_submit_status"),
    "submitted_at": sa.bindparam("b_now"),
    "done_at": None,
}
# Only a part no SMSC has yet is updated: a rerun, or a late answer to an attempt that was
# already given up on, must not overwrite a receipt's outcome.
_ACCEPT_PART = Prepared(
    sa.update(mt_parts)
    .where(
        _p.mt_id == sa.bindparam("b_mt_id"),
        _p.part_index == sa.bindparam("b_index"),
        _p.status.in_(_constants("pending", "failed")),
    )
    .values(_ACCEPTED_VALUES)
    .returning(
        _p.id, _p.uncertain, sa.select(_m.parts_total).where(_m.id == sa.bindparam("b_mt_id")).scalar_subquery().label("parts_total")
    )
)
_PART_ID = sa.select(_p.id, _p.uncertain).where(_p.mt_id == sa.bindparam("b_mt_id"), _p.part_index == sa.bindparam("b_index"))

_ACCEPTED_PARTS = (
    sa.select(sa.func.count())
    .select_from(mt_parts)
    .where(_p.mt_id == sa.bindparam("b_mt_id"), _p.status.in_(_constants(*_PART_ACCEPTED)))
    .scalar_subquery()
)
# Parts a receipt already moved past 'accepted'.
_RECEIPTED_PARTS = (
    sa.select(sa.func.count())
    .select_from(mt_parts)
    .where(_p.mt_id == sa.bindparam("b_mt_id"), _p.status.not_in(_constants("pending", "accepted")))
    .scalar_subquery()
)
_PROGRESS_COLUMNS = (_m.id, _m.status, _m.attempts, _m.parts_total, _m.next_attempt_at, _m.last_error)
_SELECT_PROGRESS = sa.select(*_PROGRESS_COLUMNS, _ACCEPTED_PARTS.label("accepted")).where(_m.id == sa.bindparam("b_mt_id"))
# Whether any receipt carries the id just stored: almost never, so apply_held_receipts
# (which looks at the receipts' match and age too) is only called when one does.
_RECEIPTS_OF_ID = (
    sa.exists()
    .where(dlr_events.c.smsc == sa.bindparam("b_smsc"), dlr_events.c.smsc_message_id == sa.bindparam("b_message_id"))
    .label("receipts")
)
_SELECT_ACCEPT_PROGRESS = sa.select(*_PROGRESS_COLUMNS, _ACCEPTED_PARTS.label("accepted"), _RECEIPTS_OF_ID).where(
    _m.id == sa.bindparam("b_mt_id")
)

# A failed MT whose parts all reached the SMSC after all (a late answer) is submitted: the
# subscriber gets it, so reports must not say it failed. An MT receipts already moved on
# keeps its status; only its claim is released.
_MOVABLE = _m.status.in_(_constants(*_ACTIVE, "failed"))
_SETTLE_VALUES = {
    "status": sa.case((_MOVABLE, "submitted"), else_=_m.status),
    "last_error": sa.case((_MOVABLE, sa.null()), else_=_m.last_error),
    "claimed_by": None,
    "claim_expires_at": None,
    "updated_at": sa.bindparam("b_now"),
}
_SETTLE_UPDATE = (
    sa.update(mt_messages)
    .where(
        _m.id == sa.bindparam("b_mt_id"),
        sa.exists().where(_p.mt_id == sa.bindparam("b_mt_id")),
        ~sa.exists().where(_p.mt_id == sa.bindparam("b_mt_id"), _p.status.not_in(_constants(*_PART_ACCEPTED))),
    )
    .values(_SETTLE_VALUES)
)
_SETTLED_COLUMNS = (*_PROGRESS_COLUMNS, _ACCEPTED_PARTS.label("accepted"), _RECEIPTED_PARTS.label("receipted"))
_SETTLE = _SETTLE_UPDATE.returning(*_SETTLED_COLUMNS)
_SETTLE_ACCEPTED = Prepared(_SETTLE_UPDATE.returning(*_SETTLED_COLUMNS, _RECEIPTS_OF_ID))
# _SETTLE_ACCEPTED for an MT of one part, that part just accepted: every part is accepted
# and none is past it, so neither the scans over the parts nor their counts are needed.
_SETTLE_SINGLE_ACCEPTED = Prepared(
    sa.update(mt_messages)
    .where(_m.id == sa.bindparam("b_mt_id"))
    .values(_SETTLE_VALUES)
    .returning(
        *_PROGRESS_COLUMNS, sa.literal_column("1").label("accepted"), sa.literal_column("0").label("receipted"), _RECEIPTS_OF_ID
    )
)

_MT_EXISTS = sa.select(_m.id).where(_m.id == sa.bindparam("b_mt_id"))


def exponential_backoff(attempts: int, *, base: float = DEFAULT_BACKOFF_BASE, cap: float = DEFAULT_BACKOFF_CAP) -> float:
    """The delay before the next attempt after ``attempts`` failed ones: base * 2**(attempts-1), capped.

    Args:
        attempts: attempts made so far (1 after the first failure).
        base: the delay after the first failure.
        cap: the longest delay.

    Returns:
        Seconds to wait.
    """
    # min() on the exponent first keeps 2**n from growing without bound for large counts.
    return float(min(cap, base * 2 ** min(max(attempts - 1, 0), 32)))


# -- enqueue ---------------------------------------------------------------------------------


def enqueue_mt(conn: Connection, request: MtRequest, now: float, *, concat_ref: int) -> StoredMt:
    """Store an MT as ``queued``, due now, with one ``pending`` part row per submit_sm it needs.

    Args:
        conn: the writer's connection.
        request: what to send.
        now: the current time.
        concat_ref: the concatenation reference every attempt of this MT uses (so a handset
            reassembles parts sent in different attempts); see ConcatReferences.

    Returns:
        The stored MT.

    Raises:
        InvalidNumber: ``msisdn`` is not a phone number.
        UnencodableError: ``data_coding`` asks for an alphabet that cannot carry the text.
        ValueError: the text needs more than 255 parts, or ``data_coding`` is not a text coding.
    """
    stored = insert_mts(conn, [new_mt(conn, request, now, concat_ref=concat_ref)])[0]
    assert isinstance(stored, StoredMt)
    return stored


def enqueue_claimed(conn: Connection, request: MtRequest, now: float, *, concat_ref: int, node: str, lease: float) -> ClaimedMt:
    """Store an MT already claimed by ``node`` (``sending``, under a lease of ``lease``
    seconds), for a sender that starts it as soon as the transaction commits: a reply decided
    in the same transaction skips the claim that would follow (see :func:`enqueue_mt`).

    The claim-time screen does not run: the caller has just decided to send it against the
    same transaction's view of the ledger. If the node dies before it is sent, the lease
    runs out and :func:`claim_due` resumes it like any abandoned send.
    """
    claimed = insert_mts(conn, [new_mt(conn, request, now, concat_ref=concat_ref, claim=(node, now + lease))])[0]
    assert isinstance(claimed, ClaimedMt)
    return claimed


@attrs.frozen
class NewMt:
    """An MT checked and ready to insert (:func:`new_mt`), for :func:`insert_mts`."""

    #: The ``mt_messages`` row to insert, without its id.
    row: dict[str, Any]
    msisdn: str
    #: The indices of its parts.
    parts: tuple[int, ...]

    @property
    def claimed(self) -> bool:
        """Inserted ``sending``, claimed by a node: it becomes a :class:`ClaimedMt`."""
        return self.row["claimed_by"] is not None


def new_mt(conn: Connection, request: MtRequest, now: float, *, concat_ref: int, claim: tuple[str, float] | None = None) -> NewMt:
    """Check an MT and build its row: ``queued`` and due now, or with ``claim`` (a node and
    the end of its lease) ``sending`` and claimed by that node. Nothing is inserted, but a
    subscriber row is created for a number given without its subscriber id.

    Raises:
        as :func:`enqueue_mt`.
    """
    # Splitting here (not only at send time) rejects unsendable text while the caller can
    # still be told, and fixes parts_total so part rows exist before the first attempt.
    parts = split_text(request.text, reference=concat_ref, method=ConcatMethod.UDH8, data_coding=request.data_coding)
    if request.subscriber_id is None:
        msisdn = normalise_msisdn(request.msisdn)
        subscriber_id = get_or_create_subscriber(conn, msisdn, now)
    else:
        msisdn, subscriber_id = request.msisdn, request.subscriber_id
    row = {
        "subscriber_id": subscriber_id,
        "source_addr": request.source_addr,
        "smsc": request.smsc,
        "text": request.text,
        "data_coding": request.data_coding,
        "concat_ref": concat_ref,
        "parts_total": len(parts),
        "priority": request.priority,
        "registered_delivery": request.registered_delivery,
        "status": "queued" if claim is None else "sending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "in_reply_to": request.in_reply_to,
        "campaign": request.campaign,
        "claimed_by": None if claim is None else claim[0],
        "claim_expires_at": None if claim is None else claim[1],
        "created_at": now,
        "updated_at": now,
        "kind": request.resolved_kind,
    }
    return NewMt(row, msisdn, tuple(part.index for part in parts))


def insert_mts(conn: Connection, mts: Sequence[NewMt]) -> list[StoredMt | ClaimedMt]:
    """Insert MTs built by :func:`new_mt`, each with one ``pending`` row per part, in order;
    each as stored (a :class:`ClaimedMt` for a claimed one). On SQLite many take one
    statement per table."""
    if not mts:
        return []
    if len(mts) > 1 and conn.dialect.name == "sqlite":
        _INSERT_MT.many(conn, [mt.row for mt in mts])
        first_id = first_inserted_id(conn, len(mts))
        ids = list(range(first_id, first_id + len(mts)))
    else:
        ids = [_INSERT_MT.insert_id(conn, mt.row) for mt in mts]
    _INSERT_PARTS.many(conn, [{"mt_id": mt_id, "part_index": index, "status": "pending"} for mt_id, mt in zip(ids, mts) for index in mt.parts])
    # The rows hold exactly what was inserted, so they are not read back.
    stored: list[StoredMt | ClaimedMt] = []
    for mt_id, mt in zip(ids, mts):
        row = {**mt.row, "id": mt_id, "msisdn": mt.msisdn}
        stored.append(ClaimedMt.from_row(row, mt.parts) if mt.claimed else StoredMt.from_row(row))
    return stored


def get_mt(conn: Connection, mt_id: int) -> StoredMt | None:
    """The MT with this id, or None."""
    row = conn.execute(_SELECT_MT, {"b_mt_id": mt_id}).mappings().first()
    return None if row is None else StoredMt.from_row(row)


def get_parts(conn: Connection, mt_id: int) -> list[StoredMtPart]:
    """The part rows of an MT, in part order."""
    rows = conn.execute(_SELECT_PARTS, {"b_mt_id": mt_id}).mappings()
    return [StoredMtPart.from_row(row) for row in rows]


# -- claim -----------------------------------------------------------------------------------


#: Checks claimed MTs once more before they are sent: returns the ids not to send now, each
#: with the reason to cancel it (a str, recorded as its last error: a STOP since it was
#: queued) or the time to defer it to (a float: quiet hours in the recipient's time zone).
Screen = Callable[[Connection, list[ClaimedMt], float], dict[int, "str | float"]]

_CANCEL = (
    sa.update(mt_messages)
    .where(_m.id == sa.bindparam("b_mt_id"))
    .values(
        status="cancelled",
        last_error=sa.bindparam("b_error"),
        claimed_by=None,
        claim_expires_at=None,
        updated_at=sa.bindparam("b_now"),
    )
)
_DEFER = (
    sa.update(mt_messages)
    .where(_m.id == sa.bindparam("b_mt_id"))
    .values(
        status="queued",
        next_attempt_at=sa.bindparam("b_until"),
        claimed_by=None,
        claim_expires_at=None,
        updated_at=sa.bindparam("b_now"),
    )
)


def claim_due(
    conn: Connection, *, node: str, now: float, limit: int, lease: float, screen: Screen | None = None
) -> list[ClaimedMt]:
    """Claim up to ``limit`` MTs for ``node`` to send: due ``queued`` rows and abandoned ``sending`` rows.

    A ``sending`` row whose claim expired belonged to a node that died or stalled mid-send;
    it is resumed with the parts still pending. Rows come in order of priority (replies
    first), then due time, then id. On PostgreSQL the rows are locked with
    ``FOR UPDATE SKIP LOCKED``, so nodes sharing a database never claim the same row; on
    SQLite the single writer (BEGIN IMMEDIATE) serialises claims anyway.

    Args:
        conn: the writer's connection.
        node: the claiming node's name, recorded in ``claimed_by``.
        now: the current time.
        limit: the most rows to claim.
        lease: seconds the claim holds before another node may take the row over.
        screen: checks the claimed MTs in the same transaction; those it names are not
            returned: ``cancelled`` with its reason, or ``queued`` again until its time.

    Returns:
        The claimed MTs, in claim order.
    """
    if limit <= 0:
        return []
    ids = _due_ids(conn, now, limit)
    if not ids:
        return []
    # Taking over another node's abandoned send: its pending parts may have gone out.
    _MARK_UNCERTAIN.run(conn, {"b_ids": ids})
    _CLAIM.run(conn, {"b_ids": ids, "b_node": node, "b_expires": now + lease, "b_now": now})
    by_id = {int(row.id): row._asdict() for row in _SELECT_CLAIMED.all(conn, {"b_ids": ids})}
    pending: dict[int, list[int]] = {i: [] for i in ids}
    for mt_id, index in _SELECT_PENDING.all(conn, {"b_ids": ids}):
        pending[int(mt_id)].append(int(index))
    claimed = [ClaimedMt.from_row(by_id[i], tuple(pending[i])) for i in ids]
    if screen is None:
        return claimed
    held = screen(conn, claimed, now)
    if not held:
        return claimed
    cancel = [{"b_mt_id": i, "b_error": why, "b_now": now} for i, why in held.items() if isinstance(why, str)]
    defer = [{"b_mt_id": i, "b_until": float(until), "b_now": now} for i, until in held.items() if not isinstance(until, str)]
    if cancel:
        conn.execute(_CANCEL, cancel)
    if defer:
        conn.execute(_DEFER, defer)
    return [mt for mt in claimed if mt.id not in held]


# -- outcomes --------------------------------------------------------------------------------


def _progress(conn: Connection, mt_id: int, receipts_applied: int = 0) -> MtProgress:
    return _progress_of(conn.execute(_SELECT_PROGRESS, {"b_mt_id": mt_id}).one(), receipts_applied)


def _progress_of(row: sa.Row[Any], receipts_applied: int = 0) -> MtProgress:
    """The progress in a row of the columns of _SELECT_PROGRESS."""
    return MtProgress(
        mt_id=int(row.id),
        status=str(row.status),
        attempts=int(row.attempts),
        parts_total=int(row.parts_total),
        parts_accepted=int(row.accepted),
        next_attempt_at=float(row.next_attempt_at),
        last_error=row.last_error,
        receipts_applied=receipts_applied,
    )


# -- a batch's acceptances at once (SQLite) ----------------------------------------------------

# The parts a batch accepts, with their MTs' progress columns: one statement for the batch
# instead of two UPDATE ... RETURNING per acceptance.
_PARTS_OF_MTS = Prepared(
    sa.select(_p.id, _p.mt_id, _p.part_index, _p.status.label("part_status"), _p.uncertain, *_PROGRESS_COLUMNS)
    .join_from(mt_parts, mt_messages, _m.id == _p.mt_id)
    .where(_p.mt_id.in_(sa.bindparam("b_ids", expanding=True))),
    expanding="b_ids",
)
# Whether receipts wait for any of a batch's ids (each is held until its id is stored).
_RECEIPTS_OF_IDS = Prepared(
    sa.select(dlr_events.c.smsc_message_id).where(
        dlr_events.c.smsc == sa.bindparam("b_smsc"), dlr_events.c.smsc_message_id.in_(sa.bindparam("b_ids", expanding=True))
    ),
    expanding="b_ids",
)
_SET_PART_ACCEPTED = Prepared(
    sa.update(mt_parts)
    .where(_p.id == sa.bindparam("b_part_id"))
    .values(_ACCEPTED_VALUES)
)
_SET_MT_SUBMITTED = Prepared(
    sa.update(mt_messages)
    .where(_m.id == sa.bindparam("b_mt_id"))
    .values(
        status=sa.bindparam("b_status"),
        last_error=sa.bindparam("b_last_error"),
        claimed_by=None,
        claim_expires_at=None,
        updated_at=sa.bindparam("b_now"),
    )
)
#: MT statuses an acceptance of every part moves to ``submitted`` (see _SETTLE_VALUES).
_MOVABLE_STATUSES = frozenset((*_ACTIVE, "failed"))


def _parts_accepted_together(conn: Connection, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[MtProgress]:
    """:func:`part_accepted` for the acceptances of one batch, in a few statements for all.

    On SQLite, when every acceptance is of the one part of a single-part MT, pending (or
    failed), of an MT no other acceptance of the batch names, no receipt waits for its id,
    and no earlier submission of it may have gone out unrecorded (``uncertain``): one SELECT
    reads the parts and their MTs, one more looks for receipts of the ids, and the parts and
    MTs are written with one ``executemany`` each, as :func:`part_accepted` would write them.
    Anything else (PostgreSQL and its locks too) takes :func:`part_accepted` call by call,
    in order, as does a batch of one.
    """
    if len(calls) < 2 or conn.dialect.name != "sqlite":
        return [part_accepted(conn, *args, **kwargs) for args, kwargs in calls]
    accepted = [_acceptance(*args, **kwargs) for args, kwargs in calls]
    mt_ids = [mt_id for mt_id, *_ in accepted]
    rows = {}
    if len(set(mt_ids)) == len(mt_ids):
        rows = {int(row.mt_id): row for row in _PARTS_OF_MTS.all(conn, {"b_ids": mt_ids})}
    # Every MT was found (ids are distinct, so one row each unless it has more parts).
    usual = len(rows) == len(accepted) and all(
        part_index == 1 and (row := rows[mt_id]).parts_total == 1 and row.part_status in ("pending", "failed") and not row.uncertain
        for mt_id, part_index, *_ in accepted
    )
    if usual:
        by_smsc: dict[str, list[str]] = {}
        for _, _, smsc, message_id, _, _ in accepted:
            by_smsc.setdefault(smsc, []).append(message_id)
        usual = not any(_RECEIPTS_OF_IDS.all(conn, {"b_smsc": smsc, "b_ids": ids}) for smsc, ids in by_smsc.items())
    if not usual:
        return [part_accepted(conn, *args, **kwargs) for args, kwargs in calls]
    parts, mts, progress = [], [], []
    for mt_id, _, smsc, message_id, submit_status, now in accepted:
        row = rows[mt_id]
        status, last_error = ("submitted", None) if row.status in _MOVABLE_STATUSES else (row.status, row.last_error)
        parts.append({"b_part_id": row.id, "b_smsc": smsc, "b_message_id": message_id, "b_submit_status": submit_status, "b_now": now})
        mts.append({"b_mt_id": mt_id, "b_status": status, "b_last_error": last_error, "b_now": now})
        progress.append(
            MtProgress(
                mt_id=mt_id,
                status=str(status),
                attempts=int(row.attempts),
                parts_total=1,
                parts_accepted=1,
                next_attempt_at=float(row.next_attempt_at),
                last_error=last_error,
            )
        )
    _SET_PART_ACCEPTED.many(conn, parts)
    _SET_MT_SUBMITTED.many(conn, mts)
    return progress


def _acceptance(
    *, mt_id: int, part_index: int, smsc: str, smsc_message_id: str, submit_status: int, now: float, **_: Any
) -> tuple[int, int, str, str, int, float]:
    """The arguments of a :func:`part_accepted` call that the batch path uses."""
    return mt_id, part_index, smsc, smsc_message_id, submit_status, now


@runs_together(_parts_accepted_together)
def part_accepted(
    conn: Connection,
    *,
    mt_id: int,
    part_index: int,
    smsc: str,
    smsc_message_id: str,
    submit_status: int,
    now: float,
    receipt_grace: float = 300.0,
    recipient: str | None = None,
    text: str | None = None,
) -> MtProgress:
    """Record that an SMSC accepted one part; the MT is ``submitted`` once every part is.

    When the last part is accepted the claim is released and the MT becomes ``submitted``.
    Then a receipt that overtook the submit_sm_resp (held by the DLR path, unmatched) is
    applied to the part, which may settle the MT (delivered, undelivered, expired); so does
    a receipt that matched an earlier part while the MT was still being sent.

    Args:
        conn: the writer's connection.
        mt_id: the MT.
        part_index: the 1-based part the SMSC accepted.
        smsc: the SMSC's name.
        smsc_message_id: its message id, normalised per the SMSC's message_id_format.
        submit_status: the submit_sm_resp command_status (0).
        now: the current time.
        receipt_grace: how old a held receipt may be and still be applied.
        recipient: the MT's number (E.164) and ``text`` its text: with them, held receipts
            of an earlier submission of this first part whose id was never stored are applied
            (see :func:`profile_store.dlr.apply_held_by_content`), when the part is
            ``uncertain`` (an earlier submission may have gone out unrecorded).
        text: see ``recipient``.

    Returns:
        The MT's progress.

    Raises:
        LookupError: the MT has no such part.
    """
    # Before the part is written: a receipt for this id being stored by another node then
    # either committed first (and is found below) or finds the part once this commits.
    lock_message_id(conn, smsc, smsc_message_id)
    accepted = _ACCEPT_PART.first(
        conn,
        {
            "b_mt_id": mt_id,
            "b_index": part_index,
            "b_smsc": smsc,
            "b_message_id": smsc_message_id,
            "b_submit_status": submit_status,
            "b_now": now,
        },
    )
    if accepted is None:
        accepted = conn.execute(_PART_ID, {"b_mt_id": mt_id, "b_index": part_index}).first()
        if accepted is None:
            raise LookupError(f"MT {mt_id} has no part {part_index}")
    part_id, uncertain = int(accepted.id), bool(accepted.uncertain)
    # A part found by _PART_ID (not updated) has no parts_total: the general settle decides.
    single = getattr(accepted, "parts_total", None) == 1
    params = {"b_mt_id": mt_id, "b_now": now, "b_smsc": smsc, "b_message_id": smsc_message_id}
    status: str | None = None
    row = (_SETTLE_SINGLE_ACCEPTED if single else _SETTLE_ACCEPTED).first(conn, params)
    if row is None:
        del params["b_now"]
        row = conn.execute(_SELECT_ACCEPT_PROGRESS, params).one()
    elif row.receipted:
        # Receipts matched parts while the MT was still being sent; they could not settle
        # it then (the sender owned its status), so settle it now.
        status = refresh_mt_status(conn, mt_id, now)
    applied = 0
    if row.receipts:
        # After the MT's status: receipts only settle an MT that is already submitted.
        applied, held_status = apply_held_receipts_to_mt(
            conn, smsc=smsc, smsc_message_id=smsc_message_id, mt_part_id=part_id, mt_id=mt_id, now=now, grace=receipt_grace
        )
        status = held_status or status
    if part_index == 1 and recipient and text and uncertain:
        by_content, content_status = apply_held_by_content(
            conn, smsc=smsc, recipient=recipient, mt_text=text, mt_part_id=part_id, mt_id=mt_id, now=now, grace=receipt_grace
        )
        applied += by_content
        status = content_status or status
    progress = _progress_of(row, applied)
    # Receipts change only the MT's status, and move parts between statuses that all
    # count as accepted.
    return progress if status is None else attrs.evolve(progress, status=status)


def _settle(conn: Connection, mt_id: int, now: float) -> None:
    """Once every part is with an SMSC: release the claim and make an active MT ``submitted``."""
    settled = conn.execute(_SETTLE, {"b_mt_id": mt_id, "b_now": now}).first()
    if settled is not None and settled.receipted:
        # Receipts matched parts while the MT was still being sent; they could not settle
        # it then (the sender owned its status), so settle it now.
        refresh_mt_status(conn, mt_id, now)


def settle_mt(conn: Connection, *, mt_id: int, now: float) -> MtProgress:
    """Finish an MT resumed with no part left to send (all were accepted before a crash).

    Returns:
        The MT's progress (``submitted``, or what its parts' receipts settled it to).

    Raises:
        LookupError: no such MT.
    """
    if conn.execute(_MT_EXISTS, {"b_mt_id": mt_id}).scalar_one_or_none() is None:
        raise LookupError(f"no MT {mt_id}")
    _settle(conn, mt_id, now)
    return _progress(conn, mt_id)


def attempt_failed(
    conn: Connection,
    *,
    mt_id: int,
    error: str,
    temporary: bool,
    now: float,
    max_attempts: int = 5,
    backoff: Callable[[int], float] | float = DEFAULT_BACKOFF_BASE,
    count_attempt: bool = True,
    uncertain: bool = False,
) -> MtProgress:
    """Record that an attempt to send an MT ended without every part accepted.

    A temporary failure with attempts left puts the MT back in the queue after a backoff,
    keeping the parts already accepted. Otherwise the MT and its pending parts are ``failed``.
    Either way the claim is released. An MT no longer being sent (submitted, failed,
    cancelled, ...) is left unchanged.

    Args:
        conn: the writer's connection.
        mt_id: the MT.
        error: what went wrong (a command_status name, "response timeout", ...), kept in last_error.
        temporary: the same submit may succeed later.
        now: the current time.
        max_attempts: attempts after which a temporary failure is final.
        backoff: a function of the attempt count giving the delay, or the base delay of the
            default exponential backoff (doubling, capped at 15 minutes).
        count_attempt: False when nothing was sent (no SMSC bound): the MT is requeued after
            the backoff for its current count without using up an attempt, so an SMSC outage
            does not fail the queue.
        uncertain: the SMSC may have accepted the pending parts unheard (a response timeout,
            a lost connection): their receipts may then only be recognised by content.

    Returns:
        The MT's progress.

    Raises:
        LookupError: no such MT.
    """
    m = mt_messages.c
    if uncertain:
        conn.execute(sa.update(mt_parts).where(_p.mt_id == mt_id, _p.status == "pending").values(uncertain=True))
    row = conn.execute(sa.select(m.status, m.attempts).where(m.id == mt_id)).one_or_none()
    if row is None:
        raise LookupError(f"no MT {mt_id}")
    if row.status not in _ACTIVE:
        return _progress(conn, mt_id)
    attempts = int(row.attempts) + (1 if count_attempt else 0)
    delay_of: Callable[[int], float]
    if callable(backoff):
        delay_of = backoff
    else:
        base = float(backoff)

        def delay_of(n: int) -> float:
            return exponential_backoff(n, base=base)

    released = dict(claimed_by=None, claim_expires_at=None, updated_at=now, last_error=error)
    if temporary and (attempts < max_attempts or not count_attempt):
        conn.execute(
            sa.update(mt_messages)
            .where(m.id == mt_id)
            .values(status="queued", attempts=attempts, next_attempt_at=now + delay_of(max(attempts, 1)), **released)
        )
    else:
        conn.execute(sa.update(mt_messages).where(m.id == mt_id).values(status="failed", attempts=attempts, **released))
        conn.execute(
            sa.update(mt_parts)
            .where(mt_parts.c.mt_id == mt_id, mt_parts.c.status == "pending")
            .values(status="failed", done_at=now)
        )
    return _progress(conn, mt_id)


def release_claims(conn: Connection, *, node: str, now: float) -> int:
    """Put every MT ``node`` is sending back in the queue, due now (a graceful shutdown).

    Returns:
        How many MTs were released.
    """
    m = mt_messages.c
    # A response may never have come for what was in flight: its parts may have gone out.
    held = sa.select(m.id).where(MT_SENDING, m.claimed_by == node).scalar_subquery()
    conn.execute(sa.update(mt_parts).where(_p.status == "pending", _p.mt_id.in_(held)).values(uncertain=True))
    result = conn.execute(
        sa.update(mt_messages)
        .where(MT_SENDING, m.claimed_by == node)
        .values(status="queued", claimed_by=None, claim_expires_at=None, updated_at=now)
    )
    return int(result.rowcount)


def outbox_counts(conn: Connection) -> dict[str, int]:
    """How many MTs are in each status (statuses with none are left out)."""
    rows = conn.execute(sa.select(mt_messages.c.status, sa.func.count()).group_by(mt_messages.c.status))
    return {str(status): int(count) for status, count in rows}
