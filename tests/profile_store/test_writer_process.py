"""The store writer in a process of its own: the same outcomes as a writer thread, on SQLite
and PostgreSQL, and what is particular to a process (pickling, resident objects, a child
that dies, signals)."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import types
from pathlib import Path
from typing import Any, AsyncIterator

import attrs
from hypothesis import given
from hypothesis import strategies as st
import pytest
import sqlalchemy as sa
import structlog
import trio
import trio.testing

from profile_store.db import Store, StoreUnavailable
from profile_store.schema import metadata, subscribers

COMMAND = [sys.executable, "-m", "gatewayd.store_process", "--log-level", "warning", "--log-format", "json"]


@pytest.fixture
async def store(store_url: str, nursery: trio.Nursery) -> AsyncIterator[Store]:
    """A Store on ``store_url`` whose writer runs in a process of its own."""
    s = Store.open(store_url, writer_command=COMMAND)
    metadata.create_all(s.engine)
    await nursery.start(s.run_writer)
    yield s
    await s.aclose()


def _insert(conn: sa.Connection, msisdn: str) -> int:
    return int(conn.execute(sa.insert(subscribers).values(msisdn=msisdn, created_at=0.0, last_seen_at=0.0).returning(subscribers.c.id)).scalar_one())


def _count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar_one())


def _pid(conn: sa.Connection) -> int:
    return os.getpid()


def _exit(conn: sa.Connection) -> None:
    os._exit(3)


def _socket_result(conn: sa.Connection) -> Any:
    import socket

    return socket.socket()


class Counter:
    """A resident object: units count on the writer's copy."""

    def __init__(self, start: int) -> None:
        self.value = start
        self.generation = 0

    def bump(self) -> int:
        self.value += 1
        return self.value


def _bump(conn: sa.Connection, counter: Counter) -> int:
    return counter.bump()


def _bump_method(conn: sa.Connection, bump: Any) -> int:
    return int(bump())


async def test_units_run_in_another_process(store: Store) -> None:
    """The units run in the writer's process, which stays the same from batch to batch (the
    outcomes of many units at once are tested with the thread's, in test_db)."""
    pids = {await store.write(_pid) for _ in range(3)}
    assert len(pids) == 1 and os.getpid() not in pids
    assert store.commits == store.units == 3


async def _write_noting(store: Store, outcomes: dict[str, object], expected: type[Exception], name: str, fn: Any, *args: Any) -> None:
    """Write a unit; note its result, or the ``expected`` exception it raised, under ``name``."""
    try:
        outcomes[name] = await store.write(fn, *args)
    except expected as exc:
        outcomes[name] = exc


async def test_a_unit_that_does_not_pickle_fails_alone(store: Store) -> None:
    """A closure cannot be sent to the writer: its caller gets a TypeError; the units of its
    batch are committed."""
    outcomes: dict[str, object] = {}
    one = functools.partial(_write_noting, store, outcomes, TypeError)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "a", _insert, "+306900000101")
        nursery.start_soon(one, "closure", lambda conn: 1)
        nursery.start_soon(one, "b", _insert, "+306900000102")
    assert isinstance(outcomes["closure"], TypeError) and "pickle" in str(outcomes["closure"])
    assert isinstance(outcomes["a"], int) and isinstance(outcomes["b"], int)
    assert await store.read(_count) == 2


async def test_a_result_that_does_not_pickle_is_an_error_for_its_caller(store: Store) -> None:
    """A result the writer cannot send back becomes StoreUnavailable for that caller; the
    writer goes on."""
    with pytest.raises(StoreUnavailable, match="could not return"):
        await store.write(_socket_result)
    assert isinstance(await store.write(_insert, "+306900000201"), int)


