"""Queries rewritten so that the database can use its indexes: the rows are those of the
plain query they replace, and SQLite's plan (no ANALYZE, as the daemon runs it) reads an
index range, not the whole table.

* the caps of :func:`gatewayd.privacy._pace` (``status NOT IN`` the unsent statuses);
* :func:`profile_store.privacy.erase_subscriber` (no ``OR`` across two indexed columns, which
  PostgreSQL answers with a sequential scan);
* :func:`profile_store.privacy.idle_subscribers` (profiled and unprofiled subscribers asked
  apart and merged, so the profiled ones come from ix_customer_profiles_last_seen_at);
* :func:`gatewayd.outbound._id_bounds` (min and max as two subqueries);
* a send-again's unit (:func:`gatewayd.outbound._materialise_unit`): the parent send is read
  for the unit's range of subscriber ids only.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd import outbound
from gatewayd import privacy as gprivacy
from gatewayd.quiet_hours import Caps, QuietHours
from profile_store import privacy as p
from profile_store.db import make_engine
from profile_store.mt_values import ClaimedMt
from profile_store.schema import (
    MT_STATUSES,
    campaign_records,
    customer_profiles,
    dlr_events,
    metadata,
    mt_messages,
    mt_parts,
    sends,
    send_recipients,
    subscribers,
)
from profile_store.segments import Segment, SendTarget, materialise_send
from profile_store.sends import ensure_sends, recipients_for_send_again
from tests.profile_store.test_privacy import DAY, HASH_A, T0, VOTE, _subscriber_world, add_mo, add_mt, insert, setup

# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty SQLite database made as the daemon makes it (no ANALYZE statistics)."""
    e = make_engine(f"sqlite:///{tmp_path / 'plans.db'}")
    metadata.create_all(e)
    yield e
    e.dispose()


