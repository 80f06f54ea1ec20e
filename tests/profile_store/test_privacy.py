"""Privacy data on SQLite and PostgreSQL: the consent ledger, attributes, customer profiles,
erasure, export and the hash-chained audit log."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from permissions.audit import GENESIS, AuditKind, AuditRecord, chain_digest
from permissions.consent import (
    ALL,
    CampaignRef,
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
from profile_store import campaigns as c
from profile_store import privacy as p
from profile_store.schema import (
    audit_log,
    campaign_records,
    consent_events,
    coupons,
    customer_campaigns,
    customer_profiles,
    dlr_events,
    metadata,
    mo_messages,
    mo_parts,
    mt_messages,
    mt_parts,
    profile_facts,
    subscriber_attributes,
    subscribers,
)
from profile_store.subscribers import get_or_create_subscriber
from tests.permissions.strategies import CAMPAIGNS, SHORT_CODES, scopes

T0 = 1_700_000_000.0
DAY = 86400.0
HASH_A = "a" * 64
HASH_B = "b" * 64

VOTE, QUIZ, COUPONS, ALERTS = CAMPAIGNS
SHEETS = [c.CampaignRow(ref.name, ref.owner, ref.name, ref.short_code) for ref in CAMPAIGNS]


# --- helpers -----------------------------------------------------------------------------


def setup(conn: sa.Connection, *numbers: str) -> tuple[dict[str, int], list[int]]:
    """The four campaigns of the strategies module, and a subscriber per number."""
    ids = c.ensure_campaigns(conn, SHEETS, T0 - 1000 * DAY)
    return ids, [get_or_create_subscriber(conn, number, T0 - 1000 * DAY) for number in numbers]


def insert(conn: sa.Connection, table: sa.Table, **values: Any) -> int:
    """Insert one row and return its id."""
    return int(conn.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one())


def add_mo(
    conn: sa.Connection, sid: int, short_code: str, at: float, *, text: str = "VOTE A", campaign_id: int | None = None
) -> int:
    """A processed MO of subscriber ``sid`` with its one part."""
    mo_id = insert(
        conn,
        mo_messages,
        smsc="smsc1",
        subscriber_id=sid,
        short_code=short_code,
        text=text,
        data_coding=0,
        parts=1,
        complete=True,
        received_at=at,
        stored_at=at,
        status="processed",
        route="campaign" if campaign_id is not None else "no_route",
        campaign_id=campaign_id,
    )
    insert(
        conn,
        mo_parts,
        smsc="smsc1",
        subscriber_id=sid,
        short_code=short_code,
        dedupe_key=uuid.uuid4().hex,
        esm_class=0,
        data_coding=0,
        payload=text.encode(),
        text=text,
        received_at=at,
        status="assembled",
        mo_id=mo_id,
    )
    return mo_id


def add_mt(
    conn: sa.Connection,
    sid: int,
    source: str,
    at: float,
    *,
    status: str = "delivered",
    kind: str = "response",
    in_reply_to: int | None = None,
    campaign: str | None = None,
) -> int:
    """An MT to subscriber ``sid`` created at ``at``."""
    return insert(
        conn,
        mt_messages,
        subscriber_id=sid,
        source_addr=source,
        text="Thanks",
        concat_ref=1,
        parts_total=1,
        priority=0,
        registered_delivery=True,
        status=status,
        attempts=1,
        next_attempt_at=at,
        in_reply_to=in_reply_to,
        campaign=campaign,
        created_at=at,
        updated_at=at,
        kind=kind,
    )


def add_delivered_part(conn: sa.Connection, mt_id: int, message_id: str, recipient: str) -> None:
    """An accepted part of ``mt_id`` and its matched receipt."""
    part = insert(conn, mt_parts, mt_id=mt_id, part_index=1, status="delivered", smsc="smsc1", smsc_message_id=message_id)
    insert(
        conn,
        dlr_events,
        smsc="smsc1",
        smsc_message_id=message_id,
        mt_part_id=part,
        stat="DELIVRD",
        received_at=T0,
        matched=True,
        recipient=recipient,
    )


def count(conn: sa.Connection, table: sa.Table, *where: Any) -> int:
    """Rows of ``table`` matching ``where``."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def ev(at: float, short_code: str = "4160", keyword: str = "", mo_id: int | None = None, note: str = "") -> Evidence:
    """Evidence at ``at``."""
    return Evidence(at, short_code, keyword, mo_id, note)


def audit(n: int, subject: str = "", **fields: Any) -> AuditRecord:
    """A decision record numbered ``n``."""
    values: dict[str, Any] = {"kind": AuditKind.DECISION, "at": T0 + n, "who": "Channel 5", "subject": subject, "operation": "read"}
    values.update(fields, detail=fields.get("detail", f"entry {n}"))
    return AuditRecord(**values)


# --- the consent ledger ------------------------------------------------------------------


