"""End to end over loopback: a 20,000-subscriber multicast while MOs for a vote keep arriving.

The daemon (:func:`gatewayd.app.serve`) runs in-process, bound over TCP to the SMSC
simulator, with a vote campaign on the short code. The simulator runs in a process of its
own (:mod:`tests.system.smsc_process`), as an operator's SMSC runs on a machine of its own:
on the daemon's event loop its work for every submit and receipt would count against the
daemon's latency. 20,000 subscribers hold a marketing opt-in for the owner of a multicast
campaign whose sheet is added once the vote's latency has been measured on an idle
gateway. Then:

1. the daemon's outbound scheduler materialises the send and the outbox sends it, paced by
   the SMSC's rate cap, while vote MOs keep arriving at the same offered rate as before and
   one recipient in :data:`RESPOND_EVERY` replies to the offer;
2. every vote gets exactly one reply, replies go out while the send's bulk MTs are queued
   (handed to the outbox by the commit that decided them), and every claim of the outbox
   that took a bulk MT left no due reply behind;
3. the simulator never saw more submits in any window than the rate cap and its burst allow
   (give or take :data:`JITTER`);
4. every MT of the send is delivered and every receipt matched;
5. the send-again comes due and goes to exactly the recipients who did not reply.

Latencies and rates are printed, not asserted (``-s`` shows them): the vote's p50/p99 MO ->
reply latency idle and under the multicast, and the rate the send achieved. The handsets'
times are those the simulator process stamped when it accepted each submit, on the
``time.monotonic`` clock both processes share.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import textwrap
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import attrs
import sqlalchemy as sa
import structlog
import trio

from gatewayd.app import Gateway, prepare_store, serve
from gatewayd.config import GatewayConfig, load_config
from gatewayd.ingest import InboundMessage
from gatewayd.privacy import PrivacyKeys, load_key
from gatewayd.smpp.constants import CommandStatus
from permissions import Evidence, OptIn, Scope
from permissions.obligations import keyed_number_hash
from profile_store import privacy as records
from profile_store.db import make_engine
from profile_store.mt_values import ClaimedMt
from profile_store.schema import mt_messages, subscribers
from tests.policy_fixtures import write_open_policy
from tests.system.harness import daemon_gc, write_in_process_config
from tests.system.smsc_process import SmscProcess, Submit

SHORT_CODE = "4160"
#: Subscribers opted in to the multicast's owner: the segment.
SUBSCRIBERS = 20_000
#: One recipient in RESPOND_EVERY replies to the offer as soon as it arrives.
RESPOND_EVERY = 40
#: The SMSC's rate cap (max_mt_per_second) and window; the token bucket's burst is the smaller.
RATE = 1_000.0
WINDOW = 100
BURST = min(RATE, WINDOW)
#: Seconds a submit may reach the simulator after its turn under the cap: submits whose turn
#: came while the daemon's event loop was busy leave together.
JITTER = 0.25
#: Vote MOs offered per second, idle and under the multicast, and how many while idle.
VOTE_RATE = 20.0
#: Enough that the idle p99 is not just the slowest of a few dozen.
IDLE_VOTES = 200
#: Votes before the idle ones, not measured: the outbox's first claim, once the binds are
#: up, loads this module in the store writer process (for ClaimLog), which takes a tenth of
#: a second that the first replies would wait for.
WARMUP_VOTES = 10
#: Seconds from a submit to its delivery receipt: operator SMSCs report delivery after the
#: submit_sm_resp, not with it.
RECEIPT_DELAY = 0.5
#: Hang guard for the whole test; every phase ends by itself long before.
TEST_MAX_SECONDS = 400

VOTE_OWNER = "Channel 5 Interactive"
OFFER_OWNER = "Acme Shoes"
OFFER_NAME = "summer-offers"
OFFER_TEXT = "Acme Shoes: 2 for 1 this weekend. Reply OFFER for a voucher, STOP to opt out."
AGAIN_TEXT = "Last chance: 2 for 1 on shoes ends tonight. Reply OFFER for a voucher."
VOUCHER = "Here is your voucher: SHOES-10."
CHOICES = {"GRE": "Greece", "POR": "Portugal", "ESP": "Spain"}
THANKS = "Thanks! Your vote for {} is counted."

VOTE = """
name = "final-vote"
owner = "Channel 5 Interactive"
module = "vote"
project_type = "interactive-tv"
content = "interaction"
short_code = "4160"
keywords = ["VOTE"]
response = "Thanks! Your vote for {choice} is counted."
[settings]
choices = { GRE = "Greece", POR = "Portugal", ESP = "Spain" }
votes_per_subscriber = 1
"""

OFFERS = f"""
name = "{OFFER_NAME}"
owner = "{OFFER_OWNER}"
module = "multicast"
project_type = "mobile-marketing"
content = "advertising"
short_code = "{SHORT_CODE}"
keywords = ["OFFER"]
response = "{VOUCHER}"
[settings]
text = "{OFFER_TEXT}"
send_at = [{{send_at}}]
quiet_hours = "00:00-00:00"
[settings.send_again]
after_hours = 1
times = 1
text = "{AGAIN_TEXT}"
"""


def recipient(i: int) -> str:
    """The i-th subscriber of the segment, as digits (TON 1)."""
    return f"30691{i:07d}"


def voter(i: int) -> str:
    """The i-th voter, as digits; voters hold no marketing opt-in."""
    return f"30692{i:07d}"


def responds(number: str) -> bool:
    """Whether a recipient replies to the offer."""
    return int(number[-7:]) % RESPOND_EVERY == 0


# --- the handsets and the SMSC's view ---------------------------------------------------------


class Handsets:
    """Every number's MTs as the simulator accepted them, and the submit times of all of them."""

    def __init__(self, responders: trio.MemorySendChannel[str]) -> None:
        self.inbox: dict[str, list[Submit]] = {}
        self.submit_times: list[float] = []
        self.offers = 0
        self.again = 0
        self.offers_started = trio.Event()
        self.offers_done = trio.Event()
        self._responders = responders
        self._waiting: dict[str, trio.Event] = {}

    def on_submit(self, submit: Submit) -> None:
        """Each submit the simulator accepted, in order: every MT here is one part."""
        self.submit_times.append(submit.at)
        text, number = submit.text, submit.to
        self.inbox.setdefault(number, []).append(submit)
        if text == OFFER_TEXT:
            self.offers += 1
            self.offers_started.set()
            if responds(number):
                self._responders.send_nowait(number)
            if self.offers == SUBSCRIBERS:
                self.offers_done.set()
        elif text == AGAIN_TEXT:
            self.again += 1
        event = self._waiting.pop(number, None)
        if event is not None:
            event.set()

    async def next_mt(self, number: str, seen: int) -> Submit:
        """Wait until ``number`` got more than ``seen`` MTs; the first new one."""
        while len(self.inbox.get(number, ())) <= seen:
            await self._waiting.setdefault(number, trio.Event()).wait()
        return self.inbox[number][seen]

    def texts(self, number: str) -> list[str]:
        """What ``number`` received, in order."""
        return [mt.text for mt in self.inbox.get(number, ())]


