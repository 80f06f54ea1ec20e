"""Campaign data: campaign rows, module state, sticky sessions, results, local profiles,
coupon pools and alert subscriptions.

Every function runs inside a caller's transaction (a store unit) and returns plain values.
The engine calls them to apply what a campaign module decided; reports read totals back.
"""

from __future__ import annotations

import json
from collections import abc
from typing import Any, Iterable, Mapping, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from permissions.consent import CampaignRef
from profile_store.prepared import Prepared
from profile_store.schema import (
    alert_subscriptions,
    campaign_records,
    campaign_state,
    campaigns,
    coupons,
    profile_facts,
    sessions,
)

__all__ = [
    "CampaignRow",
    "campaign_refs",
    "CouponOutcome",
    "RecordTotal",
    "add_fact",
    "add_record",
    "claim_coupon",
    "end_session",
    "ensure_campaigns",
    "fill_coupon_pool",
    "load_state",
    "load_states",
    "open_session",
    "open_sessions",
    "record_totals",
    "redeem_coupon",
    "save_state",
    "set_session",
    "subscribe",
    "unsubscribe",
    "end_sessions_of",
    "thaw",
]


@attrs.frozen
class CampaignRow:
    """What the ``campaigns`` table keeps of a loaded sheet."""

    name: str
    owner: str
    module: str
    short_code: str


@attrs.frozen
class RecordTotal:
    """The records of one (kind, key) of a campaign that were not withdrawn."""

    kind: str
    key: str
    count: int
    sum: float


@attrs.frozen
class CouponOutcome:
    """What :func:`claim_coupon` or :func:`redeem_coupon` did.

    ``status`` is "claimed", "already" (the subscriber's earlier code), "exhausted",
    "redeemed" or "unknown"; ``code`` is the code concerned ("" when there is none).
    """

    status: str
    code: str


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which offers ON CONFLICT on SQLite and PostgreSQL."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def campaign_refs(conn: sa.Connection, ids: Iterable[int] | None = None) -> dict[int, CampaignRef]:
    """The campaigns with a row (those of ``ids`` when given) by id, as consent sees them:
    name, owner, short code. Rows outlive their sheets, so this names removed campaigns too."""
    query = sa.select(campaigns.c.id, campaigns.c.name, campaigns.c.owner, campaigns.c.short_code)
    if ids is not None:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = query.where(campaigns.c.id.in_(wanted))
    return {cid: CampaignRef(name, owner, code) for cid, name, owner, code in conn.execute(query)}


def ensure_campaigns(conn: sa.Connection, rows: Iterable[CampaignRow], now: float) -> dict[str, int]:
    """Insert or update a row per campaign; return every campaign's id by name.

    Ids of campaigns whose sheets went away are returned too: their MOs still refer to them.
    Two nodes loading the same new sheet at once both end up with the one row.
    """
    query = sa.select(campaigns.c.id, campaigns.c.name, campaigns.c.owner, campaigns.c.module, campaigns.c.short_code)
    existing = {name: (cid, owner, module, code) for cid, name, owner, module, code in conn.execute(query)}
    for row in rows:
        found = existing.get(row.name)
        if found is None:
            conn.execute(
                _insert(conn, campaigns)
                .values(name=row.name, owner=row.owner, module=row.module, short_code=row.short_code, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=[campaigns.c.name])
            )
        elif found[1:] != (row.owner, row.module, row.short_code):
            conn.execute(
                sa.update(campaigns)
                .where(campaigns.c.id == found[0])
                .values(owner=row.owner, module=row.module, short_code=row.short_code, updated_at=now)
            )
    return {name: cid for cid, name in conn.execute(sa.select(campaigns.c.id, campaigns.c.name))}


# --- module state --------------------------------------------------------------------------

_LOAD_STATE = sa.select(campaign_state.c.state).where(
    campaign_state.c.campaign_id == sa.bindparam("cid"), campaign_state.c.subscriber_id == sa.bindparam("sid")
)