def test_append_consent_stores_one_row_per_event(engine: sa.Engine) -> None:
    """Every field of an event lands in its column; requests and confirmations have no purpose."""
    events: list[ConsentEvent] = [
        OptOut(Scope.of_short_code("4160"), ev(10.0, "4160", "STOP", 7, "first")),
        OptInRequested(Scope.of_campaign(VOTE), ev(20.0, "4160", "VOTE"), 80.0),
        Confirmed(Scope.of_campaign(VOTE), ev(30.0, "4160", "YES", 9)),
        OptIn(Scope.of_owner(VOTE.owner), ev(40.0), ConsentPurpose.MARKETING),
    ]
    with engine.begin() as conn:
        _, (sid,) = setup(conn, "+306900000001")
        p.append_consent(conn, HASH_A, sid, events, T0)
        p.append_consent(conn, HASH_A, sid, [], T0)
        rows = conn.execute(sa.select(consent_events).order_by(consent_events.c.id)).all()
    assert [(r.event, r.purpose, r.expires_at) for r in rows] == [
        ("opt_out", "all", None),
        ("opt_in_requested", None, 80.0),
        ("confirmed", None, None),
        ("opt_in", "marketing", None),
    ]
    first = rows[0]
    assert (first.number_hash, first.subscriber_id, first.recorded_at) == (HASH_A, sid, T0)
    assert (first.scope_kind, first.scope_short_code, first.scope_owner, first.scope_campaign) == ("short_code", "4160", "", "")
    assert (first.at, first.short_code, first.keyword, first.mo_id, first.note) == (10.0, "4160", "STOP", 7, "first")
    assert (rows[1].scope_kind, rows[1].scope_campaign, rows[1].scope_owner) == ("campaign", "vote", VOTE.owner)


def test_load_consent_rebuilds_each_numbers_state(engine: sa.Engine) -> None:
    """Each hash gets its own state, in time order; unknown hashes are left out; no hashes, no query."""
    a_events: list[ConsentEvent] = [
        OptIn(Scope.of_campaign(VOTE), ev(50.0), ConsentPurpose.MARKETING),
        OptOut(Scope.of_short_code("4160"), ev(30.0, keyword="STOP", mo_id=3)),
        OptInRequested(Scope.of_campaign(ALERTS), ev(10.0, "5050"), 100.0),
    ]
    b_events: list[ConsentEvent] = [OptOut(ALL, ev(5.0, keyword="STOPALL"))]
    with engine.begin() as conn:
        p.append_consent(conn, HASH_A, None, a_events, T0)
        p.append_consent(conn, HASH_B, None, b_events, T0)
        loaded = p.load_consent(conn, [HASH_A, HASH_B, "c" * 64, HASH_A])
        assert p.load_consent(conn, []) == {}
    assert set(loaded) == {HASH_A, HASH_B}
    assert loaded[HASH_A] == ConsentState.from_events(a_events)
    assert [e.at for e in loaded[HASH_A].events] == [10.0, 30.0, 50.0]
    assert loaded[HASH_A].opted_out_of(VOTE) and not loaded[HASH_A].opted_out_of(ALERTS)
    assert loaded[HASH_A].pending_request("5050", 20.0) == a_events[2]
    assert loaded[HASH_B].opted_out_of(ALERTS)


def test_load_consent_keeps_ledger_order_for_ties(engine: sa.Engine) -> None:
    """Of two events at the same time the one appended later decides."""
    stop = OptOut(Scope.of_short_code("4160"), ev(10.0, keyword="STOP"))
    start = OptIn(Scope.of_short_code("4160"), ev(10.0, keyword="START"), ConsentPurpose.ALL)
    with engine.begin() as conn:
        p.append_consent(conn, HASH_A, None, [stop, start], T0)
        p.append_consent(conn, HASH_B, None, [start], T0)
        p.append_consent(conn, HASH_B, None, [stop], T0)
        loaded = p.load_consent(conn, [HASH_A, HASH_B])
    assert loaded[HASH_A].events == (stop, start) and not loaded[HASH_A].opted_out_of(VOTE)
    assert loaded[HASH_B].events == (start, stop) and loaded[HASH_B].opted_out_of(VOTE)


_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_times = st.one_of(st.sampled_from((0.0, 1.0, 1.5)), st.floats(0.0, 2e9))


@st.composite
def _events(draw: st.DrawFn) -> ConsentEvent:
    at = draw(_times)
    evidence = Evidence(
        at,
        draw(st.sampled_from(("",) + SHORT_CODES)),
        draw(_texts.filter(lambda text: len(text) <= 64)),
        draw(st.none() | st.integers(1, 2**31 - 1)),
        draw(_texts),
    )
    scope = draw(scopes)
    kind = draw(st.sampled_from((OptIn, OptOut, OptInRequested, Confirmed)))
    if kind is OptInRequested:
        return OptInRequested(scope, evidence, at + draw(st.floats(0.0, 1e6)))
    if kind is Confirmed:
        return Confirmed(scope, evidence)
    return kind(scope, evidence, draw(st.sampled_from(ConsentPurpose)))  # type: ignore[no-any-return]


