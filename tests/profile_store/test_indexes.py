"""The daemon's hot queries use the index made for them (revisions 005 and 007).

Each test runs the real store function on a migrated SQLite database, captures the SQL it
sends to the driver, and asks SQLite for the plan of that exact statement with the same
parameters: no SCAN of the table, no temporary B-tree, and the intended index. The daemon
never runs ANALYZE, so the plans come from the indexes alone, as here, whatever the data.

On PostgreSQL, whose plans follow the statistics, one test checks that the coupon queries
can use their partial and expression-based indexes at all (the WHERE and the expression
must match the index's exactly).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

from gatewayd.smpp.text import ConcatMethod
from gatewayd.smpp.receipts import DeliveryReceipt
from profile_store import campaigns as c
from profile_store import dlr
from profile_store import mo
from profile_store.db import make_engine
from profile_store.dlr import record_receipt, unmatched_receipts
from profile_store.migrate import upgrade
from profile_store.mo import MoPartIn, expire_incomplete, store_mo_part
from profile_store.privacy import declare_attribute, erase_local_profile
from profile_store.reports import campaign_stats
from profile_store.sends import ensure_sends, finish_sends, start_send
from profile_store.subscribers import get_or_create_subscriber
from tests.profile_store.test_mo import T0, part

Captured = list[tuple[str, Any]]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """SQLite migrated to head: the indexes the daemon really has."""
    url = f"sqlite:///{tmp_path / 'gatewayd.db'}"
    upgrade(url)
    e = make_engine(url)
    yield e
    e.dispose()


@contextlib.contextmanager
def capturing(engine: sa.Engine) -> Iterator[Captured]:
    """Every (statement, parameters) sent to the driver meanwhile."""
    seen: Captured = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters[0] if executemany else parameters))

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def run(engine: sa.Engine, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A unit in a transaction of its own, as the writer runs it."""
    with engine.connect().execution_options(writer=True) as conn, conn.begin():
        return fn(conn, *args, **kwargs)


def plans_of(engine: sa.Engine, seen: Captured, pattern: str) -> list[list[str]]:
    """The plans of the distinct captured statements matching ``pattern`` (a regex, searched in
    the SQL with its whitespace collapsed), as SQLite details them; there must be one at least."""
    matching = {sql: params for sql, params in seen if re.search(pattern, " ".join(sql.split()))}
    assert matching, f"no statement matching {pattern!r}, captured: {list(dict(seen))}"
    with engine.connect() as conn:
        return [
            [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)] for sql, params in matching.items()
        ]


def plan_of(engine: sa.Engine, seen: Captured, pattern: str) -> list[str]:
    """The plan of the one captured statement matching ``pattern``."""
    plans = plans_of(engine, seen, pattern)
    assert len(plans) == 1, plans
    return plans[0]


def assert_uses(plan: list[str], table: str, index: str, terms: str, *, sorts: bool = False) -> None:
    """``table`` is only read through ``index`` constrained by ``terms`` (as SQLite prints them).

    ``sorts``: a temporary B-tree for ORDER BY is expected (a handful of rows, or an order by
    an aggregate no index can give); one for GROUP BY, DISTINCT or a join never is.
    """
    assert not [line for line in plan if re.match(rf"SCAN {table}\b", line)], plan
    temp = [line for line in plan if "TEMP B-TREE" in line]
    assert temp == (["USE TEMP B-TREE FOR ORDER BY"] if sorts else []), plan
    reads = [line for line in plan if re.match(rf"(SEARCH|SCAN) {table}\b", line)]
    assert reads, plan
    for line in reads:
        assert re.fullmatch(rf"SEARCH {table} USING (COVERING )?INDEX {index} \({re.escape(terms)}\)", line), plan


