"""The store's writer: group commit, per-unit isolation, and reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from profile_store.db import Store, StoreUnavailable
from profile_store.schema import subscribers


def _insert(conn: sa.Connection, msisdn: str) -> int:
    return int(conn.execute(sa.insert(subscribers).values(msisdn=msisdn, created_at=0.0, last_seen_at=0.0).returning(subscribers.c.id)).scalar_one())


def _count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar_one())


async def test_concurrent_writes_share_commits(store: Store) -> None:
    """Units written concurrently are committed together, each caller getting its own result."""
    ids: list[int] = []

    async def one(n: int) -> None:
        ids.append(await store.write(_insert, f"+3069{n:08d}"))

    async with trio.open_nursery() as nursery:
        for n in range(200):
            nursery.start_soon(one, n)
    assert len(set(ids)) == 200
    assert await store.read(_count) == 200
    assert store.commits < 200


async def test_a_failing_unit_does_not_sink_its_batch(store: Store) -> None:
    """A unit that violates a constraint raises to its caller alone; the others in its batch commit."""
    await store.write(_insert, "+306900000000")
    outcomes: dict[str, object] = {}

    async def one(msisdn: str) -> None:
        try:
            outcomes[msisdn] = await store.write(_insert, msisdn)
        except sa.exc.IntegrityError as exc:
            outcomes[msisdn] = exc

    async with trio.open_nursery() as nursery:
        for msisdn in ("+306900000001", "+306900000000", "+306900000002"):
            nursery.start_soon(one, msisdn)
    assert isinstance(outcomes["+306900000000"], sa.exc.IntegrityError)
    assert isinstance(outcomes["+306900000001"], int) and isinstance(outcomes["+306900000002"], int)
    assert await store.read(_count) == 3


async def test_write_without_writer_is_unavailable(store_url: str) -> None:
    """Writing to a store whose writer is not running fails at once with StoreUnavailable."""
    s = Store.open(store_url)
    with pytest.raises(StoreUnavailable):
        await s.write(_insert, "+306900000009")
    await s.aclose()


async def test_unreachable_database_reports_unavailable(nursery: trio.Nursery, tmp_path: object) -> None:
    """When the database cannot be opened, writes fail with StoreUnavailable instead of hanging or crashing."""
    s = Store.open("sqlite:////nonexistent-dir/for/sure/gatewayd.db")
    await nursery.start(s.run_writer)
    with pytest.raises(StoreUnavailable):
        await s.write(_insert, "+306900000010")
    with pytest.raises(StoreUnavailable):
        await s.read(_count)


async def test_a_write_first_unit_overtakes_queued_bulk_units(store: Store) -> None:
    """With 100 ordinary units queued behind a commit in flight, a write_first unit goes into the
    very next commit, which carries at most max_later of the ordinary ones; none is starved."""
    gate = threading.Event()
    commit_of: dict[str, int] = {}

    def hold(conn: sa.Connection) -> None:
        gate.wait(10)

    def note(conn: sa.Connection, name: str) -> None:
        commit_of[name] = store.commits

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.write, hold)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(100):
            nursery.start_soon(store.write, note, f"bulk{n}")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(store.write_first, note, "urgent")
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    urgent = commit_of["urgent"]
    with_urgent = [name for name, commit in commit_of.items() if commit == urgent and name != "urgent"]
    assert len(with_urgent) <= store.max_later
    assert all(commit_of[f"bulk{n}"] >= urgent for n in range(100))
    assert len(commit_of) == 101