@settings(max_examples=30, deadline=None)
@given(ledger=st.lists(st.lists(_events(), max_size=4), max_size=4))
def test_ledger_round_trips(engine: sa.Engine, ledger: list[list[ConsentEvent]]) -> None:
    """Events appended in batches come back as the state those events give, ties in ledger order."""
    number_hash = uuid.uuid4().hex * 2
    with engine.begin() as conn:
        for batch in ledger:
            p.append_consent(conn, number_hash, None, batch, T0)
        loaded = p.load_consent(conn, [number_hash])
    appended = [event for batch in ledger for event in batch]
    if not appended:
        assert loaded == {}
        return
    expected = ConsentState.from_events(appended)
    assert loaded[number_hash] == expected
    for ref in CAMPAIGNS:
        assert loaded[number_hash].opted_out_of(ref) == expected.opted_out_of(ref)
        assert loaded[number_hash].allows_marketing(ref) == expected.allows_marketing(ref)


# --- attributes and customer profiles ----------------------------------------------------


def test_attributes_are_upserted_and_loaded_in_one_batch(engine: sa.Engine) -> None:
    """The latest value of each attribute wins, with its campaign; long names and values are cut."""
    with engine.begin() as conn:
        ids, (a, b, none) = setup(conn, "+306900000001", "+306900000002", "+306900000003")
        p.declare_attribute(conn, a, "age_band", "18-24", ids["vote"], 1.0)
        p.declare_attribute(conn, a, "age_band", "25-34", ids["quiz"], 2.0)
        p.declare_attribute(conn, a, "postcode", "N1", None, 2.0)
        p.declare_attribute(conn, b, "x" * 70, "v" * 250, None, 3.0)
        loaded = p.load_attributes(conn, [a, b, none])
        row = conn.execute(
            sa.select(subscriber_attributes.c.campaign_id, subscriber_attributes.c.declared_at).where(
                subscriber_attributes.c.subscriber_id == a, subscriber_attributes.c.name == "age_band"
            )
        ).one()
        assert p.load_attributes(conn, []) == {}
    assert loaded == {a: {"age_band": "25-34", "postcode": "N1"}, b: {"x" * 64: "v" * 200}}
    assert tuple(row) == (ids["quiz"], 2.0)


def test_note_participation_counts_mos_and_campaigns(engine: sa.Engine) -> None:
    """Every MO counts; first and last seen widen whatever order MOs arrive in; campaigns count apart."""
    with engine.begin() as conn:
        ids, (sid,) = setup(conn, "+306900000001")
        p.note_participation(conn, sid, ids["vote"], 100.0, 101.0)
        p.note_participation(conn, sid, None, 300.0, 301.0)
        p.note_participation(conn, sid, ids["vote"], 50.0, 302.0)
        p.note_participation(conn, sid, ids["quiz"], 200.0, 303.0)
        profile = conn.execute(sa.select(customer_profiles)).one()
        joined = conn.execute(
            sa.select(customer_campaigns.c.campaign_id, customer_campaigns.c.first_at, customer_campaigns.c.last_at, customer_campaigns.c.mos)
            .order_by(customer_campaigns.c.first_at)
        ).all()
    assert tuple(profile) == (sid, 50.0, 300.0, 4, 3, 303.0)
    assert [tuple(r) for r in joined] == [(ids["vote"], 50.0, 100.0, 2), (ids["quiz"], 200.0, 200.0, 1)]


def test_customer_profile_scores_and_responses(engine: sa.Engine) -> None:
    """Scores come from the profile row; an MT counts as answered once, by the next MO to its
    short code before the next MT received from there."""
    with engine.begin() as conn:
        ids, (sid, other) = setup(conn, "+306900000001", "+306900000002")
        assert p.customer_profile(conn, sid, T0) is None
        for campaign, at in (("vote", T0 - 10 * DAY), (None, T0 - 2 * DAY), ("quiz", T0 - 5 * DAY), ("vote", T0 - 3 * DAY)):
            p.note_participation(conn, sid, None if campaign is None else ids[campaign], at, at)
        p.declare_attribute(conn, sid, "age_band", "18-24", None, T0)

        add_mt(conn, sid, "4160", 100.0)  # answered at 150
        add_mo(conn, sid, "4160", 150.0)
        add_mt(conn, sid, "4160", 200.0)  # answered twice: counts once
        add_mo(conn, sid, "4160", 210.0)
        add_mo(conn, sid, "4160", 220.0)
        add_mt(conn, sid, "4160", 300.0, status="failed")  # never received: neither counts nor ends a window
        add_mt(conn, sid, "4160", 400.0, status="submitted")  # the next MT came before any answer
        add_mo(conn, other, "4160", 450.0)  # someone else
        add_mt(conn, sid, "4160", 500.0, status="expired")  # answered at 520, not by the MO to 5050
        add_mo(conn, sid, "5050", 510.0)
        add_mo(conn, sid, "4160", 520.0)
        add_mo(conn, sid, "5050", 590.0)  # before the MT from 5050
        add_mt(conn, sid, "5050", 600.0)
        add_mt(conn, sid, "4160", 800.0)  # the later of two at the same time takes the answer
        add_mt(conn, sid, "4160", 800.0)
        add_mo(conn, sid, "4160", 800.0)
        add_mt(conn, sid, "4160", 900.0, status="queued")
        add_mo(conn, sid, "4160", 950.0)

        profile = p.customer_profile(conn, sid, T0)
    assert profile is not None
    assert (profile.first_seen_at, profile.last_seen_at, profile.mos, profile.campaign_mos) == (
        T0 - 10 * DAY,
        T0 - 2 * DAY,
        4,
        3,
    )
    assert profile.campaigns == {"vote": (T0 - 10 * DAY, T0 - 3 * DAY, 2), "quiz": (T0 - 5 * DAY, T0 - 5 * DAY, 1)}
    assert profile.attributes == {"age_band": "18-24"}
    assert (profile.mts_received, profile.responses) == (7, 4)
    assert profile.response_rate == pytest.approx(4 / 7)
    assert profile.recency == pytest.approx(1 - 2 / 365)
    assert profile.frequency == pytest.approx(4 / 10 * 30)


