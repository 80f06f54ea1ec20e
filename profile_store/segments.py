"""Segments: who an outbound send goes to, selected in the database, and materialised once
into the outbox.

A :class:`Segment` is a set of criteria over the customer profile, the declared attributes,
campaign participation, alert subscriptions and the consent ledger. :func:`materialise_send`
evaluates it with INSERT ... SELECT statements (never a Python loop over subscribers): every
selected subscriber gets a ``send_recipients`` row, queued or suppressed with the reason,
and every queued one an ``mt_messages`` row (kind "marketing", the send's priority) with its
``mt_parts``. The consent is checked once more, exactly, when each MT is claimed.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs
import sqlalchemy as sa

from profile_store.schema import (
    alert_subscriptions,
    campaigns,
    consent_events,
    customer_campaigns,
    customer_profiles,
    mt_messages,
    mt_parts,
    send_recipients,
    sends,
    subscriber_attributes,
    subscribers,
)

__all__ = ["MaterialiseResult", "Segment", "SendTarget", "count_segment", "materialise_send", "tally_send"]


def _tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[union-attr]


def _attribute_map(value: Mapping[str, object] | None) -> Mapping[str, tuple[str, ...]]:
    return {str(k): _tuple(v) for k, v in (value or {}).items()}


@attrs.frozen
class Segment:
    """The criteria of a segment; all of them must hold (an empty segment is everyone).

    Attributes:
        opted_in: only subscribers with a marketing opt-in (or a confirmed one) covering the
            campaign, not withdrawn by a later opt-out covering it.
        alerts_topic: only subscribers of this alert topic of the campaign ("" for any topic
            of the campaign; None: no such criterion).
        took_part_in: campaign names: took part in at least one of them.
        not_in: campaign names: took part in none of them.
        last_seen_within_days: sent an MO within this many days of the send.
        attributes: declared attribute -> accepted values (``{"age_band": ("18-24",)}``).
        attribute_prefixes: declared attribute -> accepted prefixes (``{"postcode": ("104",)}``).
    """

    opted_in: bool = True
    alerts_topic: str | None = None
    took_part_in: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    not_in: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    last_seen_within_days: int | None = None
    attributes: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_attribute_map)
    attribute_prefixes: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_attribute_map)

    def categories(self) -> tuple[str, ...]:
        """The policy categories reading this segment needs (``contact`` always: the send uses the number)."""
        used = ["contact"]
        if self.alerts_topic is not None or self.took_part_in or self.not_in:
            used.append("participation")
        if self.last_seen_within_days is not None:
            used.append("profile")
        if self.attributes or self.attribute_prefixes:
            used.append("declared")
        return tuple(used)

    def attributes_used(self) -> tuple[str, ...]:
        """The declared attributes the segment reads, sorted."""
        return tuple(sorted({*self.attributes, *self.attribute_prefixes}))


@attrs.frozen
class SendTarget:
    """What :func:`materialise_send` needs besides the segment."""

    send_id: int
    #: The campaign the send belongs to: its name (``mt_messages.campaign``), owner and short code.
    campaign: str
    owner: str
    short_code: str
    #: The message and how many submit_sm it takes (every recipient gets the same text).
    text: str
    parts_total: int
    #: Outbox priority: larger goes later; replies to MOs are 0.
    priority: int = 10
    now: float = 0.0


@attrs.frozen
class MaterialiseResult:
    """What a materialisation wrote."""

    targeted: int
    queued: int
    #: reason -> count ("opted_out", "no_consent").
    suppressed: Mapping[str, int]


# --- the criteria --------------------------------------------------------------------------------

_DAY = 86400.0

_s = subscribers.c


def _constant(value: str) -> sa.ColumnElement[str]:
    """A string written into the SQL: a constant needs no parameter."""
    return sa.literal_column(f"'{value}'", sa.String)


def _took_part(names: tuple[str, ...]) -> sa.ColumnElement[bool]:
    """The subscriber took part in at least one of the named campaigns."""
    cc = customer_campaigns.alias("cc")
    named = sa.select(campaigns.c.id).where(campaigns.c.name.in_(names))
    return sa.exists().where(cc.c.subscriber_id == _s.id, cc.c.campaign_id.in_(named))


def _declared(name: str, matches: Callable[[sa.ColumnElement[str]], sa.ColumnElement[bool]]) -> sa.ColumnElement[bool]:
    """The subscriber declared attribute ``name`` with a value that ``matches``."""
    a = subscriber_attributes.alias("attr")
    return sa.exists().where(a.c.subscriber_id == _s.id, a.c.name == name, matches(a.c.value))


def _any_prefix(prefixes: tuple[str, ...]) -> Callable[[sa.ColumnElement[str]], sa.ColumnElement[bool]]:
    """The value starts with one of ``prefixes``."""
    # substr, not LIKE: SQLite's LIKE ignores ASCII case where PostgreSQL's does not, and a
    # prefix holding % or _ needs no escaping.
    return lambda value: sa.or_(*(sa.func.substr(value, 1, len(prefix)) == prefix for prefix in prefixes))


def _criteria(segment: Segment, target: SendTarget, among: sa.Select[Any] | None) -> list[sa.ColumnElement[bool]]:
    """The segment's criteria (consent aside) as conditions on ``subscribers``."""
    where: list[sa.ColumnElement[bool]] = []
    if among is not None:
        where.append(_s.id.in_(among))
    if segment.alerts_topic is not None:
        a = alert_subscriptions.alias("alerts")
        campaign_id = sa.select(campaigns.c.id).where(campaigns.c.name == target.campaign).scalar_subquery()
        subscribed = sa.exists().where(a.c.subscriber_id == _s.id, a.c.campaign_id == campaign_id)
        if segment.alerts_topic:
            subscribed = subscribed.where(a.c.topic == segment.alerts_topic)
        where.append(subscribed)
    if segment.took_part_in:
        where.append(_took_part(segment.took_part_in))
    if segment.not_in:
        where.append(~_took_part(segment.not_in))
    if segment.last_seen_within_days is not None:
        p = customer_profiles.alias("profile")
        cutoff = target.now - segment.last_seen_within_days * _DAY
        where.append(sa.exists().where(p.c.subscriber_id == _s.id, p.c.last_seen_at >= cutoff))
    for name, values in segment.attributes.items():
        where.append(_declared(name, lambda value, values=values: value.in_(values)) if values else sa.false())
    for name, prefixes in segment.attribute_prefixes.items():
        where.append(_declared(name, _any_prefix(prefixes)) if prefixes else sa.false())
    return where


