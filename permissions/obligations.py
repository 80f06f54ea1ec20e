"""The policy's obligations, computed: who is due for erasure, who is under age, what to keep.

Three obligations (the policy file's ``[obligations]``, :class:`Obligations`):

* **Erase idle subscribers.** A subscriber not seen for ``erase_after_months`` calendar
  months is erased: every profile, every record. When an opt-out must still be honoured,
  only a keyed hash of the number stays (:func:`keyed_number_hash`), so that a later
  marketing list can be checked against it without keeping the number.
* **Minimum age.** A subscriber known to be younger than ``minimum_age``
  (:func:`is_under_age`) gets the fixed ``under_age_reply`` and nothing else, and no profile
  is written.
* **Erase on opt-out.** When a subscriber opts out of a campaign (STOP for that campaign,
  its short code, or everything), that campaign's local profile of the subscriber is
  erased (:func:`plan_opt_out_erasures`).

Everything here returns *plans* (:class:`ErasurePlan`), never performs them. Plans are
idempotent: executing one twice erases nothing more the second time, and once executed
the subscriber no longer appears in the inputs that made it due.

Month arithmetic is calendar arithmetic with the day clamped to the month's end
(:func:`add_months`); "idle for N months" means ``last_seen <= now - N months``. So a
subscriber last seen on 31 January is one month idle from 1 March 00:00 (when the whole of
February has passed), and one last seen on 29 February 2024 is twelve months idle from
1 March 2025. :func:`idle_cutoff` gives the latest ``last_seen`` that is due, for a store
query.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import hashlib
import hmac
import math
import re
from typing import Any, Collection, Hashable, Iterable, Mapping, TypeVar

import attrs

from permissions.consent import CampaignRef, ConsentPurpose, OptOut, Scope

__all__ = [
    "DEFAULT_UNDER_AGE_REPLY",
    "ErasurePlan",
    "ErasureReason",
    "Obligations",
    "add_months",
    "erasure_due",
    "idle_cutoff",
    "is_under_age",
    "keyed_number_hash",
    "plan_idle_erasures",
    "plan_opt_out_erasures",
]

K = TypeVar("K", bound=Hashable)

DEFAULT_UNDER_AGE_REPLY = "Sorry, this service is for people aged 14 and over."


def _in_range(lo: int, hi: int) -> Any:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
        if type(value) is not int or not lo <= value <= hi:
            raise ValueError(f"{attribute.name} must be an integer from {lo} to {hi}, got {value!r}")

    return check


def _reply(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 1000:
        raise ValueError(f"{attribute.name} must be a non-empty text of at most 1000 characters, got {value!r}")


def _flag(_instance: Any, attribute: attrs.Attribute[Any], value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be true or false, got {value!r}")


@attrs.frozen
class Obligations:
    """What the policy obliges the gateway to do (the policy file's ``[obligations]``)."""

    #: Erase the profiles of subscribers idle this many calendar months.
    erase_after_months: int = attrs.field(default=12, validator=_in_range(1, 600))
    #: Do not operate for subscribers known to be younger (0 turns the rule off).
    minimum_age: int = attrs.field(default=14, validator=_in_range(0, 120))
    #: The one reply an under-age subscriber gets.
    under_age_reply: str = attrs.field(default=DEFAULT_UNDER_AGE_REPLY, validator=_reply)
    #: Erase a campaign's local profile of a subscriber who opts out of the campaign.
    erase_local_profile_on_opt_out: bool = attrs.field(default=True, validator=_flag)


class ErasureReason(enum.StrEnum):
    """Why data is erased."""

    #: Not seen for ``erase_after_months``.
    IDLE = "idle"
    #: Opted out of the campaign whose local profile is erased.
    OPT_OUT = "opt_out"
    #: Known to be under the minimum age.
    UNDER_AGE = "under_age"
    #: The subscriber asked (``gatewayd subject erase``).
    SUBJECT_REQUEST = "subject_request"


@attrs.frozen
class ErasurePlan:
    """One erasure to perform.

    With ``campaign`` None, everything held about the subscriber goes; with a campaign, only
    that campaign's local profile of the subscriber (the subscriber stays). ``keep_hash``
    says to keep the keyed hash of the number (and the opt-out it honours) when the
    subscriber goes.
    """

    subscriber_id: Hashable
    keep_hash: bool
    reason: ErasureReason = attrs.field(converter=ErasureReason)
    campaign: str | None = None


# --- months --------------------------------------------------------------------------------------


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """``moment`` moved by ``months`` calendar months (negative: back), the day clamped to the
    target month's last day (31 January + 1 month = 28 or 29 February). Time of day and
    time zone are kept."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month0 = divmod(index, 12)
    if not dt.MINYEAR <= year <= dt.MAXYEAR:
        raise OverflowError(f"{months} months from {moment.isoformat()} is out of range")
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return moment.replace(year=year, month=month0 + 1, day=day)


def _check_months(months: int) -> None:
    if type(months) is not int or months < 0:
        raise ValueError(f"months must be an integer >= 0, got {months!r}")


def idle_cutoff(now: float, months: int) -> float:
    """The latest ``last_seen`` (UTC seconds) that is ``months`` months idle at ``now``:
    ``now`` moved back ``months`` calendar months (day clamped), to the same fraction of a
    second."""
    _check_months(months)
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite time, got {now!r}")
    whole = math.floor(now)
    moment = dt.datetime.fromtimestamp(whole, dt.timezone.utc)
    return add_months(moment, -months).timestamp() + (now - whole)


def erasure_due(last_seen: Mapping[K, float], now: float, months: int) -> list[K]:
    """The subscribers idle at least ``months`` calendar months at ``now``.

    Args:
        last_seen: subscriber -> when they last took part (UTC seconds).
        now: the time of the run.
        months: the policy's ``erase_after_months``.

    Returns:
        The subscribers with ``last_seen <= idle_cutoff(now, months)``, in the mapping's order.
    """
    cutoff = idle_cutoff(now, months)
    return [subscriber for subscriber, seen in last_seen.items() if seen <= cutoff]


def plan_idle_erasures(
    last_seen: Mapping[K, float], now: float, months: int, opted_out: Collection[K] = ()
) -> list[ErasurePlan]:
    """The erasures the idle obligation asks for at ``now``.

    ``opted_out`` holds the subscribers with an opt-out to honour: for them the keyed hash of
    the number is kept.
    """
    return [ErasurePlan(s, s in opted_out, ErasureReason.IDLE) for s in erasure_due(last_seen, now, months)]


def plan_opt_out_erasures(
    subscriber_id: Hashable, event: OptOut, campaigns: Iterable[CampaignRef], obligations: Obligations
) -> list[ErasurePlan]:
    """The local profiles to erase after ``event``: one plan per campaign of ``campaigns``
    (those the subscriber has a local profile in) that the opt-out covers.

    Only an opt-out of everything (STOP, not a marketing-only opt-out) leaves the campaign,
    and only when the policy's ``erase_local_profile_on_opt_out`` is on.
    """
    if not obligations.erase_local_profile_on_opt_out or event.purpose is not ConsentPurpose.ALL:
        return []
    return [
        ErasurePlan(subscriber_id, False, ErasureReason.OPT_OUT, campaign.name)
        for campaign in campaigns
        if event.scope.covers(Scope.of_campaign(campaign))
    ]


# --- the number after erasure ----------------------------------------------------------------

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def keyed_number_hash(key: bytes, e164: str) -> str:
    """The keyed hash kept instead of a number: HMAC-SHA256 of the E.164 number (``+``
    and digits, UTF-8) under ``key``, as 64 hex digits.

    The same key and number always give the same hash, so an opt-out is honoured after the
    number itself is erased; without the key the hash cannot be tested against guesses.
    Raises ``ValueError`` for an empty key or a number that is not E.164.
    """
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError("the hash key must be non-empty bytes")
    if not isinstance(e164, str) or _E164.fullmatch(e164) is None:
        raise ValueError(f"expected an E.164 number such as '+306912345678', got {e164!r}")
    return hmac.new(bytes(key), e164.encode("ascii"), hashlib.sha256).hexdigest()


# --- age ---------------------------------------------------------------------------------------

_AGE = re.compile(r"\s*([0-9]{1,3})\s*")
_BAND = re.compile(r"\s*([0-9]{1,3})\s*[-\u2010-\u2015]\s*([0-9]{1,3})\s*")
_PLUS = re.compile(r"\s*([0-9]{1,3})\s*\+\s*")
_UNDER = re.compile(r"\s*(?:<|under|below)\s*([0-9]{1,3})\s*", re.IGNORECASE)
_YEAR = re.compile(r"\s*([0-9]{4})\s*")


def _compare(lo: int, hi: int | None, minimum: int) -> bool | None:
    """Under age for an age known to be in ``[lo, hi]`` (hi None: unbounded)."""
    if hi is not None and hi < minimum:
        return True
    if lo >= minimum:
        return False
    return None


def _from_age(value: str, minimum: int) -> bool | None:
    m = _AGE.fullmatch(value)
    if m is None or int(m[1]) > 150:
        return None
    return int(m[1]) < minimum


def _from_band(value: str, minimum: int) -> bool | None:
    if m := _BAND.fullmatch(value):
        lo, hi = int(m[1]), int(m[2])
        return _compare(lo, hi, minimum) if lo <= hi <= 150 else None
    if m := _PLUS.fullmatch(value):
        return _compare(int(m[1]), None, minimum)
    if m := _UNDER.fullmatch(value):
        # "under 14" / "<14": at most 13.
        return _compare(0, int(m[1]) - 1, minimum) if int(m[1]) > 0 else None
    return _from_age(value, minimum)


def _from_birth_year(value: str, minimum: int, now: float | None) -> bool | None:
    m = _YEAR.fullmatch(value)
    if m is None or now is None:
        return None
    year = dt.datetime.fromtimestamp(math.floor(now), dt.timezone.utc).year
    born = int(m[1])
    if born > year or year - born > 150:
        return None
    # Before this year's birthday the age is year - born - 1, after it year - born.
    return _compare(year - born - 1, year - born, minimum)


def is_under_age(declared: Mapping[str, str], minimum_age: int, *, now: float | None = None) -> bool | None:
    """Whether the subscriber is known to be younger than ``minimum_age``.

    Reads the declared attributes (names compared without regard to case):

    * ``age``: whole years, ``"13"``;
    * ``age_band``: ``"10-13"``, ``"14-17"``, ``"18+"``, ``"under 14"`` or ``"<14"``;
    * ``birth_year``: ``"2011"``, compared with the year of ``now`` (without ``now`` it is
      not used); the age is then known only to a year, so a subscriber who may or may not
      have had the birthday that matters is not known either way.

    Returns:
        True when some attribute shows the subscriber is under age (a minor is protected even
        when another attribute disagrees), False when some attribute shows they are not and
        none shows they are, None when nothing known decides (no attribute, a band that
        straddles the minimum, a value that cannot be read).
    """
    if type(minimum_age) is not int or minimum_age < 0:
        raise ValueError(f"minimum_age must be an integer >= 0, got {minimum_age!r}")
    found: list[bool | None] = []
    for name, value in declared.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        key = name.strip().lower()
        if key == "age":
            found.append(_from_age(value, minimum_age))
        elif key == "age_band":
            found.append(_from_band(value, minimum_age))
        elif key == "birth_year":
            found.append(_from_birth_year(value, minimum_age, now))
    if True in found:
        return True
    if False in found:
        return False
    return None
