"""The outbox and receipt indexes hold only the rows their queries look for.

An MT changes status two or three times after it is written (sending, submitted, delivered),
and each change moved its entries in every index that includes the status: the claim index
``(status, priority, next_attempt_at)``, ``(campaign, status)`` and, for a send's MTs,
``(send_id, status)``. Only queued and sending rows are ever looked up by status, so:

- ``(status, priority, next_attempt_at)`` becomes two partial indexes: ``(priority,
  next_attempt_at) WHERE status = 'queued'`` for the claims, and ``(claim_expires_at) WHERE
  status = 'sending'`` for the claims that ran out;
- ``(campaign, status)`` becomes ``(campaign)``: a campaign's report groups its rows by status
  anyway;
- ``(send_id, status) WHERE send_id IS NOT NULL`` becomes ``(send_id) WHERE send_id IS NOT NULL
  AND status IN ('queued', 'sending')``, which finish_sends asks.

Receipts: almost every one matches its part when it arrives, yet each added an entry to
``(matched, received_at)`` and ``(recipient, matched)``. They become ``(received_at) WHERE
matched IS false`` and ``(recipient) WHERE recipient IS NOT NULL`` (a matched receipt keeps no
number).

A submitted MT then maintains no status index at all. Only indexes change, so no table is
rebuilt, on SQLite either.

Revision ID: 007
Revises: 006
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "007"
down_revision: str | Sequence[str] | None = "006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, index name, columns, WHERE or None) of the indexes 007 replaces.
_BEFORE: tuple[tuple[str, str, list[str], str | None], ...] = (
    ("mt_messages", "ix_mt_messages_status_priority_next_attempt_at", ["status", "priority", "next_attempt_at"], None),
    ("mt_messages", "ix_mt_messages_campaign_status", ["campaign", "status"], None),
    ("mt_messages", "ix_mt_messages_send_id_status", ["send_id", "status"], "send_id IS NOT NULL"),
    ("dlr_events", "ix_dlr_events_matched_received_at", ["matched", "received_at"], None),
    ("dlr_events", "ix_dlr_events_recipient_matched", ["recipient", "matched"], None),
)


def _after() -> tuple[tuple[str, str, list[str], str | None], ...]:
    """The indexes that replace them; the unmatched receipts' WHERE is spelled per dialect,
    as SQLAlchemy writes ``matched IS false`` (which the queries say)."""
    unmatched = "matched IS 0" if op.get_context().dialect.name == "sqlite" else "matched IS false"
    return (
        ("mt_messages", "ix_mt_messages_queued", ["priority", "next_attempt_at"], "status = 'queued'"),
        ("mt_messages", "ix_mt_messages_sending", ["claim_expires_at"], "status = 'sending'"),
        ("mt_messages", "ix_mt_messages_campaign", ["campaign"], None),
        (
            "mt_messages",
            "ix_mt_messages_send_id_active",
            ["send_id"],
            "send_id IS NOT NULL AND status IN ('queued', 'sending')",
        ),
        ("dlr_events", "ix_dlr_events_unmatched_received_at", ["received_at"], unmatched),
        ("dlr_events", "ix_dlr_events_recipient", ["recipient"], "recipient IS NOT NULL"),
    )


def _swap(drop: Sequence[tuple[str, str, list[str], str | None]], create: Sequence[tuple[str, str, list[str], str | None]]) -> None:
    for table, name, _, _ in drop:
        op.drop_index(name, table_name=table)
    for table, name, columns, where in create:
        partial = {} if where is None else {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}
        op.create_index(name, table, columns, **partial)


def upgrade() -> None:
    """Replace the indexes of 006 with the partial and narrower ones."""
    _swap(_BEFORE, _after())


def downgrade() -> None:
    """Put the indexes of 006 back."""
    _swap(_after(), _BEFORE)
