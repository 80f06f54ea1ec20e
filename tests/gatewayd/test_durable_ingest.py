"""Ingest with the store: an MO is acknowledged only once committed; no store, no acknowledgement."""

from __future__ import annotations

import functools

import sqlalchemy as sa
import trio

from gatewayd.binds import SmscLink
from gatewayd.config import StoreConfig
from gatewayd.ingest import Ingest, StoreAccept
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import CommandStatus
from gatewayd.smpp.text import ConcatMethod
from profile_store.db import Store, make_engine
from profile_store.values import StoredMo
from tests.gatewayd.conftest import memory_connector, smsc_config


async def _link(simulator: SmscSimulator, nursery: trio.Nursery, accept: StoreAccept) -> SmscLink:
    ingest = Ingest(accept)
    cfg = smsc_config()
    link = SmscLink(cfg, functools.partial(ingest.handle, smsc=cfg.name), connect=memory_connector(simulator, nursery))
    await nursery.start(link.run)
    await link.wait_bound()
    return link


async def _accepting(simulator: SmscSimulator, nursery: trio.Nursery, store: Store, url: str) -> list[StoredMo]:
    """A bind storing what the simulator delivers; the list of MOs handed over, filled as they are."""
    handed_over: list[StoredMo] = []
    await _link(simulator, nursery, StoreAccept(store, settings=StoreConfig(url=url), on_mo=handed_over.append))
    return handed_over


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


async def test_acknowledged_mo_is_already_committed(nursery: trio.Nursery, simulator: SmscSimulator, store: Store, store_url: str) -> None:
    """When the SMSC receives ESME_ROK, another connection already sees the MO in the database."""
    handed_over = await _accepting(simulator, nursery, store, store_url)
    assert await simulator.inject_mo("447700900123", "4160", "VOTE GRE") == [CommandStatus.ESME_ROK]
    assert _count(store_url, "SELECT count(*) FROM mo_messages WHERE text = 'VOTE GRE'") == 1
    assert [mo.text for mo in handed_over] == ["VOTE GRE"]


async def test_redelivery_is_acknowledged_and_stored_once(nursery: trio.Nursery, simulator: SmscSimulator, store: Store, store_url: str) -> None:
    """An MO delivered again after the connection broke is acknowledged twice, stored and handed over once."""
    handed_over = []
    link = await _link(simulator, nursery, StoreAccept(store, settings=StoreConfig(url=store_url), on_mo=handed_over.append))
    pdu = simulator.mo_pdus("447700900123", "4160", "VOTE POR")[0]
    assert (await simulator.deliver(pdu)).ok
    simulator.drop_connections()
    with trio.fail_after(10):
        while simulator.connections:
            await trio.sleep(0.01)
    await link.wait_bound()
    await simulator.wait_bound()
    assert (await simulator.deliver(pdu)).ok
    assert _count(store_url, "SELECT count(*) FROM mo_messages") == 1
    assert len(handed_over) == 1


async def test_the_same_text_twice_on_one_connection_is_processed_twice(
    nursery: trio.Nursery, simulator: SmscSimulator, store: Store, store_url: str
) -> None:
    """A subscriber sending the same answer twice over one live connection gets both processed."""
    handed_over = await _accepting(simulator, nursery, store, store_url)
    for _ in range(2):
        assert await simulator.inject_mo("447700900123", "4160", "A") == [CommandStatus.ESME_ROK]
    assert _count(store_url, "SELECT count(*) FROM mo_messages") == 2
    assert len(handed_over) == 2


async def test_concatenated_mo_is_handed_over_when_complete(nursery: trio.Nursery, simulator: SmscSimulator, store: Store, store_url: str) -> None:
    """A three-part MO (16-bit references) is acknowledged part by part and handed over once, whole."""
    handed_over = await _accepting(simulator, nursery, store, store_url)
    text = "Ψηφίζω για την Ελλάδα! " * 8
    statuses = await simulator.inject_mo("306912345678", "4160", text, method=ConcatMethod.UDH16)
    assert statuses == [CommandStatus.ESME_ROK] * 3
    assert [mo.text for mo in handed_over] == [text]


async def test_store_unavailable_answers_temporary_error(nursery: trio.Nursery, simulator: SmscSimulator, store_url: str) -> None:
    """With the store down the MO is answered ESME_RX_T_APPN, so the SMSC keeps it and retries."""
    down = Store.open(store_url)  # its writer never runs: every write is refused
    accept = StoreAccept(down, settings=StoreConfig(url=store_url))
    await _link(simulator, nursery, accept)
    assert await simulator.inject_mo("447700900123", "4160", "VOTE GRE") == [CommandStatus.ESME_RX_T_APPN]
    await down.aclose()


async def test_an_alphanumeric_sender_is_acknowledged_and_not_stored(
    nursery: trio.Nursery, simulator: SmscSimulator, store: Store, store_url: str
) -> None:
    """Nobody to answer and nothing to keep: ESME_ROK (the SMSC must not retry), no row, no commit."""
    handed_over = await _accepting(simulator, nursery, store, store_url)
    units = store.units
    assert await simulator.inject_mo("ACME", "4160", "VOTE GRE") == [CommandStatus.ESME_ROK]
    assert store.units == units
    assert _count(store_url, "SELECT count(*) FROM mo_parts") == 0
    assert handed_over == []
    assert await simulator.inject_mo("447700900123", "4160", "VOTE GRE") == [CommandStatus.ESME_ROK]
    assert _count(store_url, "SELECT count(*) FROM mo_messages") == 1
