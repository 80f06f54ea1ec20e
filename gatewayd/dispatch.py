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

import functools
import time
from typing import Callable

import attrs
import sqlalchemy as sa
import structlog
import trio

from profile_store.db import Store, StoreUnavailable
from profile_store.mo import mark_mo, pending_mos
from profile_store.mt import MtRequest, enqueue_mt
from profile_store.schema import mo_messages
from profile_store.values import MoStatus, StoredMo
from gatewayd.smpp.text import ConcatReferences

__all__ = ["Decision", "MoProcessor", "Dispatcher", "leave_unrouted", "process_mo"]

log = structlog.get_logger("gatewayd.dispatch")


@attrs.frozen
class Decision:
    """What to do with one MO: the routing outcome to record and the MTs to send."""

    route: str
    replies: tuple[MtRequest, ...] = ()


#: Decides about an MO inside the store's transaction (it may read; it must not commit).
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


# Built once: SQLAlchemy then reuses the compiled statements for every MO.
_CLAIM = (
    sa.update(mo_messages)
    .where(mo_messages.c.id == sa.bindparam("mo_id"), mo_messages.c.status == MoStatus.STORED.value)
    .values(status=MoStatus.PROCESSED.value, processed_at=sa.bindparam("now"))
)
_RECORD_ROUTE = sa.update(mo_messages).where(mo_messages.c.id == sa.bindparam("mo_id")).values(route=sa.bindparam("new_route"))


def process_mo(conn: sa.Connection, mo: StoredMo, now: float, processor: MoProcessor, next_ref: Callable[[str], int]) -> Processed:
    """The unit of work for one MO: decide, enqueue the replies, mark the MO processed.

    The MO is claimed with a conditional update first, so work handed over twice (by ingest
    and by the sweep, or by two nodes) is done once.

    Args:
        next_ref: gives the concatenation reference for a reply to a number.
    """
    claimed = conn.execute(_CLAIM, {"mo_id": mo.id, "now": now}).rowcount
    if not claimed:
        return Processed(mo.id, mo.route or "", (), fresh=False)
    decision = processor(conn, mo, now)
    mt_ids = tuple(enqueue_mt(conn, request, now, concat_ref=next_ref(request.msisdn)).id for request in decision.replies)
    conn.execute(_RECORD_ROUTE, {"mo_id": mo.id, "new_route": decision.route})
    return Processed(mo.id, decision.route, mt_ids, fresh=True)


class Dispatcher:
    """Processes stored MOs: those handed over by ingest, and every ``stored`` one left over.

    Args:
        store: the store.
        processor: decides about each MO.
        on_enqueued: called after a commit that enqueued MTs (wakes the outbox).
        workers: MOs processed concurrently (their units share group commits).
        sweep_interval: seconds between sweeps for ``stored`` MOs nobody handed over.
        clock: wall-clock seconds.
    """

    def __init__(
        self,
        store: Store,
        processor: MoProcessor = leave_unrouted,
        *,
        on_enqueued: Callable[[], None] = lambda: None,
        workers: int = 32,
        queue_size: int = 10_000,
        sweep_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.processor = processor
        self._on_enqueued = on_enqueued
        self._workers = workers
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._send, self._receive = trio.open_memory_channel[StoredMo](queue_size)
        self._refs = ConcatReferences(8)
        # MOs waiting in the channel and MOs being processed: the sweep must not add them again.
        self._queued: set[int] = set()
        self._busy: set[int] = set()
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

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Process MOs until cancelled, starting with those a previous run left ``stored``."""
        async with trio.open_nursery() as nursery:
            for _ in range(self._workers):
                nursery.start_soon(self._worker)
            nursery.start_soon(self._sweeper)
            task_status.started()

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

    async def _worker(self) -> None:
        async for mo in self._receive:
            self._queued.discard(mo.id)
            if mo.id in self._busy:
                continue
            self._busy.add(mo.id)
            try:
                await self._process(mo)
            finally:
                self._busy.discard(mo.id)

    async def _process(self, mo: StoredMo) -> None:
        started = trio.current_time()
        try:
            # The references are only ever handed out on the writer thread, one unit at a time.
            outcome = await self.store.write(process_mo, mo, self._clock(), self.processor, self._refs.next)
        except StoreUnavailable as exc:
            # Still 'stored': the next sweep tries again.
            log.warning("mo_processing_deferred", mo_id=mo.id, error=str(exc))
            return
        except Exception:
            self.failed += 1
            log.exception("mo_processing_failed", mo_id=mo.id)
            try:
                await self.store.write(mark_mo, mo.id, "failed", self._clock(), error="processor raised")
            except StoreUnavailable:
                pass
            return
        if not outcome.fresh:
            return
        self.processed += 1
        if outcome.mt_ids:
            self.enqueued += len(outcome.mt_ids)
            self._on_enqueued()
        log.info("mo_processed", mo_id=mo.id, route=outcome.route, replies=len(outcome.mt_ids), latency_ms=round((trio.current_time() - started) * 1000, 3))
