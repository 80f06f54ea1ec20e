"""The consent ledger's state machine: scopes, derivation, STOP/START/YES, serialisation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from permissions.consent import (
    ALL,
    CONFIRM_KIND,
    CampaignRef,
    ConsentPurpose,
    ConsentState,
    Confirmed,
    Evidence,
    KeywordDecision,
    OptIn,
    OptInRequested,
    OptOut,
    ReplyKind,
    Scope,
    ScopeKind,
    decide_keyword,
    event_from_dict,
    event_to_dict,
    request_opt_in,
)
from tests.permissions.strategies import (
    CAMPAIGNS,
    SHORT_CODES,
    deterministic,
    evidence,
    known_campaigns,
    marketing_events,
    scopes,
)

VOTE, QUIZ, COUPONS, ALERTS = CAMPAIGNS  # 4160 C5, 4160 C5, 4160 Acme, 5050 Acme
HOUR = 3600.0


def state(*events: Any) -> ConsentState:
    return ConsentState.from_events(events)


def stop(at: float, campaign: CampaignRef | None = None, code: str = "4160", word: str = "STOP") -> OptOut:
    """The event a STOP MO appends."""
    decision = decide_keyword("stop", word, campaign, ConsentState.empty(), evidence(at, code, word))
    (event,) = decision.events
    assert isinstance(event, OptOut)
    return event


def start(at: float, campaign: CampaignRef | None = None, code: str = "4160") -> OptIn:
    """The event a START MO appends."""
    (event,) = decide_keyword("start", "START", campaign, ConsentState.empty(), evidence(at, code, "START")).events
    assert isinstance(event, OptIn)
    return event


def opt_in(at: float, campaign: CampaignRef) -> OptIn:
    return OptIn(Scope.of_campaign(campaign), evidence(at, campaign.short_code, "JOIN"))


# --- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "covered"),
    [
        (ALL, {"vote", "quiz", "coupons", "alerts"}),
        (Scope.of_short_code("4160"), {"vote", "quiz", "coupons"}),
        (Scope.of_short_code("5050"), {"alerts"}),
        (Scope.of_owner("Channel 5 Interactive"), {"vote", "quiz"}),
        (Scope.of_owner("Acme Stores Marketing"), {"coupons", "alerts"}),
        (Scope.of_campaign(VOTE), {"vote"}),
        (Scope.of_owner("Nobody"), set()),
    ],
)
def test_what_a_scope_covers(scope: Scope, covered: set[str]) -> None:
    """Everything covers all; a short code its campaigns; an owner its campaigns; a campaign itself."""
    assert {c.name for c in CAMPAIGNS if scope.covers(Scope.of_campaign(c))} == covered
    assert scope.covers(scope) and scope.same(scope)


def test_scopes_do_not_cover_across_kinds() -> None:
    """A short code does not cover an owner, nor the other way round; only ALL covers ALL."""
    code, owner = Scope.of_short_code("4160"), Scope.of_owner("Acme Stores Marketing")
    assert not code.covers(owner) and not owner.covers(code)
    assert not code.covers(ALL) and not Scope.of_campaign(VOTE).covers(code)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "short_code"},
        {"kind": "owner", "owner": " "},
        {"kind": "campaign", "campaign": "vote", "owner": "A"},
        {"kind": "all", "short_code": "4160"},
        {"kind": "owner", "owner": "A", "campaign": "vote"},
        {"kind": "galaxy"},
    ],
)
def test_scope_fields_must_fit_the_kind(kwargs: dict[str, Any]) -> None:
    """Each kind has exactly its own fields."""
    with pytest.raises(ValueError):
        Scope(**kwargs)


def test_scopes_print_for_operators() -> None:
    assert [str(s) for s in (ALL, Scope.of_short_code("4160"), Scope.of_owner("A"), Scope.of_campaign(VOTE))] == [
        "all",
        "short code 4160",
        "owner 'A'",
        "campaign 'vote'",
    ]


# --- derivation ------------------------------------------------------------------------------------


def test_no_ledger_no_consent() -> None:
    """A stranger may get responses but no marketing."""
    empty = ConsentState.empty()
    assert all(empty.allows_response(c) and not empty.allows_marketing(c) for c in CAMPAIGNS)
    assert not empty.opted_out_of(ALL)


def test_events_are_ordered_by_time_ties_in_ledger_order() -> None:
    """The state does not depend on the order rows come back in, only on time (then ledger order)."""
    a, b, c = opt_in(5, VOTE), stop(1), start(5)
    derived = state(a, b, c)
    assert derived.events == (b, a, c)
    assert derived.allows_marketing(VOTE)
    # The same instant: the ledger order decides.
    assert not state(start(5), stop(5)).allows_response(VOTE)
    assert state(stop(5), start(5)).allows_response(VOTE)


@pytest.mark.parametrize(
    ("events", "blocked"),
    [
        ([stop(1)], {"vote", "quiz", "coupons"}),
        ([stop(1, code="5050")], {"alerts"}),
        ([stop(1, word="STOPALL")], {"vote", "quiz", "coupons", "alerts"}),
        ([stop(1, word="stopall", code="5050")], {"vote", "quiz", "coupons", "alerts"}),
        ([stop(1, VOTE)], {"vote"}),
        ([stop(1, VOTE), stop(2, ALERTS, code="5050")], {"vote", "alerts"}),
        ([stop(1), start(2)], set()),
        ([stop(1, VOTE), start(2)], set()),
        ([stop(1), start(2, VOTE)], {"quiz", "coupons"}),
        ([stop(1), start(2, VOTE), stop(3)], {"vote", "quiz", "coupons"}),
        ([stop(1, VOTE), start(2, QUIZ)], {"vote"}),
        ([stop(1, word="STOPALL"), start(2)], {"alerts"}),
        ([stop(1, word="STOPALL"), start(2, code="5050")], {"vote", "quiz", "coupons"}),
        ([OptOut(Scope.of_owner("Acme Stores Marketing"), evidence(1))], {"coupons", "alerts"}),
        ([OptOut(Scope.of_owner("Acme Stores Marketing"), evidence(1), ConsentPurpose.MARKETING)], set()),
    ],
)
def test_opt_outs_block_what_they_cover_until_start(events: list[Any], blocked: set[str]) -> None:
    """The latest STOP or START covering a campaign decides whether it is blocked."""
    derived = state(*events)
    assert {c.name for c in CAMPAIGNS if derived.opted_out_of(c)} == blocked
    assert {c.name for c in CAMPAIGNS if not derived.allows_response(c)} == blocked


@deterministic
@given(marketing_events(0, 100), marketing_events(101, 200), st.sampled_from(SHORT_CODES), st.booleans())
def test_stop_wins_over_earlier_and_later_opt_ins(before: list[Any], after: list[Any], code: str, everything: bool) -> None:
    """After a STOP, no marketing event (earlier or later) lets a marketing MT or a response through."""
    derived = state(*before, stop(100.5, code=code, word="STOPALL" if everything else "STOP"), *after)
    for campaign in CAMPAIGNS:
        if everything or campaign.short_code == code:
            assert not derived.allows_marketing(campaign)
            assert not derived.allows_response(campaign)
    if everything:
        assert derived.opted_out_of(ALL)


@deterministic
@given(marketing_events(0, 100), st.sampled_from(SHORT_CODES), known_campaigns)
def test_start_restores_what_stop_removed(before: list[Any], code: str, campaign: CampaignRef) -> None:
    """STOP then START leaves every campaign as it was before the STOP."""
    original = state(*before)
    restarted = state(*before, stop(100.5, code=code), start(101, code=code))
    assert restarted.allows_marketing(campaign) == original.allows_marketing(campaign)
    assert restarted.allows_response(campaign) == original.allows_response(campaign)
    again = state(*before, stop(100.5, campaign), start(101, campaign))
    assert again.allows_marketing(campaign) == original.allows_marketing(campaign)


@deterministic
@given(marketing_events(0, 100), known_campaigns, known_campaigns)
def test_stop_keyword_affects_that_campaign_only(before: list[Any], stopped: CampaignRef, other: CampaignRef) -> None:
    """STOP <keyword> blocks its campaign and changes nothing for the others."""
    original = state(*before)
    derived = state(*before, stop(100.5, stopped, code=stopped.short_code))
    assert not derived.allows_marketing(stopped) and not derived.allows_response(stopped)
    if other != stopped:
        assert derived.allows_marketing(other) == original.allows_marketing(other)
        assert derived.allows_response(other)


def test_marketing_opt_ins_and_opt_outs_latest_wins() -> None:
    """An owner-wide marketing opt-out withdraws earlier campaign opt-ins; a later one re-grants."""
    owner_out = OptOut(Scope.of_owner("Acme Stores Marketing"), evidence(2), ConsentPurpose.MARKETING)
    derived = state(opt_in(1, COUPONS), opt_in(1, ALERTS), owner_out)
    assert not derived.allows_marketing(COUPONS) and not derived.allows_marketing(ALERTS)
    assert derived.allows_response(COUPONS)
    assert derived.with_events([opt_in(3, ALERTS)]).allows_marketing(ALERTS)
    assert not derived.with_events([opt_in(3, ALERTS)]).allows_marketing(COUPONS)
    owner_in = OptIn(Scope.of_owner("Channel 5 Interactive"), evidence(1))
    assert state(owner_in).allows_marketing(VOTE) and state(owner_in).allows_marketing(QUIZ)
    assert state(owner_in).deciding_consent(VOTE) == owner_in


def test_start_grants_no_new_marketing_consent() -> None:
    """START lifts a block; it is no marketing opt-in."""
    derived = state(stop(1), start(2))
    assert all(derived.allows_response(c) and not derived.allows_marketing(c) for c in CAMPAIGNS)


def test_the_ledger_shows_why() -> None:
    """The deciding events are there to report (MYDATA, audits)."""
    the_stop = stop(7, VOTE)
    derived = state(opt_in(1, VOTE), the_stop)
    assert derived.deciding_opt_out(VOTE) == the_stop
    assert derived.deciding_opt_out(QUIZ) is None
    assert derived.deciding_consent(VOTE) == opt_in(1, VOTE)


# --- confirmed opt-in ---------------------------------------------------------------------------------


def requested(at: float, campaign: CampaignRef = COUPONS, window: float = 24 * HOUR) -> OptInRequested:
    return request_opt_in(campaign, evidence(at, campaign.short_code, "JOIN"), window)


def yes(at: float, code: str = "4160", campaign: CampaignRef | None = None, ledger: ConsentState | None = None) -> KeywordDecision:
    return decide_keyword(CONFIRM_KIND, "YES", campaign, ledger or ConsentState.empty(), evidence(at, code, "YES"))


@pytest.mark.parametrize(
    ("delay", "confirmed"),
    [(0.0, True), (60.0, True), (24 * HOUR, True), (24 * HOUR + 1, False), (30 * 24 * HOUR, False)],
)
def test_a_yes_within_the_window_confirms(delay: float, confirmed: bool) -> None:
    """YES confirms the pending request until it expires, not after."""
    ledger = state(requested(1000))
    assert not ledger.allows_marketing(COUPONS)
    decision = yes(1000 + delay, ledger=ledger)
    assert decision.reply is (ReplyKind.CONFIRMED if confirmed else ReplyKind.NOTHING_TO_CONFIRM)
    assert ledger.with_events(decision.events).allows_marketing(COUPONS) is confirmed


def test_a_late_confirmation_in_the_ledger_confirms_nothing() -> None:
    """Even if a late Confirmed reaches the ledger, the derivation ignores it."""
    late = Confirmed(Scope.of_campaign(COUPONS), evidence(1000 + 25 * HOUR))
    derived = state(requested(1000), late)
    assert not derived.allows_marketing(COUPONS)
    assert derived.ignored == (late,)
    assert state(late).ignored == (late,)


def test_yes_from_another_short_code_or_before_the_request_confirms_nothing() -> None:
    ledger = state(requested(1000))
    assert yes(1001, code="5050", ledger=ledger).events == ()
    assert yes(999, ledger=ledger).events == ()
    assert ledger.pending_request("4160", 1001) == requested(1000)


def test_stop_voids_a_pending_request() -> None:
    """A STOP covering the request cancels it: a YES after the STOP confirms nothing."""
    ledger = state(requested(1000), stop(1010))
    assert yes(1020, ledger=ledger).reply is ReplyKind.NOTHING_TO_CONFIRM
    # A STOP elsewhere does not.
    other = state(requested(1000), stop(1010, code="5050"))
    assert yes(1020, ledger=other).reply is ReplyKind.CONFIRMED


def test_yes_confirms_the_latest_request_or_the_one_named() -> None:
    """Two pending requests on one short code: YES takes the latest, YES <keyword> the one named."""
    ledger = state(requested(1000, COUPONS), requested(1005, VOTE))
    assert yes(1010, ledger=ledger).scope == Scope.of_campaign(VOTE)
    assert yes(1010, campaign=COUPONS, ledger=ledger).scope == Scope.of_campaign(COUPONS)
    confirmed = ledger.with_events(yes(1010, ledger=ledger).events)
    assert confirmed.allows_marketing(VOTE) and not confirmed.allows_marketing(COUPONS)
    # Once confirmed, the request is no longer pending.
    assert yes(1020, campaign=VOTE, ledger=confirmed).reply is ReplyKind.NOTHING_TO_CONFIRM


def test_a_new_request_replaces_the_old_one() -> None:
    ledger = state(requested(1000, window=10), requested(2000, window=10))
    assert yes(1005, ledger=ledger).reply is ReplyKind.NOTHING_TO_CONFIRM
    assert yes(2005, ledger=ledger).reply is ReplyKind.CONFIRMED


def test_requests_validate_their_window() -> None:
    with pytest.raises(ValueError):
        request_opt_in(COUPONS, evidence(10), -1)
    with pytest.raises(ValueError):
        OptInRequested(Scope.of_campaign(COUPONS), evidence(10), 9)


# --- keywords --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "word", "campaign", "scope", "event", "reply"),
    [
        ("stop", "STOP", None, Scope.of_short_code("4160"), OptOut, ReplyKind.STOP),
        ("stop", "QUIT", None, Scope.of_short_code("4160"), OptOut, ReplyKind.STOP),
        ("stop", "STOP", VOTE, Scope.of_campaign(VOTE), OptOut, ReplyKind.STOP),
        ("stop", "STOPALL", None, ALL, OptOut, ReplyKind.STOP),
        ("stop", "StopAll", VOTE, ALL, OptOut, ReplyKind.STOP),
        ("start", "START", None, Scope.of_short_code("4160"), OptIn, ReplyKind.START),
        ("start", "START", VOTE, Scope.of_campaign(VOTE), OptIn, ReplyKind.START),
        ("help", "HELP", None, None, None, ReplyKind.HELP),
        ("help", "HELP", VOTE, None, None, ReplyKind.HELP),
        (CONFIRM_KIND, "YES", None, None, None, ReplyKind.NOTHING_TO_CONFIRM),
        ("mydata", "MYDATA", None, None, None, None),
    ],
)
def test_decide_keyword(kind: str, word: str, campaign: CampaignRef | None, scope: Scope | None, event: type | None, reply: ReplyKind | None) -> None:
    """Each global keyword maps to its events and its one reply."""
    ev = evidence(10, "4160", word, mo_id=77)
    decision = decide_keyword(kind, word, campaign, ConsentState.empty(), ev)
    assert decision.reply is reply
    assert decision.scope == scope
    if event is None:
        assert decision.events == ()
    else:
        (made,) = decision.events
        assert type(made) is event and made.scope == scope and made.evidence == ev and made.purpose is ConsentPurpose.ALL


@deterministic
@given(marketing_events(0, 100), st.sampled_from(("STOP", "END", "STOPALL")), st.one_of(st.none(), known_campaigns), st.integers(1, 3))
def test_each_stop_gets_exactly_one_confirmation(before: list[Any], word: str, campaign: CampaignRef | None, repeats: int) -> None:
    """Every STOP MO, repeated or not, appends one opt-out and gets one STOP reply."""
    ledger = state(*before)
    code = campaign.short_code if campaign else "4160"
    for i in range(repeats):
        decision = decide_keyword("stop", word, campaign, ledger, evidence(200 + i, code, word))
        assert decision.reply is ReplyKind.STOP and len(decision.events) == 1
        ledger = ledger.with_events(decision.events)
        assert decision.scope is not None and ledger.opted_out_of(decision.scope)


def test_a_keyword_without_campaign_needs_the_short_code() -> None:
    with pytest.raises(ValueError):
        decide_keyword("stop", "STOP", None, ConsentState.empty(), Evidence(1.0))


def test_all_words_are_configurable() -> None:
    decision = decide_keyword("stop", "ΣΤΟΠΟΛΑ", None, ConsentState.empty(), evidence(1), all_words=("ΣΤΟΠΟΛΑ",))
    assert decision.scope == ALL
    assert decide_keyword("stop", "STOPALL", None, ConsentState.empty(), evidence(1), all_words=()).scope == Scope.of_short_code("4160")


# --- the ledger's rows -------------------------------------------------------------------------------


@deterministic
@given(marketing_events(0, 100), scopes)
def test_events_round_trip_through_dicts(events: list[Any], scope: Scope) -> None:
    """event_to_dict / event_from_dict are inverse (what the store keeps is the whole event)."""
    events = events + [OptOut(scope, Evidence(5.5, "4160", "STOP", 3, "note")), OptIn(scope, evidence(6), "all")]
    for event in events:
        assert event_from_dict(event_to_dict(event)) == event
    assert ConsentState.from_events(event_from_dict(event_to_dict(e)) for e in events) == ConsentState.from_events(events)


@pytest.mark.parametrize(
    "data",
    [{}, {"event": "opt_sideways", "scope": {"kind": "all"}, "evidence": {"at": 1}}, {"event": "opt_in", "scope": {"kind": "all"}}],
)
def test_event_from_dict_refuses_other_data(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        event_from_dict(data)


def test_state_rejects_other_values() -> None:
    with pytest.raises(TypeError):
        ConsentState.from_events([object()])  # type: ignore[list-item]
    assert ScopeKind("campaign") is ScopeKind.CAMPAIGN


_FIELD = st.sampled_from(["", " ", "4160", "Channel 5", "vote"])


@given(short_code=_FIELD, owner=_FIELD, name=_FIELD)
def test_scope_constructors_give_what_the_class_gives_and_refuse_what_it_refuses(short_code: str, owner: str, name: str) -> None:
    """One shared instance per value, equal to a scope built directly; a missing field still raises."""

    def built(kind: ScopeKind, **fields: str) -> Scope | type[ValueError]:
        try:
            return Scope(kind, **fields)
        except ValueError:
            return ValueError

    def given_by(constructor: Any, *args: Any) -> Scope | type[ValueError]:
        try:
            first = constructor(*args)
        except ValueError:
            return ValueError
        assert constructor(*args) is first
        return first

    assert given_by(Scope.of_short_code, short_code) == built(ScopeKind.SHORT_CODE, short_code=short_code)
    assert given_by(Scope.of_owner, owner) == built(ScopeKind.OWNER, owner=owner)
    assert given_by(lambda: Scope.of_campaign(CampaignRef(name, owner, short_code))) == built(
        ScopeKind.CAMPAIGN, short_code=short_code, owner=owner, campaign=name
    )
    for kind in ScopeKind:
        # The ledger's stored fields, whatever the kind: those it does not take must be empty.
        assert given_by(Scope.of, str(kind), short_code, owner, name) == built(kind, short_code=short_code, owner=owner, campaign=name)
