"""The campaign engine: routing, modules and their actions applied with each MO, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from gatewayd.campaigns import Campaigns
from gatewayd.config import load_config
from gatewayd.dispatch import Failed, Processed, process_mos
from gatewayd.plugins import ModuleRegistry, find_modules
from modules.api import ModuleResult, Reply
from profile_store.campaigns import record_totals
from profile_store.db import Store
from profile_store.mo import MoPartIn, store_mo_part
from profile_store.values import StoredMo
from tests.policy_fixtures import write_open_policy

VOTE = """
name = "final-vote"
owner = "Channel 5"
module = "vote"
project_type = "interactive-tv"
content = "interaction"
short_code = "4160"
keywords = ["VOTE", "ΨΗΦΟΣ"]
response = "Thanks! Your vote for {choice} is counted."
[settings]
choices = { GRE = "Greece", POR = "Portugal" }
"""

QUIZ = """
name = "quiz"
owner = "Radio 1"
module = "quiz"
project_type = "interactive-radio"
content = "interaction"
short_code = "4160"
keywords = ["QUIZ"]
response = "You scored {score} out of {total}."
[responses]
correct = "Correct!"
wrong = "Wrong, the answer was {answer}."
[[settings.questions]]
text = "Capital of Greece?"
options = ["Athens", "Sparta"]
answer = "Athens"
[[settings.questions]]
text = "Capital of Portugal?"
options = ["Porto", "Lisbon"]
answer = "B"
"""

COUPON = """
name = "coupons"
owner = "Acme"
module = "coupon"
project_type = "mobile-marketing"
content = "advertising"
short_code = "4160"
keywords = ["WIN"]
response = "Your code: {coupon}"
[settings]
codes = ["AAA111", "BBB222"]
"""

CLOSED = """
name = "old-poll"
owner = "Acme"
module = "vote"
project_type = "other"
content = "interaction"
short_code = "4160"
keywords = ["OLD"]
ends = 2004-07-04T21:00:00Z
closed_response = "Voting is closed."
[settings]
choices = { A = "A" }
"""

GATEWAY = """
[gateway]
state_dir = "{state}"
campaigns_dir = "{campaigns}"
campaigns_poll_interval = 0
[store]
url = "{url}"
dedupe_window = 0
[[short_code]]
code = "4160"
help = "4160: text VOTE, QUIZ or WIN. STOP to end."
not_understood = "Sorry, we did not understand. Text HELP."
"""


@attrs.define
class Harness:
    """A store, the campaigns of a directory, and a way to send MOs through the engine."""

    store: Store
    campaigns: Campaigns
    clock: float = 1_800_000_000.0
    refs: Any = attrs.Factory(lambda: itertools.count(1).__next__)

    async def send(self, *messages: tuple[str, str]) -> list[Processed | Failed]:
        """Store MOs (number, text), then process them as one batch; returns the outcomes."""
        mos: list[StoredMo] = []
        for number, text in messages:
            self.clock += 1
            part = MoPartIn(
                smsc="op", source_addr=number, source_addr_ton=1, short_code="4160", esm_class=0, data_coding=8,
                payload=text.encode("utf-16-be"), text=text, concat=None, sar=None, received_at=self.clock,
            )
            stored = await self.store.write(store_mo_part, part, self.clock, dedupe_window=0)
            assert stored.mo is not None
            mos.append(stored.mo)
        assert self.campaigns.engine is not None
        return await self.store.write(process_mos, mos, self.clock, self.campaigns.engine, lambda msisdn: self.refs() % 256)

    async def replies(self, outcome: Processed | Failed) -> list[str]:
        assert isinstance(outcome, Processed)

        def read(conn: sa.Connection) -> list[str]:
            rows = conn.execute(sa.text("SELECT text FROM mt_messages WHERE in_reply_to = :i ORDER BY id"), {"i": outcome.mo_id})
            return list(rows.scalars())

        return await self.store.read(read)

    async def ask(self, number: str, text: str) -> list[str]:
        """Send one MO and return the texts of its replies."""
        (outcome,) = await self.send((number, text))
        return await self.replies(outcome)


async def _harness(
    tmp_path: Path,
    store: Store,
    store_url: str,
    sheets: dict[str, str],
    registry: ModuleRegistry | None = None,
    *,
    gateway_extra: str = "",
) -> Harness:
    directory = tmp_path / "campaigns.d"
    directory.mkdir()
    for name, text in sheets.items():
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    path = tmp_path / "gatewayd.toml"
    path.write_text(GATEWAY.format(state=tmp_path / "state", campaigns=directory, url=store_url) + gateway_extra)
    if not (tmp_path / "policy.toml").exists():
        write_open_policy(tmp_path, ["Channel 5", "Radio 1", "Acme"])
    config = load_config(path)
    campaigns = Campaigns(store, config, registry=registry or find_modules(quiet=True))
    await campaigns.load()
    return Harness(store, campaigns)


@pytest.fixture
async def harness(tmp_path: Path, store: Store, store_url: str) -> Harness:
    return await _harness(tmp_path, store, store_url, {"vote.toml": VOTE, "quiz.toml": QUIZ, "coupon.toml": COUPON, "old.toml": CLOSED})


async def test_a_vote_is_counted_once_and_answered(harness: Harness) -> None:
    """A vote gets the sheet's response with the choice's label; a second vote is refused; the tally counts one."""
    assert await harness.ask("+306900000001", "vote gre") == ["Thanks! Your vote for Greece is counted."]
    second = await harness.ask("+306900000001", "VOTE POR")
    assert len(second) == 1 and "already voted" in second[0]
    assert await harness.ask("+306900000002", "ψήφος  Por!") == ["Thanks! Your vote for Portugal is counted."]
    cid = harness.campaigns.engine.campaign_ids["final-vote"]  # type: ignore[union-attr]
    totals = await harness.store.read(record_totals, cid)
    assert [(t.kind, t.key, t.count) for t in totals] == [("vote", "GRE", 1), ("vote", "POR", 1)]


async def test_a_quiz_runs_through_its_session_to_the_final_score(harness: Harness) -> None:
    """QUIZ asks the first question; bare answers go to the quiz through the session; the last gives the score."""
    first = await harness.ask("+306900000003", "QUIZ")
    assert "Capital of Greece?" in first[0]
    second = await harness.ask("+306900000003", "athens")
    assert second[0].startswith("Correct!") and "Capital of Portugal?" in second[0]
    final = await harness.ask("+306900000003", "A")
    assert final[0].startswith("Wrong, the answer was") and "You scored 1 out of 2." in final[0]
    # The session ended: a bare answer now reaches no campaign.
    assert await harness.ask("+306900000003", "B") == ["Sorry, we did not understand. Text HELP."]


async def test_two_mos_of_one_subscriber_in_one_batch_see_each_others_effects(harness: Harness) -> None:
    """The second MO of a batch sees the session and state the first one wrote."""
    start, answer = await harness.send(("+306900000004", "QUIZ"), ("+306900000004", "Athens"))
    assert "Capital of Greece?" in (await harness.replies(start))[0]
    assert isinstance(answer, Processed) and answer.route == "session:quiz"
    assert (await harness.replies(answer))[0].startswith("Correct!")


async def test_stop_ends_the_session_and_help_answers_anyone(harness: Harness) -> None:
    """STOP is answered and closes the open session; after it the short code sends nothing
    but keyword replies; HELP gets the short code's help text, opted out or not."""
    await harness.ask("+306900000005", "QUIZ")
    stop = await harness.ask("+306900000005", "stop")
    assert len(stop) == 1 and "4160" in stop[0]
    assert await harness.ask("+306900000005", "Athens") == []
    assert await harness.ask("+306900000005", "help") == ["4160: text VOTE, QUIZ or WIN. STOP to end."]
    assert await harness.ask("+306900000099", "help") == ["4160: text VOTE, QUIZ or WIN. STOP to end."]