def test_customer_profile_score_bounds(engine: sa.Engine) -> None:
    """Recency bottoms out at 0 after a year; frequency counts at least one day."""
    with engine.begin() as conn:
        _, (old, new) = setup(conn, "+306900000001", "+306900000002")
        p.note_participation(conn, old, None, T0 - 400 * DAY, T0)
        p.note_participation(conn, new, None, T0 - 60, T0)
        stale, fresh = p.customer_profile(conn, old, T0), p.customer_profile(conn, new, T0)
    assert stale is not None and fresh is not None
    assert stale.recency == 0.0 and stale.frequency == pytest.approx(30 / 400)
    assert fresh.recency == pytest.approx(1.0, abs=1e-5) and fresh.frequency == 30.0
    assert (fresh.mts_received, fresh.responses, fresh.response_rate) == (0, 0, 0.0)


# --- local profiles ----------------------------------------------------------------------


def test_local_profile_campaigns_unites_every_source(engine: sa.Engine) -> None:
    """State, facts, records, attributes, alerts, participation and sessions each name their campaign."""
    extra = [c.CampaignRow(name, "Radio One", "poll", "5050") for name in ("c5", "c6", "c7", "c8")]
    with engine.begin() as conn:
        ids, (sid, other) = setup(conn, "+306900000001", "+306900000002")
        ids = c.ensure_campaigns(conn, SHEETS + extra, T0)
        assert p.local_profile_campaigns(conn, sid) == {}
        c.save_state(conn, ids["vote"], sid, {"votes": 1}, T0)
        c.add_fact(conn, ids["quiz"], sid, None, "Greece", "likes", T0)
        c.add_record(conn, ids["coupons"], sid, None, "claim", "coupon", 1, T0)
        p.declare_attribute(conn, sid, "age_band", "18-24", ids["alerts"], T0)
        p.declare_attribute(conn, sid, "postcode", "N1", None, T0)
        c.subscribe(conn, ids["c5"], "traffic", sid, T0)
        p.note_participation(conn, sid, ids["c6"], T0, T0)
        c.set_session(conn, "5050", sid, ids["c7"], T0 + 60)
        c.save_state(conn, ids["c8"], other, {}, T0)
        found = p.local_profile_campaigns(conn, sid)
    assert found == {ids[name]: name for name in ("vote", "quiz", "coupons", "alerts", "c5", "c6", "c7")}


def test_erase_local_profile_deletes_and_detaches(engine: sa.Engine) -> None:
    """One campaign forgets the subscriber: its results still add up and claimed codes stay claimed;
    other campaigns and the subscriber's other data stay."""
    with engine.begin() as conn:
        ids, (sid, other) = setup(conn, "+306900000001", "+306900000002")
        vote, quiz = ids["vote"], ids["quiz"]
        mo = add_mo(conn, sid, "4160", T0, campaign_id=vote)
        for cid in (vote, quiz):
            c.save_state(conn, cid, sid, {"n": 1}, T0)
            c.add_fact(conn, cid, sid, mo, "Greece", "likes", T0)
            c.add_fact(conn, cid, sid, None, "Spain", "dislikes", T0)
            c.add_record(conn, cid, sid, mo, "vote", "GRE", 1, T0)
            c.add_record(conn, cid, other, None, "vote", "GRE", 1, T0)
            c.subscribe(conn, cid, "news", sid, T0)
            p.note_participation(conn, sid, cid, T0, T0)
            c.fill_coupon_pool(conn, cid, [f"CODE{cid}"])
            c.claim_coupon(conn, cid, sid, T0)
        c.set_session(conn, "4160", sid, vote, T0 + 60)
        p.declare_attribute(conn, sid, "age_band", "18-24", vote, T0)
        p.declare_attribute(conn, sid, "postcode", "N1", quiz, T0)
        p.declare_attribute(conn, sid, "gender", "f", None, T0)
        totals = c.record_totals(conn, vote)

        counts = p.erase_local_profile(conn, sid, vote)
        assert counts == p.ErasureCounts(
            {
                "campaign_state": 1,
                "profile_facts": 2,
                "sessions": 1,
                "alert_subscriptions": 1,
                "customer_campaigns": 1,
                "subscriber_attributes": 1,
                "campaign_records": 1,
                "coupons": 1,
            }
        )
        assert p.local_profile_campaigns(conn, sid) == {quiz: "quiz"}
        assert c.record_totals(conn, vote) == totals
        detached = conn.execute(
            sa.select(campaign_records.c.subscriber_id, campaign_records.c.mo_id).where(
                campaign_records.c.campaign_id == vote, campaign_records.c.mo_id.is_not(None)
            )
        ).one()
        assert tuple(detached) == (None, mo)
        coupon = conn.execute(sa.select(coupons.c.subscriber_id, coupons.c.claimed_at).where(coupons.c.campaign_id == vote)).one()
        assert tuple(coupon) == (None, T0)
        assert p.load_attributes(conn, [sid]) == {sid: {"postcode": "N1", "gender": "f"}}
        assert count(conn, customer_profiles, customer_profiles.c.subscriber_id == sid) == 1
        assert count(conn, profile_facts, profile_facts.c.campaign_id == quiz) == 2
        assert p.erase_local_profile(conn, sid, vote).rows == dict.fromkeys(counts.rows, 0)


