"""The store's engine, its single group-committing writer, and reads on worker threads.

Every use case is a plain synchronous function ``fn(conn, *args) -> value`` (a "unit") that
runs on a worker thread inside a transaction and returns frozen values, never a SQLAlchemy
object. :meth:`Store.write` queues a unit for the single writer task, which takes every unit
that arrived while the previous commit was in flight (up to ``max_batch``), runs each inside
its own SAVEPOINT, and commits them together: one fsync for many messages, and a unit that
raises is rolled back alone while the rest of its batch commits. :meth:`Store.read` runs a
unit on its own connection, concurrently with the writer (SQLite in WAL mode allows that).

Why a thread and not aiosqlite / SQLAlchemy's asyncio layer: both are asyncio-only and fail
under trio's event loop; see the README.
"""

from __future__ import annotations

import collections
import functools
import sqlite3
import time
from typing import Any, Callable, Sequence, TypeVar

import attrs
import sqlalchemy as sa
import structlog
import trio
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from profile_store.committer import Committer, StoreError, StoreUnavailable
from profile_store.writer_process import WriterProcess

__all__ = ["StoreError", "StoreUnavailable", "Store", "make_engine", "normalise_url"]

log = structlog.get_logger("profile_store.db")

T = TypeVar("T")

#: Seconds between background WAL checkpoints on SQLite. The commit that finds
#: ``WAL_CHECKPOINT_PAGES`` in the log checkpoints what these left, on the writer's path:
#: at one pass a second that was most of the log (commits of 7-34 ms every 0.8 s under a
#: multicast of 1,000 MT/s on ext4); at ten, mostly its two fsyncs (at most 11 ms).
CHECKPOINT_INTERVAL = 0.1
#: On SQLite, a commit that leaves at least this many pages in the write-ahead log also
#: checkpoints it (see make_engine).
WAL_CHECKPOINT_PAGES = 10_000
#: On SQLite, bytes the write-ahead log file is cut back to when it starts over.
WAL_SIZE_LIMIT = 64 * 1024 * 1024

