"""Obligations: calendar months, idle erasure, erase on opt-out, the keyed hash, the age rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from permissions.consent import ALL, ConsentPurpose, Evidence, OptOut, Scope
from permissions.obligations import (
    ErasurePlan,
    ErasureReason,
    Obligations,
    add_months,
    erasure_due,
    idle_cutoff,
    is_under_age,
    keyed_number_hash,
    plan_idle_erasures,
    plan_opt_out_erasures,
)
from tests.permissions.strategies import CAMPAIGNS, deterministic

UTC = dt.timezone.utc
DAY = 86400.0


def t(*args: int) -> float:
    """UTC seconds of a date and time."""
    return dt.datetime(*args, tzinfo=UTC).timestamp()


def d(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --- month arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (d(2023, 1, 31, 12), 1, d(2023, 2, 28, 12)),
        (d(2024, 1, 31, 12), 1, d(2024, 2, 29, 12)),
        (d(2024, 2, 29), 12, d(2025, 2, 28)),
        (d(2024, 2, 29), 48, d(2028, 2, 29)),
        (d(2023, 3, 31), -1, d(2023, 2, 28)),
        (d(2024, 3, 31), -1, d(2024, 2, 29)),
        (d(2023, 5, 31), -1, d(2023, 4, 30)),
        (d(2023, 12, 15, 8, 30), 1, d(2024, 1, 15, 8, 30)),
        (d(2024, 1, 15), -1, d(2023, 12, 15)),
        (d(2024, 1, 15), -13, d(2022, 12, 15)),
        (d(2023, 8, 31), 6, d(2024, 2, 29)),
        (d(2100, 3, 29), -1, d(2100, 2, 28)),  # 2100 is no leap year
        (d(2000, 3, 29), -1, d(2000, 2, 29)),  # 2000 is one
        (d(2023, 7, 4, 1, 2, 3, 456), 0, d(2023, 7, 4, 1, 2, 3, 456)),
    ],
)
def test_add_months(start: dt.datetime, months: int, expected: dt.datetime) -> None:
    """Calendar months with the day clamped to the month's end; time of day kept."""
    assert add_months(start, months) == expected


@deterministic
@given(st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1)), st.integers(-240, 240))
def test_add_months_keeps_the_day_when_it_can(moment: dt.datetime, months: int) -> None:
    moved = add_months(moment, months)
    assert (moved.year * 12 + moved.month) - (moment.year * 12 + moment.month) == months
    assert moved.day == moment.day or (moved.day < moment.day and (moved + dt.timedelta(days=1)).month != moved.month)
    assert moved.time() == moment.time()


def test_add_months_out_of_range() -> None:
    with pytest.raises(OverflowError):
        add_months(dt.datetime(9999, 12, 1), 1)


@pytest.mark.parametrize(
    ("now", "months", "cutoff"),
    [
        (t(2024, 5, 10, 8), 12, t(2023, 5, 10, 8)),
        (t(2023, 3, 31), 1, t(2023, 2, 28)),
        (t(2025, 2, 28, 23, 59, 59), 12, t(2024, 2, 28, 23, 59, 59)),
        (t(2025, 3, 1), 12, t(2024, 3, 1)),
        (t(2024, 3, 1) + 0.25, 1, t(2024, 2, 1) + 0.25),
        (t(2024, 3, 1), 0, t(2024, 3, 1)),
    ],
)
def test_idle_cutoff(now: float, months: int, cutoff: float) -> None:
    """The latest last-seen time that is due: now moved back by calendar months."""
    assert idle_cutoff(now, months) == cutoff


@pytest.mark.parametrize(
    ("last_seen", "not_yet", "due"),
    [
        # The ordinary case: the same time of day, N months on.
        (t(2023, 5, 10, 8), t(2024, 5, 10, 8) - 1, t(2024, 5, 10, 8)),
        # Last seen on 29 February: twelve months have passed once February 2025 has ended.
        (t(2024, 2, 29, 10), t(2025, 2, 28, 23, 59, 59), t(2025, 3, 1)),
        # Last seen on 31 January 2024: twelve months later is 31 January 2025.
        (t(2024, 1, 31, 12), t(2025, 1, 31, 12) - 1, t(2025, 1, 31, 12)),
        # Last seen on 31 May: twelve months later is 31 May again.
        (t(2023, 5, 31, 23), t(2024, 5, 31, 23) - 1, t(2024, 5, 31, 23)),
    ],
)
def test_twelve_months_pass(last_seen: float, not_yet: float, due: float) -> None:
    """With a controlled clock, a subscriber becomes due exactly when 12 months have passed."""
    seen = {"s1": last_seen}
    assert erasure_due(seen, not_yet, 12) == []
    assert erasure_due(seen, due, 12) == ["s1"]
    assert erasure_due(seen, due + 365 * DAY, 12) == ["s1"]