# --- consent ---------------------------------------------------------------------------------------
#
# The SQL form of permissions.consent.ConsentState for one campaign, over the ledger rows of
# the subscriber (consent_events.subscriber_id; rows of erased numbers have none). Events are
# ordered by (at, id), as the ledger is loaded. "The latest event of a kind is X" is written
# "some X exists with no later event of the other kind", which needs no aggregate. A stored
# confirmation counts as a grant: the ledger only records one that answered a pending request.

# The parameters of a send (see _params), shared by the consent and the statements below.
_CAMPAIGN = sa.bindparam("b_campaign", type_=sa.String)
_OWNER = sa.bindparam("b_owner", type_=sa.String)
_SHORT_CODE = sa.bindparam("b_short_code", type_=sa.String)
_SEND_ID = sa.bindparam("b_send_id", type_=sa.Integer)
_NOW = sa.bindparam("b_now", type_=sa.Float)


def _covers(e: sa.Alias) -> sa.ColumnElement[bool]:
    """The event's scope covers the campaign (permissions.consent.Scope.covers)."""
    kind = e.c.scope_kind
    return sa.or_(
        kind == _constant("all"),
        sa.and_(kind == _constant("short_code"), e.c.scope_short_code == _SHORT_CODE),
        sa.and_(kind == _constant("owner"), e.c.scope_owner == _OWNER),
        sa.and_(kind == _constant("campaign"), e.c.scope_campaign == _CAMPAIGN),
    )