def normalise_url(url: str) -> str:
    """Pick our drivers: ``postgresql://`` means psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings the store relies on.

    SQLite: WAL journal, synchronous=NORMAL (durable across a process crash; a power loss can
    lose the last commits but never corrupts), a busy timeout, foreign keys on, and explicit
    BEGIN so SAVEPOINTs work (the sqlite3 module's own transaction handling breaks them).
    Writers begin with BEGIN IMMEDIATE so two processes never deadlock on a lock upgrade.

    The write-ahead log is checkpointed ten times a second off the writer's path
    (:meth:`Store.run_writer`), but it only starts over from its beginning once a checkpoint
    has caught up with its end; under a steady stream of commits the one running beside the
    writer never does, and the log would grow for as long as the load lasts (hundreds of MB
    for a multicast of 20,000). So a commit that leaves ``WAL_CHECKPOINT_PAGES`` pages in it
    checkpoints what the background pass has not (the log then starts over), and the file is
    cut back to ``WAL_SIZE_LIMIT``.
    """
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30, "cached_statements": 1024},
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # SQLite's default would checkpoint inside whichever commit crosses 1,000 pages,
            # stalling the writer; Store.run_writer checkpoints from another thread instead, and
            # a commit only finishes the job when the log has grown large (see above).
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(WAL_CHECKPOINT_PAGES)}")
            cursor.execute(f"PRAGMA journal_size_limit={int(WAL_SIZE_LIMIT)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the driver's connection: through exec_driver_sql this cost more Python than a
        # small commit's statements. Its errors are wrapped as SQLAlchemy would wrap them.
        sql = "BEGIN IMMEDIATE" if conn.get_execution_options().get("writer") else "BEGIN"
        dbapi_connection = conn.connection.dbapi_connection
        try:
            dbapi_connection.execute(sql)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            gone = engine.dialect.is_disconnect(exc, dbapi_connection, None)
            raise sa.exc.DBAPIError.instance(sql, (), exc, sqlite3.Error, connection_invalidated=gone, dialect=engine.dialect) from exc

    return engine


@attrs.define
class _Unit:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    #: Written ahead of other units (:meth:`Store.write_first`, :meth:`Store.write_ahead`).
    first: bool = False
    #: Someone waits on it: a long batch running when it arrives is cut short.
    urgent: bool = False
    #: Goes in a batch of its own: the writer process could not read the last batch it was in.
    alone: bool = False
    done: trio.Event = attrs.Factory(trio.Event)
    result: Any = None
    error: BaseException | None = None


#: Put in the writer's queue when an outcome from the writer process is ready, to wake it.
_WAKE: Any = object()


def _lane(lanes: tuple[collections.deque[_Unit], ...], unit: _Unit) -> collections.deque[_Unit]:
    """The writer's lane for ``unit``: write_first, write_ahead or write (see Store._write_batches)."""
    return lanes[0] if unit.urgent else lanes[1] if unit.first else lanes[2]


def _take(lane: collections.deque[_Unit], most: int) -> list[_Unit]:
    """Up to ``most`` units from the head of ``lane``, stopping at one that goes alone."""
    taken: list[_Unit] = []
    while lane and len(taken) < most and not lane[0].alone:
        taken.append(lane.popleft())
    return taken


class Store:
    """The database, as the rest of the gateway sees it.

    Args:
        engine: from :func:`make_engine`.
        max_batch: the most units one commit carries.
        max_later: the most :meth:`Store.write` units a commit carries along with
            :meth:`Store.write_first` ones (bulk work waits rather than delay a subscriber).
        queue_size: units that may wait for the writer before :meth:`write` blocks its caller.
        readers: how many reads may run at once.
        cut_after: seconds after which a running batch stops taking more of its bulk
            units when a :meth:`Store.write_first` unit is waiting: it commits what ran, and
            the rest goes back to the head of its lane. A reply then waits for at most this much
            work, not for a whole batch of it. (Only for those units: every cut costs a
            commit, and bulk work commits in large batches.)
        writer_command: run the writer in a process of its own, started with this command
            (see :mod:`profile_store.writer_process`); its units must then pickle.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 200,
        max_later: int = 32,
        queue_size: int = 10_000,
        readers: int = 4,
        cut_after: float = 0.005,
        writer_command: Sequence[str] | None = None,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_later = max_later
        self._committer = Committer(engine, cut_after=cut_after, urgent=lambda: self._urgent_waiting > 0)
        #: The writer's own process (None: the writer runs on a worker thread of this one).
        self.writer_process: WriterProcess | None = None
        if writer_command is not None:
            if engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be written by another process")
            url = engine.url.render_as_string(hide_password=False)
            self.writer_process = WriterProcess(url, writer_command, cut_after=cut_after)
        # write_first units sent but not yet in a running batch; read by the writer thread
        # (an int read is atomic) to cut a long batch short.
        self._urgent_waiting = 0
        self._send, self._receive = trio.open_memory_channel[_Unit](queue_size)
        self._writer_limiter = trio.CapacityLimiter(1)
        self._reader_limiter = trio.CapacityLimiter(readers)
        self._running = False
        # With a writer process: a task collects the outcomes of batches in flight.
        self._collecting = False
        self._outcome_ready = trio.Event()
        #: Commits done, units committed, and units that raised (for metrics and benchmarks).
        self.commits = 0
        self.units = 0
        self.failed_units = 0
        #: Called after each group commit with its duration in seconds and its unit count
        #: (the daemon's commit latency metric); runs in the trio thread, must not block.
        self.on_commit: Callable[[float, int], None] | None = None

    @property
    def cut_after(self) -> float:
        """Seconds after which a running batch is cut short for a unit someone waits on."""
        return self._committer.cut_after

    @cut_after.setter
    def cut_after(self, value: float) -> None:
        self._committer.cut_after = value
        if self.writer_process is not None:
            self.writer_process.cut_after = value

    def keep_resident(self, obj: Any) -> None:
        """Units refer to ``obj`` by identity, not by value: with a writer process it is sent
        there once (again whenever its ``generation`` attribute changes) and the state units
        give it stays there. Nothing to do with a writer thread."""
        if self.writer_process is not None:
            self.writer_process.keep_resident(obj)

    def configure_writer_logging(self, level: str, fmt: str) -> None:
        """A writer process logs with this level and format from its next batch on (it was
        started with the gateway's settings of the time). Nothing to do with a writer thread."""
        if self.writer_process is not None:
            self.writer_process.logging = (level, fmt)

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> "Store":
        """A store on a new engine for ``url``."""
        return cls(make_engine(url), **kwargs)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    # -- the writer ----------------------------------------------------------------------------

    async def run_writer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The single writer task: run it in a nursery for as long as writes are wanted."""
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                if self.dialect == "sqlite":
                    nursery.start_soon(self._checkpointer)
                task_status.started()
                await self._write_batches()
                nursery.cancel_scope.cancel()
        finally:
            self._running = False
            # No commit runs now: each one finishes before its batch's await returns.
            self._committer.drop_connection()
            if self.writer_process is not None:
                await self.writer_process.aclose()

    async def _checkpointer(self) -> None:
        """Move the WAL into the database file every ``CHECKPOINT_INTERVAL``, off the writer's commit path."""
        done = self.commits
        while True:
            await trio.sleep(CHECKPOINT_INTERVAL)
            if self.commits != done:
                done = self.commits
                try:
                    await trio.to_thread.run_sync(self._checkpoint, limiter=self._reader_limiter)
                except sa.exc.DBAPIError as exc:
                    log.warning("store_checkpoint_failed", error=str(exc.orig))

    def _checkpoint(self) -> None:
        with self.engine.connect() as conn:
            # On the raw connection: PASSIVE never waits for the writer, and it must not run
            # inside a transaction of its own.
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]

    async def _write_batches(self) -> None:
        # Three lanes, taken in this order: what a subscriber waits on (write_first), what
        # holds a window (write_ahead), bulk work (write).
        urgent: collections.deque[_Unit] = collections.deque()
        first: collections.deque[_Unit] = collections.deque()
        later: collections.deque[_Unit] = collections.deque()
        lanes = (urgent, first, later)
        process = self.writer_process
        # With a writer process, a second batch goes out while one runs (the child goes from
        # one straight into the next); the outcomes come back in this list, from another task.
        outcomes: collections.deque[tuple[list[_Unit], int, int, float]] = collections.deque()
        closed = False
        async with trio.open_nursery() as nursery:
            while not closed or urgent or first or later or (process is not None and process.in_flight):
                while outcomes:
                    batch, ran, failed, started = outcomes.popleft()
                    self._done(lanes, batch, ran, failed, started)
                if not urgent and not first and not later or (process is not None and process.in_flight >= 2):
                    if closed:
                        await self._outcome_ready.wait()
                        self._outcome_ready = trio.Event()
                        continue
                    try:
                        unit = await self._receive.receive()
                    except trio.EndOfChannel:
                        closed = True
                        continue
                    if unit is not _WAKE:
                        _lane(lanes, unit).append(unit)
                    continue
                # Everything waiting, sorted into the lanes (each caller has one unit out).
                while len(urgent) + len(first) + len(later) < 8 * self.max_batch:
                    try:
                        unit = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    except trio.EndOfChannel:
                        closed = True
                        break
                    if unit is not _WAKE:
                        _lane(lanes, unit).append(unit)
                alone = next((lane for lane in lanes if lane and lane[0].alone), None)
                if alone is not None:
                    batch = [alone.popleft()]
                else:
                    batch = _take(urgent, self.max_batch)
                    batch += _take(first, self.max_batch - len(batch))
                    room = min(self.max_batch - len(batch), self.max_later) if batch else self.max_batch
                    batch += _take(later, max(room, 1))
                self._urgent_waiting -= sum(unit.urgent for unit in batch)
                started = time.perf_counter()
                if process is None:
                    # Not cancellable: a commit that started finishes, so its callers' outcome is known.
                    ran, failed = await trio.to_thread.run_sync(self._committer.commit, batch, limiter=self._writer_limiter)
                    self._done(lanes, batch, ran, failed, started)
                    continue
                await process.send(batch)
                if not self._collecting:
                    self._collecting = True
                    nursery.start_soon(self._collect_outcomes, process, outcomes, started)
            nursery.cancel_scope.cancel()

    async def _collect_outcomes(
        self, process: WriterProcess, outcomes: collections.deque[tuple[list[_Unit], int, int, float]], started: float
    ) -> None:
        """Hand the outcomes of the batches in flight to the writer task, until none is left."""
        try:
            while process.in_flight:
                batch, ran, failed = await process.outcome()
                outcomes.append((batch, ran, failed, started))
                started = time.perf_counter()
                self._outcome_ready.set()
                try:
                    self._send.send_nowait(_WAKE)
                except (trio.WouldBlock, trio.ClosedResourceError):
                    pass  # the writer task has units to take (it looks at outcomes first), or is closing
        finally:
            self._collecting = False

    def _done(self, lanes: tuple[collections.deque[_Unit], ...], batch: list[_Unit], ran: int, failed: int, started: float) -> None:
        """A batch's outcome: its callers go on, and what it did not run goes back to the head of its lane."""
        if ran:
            # A writer process gives back whole a batch it had not begun (nothing committed).
            self.commits += 1
            self.units += ran
            self.failed_units += failed
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started, ran)
        for unit in batch[:ran]:
            unit.done.set()
        deferred = batch[ran:]
        for unit in reversed(deferred):
            _lane(lanes, unit).appendleft(unit)
        self._urgent_waiting += sum(unit.urgent for unit in deferred)

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a coming group commit; return its result once committed.

        Raises:
            StoreUnavailable: the batch could not be committed (the unit's effects are not stored).
            Exception: whatever ``fn`` raised (its effects are rolled back; the batch commits).
        """
        return await self._write(False, fn, args, kwargs)

    async def write_first(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like :meth:`write`, for a unit a subscriber is waiting on (storing an MO, deciding
        about it, claiming its reply): it goes into the next commit ahead of bulk work, which
        takes at most ``max_later`` units of a commit that carries such units, and a batch
        running longer than ``cut_after`` when it arrives commits early to let it in."""
        return await self._write(True, fn, args, kwargs, urgent=True)

    async def write_ahead(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like :meth:`write_first`, but a running batch is not cut short for it, and
        write_first units waiting with it go first: for work that holds a window but that no
        subscriber waits on (a delivery receipt)."""
        return await self._write(True, fn, args, kwargs)

    async def _write(
        self, first: bool, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], *, urgent: bool = False
    ) -> T:
        if not self._running:
            raise StoreUnavailable("the store writer is not running")
        unit = _Unit(functools.partial(fn, **kwargs) if kwargs else fn, args, first, urgent)
        if urgent:
            self._urgent_waiting += 1
            if self.writer_process is not None:
                self.writer_process.poke()
        try:
            # Most units find room, and await send() checkpoints twice even then.
            self._send.send_nowait(unit)
        except trio.WouldBlock:
            await self._send.send(unit)
        await unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result  # type: ignore[no-any-return]

    async def ping(self) -> None:
        """A round trip through the writer: proves the writer task runs and the database answers.

        Raises:
            StoreUnavailable: the writer is not running or the database cannot be reached.
        """
        await self.write(_select_one)

    # -- reads -----------------------------------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a transaction of its own on a worker thread.

        Raises:
            StoreUnavailable: the database could not be reached.
        """
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        return await trio.to_thread.run_sync(self._read, fn, args, limiter=self._reader_limiter)

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            with self.engine.connect() as conn, conn.begin():
                return fn(conn, *args)
        except sa.exc.DBAPIError as exc:
            raise StoreUnavailable(f"read failed: {exc.orig!r}") from exc

    async def aclose(self) -> None:
        """Release the engine's connections, the writer's too (between two of its commits)."""
        await trio.to_thread.run_sync(self._release, limiter=self._writer_limiter)

    def _release(self) -> None:
        self._committer.drop_connection()
        self.engine.dispose()


def _select_one(conn: Connection) -> None:
    conn.execute(sa.text("SELECT 1"))
