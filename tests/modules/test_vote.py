"""The vote module: choices by code or label, vote limits, changed votes and the tally."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from modules._common import words
from modules.api import Record, RecordFact, Reply, SetState, Total
from modules.vote import VoteModule, VoteSettings
from tests.modules.support import Conversation, actions_of, campaign, context, mo, records, replies

CHOICES = {"GRE": "Greece", "UK": "United Kingdom", "CYP": "Κύπρος"}


def settings(**overrides: object) -> VoteSettings:
    return VoteSettings(**{"choices": dict(CHOICES), **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ("GRE", "GRE"),
        ("gre", "GRE"),
        ("Gre!", "GRE"),
        ("greece", "GRE"),
        ("GRÈÈCE", "GRE"),
        ("united kingdom", "UK"),
        ("United-Kingdom.", "UK"),
        ("uk", "UK"),
        ("ΚΥΠΡΟΣ", "CYP"),
        ("κυπρος", "CYP"),
    ],
)
def test_a_choice_is_named_by_code_or_label(args: str, code: str) -> None:
    result = VoteModule().handle(context(settings()), mo(args))
    assert records(result) == [Record("vote", code)]
    assert actions_of(result, RecordFact) == [RecordFact(CHOICES[code], "voted for")]
    assert actions_of(result, SetState) == [SetState({"votes": 1, "choice": code})]
    assert replies(result) == [f"Thank you! Your vote for {CHOICES[code]} has been counted."]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ("GRE what a match!", "GRE"),
        ("gre, come on", "GRE"),
        ("United Kingdom all the way", "UK"),
        ("κυπρος φυσικα", "CYP"),
        ("GRE GRE GRE!!", "GRE"),
    ],
)
def test_words_after_the_choice_are_a_comment(args: str, code: str) -> None:
    """Subscribers add words after their choice; the vote still counts once, for that choice."""
    result = VoteModule().handle(context(settings()), mo(args))
    assert records(result) == [Record("vote", code)]


@settings_(max_examples=200, deadline=None)
@given(
    code=st.sampled_from(sorted(CHOICES)),
    comment=st.lists(st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "Zs", "P")), min_size=1, max_size=12), max_size=5),
)
def test_a_choice_then_any_comment_naming_no_other_choice_is_that_choice(code: str, comment: list[str]) -> None:
    """The leading choice wins whatever follows, unless what follows names another choice (then no vote)."""
    vote = settings()
    text = " ".join([code, *comment])
    rest = " ".join(comment)
    named = {vote.find(" ".join(w[i:j])) for w in [words(rest)] for i in range(len(w)) for j in range(i + 1, len(w) + 1)}
    names_another = bool(named - {None, code})
    assert vote.find_in(text) == (None if names_another else code)


@pytest.mark.parametrize("args", ["", "FRA", "gre uk", "gre or uk", "greeze", "!!", "I vote GRE"])
def test_no_choice_lists_the_choices(args: str) -> None:
    result = VoteModule().handle(context(settings()), mo(args, keyword="Vote"))
    assert records(result) == [] and actions_of(result, SetState) == []
    assert replies(result) == [
        "Sorry, that is not one of the choices. Send Vote followed by one of: GRE (Greece), UK (United Kingdom), CYP (Κύπρος)"
    ]


def test_a_keyword_that_is_a_choice_votes_for_it() -> None:
    """A sheet may list the choice codes as keywords: "GRE" alone is a vote for Greece."""
    result = VoteModule().handle(context(settings()), mo("", keyword="GRE"))
    assert records(result) == [Record("vote", "GRE")]


def test_the_sheet_texts_replace_the_defaults() -> None:
    info = campaign(response="{code}={choice}", already_voted="again {choice} (limit {limit})", invalid_choice="no: {choices}")
    conversation = Conversation(VoteModule(), settings(choices={"A": "Alpha", "B": "Beta"}), info=info)
    assert conversation.say("a", keyword="KW") == "A=Alpha"
    assert conversation.say("b", keyword="KW") == "again Alpha (limit 1)"
    assert VoteModule().handle(context(settings(choices={"A": "Alpha"}), info=info), mo("z")).actions == (
        Reply("no: {choices}", {"keyword": "KW", "choices": "A (Alpha)"}),
    )


@pytest.mark.parametrize(
    ("mode", "limit", "votes", "expected_records", "last_reply"),
    [
        ("reject", 1, ["GRE", "UK"], [Record("vote", "GRE")], "You have already voted, thank you! Your vote was for Greece."),
        (
            "reject",
            2,
            ["GRE", "UK", "CYP"],
            [Record("vote", "GRE"), Record("vote", "UK")],
            "You have already voted, thank you! Your vote was for United Kingdom.",
        ),
        (
            "replace",
            1,
            ["GRE", "UK"],
            [Record("vote", "GRE", replace=True), Record("vote", "UK", replace=True)],
            "Your vote has been changed to United Kingdom.",
        ),
        (
            "replace",
            1,
            ["GRE", "GRE"],
            [Record("vote", "GRE", replace=True), Record("vote", "GRE", replace=True)],
            "Thank you! Your vote for Greece has been counted.",
        ),
        (
            "allow",
            1,
            ["GRE", "GRE", "UK"],
            [Record("vote", "GRE"), Record("vote", "GRE"), Record("vote", "UK")],
            "Thank you! Your vote for United Kingdom has been counted.",
        ),
    ],
)
def test_vote_limits_and_changes(
    mode: str, limit: int, votes: list[str], expected_records: list[Record], last_reply: str
) -> None:
    conversation = Conversation(VoteModule(), settings(change_of_vote=mode, votes_per_subscriber=limit))
    texts = [conversation.say(code, keyword="VOTE") for code in votes]
    assert conversation.all_records() == expected_records
    assert texts[-1] == last_reply


def test_remaining_votes_are_offered_to_the_template() -> None:
    info = campaign(response="{remaining} left")
    conversation = Conversation(VoteModule(), settings(votes_per_subscriber=3), info=info)
    assert [conversation.say("gre", keyword="V") for _ in range(3)] == ["2 left", "1 left", "0 left"]
    assert conversation.state == {"votes": 3, "choice": "GRE"}


def test_the_limit_is_checked_before_the_choice() -> None:
    """A subscriber who has used their votes is told so, whatever they sent."""
    ctx = context(settings(), state={"votes": 1, "choice": "UK"})
    assert replies(VoteModule().handle(ctx, mo("nonsense"))) == [
        "You have already voted, thank you! Your vote was for United Kingdom."
    ]


def test_damaged_state_counts_as_no_votes() -> None:
    ctx = context(settings(), state={"votes": "many", "choice": 3})
    assert records(VoteModule().handle(ctx, mo("gre"))) == [Record("vote", "GRE")]


def test_summarise_sorts_by_votes_with_shares() -> None:
    totals = [Total("vote", "UK", 3, 3.0), Total("vote", "GRE", 5, 5.0), Total("vote", "OLD", 2, 2.0), Total("x", "GRE", 9, 9.0)]
    assert VoteModule().summarise(settings(), totals) == [
        ("Greece (GRE)", "5 (50.0%)"),
        ("United Kingdom (UK)", "3 (30.0%)"),
        ("OLD", "2 (20.0%)"),
        ("Κύπρος (CYP)", "0 (0.0%)"),
        ("Total votes", "10"),
    ]


def test_summarise_without_votes() -> None:
    assert VoteModule().summarise(settings(choices={"YES": "yes"}), []) == [("yes", "0 (0.0%)"), ("Total votes", "0")]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"choices": {}}, ValueError, "choices: must not be empty"),
        ({"choices": {"A": "Same", "B": "same!"}}, ValueError, "names both"),
        ({"votes_per_subscriber": 0}, ValueError, "votes_per_subscriber"),
        ({"votes_per_subscriber": 1.5}, TypeError, "votes_per_subscriber"),
        ({"votes_per_subscriber": True}, TypeError, "votes_per_subscriber"),
        ({"change_of_vote": "maybe"}, ValueError, "change_of_vote"),
        ({"change_of_vote": "replace", "votes_per_subscriber": 2}, ValueError, "must be 1"),
        ({"change_of_vote": "allow", "votes_per_subscriber": 3}, ValueError, "must be 1"),
        ({"choices": ["GRE"]}, TypeError, "choices"),
    ],
)
def test_invalid_settings(overrides: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        settings(**overrides)
