"""The quiz module: verdicts, time limits measured from ctx.now, the final score."""

from __future__ import annotations

import pytest

from modules.api import EndSession, Record, SetState, Total
from modules.quiz import QuizModule, QuizQuestion, QuizSettings
from tests.modules.support import Conversation, actions_of, campaign, context, mo, records, replies

QUESTIONS = (
    QuizQuestion("Capital of France?", ("Paris", "Lyon", "Nice"), "Paris"),
    QuizQuestion("2 + 2?", ("3", "4"), "b"),
)


def settings(**overrides: object) -> QuizSettings:
    return QuizSettings(**{"questions": QUESTIONS, **overrides})  # type: ignore[arg-type]


def test_a_whole_quiz() -> None:
    conversation = Conversation(QuizModule(), settings(points=5))
    assert conversation.say(keyword="QUIZ") == "Q1/2: Capital of France? 1) Paris 2) Lyon 3) Nice"
    assert conversation.state == {"q": 0, "score": 0, "asked_at": 1000.0}
    assert conversation.say("paris", at=1010.0) == "Correct! Q2/2: 2 + 2? 1) 3 2) 4"
    assert conversation.state == {"q": 1, "score": 5, "asked_at": 1010.0}
    assert conversation.say("3", at=1020.0) == "Wrong, the answer was 4. You scored 5 out of 10. Thanks for playing!"
    assert not conversation.in_session
    assert conversation.state == {"done": True, "score": 5}
    assert conversation.all_records() == [
        Record("answer", "q1", 1.0),
        Record("answer", "q2", 0.0),
        Record("score", "final", 5.0, replace=True),
    ]


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [("1", "Correct!"), ("A", "Correct!"), ("PARÍS!", "Correct!"), ("a) paris", "Correct!"), ("2", "Wrong"), ("nice", "Wrong")],
)
def test_verdicts(answer: str, verdict: str) -> None:
    ctx = context(settings(), state={"q": 0, "score": 0, "asked_at": 1000.0}, in_session=True)
    assert replies(QuizModule().handle(ctx, mo(answer, via_session=True)))[0].startswith(verdict)


@pytest.mark.parametrize(
    ("asked_at", "received_at", "now", "late"),
    [
        (1000.0, 1030.0, 1030.0, False),
        (1000.0, 1030.5, 1030.5, True),
        (1000.0, 1020.0, 1500.0, False),  # a backlog in the gateway does not make the answer late
        (1000.0, 2000.0, 1010.0, False),  # the answer cannot be later than the decision
    ],
)
def test_time_limit(asked_at: float, received_at: float, now: float, late: bool) -> None:
    ctx = context(settings(time_limit=30.0), state={"q": 0, "score": 0, "asked_at": asked_at}, in_session=True, now=now)
    result = QuizModule().handle(ctx, mo("Paris", via_session=True, received_at=received_at))
    text = replies(result)[0]
    if late:
        assert text.startswith("Too late! The answer was Paris. Q2/2")
        assert records(result) == [Record("answer", "q1", 0.0)]
    else:
        assert text.startswith("Correct! Q2/2")
        assert records(result) == [Record("answer", "q1", 1.0)]
    assert actions_of(result, SetState) == [SetState({"q": 1, "score": 0 if late else 1, "asked_at": now})]


def test_a_late_invalid_answer_is_too_late_not_repeated() -> None:
    ctx = context(settings(time_limit=5.0), state={"q": 1, "score": 1, "asked_at": 1000.0}, in_session=True, now=1100.0)
    result = QuizModule().handle(ctx, mo("???", via_session=True, received_at=1100.0))
    assert replies(result) == ["Too late! The answer was 4. You scored 1 out of 2. Thanks for playing!"]
    assert records(result)[-1] == Record("score", "final", 1.0, replace=True)


def test_an_invalid_answer_in_time_repeats_the_question() -> None:
    ctx = context(settings(time_limit=60.0), state={"q": 0, "score": 0, "asked_at": 1000.0}, in_session=True, now=1010.0)
    result = QuizModule().handle(ctx, mo("Berlin", via_session=True, received_at=1010.0))
    assert records(result) == [] and actions_of(result, SetState) == []
    assert replies(result) == [
        "Sorry, please reply with 1-3 or the text of an option. Q1/2: Capital of France? 1) Paris 2) Lyon 3) Nice"
    ]