@contextlib.contextmanager
def rolled_back(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that is rolled back afterwards (one Hypothesis example)."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        finally:
            trans.rollback()


def statements(conn: sa.Connection, run: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The SQL statements (and parameters) ``run`` executes on ``conn``, as the driver gets them."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(conn, "before_cursor_execute", record)
    try:
        run()
    finally:
        sa.event.remove(conn, "before_cursor_execute", record)
    return seen


def sqlite_plan(conn: sa.Connection, statement: str, parameters: Any) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of a statement, one line per step."""
    return [str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]


def scans(plan: list[str], *tables: str) -> list[str]:
    """The steps of ``plan`` that read one of ``tables`` whole, or sort in a temporary B-tree."""
    return [
        line
        for line in plan
        if "TEMP B-TREE" in line or any(line.strip().startswith(f"SCAN {table}") for table in tables)
    ]


def subscriber(conn: sa.Connection, n: int, created_at: float) -> int:
    return insert(conn, subscribers, msisdn=f"+3069{n:08d}", created_at=created_at, last_seen_at=created_at)


# --- 1. caps: the sent MTs ---------------------------------------------------------------


def test_the_unsent_statuses_are_the_complement_of_the_sent_ones() -> None:
    assert set(gprivacy._SENT) <= set(MT_STATUSES)
    assert set(gprivacy._NOT_SENT) == set(MT_STATUSES) - set(gprivacy._SENT)
    assert set(gprivacy._NOT_SENT) == {"queued", "failed", "cancelled"}


def _claimed(mt_id: int, sid: int) -> ClaimedMt:
    return ClaimedMt(
        id=mt_id,
        msisdn=f"+3069{sid:08d}",
        source_addr="4160",
        smsc=None,
        text="Offer",
        data_coding=None,
        concat_ref=1,
        parts_total=1,
        registered_delivery=True,
        priority=10,
        attempts=0,
        pending_parts=(1,),
        claim_expires_at=T0 + 60,
        kind="marketing",
        campaign="vote",
        subscriber_id=sid,
    )


def test_caps_count_exactly_the_sent_marketing_mts(engine: sa.Engine) -> None:
    """With one marketing MT a day allowed, an earlier marketing MT of the day counts when it
    was sent (sending, submitted, delivered, undelivered, expired), not when it is queued,
    failed or cancelled; an earlier response, or one older than a week, never counts."""
    rules = gprivacy.DeliveryRules(window=QuietHours.parse("00:00-00:00"), caps=Caps(per_day=1))
    with rolled_back(engine) as conn:
        setup(conn)
        cases: list[tuple[ClaimedMt, bool]] = []
        for n, status in enumerate(MT_STATUSES):
            for kind, age, counts in (("marketing", 3600, True), ("response", 3600, False), ("marketing", 8 * DAY, False)):
                sid = subscriber(conn, len(cases), T0 - 100 * DAY)
                add_mt(conn, sid, "4160", T0 - age, status=status, kind=kind)
                now_going = add_mt(conn, sid, "4160", T0, status="sending", kind="marketing")
                cases.append((_claimed(now_going, sid), counts and status in gprivacy._SENT))
        held = gprivacy._pace(conn, [(mt, rules) for mt, _ in cases], T0)
    assert held == {mt.id: "suppressed: cap reached" for mt, capped in cases if capped}
    assert len(held) == len(gprivacy._SENT)


def test_caps_read_the_subscribers_mts_by_subscriber(sqlite_engine: sa.Engine) -> None:
    """The caps query finds the subscribers' MTs by subscriber_id, not by walking the status
    index over every MT ever sent (which SQLite prefers for ``status IN`` the five sent
    statuses once a claimed batch holds a few dozen subscribers)."""
    rules = gprivacy.DeliveryRules(window=QuietHours.parse("00:00-00:00"), caps=Caps(per_day=1, per_week=3))
    with rolled_back(sqlite_engine) as conn:
        setup(conn)
        sids = [subscriber(conn, n, T0) for n in range(200)]
        claimed = [_claimed(add_mt(conn, sid, "4160", T0, status="sending", kind="marketing"), sid) for sid in sids]
        ran = statements(conn, lambda: gprivacy._pace(conn, [(mt, rules) for mt in claimed], T0))
        (query,) = [(s, params) for s, params in ran if "FROM mt_messages" in s]
        plan = sqlite_plan(conn, *query)
    assert scans(plan, "mt_messages") == [], plan
    (step,) = [line for line in plan if "mt_messages" in line]
    assert "(subscriber_id=?" in step and "status" not in step, plan


# --- 2. erasure: no OR across indexed columns --------------------------------------------


def test_erase_subscriber_changes_the_rows_either_condition_picks_once(engine: sa.Engine) -> None:
    """Receipts of the subscriber's MT parts and receipts quoting the number go, whichever of
    the two (or both) they match; results of the subscriber and results that cite the
    subscriber's MOs are detached, whichever (or both); each row is counted once."""
    number = "+306900000001"
    with rolled_back(engine) as conn:
        ids, (sid, other) = setup(conn, number, "+306900000002")
        vote = ids["vote"]
        mo = add_mo(conn, sid, "4160", T0, campaign_id=vote)
        other_mo = add_mo(conn, other, "4160", T0, campaign_id=vote)
        mt = add_mt(conn, sid, "4160", T0 + 1)
        other_mt = add_mt(conn, other, "4160", T0 + 1)
        part = insert(conn, mt_parts, mt_id=mt, part_index=1, status="delivered", smsc="smsc1", smsc_message_id="m1")
        other_part = insert(conn, mt_parts, mt_id=other_mt, part_index=1, status="delivered", smsc="smsc1", smsc_message_id="m2")

        def receipt(n: int, part_id: int | None, recipient: str | None) -> int:
            return insert(
                conn, dlr_events, smsc="smsc1", smsc_message_id=f"r{n}", mt_part_id=part_id, stat="DELIVRD",
                received_at=T0, matched=part_id is not None, recipient=recipient,
            )  # fmt: skip

        receipts = {
            "part and number": receipt(1, part, number),
            "part only": receipt(2, part, None),
            "part, other number": receipt(3, part, "+306900000002"),
            "number only": receipt(4, None, number),
            "number, other part": receipt(5, other_part, number),
            "neither": receipt(6, other_part, "+306900000002"),
            "nothing": receipt(7, None, None),
        }

        def result(subscriber_id: int | None, mo_id: int | None) -> int:
            return insert(
                conn, campaign_records, campaign_id=vote, subscriber_id=subscriber_id, mo_id=mo_id, kind="vote",
                key="GRE", value=1, recorded_at=T0, withdrawn=False,
            )  # fmt: skip

        results = {
            "subscriber and mo": result(sid, mo),
            "subscriber only": result(sid, None),
            "subscriber, other's mo": result(sid, other_mo),
            "other's, citing the mo": result(other, mo),
            "nobody's, citing the mo": result(None, mo),
            "other's": result(other, other_mo),
            "nobody's": result(None, None),
        }
        counts = p.erase_subscriber(conn, sid, HASH_A, keep_opt_outs=False)
        left = {row.id for row in conn.execute(sa.select(dlr_events.c.id))}
        kept = {row.id: (row.subscriber_id, row.mo_id) for row in conn.execute(sa.select(campaign_records))}
    assert left == {receipts["neither"], receipts["nothing"]}
    assert counts.rows["dlr_events"] == len(receipts) - 2
    detached = ("subscriber and mo", "subscriber only", "subscriber, other's mo", "other's, citing the mo", "nobody's, citing the mo")
    assert set(kept) == set(results.values())
    assert {rid for rid, values in kept.items() if values == (None, None)} == {results[name] for name in (*detached, "nobody's")}
    assert kept[results["other's"]] == (other, other_mo)
    assert counts.rows["campaign_records"] == len(detached)


def test_erase_subscriber_reads_no_table_whole_on_sqlite(sqlite_engine: sa.Engine) -> None:
    with rolled_back(sqlite_engine) as conn:
        ids, (sid, other) = setup(conn, "+306900000001", "+306900000002")
        _subscriber_world(conn, ids, sid, "+306900000001")
        ran = statements(conn, lambda: p.erase_subscriber(conn, sid, HASH_A, keep_opt_outs=True))
        plans = {s: sqlite_plan(conn, s, params) for s, params in ran if s.lstrip().startswith(("DELETE", "UPDATE"))}
    tables = [t.name for t in metadata.sorted_tables]
    assert {s: scans(plan, *tables) for s, plan in plans.items() if scans(plan, *tables)} == {}


def test_erase_subscriber_needs_no_sequential_scan_on_postgresql(engine: sa.Engine) -> None:
    """With sequential scans priced out, every statement of an erasure still has an index
    plan (an ``OR`` over an indexed column and an ``IN (subquery)`` has none)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner")
    with rolled_back(engine) as conn:
        ids, (sid, other) = setup(conn, "+306900000001", "+306900000002")
        _subscriber_world(conn, ids, sid, "+306900000001")
        ran = statements(conn, lambda: p.erase_subscriber(conn, sid, HASH_A, keep_opt_outs=True))
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plans = {
            s: [str(row[0]) for row in conn.exec_driver_sql("EXPLAIN " + s, params)]
            for s, params in ran
            if s.lstrip().startswith(("DELETE", "UPDATE"))
        }
    assert {s: plan for s, plan in plans.items() if any("Seq Scan" in line for line in plan)} == {}


# --- 4. idle subscribers -----------------------------------------------------------------

#: The plain query idle_subscribers answered before it was split (the reference).
_LAST_SEEN = sa.func.coalesce(customer_profiles.c.last_seen_at, subscribers.c.created_at)
_PLAIN_IDLE = (
    sa.select(subscribers.c.id, subscribers.c.msisdn)
    .select_from(subscribers.outerjoin(customer_profiles, customer_profiles.c.subscriber_id == subscribers.c.id))
    .where(_LAST_SEEN <= sa.bindparam("cutoff"))
    .order_by(_LAST_SEEN, subscribers.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)

#: A few moments, so that many subscribers share one (ties are ordered by id).
_MOMENTS = st.sampled_from([T0 - 400 * DAY, T0 - 300 * DAY, T0 - 200 * DAY, T0 - 100 * DAY, T0])


@settings(max_examples=60)
@given(
    people=st.lists(st.tuples(_MOMENTS, st.none() | _MOMENTS), max_size=25),
    cutoff=_MOMENTS,
    limit=st.integers(0, 30),
)
def test_idle_subscribers_are_those_of_the_plain_query(
    engine: sa.Engine, people: list[tuple[float, float | None]], cutoff: float, limit: int
) -> None:
    """Subscribers with and without a profile, created and last seen at the same few moments:
    the same subscribers as the single coalesce(last MO, creation) query, in the same order."""
    with rolled_back(engine) as conn:
        for n, (created, last_mo) in enumerate(people):
            sid = subscriber(conn, n, created)
            if last_mo is not None:
                conn.execute(
                    sa.insert(customer_profiles).values(
                        subscriber_id=sid, first_seen_at=last_mo, last_seen_at=last_mo, mos=1, campaign_mos=0, updated_at=last_mo
                    )
                )
        expected = [(sid, msisdn) for sid, msisdn in conn.execute(_PLAIN_IDLE, {"cutoff": cutoff, "limit": limit})]
        assert p.idle_subscribers(conn, cutoff, limit) == expected


def test_idle_subscribers_with_a_profile_come_from_the_last_seen_index(sqlite_engine: sa.Engine) -> None:
    """The profiled half is an index range of ix_customer_profiles_last_seen_at, in order
    (no sort). (The half without a profile still reads subscribers whole: there is no index
    on subscribers.created_at.)"""
    with rolled_back(sqlite_engine) as conn:
        ran = statements(conn, lambda: p.idle_subscribers(conn, T0, 50))
        profiled = sqlite_plan(conn, *ran[0])
    assert "FROM customer_profiles" in ran[0][0]
    assert scans(profiled, "customer_profiles", "subscribers") == [], profiled
    assert any("ix_customer_profiles_last_seen_at" in line for line in profiled), profiled


# --- 5. the subscriber id range ------------------------------------------------------------


def test_id_bounds(sqlite_engine: sa.Engine) -> None:
    with rolled_back(sqlite_engine) as conn:
        assert outbound._id_bounds(conn) == (0, -1)
        ran = statements(conn, lambda: outbound._id_bounds(conn))
        plan = sqlite_plan(conn, *ran[0])
        for n in (5, 3, 9):
            insert(conn, subscribers, id=n, msisdn=f"+30690000000{n}", created_at=T0, last_seen_at=T0)
        assert outbound._id_bounds(conn) == (3, 9)
    assert scans(plan, "subscribers") == [], plan


# --- 6. send-again, unit by unit ------------------------------------------------------------

_TO = ("no_reply", "undelivered", "both")
#: An MT of the parent send per subscriber (or none), and whether (and when) they replied.
_PARENT = st.tuples(st.none() | st.sampled_from(MT_STATUSES), st.sampled_from(["no", "after", "before", "elsewhere"]))


def _plain_unit(conn: sa.Connection, segment: Segment, target: SendTarget, among: Any, first: int, end: int) -> None:
    """A unit as it was written before the parent send was bounded to the unit's range (the reference)."""
    ids = sa.select(subscribers.c.id).where(subscribers.c.id >= first, subscribers.c.id < end)
    materialise_send(conn, segment, target, ids.where(subscribers.c.id.in_(among)), tally=False)


@settings(max_examples=40)
@given(parent=st.lists(_PARENT, min_size=1, max_size=14), to=st.sampled_from(_TO), unit=st.sampled_from([1, 2, 3, 5, 100]))
def test_send_again_units_select_exactly_the_non_responders_of_their_range(
    engine: sa.Engine, parent: list[tuple[str | None, str]], to: str, unit: int
) -> None:
    """Materialised unit by unit, a send-again reaches exactly the parent send's recipients
    who did not reply (their MT accepted, no MO to the short code since) or whose MT was not
    delivered, as the unbounded query did, each once."""
    with rolled_back(engine) as conn:
        ids, _ = setup(conn)
        campaign = ids["vote"]
        ensure_sends(conn, campaign, [("first", T0, "Offer", None)], T0)
        parent_id = conn.execute(sa.select(sends.c.id).where(sends.c.name == "first")).scalar_one()
        chosen = set()
        for n, (status, reply) in enumerate(parent):
            sid = subscriber(conn, n, T0 - DAY)
            if status is None:
                continue
            mt = add_mt(conn, sid, "4160", T0, status=status, kind="marketing", campaign="vote")
            conn.execute(sa.update(mt_messages).where(mt_messages.c.id == mt).values(send_id=parent_id))
            if reply != "no":
                add_mo(conn, sid, "5050" if reply == "elsewhere" else "4160", T0 + (60 if reply == "after" else -60))
            no_reply = status in ("submitted", "delivered", "undelivered", "expired") and reply != "after"
            undelivered = status in ("undelivered", "expired", "failed")
            if {"no_reply": no_reply, "undelivered": undelivered, "both": no_reply or undelivered}[to]:
                chosen.add(sid)
        among = recipients_for_send_again(parent_id, "4160", to)
        got = {}
        low, high = outbound._id_bounds(conn)
        for name, materialise in (("bounded", outbound._materialise_unit), ("plain", _plain_unit)):
            ensure_sends(conn, campaign, [(name, T0, "Again", parent_id)], T0)
            send_id = conn.execute(sa.select(sends.c.id).where(sends.c.name == name)).scalar_one()
            target = SendTarget(send_id=send_id, campaign=VOTE.name, owner=VOTE.owner, short_code="4160", text="Again", parts_total=1, now=T0)
            for first in range(low, high + 1, unit):
                materialise(conn, Segment(opted_in=True), target, among, first, first + unit)
            got[name] = sorted(
                tuple(row)
                for row in conn.execute(
                    sa.select(send_recipients.c.subscriber_id, send_recipients.c.status, send_recipients.c.reason).where(
                        send_recipients.c.send_id == send_id
                    )
                )
            )
    assert {row[0] for row in got["bounded"]} == chosen
    assert got["bounded"] == got["plain"]


def test_a_send_again_unit_reads_its_range_of_the_parent_send(sqlite_engine: sa.Engine) -> None:
    with rolled_back(sqlite_engine) as conn:
        ids, _ = setup(conn)
        ensure_sends(conn, ids["vote"], [("first", T0, "Offer", None), ("again", T0, "Again", None)], T0)
        parent_id, send_id = (conn.execute(sa.select(sends.c.id).where(sends.c.name == name)).scalar_one() for name in ("first", "again"))
        target = SendTarget(send_id=send_id, campaign=VOTE.name, owner=VOTE.owner, short_code="4160", text="Again", parts_total=1, now=T0)
        among = recipients_for_send_again(parent_id, "4160", "both")
        ran = statements(conn, lambda: outbound._materialise_unit(conn, Segment(opted_in=True), target, among, 1, 5001))
        plans = [sqlite_plan(conn, s, params) for s, params in ran if "parent_mt" in s]
    assert plans
    for plan in plans:
        steps = [line for line in plan if "parent_mt" in line]
        assert steps and all("subscriber_id>? AND subscriber_id<?" in line for line in steps), plan
