"""Subscribers: E.164 normalisation, and one row per number however many nodes meet it."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from profile_store.db import Store, make_engine
from profile_store.schema import subscribers
from profile_store.subscribers import InvalidNumber, _normalised, get_or_create_subscriber, normalise_msisdn


@pytest.mark.parametrize(
    ("addr", "ton", "region", "expected"),
    [
        ("+447700900123", 1, None, "+447700900123"),
        ("447700900123", 1, None, "+447700900123"),
        ("00447700900123", 0, None, "+447700900123"),
        ("+44 7700 900-123", 0, None, "+447700900123"),
        ("07700900123", 2, "GB", "+447700900123"),
        ("07700900123", 0, "GB", "+447700900123"),
        ("6912345678", 2, "GR", "+306912345678"),
        ("2101234567", 0, "GR", "+302101234567"),
        ("+390612345678", 1, None, "+390612345678"),
        ("07700900123", 2, None, "+07700900123"),
        ("123", 0, None, "+123"),
        ("4160", 0, None, "+4160"),
        ("+999123456", 1, None, "+999123456"),
        ("00447700900123", 2, "GR", "+447700900123"),
    ],
)
def test_normalise_table(addr: str, ton: int, region: str | None, expected: str) -> None:
    """International, national (with a region) and unparseable numbers normalise as documented."""
    assert normalise_msisdn(addr, ton=ton, default_region=region) == expected


@pytest.mark.parametrize("addr", ["", "   ", "+", "00", "ACME", "Bank123", "12a4", "+1234567890123456", "٣٣٣"])
def test_not_a_number(addr: str) -> None:
    """Empty, alphanumeric and over-long addresses are not subscribers."""
    with pytest.raises(InvalidNumber):
        normalise_msisdn(addr)


@given(digits=st.from_regex(r"[1-9][0-9]{0,14}", fullmatch=True), ton=st.sampled_from([0, 1, 2]))
def test_international_forms_agree_and_are_stable(digits: str, ton: int) -> None:
    """'+' and '00' prefixes give the same E.164 number, which normalises to itself again."""
    # Country codes never start with 0, so international digits do not either.
    plus = normalise_msisdn("+" + digits, ton=ton)
    assert re.fullmatch(r"\+[0-9]{1,15}", plus)
    assert normalise_msisdn("00" + digits, ton=ton) == plus
    assert normalise_msisdn(plus, ton=1) == plus
    assert normalise_msisdn(plus[1:], ton=1) == plus


@given(digits=st.from_regex(r"0?[1-9][0-9]{0,10}", fullmatch=True), region=st.sampled_from(["GB", "GR", "DE", "US", "IT"]))
def test_national_numbers_are_e164(digits: str, region: str) -> None:
    """A national number with a region gives "+" and at most 15 digits, stable when normalised again."""
    out = normalise_msisdn(digits, ton=2, default_region=region)
    assert re.fullmatch(r"\+[0-9]{1,15}", out)
    assert normalise_msisdn(out) == out


def _uncached(addr: str, ton: int, region: str | None) -> str | InvalidNumber:
    """What a fresh parse gives (the function behind the cache), or the error it raises."""
    try:
        return _normalised.__wrapped__(addr, ton, region)
    except InvalidNumber as exc:
        return exc


def _cached(addr: str, ton: int, region: str | None) -> str | InvalidNumber:
    try:
        return normalise_msisdn(addr, ton=ton, default_region=region)
    except InvalidNumber as exc:
        return exc


@given(
    addr=st.from_regex(r"(\+|00)?[0-9 ()\-.]{0,18}", fullmatch=True) | st.text(max_size=6),
    ton=st.sampled_from([0, 1, 2, 5]),
    region=st.sampled_from([None, "GB", "GR", "US"]),
)
def test_cached_normalisation_is_a_fresh_parse(addr: str, ton: int, region: str | None) -> None:
    """Asked twice (the second answer from the cache), the result or the error is a fresh parse's."""
    fresh = _uncached(addr, ton, region)
    for _ in range(2):
        got = _cached(addr, ton, region)
        if isinstance(fresh, InvalidNumber):
            assert isinstance(got, InvalidNumber) and str(got) == str(fresh)
        else:
            assert got == fresh


def _read(engine: sa.Engine) -> list[tuple[int, str, float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(subscribers).order_by(subscribers.c.id)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_get_or_create(engine: sa.Engine) -> None:
    """The same number gives the same id; last_seen_at moves forward only."""
    with engine.begin() as conn:
        a = get_or_create_subscriber(conn, "+447700900123", 100.0)
        b = get_or_create_subscriber(conn, "+447700900123", 200.0)
        c = get_or_create_subscriber(conn, "+447700900124", 150.0)
        get_or_create_subscriber(conn, "+447700900123", 50.0)
    assert a == b != c
    assert _read(engine) == [(a, "+447700900123", 100.0, 200.0), (c, "+447700900124", 150.0, 150.0)]


def test_two_nodes_create_one_row(engine: sa.Engine, store_url: str) -> None:
    """Two connections meeting a new number at once end with one row and the same id."""
    other = make_engine(store_url)
    results: list[int] = []
    first = engine.connect()
    tx = first.begin()
    results.append(get_or_create_subscriber(first, "+306900000001", 10.0))

    def second() -> None:
        with other.begin() as conn:
            results.append(get_or_create_subscriber(conn, "+306900000001", 20.0))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.3)  # the second waits for the first's lock
    tx.commit()
    first.close()
    thread.join(10)
    other.dispose()
    assert len(results) == 2 and results[0] == results[1]
    assert [row[1:] for row in _read(engine)] == [("+306900000001", 10.0, 20.0)]


async def test_through_the_store(store: Store) -> None:
    """The unit runs through the group-committing writer."""
    ids = {await store.write(get_or_create_subscriber, "+306900000002", float(n)) for n in range(3)}
    assert len(ids) == 1