# --- erasure -----------------------------------------------------------------------------


def _subscriber_world(conn: sa.Connection, ids: dict[str, int], sid: int, msisdn: str) -> None:
    """A little of everything the gateway keeps about ``sid``."""
    vote, coupons_id = ids["vote"], ids["coupons"]
    mo = add_mo(conn, sid, "4160", T0, campaign_id=vote)
    reply = add_mt(conn, sid, "4160", T0 + 1, in_reply_to=mo, campaign="vote")
    add_delivered_part(conn, reply, f"id-{sid}", msisdn)
    insert(conn, dlr_events, smsc="smsc1", smsc_message_id=f"lost-{sid}", received_at=T0, matched=False, recipient=msisdn)
    add_mt(conn, sid, "4160", T0 + 2, status="queued", kind="marketing")
    c.save_state(conn, vote, sid, {"voted": "GRE"}, T0)
    c.add_fact(conn, vote, sid, mo, "Greece", "voted for", T0)
    c.add_record(conn, vote, sid, mo, "vote", "GRE", 1, T0)
    c.set_session(conn, "4160", sid, vote, T0 + 60)
    c.fill_coupon_pool(conn, coupons_id, [f"C{sid}"])
    c.claim_coupon(conn, coupons_id, sid, T0)
    c.subscribe(conn, ids["alerts"], "traffic", sid, T0)
    p.note_participation(conn, sid, vote, T0, T0)
    p.declare_attribute(conn, sid, "age_band", "18-24", vote, T0)


def test_erase_subscriber_removes_everything(engine: sa.Engine) -> None:
    """Every row about the subscriber goes or is detached, foreign keys hold, tallies still add
    up, and another subscriber keeps everything."""
    numbers = ("+306900000001", "+306900000002")
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        ids, (sid, other) = setup(conn, *numbers)
        for subscriber, number in ((sid, numbers[0]), (other, numbers[1])):
            _subscriber_world(conn, ids, subscriber, number)
        p.append_consent(conn, HASH_A, sid, [OptIn(Scope.of_campaign(VOTE), ev(T0), ConsentPurpose.MARKETING)], T0)
        p.append_consent(conn, HASH_B, other, [OptOut(ALL, ev(T0, keyword="STOPALL"))], T0)
        totals = c.record_totals(conn, ids["vote"])
        before = {table.name: count(conn, table) for table in metadata.sorted_tables}

    with engine.begin() as conn:
        counts = p.erase_subscriber(conn, sid, HASH_A, keep_opt_outs=True)
    assert counts == p.ErasureCounts(
        {
            "send_recipients": 0,
            "dlr_events": 2,
            "mt_parts": 1,
            "mt_messages": 2,
            "mo_parts": 1,
            "campaign_records": 1,
            "profile_facts": 1,
            "campaign_state": 1,
            "sessions": 1,
            "coupons": 1,
            "alert_subscriptions": 1,
            "customer_campaigns": 1,
            "customer_profiles": 1,
            "subscriber_attributes": 1,
            "mo_messages": 1,
            "consent_events": 1,
            "subscribers": 1,
        },
        kept_opt_outs=0,
    )
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if "subscriber_id" in table.c:
                assert count(conn, table, table.c.subscriber_id == sid) == 0, table.name
        assert count(conn, dlr_events, dlr_events.c.recipient == numbers[0]) == 0
        assert count(conn, subscribers, subscribers.c.id == sid) == 0
        assert p.load_consent(conn, [HASH_A]) == {}
        assert p.customer_profile(conn, sid, T0) is None
        assert c.record_totals(conn, ids["vote"]) == totals
        record = conn.execute(
            sa.select(campaign_records.c.subscriber_id, campaign_records.c.mo_id).where(campaign_records.c.subscriber_id.is_(None))
        ).one()
        assert tuple(record) == (None, None)
        assert count(conn, coupons, coupons.c.subscriber_id.is_(None), coupons.c.claimed_at == T0) == 1
        after = {table.name: count(conn, table) for table in metadata.sorted_tables}
        # Detached rows stay; the other subscriber's rows are all there.
        deleted = {table: n for table, n in counts.rows.items() if table not in ("campaign_records", "coupons")}
        assert after == {name: before[name] - deleted.get(name, 0) for name in before}
        assert p.load_consent(conn, [HASH_B])[HASH_B].opted_out_of(ALERTS)
        assert p.local_profile_campaigns(conn, other) == {ids["vote"]: "vote", ids["alerts"]: "alerts"}


