"""The privacy policy in the engine: consent keywords, opt-out erasure, the under-age rule,
policy refusals, confirmed opt-in, MYDATA, and the consent check at submit time."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.config import KeywordsConfig
from gatewayd.privacy import IDLE_UNIT, run_idle_erasure, run_obligations
from permissions import Scope, decide_keyword, Evidence, ConsentState, OptOut
from profile_store import privacy as records
from profile_store.db import Store
from profile_store.mt import MtRequest, claim_due, enqueue_mt
from routing.outcomes import GlobalKeyword
from routing.router import route
from routing.table import RoutingTable
from tests.gatewayd.test_engine import CLOSED, COUPON, QUIZ, VOTE, Harness, _harness
from tests.policy_fixtures import open_policy

ALERTS = """
name = "news"
owner = "Acme"
module = "alerts"
project_type = "mobile-marketing"
content = "information"
short_code = "4160"
keywords = ["ALERTS"]
opt_in = "confirmed"
opt_in_request = "Reply YES to get {campaign} alerts."
[settings]
topics = { NEWS = "Breaking news" }
default_topic = "NEWS"
"""

AGE_POLL = """
name = "age-poll"
owner = "Channel 5"
module = "poll"
project_type = "interactive-tv"
content = "interaction"
short_code = "4160"
keywords = ["AGE"]
[[settings.questions]]
text = "Your age?"
options = ["10-13", "14-17", "18+"]
declares = "age_band"
"""

SHEETS = {"vote.toml": VOTE, "quiz.toml": QUIZ, "coupon.toml": COUPON, "old.toml": CLOSED, "alerts.toml": ALERTS, "age.toml": AGE_POLL}
NUMBER = "+306900000777"


@pytest.fixture
async def harness(tmp_path: Path, store: Store, store_url: str) -> Harness:
    return await _harness(tmp_path, store, store_url, SHEETS, gateway_extra='\n[keywords]\nstop = ["STOP", "END", "STOPALL", "ΣΤΟΠ"]\n')


async def _read(h: Harness, sql: str, **params: Any) -> list[Any]:
    def read(conn: sa.Connection) -> list[Any]:
        return list(conn.execute(sa.text(sql), params))

    return await h.store.read(read)


async def _subscriber(h: Harness, number: str = NUMBER) -> int:
    (row,) = await _read(h, "SELECT id FROM subscribers WHERE msisdn = :n", n=number)
    return int(row[0])


async def test_lower_case_stop_mid_quiz_gets_one_confirmation_and_erases_the_quiz_profile(harness: Harness) -> None:
    """STOP wins over the open quiz session: one confirmation, the session ends, the quiz's
    local profile goes, the vote's too, and nothing more is answered on the short code."""
    assert (await harness.ask(NUMBER, "VOTE GRE"))[0].startswith("Thanks!")
    assert "Capital of Greece?" in (await harness.ask(NUMBER, "QUIZ"))[0]
    assert (await harness.ask(NUMBER, "athens"))[0].startswith("Correct!")
    sid = await _subscriber(harness)
    assert await _read(harness, "SELECT campaign_id FROM campaign_state WHERE subscriber_id = :s", s=sid)
    stop = await harness.ask(NUMBER, "stop")
    assert len(stop) == 1 and "unsubscribed" in stop[0]
    assert await harness.ask(NUMBER, "Lisbon") == []
    assert await harness.ask(NUMBER, "VOTE POR") == []
    assert await _read(harness, "SELECT * FROM campaign_state WHERE subscriber_id = :s", s=sid) == []
    assert await _read(harness, "SELECT * FROM sessions WHERE subscriber_id = :s", s=sid) == []
    # The vote still counts in the tally, but no longer says whose it was.
    assert await _read(harness, "SELECT subscriber_id FROM campaign_records WHERE kind = 'vote'") == [(None,)]
    ledger = await _read(harness, "SELECT event, scope_kind, scope_short_code, keyword, mo_id FROM consent_events")
    assert [(e, k, c, w) for e, k, c, w, _ in ledger] == [("opt_out", "short_code", "4160", "STOP")]
    kinds = [row[0] for row in await _read(harness, "SELECT kind FROM audit_log ORDER BY id")]
    assert "consent" in kinds and kinds.count("erasure") == 2 and "obligation" in kinds
    assert (await harness.store.read(records.verify_audit)).broken_id is None