async def test_coupons_are_handed_out_once_each_until_the_pool_is_empty(harness: Harness) -> None:
    """Each subscriber gets one code of the pool (the same on asking again) until none is left."""
    a = await harness.ask("+306900000006", "WIN")
    again = await harness.ask("+306900000006", "win please")
    b = await harness.ask("+306900000007", "WIN")
    none = await harness.ask("+306900000008", "WIN")
    codes = {a[0].split()[-1], b[0].split()[-1]}
    assert codes == {"AAA111", "BBB222"}
    assert a[0].split()[-1] in again[0]
    assert "all the codes" in none[0]


async def test_a_closed_campaign_answers_with_its_closed_response(harness: Harness) -> None:
    """Outside its window a campaign's keyword gets its closed response, and the MO is recorded with it."""
    (outcome,) = await harness.send(("+306900000009", "OLD A"))
    assert isinstance(outcome, Processed) and outcome.route == "closed:old-poll"
    assert await harness.replies(outcome) == ["Voting is closed."]
    cid = await harness.store.read(lambda conn: conn.execute(sa.text("SELECT campaign_id FROM mo_messages WHERE id = :i"), {"i": outcome.mo_id}).scalar_one())
    assert cid == harness.campaigns.engine.campaign_ids["old-poll"]  # type: ignore[union-attr]


