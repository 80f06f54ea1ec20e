"""MO -> deliver_sm_resp round trips per second, and their latency, over loopback.

By default this measures the SMPP transport alone: the gateway's binds, session, transport
and ingest run as their own process (``bench/ack_only_gateway.py``) and acknowledge each MO
at once, with one canonical log line each. ``--durable`` runs the real daemon instead
(``python -m gatewayd run``), which stores every MO before acknowledging it (see also
bench/pipeline.py). Either way a simulator in this process is the load generator: it sends
deliver_sm as fast as the window allows (or at a fixed offered rate with ``--rate``) and
times each one until its deliver_sm_resp arrives.

    python bench/echo.py                      # 20,000 MOs, window 100, as fast as possible
    python bench/echo.py --rate 2000 -n 20000 # latency at 2,000 MO/s offered
    python bench/echo.py --quick              # a short run
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.simulator.smsc import SmscSimulator  # noqa: E402
from gatewayd.smpp.session import SessionConfig  # noqa: E402
from stats import percentile  # noqa: E402

CONFIG = """
[gateway]
state_dir = "{state}"
log_level = "{log_level}"
log_format = "json"
[simulator]
enabled = false
[[smsc]]
name = "bench"
host = "127.0.0.1"
port = {port}
system_id = "bench"
password = "bench"
short_codes = ["4160"]
window = {window}
"""


async def run(args: argparse.Namespace) -> None:
    simulator = SmscSimulator(system_id="bench", password="bench", delivery_receipts=False, session_config=SessionConfig(window=args.window))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(simulator.serve, "127.0.0.1", 0)
        with tempfile.TemporaryDirectory() as state:
            config = Path(state) / "gatewayd.toml"
            config.write_text(CONFIG.format(state=state, port=port, window=args.window, log_level=args.log_level))
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            if args.durable:
                command = [sys.executable, "-m", "gatewayd", "run", "--config", str(config)]
            else:
                command = [sys.executable, str(ROOT / "bench" / "ack_only_gateway.py"), "127.0.0.1", str(port), "bench", "bench", str(args.window), args.log_level]
            gateway = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
            try:
                with trio.fail_after(30):
                    await simulator.wait_bound()
                pdus = [simulator.mo_pdus(f"3069{i % 10**8:08d}", "4160", f"VOTE {'GRE' if i % 2 else 'POR'}")[0] for i in range(args.count)]
                latencies: list[float] = []
                failures = 0
                interval = 1.0 / args.rate if args.rate else 0.0
                start = trio.current_time()

                async def one(pdu: object) -> None:
                    nonlocal failures
                    sent = trio.current_time()
                    response = await simulator.deliver(pdu)  # type: ignore[arg-type]
                    latencies.append(trio.current_time() - sent)
                    failures += not response.ok

                async def worker(offset: int, step: int) -> None:
                    for i in range(offset, args.count, step):
                        await one(pdus[i])

                async with trio.open_nursery() as senders:
                    if interval:
                        for i, pdu in enumerate(pdus):
                            await trio.sleep_until(start + i * interval)
                            senders.start_soon(one, pdu)
                    else:
                        for w in range(args.window):
                            senders.start_soon(worker, w, args.window)
                elapsed = trio.current_time() - start
            finally:
                gateway.terminate()
                await trio.to_thread.run_sync(gateway.wait)
        nursery.cancel_scope.cancel()
    mode = f"offered {args.rate:,.0f}/s" if args.rate else f"closed loop, window {args.window}"
    path = "stored before the ack" if args.durable else "transport only, acknowledged at once"
    path += f", gateway log level {args.log_level}"
    print(f"echo: {args.count:,} MO -> deliver_sm_resp over loopback ({mode}; {path})")
    print(f"  throughput : {args.count / elapsed:10,.0f} MO/s acknowledged  ({elapsed:.2f} s)")
    print(f"  latency    : p50 {percentile(latencies, 50) * 1000:.2f} ms   p99 {percentile(latencies, 99) * 1000:.2f} ms   max {max(latencies) * 1000:.2f} ms   mean {statistics.fmean(latencies) * 1000:.2f} ms")
    print(f"  not ROK    : {failures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="offered MO/s (0: closed loop, as fast as the window allows)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--quick", action="store_true", help="2,000 MOs")
    parser.add_argument("--durable", action="store_true", help="run the real daemon, which stores each MO before acknowledging it")
    args = parser.parse_args()
    if args.quick:
        args.count = 2_000
    started = time.perf_counter()
    trio.run(run, args)
    print(f"  wall time  : {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
