"""Campaigns: their rows, module state, sticky sessions, results, local profiles, coupons, alerts.

Also links each MO to the campaign it reached (``mo_messages.campaign_id``) and indexes MTs
by campaign for reports, and records the connection each MO part came on (a redelivery
comes on another) and which MT parts may have been submitted without their id recorded. Tables are
written out rather than taken from the schema module, for the reason given in revision 001.

Revision ID: 002
Revises: 001
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "002"
down_revision: str | Sequence[str] | None = "001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, parent: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{parent}.id"], name=op.f(f"fk_{table}_{column}_{parent}"))


def upgrade() -> None:
    """Create the campaign tables and add ``mo_messages.campaign_id``."""
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("module", sa.String(length=64), nullable=False),
        sa.Column("short_code", sa.String(length=21), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )

    with op.batch_alter_table("mo_messages") as batch:
        batch.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_mo_messages_campaign_id_campaigns"), "campaigns", ["campaign_id"], ["id"])
        batch.create_index("ix_mo_messages_campaign_id", ["campaign_id"])
    op.create_index("ix_mt_messages_campaign_status", "mt_messages", ["campaign", "status"])
    with op.batch_alter_table("mo_parts") as batch:
        batch.add_column(sa.Column("connection", sa.String(length=32), nullable=True))
    with op.batch_alter_table("mt_parts") as batch:
        batch.add_column(sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false()))

    op.create_table(
        "campaign_state",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "subscriber_id", name=op.f("pk_campaign_state")),
        _fk("campaign_state", "campaign_id", "campaigns"),
        _fk("campaign_state", "subscriber_id", "subscribers"),
    )
    op.create_index("ix_campaign_state_subscriber_id", "campaign_state", ["subscriber_id"])

    op.create_table(
        "sessions",
        sa.Column("short_code", sa.String(length=21), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("short_code", "subscriber_id", name=op.f("pk_sessions")),
        _fk("sessions", "subscriber_id", "subscribers"),
        _fk("sessions", "campaign_id", "campaigns"),
    )
    op.create_index("ix_sessions_subscriber_id", "sessions", ["subscriber_id"])
    op.create_index("ix_sessions_campaign_id", "sessions", ["campaign_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])

    op.create_table(
        "campaign_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("mo_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_records")),
        _fk("campaign_records", "campaign_id", "campaigns"),
        _fk("campaign_records", "subscriber_id", "subscribers"),
        _fk("campaign_records", "mo_id", "mo_messages"),
    )
    op.create_index("ix_campaign_records_campaign_id_kind_key", "campaign_records", ["campaign_id", "kind", "key"])
    op.create_index(
        "ix_campaign_records_campaign_id_subscriber_id_kind", "campaign_records", ["campaign_id", "subscriber_id", "kind"]
    )
    op.create_index("ix_campaign_records_subscriber_id", "campaign_records", ["subscriber_id"])
    op.create_index("ix_campaign_records_mo_id", "campaign_records", ["mo_id"])

    op.create_table(
        "profile_facts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("object", sa.String(length=200), nullable=False),
        sa.Column("attitude", sa.Text(), nullable=False),
        sa.Column("mo_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_facts")),
        _fk("profile_facts", "campaign_id", "campaigns"),
        _fk("profile_facts", "subscriber_id", "subscribers"),
        _fk("profile_facts", "mo_id", "mo_messages"),
    )
    op.create_index("ix_profile_facts_campaign_id_subscriber_id", "profile_facts", ["campaign_id", "subscriber_id"])
    op.create_index("ix_profile_facts_subscriber_id", "profile_facts", ["subscriber_id"])
    op.create_index("ix_profile_facts_mo_id", "profile_facts", ["mo_id"])

    op.create_table(
        "coupons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("redeemed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("campaign_id", "code", name=op.f("uq_coupons_campaign_id_code")),
        _fk("coupons", "campaign_id", "campaigns"),
        _fk("coupons", "subscriber_id", "subscribers"),
    )
    op.create_index("ix_coupons_campaign_id_subscriber_id", "coupons", ["campaign_id", "subscriber_id"])
    op.create_index("ix_coupons_subscriber_id", "coupons", ["subscriber_id"])

    op.create_table(
        "alert_subscriptions",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("subscribed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "topic", "subscriber_id", name=op.f("pk_alert_subscriptions")),
        _fk("alert_subscriptions", "campaign_id", "campaigns"),
        _fk("alert_subscriptions", "subscriber_id", "subscribers"),
    )
    op.create_index("ix_alert_subscriptions_subscriber_id", "alert_subscriptions", ["subscriber_id"])


def downgrade() -> None:
    """Drop the campaign tables and ``mo_messages.campaign_id``."""
    for table in ("alert_subscriptions", "coupons", "profile_facts", "campaign_records", "sessions", "campaign_state"):
        op.drop_table(table)
    with op.batch_alter_table("mt_parts") as batch:
        batch.drop_column("uncertain")
    with op.batch_alter_table("mo_parts") as batch:
        batch.drop_column("connection")
    op.drop_index("ix_mt_messages_campaign_status", "mt_messages")
    with op.batch_alter_table("mo_messages") as batch:
        batch.drop_index("ix_mo_messages_campaign_id")
        batch.drop_constraint(op.f("fk_mo_messages_campaign_id_campaigns"), type_="foreignkey")
        batch.drop_column("campaign_id")
    op.drop_table("campaigns")