@pytest.mark.parametrize("text", ["STOP", "stop", "Stop!", " end ", "ΣΤΟΠ", "στοπ", "Στόπ.", "STOPALL"])
async def test_every_stop_word_opts_out_with_one_reply(harness: Harness, text: str) -> None:
    """Each configured stop word, in any case, with accents or punctuation, gets one confirmation and stops the replies."""
    assert len(await harness.ask(NUMBER, "VOTE GRE")) == 1
    assert len(await harness.ask(NUMBER, text)) == 1
    assert await harness.ask(NUMBER, "WIN") == []


async def test_stop_keyword_stops_one_campaign_and_start_restores(harness: Harness) -> None:
    """STOP QUIZ leaves the vote answering; START QUIZ lets the quiz answer again."""
    assert len(await harness.ask(NUMBER, "STOP QUIZ")) == 1
    outcome, = await harness.send((NUMBER, "QUIZ"))
    assert outcome.route == "opted_out:quiz" and await harness.replies(outcome) == []
    assert (await harness.ask(NUMBER, "VOTE GRE"))[0].startswith("Thanks!")
    assert "subscribed" in (await harness.ask(NUMBER, "START QUIZ"))[0]
    assert "Capital of Greece?" in (await harness.ask(NUMBER, "QUIZ"))[0]


async def test_start_restores_the_short_code(harness: Harness) -> None:
    await harness.ask(NUMBER, "STOP")
    assert await harness.ask(NUMBER, "VOTE GRE") == []
    assert len(await harness.ask(NUMBER, "start")) == 1
    assert (await harness.ask(NUMBER, "VOTE GRE"))[0].startswith("Thanks!")


async def test_repeated_stops_each_get_exactly_one_reply(harness: Harness) -> None:
    replies = [await harness.ask(NUMBER, "STOP") for _ in range(3)]
    assert [len(r) for r in replies] == [1, 1, 1]
    assert len(await _read(harness, "SELECT id FROM consent_events WHERE event = 'opt_out'")) == 3


async def test_confirmed_opt_in_needs_yes_and_yes_in_a_quiz_is_an_answer(harness: Harness) -> None:
    """Joining a confirmed list asks for YES; YES confirms; a YES with nothing pending in a
    session goes to the session's campaign."""
    first = await harness.ask(NUMBER, "ALERTS")
    assert any("Reply YES to get news alerts." == text for text in first)
    sid = await _subscriber(harness)
    ledger = lambda: harness.store.read(records.load_consent, [harness.campaigns.privacy.number_hash(NUMBER)])  # type: ignore[union-attr]  # noqa: E731
    ref = harness.campaigns.privacy.refs["news"]  # type: ignore[union-attr]
    assert not (await ledger())[harness.campaigns.privacy.number_hash(NUMBER)].allows_marketing(ref)  # type: ignore[union-attr]
    confirmed = await harness.ask(NUMBER, "yes")
    assert len(confirmed) == 1 and "confirmed" in confirmed[0]
    assert (await ledger())[harness.campaigns.privacy.number_hash(NUMBER)].allows_marketing(ref)  # type: ignore[union-attr]
    assert "nothing to confirm" in (await harness.ask(NUMBER, "YES"))[0]
    assert sid
    other = "+306900000778"
    await harness.ask(other, "QUIZ")
    outcome, = await harness.send((other, "yes"))
    assert outcome.route == "session:quiz"


async def test_under_age_declaration_stops_the_gateway_operating(harness: Harness) -> None:
    """A declared age band under 14 gets the fixed reply and no profile is written after it."""
    assert "Your age?" in (await harness.ask(NUMBER, "AGE"))[0]
    await harness.ask(NUMBER, "10-13")
    sid = await _subscriber(harness)
    assert await _read(harness, "SELECT name, value FROM subscriber_attributes WHERE subscriber_id = :s", s=sid) == [("age_band", "10-13")]
    before = await _read(harness, "SELECT COUNT(*) FROM campaign_records WHERE subscriber_id = :s", s=sid)
    outcome, = await harness.send((NUMBER, "VOTE GRE"))
    assert outcome.route == "under_age"
    assert await harness.replies(outcome) == ["Sorry, this service is for people aged 14 and over."]
    assert await _read(harness, "SELECT COUNT(*) FROM campaign_records WHERE subscriber_id = :s", s=sid) == before
    assert await _read(harness, "SELECT operation FROM audit_log WHERE kind = 'obligation'") == [("minimum_age",)]
    # STOP and HELP still work for them.
    assert len(await harness.ask(NUMBER, "HELP")) == 1