async def test_a_resident_object_keeps_its_state_in_the_writer(store: Store) -> None:
    """A resident is sent once: units change the writer's copy, batch after batch, also
    through a bound method; the gateway's copy is untouched. A new generation is sent
    again; an object not kept resident goes by value every time."""
    counter = Counter(10)
    store.keep_resident(counter)
    assert [await store.write(_bump, counter) for _ in range(3)] == [11, 12, 13]
    assert await store.write(_bump_method, counter.bump) == 14
    assert counter.value == 10
    counter.value, counter.generation = 100, 1
    assert await store.write(_bump, counter) == 101
    by_value = Counter(5)
    assert [await store.write(_bump, by_value) for _ in range(2)] == [6, 6]


async def test_a_writer_that_dies_fails_its_batch_and_is_replaced(store: Store) -> None:
    """The child exiting mid-batch: that batch's callers get StoreUnavailable, the loss is
    logged, and the next write starts another child, which gets the residents again."""
    counter = Counter(0)
    store.keep_resident(counter)
    assert await store.write(_bump, counter) == 1
    first = await store.write(_pid)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(StoreUnavailable, match="writer process stopped"):
            await store.write(_exit)
    assert [entry["event"] for entry in logs] == ["store_writer_lost"]
    assert await store.write(_pid) != first
    assert await store.write(_bump, counter) == 1
    assert isinstance(await store.write(_insert, "+306900000301"), int)


async def test_the_writer_ignores_termination_signals_and_stops_with_the_store(store_url: str, nursery: trio.Nursery) -> None:
    """SIGTERM and SIGINT (which systemd and a terminal send to the whole group) leave the
    writer running until the gateway has drained; closing the store stops it."""
    s = Store.open(store_url, writer_command=COMMAND)
    metadata.create_all(s.engine)
    await nursery.start(s.run_writer)
    pid = await s.write(_pid)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert isinstance(await s.write(_insert, "+306900000401"), int)
    assert await s.write(_pid) == pid
    assert s.writer_process is not None
    await s.writer_process.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    await s.aclose()


#: A unit blocked on a named pipe that nobody opens (its test failed half way) ends the
#: writer process after this many seconds instead of leaving it behind.
GATE_TIMEOUT = 60


def _fifo_gate(conn: sa.Connection, started: str, gate: str, name: str) -> str:
    signal.alarm(GATE_TIMEOUT)
    with open(started, "w") as f:
        f.write("!")
    with open(gate) as f:
        f.read(1)
    signal.alarm(0)
    return name


def _ran(conn: sa.Connection, counter: Counter) -> int:
    return counter.bump()


@attrs.define
class _Numbered:
    """Units that number themselves in the order they run in the writer, and a pair of
    fifos for :func:`_fifo_gate` (``started``, ``gate``)."""

    store: Store
    started: Path
    gate: Path
    counter: Counter = attrs.Factory(lambda: Counter(0))
    ran: dict[str, int] = attrs.Factory(dict)

    @classmethod
    def make(cls, store: Store, tmp_path: Path) -> "_Numbered":
        started, gate = tmp_path / "started", tmp_path / "gate"
        os.mkfifo(started)
        os.mkfifo(gate)
        numbered = cls(store, started, gate)
        store.keep_resident(numbered.counter)
        return numbered

    async def write(self, method: str, name: str) -> None:
        self.ran[name] = await getattr(self.store, method)(_ran, self.counter)


