"""The daemon as a whole: simulator demo, SIGTERM drain, SIGHUP reload, over loopback TCP."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import pytest
import structlog
import trio

from gatewayd.app import Gateway, serve
from gatewayd.config import default_config, load_config
from gatewayd.simulator.smsc import SmscSimulator
from tests.gatewayd.conftest import Collected

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def _wait_until(predicate: object, seconds: float = 10.0) -> None:
    """Poll a condition that another task makes true, failing loudly after ``seconds``."""
    with trio.fail_after(seconds):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)


async def test_default_config_runs_the_simulator_and_acknowledges_mos(nursery: trio.Nursery, tmp_path: Path) -> None:
    """With no SMSC configured the simulator starts in-process and its demo MOs are acknowledged."""
    config = load_config(_write(tmp_path / "gatewayd.toml", "[simulator]\ndemo_mo_per_second = 200\n"))
    assert config.simulator_active
    gateway: Gateway = await nursery.start(functools.partial(serve, config, handle_signals=False))
    collected = Collected(want=5)
    gateway.ingest.accept = collected.accept
    with trio.fail_after(10):
        await collected.arrived.wait()
    assert all(m.destination_addr == "4160" for m in collected.messages)
    sim = gateway.simulator
    assert sim is not None
    await _wait_until(lambda: sim.stats["mo_acknowledged"] >= 5)
    gateway.request_stop()


async def test_sigterm_drains_and_unbinds(tmp_path: Path) -> None:
    """SIGTERM makes serve() unbind from every SMSC and return."""
    config = default_config(state_dir=tmp_path)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            gateway: Gateway = await nursery.start(serve, config)
            sim = gateway.simulator
            assert sim is not None
            with trio.fail_after(10):
                await sim.wait_bound()
            os.kill(os.getpid(), signal.SIGTERM)
    events = [e["event"] for e in logs]
    assert "drain_started" in events and "gateway_stopped" in events
    assert any(e["event"] == "bind_closed" and e["reason"] == "unbound" for e in logs)


async def test_sighup_rebinds_changed_smsc_and_keeps_old_config_when_invalid(nursery: trio.Nursery, tmp_path: Path) -> None:
    """SIGHUP re-binds only an SMSC whose settings changed; an invalid file keeps the old configuration."""
    operator = SmscSimulator(system_id="gw", password="pw")
    port = await nursery.start(operator.serve, "127.0.0.1", 0)
    template = """
[gateway]
state_dir = "{state}"
[simulator]
enabled = false
[[smsc]]
name = "operator-a"
host = "127.0.0.1"
port = {port}
system_id = "gw"
password = "pw"
short_codes = ["4160"]
window = {window}
"""
    path = _write(tmp_path / "gatewayd.toml", template.format(state=tmp_path, port=port, window=10))
    gateway: Gateway = await nursery.start(serve, load_config(path))
    await _wait_until(lambda: operator.stats["binds_accepted"] == 1)

    _write(path, template.format(state=tmp_path, port=port, window=20))
    os.kill(os.getpid(), signal.SIGHUP)
    await _wait_until(lambda: operator.stats["binds_accepted"] == 2)
    await _wait_until(lambda: gateway.config.smscs[0].window == 20)

    _write(path, template.format(state=tmp_path, port=port, window="'many'"))
    with structlog.testing.capture_logs() as logs:
        assert await gateway.reload() is False
    assert any(e["event"] == "config_reload_failed" for e in logs)
    assert gateway.config.smscs[0].window == 20
    assert operator.stats["binds_accepted"] == 2
    assert len(operator.connections) == 1
    gateway.request_stop()


async def test_unchanged_reload_keeps_binds(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A reload that changes nothing about an SMSC does not touch its bind."""
    operator = SmscSimulator(system_id="gw", password="pw")
    port = await nursery.start(operator.serve, "127.0.0.1", 0)
    text = f"""
[gateway]
state_dir = "{tmp_path}"
log_level = "info"
[simulator]
enabled = false
[[smsc]]
name = "operator-a"
host = "127.0.0.1"
port = {port}
system_id = "gw"
password = "pw"
short_codes = ["4160"]
"""
    path = _write(tmp_path / "gatewayd.toml", text)
    gateway: Gateway = await nursery.start(functools.partial(serve, load_config(path), handle_signals=False))
    await _wait_until(lambda: operator.stats["binds_accepted"] == 1)
    assert await gateway.reload() is True
    await trio.sleep(0.2)
    assert operator.stats["binds_accepted"] == 1
    gateway.request_stop()


def _writer_pid(conn: object) -> int:
    return os.getpid()


@pytest.mark.parametrize(("writer", "own_process"), [("process", True), ("thread", False)])
async def test_the_store_writer_runs_where_the_configuration_says(tmp_path: Path, writer: str, own_process: bool) -> None:
    """By default the store writer is a process of its own, which stops with the gateway;
    ``writer = "thread"`` keeps it in the gateway's process."""
    config = load_config(_write(tmp_path / "gatewayd.toml", f'[store]\nwriter = "{writer}"\n[simulator]\ndemo_mo_per_second = 0\n'))
    async with trio.open_nursery() as nursery:
        gateway: Gateway = await nursery.start(functools.partial(serve, config, handle_signals=False))
        pid = await gateway.store.write(_writer_pid)
        assert (pid != os.getpid()) is own_process
        assert (gateway.store.writer_process is not None) is own_process
        gateway.request_stop()
    if own_process:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