def test_one_month_from_the_end_of_january() -> None:
    """Last seen 31 January: one month idle once the whole of February has passed."""
    seen = {7: t(2023, 1, 31, 12)}
    assert erasure_due(seen, t(2023, 2, 28, 23, 59, 59), 1) == []
    assert erasure_due(seen, t(2023, 3, 1), 1) == [7]


@deterministic
@given(
    st.floats(0, 4e9),
    st.floats(0, 4e9),
    st.floats(0, 1e8),
    st.integers(1, 36),
)
def test_erasure_is_monotone(last_seen: float, now: float, later: float, months: int) -> None:
    """Once due, always due; anyone seen earlier than a due subscriber is due too."""
    due = erasure_due({"s": last_seen}, now, months) == ["s"]
    assert due == (last_seen <= idle_cutoff(now, months))
    if due:
        assert erasure_due({"s": last_seen}, now + later, months) == ["s"]
        assert erasure_due({"s": last_seen - later}, now, months) == ["s"]


@deterministic
@given(st.floats(0, 4e9), st.integers(1, 120))
def test_months_are_between_28_and_31_days(now: float, months: int) -> None:
    gap = now - idle_cutoff(now, months)
    assert 28 * months * DAY - 1e-3 <= gap <= 31 * months * DAY + 1e-3


def test_erasure_due_keeps_the_input_order_and_checks_arguments() -> None:
    now = t(2024, 6, 1)
    seen = {3: t(2020, 1, 1), 1: t(2024, 5, 30), 2: t(2023, 1, 1)}
    assert erasure_due(seen, now, 12) == [3, 2]
    with pytest.raises(ValueError):
        erasure_due(seen, now, -1)
    with pytest.raises(ValueError):
        erasure_due(seen, float("nan"), 12)


def test_idle_plans_are_idempotent_and_keep_hashes_for_opt_outs() -> None:
    """Erasing the due subscribers leaves nothing due; those with an opt-out keep the hash."""
    now = t(2025, 3, 1)
    seen = {1: t(2024, 1, 1), 2: t(2024, 2, 29, 10), 3: t(2024, 12, 1)}
    plans = plan_idle_erasures(seen, now, 12, opted_out={2})
    assert plans == [ErasurePlan(1, False, ErasureReason.IDLE), ErasurePlan(2, True, ErasureReason.IDLE)]
    remaining = {k: v for k, v in seen.items() if k not in {p.subscriber_id for p in plans}}
    assert plan_idle_erasures(remaining, now, 12, opted_out={2}) == []
    assert plan_idle_erasures(seen, now, 12, opted_out={2}) == plans


# --- erase on opt-out -----------------------------------------------------------------------------


def opt_out(scope: Scope, purpose: ConsentPurpose = ConsentPurpose.ALL) -> OptOut:
    return OptOut(scope, Evidence(10.0, "4160", "STOP", 1), purpose)


@pytest.mark.parametrize(
    ("event", "erased"),
    [
        (opt_out(Scope.of_campaign(CAMPAIGNS[0])), ["vote"]),
        (opt_out(Scope.of_short_code("4160")), ["vote", "quiz", "coupons"]),
        (opt_out(Scope.of_short_code("5050")), ["alerts"]),
        (opt_out(ALL), ["vote", "quiz", "coupons", "alerts"]),
        (opt_out(Scope.of_owner("Acme Stores Marketing")), ["coupons", "alerts"]),
        (opt_out(ALL, ConsentPurpose.MARKETING), []),
    ],
)
def test_opt_out_erases_the_local_profiles_it_covers(event: OptOut, erased: list[str]) -> None:
    plans = plan_opt_out_erasures(42, event, CAMPAIGNS, Obligations())
    assert [p.campaign for p in plans] == erased
    assert all(p == ErasurePlan(42, False, ErasureReason.OPT_OUT, p.campaign) for p in plans)


