"""Privacy data: the consent ledger, declared attributes, customer profiles, the audit log,
erasure and export.

Every function runs inside a caller's transaction (a store unit) and returns plain values.
What is allowed, due or owed is decided in :mod:`permissions`; this module only records and
reads. Numbers appear here only where a subscriber row is read to be exported or hashed;
the ledger and the audit log hold keyed hashes and pseudonymous references.
"""

from __future__ import annotations

import heapq
import json
from typing import Any, Iterable, Iterator, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from permissions.audit import GENESIS, AuditRecord, chain_digest
from permissions.consent import (
    Confirmed,
    ConsentEvent,
    ConsentPurpose,
    ConsentState,
    Evidence,
    OptIn,
    OptInRequested,
    OptOut,
    Scope,
    event_to_dict,
)
from profile_store.prepared import Prepared
from profile_store.schema import (
    alert_subscriptions,
    audit_log,
    campaign_records,
    campaign_state,
    campaigns,
    consent_events,
    coupons,
    customer_campaigns,
    customer_profiles,
    dlr_events,
    mo_messages,
    mo_parts,
    mt_messages,
    mt_parts,
    profile_facts,
    send_recipients,
    sessions,
    subscriber_attributes,
    subscribers,
)

__all__ = [
    "AuditCheck",
    "CustomerProfile",
    "ErasureCounts",
    "append_audit",
    "append_consent",
    "audit_entries",
    "customer_profile",
    "declare_attribute",
    "erase_local_profile",
    "erase_subscriber",
    "export_subscriber",
    "idle_subscribers",
    "load_attributes",
    "load_consent",
    "local_profile_campaigns",
    "note_participation",
    "subject_ref",
    "verify_audit",
]

_DIALECTS = ("sqlite", "postgresql")
_DAY = 86400.0

#: MT statuses meaning an SMSC accepted the message (whatever the receipt said later).
_RECEIVED = ("submitted", "delivered", "undelivered", "expired")

#: The PostgreSQL advisory lock that serialises appends to the audit chain across nodes.
_AUDIT_LOCK_KEY = int.from_bytes(b"auditlog", "big")


def subject_ref(subscriber_id: int) -> str:
    """The audit log's reference to a subscriber: ``"subscriber:42"`` (never the number)."""
    return f"subscriber:{subscriber_id}"


@attrs.frozen
class CustomerProfile:
    """One subscriber's customer profile as read, with its scores."""

    subscriber_id: int
    first_seen_at: float
    last_seen_at: float
    #: Every MO processed, and those that reached a campaign.
    mos: int
    campaign_mos: int
    #: campaign name -> (first MO, last MO, MOs), for the campaigns joined.
    campaigns: dict[str, tuple[float, float, int]]
    #: The declared attributes.
    attributes: dict[str, str]
    #: MTs sent to the subscriber that an SMSC accepted, and how many of them were answered
    #: (an MO to the same short code after the MT, before the next MT).
    mts_received: int
    responses: int
    #: 1.0 for a subscriber seen today, falling linearly to 0.0 at 365 days.
    recency: float
    #: MOs per 30 days since first seen (at least one day counted).
    frequency: float

    @property
    def response_rate(self) -> float:
        """Responses per MT received (0.0 when nothing was received)."""
        return self.responses / self.mts_received if self.mts_received else 0.0


@attrs.frozen
class ErasureCounts:
    """What one erasure removed, table by table (rows deleted or detached)."""

    rows: dict[str, int]
    #: The opt-out events kept under the number's keyed hash.
    kept_opt_outs: int = 0


@attrs.frozen
class AuditCheck:
    """The outcome of :func:`verify_audit`."""

    #: Entries read.
    entries: int
    #: The id of the first entry whose digest does not match, None when the chain holds.
    broken_id: int | None = None
    #: That entry's record as stored, None when the chain holds.
    broken: AuditRecord | None = None


def _insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's INSERT, which offers ON CONFLICT on SQLite and PostgreSQL."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _least(a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.case((a < b, a), else_=b)


