"""Durable pipeline rates: MO stored-then-acknowledged, and MT outbox -> submitted -> receipt.

The gateway runs as its own process (``python -m gatewayd run``) against a simulator in this
process, on SQLite (a file under a temporary directory) and, when one is reachable, on
PostgreSQL (``GATEWAYD_TEST_PG_URL`` or 127.0.0.1:5432/test, in a scratch schema).

* MO: deliver_sm sent by the simulator; each is acknowledged only after its commit. Closed
  loop at window 100 for the rate, then at a fixed offered rate for the latency.
* MT: MTs committed to the outbox before the gateway starts; the rate at which they are
  submitted and their receipts matched, and the latency from enqueue to receipt.

    python bench/pipeline.py               # 20,000 MOs, 2,000/s offered, 10,000 MTs
    python bench/pipeline.py --quick       # a short run
    python bench/pipeline.py --sqlite-only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.simulator.smsc import SmscSimulator  # noqa: E402
from gatewayd.smpp.session import SessionConfig  # noqa: E402
from profile_store.db import Store, make_engine  # noqa: E402
from profile_store.migrate import upgrade  # noqa: E402
from profile_store.mt import MtRequest, enqueue_mt, outbox_counts  # noqa: E402
from stats import percentile_ms  # noqa: E402

CONFIG = """
[gateway]
state_dir = "{state}"
log_level = "warning"
log_format = "json"
[store]
url = "{url}"
[simulator]
enabled = false
[[smsc]]
name = "bench"
host = "127.0.0.1"
port = {port}
system_id = "bench"
password = "bench"
short_codes = ["4160"]
window = 100
max_mt_per_second = 100000
"""


def pg_url() -> str | None:
    """A scratch PostgreSQL schema URL, or None when no server answers."""
    base = os.environ.get("GATEWAYD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        engine = make_engine(base)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine.dispose()
    except sa.exc.DBAPIError:
        return None
    url = sa.engine.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def drop_pg_schema(url: str) -> None:
    schema = sa.engine.make_url(url).query["options"].split("=", 1)[1]
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


async def run_gateway(url: str, port: int, state: Path) -> subprocess.Popen[bytes]:
    config = state / "gatewayd.toml"
    config.write_text(CONFIG.format(state=state, url=url, port=port))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "gatewayd", "run", "--config", str(config)], stdout=subprocess.DEVNULL, env=env)


async def mo_phase(simulator: SmscSimulator, count: int, rate: float) -> tuple[float, list[float]]:
    """Send ``count`` MOs (closed loop when rate is 0); returns (MO/s, latencies)."""
    pdus = [simulator.mo_pdus(f"3069{i:08d}", "4160", f"VOTE {i:07d} {rate}")[0] for i in range(count)]
    latencies: list[float] = []
    start = trio.current_time()

    async def one(pdu: object) -> None:
        sent = trio.current_time()
        response = await simulator.deliver(pdu)  # type: ignore[arg-type]
        assert response.ok, response
        latencies.append(trio.current_time() - sent)

    async def worker(offset: int) -> None:
        for i in range(offset, count, 100):
            await one(pdus[i])

    async with trio.open_nursery() as nursery:
        if rate:
            for i, pdu in enumerate(pdus):
                await trio.sleep_until(start + i / rate)
                nursery.start_soon(one, pdu)
        else:
            for w in range(100):
                nursery.start_soon(worker, w)
    return count / (trio.current_time() - start), latencies


async def bench_store(label: str, url: str, args: argparse.Namespace) -> None:
    simulator = SmscSimulator(system_id="bench", password="bench", session_config=SessionConfig(window=100))
    await trio.to_thread.run_sync(upgrade, url)
    store = Store.open(url)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(simulator.serve, "127.0.0.1", 0)
        with tempfile.TemporaryDirectory() as state:
            gateway = await run_gateway(url, port, Path(state))
            try:
                with trio.fail_after(60):
                    await simulator.wait_bound()
                rate, lat = await mo_phase(simulator, args.mos, 0)
                print(f"{label}: MO stored then acknowledged, closed loop window 100: {rate:9,.0f} MO/s   p50 {percentile_ms(lat, 50):.2f} ms  p99 {percentile_ms(lat, 99):.2f} ms")
                offered, lat = await mo_phase(simulator, args.mos, args.rate)
                print(f"{label}: MO stored then acknowledged at {args.rate:,.0f}/s offered: {offered:9,.0f} MO/s   p50 {percentile_ms(lat, 50):.2f} ms  p99 {percentile_ms(lat, 99):.2f} ms")

                await store_outbox(store, args.mts)
                started = time.time()
                with trio.fail_after(600):
                    while True:
                        counts = await store.read(outbox_counts)
                        if counts.get("delivered", 0) == args.mts:
                            break
                        await trio.sleep(0.1)
                elapsed = time.time() - started
                rows = await store.read(_mt_times)
                submit = [s - c for c, s, _ in rows]
                receipt = [d - c for c, _, d in rows]
                print(
                    f"{label}: MT outbox -> submitted -> receipt matched: {args.mts / elapsed:9,.0f} MT/s   "
                    f"enqueue->submit p50 {percentile_ms(submit, 50):.0f} ms p99 {percentile_ms(submit, 99):.0f} ms   enqueue->receipt p99 {percentile_ms(receipt, 99):.0f} ms   "
                    f"({args.mts:,} queued at once)"
                )
            finally:
                gateway.terminate()
                await trio.to_thread.run_sync(gateway.wait)
        nursery.cancel_scope.cancel()
    await store.aclose()


async def store_outbox(store: Store, count: int) -> None:
    """Commit ``count`` MTs to the outbox; the running gateway's sweep finds them."""
    async with trio.open_nursery() as writer:
        await writer.start(store.run_writer)

        def enqueue_all(conn: sa.Connection, now: float) -> None:
            for i in range(count):
                enqueue_mt(conn, MtRequest(msisdn=f"+3069{i:08d}", source_addr="4160", text=f"Bench alert {i:06d}"), now, concat_ref=i % 256)

        await store.write(enqueue_all, time.time())
        writer.cancel_scope.cancel()


def _mt_times(conn: sa.Connection) -> list[tuple[float, float, float]]:
    rows = conn.execute(
        sa.text(
            "SELECT m.created_at, p.submitted_at, p.done_at FROM mt_messages m JOIN mt_parts p ON p.mt_id = m.id "
            "WHERE p.done_at IS NOT NULL"
        )
    ).all()
    return [(float(c), float(s), float(d)) for c, s, d in rows]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await bench_store("sqlite    ", f"sqlite:///{tmp}/bench.db", args)
    if args.sqlite_only:
        return
    url = pg_url()
    if url is None:
        print("postgresql: skipped (no server reachable)")
        return
    try:
        await bench_store("postgresql", url, args)
    finally:
        drop_pg_schema(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mos", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--mts", type=int, default=10_000)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.mos, arguments.mts = 2_000, 1_000
    trio.run(main, arguments)
