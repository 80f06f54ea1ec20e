"""The control socket: permissions, the protocol, each command against a real server and a real daemon, and the CLI."""

from __future__ import annotations

import functools
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import trio

from gatewayd.app import Gateway, serve
from gatewayd.cli import main
from gatewayd.config import load_config
from gatewayd.control import ControlError, ControlServer, ControlUnavailable, bind_socket, request, socket_path_for_file

ROOT = Path(__file__).resolve().parents[2]


class Commands:
    """Stand-ins for the daemon's commands, recording what was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.reload_ok = True

    async def status(self) -> dict[str, Any]:
        self.calls.append("status")
        return {"binds_up": 1, "binds_configured": 1}

    async def reload(self) -> dict[str, Any]:
        self.calls.append("reload")
        if self.reload_ok:
            return {"applied": True}
        return {"ok": False, "applied": False, "error": "not applied", "problems": ["gatewayd.toml: [smsc 'a'] port: expected ..."]}

    async def drain(self) -> dict[str, Any]:
        self.calls.append("drain")
        return {"drained": True}


async def _start(nursery: trio.Nursery, path: Path, commands: Commands) -> ControlServer:
    server = ControlServer(path, status=commands.status, reload=commands.reload, drain=commands.drain)
    await nursery.start(server.serve)
    return server


async def _ask(path: Path, command: str) -> dict[str, Any]:
    """The blocking client, as the CLI uses it, off the event loop."""
    return await trio.to_thread.run_sync(functools.partial(request, path, command, timeout=10))


async def _raw(path: Path, payload: bytes) -> list[dict[str, Any]]:
    """Send raw bytes, then read every answer line until the server closes."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(payload)
        await stream.send_eof()
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory under /tmp with a path short enough for AF_UNIX."""
    with tempfile.TemporaryDirectory(prefix="gwc", dir="/tmp") as name:
        yield Path(name)


async def test_socket_is_0600_in_a_new_0700_directory(nursery: trio.Nursery, short_dir: Path) -> None:
    """The socket file is mode 0600 owned by the daemon's user; a directory made for it is 0700."""
    path = short_dir / "run" / "control.sock"
    await _start(nursery, path, Commands())
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


async def test_each_command(nursery: trio.Nursery, short_dir: Path) -> None:
    """status, reload (applied and refused) and drain, each answered with ok and its result."""
    commands = Commands()
    path = short_dir / "control.sock"
    await _start(nursery, path, commands)
    status = await _ask(path, "status")
    assert status == {"ok": True, "command": "status", "result": {"binds_up": 1, "binds_configured": 1}}
    assert (await _ask(path, "reload"))["result"] == {"applied": True}
    commands.reload_ok = False
    refused = await _ask(path, "reload")
    assert refused["ok"] is False and refused["error"] == "not applied"
    assert refused["result"]["problems"]
    assert (await _ask(path, "drain")) == {"ok": True, "command": "drain", "result": {"drained": True}}
    assert commands.calls == ["status", "reload", "reload", "drain"]


async def test_protocol_errors_and_several_requests_per_connection(nursery: trio.Nursery, short_dir: Path) -> None:
    """One answer per line, in order; bad JSON and unknown commands get errors, not a closed socket."""
    path = short_dir / "control.sock"
    await _start(nursery, path, Commands())
    answers = await _raw(path, b'{"command":"status"}\nnot json\n{"command":"reboot"}\n[1]\n{"command":"status"}\n')
    assert [a["ok"] for a in answers] == [True, False, False, False, True]
    assert "unknown command 'reboot'" in answers[2]["error"] and "status, reload, drain" in answers[2]["error"]


async def test_a_failing_command_is_reported(nursery: trio.Nursery, short_dir: Path) -> None:
    """A command that raises answers ok=false with the error; the server goes on."""

    async def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    path = short_dir / "control.sock"
    server = ControlServer(path, status=broken, reload=broken, drain=broken)
    await nursery.start(server.serve)
    answer = await _ask(path, "status")
    assert answer["ok"] is False and "RuntimeError: boom" in answer["error"]
    assert (await _ask(path, "status"))["ok"] is False


async def test_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(nursery: trio.Nursery, short_dir: Path) -> None:
    """A socket left by a killed daemon is replaced; a listening one, or a regular file, is an error."""
    path = short_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    await _start(nursery, path, Commands())
    assert (await _ask(path, "status"))["ok"]
    with pytest.raises(ControlError, match="another process listens"):
        bind_socket(path)
    other = short_dir / "file"
    other.write_text("x")
    with pytest.raises(ControlError, match="not a socket"):
        bind_socket(other)


async def test_socket_file_removed_on_stop(short_dir: Path) -> None:
    """Stopping the server removes its socket file."""
    path = short_dir / "control.sock"
    async with trio.open_nursery() as nursery:
        await _start(nursery, path, Commands())
        assert path.exists()
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_paths_longer_than_sun_path(nursery: trio.Nursery, short_dir: Path) -> None:
    """A state directory deeper than AF_UNIX's 107 bytes still gets its socket."""
    deep = short_dir / ("d" * 60) / ("e" * 60)
    path = deep / "control.sock"
    assert len(str(path)) > 107
    await _start(nursery, path, Commands())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (await _ask(path, "status"))["ok"]


def test_client_explains_why_it_cannot_connect(short_dir: Path) -> None:
    """No socket: not running. A stale socket: nobody listens."""
    with pytest.raises(ControlUnavailable, match="not running"):
        request(short_dir / "none.sock", "status")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_dir / "stale.sock"))
    stale.close()
    with pytest.raises(ControlUnavailable, match="nobody listens"):
        request(short_dir / "stale.sock", "status")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try the socket as another user")