async def mo(simulator: SmscProcess, number: str, text: str) -> None:
    """Deliver an MO; the gateway acknowledges it once stored."""
    statuses = await simulator.inject_mo(number, SHORT_CODE, text)
    assert statuses == [CommandStatus.ESME_ROK], (number, text, statuses)


@attrs.define
class Votes:
    """Vote MOs at a steady offered rate, each from a new voter; the latency to each reply."""

    simulator: SmscProcess
    handsets: Handsets
    sent: int = 0
    latencies: dict[str, list[float]] = attrs.Factory(dict)
    #: Per phase, seconds from sending each vote to the gateway reading its deliver_sm.
    queued: dict[str, list[float]] = attrs.Factory(dict)
    _read_at: dict[str, float] = attrs.Factory(dict)
    _observer: Any = None

    def watch(self, gateway: Gateway) -> None:
        """Note when the gateway reads each vote MO (chained to the observer already there)."""
        self._observer = gateway.ingest.observer

        def observe(message: InboundMessage, status: int, elapsed: float) -> None:
            if not message.is_receipt and message.text.startswith("VOTE"):
                self._read_at[message.source_addr] = time.monotonic() - elapsed
            if self._observer is not None:
                self._observer(message, status, elapsed)

        gateway.ingest.observer = observe

    async def offer(self, phase: str, *, count: int | None = None, until: trio.Event | None = None) -> None:
        """Start a vote every 1/VOTE_RATE s, ``count`` of them or until ``until`` is set; wait for every reply."""
        latencies = self.latencies.setdefault(phase, [])
        queued = self.queued.setdefault(phase, [])
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            n = 0
            while (count is None or n < count) and (until is None or not until.is_set()):
                nursery.start_soon(self._vote, self.sent, latencies, queued)
                self.sent += 1
                n += 1
                await trio.sleep_until(start + n / VOTE_RATE)

    async def _vote(self, i: int, latencies: list[float], queued: list[float]) -> None:
        number = voter(i)
        choice = list(CHOICES)[i % len(CHOICES)]
        sent = time.monotonic()
        await mo(self.simulator, number, f"VOTE {choice}")
        reply = await self.handsets.next_mt(number, 0)
        latencies.append(reply.at - sent)
        queued.append(self._read_at[number] - sent)