def _greatest(a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.case((a > b, a), else_=b)


# --- the consent ledger ----------------------------------------------------------------------

_INSERT_CONSENT = sa.insert(consent_events)
_CONSENT_ORDER = (consent_events.c.at, consent_events.c.id)
_LOAD_CONSENT = Prepared(
    sa.select(consent_events)
    .where(consent_events.c.number_hash.in_(sa.bindparam("hashes", expanding=True)))
    .order_by(*_CONSENT_ORDER),
    expanding="hashes",
)
_LEDGER_OF = (
    sa.select(consent_events)
    .where(
        sa.or_(
            consent_events.c.subscriber_id == sa.bindparam("sid"),
            consent_events.c.number_hash == sa.bindparam("hash"),
        )
    )
    .order_by(*_CONSENT_ORDER)
)


def _consent_row(number_hash: str, subscriber_id: int | None, event: ConsentEvent, now: float) -> dict[str, Any]:
    scope, evidence = event.scope, event.evidence
    return {
        "number_hash": number_hash,
        "subscriber_id": subscriber_id,
        "event": event.label,
        "purpose": str(event.purpose) if isinstance(event, (OptIn, OptOut)) else None,
        "scope_kind": str(scope.kind),
        "scope_short_code": scope.short_code,
        "scope_owner": scope.owner,
        "scope_campaign": scope.campaign,
        "at": evidence.at,
        "short_code": evidence.short_code,
        # The keyword is evidence as typed; the column keeps its first 64 characters.
        "keyword": evidence.keyword[:64],
        "mo_id": evidence.mo_id,
        "note": evidence.note,
        "expires_at": event.expires_at if isinstance(event, OptInRequested) else None,
        "recorded_at": now,
    }


def _consent_event(row: Any) -> ConsentEvent:
    # Claims read the ledgers of every recipient: a few scopes recur in all of them.
    scope = Scope.of(row.scope_kind, row.scope_short_code, row.scope_owner, row.scope_campaign)
    evidence = Evidence(row.at, row.short_code, row.keyword, row.mo_id, row.note)
    if row.event == OptIn.label:
        return OptIn(scope, evidence, row.purpose)
    if row.event == OptOut.label:
        return OptOut(scope, evidence, row.purpose)
    if row.event == OptInRequested.label:
        return OptInRequested(scope, evidence, row.expires_at)
    return Confirmed(scope, evidence)


def append_consent(
    conn: sa.Connection, number_hash: str, subscriber_id: int | None, events: Sequence[ConsentEvent], now: float
) -> None:
    """Append events to the ledger of the number whose keyed hash is ``number_hash``."""
    if events:
        conn.execute(_INSERT_CONSENT, [_consent_row(number_hash, subscriber_id, event, now) for event in events])


def load_consent(conn: sa.Connection, number_hashes: Iterable[str]) -> dict[str, ConsentState]:
    """The consent of several numbers in one query; numbers with no event are left out."""
    wanted = sorted(set(number_hashes))
    if not wanted:
        return {}
    ledgers: dict[str, list[ConsentEvent]] = {}
    for row in _LOAD_CONSENT.all(conn, {"hashes": wanted}):
        ledgers.setdefault(row.number_hash, []).append(_consent_event(row))
    return {number_hash: ConsentState.from_events(events) for number_hash, events in ledgers.items()}


# --- declared attributes ---------------------------------------------------------------------

_LOAD_ATTRIBUTES = Prepared(
    sa.select(subscriber_attributes.c.subscriber_id, subscriber_attributes.c.name, subscriber_attributes.c.value).where(
        subscriber_attributes.c.subscriber_id.in_(sa.bindparam("sids", expanding=True))
    ),
    expanding="sids",
)


def _attribute_upsert(dialect: str) -> Any:
    stmt = _insert(dialect, subscriber_attributes).values(
        subscriber_id=sa.bindparam("sid"),
        name=sa.bindparam("name"),
        value=sa.bindparam("value"),
        campaign_id=sa.bindparam("cid"),
        declared_at=sa.bindparam("now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[subscriber_attributes.c.subscriber_id, subscriber_attributes.c.name],
        set_={
            "value": stmt.excluded.value,
            "campaign_id": stmt.excluded.campaign_id,
            "declared_at": stmt.excluded.declared_at,
        },
    )


_DECLARE = {dialect: _attribute_upsert(dialect) for dialect in _DIALECTS}


def load_attributes(conn: sa.Connection, subscriber_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """The declared attributes of several subscribers in one query (those with none left out)."""
    wanted = sorted(set(subscriber_ids))
    if not wanted:
        return {}
    found: dict[int, dict[str, str]] = {}
    for sid, name, value in _LOAD_ATTRIBUTES.all(conn, {"sids": wanted}):
        found.setdefault(sid, {})[name] = value
    return found


def declare_attribute(
    conn: sa.Connection, subscriber_id: int, name: str, value: str, campaign_id: int | None, now: float
) -> None:
    """Set (or replace) one declared attribute of a subscriber."""
    conn.execute(
        _DECLARE[conn.dialect.name],
        {"sid": subscriber_id, "name": name[:64], "value": value[:200], "cid": campaign_id, "now": now},
    )


# --- customer profiles -----------------------------------------------------------------------


def _profile_upsert(dialect: str) -> Any:
    cp = customer_profiles.c
    at = sa.bindparam("at", type_=sa.Float)
    stmt = _insert(dialect, customer_profiles).values(
        subscriber_id=sa.bindparam("sid"),
        first_seen_at=at,
        last_seen_at=at,
        mos=1,
        campaign_mos=sa.bindparam("campaign_mos"),
        updated_at=sa.bindparam("now"),
    )
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[cp.subscriber_id],
        set_={
            "first_seen_at": _least(new.first_seen_at, cp.first_seen_at),
            "last_seen_at": _greatest(new.last_seen_at, cp.last_seen_at),
            "mos": cp.mos + 1,
            "campaign_mos": cp.campaign_mos + new.campaign_mos,
            "updated_at": new.updated_at,
        },
    )


def _participation_upsert(dialect: str) -> Any:
    cc = customer_campaigns.c
    at = sa.bindparam("at", type_=sa.Float)
    stmt = _insert(dialect, customer_campaigns).values(
        subscriber_id=sa.bindparam("sid"), campaign_id=sa.bindparam("cid"), first_at=at, last_at=at, mos=1
    )
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[cc.subscriber_id, cc.campaign_id],
        set_={
            "first_at": _least(new.first_at, cc.first_at),
            "last_at": _greatest(new.last_at, cc.last_at),
            "mos": cc.mos + 1,
        },
    )


# Built once: note_participation runs for every MO, and building an upsert costs more than
# running it.
_NOTE_PROFILE = {dialect: Prepared(_profile_upsert(dialect)) for dialect in _DIALECTS}
_NOTE_CAMPAIGN = {dialect: Prepared(_participation_upsert(dialect)) for dialect in _DIALECTS}


def note_participation(conn: sa.Connection, subscriber_id: int, campaign_id: int | None, at: float, now: float) -> None:
    """Count one MO in the customer profile (and in ``customer_campaigns`` when it reached a campaign)."""
    dialect = conn.dialect.name
    _NOTE_PROFILE[dialect].run(conn, {"sid": subscriber_id, "at": at, "campaign_mos": 0 if campaign_id is None else 1, "now": now})
    if campaign_id is not None:
        _NOTE_CAMPAIGN[dialect].run(conn, {"sid": subscriber_id, "cid": campaign_id, "at": at})


_PROFILE = sa.select(customer_profiles).where(customer_profiles.c.subscriber_id == sa.bindparam("sid"))
_PROFILE_CAMPAIGNS = (
    sa.select(campaigns.c.name, customer_campaigns.c.first_at, customer_campaigns.c.last_at, customer_campaigns.c.mos)
    .join(campaigns, campaigns.c.id == customer_campaigns.c.campaign_id)
    .where(customer_campaigns.c.subscriber_id == sa.bindparam("sid"))
    .order_by(campaigns.c.name)
)


def _mt_counts() -> Any:
    """(MTs received, MTs answered) of subscriber ``sid``.

    An MO answers the latest received MT from its short code created at or before it; the
    "next MT" that ends an MT's window is the next *received* one, since an MT the SMSC
    refused never reached the handset.
    """
    mt = mt_messages.alias("mt")
    later = mt_messages.alias("later")
    mo = mo_messages.alias("mo")
    superseded = sa.exists().where(
        later.c.subscriber_id == mt.c.subscriber_id,
        later.c.source_addr == mt.c.source_addr,
        later.c.status.in_(_RECEIVED),
        sa.or_(later.c.created_at > mt.c.created_at, sa.and_(later.c.created_at == mt.c.created_at, later.c.id > mt.c.id)),
        later.c.created_at <= mo.c.received_at,
    ).correlate(mt, mo)
    answered = sa.exists().where(
        mo.c.subscriber_id == mt.c.subscriber_id,
        mo.c.short_code == mt.c.source_addr,
        mo.c.received_at >= mt.c.created_at,
        ~superseded,
    )
    return sa.select(sa.func.count(), sa.func.count(sa.case((answered, 1)))).where(
        mt.c.subscriber_id == sa.bindparam("sid"), mt.c.status.in_(_RECEIVED)
    )


_MT_COUNTS = _mt_counts()


def customer_profile(conn: sa.Connection, subscriber_id: int, now: float) -> CustomerProfile | None:
    """The subscriber's customer profile with its scores, None when they never took part."""
    params = {"sid": subscriber_id}
    row = conn.execute(_PROFILE, params).first()
    if row is None:
        return None
    joined = {name: (first, last, mos) for name, first, last, mos in conn.execute(_PROFILE_CAMPAIGNS, params)}
    received, responses = conn.execute(_MT_COUNTS, params).one()
    idle_days = (now - row.last_seen_at) / _DAY
    known_days = max(1.0, (now - row.first_seen_at) / _DAY)
    return CustomerProfile(
        subscriber_id=subscriber_id,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        mos=row.mos,
        campaign_mos=row.campaign_mos,
        campaigns=joined,
        attributes=load_attributes(conn, [subscriber_id]).get(subscriber_id, {}),
        mts_received=int(received),
        responses=int(responses),
        recency=min(1.0, max(0.0, 1.0 - idle_days / 365.0)),
        frequency=row.mos / known_days * 30.0,
    )


# --- local profiles and erasure --------------------------------------------------------------

_SID: sa.BindParameter[int] = sa.bindparam("sid", type_=sa.Integer)
_CID: sa.BindParameter[int] = sa.bindparam("cid", type_=sa.Integer)

_LOCAL_CAMPAIGN_IDS = sa.union(
    sa.select(campaign_state.c.campaign_id).where(campaign_state.c.subscriber_id == _SID),
    sa.select(profile_facts.c.campaign_id).where(profile_facts.c.subscriber_id == _SID),
    sa.select(campaign_records.c.campaign_id).where(campaign_records.c.subscriber_id == _SID),
    sa.select(subscriber_attributes.c.campaign_id).where(
        subscriber_attributes.c.subscriber_id == _SID, subscriber_attributes.c.campaign_id.is_not(None)
    ),
    sa.select(alert_subscriptions.c.campaign_id).where(alert_subscriptions.c.subscriber_id == _SID),
    sa.select(customer_campaigns.c.campaign_id).where(customer_campaigns.c.subscriber_id == _SID),
    sa.select(sessions.c.campaign_id).where(sessions.c.subscriber_id == _SID),
)
_LOCAL_CAMPAIGNS = sa.select(campaigns.c.id, campaigns.c.name).where(campaigns.c.id.in_(_LOCAL_CAMPAIGN_IDS))


def local_profile_campaigns(conn: sa.Connection, subscriber_id: int) -> dict[int, str]:
    """The campaigns (id -> name) holding a local profile of the subscriber: module state,
    facts, results, declared attributes, alert subscriptions or participation."""
    return {cid: name for cid, name in conn.execute(_LOCAL_CAMPAIGNS, {"sid": subscriber_id})}


#: What erase_local_profile runs, by the table it reports: each takes ``sid`` and ``cid``.
_ERASE_LOCAL: tuple[tuple[str, sa.Executable], ...] = (
    (
        "campaign_state",
        sa.delete(campaign_state).where(campaign_state.c.subscriber_id == _SID, campaign_state.c.campaign_id == _CID),
    ),
    (
        "profile_facts",
        sa.delete(profile_facts).where(profile_facts.c.subscriber_id == _SID, profile_facts.c.campaign_id == _CID),
    ),
    ("sessions", sa.delete(sessions).where(sessions.c.subscriber_id == _SID, sessions.c.campaign_id == _CID)),
    (
        "alert_subscriptions",
        sa.delete(alert_subscriptions).where(
            alert_subscriptions.c.subscriber_id == _SID, alert_subscriptions.c.campaign_id == _CID
        ),
    ),
    (
        "customer_campaigns",
        sa.delete(customer_campaigns).where(
            customer_campaigns.c.subscriber_id == _SID, customer_campaigns.c.campaign_id == _CID
        ),
    ),
    (
        "subscriber_attributes",
        sa.delete(subscriber_attributes).where(
            subscriber_attributes.c.subscriber_id == _SID, subscriber_attributes.c.campaign_id == _CID
        ),
    ),
    (
        "campaign_records",
        sa.update(campaign_records)
        .where(campaign_records.c.subscriber_id == _SID, campaign_records.c.campaign_id == _CID)
        .values(subscriber_id=None),
    ),
    (
        "coupons",
        sa.update(coupons).where(coupons.c.subscriber_id == _SID, coupons.c.campaign_id == _CID).values(subscriber_id=None),
    ),
)


def erase_local_profile(conn: sa.Connection, subscriber_id: int, campaign_id: int) -> ErasureCounts:
    """Erase what one campaign holds about a subscriber (the subscriber stays).

    Deleted: module state, profile facts, sessions, alert subscriptions, participation in
    ``customer_campaigns``, attributes declared to the campaign. Detached (kept without the
    subscriber): results, so tallies still add up, and claimed coupons, so codes are not
    handed out twice.
    """
    params = {"sid": subscriber_id, "cid": campaign_id}
    return ErasureCounts({table: conn.execute(stmt, params).rowcount for table, stmt in _ERASE_LOCAL})


def _erase_subscriber_statements() -> tuple[tuple[str | None, sa.Executable], ...]:
    """The statements of erase_subscriber before the ledger, in foreign-key order.

    Each takes ``sid`` (and ``msisdn``, the number receipts quote); a None name is not
    counted (it unlinks other subscribers' rows from this one's MOs); a name given twice is
    counted once per statement, added up.

    No statement says ``a OR b`` over two indexed columns: PostgreSQL answers that with a
    scan of the whole table (the ``IN (subquery)`` side keeps it from combining the two
    indexes). Each such statement is two, one per condition; the rows the first one deletes
    or detaches no longer match the second, so together they change and count every row
    once, the same rows as the OR.
    """
    their_mts = sa.select(mt_messages.c.id).where(mt_messages.c.subscriber_id == _SID)
    their_parts = sa.select(mt_parts.c.id).where(mt_parts.c.mt_id.in_(their_mts))
    their_mos = sa.select(mo_messages.c.id).where(mo_messages.c.subscriber_id == _SID)
    return (
        ("send_recipients", sa.delete(send_recipients).where(send_recipients.c.subscriber_id == _SID)),
        ("dlr_events", sa.delete(dlr_events).where(dlr_events.c.mt_part_id.in_(their_parts))),
        ("dlr_events", sa.delete(dlr_events).where(dlr_events.c.recipient == sa.bindparam("msisdn"))),
        ("mt_parts", sa.delete(mt_parts).where(mt_parts.c.mt_id.in_(their_mts))),
        ("mt_messages", sa.delete(mt_messages).where(mt_messages.c.subscriber_id == _SID)),
        (None, sa.update(mt_messages).where(mt_messages.c.in_reply_to.in_(their_mos)).values(in_reply_to=None)),
        ("mo_parts", sa.delete(mo_parts).where(mo_parts.c.subscriber_id == _SID)),
        (None, sa.update(mo_parts).where(mo_parts.c.mo_id.in_(their_mos)).values(mo_id=None)),
        (
            "campaign_records",
            sa.update(campaign_records).where(campaign_records.c.subscriber_id == _SID).values(subscriber_id=None, mo_id=None),
        ),
        (
            "campaign_records",
            sa.update(campaign_records).where(campaign_records.c.mo_id.in_(their_mos)).values(subscriber_id=None, mo_id=None),
        ),
        ("profile_facts", sa.delete(profile_facts).where(profile_facts.c.subscriber_id == _SID)),
        (None, sa.update(profile_facts).where(profile_facts.c.mo_id.in_(their_mos)).values(mo_id=None)),
        ("campaign_state", sa.delete(campaign_state).where(campaign_state.c.subscriber_id == _SID)),
        ("sessions", sa.delete(sessions).where(sessions.c.subscriber_id == _SID)),
        ("coupons", sa.update(coupons).where(coupons.c.subscriber_id == _SID).values(subscriber_id=None)),
        ("alert_subscriptions", sa.delete(alert_subscriptions).where(alert_subscriptions.c.subscriber_id == _SID)),
        ("customer_campaigns", sa.delete(customer_campaigns).where(customer_campaigns.c.subscriber_id == _SID)),
        ("customer_profiles", sa.delete(customer_profiles).where(customer_profiles.c.subscriber_id == _SID)),
        (
            "subscriber_attributes",
            sa.delete(subscriber_attributes).where(subscriber_attributes.c.subscriber_id == _SID),
        ),
        ("mo_messages", sa.delete(mo_messages).where(mo_messages.c.subscriber_id == _SID)),
    )


_ERASE_SUBSCRIBER = _erase_subscriber_statements()
_MSISDN = sa.select(subscribers.c.msisdn).where(subscribers.c.id == _SID)
_KEEP_OPT_OUTS = (
    sa.update(consent_events)
    .where(consent_events.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(subscriber_id=None, number_hash=sa.bindparam("hash"))
)
_DROP_LEDGER = sa.delete(consent_events).where(
    sa.or_(consent_events.c.subscriber_id == _SID, consent_events.c.number_hash == sa.bindparam("hash")),
    consent_events.c.id.not_in(sa.bindparam("keep", expanding=True)),
)
_DELETE_SUBSCRIBER = sa.delete(subscribers).where(subscribers.c.id == _SID)


def _standing_opt_outs(ledger: Sequence[tuple[int, ConsentEvent]]) -> list[int]:
    """The ids of the opt-outs that still decide something: no later STOP or START covers
    their scope (``ledger`` in ledger order)."""
    blocks = [
        (row_id, event)
        for row_id, event in ledger
        if isinstance(event, (OptIn, OptOut)) and event.purpose is ConsentPurpose.ALL
    ]
    return [
        row_id
        for index, (row_id, event) in enumerate(blocks)
        if isinstance(event, OptOut) and not any(later.scope.covers(event.scope) for _, later in blocks[index + 1 :])
    ]


def erase_subscriber(conn: sa.Connection, subscriber_id: int, number_hash: str, *, keep_opt_outs: bool) -> ErasureCounts:
    """Erase everything held about a subscriber, the subscriber row included.

    With ``keep_opt_outs``, the ledger events that keep the number opted out stay (under the
    keyed hash, with ``subscriber_id`` NULL); every other ledger event goes.
    """
    params = {"sid": subscriber_id, "msisdn": conn.execute(_MSISDN, {"sid": subscriber_id}).scalar(), "hash": number_hash}
    rows: dict[str, int] = {}
    for table, stmt in _ERASE_SUBSCRIBER:
        count = conn.execute(stmt, params).rowcount
        if table is not None:
            rows[table] = rows.get(table, 0) + count
    keep: list[int] = []
    if keep_opt_outs:
        ledger = [(row.id, _consent_event(row)) for row in conn.execute(_LEDGER_OF, params)]
        keep = _standing_opt_outs(ledger)
        if keep:
            conn.execute(_KEEP_OPT_OUTS, {"ids": keep, "hash": number_hash})
    rows["consent_events"] = conn.execute(_DROP_LEDGER, {**params, "keep": keep}).rowcount
    rows["subscribers"] = conn.execute(_DELETE_SUBSCRIBER, params).rowcount
    return ErasureCounts(rows, kept_opt_outs=len(keep))


#: The subscribers idle by their customer profile's last MO, oldest first: an index range of
#: ix_customer_profiles_last_seen_at (in SQLite the index holds the subscriber id too, so the
#: ORDER BY needs no sort).
_IDLE_PROFILED = (
    sa.select(customer_profiles.c.last_seen_at, subscribers.c.id, subscribers.c.msisdn)
    .select_from(customer_profiles.join(subscribers, subscribers.c.id == customer_profiles.c.subscriber_id))
    .where(customer_profiles.c.last_seen_at <= sa.bindparam("cutoff"))
    .order_by(customer_profiles.c.last_seen_at, customer_profiles.c.subscriber_id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
#: The subscribers without a customer profile (never an MO processed) created at or before
#: the cutoff, oldest first. Without an index on subscribers.created_at this reads the whole
#: subscribers table; ``upto`` (the last key the profiled half returned, or the cutoff) at
#: least keeps the sort to the rows that can still make the list.
_IDLE_UNPROFILED = (
    sa.select(subscribers.c.created_at, subscribers.c.id, subscribers.c.msisdn)
    .where(
        subscribers.c.created_at <= sa.bindparam("upto"),
        ~sa.exists().where(customer_profiles.c.subscriber_id == subscribers.c.id),
    )
    .order_by(subscribers.c.created_at, subscribers.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)


def idle_subscribers(conn: sa.Connection, cutoff: float, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` subscribers (id, E.164 number) whose last MO (or creation, if they
    never sent one) is at or before ``cutoff``, oldest first."""
    # One query over subscribers LEFT JOIN customer_profiles, ordered by coalesce(last MO,
    # creation), can use no index: it reads both tables whole and sorts. Asked as two
    # queries, each in (time, id) order, and merged here in that order (ties by id, as one
    # ORDER BY time, id would), the subscribers with a profile come from an index range.
    params = {"cutoff": cutoff, "limit": limit}
    profiled = [tuple(row) for row in conn.execute(_IDLE_PROFILED, params)]
    upto = cutoff
    if 0 < limit <= len(profiled):
        # Only a subscriber no later than the last one already found can still make the list.
        upto = min(cutoff, profiled[-1][0])
    unprofiled = [tuple(row) for row in conn.execute(_IDLE_UNPROFILED, {"upto": upto, "limit": limit})]
    merged = list(heapq.merge(profiled, unprofiled, key=lambda row: (row[0], row[1])))
    if limit >= 0:
        merged = merged[:limit]
    return [(sid, msisdn) for _, sid, msisdn in merged]


# --- export ----------------------------------------------------------------------------------

_EXPORT_SUBSCRIBER = sa.select(subscribers.c.msisdn, subscribers.c.created_at).where(subscribers.c.id == _SID)
_EXPORT_ATTRIBUTES = (
    sa.select(
        subscriber_attributes.c.name,
        subscriber_attributes.c.value,
        campaigns.c.name.label("campaign"),
        subscriber_attributes.c.declared_at,
    )
    .select_from(subscriber_attributes.outerjoin(campaigns, campaigns.c.id == subscriber_attributes.c.campaign_id))
    .where(subscriber_attributes.c.subscriber_id == _SID)
    .order_by(subscriber_attributes.c.name)
)
_EXPORT_MOS = (
    sa.select(
        mo_messages.c.id,
        mo_messages.c.short_code,
        mo_messages.c.text,
        mo_messages.c.received_at,
        mo_messages.c.route,
        campaigns.c.name.label("campaign"),
    )
    .select_from(mo_messages.outerjoin(campaigns, campaigns.c.id == mo_messages.c.campaign_id))
    .where(mo_messages.c.subscriber_id == _SID)
    .order_by(mo_messages.c.received_at, mo_messages.c.id)
)
_EXPORT_MTS = (
    sa.select(
        mt_messages.c.id,
        mt_messages.c.source_addr,
        mt_messages.c.text,
        mt_messages.c.status,
        mt_messages.c.kind,
        mt_messages.c.campaign,
        mt_messages.c.created_at,
    )
    .where(mt_messages.c.subscriber_id == _SID)
    .order_by(mt_messages.c.created_at, mt_messages.c.id)
)
_EXPORT_STATE = (
    sa.select(campaigns.c.name, campaign_state.c.state)
    .join(campaigns, campaigns.c.id == campaign_state.c.campaign_id)
    .where(campaign_state.c.subscriber_id == _SID)
)
_EXPORT_FACTS = (
    sa.select(campaigns.c.name, profile_facts.c.object, profile_facts.c.attitude, profile_facts.c.recorded_at)
    .join(campaigns, campaigns.c.id == profile_facts.c.campaign_id)
    .where(profile_facts.c.subscriber_id == _SID)
    .order_by(profile_facts.c.recorded_at, profile_facts.c.id)
)
_EXPORT_RECORDS = (
    sa.select(
        campaigns.c.name,
        campaign_records.c.kind,
        campaign_records.c.key,
        campaign_records.c.value,
        campaign_records.c.recorded_at,
        campaign_records.c.withdrawn,
    )
    .join(campaigns, campaigns.c.id == campaign_records.c.campaign_id)
    .where(campaign_records.c.subscriber_id == _SID)
    .order_by(campaign_records.c.recorded_at, campaign_records.c.id)
)
_EXPORT_COUPONS = (
    sa.select(campaigns.c.name, coupons.c.code, coupons.c.claimed_at, coupons.c.redeemed_at)
    .join(campaigns, campaigns.c.id == coupons.c.campaign_id)
    .where(coupons.c.subscriber_id == _SID)
    .order_by(coupons.c.id)
)
_EXPORT_ALERTS = (
    sa.select(campaigns.c.name, alert_subscriptions.c.topic)
    .join(campaigns, campaigns.c.id == alert_subscriptions.c.campaign_id)
    .where(alert_subscriptions.c.subscriber_id == _SID)
    .order_by(alert_subscriptions.c.topic)
)


def _profile_dict(profile: CustomerProfile) -> dict[str, Any]:
    """The profile's fields, its (first, last, MOs) spans as lists as JSON would have them."""
    data = attrs.asdict(profile)
    data["campaigns"] = {name: list(span) for name, span in profile.campaigns.items()}
    return data


def export_subscriber(conn: sa.Connection, subscriber_id: int, number_hash: str, now: float) -> dict[str, Any]:
    """Everything held about one subscriber, as JSON-compatible values (portability)."""
    params = {"sid": subscriber_id, "hash": number_hash}
    person = conn.execute(_EXPORT_SUBSCRIBER, params).first()
    profile = customer_profile(conn, subscriber_id, now)

    held: dict[str, dict[str, Any]] = {}

    def campaign(name: str) -> dict[str, Any]:
        return held.setdefault(name, {"state": None, "facts": [], "records": [], "coupons": [], "alerts": []})

    for name, state in conn.execute(_EXPORT_STATE, params):
        campaign(name)["state"] = json.loads(state)
    for name, object_, attitude, recorded_at in conn.execute(_EXPORT_FACTS, params):
        campaign(name)["facts"].append({"object": object_, "attitude": attitude, "recorded_at": recorded_at})
    for name, kind, key, value, recorded_at, withdrawn in conn.execute(_EXPORT_RECORDS, params):
        campaign(name)["records"].append(
            {"kind": kind, "key": key, "value": value, "recorded_at": recorded_at, "withdrawn": bool(withdrawn)}
        )
    for name, code, claimed_at, redeemed_at in conn.execute(_EXPORT_COUPONS, params):
        campaign(name)["coupons"].append({"code": code, "claimed_at": claimed_at, "redeemed_at": redeemed_at})
    for name, topic in conn.execute(_EXPORT_ALERTS, params):
        campaign(name)["alerts"].append(topic)

    return {
        "subscriber": None if person is None else {"msisdn": person.msisdn, "created_at": person.created_at},
        "customer_profile": None if profile is None else _profile_dict(profile),
        "attributes": {
            row.name: {"value": row.value, "campaign": row.campaign, "declared_at": row.declared_at}
            for row in conn.execute(_EXPORT_ATTRIBUTES, params)
        },
        "consent": [event_to_dict(_consent_event(row)) for row in conn.execute(_LEDGER_OF, params)],
        "messages_received": [dict(row._mapping) for row in conn.execute(_EXPORT_MOS, params)],
        "messages_sent": [dict(row._mapping) for row in conn.execute(_EXPORT_MTS, params)],
        "campaigns": {name: held[name] for name in sorted(held)},
        "audit": [record.to_dict() for _, record, _ in audit_entries(conn, subject=subject_ref(subscriber_id))],
        "exported_at": now,
    }


# --- the audit log ---------------------------------------------------------------------------

_AUDIT_FIELDS = tuple(field.name for field in attrs.fields(AuditRecord))
_AUDIT_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)").bindparams(sa.bindparam("key", type_=sa.BigInteger))
_LAST_DIGEST = sa.select(audit_log.c.digest).order_by(audit_log.c.id.desc()).limit(1)
_INSERT_AUDIT = sa.insert(audit_log)
_AUDIT_ROWS = sa.select(audit_log).order_by(audit_log.c.id).execution_options(yield_per=1000)
_AUDIT_ROWS_OF = _AUDIT_ROWS.where(audit_log.c.subject == sa.bindparam("subject"))


def _stored(record: AuditRecord) -> AuditRecord:
    """The record as its row can hold it: text cut to the column lengths, so the digest
    covers exactly what is stored."""
    cut: dict[str, str] = {}
    for name in _AUDIT_FIELDS:
        length = getattr(audit_log.c[name].type, "length", None)
        value = getattr(record, name)
        if length is not None and isinstance(value, str) and len(value) > length:
            cut[name] = value[:length]
    return attrs.evolve(record, **cut) if cut else record


def _audit_record(row: Any) -> AuditRecord:
    return AuditRecord(**{name: getattr(row, name) for name in _AUDIT_FIELDS})


def append_audit(conn: sa.Connection, records: Sequence[AuditRecord]) -> None:
    """Append records to the hash-chained audit log, in order."""
    if not records:
        return
    if conn.dialect.name == "postgresql":
        # Another node's append waits here until this transaction ends, then reads its digest.
        conn.execute(_AUDIT_LOCK, {"key": _AUDIT_LOCK_KEY})
    previous = conn.execute(_LAST_DIGEST).scalar() or GENESIS
    rows = []
    for record in records:
        stored = _stored(record)
        previous = chain_digest(previous, stored)
        rows.append({**stored.to_dict(), "kind": str(stored.kind), "digest": previous})
    conn.execute(_INSERT_AUDIT, rows)


def audit_entries(conn: sa.Connection, *, subject: str | None = None) -> Iterator[tuple[int, AuditRecord, str]]:
    """The audit log in id order as (id, record, digest); only ``subject``'s when given."""
    result = conn.execute(_AUDIT_ROWS) if subject is None else conn.execute(_AUDIT_ROWS_OF, {"subject": subject})
    # Rows stream from a server-side cursor on PostgreSQL; a reader that stops early must not
    # leave it open.
    try:
        for row in result:
            yield row.id, _audit_record(row), row.digest
    finally:
        result.close()


def verify_audit(conn: sa.Connection) -> AuditCheck:
    """Check the whole chain; name the first entry that was changed, inserted or removed.

    Reading stops at the first broken entry, which ``entries`` counts. An entry whose row no
    longer makes a valid record (an unknown kind) is broken, with ``broken`` None.
    """
    previous = GENESIS
    entries = 0
    with conn.execute(_AUDIT_ROWS) as result:
        for row in result:
            entries += 1
            try:
                record: AuditRecord | None = _audit_record(row)
            except (TypeError, ValueError):
                record = None
            if record is None or chain_digest(previous, record) != row.digest:
                return AuditCheck(entries, row.id, record)
            previous = row.digest
    return AuditCheck(entries)
