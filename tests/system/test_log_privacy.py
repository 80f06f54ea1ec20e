"""No subscriber number and no message text in clear anywhere in a real daemon's log at info level.

A real ``gatewayd`` process (the drill: it answers every MO, so MOs, MTs and delivery receipts
all flow) runs against the simulator over loopback with ``log_level = "info"``. The test
injects MOs from numbers in E.164, international-prefix and national form, with plain,
Greek (UCS-2) and concatenated text, waits until every reply has its receipt, stops the
daemon, and scans everything it wrote on stdout and stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import attrs
import trio

from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.session import SessionConfig
from profile_store.db import make_engine
from tests.system.harness import ROOT, scalar, stop

CONFIG = """
[gateway]
state_dir = "{state}"
log_level = "info"
log_format = "json"
drain_timeout = 5
[store]
default_region = "GR"
[simulator]
enabled = false
[metrics]
enabled = true
port = 0
[[smsc]]
name = "privacy"
host = "127.0.0.1"
port = {port}
system_id = "priv"
password = "secretpw"
short_codes = ["4160"]
reconnect_delay = 0.2
"""

# (source_addr as the SMSC sends it, its TON, the E.164 digits it stands for)
SENDERS = [
    ("306948271593", 1, "306948271593"),  # international, TON 1
    ("+306958372614", 1, "306958372614"),  # international with a plus
    ("00306937462815", 0, "306937462815"),  # international prefix, TON unknown
    ("6947183926", 2, "306947183926"),  # national (GR), TON 2
    ("447911836452", 1, "447911836452"),  # another country
]
TEXTS = [
    "ZEPHYRQUOKKA vote GRE",
    "ΨΗΦΟΣ ΖΕΦΥΡΟΣ ΚΑΛΗΜΕΡΑ",  # UCS-2
    "MARMALADEORBIT " * 14,  # concatenated: more than one part
    "Meet me at Xylophone Street",
    "HELP KUMQUATNEBULA",
]


def _forbidden_numbers() -> set[str]:
    """Every clear form of every injected number, and the part of it that masking hides."""
    forms: set[str] = set()
    for source, _, e164 in SENDERS:
        national = e164[2:]  # both country codes used here have two digits
        for digits in (source.lstrip("+"), e164, national, "00" + e164):
            forms.update({digits, digits[:-3]})
        forms.add("+" + e164)
    return {form for form in forms if len(form) >= 7}


def _forbidden_texts() -> set[str]:
    """The texts, their distinctive words, and their encodings as a repr or hex dump would show them."""
    found: set[str] = set()
    for text in TEXTS:
        found.add(text.strip())
        found.update(word for word in text.split() if len(word) >= 7)
        found.add(text.encode("utf-16-be").hex())
        found.add(text.strip().encode("utf-8").hex())
    return found


async def _wait_for(predicate: object, seconds: float) -> None:
    with trio.fail_after(seconds):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.05)


async def test_full_log_of_an_end_to_end_run_has_no_msisdn_or_text(nursery: trio.Nursery, tmp_path: Path) -> None:
    """MOs in, replies out, receipts back, drain: the whole log, parsed and raw, shows neither numbers nor texts."""
    simulator = SmscSimulator(system_id="priv", password="secretpw", session_config=SessionConfig(window=10))
    port = await nursery.start(simulator.serve, "127.0.0.1", 0)
    config = tmp_path / "gatewayd.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", port=port))
    log_path = tmp_path / "gatewayd.log"
    with open(log_path, "wb") as log_file:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gatewayd.drill", "--config", str(config)],
            stdout=log_file,
            stderr=log_file,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
    try:
        with trio.fail_after(30):
            await simulator.wait_bound()
        parts = 0
        for (source, ton, _), text in zip(SENDERS, TEXTS):
            for pdu in simulator.mo_pdus(source, "4160", text):
                response = await simulator.deliver(attrs.evolve(pdu, source_addr_ton=ton))
                assert response.ok
                parts += 1
        assert parts > len(TEXTS)
        engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'gatewayd.db'}")
        try:
            # Every MO answered, every answer receipted: MOs, MTs and receipts all went through the log.
            await _wait_for(lambda: scalar(engine, "SELECT count(*) FROM mt_messages WHERE status = 'delivered'") == len(TEXTS), 60)
        finally:
            engine.dispose()
    finally:
        assert await stop(proc) == 0

    raw = log_path.read_text(encoding="utf-8")
    lines = [line for line in raw.splitlines() if line.strip()]
    events = []
    decoded_lines = []
    for line in lines:
        assert line.startswith("<"), f"not a journald JSON line: {line[:200]}"
        entry = json.loads(line[line.index(">") + 1 :])
        events.append(entry["event"])
        decoded_lines.append(json.dumps(entry, ensure_ascii=False))
    decoded = "\n".join(decoded_lines)
    # The scan means something only if the messages were logged at all.
    assert events.count("mo_received") == parts
    assert events.count("mt_submitted") == len(TEXTS)
    assert events.count("receipt_received") >= len(TEXTS)
    assert "mo_processed" in events and "gateway_stopped" in events
    assert "*********593" in decoded  # the masked form is there instead

    for haystack in (raw, decoded):
        leaked_numbers = sorted(n for n in _forbidden_numbers() if n in haystack)
        leaked_texts = sorted(t for t in _forbidden_texts() if t in haystack)
        assert not leaked_numbers, f"numbers in clear in the log: {leaked_numbers}"
        assert not leaked_texts, f"message text in clear in the log: {leaked_texts}"
    assert "secretpw" not in raw
