"""Quiet hours (allowed local windows, recipient zones, deferral across DST) and caps."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers.tzdata import TIMEZONE_DATA

from gatewayd.quiet_hours import DAY, WEEK, Caps, QuietHours, next_allowed, zone_for

UTC = datetime.timezone.utc
ATHENS = zoneinfo.ZoneInfo("Europe/Athens")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
LORD_HOWE = zoneinfo.ZoneInfo("Australia/Lord_Howe")
CHATHAM = zoneinfo.ZoneInfo("Pacific/Chatham")
DAYTIME = QuietHours.parse("09:00-21:00")


def local(zone: zoneinfo.ZoneInfo, *args: int, fold: int = 0) -> float:
    """Epoch seconds of a local wall-clock time (fold=1: the second of two)."""
    return datetime.datetime(*args, tzinfo=zone, fold=fold).timestamp()


def utc(*args: int) -> float:
    return datetime.datetime(*args, tzinfo=UTC).timestamp()


def wall(t: float, zone: zoneinfo.ZoneInfo) -> datetime.time:
    return datetime.datetime.fromtimestamp(t, zone).time()


def t(text: str) -> datetime.time:
    return datetime.time.fromisoformat(text)


# --- QuietHours -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("09:00-21:00", "09:00", "21:00"),
        ("9:00-21:00", "09:00", "21:00"),
        (" 09:00 - 21:00 ", "09:00", "21:00"),
        ("20:00-02:00", "20:00", "02:00"),
        ("09:00-24:00", "09:00", "00:00"),
        ("00:00-24:00", "00:00", "00:00"),
        ("24:00-06:00", "00:00", "06:00"),
        ("0:30-7:05", "00:30", "07:05"),
    ],
)
def test_parse(text: str, start: str, end: str) -> None:
    assert QuietHours.parse(text) == QuietHours(t(start), t(end))


@pytest.mark.parametrize(
    "text",
    ["", "09:00", "9-21", "09:00-21", "09:00-21:00-22:00", "25:00-01:00", "09:00-24:30", "24:01-06:00",
     "09:60-10:00", "009:00-10:00", "09:0-10:00", "09.00-21.00", "\u0660\u0669:00-21:00", "09:00–21:00", None, 900],
)
def test_parse_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        QuietHours.parse(text)  # type: ignore[arg-type]


def test_str_round_trips() -> None:
    for text in ("09:00-21:00", "20:00-02:00", "09:00-24:00", "00:00-00:00"):
        assert str(QuietHours.parse(text)) == text
        assert QuietHours.parse(str(QuietHours.parse(text))) == QuietHours.parse(text)


def test_window_times_are_naive_whole_seconds() -> None:
    with pytest.raises(ValueError, match="naive"):
        QuietHours(datetime.time(9, tzinfo=UTC), t("21:00"))
    with pytest.raises(ValueError, match="whole second"):
        QuietHours(t("09:00"), datetime.time(21, 0, 0, 5))
    with pytest.raises(TypeError):
        QuietHours("09:00", "21:00")  # type: ignore[arg-type]


def test_contains() -> None:
    assert DAYTIME.contains(t("09:00")) and DAYTIME.contains(t("20:59:59.999999"))
    assert not DAYTIME.contains(t("21:00")) and not DAYTIME.contains(t("08:59:59"))
    night = QuietHours.parse("20:00-02:00")
    assert night.contains(t("23:00")) and night.contains(t("00:00")) and night.contains(t("01:59"))
    assert not night.contains(t("02:00")) and not night.contains(t("12:00"))
    until_midnight = QuietHours.parse("09:00-24:00")
    assert until_midnight.contains(t("23:59:59")) and not until_midnight.contains(t("00:00"))
    always = QuietHours.parse("07:00-07:00")
    assert always.always and all(always.contains(datetime.time(h)) for h in range(24))
    assert DAYTIME.contains(datetime.time(10, tzinfo=UTC))  # the wall clock reading counts, not the zone


# --- zone_for -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "zone"),
    [
        ("+302101234567", "Europe/Athens"),  # Athens landline
        ("+306912345678", "Europe/Athens"),  # Greek mobile
        ("+442071234567", "Europe/London"),
        ("+919812345678", "Asia/Kolkata"),  # phonenumbers says Asia/Calcutta
        ("+14165551234", "America/Toronto"),  # a NANP area code within one zone
    ],
)
def test_zone_of_number(number: str, zone: str) -> None:
    assert zone_for(number).key == zone
    assert zone_for(number, default="Pacific/Chatham").key == zone


@pytest.mark.parametrize(
    "number",
    [
        "+6421234567",  # New Zealand mobile: Auckland and Chatham
        "+61412345678",  # Australian mobile
        "+79161234567",  # Russian mobile
        "+18005551234",  # NANP toll free
        "+35312345678",  # Guernsey, Isle of Man, London
    ],
)
def test_number_in_several_zones_gets_the_default(number: str) -> None:
    assert zone_for(number).key == "UTC"
    assert zone_for(number, default="Europe/Berlin").key == "Europe/Berlin"


@pytest.mark.parametrize("number", ["+123", "+882345678901", "+99912345", "", "not a number", "302101234567", "++30"])
def test_unknown_or_unparsable_number_gets_the_default(number: str) -> None:
    assert zone_for(number).key == "UTC"
    assert zone_for(number, default="Asia/Tokyo").key == "Asia/Tokyo"


def test_override_wins() -> None:
    assert zone_for("+302101234567", override="America/New_York") == NEW_YORK
    assert zone_for("not a number", override="Asia/Kolkata") == KOLKATA


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "europe/athens "])
def test_unknown_zone_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="IANA time zone"):
        zone_for("+302101234567", override=name)
    with pytest.raises(ValueError, match="IANA time zone"):
        zone_for("+6421234567", default=name)
    assert zone_for("+302101234567", default=name) == ATHENS  # the default is not needed


def test_every_zone_phonenumbers_names_loads() -> None:
    names = {name for zones in TIMEZONE_DATA.values() for name in zones} - {"Etc/Unknown"}
    for name in names:
        zoneinfo.ZoneInfo(name)


def test_zone_for_is_cached() -> None:
    assert zone_for("+302101234567") is zone_for("+302101234567")


# --- next_allowed: examples -------------------------------------------------------------


def test_inside_the_window_is_now() -> None:
    now = local(ATHENS, 2024, 6, 1, 12, 0, 7)
    assert next_allowed(now, ATHENS, DAYTIME) == now
    opening = local(ATHENS, 2024, 6, 1, 9)
    assert next_allowed(opening, ATHENS, DAYTIME) == opening


def test_before_and_after_the_window() -> None:
    assert next_allowed(local(ATHENS, 2024, 6, 1, 7), ATHENS, DAYTIME) == utc(2024, 6, 1, 6)  # 09:00 EEST
    assert next_allowed(local(ATHENS, 2024, 6, 1, 22, 30), ATHENS, DAYTIME) == utc(2024, 6, 2, 6)
    assert next_allowed(local(ATHENS, 2024, 6, 1, 21), ATHENS, DAYTIME) == utc(2024, 6, 2, 6)  # the end is excluded
    assert next_allowed(local(ATHENS, 2024, 1, 1, 0, 0), ATHENS, DAYTIME) == utc(2024, 1, 1, 7)  # 09:00 EET


def test_window_wrapping_midnight() -> None:
    night = QuietHours.parse("20:00-02:00")
    assert next_allowed(local(ATHENS, 2024, 6, 1, 23), ATHENS, night) == local(ATHENS, 2024, 6, 1, 23)
    assert next_allowed(local(ATHENS, 2024, 6, 1, 1, 59), ATHENS, night) == local(ATHENS, 2024, 6, 1, 1, 59)
    assert next_allowed(local(ATHENS, 2024, 6, 1, 2), ATHENS, night) == local(ATHENS, 2024, 6, 1, 20)
    assert next_allowed(local(ATHENS, 2024, 6, 1, 12), ATHENS, night) == utc(2024, 6, 1, 17)


def test_window_until_midnight() -> None:
    evening = QuietHours.parse("18:00-24:00")
    assert next_allowed(local(ATHENS, 2024, 6, 1, 23, 59), ATHENS, evening) == local(ATHENS, 2024, 6, 1, 23, 59)
    assert next_allowed(local(ATHENS, 2024, 6, 2, 0), ATHENS, evening) == local(ATHENS, 2024, 6, 2, 18)


def test_always_allowed() -> None:
    now = local(ATHENS, 2024, 6, 1, 3, 33)
    assert next_allowed(now, ATHENS, QuietHours.parse("00:00-24:00")) == now
    assert next_allowed(now, ATHENS, QuietHours.parse("12:00-12:00")) == now


def test_half_hour_zone() -> None:
    assert next_allowed(utc(2024, 1, 15, 2), KOLKATA, DAYTIME) == utc(2024, 1, 15, 3, 30)  # 07:30 -> 09:00 IST
    assert next_allowed(utc(2024, 1, 15, 16), KOLKATA, DAYTIME) == utc(2024, 1, 16, 3, 30)  # 21:30 -> 09:00 IST
    assert next_allowed(utc(2024, 1, 15, 15, 29), KOLKATA, DAYTIME) == utc(2024, 1, 15, 15, 29)  # 20:59 IST


def test_new_york_by_override() -> None:
    zone = zone_for("+302101234567", override="America/New_York")
    assert next_allowed(utc(2024, 7, 1, 12), zone, DAYTIME) == utc(2024, 7, 1, 13)  # 08:00 -> 09:00 EDT
    assert next_allowed(utc(2024, 1, 2, 3), zone, DAYTIME) == utc(2024, 1, 2, 14)  # 22:00 -> 09:00 EST


def test_chatham() -> None:
    # +12:45 in winter: 08:00 local is 19:15 UTC the day before.
    assert next_allowed(local(CHATHAM, 2024, 6, 1, 8), CHATHAM, DAYTIME) == utc(2024, 5, 31, 20, 15)
    # Spring forward 2024-09-29 02:45 -> 03:45 (14:00 UTC): 03:00 does not exist.
    early = QuietHours.parse("03:00-08:00")
    assert next_allowed(local(CHATHAM, 2024, 9, 29, 0), CHATHAM, early) == utc(2024, 9, 28, 14)
    assert wall(utc(2024, 9, 28, 14), CHATHAM) == t("03:45")


def test_lord_howe_half_hour_dst() -> None:
    # Spring forward 2024-10-06 02:00 -> 02:30 (+10:30 -> +11, at 15:30 UTC): 02:15 does not exist.
    window = QuietHours.parse("02:15-06:00")
    assert next_allowed(local(LORD_HOWE, 2024, 10, 6, 0), LORD_HOWE, window) == utc(2024, 10, 5, 15, 30)
    # Fall back 2024-04-07 02:00 -> 01:30 (+11 -> +10:30, at 15:00 UTC): 01:45 happens twice.
    window = QuietHours.parse("01:45-06:00")
    assert next_allowed(local(LORD_HOWE, 2024, 4, 7, 0), LORD_HOWE, window) == utc(2024, 4, 6, 14, 45)
    assert local(LORD_HOWE, 2024, 4, 7, 1, 45, fold=1) == utc(2024, 4, 6, 15, 15)  # the second one, not chosen


def test_athens_spring_forward() -> None:
    # 2024-03-31 03:00 EET -> 04:00 EEST at 01:00 UTC.
    midnight = local(ATHENS, 2024, 3, 31, 0, 30)
    assert next_allowed(midnight, ATHENS, DAYTIME) == utc(2024, 3, 31, 6)  # 09:00 EEST
    assert next_allowed(midnight, ATHENS, QuietHours.parse("03:30-05:00")) == utc(2024, 3, 31, 1)  # 04:00 EEST
    assert next_allowed(midnight, ATHENS, QuietHours.parse("03:00-04:30")) == utc(2024, 3, 31, 1)
    # A window wholly inside the missing hour does not happen that day.
    assert next_allowed(midnight, ATHENS, QuietHours.parse("03:00-03:30")) == utc(2024, 4, 1, 0)  # 03:00 EEST
    # The night before spring forward is an hour shorter.
    assert next_allowed(local(ATHENS, 2024, 3, 30, 21), ATHENS, DAYTIME) == utc(2024, 3, 31, 6)


def test_athens_fall_back() -> None:
    # 2024-10-27 04:00 EEST -> 03:00 EET at 01:00 UTC: 03:00-04:00 happens twice.
    midnight = local(ATHENS, 2024, 10, 27, 0)
    assert next_allowed(midnight, ATHENS, QuietHours.parse("03:30-05:00")) == utc(2024, 10, 27, 0, 30)  # first 03:30
    assert next_allowed(midnight, ATHENS, DAYTIME) == utc(2024, 10, 27, 7)  # 09:00 EET
    # Between the two occurrences the next start is the second one...
    after_first = utc(2024, 10, 27, 0, 45)  # 03:45 EEST
    assert next_allowed(after_first, ATHENS, QuietHours.parse("03:00-03:30")) == utc(2024, 10, 27, 1)
    # ... and a clock that falls back into the middle of the window opens it at once.
    assert next_allowed(after_first, ATHENS, QuietHours.parse("02:00-03:30")) == utc(2024, 10, 27, 1)
    assert wall(utc(2024, 10, 27, 1), ATHENS) == t("03:00")


def test_new_york_dst_days() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT at 07:00 UTC.
    assert next_allowed(local(NEW_YORK, 2024, 3, 10, 0), NEW_YORK, QuietHours.parse("02:30-06:00")) == utc(2024, 3, 10, 7)
    assert next_allowed(local(NEW_YORK, 2024, 3, 10, 0), NEW_YORK, DAYTIME) == utc(2024, 3, 10, 13)
    # 2024-11-03 02:00 EDT -> 01:00 EST at 06:00 UTC: the first 01:30 (EDT).
    assert next_allowed(local(NEW_YORK, 2024, 11, 3, 0), NEW_YORK, QuietHours.parse("01:30-05:00")) == utc(2024, 11, 3, 5, 30)
    assert next_allowed(local(NEW_YORK, 2024, 11, 3, 0), NEW_YORK, DAYTIME) == utc(2024, 11, 3, 14)


def test_transition_at_midnight() -> None:
    santiago = zoneinfo.ZoneInfo("America/Santiago")
    # 2024-09-08 00:00 -04 -> 01:00 -03 at 04:00 UTC.
    assert next_allowed(local(santiago, 2024, 9, 7, 22), santiago, QuietHours.parse("00:00-06:00")) == utc(2024, 9, 8, 4)


def test_skipped_day() -> None:
    apia = zoneinfo.ZoneInfo("Pacific/Apia")
    # Samoa went from 2011-12-29 23:59:59 -10 straight to 2011-12-31 00:00 +14.
    found = next_allowed(local(apia, 2011, 12, 29, 22), apia, DAYTIME)
    assert datetime.datetime.fromtimestamp(found, apia).replace(tzinfo=None) == datetime.datetime(2011, 12, 31, 9)


def test_microsecond_before_a_change() -> None:
    # 2024-03-31 01:00 UTC is Athens' spring forward; a window entirely in the lost hour.
    before = utc(2024, 3, 31, 1) - 1e-7
    assert next_allowed(before, ATHENS, QuietHours.parse("03:00-03:30")) == utc(2024, 4, 1, 0)


# --- next_allowed: properties -----------------------------------------------------------

EPOCH_2000 = utc(2000, 1, 1)
EPOCH_2040 = utc(2040, 1, 1)

INTERESTING = [
    "Europe/Athens", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham",
    "Europe/London", "America/Santiago", "America/Havana", "Asia/Tehran", "Africa/Casablanca",
    "Antarctica/Troll", "Pacific/Apia", "Asia/Kathmandu", "America/St_Johns", "Asia/Gaza", "UTC",
]
ZONES = st.one_of(st.sampled_from(INTERESTING), st.sampled_from(sorted(zoneinfo.available_timezones()))).map(zoneinfo.ZoneInfo)
MINUTES = st.integers(0, 24 * 60 - 1).map(lambda m: datetime.time(m // 60, m % 60))
WINDOWS = st.builds(QuietHours, MINUTES, MINUTES)


def _changes(name: str) -> list[float]:
    """The instants (2000-2040) when the zone's UTC offset changes, found by search."""
    zone = zoneinfo.ZoneInfo(name)

    def offset(x: float) -> datetime.timedelta | None:
        return datetime.datetime.fromtimestamp(x, zone).utcoffset()

    found = []
    x = EPOCH_2000
    while x < EPOCH_2040:
        if offset(x) != offset(x + 4 * DAY):
            a, b = int(x), int(x + 4 * DAY)
            while b - a > 1:
                m = (a + b) // 2
                a, b = (m, b) if offset(m) == offset(a) else (a, m)
            found.append(float(b))
        x += 4 * DAY
    return found


