"""Campaign data: campaign rows, module state, sessions, results, local profiles, coupons, alerts."""

from __future__ import annotations

import sqlalchemy as sa

from profile_store import campaigns as c
from profile_store.schema import profile_facts
from profile_store.subscribers import get_or_create_subscriber


def _setup(engine: sa.Engine) -> tuple[int, int, int]:
    """A campaign and two subscribers: (campaign id, first subscriber, second subscriber)."""
    with engine.begin() as conn:
        ids = c.ensure_campaigns(conn, [c.CampaignRow("vote", "Channel 5", "vote", "4160")], 1.0)
        a = get_or_create_subscriber(conn, "+306900000001", 1.0)
        b = get_or_create_subscriber(conn, "+306900000002", 1.0)
    return ids["vote"], a, b


def test_ensure_campaigns_keeps_ids_and_updates_changed_rows(engine: sa.Engine) -> None:
    """A campaign keeps its id across loads; a changed owner is written; vanished sheets keep their ids."""
    with engine.begin() as conn:
        first = c.ensure_campaigns(conn, [c.CampaignRow("a", "X", "vote", "4160"), c.CampaignRow("b", "Y", "poll", "4160")], 1.0)
    with engine.begin() as conn:
        second = c.ensure_campaigns(conn, [c.CampaignRow("a", "Z", "vote", "4160")], 2.0)
        owner = conn.exec_driver_sql("SELECT owner FROM campaigns WHERE name = 'a'").scalar_one()
    assert second == first
    assert owner == "Z"


def test_state_round_trips_and_is_replaced(engine: sa.Engine) -> None:
    """Saved state comes back as saved; a second save replaces it; batch loads agree."""
    cid, a, b = _setup(engine)
    with engine.begin() as conn:
        assert c.load_state(conn, cid, a) == {}
        c.save_state(conn, cid, a, {"votes": {"GRE": 1}, "list": (1, 2)}, 5.0)
        c.save_state(conn, cid, a, {"votes": {"GRE": 2}}, 6.0)
        c.save_state(conn, cid, b, {"q": 3}, 6.0)
    with engine.connect() as conn:
        assert c.load_state(conn, cid, a) == {"votes": {"GRE": 2}}
        assert c.load_states(conn, [(cid, a), (cid, b), (cid + 1, a)]) == {(cid, a): {"votes": {"GRE": 2}}, (cid, b): {"q": 3}}


def test_sessions_expire_and_end(engine: sa.Engine) -> None:
    """A session is open until it expires or ends; setting it again moves it on."""
    cid, a, b = _setup(engine)
    with engine.begin() as conn:
        c.set_session(conn, "4160", a, cid, 100.0)
        c.set_session(conn, "4160", b, cid, 100.0)
        assert c.open_session(conn, "4160", a, 99.0) == cid
        assert c.open_session(conn, "4160", a, 100.0) is None
        c.set_session(conn, "4160", a, cid, 200.0)
        assert c.open_sessions(conn, [("4160", a), ("4160", b), ("9999", a)], 150.0) == {("4160", a): cid}
        c.end_session(conn, "4160", a, cid + 1)
        assert c.open_session(conn, "4160", a, 150.0) == cid
        c.end_session(conn, "4160", a, cid)
        assert c.open_session(conn, "4160", a, 150.0) is None
        c.set_session(conn, "4160", a, cid, 300.0)
        c.end_sessions_of(conn, a)
        assert c.open_session(conn, "4160", a, 150.0) is None


def test_records_add_up_and_replace_withdraws(engine: sa.Engine) -> None:
    """Totals count records by kind and key; a replacing record withdraws the subscriber's earlier ones."""
    cid, a, b = _setup(engine)
    with engine.begin() as conn:
        c.add_record(conn, cid, a, None, "vote", "GRE", 1, 1.0)
        c.add_record(conn, cid, b, None, "vote", "GRE", 1, 1.0)
        c.add_record(conn, cid, a, None, "vote", "POR", 1, 2.0, replace=True)
        c.add_record(conn, cid, a, None, "score", "final", 3, 2.0)
        totals = c.record_totals(conn, cid)
    assert totals == [
        c.RecordTotal("score", "final", 1, 3.0),
        c.RecordTotal("vote", "GRE", 1, 1.0),
        c.RecordTotal("vote", "POR", 1, 1.0),
    ]


def test_facts_are_kept_per_campaign_and_subscriber(engine: sa.Engine) -> None:
    """A local profile fact is stored with its campaign, subscriber and MO."""
    cid, a, _ = _setup(engine)
    with engine.begin() as conn:
        c.add_fact(conn, cid, a, None, "Greece", "voted for", 3.0)
        rows = conn.execute(sa.select(profile_facts.c.object, profile_facts.c.attitude, profile_facts.c.subscriber_id)).all()
    assert rows == [("Greece", "voted for", a)]


def test_coupons_once_per_subscriber_until_exhausted(engine: sa.Engine) -> None:
    """Each subscriber gets one code (the same again on asking twice) until the pool is empty; redemption once."""
    cid, a, b = _setup(engine)
    with engine.begin() as conn:
        third = get_or_create_subscriber(conn, "+306900000003", 1.0)
        assert c.fill_coupon_pool(conn, cid, ["AAA", "BBB", "AAA"]) == 2
        assert c.fill_coupon_pool(conn, cid, ["AAA", "BBB"]) == 0
        first = c.claim_coupon(conn, cid, a, 1.0)
        assert c.claim_coupon(conn, cid, a, 2.0) == c.CouponOutcome("already", first.code)
        second = c.claim_coupon(conn, cid, b, 2.0)
        assert {first.code, second.code} == {"AAA", "BBB"} and first.status == second.status == "claimed"
        assert c.claim_coupon(conn, cid, third, 3.0) == c.CouponOutcome("exhausted", "")
        assert c.redeem_coupon(conn, cid, first.code.lower(), 4.0) == c.CouponOutcome("redeemed", first.code)
        assert c.redeem_coupon(conn, cid, first.code, 5.0).status == "unknown"
        assert c.redeem_coupon(conn, cid, "ZZZ", 5.0) == c.CouponOutcome("unknown", "ZZZ")


def test_alert_subscriptions(engine: sa.Engine) -> None:
    """Subscribing twice is one subscription; unsubscribing from "" leaves every topic."""
    cid, a, _ = _setup(engine)
    with engine.begin() as conn:
        assert c.subscribe(conn, cid, "traffic", a, 1.0) is True
        assert c.subscribe(conn, cid, "traffic", a, 2.0) is False
        assert c.subscribe(conn, cid, "weather", a, 2.0) is True
        assert c.unsubscribe(conn, cid, "traffic", a) == 1
        assert c.unsubscribe(conn, cid, "", a) == 1
        assert c.unsubscribe(conn, cid, "", a) == 0


def test_a_detached_coupon_is_not_handed_out_again(engine: sa.Engine) -> None:
    """Erasing a local profile detaches the claimed code from its subscriber; it stays claimed and redeemable."""
    from profile_store.privacy import erase_local_profile

    cid, a, b = _setup(engine)
    with engine.begin() as conn:
        c.fill_coupon_pool(conn, cid, ["ONLY"])
        assert c.claim_coupon(conn, cid, a, 2.0) == c.CouponOutcome("claimed", "ONLY")
        erase_local_profile(conn, a, cid)
        assert c.claim_coupon(conn, cid, b, 3.0) == c.CouponOutcome("exhausted", "")
        assert c.redeem_coupon(conn, cid, "only", 4.0) == c.CouponOutcome("redeemed", "ONLY")