def test_erase_subscriber_keeps_the_standing_opt_outs(engine: sa.Engine) -> None:
    """Only opt-outs that still decide something stay, under the given hash and without the
    subscriber; the number stays opted out of exactly what it was."""
    old_hash = "d" * 64
    radio = Scope.of_owner("Radio One")
    history: list[tuple[str, int | None, ConsentEvent]] = [
        (HASH_A, None, OptOut(ALL, ev(10.0, keyword="STOPALL"))),  # kept by an earlier erasure, then lifted
        (HASH_A, 0, OptIn(ALL, ev(20.0, keyword="START"), ConsentPurpose.ALL)),
        (HASH_A, 0, OptOut(Scope.of_short_code("4160"), ev(30.0, keyword="STOP"))),  # stands
        (HASH_A, 0, OptOut(Scope.of_campaign(ALERTS), ev(40.0, "5050", "STOP ALERTS"))),  # covered by the next
        (HASH_A, 0, OptOut(Scope.of_short_code("5050"), ev(50.0, "5050", "STOP"))),  # stands
        (old_hash, 0, OptOut(Scope.of_owner(COUPONS.owner), ev(55.0, note="imported"))),  # stands, moves to HASH_A
        (HASH_A, 0, OptIn(Scope.of_owner(VOTE.owner), ev(60.0), ConsentPurpose.MARKETING)),
        (HASH_A, 0, OptOut(Scope.of_campaign(VOTE), ev(70.0), ConsentPurpose.MARKETING)),
        (HASH_A, 0, OptOut(radio, ev(80.0))),
        (HASH_A, 0, OptIn(radio, ev(90.0), ConsentPurpose.ALL)),
        (HASH_A, 0, OptInRequested(Scope.of_campaign(QUIZ), ev(100.0), 200.0)),
    ]
    targets: list[Scope | CampaignRef] = [ALL, radio, Scope.of_short_code("4160"), Scope.of_short_code("5050"), Scope.of_owner(COUPONS.owner), *CAMPAIGNS]
    with engine.begin() as conn:
        _, (sid, other) = setup(conn, "+306900000001", "+306900000002")
        for number_hash, subscriber, event in history:
            p.append_consent(conn, number_hash, None if subscriber is None else sid, [event], T0)
        p.append_consent(conn, HASH_B, other, [OptOut(ALL, ev(5.0))], T0)
        before = ConsentState.from_events(event for _, _, event in history)
        counts = p.erase_subscriber(conn, sid, HASH_A, keep_opt_outs=True)
        kept = conn.execute(
            sa.select(consent_events.c.number_hash, consent_events.c.subscriber_id, consent_events.c.at)
            .where(consent_events.c.number_hash != HASH_B)
            .order_by(consent_events.c.id)
        ).all()
        after = p.load_consent(conn, [HASH_A, old_hash, HASH_B])
    assert counts.kept_opt_outs == 3 and counts.rows["consent_events"] == len(history) - 3
    assert [tuple(row) for row in kept] == [(HASH_A, None, 30.0), (HASH_A, None, 50.0), (HASH_A, None, 55.0)]
    assert set(after) == {HASH_A, HASH_B}
    for target in targets:
        assert after[HASH_A].opted_out_of(target) == before.opted_out_of(target), target
    assert after[HASH_A].opted_out_of(VOTE) and after[HASH_A].opted_out_of(ALERTS)
    assert not after[HASH_A].opted_out_of(ALL) and not after[HASH_A].opted_out_of(radio)
    assert after[HASH_B].opted_out_of(ALL)


def test_erase_subscriber_without_keeping_opt_outs(engine: sa.Engine) -> None:
    """Without keep_opt_outs the whole ledger of the number goes, hash-only events included."""
    with engine.begin() as conn:
        _, (sid,) = setup(conn, "+306900000001")
        p.append_consent(conn, HASH_A, None, [OptOut(ALL, ev(1.0))], T0)
        p.append_consent(conn, HASH_A, sid, [OptOut(Scope.of_short_code("4160"), ev(2.0))], T0)
        counts = p.erase_subscriber(conn, sid, HASH_A, keep_opt_outs=False)
        assert count(conn, consent_events) == 0
        assert count(conn, subscribers) == 0
    assert counts.kept_opt_outs == 0 and counts.rows["consent_events"] == 2 and counts.rows["subscribers"] == 1