def _later(a: sa.Alias, b: sa.Alias) -> sa.ColumnElement[bool]:
    """Event ``a`` comes after event ``b`` in the ledger."""
    return sa.or_(a.c.at > b.c.at, sa.and_(a.c.at == b.c.at, a.c.id > b.c.id))


def _events(name: str, event: str, purpose: str | None = None) -> tuple[sa.Alias, list[sa.ColumnElement[bool]]]:
    """Ledger rows of one kind and purpose covering the campaign: the alias and its conditions."""
    e = consent_events.alias(name)
    where = [e.c.event == _constant(event), _covers(e)]
    if purpose is not None:
        where.append(e.c.purpose == _constant(purpose))
    return e, where


def _opted_out() -> sa.ColumnElement[bool]:
    """The latest STOP or START covering the campaign is a STOP."""
    stop, stop_where = _events("stops", "opt_out", "all")
    start, start_where = _events("starts", "opt_in", "all")
    lifted = sa.exists().where(start.c.subscriber_id == stop.c.subscriber_id, *start_where, _later(start, stop))
    return sa.exists().where(stop.c.subscriber_id == _s.id, *stop_where, ~lifted)


def _consented() -> sa.ColumnElement[bool]:
    """The latest marketing step covering the campaign grants: an opt-in for marketing or a
    confirmation, with no marketing opt-out covering it after."""
    grant = consent_events.alias("granted")
    granting = sa.or_(
        sa.and_(grant.c.event == _constant("opt_in"), grant.c.purpose == _constant("marketing")),
        grant.c.event == _constant("confirmed"),
    )
    withdraw, withdraw_where = _events("withdrawals", "opt_out", "marketing")
    withdrawn = sa.exists().where(withdraw.c.subscriber_id == grant.c.subscriber_id, *withdraw_where, _later(withdraw, grant))
    return sa.exists().where(grant.c.subscriber_id == _s.id, granting, _covers(grant), ~withdrawn)


#: Why a selected subscriber is suppressed (NULL: queued), with and without the opt-in criterion.
_REASON: dict[bool, sa.ColumnElement[str]] = {
    True: sa.case((_opted_out(), _constant("opted_out")), (~_consented(), _constant("no_consent")), else_=sa.null()),
    False: sa.case((_opted_out(), _constant("opted_out")), else_=sa.null()),
}

# --- the statements ------------------------------------------------------------------------------
#
# MTs and parts are written for the recipients this call records, never by looking for
# recipients or MTs without one: a NOT EXISTS over the table being inserted into can be run by
# PostgreSQL as a sequential scan per row of a table growing under it. The recipients, their
# MTs and the parts are written in one transaction, so a recipient recorded earlier has its MT.
# On PostgreSQL the three inserts are one statement (data-modifying CTEs, each feeding the next
# from its RETURNING); on SQLite, which has no such CTEs, three statements, each reading the
# rows the one before inserted: those beyond the largest rowid seen before it (SQLite gives a
# new row the largest rowid plus one, and has one writer at a time). A rowid range is also
# the cheapest way to read them.

_r, _m = send_recipients.c, mt_messages.c

_RECORDED = sa.exists().where(_r.send_id == _SEND_ID, _r.subscriber_id == _s.id)
_RECIPIENT_COLUMNS = ["send_id", "subscriber_id", "status", "reason"]
_PART_COLUMNS = ["mt_id", "part_index", "status", "uncertain"]


def _recipient_rows(segment: Segment, target: SendTarget, among: sa.Select[Any] | None) -> sa.Select[Any]:
    """A row of ``send_recipients`` per selected subscriber the send has not recorded, by id."""
    # The reason is computed once per subscriber in a materialised CTE, then the status from
    # it: inlined, each of the two CASEs would run the ledger probes again. Rows go in by
    # subscriber id, so every index grows at its end.
    selected = (
        sa.select(_s.id.label("subscriber_id"), _REASON[segment.opted_in].label("reason"))
        .where(*_criteria(segment, target, among), ~_RECORDED)
        .order_by(_s.id)
        .cte("selected")
        .prefix_with("MATERIALIZED")
    )
    status = sa.case((selected.c.reason.is_(None), _constant("queued")), else_=_constant("suppressed"))
    return sa.select(_SEND_ID, selected.c.subscriber_id, status, selected.c.reason)