CHANGES = {name: found for name in INTERESTING if (found := _changes(name))}


def _near_changes() -> st.SearchStrategy[tuple[zoneinfo.ZoneInfo, float]]:
    return st.sampled_from(sorted(CHANGES)).flatmap(
        lambda name: st.tuples(
            st.just(zoneinfo.ZoneInfo(name)),
            st.builds(lambda change, delta: change + delta, st.sampled_from(CHANGES[name]), st.floats(-1.5 * DAY, 1.5 * DAY)),
        )
    )


def check_next_allowed(now: float, zone: zoneinfo.ZoneInfo, window: QuietHours) -> None:
    found = next_allowed(now, zone, window)
    assert found >= now
    assert window.contains(wall(found, zone))
    assert next_allowed(found, zone, window) == found
    if window.contains(wall(now, zone)):
        assert found == now
        return
    # No allowed moment is skipped: just before the answer, and every minute from now
    # up to it, the local time is outside the window. (Local times have microseconds, so
    # an instant less than a microsecond before the answer may already read as it.)
    for before in (1, 60, 180, 300):
        if found - before > now:
            assert not window.contains(wall(found - before, zone)), before
    probe = now
    while probe < found - 1e-6:
        assert not window.contains(wall(probe, zone)), probe
        probe += 60
    assert found - now < 2 * DAY


