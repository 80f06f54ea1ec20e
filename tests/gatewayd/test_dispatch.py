"""The dispatcher: every stored MO processed exactly once, its replies in the same transaction."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import sqlalchemy as sa
import trio

from gatewayd.config import StoreConfig
from gatewayd.dispatch import Decision, Dispatcher, MoProcessor, Processed, process_mos
from gatewayd.ingest import InboundMessage, StoreAccept
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import CommandStatus
from profile_store.db import Store
from profile_store.mo import MoPartIn, store_mo_part
from profile_store.mt import ClaimedMt, MtRequest
from profile_store.values import StoredMo


def _part(i: int, text: str = "VOTE A") -> MoPartIn:
    return MoPartIn(
        smsc="op", source_addr=f"3069{i:08d}", source_addr_ton=1, short_code="4160", esm_class=0, data_coding=0,
        payload=text.encode(), text=text, concat=None, sar=None, received_at=time.time(),
    )


async def _stored(store: Store, count: int) -> list[StoredMo]:
    mos = []
    for i in range(count):
        stored = await store.write(store_mo_part, _part(i), time.time())
        assert stored.mo is not None
        mos.append(stored.mo)
    return mos


def _reply(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
    return Decision(route="test", replies=(MtRequest(msisdn=mo.msisdn, source_addr=mo.short_code, text="Thanks", priority=0, in_reply_to=mo.id),))


def _statuses(conn: sa.Connection) -> list[tuple[str, str | None]]:
    return [tuple(r) for r in conn.execute(sa.text("SELECT status, route FROM mo_messages ORDER BY id"))]  # type: ignore[misc]


def _count(table: str) -> object:
    return lambda conn: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


async def _settle(store: Store, dispatcher: Dispatcher, processed: int) -> None:
    with trio.fail_after(10):
        while dispatcher.processed + dispatcher.failed < processed:
            await trio.sleep(0.01)


async def test_mos_left_stored_are_processed_at_start(nursery: trio.Nursery, store: Store) -> None:
    """MOs a previous run stored but never processed are found by the first sweep and processed."""
    await _stored(store, 5)
    woken = []
    dispatcher = Dispatcher(store, _reply, on_enqueued=lambda: woken.append(1))
    await nursery.start(dispatcher.run)
    await _settle(store, dispatcher, 5)
    assert await store.read(_statuses) == [("processed", "test")] * 5
    assert await store.read(_count("mt_messages")) == 5
    assert woken


async def test_an_mo_handed_over_twice_is_processed_once(nursery: trio.Nursery, store: Store) -> None:
    """Submitting the same MO twice (ingest and sweep) gives one reply."""
    (mo,) = await _stored(store, 1)
    dispatcher = Dispatcher(store, _reply, sweep_interval=3600)
    dispatcher.submit(mo)
    dispatcher.submit(mo)
    await nursery.start(dispatcher.run)
    await _settle(store, dispatcher, 1)
    await trio.sleep(0.2)
    assert dispatcher.processed == 1
    assert await store.read(_count("mt_messages")) == 1


async def test_a_raising_processor_marks_the_mo_failed_without_replies(nursery: trio.Nursery, store: Store) -> None:
    """When the processor raises, its writes roll back, the MO is marked failed and is not retried."""

    def explode(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        raise RuntimeError("bug in a campaign module")

    await _stored(store, 1)
    dispatcher = Dispatcher(store, explode, sweep_interval=0.05)
    await nursery.start(dispatcher.run)
    await _settle(store, dispatcher, 1)
    await trio.sleep(0.3)
    assert dispatcher.failed == 1
    assert await store.read(_statuses) == [("failed", None)]
    assert await store.read(_count("mt_messages")) == 0


def _insert_subscriber(conn: sa.Connection, number: str) -> None:
    conn.execute(sa.text("INSERT INTO subscribers (msisdn, created_at, last_seen_at) VALUES (:n, 0, 0)"), {"n": number})


async def test_an_apply_that_raises_undoes_its_writes_and_fails_only_its_mo(nursery: trio.Nursery, store: Store) -> None:
    """A decision whose apply writes then raises leaves no trace and fails its MO; the batch's other MOs go on."""
    mos = await _stored(store, 3)
    poison = mos[1].id

    def decide(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        def apply(conn: sa.Connection, now: float) -> list[MtRequest]:
            _insert_subscriber(conn, f"+1555000{mo.id:04d}")
            if mo.id == poison:
                raise KeyError("template value")
            return [MtRequest(msisdn=mo.msisdn, source_addr=mo.short_code, text="applied", priority=0, in_reply_to=mo.id)]

        return Decision(route="applied", apply=apply)

    dispatcher = Dispatcher(store, decide, sweep_interval=3600)
    for mo in mos:
        dispatcher.submit(mo)
    await nursery.start(dispatcher.run)
    await _settle(store, dispatcher, 3)
    assert await store.read(_statuses) == [("processed", "applied"), ("failed", None), ("processed", "applied")]
    numbers = await store.read(lambda conn: conn.execute(sa.text("SELECT msisdn FROM subscribers WHERE msisdn LIKE '+1555%'")).scalars().all())
    assert sorted(numbers) == sorted(f"+1555000{mo.id:04d}" for mo in mos if mo.id != poison)
    assert await store.read(_count("mt_messages")) == 2


async def test_a_decision_breaking_a_constraint_fails_its_mo_alone(nursery: trio.Nursery, store: Store) -> None:
    """A non-transient database error in one MO's apply sinks the batch once; each MO is then retried alone."""
    mos = await _stored(store, 3)
    poison = mos[0].id

    def decide(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        def apply(conn: sa.Connection, now: float) -> list[MtRequest]:
            if mo.id == poison:
                _insert_subscriber(conn, mo.msisdn)  # already there: a unique violation
            return []

        return Decision(route="applied", apply=apply)

    dispatcher = Dispatcher(store, decide, sweep_interval=3600)
    for mo in mos:
        dispatcher.submit(mo)
    await nursery.start(dispatcher.run)
    await _settle(store, dispatcher, 3)
    assert await store.read(_statuses) == [("failed", None), ("processed", "applied"), ("processed", "applied")]
    error = await store.read(lambda conn: conn.execute(sa.text("SELECT error FROM mo_messages WHERE id = :i"), {"i": poison}).scalar_one())
    assert "IntegrityError" in error


async def test_prepare_sees_each_batch_of_claimed_mos_once(nursery: trio.Nursery, store: Store) -> None:
    """A processor's prepare hook gets the MOs it is about to decide, before the first decision."""
    mos = await _stored(store, 4)
    seen: list[list[int]] = []
    decided: list[int] = []

    class Processor:
        def prepare(self, conn: sa.Connection, batch: list[StoredMo], now: float) -> None:
            assert not decided or decided[-1] in seen[-1]
            seen.append([mo.id for mo in batch])

        def __call__(self, conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
            assert mo.id in seen[-1]
            decided.append(mo.id)
            return Decision(route="prepared")

    dispatcher = Dispatcher(store, Processor(), sweep_interval=3600, workers=1)
    for mo in mos:
        dispatcher.submit(mo)
    await nursery.start(dispatcher.run)
    await _settle(store, dispatcher, 4)
    assert sorted(i for batch in seen for i in batch) == [mo.id for mo in mos]
    assert sorted(decided) == [mo.id for mo in mos]


async def test_replies_are_handed_over_already_claimed_except_for_a_repeated_sender(nursery: trio.Nursery, store: Store) -> None:
    """With a sender taking claimed replies, each reply is enqueued claimed by its node (it
    skips a claim) and handed over after the commit; the replies to a subscriber with a
    second MO in the batch (a STOP, perhaps) are left queued for the claim-time screen."""
    mos = await _stored(store, 3)
    again = await store.write(store_mo_part, _part(0, "STOP"), time.time())
    assert again.mo is not None
    handed: list[ClaimedMt] = []
    woken: list[int] = []
    dispatcher = Dispatcher(
        store,
        _reply,
        sweep_interval=3600,
        workers=1,
        claim_for=lambda: ("node-a", 60.0),
        take_claimed=handed.extend,
        on_enqueued=lambda: woken.append(1),
    )
    for mo in [*mos, again.mo]:
        dispatcher.submit(mo)
    await nursery.start(dispatcher.run)
    await _settle(store, dispatcher, 4)
    assert sorted(mt.msisdn for mt in handed) == [mos[1].msisdn, mos[2].msisdn]
    assert all(mt.pending_parts == (1,) and mt.priority == 0 for mt in handed)
    rows = await store.read(lambda conn: conn.execute(sa.text("SELECT id, status, claimed_by FROM mt_messages ORDER BY id")).all())
    by_id = {int(i): (status, node) for i, status, node in rows}
    assert {by_id[mt.id] for mt in handed} == {("sending", "node-a")}
    assert sorted(v for i, v in by_id.items() if i not in {mt.id for mt in handed}) == [("queued", None)] * 2
    assert woken


async def test_each_mo_of_a_batch_gets_the_ids_of_its_own_replies(store: Store) -> None:
    """The replies of a batch's MOs are inserted together after the last is decided: each MO's
    outcome still names its own replies (none, one or two), claimed or queued as decided."""
    mos = await _stored(store, 4)
    again = await store.write(store_mo_part, _part(3, "VOTE B"), time.time())
    assert again.mo is not None
    batch = [*mos, again.mo]

    def decide(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        count = batch.index(mo) % 3
        texts = [f"reply {n} to {mo.id}" for n in range(count)]
        return Decision(route="r", replies=tuple(MtRequest(msisdn=mo.msisdn, source_addr="4160", text=t, in_reply_to=mo.id) for t in texts))

    outcomes = await store.write(process_mos, batch, time.time(), decide, lambda number: 1, ("node-a", 60.0))
    rows = await store.read(lambda conn: conn.execute(sa.text("SELECT id, in_reply_to, text, status FROM mt_messages")).all())
    by_id = {int(i): (int(mo_id), text, status) for i, mo_id, text, status in rows}
    assert len(by_id) == sum(batch.index(mo) % 3 for mo in batch)
    for mo, outcome in zip(batch, outcomes, strict=True):
        assert isinstance(outcome, Processed) and outcome.mo_id == mo.id
        count = batch.index(mo) % 3
        assert [by_id[i][:2] for i in outcome.mt_ids] == [(mo.id, f"reply {n} to {mo.id}") for n in range(count)]
        # The subscriber with two MOs in the batch gets queued replies, for the claim-time screen.
        repeated = mo.subscriber_id == again.mo.subscriber_id
        assert {by_id[i][2] for i in outcome.mt_ids} <= ({"queued"} if repeated else {"sending"})
        assert [mt.id for mt in outcome.claimed] == ([] if repeated else list(outcome.mt_ids))


class _Batches:
    """A processor recording the MOs of each unit; the first unit waits for ``release``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def prepare(self, conn: sa.Connection, batch: list[StoredMo], now: float) -> None:
        self.batches.append([mo.id for mo in batch])
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)

    def __call__(self, conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        return Decision(route="batched")


async def test_mos_handed_over_together_form_one_unit_whatever_the_workers(nursery: trio.Nursery, store: Store) -> None:
    """Every unit costs the same statements: MOs handed over at once are not dealt out one per worker."""
    mos = await _stored(store, 5)
    processor = _Batches()
    processor.entered.set()
    processor.release.set()
    dispatcher = Dispatcher(store, processor, sweep_interval=3600, workers=8)
    await nursery.start(dispatcher.run)
    for mo in mos:
        dispatcher.submit(mo)
    await _settle(store, dispatcher, 5)
    assert processor.batches == [[mo.id for mo in mos]]


async def test_mos_arriving_while_every_worker_waits_join_the_next_unit(nursery: trio.Nursery, store: Store) -> None:
    """With its worker busy, MOs handed over one at a time wait and then go as one unit."""
    mos = await _stored(store, 6)
    processor = _Batches()
    dispatcher = Dispatcher(store, processor, sweep_interval=3600, workers=1)
    await nursery.start(dispatcher.run)
    dispatcher.submit(mos[0])
    await trio.to_thread.run_sync(processor.entered.wait, 10)
    for mo in mos[1:]:
        dispatcher.submit(mo)
        await trio.sleep(0)
    processor.release.set()
    await _settle(store, dispatcher, 6)
    assert processor.batches == [[mos[0].id], [mo.id for mo in mos[1:]]]


# --- deciding as the MO is stored -------------------------------------------------------------


def _inbound(i: int, text: str = "VOTE A") -> InboundMessage:
    (pdu,) = SmscSimulator().mo_pdus(f"3069{i:08d}", "4160", text)
    return InboundMessage.from_pdu(pdu, smsc="op", now=dt.datetime.now(dt.timezone.utc))  # type: ignore[arg-type]


async def _deciding(nursery: trio.Nursery, store: Store, processor: MoProcessor, **kwargs: Any) -> tuple[Dispatcher, StoreAccept, list[StoredMo], list[ClaimedMt]]:
    """A running dispatcher that decides on store, the accept hook using it, and what each hands over."""
    handed: list[StoredMo] = []
    claimed: list[ClaimedMt] = []
    dispatcher = Dispatcher(store, processor, claim_for=lambda: ("n1", 60.0), take_claimed=claimed.extend, sweep_interval=3600, **kwargs)
    dispatcher.decide_on_store = True
    await nursery.start(dispatcher.run)

    def submit(mo: StoredMo) -> None:
        handed.append(mo)
        dispatcher.submit(mo)

    return dispatcher, StoreAccept(store, settings=StoreConfig(url="sqlite://"), on_mo=submit, dispatcher=dispatcher), handed, claimed


async def test_an_mo_stored_while_the_dispatcher_is_idle_is_decided_in_the_same_commit(nursery: trio.Nursery, store: Store) -> None:
    """With nothing else to do, the dispatcher lets the unit that stores the MO decide about it:
    by the acknowledgement the MO is processed and its reply enqueued, claimed and handed to
    the outbox, in one commit; nothing is handed over for a second unit."""
    dispatcher, accept, handed, claimed = await _deciding(nursery, store, _reply)
    commits = store.commits
    assert await accept(_inbound(1)) == CommandStatus.ESME_ROK
    assert store.commits == commits + 1
    assert await store.read(_statuses) == [("processed", "test")]
    assert handed == [] and dispatcher.processed == 1
    assert [mt.msisdn for mt in claimed] == ["+306900000001"] and claimed[0].text == "Thanks"
    # A redelivery of the same part is acknowledged and decided about no more.
    assert await accept(_inbound(1)) == CommandStatus.ESME_ROK
    assert dispatcher.processed == 1 and await store.read(_count("mt_messages")) == 1


async def test_deciding_on_store_is_offered_up_to_the_limit_at_once(nursery: trio.Nursery, store: Store) -> None:
    """inline_limit MOs may be stored and decided about at once: the next is left to the
    dispatcher until one of them is done."""
    dispatcher, _, _, _ = await _deciding(nursery, store, _reply, inline_limit=2)
    first, second = dispatcher.deciding_on_store(), dispatcher.deciding_on_store()
    assert first is not None and second is not None and first[0] is _reply
    assert dispatcher.deciding_on_store() is None
    dispatcher.stored_and_decided()
    assert dispatcher.deciding_on_store() is not None
    assert dispatcher.deciding_on_store() is None


async def test_mos_are_handed_over_when_the_dispatcher_may_not_decide_on_store(nursery: trio.Nursery, store: Store) -> None:
    """Not told to, or with its limit of MOs decided on store reached, the dispatcher has
    the MO stored alone and handed over; it is processed in a unit of its own."""
    dispatcher, accept, handed, _ = await _deciding(nursery, store, _reply, inline_limit=0)
    assert await accept(_inbound(1)) == CommandStatus.ESME_ROK
    assert [mo.id for mo in handed] == [1]
    dispatcher.inline_limit, dispatcher.decide_on_store = 4, False
    assert await accept(_inbound(2)) == CommandStatus.ESME_ROK
    assert [mo.id for mo in handed] == [1, 2]
    await _settle(store, dispatcher, 2)
    assert await store.read(_statuses) == [("processed", "test")] * 2


async def test_a_decision_breaking_a_constraint_on_store_leaves_the_mo_stored_for_the_dispatcher(nursery: trio.Nursery, store: Store) -> None:
    """A database error while deciding undoes only the decision: the MO is stored and
    acknowledged, handed over, and the dispatcher then marks it failed."""

    def decide(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        def apply(conn: sa.Connection, now: float) -> list[MtRequest]:
            _insert_subscriber(conn, mo.msisdn)  # already there: a unique violation
            return []

        return Decision(route="applied", apply=apply)

    dispatcher, accept, handed, _ = await _deciding(nursery, store, decide)
    assert await accept(_inbound(1)) == CommandStatus.ESME_ROK
    assert [mo.id for mo in handed] == [1]
    await _settle(store, dispatcher, 1)
    assert await store.read(_statuses) == [("failed", None)]
    assert await store.read(_count("mo_parts")) == 1 and await store.read(_count("mt_messages")) == 0


class _ReplyingInBatches:
    """A processor that replies, and notes the MOs of each batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def prepare(self, conn: sa.Connection, batch: list[StoredMo], now: float) -> None:
        self.batches.append([mo.id for mo in batch])

    def __call__(self, conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        return _reply(conn, mo, now)


async def _accept_together(accept: StoreAccept, numbers: range) -> list[int]:
    """Accept an MO from each number at once (so they share the store's next commit); their statuses."""
    statuses: dict[int, int] = {}

    async def one(i: int) -> None:
        statuses[i] = await accept(_inbound(i))

    async with trio.open_nursery() as nursery:
        for i in numbers:
            nursery.start_soon(one, i)
    return [statuses[i] for i in numbers]


async def test_mos_stored_in_one_commit_are_decided_about_together(nursery: trio.Nursery, store: Store) -> None:
    """MOs whose units share a commit are decided about in one process_mos: the processor
    prepares one batch of all of them, and each reply is enqueued, claimed and handed over."""
    processor = _ReplyingInBatches()
    dispatcher, accept, handed, claimed = await _deciding(nursery, store, processor)
    commits = store.commits
    assert await _accept_together(accept, range(1, 7)) == [CommandStatus.ESME_ROK] * 6
    assert store.commits == commits + 1
    assert [sorted(batch) for batch in processor.batches] == [[1, 2, 3, 4, 5, 6]]
    assert handed == [] and dispatcher.processed == 6
    assert sorted(mt.msisdn for mt in claimed) == [f"+3069{i:08d}" for i in range(1, 7)]
    assert await store.read(_statuses) == [("processed", "test")] * 6


async def test_when_deciding_a_commits_mos_together_breaks_they_are_handed_over_stored(nursery: trio.Nursery, store: Store) -> None:
    """A database error while deciding about MOs together undoes only the decisions: every MO
    is stored and acknowledged, handed over, and the dispatcher fails the culprit alone."""

    def decide(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        def apply(conn: sa.Connection, now: float) -> list[MtRequest]:
            _insert_subscriber(conn, mo.msisdn)  # already there: a unique violation
            return []

        if mo.msisdn.endswith("3"):
            return Decision(route="applied", apply=apply)
        return _reply(conn, mo, now)

    dispatcher, accept, handed, _ = await _deciding(nursery, store, decide)
    assert await _accept_together(accept, range(1, 5)) == [CommandStatus.ESME_ROK] * 4
    assert sorted(mo.id for mo in handed) == [1, 2, 3, 4]
    await _settle(store, dispatcher, 4)
    query = "SELECT s.msisdn, m.status FROM mo_messages m JOIN subscribers s ON s.id = m.subscriber_id ORDER BY s.msisdn"
    statuses = await store.read(lambda conn: [tuple(row) for row in conn.execute(sa.text(query))])
    assert statuses == [(f"+3069{i:08d}", "failed" if i == 3 else "processed") for i in range(1, 5)]
    assert await store.read(_count("mt_messages")) == 3
