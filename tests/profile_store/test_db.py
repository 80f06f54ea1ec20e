"""The store's writer: group commit, per-unit isolation, and reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sys
import threading
from typing import AsyncIterator, Sequence

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from profile_store import db
from profile_store.db import Store, StoreUnavailable, make_engine
from profile_store.schema import metadata, subscribers


def _insert(conn: sa.Connection, msisdn: str) -> int:
    return int(conn.execute(sa.insert(subscribers).values(msisdn=msisdn, created_at=0.0, last_seen_at=0.0).returning(subscribers.c.id)).scalar_one())


def _count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar_one())


@pytest.fixture(params=["thread", "process"])
async def either_store(request: pytest.FixtureRequest, store_url: str, nursery: trio.Nursery) -> AsyncIterator[Store]:
    """A Store on ``store_url`` whose writer runs on a worker thread, or in a process of its own."""
    command = [sys.executable, "-m", "gatewayd.store_process", "--log-level", "warning"] if request.param == "process" else None
    s = Store.open(store_url, writer_command=command)
    metadata.create_all(s.engine)
    await nursery.start(s.run_writer)
    yield s
    await s.aclose()


async def test_concurrent_writes_share_commits(either_store: Store) -> None:
    """Units written concurrently are committed together, each caller getting its own result."""
    store = either_store
    ids: list[int] = []

    async def one(n: int) -> None:
        ids.append(await store.write(_insert, f"+3069{n:08d}"))

    async with trio.open_nursery() as nursery:
        for n in range(200):
            nursery.start_soon(one, n)
    assert len(set(ids)) == 200
    assert await store.read(_count) == 200
    assert store.commits < 200


async def test_a_failing_unit_does_not_sink_its_batch(either_store: Store) -> None:
    """A unit that violates a constraint raises to its caller alone (SQLAlchemy's exception,
    from either writer); the others in its batch commit."""
    store = either_store
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


def _driver_connection(conn: sa.Connection) -> object:
    return conn.connection.driver_connection


async def test_the_writer_keeps_its_connection_and_replaces_a_lost_one(store: Store) -> None:
    """Commits reuse one connection; when it is lost between two, the next commit opens another
    and its units are stored (the SQLite connection is closed, the PostgreSQL backend killed)."""
    first = await store.write(_driver_connection)
    assert await store.write(_driver_connection) is first
    if store.dialect == "postgresql":
        pid = await store.write(lambda conn: conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        await store.read(lambda conn: conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar_one())
    else:
        await trio.to_thread.run_sync(first.close)  # type: ignore[attr-defined]
    assert isinstance(await store.write(_insert, "+306900000020"), int)
    assert await store.write(_driver_connection) is not first
    assert await store.read(_count) == 1


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


def _bulk(first: int, count: int) -> list[tuple[str, str]]:
    return [("write", f"bulk{n}") for n in range(first, first + count)]


async def _arrive_during_a_slow_unit(
    store: Store, arriving: str, *, queued: Sequence[tuple[str, str]], after: Sequence[tuple[str, str]] = ()
) -> tuple[dict[str, int], list[str]]:
    """Queue ``queued`` (store method, unit name) behind a held commit, the first of them
    "slow"; while "slow" runs (first in the next batch), write "urgent" with the store method
    ``arriving``, then ``after``. Returns the commit number each unit ran in, and the order
    they ran."""
    hold_gate, slow_gate, slow_started = threading.Event(), threading.Event(), threading.Event()
    commit_of: dict[str, int] = {}
    order: list[str] = []

    def hold(conn: sa.Connection) -> None:
        hold_gate.wait(10)

    def note(conn: sa.Connection, name: str) -> None:
        if name == "slow":
            slow_started.set()
            slow_gate.wait(10)
        commit_of[name] = store.commits
        order.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.write, hold)
        await trio.testing.wait_all_tasks_blocked()
        (lane, name), *rest = queued
        nursery.start_soon(getattr(store, lane), note, name)
        await trio.testing.wait_all_tasks_blocked()
        for lane, name in rest:
            nursery.start_soon(getattr(store, lane), note, name)
        await trio.testing.wait_all_tasks_blocked()
        hold_gate.set()
        await trio.to_thread.run_sync(slow_started.wait, 10)
        nursery.start_soon(getattr(store, arriving), note, "urgent")
        await trio.testing.wait_all_tasks_blocked()
        for lane, name in after:
            nursery.start_soon(getattr(store, lane), note, name)
        await trio.testing.wait_all_tasks_blocked()
        slow_gate.set()
    return commit_of, order


async def test_a_long_batch_is_cut_short_for_a_write_first_unit(store: Store) -> None:
    """A write_first unit that arrives while a long batch of bulk units runs waits for the unit
    running then, not for the whole batch: the batch commits what ran, the urgent unit goes
    into the next commit, and the rest of the bulk follows."""
    store.cut_after = 0.0
    commit_of, order = await _arrive_during_a_slow_unit(store, "write_first", queued=[("write", "slow"), *_bulk(0, 50)])
    assert order[:2] == ["slow", "urgent"] and sorted(order[2:]) == sorted(f"bulk{n}" for n in range(50))
    assert commit_of["urgent"] == commit_of["slow"] + 1
    assert all(commit_of[f"bulk{n}"] >= commit_of["urgent"] for n in range(50))


async def test_a_batch_is_not_cut_before_its_time(store: Store) -> None:
    """Before cut_after has passed, a waiting write_first unit does not split the running batch."""
    store.cut_after = 60.0
    commit_of, _ = await _arrive_during_a_slow_unit(store, "write_first", queued=[("write", "slow"), *_bulk(0, 20)])
    assert {commit_of[f"bulk{n}"] for n in range(20)} == {commit_of["slow"]}
    assert commit_of["urgent"] == commit_of["slow"] + 1


async def test_a_write_ahead_unit_goes_first_without_cutting_a_batch(store: Store) -> None:
    """A write_ahead unit (a receipt) overtakes queued bulk units but does not cut the batch
    that runs when it arrives: nobody waits on it, and every cut costs a commit."""
    store.cut_after = 0.0
    commit_of, _ = await _arrive_during_a_slow_unit(store, "write_ahead", queued=[("write", "slow"), *_bulk(0, 20)], after=_bulk(20, 20))
    assert {commit_of[f"bulk{n}"] for n in range(20)} == {commit_of["slow"]}
    assert commit_of["urgent"] == commit_of["slow"] + 1
    assert all(commit_of[f"bulk{n}"] >= commit_of["urgent"] for n in range(20, 40))


async def test_first_lane_units_of_a_batch_are_not_cut_for_later_ones(store: Store) -> None:
    """A batch is cut only where its bulk units start: its own write_first units came before
    the one waiting and run in the same commit."""
    store.cut_after = 0.0
    replies = [("write_first", f"reply{n}") for n in range(5)]
    commit_of, _ = await _arrive_during_a_slow_unit(store, "write_first", queued=[("write_first", "slow"), *replies, ("write", "bulk")])
    assert {commit_of[f"reply{n}"] for n in range(5)} == {commit_of["slow"]}
    assert commit_of["bulk"] > commit_of["slow"] and commit_of["urgent"] == commit_of["slow"] + 1


def test_a_locked_database_fails_the_writers_begin_with_sqlalchemys_error(tmp_path: object) -> None:
    """Another process holding the write lock: BEGIN IMMEDIATE raises sa.exc.OperationalError
    (which the writer retries as transient), and the connection begins again once it is free."""
    import sqlite3

    path = f"{tmp_path}/locked.db"
    engine = make_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with engine.connect().execution_options(writer=True) as conn:
            conn.connection.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(sa.exc.OperationalError, match="locked") as raised:
                conn.begin()
            assert isinstance(raised.value.orig, sqlite3.OperationalError)
            assert not raised.value.connection_invalidated
            holder.execute("ROLLBACK")
            with conn.begin():
                assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        holder.close()
        engine.dispose()


def _fill(conn: sa.Connection, size: int) -> None:
    conn.execute(sa.text("INSERT INTO filler (v) VALUES (:v)"), {"v": "x" * size})


async def test_the_write_ahead_log_stays_bounded_under_a_steady_stream_of_commits(
    tmp_path: object, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits that never pause leave the background checkpoint no moment to catch up with
    the log's end; the log must still start over, and a file grown large is cut back."""
    monkeypatch.setattr(db, "WAL_CHECKPOINT_PAGES", 100)
    monkeypatch.setattr(db, "WAL_SIZE_LIMIT", 1_000_000)
    path = f"{tmp_path}/wal.db"
    store = Store.open(f"sqlite:///{path}")
    with store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    await nursery.start(store.run_writer)
    sizes: list[int] = []
    store.on_commit = lambda seconds, units: sizes.append(os.path.getsize(f"{path}-wal"))

    # One large transaction grows the file well past the limit (nothing can cut a commit short).
    await store.write(lambda conn: [_fill(conn, 4000) for _ in range(2000)])
    assert sizes[-1] > 8_000_000
    grown = len(sizes)

    async def writer(n: int) -> None:
        for _ in range(n):
            await store.write(_fill, 3000)

    # 40 writers keep the writer busy without a pause: about 12 MB, 3,000 pages, in all.
    async with trio.open_nursery() as writers:
        for _ in range(40):
            writers.start_soon(writer, 100)
    await store.aclose()

    steady = sizes[grown + 20 :]
    assert len(steady) > 20
    # 100 pages of 4 KiB before a commit checkpoints, plus that commit's pages.
    assert max(steady) <= 1_000_000 + 100 * 4096 + 200 * 3 * 4096, max(steady)


async def test_a_write_first_unit_goes_ahead_of_queued_write_ahead_units(store: Store) -> None:
    """What a subscriber waits on (an MO) is written before what holds a window (receipts
    queued before it), and both before bulk work."""
    store.cut_after = 60.0
    receipts = [("write_ahead", f"receipt{n}") for n in range(30)]
    commit_of, order = await _arrive_during_a_slow_unit(store, "write_first", queued=[("write", "slow")], after=[*_bulk(0, 5), *receipts])
    commit_of2, order2 = await _arrive_during_a_slow_unit(
        store, "write_ahead", queued=[("write", "slow")], after=[*_bulk(5, 5), ("write_first", "mo")]
    )
    assert order[1] == "urgent" and sorted(order[2:32]) == sorted(f"receipt{n}" for n in range(30))
    assert order2[1:3] == ["mo", "urgent"]
    assert commit_of2["mo"] == commit_of2["urgent"] == commit_of2["slow"] + 1
    assert all(commit_of2[f"bulk{n}"] >= commit_of2["mo"] for n in range(5, 10))