def load_state(conn: sa.Connection, campaign_id: int, subscriber_id: int) -> dict[str, Any]:
    """The module state of a subscriber in a campaign ({} when none was saved)."""
    text = conn.execute(_LOAD_STATE, {"cid": campaign_id, "sid": subscriber_id}).scalar()
    return json.loads(text) if text else {}


# Built once: building a statement per batch costs more than running it.
_LOAD_STATES = Prepared(
    sa.select(campaign_state.c.campaign_id, campaign_state.c.subscriber_id, campaign_state.c.state).where(
        campaign_state.c.subscriber_id.in_(sa.bindparam("sids", expanding=True))
    ),
    expanding="sids",
)


def load_states(conn: sa.Connection, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
    """The module states of several (campaign id, subscriber id) pairs, in one query."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = _LOAD_STATES.all(conn, {"sids": sorted({sid for _, sid in wanted})})
    return {(cid, sid): json.loads(state) for cid, sid, state in rows if (cid, sid) in wanted}


def _state_upsert(dialect: str) -> Any:
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(campaign_state).values(
        campaign_id=sa.bindparam("cid"), subscriber_id=sa.bindparam("sid"), state=sa.bindparam("state"), updated_at=sa.bindparam("now")
    )
    return stmt.on_conflict_do_update(
        index_elements=[campaign_state.c.campaign_id, campaign_state.c.subscriber_id],
        set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
    )


# Built once: building an upsert (its ``excluded`` alias above all) costs more than running it.
_SAVE_STATE = {dialect: Prepared(_state_upsert(dialect)) for dialect in ("sqlite", "postgresql")}


def save_state(conn: sa.Connection, campaign_id: int, subscriber_id: int, state: Mapping[str, Any], now: float) -> None:
    """Replace the module state of a subscriber in a campaign."""
    text = _STATE_JSON.encode(state)
    _SAVE_STATE[conn.dialect.name].run(conn, {"cid": campaign_id, "sid": subscriber_id, "state": text, "now": now})


def thaw(value: Any) -> Any:
    """Plain dicts and lists for a module's read-only state (what :func:`load_state` would give back)."""
    # collections.abc, not typing: isinstance against typing's aliases goes through a slow hook.
    if isinstance(value, abc.Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [thaw(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    """JSON for the read-only mappings and tuples modules hand back."""
    if isinstance(value, abc.Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"module state holds a {type(value).__name__}, which JSON cannot store")


# One encoder: json.dumps with options builds a new one per call. States already thawed
# (plain dicts and lists) never reach ``default``.
_STATE_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=_jsonable)


# --- sessions ------------------------------------------------------------------------------

_OPEN_SESSION = sa.select(sessions.c.campaign_id).where(
    sessions.c.short_code == sa.bindparam("code"),
    sessions.c.subscriber_id == sa.bindparam("sid"),
    sessions.c.expires_at > sa.bindparam("now"),
)


def open_session(conn: sa.Connection, short_code: str, subscriber_id: int, now: float) -> int | None:
    """The campaign id of the subscriber's unexpired session on ``short_code``, if any."""
    return conn.execute(_OPEN_SESSION, {"code": short_code, "sid": subscriber_id, "now": now}).scalar()


_OPEN_SESSIONS = Prepared(
    sa.select(sessions.c.short_code, sessions.c.subscriber_id, sessions.c.campaign_id).where(
        sessions.c.subscriber_id.in_(sa.bindparam("sids", expanding=True)), sessions.c.expires_at > sa.bindparam("now")
    ),
    expanding="sids",
)


def open_sessions(conn: sa.Connection, pairs: Iterable[tuple[str, int]], now: float) -> dict[tuple[str, int], int]:
    """The unexpired sessions of several (short code, subscriber id) pairs, in one query."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = _OPEN_SESSIONS.all(conn, {"sids": sorted({sid for _, sid in wanted}), "now": now})
    return {(code, sid): cid for code, sid, cid in rows if (code, sid) in wanted}


def set_session(conn: sa.Connection, short_code: str, subscriber_id: int, campaign_id: int, expires_at: float) -> None:
    """Open (or move on) the subscriber's session on ``short_code`` with a campaign."""
    stmt = _insert(conn, sessions).values(
        short_code=short_code, subscriber_id=subscriber_id, campaign_id=campaign_id, expires_at=expires_at
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[sessions.c.short_code, sessions.c.subscriber_id],
            set_={"campaign_id": stmt.excluded.campaign_id, "expires_at": stmt.excluded.expires_at},
        )
    )


def end_session(conn: sa.Connection, short_code: str, subscriber_id: int, campaign_id: int | None = None) -> None:
    """Close the subscriber's session on ``short_code`` (only if it is with ``campaign_id``, when given)."""
    where = [sessions.c.short_code == short_code, sessions.c.subscriber_id == subscriber_id]
    if campaign_id is not None:
        where.append(sessions.c.campaign_id == campaign_id)
    conn.execute(sa.delete(sessions).where(*where))


def end_sessions_of(conn: sa.Connection, subscriber_id: int) -> None:
    """Close every session of a subscriber (after STOP)."""
    conn.execute(sa.delete(sessions).where(sessions.c.subscriber_id == subscriber_id))


# --- results and local profiles ------------------------------------------------------------


def add_record(
    conn: sa.Connection,
    campaign_id: int,
    subscriber_id: int,
    mo_id: int | None,
    kind: str,
    key: str,
    value: float,
    now: float,
    *,
    replace: bool = False,
) -> None:
    """Count a result; with ``replace``, withdraw the subscriber's earlier ones of this kind first."""
    if replace:
        conn.execute(
            sa.update(campaign_records)
            .where(
                campaign_records.c.campaign_id == campaign_id,
                campaign_records.c.subscriber_id == subscriber_id,
                campaign_records.c.kind == kind,
                campaign_records.c.withdrawn == sa.false(),
            )
            .values(withdrawn=True)
        )
    _INSERT_RECORD.run(
        conn,
        {
            "campaign_id": campaign_id,
            "subscriber_id": subscriber_id,
            "mo_id": mo_id,
            "kind": kind[:32],
            "key": key[:64],
            "value": value,
            "recorded_at": now,
            "withdrawn": False,
        },
    )


_INSERT_RECORD = Prepared(
    sa.insert(campaign_records), keys=("campaign_id", "subscriber_id", "mo_id", "kind", "key", "value", "recorded_at", "withdrawn")
)
_INSERT_FACT = Prepared(
    sa.insert(profile_facts), keys=("campaign_id", "subscriber_id", "mo_id", "object", "attitude", "recorded_at")
)


def record_totals(conn: sa.Connection, campaign_id: int) -> list[RecordTotal]:
    """The campaign's results by (kind, key): records not withdrawn, counted and summed."""
    rows = conn.execute(
        sa.select(
            campaign_records.c.kind,
            campaign_records.c.key,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(campaign_records.c.value), 0.0),
        )
        .where(campaign_records.c.campaign_id == campaign_id, campaign_records.c.withdrawn == sa.false())
        .group_by(campaign_records.c.kind, campaign_records.c.key)
        .order_by(campaign_records.c.kind, campaign_records.c.key)
    )
    return [RecordTotal(kind, key, int(count), float(total)) for kind, key, count, total in rows]


def add_fact(
    conn: sa.Connection, campaign_id: int, subscriber_id: int, mo_id: int | None, object_: str, attitude: str, now: float
) -> None:
    """Add an (object or event, attitude) pair to the subscriber's local profile for a campaign."""
    _INSERT_FACT.run(
        conn,
        {
            "campaign_id": campaign_id,
            "subscriber_id": subscriber_id,
            "mo_id": mo_id,
            "object": object_[:200],
            "attitude": attitude,
            "recorded_at": now,
        },
    )


# --- coupons -------------------------------------------------------------------------------


def fill_coupon_pool(conn: sa.Connection, campaign_id: int, codes: Sequence[str]) -> int:
    """Add the codes the campaign's pool lacks (codes already there keep their claims); return how many."""
    have = set(conn.execute(sa.select(coupons.c.code).where(coupons.c.campaign_id == campaign_id)).scalars())
    new = [{"campaign_id": campaign_id, "code": code} for code in dict.fromkeys(codes) if code not in have]
    if new:
        conn.execute(sa.insert(coupons), new)
    return len(new)


def claim_coupon(conn: sa.Connection, campaign_id: int, subscriber_id: int, now: float) -> CouponOutcome:
    """Give the subscriber a free code of the campaign, or their earlier one, or say the pool is empty.

    The conditional UPDATE takes the lowest free code only if it is still free, so two
    nodes claiming at once never hand out one code twice.
    """
    mine = conn.execute(
        sa.select(coupons.c.code)
        .where(coupons.c.campaign_id == campaign_id, coupons.c.subscriber_id == subscriber_id)
        .order_by(coupons.c.id)
        .limit(1)
    ).scalar()
    if mine is not None:
        return CouponOutcome("already", mine)
    for _ in range(5):
        # The first entry of the partial index ix_coupons_campaign_id_id_unclaimed, which only a
        # WHERE saying ``claimed_at IS NULL`` (as is_(None) writes it) lets the database use.
        free = conn.execute(
            sa.select(coupons.c.id, coupons.c.code)
            .where(coupons.c.campaign_id == campaign_id, coupons.c.claimed_at.is_(None))
            .order_by(coupons.c.id)
            .limit(1)
        ).first()
        if free is None:
            return CouponOutcome("exhausted", "")
        taken = conn.execute(
            sa.update(coupons)
            .where(coupons.c.id == free.id, coupons.c.claimed_at.is_(None))
            .values(subscriber_id=subscriber_id, claimed_at=now)
        ).rowcount
        if taken:
            return CouponOutcome("claimed", free.code)
    return CouponOutcome("exhausted", "")


def redeem_coupon(conn: sa.Connection, campaign_id: int, code: str, now: float) -> CouponOutcome:
    """Mark a claimed, unredeemed code of the campaign redeemed (codes compare case-insensitively)."""
    wanted = code.strip().upper()
    # upper(code) is the expression ix_coupons_campaign_id_upper_code indexes: change both or neither.
    row = conn.execute(
        sa.select(coupons.c.id, coupons.c.code).where(
            coupons.c.campaign_id == campaign_id,
            sa.func.upper(coupons.c.code) == wanted,
            coupons.c.claimed_at.is_not(None),
            coupons.c.redeemed_at.is_(None),
        )
    ).first()
    if row is None:
        return CouponOutcome("unknown", code.strip())
    conn.execute(sa.update(coupons).where(coupons.c.id == row.id).values(redeemed_at=now))
    return CouponOutcome("redeemed", row.code)


# --- alerts --------------------------------------------------------------------------------


def subscribe(conn: sa.Connection, campaign_id: int, topic: str, subscriber_id: int, now: float) -> bool:
    """Subscribe to a topic; False when the subscriber already was."""
    stmt = _insert(conn, alert_subscriptions).values(
        campaign_id=campaign_id, topic=topic[:64], subscriber_id=subscriber_id, subscribed_at=now
    )
    return conn.execute(stmt.on_conflict_do_nothing().returning(alert_subscriptions.c.topic)).first() is not None


def unsubscribe(conn: sa.Connection, campaign_id: int, topic: str, subscriber_id: int) -> int:
    """Unsubscribe from a topic, or from every topic of the campaign when ``topic`` is ""; return how many."""
    where = [alert_subscriptions.c.campaign_id == campaign_id, alert_subscriptions.c.subscriber_id == subscriber_id]
    if topic:
        where.append(alert_subscriptions.c.topic == topic)
    return conn.execute(sa.delete(alert_subscriptions).where(*where)).rowcount