def test_resuming_after_the_session_expired_restarts_the_clock() -> None:
    conversation = Conversation(QuizModule(), settings(time_limit=60.0, session_timeout=120.0))
    conversation.say(keyword="QUIZ", at=1000.0)
    assert conversation.say(keyword="QUIZ", at=2000.0).startswith("Q1/2")
    assert conversation.state == {"q": 0, "score": 0, "asked_at": 2000.0}
    assert conversation.say("paris", at=2050.0).startswith("Correct!")


def test_repeating_the_question_in_session_keeps_the_clock() -> None:
    conversation = Conversation(QuizModule(), settings(time_limit=60.0, session_timeout=120.0))
    conversation.say(keyword="QUIZ", at=1000.0)
    assert conversation.say(keyword="QUIZ", at=1050.0).startswith("Q1/2")
    assert conversation.state["asked_at"] == 1000.0
    assert conversation.say("paris", at=1070.0).startswith("Too late!")


@pytest.mark.parametrize(
    ("allow_repeat", "reply"),
    [(False, "You have already played: you scored 2 out of 2."), (True, "Q1/2: Capital of France? 1) Paris 2) Lyon 3) Nice")],
)
def test_a_second_run(allow_repeat: bool, reply: str) -> None:
    conversation = Conversation(QuizModule(), settings(allow_repeat=allow_repeat))
    conversation.say(keyword="QUIZ")
    conversation.say("paris")
    conversation.say("4")
    assert conversation.say(keyword="QUIZ") == reply


def test_already_played_in_a_lingering_session_ends_it() -> None:
    ctx = context(settings(), state={"done": True, "score": 1}, in_session=True)
    result = QuizModule().handle(ctx, mo("paris", via_session=True))
    assert actions_of(result, EndSession) == [EndSession()]


def test_sheet_texts() -> None:
    info = campaign(response="{score}/{total}", correct="Yes ({label})", wrong="No, {label}) {answer}")
    conversation = Conversation(QuizModule(), settings(option_labels="letters"), info=info)
    conversation.say(keyword="Q")
    assert conversation.say("a") == "Yes (A) Q2/2: 2 + 2? A) 3 B) 4"
    assert conversation.say("a") == "No, B) 4 1/2"


def test_summarise() -> None:
    totals = [Total("answer", "q1", 4, 3.0), Total("answer", "q2", 3, 0.0), Total("score", "final", 3, 4.0)]
    assert QuizModule().summarise(settings(), totals) == [
        ("Q1 Capital of France?", "3 of 4 right (75.0%)"),
        ("Q2 2 + 2?", "0 of 3 right (0.0%)"),
        ("Finished", "3"),
        ("Average score", "1.33 of 2"),
    ]
    assert QuizModule().summarise(settings(), [])[-2:] == [("Finished", "0"), ("Average score", "0.00 of 2")]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: QuizQuestion("Q?", ("a", "b"), "c"), ValueError, "answer: 'c' is not one of the options"),
        (lambda: QuizQuestion("Q?", ("Paris", "Lyon"), "3"), ValueError, "answer"),
        (lambda: QuizQuestion("Q?", ("Paris", "Lyon"), "Marseille"), ValueError, "answer"),
        (lambda: QuizQuestion("Q?", ("Paris", "Lyon"), ""), ValueError, "answer"),
        (lambda: settings(time_limit=0), ValueError, "time_limit"),
        (lambda: settings(time_limit=700.0), ValueError, "longer than session_timeout"),
        (lambda: settings(points=0), ValueError, "points"),
        (lambda: settings(points=2.0), TypeError, "points"),
        (lambda: settings(questions=()), ValueError, "questions"),
    ],
)
def test_invalid_settings(build: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]


@pytest.mark.parametrize("answer", ["2", "B", "b)", "lyon", "2) Lyon"])
def test_the_right_answer_may_be_given_any_way(answer: str) -> None:
    assert QuizQuestion("Q?", ("Paris", "Lyon"), answer).correct == 1
