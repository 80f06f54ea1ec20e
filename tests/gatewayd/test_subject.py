"""``gatewayd subject export|erase`` and ``gatewayd audit verify`` against a store the engine filled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

import pytest
import sqlalchemy as sa
import trio

from gatewayd.cli import main
from profile_store.db import Store
from profile_store.migrate import upgrade
from tests.gatewayd.test_engine import QUIZ, VOTE, Harness, _harness
from tests.policy_fixtures import open_policy

NUMBER = "+306900000555"


@pytest.fixture
async def store(store_url: str, nursery: trio.Nursery) -> AsyncIterator[Store]:
    """A store migrated to head (the commands check the schema revision), its writer running."""
    await trio.to_thread.run_sync(upgrade, store_url)
    s = Store.open(store_url)
    await nursery.start(s.run_writer)
    yield s
    await s.aclose()


async def _filled(tmp_path: Path, store: Store, store_url: str) -> Harness:
    h = await _harness(tmp_path, store, store_url, {"vote.toml": VOTE, "quiz.toml": QUIZ})
    await h.ask(NUMBER, "VOTE GRE")
    await h.ask(NUMBER, "QUIZ")
    await h.ask(NUMBER, "STOP QUIZ")
    await h.ask("+306900000556", "VOTE POR")
    return h


def _cli(*args: str) -> int:
    return main(list(args))


async def test_export_writes_everything_held_and_is_audited(tmp_path: Path, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    await _filled(tmp_path, store, store_url)
    out = tmp_path / "export.json"
    config = str(tmp_path / "gatewayd.toml")
    assert await trio.to_thread.run_sync(_cli, "subject", "export", NUMBER, "--out", str(out), "--config", config) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    data = json.loads(out.read_text())
    assert data["subscriber"]["msisdn"] == NUMBER
    assert [m["text"] for m in data["messages_received"]] == ["VOTE GRE", "QUIZ", "STOP QUIZ"]
    assert "final-vote" in data["campaigns"] and "quiz" not in data["campaigns"]
    assert [e["event"] for e in data["consent"]] == ["opt_out"]
    assert NUMBER not in capsys.readouterr().out

    def exports(conn: sa.Connection) -> list[str]:
        return list(conn.execute(sa.text("SELECT operation FROM audit_log WHERE kind = 'export'")).scalars())

    assert await store.read(exports) == ["export"]


async def test_erase_keeps_only_the_opt_out_and_the_chain_verifies(tmp_path: Path, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    await _filled(tmp_path, store, store_url)
    config = str(tmp_path / "gatewayd.toml")
    assert await trio.to_thread.run_sync(_cli, "subject", "erase", "0030 690 000 0555", "--config", config) == 0
    assert "kept 1 opt-out(s)" in capsys.readouterr().out

    def left(conn: sa.Connection) -> tuple[list[str], list[tuple[str, object]]]:
        numbers = list(conn.execute(sa.text("SELECT msisdn FROM subscribers")).scalars())
        ledger = [(e, s) for e, s in conn.execute(sa.text("SELECT event, subscriber_id FROM consent_events"))]
        return numbers, ledger

    numbers, ledger = await store.read(left)
    assert numbers == ["+306900000556"] and ledger == [("opt_out", None)]
    # What stays is found again by the number's keyed hash, and nothing else is.
    assert await trio.to_thread.run_sync(_cli, "subject", "export", NUMBER, "--config", config) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["subscriber"] is None and [e["event"] for e in exported["consent"]] == ["opt_out"]
    assert await trio.to_thread.run_sync(_cli, "audit", "verify", "--config", config) == 0
    assert "audit log intact" in capsys.readouterr().out


async def test_audit_verify_names_the_first_tampered_entry(tmp_path: Path, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    await _filled(tmp_path, store, store_url)
    config = str(tmp_path / "gatewayd.toml")

    def tamper(conn: sa.Connection) -> int:
        second = conn.execute(sa.text("SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 1")).scalar_one()
        conn.execute(sa.text("UPDATE audit_log SET detail = 'nothing happened' WHERE id = :i"), {"i": second})
        return int(second)

    broken = await store.write(tamper)
    assert await trio.to_thread.run_sync(_cli, "audit", "verify", "--config", config) == 1
    assert f"audit log broken at entry {broken}" in capsys.readouterr().err


async def test_subject_commands_refuse_what_is_not_a_number_or_unknown(tmp_path: Path, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    await _filled(tmp_path, store, store_url)
    config = str(tmp_path / "gatewayd.toml")
    assert await trio.to_thread.run_sync(_cli, "subject", "erase", "ACME", "--config", config) == 1
    assert "not a phone number" in capsys.readouterr().err
    assert await trio.to_thread.run_sync(_cli, "subject", "export", "+306900000999", "--config", config) == 1
    assert "nothing is held" in capsys.readouterr().err


async def test_disclosure_goes_only_where_the_policy_allows_and_is_audited(tmp_path: Path, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A disclosure the policy lists gives pseudonymous results; one it does not list is refused; both are audited."""
    disclose = '[[data_user.rule]]\noperations = ["disclose"]\ncategories = ["participation"]\npurposes = ["disclosure:Audience Research"]\n'
    policy = open_policy(["Channel 5", "Radio 1"]).replace("name = 'Channel 5'\n", "name = 'Channel 5'\n" + disclose)
    (tmp_path / "policy.toml").write_text(policy + '\n[[third_party]]\nname = "Audience Research"\n')
    await _filled(tmp_path, store, store_url)
    config = str(tmp_path / "gatewayd.toml")
    out = tmp_path / "disclosed.json"
    assert await trio.to_thread.run_sync(_cli, "disclose", "final-vote", "--to", "Audience Research", "--out", str(out), "--config", config) == 0
    data = json.loads(out.read_text())
    assert sorted(r["key"] for r in data["results"]) == ["GRE", "POR"]
    assert all(r["subscriber"] and "+30" not in r["subscriber"] for r in data["results"])
    assert await trio.to_thread.run_sync(_cli, "disclose", "quiz", "--to", "Audience Research", "--config", config) == 1
    assert "does not let 'Radio 1' disclose" in capsys.readouterr().err

    def decisions(conn: sa.Connection) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in conn.execute(sa.text("SELECT who, operation, decision FROM audit_log WHERE kind = 'decision' ORDER BY id"))]

    assert await store.read(decisions) == [("Channel 5", "disclose", "permit"), ("Radio 1", "disclose", "deny")]


