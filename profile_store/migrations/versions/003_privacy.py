"""Privacy: the consent ledger, customer profiles, declared attributes and the audit log.

Also gives every MT its kind (response, marketing, keyword, refusal), which the sender
checks against the ledger at submit time, and lets a campaign result outlive the link to
its subscriber (``campaign_records.subscriber_id`` becomes nullable) so that erasing a local
profile keeps the tallies. Tables are written out rather than taken from the schema module,
for the reason given in revision 001.

Revision ID: 003
Revises: 002
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "003"
down_revision: str | Sequence[str] | None = "002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MT_KINDS = "kind IN ('response', 'marketing', 'keyword', 'refusal')"
_EVENTS = "event IN ('opt_in', 'opt_in_requested', 'confirmed', 'opt_out')"


def _fk(table: str, column: str, parent: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{parent}.id"], name=op.f(f"fk_{table}_{column}_{parent}"))


def upgrade() -> None:
    """Create the privacy tables, add ``mt_messages.kind``, relax ``campaign_records.subscriber_id``."""
    with op.batch_alter_table("mt_messages") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="response"))
        batch.create_check_constraint(op.f("ck_mt_messages_kind_valid"), _MT_KINDS)
    with op.batch_alter_table("campaign_records") as batch:
        batch.alter_column("subscriber_id", existing_type=sa.Integer(), nullable=True)

    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_hash", sa.String(length=64), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=True),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_short_code", sa.String(length=21), nullable=False),
        sa.Column("scope_owner", sa.String(length=200), nullable=False),
        sa.Column("scope_campaign", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("short_code", sa.String(length=21), nullable=False),
        sa.Column("keyword", sa.String(length=64), nullable=False),
        sa.Column("mo_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sa.CheckConstraint(_EVENTS, name=op.f("ck_consent_events_event_valid")),
        _fk("consent_events", "subscriber_id", "subscribers"),
    )
    op.create_index("ix_consent_events_number_hash_at", "consent_events", ["number_hash", "at"])
    op.create_index("ix_consent_events_subscriber_id", "consent_events", ["subscriber_id"])

    op.create_table(
        "customer_profiles",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("mos", sa.Integer(), nullable=False),
        sa.Column("campaign_mos", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_customer_profiles")),
        _fk("customer_profiles", "subscriber_id", "subscribers"),
    )
    op.create_index("ix_customer_profiles_last_seen_at", "customer_profiles", ["last_seen_at"])

    op.create_table(
        "customer_campaigns",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("mos", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", "campaign_id", name=op.f("pk_customer_campaigns")),
        _fk("customer_campaigns", "subscriber_id", "subscribers"),
        _fk("customer_campaigns", "campaign_id", "campaigns"),
    )
    op.create_index("ix_customer_campaigns_campaign_id_last_at", "customer_campaigns", ["campaign_id", "last_at"])

    op.create_table(
        "subscriber_attributes",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("declared_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", "name", name=op.f("pk_subscriber_attributes")),
        _fk("subscriber_attributes", "subscriber_id", "subscribers"),
        _fk("subscriber_attributes", "campaign_id", "campaigns"),
    )
    op.create_index("ix_subscriber_attributes_name_value", "subscriber_attributes", ["name", "value"])
    op.create_index("ix_subscriber_attributes_campaign_id", "subscriber_attributes", ["campaign_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    """Drop the privacy tables and ``mt_messages.kind``; results without a subscriber go."""
    for table in ("audit_log", "subscriber_attributes", "customer_campaigns", "customer_profiles", "consent_events"):
        op.drop_table(table)
    op.execute("DELETE FROM campaign_records WHERE subscriber_id IS NULL")
    with op.batch_alter_table("campaign_records") as batch:
        batch.alter_column("subscriber_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("mt_messages") as batch:
        batch.drop_constraint(op.f("ck_mt_messages_kind_valid"), type_="check")
        batch.drop_column("kind")
