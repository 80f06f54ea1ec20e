"""End to end over loopback: a vote, a quiz and a coupon campaign on one short code, a few hundred subscribers each.

The real daemon (:func:`gatewayd.app.serve`) runs in-process, bound over TCP to the SMSC
simulator. Simulated handsets send MOs through the simulator (Latin and Greek keywords,
GSM and UCS-2, single and concatenated) and read the replies the gateway submits,
reassembled from their parts. Every reply is checked, then the tallies in the store and
the reports once every receipt is in.
"""

from __future__ import annotations

import collections
import functools
import json
import textwrap
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import attrs
import pytest
import sqlalchemy as sa
import structlog
import trio

from gatewayd.app import Gateway, serve
from gatewayd.config import GatewayConfig, load_config
from gatewayd.report import report_command
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import CommandStatus
from gatewayd.smpp.pdus import Pdu, SubmitSm
from gatewayd.smpp.session import SessionConfig
from gatewayd.smpp.text import decode_short_message
from gatewayd.smpp.udh import concat_info
from profile_store.campaigns import record_totals
from profile_store.mt import outbox_counts
from tests.policy_fixtures import write_open_policy
from tests.system.harness import write_in_process_config

SHORT_CODE = "4160"
SUBSCRIBERS = 300
POOL = 250
CONCURRENCY = 64
#: Longest wait for one reply; the whole run is bounded separately.
REPLY_TIMEOUT = 20.0
#: Longest wait, once every reply is submitted, for the last delivery receipt to settle its MT.
RECEIPTS_TIMEOUT = 15.0

VOTE_NAME = "euro2004-final-vote"
QUIZ_NAME = "radio-quiz"
COUPON_NAME = "win-tickets"

VOTE = """
name = "euro2004-final-vote"
owner = "Channel 5 Interactive"
module = "vote"
project_type = "interactive-tv"
content = "interaction"
short_code = "4160"
keywords = ["VOTE", "ΨΗΦΟΣ"]
response = "Thanks! Your vote for {choice} is counted."
closed_response = "Voting is closed. Watch the results tonight."
[settings]
choices = { GRE = "Greece", POR = "Portugal", ESP = "Spain" }
votes_per_subscriber = 1
"""

QUIZ = """
name = "radio-quiz"
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
options = ["Athens", "Sparta", "Thebes"]
answer = "Athens"
[[settings.questions]]
text = "Capital of Portugal?"
options = ["Porto", "Lisbon", "Braga"]
answer = "B"
[[settings.questions]]
text = "Who won Euro 2004?"
options = ["Portugal", "Greece", "Spain"]
answer = "2"
"""

COUPON = """
name = "win-tickets"
owner = "Acme Tickets"
module = "coupon"
project_type = "mobile-marketing"
content = "advertising"
short_code = "4160"
keywords = ["WIN"]
response = "Congratulations! Your code: {{coupon}}"
[responses]
exhausted = "Sorry, all {pool} codes have been given out."
[settings]
codes_file = "{codes_file}"
"""

# Greek, so UCS-2, and longer than 70 characters: the reply goes out in two parts.
HELP = "4160: Στείλτε ΨΗΦΟΣ ή VOTE και GRE, POR ή ESP για να ψηφίσετε. Text QUIZ to play, WIN for a coupon, STOP to end."
# GSM and longer than 160 characters: the reply goes out in two parts.
NOT_UNDERSTOOD = (
    "Sorry, we did not understand your message. To vote text VOTE followed by GRE, POR or ESP; "
    "to play the quiz text QUIZ; for a free ticket text WIN. Text HELP for help."
)

SHORT_CODE_TABLE = """
[[short_code]]
code = "4160"
help = "{help}"
not_understood = "{not_understood}"
"""

# --- what the modules answer -------------------------------------------------------------

CHOICES = {"GRE": "Greece", "POR": "Portugal", "ESP": "Spain"}
THANKS = "Thanks! Your vote for {} is counted."
ALREADY_VOTED = "You have already voted, thank you! Your vote was for {}."
INVALID_CHOICE = "Sorry, that is not one of the choices. Send {} followed by one of: GRE (Greece), POR (Portugal), ESP (Spain)"