async def test_a_report_needs_the_owners_analytics_permit_and_is_audited(
    tmp_path: Path, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An owner whose rules stop short of analytics gets no report; either way the read is audited."""
    # Radio 1 (the quiz's owner) may answer its subscribers but not analyse them.
    policy = open_policy(["Channel 5", "Radio 1"])
    narrow = policy.replace(
        "name = 'Radio 1'\n[[data_user.rule]]\noperations = [\"read\", \"write\"]\n"
        'categories = ["contact", "participation", "declared", "free_text", "profile"]\n'
        'purposes = ["response", "marketing", "analytics"]',
        "name = 'Radio 1'\n[[data_user.rule]]\noperations = [\"read\", \"write\"]\n"
        'categories = ["contact", "participation", "declared", "free_text", "profile"]\n'
        'purposes = ["response"]',
    )
    assert narrow != policy
    (tmp_path / "policy.toml").write_text(narrow)
    await _filled(tmp_path, store, store_url)
    config = str(tmp_path / "gatewayd.toml")
    capsys.readouterr()
    assert await trio.to_thread.run_sync(_cli, "report", "final-vote", "--format", "json", "--config", config) == 0
    assert json.loads(capsys.readouterr().out)["campaign"] == "final-vote"
    assert await trio.to_thread.run_sync(_cli, "report", "quiz", "--config", config) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "does not let 'Radio 1' read participation for analytics" in captured.err

    def decisions(conn: sa.Connection) -> list[tuple[str, str, str, str]]:
        return [
            tuple(r)
            for r in conn.execute(sa.text("SELECT who, operation, purpose, decision FROM audit_log WHERE kind = 'decision' ORDER BY id"))
        ]

    assert await store.read(decisions) == [("Channel 5", "read", "analytics", "permit"), ("Radio 1", "read", "analytics", "deny")]


async def test_campaign_command_pauses_resumes_and_cancels(tmp_path: Path, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI acts on the store: an unknown campaign exits 1; a known one reports what changed."""
    await _filled(tmp_path, store, store_url)
    config = str(tmp_path / "gatewayd.toml")
    assert await trio.to_thread.run_sync(_cli, "campaign", "pause", "nope", "--config", config) == 1
    assert "no campaign called 'nope'" in capsys.readouterr().err
    for action, word in (("pause", "paused"), ("resume", "resumed"), ("cancel", "cancelled")):
        assert await trio.to_thread.run_sync(_cli, "campaign", action, "final-vote", "--config", config) == 0
        assert f"final-vote: 0 send(s) {word}, 0 queued MT(s) {word}" in capsys.readouterr().out