@settings(max_examples=300, deadline=None)
@given(now=st.floats(EPOCH_2000, EPOCH_2040), zone=ZONES, window=WINDOWS)
def test_next_allowed_properties(now: float, zone: zoneinfo.ZoneInfo, window: QuietHours) -> None:
    check_next_allowed(now, zone, window)


@settings(max_examples=300, deadline=None)
@given(place=_near_changes(), window=WINDOWS)
def test_next_allowed_properties_around_dst_changes(place: tuple[zoneinfo.ZoneInfo, float], window: QuietHours) -> None:
    zone, now = place
    check_next_allowed(now, zone, window)


@settings(max_examples=100, deadline=None)
@given(place=_near_changes(), window=WINDOWS)
def test_next_allowed_at_whole_seconds(place: tuple[zoneinfo.ZoneInfo, float], window: QuietHours) -> None:
    zone, now = place
    check_next_allowed(float(round(now / 60) * 60), zone, window)


# --- Caps -------------------------------------------------------------------------------


def test_caps_validation() -> None:
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="positive whole number"):
            Caps(per_day=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive whole number"):
            Caps(per_week=bad)  # type: ignore[arg-type]


def test_no_caps_allow_everything() -> None:
    assert Caps().allows([1000.0] * 100, 1000.0)
    assert Caps().next_free([1000.0] * 100, 1000.0) == 1000.0


def test_per_day() -> None:
    now = 10 * DAY
    caps = Caps(per_day=2)
    assert caps.allows([now - 3600], now)
    assert not caps.allows([now - 3600, now - 7200], now)
    assert caps.allows([now - 3600, now - DAY], now)  # (now - 1 day, now]: exactly a day ago has left
    assert not caps.allows([now - 3600, now - DAY + 1], now)
    assert caps.next_free([now - 3600, now - 7200], now) == now - 7200 + DAY


def test_per_week() -> None:
    now = 20 * DAY
    caps = Caps(per_day=2, per_week=3)
    sent = [now - 6 * DAY, now - 3 * DAY, now - 3600]
    assert not caps.allows(sent, now)
    assert caps.next_free(sent, now) == now + DAY  # the oldest leaves the week
    assert caps.allows(sent, now + DAY)
    assert Caps(per_week=3).allows(sent[1:], now)


def test_next_free_waits_for_both_caps() -> None:
    now = 20 * DAY
    caps = Caps(per_day=1, per_week=2)
    sent = [now - 6.5 * DAY, now - 3600]
    # The day frees at now + 23 h, the week at now + 12 h: both are needed.
    assert caps.next_free(sent, now) == now - 3600 + DAY


def _naive_allows(caps: Caps, sent: list[float], now: float) -> bool:
    day = sum(1 for s in sent if now - DAY < s <= now)
    week = sum(1 for s in sent if now - WEEK < s <= now)
    return (caps.per_day is None or day < caps.per_day) and (caps.per_week is None or week < caps.per_week)


CAPS = st.builds(Caps, st.none() | st.integers(1, 6), st.none() | st.integers(1, 12))
NOW = 1_700_000_000


@settings(max_examples=300, deadline=None)
@given(caps=CAPS, offsets=st.lists(st.integers(-9 * DAY, DAY), max_size=25), shift=st.integers(-2 * DAY, 2 * DAY))
def test_caps_properties(caps: Caps, offsets: list[int], shift: int) -> None:
    sent = [float(NOW + o) for o in offsets]
    now = float(NOW + shift)
    assert caps.allows(sent, now) == _naive_allows(caps, sent, now)
    assert caps.allows(list(reversed(sent)), now) == caps.allows(sent, now)
    found = caps.next_free(sent, now)
    assert found >= now
    assert caps.allows(sent, found) and _naive_allows(caps, sent, found)
    assert caps.next_free(sent, found) == found
    if caps.allows(sent, now):
        assert found == now
    # Counts only change when a message is sent or leaves a window, so checking now and
    # every such moment before the answer (and a second before it) covers all of [now, found).
    events = {now, found - 1} | {s + d for s in sent for d in (0, DAY, WEEK)}
    for moment in events:
        if now <= moment < found:
            assert not _naive_allows(caps, sent, moment), moment


@settings(max_examples=200, deadline=None)
@given(caps=CAPS, sent=st.lists(st.floats(NOW - 9 * DAY, NOW + DAY), max_size=25), now=st.floats(NOW - DAY, NOW + DAY))
def test_caps_with_fractional_times(caps: Caps, sent: list[float], now: float) -> None:
    found = caps.next_free(sent, now)
    assert found >= now
    assert caps.allows(sent, found)
    assert caps.next_free(sent, found) == found
    if found > now:
        assert not caps.allows(sent, now)
