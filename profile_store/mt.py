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

from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gatewayd.smpp.text import ConcatMethod, split_text
from profile_store.dlr import apply_held_receipts, refresh_mt_status
from profile_store.mt_values import ClaimedMt, MtProgress, MtRequest, StoredMt, StoredMtPart
from profile_store.schema import mt_messages, mt_parts, subscribers
from profile_store.subscribers import get_or_create_subscriber, normalise_msisdn

__all__ = [
    "MtRequest",
    "StoredMt",
    "StoredMtPart",
    "ClaimedMt",
    "MtProgress",
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "exponential_backoff",
    "enqueue_mt",
    "claim_due",
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
    # Splitting here (not only at send time) rejects unsendable text while the caller can
    # still be told, and fixes parts_total so part rows exist before the first attempt.
    parts = split_text(request.text, reference=concat_ref, method=ConcatMethod.UDH8, data_coding=request.data_coding)
    subscriber_id = get_or_create_subscriber(conn, normalise_msisdn(request.msisdn), now)
    mt_id = conn.execute(
        sa.insert(mt_messages)
        .values(
            subscriber_id=subscriber_id,
            source_addr=request.source_addr,
            smsc=request.smsc,
            text=request.text,
            data_coding=request.data_coding,
            concat_ref=concat_ref,
            parts_total=len(parts),
            priority=request.priority,
            registered_delivery=request.registered_delivery,
            status="queued",
            attempts=0,
            next_attempt_at=now,
            in_reply_to=request.in_reply_to,
            campaign=request.campaign,
            created_at=now,
            updated_at=now,
        )
        .returning(mt_messages.c.id)
    ).scalar_one()
    conn.execute(sa.insert(mt_parts), [{"mt_id": mt_id, "part_index": part.index, "status": "pending"} for part in parts])
    mt = get_mt(conn, int(mt_id))
    assert mt is not None
    return mt


def get_mt(conn: Connection, mt_id: int) -> StoredMt | None:
    """The MT with this id, or None."""
    row = conn.execute(
        sa.select(*_MT_COLUMNS)
        .join_from(mt_messages, subscribers, mt_messages.c.subscriber_id == subscribers.c.id)
        .where(mt_messages.c.id == mt_id)
    ).mappings().first()
    return None if row is None else StoredMt.from_row(row)


def get_parts(conn: Connection, mt_id: int) -> list[StoredMtPart]:
    """The part rows of an MT, in part order."""
    rows = conn.execute(sa.select(mt_parts).where(mt_parts.c.mt_id == mt_id).order_by(mt_parts.c.part_index)).mappings()
    return [StoredMtPart.from_row(row) for row in rows]


# -- claim -----------------------------------------------------------------------------------


def claim_due(conn: Connection, *, node: str, now: float, limit: int, lease: float) -> list[ClaimedMt]:
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

    Returns:
        The claimed MTs, in claim order.
    """
    if limit <= 0:
        return []
    m = mt_messages.c
    due = sa.or_(
        sa.and_(m.status == "queued", m.next_attempt_at <= now),
        sa.and_(m.status == "sending", m.claim_expires_at < now),
    )
    select_ids = sa.select(m.id).where(due).order_by(m.priority, m.next_attempt_at, m.id).limit(limit)
    if conn.dialect.name == "postgresql":
        select_ids = select_ids.with_for_update(skip_locked=True)
    ids = [int(i) for i in conn.execute(select_ids).scalars()]
    if not ids:
        return []
    expires = now + lease
    conn.execute(
        sa.update(mt_messages)
        .where(m.id.in_(ids))
        .values(status="sending", claimed_by=node, claim_expires_at=expires, updated_at=now)
    )
    rows = conn.execute(
        sa.select(*_MT_COLUMNS)
        .join_from(mt_messages, subscribers, m.subscriber_id == subscribers.c.id)
        .where(m.id.in_(ids))
    ).mappings()
    by_id = {int(row["id"]): row for row in rows}
    pending: dict[int, list[int]] = {i: [] for i in ids}
    for mt_id, index in conn.execute(
        sa.select(mt_parts.c.mt_id, mt_parts.c.part_index)
        .where(mt_parts.c.mt_id.in_(ids), mt_parts.c.status == "pending")
        .order_by(mt_parts.c.mt_id, mt_parts.c.part_index)
    ):
        pending[int(mt_id)].append(int(index))
    return [ClaimedMt.from_row(by_id[i], tuple(pending[i])) for i in ids]


# -- outcomes --------------------------------------------------------------------------------


def _progress(conn: Connection, mt_id: int, receipts_applied: int = 0, accepted: int | None = None) -> MtProgress:
    m = mt_messages.c
    row = conn.execute(
        sa.select(m.id, m.status, m.attempts, m.parts_total, m.next_attempt_at, m.last_error).where(m.id == mt_id)
    ).one()
    if accepted is None:
        accepted = conn.execute(
            sa.select(sa.func.count())
            .select_from(mt_parts)
            .where(mt_parts.c.mt_id == mt_id, mt_parts.c.status.in_(_PART_ACCEPTED))
        ).scalar_one()
    return MtProgress(
        mt_id=int(row.id),
        status=str(row.status),
        attempts=int(row.attempts),
        parts_total=int(row.parts_total),
        parts_accepted=int(accepted),
        next_attempt_at=float(row.next_attempt_at),
        last_error=row.last_error,
        receipts_applied=receipts_applied,
    )


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

    Returns:
        The MT's progress.

    Raises:
        LookupError: the MT has no such part.
    """
    p = mt_parts.c
    part_id = conn.execute(sa.select(p.id).where(p.mt_id == mt_id, p.part_index == part_index)).scalar_one_or_none()
    if part_id is None:
        raise LookupError(f"MT {mt_id} has no part {part_index}")
    # Only a part no SMSC has yet is updated: a rerun, or a late answer to an attempt that
    # was already given up on, must not overwrite a receipt's outcome.
    conn.execute(
        sa.update(mt_parts)
        .where(p.id == part_id, p.status.in_(("pending", "failed")))
        .values(status="accepted", smsc=smsc, smsc_message_id=smsc_message_id, submit_status=submit_status, submitted_at=now, done_at=None)
    )
    _settle(conn, mt_id, now)
    # After the MT's status: receipts only settle an MT that is already submitted.
    applied = apply_held_receipts(conn, smsc=smsc, smsc_message_id=smsc_message_id, mt_part_id=int(part_id), now=now, grace=receipt_grace)
    return _progress(conn, mt_id, applied)


def _settle(conn: Connection, mt_id: int, now: float) -> int:
    """Once every part is with an SMSC: release the claim and make an active MT ``submitted``.

    Returns:
        How many parts are with an SMSC (accepted or further along).
    """
    p, m = mt_parts.c, mt_messages.c
    statuses = [str(s) for s in conn.execute(sa.select(p.status).where(p.mt_id == mt_id)).scalars()]
    accepted = sum(status in _PART_ACCEPTED for status in statuses)
    if not statuses or accepted < len(statuses):
        return accepted
    # A failed MT whose parts all reached the SMSC after all (a late answer) is submitted:
    # the subscriber gets it, so reports must not say it failed. An MT receipts already
    # moved on keeps its status; only its claim is released.
    movable = m.status.in_((*_ACTIVE, "failed"))
    conn.execute(
        sa.update(mt_messages)
        .where(m.id == mt_id)
        .values(
            status=sa.case((movable, "submitted"), else_=m.status),
            last_error=sa.case((movable, sa.null()), else_=m.last_error),
            claimed_by=None,
            claim_expires_at=None,
            updated_at=now,
        )
    )
    if any(status not in ("pending", "accepted") for status in statuses):
        # Receipts matched parts while the MT was still being sent; they could not settle
        # it then (the sender owned its status), so settle it now.
        refresh_mt_status(conn, mt_id, now)
    return accepted


def settle_mt(conn: Connection, *, mt_id: int, now: float) -> MtProgress:
    """Finish an MT resumed with no part left to send (all were accepted before a crash).

    Returns:
        The MT's progress (``submitted``, or what its parts' receipts settled it to).

    Raises:
        LookupError: no such MT.
    """
    if conn.execute(sa.select(mt_messages.c.id).where(mt_messages.c.id == mt_id)).scalar_one_or_none() is None:
        raise LookupError(f"no MT {mt_id}")
    return _progress(conn, mt_id, accepted=_settle(conn, mt_id, now))


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

    Returns:
        The MT's progress.

    Raises:
        LookupError: no such MT.
    """
    m = mt_messages.c
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
    result = conn.execute(
        sa.update(mt_messages)
        .where(m.status == "sending", m.claimed_by == node)
        .values(status="queued", claimed_by=None, claim_expires_at=None, updated_at=now)
    )
    return int(result.rowcount)


def outbox_counts(conn: Connection) -> dict[str, int]:
    """How many MTs are in each status (statuses with none are left out)."""
    rows = conn.execute(sa.select(mt_messages.c.status, sa.func.count()).group_by(mt_messages.c.status))
    return {str(status): int(count) for status, count in rows}
