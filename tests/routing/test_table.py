"""Building the routing table: rule validation, global keywords, conflicts and defaults."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.normalise import fold
from routing.table import (
    CampaignRule,
    Conflict,
    ConflictReason,
    Entry,
    GlobalKeywords,
    KeywordSlot,
    RoutingTable,
    ShortCodeRule,
)
from tests.routing.strategies import campaign_rules


def rule(name: str, *keywords: str, short_code: str = "4160", **kwargs: Any) -> CampaignRule:
    """A campaign rule whose source is the campaign's name plus ``.toml``."""
    kwargs.setdefault("source", f"{name}.toml")
    return CampaignRule(name, short_code, keywords, **kwargs)


# --- CampaignRule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"campaign": "", "short_code": "4160", "keywords": ("VOTE",)},
        {"campaign": "a", "short_code": "", "keywords": ("VOTE",)},
        {"campaign": "a", "short_code": "4160", "keywords": ("VOTE NOW",)},
        {"campaign": "a", "short_code": "4160", "keywords": ("E-VOTE",)},
        {"campaign": "a", "short_code": "4160", "keywords": ("",)},
        {"campaign": "a", "short_code": "4160", "keywords": (" VOTE",)},
        {"campaign": "a", "short_code": "4160", "keywords": ("VOTE", "vote")},
        {"campaign": "a", "short_code": "4160", "keywords": ("Ψήφος", "ΨΗΦΟΣ")},
        {"campaign": "a", "short_code": "4160", "keywords": (), "starts": 10, "ends": 10},
        {"campaign": "a", "short_code": "4160", "keywords": (), "starts": 10, "ends": 5},
        {"campaign": "a", "short_code": "4160", "keywords": (), "starts": math.nan},
        {"campaign": "a", "short_code": "4160", "keywords": (), "ends": math.inf},
    ],
)
def test_campaign_rule_rejects_invalid_fields(kwargs: dict[str, Any]) -> None:
    """Empty names, multi-word or repeated keywords and empty or non-finite windows raise ValueError."""
    with pytest.raises(ValueError):
        CampaignRule(**kwargs)


def test_campaign_rule_accepts_lists_and_int_times() -> None:
    """Keywords given as a list become a tuple and integer times become floats."""
    made = CampaignRule("a", "4160", ["VOTE", "Ψήφος"], starts=1, ends=2)  # type: ignore[arg-type]
    assert made.keywords == ("VOTE", "Ψήφος")
    assert made.starts == 1.0 and isinstance(made.starts, float)
    assert CampaignRule("a", "4160", ()).keywords == ()


@pytest.mark.parametrize(
    ("starts", "ends", "running", "now", "is_open"),
    [
        (10, 20, True, 9.999, False),
        (10, 20, True, 10, True),
        (10, 20, True, 19.999, True),
        (10, 20, True, 20, False),
        (None, 20, True, -1e12, True),
        (10, None, True, 1e12, True),
        (None, None, True, 0, True),
        (None, None, False, 0, False),
        (10, 20, False, 15, False),
        (10, 20, True, math.nan, False),
    ],
)
def test_is_open_is_running_and_inside_the_half_open_window(
    starts: float | None, ends: float | None, running: bool, now: float, is_open: bool
) -> None:
    """A campaign is open when running and ``starts <= now < ends``."""
    assert rule("a", starts=starts, ends=ends, running=running).is_open(now) is is_open


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ((0, 10), (10, 20), False),
        ((0, 10), (9, 20), True),
        ((0, 10), (2, 3), True),
        ((None, 10), (10, None), False),
        ((None, 10), (9, None), True),
        ((None, None), (100, 200), True),
        ((5, None), (0, 5), False),
    ],
)
def test_overlaps_is_symmetric_on_half_open_windows(
    first: tuple[float | None, float | None], second: tuple[float | None, float | None], overlap: bool
) -> None:
    """Windows overlap when they share an instant; touching ends do not overlap."""
    a = rule("a", starts=first[0], ends=first[1])
    b = rule("b", starts=second[0], ends=second[1])
    assert a.overlaps(b) is overlap
    assert b.overlaps(a) is overlap


