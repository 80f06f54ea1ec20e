"""The Outbox against the simulator over in-memory streams, on SQLite and PostgreSQL stores.

The tests run on a mock clock that jumps ahead only after 20 ms of real idleness: the store
works on real threads, and a clock that jumped whenever the event loop waited for one would
race through leases and response timeouts while a commit is merely in progress.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from gatewayd.binds import SmscLink
from gatewayd.ingest import Ingest
from gatewayd.outbox import Outbox, _LinkSlots
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import CommandStatus
from profile_store.db import Store
from profile_store.mt import MtRequest, claim_due, enqueue_claimed, enqueue_mt, get_mt, get_parts, outbox_counts, part_accepted
from tests.gatewayd.conftest import memory_connector, smsc_config

T0 = 1_700_000_000.0
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 9  # 3 parts


@pytest.fixture
def settling_clock() -> trio.testing.MockClock:
    """A mock clock that skips idle time once nothing has happened for 20 ms of real time."""
    return trio.testing.MockClock(autojump_threshold=0.02)


def clock() -> float:
    """Wall-clock time that follows trio's (autojump) clock, so backoffs and leases elapse with it."""
    return T0 + trio.current_time()


async def start_link(simulator: SmscSimulator, nursery: trio.Nursery, **cfg: Any) -> SmscLink:
    """A bound link to the simulator, serving short code 4160."""
    config = smsc_config(**cfg)
    link = SmscLink(config, functools.partial(Ingest().handle, smsc=config.name), rng=lambda: 1.0, connect=memory_connector(simulator, nursery))
    await nursery.start(link.run)
    await link.wait_bound()
    return link


async def start_outbox(store: Store, links: dict[str, SmscLink], nursery: trio.Nursery, **kwargs: Any) -> Outbox:
    """A running Outbox with the trio-following clock and a lease longer than any test."""
    values: dict[str, Any] = dict(node="n1", clock=clock, lease=3600.0)
    values.update(kwargs)
    outbox = Outbox(store, links, **values)
    await nursery.start(outbox.run)
    return outbox


def mt(n: int, **overrides: Any) -> MtRequest:
    """An MT to subscriber ``n`` from short code 4160."""
    values: dict[str, Any] = dict(msisdn=f"+4477009{n:05d}", source_addr="4160", text=f"Thanks for voting, #{n}")
    values.update(overrides)
    return MtRequest(**values)


async def wait_counts(store: Store, expected: dict[str, int], timeout: float = 600.0) -> None:
    """Wait until the outbox holds exactly ``expected`` MTs by status."""
    with trio.fail_after(timeout):
        while (counts := await store.read(outbox_counts)) != expected:
            await trio.sleep(0.5)
    assert counts == expected


async def wait_sent(outbox: Outbox, timeout: float = 60.0) -> None:
    """Wait until the outbox has no MT in flight: the store shows an outcome's commit a moment
    before the outcome reaches its send task."""
    with trio.fail_after(timeout):
        while outbox.in_flight:
            await trio.sleep(0.5)


async def test_queued_mts_are_all_submitted(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """Fifty queued MTs are submitted once each, with the simulator's message ids stored against them."""
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery)
    ids = [(await outbox.enqueue(mt(n, campaign="final-vote" if n % 5 else None))).id for n in range(50)]
    await wait_counts(store, {"submitted": 50})
    assert simulator.stats["submits_accepted"] == 50 and outbox.submitted == 50
    assert outbox.submitted_by_campaign == {"final-vote": 40, "": 10}
    stored_ids = set()
    for mt_id in ids:
        (part,) = await store.read(get_parts, mt_id)
        assert part.status == "accepted" and part.smsc == "op"
        stored_ids.add(part.smsc_message_id)
    # The simulator numbers its ids 00000001, 00000002, ... in hex.
    assert stored_ids == {f"{n:08x}" for n in range(1, 51)}
    pdu = simulator.submitted[0]
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.dest_addr_ton, pdu.dest_addr_npi) == ("4160", 0, 1, 1)
    assert pdu.destination_addr.startswith("4477009") and pdu.registered_delivery == 1
    await wait_sent(outbox)


