"""The alerts module: subscribing and unsubscribing topics, with replies worded from the state."""

from __future__ import annotations

import pytest

from modules.alerts import AlertsModule, AlertsSettings
from modules.api import Record, SetState, Subscribe, Total, Unsubscribe
from tests.modules.support import Conversation, actions_of, context, mo, records, replies

TOPICS = {"NEWS": "Breaking news", "SPORT": "Sport results", "METEO": "Météo"}


def settings(**overrides: object) -> AlertsSettings:
    return AlertsSettings(**{"topics": dict(TOPICS), **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "args", "default", "subscriptions", "new_records", "new_state", "reply"),
    [
        ([], "sport", None, [Subscribe("SPORT")], [Record("subscribe", "SPORT")], ["SPORT"],
         "You are now subscribed to Sport results. Send ALERTS OFF SPORT to stop."),
        ([], "Sport-Results!", None, [Subscribe("SPORT")], [Record("subscribe", "SPORT")], ["SPORT"],
         "You are now subscribed to Sport results. Send ALERTS OFF SPORT to stop."),
        (["SPORT"], "meteo", None, [Subscribe("METEO")], [Record("subscribe", "METEO")], ["SPORT", "METEO"],
         "You are now subscribed to Météo. Send ALERTS OFF METEO to stop."),
        (["SPORT"], "SPORT", None, [Subscribe("SPORT")], [], None, "You are already subscribed to Sport results."),
        ([], "", "NEWS", [Subscribe("NEWS")], [Record("subscribe", "NEWS")], ["NEWS"],
         "You are now subscribed to Breaking news. Send ALERTS OFF NEWS to stop."),
        ([], "", None, [], [], None,
         "Send ALERTS and a topic to subscribe: NEWS (Breaking news), SPORT (Sport results), Météo"),
        ([], "weather", None, [], [], None,
         "Sorry, that is not a topic. Send ALERTS and one of: NEWS (Breaking news), SPORT (Sport results), Météo"),
        (["NEWS", "SPORT"], "off sport", None, [Unsubscribe("SPORT")], [Record("unsubscribe", "SPORT")], ["NEWS"],
         "You will no longer receive Sport results."),
        (["NEWS"], "STOP sport", None, [Unsubscribe("SPORT")], [], None, "You were not subscribed to Sport results."),
        (["NEWS", "SPORT"], "off", None, [Unsubscribe("")],
         [Record("unsubscribe", "NEWS"), Record("unsubscribe", "SPORT")], [], "You will no longer receive any alerts from ALERTS."),
        ([], "Stop!", "NEWS", [Unsubscribe("")], [], [], "You will no longer receive any alerts from ALERTS."),
        ([], "off weather", None, [], [], None,
         "Sorry, that is not a topic. Send ALERTS and one of: NEWS (Breaking news), SPORT (Sport results), Météo"),
    ],
)
def test_alert_commands(
    state: list[str],
    args: str,
    default: str | None,
    subscriptions: list[object],
    new_records: list[Record],
    new_state: list[str] | None,
    reply: str,
) -> None:
    ctx = context(settings(default_topic=default), state={"topics": state})
    result = AlertsModule().handle(ctx, mo(args, keyword="ALERTS"))
    assert [a for a in result.actions if isinstance(a, (Subscribe, Unsubscribe))] == subscriptions
    assert records(result) == new_records
    assert actions_of(result, SetState) == ([] if new_state is None else [SetState({"topics": new_state})])
    assert replies(result) == [reply]


def test_state_is_carried_across_messages() -> None:
    conversation = Conversation(AlertsModule(), settings())
    conversation.say("news", keyword="ALERTS")
    conversation.say("sport", keyword="ALERTS")
    assert conversation.say("news", keyword="ALERTS") == "You are already subscribed to Breaking news."
    conversation.say("off news", keyword="ALERTS")
    assert conversation.state == {"topics": ("SPORT",)}


def test_state_with_unknown_topics_is_ignored() -> None:
    """Topics removed from the sheet since the state was written are dropped from it."""
    ctx = context(settings(), state={"topics": ["GONE", "NEWS"]})
    result = AlertsModule().handle(ctx, mo("sport"))
    assert actions_of(result, SetState) == [SetState({"topics": ["NEWS", "SPORT"]})]


def test_a_code_spelled_like_its_description_is_listed_once() -> None:
    """"METEO" and "Météo" compare equal, so the listing shows the description alone."""
    assert settings().listing() == "NEWS (Breaking news), SPORT (Sport results), Météo"


def test_summarise() -> None:
    totals = [Total("subscribe", "NEWS", 5, 5.0), Total("unsubscribe", "NEWS", 2, 2.0)]
    assert AlertsModule().summarise(settings(), totals) == [
        ("Breaking news (NEWS)", "5 subscribed, 2 unsubscribed"),
        ("Sport results (SPORT)", "0 subscribed, 0 unsubscribed"),
        ("Météo", "0 subscribed, 0 unsubscribed"),
    ]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"topics": {}}, ValueError, "must not be empty"),
        ({"topics": {"OFF": "Off topic"}}, ValueError, "reserved"),
        ({"topics": {"NEWS": "Stop"}}, ValueError, "reserved"),
        ({"topics": {"NEWS": "x", "news": "y"}}, ValueError, "names both"),
        ({"default_topic": "WEATHER"}, ValueError, "default_topic"),
        ({"topics": [("NEWS", "x")]}, TypeError, "topics"),
    ],
)
def test_invalid_settings(overrides: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        settings(**overrides)