QUESTIONS = (
    ("Capital of Greece?", ("Athens", "Sparta", "Thebes"), 0),
    ("Capital of Portugal?", ("Porto", "Lisbon", "Braga"), 1),
    ("Who won Euro 2004?", ("Portugal", "Greece", "Spain"), 1),
)


def question(n: int) -> str:
    """The text of question ``n`` (0-based) as the quiz sends it."""
    text, options, _ = QUESTIONS[n]
    shown = " ".join(f"{i + 1}) {option}" for i, option in enumerate(options))
    return f"Q{n + 1}/{len(QUESTIONS)}: {text} {shown}"


def verdict(n: int, right: bool) -> str:
    """The verdict on an answer to question ``n``."""
    _, options, correct = QUESTIONS[n]
    return "Correct!" if right else f"Wrong, the answer was {options[correct]}."


CODE_PREFIX = "Congratulations! Your code: "
ALREADY_PREFIX = "You already have a code: "
EXHAUSTED = f"Sorry, all {POOL} codes have been given out."


# --- handsets: MOs out through the simulator, replies in from its submits ------------------


@attrs.frozen
class Mt:
    """A reply as the handset shows it."""

    text: str
    parts: int
    data_coding: int


@attrs.frozen
class Exchange:
    """One MO and the reply it got (None: no reply within the timeout)."""

    sent: str
    reply: Mt | None


class Handsets:
    """The subscribers' phones: reassemble each number's MTs, let a subscriber wait for the next one."""

    def __init__(self) -> None:
        self.inbox: dict[str, list[Mt]] = collections.defaultdict(list)
        self.parts_seen = 0
        self._partial: dict[tuple[str, int, int, int], dict[int, bytes]] = {}
        self._arrived: dict[str, trio.Event] = {}
        self.simulator: SmscSimulator | None = None

    def on_submit(self, pdu: Pdu) -> None:
        """The simulator's ``on_submit``: one accepted submit_sm, perhaps a part of a longer MT."""
        assert isinstance(pdu, SubmitSm), pdu
        self.parts_seen += 1
        number = pdu.destination_addr
        info, user_data = concat_info(esm_class=pdu.esm_class, payload=pdu.short_message, tlvs=pdu.tlvs)
        if info is None:
            self._received(number, Mt(decode_short_message(user_data, pdu.data_coding), 1, pdu.data_coding))
            return
        # Decode once all parts are in: a UCS-2 character never straddles parts, but be strict anyway.
        key = (number, info.reference, info.total, pdu.data_coding)
        parts = self._partial.setdefault(key, {})
        assert info.index not in parts, f"part {info.index} of an MT to {number} submitted twice"
        parts[info.index] = user_data
        if len(parts) == info.total:
            del self._partial[key]
            data = b"".join(parts[i] for i in range(1, info.total + 1))
            self._received(number, Mt(decode_short_message(data, pdu.data_coding), info.total, pdu.data_coding))

    def _received(self, number: str, mt: Mt) -> None:
        self.inbox[number].append(mt)
        event = self._arrived.pop(number, None)
        if event is not None:
            event.set()

    async def send(self, number: str, text: str) -> Exchange:
        """Send an MO from ``number`` (E.164 digits) and wait for the one reply it gets."""
        assert self.simulator is not None
        seen = len(self.inbox[number])
        statuses = await self.simulator.inject_mo(number, SHORT_CODE, text)
        assert statuses and all(s == CommandStatus.ESME_ROK for s in statuses), (number, text, statuses)
        with trio.move_on_after(REPLY_TIMEOUT):
            while len(self.inbox[number]) <= seen:
                await self._arrived.setdefault(number, trio.Event()).wait()
            return Exchange(text, self.inbox[number][seen])
        return Exchange(text, None)


def number(block: int, i: int) -> str:
    """A Greek mobile number, as digits (TON 1), distinct per block and index."""
    return f"30690{block}{i:06d}"


# --- the subscribers ------------------------------------------------------------------------