async def test_long_mt_goes_out_in_parts_with_one_reference(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """A long MT is submitted as its parts, in order, all carrying the MT's concatenation reference."""
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery)
    stored = await outbox.enqueue(mt(1, text=LONG_TEXT))
    await wait_counts(store, {"submitted": 1})
    udhs = [pdu.short_message[:6] for pdu in simulator.submitted]
    ref = stored.concat_ref & 0xFF
    assert udhs == [bytes((5, 0, 3, ref, 3, index)) for index in (1, 2, 3)]
    assert all(pdu.esm_class & 0x40 for pdu in simulator.submitted)
    parts = await store.read(get_parts, stored.id)
    assert [p.status for p in parts] == ["accepted"] * 3 and len({p.smsc_message_id for p in parts}) == 3


async def test_throttling_still_ends_submitted(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """MTs answered with ESME_RTHROTTLED are paced and retried by the link and end submitted."""
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery)
    simulator.faults.throttle_next = 3
    for n in range(5):
        await outbox.enqueue(mt(n))
    await wait_counts(store, {"submitted": 5})
    assert simulator.stats["submits_throttled"] == 3 and simulator.stats["submits_accepted"] == 5


async def test_throttled_beyond_the_links_patience_is_retried_later(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """An MT still throttled after the link's own retries is requeued with a backoff and sent later."""
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery)
    simulator.faults.throttle_next = 6  # the link tries 6 times before giving the status back
    stored = await outbox.enqueue(mt(1))
    await wait_counts(store, {"submitted": 1})
    assert outbox.retried == 1
    assert (await store.read(get_mt, stored.id)).attempts == 1  # type: ignore[union-attr]


async def test_permanent_reject_fails_with_the_status(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """An MT rejected with ESME_RINVDSTADR fails at once, recording and logging that status."""
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery)
    simulator.faults.reject_status = CommandStatus.ESME_RINVDSTADR
    with structlog.testing.capture_logs() as logs:
        stored = await outbox.enqueue(mt(1))
        await wait_counts(store, {"failed": 1})
    row = await store.read(get_mt, stored.id)
    assert row is not None and row.last_error == "ESME_RINVDSTADR" and row.attempts == 1
    assert [p.status for p in await store.read(get_parts, stored.id)] == ["failed"]
    failed = [e for e in logs if e["event"] == "mt_failed"]
    assert failed and failed[0]["status"] == "ESME_RINVDSTADR" and outbox.failed == 1


