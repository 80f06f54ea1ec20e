"""Delivery receipts: recording them, matching them to MT parts, settling the MT's status.

Every receipt becomes a ``dlr_events`` row. It is matched to the ``mt_parts`` row with the
same SMSC and (normalised) message id. SMSCs can send a receipt before we have stored the
submit_sm_resp that carries the id (the receipt overtakes the response, or the response's
unit is still queued for the writer), so an unmatched receipt is held: when the id is stored,
:func:`apply_held_receipts` applies the receipts that arrived within a grace period.

A receipt whose id is unknown may still belong to one of our MTs: when a gateway dies
after the SMSC accepted a submit_sm but before the id was stored, the MT is sent again and
the first submission's receipt carries an id nobody recorded. Such a receipt is matched by
its recipient and the start of its text (``text:``) to a part submitted recently to the same
subscriber through the same SMSC (:func:`record_receipt`, ``recipient``).

A part's status follows its receipts until one is final (delivered, undelivered, expired);
a final status is never changed by a later receipt (a duplicate, or an out-of-order
intermediate notification). The MT's status is recomputed from its parts (see
:func:`refresh_mt_status`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gatewayd.smpp.constants import MessageState
from gatewayd.smpp.receipts import DeliveryReceipt, final_status
from profile_store.locks import lock_key
from profile_store.schema import dlr_events, mt_messages, mt_parts, subscribers
from profile_store.values import MtPartStatus, MtStatus, ReceiptRecorded

__all__ = ["record_receipt", "apply_held_receipts", "refresh_mt_status", "unmatched_receipts"]

#: Part statuses no receipt changes any more.
FINAL_PART_STATUSES = frozenset(
    {MtPartStatus.DELIVERED, MtPartStatus.UNDELIVERED, MtPartStatus.FAILED, MtPartStatus.EXPIRED}
)
#: MT statuses that receipts may settle or re-settle: once every part was accepted, and
#: the outcomes receipts themselves set. Earlier statuses belong to the sender (mt.py).
_SETTLEABLE_MT = frozenset({MtStatus.SUBMITTED, MtStatus.DELIVERED, MtStatus.UNDELIVERED, MtStatus.EXPIRED})

#: Receipt stat values longer than the 8-character columns, in their SMPP short forms.
_SHORT_STATS = {"DELIVERED": "DELIVRD", "UNDELIVERABLE": "UNDELIV", "REJECTED": "REJECTD", "ACCEPTED": "ACCEPTD"}

#: The stat a message_state TLV stands for, recorded when the text had no stat.
_STATE_STATS = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}


def _short(value: str | None) -> str | None:
    if value is None:
        return None
    value = _SHORT_STATS.get(value, value)
    return value[:8]


def _lock(conn: sa.Connection, smsc: str, message_id: str) -> None:
    # A receipt and the submit_sm_resp with its id may be stored by two nodes at once; each
    # would miss the other's uncommitted row and the receipt would stay held for ever.
    lock_key(conn, f"dlr|{smsc}|{message_id}")


def record_receipt(
    conn: sa.Connection,
    smsc: str,
    receipt: DeliveryReceipt,
    message_id: str,
    now: float,
    *,
    recipient: str | None = None,
    content_window: float = 86_400.0,
) -> ReceiptRecorded:
    """Store a receipt and apply it to its MT part when that part is known.

    Args:
        conn: a connection inside the unit's transaction.
        smsc: the SMSC the receipt came from (as in ``mt_parts.smsc``).
        receipt: from :func:`gatewayd.smpp.receipts.parse_receipt`.
        message_id: the receipt's id normalised with
            :func:`gatewayd.smpp.receipts.normalise_message_id` (``from_receipt=True``).
        now: epoch seconds (``received_at``, and the part's ``done_at`` when final).
        recipient: the receipt's source address in E.164 (the handset); enables matching by
            content when the id is unknown.
        content_window: how far back, in seconds, a submission may be matched by content.

    Returns:
        Whether it matched, and the part's and MT's statuses afterwards. Unmatched receipts
        are held for :func:`apply_held_receipts`.
    """
    _lock(conn, smsc, message_id)
    part = conn.execute(
        sa.select(mt_parts.c.id, mt_parts.c.mt_id)
        .where(mt_parts.c.smsc == smsc, mt_parts.c.smsc_message_id == message_id)
        # SMSCs reuse ids eventually: the latest part with the id is the one meant.
        .order_by(mt_parts.c.id.desc())
        .limit(1)
    ).first()
    by_content = False
    if part is None and recipient and receipt.text:
        part = _match_by_content(conn, smsc, recipient, receipt.text, now - content_window)
        by_content = part is not None
    event = {
        "smsc": smsc,
        "smsc_message_id": message_id,
        "mt_part_id": None if part is None else part.id,
        "stat": _short(receipt.stat),
        "err": None if receipt.err is None else receipt.err[:8],
        "message_state": receipt.message_state,
        "received_at": now,
        "matched": part is not None,
    }
    row = conn.execute(sa.insert(dlr_events).values(event).returning(*dlr_events.c)).mappings().one()
    if part is None:
        return ReceiptRecorded.from_row(row)
    part_status = _apply(conn, part.id, receipt, now)
    mt_status = refresh_mt_status(conn, part.mt_id, now)
    return ReceiptRecorded.from_row(row, mt_id=part.mt_id, part_status=part_status, mt_status=mt_status, by_content=by_content)


def _match_by_content(conn: sa.Connection, smsc: str, recipient: str, text: str, since: float) -> sa.Row[Any] | None:
    """The latest first part submitted to ``recipient`` through ``smsc`` whose MT text starts with ``text``.

    SMSCs quote the first characters of the message in ``text:``, so only first parts can be
    recognised; a receipt for a later part of a resubmitted MT stays unmatched.
    """
    p, m = mt_parts.c, mt_messages.c
    return conn.execute(
        sa.select(p.id, p.mt_id)
        .select_from(mt_parts.join(mt_messages, p.mt_id == m.id).join(subscribers, m.subscriber_id == subscribers.c.id))
        .where(
            subscribers.c.msisdn == recipient,
            p.smsc == smsc,
            p.part_index == 1,
            p.submitted_at >= since,
            sa.func.substr(m.text, 1, len(text)) == text,
        )
        .order_by(p.id.desc())
        .limit(1)
    ).first()


def _apply(conn: sa.Connection, part_id: int, receipt: DeliveryReceipt, now: float) -> str:
    """Apply one receipt to a part; returns the part's status afterwards."""
    current = conn.execute(sa.select(mt_parts.c.status).where(mt_parts.c.id == part_id)).scalar_one()
    if current in FINAL_PART_STATUSES:
        return str(current)
    outcome = final_status(receipt)
    values: dict[str, Any] = {}
    if receipt.stat is not None:
        values["receipt_stat"] = _short(receipt.stat)
    if outcome is not None:
        values.update(status=outcome.value, done_at=now)
        if "receipt_stat" not in values and receipt.message_state is not None:
            values["receipt_stat"] = _short(_STATE_STATS.get(receipt.message_state))
    if values:
        conn.execute(sa.update(mt_parts).where(mt_parts.c.id == part_id).values(values))
    return str(values.get("status", current))



def refresh_mt_status(conn: sa.Connection, mt_id: int, now: float) -> str:
    """Settle an MT's status from its parts' statuses.

    Every part (``parts_total`` of them) delivered: 'delivered'. Any part undelivered or
    failed: 'undelivered'. Every part final, at least one expired and none undelivered:
    'expired'. Otherwise unchanged. Only an MT that is 'submitted' (or already settled by
    receipts) changes: before every part was accepted, the sender owns the status, so the
    sender should call this (or :func:`apply_held_receipts`) after setting 'submitted'.

    Args:
        conn: a connection inside the unit's transaction.
        mt_id: the MT.
        now: epoch seconds (``updated_at`` when the status changes).

    Returns:
        The MT's status afterwards.
    """
    mt = conn.execute(
        sa.select(mt_messages.c.status, mt_messages.c.parts_total).where(mt_messages.c.id == mt_id)
    ).one()
    if mt.status not in _SETTLEABLE_MT:
        return str(mt.status)
    statuses = list(conn.execute(sa.select(mt_parts.c.status).where(mt_parts.c.mt_id == mt_id)).scalars())
    every_part = len(statuses) >= mt.parts_total
    if any(s in (MtPartStatus.UNDELIVERED, MtPartStatus.FAILED) for s in statuses):
        settled = MtStatus.UNDELIVERED
    elif every_part and all(s == MtPartStatus.DELIVERED for s in statuses):
        settled = MtStatus.DELIVERED
    elif every_part and all(s in FINAL_PART_STATUSES for s in statuses) and MtPartStatus.EXPIRED in statuses:
        settled = MtStatus.EXPIRED
    else:
        return str(mt.status)
    if settled != mt.status:
        update = sa.update(mt_messages).where(mt_messages.c.id == mt_id)
        conn.execute(update.values(status=settled.value, updated_at=now))
    return settled.value


def apply_held_receipts(
    conn: sa.Connection, *, smsc: str, smsc_message_id: str, mt_part_id: int, now: float, grace: float = 300.0
) -> int:
    """Apply the receipts that arrived before a part's submit_sm_resp id was stored.

    Call it in the unit that stores the id (after the part, and the MT's status when every
    part is accepted, are written). Unmatched receipts for ``(smsc, smsc_message_id)``
    received within ``grace`` seconds before ``now`` are applied in arrival order and marked
    matched; older ones stay unmatched (an id the SMSC reused, most likely).

    Args:
        conn: a connection inside the unit's transaction.
        smsc: the SMSC the part was submitted to.
        smsc_message_id: the part's id, normalised with ``from_receipt=False``.
        mt_part_id: the part.
        now: epoch seconds.
        grace: how long a receipt may precede its submit_sm_resp.

    Returns:
        How many receipts were applied.
    """
    _lock(conn, smsc, smsc_message_id)
    e = dlr_events.c
    held = conn.execute(
        sa.select(e.id, e.stat, e.err, e.message_state)
        .where(
            e.smsc == smsc,
            e.smsc_message_id == smsc_message_id,
            e.matched.is_(False),
            e.received_at >= now - grace,
        )
        .order_by(e.received_at, e.id)
    ).all()
    if not held:
        return 0
    for event in held:
        receipt = DeliveryReceipt(
            message_id=smsc_message_id,
            sub=None,
            dlvrd=None,
            submit_date=None,
            done_date=None,
            stat=event.stat,
            err=event.err,
            text=None,
            message_state=event.message_state,
            network_error_code=None,
        )
        _apply(conn, mt_part_id, receipt, now)
    conn.execute(
        sa.update(dlr_events)
        .where(dlr_events.c.id.in_([event.id for event in held]))
        .values(matched=True, mt_part_id=mt_part_id)
    )
    mt_id = conn.execute(sa.select(mt_parts.c.mt_id).where(mt_parts.c.id == mt_part_id)).scalar_one()
    refresh_mt_status(conn, mt_id, now)
    return len(held)


def unmatched_receipts(conn: sa.Connection, *, older_than: float, now: float) -> int:
    """How many receipts received more than ``older_than`` seconds ago never found their MT.

    Args:
        conn: a connection.
        older_than: seconds (use the grace period of :func:`apply_held_receipts`).
        now: epoch seconds.
    """
    e = dlr_events.c
    query = (
        sa.select(sa.func.count())
        .select_from(dlr_events)
        .where(e.matched.is_(False), e.received_at < now - older_than)
    )
    return int(conn.execute(query).scalar_one())
