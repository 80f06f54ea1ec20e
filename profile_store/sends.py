"""Outbound sends: their rows, their life (scheduled -> running -> done, or paused, cancelled),
the follow-ups to non-responders, and what each send achieved.

Every function runs inside a caller's transaction and returns plain values. Pausing and
cancelling act on the outbox directly: a paused send's queued MTs are put out of reach of
the sender (their due time moves to :data:`PAUSED_UNTIL`) and come back when resumed; a
cancelled send's queued MTs are cancelled. MTs already being sent finish, and no MT is ever
queued twice, so nothing is sent twice whatever the order of pause, resume and cancel.
"""

from __future__ import annotations

from typing import Iterable

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from profile_store.schema import MT_ACTIVE, campaigns, mo_messages, mt_messages, send_recipients, sends

__all__ = [
    "PAUSED_UNTIL",
    "SendRow",
    "SendStats",
    "change_sends",
    "due_sends",
    "ensure_sends",
    "finish_sends",
    "recipients_for_send_again",
    "send_stats",
    "sends_of",
    "start_send",
]

#: The due time of a paused send's queued MTs: far beyond any real schedule.
PAUSED_UNTIL = 1.0e12

#: MT statuses that mean an SMSC accepted the MT.
_SUBMITTED = ("submitted", "delivered", "undelivered", "expired")


@attrs.frozen
class SendRow:
    """One send as stored."""

    id: int
    campaign: str
    campaign_id: int
    name: str
    parent_id: int | None
    text: str
    status: str
    scheduled_at: float
    started_at: float | None
    finished_at: float | None
    targeted: int


@attrs.frozen
class SendStats:
    """What one send achieved (the report's per-send lines)."""

    send: SendRow
    #: Recipients selected, suppressed at materialisation (by reason), MTs queued.
    targeted: int
    suppressed: dict[str, int]
    #: MTs cancelled at submit time, by reason ("opted out", "cap", "no marketing opt-in", ...).
    suppressed_at_submit: dict[str, int]
    submitted: int
    delivered: int
    #: Recipients who sent an MO to the short code after their MT was queued.
    replied: int

    @property
    def response_rate(self) -> float | None:
        """Replies per MT submitted."""
        return self.replied / self.submitted if self.submitted else None


_SEND_COLUMNS = (
    sends.c.id,
    campaigns.c.name.label("campaign"),
    sends.c.campaign_id,
    sends.c.name,
    sends.c.parent_id,
    sends.c.text,
    sends.c.status,
    sends.c.scheduled_at,
    sends.c.started_at,
    sends.c.finished_at,
    sends.c.targeted,
)
_SELECT_SENDS = sa.select(*_SEND_COLUMNS).join(campaigns, campaigns.c.id == sends.c.campaign_id)


def _row(row: sa.Row) -> SendRow:  # type: ignore[type-arg]
    return SendRow(**row._mapping)


def ensure_sends(
    conn: sa.Connection, campaign_id: int, entries: Iterable[tuple[str, float, str, int | None]], now: float, status: str = "scheduled"
) -> int:
    """Create the sends (name, scheduled_at, text, parent id) the campaign lacks; returns how many were new."""
    rows = [
        {
            "campaign_id": campaign_id,
            "name": name[:100],
            "parent_id": parent,
            "text": text,
            "status": status,
            "scheduled_at": at,
            "targeted": 0,
            "created_at": now,
            "updated_at": now,
        }
        for name, at, text, parent in entries
    ]
    if not rows:
        return 0
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(sends)
    stmt = insert.on_conflict_do_nothing(index_elements=[sends.c.campaign_id, sends.c.name]).returning(sends.c.id)
    return sum(1 for row in rows if conn.execute(stmt, row).first() is not None)


def due_sends(conn: sa.Connection, now: float) -> list[SendRow]:
    """The scheduled sends whose time has come, oldest first."""
    query = _SELECT_SENDS.where(sends.c.status == "scheduled", sends.c.scheduled_at <= now).order_by(sends.c.scheduled_at, sends.c.id)
    return [_row(r) for r in conn.execute(query)]


def sends_of(conn: sa.Connection, campaign: str) -> list[SendRow]:
    """Every send of a campaign, in creation order."""
    return [_row(r) for r in conn.execute(_SELECT_SENDS.where(campaigns.c.name == campaign).order_by(sends.c.id))]


def start_send(conn: sa.Connection, send_id: int, now: float, seconds: float) -> None:
    """Mark a materialised send running (unless it was paused or cancelled meanwhile)."""
    conn.execute(
        sa.update(sends)
        .where(sends.c.id == send_id, sends.c.status == "scheduled")
        .values(status="running", started_at=now, materialise_seconds=seconds, updated_at=now)
    )


def finish_sends(conn: sa.Connection, now: float) -> list[SendRow]:
    """Mark done the running sends with no MT left to send; returns them."""
    pending = sa.select(mt_messages.c.id).where(mt_messages.c.send_id == sends.c.id, MT_ACTIVE)
    done = [
        _row(r)
        for r in conn.execute(_SELECT_SENDS.where(sends.c.status == "running", ~sa.exists(pending)))
    ]
    if done:
        conn.execute(
            sa.update(sends).where(sends.c.id.in_([s.id for s in done])).values(status="done", finished_at=now, updated_at=now)
        )
    return done