async def test_a_long_batch_is_cut_short_for_a_write_first_unit(store: Store, tmp_path: Path) -> None:
    """A write_first unit that arrives while the writer process runs a batch of bulk units
    waits for the unit running then, not for the whole batch: it is done before all but at
    most one of the bulk units that were queued before it."""
    # Set once the child runs: the setting reaches it with the next batch.
    await store.write(_pid)
    store.cut_after = 0.0
    numbered = _Numbered.make(store, tmp_path)
    started, gate, write, ran = numbered.started, numbered.gate, numbered.write, numbered.ran
    async with trio.open_nursery() as nursery:
        # Held: a commit in flight while the bulk units queue up behind it.
        nursery.start_soon(store.write, _fifo_gate, str(started), str(gate), "hold")
        await trio.to_thread.run_sync(started.read_text)
        nursery.start_soon(store.write, _fifo_gate, str(started), str(gate), "slow")
        await trio.testing.wait_all_tasks_blocked()
        for n in range(50):
            nursery.start_soon(write, "write", f"bulk{n}")
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(gate.write_text, "!")
        # The next batch, "slow" and the 50 bulk units, runs its first unit.
        await trio.to_thread.run_sync(started.read_text)
        nursery.start_soon(write, "write_first", "urgent")
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(gate.write_text, "!")
    # The bulk units went out as one batch while "slow" ran; the poke cut it after its first unit.
    assert ran["urgent"] <= 2 and sorted(ran.values()) == list(range(1, 52))


async def test_a_queued_batch_of_bulk_is_given_back_for_a_write_first_unit(store: Store, tmp_path: Path) -> None:
    """Bulk units sent to the writer process behind a running batch, before a write_first
    unit arrived, are given back before they begin: that unit, which waited for the running
    batch, does not wait for the queued one too. The bulk units all run afterwards, once each."""
    await store.write(_pid)
    process = store.writer_process
    assert process is not None
    numbered = _Numbered.make(store, tmp_path)
    started, gate, write, ran = numbered.started, numbered.gate, numbered.write, numbered.ran
    commits = store.commits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.write, _fifo_gate, str(started), str(gate), "hold")
        await trio.to_thread.run_sync(started.read_text)
        for n in range(50):
            nursery.start_soon(write, "write", f"bulk{n}")
        await trio.testing.wait_all_tasks_blocked()
        # The bulk went out as the second batch, queued in the child behind "hold".
        assert process.in_flight == 2
        nursery.start_soon(write, "write_first", "urgent")
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(gate.write_text, "!")
    assert ran["urgent"] == 1 and sorted(ran.values()) == list(range(1, 52))
    # "hold", then the urgent unit with max_later bulk units, then the rest: no empty commit counted.
    assert store.commits - commits == 3


def _phantom(conn: sa.Connection) -> int:
    return 1


async def test_a_unit_the_writer_cannot_read_fails_alone_and_the_writer_stays(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A unit whose code the writer process cannot import (a module only the gateway has, as
    a plugin removed after the gateway loaded it would be) makes its batch unreadable there.
    The child says so and stays up; the batch's units go again one by one, the others commit,
    and that unit's caller alone gets StoreUnavailable naming the missing module."""
    phantom = types.ModuleType("gatewayd_phantom_units")
    monkeypatch.setitem(sys.modules, phantom.__name__, phantom)
    monkeypatch.setattr(_phantom, "__module__", phantom.__name__)
    phantom._phantom = _phantom  # type: ignore[attr-defined]
    pid = await store.write(_pid)
    started, gate = tmp_path / "started", tmp_path / "gate"
    os.mkfifo(started)
    os.mkfifo(gate)
    process = store.writer_process
    assert process is not None
    outcomes: dict[str, object] = {}
    one = functools.partial(_write_noting, store, outcomes, StoreUnavailable)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.write, _fifo_gate, str(started), str(gate), "hold")
        await trio.to_thread.run_sync(started.read_text)
        nursery.start_soon(one, "a", _insert, "+306900000601")
        nursery.start_soon(one, "phantom", _phantom)
        nursery.start_soon(one, "b", _insert, "+306900000602")
        await trio.testing.wait_all_tasks_blocked()
        # The three went out together, queued in the child behind "hold".
        assert process.in_flight == 2
        await trio.to_thread.run_sync(gate.write_text, "!")
    assert isinstance(outcomes["phantom"], StoreUnavailable)
    assert "cannot read this unit" in str(outcomes["phantom"]) and phantom.__name__ in str(outcomes["phantom"])
    assert isinstance(outcomes["a"], int) and isinstance(outcomes["b"], int)
    assert await store.read(_count) == 2
    assert await store.write(_pid) == pid
    logged = [json.loads(line[line.index("{") :]) for line in capfd.readouterr().out.splitlines() if "store_" in line]
    # The batch of three, then the unit alone; the child never died.
    assert [entry["event"] for entry in logged] == ["store_batch_unreadable"] * 2


