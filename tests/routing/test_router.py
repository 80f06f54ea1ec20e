"""Routing one MO: precedence, windows, sessions, defaults, labels and totality."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import (
    LABEL_MAX,
    CampaignRule,
    Closed,
    GlobalKeyword,
    GlobalKeywords,
    NoRoute,
    Outcome,
    RoutingTable,
    ShortCodeRule,
    ToCampaign,
    Via,
    route,
)
from tests.routing.strategies import base_keywords, campaign_rules, spellings

DAY = 86400.0
NOW = 1_000 * DAY


def make_table(
    rules: list[CampaignRule], defaults: list[ShortCodeRule] | None = None, **kwargs: Any
) -> RoutingTable:
    """A table that must build without conflicts."""
    table, conflicts = RoutingTable.build(rules, defaults or (), **kwargs)
    assert conflicts == ()
    return table


# A short code with a voting campaign (and a Greek alias), a quiz that reaches subscribers
# through sessions, a default campaign, a campaign that has not started, one that has ended
# and one that is done; another short code with no default.
TABLE = make_table(
    [
        CampaignRule("euro", "4160", ("VOTE", "Ψήφος"), starts=NOW - DAY, ends=NOW + DAY),
        CampaignRule("quiz", "4160", ("QUIZ",), starts=NOW - DAY, ends=NOW + DAY),
        CampaignRule("info", "4160", ("INFO",)),
        CampaignRule("soon", "4160", ("SOON",), starts=NOW + DAY),
        CampaignRule("past", "4160", ("PAST",), ends=NOW - DAY),
        CampaignRule("done", "4160", ("DONE",), running=False),
        CampaignRule("other", "5000", ("OTHER",)),
        CampaignRule("later", "5000", (), starts=NOW + DAY),
    ],
    [ShortCodeRule("4160", "info"), ShortCodeRule("5001", None)],
)


@pytest.mark.parametrize(
    ("short_code", "text", "session", "expected"),
    [
        # global keywords: always first, with or without a session, any case or punctuation
        ("4160", "STOP", None, GlobalKeyword("stop", "STOP", "")),
        ("4160", "stop!", "quiz", GlobalKeyword("stop", "STOP", "")),
        ("4160", " Help ", "quiz", GlobalKeyword("help", "HELP", "")),
        ("9999", "start", None, GlobalKeyword("start", "START", "")),
        ("4160", "unsubscribe please", None, GlobalKeyword("stop", "UNSUBSCRIBE", "please")),
        # "STOP <keyword>" narrows to that keyword's campaign on this short code
        ("4160", "STOP VOTE", None, GlobalKeyword("stop", "STOP", "VOTE", "euro")),
        ("4160", "stop, ψήφος!", None, GlobalKeyword("stop", "STOP", "ψήφος!", "euro")),
        ("4160", "STOP PAST", None, GlobalKeyword("stop", "STOP", "PAST", "past")),
        ("4160", "STOP nothing", None, GlobalKeyword("stop", "STOP", "nothing")),
        ("5000", "STOP VOTE", None, GlobalKeyword("stop", "STOP", "VOTE")),
        # campaign keywords and aliases, in any case and accent, beat an open session
        ("4160", "vote gre", None, ToCampaign("euro", "VOTE", "gre", Via.KEYWORD)),
        ("4160", "#Vote: GRE!", "quiz", ToCampaign("euro", "VOTE", "GRE!", Via.KEYWORD)),
        ("4160", "ΨΗΦΟΣ ΕΛΛΑΔΑ", None, ToCampaign("euro", "Ψήφος", "ΕΛΛΑΔΑ", Via.KEYWORD)),
        ("4160", "ψηφος ελλαδα", None, ToCampaign("euro", "Ψήφος", "ελλαδα", Via.KEYWORD)),
        ("4160", "quiz", "euro", ToCampaign("quiz", "QUIZ", "", Via.KEYWORD)),
        # keywords of campaigns that are not open
        ("4160", "soon x", None, Closed("soon", "SOON", "x")),
        ("4160", "past", "quiz", Closed("past", "PAST", "")),
        ("4160", "DONE 1", None, Closed("done", "DONE", "1")),
        # sticky session: the whole text, before the default
        ("4160", "  Paris,  France ", "quiz", ToCampaign("quiz", "", "Paris, France", Via.SESSION)),
        ("4160", "", "quiz", ToCampaign("quiz", "", "", Via.SESSION)),
        ("4160", "👍", "quiz", ToCampaign("quiz", "", "👍", Via.SESSION)),
        # a session whose campaign is closed, unknown or elsewhere falls through to the default
        ("4160", "Paris", "past", ToCampaign("info", "", "Paris", Via.DEFAULT)),
        ("4160", "Paris", "done", ToCampaign("info", "", "Paris", Via.DEFAULT)),
        ("4160", "Paris", "gone", ToCampaign("info", "", "Paris", Via.DEFAULT)),
        ("4160", "Paris", "other", ToCampaign("info", "", "Paris", Via.DEFAULT)),
        # the default; keywords of another short code are just text here
        ("4160", "hello there", None, ToCampaign("info", "", "hello there", Via.DEFAULT)),
        ("4160", "OTHER", None, ToCampaign("info", "", "OTHER", Via.DEFAULT)),
        # no default: no route
        ("5000", "hello there", None, NoRoute("5000", "hello")),
        ("5000", "", None, NoRoute("5000", "")),
        ("5001", "VOTE", None, NoRoute("5001", "VOTE")),
        ("9999", "!!", "quiz", NoRoute("9999", "")),
        ("5000", "OTHER 2", None, ToCampaign("other", "OTHER", "2", Via.KEYWORD)),
    ],
)
def test_route_precedence(short_code: str, text: str, session: str | None, expected: Outcome) -> None:
    """Global keywords, then campaign keywords, then the session, then the default, then nothing."""
    assert route(TABLE, short_code, text, NOW, session) == expected


def test_closed_default() -> None:
    """A default campaign out of its window answers Closed with the whole text."""
    table = make_table(
        [CampaignRule("later", "5000", (), starts=NOW + DAY)], [ShortCodeRule("5000", "later")]
    )
    assert route(table, "5000", " hi  there ", NOW) == Closed("later", "", "hi there")
    assert route(table, "5000", "hi", NOW + DAY) == ToCampaign("later", "", "hi", Via.DEFAULT)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (NOW - DAY - 1, Closed("euro", "VOTE", "x")),
        (NOW - DAY, ToCampaign("euro", "VOTE", "x", Via.KEYWORD)),
        (NOW + DAY - 0.001, ToCampaign("euro", "VOTE", "x", Via.KEYWORD)),
        (NOW + DAY, Closed("euro", "VOTE", "x")),
    ],
)
def test_window_edges(now: float, expected: Outcome) -> None:
    """A campaign opens at its start, inclusive, and closes at its end, exclusive."""
    assert route(TABLE, "4160", "VOTE x", now) == expected


WEEK = 7 * DAY
QUIZZES = make_table(
    [
        CampaignRule("week2", "4160", ("QUIZ",), starts=2 * WEEK, ends=3 * WEEK),
        CampaignRule("week0", "4160", ("Quiz",), starts=0, ends=WEEK),
        CampaignRule("week5", "4160", ("quiz",), starts=5 * WEEK, ends=6 * WEEK),
        CampaignRule("cancelled", "4160", ("QUIZ",), starts=4 * WEEK, ends=5 * WEEK, running=False),
    ]
)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0.5 * WEEK, ToCampaign("week0", "Quiz", "", Via.KEYWORD)),
        (2.5 * WEEK, ToCampaign("week2", "QUIZ", "", Via.KEYWORD)),
        (5.5 * WEEK, ToCampaign("week5", "quiz", "", Via.KEYWORD)),
        # before all: the next to start
        (-1.0, Closed("week0", "Quiz", "")),
        # between two: the most recently ended
        (1.5 * WEEK, Closed("week0", "Quiz", "")),
        (3.5 * WEEK, Closed("week2", "QUIZ", "")),
        # inside a done campaign's window: that campaign
        (4.5 * WEEK, Closed("cancelled", "QUIZ", "")),
        # after all: the last to end
        (9 * WEEK, Closed("week5", "quiz", "")),
    ],
)
def test_shared_keyword_picks_the_open_or_nearest_campaign(now: float, expected: Outcome) -> None:
    """Campaigns sharing a keyword: the open one takes it, else the nearest in time answers closed."""
    assert route(QUIZZES, "4160", "quiz", now) == expected


def test_done_campaign_does_not_shadow_an_open_one() -> None:
    """A done campaign with an unbounded window leaves the MO to the running campaign."""
    table = make_table(
        [CampaignRule("old", "4160", ("VOTE",), running=False),
         CampaignRule("new", "4160", ("VOTE",), starts=NOW, ends=NOW + DAY)]
    )
    assert route(table, "4160", "vote", NOW) == ToCampaign("new", "VOTE", "", Via.KEYWORD)
    assert route(table, "4160", "vote", NOW + DAY) == Closed("old", "VOTE", "")


def test_stop_aims_at_the_campaign_of_the_next_word_even_when_closed() -> None:
    """STOP followed by a closed campaign's keyword names that campaign."""
    assert route(QUIZZES, "4160", "STOP quiz", 9 * WEEK).campaign == "week5"  # type: ignore[union-attr]
    assert route(QUIZZES, "4160", "STOP quiz", 2.5 * WEEK).campaign == "week2"  # type: ignore[union-attr]