def change_sends(conn: sa.Connection, campaign: str, action: str, now: float) -> dict[str, int]:
    """Pause, resume or cancel every unfinished send of a campaign; returns counts of sends and MTs changed.

    Raises:
        LookupError: no campaign of that name.
    """
    cid = conn.execute(sa.select(campaigns.c.id).where(campaigns.c.name == campaign)).scalar()
    if cid is None:
        raise LookupError(campaign)
    of_campaign = sa.select(sends.c.id).where(sends.c.campaign_id == cid)
    queued = sa.and_(mt_messages.c.send_id.in_(of_campaign), mt_messages.c.status == "queued")
    if action == "pause":
        changed = conn.execute(
            sa.update(sends).where(sends.c.campaign_id == cid, sends.c.status.in_(("scheduled", "running"))).values(status="paused", updated_at=now)
        ).rowcount
        mts = conn.execute(sa.update(mt_messages).where(queued).values(next_attempt_at=PAUSED_UNTIL, updated_at=now)).rowcount
    elif action == "resume":
        changed = conn.execute(
            sa.update(sends)
            .where(sends.c.campaign_id == cid, sends.c.status == "paused")
            .values(status=sa.case((sends.c.started_at.is_(None), "scheduled"), else_="running"), updated_at=now)
        ).rowcount
        mts = conn.execute(
            sa.update(mt_messages).where(queued, mt_messages.c.next_attempt_at >= PAUSED_UNTIL).values(next_attempt_at=now, updated_at=now)
        ).rowcount
    elif action == "cancel":
        changed = conn.execute(
            sa.update(sends)
            .where(sends.c.campaign_id == cid, sends.c.status.in_(("scheduled", "running", "paused")))
            .values(status="cancelled", finished_at=now, updated_at=now)
        ).rowcount
        mts = conn.execute(
            sa.update(mt_messages).where(queued).values(status="cancelled", last_error="campaign cancelled", updated_at=now)
        ).rowcount
    else:
        raise ValueError(f"unknown action {action!r}")
    return {"sends": changed, "mts": mts}


def recipients_for_send_again(parent_id: int, short_code: str, to: str) -> sa.Select:  # type: ignore[type-arg]
    """The subscriber ids a follow-up to send ``parent_id`` goes to, as a SELECT for materialising.

    ``to`` is "no_reply" (no MO to ``short_code`` since their MT was queued), "undelivered"
    (their MT was not delivered) or "both".

    The one column is the parent MT's ``subscriber_id``: a caller working through a range of
    subscriber ids adds it to the WHERE clause (``.where(col >= first, col < end)`` with
    ``col = select.selected_columns[0]``), so the (send_id, subscriber_id) index reads only
    that range of the parent send.
    """
    mt = mt_messages.alias("parent_mt")
    replied = sa.exists(
        sa.select(mo_messages.c.id).where(
            mo_messages.c.subscriber_id == mt.c.subscriber_id,
            mo_messages.c.short_code == short_code,
            mo_messages.c.received_at >= mt.c.created_at,
        )
    )
    undelivered = mt.c.status.in_(("undelivered", "expired", "failed"))
    chosen = {"no_reply": sa.and_(mt.c.status.in_(_SUBMITTED), ~replied), "undelivered": undelivered}
    condition = sa.or_(chosen["no_reply"], undelivered) if to == "both" else chosen[to]
    return sa.select(mt.c.subscriber_id).where(mt.c.send_id == parent_id, condition)


def send_stats(conn: sa.Connection, campaign: str) -> list[SendStats]:
    """Per send of the campaign: targeted, suppressed (and why), submitted, delivered, replied."""
    result = []
    for send in sends_of(conn, campaign):
        code = conn.execute(sa.select(campaigns.c.short_code).where(campaigns.c.id == send.campaign_id)).scalar_one()
        suppressed = {
            str(reason): int(n)
            for reason, n in conn.execute(
                sa.select(send_recipients.c.reason, sa.func.count())
                .where(send_recipients.c.send_id == send.id, send_recipients.c.status == "suppressed")
                .group_by(send_recipients.c.reason)
            )
        }
        statuses = {
            str(status): int(n)
            for status, n in conn.execute(
                sa.select(mt_messages.c.status, sa.func.count()).where(mt_messages.c.send_id == send.id).group_by(mt_messages.c.status)
            )
        }
        at_submit: dict[str, int] = {}
        for error, n in conn.execute(
            sa.select(mt_messages.c.last_error, sa.func.count())
            .where(mt_messages.c.send_id == send.id, mt_messages.c.status == "cancelled")
            .group_by(mt_messages.c.last_error)
        ):
            at_submit[_reason(error)] = at_submit.get(_reason(error), 0) + int(n)
        replied = conn.execute(
            sa.select(sa.func.count()).select_from(mt_messages).where(
                mt_messages.c.send_id == send.id,
                sa.exists(
                    sa.select(mo_messages.c.id).where(
                        mo_messages.c.subscriber_id == mt_messages.c.subscriber_id,
                        mo_messages.c.short_code == code,
                        mo_messages.c.received_at >= mt_messages.c.created_at,
                    )
                ),
            )
        ).scalar_one()
        result.append(
            SendStats(
                send=send,
                targeted=send.targeted,
                suppressed=suppressed,
                suppressed_at_submit=at_submit,
                submitted=sum(statuses.get(s, 0) for s in _SUBMITTED),
                delivered=statuses.get("delivered", 0),
                replied=int(replied),
            )
        )
    return result


def _reason(error: str | None) -> str:
    """A short reason for an MT cancelled at submit time, from its last error."""
    text = (error or "").lower()
    for needle, reason in (
        ("opted out", "opted_out"),
        ("cap", "cap"),
        ("marketing opt-in", "no_consent"),
        ("under_age", "under_age"),
        ("campaign cancelled", "cancelled"),
    ):
        if needle in text:
            return reason
    return "policy"