async def test_mydata_reports_what_is_held_and_the_opt_out(harness: Harness) -> None:
    await harness.ask(NUMBER, "VOTE GRE")
    await harness.ask(NUMBER, "QUIZ")
    await harness.ask(NUMBER, "STOP QUIZ")
    (summary,) = await harness.ask(NUMBER, "mydata")
    assert "final-vote" in summary and "opted out of: campaign 'quiz'" in summary
    assert "quiz," not in summary  # the quiz's local profile was erased with the opt-out
    assert NUMBER not in summary
    assert await _read(harness, "SELECT operation FROM audit_log WHERE kind = 'export'") == [("mydata",)]


async def test_queued_mts_are_suppressed_at_submit_time_after_stop(harness: Harness) -> None:
    """MTs queued before a STOP are cancelled when claimed; the STOP confirmation goes; a
    marketing MT needs a standing opt-in."""
    await harness.ask(NUMBER, "ALERTS")
    await harness.ask(NUMBER, "YES")
    now = harness.clock + 1

    def queue(conn: sa.Connection) -> list[int]:
        return [
            enqueue_mt(conn, MtRequest(msisdn=NUMBER, source_addr="4160", text="Breaking!", campaign="news", kind="marketing"), now, concat_ref=1).id,
            enqueue_mt(conn, MtRequest(msisdn="+306900000779", source_addr="4160", text="Breaking!", campaign="news", kind="marketing"), now, concat_ref=2).id,
        ]

    queued_to_member, queued_to_stranger = await harness.store.write(queue)
    (stop,) = await harness.send((NUMBER, "STOP"))
    claimed = await harness.store.write(
        functools.partial(claim_due, node="n", now=harness.clock + 2, limit=100, lease=60, screen=harness.campaigns.engine.screen)
    )
    sent = {mt.id for mt in claimed}
    assert set(stop.mt_ids) <= sent  # the one confirmation
    assert queued_to_member not in sent and queued_to_stranger not in sent
    rows = dict(await _read(harness, "SELECT id, last_error FROM mt_messages WHERE status = 'cancelled'"))
    assert "opted out" in rows[queued_to_member] and "marketing opt-in" in rows[queued_to_stranger]
    # Every earlier reply to the subscriber was queued before the STOP and is suppressed too.
    statuses = await _read(harness, "SELECT kind, status FROM mt_messages WHERE id NOT IN (:a, :b)", a=queued_to_member, b=queued_to_stranger)
    assert {(k, s) for k, s in statuses} == {("response", "cancelled"), ("keyword", "sending")}


async def test_a_campaign_whose_owner_may_not_write_has_its_writes_refused_and_audited(tmp_path: Path, store: Store, store_url: str) -> None:
    """The policy lets the owner answer but not keep anything: the vote is answered, not counted; refusals are audited."""
    (tmp_path / "policy.toml").write_text(
        '[[data_user]]\nname = "Channel 5"\n[[data_user.rule]]\noperations = ["read"]\ncategories = ["contact"]\npurposes = ["response"]\n'
    )
    h = await _harness(tmp_path, store, store_url, {"vote.toml": VOTE})
    assert (await h.ask(NUMBER, "VOTE GRE"))[0].startswith("Thanks!")
    assert await _read(h, "SELECT * FROM campaign_records") == []
    refusals = await _read(h, "SELECT who, operation, category, reason FROM audit_log WHERE kind = 'decision'")
    assert ("Channel 5", "write", "participation", "no_rule") in refusals


async def test_a_campaign_of_an_unknown_owner_sends_nothing(tmp_path: Path, store: Store, store_url: str) -> None:
    (tmp_path / "policy.toml").write_text(open_policy(["Somebody Else"]))
    h = await _harness(tmp_path, store, store_url, {"vote.toml": VOTE})
    assert await h.ask(NUMBER, "VOTE GRE") == []
    reasons = {row[0] for row in await _read(h, "SELECT reason FROM audit_log WHERE kind = 'decision'")}
    assert reasons == {"unknown_user"}


async def test_idle_subscribers_are_erased_after_twelve_months_keeping_their_opt_out(harness: Harness) -> None:
    """Twelve months without an MO: everything about the subscriber goes but the opt-out,
    which still silences the number when it comes back."""
    await harness.ask(NUMBER, "VOTE GRE")
    await harness.ask(NUMBER, "STOP")
    await harness.ask("+306900000780", "VOTE POR")
    privacy = harness.campaigns.privacy
    assert privacy is not None
    eleven_months = harness.clock + 334 * 86400
    assert await harness.store.write(run_idle_erasure, privacy, eleven_months) == 0
    a_year = harness.clock + 366 * 86400
    assert await harness.store.write(run_idle_erasure, privacy, a_year) == 2
    assert await harness.store.write(run_idle_erasure, privacy, a_year) == 0  # idempotent
    assert await _read(harness, "SELECT msisdn FROM subscribers") == []
    assert await _read(harness, "SELECT event, subscriber_id FROM consent_events") == [("opt_out", None)]
    harness.clock = a_year
    assert await harness.ask(NUMBER, "VOTE GRE") == []
    assert (await harness.ask("+306900000780", "VOTE POR"))[0].startswith("Thanks!")


