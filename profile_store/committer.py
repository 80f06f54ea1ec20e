"""Running a batch of units in one transaction: the store writer's work, wherever it runs.

The writer runs on a worker thread of the gateway's process, or in a process of its own
(:mod:`profile_store.writer_process`); both hand their batches to a :class:`Committer`.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any, Callable, Protocol, Sequence, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

__all__ = ["COMMIT_ATTEMPTS", "Committer", "StoreError", "StoreUnavailable", "Unit", "runs_together"]

log = structlog.get_logger("profile_store.db")

#: Transient failures of a whole batch (deadlock, lock timeout, lost connection) are retried
#: this many times before the batch's callers are told the store is unavailable.
COMMIT_ATTEMPTS = 8


class StoreError(Exception):
    """Root of the store's exceptions."""


class StoreUnavailable(StoreError):
    """The database cannot take writes right now (locked, gone, full); try again later."""


class Unit(Protocol):
    """What a committer needs of a unit: its function and arguments, its lane, and where its
    outcome goes."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    #: Written ahead of bulk units: a batch is never cut before one of these.
    first: bool
    result: Any
    error: BaseException | None


F = TypeVar("F", bound=Callable[..., Any])

#: Runs many calls of a unit function as one: given the connection and each call's
#: positional and keyword arguments, returns each call's result, in order.
Together = Callable[[Connection, Sequence[tuple[tuple[Any, ...], dict[str, Any]]]], list[Any]]


def runs_together(together: Together) -> Callable[[F], F]:
    """Mark a unit function whose units in one batch may run as one call of ``together``.

    The batch's units of that function in one lane (:attr:`Unit.first`, or bulk) then run
    together, in their order, where the first of them stood: a unit's position within its
    batch is not something its caller can see, for every unit of a batch commits at once.
    A batch is never cut before a unit that already ran in such a call. When the call
    raises, the batch runs again with a savepoint per unit, each through the function
    itself, so only the failing unit fails.
    """

    def mark(fn: F) -> F:
        fn.runs_together = together  # type: ignore[attr-defined]
        return fn

    return mark


def _together(fn: Callable[..., Any]) -> Together | None:
    target = fn.func if isinstance(fn, functools.partial) and not fn.args else fn
    return getattr(target, "runs_together", None)


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, dict(fn.keywords) if isinstance(fn, functools.partial) else {}


class _RetryIsolated(Exception):
    """A unit raised on the fast path: run the batch again with a savepoint per unit."""


class Committer:
    """Runs batches of units on one writer connection, kept from one commit to the next.

    Args:
        engine: from :func:`profile_store.db.make_engine`.
        cut_after: seconds after which a batch stops at its next bulk unit when ``urgent()``
            says a subscriber's unit is waiting.
        urgent: whether a unit someone waits on is waiting for the next commit.
    """

    def __init__(self, engine: Engine, *, cut_after: float, urgent: Callable[[], bool]) -> None:
        self.engine = engine
        self.cut_after = cut_after
        self.urgent = urgent
        # Checking a connection out of the pool and back (events, reset on return) costs
        # more Python than a small commit's statements.
        self._conn: Connection | None = None

    def commit(self, batch: list[Unit]) -> tuple[int, int]:
        """Run and commit the batch, or its first units when it is cut short.

        Returns:
            How many units ran (their outcomes are set), and how many of those raised.
        """
        # Units rarely fail, so the batch first runs without savepoints (one statement per
        # write). If a unit raises, that transaction is rolled back and the units that ran
        # run again with a SAVEPOINT around each, so only the failing ones lose their effects.
        isolate = False
        attempt = 0
        ran = len(batch)
        while True:
            attempt += 1
            for unit in batch[:ran]:
                unit.result, unit.error = None, None
            try:
                conn = self._connection()
                with conn.begin():
                    if isolate:
                        self._run_isolated(conn, batch[:ran])
                    else:
                        ran, ok = self._run_plain(conn, batch[:ran])
                        if not ok:
                            raise _RetryIsolated()
            except _RetryIsolated:
                isolate = True
                continue
            except sa.exc.DBAPIError as exc:
                self.drop_connection()
                if attempt < COMMIT_ATTEMPTS and transient(exc):
                    # Jitter: two nodes whose batches deadlocked must not collide again in step.
                    time.sleep(0.01 * 2**attempt * (0.5 + random.random()))
                    continue
                error = StoreUnavailable(f"commit failed: {exc.orig!r}")
                for unit in batch[:ran]:
                    unit.result, unit.error = None, error
                log.error("store_commit_failed", units=ran, error=str(exc.orig))
                return ran, ran
            return ran, sum(unit.error is not None for unit in batch[:ran])

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None:
            conn = self._conn = self.engine.connect().execution_options(writer=True)
        return conn

    def drop_connection(self) -> None:
        """Close the writer's connection (after an error, or when the writer stops); the next
        commit opens another."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sa.exc.DBAPIError as exc:
                log.warning("store_connection_close_failed", error=str(exc.orig))

    def _run_plain(self, conn: Connection, batch: list[Unit]) -> tuple[int, bool]:
        """Run the units in order until one raises (False: the caller rolls back) or, past
        ``cut_after`` seconds, a unit someone waits on is waiting while bulk units remain;
        how many ran.

        Raises:
            sa.exc.DBAPIError: a transient database error (deadlock, lost connection): the
                whole batch is retried, it is nobody's fault.
        """
        deadline = time.perf_counter() + self.cut_after
        grouped = self._groups(batch)
        # The last unit that ran: a group runs its later members early, and the units a cut
        # leaves for the next batch must be all those after it.
        furthest = -1
        for ran, unit in enumerate(batch):
            # Only bulk units are left for later: the batch's first-lane units came before
            # the ones waiting.
            if ran > furthest and ran and not unit.first and time.perf_counter() > deadline and self.urgent():
                return ran, True
            furthest = max(furthest, ran)
            group = grouped.get(ran)
            try:
                if group is None:
                    unit.result = unit.fn(conn, *unit.args)
                elif group:
                    together = _together(unit.fn)
                    assert together is not None
                    members = [batch[index] for index in group]
                    results = together(conn, [_call(member.fn, member.args) for member in members])
                    for member, result in zip(members, results, strict=True):
                        member.result = result
                    furthest = max(furthest, group[-1])
            except sa.exc.DBAPIError as exc:
                if transient(exc):
                    raise
                return max([ran, *(group or ())]) + 1, False
            except Exception:
                return max([ran, *(group or ())]) + 1, False
        return len(batch), True

    @staticmethod
    def _groups(batch: list[Unit]) -> dict[int, list[int]]:
        """The units that run together, those of one function in one lane: the indices of each
        group's members by the index of its first, and an empty list by the index of each
        other member."""
        groups: dict[tuple[Together, bool], list[int]] = {}
        for index, unit in enumerate(batch):
            together = _together(unit.fn)
            if together is not None:
                groups.setdefault((together, unit.first), []).append(index)
        plan: dict[int, list[int]] = {}
        for members in groups.values():
            if len(members) > 1:
                plan[members[0]] = members
                plan.update(dict.fromkeys(members[1:], []))
        return plan

    @staticmethod
    def _run_isolated(conn: Connection, batch: list[Unit]) -> None:
        for unit in batch:
            savepoint = conn.begin_nested()
            try:
                unit.result = unit.fn(conn, *unit.args)
            except sa.exc.DBAPIError as exc:
                savepoint.rollback()
                if transient(exc):
                    raise
                unit.error = exc
            except Exception as exc:
                savepoint.rollback()
                unit.error = exc
            else:
                savepoint.commit()


def transient(exc: sa.exc.DBAPIError) -> bool:
    """Locked or lost connections are worth another try; constraint violations are not."""
    return bool(exc.connection_invalidated) or isinstance(exc, sa.exc.OperationalError)