# --- GlobalKeywords -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "kind"),
    [("STOP", "stop"), ("stop", "stop"), ("Stop", "stop"), ("unsubscribe", "stop"),
     ("STOPALL", "stop"), ("start", "start"), ("Help", "help"), ("vote", None), ("", None)],
)
def test_default_global_keywords(word: str, kind: str | None) -> None:
    """The default global keywords are found whatever their case."""
    assert GlobalKeywords().kind_of(word) == kind


def test_extra_global_kinds_are_matched_with_their_spelling() -> None:
    """Extra kinds are looked up like the built-in ones and report the configured word."""
    words = GlobalKeywords(extra={"yes": ["ΝΑΙ", "YES"], "optout-all": ("STOPALL2",)}, stop=("STOP",))
    assert words.kind_of("ναι") == "yes"
    assert words.match("Yes") == ("yes", "YES")
    assert words.kind_of("stopall2") == "optout-all"
    assert words.kind_of("STOPALL") is None
    assert dict(words.extra) == {"yes": ("ΝΑΙ", "YES"), "optout-all": ("STOPALL2",)}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"extra": {"yes": ("stop",)}},
        {"help": ("HELP", "Stop")},
        {"start": ("ΝΑΙ",), "extra": {"yes": ("ναι",)}},
        {"extra": {"stop": ("HALT",)}},
        {"extra": {"": ("HALT",)}},
        {"help": ("HELP ME",)},
    ],
)
def test_global_keywords_reject_ambiguous_words(kwargs: dict[str, Any]) -> None:
    """A word in two kinds, a reused built-in kind or a multi-word keyword raises ValueError."""
    with pytest.raises(ValueError):
        GlobalKeywords(**kwargs)


def test_global_keywords_are_values() -> None:
    """Equal configurations compare equal and hash alike; a repeat within one kind is accepted."""
    first = GlobalKeywords(stop=("STOP", "stop"), extra={"yes": ("YES",)})
    second = GlobalKeywords(stop=("STOP", "stop"), extra={"yes": ("YES",)})
    assert first == second and hash(first) == hash(second)
    assert first != GlobalKeywords(stop=("STOP", "stop"), extra={"yes": ("OK",)})


# --- build: conflicts ---------------------------------------------------------------------------


def test_overlap_keeps_the_earlier_rule_and_names_both_files() -> None:
    """The later of two overlapping campaigns is rejected with a message naming both sheets."""
    table, conflicts = RoutingTable.build(
        [rule("euro-a", "VOTE", starts=0, ends=100), rule("euro-b", "VOTE", starts=50, ends=150)]
    )
    assert table.campaigns == ("euro-a",)
    assert conflicts == (Conflict("4160", "VOTE", "euro-a", "euro-a.toml", "euro-b", "euro-b.toml"),)
    assert str(conflicts[0]) == (
        "keyword 'VOTE' on 4160: euro-b.toml (euro-b) overlaps euro-a.toml (euro-a) in time"
    )


def test_rejected_rule_loses_all_its_keywords() -> None:
    """A campaign rejected for one keyword is routed by none of its aliases."""
    table, conflicts = RoutingTable.build([rule("a", "VOTE"), rule("b", "QUIZ", "vote")])
    assert table.campaigns == ("a",)
    assert [c.keyword for c in conflicts] == ["vote"]
    assert table.entries("4160", "QUIZ") == ()


def test_keywords_collide_after_folding() -> None:
    """Differently accented and cased spellings of one keyword collide."""
    _table, conflicts = RoutingTable.build([rule("a", "Ψήφος"), rule("b", "ΨΗΦΟΣ")])
    assert [(c.kept, c.rejected, c.keyword) for c in conflicts] == [("a", "b", "ΨΗΦΟΣ")]


@pytest.mark.parametrize(
    "second",
    [
        rule("b", "VOTE", starts=100, ends=200),
        rule("b", "VOTE", short_code="5000"),
        rule("b", "POLL"),
    ],
)
def test_no_conflict_without_shared_keyword_code_and_time(second: CampaignRule) -> None:
    """Disjoint windows, another short code or another keyword leave both campaigns routed."""
    table, conflicts = RoutingTable.build([rule("a", "VOTE", starts=0, ends=100), second])
    assert conflicts == ()
    assert table.campaigns == ("a", "b")