# --- the keyword layer, without a database ---------------------------------------------------

_KEYWORDS = KeywordsConfig(stop=("STOP", "END", "STOPALL", "ΣΤΟΠ"))
_TABLE, _ = RoutingTable.build((), (), _KEYWORDS.global_keywords())


def _noise() -> st.SearchStrategy[str]:
    return st.sampled_from(["", "!", ".", "  ", "?!", " ..."])


def _spelling(word: str) -> st.SearchStrategy[str]:
    accents = {"Σ": "σ", "Τ": "τ", "Ο": "όο", "Π": "π", "O": "oóö", "S": "s", "T": "t", "P": "p", "E": "eé", "N": "n", "D": "d", "A": "aá", "L": "l", "R": "r"}

    def letters(char: str) -> st.SearchStrategy[str]:
        return st.sampled_from([char, *accents.get(char, "")])

    return st.tuples(*[letters(c) for c in word]).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["STOP", "END", "ΣΤΟΠ", "STOPALL", "START", "HELP"]).flatmap(lambda w: st.tuples(st.just(w), _spelling(w))),
    _noise(),
    _noise(),
)
def test_consent_keywords_in_any_spelling_reach_the_ledger(word_and_spelling: tuple[str, str], before: str, after: str) -> None:
    """Case, accents and surrounding punctuation or spaces do not hide a consent keyword; a
    stop word opts out of the short code (STOPALL of everything) with one reply."""
    word, spelling = word_and_spelling
    outcome = route(_TABLE, "4160", f"{before.strip()}{spelling}{after}", 0.0, None)
    assert isinstance(outcome, GlobalKeyword) and outcome.word == word
    decided = decide_keyword(outcome.kind, outcome.word, None, ConsentState.empty(), Evidence(at=1.0, short_code="4160"))
    if outcome.kind == "stop":
        (event,) = decided.events
        assert isinstance(event, OptOut)
        assert event.scope == (Scope(kind="all") if word == "STOPALL" else Scope.of_short_code("4160"))
    assert decided.reply is not None


async def test_a_scheduled_run_erases_in_units_and_audits_itself(harness: Harness) -> None:
    """run_obligations works through the idle subscribers in units and audits each run, even an empty one."""
    for n in range(5):
        await harness.ask(f"+30690000090{n}", "VOTE GRE")
    privacy = harness.campaigns.privacy
    assert privacy is not None
    a_year = harness.clock + 366 * 86400
    assert await run_obligations(harness.store, privacy, a_year, batch=2) == 5
    assert await run_obligations(harness.store, privacy, a_year, batch=2) == 0
    runs = await _read(harness, "SELECT operation, detail FROM audit_log WHERE kind = 'obligation' ORDER BY id")
    assert runs == [("erase_idle", "5 subscribers; idle 12 months"), ("erase_idle", "0 subscribers; idle 12 months")]
    assert (await harness.store.read(records.verify_audit)).broken_id is None


async def test_a_scheduled_run_erases_every_idle_subscriber_in_short_units() -> None:
    """By default a unit erases IDLE_UNIT (50) subscribers, so the store's writer is never
    held long; the run goes on until a unit comes back short, so it still erases them all."""
    assert IDLE_UNIT == 50

    class Units:
        """A store whose idle subscribers are a count: each unit erases up to its limit."""

        def __init__(self, idle: int) -> None:
            self.idle = idle
            self.units: list[int] = []

        async def write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            if fn is run_idle_erasure:
                done = min(kwargs["limit"], self.idle)
                self.idle -= done
                self.units.append(done)
                return done
            return None

    store = Units(2 * IDLE_UNIT + 3)
    privacy = SimpleNamespace(policy=SimpleNamespace(obligations=SimpleNamespace(erase_after_months=12)))
    assert await run_obligations(store, privacy, 0.0) == 2 * IDLE_UNIT + 3  # type: ignore[arg-type]
    assert store.units == [IDLE_UNIT, IDLE_UNIT, 3]
