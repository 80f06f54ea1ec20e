"""Quiet hours and frequency caps for marketing MTs.

Marketing MTs go out only inside an allowed window of the *recipient's* local wall-clock
time, and only while the recipient is under the campaign's caps. Neither rule drops a
message: an MT that may not go now is deferred to the moment it may.

The rules, as implemented here:

* **Window.** :class:`QuietHours` holds the allowed window ``[start, end)`` in local time,
  e.g. 09:00-21:00. ``start == end`` means always allowed; ``start > end`` wraps midnight
  (20:00-02:00 allows 20:00 to midnight and midnight to 02:00). "24:00" is midnight, so
  "09:00-24:00" allows 09:00 to the end of the day.
* **Zone.** :func:`zone_for` picks the recipient's zone: an explicit override first, then
  the number's own zone when the numbering plan gives exactly one, else a default (numbers
  spanning several zones, such as US/Canada, Russia or Australia, and numbers that cannot
  be placed at all).
* **Deferral.** :func:`next_allowed` answers the earliest instant at or after ``now`` whose
  local time lies in the window. Normally that is ``now`` itself or the next local
  ``start``. Across daylight-saving changes the local clock jumps, and the answer follows
  the clock: a ``start`` that does not exist on a spring-forward day becomes the first
  moment that does (the end of the gap), an ambiguous ``start`` on a fall-back day is its
  first occurrence, and a backward jump that lands inside the window opens it at the jump.
* **Caps.** :class:`Caps` limits the marketing MTs a subscriber receives in any rolling day
  (the last 86 400 s) and any rolling week (the last 7 x 86 400 s). A message sent at
  ``s`` counts at ``t`` while ``s <= t < s + window``.

Everything here is pure: instants are UTC epoch seconds passed in by the caller, and
nothing reads a clock or does I/O (the time zone database aside).
"""

from __future__ import annotations

import bisect
import datetime
import functools
import math
import re
import zoneinfo
from typing import Any, Sequence

import attrs
import phonenumbers
from phonenumbers.timezone import UNKNOWN_TIMEZONE, time_zones_for_number

__all__ = ["QuietHours", "Caps", "zone_for", "next_allowed", "DAY", "WEEK"]

#: Seconds in a rolling day and week.
DAY = 86_400
WEEK = 7 * DAY

_MIDNIGHT = datetime.time(0, 0)

_WINDOW = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*")


def _check_time(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, datetime.time):
        raise TypeError(f"{attribute.name} must be a datetime.time, got {value!r}")
    if value.tzinfo is not None:
        raise ValueError(f"{attribute.name} must be a local (naive) time, got {value!r}")
    if value.microsecond:
        raise ValueError(f"{attribute.name} must be a whole second, got {value!r}")


