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

from tests.policy_fixtures import write_open_policy

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


# --- check-config and the campaign sheets ---------------------------------------------------

SHEET = """\
name = "vote"
owner = "Channel 5 Interactive"
module = "vote"
project_type = "interactive-tv"
content = "interaction"
short_code = "4160"
keywords = ["VOTE", "ΨΗΦΟΣ"]
[settings]
choices = { GRE = "Greece" }
"""


@pytest.fixture
def fixture_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed modules are the test fixtures: vote (valid) and broken (fails to import)."""
    import importlib.metadata

    from tests.gatewayd.plugin_fixtures import entry_point

    installed = [entry_point("vote", "Good"), entry_point("broken", "tests.gatewayd.no_such_plugin:Module")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: installed)


def _campaign_config(tmp_path: Path, sheets: dict[str, str], extra: str = "") -> Path:
    (tmp_path / "campaigns.d").mkdir()
    for name, text in sheets.items():
        (tmp_path / "campaigns.d" / name).write_text(text, encoding="utf-8")
    config = tmp_path / "gatewayd.toml"
    config.write_text(extra, encoding="utf-8")
    return config


def test_check_config_lists_the_valid_campaigns(tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_modules: None) -> None:
    """Valid sheets: exit 0, and the OK line names the campaigns; a broken module nobody uses is only a warning."""
    config = _campaign_config(tmp_path, {"vote.toml": SHEET, "quiz.toml": SHEET.replace('"vote"', '"quiz"', 1).replace('["VOTE", "ΨΗΦΟΣ"]', '["QUIZ"]')})
    write_open_policy(tmp_path, ["Channel 5 Interactive"])
    assert main(["check-config", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{config}: OK (0 SMSC(s), simulator; 2 campaign(s): quiz, vote; policy policy.toml: 1 data user(s))\n"
    assert err.startswith("warning: module 'broken' cannot be used: cannot import")


def test_check_config_wants_a_policy_naming_every_owner(tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_modules: None) -> None:
    """Campaigns without a policy file, with an owner the policy lacks, or with an invalid policy: exit 1 and say why."""
    config = _campaign_config(tmp_path, {"vote.toml": SHEET})
    assert main(["check-config", "--config", str(config)]) == 1
    assert "policy.toml: file not found" in capsys.readouterr().err
    write_open_policy(tmp_path, ["Channel 5"])
    assert main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "owner 'Channel 5 Interactive' is not a data user" in err and "vote.toml" in err
    (tmp_path / "policy.toml").write_text("[obligations]\nminimum_age = 'fourteen'\n")
    assert main(["check-config", "--config", str(config)]) == 1
    assert "minimum_age" in capsys.readouterr().err


def test_check_config_without_campaigns(tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_modules: None) -> None:
    """No campaigns directory is fine: exit 0 and "no campaigns"."""
    config = tmp_path / "gatewayd.toml"
    config.write_text("")
    assert main(["check-config", "--config", str(config)]) == 0
    assert "no campaigns" in capsys.readouterr().out


def test_check_config_reports_every_sheet_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_modules: None) -> None:
    """Bad sheets and conflicts exit 1 with one FILE: [table] key: message line per problem."""
    sheets = {
        "a.toml": SHEET,
        "b.toml": SHEET.replace('"vote"', '"rival"', 1),
        "c.toml": SHEET.replace('"vote"', '"c"', 1).replace('["VOTE", "ΨΗΦΟΣ"]', '["C"]') + "votes_per_subscriber = 'x'\n",
        "d.toml": SHEET.replace('module = "vote"', 'module = "broken"').replace('"vote"', '"d"', 1),
        "e.toml": SHEET.replace('module = "vote"', 'module = "vots"').replace('"vote"', '"e"', 1),
    }
    config = _campaign_config(tmp_path, sheets, '[[short_code]]\ncode = "4160"\ndefault_campaign = "nope"\n')
    assert main(["check-config", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    d = tmp_path / "campaigns.d"
    assert lines == [
        f"{d / 'b.toml'}: keywords: keyword 'VOTE' on 4160: b.toml (rival) overlaps a.toml (vote) in time",
        f"{d / 'b.toml'}: keywords: keyword 'ΨΗΦΟΣ' on 4160: b.toml (rival) overlaps a.toml (vote) in time",
        f"{d / 'c.toml'}: [settings] votes_per_subscriber: expected an integer, got 'x'",
        f"{d / 'd.toml'}: module: module 'broken' is installed but cannot be used: cannot import tests.gatewayd.no_such_plugin:Module:"
        " ModuleNotFoundError: No module named 'tests.gatewayd.no_such_plugin'",
        f"{d / 'e.toml'}: module: unknown module 'vots'; did you mean 'vote'? installed modules: vote",
        f"{config}: [short_code '4160'] default_campaign: short code 4160: default campaign 'nope' is not a campaign routed on 4160",
    ]
    assert out == ""


def test_check_config_stops_at_a_bad_gatewayd_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_modules: None) -> None:
    """With gatewayd.toml itself invalid, its problems are reported and the sheets are not read."""
    config = _campaign_config(tmp_path, {"a.toml": "not toml ["}, "[keywords]\nstop = []\n")
    assert main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{config}: [keywords] stop: expected a non-empty array" in err and "a.toml" not in err


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
    # SMSC message ids (receipts of the demo's replies) are long digit strings too, not numbers of people.
    scrubbed = re.sub(r'"(receipted_)?message_id":"[^"]*"', "", text.replace(str(tmp_path), ""))
    assert not re.search(r"\d{7,}", scrubbed), "a number of 7+ digits was logged in clear"
    # The demo's texts never show; "vote" alone may (the module of that name is listed).
    assert "VOTE GRE" not in text.upper() and "VOTE POR" not in text.upper() and "ΨΗΦΟΣ" not in text