async def respond(simulator: SmscProcess, numbers: trio.MemoryReceiveChannel[str]) -> None:
    """Each recipient that got the offer and responds sends OFFER at once."""
    async with trio.open_nursery() as nursery, numbers:
        async for number in numbers:
            nursery.start_soon(mo, simulator, number, "OFFER")


# --- the outbox's claims ----------------------------------------------------------------------


@attrs.frozen
class Claim:
    """One claim of the outbox: priorities in claim order, and the due replies it left queued."""

    priorities: tuple[int, ...]
    #: Replies (priority < 10) due and still queued after the claim.
    replies_left: int


_DUE_REPLIES = sa.text("SELECT count(*) FROM mt_messages WHERE status = 'queued' AND priority < 10 AND next_attempt_at <= :now")


class ClaimLog:
    """Wraps the outbox's screen, which every claim calls in its own transaction right after
    taking its rows, to record what each claim took and left behind. It runs where the store
    writer runs (another process), so it records into a file."""

    def __init__(self, screen: Callable[[sa.Connection, list[ClaimedMt], float], dict[int, Any]], path: Path) -> None:
        self.screen = screen
        self.path = path

    def __call__(self, conn: sa.Connection, mts: list[ClaimedMt], now: float) -> dict[int, Any]:
        replies_left = int(conn.execute(_DUE_REPLIES, {"now": now}).scalar_one())
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps([[mt.priority for mt in mts], replies_left]) + "\n")
        return self.screen(conn, mts, now)

    @property
    def claims(self) -> list[Claim]:
        """The claims so far, in order."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [Claim(tuple(priorities), left) for priorities, left in map(json.loads, lines)]


# --- setup ------------------------------------------------------------------------------------


def _write_setup(tmp_path: Path, port: int) -> GatewayConfig:
    campaigns = tmp_path / "campaigns.d"
    campaigns.mkdir()
    (campaigns / "vote.toml").write_text(textwrap.dedent(VOTE), encoding="utf-8")
    write_open_policy(tmp_path, [VOTE_OWNER, OFFER_OWNER])
    path = write_in_process_config(tmp_path, campaigns, port=port, node="multicast-e2e", window=WINDOW, rate=RATE)
    return load_config(path)


def _add_offers(config: GatewayConfig) -> None:
    """The multicast sheet, due a second ago."""
    assert config.campaigns_dir is not None
    send_at = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (config.campaigns_dir / "offers.toml").write_text(OFFERS.format(send_at=send_at), encoding="utf-8")


def _seed(config: GatewayConfig) -> None:
    """The segment: the subscribers, each with a marketing opt-in for the multicast's owner,
    recorded under the daemon's keyed number hash as a signup would."""
    prepare_store(config)
    keys = PrivacyKeys.derive(load_key(config.key_path))
    now = time.time()
    engine = make_engine(config.store.url)
    try:
        with engine.begin() as conn:
            rows = [{"msisdn": "+" + recipient(i), "created_at": now, "last_seen_at": now} for i in range(SUBSCRIBERS)]
            conn.execute(sa.insert(subscribers), rows)
            ids = {str(msisdn): int(sid) for msisdn, sid in conn.execute(sa.select(subscribers.c.msisdn, subscribers.c.id))}
            signup = [OptIn(Scope.of_owner(OFFER_OWNER), Evidence(at=now - 86400, note="signed up in store"))]
            for msisdn, sid in ids.items():
                records.append_consent(conn, keyed_number_hash(keys.number, msisdn), sid, signup, now)
    finally:
        engine.dispose()