def _seconds(t: datetime.time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


@attrs.frozen
class QuietHours:
    """The allowed window ``[start, end)`` of local wall-clock time.

    ``start == end`` allows every moment; ``start > end`` wraps midnight. Times are naive
    and whole seconds. Build one from text with :meth:`parse`.
    """

    #: First allowed local time.
    start: datetime.time = attrs.field(validator=_check_time)
    #: First local time after the window (midnight: the end of the day).
    end: datetime.time = attrs.field(validator=_check_time)

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """The window written as ``"HH:MM-HH:MM"``, e.g. ``"09:00-21:00"`` or ``"9:00-21:00"``.

        Hours run 00-24 and minutes 00-59; "24:00" is midnight, so as an end it means the
        end of the day. Spaces around the times are allowed.

        Raises:
            ValueError: the text is not such a window.
        """
        m = _WINDOW.fullmatch(text) if isinstance(text, str) else None
        if m is not None:
            (start_h, start_m, end_h, end_m) = (int(g) for g in m.groups())
            if all(h < 24 or (h == 24 and mm == 0) for h, mm in ((start_h, start_m), (end_h, end_m))) and start_m < 60 and end_m < 60:
                return cls(datetime.time(start_h % 24, start_m), datetime.time(end_h % 24, end_m))
        raise ValueError(f"expected the allowed hours as 'HH:MM-HH:MM' (00:00 to 24:00), such as '09:00-21:00', got {text!r}")

    @property
    def always(self) -> bool:
        """True when every local time is allowed (``start == end``)."""
        return self.start == self.end

    def contains(self, local: datetime.time) -> bool:
        """Whether the local wall-clock time ``local`` lies in the window."""
        if local.tzinfo is not None:
            local = local.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        if self.start > self.end:
            return local >= self.start or local < self.end
        return True

    def __str__(self) -> str:
        def fmt(t: datetime.time, *, as_end: bool) -> str:
            text = "24:00" if as_end and t == _MIDNIGHT and not self.always else f"{t.hour:02d}:{t.minute:02d}"
            return text + (f":{t.second:02d}" if t.second else "")

        return f"{fmt(self.start, as_end=False)}-{fmt(self.end, as_end=True)}"


# ---------------------------------------------------------------------------------------
# Zones


#: Numbers whose zone is remembered; an entry costs a few hundred bytes.
NUMBER_CACHE_SIZE = 65_536

# Old names phonenumbers still uses for zones IANA has since renamed (the tz "backward"
# file); the current name is answered when the installed database has it.
_RENAMED = {
    "Africa/Asmera": "Africa/Asmara",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Godthab": "America/Nuuk",
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Rangoon": "Asia/Yangon",
    "Atlantic/Faeroe": "Atlantic/Faroe",
    "Pacific/Enderbury": "Pacific/Kanton",
    "Pacific/Ponape": "Pacific/Pohnpei",
    "Pacific/Truk": "Pacific/Chuuk",
}


@functools.lru_cache(maxsize=256)
def _load(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"expected an IANA time zone such as 'Europe/Athens', got {name!r}") from None


@functools.lru_cache(maxsize=NUMBER_CACHE_SIZE)
def _number_zone(e164: str) -> zoneinfo.ZoneInfo | None:
    """The one zone of the number, or None (several zones, unknown, or not a number)."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None
    zones = [name for name in time_zones_for_number(number) if name != UNKNOWN_TIMEZONE]
    if len(zones) != 1:
        return None
    name = zones[0]
    for candidate in (_RENAMED.get(name), name):
        if candidate is not None:
            try:
                return _load(candidate)
            except ValueError:
                continue
    return None


def zone_for(e164: str, *, override: str | None = None, default: str = "UTC") -> zoneinfo.ZoneInfo:
    """The time zone of the subscriber at ``e164`` ("+" and the digits).

    Args:
        e164: the recipient's number in E.164 form, e.g. "+302101234567".
        override: an IANA zone name that wins over the number's zone when given.
        default: the zone of numbers that map to several zones (US/Canada, Russia,
            Australia, ...), to none, or that cannot be parsed.

    Returns:
        The ``override`` zone when given; else the number's zone when the numbering plan
        gives exactly one (with the current IANA name, e.g. Asia/Kolkata rather than
        Asia/Calcutta); else the ``default`` zone.

    Raises:
        ValueError: ``override`` (or ``default``, when it is needed) is not a known zone.

    Lookups are remembered per number (:data:`NUMBER_CACHE_SIZE` of them), so repeated
    calls for a number cost a dictionary lookup.
    """
    if override is not None:
        return _load(override)
    zone = _number_zone(e164)
    return zone if zone is not None else _load(default)


# ---------------------------------------------------------------------------------------
# Deferral


def _offset(t: float, zone: zoneinfo.ZoneInfo) -> int:
    """The zone's UTC offset at ``t``, in whole seconds."""
    offset = datetime.datetime.fromtimestamp(t, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _next_change(lo: float, hi: int, zone: zoneinfo.ZoneInfo, offset: int) -> int | None:
    """The first instant in ``(lo, hi]`` at which the zone's offset stops being ``offset``.

    Offsets change at whole seconds and, in the tz database since 1970, never twice within
    a day, so comparing the ends of a span of at most a day tells whether it holds a change.
    """
    if _offset(hi, zone) == offset:
        return None
    a, b = math.floor(lo), hi  # offset(a) == offset, offset(b) != offset
    if _offset(a, zone) != offset:  # lo sat within a microsecond of a change and was rounded past it
        a = math.ceil(lo)
    while b - a > 1:
        m = (a + b) // 2
        if _offset(m, zone) == offset:
            a = m
        else:
            b = m
    return b


def next_allowed(now: float, zone: zoneinfo.ZoneInfo, window: QuietHours) -> float:
    """The earliest instant at or after ``now`` whose local time in ``zone`` lies in ``window``.

    ``now`` itself when it is inside the window; otherwise, as a rule, the next moment the
    local clock reads ``window.start``. Across daylight-saving changes: a ``start`` that
    does not exist that day (spring forward) gives the first moment after it that does; an
    ambiguous ``start`` (fall back) gives its first occurrence; and when the clock jumps
    back into the middle of the window, the window opens at the jump.

    Args:
        now: UTC epoch seconds.
        zone: the recipient's zone (see :func:`zone_for`).
        window: the allowed local hours.

    Returns:
        UTC epoch seconds, ``>= now``, at which the local time is inside the window, with
        no such instant in between.
    """
    if window.always:
        return now
    start = _seconds(window.start)
    t: float = now
    # Each round either answers or moves to the next offset change, which are months apart.
    for _ in range(16):
        local = datetime.datetime.fromtimestamp(t, zone)
        if window.contains(local.time()):
            return t
        offset = int(local.utcoffset().total_seconds())  # type: ignore[union-attr]
        # With the offset unchanged the local clock runs with UTC: the next ``start`` is the
        # first instant >= t whose local seconds-of-day are ``start``.
        local_seconds = t + offset
        candidate = int(local_seconds // DAY) * DAY + start - offset
        if candidate < t:
            candidate += DAY
        change = _next_change(t, candidate, zone, offset)
        # When the offset changes first, the clock jumps there: look again from the jump.
        t = float(candidate if change is None else change)
    raise AssertionError(f"no allowed time found after {now!r} in {zone} for {window}")  # pragma: no cover


# ---------------------------------------------------------------------------------------
# Caps


def _check_cap(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive whole number or None, got {value!r}")


@attrs.frozen
class Caps:
    """How many marketing MTs a subscriber may receive per rolling day and week.

    None means no cap. A message sent at ``s`` counts at ``t`` while
    ``s <= t < s + window``: that is, in ``(t - window, t]``.
    """

    #: Most marketing MTs in any rolling 24 hours.
    per_day: int | None = attrs.field(default=None, validator=_check_cap)
    #: Most marketing MTs in any rolling 7 days.
    per_week: int | None = attrs.field(default=None, validator=_check_cap)

    def _limits(self) -> list[tuple[int, int]]:
        return [(cap, width) for cap, width in ((self.per_day, DAY), (self.per_week, WEEK)) if cap is not None]

    def allows(self, sent_times: Sequence[float], now: float) -> bool:
        """Whether one more marketing MT may go at ``now``.

        Args:
            sent_times: UTC epoch seconds of the subscriber's earlier marketing MTs (any
                order; those outside the rolling windows are ignored).
            now: UTC epoch seconds.

        Returns:
            True when fewer than ``per_day`` were sent in ``(now - 1 day, now]`` and fewer
            than ``per_week`` in ``(now - 7 days, now]``.
        """
        for cap, width in self._limits():
            if sum(1 for s in sent_times if s <= now < s + width) >= cap:
                return False
        return True

    def next_free(self, sent_times: Sequence[float], now: float) -> float:
        """The earliest instant ``>= now`` at which :meth:`allows` is true.

        ``now`` when it already is; otherwise the moment enough counted messages have left
        the rolling windows.
        """
        limits = self._limits()
        if not limits:
            return now
        starts = sorted(sent_times)
        tables = [(cap, [s + width for s in starts]) for cap, width in limits]

        def allowed(t: float) -> bool:
            counted = bisect.bisect_right(starts, t)
            return all(counted - bisect.bisect_right(leaves, t) < cap for cap, leaves in tables)

        if allowed(now):
            return now
        # A count only falls when a message leaves a window, so the answer is such a moment.
        for t in sorted({leave for _, leaves in tables for leave in leaves if leave > now}):
            if allowed(t):
                return t
        raise AssertionError("caps still reached after every message left its window")  # pragma: no cover