def test_extra_global_kinds_route_before_campaigns() -> None:
    """A configured extra kind is a global keyword on every short code."""
    words = GlobalKeywords(extra={"yes": ("ΝΑΙ", "YES")})
    table = make_table([CampaignRule("a", "4160", ("VOTE",))], global_keywords=words)
    assert route(table, "4160", "Ναι!", NOW, "a") == GlobalKeyword("yes", "ΝΑΙ", "")
    assert route(table, "4160", "HELP", NOW) == GlobalKeyword("help", "HELP", "")


@given(base_keywords().flatmap(lambda base: st.tuples(st.just(base), spellings(base))))
def test_keyword_matches_in_any_case_and_accent(pair: tuple[str, str]) -> None:
    """A subscriber's spelling with any case, accents or final sigma reaches the campaign."""
    base, typed = pair
    table = make_table([CampaignRule("c", "4160", (base.upper(),))], global_keywords=GlobalKeywords(
        stop=(), start=(), help=()))
    assert route(table, "4160", f"  {typed}!! yes ", NOW) == ToCampaign("c", base.upper(), "yes", Via.KEYWORD)


# --- labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "label"),
    [
        (GlobalKeyword("stop", "STOP", ""), "global:stop"),
        (GlobalKeyword("optout-all", "STOPALL", "", "euro"), "global:optout-all"),
        (ToCampaign("euro", "VOTE", "gre", Via.KEYWORD), "campaign:euro"),
        (ToCampaign("quiz", "", "Paris", Via.SESSION), "session:quiz"),
        (ToCampaign("info", "", "hi", Via.DEFAULT), "default:info"),
        (Closed("past", "PAST", ""), "closed:past"),
        (NoRoute("5000", "hello"), "unknown"),
    ],
)
def test_labels(outcome: Outcome, label: str) -> None:
    """Each outcome records a short label naming its kind and campaign."""
    assert outcome.label == label