def test_idle_subscribers_by_last_mo_or_creation(engine: sa.Engine) -> None:
    """Idle means last MO (or creation, without a profile) at or before the cutoff; oldest first."""
    with engine.begin() as conn:
        never = get_or_create_subscriber(conn, "+306900000001", T0 - 100 * DAY)
        recent = get_or_create_subscriber(conn, "+306900000002", T0 - 200 * DAY)
        p.note_participation(conn, recent, None, T0 - 50 * DAY, T0)
        oldest = get_or_create_subscriber(conn, "+306900000003", T0 - 300 * DAY)
        p.note_participation(conn, oldest, None, T0 - 400 * DAY, T0)
        get_or_create_subscriber(conn, "+306900000004", T0)
        assert p.idle_subscribers(conn, T0 - 100 * DAY, 10) == [(oldest, "+306900000003"), (never, "+306900000001")]
        assert p.idle_subscribers(conn, T0 - 100 * DAY, 1) == [(oldest, "+306900000003")]
        assert [sid for sid, _ in p.idle_subscribers(conn, T0 - 50 * DAY, 10)] == [oldest, never, recent]
        assert p.idle_subscribers(conn, T0 - 500 * DAY, 10) == []


# --- export ------------------------------------------------------------------------------


def test_export_subscriber_holds_everything_as_json(engine: sa.Engine) -> None:
    """The export names every message, campaign datum, consent event and audit entry of the
    subscriber, and nothing of anyone else's."""
    number = "+306900000001"
    with engine.begin() as conn:
        ids, (sid, other) = setup(conn, number, "+306900000002")
        _subscriber_world(conn, ids, sid, number)
        _subscriber_world(conn, ids, other, "+306900000002")
        hash_only = OptOut(Scope.of_short_code("5050"), ev(T0 - 10, "5050", "STOP"))
        marketing = OptIn(Scope.of_campaign(VOTE), ev(T0, mo_id=1), ConsentPurpose.MARKETING)
        p.append_consent(conn, HASH_A, None, [hash_only], T0)
        p.append_consent(conn, HASH_A, sid, [marketing], T0)
        p.append_consent(conn, HASH_B, other, [OptOut(ALL, ev(T0))], T0)
        p.append_audit(conn, [audit(1, p.subject_ref(sid)), audit(2, p.subject_ref(other)), audit(3, p.subject_ref(sid))])
        exported = p.export_subscriber(conn, sid, HASH_A, T0 + 5)

    assert json.loads(json.dumps(exported)) == exported
    assert set(exported) == {
        "subscriber",
        "customer_profile",
        "attributes",
        "consent",
        "messages_received",
        "messages_sent",
        "campaigns",
        "audit",
        "exported_at",
    }
    assert exported["subscriber"] == {"msisdn": number, "created_at": T0 - 1000 * DAY}
    assert exported["exported_at"] == T0 + 5
    profile = exported["customer_profile"]
    assert (profile["subscriber_id"], profile["mos"], profile["campaigns"]) == (sid, 1, {"vote": [T0, T0, 1]})
    assert (profile["mts_received"], profile["responses"]) == (1, 0)
    assert exported["attributes"] == {"age_band": {"value": "18-24", "campaign": "vote", "declared_at": T0}}
    assert exported["consent"] == [event_to_dict(hash_only), event_to_dict(marketing)]
    [mo] = exported["messages_received"]
    assert {k: mo[k] for k in ("short_code", "text", "received_at", "route", "campaign")} == {
        "short_code": "4160",
        "text": "VOTE A",
        "received_at": T0,
        "route": "campaign",
        "campaign": "vote",
    }
    sent = exported["messages_sent"]
    assert [(m["source_addr"], m["status"], m["kind"], m["campaign"], m["created_at"]) for m in sent] == [
        ("4160", "delivered", "response", "vote", T0 + 1),
        ("4160", "queued", "marketing", None, T0 + 2),
    ]
    assert exported["campaigns"] == {
        "alerts": {"state": None, "facts": [], "records": [], "coupons": [], "alerts": ["traffic"]},
        "coupons": {
            "state": None,
            "facts": [],
            "records": [],
            "coupons": [{"code": f"C{sid}", "claimed_at": T0, "redeemed_at": None}],
            "alerts": [],
        },
        "vote": {
            "state": {"voted": "GRE"},
            "facts": [{"object": "Greece", "attitude": "voted for", "recorded_at": T0}],
            "records": [{"kind": "vote", "key": "GRE", "value": 1.0, "recorded_at": T0, "withdrawn": False}],
            "coupons": [],
            "alerts": [],
        },
    }
    assert [entry["detail"] for entry in exported["audit"]] == ["entry 1", "entry 3"]
    assert exported["audit"][0] == audit(1, p.subject_ref(sid)).to_dict()


