"""Outbound sends: a campaign's message to a segment, its recipients, and the MTs it queued.

Tables are written out rather than taken from the schema module, for the reason given in
revision 001.

Revision ID: 004
Revises: 003
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "004"
down_revision: str | Sequence[str] | None = "003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, parent: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{parent}.id"], name=op.f(f"fk_{table}_{column}_{parent}"))


def upgrade() -> None:
    """Create ``sends`` and ``send_recipients``; add ``mt_messages.send_id``."""
    op.create_table(
        "sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("targeted", sa.Integer(), nullable=False),
        sa.Column("materialise_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sends")),
        sa.UniqueConstraint("campaign_id", "name", name=op.f("uq_sends_campaign_id_name")),
        sa.CheckConstraint(
            "status IN ('scheduled', 'running', 'paused', 'cancelled', 'done')", name=op.f("ck_sends_status_valid")
        ),
        _fk("sends", "campaign_id", "campaigns"),
        _fk("sends", "parent_id", "sends"),
    )
    op.create_index("ix_sends_status_scheduled_at", "sends", ["status", "scheduled_at"])
    op.create_index("ix_sends_parent_id", "sends", ["parent_id"])
    with op.batch_alter_table("mt_messages") as batch:
        batch.add_column(sa.Column("send_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_mt_messages_send_id_sends"), "sends", ["send_id"], ["id"])
        batch.create_index("ix_mt_messages_send_id_subscriber_id", ["send_id", "subscriber_id"])
    op.create_table(
        "send_recipients",
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("send_id", "subscriber_id", name=op.f("pk_send_recipients")),
        sa.CheckConstraint("status IN ('queued', 'suppressed')", name=op.f("ck_send_recipients_status_valid")),
        _fk("send_recipients", "send_id", "sends"),
        _fk("send_recipients", "subscriber_id", "subscribers"),
    )
    op.create_index("ix_send_recipients_subscriber_id", "send_recipients", ["subscriber_id"])


def downgrade() -> None:
    """Drop the send tables and ``mt_messages.send_id``."""
    op.drop_table("send_recipients")
    with op.batch_alter_table("mt_messages") as batch:
        batch.drop_index("ix_mt_messages_send_id_subscriber_id")
        batch.drop_constraint(op.f("fk_mt_messages_send_id_sends"), type_="foreignkey")
        batch.drop_column("send_id")
    op.drop_table("sends")
