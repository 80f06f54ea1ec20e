"""Indexes fitted to the daemon's queries, and none it does not use.

Added: ``mt_messages (send_id, status) WHERE send_id IS NOT NULL`` for finish_sends (replies,
which belong to no send, never maintain it); on ``coupons`` a partial index of
the free codes, ``(campaign_id, id) WHERE claimed_at IS NULL``, for claim_coupon and
``(campaign_id, upper(code))`` for redeem_coupon.

Widened, so that a lookup by subscriber and campaign is one index range instead of every
row of the campaign (or of the subscriber): ``alert_subscriptions (subscriber_id)`` becomes
``(subscriber_id, campaign_id)``, ``sessions (campaign_id)`` and ``subscriber_attributes
(campaign_id)`` become ``(campaign_id, subscriber_id)``. ``mo_parts (concat_key, status)``
becomes ``(status, concat_key)``, which also gives expire_incomplete the pending parts
grouped by concat_key, so ``mo_parts (status, received_at)`` goes.

``customer_campaigns (campaign_id, last_at)`` becomes ``(campaign_id, subscriber_id)``:
segments read a campaign's participants from it, but no query wants ``last_at``, which every
MO to the campaign changes (and with it the index).

Dropped, as no query needs them while every write maintains them: ``audit_log (at)`` (no
query reads the log by time) and ``sessions (expires_at)`` (the open-session lookups give the
subscriber too, whose index finds their few sessions).

Every foreign-key column still leads an index. Only indexes change, so no table is rebuilt,
on SQLite either. SQLite cannot reflect the expression-based index on ``upper(code)``: a
later revision rebuilding ``coupons`` with a batch operation must create it again.

Revision ID: 005
Revises: 004
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "005"
down_revision: str | Sequence[str] | None = "004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, index name, columns) created by this revision, in order; downgrade drops them.
_NEW: tuple[tuple[str, str, list[str]], ...] = (
    ("alert_subscriptions", "ix_alert_subscriptions_subscriber_id_campaign_id", ["subscriber_id", "campaign_id"]),
    ("sessions", "ix_sessions_campaign_id_subscriber_id", ["campaign_id", "subscriber_id"]),
    ("subscriber_attributes", "ix_subscriber_attributes_campaign_id_subscriber_id", ["campaign_id", "subscriber_id"]),
    ("mo_parts", "ix_mo_parts_status_concat_key", ["status", "concat_key"]),
    ("customer_campaigns", "ix_customer_campaigns_campaign_id_subscriber_id", ["campaign_id", "subscriber_id"]),
)

#: (table, index name, columns) dropped by this revision; downgrade creates them again.
_OLD: tuple[tuple[str, str, list[str]], ...] = (
    ("alert_subscriptions", "ix_alert_subscriptions_subscriber_id", ["subscriber_id"]),
    ("sessions", "ix_sessions_campaign_id", ["campaign_id"]),
    ("subscriber_attributes", "ix_subscriber_attributes_campaign_id", ["campaign_id"]),
    ("mo_parts", "ix_mo_parts_concat_key_status", ["concat_key", "status"]),
    ("mo_parts", "ix_mo_parts_status_received_at", ["status", "received_at"]),
    ("customer_campaigns", "ix_customer_campaigns_campaign_id_last_at", ["campaign_id", "last_at"]),
    ("sessions", "ix_sessions_expires_at", ["expires_at"]),
    ("audit_log", "ix_audit_log_at", ["at"]),
)

_FREE_COUPONS = "ix_coupons_campaign_id_id_unclaimed"
_UPPER_CODE = "ix_coupons_campaign_id_upper_code"
_SEND_STATUS = "ix_mt_messages_send_id_status"


def upgrade() -> None:
    """Create the new indexes first, so no foreign key is ever without one, then drop the old."""
    for table, name, columns in _NEW:
        op.create_index(name, table, columns)
    # The same literal condition for both dialects: claim_coupon's query says it word for word.
    unclaimed = sa.text("claimed_at IS NULL")
    op.create_index(
        _FREE_COUPONS, "coupons", ["campaign_id", "id"], sqlite_where=unclaimed, postgresql_where=unclaimed
    )
    op.create_index(_UPPER_CODE, "coupons", ["campaign_id", sa.text("upper(code)")])
    in_a_send = sa.text("send_id IS NOT NULL")
    op.create_index(_SEND_STATUS, "mt_messages", ["send_id", "status"], sqlite_where=in_a_send, postgresql_where=in_a_send)
    for table, name, _ in _OLD:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    """Put the 004 indexes back, then drop this revision's."""
    for table, name, columns in _OLD:
        op.create_index(name, table, columns)
    op.drop_index(_SEND_STATUS, table_name="mt_messages")
    op.drop_index(_UPPER_CODE, table_name="coupons")
    op.drop_index(_FREE_COUPONS, table_name="coupons")
    for table, name, _ in reversed(_NEW):
        op.drop_index(name, table_name=table)
