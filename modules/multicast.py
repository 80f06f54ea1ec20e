"""Multicast: a campaign that sends one message to a segment of subscribers on a schedule.

A sheet::

    module = "multicast"
    content = "advertising"
    keywords = ["OFFER"]
    response = "Thanks! Show this SMS in store for 10% off."   # the answer to a reply

    [settings]
    text = "Acme: 2 for 1 on summer shoes this weekend. Reply OFFER for a voucher, STOP to opt out."
    send_at = [2026-11-24T09:00:00Z]
    quiet_hours = "09:00-21:00"        # in each recipient's local time; MTs outside it wait
    per_day = 1                         # marketing MTs per subscriber, across campaigns
    [settings.segment]
    took_part_in = ["summer-coupons"]
    last_seen_within_days = 90
    attributes = { age_band = ["18-24", "25-34"] }
    [settings.send_again]
    after_hours = 24                    # follow up those who did not reply within a day
    times = 1
    text = "Last chance: 2 for 1 ends tonight."

Sending is the gateway's business (see :mod:`gatewayd.outbound`): at each ``send_at`` the
segment is selected in the database and materialised into the outbox at low priority;
the privacy policy must let the campaign's owner read what the segment uses for marketing,
and each recipient needs a marketing opt-in. Replies to the campaign's keyword are answered
here with ``response`` (default "Thank you for your reply.") and counted as
``Record("reply", "received")``.

Settings:
    ``text`` (1 to 1000 characters); ``send_at`` (TOML date-times, unquoted, UTC without
    an offset); ``segment`` (see :class:`SegmentSettings`); ``quiet_hours`` ("HH:MM-HH:MM",
    the allowed window, default "09:00-21:00"; "00:00-00:00" allows any time);
    ``time_zone`` (an IANA zone for every recipient instead of the number's own);
    ``default_time_zone`` (for numbers that map to several zones, default "UTC");
    ``per_day`` / ``per_week`` (caps, optional); ``priority`` (10 to 100, default 10);
    ``send_again`` (see :class:`SendAgainSettings`).
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Mapping

import attrs

from modules._common import check_text, in_range, module_result, validator
from modules.api import Message, ModuleContext, ModuleResult, Record, Reply

__all__ = ["MulticastModule", "MulticastSettings", "SegmentSettings", "SendAgainSettings"]

RESPONSE = "Thank you for your reply."


_WINDOW = re.compile(r"\s*([01]?[0-9]|2[0-4]):([0-5][0-9])\s*-\s*([01]?[0-9]|2[0-4]):([0-5][0-9])\s*")


def _quiet_hours(name: str, value: object) -> None:
    m = _WINDOW.fullmatch(value) if isinstance(value, str) else None
    if m is None or any(int(m[h]) == 24 and int(m[h + 1]) for h in (1, 3)):
        raise ValueError(f"{name}: expected the allowed hours as 'HH:MM-HH:MM' such as '09:00-21:00', got {value!r}")


def _zone(name: str, value: object) -> None:
    import zoneinfo

    if value is None:
        return
    try:
        zoneinfo.ZoneInfo(str(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name}: expected an IANA time zone such as 'Europe/Athens', got {value!r}") from None


def _optional_count(name: str, value: object) -> None:
    if value is not None:
        in_range(name, value, minimum=1, maximum=1000, integer=True)


@attrs.frozen
class SegmentSettings:
    """Who a send goes to (``[settings.segment]``); every criterion given must hold."""

    #: Only subscribers with a marketing opt-in covering the campaign (default true).
    opted_in: bool = True
    #: Only subscribers of this alert topic of the campaign ("" for any topic).
    alerts_topic: str | None = None
    #: Took part in at least one of these campaigns.
    took_part_in: tuple[str, ...] = ()
    #: Took part in none of these campaigns.
    not_in: tuple[str, ...] = ()
    #: Sent an MO within this many days.
    last_seen_within_days: int | None = attrs.field(default=None, validator=validator(_optional_count))
    #: Declared attribute -> accepted values.
    attributes: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: Declared attribute -> accepted prefixes (a postcode area).
    attribute_prefixes: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)


@attrs.frozen
class SendAgainSettings:
    """A follow-up to a send's recipients who did not reply (``[settings.send_again]``)."""

    #: Hours after the send started.
    after_hours: float = attrs.field(validator=validator(in_range, minimum=0.01, maximum=24 * 90))
    #: How many follow-ups at most.
    times: int = attrs.field(default=1, validator=validator(in_range, minimum=1, maximum=10, integer=True))
    #: The follow-up text (default: the send's own).
    text: str | None = None
    #: "no_reply" (default), "undelivered" or "both".
    to: str = attrs.field(default="no_reply", validator=attrs.validators.in_(("no_reply", "undelivered", "both")))


@attrs.frozen
class MulticastSettings:
    """The ``[settings]`` of a multicast campaign (see the module's documentation)."""

    text: str = attrs.field(validator=validator(check_text, max_length=1000))
    send_at: tuple[datetime.datetime, ...] = ()
    segment: SegmentSettings = attrs.field(factory=SegmentSettings)
    quiet_hours: str = attrs.field(default="09:00-21:00", validator=validator(_quiet_hours))
    time_zone: str | None = attrs.field(default=None, validator=validator(_zone))
    default_time_zone: str = attrs.field(default="UTC", validator=validator(_zone))
    per_day: int | None = attrs.field(default=None, validator=validator(_optional_count))
    per_week: int | None = attrs.field(default=None, validator=validator(_optional_count))
    priority: int = attrs.field(default=10, validator=validator(in_range, minimum=10, maximum=100, integer=True))
    send_again: SendAgainSettings | None = None


class MulticastModule:
    """Answer replies to a multicast campaign; the sends themselves are the gateway's."""

    Settings = MulticastSettings

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Count a reply and answer it with the sheet's ``response``."""
        actions: list[Any] = [Record("reply", "received"), Reply(ctx.campaign.response or RESPONSE)]
        return module_result(actions)
