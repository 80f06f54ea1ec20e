"""Per-campaign figures for reports: participation, replies, delivery, results.

One read unit (:func:`campaign_stats`) gathers everything a report prints, with a handful
of aggregate queries on indexed columns.
"""

from __future__ import annotations

import attrs
import sqlalchemy as sa

from profile_store.campaigns import RecordTotal, record_totals
from profile_store.schema import campaigns, coupons, mo_messages, mt_messages

__all__ = ["CampaignStats", "campaign_stats", "UnknownCampaign"]


class UnknownCampaign(LookupError):
    """No campaign of that name was ever loaded."""


@attrs.frozen
class CampaignStats:
    """What a campaign did, from the store."""

    name: str
    owner: str
    module: str
    short_code: str
    #: Distinct subscribers who sent the campaign at least one MO.
    participants: int
    #: MOs that reached the campaign (keyword, session, default or closed).
    mos: int
    #: MOs that failed processing.
    mos_failed: int
    #: MTs the campaign queued: answers to MOs, and all of them.
    replies: int
    mts: int
    #: MTs by status (queued, submitted, delivered, undelivered, failed, ...).
    mt_status: dict[str, int]
    #: Results recorded by the module.
    totals: tuple[RecordTotal, ...]
    coupons_total: int
    coupons_claimed: int
    coupons_redeemed: int

    @property
    def delivered(self) -> int:
        """MTs with a delivery receipt saying delivered."""
        return self.mt_status.get("delivered", 0)

    @property
    def delivery_rate(self) -> float | None:
        """Delivered over MTs that left the gateway and were settled or are awaiting a receipt (None: none sent)."""
        sent = sum(n for status, n in self.mt_status.items() if status in ("submitted", "delivered", "undelivered", "expired"))
        return self.delivered / sent if sent else None

    @property
    def response_rate(self) -> float | None:
        """MOs answered with at least one reply, over MOs received (None: no MO yet)."""
        return min(1.0, self.answered / self.mos) if self.mos else None

    #: MOs that got at least one reply.
    answered: int = 0


def campaign_stats(conn: sa.Connection, name: str) -> CampaignStats:
    """Everything a report shows about the campaign called ``name``.

    Raises:
        UnknownCampaign: no campaign of that name was ever loaded.
    """
    row = conn.execute(
        sa.select(campaigns.c.id, campaigns.c.owner, campaigns.c.module, campaigns.c.short_code).where(campaigns.c.name == name)
    ).first()
    if row is None:
        raise UnknownCampaign(name)
    cid = row.id
    mos, participants, failed = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(sa.distinct(mo_messages.c.subscriber_id)),
            sa.func.coalesce(sa.func.sum(sa.case((mo_messages.c.status == "failed", 1), else_=0)), 0),
        ).where(mo_messages.c.campaign_id == cid)
    ).one()
    status_rows = conn.execute(
        sa.select(mt_messages.c.status, sa.func.count()).where(mt_messages.c.campaign == name).group_by(mt_messages.c.status)
    ).all()
    replies, answered = conn.execute(
        sa.select(sa.func.count(), sa.func.count(sa.distinct(mt_messages.c.in_reply_to))).where(
            mt_messages.c.campaign == name, mt_messages.c.in_reply_to.is_not(None)
        )
    ).one()
    total, claimed, redeemed = conn.execute(
        sa.select(sa.func.count(), sa.func.count(coupons.c.subscriber_id), sa.func.count(coupons.c.redeemed_at)).where(
            coupons.c.campaign_id == cid
        )
    ).one()
    mt_status = {status: int(n) for status, n in status_rows}
    return CampaignStats(
        name=name,
        owner=row.owner,
        module=row.module,
        short_code=row.short_code,
        participants=int(participants),
        mos=int(mos),
        mos_failed=int(failed),
        replies=int(replies),
        mts=sum(mt_status.values()),
        mt_status=mt_status,
        totals=tuple(record_totals(conn, cid)),
        coupons_total=int(total),
        coupons_claimed=int(claimed),
        coupons_redeemed=int(redeemed),
        answered=int(answered),
    )