def test_weekly_quizzes_share_a_keyword() -> None:
    """Back-to-back windows on one keyword are all kept."""
    week = 7 * 86400.0
    rules = [rule(f"quiz{n}", "QUIZ", starts=n * week, ends=(n + 1) * week) for n in range(5)]
    table, conflicts = RoutingTable.build(rules)
    assert conflicts == ()
    assert [entry[0].campaign for entry in table.entries("4160", "quiz")] == [r.campaign for r in rules]


def test_done_campaigns_neither_block_nor_are_blocked() -> None:
    """A done campaign shares its keyword with a running one whatever their windows."""
    table, conflicts = RoutingTable.build(
        [rule("old", "VOTE", running=False), rule("new", "VOTE"), rule("older", "VOTE", running=False)]
    )
    assert conflicts == ()
    assert table.campaigns == ("old", "new", "older")


def test_rejected_rule_blocks_nothing() -> None:
    """A rule that overlaps only a rejected rule is kept."""
    table, conflicts = RoutingTable.build(
        [
            rule("a", "VOTE", starts=0, ends=10),
            rule("b", "VOTE", starts=5, ends=20),
            rule("c", "VOTE", starts=15, ends=30),
        ]
    )
    assert table.campaigns == ("a", "c")
    assert [c.rejected for c in conflicts] == ["b"]


def test_rule_overlapping_two_kept_rules_reports_both() -> None:
    """Each kept campaign a rejected one overlaps is reported."""
    _table, conflicts = RoutingTable.build(
        [rule("a", "VOTE", starts=0, ends=10), rule("b", "VOTE", starts=10, ends=20), rule("c", "VOTE")]
    )
    assert [(c.kept, c.rejected) for c in conflicts] == [("a", "c"), ("b", "c")]


def test_campaign_keyword_equal_to_a_global_keyword_is_rejected() -> None:
    """A campaign claiming STOP (in any case) is rejected, the global kind kept."""
    table, conflicts = RoutingTable.build([rule("bad", "VOTE", "Stop"), rule("good", "VOTE")])
    assert table.campaigns == ("good",)
    assert conflicts == (
        Conflict("4160", "Stop", "stop", "", "bad", "bad.toml", ConflictReason.GLOBAL_KEYWORD),
    )
    assert "bad.toml (bad)" in str(conflicts[0]) and "global stop keyword" in str(conflicts[0])


def test_extra_global_kinds_conflict_too() -> None:
    """An extra global kind's word is as reserved as STOP."""
    words = GlobalKeywords(extra={"yes": ("NAI",)})
    _table, conflicts = RoutingTable.build([rule("a", "nai")], global_keywords=words)
    assert [(c.kept, c.reason) for c in conflicts] == [("yes", ConflictReason.GLOBAL_KEYWORD)]


def test_duplicate_campaign_name_is_rejected() -> None:
    """A second rule with a name already used is rejected, even on another short code."""
    table, conflicts = RoutingTable.build(
        [rule("a", "VOTE"), rule("a", "POLL", short_code="5000", source="copy.toml")]
    )
    assert table.campaigns == ("a",)
    assert table.campaign("a") == rule("a", "VOTE")
    assert [c.reason for c in conflicts] == [ConflictReason.DUPLICATE_CAMPAIGN]
    assert "copy.toml" in str(conflicts[0]) and "a.toml" in str(conflicts[0])


# --- build: short code defaults -----------------------------------------------------------------


def test_default_must_be_a_kept_campaign_on_that_short_code() -> None:
    """Unknown, rejected and other-short-code defaults are dropped and reported."""
    table, conflicts = RoutingTable.build(
        [rule("a", "VOTE"), rule("b", "VOTE"), rule("c", "X", short_code="5000")],
        [ShortCodeRule("4160", "b"), ShortCodeRule("4161", "nope"), ShortCodeRule("4162", "c"),
         ShortCodeRule("5000", "c")],
    )
    assert table.default_for("4160") is None
    assert table.default_for("4161") is None
    assert table.default_for("4162") is None
    assert table.default_for("5000") == "c"
    unknown = [c for c in conflicts if c.reason is ConflictReason.UNKNOWN_DEFAULT]
    assert [(c.short_code, c.rejected) for c in unknown] == [("4160", "b"), ("4161", "nope"), ("4162", "c")]
    assert "'nope'" in str(unknown[1])