def test_opt_out_erasure_can_be_turned_off() -> None:
    off = Obligations(erase_local_profile_on_opt_out=False)
    assert plan_opt_out_erasures(42, opt_out(ALL), CAMPAIGNS, off) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"erase_after_months": 0},
        {"erase_after_months": 601},
        {"erase_after_months": 12.0},
        {"minimum_age": -1},
        {"minimum_age": True},
        {"under_age_reply": " "},
        {"under_age_reply": "x" * 1001},
        {"erase_local_profile_on_opt_out": 1},
    ],
)
def test_obligations_validate(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Obligations(**kwargs)


# --- the keyed hash ---------------------------------------------------------------------------------


def test_keyed_hash_known_values() -> None:
    """HMAC-SHA256 of the E.164 number: stable across runs and versions (checked with openssl)."""
    assert keyed_number_hash(b"key", "+12025550123") == "6e4d58ad36e70c799389466f811bcab0242dae9cdaf2ca8d33510e135ba289c4"
    assert (
        keyed_number_hash(b"gatewayd test key 0123456789abcdef", "+306912345678")
        == "9367f6b937e2bec1fef295bdf3940ca6b520cf74a94803cee9e30c558c6b1ab4"
    )


numbers = st.from_regex(r"\A\+[1-9][0-9]{1,14}\Z")


@deterministic
@given(st.binary(min_size=1, max_size=64), numbers, numbers, st.binary(min_size=1, max_size=64))
def test_keyed_hash_depends_on_key_and_number(key: bytes, number: str, other: str, other_key: bytes) -> None:
    digest = keyed_number_hash(key, number)
    assert digest == keyed_number_hash(key, number)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assume(number != other)
    assert keyed_number_hash(key, other) != digest
    assume(key != other_key)
    assert keyed_number_hash(other_key, number) != digest


@pytest.mark.parametrize(("key", "number"), [(b"", "+306912345678"), (b"k", "306912345678"), (b"k", "+0691"), (b"k", "+30 691"), ("k", "+3069")])
def test_keyed_hash_refuses_bad_input(key: Any, number: str) -> None:
    with pytest.raises(ValueError):
        keyed_number_hash(key, number)


# --- age --------------------------------------------------------------------------------------------

NOW = t(2025, 6, 1)


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ({}, None),
        ({"postcode": "10431"}, None),
        ({"age": "13"}, True),
        ({"age": "14"}, False),
        ({"age": " 40 "}, False),
        ({"Age": "9"}, True),
        ({"age": "fourteen"}, None),
        ({"age": "200"}, None),
        ({"age_band": "10-13"}, True),
        ({"age_band": "14-17"}, False),
        ({"age_band": "14–17"}, False),
        ({"age_band": "12-15"}, None),
        ({"age_band": "18+"}, False),
        ({"age_band": "13+"}, None),
        ({"age_band": "under 14"}, True),
        ({"age_band": "<14"}, True),
        ({"age_band": "<16"}, None),
        ({"age_band": "17-13"}, None),
        ({"age_band": "teen"}, None),
        ({"age_band": "13"}, True),
        ({"birth_year": "2012"}, True),  # 12 or 13 in 2025
        ({"birth_year": "2011"}, None),  # 13 or 14: not known
        ({"birth_year": "2010"}, False),  # 14 or 15
        ({"birth_year": "2030"}, None),
        ({"birth_year": "12"}, None),
        # A minor is protected even when another attribute disagrees.
        ({"age": "30", "age_band": "10-13"}, True),
        ({"age_band": "12-15", "age": "15"}, False),
    ],
)
def test_is_under_age(declared: dict[str, str], expected: bool | None) -> None:
    assert is_under_age(declared, 14, now=NOW) is expected


def test_birth_year_needs_a_time() -> None:
    assert is_under_age({"birth_year": "2012"}, 14) is None


def test_minimum_age_zero_turns_the_rule_off() -> None:
    assert is_under_age({"age": "3"}, 0) is False
    assert is_under_age({"age_band": "10-13"}, 0) is False
    with pytest.raises(ValueError):
        is_under_age({}, -1)


@deterministic
@given(st.integers(0, 150), st.integers(0, 120))
def test_a_declared_age_decides(age: int, minimum: int) -> None:
    assert is_under_age({"age": str(age)}, minimum) is (age < minimum)


@deterministic
@given(st.integers(0, 150), st.integers(0, 150), st.integers(0, 120))
def test_a_band_decides_only_when_it_is_on_one_side(lo: int, hi: int, minimum: int) -> None:
    if lo > hi:
        lo, hi = hi, lo
    result = is_under_age({"age_band": f"{lo}-{hi}"}, minimum)
    assert result is (True if hi < minimum else False if lo >= minimum else None)