def _campaign(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.begin() as conn:
        ids = c.ensure_campaigns(conn, [c.CampaignRow("promo", "Acme", "coupon", "4160")], 1.0)
        a = get_or_create_subscriber(conn, "+306900000001", 1.0)
        b = get_or_create_subscriber(conn, "+306900000002", 1.0)
    return ids["promo"], a, b


# --- coupons ---------------------------------------------------------------------------------


def test_claim_coupon_takes_the_lowest_free_code_from_the_partial_index(engine: sa.Engine) -> None:
    """The free-code lookup reads the first entry of (campaign_id, id) WHERE claimed_at IS NULL: no sort."""
    cid, a, b = _campaign(engine)
    run(engine, c.fill_coupon_pool, cid, ["AAA", "BBB"])
    run(engine, c.claim_coupon, cid, a, 2.0)
    with capturing(engine) as seen:
        assert run(engine, c.claim_coupon, cid, b, 3.0) == c.CouponOutcome("claimed", "BBB")
    plan = plan_of(engine, seen, r"^SELECT coupons\.id, coupons\.code FROM coupons .*claimed_at IS NULL ORDER BY coupons\.id")
    assert_uses(plan, "coupons", "ix_coupons_campaign_id_id_unclaimed", "campaign_id=?")


def test_redeem_coupon_matches_the_upper_code_expression_index(engine: sa.Engine) -> None:
    """redeem_coupon's upper(code) is the index's expression: both columns constrain the search."""
    cid, a, _ = _campaign(engine)
    run(engine, c.fill_coupon_pool, cid, ["AbC"])
    run(engine, c.claim_coupon, cid, a, 2.0)
    with capturing(engine) as seen:
        assert run(engine, c.redeem_coupon, cid, " abc ", 3.0) == c.CouponOutcome("redeemed", "AbC")
    plan = plan_of(engine, seen, r"^SELECT .* FROM coupons WHERE .*upper\(coupons\.code\) = \?")
    assert_uses(plan, "coupons", "ix_coupons_campaign_id_upper_code", "campaign_id=? AND <expr>=?")


@pytest.mark.postgresql
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgresql_can_use_the_coupon_indexes(store_url: str) -> None:
    """On PostgreSQL too the free-code lookup implies the partial index's WHERE and redeem_coupon's
    upper(code) is the indexed expression (its text parameter compared as text): with sequential
    scans priced out, each is an index scan conditioned on both columns, with no sort."""
    upgrade(store_url)
    engine = make_engine(store_url)
    try:
        cid, a, b = _campaign(engine)
        run(engine, c.fill_coupon_pool, cid, ["AbC", "DEF"])
        run(engine, c.claim_coupon, cid, a, 2.0)
        with capturing(engine) as seen:
            assert run(engine, c.redeem_coupon, cid, "abc", 3.0).status == "redeemed"
            assert run(engine, c.claim_coupon, cid, b, 3.0) == c.CouponOutcome("claimed", "DEF")
        wanted = {
            r"claimed_at IS NULL ORDER BY coupons\.id": ("ix_coupons_campaign_id_id_unclaimed", f"(campaign_id = {cid})"),
            r"upper\(coupons\.code\) = ": (
                "ix_coupons_campaign_id_upper_code",
                f"((campaign_id = {cid}) AND (upper((code)::text) = 'ABC'::text))",
            ),
        }
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            for pattern, (index, condition) in wanted.items():
                (sql, params), *others = [
                    (q, p) for q, p in seen if q.startswith("SELECT") and re.search(pattern, " ".join(q.split()))
                ]
                assert not others
                explained = conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + sql, params).scalars()
                plan = [line.strip().removeprefix("->  ") for line in explained]
                assert [line for line in plan if "Scan" in line] == [f"Index Scan using {index} on coupons"], plan
                assert f"Index Cond: {condition}" in plan and not [line for line in plan if "Sort" in line], plan
    finally:
        engine.dispose()


# --- alerts, local profiles ------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["", "traffic"])
def test_unsubscribe_finds_the_subscribers_rows_of_the_campaign(engine: sa.Engine, topic: str) -> None:
    """Unsubscribing reads (subscriber_id, campaign_id), not every subscription of the campaign
    (with a topic, the primary key (campaign_id, topic, subscriber_id) does as well)."""
    cid, a, _ = _campaign(engine)
    run(engine, c.subscribe, cid, "traffic", a, 1.0)
    with capturing(engine) as seen:
        assert run(engine, c.unsubscribe, cid, topic, a) == 1
    plan = plan_of(engine, seen, r"^DELETE FROM alert_subscriptions")
    if topic:
        assert_uses(
            plan, "alert_subscriptions", "sqlite_autoindex_alert_subscriptions_1", "campaign_id=? AND topic=? AND subscriber_id=?"
        )
    else:
        assert_uses(
            plan, "alert_subscriptions", "ix_alert_subscriptions_subscriber_id_campaign_id", "subscriber_id=? AND campaign_id=?"
        )