def test_other_users_are_refused(short_dir: Path) -> None:
    """Another user cannot connect (mode 0600), and is told to run as the service user or root."""
    os.chmod(short_dir, 0o755)  # the directory may be entered: the socket's mode alone refuses
    path = short_dir / "control.sock"
    listening = bind_socket(path)  # connections queue in the backlog; nobody needs to accept
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() beside threads (trio's idle worker threads); the
        # child only connects once and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                request(path, "status", timeout=2)
                message = "connected"
            except ControlUnavailable as exc:
                message = str(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    listening.close()
    assert "permission denied" in message and "service user" in message and "root" in message


def test_socket_path_read_leniently_from_an_invalid_file(tmp_path: Path) -> None:
    """``gatewayd reload`` finds the socket of a file that no longer validates (the daemon reports why)."""
    path = tmp_path / "gatewayd.toml"
    path.write_text('[gateway]\nstate_dir = "st"\nlog_level = "loud"\n')
    assert socket_path_for_file(path) == tmp_path / "st" / "control.sock"
    path.write_text('[control]\nsocket = "/run/gw.sock"\n[gateway]\nwhat = 1\n')
    assert socket_path_for_file(path) == Path("/run/gw.sock")
    path.write_text("[control]\nenabled = false\n")
    assert socket_path_for_file(path) is None
    path.write_text("[[[")
    assert socket_path_for_file(path) is None


# --- the CLI -------------------------------------------------------------------------------


async def test_cli_commands(nursery: trio.Nursery, short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status (table and --json), reload (ok and refused, exit 1 with the problems), drain; and no daemon."""
    commands = Commands()
    path = short_dir / "control.sock"
    await _start(nursery, path, commands)
    capsys.readouterr()

    async def run(*argv: str) -> int:
        return await trio.to_thread.run_sync(main, list(argv))

    assert await run("status", "--socket", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"binds_up": 1, "binds_configured": 1}
    assert await run("status", "--socket", str(path)) == 0
    assert "binds up    1/1" in capsys.readouterr().out
    assert await run("reload", "--socket", str(path)) == 0
    assert "reloaded" in capsys.readouterr().out
    commands.reload_ok = False
    assert await run("reload", "--socket", str(path)) == 1
    err = capsys.readouterr().err
    assert "not applied" in err and "[smsc 'a'] port" in err
    assert await run("drain", "--socket", str(path)) == 0
    assert "drained" in capsys.readouterr().out
    assert await run("status", "--socket", str(short_dir / "nothing.sock")) == 1
    assert "not running" in capsys.readouterr().err


# --- against the daemon --------------------------------------------------------------------


async def test_daemon_status_reload_and_drain(tmp_path: Path) -> None:
    """A real gateway: status shows its bind, an invalid reload is refused with the problems and
    the old configuration kept, a valid one applies, drain makes serve() return."""
    path = tmp_path / "gatewayd.toml"
    good = f'[gateway]\nstate_dir = "{tmp_path / "state"}"\ndrain_timeout = 2\n[simulator]\ndemo_mo_per_second = 0\n'
    path.write_text(good)
    async with trio.open_nursery() as nursery:
        gateway: Gateway = await nursery.start(functools.partial(serve, load_config(path), handle_signals=False))
        socket_path = tmp_path / "state" / "control.sock"
        assert gateway.operations is not None and gateway.operations.control_path == socket_path
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
        assert gateway.simulator is not None
        with trio.fail_after(10):
            await gateway.simulator.wait_bound()
        status = (await _ask(socket_path, "status"))["result"]
        assert status["binds"] == [{"smsc": "simulator", "bind": "transceiver", "state": "bound", "host": status["binds"][0]["host"]}]
        assert status["binds_up"] == 1 and status["state"] == "running" and status["pid"] == os.getpid()
        assert status["queues"]["dispatch"] == 0 and "mo_per_second" in status["rates"]

        path.write_text(good + "[[smsc]]\nname = 'x'\n")
        refused = await _ask(socket_path, "reload")
        assert refused["ok"] is False and not refused["result"]["applied"]
        assert any("[smsc 'x'] host" in p for p in refused["result"]["problems"])
        assert gateway.config.smscs == ()
        last = (await _ask(socket_path, "status"))["result"]["last_reload"]
        assert last["applied"] is False and last["problems"]

        path.write_text(good.replace("drain_timeout = 2", "drain_timeout = 1"))
        applied = await _ask(socket_path, "reload")
        assert applied["ok"] and applied["result"]["applied"] and gateway.config.drain_timeout == 1

        drained = await _ask(socket_path, "drain")
        assert drained == {"ok": True, "command": "drain", "result": {"drained": True, "grace": 1.0}}
    # serve() returned: the daemon drained and stopped; its socket file is gone.
    assert not socket_path.exists()


def test_cli_finds_the_socket_from_the_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --socket, the CLI looks in the configured state directory, and says when nothing runs."""
    path = tmp_path / "gatewayd.toml"
    path.write_text('[gateway]\nstate_dir = "st"\n')
    assert main(["status", "--config", str(path)]) == 1
    assert str(tmp_path / "st" / "control.sock") in capsys.readouterr().err
    path.write_text("[control]\nenabled = false\n")
    assert main(["status", "--config", str(path)]) == 1
    assert "disabled" in capsys.readouterr().err


def test_cli_help_lists_the_control_commands() -> None:
    """``gatewayd --help`` names status, reload and drain."""
    out = subprocess.run([sys.executable, "-m", "gatewayd.cli", "--help"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "status" in out and "reload" in out and "drain" in out
