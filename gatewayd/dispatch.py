"""Stored MOs -> decisions -> actions, each MO exactly once, in one transaction.

Once an MO is durably stored (and acknowledged to the SMSC) it is handed here. A
:data:`MoProcessor` decides what to do with it -- today a placeholder, once routing lands
the router, the policy and the campaign module -- and returns the MTs to send. The
decision, the MTs and the MO's new status are written by one unit of work, so after a crash
an MO is either processed with all its effects or still ``stored`` and processed again at
startup; never half.

MOs arrive on a bounded channel from ingest. When the channel is full, ingest does not wait:
the MO is already stored, and the periodic sweep of ``stored`` MOs picks it up.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import time
from typing import Any, Callable, Sequence

import attrs
import sqlalchemy as sa
import structlog
import trio

from profile_store.committer import runs_together, transient
from profile_store.db import Store, StoreUnavailable
from profile_store.mo import MoPartIn, pending_mos, store_mo_part
from profile_store.mt import ClaimedMt, MtRequest, NewMt, insert_mts, new_mt
from profile_store.prepared import Prepared
from profile_store.schema import mo_messages
from profile_store.values import MoStatus, MoStored, StoredMo
from gatewayd.smpp.text import ConcatReferences

__all__ = ["Decision", "MoProcessor", "Dispatcher", "leave_unrouted", "process_mos", "store_and_process"]

log = structlog.get_logger("gatewayd.dispatch")


#: Writes a decision's effects inside the unit's transaction; returns more MTs to send.
Apply = Callable[[sa.Connection, float], Sequence[MtRequest]]


@attrs.frozen
class Decision:
    """What to do with one MO: the routing outcome to record, the MTs to send and the effects to write.

    ``apply`` runs after the decision, under a SAVEPOINT of its own: when it raises anything
    but a database error, its writes are undone and the MO alone is marked failed.
    """

    route: str
    replies: tuple[MtRequest, ...] = ()
    #: The campaign the MO reached, recorded with it.
    campaign_id: int | None = None
    apply: Apply | None = None


#: Decides about an MO inside the store's transaction (it may read; it must not write:
#: writes belong in the decision's ``apply``).
MoProcessor = Callable[[sa.Connection, StoredMo, float], Decision]


def leave_unrouted(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
    """The processor until routing is configured: record the MO as unrouted, send nothing."""
    return Decision(route="unrouted")


@attrs.frozen
class Processed:
    """The outcome of :func:`process_mo`."""

    mo_id: int
    route: str
    mt_ids: tuple[int, ...]
    #: False when the MO had already been processed (a second delivery of the same work).
    fresh: bool
    #: The replies among ``mt_ids`` enqueued already claimed for the sender (see process_mos).
    claimed: tuple[ClaimedMt, ...] = ()


# Built once: SQLAlchemy then reuses the compiled statements for every MO.
_RECORD_ROUTE = Prepared(
    sa.update(mo_messages)
    .where(mo_messages.c.id == sa.bindparam("mo_id"))
    .values(route=sa.bindparam("new_route"), campaign_id=sa.bindparam("new_campaign_id"))
)


# One name for every batch: SQLAlchemy's numbered savepoints are new SQL text each time,
# compiled by SQLAlchemy and prepared by the database again and again. Batches sharing a
# transaction run one after another, and same-named savepoints nest on either database.
_SAVEPOINT = Prepared(sa.text("SAVEPOINT process_mos"))
_RELEASE_SAVEPOINT = Prepared(sa.text("RELEASE SAVEPOINT process_mos"))
_ROLLBACK_TO_SAVEPOINT = Prepared(sa.text("ROLLBACK TO SAVEPOINT process_mos"))
_CLAIM_MANY = Prepared(
    sa.update(mo_messages)
    .where(mo_messages.c.id.in_(sa.bindparam("mo_ids", expanding=True)), mo_messages.c.status == MoStatus.STORED.value)
    .values(status=MoStatus.PROCESSED.value, processed_at=sa.bindparam("now"))
    .returning(mo_messages.c.id),
    expanding="mo_ids",
)
_RECORD_FAILURE = (
    sa.update(mo_messages)
    .where(mo_messages.c.id == sa.bindparam("mo_id"))
    .values(status=MoStatus.FAILED.value, error=sa.bindparam("new_error"))
)


def mark_failed(conn: sa.Connection, mo_id: int, error: str) -> None:
    """Mark an MO failed (a unit of its own, when processing it broke the whole unit)."""
    conn.execute(_RECORD_FAILURE, {"mo_id": mo_id, "new_error": error})


@attrs.frozen
class Failed:
    """An MO whose processor raised: marked failed in the same unit, with no replies."""

    mo_id: int
    error: str


class _ApplyFailed(Exception):
    """An ``apply`` raised while the batch ran without a savepoint per MO."""


def process_mos(
    conn: sa.Connection,
    mos: Sequence[StoredMo],
    now: float,
    processor: MoProcessor,
    next_ref: Callable[[str], int],
    claim: tuple[str, float] | None = None,
) -> list[Processed | Failed]:
    """The unit of work for a batch of MOs: decide, enqueue the replies, mark each processed.

    With ``claim`` (a node and a lease), replies are enqueued already claimed by that node
    (see :func:`profile_store.mt.enqueue_claimed`), for a sender that starts them once this
    commits; except the replies to a subscriber with another MO in the batch, which wait
    for the claim-time screen like any queued MT (a STOP later in the batch is seen there).

    One conditional UPDATE claims every MO still 'stored', so work handed over twice (by
    ingest and by the sweep, or by two nodes) is done once; each claimed MO is decided and
    its replies enqueued; the routes are written with one executemany. A processor only decides
    (it may read, never write), so when it raises for one MO that MO alone is marked failed
    and the others go on. Applying a decision writes; the batch first runs inside one
    savepoint, and only when an ``apply`` raises is it run again with a savepoint per MO, so
    that MO alone loses its writes.
    """
    _SAVEPOINT.run(conn, {})
    try:
        outcomes = _process_mos(conn, mos, now, processor, next_ref, claim, isolate=False)
    except _ApplyFailed:
        _ROLLBACK_TO_SAVEPOINT.run(conn, {})
        _RELEASE_SAVEPOINT.run(conn, {})
        return _process_mos(conn, mos, now, processor, next_ref, claim, isolate=True)
    except BaseException:
        # The transaction may have gone with its connection; the store rolls it back anyway.
        with contextlib.suppress(Exception):
            _ROLLBACK_TO_SAVEPOINT.run(conn, {})
            _RELEASE_SAVEPOINT.run(conn, {})
        raise
    _RELEASE_SAVEPOINT.run(conn, {})
    return outcomes


def _process_mos(
    conn: sa.Connection,
    mos: Sequence[StoredMo],
    now: float,
    processor: MoProcessor,
    next_ref: Callable[[str], int],
    claim: tuple[str, float] | None,
    *,
    isolate: bool,
) -> list[Processed | Failed]:
    claimed = {row[0] for row in _CLAIM_MANY.all(conn, {"mo_ids": [mo.id for mo in mos], "now": now})}
    prepare = getattr(processor, "prepare", None)
    if prepare is not None and claimed:
        # Lets a processor read what the whole batch needs in a few queries.
        prepare(conn, [mo for mo in mos if mo.id in claimed], now)
    outcomes: list[Processed | Failed] = []
    routes: list[dict[str, object]] = []
    senders = collections.Counter(mo.subscriber_id for mo in mos)
    repeated = {sid for sid, count in senders.items() if count > 1}
    failures: list[dict[str, object]] = []
    # The replies are checked as each MO is decided, and inserted together after the last.
    replies: list[NewMt] = []
    # Each replying MO's outcome: where it is, the MO, its route, and how many replies it has.
    replying: list[tuple[int, int, str, int]] = []
    for mo in mos:
        if mo.id not in claimed:
            outcomes.append(Processed(mo.id, mo.route or "", (), fresh=False))
            continue
        try:
            decision = processor(conn, mo, now)
        except Exception as exc:
            error = f"processor raised {type(exc).__name__}: {exc}"[:500]
            failures.append({"mo_id": mo.id, "new_error": error})
            outcomes.append(Failed(mo.id, error))
            continue
        requests = list(decision.replies)
        if decision.apply is not None:
            if not isolate:
                try:
                    requests += decision.apply(conn, now)
                except sa.exc.DBAPIError:
                    raise
                except Exception as exc:
                    raise _ApplyFailed() from exc
            else:
                try:
                    with conn.begin_nested():
                        requests += decision.apply(conn, now)
                except sa.exc.DBAPIError:
                    raise
                except Exception as exc:
                    error = f"applying the decision raised {type(exc).__name__}: {exc}"[:500]
                    failures.append({"mo_id": mo.id, "new_error": error})
                    outcomes.append(Failed(mo.id, error))
                    continue
        # Claimed by this node unless another MO of the subscriber is in the batch: then the
        # claim-time screen sees a STOP later in the batch.
        lease = (claim[0], now + claim[1]) if claim is not None and mo.subscriber_id not in repeated else None
        for request in requests:
            replies.append(new_mt(conn, request, now, concat_ref=next_ref(request.msisdn), claim=lease))
        routes.append({"mo_id": mo.id, "new_route": decision.route, "new_campaign_id": decision.campaign_id})
        replying.append((len(outcomes), mo.id, decision.route, len(requests)))
        outcomes.append(Processed(mo.id, decision.route, (), fresh=True))
    stored = iter(insert_mts(conn, replies))
    for index, mo_id, route, count in replying:
        mts = [next(stored) for _ in range(count)]
        claimed_mts = tuple(mt for mt in mts if isinstance(mt, ClaimedMt))
        outcomes[index] = Processed(mo_id, route, tuple(mt.id for mt in mts), fresh=True, claimed=claimed_mts)
    _RECORD_ROUTE.many(conn, routes)
    if failures:
        conn.execute(_RECORD_FAILURE, failures)
    return outcomes


_INLINE_SAVEPOINT = Prepared(sa.text("SAVEPOINT store_and_process"))
_INLINE_RELEASE = Prepared(sa.text("RELEASE SAVEPOINT store_and_process"))
_INLINE_ROLLBACK = Prepared(sa.text("ROLLBACK TO SAVEPOINT store_and_process"))

#: The processor, the reference counter and the claim with which an MO is decided about in
#: the unit that stores it (see :meth:`Dispatcher.deciding_on_store`).
Inline = tuple[MoProcessor, Callable[[str], int], tuple[str, float] | None]


def _decide_stored(
    conn: sa.Connection, mos: list[StoredMo], now: float, inline: Inline
) -> list[Processed | Failed] | None:
    """Decide about MOs just stored, in a savepoint: None (their writes undone, the MOs still
    'stored') when deciding raises anything but a transient database error."""
    processor, next_ref, claim = inline
    _INLINE_SAVEPOINT.run(conn, {})
    try:
        outcomes: list[Processed | Failed] | None = process_mos(conn, mos, now, processor, next_ref, claim)
    except Exception as exc:
        if isinstance(exc, sa.exc.DBAPIError) and transient(exc):
            raise
        _INLINE_ROLLBACK.run(conn, {})
        outcomes = None
    _INLINE_RELEASE.run(conn, {})
    return outcomes


def _store_and_process_together(
    conn: sa.Connection, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
) -> list[tuple[MoStored, list[Processed | Failed] | None]]:
    """:func:`store_and_process` for the MOs of one batch: each part is stored, then the MOs
    they complete are decided about in one :func:`process_mos` (a few statements for all of
    them, as the dispatcher's batches are) per processor. When deciding raises, none of
    those MOs has an outcome: they stay 'stored' for the dispatcher."""
    stored = [store_mo_part(conn, part, now, **options) for (part, now, _inline), options in calls]
    results: list[tuple[MoStored, list[Processed | Failed] | None]] = [(one, None) for one in stored]
    # Every call of one dispatcher carries the same processor, reference counter and claim.
    groups: list[tuple[Inline, list[int]]] = []
    for index, ((_part, _now, inline), _options) in enumerate(calls):
        if stored[index].duplicate or stored[index].mo is None:
            continue
        for key, members in groups:
            if key[0] is inline[0] and key[1:] == inline[1:]:
                members.append(index)
                break
        else:
            groups.append((inline, [index]))
    for inline, members in groups:
        now = max(calls[index][0][1] for index in members)
        outcomes = _decide_stored(conn, [stored[index].mo for index in members], now, inline)  # type: ignore[misc]
        if outcomes is not None:
            for index, outcome in zip(members, outcomes, strict=True):
                results[index] = (stored[index], [outcome])
    return results


@runs_together(_store_and_process_together)
def store_and_process(
    conn: sa.Connection, part: MoPartIn, now: float, inline: Inline, **store: object
) -> tuple[MoStored, list[Processed | Failed] | None]:
    """Store an MO part (:func:`profile_store.mo.store_mo_part`, with ``store`` its options)
    and, when it completes an MO, decide about that MO in the same transaction
    (:func:`process_mos`): the subscriber's reply then waits for one commit, not two.

    The part is stored whatever the decision does: when deciding raises (a database error
    that is not transient, or a bug), its writes are undone and the outcome is None, so the
    MO stays 'stored' for the dispatcher, which finds the culprit and marks it failed.

    The units of one batch run together (:func:`~profile_store.committer.runs_together`):
    their MOs are decided about in one :func:`process_mos`.
    """
    stored = store_mo_part(conn, part, now, **store)  # type: ignore[arg-type]
    if stored.duplicate or stored.mo is None:
        return stored, None
    return stored, _decide_stored(conn, [stored.mo], now, inline)


class Dispatcher:
    """Processes stored MOs: those handed over by ingest, and every ``stored`` one left over.

    Args:
        store: the store.
        processor: decides about each MO.
        on_enqueued: called after a commit that enqueued MTs left for the outbox to claim
            (wakes it).
        claim_for: the node and lease under which replies may be enqueued already claimed,
            or None (then all are left to claim); asked before each unit.
        take_claimed: given the replies enqueued already claimed, after their commit.
        workers: units processed concurrently (they share group commits).
        batch: the most MOs one unit processes.
        sweep_interval: seconds between sweeps for ``stored`` MOs nobody handed over.
        inline_limit: see :meth:`deciding_on_store`.
        clock: wall-clock seconds.
    """

    def __init__(
        self,
        store: Store,
        processor: MoProcessor = leave_unrouted,
        *,
        on_enqueued: Callable[[], None] = lambda: None,
        claim_for: Callable[[], tuple[str, float] | None] = lambda: None,
        take_claimed: Callable[[Sequence[ClaimedMt]], None] = lambda mts: None,
        workers: int = 8,
        batch: int = 100,
        queue_size: int = 10_000,
        sweep_interval: float = 5.0,
        inline_limit: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.processor = processor
        self._on_enqueued = on_enqueued
        self._claim_for = claim_for
        self._take_claimed = take_claimed
        self._workers = workers
        self._batch = batch
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._send, self._receive = trio.open_memory_channel[StoredMo](queue_size)
        # Its references are handed out by process_mos: they must persist where it runs.
        self._refs = ConcatReferences(8)
        store.keep_resident(self._refs)
        # MOs waiting in the channel and MOs being processed: the sweep must not add them again.
        self._queued: set[int] = set()
        self._busy: set[int] = set()
        #: Whether :meth:`deciding_on_store` offers deciding in the unit that stores the MO (set once
        #: ``processor`` is the one to use).
        self.decide_on_store = False
        #: The most MOs being stored and decided about in one unit at once.
        self.inline_limit = inline_limit
        self._inline = 0
        self._running = False
        #: MOs processed, MOs whose processor raised, MTs enqueued.
        self.processed = 0
        self.failed = 0
        self.enqueued = 0

    def submit(self, mo: StoredMo) -> None:
        """Hand over a freshly stored MO; never blocks (the sweep catches what does not fit)."""
        if mo.id in self._queued or mo.id in self._busy:
            return
        try:
            self._send.send_nowait(mo)
        except trio.WouldBlock:
            log.warning("dispatch_queue_full", mo_id=mo.id)
        else:
            self._queued.add(mo.id)

    def deciding_on_store(self) -> Inline | None:
        """What :func:`store_and_process` needs to decide about an MO as it is stored, or
        None to leave it to :meth:`submit`. Whoever gets an answer that is not None calls
        :meth:`stored_and_decided` once that unit's write has returned (or failed).

        None while the dispatcher is not running or not told to (:attr:`decide_on_store`),
        while it has MOs of its own (an older MO of the same subscriber may be among them),
        and while ``inline_limit`` MOs are being stored this way. The MOs stored in one batch
        are decided about together, in one :func:`process_mos`, so deciding this way costs
        the store no more under load than the dispatcher's batches do, and a reply waits
        for one commit rather than two.
        """
        # Not a context manager: asked for every MO, and a generator-based one costs ten times this.
        if not (self._running and self.decide_on_store) or self._queued or self._busy or self._inline >= self.inline_limit:
            return None
        self._inline += 1
        return self.processor, self._refs.next, self._claim_for()

    def stored_and_decided(self) -> None:
        """An MO that :meth:`deciding_on_store` let be decided about as it was stored is no longer being stored."""
        self._inline -= 1

    def processed_on_store(self, outcomes: Sequence[Processed | Failed], latency_ms: float) -> None:
        """Take the outcome of an MO decided about in the unit that stored it."""
        self._account(outcomes, latency_ms)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Process MOs until cancelled, starting with those a previous run left ``stored``."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._collect, nursery)
                nursery.start_soon(self._sweeper)
                self._running = True
                task_status.started()
        finally:
            self._running = False

    async def _sweeper(self) -> None:
        while True:
            after = 0
            while True:
                try:
                    batch = await self.store.read(functools.partial(pending_mos, limit=500, after_id=after))
                except StoreUnavailable as exc:
                    log.warning("dispatch_sweep_failed", error=str(exc))
                    break
                for mo in batch:
                    if mo.id not in self._busy and mo.id not in self._queued:
                        self._queued.add(mo.id)
                        await self._send.send(mo)
                if len(batch) < 500:
                    break
                after = batch[-1].id
            await trio.sleep(self._sweep_interval)

    async def _collect(self, nursery: trio.Nursery) -> None:
        """Gather handed-over MOs into units, one unit per free worker.

        A unit is gathered only once a worker is free, so what arrived while they were all
        waiting for commits goes into one unit: every unit costs the same few statements
        (claim, reads for the processor, routes) however many MOs it carries. Waiting for a
        free worker is a checkpoint, so the MOs one commit hands over join the same unit.
        """
        free = trio.Semaphore(self._workers)
        async for first in self._receive:
            await free.acquire()
            batch = self._take(first)
            while len(batch) < self._batch:
                try:
                    batch += self._take(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            if batch:
                nursery.start_soon(self._work, batch, free)
            else:
                free.release()

    async def _work(self, batch: list[StoredMo], free: trio.Semaphore) -> None:
        try:
            await self._process(batch)
        finally:
            self._busy.difference_update(mo.id for mo in batch)
            free.release()

    def _take(self, mo: StoredMo) -> list[StoredMo]:
        self._queued.discard(mo.id)
        if mo.id in self._busy:
            return []
        self._busy.add(mo.id)
        return [mo]

    async def _process(self, batch: list[StoredMo]) -> None:
        started = trio.current_time()
        try:
            # The references are only ever handed out on the writer thread, one unit at a time.
            outcomes = await self.store.write_first(
                process_mos, batch, self._clock(), self.processor, self._refs.next, self._claim_for()
            )
        except StoreUnavailable as exc:
            # Still 'stored': the next sweep tries again.
            log.warning("mo_processing_deferred", mo_ids=[mo.id for mo in batch], error=str(exc))
            return
        except Exception as exc:
            # A database error that is not transient (a constraint a decision broke): find
            # the MO that causes it, so the others go on and it is not retried for ever.
            if len(batch) > 1:
                for mo in batch:
                    await self._process([mo])
                return
            (mo,) = batch
            log.error("mo_processing_failed", mo_id=mo.id, error=f"{type(exc).__name__}: {exc}"[:500])
            try:
                await self.store.write(mark_failed, mo.id, f"{type(exc).__name__}: {exc}"[:500])
            except Exception as again:
                log.error("mo_mark_failed_failed", mo_id=mo.id, error=str(again)[:500])
            self.failed += 1
            return
        self._account(outcomes, round((trio.current_time() - started) * 1000, 3))

    def _account(self, outcomes: Sequence[Processed | Failed], latency_ms: float) -> None:
        """Count and log a unit's outcomes, and hand its replies over."""
        enqueued = 0
        claimed: list[ClaimedMt] = []
        for outcome in outcomes:
            if isinstance(outcome, Failed):
                self.failed += 1
                log.error("mo_processing_failed", mo_id=outcome.mo_id, error=outcome.error)
            elif outcome.fresh:
                self.processed += 1
                enqueued += len(outcome.mt_ids)
                claimed += outcome.claimed
                log.info("mo_processed", mo_id=outcome.mo_id, route=outcome.route, replies=len(outcome.mt_ids), latency_ms=latency_ms)
        self.enqueued += enqueued
        if claimed:
            self._take_claimed(claimed)
        if enqueued > len(claimed):
            self._on_enqueued()
