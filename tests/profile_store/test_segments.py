"""Segments on SQLite and PostgreSQL: the criteria, consent as the ledger decides it, and the
recipients, MTs and parts a materialisation writes (once per send)."""

from __future__ import annotations

import random
from typing import Any, Sequence

import pytest
import sqlalchemy as sa

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
)
from profile_store import campaigns as c
from profile_store import privacy as p
from profile_store.schema import customer_profiles, mt_messages, mt_parts, send_recipients, sends
from profile_store.segments import MaterialiseResult, Segment, SendTarget, count_segment, materialise_send
from profile_store.subscribers import get_or_create_subscriber

T0 = 1_700_000_000.0
DAY = 86400.0

VOTE = CampaignRef("vote", "Channel 5", "4160")
QUIZ = CampaignRef("quiz", "Channel 5", "4160")
OTHER = CampaignRef("other", "Acme", "5050")
SHEETS = [c.CampaignRow(ref.name, ref.owner, "vote", ref.short_code) for ref in (VOTE, QUIZ, OTHER)]

MARKETING, EVERYTHING = ConsentPurpose.MARKETING, ConsentPurpose.ALL
STOP_CODE = Scope.of_short_code("4160")

Outcome = tuple[str, str | None]
Recipients = dict[int, Outcome]
QUEUED: Outcome = ("queued", None)
OPTED_OUT: Outcome = ("suppressed", "opted_out")
NO_CONSENT: Outcome = ("suppressed", "no_consent")


# --- helpers -------------------------------------------------------------------------------


def campaign_ids(conn: sa.Connection) -> dict[str, int]:
    """The three campaigns, created once."""
    return c.ensure_campaigns(conn, SHEETS, T0 - 1000 * DAY)


def subscriber(conn: sa.Connection, n: int) -> int:
    """Subscriber number ``n``."""
    return get_or_create_subscriber(conn, f"+30690000{n:04d}", T0 - 1000 * DAY)


def new_send(conn: sa.Connection, campaign_id: int, name: str) -> int:
    """A running send of the campaign."""
    values = {
        "campaign_id": campaign_id,
        "name": name,
        "text": "Tonight at 9",
        "status": "running",
        "scheduled_at": T0,
        "targeted": 0,
        "created_at": T0,
        "updated_at": T0,
    }
    return int(conn.execute(sa.insert(sends).values(**values).returning(sends.c.id)).scalar_one())


def target(send_id: int, *, parts: int = 1, priority: int = 10) -> SendTarget:
    """A send of VOTE at T0."""
    return SendTarget(send_id, VOTE.name, VOTE.owner, VOTE.short_code, "Tonight at 9", parts, priority, T0)


def recipients(conn: sa.Connection, send_id: int) -> Recipients:
    """subscriber id -> (status, reason) of the send's recipients."""
    r = send_recipients.c
    rows = conn.execute(sa.select(r.subscriber_id, r.status, r.reason).where(r.send_id == send_id))
    return {sid: (status, reason) for sid, status, reason in rows}


def run(conn: sa.Connection, segment: Segment, name: str) -> Recipients:
    """Materialise ``segment`` as a new send of VOTE; check the count agrees; return its recipients."""
    send_id = new_send(conn, campaign_ids(conn)["vote"], name)
    result = materialise_send(conn, segment, target(send_id))
    found = recipients(conn, send_id)
    assert result.targeted == len(found) == count_segment(conn, segment, target(send_id))
    return found


def hash_of(sid: int, n: int = 0) -> str:
    """A stand-in for the keyed hash of a subscriber's number (``n`` tells numbers of one subscriber apart)."""
    return f"{sid:032d}{n:032d}"


def ev(day: float) -> Evidence:
    """Evidence of an MO to 4160 on ``day`` of the ledger (day 0 is 100 days before T0)."""
    return Evidence(T0 - 100 * DAY + day * DAY, "4160")