def vote_plan(i: int) -> tuple[str, list[str]]:
    """The choice voter ``i`` makes and the MOs they send, in order."""
    code = ("GRE", "GRE", "GRE", "GRE", "GRE", "POR", "POR", "POR", "ESP", "ESP")[i % 10]
    label = CHOICES[code]
    spellings = (
        f"VOTE {code}",
        f"vote {code.lower()}",
        f"Vote, {label}!",
        f"  vote    {code}  ",
        f"ΨΗΦΟΣ {code}",
        f"ψήφος {code.lower()}",
        f"Ψήφος: {label}.",
        f"VOTÉ {label.upper()}",
        f"#Vote!! {code.lower()}",
        f"ΨΗΦΟΣ {label}",
        f"vote,{code}",
        f"VOTE {label.lower()}",
    )
    texts = []
    if i % 37 == 3:
        texts.append("VOTE ITA" if i % 2 else "ψήφος Ιταλία")
    if i == 10:
        # Concatenated GSM: a vote padded far beyond one SMS.
        texts.append("VOTE " + "=" * 170 + f" {label}!")
    elif i == 11:
        # Concatenated UCS-2: Greek keyword, beyond 70 characters.
        texts.append("ψήφος " + "~" * 90 + f" {code.lower()}")
    else:
        texts.append(spellings[i % len(spellings)])
    if i % 6 == 1:
        other = "POR" if code != "POR" else "ESP"
        texts.append(f"Vote {other} please" if i % 4 == 1 else f"ΨΗΦΟΣ {CHOICES[other]}")
    return code, texts


def expected_vote_replies(code: str, texts: list[str]) -> list[str]:
    """The replies a voter for ``code`` gets to ``texts``: invalid choices until the vote counts, then refusals."""
    label = CHOICES[code]
    out, counted = [], False
    for text in texts:
        if counted:
            out.append(ALREADY_VOTED.format(label))
        elif "ITA" in text:
            out.append(INVALID_CHOICE.format("VOTE"))
        elif "Ιταλία" in text:
            out.append(INVALID_CHOICE.format("ΨΗΦΟΣ"))
        else:
            out.append(THANKS.format(label))
            counted = True
    return out


def answer_text(n: int, choice: int, style: int) -> str:
    """An answer to question ``n`` naming option ``choice`` by number, letter or text."""
    option = QUESTIONS[n][1][choice]
    return (
        str(choice + 1),
        "abc"[choice],
        f"{'ABC'[choice]})",
        f"{option.upper()}!",
        f" {option.lower()}. ",
        f"{'ABC'[choice]}) {option}",
    )[style % 6]


def quiz_plan(j: int) -> tuple[list[str], list[str], int]:
    """The MOs quiz player ``j`` sends, the replies they must get, and their final score."""
    sent, wanted, score = ["QUIZ"], [question(0)], 0
    for n in range(len(QUESTIONS)):
        right = bool(j >> n & 1)
        if n == 1 and j % 25 == 0:
            sent.append("maybe")
            wanted.append(f"Sorry, please reply with 1-3 or the text of an option. {question(1)}")
        if n == 2 and j % 40 == 7:
            sent.append("quiz")
            wanted.append(question(2))
        correct = QUESTIONS[n][2]
        sent.append(answer_text(n, correct if right else (correct + 1) % 3, j + n))
        score += right
        if n + 1 < len(QUESTIONS):
            wanted.append(f"{verdict(n, right)} {question(n + 1)}")
        else:
            wanted.append(f"{verdict(n, right)} You scored {score} out of {len(QUESTIONS)}.")
    if j % 30 == 0:
        sent.append("Quiz")
        wanted.append(f"You have already played: you scored {score} out of {len(QUESTIONS)}.")
    return sent, wanted, score


def coupon_plan(k: int) -> list[str]:
    """The claims coupon hunter ``k`` sends."""
    first = ("WIN", "win", "Win!", "  WIN  ")[k % 4]
    return [first, "WIN"] if k % 3 == 0 else [first]


MISC = (
    ("HELP", HELP),
    ("help", HELP),
    ("Help!", HELP),
    ("  help me please", HELP),
    ("HELLO", NOT_UNDERSTOOD),
    ("VOTEGRE", NOT_UNDERSTOOD),
    ("Κουίζ 1", NOT_UNDERSTOOD),
    ("B", NOT_UNDERSTOOD),
    ("2", NOT_UNDERSTOOD),
    ("Athens", NOT_UNDERSTOOD),
)


# --- the run --------------------------------------------------------------------------------