def _mt_rows(dialect: str, subscriber_id: sa.ColumnElement[int]) -> tuple[list[str], list[sa.ColumnElement[Any]]]:
    """The columns of a queued marketing MT of the send to ``subscriber_id``, as enqueue_mt writes them."""
    if dialect == "postgresql":
        concat_ref: sa.ColumnElement[int] = sa.cast(sa.func.floor(sa.func.random() * 256), sa.Integer)
    else:
        concat_ref = sa.func.random().op("&")(255)
    columns: dict[str, sa.ColumnElement[Any]] = {
        "subscriber_id": subscriber_id,
        "source_addr": _SHORT_CODE,
        "text": sa.bindparam("b_text", type_=sa.Text),
        "concat_ref": concat_ref,
        "parts_total": sa.bindparam("b_parts", type_=sa.Integer),
        "priority": sa.bindparam("b_priority", type_=sa.Integer),
        "registered_delivery": sa.true(),
        "status": _constant("queued"),
        "attempts": sa.literal_column("0", sa.Integer),
        "next_attempt_at": _NOW,
        "campaign": _CAMPAIGN,
        "created_at": _NOW,
        "updated_at": _NOW,
        "kind": _constant("marketing"),
        "send_id": _SEND_ID,
    }
    return list(columns), list(columns.values())


def _part_numbers() -> sa.CTE:
    """1 .. the send's parts_total."""
    numbers = sa.select(sa.literal_column("1", sa.Integer).label("n")).cte("part_numbers", recursive=True)
    return numbers.union_all(sa.select(numbers.c.n + 1).where(numbers.c.n < sa.bindparam("b_parts", type_=sa.Integer)))


def _part_rows(mt_id: sa.ColumnElement[int], parts_total: sa.ColumnElement[int]) -> sa.Select[Any]:
    """A pending part row per part of each MT."""
    numbers = _part_numbers()
    return sa.select(mt_id, numbers.c.n, _constant("pending"), sa.false()).join(numbers, numbers.c.n <= parts_total)


def _write_postgresql(segment: Segment, target: SendTarget, among: sa.Select[Any] | None) -> sa.Executable:
    """The recipients, their MTs and the parts, in one statement."""
    recorded = (
        sa.insert(send_recipients)
        .from_select(_RECIPIENT_COLUMNS, _recipient_rows(segment, target, among))
        .returning(_r.subscriber_id, _r.status)
        .cte("recorded")
    )
    names, values = _mt_rows("postgresql", recorded.c.subscriber_id)
    mts = sa.select(*values).where(recorded.c.status == _constant("queued")).order_by(recorded.c.subscriber_id)
    queued = sa.insert(mt_messages).from_select(names, mts).returning(_m.id, _m.parts_total).cte("queued")
    return sa.insert(mt_parts).from_select(_PART_COLUMNS, _part_rows(queued.c.id, queued.c.parts_total))


_ROWID = sa.literal_column("send_recipients.rowid", sa.Integer)
_AFTER = sa.bindparam("b_after", type_=sa.Integer)
_LAST_RECIPIENT = sa.select(sa.func.coalesce(sa.func.max(_ROWID), 0)).select_from(send_recipients)
_LAST_MT = sa.select(sa.func.coalesce(sa.func.max(_m.id), 0))


def _insert_sqlite_mts() -> sa.Executable:
    """An MT per queued recipient beyond rowid ``b_after``."""
    names, values = _mt_rows("sqlite", _r.subscriber_id)
    mts = sa.select(*values).where(_ROWID > _AFTER, _r.status == _constant("queued")).order_by(_ROWID)
    return sa.insert(mt_messages).from_select(names, mts)


_INSERT_SQLITE_MTS = _insert_sqlite_mts()
_INSERT_SQLITE_PARTS = sa.insert(mt_parts).from_select(
    _PART_COLUMNS, _part_rows(_m.id, _m.parts_total).where(_m.id > _AFTER)
)