@pytest.mark.parametrize(
    ("table", "index"),
    [
        ("sessions", "ix_sessions_campaign_id_subscriber_id"),
        ("subscriber_attributes", "ix_subscriber_attributes_campaign_id_subscriber_id"),
    ],
)
def test_erase_local_profile_deletes_by_campaign_and_subscriber(engine: sa.Engine, table: str, index: str) -> None:
    """A STOP to one campaign deletes its session and declared attributes of the subscriber through
    (campaign_id, subscriber_id), not every row of the campaign."""
    cid, a, _ = _campaign(engine)
    run(engine, c.set_session, "4160", a, cid, 100.0)
    run(engine, declare_attribute, a, "age_band", "18-24", cid, 1.0)
    with capturing(engine) as seen:
        counts = run(engine, erase_local_profile, a, cid)
    assert counts.rows[table] == 1
    plan = plan_of(engine, seen, rf"^DELETE FROM {table} WHERE")
    assert_uses(plan, table, index, "campaign_id=? AND subscriber_id=?")


# --- outbound sends --------------------------------------------------------------------------


def test_finish_sends_asks_the_index_of_the_sends_active_mts(engine: sa.Engine) -> None:
    """Whether a running send has an MT left to send is one probe of the partial index that
    holds only queued and sending MTs of sends (its WHERE says the statuses as the query does)."""
    cid, _, _ = _campaign(engine)
    run(engine, ensure_sends, cid, [("first", 1.0, "Hello", None)], 1.0)
    with engine.connect() as conn:
        send_id = conn.exec_driver_sql("SELECT id FROM sends").scalar_one()
    run(engine, start_send, send_id, 2.0, 0.1)
    with capturing(engine) as seen:
        assert [s.id for s in run(engine, finish_sends, 3.0)] == [send_id]
    plan = plan_of(engine, seen, r"^SELECT sends\.id.* NOT \(EXISTS \(SELECT mt_messages\.id FROM mt_messages")
    assert_uses(plan, "mt_messages", "ix_mt_messages_send_id_active", "send_id=?")


def test_a_campaign_report_reads_the_campaigns_mts_through_its_index(engine: sa.Engine) -> None:
    """The report counts a campaign's MTs by status from the index on campaign alone (the status
    left out so that receipts do not move the entries): a search, then a sort of those rows."""
    _campaign(engine)
    with capturing(engine) as seen:
        run(engine, campaign_stats, "promo")
    plan = plan_of(engine, seen, r"^SELECT mt_messages\.status, count\(\*\)")
    assert [line for line in plan if "TEMP B-TREE" in line] == ["USE TEMP B-TREE FOR GROUP BY"], plan
    assert_uses([line for line in plan if "TEMP B-TREE" not in line], "mt_messages", "ix_mt_messages_campaign", "campaign=?")


def test_unmatched_receipts_are_found_through_the_partial_indexes(engine: sa.Engine) -> None:
    """Only receipts that matched nothing are in the index by age, and only those that kept a
    number in the index by number: counting the old unmatched ones and finding the ones held
    for a handset each search their partial index."""
    receipt = DeliveryReceipt(
        message_id="77", sub=None, dlvrd=None, submit_date=None, done_date=None, stat="DELIVRD",
        err="000", text="Hello", message_state=None, network_error_code=None,
    )
    recorded = run(engine, record_receipt, "smsc1", receipt, "77", T0, recipient="+306900000001")
    assert not recorded.matched
    with capturing(engine) as seen:
        assert run(engine, unmatched_receipts, older_than=60.0, now=T0 + 600) == 1
    plan = plan_of(engine, seen, r"^SELECT count\(\*\) AS count_1 FROM dlr_events")
    assert_uses(plan, "dlr_events", "ix_dlr_events_unmatched_received_at", "received_at<?")
    held = dlr._HELD_FOR_RECIPIENT._compile(engine.dialect).sql
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + held, ("+306900000001",))]
    assert_uses(plan, "dlr_events", "ix_dlr_events_recipient", "recipient=?")