def test_export_of_an_erased_subscriber_keeps_only_the_ledger(engine: sa.Engine) -> None:
    """After erasure with kept opt-outs, an export finds the kept opt-out and nothing else."""
    with engine.begin() as conn:
        ids, (sid,) = setup(conn, "+306900000001")
        _subscriber_world(conn, ids, sid, "+306900000001")
        stop = OptOut(Scope.of_short_code("4160"), ev(T0, keyword="STOP"))
        p.append_consent(conn, HASH_A, sid, [stop], T0)
        p.erase_subscriber(conn, sid, HASH_A, keep_opt_outs=True)
        exported = p.export_subscriber(conn, sid, HASH_A, T0)
    assert exported["subscriber"] is None and exported["customer_profile"] is None
    assert exported["consent"] == [event_to_dict(stop)]
    assert not any(exported[key] for key in ("attributes", "messages_received", "messages_sent", "campaigns", "audit"))


# --- the audit log -----------------------------------------------------------------------


def test_audit_log_chains_appends(engine: sa.Engine) -> None:
    """Appends in separate transactions extend one chain; entries filter by subject; overlong
    text is cut before the digest is taken."""
    long = audit(4, "subscriber:2", who="w" * 300)
    with engine.begin() as conn:
        p.append_audit(conn, [audit(1, "subscriber:1"), audit(2, "subscriber:2")])
        p.append_audit(conn, [])
    with engine.begin() as conn:
        p.append_audit(conn, [audit(3, "subscriber:1"), long])
    with engine.connect() as conn:
        entries = list(p.audit_entries(conn))
        mine = list(p.audit_entries(conn, subject="subscriber:1"))
        check = p.verify_audit(conn)
    assert [record for _, record, _ in entries[:3]] == [audit(1, "subscriber:1"), audit(2, "subscriber:2"), audit(3, "subscriber:1")]
    assert entries[3][1] == attrs.evolve(long, who="w" * 200)
    previous = GENESIS
    for _, record, digest in entries:
        assert digest == chain_digest(previous, record)
        previous = digest
    assert [entry_id for entry_id, _, _ in entries] == sorted(entry_id for entry_id, _, _ in entries)
    assert [record.detail for _, record, _ in mine] == ["entry 1", "entry 3"]
    assert check == p.AuditCheck(entries=4)


def test_verify_audit_of_an_empty_log(engine: sa.Engine) -> None:
    """An empty log is an intact chain of no entries."""
    with engine.connect() as conn:
        assert p.verify_audit(conn) == p.AuditCheck(entries=0)
        assert list(p.audit_entries(conn)) == []


def _copy_of_second(conn: sa.Connection, ids: list[int]) -> None:
    row = conn.execute(sa.select(audit_log).where(audit_log.c.id == ids[1])).one()._asdict()
    del row["id"]
    conn.execute(sa.insert(audit_log).values(**row))


@pytest.mark.parametrize(
    ("tamper", "broken_at", "detail"),
    [
        ("changed", 1, "nothing happened"),
        ("deleted", 1, "entry 3"),
        ("inserted", 4, "entry 2"),
        ("bad kind", 2, None),
    ],
)
def test_verify_audit_names_the_first_tampered_entry(engine: sa.Engine, tamper: str, broken_at: int, detail: str | None) -> None:
    """A changed field, a removed entry, a replayed entry and a row that is no record all break the chain there."""
    with engine.begin() as conn:
        p.append_audit(conn, [audit(n) for n in range(1, 5)])
        ids = [entry_id for entry_id, _, _ in p.audit_entries(conn)]
        assert p.verify_audit(conn) == p.AuditCheck(entries=4)
    with engine.begin() as conn:
        if tamper == "changed":
            conn.execute(sa.update(audit_log).where(audit_log.c.id == ids[1]).values(detail="nothing happened"))
        elif tamper == "deleted":
            conn.execute(sa.delete(audit_log).where(audit_log.c.id == ids[1]))
        elif tamper == "inserted":
            _copy_of_second(conn, ids)
        else:
            conn.execute(sa.update(audit_log).where(audit_log.c.id == ids[2]).values(kind="bogus"))
    with engine.connect() as conn:
        check = p.verify_audit(conn)
        all_ids = [entry_id for (entry_id,) in conn.execute(sa.select(audit_log.c.id).order_by(audit_log.c.id))]
    assert check.broken_id == all_ids[broken_at] and check.entries == broken_at + 1
    if detail is None:
        assert check.broken is None
    else:
        assert check.broken is not None and check.broken.detail == detail


def test_concurrent_audit_appends_keep_one_chain(engine: sa.Engine) -> None:
    """On PostgreSQL a second appender waits for the first to commit, then chains after it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writers never overlap")
    done = threading.Event()

    def second() -> None:
        with engine.begin() as conn:
            p.append_audit(conn, [audit(2)])
        done.set()

    with engine.connect() as first:
        with first.begin():
            p.append_audit(first, [audit(1)])
            thread = threading.Thread(target=second)
            thread.start()
            time.sleep(0.3)
            assert not done.is_set()
        thread.join(10)
    assert done.is_set()
    with engine.connect() as conn:
        assert p.verify_audit(conn) == p.AuditCheck(entries=2)
        assert [record.detail for _, record, _ in p.audit_entries(conn)] == ["entry 1", "entry 2"]