async def test_an_in_memory_database_cannot_have_a_writer_process() -> None:
    """Another process would open another, empty, database."""
    with pytest.raises(ValueError, match="in-memory"):
        Store.open("sqlite://", writer_command=COMMAND)


async def test_a_second_batch_goes_out_while_one_runs(store: Store, tmp_path: Path) -> None:
    """While a batch runs, the next is already sent (the child goes straight into it); a
    third waits for the first's outcome. Outcomes come back in order."""
    started, gate = tmp_path / "started", tmp_path / "gate"
    os.mkfifo(started)
    os.mkfifo(gate)
    process = store.writer_process
    assert process is not None
    results: list[object] = []

    async def write(*args: Any) -> None:
        results.append(await store.write(*args))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, _fifo_gate, str(started), str(gate), "held")
        await trio.to_thread.run_sync(started.read_text)
        nursery.start_soon(write, _insert, "+306900000501")
        await trio.testing.wait_all_tasks_blocked()
        assert process.in_flight == 2
        nursery.start_soon(write, _insert, "+306900000502")
        await trio.testing.wait_all_tasks_blocked()
        assert process.in_flight == 2
        await trio.to_thread.run_sync(gate.write_text, "!")
    assert results[0] == "held" and len(results) == 3
    assert await store.read(_count) == 2


async def test_a_writer_that_dies_fails_every_batch_in_flight(store: Store, tmp_path: Path) -> None:
    """Both batches in flight fail with StoreUnavailable when the child dies during the first."""
    started = tmp_path / "started"
    os.mkfifo(started)
    outcomes: list[BaseException] = []
    await store.write(_pid)  # the child is up: sending a batch no longer waits for it to start

    async def write(*args: Any) -> None:
        try:
            await store.write(*args)
        except StoreUnavailable as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, _signal_then_exit, str(started))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, _insert, "+306900000601")
        await trio.testing.wait_all_tasks_blocked()
        assert store.writer_process is not None and store.writer_process.in_flight == 2
        await trio.to_thread.run_sync(started.read_text)
    assert len(outcomes) == 2
    assert await store.read(_count) == 0
    assert isinstance(await store.write(_insert, "+306900000602"), int)


def _signal_then_exit(conn: sa.Connection, started: str) -> None:
    signal.alarm(GATE_TIMEOUT)
    with open(started, "w") as f:
        f.write("!")
    os._exit(3)


async def test_a_writer_that_cannot_start_fails_its_batch_and_says_why(store_url: str, nursery: trio.Nursery, tmp_path: Path) -> None:
    """A writer command that cannot run: each write fails with StoreUnavailable and the
    reason is logged; the store's writer task goes on."""
    s = Store.open(store_url, writer_command=[str(tmp_path / "no-such-python")])
    await nursery.start(s.run_writer)
    for _ in range(2):
        with structlog.testing.capture_logs() as logs, pytest.raises(StoreUnavailable, match="writer process stopped"):
            await s.write(_pid)
        assert [entry["event"] for entry in logs] == ["store_writer_lost"]
        assert "cannot start" in logs[0]["error"]
    await s.aclose()


def _log_probe(conn: sa.Connection, n: int) -> None:
    structlog.get_logger("tests.writer").info("writer_probe", n=n)


async def test_the_writer_logs_with_the_gateways_new_level_after_a_reload(store: Store, capfd: pytest.CaptureFixture[str]) -> None:
    """Started at warning, the writer process drops info lines; told the new level (as a
    reload does), it writes them, to the gateway's stdout."""
    await store.write(_log_probe, 1)
    store.configure_writer_logging("info", "json")
    await store.write(_log_probe, 2)
    lines = [line for line in capfd.readouterr().out.splitlines() if "writer_probe" in line]
    assert len(lines) == 1 and json.loads(lines[0][lines[0].index("{") :])["n"] == 2