def test_labels_truncate_long_names() -> None:
    """A label never exceeds LABEL_MAX characters, however long the campaign name."""
    name = "x" * 200
    for outcome in (ToCampaign(name, "", "", Via.SESSION), Closed(name, "", ""),
                    ToCampaign(name, "", "", Via.KEYWORD), GlobalKeyword(name, "W", "")):
        assert len(outcome.label) == LABEL_MAX
        assert outcome.label.endswith("xxx")


# --- totality -----------------------------------------------------------------------------------

OUTCOMES = (GlobalKeyword, ToCampaign, Closed, NoRoute)
short_codes = st.one_of(st.sampled_from(("4160", "5000", "5001", "")), st.text(max_size=8))
sessions = st.one_of(st.none(), st.sampled_from(("euro", "quiz", "past", "done", "other")), st.text(max_size=8))


@given(short_codes, st.text(), st.floats(), sessions)
def test_route_is_total(short_code: str, text: str, now: float, session: str | None) -> None:
    """Any short code, text, time (NaN and infinities too) and session give one outcome with a label."""
    outcome = route(TABLE, short_code, text, now, session)
    assert isinstance(outcome, OUTCOMES)
    assert 0 < len(outcome.label) <= LABEL_MAX
    assert route(TABLE, short_code, text, now, session) == outcome


@given(st.text(alphabet=st.characters(), max_size=20), st.floats(allow_nan=True))
def test_route_is_total_with_shared_keywords(suffix: str, now: float) -> None:
    """Keywords shared by several campaigns route totally at any time, NaN included."""
    outcome = route(QUIZZES, "4160", "quiz" + " " + suffix, now)
    assert isinstance(outcome, (ToCampaign, Closed))


@given(
    campaign_rules(),
    st.sampled_from(("vote", "quiz", "win", "ψηφοσ", "cafe", "nothing")),
    st.sampled_from(("4160", "5000")),
    st.integers(min_value=-2, max_value=16).map(float),
)
def test_route_agrees_with_windows(
    specs: list[dict[str, Any]], word: str, short_code: str, now: float
) -> None:
    """ToCampaign by keyword only for an open campaign; Closed only when none with the keyword is open."""
    table, _ = RoutingTable.build([CampaignRule(**spec) for spec in specs])  # type: ignore[arg-type]
    outcome = route(table, short_code, word.upper() + " x", now)
    candidates = [rule for rule, _spelling in table.entries(short_code, word)]
    open_ones = [rule.campaign for rule in candidates if rule.is_open(now)]
    assert len(open_ones) <= 1
    if isinstance(outcome, ToCampaign):
        assert outcome.via is Via.KEYWORD and [outcome.campaign] == open_ones
    elif isinstance(outcome, Closed):
        assert not open_ones and outcome.campaign in {rule.campaign for rule in candidates}
    else:
        assert outcome == NoRoute(short_code, word.upper()) and not candidates
