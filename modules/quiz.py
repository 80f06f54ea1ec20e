"""Quizzes: multiple-choice questions with a right answer each, optional time limits, a score.

A sheet::

    module = "quiz"
    keywords = ["QUIZ"]
    response = "You scored {score} out of {total}. Thanks for playing!"

    [settings]
    time_limit = 60
    points = 1

    [[settings.questions]]
    text = "Capital of France?"
    options = ["Paris", "Lyon", "Nice"]
    answer = "Paris"            # or "1", or "A"

The flow is the poll's: the keyword starts the quiz and sends the first question, a session
takes the answers (number, letter or text, in any case, accents and punctuation aside), each
answer gets its verdict followed by the next question in the same SMS, and after the last
one the verdict comes with the final score and the session ends. An answer naming no option
within the time limit repeats the question with a hint; the keyword during the quiz repeats
the current question.

With ``time_limit``, an answer counts as wrong ("too late") when more than that many seconds
passed between the moment the question was sent (``ctx.now`` of the MO that triggered it,
kept in the state) and the answer's receipt (``message.received_at``, capped at
``ctx.now`` so a backlog in the gateway never makes an answer late). Resuming with the
keyword after the session expired restarts the clock for the current question.

Settings:
    ``questions`` (1 to 50; each ``text``, ``options`` as for polls, and ``answer``: the
    right option by number, letter or text); ``time_limit`` (seconds per question, 1 to
    86400, or absent for none; at most ``session_timeout``); ``points`` per right answer (1
    to 1000, default 1); ``session_timeout`` (1 to 86400, default 600); ``allow_repeat``
    (default false: a finished subscriber is told their score; when true they may play
    again, the new score replacing the old and the answers counted again);
    ``option_labels`` (``"numbers"`` or ``"letters"``).

Texts (``response`` and ``[responses]``):
    ``question`` — default "Q{number}/{count}: {question} {options}";
    ``invalid_answer`` — default "Sorry, please reply with {range} or the text of an option.
    Q{number}/{count}: {question} {options}";
    ``correct`` — default "Correct!"; ``wrong`` — default "Wrong, the answer was {answer}.";
    ``too_late`` — default "Too late! The answer was {answer}." (``{answer}`` is the right
    option's text, ``{label}`` its number or letter);
    ``response`` — the final score; default "You scored {score} out of {total}. Thanks for
    playing!" (``{score}``: points won, ``{total}``: points possible, ``{count}``: questions);
    ``already_done`` — default "You have already played: you scored {score} out of {total}."

State: ``{"q": <index awaiting an answer>, "score": <points so far>, "asked_at": <ctx.now
when it was sent>}`` during the quiz, ``{"done": true, "score": <points>}`` after it.

Records: ``Record("answer", f"q{n}", value=1 or 0)`` per answer (n from 1);
``Record("score", "final", value=<points>, replace=True)`` at the end.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs

from modules._common import (
    MAX_QUESTIONS,
    QUESTION,
    check_bool,
    check_items,
    check_labels,
    check_options,
    check_text,
    current_question,
    in_range,
    label_range,
    match_option,
    module_result,
    option_label,
    percent,
    question_values,
    totals_of,
    validator,
)
from modules.api import EndSession, Message, ModuleContext, ModuleResult, OpenSession, Record, Reply, SetState, Total

__all__ = ["QuizModule", "QuizQuestion", "QuizSettings"]

RESPONSE = "You scored {score} out of {total}. Thanks for playing!"
INVALID_ANSWER = "Sorry, please reply with {range} or the text of an option. " + QUESTION
CORRECT = "Correct!"
WRONG = "Wrong, the answer was {answer}."
TOO_LATE = "Too late! The answer was {answer}."
ALREADY_DONE = "You have already played: you scored {score} out of {total}."


def _optional_seconds(name: str, value: object) -> None:
    if value is not None:
        in_range(name, value, minimum=1, maximum=86_400)


@attrs.frozen
class QuizQuestion:
    """One quiz question and its right answer (an option's number, letter or text)."""

    text: str = attrs.field(validator=validator(check_text, max_length=320))
    options: tuple[str, ...] = attrs.field(validator=validator(check_options))
    answer: str = attrs.field(validator=validator(check_text, max_length=320))

    def __attrs_post_init__(self) -> None:
        if match_option(self.answer, self.options) is None:
            raise ValueError(
                f"answer: {self.answer!r} is not one of the options; give its number "
                f"({label_range(len(self.options), 'numbers')}), letter ({label_range(len(self.options), 'letters')}) or text"
            )

    @property
    def correct(self) -> int:
        """The 0-based index of the right option."""
        index = match_option(self.answer, self.options)
        assert index is not None  # checked when built
        return index


@attrs.frozen
class QuizSettings:
    """The ``[settings]`` of a quiz campaign (see the module's documentation)."""

    questions: tuple[QuizQuestion, ...] = attrs.field(
        validator=validator(check_items, of=QuizQuestion, maximum=MAX_QUESTIONS)
    )
    time_limit: float | None = attrs.field(default=None, validator=validator(_optional_seconds))
    points: int = attrs.field(default=1, validator=validator(in_range, minimum=1, maximum=1000, integer=True))
    session_timeout: float = attrs.field(default=600.0, validator=validator(in_range, minimum=1, maximum=86_400))
    allow_repeat: bool = attrs.field(default=False, validator=validator(check_bool))
    option_labels: str = attrs.field(default="numbers", validator=validator(check_labels))

    def __attrs_post_init__(self) -> None:
        if self.time_limit is not None and self.time_limit > self.session_timeout:
            raise ValueError(
                f"time_limit: {self.time_limit} seconds is longer than session_timeout ({self.session_timeout}); "
                "the session would close before the time is up"
            )

    @property
    def total(self) -> int:
        """The most points a subscriber can score."""
        return self.points * len(self.questions)


def _number(value: object, default: float) -> float:
    """A number kept in state (``default`` for a missing or damaged value)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


class QuizModule:
    """Ask scored questions over a session and tell the subscriber their score."""

    Settings = QuizSettings

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Start the quiz, judge an answer, or repeat the question.

        Args:
            ctx: the campaign, its :class:`QuizSettings`, the subscriber's state and the time.
            message: the keyword (starting or resuming), or an answer (through the session,
                or after the keyword).

        Returns:
            Always a reply; with records, state and session actions as the flow goes on.
        """
        settings: QuizSettings = ctx.settings
        state = ctx.subscriber.state
        current = current_question(state, len(settings.questions))
        if current is not None:
            score = int(_number(state.get("score"), 0))
            asked_at = _number(state.get("asked_at"), ctx.now)
            if message.via_session or message.args:
                return self._answer(ctx, message, current, score, asked_at)
            if not ctx.subscriber.in_session:
                asked_at = ctx.now
            return self._ask(ctx, current, [SetState({"q": current, "score": score, "asked_at": asked_at})])
        if state.get("done") and not settings.allow_repeat:
            values = {"score": int(_number(state.get("score"), 0)), "total": settings.total}
            actions: list[Any] = [Reply(ctx.campaign.text("already_done", ALREADY_DONE), values)]
            if message.via_session or ctx.subscriber.in_session:
                actions.append(EndSession())
            return module_result(actions)
        return self._ask(ctx, 0, [SetState({"q": 0, "score": 0, "asked_at": ctx.now})])

    def _ask(
        self,
        ctx: ModuleContext,
        index: int,
        before: list[Any],
        prefix: str = "",
        values: dict[str, object] | None = None,
        template: str | None = None,
    ) -> ModuleResult:
        settings: QuizSettings = ctx.settings
        question = settings.questions[index]
        shown = question_values(question.text, question.options, index + 1, len(settings.questions), settings.option_labels)
        text = template if template is not None else ctx.campaign.text("question", QUESTION)
        reply = Reply(prefix + text, {**(values or {}), **shown})
        return module_result([*before, OpenSession(settings.session_timeout), reply])

    def _answer(self, ctx: ModuleContext, message: Message, current: int, score: int, asked_at: float) -> ModuleResult:
        settings: QuizSettings = ctx.settings
        question = settings.questions[current]
        answered_at = min(message.received_at, ctx.now)
        late = settings.time_limit is not None and answered_at - asked_at > settings.time_limit
        chosen = match_option(message.args, question.options)
        if chosen is None and not late:
            return self._ask(ctx, current, [], template=ctx.campaign.text("invalid_answer", INVALID_ANSWER))

        right = not late and chosen == question.correct
        if right:
            score += settings.points
        verdict = ctx.campaign.text("too_late", TOO_LATE) if late else ctx.campaign.text(
            "correct" if right else "wrong", CORRECT if right else WRONG
        )
        values: dict[str, object] = {
            "answer": question.options[question.correct],
            "label": option_label(question.correct, settings.option_labels),
        }
        record = Record("answer", f"q{current + 1}", 1.0 if right else 0.0)
        following = current + 1
        if following < len(settings.questions):
            state = SetState({"q": following, "score": score, "asked_at": ctx.now})
            return self._ask(ctx, following, [record, state], verdict + " ", values)
        final = ctx.campaign.response or RESPONSE
        values.update(score=score, total=settings.total, count=len(settings.questions))
        return module_result(
            [
                record,
                Record("score", "final", float(score), replace=True),
                SetState({"done": True, "score": score}),
                EndSession(),
                Reply(f"{verdict} {final}", values),
            ]
        )

    def summarise(self, settings: QuizSettings, totals: Sequence[Total]) -> list[tuple[str, str]]:
        """Per question, how many answered right; then how many finished and the average score.

        Args:
            settings: the campaign's settings.
            totals: the campaign's record totals.

        Returns:
            ``[("Q1 Capital of France?", "8 of 10 right (80.0%)"), ..., ("Finished", "9"),
            ("Average score", "2.33 of 3")]``.
        """
        answers = totals_of(totals, "answer")
        lines: list[tuple[str, str]] = []
        for number, question in enumerate(settings.questions, start=1):
            got = answers.get(f"q{number}")
            count, right = (got.count, int(got.sum)) if got else (0, 0)
            lines.append((f"Q{number} {question.text}", f"{right} of {count} right ({percent(right, count)})"))
        final = totals_of(totals, "score").get("final")
        finished = final.count if final else 0
        average = final.sum / finished if final and finished else 0.0
        lines.append(("Finished", str(finished)))
        lines.append(("Average score", f"{average:.2f} of {settings.total}"))
        return lines