def count(conn: sa.Connection, table: sa.Table) -> int:
    """Rows in ``table``."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# --- criteria ------------------------------------------------------------------------------


def population(conn: sa.Connection) -> dict[str, int]:
    """Five subscribers with varied participation, recency, attributes and alert subscriptions."""
    ids = campaign_ids(conn)
    sid = {name: subscriber(conn, n) for n, name in enumerate("abcde")}
    participation = {"a": ["vote"], "b": ["quiz"], "c": ["vote", "quiz"], "e": ["other"]}
    last_seen = {"a": 1, "b": 10, "c": 40, "e": 400}
    attributes = {
        "a": {"age_band": "18-24", "postcode": "10431"},
        "b": {"age_band": "25-34", "postcode": "10599"},
        "c": {"age_band": "18-24", "postcode": "2045"},
        "d": {"postcode": "1%5"},
        "e": {"age_band": "18-24x", "postcode": "SW1A"},
    }
    alerts = {"a": [("vote", "goals")], "b": [("vote", "news")], "e": [("other", "goals")]}
    for name, campaigns_ in participation.items():
        for campaign in campaigns_:
            p.note_participation(conn, sid[name], ids[campaign], T0 - last_seen[name] * DAY, T0)
    for name, days in last_seen.items():
        # The latest MO sets the recency, whatever the participation above wrote.
        conn.execute(
            sa.update(customer_profiles)
            .where(customer_profiles.c.subscriber_id == sid[name])
            .values(last_seen_at=T0 - days * DAY)
        )
    for name, declared in attributes.items():
        for attribute, value in declared.items():
            p.declare_attribute(conn, sid[name], attribute, value, ids["vote"], T0)
    for name, subscriptions in alerts.items():
        for campaign, topic in subscriptions:
            c.subscribe(conn, ids[campaign], topic, sid[name], T0)
    return sid


CRITERIA: list[tuple[dict[str, Any], str]] = [
    ({}, "abcde"),
    ({"alerts_topic": ""}, "ab"),
    ({"alerts_topic": "goals"}, "a"),
    ({"alerts_topic": "weather"}, ""),
    ({"took_part_in": "vote"}, "ac"),
    ({"took_part_in": ("vote", "quiz")}, "abc"),
    ({"took_part_in": ("missing",)}, ""),
    ({"not_in": "vote"}, "bde"),
    ({"not_in": ("vote", "other")}, "bd"),
    ({"last_seen_within_days": 7}, "a"),
    ({"last_seen_within_days": 30}, "ab"),
    ({"attributes": {"age_band": "18-24"}}, "ac"),
    ({"attributes": {"age_band": ("18-24", "25-34")}}, "abc"),
    ({"attributes": {"age_band": "18-24", "postcode": "10431"}}, "a"),
    ({"attributes": {"gender": "f"}}, ""),
    ({"attributes": {"age_band": ()}}, ""),
    ({"attribute_prefixes": {"postcode": "104"}}, "a"),
    ({"attribute_prefixes": {"postcode": ("104", "20")}}, "ac"),
    # % and _ are plain characters in a prefix; the match is case-sensitive on both databases.
    ({"attribute_prefixes": {"postcode": "1%"}}, "d"),
    ({"attribute_prefixes": {"postcode": "1_"}}, ""),
    ({"attribute_prefixes": {"postcode": "sw"}}, ""),
    ({"attribute_prefixes": {"postcode": "SW"}}, "e"),
    ({"took_part_in": "vote", "last_seen_within_days": 30, "attributes": {"age_band": "18-24"}}, "a"),
    ({"not_in": "quiz", "attribute_prefixes": {"postcode": ("104", "1%")}}, "ad"),
    ({"alerts_topic": "", "not_in": "quiz", "attributes": {"age_band": "18-24"}}, "a"),
]


def test_each_criterion_alone_and_combined(engine: sa.Engine) -> None:
    """Each criterion selects exactly its subscribers, alone and combined; the count agrees."""
    with engine.begin() as conn:
        sid = population(conn)
        for i, (criteria, expected) in enumerate(CRITERIA):
            segment = Segment(opted_in=False, **criteria)
            found = run(conn, segment, f"criteria-{i}")
            assert set(found) == {sid[name] for name in expected}, criteria
            assert {status for status, _ in found.values()} <= {"queued"}


def test_count_segment_writes_nothing(engine: sa.Engine) -> None:
    """Counting reads only: no recipient, MT or part appears."""
    with engine.begin() as conn:
        population(conn)
        send_id = new_send(conn, campaign_ids(conn)["vote"], "count")
        assert count_segment(conn, Segment(took_part_in=("vote", "quiz")), target(send_id)) == 3
        assert count_segment(conn, Segment(), target(send_id)) == 5
        assert (count(conn, send_recipients), count(conn, mt_messages), count(conn, mt_parts)) == (0, 0, 0)


# --- consent -------------------------------------------------------------------------------

GRANT = OptIn(Scope.of_campaign(VOTE), ev(1), MARKETING)

#: name -> (the ledger, the outcome for a segment needing an opt-in).
LEDGERS: dict[str, tuple[list[ConsentEvent], Outcome]] = {
    "grant by campaign": ([GRANT], QUEUED),
    "grant by owner": ([OptIn(Scope.of_owner(VOTE.owner), ev(1), MARKETING)], QUEUED),
    "grant for all": ([OptIn(ALL, ev(1), MARKETING)], QUEUED),
    "grant by short code": ([OptIn(STOP_CODE, ev(1), MARKETING)], QUEUED),
    "grant for another campaign": ([OptIn(Scope.of_campaign(OTHER), ev(1), MARKETING)], NO_CONSENT),
    "grant for a sister campaign": ([OptIn(Scope.of_campaign(QUIZ), ev(1), MARKETING)], NO_CONSENT),
    "grant for another owner": ([OptIn(Scope.of_owner(OTHER.owner), ev(1), MARKETING)], NO_CONSENT),
    "no ledger": ([], NO_CONSENT),
    "confirmed": (
        [OptInRequested(Scope.of_campaign(VOTE), ev(1), ev(2).at), Confirmed(Scope.of_campaign(VOTE), ev(1.5))],
        QUEUED,
    ),
    "only requested": ([OptInRequested(Scope.of_campaign(VOTE), ev(1), ev(2).at)], NO_CONSENT),
    "withdrawn": ([GRANT, OptOut(Scope.of_campaign(VOTE), ev(2), MARKETING)], NO_CONSENT),
    "withdrawn by owner": ([GRANT, OptOut(Scope.of_owner(VOTE.owner), ev(2), MARKETING)], NO_CONSENT),
    "withdrawn then granted": (
        [GRANT, OptOut(Scope.of_campaign(VOTE), ev(2), MARKETING), OptIn(Scope.of_owner(VOTE.owner), ev(3), MARKETING)],
        QUEUED,
    ),
    "withdrawn elsewhere": ([GRANT, OptOut(Scope.of_campaign(OTHER), ev(2), MARKETING)], QUEUED),
    "withdrawn before granted": ([OptOut(ALL, ev(0), MARKETING), GRANT], QUEUED),
    "withdrawn at the same time": ([GRANT, OptOut(Scope.of_campaign(VOTE), ev(1), MARKETING)], NO_CONSENT),
    "granted at the same time": ([OptOut(Scope.of_campaign(VOTE), ev(1), MARKETING), GRANT], QUEUED),
    "stop": ([GRANT, OptOut(STOP_CODE, ev(2))], OPTED_OUT),
    "stop without consent": ([OptOut(STOP_CODE, ev(2))], OPTED_OUT),
    "stop all": ([GRANT, OptOut(ALL, ev(2))], OPTED_OUT),
    "stop the campaign": ([GRANT, OptOut(Scope.of_campaign(VOTE), ev(2))], OPTED_OUT),
    "stop the owner": ([GRANT, OptOut(Scope.of_owner(VOTE.owner), ev(2))], OPTED_OUT),
    "stop another short code": ([GRANT, OptOut(Scope.of_short_code("5050"), ev(2))], QUEUED),
    "stop a sister campaign": ([GRANT, OptOut(Scope.of_campaign(QUIZ), ev(2))], QUEUED),
    "stop then start": ([GRANT, OptOut(STOP_CODE, ev(2)), OptIn(STOP_CODE, ev(3), EVERYTHING)], QUEUED),
    "start then stop": ([GRANT, OptIn(STOP_CODE, ev(2), EVERYTHING), OptOut(STOP_CODE, ev(3))], OPTED_OUT),
    "start elsewhere": ([GRANT, OptOut(STOP_CODE, ev(2)), OptIn(Scope.of_short_code("5050"), ev(3), EVERYTHING)], OPTED_OUT),
    "campaign start after a short code stop": (
        [GRANT, OptOut(STOP_CODE, ev(2)), OptIn(Scope.of_campaign(VOTE), ev(3), EVERYTHING)],
        QUEUED,
    ),
    "stop wins over a later grant": ([OptOut(STOP_CODE, ev(0)), GRANT], OPTED_OUT),
    "start grants nothing": ([OptOut(STOP_CODE, ev(0)), OptIn(STOP_CODE, ev(3), EVERYTHING)], NO_CONSENT),
}


def write_ledgers(conn: sa.Connection, ledgers: Sequence[Sequence[ConsentEvent]], first: int = 0) -> list[int]:
    """A new subscriber per ledger, with its events appended in order; returns their ids."""
    sids = []
    for n, ledger in enumerate(ledgers):
        sid = subscriber(conn, first + n)
        p.append_consent(conn, hash_of(sid), sid, list(ledger), T0)
        sids.append(sid)
    return sids


def test_consent_decides_who_is_queued(engine: sa.Engine) -> None:
    """Grants of the campaign, its owner or everything count; a marketing opt-out after them
    suppresses (no_consent); a STOP covering the campaign suppresses (opted_out) until a START."""
    with engine.begin() as conn:
        sids = dict(zip(LEDGERS, write_ledgers(conn, [ledger for ledger, _ in LEDGERS.values()])))
        found = run(conn, Segment(), "consent")
        assert {name: found[sid] for name, sid in sids.items()} == {name: outcome for name, (_, outcome) in LEDGERS.items()}
        # Without the opt-in criterion only a standing STOP suppresses.
        everyone = run(conn, Segment(opted_in=False), "everyone")
        expected = {name: OPTED_OUT if outcome == OPTED_OUT else QUEUED for name, (_, outcome) in LEDGERS.items()}
        assert {name: everyone[sid] for name, sid in sids.items()} == expected


def test_erased_ledger_rows_are_ignored(engine: sa.Engine) -> None:
    """Ledger rows without a subscriber (an erased number's kept STOP) neither suppress nor grant."""
    with engine.begin() as conn:
        granted, bare = write_ledgers(conn, [[GRANT], []])
        p.append_consent(conn, hash_of(granted, 1), None, [OptOut(ALL, ev(5))], T0)
        p.append_consent(conn, hash_of(bare, 1), None, [OptIn(ALL, ev(5), MARKETING)], T0)
        assert run(conn, Segment(), "erased") == {granted: QUEUED, bare: NO_CONSENT}


def test_consent_agrees_with_the_ledger_state_machine(engine: sa.Engine) -> None:
    """Random ledgers of opt-ins and opt-outs (ties included): the SQL outcome is what
    ConsentState says for the campaign."""
    rng = random.Random(4160)
    scopes = [ALL, STOP_CODE, Scope.of_short_code("5050"), Scope.of_owner(VOTE.owner), Scope.of_owner(OTHER.owner)]
    scopes += [Scope.of_campaign(ref) for ref in (VOTE, QUIZ, OTHER)]
    ledgers = []
    for _ in range(120):
        ledger: list[ConsentEvent] = []
        for _ in range(rng.randint(0, 6)):
            kind = rng.choice((OptIn, OptOut))
            ledger.append(kind(rng.choice(scopes), ev(rng.randint(0, 4)), rng.choice((MARKETING, EVERYTHING))))
        ledgers.append(ledger)
    with engine.begin() as conn:
        sids = write_ledgers(conn, ledgers)
        found = run(conn, Segment(), "model")
    for sid, ledger in zip(sids, ledgers):
        state = ConsentState.from_events(ledger)
        if state.opted_out_of(VOTE):
            expected = OPTED_OUT
        elif state.allows_marketing(VOTE):
            expected = QUEUED
        else:
            expected = NO_CONSENT
        assert found[sid] == expected, ledger


# --- what is written -----------------------------------------------------------------------


def test_queued_recipients_get_marketing_mts_with_their_parts(engine: sa.Engine) -> None:
    """Each queued recipient gets one queued marketing MT of the send, with parts_total pending parts."""
    with engine.begin() as conn:
        queued_a, stopped, queued_b = write_ledgers(conn, [[GRANT], LEDGERS["stop"][0], [GRANT]])
        send_id = new_send(conn, campaign_ids(conn)["vote"], "parts")
        result = materialise_send(conn, Segment(), target(send_id, parts=3, priority=7))
        assert result == MaterialiseResult(targeted=3, queued=2, suppressed={"opted_out": 1})
        assert conn.execute(sa.select(sends.c.targeted).where(sends.c.id == send_id)).scalar_one() == 3
        mts = conn.execute(sa.select(mt_messages).order_by(mt_messages.c.subscriber_id)).all()
        parts = conn.execute(sa.select(mt_parts).order_by(mt_parts.c.mt_id, mt_parts.c.part_index)).all()
    assert [mt.subscriber_id for mt in mts] == [queued_a, queued_b]
    for mt in mts:
        assert (mt.kind, mt.send_id, mt.priority, mt.status, mt.parts_total) == ("marketing", send_id, 7, "queued", 3)
        assert (mt.source_addr, mt.campaign, mt.text, mt.attempts) == ("4160", "vote", "Tonight at 9", 0)
        assert (mt.next_attempt_at, mt.created_at, mt.updated_at) == (T0, T0, T0)
        assert mt.registered_delivery is True
        assert (mt.smsc, mt.data_coding, mt.in_reply_to, mt.claimed_by, mt.claim_expires_at, mt.last_error) == (None,) * 6
        assert 0 <= mt.concat_ref <= 255
    assert [(part.mt_id, part.part_index) for part in parts] == [(mt.id, i) for mt in mts for i in (1, 2, 3)]
    assert {(part.status, part.uncertain, part.smsc_message_id) for part in parts} == {("pending", False, None)}
    assert stopped not in {mt.subscriber_id for mt in mts}


def test_materialising_twice_writes_nothing_new(engine: sa.Engine) -> None:
    """A second run of the same send adds no recipient, MT or part; a subscriber who joined
    since is added alone; another send of the same segment gets its own rows."""
    with engine.begin() as conn:
        write_ledgers(conn, [[GRANT], [GRANT], LEDGERS["withdrawn"][0]])
        send_id = new_send(conn, campaign_ids(conn)["vote"], "twice")
        first = materialise_send(conn, Segment(), target(send_id, parts=2))
        written = (count(conn, send_recipients), count(conn, mt_messages), count(conn, mt_parts))
        assert materialise_send(conn, Segment(), target(send_id, parts=2)) == first
        assert (count(conn, send_recipients), count(conn, mt_messages), count(conn, mt_parts)) == written == (3, 2, 4)
        assert first == MaterialiseResult(targeted=3, queued=2, suppressed={"no_consent": 1})

        (late,) = write_ledgers(conn, [[GRANT]], first=10)
        again = materialise_send(conn, Segment(), target(send_id, parts=2))
        assert again == MaterialiseResult(targeted=4, queued=3, suppressed={"no_consent": 1})
        assert conn.execute(sa.select(sa.func.count()).where(mt_messages.c.subscriber_id == late)).scalar_one() == 1
        assert (count(conn, send_recipients), count(conn, mt_messages), count(conn, mt_parts)) == (4, 3, 6)

        other = new_send(conn, campaign_ids(conn)["vote"], "other")
        assert materialise_send(conn, Segment(), target(other)).queued == 3
        assert (count(conn, send_recipients), count(conn, mt_messages), count(conn, mt_parts)) == (8, 6, 9)


def test_among_narrows_the_segment_to_given_subscribers(engine: sa.Engine) -> None:
    """A send-again selects among the subscribers a SELECT names (here: the first send's MTs
    but one); the criteria and consent still apply."""
    with engine.begin() as conn:
        a, b, withdrawn, d = write_ledgers(conn, [[GRANT], [GRANT], LEDGERS["withdrawn"][0], [GRANT]])
        first = new_send(conn, campaign_ids(conn)["vote"], "first")
        materialise_send(conn, Segment(opted_in=False), target(first))
        m = mt_messages.c
        among = sa.select(m.subscriber_id).where(m.send_id == first, m.subscriber_id != d)
        again = new_send(conn, campaign_ids(conn)["vote"], "again")
        result = materialise_send(conn, Segment(), target(again), among)
        assert recipients(conn, again) == {a: QUEUED, b: QUEUED, withdrawn: NO_CONSENT}
        assert result.targeted == count_segment(conn, Segment(), target(again), among) == 3
        assert conn.execute(sa.select(sa.func.count()).where(m.send_id == again)).scalar_one() == 2


def test_parts_total_must_be_sendable(engine: sa.Engine) -> None:
    """An MT takes 1 to 255 parts."""
    with engine.begin() as conn:
        send_id = new_send(conn, campaign_ids(conn)["vote"], "bad")
        for parts in (0, 256):
            with pytest.raises(ValueError):
                materialise_send(conn, Segment(), target(send_id, parts=parts))