# --- reading the store --------------------------------------------------------------------------


def _rows(sql: str, **params: Any) -> Callable[[sa.Connection], list[tuple[Any, ...]]]:
    def read(conn: sa.Connection) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]

    return read


def _sends(conn: sa.Connection) -> list[tuple[Any, ...]]:
    query = "SELECT id, parent_id, status, targeted FROM sends ORDER BY id"
    return [tuple(row) for row in conn.execute(sa.text(query))]


def _mt_status_of_send(send_id: int) -> Callable[[sa.Connection], dict[str, int]]:
    def read(conn: sa.Connection) -> dict[str, int]:
        rows = conn.execute(sa.text("SELECT status, count(*) FROM mt_messages WHERE send_id = :s GROUP BY status"), {"s": send_id})
        return {str(status): int(n) for status, n in rows}

    return read


def _open_work(conn: sa.Connection, mt_statuses: tuple[str, ...] = ("queued", "sending", "submitted")) -> tuple[int, int]:
    """MOs not yet processed, and MTs in ``mt_statuses`` (by default: not yet settled by a receipt)."""
    mos = conn.execute(sa.text("SELECT count(*) FROM mo_messages WHERE status = 'stored'")).scalar_one()
    mts = conn.execute(sa.select(sa.func.count()).select_from(mt_messages).where(mt_messages.c.status.in_(mt_statuses))).scalar_one()
    return int(mos), int(mts)


def _an_hour_earlier(conn: sa.Connection, send_id: int) -> None:
    conn.execute(sa.text("UPDATE sends SET started_at = started_at - 3600 WHERE id = :s"), {"s": send_id})


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float) -> None:
    """Poll ``check`` every 0.2 s until it holds; fail after ``seconds``."""
    with trio.move_on_after(seconds):
        while not await check():
            await trio.sleep(0.2)
        return
    raise AssertionError(f"timed out after {seconds} s waiting until {what}")


