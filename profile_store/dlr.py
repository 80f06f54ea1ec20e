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

from typing import Any, Sequence

import sqlalchemy as sa

from gatewayd.smpp.constants import MessageState
from gatewayd.smpp.receipts import DeliveryReceipt, final_status
from profile_store.committer import runs_together
from profile_store.locks import lock_key
from profile_store.prepared import Prepared, first_inserted_id
from profile_store.schema import dlr_events, mt_messages, mt_parts, subscribers
from profile_store.subscribers import RawNumber
from profile_store.values import MtPartStatus, MtStatus, ReceiptRecorded

__all__ = [
    "apply_held_by_content",
    "record_receipt",
    "apply_held_receipts",
    "apply_held_receipts_to_mt",
    "refresh_mt_status",
    "unmatched_receipts",
    "lock_message_id",
]

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


def _constants(*values: str) -> list[sa.ColumnElement[Any]]:
    """Status names written into the SQL: a constant list needs no parameter expanded per run."""
    return [sa.literal_column(f"'{value}'") for value in values]


# Statements are built once: building and hashing a statement costs more than SQLite takes
# to run it, and a statement object reused keeps its compiled form and cache key.
_p, _m, _e = mt_parts.c, mt_messages.c, dlr_events.c

# A receipt's effect on a part, in one statement that also reads the part: a final status
# stays, with its stat and done_at; otherwise a final outcome (b_status) is recorded with
# b_done, and a stat (b_stat) replaces the earlier one. Every SET expression reads the
# row as it was before the update.
_FINAL_PART_VALUES = sorted(FINAL_PART_STATUSES)
_FINAL_PART = _p.status.in_(_constants(*_FINAL_PART_VALUES))
_RECEIPT_EFFECT = {
    "status": sa.case(
        (_FINAL_PART, _p.status),
        else_=sa.func.coalesce(sa.bindparam("b_status", type_=_p.status.type), _p.status),
    ),
    "done_at": sa.case(
        (_FINAL_PART, _p.done_at),
        else_=sa.func.coalesce(sa.bindparam("b_done", type_=_p.done_at.type), _p.done_at),
    ),
    "receipt_stat": sa.case(
        (_FINAL_PART, _p.receipt_stat),
        else_=sa.func.coalesce(sa.bindparam("b_stat", type_=_p.receipt_stat.type), _p.receipt_stat),
    ),
}
_latest = mt_parts.alias("latest")
_APPLY_BY_MESSAGE_ID = Prepared(
    sa.update(mt_parts)
    .where(
        _p.id
        == sa.select(_latest.c.id)
        .where(_latest.c.smsc == sa.bindparam("b_smsc"), _latest.c.smsc_message_id == sa.bindparam("b_message_id"))
        # SMSCs reuse ids eventually: the latest part with the id is the one meant.
        .order_by(_latest.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    .values(_RECEIPT_EFFECT)
    .returning(
        _p.id, _p.mt_id, _p.status, sa.select(_m.parts_total).where(_m.id == _p.mt_id).scalar_subquery().label("parts_total")
    )
)
_APPLY_TO_PART = Prepared(sa.update(mt_parts).where(_p.id == sa.bindparam("b_part_id")).values(_RECEIPT_EFFECT).returning(_p.status))
# The SMSC is compared outside SQL: with it in the WHERE clause SQLite may walk the
# (smsc, smsc_message_id) index over every part ever sent through the SMSC instead of
# starting from the subscriber.
_PARTS_BY_CONTENT = Prepared(
    sa.select(_p.id, _p.mt_id, _p.smsc)
    .select_from(mt_parts.join(mt_messages, _p.mt_id == _m.id).join(subscribers, _m.subscriber_id == subscribers.c.id))
    .where(
        subscribers.c.msisdn == sa.bindparam("b_recipient"),
        _p.part_index == 1,
        # Only a part whose earlier submission may have gone unrecorded: otherwise a receipt
        # that merely overtook its submit_sm_resp would land on another MT with the same start.
        _p.uncertain == sa.true(),
        _p.submitted_at >= sa.bindparam("b_since"),
        sa.func.substr(_m.text, 1, sa.bindparam("b_length", type_=sa.Integer)) == sa.bindparam("b_text", type_=sa.Text),
    )
    .order_by(_p.id.desc())
)
_INSERT_EVENT = Prepared(
    sa.insert(dlr_events),
    keys=("smsc", "smsc_message_id", "mt_part_id", "stat", "err", "message_state", "received_at", "matched", "recipient", "text"),
    returning_id=True,
)
# Filtered on (smsc, smsc_message_id) alone so the index on those two columns is the one
# used; the few rows an id has are filtered further in Python.
_EVENTS_OF_ID = Prepared(
    sa.select(_e.id, _e.stat, _e.err, _e.message_state, _e.matched, _e.received_at)
    .where(_e.smsc == sa.bindparam("b_smsc"), _e.smsc_message_id == sa.bindparam("b_message_id"))
)
_MARK_MATCHED = Prepared(
    sa.update(dlr_events)
    .where(_e.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(matched=True, mt_part_id=sa.bindparam("b_part_id")),
    expanding="b_ids",
)
_MT_OF_PART = Prepared(sa.select(_p.mt_id).where(_p.id == sa.bindparam("b_part_id")))


def _parts_of_mt(*conditions: Any) -> sa.Exists:
    return sa.exists().where(_p.mt_id == sa.bindparam("b_mt_id"), *conditions)


_EVERY_PART = sa.select(sa.func.count()).where(_p.mt_id == sa.bindparam("b_mt_id")).scalar_subquery() >= _m.parts_total
#: The status the parts settle the MT to (see refresh_mt_status), or NULL: unchanged.
_SETTLED = sa.case(
    (_parts_of_mt(_p.status.in_(_constants(MtPartStatus.UNDELIVERED, MtPartStatus.FAILED))), MtStatus.UNDELIVERED.value),
    (sa.and_(_EVERY_PART, ~_parts_of_mt(_p.status != MtPartStatus.DELIVERED.value)), MtStatus.DELIVERED.value),
    (
        sa.and_(
            _EVERY_PART,
            ~_parts_of_mt(_p.status.not_in(_constants(*_FINAL_PART_VALUES))),
            _parts_of_mt(_p.status == MtPartStatus.EXPIRED.value),
        ),
        MtStatus.EXPIRED.value,
    ),
    else_=sa.null(),
)
# NULL (nothing settled) never compares unequal, so such an MT is left alone.
_REFRESH_MT = Prepared(
    sa.update(mt_messages)
    .where(_m.id == sa.bindparam("b_mt_id"), _m.status.in_(_constants(*sorted(_SETTLEABLE_MT))), _SETTLED != _m.status)
    .values(status=_SETTLED, updated_at=sa.bindparam("b_now"))
    .returning(_m.status)
)
_MT_STATUS = Prepared(sa.select(_m.status).where(_m.id == sa.bindparam("b_mt_id")))
#: What a single-part MT's status becomes when its one part's status is final.
_SINGLE_PART_OUTCOME = {
    MtPartStatus.DELIVERED: MtStatus.DELIVERED.value,
    MtPartStatus.UNDELIVERED: MtStatus.UNDELIVERED.value,
    MtPartStatus.FAILED: MtStatus.UNDELIVERED.value,
    MtPartStatus.EXPIRED: MtStatus.EXPIRED.value,
}
# _REFRESH_MT for an MT of one part, whose outcome the caller read off that part.
_SETTLE_SINGLE_PART = Prepared(
    sa.update(mt_messages)
    .where(
        _m.id == sa.bindparam("b_mt_id"),
        _m.status.in_(_constants(*sorted(_SETTLEABLE_MT))),
        _m.status != sa.bindparam("b_status", type_=_m.status.type),
    )
    .values(status=sa.bindparam("b_status", type_=_m.status.type), updated_at=sa.bindparam("b_now"))
    .returning(_m.status)
)


def _short(value: str | None) -> str | None:
    if value is None:
        return None
    value = _SHORT_STATS.get(value, value)
    return value[:8]


def lock_message_id(conn: sa.Connection, smsc: str, message_id: str) -> None:
    """Hold the lock on an SMSC message id until the transaction ends (PostgreSQL only).

    A receipt and the submit_sm_resp with its id may be stored by two nodes at once; each
    would miss the other's uncommitted row and the receipt would stay held for ever. Both
    sides take this lock before they look for the other's row.
    """
    lock_key(conn, f"dlr|{smsc}|{message_id}")


# -- a batch's receipts at once (SQLite) -------------------------------------------------------

# The parts a batch's receipts from one SMSC name by id, with what deciding each receipt's
# effect needs: one statement instead of one UPDATE ... RETURNING per receipt.
_PARTS_OF_IDS = Prepared(
    sa.select(_p.id, _p.mt_id, _p.smsc_message_id, _p.status, _p.done_at, _p.receipt_stat, _m.parts_total, _m.status.label("mt_status"))
    .join_from(mt_parts, mt_messages, _m.id == _p.mt_id)
    .where(_p.smsc == sa.bindparam("b_smsc"), _p.smsc_message_id.in_(sa.bindparam("b_ids", expanding=True))),
    expanding="b_ids",
)
_SET_PART_OUTCOME = Prepared(
    sa.update(mt_parts)
    .where(_p.id == sa.bindparam("b_part_id"))
    .values(status=sa.bindparam("b_status"), done_at=sa.bindparam("b_done"), receipt_stat=sa.bindparam("b_stat"))
)
_SET_MT_STATUS = Prepared(
    sa.update(mt_messages).where(_m.id == sa.bindparam("b_mt_id")).values(status=sa.bindparam("b_status"), updated_at=sa.bindparam("b_now"))
)


def _receipt_call(
    smsc: str, receipt: DeliveryReceipt, message_id: str, now: float, *, recipient: Any = None, content_window: float = 86_400.0
) -> tuple[str, DeliveryReceipt, str, float]:
    """The arguments of a :func:`record_receipt` call that the batch path uses."""
    return smsc, receipt, message_id, now


def _record_receipts_together(
    conn: sa.Connection, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
) -> list[ReceiptRecorded]:
    """:func:`record_receipt` for the receipts of one batch, in a few statements for all.

    On SQLite, when every receipt names by id a part of a single-part MT, and no two name the
    same id: one SELECT per SMSC reads the parts and their MTs, each receipt's effect is
    decided as :func:`record_receipt` decides it, and the parts, events and MTs are written
    with one ``executemany`` each. Anything else (an id matching no part, a part of a longer
    MT, an id twice, PostgreSQL and its locks) takes :func:`record_receipt` receipt by
    receipt, in order, as does a batch of one.
    """
    if len(calls) < 2 or conn.dialect.name != "sqlite":
        return [record_receipt(conn, *args, **kwargs) for args, kwargs in calls]
    received = [_receipt_call(*args, **kwargs) for args, kwargs in calls]
    keys = [(smsc, message_id) for smsc, _, message_id, _ in received]
    by_smsc: dict[str, list[str]] = {}
    for smsc, message_id in keys:
        by_smsc.setdefault(smsc, []).append(message_id)
    parts: dict[tuple[str, str], Any] = {}
    if len(set(keys)) == len(keys):
        for smsc, ids in by_smsc.items():
            for row in _PARTS_OF_IDS.all(conn, {"b_smsc": smsc, "b_ids": ids}):
                key = (smsc, row.smsc_message_id)
                # SMSCs reuse ids eventually: the latest part with the id is the one meant.
                if key not in parts or row.id > parts[key].id:
                    parts[key] = row
    if len(parts) != len(keys) or any(row.parts_total != 1 for row in parts.values()):
        return [record_receipt(conn, *args, **kwargs) for args, kwargs in calls]
    part_writes, mt_writes, events, outcomes = [], [], [], []
    for (smsc, receipt, message_id, now), key in zip(received, keys):
        row = parts[key]
        status, done, stat = row.status, row.done_at, row.receipt_stat
        if status not in FINAL_PART_STATUSES:
            # As _RECEIPT_EFFECT: what the receipt says replaces what the part had.
            effect = _effect(receipt, now)
            status, done, stat = (
                old if new is None else new for new, old in ((effect["b_status"], status), (effect["b_done"], done), (effect["b_stat"], stat))
            )
            part_writes.append({"b_part_id": row.id, "b_status": status, "b_done": done, "b_stat": stat})
        mt_status = row.mt_status
        outcome = _SINGLE_PART_OUTCOME.get(MtPartStatus(status))
        if outcome is not None and mt_status in _SETTLEABLE_MT and mt_status != outcome:
            mt_status = outcome
            mt_writes.append({"b_mt_id": row.mt_id, "b_status": outcome, "b_now": now})
        events.append(_event_row(smsc, receipt, message_id, now, row.id, None))
        outcomes.append((row, str(status), str(mt_status)))
    _SET_PART_OUTCOME.many(conn, part_writes)
    _INSERT_EVENT.many(conn, events)
    first_id = first_inserted_id(conn, len(events))
    _SET_MT_STATUS.many(conn, mt_writes)
    return [
        ReceiptRecorded(
            event_id=first_id + index, matched=True, mt_part_id=int(row.id), mt_id=int(row.mt_id), part_status=part_status, mt_status=mt_status
        )
        for index, (row, part_status, mt_status) in enumerate(outcomes)
    ]


@runs_together(_record_receipts_together)
def record_receipt(
    conn: sa.Connection,
    smsc: str,
    receipt: DeliveryReceipt,
    message_id: str,
    now: float,
    *,
    recipient: str | RawNumber | None = None,
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
        recipient: the receipt's source address (the handset), in E.164 or as received
            (normalised only when the id matches no part); enables matching by content when
            the id is unknown. Only a receipt left unmatched keeps it: a matched one is
            found through its part's MT.
        content_window: how far back, in seconds, a submission may be matched by content.

    Returns:
        Whether it matched, and the part's and MT's statuses afterwards. Unmatched receipts
        are held for :func:`apply_held_receipts`.
    """
    lock_message_id(conn, smsc, message_id)
    effect = _effect(receipt, now)
    part = _APPLY_BY_MESSAGE_ID.first(conn, {"b_smsc": smsc, "b_message_id": message_id, **effect})
    by_content = False
    if part is None and isinstance(recipient, RawNumber):
        recipient = recipient.e164()
    if part is None and recipient and receipt.text:
        found = _match_by_content(conn, smsc, recipient, receipt.text, now - content_window)
        if found is not None:
            part_id, mt_id = found
            status = _APPLY_TO_PART.scalar(conn, {"b_part_id": part_id, **effect})
            part = (part_id, mt_id, status)
            by_content = True
    event = _event_row(smsc, receipt, message_id, now, None if part is None else part[0], recipient)
    event["id"] = _INSERT_EVENT.insert_id(conn, event)
    if part is None:
        return ReceiptRecorded.from_row(event)
    # A part matched by content comes without its MT's parts_total: the general refresh decides.
    part_id, mt_id, part_status, *parts_total = part
    if parts_total == [1]:
        mt_status = _refresh_single_part_mt(conn, mt_id, str(part_status), now)
    else:
        mt_status = refresh_mt_status(conn, mt_id, now)
    return ReceiptRecorded.from_row(event, mt_id=mt_id, part_status=str(part_status), mt_status=mt_status, by_content=by_content)


def _event_row(smsc: str, receipt: DeliveryReceipt, message_id: str, now: float, part_id: int | None, recipient: Any) -> dict[str, Any]:
    """The ``dlr_events`` row of a receipt, matched to ``part_id`` or (None) held; only a
    held receipt keeps the handset's number."""
    return {
        "smsc": smsc,
        "smsc_message_id": message_id,
        "mt_part_id": part_id,
        "stat": _short(receipt.stat),
        "err": None if receipt.err is None else receipt.err[:8],
        "message_state": receipt.message_state,
        "received_at": now,
        "matched": part_id is not None,
        "recipient": None if part_id is not None else recipient,
        "text": None if receipt.text is None else receipt.text[:32],
    }


def _match_by_content(conn: sa.Connection, smsc: str, recipient: str, text: str, since: float) -> tuple[int, int] | None:
    """The latest first part submitted to ``recipient`` through ``smsc`` whose MT text starts with ``text``.

    SMSCs quote the first characters of the message in ``text:``, so only first parts can be
    recognised; a receipt for a later part of a resubmitted MT stays unmatched.

    Returns:
        The part's id and its MT's id.
    """
    params = {"b_recipient": recipient, "b_since": since, "b_length": len(text), "b_text": text}
    for part_id, mt_id, part_smsc in _PARTS_BY_CONTENT.all(conn, params):
        if part_smsc == smsc:
            return int(part_id), int(mt_id)
    return None


def _effect(receipt: DeliveryReceipt, now: float) -> dict[str, Any]:
    """The parameters of the statements applying ``receipt`` to a part (see _RECEIPT_EFFECT)."""
    outcome = final_status(receipt)
    stat = _short(receipt.stat)
    if outcome is not None and stat is None and receipt.message_state is not None:
        stat = _short(_STATE_STATS.get(receipt.message_state))
    return {
        "b_status": None if outcome is None else outcome.value,
        "b_done": None if outcome is None else now,
        "b_stat": stat,
    }


def _apply(conn: sa.Connection, part_id: int, receipt: DeliveryReceipt, now: float) -> str:
    """Apply one receipt to a part; returns the part's status afterwards."""
    return str(_APPLY_TO_PART.scalar(conn, {"b_part_id": part_id, **_effect(receipt, now)}))


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
    params = {"b_mt_id": mt_id, "b_now": now}
    changed = _REFRESH_MT.scalar(conn, params)
    if changed is not None:
        return str(changed)
    # Not settleable, not settled by its parts yet, or settled to what it already is.
    return str(_MT_STATUS.scalar(conn, params))


def _refresh_single_part_mt(conn: sa.Connection, mt_id: int, part_status: str, now: float) -> str:
    """:func:`refresh_mt_status` for an MT of one part, given that part's status: one
    statement with neither the count nor the scans over its parts."""
    outcome = _SINGLE_PART_OUTCOME.get(MtPartStatus(part_status))
    if outcome is not None:
        changed = _SETTLE_SINGLE_PART.scalar(conn, {"b_mt_id": mt_id, "b_status": outcome, "b_now": now})
        if changed is not None:
            return str(changed)
    # A part not final leaves the MT as it is; so does an MT not settleable or already settled so.
    return str(_MT_STATUS.scalar(conn, {"b_mt_id": mt_id}))


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
    applied, _ = _apply_held(conn, smsc, smsc_message_id, mt_part_id, None, now, grace)
    return applied


def apply_held_receipts_to_mt(
    conn: sa.Connection, *, smsc: str, smsc_message_id: str, mt_part_id: int, mt_id: int, now: float, grace: float = 300.0
) -> tuple[int, str | None]:
    """:func:`apply_held_receipts` for a caller that knows the part's MT and wants its status.

    Returns:
        How many receipts were applied, and the MT's status afterwards (None when none was).
    """
    return _apply_held(conn, smsc, smsc_message_id, mt_part_id, mt_id, now, grace)


def _apply_held(
    conn: sa.Connection, smsc: str, smsc_message_id: str, mt_part_id: int, mt_id: int | None, now: float, grace: float
) -> tuple[int, str | None]:
    lock_message_id(conn, smsc, smsc_message_id)
    since = now - grace
    events = _EVENTS_OF_ID.all(conn, {"b_smsc": smsc, "b_message_id": smsc_message_id})
    held = sorted(
        (event for event in events if not event.matched and event.received_at >= since),
        key=lambda event: (event.received_at, event.id),
    )
    if not held:
        return 0, None
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
    _MARK_MATCHED.run(conn, {"b_ids": [event.id for event in held], "b_part_id": mt_part_id})
    if mt_id is None:
        mt_id = int(_MT_OF_PART.scalar(conn, {"b_part_id": mt_part_id}))
    return len(held), refresh_mt_status(conn, mt_id, now)


_HELD_FOR_RECIPIENT = Prepared(
    sa.select(_e.id, _e.smsc, _e.stat, _e.err, _e.message_state, _e.text, _e.received_at).where(
        _e.recipient == sa.bindparam("b_recipient"), _e.matched.is_(False)
    )
)


def apply_held_by_content(
    conn: sa.Connection, *, smsc: str, recipient: str, mt_text: str, mt_part_id: int, mt_id: int, now: float, grace: float = 300.0
) -> tuple[int, str | None]:
    """Apply held receipts that belong to a first part by recipient and text, not by id.

    When a gateway dies after the SMSC accepted a submit_sm but before the id was stored, the
    MT is sent again. The first submission's receipt carries an id nobody recorded; if it
    arrives before the resubmission is accepted, :func:`record_receipt` holds it. Called when
    a first part is accepted, this applies such receipts: unmatched, for the same handset and
    SMSC, received within ``grace``, quoting the start of the MT's text.

    Returns:
        How many receipts were applied, and the MT's status afterwards (None when none were).
    """
    since = now - grace
    held = [
        event
        for event in _HELD_FOR_RECIPIENT.all(conn, {"b_recipient": recipient})
        if event.smsc == smsc and event.text and event.received_at >= since and mt_text.startswith(event.text)
    ]
    if not held:
        return 0, None
    for event in sorted(held, key=lambda event: (event.received_at, event.id)):
        receipt = DeliveryReceipt(
            message_id=None, sub=None, dlvrd=None, submit_date=None, done_date=None, stat=event.stat,
            err=event.err, text=event.text, message_state=event.message_state, network_error_code=None,
        )
        _apply(conn, mt_part_id, receipt, now)
    _MARK_MATCHED.run(conn, {"b_ids": [event.id for event in held], "b_part_id": mt_part_id})
    return len(held), refresh_mt_status(conn, mt_id, now)


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
