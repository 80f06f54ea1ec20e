"""Helpers for tests that run real gatewayd processes against the simulator over loopback."""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
import trio

from gatewayd.runtime import tune_gc
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.pdus import DeliverSm, SubmitSm
from gatewayd.transport import ConnectionGone, ResponseTimeout

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[gateway]
state_dir = "{state}"
log_level = "warning"
log_format = "json"
node = "{node}"
drain_timeout = 5
[store]
url = "{url}"
[simulator]
enabled = false
[[smsc]]
name = "drill"
host = "127.0.0.1"
port = {port}
system_id = "drill"
password = "drill"
short_codes = ["4160"]
window = 100
max_mt_per_second = 10000
reconnect_delay = 0.2
reconnect_max_delay = 1
"""


#: The daemon run in-process by the end-to-end tests, bound to the simulator on ``port``.
IN_PROCESS = """
[gateway]
state_dir = "{state}"
log_level = "warning"
log_format = "json"
node = "{node}"
drain_timeout = 5
campaigns_dir = "{campaigns}"
campaigns_poll_interval = 0
[store]
url = "sqlite:///{db}"
dedupe_window = 0
[simulator]
enabled = false
[control]
enabled = false
[[smsc]]
name = "operator"
host = "127.0.0.1"
port = {port}
system_id = "e2e"
password = "e2e-pw"
short_codes = ["4160"]
window = {window}
max_mt_per_second = {rate}
reconnect_delay = 0.2
reconnect_max_delay = 1
"""


@contextlib.contextmanager
def daemon_gc() -> Iterator[None]:
    """The garbage collector as ``gatewayd run`` sets it (:func:`gatewayd.runtime.tune_gc`),
    for a test that runs the daemon in-process and measures its latency: otherwise full
    collections walk the whole test run's objects. Undone on exit (the frozen objects go
    back to the oldest generation), so nothing is kept for good."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def write_in_process_config(
    tmp_path: Path, campaigns: Path, *, port: int, node: str, window: int = 100, rate: float = 10_000.0, extra: str = ""
) -> Path:
    """``gatewayd.toml`` in ``tmp_path`` for :data:`IN_PROCESS` (state and SQLite database there too), plus ``extra`` TOML."""
    path = tmp_path / "gatewayd.toml"
    text = IN_PROCESS.format(
        state=tmp_path / "state", node=node, campaigns=campaigns, db=tmp_path / "gatewayd.db", port=port, window=window, rate=rate
    )
    path.write_text(text + extra, encoding="utf-8")
    return path


def write_config(path: Path, *, port: int, url: str, node: str = "n1") -> Path:
    """A drill configuration bound to the simulator on ``port``, storing at ``url``."""
    path.write_text(CONFIG.format(state=path.parent / f"state-{node}", port=port, url=url, node=node))
    return path


#: Every drill process started, so a failing test's teardown can kill what it left running.
STARTED: list[trio.Process] = []


def kill_leftovers() -> None:
    """Kill the drill processes still running (a test that failed before stopping them)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.returncode is None:
            proc.kill()


async def start_drill(config: Path) -> trio.Process:
    """Start ``python -m gatewayd.drill`` (a gateway that replies to every MO); its log goes next to the config."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(config.with_suffix(".log"), "ab") as log:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gatewayd.drill", "--config", str(config)], stdout=log, env=env
        )
    STARTED.append(proc)
    return proc


async def stop(proc: trio.Process) -> int:
    """SIGTERM and wait (the daemon drains and exits 0)."""
    proc.terminate()
    with trio.fail_after(30):
        return await proc.wait()


def mo_pdu(simulator: SmscSimulator, i: int) -> DeliverSm:
    """The i-th drill MO: a distinct sender and text per index."""
    return simulator.mo_pdus(f"3069{i:08d}", "4160", f"VOTE {i:06d}")[0]


class Injector:
    """Delivers MOs like an SMSC: unacknowledged ones are delivered again until acknowledged."""

    def __init__(self, simulator: SmscSimulator, count: int, workers: int = 100) -> None:
        self.simulator = simulator
        self.count = count
        self.workers = workers
        self.acked: set[int] = set()
        self.redelivered = 0
        self._todo = collections.deque(range(count))
        self.progress = trio.Event()

    async def run(self) -> None:
        """Deliver every MO until each has been acknowledged once."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        while self._todo:
            i = self._todo.popleft()
            try:
                await self.simulator.wait_bound()
                response = await self.simulator.deliver(mo_pdu(self.simulator, i))
                ok = response.ok
            except (ConnectionGone, ResponseTimeout, LookupError):
                ok = False
            if ok:
                self.acked.add(i)
                self.progress.set()
                self.progress = trio.Event()
            else:
                self.redelivered += 1
                self._todo.append(i)
                await trio.sleep(0.05)


def submitted_texts(simulator: SmscSimulator) -> collections.Counter[bytes]:
    """How often the simulator accepted each MT text."""
    return collections.Counter(p.short_message for p in simulator.submitted if isinstance(p, SubmitSm))


def scalar(engine: sa.Engine, sql: str) -> Any:
    """One value from a read-only query."""
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()
