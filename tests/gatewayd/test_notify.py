"""sd_notify: the datagrams systemd would get, read from a socket the test opens; and the watchdog."""

from __future__ import annotations

import functools
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import structlog
import trio
import trio.testing

from gatewayd.app import Gateway, serve
from gatewayd.config import load_config
from gatewayd.notify import Notifier, run_watchdog, watchdog_interval
from profile_store.db import StoreUnavailable


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a path short enough for AF_UNIX (pytest's tmp_path may not be)."""
    with tempfile.TemporaryDirectory(prefix="gwn", dir="/tmp") as name:
        yield Path(name)


@pytest.fixture
def listener(short_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd's notification socket: (address, socket)."""
    path = short_dir / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield str(path), sock
    sock.close()


def _drain(sock: socket.socket) -> list[dict[str, str]]:
    """Every datagram queued on ``sock``, each as its KEY=value assignments."""
    messages = []
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return messages
        messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))


def test_no_socket_means_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $NOTIFY_SOCKET nothing is sent and nothing fails."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_environment()
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False


def test_each_notification_is_one_datagram(monkeypatch: pytest.MonkeyPatch, listener: tuple[str, socket.socket]) -> None:
    """READY, STATUS, RELOADING (with MONOTONIC_USEC), STOPPING and WATCHDOG, as systemd reads them."""
    address, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier.from_environment()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.ready("0/1 binds up")
    assert notifier.status("1/1 binds up")
    assert not notifier.status("1/1 binds up"), "an unchanged status is not sent again"
    assert notifier.reloading()
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.stopping()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    messages = _drain(sock)
    assert messages[0] == {"READY": "1", "STATUS": "0/1 binds up"}
    assert messages[1] == {"STATUS": "1/1 binds up"}
    assert messages[2]["RELOADING"] == "1"
    assert before <= int(messages[2]["MONOTONIC_USEC"]) <= after
    assert messages[3:] == [{"READY": "1"}, {"WATCHDOG": "1"}, {"STOPPING": "1"}]
    notifier.close()


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """``@name`` is a socket in the abstract namespace, as systemd passes it in containers."""
    name = f"gatewayd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier.from_environment()
        assert notifier.ready()
        notifier.close()
        assert _drain(sock) == [{"READY": "1"}]
    finally:
        sock.close()


def test_newlines_cannot_inject_assignments(listener: tuple[str, socket.socket]) -> None:
    """A status text with a newline stays one STATUS= assignment."""
    address, sock = listener
    notifier = Notifier(address)
    notifier.status("up\nWATCHDOG=trigger")
    notifier.close()
    assert _drain(sock) == [{"STATUS": "up WATCHDOG=trigger"}]


def test_a_missing_socket_is_logged_once_and_ignored(short_dir: Path) -> None:
    """Sending to a socket that is gone returns False, warns once, never raises."""
    notifier = Notifier(str(short_dir / "gone"))
    with structlog.testing.capture_logs() as logs:
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    notifier.close()
    assert [e["event"] for e in logs] == ["notify_failed"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], expected: float | None) -> None:
    """Pings every WATCHDOG_USEC/2, and only in the process systemd watches."""
    assert watchdog_interval(env) == expected


async def test_watchdog_pings_only_while_the_probe_succeeds(autojump_clock: trio.testing.MockClock, listener: tuple[str, socket.socket]) -> None:
    """Healthy: one ping per interval. A failing or hanging probe: no ping, one warning; recovery: pings again."""
    address, sock = listener
    notifier = Notifier(address)
    state = {"mode": "ok"}

    async def probe() -> None:
        if state["mode"] == "fail":
            raise StoreUnavailable("database is locked")
        if state["mode"] == "hang":
            await trio.sleep_forever()

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_watchdog, notifier, probe, 15.0)
            await trio.sleep(15.0 * 3 + 1)  # pings at 0, 15, 30, 45
            assert len(_drain(sock)) == 4
            state["mode"] = "fail"
            await trio.sleep(15.0 * 3)  # probes at 60, 75, 90 fail
            assert _drain(sock) == []
            state["mode"] = "hang"
            await trio.sleep(15.0 * 3)  # probes at 105, 120, 135 never answer
            assert _drain(sock) == []
            state["mode"] = "ok"
            await trio.sleep(15.0 * 2)
            assert _drain(sock) == [{"WATCHDOG": "1"}] * 2
            nursery.cancel_scope.cancel()
    notifier.close()
    assert [e["event"] for e in logs] == ["watchdog_unhealthy", "watchdog_healthy"]
    assert "database is locked" in logs[0]["error"]


# --- the daemon ----------------------------------------------------------------------------


async def _next(sock: trio.socket.SocketType, want: str, seen: list[dict[str, str]]) -> dict[str, str]:
    """Receive datagrams until one carries ``want`` (a key); keep them all in ``seen``."""
    with trio.fail_after(20):
        while True:
            data = await sock.recv(4096)
            message = dict(line.split("=", 1) for line in data.decode().split("\n"))
            seen.append(message)
            if want in message:
                return message


_CONFIG = """
[gateway]
state_dir = "{state}"
drain_timeout = 2
[simulator]
demo_mo_per_second = 0
{extra}
"""


async def test_daemon_notifies_ready_status_reload_watchdog_and_stopping(
    monkeypatch: pytest.MonkeyPatch, short_dir: Path, tmp_path: Path
) -> None:
    """READY=1 after start, STATUS= as the bind comes up, RELOADING=1/READY=1 around reloads
    (valid and invalid), WATCHDOG=1 while healthy, STOPPING=1 on drain."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(short_dir / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    path = tmp_path / "gatewayd.toml"
    path.write_text(_CONFIG.format(state=tmp_path / "state", extra=""), encoding="utf-8")
    seen: list[dict[str, str]] = []
    async with trio.open_nursery() as nursery:
        gateway: Gateway = await nursery.start(functools.partial(serve, load_config(path), handle_signals=False))
        ready = await _next(sock, "READY", seen)
        assert ready["STATUS"] in ("0/1 binds up", "1/1 binds up")
        while seen[-1].get("STATUS") != "1/1 binds up":
            await _next(sock, "STATUS", seen)
        await _next(sock, "WATCHDOG", seen)

        assert await gateway.reload_notifying() is True
        reloading = await _next(sock, "RELOADING", seen)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        await _next(sock, "READY", seen)

        path.write_text(_CONFIG.format(state=tmp_path / "state", extra="[metrics]\nport = 'x'\n"), encoding="utf-8")
        assert await gateway.reload_notifying() is False
        await _next(sock, "RELOADING", seen)
        await _next(sock, "READY", seen)
        assert gateway.last_reload is not None and not gateway.last_reload["applied"]
        assert any("[metrics] port" in problem for problem in gateway.last_reload["problems"])

        gateway.request_stop()
        await _next(sock, "STOPPING", seen)
    sock.close()
