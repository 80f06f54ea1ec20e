"""Alerts: subscribers opt in to topics the campaign later sends news on.

A sheet::

    module = "alerts"
    keywords = ["ALERTS"]

    [settings]
    topics = { NEWS = "Breaking news", SPORT = "Sport results" }
    default_topic = "NEWS"

Commands (topics named by code or description, in any case, accents and punctuation aside):

* "ALERTS SPORT" subscribes to SPORT;
* "ALERTS OFF SPORT" or "ALERTS STOP SPORT" unsubscribes from it;
* "ALERTS OFF" (or "ALERTS STOP") unsubscribes from every topic of the campaign;
* "ALERTS" alone subscribes to ``default_topic``, or lists the topics when there is none;
* an unknown topic gets the list of topics.

Sending the alerts themselves is the gateway's business (by topic, to the subscriptions the
:class:`~modules.api.Subscribe` actions made). The module keeps the topics in its state only
to word its replies ("already subscribed"); it repeats ``Subscribe`` even then, because the
gateway's global STOP removes subscriptions without touching module state, and a repeated
subscription is harmless.

Settings:
    ``topics`` (code → description, at least one; codes single words of at most 64
    characters, descriptions at most 200; none may be "OFF" or "STOP", and no code or
    description may name two topics); ``default_topic`` (a code of ``topics``, or absent).

Texts, with ``{keyword}``, ``{topic}`` (code), ``{description}`` and ``{topics}`` ("NEWS
(Breaking news), SPORT (Sport results)"):
    ``response`` — subscribed; default "You are now subscribed to {description}. Send
    {keyword} OFF {topic} to stop.";
    ``already_subscribed`` — default "You are already subscribed to {description}.";
    ``unsubscribed`` — default "You will no longer receive {description}.";
    ``not_subscribed`` — default "You were not subscribed to {description}.";
    ``unsubscribed_all`` — default "You will no longer receive any alerts from {keyword}.";
    ``topics`` — the keyword alone without a default; default "Send {keyword} and a topic to
    subscribe: {topics}";
    ``unknown_topic`` — default "Sorry, that is not a topic. Send {keyword} and one of:
    {topics}".

State: ``{"topics": [<subscribed codes, in the sheet's order>]}``.

Records: ``Record("subscribe", code)`` for a new subscription, ``Record("unsubscribe",
code)`` for each subscription the state knew of when it is removed.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs

from modules._common import check_mapping, key, keyword_of, module_result, totals_of, validator, words
from modules.api import Message, ModuleContext, ModuleResult, Record, Reply, SetState, Subscribe, Total, Unsubscribe

__all__ = ["AlertsModule", "AlertsSettings"]

RESPONSE = "You are now subscribed to {description}. Send {keyword} OFF {topic} to stop."
ALREADY_SUBSCRIBED = "You are already subscribed to {description}."
UNSUBSCRIBED = "You will no longer receive {description}."
NOT_SUBSCRIBED = "You were not subscribed to {description}."
UNSUBSCRIBED_ALL = "You will no longer receive any alerts from {keyword}."
TOPICS = "Send {keyword} and a topic to subscribe: {topics}"
UNKNOWN_TOPIC = "Sorry, that is not a topic. Send {keyword} and one of: {topics}"

#: The words that turn a subscription off.
OFF_WORDS = ("off", "stop")


def _check_topics(name: str, value: object) -> None:
    check_mapping(name, value, what="topic")
    assert isinstance(value, dict)
    for code, description in value.items():
        for spelling in (code, description):
            if key(spelling) in OFF_WORDS:
                raise ValueError(f"{name}: {spelling!r} is reserved for unsubscribing")


@attrs.frozen
class AlertsSettings:
    """The ``[settings]`` of an alerts campaign (see the module's documentation)."""

    topics: dict[str, str] = attrs.field(validator=validator(_check_topics))
    default_topic: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.default_topic is not None and self.default_topic not in self.topics:
            raise ValueError(
                f"default_topic: {self.default_topic!r} is not one of the topics ({', '.join(self.topics)})"
            )

    def find(self, text: str) -> str | None:
        """The code of the topic ``text`` names by code or description, or ``None``."""
        wanted = key(text)
        for code, description in self.topics.items():
            if wanted and wanted in (key(code), key(description)):
                return code
        return None

    def listing(self) -> str:
        """The topics as one line: ``"NEWS (Breaking news), SPORT (Sport results)"``."""
        return ", ".join(
            description if key(code) == key(description) else f"{code} ({description})"
            for code, description in self.topics.items()
        )


class AlertsModule:
    """Subscribe and unsubscribe a subscriber to the campaign's alert topics."""

    Settings = AlertsSettings

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Subscribe, unsubscribe, or list the topics.

        Args:
            ctx: the campaign, its :class:`AlertsSettings` and the subscriber's state.
            message: "<keyword> [OFF|STOP] [topic]".

        Returns:
            Always a reply; with the subscription actions, state and records when something
            changes.
        """
        settings: AlertsSettings = ctx.settings
        campaign = ctx.campaign
        raw = ctx.subscriber.state.get("topics", ())
        held = [code for code in settings.topics if code in (raw if isinstance(raw, (list, tuple)) else ())]
        given = words(message.args)
        base: dict[str, object] = {"keyword": keyword_of(campaign, message), "topics": settings.listing()}

        if given and given[0] in OFF_WORDS:
            if len(given) == 1:
                actions: list[Any] = [Unsubscribe(""), *(Record("unsubscribe", code) for code in held)]
                actions += [SetState({"topics": []}), Reply(campaign.text("unsubscribed_all", UNSUBSCRIBED_ALL), base)]
                return module_result(actions)
            topic = settings.find("".join(given[1:]))
            if topic is None:
                return module_result([Reply(campaign.text("unknown_topic", UNKNOWN_TOPIC), base)])
            values = {**base, "topic": topic, "description": settings.topics[topic]}
            if topic not in held:
                return module_result([Unsubscribe(topic), Reply(campaign.text("not_subscribed", NOT_SUBSCRIBED), values)])
            remaining = [code for code in held if code != topic]
            return module_result(
                [
                    Unsubscribe(topic),
                    Record("unsubscribe", topic),
                    SetState({"topics": remaining}),
                    Reply(campaign.text("unsubscribed", UNSUBSCRIBED), values),
                ]
            )

        if given:
            topic = settings.find(message.args)
            if topic is None:
                return module_result([Reply(campaign.text("unknown_topic", UNKNOWN_TOPIC), base)])
        elif settings.default_topic is not None:
            topic = settings.default_topic
        else:
            return module_result([Reply(campaign.text("topics", TOPICS), base)])

        values = {**base, "topic": topic, "description": settings.topics[topic]}
        if topic in held:
            return module_result([Subscribe(topic), Reply(campaign.text("already_subscribed", ALREADY_SUBSCRIBED), values)])
        now_held = [code for code in settings.topics if code in held or code == topic]
        return module_result(
            [
                Subscribe(topic),
                Record("subscribe", topic),
                SetState({"topics": now_held}),
                Reply(campaign.response or RESPONSE, values),
            ]
        )

    def summarise(self, settings: AlertsSettings, totals: Sequence[Total]) -> list[tuple[str, str]]:
        """Per topic, how many subscriptions and unsubscriptions the campaign's keyword made.

        The gateway's global STOP removes subscriptions without a record here, so the
        current number of subscribers is the subscription table's to tell.

        Returns:
            ``[("Breaking news (NEWS)", "120 subscribed, 7 unsubscribed"), ...]``.
        """
        subscribed = totals_of(totals, "subscribe")
        unsubscribed = totals_of(totals, "unsubscribe")
        lines = []
        for code, description in settings.topics.items():
            name = description if key(code) == key(description) else f"{description} ({code})"
            ins = subscribed[code].count if code in subscribed else 0
            outs = unsubscribed[code].count if code in unsubscribed else 0
            lines.append((name, f"{ins} subscribed, {outs} unsubscribed"))
        return lines
