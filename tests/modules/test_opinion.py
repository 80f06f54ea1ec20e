"""The opinion module: free text taken at once or after a prompt, with length limits."""

from __future__ import annotations

import pytest

from modules.api import EndSession, OpenSession, Record, RecordFact, Reply, Total
from modules.opinion import OpinionModule, OpinionSettings
from tests.modules.support import Conversation, campaign, context, mo


@pytest.mark.parametrize(
    ("args", "via_session", "actions"),
    [
        (
            "Great show!",
            False,
            (Record("opinion", "received"), RecordFact("opinion", "Great show!", free_text=True), Reply("Thank you, your opinion has been received.")),
        ),
        (
            "  loved {it}  ",
            True,
            (
                Record("opinion", "received"),
                RecordFact("opinion", "loved {it}", free_text=True),
                EndSession(),
                Reply("Thank you, your opinion has been received."),
            ),
        ),
        ("", False, (OpenSession(600.0), Reply("What do you think? Reply with your opinion."))),
        ("   ", True, (OpenSession(600.0), Reply("What do you think? Reply with your opinion."))),
        ("ok", False, (OpenSession(600.0), Reply("Your message is too short. Please send at least {min_length} characters.", {"min_length": 3}))),
        ("This is far too long", False, (Record("opinion", "received"), RecordFact("opinion", "This is far", free_text=True), Reply("Thank you, your opinion has been received."))),
    ],
)
def test_opinion_flow(args: str, via_session: bool, actions: tuple[object, ...]) -> None:
    chosen = OpinionSettings(min_length=3, max_length=12)
    result = OpinionModule().handle(context(chosen, in_session=via_session), mo(args, via_session=via_session))
    assert result.actions == actions


def test_ask_then_answer_through_the_session() -> None:
    info = campaign(response="Merci!")
    conversation = Conversation(OpinionModule(), OpinionSettings(ask="Your view?", session_timeout=60.0), info=info)
    assert conversation.say(keyword="SAY") == "Your view?"
    assert conversation.in_session and conversation.session_until == 1060.0
    assert conversation.say("Too many ads") == "Merci!"
    assert not conversation.in_session
    assert conversation.results[-1].actions[1] == RecordFact("opinion", "Too many ads", free_text=True)


def test_the_opinion_is_never_rendered_into_a_reply() -> None:
    result = OpinionModule().handle(context(OpinionSettings()), mo("{choice} {{"))
    assert all(not isinstance(a, Reply) or "{choice}" not in a.text for a in result.actions)


def test_summarise() -> None:
    assert OpinionModule().summarise(OpinionSettings(), [Total("opinion", "received", 4, 4.0)]) == [("Opinions received", "4")]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"min_length": 0}, ValueError, "min_length"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"max_length": 5001}, ValueError, "max_length"),
        ({"min_length": 10, "max_length": 5}, ValueError, "more than max_length"),
        ({"ask": ""}, ValueError, "ask"),
        ({"ask": 5}, TypeError, "ask"),
        ({"session_timeout": -1.0}, ValueError, "session_timeout"),
    ],
)
def test_invalid_settings(overrides: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        OpinionSettings(**overrides)  # type: ignore[arg-type]