@attrs.define
class Run:
    """The subscribers of each campaign and what they exchanged with the gateway, by number."""

    handsets: Handsets
    votes: dict[str, tuple[str, list[Exchange]]] = attrs.Factory(dict)
    quiz: dict[str, list[Exchange]] = attrs.Factory(dict)
    coupons: dict[str, list[Exchange]] = attrs.Factory(dict)
    misc: dict[str, list[Exchange]] = attrs.Factory(dict)

    async def conversation(self, who: str, texts: list[str]) -> list[Exchange]:
        """Send the texts one at a time, each after the previous one's reply (or its timeout)."""
        return [await self.handsets.send(who, text) for text in texts]

    async def voter(self, i: int) -> None:
        code, texts = vote_plan(i)
        self.votes[number(1, i)] = (code, await self.conversation(number(1, i), texts))

    async def player(self, j: int) -> None:
        self.quiz[number(2, j)] = await self.conversation(number(2, j), quiz_plan(j)[0])

    async def hunter(self, k: int) -> None:
        self.coupons[number(3, k)] = await self.conversation(number(3, k), coupon_plan(k))

    async def other(self, m: int) -> None:
        self.misc[number(4, m)] = await self.conversation(number(4, m), [MISC[m][0]])


async def _in_turn(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run the jobs concurrently, at most ``limit`` at a time."""
    limiter = trio.CapacityLimiter(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            await job()

    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(one, job)


async def _until(predicate: Callable[[], Awaitable[bool]], seconds: float, what: Callable[[], Awaitable[str]]) -> None:
    """Poll an asynchronous condition every 0.1 s; after ``seconds`` fail, saying ``what`` was awaited."""
    with trio.move_on_after(seconds):
        while not await predicate():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"timed out after {seconds} s waiting until {await what()}")


def _write_setup(tmp_path: Path, port: int) -> GatewayConfig:
    campaigns = tmp_path / "campaigns.d"
    campaigns.mkdir()
    codes_file = tmp_path / "win-codes.txt"
    codes_file.write_text("# Euro 2004 final, one ticket each\n" + "".join(f"TKT-{n:04d}\n" for n in range(1, POOL + 1)), encoding="utf-8")
    sheets = {"vote.toml": VOTE, "quiz.toml": QUIZ, "coupon.toml": COUPON.format(codes_file=codes_file, pool=POOL)}
    for name, text in sheets.items():
        (campaigns / name).write_text(textwrap.dedent(text), encoding="utf-8")
    write_open_policy(tmp_path, ["Channel 5 Interactive", "Radio 1", "Acme Tickets"])
    extra = SHORT_CODE_TABLE.format(help=HELP, not_understood=NOT_UNDERSTOOD)
    return load_config(write_in_process_config(tmp_path, campaigns, port=port, node="e2e", extra=extra))


def _report(config: GatewayConfig, name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert report_command(config, name, "json") == 0
    return json.loads(capsys.readouterr().out)


def _mo_statuses(conn: sa.Connection) -> dict[str, int]:
    rows = conn.execute(sa.text("SELECT status, count(*) FROM mo_messages GROUP BY status"))
    return {str(status): int(n) for status, n in rows}


def _replies_of(conn: sa.Connection, campaign: str) -> list[tuple[int, str]]:
    """(id, text) of the campaign's MTs; ids grow in the order the MOs were processed."""
    rows = conn.execute(sa.text("SELECT id, text FROM mt_messages WHERE campaign = :c ORDER BY id"), {"c": campaign})
    return [(int(i), str(t)) for i, t in rows]


def _undelivered(conn: sa.Connection) -> str:
    """What became of the receipts of the MTs not delivered: which part each was matched to."""
    rows = conn.execute(
        sa.text(
            """
            SELECT m.id, m.status, s.msisdn, m.text, p.smsc_message_id, p.id AS part, d.mt_part_id AS matched_to, other.mt_id AS other_mt
            FROM mt_messages m
            JOIN subscribers s ON s.id = m.subscriber_id
            JOIN mt_parts p ON p.mt_id = m.id
            LEFT JOIN dlr_events d ON d.smsc = p.smsc AND d.smsc_message_id = p.smsc_message_id
            LEFT JOIN mt_parts other ON other.id = d.mt_part_id
            WHERE m.status != 'delivered' AND p.status != 'delivered'
            ORDER BY m.id
            """
        )
    ).all()
    elsewhere = [r for r in rows if r.matched_to is not None and r.matched_to != r.part]
    lines = [
        f"MT {r.id} ({r.status}) to {r.msisdn} {r.text[:32]!r}: receipt of {r.smsc_message_id} matched to MT {r.other_mt}"
        for r in elsewhere[:3]
    ]
    return f"{len(rows)} parts undelivered, {len(elsewhere)} of them because their receipt was matched to another MT's part; " + "; ".join(lines)


def _tally_lines(counts: dict[str, int]) -> list[dict[str, str]]:
    """The vote module's results as the JSON report shows them: most votes first, then the total."""
    total = sum(counts.values())
    order = list(CHOICES)
    ranked = sorted(order, key=lambda code: (-counts[code], order.index(code)))
    lines = [{"item": f"{CHOICES[c]} ({c})", "value": f"{counts[c]} ({100 * counts[c] / total:.1f}%)"} for c in ranked]
    return lines + [{"item": "Total votes", "value": str(total)}]


async def test_vote_quiz_and_coupon_campaigns_with_hundreds_of_subscribers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every MO of three concurrent campaigns gets exactly its reply; tallies and reports match the traffic."""
    started = time.monotonic()
    handsets = Handsets()
    simulator = SmscSimulator(system_id="e2e", password="e2e-pw", session_config=SessionConfig(window=100), on_submit=handsets.on_submit)
    handsets.simulator = simulator
    run = Run(handsets)
    timings: dict[str, float] = {}

    with trio.fail_after(150), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as outer:
            port = await outer.start(simulator.serve, "127.0.0.1", 0)
            config = _write_setup(tmp_path, port)
            async with trio.open_nursery() as daemon:
                gateway: Gateway = await daemon.start(functools.partial(serve, config, handle_signals=False))
                assert gateway.campaigns is not None and gateway.store is not None
                assert sorted(gateway.campaigns.status()["loaded"]) == sorted([VOTE_NAME, QUIZ_NAME, COUPON_NAME])
                assert gateway.campaigns.status()["failed"] == []
                with trio.fail_after(10):
                    await simulator.wait_bound()
                timings["start"] = time.monotonic() - started

                jobs: list[Callable[[], Awaitable[None]]] = []
                for s in range(SUBSCRIBERS):
                    jobs += [functools.partial(run.voter, s), functools.partial(run.player, s), functools.partial(run.hunter, s)]
                jobs += [functools.partial(run.other, m) for m in range(len(MISC))]
                # Interleave the campaigns so that all three run at once.
                await _in_turn(jobs, CONCURRENCY)
                timings["traffic"] = time.monotonic() - started - timings["start"]

                mos_sent = sum(len(x) for x in run.quiz.values()) + sum(len(x) for x in run.coupons.values())
                mos_sent += sum(len(x) for _, x in run.votes.values()) + sum(len(x) for x in run.misc.values())
                store = gateway.store

                async def all_sent() -> bool:
                    counts = await store.read(outbox_counts)
                    return sum(counts.values()) == mos_sent and set(counts) <= {"submitted", "delivered"}

                async def describe_sent() -> str:
                    return f"{mos_sent} replies are stored and submitted (outbox: {await store.read(outbox_counts)})"

                await _until(all_sent, 30, describe_sent)
                mo_status = await store.read(_mo_statuses)
                assert gateway.campaigns.engine is not None
                ids = gateway.campaigns.engine.campaign_ids
                vote_totals = await store.read(record_totals, ids[VOTE_NAME])
                coupon_mts = await store.read(_replies_of, COUPON_NAME)

                # Every receipt is in once every MT is delivered.
                delivered = False
                with trio.move_on_after(RECEIPTS_TIMEOUT):
                    while not (delivered := await store.read(outbox_counts) == {"delivered": mos_sent}):
                        await trio.sleep(0.1)
                undelivered = "" if delivered else await store.read(_undelivered)
                timings["receipts"] = time.monotonic() - started - timings["start"] - timings["traffic"]
                gateway.request_stop()
            outer.cancel_scope.cancel()

    # --- the replies ---------------------------------------------------------------------
    missing = [(who, x.sent) for group in (run.quiz, run.coupons, run.misc) for who, xs in group.items() for x in xs if x.reply is None]
    missing += [(who, x.sent) for who, (_, xs) in run.votes.items() for x in xs if x.reply is None]
    assert not missing, f"{len(missing)} MOs got no reply, e.g. {missing[:5]}"
    # Exactly one reply per MO: nothing came after the conversations ended.
    every = {**{w: xs for w, (_, xs) in run.votes.items()}, **run.quiz, **run.coupons, **run.misc}
    extra = {who: [mt.text for mt in handsets.inbox[who][len(xs):]] for who, xs in every.items() if len(handsets.inbox[who]) != len(xs)}
    assert not extra, f"replies nobody asked for: {dict(list(extra.items())[:5])}"
    assert set(handsets.inbox) == set(every), "an MT went to a number that sent nothing"
    assert handsets._partial == {}, "an MT arrived incomplete"

    # Votes: thanks with the right label, already voted, invalid choices; Greek ones in UCS-2.
    tally: collections.Counter[str] = collections.Counter()
    wrong_votes = []
    for who, (code, exchanges) in run.votes.items():
        want = expected_vote_replies(code, [x.sent for x in exchanges])
        got = [x.reply.text for x in exchanges if x.reply is not None]
        if got != want:
            wrong_votes.append((who, [x.sent for x in exchanges], got, want))
        tally[code] += 1
    assert not wrong_votes, f"{len(wrong_votes)} voters got other replies, e.g. {wrong_votes[:3]}"
    assert len(run.votes) == SUBSCRIBERS
    # The two concatenated votes were reassembled and counted.
    concatenated = {w: xs[0].sent for w, (_, xs) in run.votes.items() if len(simulator.mo_pdus(w, SHORT_CODE, xs[0].sent)) > 1}
    assert sorted(concatenated) == [number(1, 10), number(1, 11)]
    assert simulator.mo_pdus(number(1, 11), SHORT_CODE, concatenated[number(1, 11)])[0].data_coding == 8
    assert all(simulator.mo_pdus(number(1, 0), SHORT_CODE, text)[0].data_coding == 8 for text in ("ΨΗΦΟΣ GRE", "ψήφος por", "Ψήφος: Spain."))
    # A reply naming the Greek keyword cannot be GSM: it went as UCS-2, in two parts.
    greek_invalid = [x.reply for _, (_, xs) in run.votes.items() for x in xs if x.reply and "ΨΗΦΟΣ followed" in x.reply.text]
    assert greek_invalid and all(mt.data_coding == 8 and mt.parts == 2 for mt in greek_invalid)

    # Quiz: each question in order, the verdicts, the final score.
    wrong_quiz = []
    for j in range(SUBSCRIBERS):
        who = number(2, j)
        sent, want, score = quiz_plan(j)
        exchanges = run.quiz[who]
        got = [x.reply.text for x in exchanges if x.reply is not None]
        if [x.sent for x in exchanges] != sent or got != want:
            wrong_quiz.append((who, sent, got, want))
    assert not wrong_quiz, f"{len(wrong_quiz)} quiz players got other replies, e.g. {wrong_quiz[:2]}"

    # Coupons: a unique code of the pool per subscriber until it ran out, the same one again.
    pool = {f"TKT-{n:04d}" for n in range(1, POOL + 1)}
    holders: dict[str, str] = {}
    unlucky = []
    for who, exchanges in run.coupons.items():
        first = exchanges[0].reply.text  # type: ignore[union-attr]
        if first.startswith(CODE_PREFIX):
            code = first.removeprefix(CODE_PREFIX)
            holders[who] = code
            again = [ALREADY_PREFIX + code]
        else:
            assert first == EXHAUSTED, (who, first)
            unlucky.append(who)
            again = [EXHAUSTED]
        assert [x.reply.text for x in exchanges[1:]] == again * (len(exchanges) - 1), (who, exchanges)  # type: ignore[union-attr]
    assert len(holders) == POOL and len(unlucky) == SUBSCRIBERS - POOL
    assert set(holders.values()) == pool, "each code of the pool went to exactly one subscriber"
    # The exhaustion text only once the pool was empty: every code was handed out before the first refusal.
    last_code = max(i for i, text in coupon_mts if text.startswith(CODE_PREFIX))
    first_refusal = min(i for i, text in coupon_mts if text == EXHAUSTED)
    assert last_code < first_refusal

    # HELP and what no campaign claims.
    for m, (text, want) in enumerate(MISC):
        (exchange,) = run.misc[number(4, m)]
        assert exchange.reply is not None and exchange.reply.text == want, (text, exchange)
    help_mt = run.misc[number(4, 0)][0].reply
    not_understood_mt = run.misc[number(4, 4)][0].reply
    assert help_mt is not None and (help_mt.data_coding, help_mt.parts) == (8, 2)
    assert not_understood_mt is not None and (not_understood_mt.data_coding, not_understood_mt.parts) == (0, 2)

    # --- the store ------------------------------------------------------------------------
    assert mo_status == {"processed": mos_sent}
    assert {(t.kind, t.key): t.count for t in vote_totals} == {("vote", code): n for code, n in tally.items()}
    assert simulator.stats["receipts_lost"] == 0

    trouble = [(e["event"], e.get("error")) for e in logs if e.get("log_level") in ("warning", "error", "critical")]
    assert not trouble, f"the gateway logged {len(trouble)} warnings or errors, e.g. {trouble[:5]}"

    # --- delivery receipts and the reports ---------------------------------------------------
    assert delivered, (
        f"not every reply was settled delivered within {RECEIPTS_TIMEOUT} s "
        f"(receipts sent {simulator.stats['receipts_sent']}): {undelivered}"
    )
    vote_mos = sum(len(xs) for _, xs in run.votes.values())
    vote = _report(config, VOTE_NAME, capsys)
    assert (vote["participants"], vote["mos"], vote["mos_failed"]) == (SUBSCRIBERS, vote_mos, 0)
    assert (vote["responses_sent"], vote["response_rate"], vote["mts"]) == (vote_mos, 1.0, vote_mos)
    assert (vote["delivered"], vote["delivery_rate"], vote["mt_status"]) == (vote_mos, 1.0, {"delivered": vote_mos})
    assert vote["results"] == _tally_lines(tally)

    quiz_mos = sum(len(xs) for xs in run.quiz.values())
    quiz = _report(config, QUIZ_NAME, capsys)
    assert (quiz["participants"], quiz["mos"], quiz["responses_sent"], quiz["delivery_rate"]) == (SUBSCRIBERS, quiz_mos, quiz_mos, 1.0)
    right = [sum(j >> n & 1 for j in range(SUBSCRIBERS)) for n in range(len(QUESTIONS))]
    scores = [quiz_plan(j)[2] for j in range(SUBSCRIBERS)]
    assert quiz["results"] == [
        *(
            {"item": f"Q{n + 1} {QUESTIONS[n][0]}", "value": f"{right[n]} of {SUBSCRIBERS} right ({100 * right[n] / SUBSCRIBERS:.1f}%)"}
            for n in range(len(QUESTIONS))
        ),
        {"item": "Finished", "value": str(SUBSCRIBERS)},
        {"item": "Average score", "value": f"{sum(scores) / SUBSCRIBERS:.2f} of 3"},
    ]

    coupon_mos = sum(len(xs) for xs in run.coupons.values())
    coupon = _report(config, COUPON_NAME, capsys)
    assert (coupon["participants"], coupon["mos"], coupon["responses_sent"], coupon["delivery_rate"]) == (SUBSCRIBERS, coupon_mos, coupon_mos, 1.0)
    assert coupon["coupons"] == {"pool": POOL, "claimed": POOL, "redeemed": 0}
    assert coupon["results"] == [{"item": "Claim requests", "value": str(coupon_mos)}]

    total = time.monotonic() - started
    print(
        f"\ncampaigns e2e: {mos_sent} MOs from {3 * SUBSCRIBERS + len(MISC)} subscribers, {handsets.parts_seen} submit_sm; "
        f"start {timings['start']:.1f} s, traffic {timings['traffic']:.1f} s ({mos_sent / timings['traffic']:.0f} MO/s), "
        f"last receipts {timings['receipts']:.1f} s, total {total:.1f} s"
    )

