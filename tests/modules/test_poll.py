"""The poll module: questions over a session, answers by number, letter or text, one run each."""

from __future__ import annotations

import pytest

from modules.api import EndSession, OpenSession, Record, Total
from modules.poll import PollModule, PollSettings, Question
from tests.modules.support import Conversation, actions_of, campaign, context, mo, records, replies

QUESTIONS = (
    Question("Do you watch the show?", ("Yes", "No")),
    Question("Which day?", ("Friday", "Saturday", "Sunday")),
)


def settings(**overrides: object) -> PollSettings:
    return PollSettings(**{"questions": QUESTIONS, **overrides})  # type: ignore[arg-type]


def test_a_whole_poll() -> None:
    conversation = Conversation(PollModule(), settings())
    assert conversation.say(keyword="POLL") == "Q1/2: Do you watch the show? 1) Yes 2) No"
    assert conversation.in_session
    assert conversation.say("yes!") == "Q2/2: Which day? 1) Friday 2) Saturday 3) Sunday"
    assert conversation.say("C") == "Thank you for taking part!"
    assert not conversation.in_session
    assert conversation.all_records() == [
        Record("q1", "Yes", replace=True),
        Record("q2", "Sunday", replace=True),
        Record("completed", "poll", replace=True),
    ]
    assert conversation.state == {"done": True}


@pytest.mark.parametrize(
    ("answer", "option"),
    [("1", "Friday"), ("a", "Friday"), ("B)", "Saturday"), ("saturday", "Saturday"), ("3. Sunday", "Sunday"), ("SUNDAY", "Sunday")],
)
def test_answers_by_number_letter_or_text(answer: str, option: str) -> None:
    ctx = context(settings(), state={"q": 1}, in_session=True)
    result = PollModule().handle(ctx, mo(answer, via_session=True))
    assert records(result)[0] == Record("q2", option, replace=True)


@pytest.mark.parametrize("answer", ["4", "d", "Monday", "", "?"])
def test_an_invalid_answer_repeats_the_question_with_a_hint(answer: str) -> None:
    ctx = context(settings(), state={"q": 1}, in_session=True)
    result = PollModule().handle(ctx, mo(answer, via_session=True))
    assert records(result) == []
    assert actions_of(result, OpenSession) == [OpenSession(600.0)]
    assert replies(result) == [
        "Sorry, please reply with 1-3 or the text of an option. Q2/2: Which day? 1) Friday 2) Saturday 3) Sunday"
    ]


def test_letters_style_shows_letters() -> None:
    conversation = Conversation(PollModule(), settings(option_labels="letters", session_timeout=30.0))
    assert conversation.say(keyword="POLL") == "Q1/2: Do you watch the show? A) Yes B) No"
    assert conversation.session_until == 1030.0
    assert conversation.say("x").startswith("Sorry, please reply with A-B")


def test_the_keyword_during_the_poll_repeats_the_current_question() -> None:
    conversation = Conversation(PollModule(), settings())
    conversation.say(keyword="POLL")
    conversation.say("no")
    assert conversation.say(keyword="POLL").startswith("Q2/2: Which day?")
    assert conversation.state == {"q": 1}


def test_keyword_with_an_answer_during_the_poll_answers() -> None:
    """After the session expired, "POLL 2" still answers the current question."""
    conversation = Conversation(PollModule(), settings())
    conversation.say(keyword="POLL", at=1000.0)
    assert conversation.say("2", keyword="POLL", at=5000.0).startswith("Q2/2: Which day?")
    assert conversation.in_session
    assert conversation.all_records() == [Record("q1", "No", replace=True)]


@pytest.mark.parametrize(
    ("allow_repeat", "reply"),
    [(False, "You have already taken part in this poll, thank you!"), (True, "Q1/2: Do you watch the show? 1) Yes 2) No")],
)
def test_a_second_run(allow_repeat: bool, reply: str) -> None:
    conversation = Conversation(PollModule(), settings(allow_repeat=allow_repeat))
    for answer, keyword in (("", "POLL"), ("1", None), ("1", None)):
        conversation.say(answer, keyword=keyword)
    assert conversation.say(keyword="POLL") == reply


def test_already_done_closes_a_lingering_session() -> None:
    ctx = context(settings(), state={"done": True}, in_session=True)
    result = PollModule().handle(ctx, mo("yes", via_session=True))
    assert actions_of(result, EndSession) == [EndSession()]
    assert replies(result) == ["You have already taken part in this poll, thank you!"]


def test_damaged_state_starts_over() -> None:
    ctx = context(settings(), state={"q": 7})
    result = PollModule().handle(ctx, mo())
    assert replies(result) == ["Q1/2: Do you watch the show? 1) Yes 2) No"]


def test_sheet_texts() -> None:
    info = campaign(response="Done, {count} questions.", question="{number}. {question} ({options})", invalid_answer="{range}?")
    conversation = Conversation(PollModule(), settings(), info=info)
    assert conversation.say(keyword="P") == "1. Do you watch the show? (1) Yes 2) No)"
    assert conversation.say("maybe") == "1-2?"
    conversation.say("yes")
    assert conversation.say("sat") == "1-3?"
    assert conversation.say("saturday") == "Done, 2 questions."


def test_summarise() -> None:
    totals = [Total("q1", "Yes", 3, 3.0), Total("q1", "No", 1, 1.0), Total("q2", "Sunday", 2, 2.0), Total("completed", "poll", 2, 2.0)]
    assert PollModule().summarise(settings(), totals) == [
        ("Q1 Do you watch the show?", "4 answers"),
        ("Q1 1) Yes", "3 (75.0%)"),
        ("Q1 2) No", "1 (25.0%)"),
        ("Q2 Which day?", "2 answers"),
        ("Q2 1) Friday", "0 (0.0%)"),
        ("Q2 2) Saturday", "0 (0.0%)"),
        ("Q2 3) Sunday", "2 (100.0%)"),
        ("Completed", "2"),
    ]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: settings(questions=()), ValueError, "questions: must not be empty"),
        (lambda: settings(questions=[QUESTIONS[0]]), TypeError, "questions: expected a tuple"),
        (lambda: settings(questions=("Q?",)), TypeError, "expected Question items"),
        (lambda: settings(session_timeout=0), ValueError, "session_timeout"),
        (lambda: settings(session_timeout=float("nan")), ValueError, "session_timeout"),
        (lambda: settings(allow_repeat="yes"), TypeError, "allow_repeat"),
        (lambda: settings(option_labels="roman"), ValueError, "option_labels"),
        (lambda: Question("Q?", ("only",)), ValueError, "between 2 and 9"),
        (lambda: Question("", ("a", "b")), ValueError, "text"),
        (lambda: Question("Q?", ("Yes", "yes")), ValueError, "duplicate option"),
    ],
)
def test_invalid_settings(build: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]
