"""The documentation keeps up with the code: every log event is in the table of docs/ARCHITECTURE.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVENT = re.compile(r"""log\.(?:debug|info|warning|error|exception|critical)\(\s*["']([a-z_]+)["']""")


def test_every_log_event_is_documented() -> None:
    """Each event name passed to a logger in gatewayd/ or profile_store/ appears in the event table."""
    table = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+)`", table))
    used = {
        name
        for folder in ("gatewayd", "profile_store")
        for path in (ROOT / folder).rglob("*.py")
        for name in EVENT.findall(path.read_text(encoding="utf-8"))
    }
    assert used, "no log events found: the pattern is wrong"
    assert not sorted(used - documented)


def test_readme_opens_with_the_two_setup_commands() -> None:
    """The README starts with exactly the run command and the test command that .ci/run uses."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```", 2)[1].strip().splitlines()
    commands = [line for line in block[1:] if line.strip()]
    assert len(commands) == 2
    assert "gatewayd run" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci
