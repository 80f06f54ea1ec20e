"""The gatewayd command: check-config exit codes, and a real daemon process with its simulator."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatewayd.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_check_config_accepts_the_shipped_file(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped conf/gatewayd.toml is valid: exit 0 and an OK line."""
    assert main(["check-config", "--config", str(ROOT / "conf" / "gatewayd.toml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken file exits 1 and names file, table and key of each problem."""
    path = tmp_path / "bad.toml"
    path.write_text('[[smsc]]\nname = "a"\nhost = "h"\nport = 99999\nsystem_id = "x"\npassword = "p"\nshort_codes = ["4160"]\nwindw = 5\n')
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: [smsc 'a'] port:" in err or f"{path}: [smsc[0]] port:" in err
    assert "windw" in err and "window" in err


def test_check_config_on_a_missing_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A configuration path that does not exist is an error, not a silent fall back to defaults."""
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 1
    assert "nope.toml" in capsys.readouterr().err


def _read_until(proc: subprocess.Popen[str], done: object, seconds: float) -> list[str]:
    """Collect stdout lines until done(lines) is true or the time is up."""
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline and not done(lines):  # type: ignore[operator]
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    return lines


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_daemon_runs_the_demo_then_drains_on_sigterm(tmp_path: Path) -> None:
    """`gatewayd run` binds to its simulator, acknowledges MOs, and on SIGTERM unbinds and exits 0, masking numbers and text."""
    config = tmp_path / "gatewayd.toml"
    config.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n[simulator]\ndemo_mo_per_second = 100\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gatewayd", "run", "--config", str(config)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = _read_until(proc, lambda ls: sum('"mo_received"' in line for line in ls) >= 10, 30)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    output = lines + rest.splitlines(keepends=True)
    events = [json.loads(line[line.index("{"):]) for line in output if "{" in line]
    names = [e["event"] for e in events]
    for expected in ("bind_established", "mo_received", "drain_started", "bind_closed", "gateway_stopped"):
        assert expected in names
    assert any(e["event"] == "bind_closed" and e["reason"] == "unbound" for e in events)
    assert all(line.startswith("<") for line in output if line.strip())
    text = "".join(output)
    assert not re.search(r"\d{7,}", text.replace(str(tmp_path), "")), "a number of 7+ digits was logged in clear"
    assert "VOTE" not in text.upper() and "ΨΗΦΟΣ" not in text