def _max_in_window(times: list[float], window: float) -> int:
    """The most submits within any ``window`` seconds."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


def _percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds (nearest rank)."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return rank(0.50), rank(0.99)


# --- the test -----------------------------------------------------------------------------------


async def test_a_multicast_to_20000_with_votes_arriving_then_a_send_again_to_non_responders(tmp_path: Path) -> None:
    started = time.monotonic()
    responder_send, responder_receive = trio.open_memory_channel[str](SUBSCRIBERS)
    handsets = Handsets(responder_send)
    simulator = SmscProcess(handsets.on_submit, system_id="e2e", password="e2e-pw", window=WINDOW, receipt_delay=RECEIPT_DELAY)
    votes = Votes(simulator, handsets)
    phases: dict[str, float] = {}

    with trio.fail_after(TEST_MAX_SECONDS), structlog.testing.capture_logs() as logs, daemon_gc():
        async with trio.open_nursery() as outer:
            port = await outer.start(simulator.run)
            config = _write_setup(tmp_path, port)
            await trio.to_thread.run_sync(_seed, config)
            phases["seed"] = time.monotonic() - started
            async with trio.open_nursery() as daemon:
                gateway: Gateway = await daemon.start(functools.partial(serve, config, handle_signals=False))
                votes.watch(gateway)
                store, campaigns, outbox = gateway.store, gateway.campaigns, gateway.outbox
                assert store is not None and campaigns is not None and outbox is not None and outbox.screen is not None
                claims = ClaimLog(outbox.screen, tmp_path / "claims.jsonl")
                outbox.screen = claims
                with trio.fail_after(10):
                    await simulator.wait_bound()

                # 1. The vote on an idle gateway (once warmed up).
                await votes.offer("warmup", count=WARMUP_VOTES)
                await votes.offer("idle", count=IDLE_VOTES)
                phases["idle"] = time.monotonic() - started

                # 2. The multicast, with the vote's MOs and the responders' replies arriving.
                await trio.to_thread.run_sync(_add_offers, config)
                assert await campaigns.reload()
                assert OFFER_NAME in campaigns.status()["loaded"]
                async with trio.open_nursery() as load:
                    load.start_soon(respond, simulator, responder_receive)
                    # The scheduler looks every few seconds: the send starts at its next look.
                    with trio.fail_after(30):
                        await handsets.offers_started.wait()
                    phases["send started"] = time.monotonic() - started
                    await votes.offer("multicast", until=handsets.offers_done)
                    responder_send.close()
                phases["send submitted"] = time.monotonic() - started

                ((first,),) = await store.read(_rows("SELECT id FROM sends WHERE parent_id IS NULL"))

                async def first_send_settled() -> bool:
                    return await store.read(_mt_status_of_send(first)) == {"delivered": SUBSCRIBERS}

                await _until(first_send_settled, "every MT of the send is delivered", 60)

                async def quiet() -> bool:
                    return await store.read(_open_work) == (0, 0)

                await _until(quiet, "every MO is processed and every reply delivered", 60)
                unmatched = await store.read(_rows("SELECT count(*) FROM dlr_events WHERE matched = :f", f=False))
                receipts = await store.read(_rows("SELECT count(*) FROM dlr_events"))
                statuses = await store.read(_rows("SELECT kind, status, count(*) FROM mt_messages GROUP BY kind, status"))
                phases["settled"] = time.monotonic() - started

                # 5. The send-again: due an hour after the send started. Rather than wait the
                # hour, the send's start is moved an hour back; the next ticks of the scheduler
                # create the follow-up and materialise it. Receipts were checked above; the
                # follow-up is about who gets it, so the SMSC sends none for it.
                await simulator.receipts(False)

                await store.write(_an_hour_earlier, first)

                async def follow_up_running() -> bool:
                    rows = await store.read(_sends)
                    return len(rows) == 2 and rows[1][2] in ("running", "done")

                await _until(follow_up_running, "the send-again is materialised", 30)
                (_, (again, parent, _, again_targeted)) = await store.read(_sends)
                assert parent == first
                materialised = await store.read(
                    _rows("SELECT s.msisdn FROM mt_messages m JOIN subscribers s ON s.id = m.subscriber_id WHERE m.send_id = :s", s=again)
                )

                async def follow_up_sent() -> bool:
                    return handsets.again >= len(materialised) and await store.read(_open_work, ("queued", "sending")) == (0, 0)

                await _until(follow_up_sent, "the send-again is submitted", 120)
                phases["send again"] = time.monotonic() - started
                simulator_stats = await simulator.stats()
                gateway.request_stop()
            outer.cancel_scope.cancel()

    trouble = [(e["event"], e.get("error")) for e in logs if e.get("log_level") in ("warning", "error", "critical")]
    assert not trouble, f"the gateway logged {len(trouble)} warnings or errors, e.g. {trouble[:5]}"

    # --- the vote: one reply each, and what the latency was --------------------------------------
    assert votes.sent == sum(len(v) for v in votes.latencies.values())
    assert len(votes.latencies["idle"]) == IDLE_VOTES and len(votes.latencies["multicast"]) > 0
    for i in range(votes.sent):
        label = CHOICES[list(CHOICES)[i % len(CHOICES)]]
        assert handsets.texts(voter(i)) == [THANKS.format(label)], voter(i)

    # --- replies overtake bulk: no claim took a bulk MT while a due reply waited -------------------
    took_bulk = [c for c in claims.claims if any(p >= 10 for p in c.priorities)]
    assert took_bulk, "the outbox claimed no bulk MT"
    skipped = [c for c in took_bulk if c.replies_left]
    assert not skipped, f"claims took bulk MTs while replies waited: {skipped[:3]}"
    for claim in claims.claims:
        assert list(claim.priorities) == sorted(claim.priorities), claim
    # Replies reach the outbox claimed by their own commit (or through a claim, as above); the
    # whole send is queued at once, so a reply submitted between its first and last MT
    # overtook queued bulk.
    offer_times = sorted(mt.at for received in handsets.inbox.values() for mt in received if mt.text == OFFER_TEXT)
    overtaking = [
        mt.at for i in range(votes.sent) for mt in handsets.inbox.get(voter(i), ()) if offer_times[0] < mt.at < offer_times[-1]
    ]
    assert overtaking, "no reply went out while bulk MTs were queued: the test proved nothing about priority"

    # --- the rate cap, as the SMSC saw it ------------------------------------------------------
    for window in (1.0, 2.0, 5.0):
        most = _max_in_window(handsets.submit_times, window)
        allowed = RATE * (window + JITTER) + BURST
        assert most <= allowed, f"{most} submits within {window} s; the cap allows {allowed:.0f}"

    # --- the send: each recipient once, every receipt matched -----------------------------------------
    numbers = [recipient(i) for i in range(SUBSCRIBERS)]
    responders = {n for n in numbers if responds(n)}
    assert set(handsets.inbox) == set(numbers) | {voter(i) for i in range(votes.sent)}, "an MT went to a number outside the test"
    assert handsets.offers == SUBSCRIBERS
    assert all(handsets.texts(n)[0] == OFFER_TEXT for n in numbers)
    for n in responders:
        assert handsets.texts(n)[:2] == [OFFER_TEXT, VOUCHER], n
    assert unmatched == [(0,)]
    assert simulator_stats.get("receipts_lost", 0) == 0 and simulator_stats["receipts_sent"] == receipts[0][0]
    mts = sum(n for _, _, n in statuses)
    assert receipts == [(mts,)], "an MT of the send or a reply got no receipt"
    assert {(kind, status) for kind, status, _ in statuses} == {("marketing", "delivered"), ("response", "delivered")}

    # --- the send-again: exactly the recipients who did not reply ---------------------------------------
    non_responders = set(numbers) - responders
    assert again_targeted == len(non_responders)
    assert {m.removeprefix("+") for (m,) in materialised} == non_responders
    assert handsets.again == len(non_responders)
    got_again = {n for n, inbox in handsets.inbox.items() if any(mt.text == AGAIN_TEXT for mt in inbox)}
    assert got_again == non_responders
    assert all(handsets.texts(n) == [OFFER_TEXT, AGAIN_TEXT] for n in non_responders)
    assert all(handsets.texts(n) == [OFFER_TEXT, VOUCHER] for n in responders)

    idle, load = _percentiles(votes.latencies["idle"]), _percentiles(votes.latencies["multicast"])
    assert all(len(votes.queued[phase]) == len(votes.latencies[phase]) for phase in votes.latencies)
    idle_queued, load_queued = _percentiles(votes.queued["idle"]), _percentiles(votes.queued["multicast"])
    offers = sorted(mt.at for n in numbers for mt in handsets.inbox[n] if mt.text == OFFER_TEXT)
    achieved = len(offers) / max(offers[-1] - offers[0], 1e-9)
    print(
        f"\nmulticast e2e: {SUBSCRIBERS:,} recipients at max_mt_per_second {RATE:,.0f} (burst {BURST:.0f}): "
        f"{achieved:,.0f} MT/s achieved over the send ({offers[-1] - offers[0]:.1f} s); "
        f"most submits in 1 s: {_max_in_window(handsets.submit_times, 1.0)}\n"
        f"vote MO -> reply latency at {VOTE_RATE:.0f} MO/s offered: idle p50 {idle[0]:.0f} ms p99 {idle[1]:.0f} ms "
        f"({len(votes.latencies['idle'])} votes); under the multicast p50 {load[0]:.0f} ms p99 {load[1]:.0f} ms "
        f"({len(votes.latencies['multicast'])} votes); p99 ratio {load[1] / idle[1]:.1f}x\n"
        f"of which before the gateway read the MO (the SMSC's queue; its window is shared with receipts): "
        f"idle p50 {idle_queued[0]:.0f} ms p99 {idle_queued[1]:.0f} ms; under the multicast p50 {load_queued[0]:.0f} ms "
        f"p99 {load_queued[1]:.0f} ms\n"
        f"claims: {len(claims.claims)}; {len(overtaking)} replies went out while bulk MTs were queued; "
        f"send-again to {len(non_responders):,} non-responders ({len(responders)} replied)\n"
        f"phases (s since start): " + ", ".join(f"{name} {at:.1f}" for name, at in phases.items())
    )
