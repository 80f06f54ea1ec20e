"""The systemd unit, sysusers and tmpfiles snippets: systemd's own checks where the tools exist, and the settings we rely on."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.config import default_config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "gatewayd.service"
SYSUSERS = ROOT / "systemd" / "gatewayd.sysusers"
TMPFILES = ROOT / "systemd" / "gatewayd.tmpfiles"


def _service() -> dict[str, list[str]]:
    """``[Service]`` settings, each key with all its values (systemd allows repeats)."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _seconds(value: str) -> float:
    """A systemd time span in seconds ("30", "30s", "1min 30s")."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


def test_unit_declares_readiness_watchdog_reload_and_drain() -> None:
    """Type=notify with the main process notifying, a watchdog, a validated reload, SIGTERM with room to drain."""
    service = _service()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert _seconds(service["WatchdogSec"][0]) >= 10
    assert service["ExecStart"][0].split()[1:3] == ["run", "--config"]
    assert " reload " in service["ExecReload"][0] + " "
    assert service["KillSignal"] == ["SIGTERM"]
    # The drain waits up to drain_timeout for the outbox, then again for the binds, then unbinds.
    assert _seconds(service["TimeoutStopSec"][0]) > 2 * default_config().drain_timeout + 10
    assert service["Restart"] == ["on-failure"]
    assert service["User"] == service["Group"] == ["gatewayd"]
    assert service["StateDirectory"] == ["gatewayd"]
    assert service["ConfigurationDirectory"] == ["gatewayd"]


def test_unit_is_sandboxed() -> None:
    """The hardening the daemon is known to work under."""
    service = _service()
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
    }.items():
        assert service[key] == [value], key
    assert service["CapabilityBoundingSet"] == [""]


def test_config_paths_agree() -> None:
    """ExecStart, ExecReload and ExecStartPre read the same file, in the ConfigurationDirectory."""
    service = _service()
    configs = {re.search(r"--config (\S+)", service[key][0]).group(1) for key in ("ExecStart", "ExecReload", "ExecStartPre")}  # type: ignore[union-attr]
    assert configs == {"/etc/gatewayd/gatewayd.toml"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing wrong (the install path is pointed at a real executable)."""
    executable = shutil.which("gatewayd") or str(Path(sys.executable).with_name("gatewayd"))
    if not Path(executable).exists():
        executable = "/bin/true"
    unit = tmp_path / "gatewayd.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/gatewayd/bin/gatewayd", executable), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "gatewayd.service" in line]
    assert not problems, problems


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    """The exposure score of ``systemd-analyze security`` stays in its "OK" band (below 4)."""
    unit = tmp_path / "gatewayd.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/gatewayd/bin/gatewayd", "/bin/true"), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip("this systemd-analyze cannot rate a unit file offline")
    match = re.search(r"Overall exposure level for gatewayd.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) < 4.0


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_snippet_parses() -> None:
    """``systemd-sysusers --dry-run`` would create the gatewayd user and group from the snippet."""
    result = subprocess.run(["systemd-sysusers", "--dry-run", str(SYSUSERS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    exists = subprocess.run(["getent", "passwd", "gatewayd"], capture_output=True).returncode == 0
    assert exists or ("Creating user 'gatewayd'" in output or "Creating user gatewayd" in output), output


def test_tmpfiles_snippet() -> None:
    """The tmpfiles snippet makes the state directory 0700 for the service user and keeps the config from others."""
    rows = [line.split() for line in TMPFILES.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    assert ["d", "/var/lib/gatewayd", "0700", "gatewayd", "gatewayd", "-", "-"] in rows
    assert ["z", "/etc/gatewayd/gatewayd.toml", "0640", "root", "gatewayd", "-", "-"] in rows


def test_unit_parses_as_ini() -> None:
    """Every line is a section, a comment or key=value (catches stray text in the file)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
