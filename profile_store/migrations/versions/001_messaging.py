"""The messaging store: subscribers, MOs (parts and assembled messages), MTs and receipts.

The first schema, as ``profile_store/schema.py`` defined it when gatewayd first stored
messages. Tables are written out here rather than taken from the schema module, because
that module always describes the newest schema and this revision must keep creating the
first one. Constraint and index names follow the naming convention of ``schema.metadata``
(``ck_``, ``uq_``, ``fk_``, ``ix_``, ``pk_``), so later revisions can drop them by name on
SQLite and PostgreSQL alike.

Revision ID: 001
Revises: nothing (first revision)
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _one_of(column: str, table: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=op.f(f"ck_{table}_{column}_valid"))


def upgrade() -> None:
    """Create the six tables, parents before the tables that refer to them."""
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("msisdn", name=op.f("uq_subscribers_msisdn")),
    )

    op.create_table(
        "mo_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("smsc", sa.String(length=32), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("short_code", sa.String(length=21), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("route", sa.String(length=64), nullable=True),
        sa.Column("processed_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mo_messages")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], name=op.f("fk_mo_messages_subscriber_id_subscribers")),
        _one_of("status", "mo_messages", ("stored", "processed", "failed", "ignored")),
    )
    op.create_index("ix_mo_messages_status_id", "mo_messages", ["status", "id"])
    op.create_index("ix_mo_messages_subscriber_id", "mo_messages", ["subscriber_id"])

    op.create_table(
        "mo_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("smsc", sa.String(length=32), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("short_code", sa.String(length=21), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("concat_key", sa.String(length=128), nullable=True),
        sa.Column("part_index", sa.SmallInteger(), nullable=True),
        sa.Column("part_total", sa.SmallInteger(), nullable=True),
        sa.Column("esm_class", sa.SmallInteger(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mo_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mo_parts")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], name=op.f("fk_mo_parts_subscriber_id_subscribers")),
        sa.ForeignKeyConstraint(["mo_id"], ["mo_messages.id"], name=op.f("fk_mo_parts_mo_id_mo_messages")),
        _one_of("status", "mo_parts", ("pending", "assembled", "expired")),
    )
    op.create_index("ix_mo_parts_smsc_dedupe_key_received_at", "mo_parts", ["smsc", "dedupe_key", "received_at"])
    op.create_index("ix_mo_parts_concat_key_status", "mo_parts", ["concat_key", "status"])
    op.create_index("ix_mo_parts_status_received_at", "mo_parts", ["status", "received_at"])
    op.create_index("ix_mo_parts_subscriber_id", "mo_parts", ["subscriber_id"])
    op.create_index("ix_mo_parts_mo_id", "mo_parts", ["mo_id"])

    op.create_table(
        "mt_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("source_addr", sa.String(length=21), nullable=False),
        sa.Column("smsc", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=True),
        sa.Column("concat_ref", sa.Integer(), nullable=False),
        sa.Column("parts_total", sa.SmallInteger(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("registered_delivery", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("in_reply_to", sa.Integer(), nullable=True),
        sa.Column("campaign", sa.String(length=64), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claim_expires_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mt_messages")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], name=op.f("fk_mt_messages_subscriber_id_subscribers")),
        sa.ForeignKeyConstraint(["in_reply_to"], ["mo_messages.id"], name=op.f("fk_mt_messages_in_reply_to_mo_messages")),
        _one_of(
            "status",
            "mt_messages",
            ("queued", "sending", "submitted", "delivered", "undelivered", "failed", "expired", "cancelled"),
        ),
    )
    op.create_index("ix_mt_messages_status_priority_next_attempt_at", "mt_messages", ["status", "priority", "next_attempt_at"])
    op.create_index("ix_mt_messages_in_reply_to", "mt_messages", ["in_reply_to"])
    op.create_index("ix_mt_messages_subscriber_id", "mt_messages", ["subscriber_id"])

    op.create_table(
        "mt_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mt_id", sa.Integer(), nullable=False),
        sa.Column("part_index", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("smsc", sa.String(length=32), nullable=True),
        sa.Column("smsc_message_id", sa.String(length=65), nullable=True),
        sa.Column("submit_status", sa.Integer(), nullable=True),
        sa.Column("receipt_stat", sa.String(length=8), nullable=True),
        sa.Column("submitted_at", sa.Float(), nullable=True),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mt_parts")),
        sa.ForeignKeyConstraint(["mt_id"], ["mt_messages.id"], name=op.f("fk_mt_parts_mt_id_mt_messages")),
        sa.UniqueConstraint("mt_id", "part_index", name=op.f("uq_mt_parts_mt_id_part_index")),
        _one_of("status", "mt_parts", ("pending", "accepted", "delivered", "undelivered", "failed", "expired")),
    )
    op.create_index("ix_mt_parts_smsc_smsc_message_id", "mt_parts", ["smsc", "smsc_message_id"])

    op.create_table(
        "dlr_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("smsc", sa.String(length=32), nullable=False),
        sa.Column("smsc_message_id", sa.String(length=65), nullable=False),
        sa.Column("mt_part_id", sa.Integer(), nullable=True),
        sa.Column("stat", sa.String(length=8), nullable=True),
        sa.Column("err", sa.String(length=8), nullable=True),
        sa.Column("message_state", sa.SmallInteger(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.Column("recipient", sa.String(length=20), nullable=True),
        sa.Column("text", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dlr_events")),
        sa.ForeignKeyConstraint(["mt_part_id"], ["mt_parts.id"], name=op.f("fk_dlr_events_mt_part_id_mt_parts")),
    )
    op.create_index("ix_dlr_events_smsc_smsc_message_id", "dlr_events", ["smsc", "smsc_message_id"])
    op.create_index("ix_dlr_events_matched_received_at", "dlr_events", ["matched", "received_at"])
    op.create_index("ix_dlr_events_mt_part_id", "dlr_events", ["mt_part_id"])
    op.create_index("ix_dlr_events_recipient_matched", "dlr_events", ["recipient", "matched"])


def downgrade() -> None:
    """Drop the six tables (their indexes go with them), referring tables first."""
    for table in ("dlr_events", "mt_parts", "mt_messages", "mo_parts", "mo_messages", "subscribers"):
        op.drop_table(table)