class Broken:
    """A module that raises for one word and answers anything else."""

    @attrs.frozen
    class Settings:
        pass

    def handle(self, ctx: Any, message: Any) -> ModuleResult:
        if "boom" in message.args:
            raise ValueError("boom")
        if "junk" in message.args:
            return ModuleResult(("not an action",))  # type: ignore[arg-type]
        return ModuleResult((Reply("ok"),))


async def test_a_module_that_raises_fails_its_mo_alone(tmp_path: Path, store: Store, store_url: str) -> None:
    """A raising module, or one returning junk, fails its MO with the reason; the batch's other MOs are answered."""
    sheet = VOTE.replace('module = "vote"', 'module = "broken"').replace('[settings]\nchoices = { GRE = "Greece", POR = "Portugal" }', "")
    registry = ModuleRegistry(modules={"broken": Broken}, broken={})
    harness = await _harness(tmp_path, store, store_url, {"broken.toml": sheet}, registry)
    boom, fine, junk = await harness.send(("+306900000010", "VOTE boom"), ("+306900000011", "VOTE x"), ("+306900000012", "VOTE junk"))
    assert isinstance(boom, Failed) and "ValueError: boom" in boom.error
    assert isinstance(junk, Failed) and "not an action" in junk.error
    assert await harness.replies(fine) == ["ok"]


async def test_a_reload_swaps_campaigns_and_keeps_a_broken_sheet_running(harness: Harness, tmp_path: Path) -> None:
    """After a reload a new campaign answers, and a sheet broken meanwhile keeps its last good version."""
    directory = tmp_path / "campaigns.d"
    (directory / "vote.toml").write_text("name = [broken", encoding="utf-8")
    (directory / "more.toml").write_text(textwrap.dedent(VOTE).replace('"final-vote"', '"more"').replace('["VOTE", "ΨΗΦΟΣ"]', '["MORE"]'), encoding="utf-8")
    assert await harness.campaigns.reload()
    status = harness.campaigns.status()
    assert "more" in status["loaded"] and status["stale"] == ["final-vote"] and status["failed"]
    assert await harness.ask("+306900000013", "MORE gre") == ["Thanks! Your vote for Greece is counted."]
    assert await harness.ask("+306900000013", "VOTE gre") == ["Thanks! Your vote for Greece is counted."]


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
async def test_the_report_shows_participation_replies_and_the_tally(harness: Harness, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`gatewayd report` counts participants, MOs and responses and shows the module's tally, in every format."""
    import json

    import trio

    from alembic import command

    from gatewayd.report import report_command
    from profile_store.migrate import alembic_config

    await harness.ask("+306900000021", "VOTE GRE")
    await harness.ask("+306900000022", "VOTE GRE")
    await harness.ask("+306900000023", "VOTE POR")
    await harness.ask("+306900000023", "VOTE GRE")
    config = harness.campaigns.config
    # The fixture created the tables without the migrations: record them as current.
    await trio.to_thread.run_sync(lambda: command.stamp(alembic_config(config.store.url), "head"))
    capsys.readouterr()
    assert await trio.to_thread.run_sync(report_command, config, "final-vote", fmt) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        data = json.loads(out)
        assert (data["participants"], data["mos"], data["responses_sent"], data["response_rate"]) == (3, 4, 4, 1.0)
        assert data["results"][0] == {"item": "Greece (GRE)", "value": "2 (66.7%)"}
    elif fmt == "csv":
        assert "traffic,participants,3\n" in out and "results,Greece (GRE),2 (66.7%)\n" in out
    else:
        assert "participants    3" in out and "Portugal (POR)  1 (33.3%)" in out
    assert await trio.to_thread.run_sync(report_command, config, "no-such-campaign", fmt) == 1
