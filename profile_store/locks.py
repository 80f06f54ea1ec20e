"""Serialising units that race on the same key across nodes.

On SQLite every writer transaction begins with BEGIN IMMEDIATE, so units never overlap and
nothing is needed. On PostgreSQL two nodes may run units for the same key at once, each
blind to the other's uncommitted rows (an MO's last two parts arriving on two binds; a
receipt and its submit_sm_resp). A transaction-scoped advisory lock on the key makes the
second wait for the first to commit; at READ COMMITTED its later statements then see it.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

__all__ = ["lock_key"]

# Built once, so taking a lock costs one round trip and no statement compilation.
_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)").bindparams(sa.bindparam("key", type_=sa.BigInteger))


def lock_key(conn: sa.Connection, key: str) -> None:
    """Hold a lock on ``key`` until the transaction ends (PostgreSQL; nothing on SQLite).

    Args:
        conn: a connection inside the unit's transaction.
        key: any string; equal strings lock each other out.
    """
    if conn.dialect.name != "postgresql":
        return
    number = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big", signed=True)
    conn.execute(_LOCK, {"key": number})
