"""Two gateway nodes on one PostgreSQL database share one outbox without sending anything twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.session import SessionConfig
from profile_store.db import Store
from profile_store.migrate import upgrade
from profile_store.mt import MtRequest, enqueue_mt, outbox_counts
from tests.system.harness import start_drill, stop, submitted_texts, write_config

MTS = 5000


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_two_nodes_one_outbox_no_duplicates(nursery: trio.Nursery, tmp_path: Path, store_url: str) -> None:
    """5,000 queued MTs sent by two daemons sharing the database: each is submitted exactly once, both nodes send."""
    simulator = SmscSimulator(system_id="drill", password="drill", session_config=SessionConfig(window=100))
    port = await nursery.start(simulator.serve, "127.0.0.1", 0)
    await trio.to_thread.run_sync(upgrade, store_url)
    store = Store.open(store_url)
    async with trio.open_nursery() as writer:
        await writer.start(store.run_writer)

        def enqueue_all(conn: object) -> None:
            for i in range(MTS):
                enqueue_mt(conn, MtRequest(msisdn=f"+3069{i:08d}", source_addr="4160", text=f"Alert {i:05d}"), 0.0, concat_ref=i % 256)  # type: ignore[arg-type]

        await store.write(enqueue_all)
        writer.cancel_scope.cancel()

    nodes = [await start_drill(write_config(tmp_path / f"n{n}.toml", port=port, url=store_url, node=f"n{n}")) for n in (1, 2)]
    with trio.fail_after(180):
        while True:
            counts = await store.read(outbox_counts)
            if counts.get("delivered", 0) + counts.get("submitted", 0) == MTS:
                break
            await trio.sleep(0.25)
    assert [await stop(node) for node in nodes] == [0, 0]
    await store.aclose()

    texts = submitted_texts(simulator)
    per_connection = {k: v for k, v in simulator.stats.items() if k.startswith("submits_accepted:")}
    print(f"\ntwo nodes: {MTS} MTs, submit_sm accepted {sum(texts.values())} for {len(texts)} distinct MTs; per bind {per_connection}")
    assert len(texts) == MTS
    assert sum(texts.values()) == MTS, "an MT was submitted twice"
    assert len([v for v in per_connection.values() if v > 0]) >= 2, "both nodes should have sent"