async def test_reply_overtakes_queued_bulk(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """A reply enqueued after 100 bulk MTs is submitted before most of them."""
    link = await start_link(simulator, nursery, window=5)
    outbox = Outbox(store, {"op": link}, node="n1", clock=clock, lease=3600.0, batch=10)
    for n in range(100):
        await outbox.enqueue(mt(n, priority=10))
    await outbox.enqueue(mt(999, priority=0, text="Your reply"))
    await nursery.start(outbox.run)
    await wait_counts(store, {"submitted": 101})
    order = [pdu.destination_addr for pdu in simulator.submitted]
    assert order.index("447700900999") < 10


async def test_a_reply_finds_a_slot_while_bulk_fills_the_window(
    store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object
) -> None:
    """Bulk MTs hold at most nine tenths of a link's window: while every bulk submit waits
    5 s for its response, a reply is still submitted at once, not after the first of them."""
    answered: list[tuple[float, str]] = []
    simulator.on_submit = lambda pdu: answered.append((trio.current_time(), pdu.destination_addr))
    link = await start_link(simulator, nursery, window=10)
    simulator.faults.response_delay = 5.0
    outbox = await start_outbox(store, {"op": link}, nursery)
    for n in range(30):
        await outbox.enqueue(mt(n, priority=10))
    await trio.sleep(1.0)
    sent = trio.current_time()
    await outbox.enqueue(mt(999, priority=0, text="Your reply"))
    await wait_counts(store, {"submitted": 31})
    reply_at = next(at for at, number in answered if number == "447700900999")
    assert reply_at - sent < 5.5
    assert [number for _, number in answered].index("447700900999") == 9


async def test_link_slots_keep_a_tenth_for_replies() -> None:
    """Of ten slots bulk holds nine; a reply takes the tenth at once; a freed slot goes to a
    waiting bulk MT only while bulk holds fewer than nine."""
    slots = _LinkSlots(10)
    held: dict[str, trio.Event] = {}
    granted: list[str] = []

    async def hold(name: str, priority: int) -> None:
        done = held[name] = trio.Event()
        await slots.acquire(priority)
        try:
            granted.append(name)
            await done.wait()
        finally:
            slots.release()

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(hold, f"bulk{n}", 10)
        await trio.testing.wait_all_tasks_blocked()
        assert (slots.used, len(granted)) == (9, 9)
        (waiting,) = {f"bulk{n}" for n in range(10)} - set(granted)
        nursery.start_soon(hold, "reply", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert (slots.used, granted[-1]) == (10, "reply")
        held["reply"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert (slots.used, waiting in granted) == (9, False)
        held[granted[0]].set()
        await trio.testing.wait_all_tasks_blocked()
        assert (slots.used, granted[-1]) == (9, waiting)
        for done in held.values():
            done.set()
    assert slots.used == 0


async def test_only_a_claim_for_replies_may_cut_the_stores_batch_short(
    store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims always go ahead of bulk writes; the one after replies were queued goes as
    write_first (it may cut a running batch short), the others as write_ahead."""
    lanes: list[str] = []
    for lane in ("write_first", "write_ahead"):

        def recording(fn: Any, *args: Any, _lane: str = lane, _write: Any = getattr(store, lane), **kwargs: Any) -> Any:
            if getattr(fn, "func", fn) is claim_due:
                lanes.append(_lane)
            return _write(fn, *args, **kwargs)

        monkeypatch.setattr(store, lane, recording)
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery, sweep_interval=3600.0)
    await outbox.enqueue(mt(1))
    await wait_counts(store, {"submitted": 1})
    assert set(lanes) == {"write_ahead"}
    lanes.clear()
    await store.write(functools.partial(enqueue_mt, request=mt(2, priority=0), now=T0, concat_ref=1))
    outbox.wake_for_replies()
    await wait_counts(store, {"submitted": 2})
    await outbox.stop()
    assert lanes[0] == "write_first" and set(lanes[1:]) <= {"write_ahead"}


async def test_a_reply_handed_over_claimed_is_sent_without_a_claim(
    store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MT enqueued already claimed by this node and handed over goes out at once, with no
    claim of the outbox in between; a claim that later sees its row does not send it again."""
    claims: list[int] = []
    claim_ahead = store.write_ahead

    def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "func", fn) is claim_due:
            claims.append(1)
        return claim_ahead(fn, *args, **kwargs)

    monkeypatch.setattr(store, "write_ahead", counting)
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery, sweep_interval=3600.0)
    await wait_counts(store, {})
    node, lease = outbox.claim_for_hand_off() or ("", 0.0)
    assert node == "n1"
    before = len(claims)
    claimed = await store.write(functools.partial(enqueue_claimed, request=mt(1, priority=0), now=clock(), concat_ref=1, node=node, lease=lease))
    outbox.take_claimed([claimed])
    assert outbox.in_flight == 1  # started by the call itself, not at the claim loop's next turn
    await wait_counts(store, {"submitted": 1})
    assert len(claims) == before and simulator.stats["submits_accepted"] == 1
    outbox.wake()
    await outbox.stop()
    assert await store.read(outbox_counts) == {"submitted": 1}
    assert simulator.stats["submits_accepted"] == 1


async def test_claims_leave_the_reply_reserve_free_so_a_reply_never_waits_for_bulk(
    store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 bulk MTs behind a cap of 10/s, 20 at a time with 4 kept for replies: no claim
    asks for more than 16, and a reply handed over while they wait starts at once and is
    submitted ahead of them."""
    limits: list[int] = []
    claim_ahead = store.write_ahead

    async def watching(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "func", fn) is claim_due:
            limits.append(fn.keywords["limit"])
        return await claim_ahead(fn, *args, **kwargs)

    monkeypatch.setattr(store, "write_ahead", watching)
    for n in range(100):
        await store.write(functools.partial(enqueue_mt, request=mt(n, priority=10), now=T0, concat_ref=1))
    link = await start_link(simulator, nursery, max_mt_per_second=10.0, window=10)
    outbox = await start_outbox(store, {"op": link}, nursery, batch=20, sweep_interval=3600.0, reply_reserve=4)
    with trio.fail_after(60):
        while outbox.in_flight < 16:
            await trio.sleep(0.01)
    sent_before = simulator.stats["submits_accepted"]
    node, lease = outbox.claim_for_hand_off() or ("", 0.0)
    reply = await store.write(functools.partial(enqueue_claimed, request=mt(999, priority=0), now=clock(), concat_ref=1, node=node, lease=lease))
    before = outbox.in_flight
    outbox.take_claimed([reply])
    assert outbox.in_flight == before + 1  # started by the call itself: a reserved slot was free
    with trio.fail_after(60):
        while (await store.read(get_mt, reply.id)).status != "submitted":  # type: ignore[union-attr]
            await trio.sleep(0.05)
    # Bulk MTs already waiting for the cap went on leaving at 10/s: the reply overtook all but one.
    assert simulator.stats["submits_accepted"] - sent_before <= 2
    await wait_counts(store, {"submitted": 101})
    assert limits and max(limits) == 16, limits
    assert simulator.stats["submits_accepted"] == 101


async def test_a_reply_handed_over_during_a_claim_leaves_the_claims_slots_free(
    store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one slot and a claim in progress, a reply handed over waits for the slot instead
    of taking the one the claim's MT will need; both are then sent."""
    gate, claiming = trio.Event(), trio.Event()

    def gated(write: Any) -> Any:
        async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(fn, "func", fn) is claim_due and not gate.is_set():
                claiming.set()
                await gate.wait()
            return await write(fn, *args, **kwargs)

        return run

    for lane in ("write_first", "write_ahead"):
        monkeypatch.setattr(store, lane, gated(getattr(store, lane)))
    link = await start_link(simulator, nursery)
    outbox = await start_outbox(store, {"op": link}, nursery, batch=1, sweep_interval=3600.0)
    await outbox.enqueue(mt(1))
    await claiming.wait()
    node, lease = outbox.claim_for_hand_off() or ("", 0.0)
    reply = await store.write(functools.partial(enqueue_claimed, request=mt(2, priority=0), now=clock(), concat_ref=1, node=node, lease=lease))
    outbox.take_claimed([reply])
    assert outbox.in_flight == 0
    gate.set()
    await wait_counts(store, {"submitted": 2})
    assert simulator.stats["submits_accepted"] == 2


async def test_the_next_mt_goes_out_while_the_last_answer_is_stored(
    store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a window of one and one MT at a time, the second MT is submitted as soon as the
    SMSC answered the first, while the first's acceptance still waits for the store; both
    then end submitted, each with its own message id."""
    gate, storing = trio.Event(), trio.Event()
    write = store.write

    async def held(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn is part_accepted and kwargs["mt_id"] == first.id and not gate.is_set():
            storing.set()
            await gate.wait()
        return await write(fn, *args, **kwargs)

    monkeypatch.setattr(store, "write", held)
    link = await start_link(simulator, nursery, window=1)
    outbox = await start_outbox(store, {"op": link}, nursery, batch=1)
    first = await outbox.enqueue(mt(1, priority=10))
    await outbox.enqueue(mt(2, priority=10))
    await storing.wait()
    with trio.fail_after(60):
        while simulator.stats["submits_accepted"] < 2:
            await trio.sleep(0.5)
    assert outbox.in_flight == 1 and (await store.read(get_mt, first.id)).status == "sending"  # type: ignore[union-attr]
    gate.set()
    await wait_counts(store, {"submitted": 2})
    await wait_sent(outbox)


async def test_a_long_queue_is_claimed_in_quarters_of_the_bound_not_per_freed_slot(
    store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 bulk MTs behind a rate cap, 40 at a time: once the first claim is full, the next
    waits until 10 slots are free, so the queue drains in about 20 claims, not one per MT;
    each MT is still sent once."""
    claims: list[int] = []
    claim_ahead = store.write_ahead

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        claimed = await claim_ahead(fn, *args, **kwargs)
        if getattr(fn, "func", fn) is claim_due:
            claims.append(len(claimed))
        return claimed

    monkeypatch.setattr(store, "write_ahead", counting)
    for n in range(200):
        await store.write(functools.partial(enqueue_mt, request=mt(n, priority=10), now=T0, concat_ref=1))
    link = await start_link(simulator, nursery, max_mt_per_second=50.0, window=10)
    await start_outbox(store, {"op": link}, nursery, batch=40, sweep_interval=3600.0, reply_reserve=0)
    await wait_counts(store, {"submitted": 200})
    assert simulator.stats["submits_accepted"] == 200
    taken = [n for n in claims if n]
    assert sum(taken) == 200 and taken[0] == 40
    assert all(n >= 10 for n in taken[1:-1]), taken
    assert len(taken) <= 1 + 160 // 10 + 1, taken


async def test_nothing_is_claimed_while_no_link_can_submit(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """With no link bound, a claim could only put MTs back for a backoff: the outbox claims
    nothing, and the queued MT goes out as soon as a link is bound, no attempt used."""
    links: dict[str, SmscLink] = {}
    outbox = await start_outbox(store, links, nursery, max_attempts=2, sweep_interval=5.0)
    stored = await outbox.enqueue(mt(1))
    # In short sleeps (see the next test): a minute of sweeps finding no link.
    for _ in range(60):
        await trio.sleep(1)
    row = await store.read(get_mt, stored.id)
    assert row is not None and (row.status, row.attempts, row.last_error, row.claimed_by) == ("queued", 0, None, None)
    assert outbox.retried == 0
    links["op"] = await start_link(simulator, nursery)
    await wait_counts(store, {"submitted": 1})
    row = await store.read(get_mt, stored.id)
    assert row is not None and row.attempts == 0 and outbox.retried == 0


async def test_no_bind_for_the_short_code_requeues_without_using_attempts(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """With no link serving the MT's short code (while another is up), the MT waits in the
    queue without failing, and goes once a link serves it."""
    links = {"other": await start_link(simulator, nursery, name="other", short_codes=("5050",))}
    outbox = await start_outbox(store, links, nursery, max_attempts=2)
    stored = await outbox.enqueue(mt(1))
    # In short sleeps: the mock clock jumps to the next deadline whenever the store's thread
    # keeps every task waiting for 20 ms of real time, and one long sleep would be jumped to.
    with trio.fail_after(600):
        while outbox.retried < 3:
            await trio.sleep(1)
    row = await store.read(get_mt, stored.id)
    assert row is not None and row.status in ("queued", "sending") and row.attempts == 0 and row.last_error == "no bind"
    assert outbox.retried > 1 and outbox.failed == 0
    links["op"] = await start_link(simulator, nursery)
    await wait_counts(store, {"submitted": 1})


async def test_response_timeout_counts_a_possible_duplicate(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """A submit that times out is retried later and counted as possibly duplicated."""
    link = await start_link(simulator, nursery, response_timeout=5.0)
    outbox = await start_outbox(store, {"op": link}, nursery)
    simulator.faults.withhold_responses = True
    stored = await outbox.enqueue(mt(1))
    with trio.fail_after(60):
        while outbox.retried == 0:
            await trio.sleep(0.5)
    simulator.faults.withhold_responses = False
    await wait_counts(store, {"submitted": 1})
    assert outbox.possibly_duplicated == 1
    assert (await store.read(get_mt, stored.id)).attempts == 1  # type: ignore[union-attr]


async def test_restart_sends_what_a_stopped_outbox_left(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """After an Outbox is stopped with MTs still queued, a new Outbox on the same store sends them."""
    link = await start_link(simulator, nursery, window=2)
    simulator.faults.response_delay = 1.0
    first = await start_outbox(store, {"op": link}, nursery, node="n1", batch=4)
    for n in range(20):
        await first.enqueue(mt(n))
    with trio.fail_after(60):
        while first.submitted < 2:
            await trio.sleep(0.1)
    await first.stop()
    counts = await store.read(outbox_counts)
    assert "sending" not in counts and counts.get("queued", 0) > 0
    second = await start_outbox(store, {"op": link}, nursery, node="n2")
    await wait_counts(store, {"submitted": 20})
    assert first.submitted + second.submitted == 20
    assert simulator.stats["submits_accepted"] == 20


async def test_crashed_outbox_is_resumed_after_its_lease(store: Store, simulator: SmscSimulator, nursery: trio.Nursery, settling_clock: object) -> None:
    """MTs claimed by an outbox that died mid-send are resumed by another node once the lease expires."""
    link = await start_link(simulator, nursery, window=2)
    simulator.faults.response_delay = 1.0
    with trio.CancelScope() as crash:
        async with trio.open_nursery() as doomed:
            first = await start_outbox(store, {"op": link}, doomed, node="n1", lease=30.0)
            for n in range(10):
                await first.enqueue(mt(n))
            while first.submitted < 2:
                await trio.sleep(0.1)
            crash.cancel()
    assert (await store.read(outbox_counts)).get("sending", 0) > 0
    second = await start_outbox(store, {"op": link}, nursery, node="n2", lease=30.0)
    await wait_counts(store, {"submitted": 10})
    assert second.submitted > 0