# --- values on the wire -------------------------------------------------------------------------


@attrs.frozen
class _Plain:
    """A plain frozen value: positional, private and keyword-only fields."""

    a: Any
    _b: Any = None
    c: Any = attrs.field(default=0, kw_only=True)


@attrs.frozen
class _Checked:
    a: int = attrs.field(validator=attrs.validators.instance_of(int))


@attrs.frozen
class _Converted:
    a: str = attrs.field(converter=str)


@attrs.define
class _Mutable:
    a: Any


def _wire(value: Any) -> Any:
    """``value`` as the other process reads it, sent as units are."""
    import io
    import pickle

    from profile_store.writer_process import _Residents, _UnitPickler, _dumps

    buffer = io.BytesIO()
    _UnitPickler(buffer, _Residents()).dump(value)
    assert pickle.loads(_dumps(value)) == value
    return pickle.loads(buffer.getvalue())


def test_the_values_of_every_mo_mt_and_receipt_go_as_their_fields() -> None:
    """The values each MO, MT and receipt sends to the writer and back are plain frozen
    values, sent as their constructor's arguments and read back equal."""
    from gatewayd.dispatch import Failed, Processed
    from gatewayd.smpp.receipts import DeliveryReceipt
    from gatewayd.smpp.udh import ConcatInfo, ConcatMethod
    from profile_store.mo import MoPartIn
    from profile_store.mt_values import ClaimedMt, MtProgress, StoredMt
    from profile_store.subscribers import RawNumber
    from profile_store.values import MoStored, ReceiptRecorded, StoredMo
    from profile_store.writer_process import _plain_value

    hot = [DeliveryReceipt, ConcatInfo, Processed, Failed, MoPartIn, StoredMo, MoStored, ReceiptRecorded, RawNumber, StoredMt, ClaimedMt, MtProgress]
    assert [cls.__name__ for cls in hot if not _plain_value(cls)] == []
    part = MoPartIn("op", "306900000001", 1, "4160", 0x40, 0, b"\x05\x00\x03\x07\x02\x01VOTE", "VOTE", ConcatInfo(7, 2, 1, ConcatMethod.UDH8), None, 12.5, "op#1")
    assert _wire([part, part]) == [part, part]
    mo = StoredMo(1, "op", 2, "+306900000001", "4160", "VOTE GRE", 0, 1, True, 12.5, "stored", None)
    assert _wire(MoStored(False, 3, mo)) == MoStored(False, 3, mo)
    progress = MtProgress(mt_id=5, status="submitted", attempts=1, parts_total=1, parts_accepted=1, next_attempt_at=0.0, last_error=None)
    assert _wire((progress, Processed(1, "campaign:v", (5,), fresh=True))) == (progress, Processed(1, "campaign:v", (5,), fresh=True))


def test_values_with_checks_or_state_go_as_pickle_sends_them() -> None:
    """A class whose constructor would check or convert again, or a mutable one, is left to
    pickle: it arrives equal all the same."""
    from profile_store.writer_process import _plain_value

    values = [_Checked(1), _Converted("x"), _Mutable([1])]
    assert [_plain_value(type(value)) for value in values] == [False, False, False]
    assert _wire(values) == values


@given(st.lists(st.builds(_Plain, st.integers() | st.text(), st.none() | st.binary(), c=st.floats(allow_nan=False)), max_size=5))
def test_a_plain_value_arrives_equal_whatever_its_fields(values: list[_Plain]) -> None:
    """Positional, private and keyword-only fields all arrive, shared values stay shared."""
    both = _wire([values, values])
    assert both == [values, values] and both[0] is both[1]
