"""Crash drill: a gateway killed with SIGKILL mid-run loses nothing and sends nothing twice it need not."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.session import SessionConfig
from profile_store.db import make_engine
from tests.system.harness import Injector, scalar, start_drill, stop, submitted_texts, write_config

MOS = int(os.environ.get("GATEWAYD_CRASH_MOS", "10000"))


async def _wait_for(predicate: object, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.2)
        return True
    return False


async def test_sigkill_during_a_run_of_mos_with_replies_and_receipts(nursery: trio.Nursery, tmp_path: Path) -> None:
    """After SIGKILL and a restart, every acknowledged MO is stored once, every reply sent and every receipt matched."""
    simulator = SmscSimulator(system_id="drill", password="drill", session_config=SessionConfig(window=100))
    port = await nursery.start(simulator.serve, "127.0.0.1", 0)
    url = f"sqlite:///{tmp_path / 'gatewayd.db'}"
    config = write_config(tmp_path / "gatewayd.toml", port=port, url=url)
    injector = Injector(simulator, MOS)

    proc = await start_drill(config)
    killed_at = -1
    with trio.fail_after(300):
        async with trio.open_nursery() as run:
            run.start_soon(injector.run)
            while len(injector.acked) < MOS * 3 // 10:
                await injector.progress.wait()
            proc.kill()
            await proc.wait()
            killed_at = len(injector.acked)
            proc = await start_drill(config)
        engine = make_engine(url)
        settled = await _wait_for(
            lambda: scalar(engine, "SELECT count(*) FROM mt_messages WHERE status = 'delivered'") == MOS
            and scalar(engine, "SELECT count(*) FROM dlr_events WHERE NOT matched") == 0,
            240,
        )
    assert await stop(proc) == 0

    stored = scalar(engine, "SELECT count(*) FROM mo_messages")
    distinct = scalar(engine, "SELECT count(DISTINCT text) FROM mo_messages")
    mts = scalar(engine, "SELECT count(*) FROM mt_messages")
    delivered = scalar(engine, "SELECT count(*) FROM mt_messages WHERE status = 'delivered'")
    unmatched = scalar(engine, "SELECT count(*) FROM dlr_events WHERE NOT matched")
    texts = submitted_texts(simulator)
    resubmitted = sum(n - 1 for n in texts.values())
    engine.dispose()
    print(
        f"\ncrash drill: {MOS} MOs, SIGKILL after {killed_at} acknowledged; redeliveries by the SMSC {injector.redelivered}; "
        f"MOs stored {stored} ({distinct} distinct); MTs {mts}, delivered {delivered}; "
        f"submit_sm accepted {sum(texts.values())} for {len(texts)} MTs ({resubmitted} resubmitted after the crash); "
        f"receipts unmatched {unmatched}"
    )
    assert settled, "the pipeline did not settle in time"
    assert len(injector.acked) == MOS
    assert stored == distinct == MOS
    assert mts == delivered == MOS
    assert len(texts) == MOS
    assert unmatched == 0
    # Only MTs in flight at the kill (at most the window) may go out twice.
    assert resubmitted <= 100
