"""The dispatcher: every stored MO processed exactly once, its replies in the same transaction."""

from __future__ import annotations

import time

import sqlalchemy as sa
import trio

from gatewayd.dispatch import Decision, Dispatcher
from profile_store.db import Store
from profile_store.mo import MoPartIn, store_mo_part
from profile_store.mt import MtRequest
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
