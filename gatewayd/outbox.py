"""The MT sender of one gateway node: claims due MTs from the store and submits them.

MTs wait in the store's outbox (``mt_messages``) until a node claims them with a lease
(:func:`profile_store.mt.claim_due`). :class:`Outbox` claims a batch, sends each MT in a
task of its own over an :class:`~gatewayd.binds.SmscLink` and records every part the SMSC
accepts, then sleeps until :meth:`Outbox.wake` or the next sweep. Replies to subscribers
(priority 0) are claimed before bulk traffic, and once claimed they also go first for a
slot of their link and for its rate cap, so bulk MTs claimed earlier never hold them up;
bulk MTs never hold the last tenth of a link's slots, so a reply need not even wait for a
bulk MT's submit_sm_resp to free one.

Bounds: an MT task holds one slot of its link for all its parts, and a link has as many
slots as its window, so the window is never oversubscribed by the outbox; the node as a
whole submits at most ``max_in_flight`` claimed MTs at once, and claims only as many as it
has free slots, so a claimed MT starts at once instead of waiting out its lease. Both slots
come free when the SMSC has answered an MT's last part, before that answer is stored: the
window and the bound serve the next MTs while the store writer catches up. While a long
queue drains, the next claim waits until a quarter of the bound is free (the MTs still in
hand keep the links busy meanwhile): a claim per freed slot would cost the store a
transaction per MT.

Outcomes: ESME_ROK stores the normalised message id; a temporary status, a response
timeout or a lost connection requeue the MT with a backoff (parts already accepted are
not sent again); no SMSC bound requeues it without using up an attempt; any other status
fails it. A response timeout or lost connection may mean the SMSC did take the part: the
retry may duplicate it, which ``possibly_duplicated`` counts.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import time
import weakref
from typing import Awaitable, Callable, Mapping, Sequence

import attrs
import structlog
import trio

from gatewayd.binds import NoBind, SmscLink
from gatewayd.smpp.constants import TEMPORARY_STATUSES, BindMode, CommandStatus, describe_status
from gatewayd.smpp.pdus import SubmitSm
from gatewayd.smpp.receipts import normalise_message_id
from gatewayd.smpp.text import ConcatMethod, ConcatReferences, MessagePart, split_text
from gatewayd.transport import ConnectionGone, ResponseTimeout
from profile_store.db import Store, StoreError
from profile_store.mt import (
    ClaimedMt,
    MtProgress,
    MtRequest,
    Screen,
    StoredMt,
    attempt_failed,
    claim_due,
    enqueue_mt,
    part_accepted,
    release_claims,
    settle_mt,
)

__all__ = ["Outbox"]

log = structlog.get_logger("gatewayd.outbox")

#: last_error of an MT that found no SMSC to carry it.
NO_BIND = "no bind"
#: The bind modes that can submit.
_SUBMITTING = (BindMode.TRANSCEIVER, BindMode.TRANSMITTER)


#: Tries at storing an accepted part before the outcome is given up (and the MT resent later).
ACCEPT_STORE_ATTEMPTS = 6


@attrs.define(eq=False)
class _SlotWaiter:
    """An MT waiting for a slot of its link; ordered by priority, then arrival."""

    priority: int
    seq: int
    granted: trio.Event = attrs.Factory(trio.Event)

    def __lt__(self, other: _SlotWaiter) -> bool:
        return (self.priority, self.seq) < (other.priority, other.seq)


class _LinkSlots:
    """The slots of one link (its window), handed out by priority (lower first), then in turn.

    Bulk MTs (priority above 0) may hold all but a tenth of them: the rest are kept for
    replies, so a reply finds a slot free at once instead of waiting for a bulk MT's
    submit_sm_resp. A window under ten keeps nothing back.
    """

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.bulk_total = self.total - self.total // 10
        self.used = 0
        self._waiting: list[_SlotWaiter] = []
        self._arrivals = itertools.count()

    def _limit(self, priority: int) -> int:
        return self.total if priority == 0 else self.bulk_total

    async def acquire(self, priority: int) -> None:
        """Take a slot, waiting for one if need be; give it back with :meth:`release`.

        (Not an async context manager: one per MT, and that costs ten times what taking
        the slot does.)
        """
        if self.used < self._limit(priority) and (not self._waiting or priority < self._waiting[0].priority):
            self.used += 1
            return
        me = _SlotWaiter(priority, next(self._arrivals))
        heapq.heappush(self._waiting, me)
        try:
            await me.granted.wait()
        except BaseException:
            if me.granted.is_set():
                self.release()
            else:
                self._waiting.remove(me)
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        """Give back a slot taken with :meth:`acquire`: it passes straight to the next waiter
        that may have it, so nobody can take it meanwhile."""
        self.used -= 1
        while self._waiting and self.used < self._limit(self._waiting[0].priority):
            self.used += 1
            heapq.heappop(self._waiting).granted.set()


class _Failure(Exception):
    """An attempt ended early; carries what attempt_failed needs."""

    def __init__(
        self, error: str, *, temporary: bool, count_attempt: bool = True, status: int | None = None, possibly_sent: bool = False
    ) -> None:
        super().__init__(error)
        self.error = error
        self.temporary = temporary
        self.count_attempt = count_attempt
        self.status = status
        #: The SMSC may have accepted the part without us hearing of it.
        self.possibly_sent = possibly_sent


class Outbox:
    """Sends the MTs queued in the store over the SMSC links of this node.

    Args:
        store: the store (its writer must be running).
        links: the SMSC links by name; read on every MT, so the application may replace
            entries on a configuration reload.
        node: this node's name, recorded in the claims (unique among nodes on one database).
        batch: the most MTs claimed at once.
        lease: seconds a claim holds; another node resumes an MT whose claim expired. Must
            comfortably exceed the time to send a batch at the links' rate caps.
        sweep_interval: seconds between looks at the outbox when nobody calls :meth:`wake`
            (MTs whose retry time came, MTs enqueued by other nodes).
        max_attempts: attempts after which a temporary failure is final.
        refs: concatenation references for long MTs (8-bit, random start, by default).
        clock: UTC wall-clock time, epoch seconds.
        max_in_flight: the most MTs being sent at once on this node; ``batch`` by default.
        backoff: retry delay as a function of attempts, or its base in seconds.
        screen: the last check of claimed MTs before they are sent (consent at submit
            time); read on every claim, so it may be replaced while running.
        reply_reserve: slots of ``max_in_flight`` that claims leave free for replies handed
            over by :meth:`take_claimed`, so that a reply never waits for a bulk MT to end;
            a tenth of them by default. A claim made for due replies may use them too.
    """

    def __init__(
        self,
        store: Store,
        links: Mapping[str, SmscLink],
        *,
        node: str,
        batch: int = 200,
        lease: float = 60.0,
        sweep_interval: float = 1.0,
        max_attempts: int = 5,
        refs: ConcatReferences | None = None,
        clock: Callable[[], float] = time.time,
        max_in_flight: int | None = None,
        backoff: Callable[[int], float] | float = 5.0,
        screen: Screen | None = None,
        reply_reserve: int | None = None,
    ) -> None:
        self.screen = screen
        self.store = store
        self.links = links
        self.node = node
        self.batch = max(1, batch)
        self.lease = lease
        self.sweep_interval = sweep_interval
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._refs = refs if refs is not None else ConcatReferences(8)
        self._clock = clock
        self._slots = trio.CapacityLimiter(max(1, max_in_flight if max_in_flight is not None else batch))
        total = int(self._slots.total_tokens)
        self._reserve = min(total - 1, max(0, reply_reserve if reply_reserve is not None else total // 10))
        # Free slots a claim that only refills (after a full one) waits for.
        self._refill_min = max(1, min(self.batch, total - self._reserve) // 4)
        # Slots per link object: a reload replaces the link and so gets fresh ones sized to
        # the new window; the old ones go with the old link.
        self._link_slots: weakref.WeakKeyDictionary[SmscLink, _LinkSlots] = weakref.WeakKeyDictionary()
        self._turn = itertools.count()
        self._wakeup = trio.Event()
        self._replies_due = False
        # Whether the store may hold due MTs: set by wake() and the sweep.
        self._look = True
        # Whether more MTs were due at the last claim (it was full): claim again once
        # _refill_min slots are free.
        self._refill = False
        # MTs enqueued already claimed by this node (take_claimed), waiting for a slot.
        self._handed: collections.deque[ClaimedMt] = collections.deque()
        # The nursery of the send tasks while running, and the slots the claim in progress
        # may fill once it returns (take_claimed must leave them free).
        self._nursery: trio.Nursery | None = None
        self._claim_room = 0
        self._stopping = False
        self._stopped = trio.Event()
        self._running = False
        # MTs this node is sending: a claim that expired while still in flight here must not
        # be started a second time by the next claim.
        self._in_flight: set[int] = set()
        # MTs whose send ended while a claim was in the writer: the claim may have taken the
        # row again in the same commit, just before the outcome was recorded.
        self._claiming = False
        self._ended_while_claiming: set[int] = set()
        #: MTs whose every part was accepted.
        self.submitted = 0
        #: MTs fully submitted since start, by campaign ("" for none).
        self.submitted_by_campaign: collections.Counter[str] = collections.Counter()
        #: MTs that failed for good.
        self.failed = 0
        #: Attempts that ended in a requeue.
        self.retried = 0
        #: Parts whose submit got no answer (timeout, lost connection): the SMSC may have them.
        self.possibly_duplicated = 0

    # -- API -----------------------------------------------------------------------------------

    async def enqueue(self, request: MtRequest) -> StoredMt:
        """Store an MT for sending and wake the sender.

        Raises:
            UnencodableError, ValueError: the text cannot be sent as asked (see enqueue_mt).
            StoreUnavailable: the store could not take it.
        """
        ref = self._refs.next(request.msisdn)
        mt = await self.store.write(functools.partial(enqueue_mt, request=request, now=self._clock(), concat_ref=ref))
        self.wake()
        return mt

    def wake(self) -> None:
        """Look at the outbox now instead of at the next sweep."""
        self._look = True
        self._wakeup.set()

    def claim_for_hand_off(self) -> tuple[str, float] | None:
        """The node and lease under which MTs may be enqueued already claimed for this outbox
        (:func:`profile_store.mt.enqueue_claimed`), or None while it is not sending."""
        return (self.node, self.lease) if self._running and not self._stopping else None

    def take_claimed(self, mts: Sequence[ClaimedMt]) -> None:
        """Send MTs enqueued already claimed by this node, as soon as slots allow: a reply
        decided in the store's last commit skips the claim that would otherwise follow."""
        nursery = self._nursery
        for mt in mts:
            if nursery is not None and not self._stopping and not self._handed and self._free_now() > 0:
                # Started here rather than by the claim loop: waking it first costs a turn of
                # the event loop, which a busy node makes longer than the send itself.
                if mt.id not in self._in_flight:
                    self._start(nursery, mt)
            else:
                self._handed.append(mt)
        self._wakeup.set()

    def _free_now(self) -> int:
        """Slots free for MTs that are not part of the claim in progress."""
        return int(self._slots.available_tokens) - self._claim_room

    def wake_for_replies(self) -> None:
        """Like :meth:`wake`, after replies a subscriber waits for were queued: the claim
        then goes into the store's next commit even if it must cut a batch of bulk work short."""
        self._replies_due = True
        self.wake()

    @property
    def in_flight(self) -> int:
        """MTs being sent right now."""
        return len(self._in_flight)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Claim and send until :meth:`stop`; then release this node's unfinished claims."""
        self._running = True
        try:
            # Claims still held under this node's name belong to a previous run of this node
            # that died (two live nodes never share a name): resume them now, not after the lease.
            try:
                resumed = await self.store.write(functools.partial(release_claims, node=self.node, now=self._clock()))
            except StoreError as exc:
                resumed = 0
                log.warning("mt_claim_failed", error=str(exc))
            if resumed:
                log.info("mt_claims_resumed", node=self.node, count=resumed)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                try:
                    await self._claim_loop(nursery)
                finally:
                    self._nursery = None
            # Every send task is done: whatever this node still holds goes back to the queue.
            released = await self.store.write(functools.partial(release_claims, node=self.node, now=self._clock()))
            if released:
                log.info("mt_claims_released", node=self.node, count=released)
        finally:
            self._running = False
            self._stopped.set()

    async def stop(self) -> None:
        """Stop claiming, let the MTs in flight finish, release the remaining claims."""
        self._stopping = True
        self.wake()
        if self._running:
            await self._stopped.wait()

    # -- claiming ------------------------------------------------------------------------------

    async def _claim_loop(self, nursery: trio.Nursery) -> None:
        while not self._stopping:
            self._wakeup = trio.Event()
            if not any(link.is_up for link in self.links.values()):
                # Nothing could go out (starting up, or every SMSC down): what a claim took now
                # would only go back to the queue for a backoff, and wait there after a bind.
                await self._until_a_link_is_up()
                self._look = True
                continue
            while self._handed and self._slots.available_tokens > 0:
                mt = self._handed.popleft()
                if mt.id not in self._in_flight:
                    self._start(nursery, mt)
            # A claim for due replies may fill the reserve; any other leaves it to take_claimed.
            free = min(self.batch, self._claimable(replies=self._replies_due))
            claimed: list[ClaimedMt] = []
            asked = free > 0 and (self._look or (self._refill and free >= self._refill_min))
            if asked:
                self._look = self._refill = False
                self._claiming = True
                self._claim_room = free
                # Claims always go ahead of bulk writes; only one for replies cuts a batch short.
                write = self.store.write_first if self._replies_due else self.store.write_ahead
                self._replies_due = False
                try:
                    claimed = await write(
                        functools.partial(
                            claim_due, node=self.node, now=self._clock(), limit=free, lease=self.lease, screen=self.screen
                        )
                    )
                except StoreError as exc:
                    log.warning("mt_claim_failed", error=str(exc))
                finally:
                    self._claiming = False
                    self._claim_room = 0
            if self._stopping:
                # stop() came while claiming: leave these to release_claims rather than start them.
                break
            ended, self._ended_while_claiming = self._ended_while_claiming, set()
            handed = {mt.id for mt in self._handed}
            for mt in claimed:
                if mt.id in self._in_flight or mt.id in ended or mt.id in handed:
                    # Our own lease ran out while we were still sending it (or before a
                    # slot came free for it): the send in progress (or just ended, or still
                    # to start) owns the outcome; starting it again would submit it twice.
                    continue
                # Cannot block: at most `free` MTs were claimed and only this loop takes slots.
                self._start(nursery, mt)
            if asked and len(claimed) == free:
                # A full batch: more may be due already.
                self._refill = True
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_after(self.sweep_interval) as sweep:
                await self._wakeup.wait()
            if sweep.cancelled_caught:
                self._look = True

    async def _until_a_link_is_up(self) -> None:
        """Wait until a link can submit, :meth:`wake` (or :meth:`stop`) is called, or the
        sweep interval has passed (a reload may have added links)."""
        async with trio.open_nursery() as nursery:

            async def then_stop(wait: Callable[[], Awaitable[object]]) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            for link in list(self.links.values()):
                for mode in _SUBMITTING:
                    nursery.start_soon(then_stop, functools.partial(link.wait_bound, mode))
            nursery.start_soon(then_stop, self._wakeup.wait)
            nursery.start_soon(then_stop, functools.partial(trio.sleep, self.sweep_interval))

    def _claimable(self, *, replies: bool) -> int:
        """Free slots a claim may fill: with ``replies`` false, the reserve is not among them."""
        return int(self._slots.available_tokens) - (0 if replies else self._reserve)

    def _start(self, nursery: trio.Nursery, mt: ClaimedMt) -> None:
        self._slots.acquire_on_behalf_of_nowait(mt.id)
        self._in_flight.add(mt.id)
        nursery.start_soon(self._send_task, mt)

    # -- sending -------------------------------------------------------------------------------

    async def _send_task(self, mt: ClaimedMt) -> None:
        holding = True

        def release_slot() -> None:
            nonlocal holding
            if holding:
                holding = False
                self._slots.release_on_behalf_of(mt.id)
                # A slot came free: for an MT handed over, for a look asked for, or to claim
                # again once enough are free if the last claim was cut short by the bound.
                if self._handed or self._look or (self._refill and self._claimable(replies=False) >= self._refill_min):
                    self._wakeup.set()

        try:
            await self._send(mt, release_slot)
        finally:
            self._in_flight.discard(mt.id)
            if self._claiming:
                self._ended_while_claiming.add(mt.id)
            release_slot()

    def _pick_link(self, mt: ClaimedMt) -> SmscLink | None:
        if mt.smsc is not None:
            link = self.links.get(mt.smsc)
            return link if link is not None and link.is_up else None
        candidates = [link for _, link in sorted(self.links.items()) if link.is_up and mt.source_addr in link.cfg.short_codes]
        if not candidates:
            return None
        return candidates[next(self._turn) % len(candidates)]

    def _link_limiter(self, link: SmscLink) -> _LinkSlots:
        slots = self._link_slots.get(link)
        if slots is None:
            slots = self._link_slots[link] = _LinkSlots(link.cfg.window)
        return slots

    async def _send(self, mt: ClaimedMt, release_slot: Callable[[], None]) -> None:
        link = self._pick_link(mt)
        try:
            if link is None:
                raise _Failure(NO_BIND, temporary=True, count_attempt=False)
            slots = self._link_limiter(link)
            await slots.acquire(mt.priority)
            try:
                last = await self._send_parts(mt, link)
            finally:
                slots.release()
            # The SMSC has answered the last part: its window slot, and this node's slot, serve
            # other MTs while the answer is stored (the MT stays in flight until then).
            release_slot()
            progress = await self._record_last(mt, link, last)
        except _Failure as failure:
            await self._record_failure(mt, failure, link)
        except StoreError as exc:
            # The outcome could not be recorded; the claim expires and the MT is resumed.
            log.error("mt_outcome_not_stored", mt_id=mt.id, error=str(exc))
        except Exception as exc:
            # A bug must cost one MT an attempt, not stop the outbox of the whole node.
            log.exception("mt_send_error", mt_id=mt.id)
            await self._record_failure(mt, _Failure(f"internal error: {type(exc).__name__}", temporary=True), link)
        else:
            if progress is not None and progress.done:
                self.submitted += 1
                self.submitted_by_campaign[mt.campaign or ""] += 1
                log.info(
                    "mt_submitted",
                    mt_id=mt.id,
                    smsc=link.cfg.name if link else None,
                    msisdn=mt.msisdn,
                    source_addr=mt.source_addr,
                    parts=mt.parts_total,
                    attempts=mt.attempts + 1,
                    status=progress.status,
                )

    async def _send_parts(self, mt: ClaimedMt, link: SmscLink) -> tuple[int, str] | None:
        """Submit every pending part in order, storing each accepted one before the next goes
        out but the last; the last one's index and message id (None: nothing was pending)."""
        try:
            parts = split_text(mt.text, reference=mt.concat_ref, method=ConcatMethod.UDH8, data_coding=mt.data_coding)
        except ValueError as exc:  # UnencodableError included: the stored text cannot be sent
            raise _Failure(f"cannot encode: {exc}", temporary=False) from None
        wanted = set(mt.pending_parts)
        pending = [part for part in parts if part.index in wanted]
        for number, part in enumerate(pending, 1):
            message_id = await self._submit_part(mt, link, part)
            if number == len(pending):
                return part.index, message_id
            await self._record_accepted(mt, part.index, link.cfg.name, message_id)
        return None

    async def _record_last(self, mt: ClaimedMt, link: SmscLink, last: tuple[int, str] | None) -> MtProgress:
        """Store the last part's acceptance; the MT's progress."""
        if last is None:
            # Nothing was pending (every part was accepted before a crash): settle the MT.
            return await self.store.write(functools.partial(settle_mt, mt_id=mt.id, now=self._clock()))
        index, message_id = last
        return await self._record_accepted(mt, index, link.cfg.name, message_id)

    async def _record_accepted(self, mt: ClaimedMt, index: int, smsc: str, message_id: str) -> MtProgress:
        """Store that the SMSC accepted a part, trying hard: failing here means sending it twice."""
        # A reply's outcome goes ahead of bulk work: its link slot is free again only then.
        write = self.store.write_first if mt.priority == 0 else self.store.write
        for attempt in range(ACCEPT_STORE_ATTEMPTS):
            try:
                return await write(
                    part_accepted,
                    mt_id=mt.id,
                    part_index=index,
                    smsc=smsc,
                    smsc_message_id=message_id,
                    submit_status=int(CommandStatus.ESME_ROK),
                    now=self._clock(),
                    recipient=mt.msisdn,
                    text=mt.text,
                )
            except StoreError as exc:
                if attempt + 1 == ACCEPT_STORE_ATTEMPTS:
                    raise
                log.warning("mt_outcome_store_retry", mt_id=mt.id, error=str(exc))
                await trio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _submit_part(self, mt: ClaimedMt, link: SmscLink, part: MessagePart) -> str:
        """Send one part; its normalised message id, or raise _Failure."""
        cfg = link.cfg
        pdu = SubmitSm(
            source_addr_ton=cfg.source_addr_ton,
            source_addr_npi=cfg.source_addr_npi,
            source_addr=mt.source_addr,
            dest_addr_ton=cfg.dest_addr_ton,
            dest_addr_npi=cfg.dest_addr_npi,
            destination_addr=mt.destination_addr,
            esm_class=part.esm_class,
            data_coding=part.data_coding,
            short_message=part.short_message,
            tlvs=part.tlvs,
            registered_delivery=1 if mt.registered_delivery else 0,
        )
        try:
            response = await link.submit(pdu, priority=mt.priority)
        except NoBind:
            raise _Failure(NO_BIND, temporary=True, count_attempt=False) from None
        except ResponseTimeout:
            self.possibly_duplicated += 1
            raise _Failure("response timeout", temporary=True, possibly_sent=True) from None
        except ConnectionGone:
            self.possibly_duplicated += 1
            raise _Failure("connection lost", temporary=True, possibly_sent=True) from None
        status = response.command_status
        if status == CommandStatus.ESME_ROK:
            return normalise_message_id(str(getattr(response, "message_id", "")), cfg.message_id_format, from_receipt=False)
        raise _Failure(describe_status(status), temporary=status in TEMPORARY_STATUSES, status=status)

    async def _record_failure(self, mt: ClaimedMt, failure: _Failure, link: SmscLink | None) -> None:
        try:
            progress = await self.store.write(
                functools.partial(
                    attempt_failed,
                    mt_id=mt.id,
                    error=failure.error,
                    temporary=failure.temporary,
                    now=self._clock(),
                    max_attempts=self.max_attempts,
                    backoff=self.backoff,
                    count_attempt=failure.count_attempt,
                    uncertain=failure.possibly_sent,
                )
            )
        except StoreError as exc:
            log.error("mt_outcome_not_stored", mt_id=mt.id, error=str(exc))
            return
        smsc = link.cfg.name if link else mt.smsc
        if progress.status == "failed":
            self.failed += 1
            log.warning("mt_failed", mt_id=mt.id, smsc=smsc, msisdn=mt.msisdn, status=failure.error, attempts=progress.attempts)
        elif progress.status == "queued":
            self.retried += 1
            log.info(
                "mt_retry_scheduled",
                mt_id=mt.id,
                smsc=smsc,
                status=failure.error,
                attempts=progress.attempts,
                retry_in=round(progress.next_attempt_at - self._clock(), 2),
            )