def test_repeated_short_code_keeps_the_first_default() -> None:
    """A short code given twice keeps its first default; the same default twice is no conflict."""
    table, conflicts = RoutingTable.build(
        [rule("a", "VOTE"), rule("b", "POLL")],
        [ShortCodeRule("4160", "a"), ShortCodeRule("4160", "a"), ShortCodeRule("4160", "b")],
    )
    assert table.default_for("4160") == "a"
    assert conflicts == (
        Conflict("4160", "", "a", "", "b", "", ConflictReason.DUPLICATE_SHORT_CODE),
    )
    assert "'b'" in str(conflicts[0]) and "'a'" in str(conflicts[0])


def test_short_codes_lists_campaign_codes_and_defaults() -> None:
    """The table knows every short code it routes, sorted."""
    table, _ = RoutingTable.build([rule("a", "VOTE", short_code="5000"), rule("b", "X")])
    assert table.short_codes == ("4160", "5000")


# --- build: properties --------------------------------------------------------------------------


@given(campaign_rules())
def test_build_invariants(specs: list[dict[str, Any]]) -> None:
    """Kept running campaigns never overlap on a shared keyword, and every rule is kept or rejected."""
    rules = [CampaignRule(**spec) for spec in specs]  # type: ignore[arg-type]
    table, conflicts = RoutingTable.build(rules)
    kept = [table.campaign(name) for name in table.campaigns]
    rejected = {c.rejected for c in conflicts}
    assert set(table.campaigns).isdisjoint(rejected)
    assert set(table.campaigns) | rejected == {r.campaign for r in rules}
    for index, first in enumerate(kept):
        for second in kept[index + 1 :]:
            assert first is not None and second is not None
            shared = {fold(k) for k in first.keywords} & {fold(k) for k in second.keywords}
            if shared and first.short_code == second.short_code and first.running and second.running:
                assert not first.overlaps(second)
    for conflict in conflicts:
        assert conflict.kept in table.campaigns
        assert conflict.rejected_source == f"{conflict.rejected}.toml"


@given(campaign_rules())
def test_build_is_deterministic(specs: list[dict[str, Any]]) -> None:
    """Building twice from equal rules gives equal campaigns, conflicts and keyword entries."""
    first, first_conflicts = RoutingTable.build([CampaignRule(**s) for s in specs])  # type: ignore[arg-type]
    second, second_conflicts = RoutingTable.build([CampaignRule(**s) for s in specs])  # type: ignore[arg-type]
    assert first.campaigns == second.campaigns
    assert first_conflicts == second_conflicts
    for word in ("vote", "quiz", "win", "ψηφοσ", "cafe"):
        for code in ("4160", "5000"):
            assert first.entries(code, word) == second.entries(code, word)


def reference_pick(entries: tuple[Entry, ...], now: float) -> tuple[Entry, bool]:
    """The documented choice among campaigns sharing a keyword, by brute force."""
    for entry in entries:
        if entry[0].is_open(now):
            return entry, True
    starts = [-math.inf if e[0].starts is None else e[0].starts for e in entries]
    ends = [math.inf if e[0].ends is None else e[0].ends for e in entries]
    order = range(len(entries))
    inside = [i for i in order if starts[i] <= now < ends[i]]
    ended = [i for i in order if ends[i] <= now]
    upcoming = [i for i in order if now < starts[i]]
    if inside:  # only done campaigns: the latest started
        best = min(inside, key=lambda i: (-starts[i], i))
    elif ended:  # the most recently ended
        best = min(ended, key=lambda i: (now - ends[i], i))
    else:  # the next to start
        best = min(upcoming, key=lambda i: (starts[i] - now, i))
    return entries[best], False


@given(campaign_rules(count=10), st.integers(min_value=-2, max_value=16).map(float))
def test_slot_pick_matches_brute_force(specs: list[dict[str, Any]], now: float) -> None:
    """The bisecting pick chooses what a scan of every campaign sharing the keyword would."""
    table, _ = RoutingTable.build([CampaignRule(**spec) for spec in specs])  # type: ignore[arg-type]
    for word in ("vote", "quiz", "win", "ψηφοσ", "cafe"):
        for code in ("4160", "5000"):
            entries = table.entries(code, word)
            if entries:
                assert KeywordSlot.of(entries).pick(now) == reference_pick(entries, now)
