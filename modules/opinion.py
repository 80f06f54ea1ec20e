"""Opinions: subscribers send free text ("what did you think of tonight's show?").

A sheet::

    module = "opinion"
    keywords = ["SAY"]
    response = "Thank you, your opinion has been received."

    [settings]
    min_length = 2
    max_length = 640
    ask = "What did you think of tonight's show? Reply with your opinion."

"SAY great show!" records "great show!" at once. "SAY" alone replies with ``ask`` and opens a
session, so the subscriber's next SMS on the short code is the opinion, without the keyword.
A text shorter than ``min_length`` is refused with ``too_short`` and the session stays open
for another try; a longer one than ``max_length`` is kept truncated.

Free text is a privacy category of its own: it can name people, health, politics or
anything else a subscriber chooses to write. This module only *proposes* storing it (as a
profile fact); whether the campaign may keep it, and for how long, is the privacy policy's
decision, enforced by the engine where it applies the actions. The module keeps no copy in
its state and never renders the text into a reply.

Settings:
    ``min_length`` (characters, 1 to ``max_length``, default 1); ``max_length`` (1 to 5000,
    default 640); ``ask`` (the prompt for the keyword alone, at most 640 characters; default
    "What do you think? Reply with your opinion."); ``session_timeout`` (seconds to wait for
    the opinion after ``ask``, 1 to 86400, default 600).

Texts:
    ``response`` — the acknowledgement; default "Thank you, your opinion has been received.";
    ``too_short`` — default "Your message is too short. Please send at least {min_length}
    characters." (``{min_length}``).

State: none.

Records: ``Record("opinion", "received")`` per opinion. Facts: ``RecordFact("opinion",
<the text, stripped and truncated to max_length>)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs

from modules._common import check_text, in_range, module_result, totals_of, validator
from modules.api import EndSession, Message, ModuleContext, ModuleResult, OpenSession, Record, RecordFact, Reply, Total

__all__ = ["OpinionModule", "OpinionSettings"]

RESPONSE = "Thank you, your opinion has been received."
ASK = "What do you think? Reply with your opinion."
TOO_SHORT = "Your message is too short. Please send at least {min_length} characters."


@attrs.frozen
class OpinionSettings:
    """The ``[settings]`` of an opinion campaign (see the module's documentation)."""

    min_length: int = attrs.field(default=1, validator=validator(in_range, minimum=1, integer=True))
    max_length: int = attrs.field(default=640, validator=validator(in_range, minimum=1, maximum=5000, integer=True))
    ask: str = attrs.field(default=ASK, validator=validator(check_text, max_length=640))
    session_timeout: float = attrs.field(default=600.0, validator=validator(in_range, minimum=1, maximum=86_400))

    def __attrs_post_init__(self) -> None:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length: {self.min_length} is more than max_length ({self.max_length})")


class OpinionModule:
    """Take one free-text opinion per message, asking for it when the keyword comes alone."""

    Settings = OpinionSettings

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Record an opinion, ask for one, or say it is too short.

        Args:
            ctx: the campaign and its :class:`OpinionSettings`.
            message: the keyword with or without the opinion, or the opinion through the
                session ``ask`` opened.

        Returns:
            Always a reply; the record and fact when an opinion was taken.
        """
        settings: OpinionSettings = ctx.settings
        text = message.args.strip()
        if not text:
            return module_result([OpenSession(settings.session_timeout), Reply(settings.ask)])
        if len(text) < settings.min_length:
            template = ctx.campaign.text("too_short", TOO_SHORT)
            return module_result([OpenSession(settings.session_timeout), Reply(template, {"min_length": settings.min_length})])
        actions: list[Any] = [
            Record("opinion", "received"),
            RecordFact(object="opinion", attitude=text[: settings.max_length].rstrip(), free_text=True),
        ]
        if message.via_session or ctx.subscriber.in_session:
            actions.append(EndSession())
        actions.append(Reply(ctx.campaign.response or RESPONSE))
        return module_result(actions)

    def summarise(self, settings: OpinionSettings, totals: Sequence[Total]) -> list[tuple[str, str]]:
        """How many opinions were received (their texts are in the profiles, under the policy).

        Returns:
            ``[("Opinions received", "42")]``.
        """
        got = totals_of(totals, "opinion").get("received")
        return [("Opinions received", str(got.count if got else 0))]
