"""Opinion polls: a short series of multiple-choice questions asked one SMS at a time.

A sheet::

    module = "poll"
    keywords = ["POLL"]
    response = "Thank you for taking part!"

    [settings]
    session_timeout = 600
    option_labels = "numbers"

    [[settings.questions]]
    text = "Do you watch the show?"
    options = ["Yes", "No"]

    [[settings.questions]]
    text = "Which day?"
    options = ["Friday", "Saturday", "Sunday"]

The keyword starts the poll and the first question is sent with its options ("1) Yes 2)
No"). The poll opens a session, so the subscriber just replies: with the option's number,
its letter (whichever style the sheet shows, both are accepted) or its text, in any case and
with or without accents or punctuation. Each answer is counted and the next question sent;
after the last one the ``response`` thanks the subscriber and the session ends. An answer
that names no option repeats the question with a hint. Sending the keyword during the poll
repeats the current question; "POLL 2" during the poll answers it.

Settings:
    ``questions`` (1 to 50; each ``text``, at most 320 characters, and ``options``, 2 to 9
    distinct texts of at most 64 characters, none reading as another option's label);
    ``session_timeout`` (seconds of silence before the session closes, 1 to 86400,
    default 600); ``allow_repeat`` (a finished subscriber may start again, default false;
    the new answers replace the old ones); ``option_labels`` (``"numbers"`` or
    ``"letters"``, default ``"numbers"``). A question may name an attribute in ``declares``
    (``declares = "age_band"``): the chosen option is then also kept as that declared
    attribute of the subscriber, which the privacy policy governs (an age band under the
    policy's minimum age stops the gateway operating for the subscriber).

Texts (``response`` and ``[responses]``):
    ``question`` — each question; default "Q{number}/{count}: {question} {options}".
    ``invalid_answer`` — an answer naming no option; default "Sorry, please reply with
    {range} or the text of an option. Q{number}/{count}: {question} {options}".
    Both have ``{number}``, ``{count}``, ``{question}``, ``{options}`` and ``{range}``.
    ``response`` — after the last answer; default "Thank you for taking part!" (``{count}``).
    ``already_done`` — the keyword after finishing; default "You have already taken part in
    this poll, thank you!".

State: ``{"q": <0-based index of the question awaiting an answer>}`` during the poll,
``{"done": true}`` after it.

Records: ``Record(f"q{n}", <option text>, replace=True)`` per answer (n from 1), so a
subscriber counts once per question; ``Record("completed", "poll", replace=True)`` at the end.
"""

from __future__ import annotations

import re
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
    match_option,
    module_result,
    option_label,
    percent,
    question_values,
    totals_of,
    validator,
)
from modules.api import Declare, EndSession, Message, ModuleContext, ModuleResult, OpenSession, Record, Reply, SetState, Total

__all__ = ["PollModule", "PollSettings", "Question"]

RESPONSE = "Thank you for taking part!"
INVALID_ANSWER = "Sorry, please reply with {range} or the text of an option. " + QUESTION
ALREADY_DONE = "You have already taken part in this poll, thank you!"


_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _attribute_name(_instance: Any, _attribute: Any, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not _ATTRIBUTE.fullmatch(value)):
        raise ValueError(f"expected an attribute name of lower-case letters, digits and _ such as 'age_band', got {value!r}")


@attrs.frozen
class Question:
    """One multiple-choice question of a poll."""

    text: str = attrs.field(validator=validator(check_text, max_length=320))
    options: tuple[str, ...] = attrs.field(validator=validator(check_options))
    #: The declared attribute the answer gives ("age_band"), None for none.
    declares: str | None = attrs.field(default=None, validator=_attribute_name)


@attrs.frozen
class PollSettings:
    """The ``[settings]`` of a poll campaign (see the module's documentation)."""

    questions: tuple[Question, ...] = attrs.field(validator=validator(check_items, of=Question, maximum=MAX_QUESTIONS))
    session_timeout: float = attrs.field(default=600.0, validator=validator(in_range, minimum=1, maximum=86_400))
    allow_repeat: bool = attrs.field(default=False, validator=validator(check_bool))
    option_labels: str = attrs.field(default="numbers", validator=validator(check_labels))


class PollModule:
    """Ask a series of questions over a session and count each answer."""

    Settings = PollSettings

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Start the poll, take an answer, or repeat the question.

        Args:
            ctx: the campaign, its :class:`PollSettings` and the subscriber's state.
            message: the keyword (starting or resuming), or an answer (through the session,
                or after the keyword).

        Returns:
            Always a reply; with records, state and session actions as the flow goes on.
        """
        settings: PollSettings = ctx.settings
        state = ctx.subscriber.state
        current = current_question(state, len(settings.questions))
        if current is not None:
            if message.via_session or message.args:
                return self._answer(ctx, message, current)
            return self._ask(ctx, current, [])
        if state.get("done") and not settings.allow_repeat:
            actions: list[Any] = [Reply(ctx.campaign.text("already_done", ALREADY_DONE))]
            if message.via_session or ctx.subscriber.in_session:
                actions.append(EndSession())
            return module_result(actions)
        return self._ask(ctx, 0, [SetState({"q": 0})])

    def _ask(self, ctx: ModuleContext, index: int, before: list[Any], template: str | None = None) -> ModuleResult:
        settings: PollSettings = ctx.settings
        question = settings.questions[index]
        values = question_values(question.text, question.options, index + 1, len(settings.questions), settings.option_labels)
        text = template if template is not None else ctx.campaign.text("question", QUESTION)
        return module_result([*before, OpenSession(settings.session_timeout), Reply(text, values)])

    def _answer(self, ctx: ModuleContext, message: Message, current: int) -> ModuleResult:
        settings: PollSettings = ctx.settings
        question = settings.questions[current]
        chosen = match_option(message.args, question.options)
        if chosen is None:
            return self._ask(ctx, current, [], ctx.campaign.text("invalid_answer", INVALID_ANSWER))
        record: list[Any] = [Record(f"q{current + 1}", question.options[chosen], replace=True)]
        if question.declares:
            record.append(Declare(question.declares, question.options[chosen]))
        following = current + 1
        if following < len(settings.questions):
            return self._ask(ctx, following, [*record, SetState({"q": following})])
        template = ctx.campaign.response or RESPONSE
        return module_result(
            [
                *record,
                Record("completed", "poll", replace=True),
                SetState({"done": True}),
                EndSession(),
                Reply(template, {"count": len(settings.questions)}),
            ]
        )

    def summarise(self, settings: PollSettings, totals: Sequence[Total]) -> list[tuple[str, str]]:
        """Per question, how many answered and each option's count and share; then completions.

        Args:
            settings: the campaign's settings (questions and options, in the sheet's order).
            totals: the campaign's record totals.

        Returns:
            ``[("Q1 Do you watch?", "10 answers"), ("Q1 1) Yes", "7 (70.0%)"), ...,
            ("Completed", "9")]``.
        """
        lines: list[tuple[str, str]] = []
        for number, question in enumerate(settings.questions, start=1):
            answers = totals_of(totals, f"q{number}")
            everyone = sum(t.count for t in answers.values())
            lines.append((f"Q{number} {question.text}", f"{everyone} answers"))
            for index, option in enumerate(question.options):
                count = answers[option].count if option in answers else 0
                label = option_label(index, settings.option_labels)
                lines.append((f"Q{number} {label}) {option}", f"{count} ({percent(count, everyone)})"))
        completed = totals_of(totals, "completed").get("poll")
        lines.append(("Completed", str(completed.count if completed else 0)))
        return lines