def _write_sqlite(
    conn: sa.Connection, segment: Segment, target: SendTarget, among: sa.Select[Any] | None, params: dict[str, Any]
) -> None:
    """The recipients, then the MTs of those inserted, then the parts of those MTs."""
    last_recipient = conn.execute(_LAST_RECIPIENT).scalar_one()
    recipients = _recipient_rows(segment, target, among)
    conn.execute(sa.insert(send_recipients).from_select(_RECIPIENT_COLUMNS, recipients), params)
    last_mt = conn.execute(_LAST_MT).scalar_one()
    conn.execute(_INSERT_SQLITE_MTS, {**params, "b_after": last_recipient})
    conn.execute(_INSERT_SQLITE_PARTS, {**params, "b_after": last_mt})


_TARGETED = sa.select(sa.func.count()).where(_r.send_id == _SEND_ID).scalar_subquery()
_UPDATE_TARGETED = sa.update(sends).where(sends.c.id == _SEND_ID).values(targeted=_TARGETED)
_OUTCOMES = (
    sa.select(_r.status, _r.reason, sa.func.count())
    .where(_r.send_id == _SEND_ID)
    .group_by(_r.status, _r.reason)
    .order_by(_r.status, _r.reason)
)


def _params(target: SendTarget) -> dict[str, Any]:
    """The parameters every statement of a send takes."""
    return {
        "b_send_id": target.send_id,
        "b_campaign": target.campaign,
        "b_owner": target.owner,
        "b_short_code": target.short_code,
        "b_text": target.text,
        "b_parts": target.parts_total,
        "b_priority": target.priority,
        "b_now": target.now,
    }


def count_segment(conn: sa.Connection, segment: Segment, target: SendTarget, among: sa.Select[Any] | None = None) -> int:
    """How many subscribers the segment selects now (consent aside), without writing anything.

    ``among``: as for :func:`materialise_send`.
    """
    stmt = sa.select(sa.func.count()).select_from(subscribers).where(*_criteria(segment, target, among))
    return int(conn.execute(stmt).scalar_one())


def materialise_send(
    conn: sa.Connection, segment: Segment, target: SendTarget, among: sa.Select[Any] | None = None, *, tally: bool = True
) -> MaterialiseResult | None:
    """Select the segment and write its recipients and their MTs, in the caller's transaction.

    ``among``, when given, is a SELECT of one column of subscriber ids: only those can be
    selected (a send-again's non-responders of the previous send).

    Idempotent per send: recipients already written for ``target.send_id`` are not written
    again (a crash between units, or two nodes, never queue a recipient twice).

    Writes, in order: a ``send_recipients`` row per selected subscriber not yet recorded
    (queued, or suppressed as "opted_out" or "no_consent"); a queued marketing MT per queued
    recipient it recorded, with its ``pending`` part rows; ``sends.targeted``. The result
    counts every recipient of the send, from this call and earlier ones (:func:`tally_send`);
    with ``tally`` false nothing is counted and None is returned, for a send materialised in
    many units that is counted once at the end.

    Raises:
        ValueError: ``target.parts_total`` is not 1 to 255.
    """
    if not 1 <= target.parts_total <= 255:
        raise ValueError(f"an MT takes 1 to 255 parts, got {target.parts_total}")
    params = _params(target)
    if conn.dialect.name == "postgresql":
        conn.execute(_write_postgresql(segment, target, among), params)
    else:
        _write_sqlite(conn, segment, target, among, params)
    return tally_send(conn, target.send_id) if tally else None


def tally_send(conn: sa.Connection, send_id: int) -> MaterialiseResult:
    """Count a send's recipients (queued, suppressed by reason) and record ``sends.targeted``."""
    params = {"b_send_id": send_id}
    conn.execute(_UPDATE_TARGETED, params)
    queued = 0
    suppressed: dict[str, int] = {}
    for status, reason, count in conn.execute(_OUTCOMES, params):
        if status == "queued":
            queued += count
        else:
            suppressed[reason or ""] = suppressed.get(reason or "", 0) + count
    return MaterialiseResult(targeted=queued + sum(suppressed.values()), queued=queued, suppressed=suppressed)