# --- MO parts (after dropping (status, received_at) and turning (concat_key, status) around) --


def _concat(text: str, index: int, at: float) -> MoPartIn:
    return part(text, source="+306900000009", at=at, concat=(ConcatMethod.UDH8, 9, 3, index))


def test_mo_parts_lookups_still_use_an_index(engine: sa.Engine) -> None:
    """Without (status, received_at): a concatenated MO's pending parts (by concat_key and
    status) come from (status, concat_key); expire_incomplete reads the pending parts grouped
    by concat_key from it too, with no sort for the grouping; the twin checks of single and
    concatenated parts (by smsc, dedupe_key, received_at) keep their index."""
    with capturing(engine) as seen:
        run(engine, store_mo_part, part("hello", source="+306900000008", at=T0), T0)
        run(engine, store_mo_part, part("hello", source="+306900000008", at=T0 + 1), T0 + 1)  # a redelivery
        run(engine, store_mo_part, _concat("a", 1, T0), T0)
        run(engine, store_mo_part, _concat("b", 2, T0 + 1), T0 + 1)
        run(engine, store_mo_part, _concat("b", 2, T0 + 2), T0 + 2)  # a redelivery
        expired = run(engine, expire_incomplete, T0 + 1000, older_than=600)
    assert len(expired) == 1 and not expired[0].complete
    pending = plan_of(engine, seen, r"^SELECT mo_parts\.id, .* WHERE mo_parts\.concat_key = \? AND mo_parts\.status = \?")
    # ORDER BY part_index: a sort of one message's parts.
    assert_uses(pending, "mo_parts", "ix_mo_parts_status_concat_key", "status=? AND concat_key=?", sorts=True)
    groups = plan_of(engine, seen, r"^SELECT mo_parts\.concat_key, min\(mo_parts\.received_at\)")
    # ORDER BY min(received_at): the groups found, sorted by an aggregate.
    assert_uses(groups, "mo_parts", "ix_mo_parts_status_concat_key", "status=? AND concat_key>?", sorts=True)
    twin_terms = "smsc=? AND dedupe_key=? AND received_at>? AND received_at<?"
    twins = plans_of(engine, seen, r"^SELECT mo_parts\.id FROM mo_parts WHERE mo_parts\.smsc = \?")
    assert len(twins) == 2  # single parts, and parts of concatenated MOs
    for plan in twins:
        # ORDER BY id: the twins found within the window.
        assert_uses(plan, "mo_parts", "ix_mo_parts_smsc_dedupe_key_received_at", twin_terms, sorts=True)


@pytest.mark.parametrize("late", [False, True], ids=["single", "concatenated"])
def test_storing_a_part_checks_for_a_twin_through_the_index(engine: sa.Engine, late: bool) -> None:
    """The statement that records the sender unless the part has a twin runs on the DBAPI cursor
    (no event sees it): its plan, from the statement object itself, searches the twin index."""
    stmt = mo._SUBSCRIBER_UNLESS_TWIN[("sqlite", late)].stmt
    compiled = stmt.compile(dialect=engine.dialect)
    nulls = (None,) * len(compiled.positiontup or ())
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), nulls)]
    # The rest of the plan is the foreign keys' checks of the upsert, each by subscriber_id.
    subquery = plan[plan.index("SCALAR SUBQUERY 1") + 1 :][:1]
    twin_terms = "smsc=? AND dedupe_key=? AND received_at>? AND received_at<?"
    assert_uses(subquery, "mo_parts", "ix_mo_parts_smsc_dedupe_key_received_at", twin_terms)
    assert not [line for line in plan if line.startswith("SCAN ") and line != "SCAN CONSTANT ROW"], plan
