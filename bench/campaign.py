"""A vote campaign end to end: MO in, vote counted, reply out, on SQLite.

The gateway runs as its own process (``python -m gatewayd run``) with one vote campaign
(keyword VOTE, choices GRE/POR/ESP, one vote per subscriber) and a SQLite database in a
temporary directory; the SMSC is a simulator in this process. Every subscriber is a distinct
number that sends one "VOTE <choice>" and gets one reply. A reply is committed to the outbox
with its MO before it is submitted, so a reply that reaches the simulator is already durable.

* Closed loop: 100 senders, each sending its next MO when the previous deliver_sm_resp
  came back (window 100). Reported: replies received per second from the first MO sent to
  the last reply's submit_sm, and MOs acknowledged per second.
* Offered rate: another set of subscribers at a fixed rate. Reported: MO->MT latency, from
  sending the deliver_sm to receiving the reply's submit_sm (matched by the number).

Delivery receipts are on by default: the simulator sends one for every reply and the gateway
stores and matches it, as it would in production. After stopping the gateway the database is
read to check that every MO was processed, every reply row exists, and to print the tally.

    python bench/campaign.py                 # 100,000 subscribers closed loop, 20,000 at 1,000/s
    python bench/campaign.py --quick         # 10,000 subscribers closed loop, 5,000 at 1,000/s
    python bench/campaign.py --no-receipts   # the simulator sends no delivery receipts
    python bench/campaign.py --quick --rate 100 --offered-count 3000   # latency below saturation
    python bench/campaign.py --keep          # keep the temporary directory (database, log)
    python bench/campaign.py --writer thread # the store writer on a thread of the gateway's process
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.logging import configure_logging  # noqa: E402
from gatewayd.simulator.smsc import SmscSimulator  # noqa: E402
from gatewayd.smpp.pdus import Pdu  # noqa: E402
from gatewayd.smpp.session import SessionConfig  # noqa: E402
from stats import own_cpu_seconds, percentile_ms, tree_cpu_seconds  # noqa: E402

SHORT_CODE = "4160"
#: A phase fails when no reply (or receipt) arrived for this many seconds.
STALL_TIMEOUT = 60.0
CHOICES = {"GRE": "Greece", "POR": "Portugal", "ESP": "Spain"}
#: The rate issue 4 asks for on a 2-core machine, MOs answered per second.
TARGET = 3_000

SHEET = """
name = "bench-vote"
owner = "Bench"
module = "vote"
project_type = "interactive-tv"
content = "interaction"
short_code = "{short_code}"
keywords = ["VOTE"]
response = "Thanks! Your vote for {{choice}} is counted."
[settings]
choices = {{ {choices} }}
votes_per_subscriber = 1
"""

CONFIG = """
[gateway]
state_dir = "{state}"
campaigns_dir = "{campaigns}"
campaigns_poll_interval = 0
log_level = "warning"
log_format = "json"
[store]
url = "sqlite:///{state}/gatewayd.db"
writer = "{writer}"
[simulator]
enabled = false
[[smsc]]
name = "bench"
host = "127.0.0.1"
port = {port}
system_id = "bench"
password = "bench"
short_codes = ["{short_code}"]
window = 100
max_mt_per_second = 1000000
"""


def number(i: int) -> str:
    """The i-th subscriber's number as the SMSC sends it (TON 1, no '+')."""
    return f"3069{i:08d}"


class Replies:
    """Reply submit_sm seen by the simulator, by destination number."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.extra = 0
        self._expected: set[str] = set()
        self._all = trio.Event()

    def expect(self, numbers: list[str]) -> trio.Event:
        """Start a phase: the returned event is set when every one of ``numbers`` got its reply."""
        self._expected = {n for n in numbers if n not in self.at}
        self._all = trio.Event()
        if not self._expected:
            self._all.set()
        return self._all

    def on_submit(self, pdu: Pdu) -> None:
        destination = getattr(pdu, "destination_addr", "").removeprefix("+")
        if destination in self.at:
            self.extra += 1
            return
        self.at[destination] = trio.current_time()
        self._expected.discard(destination)
        if not self._expected:
            self._all.set()


class Phase:
    """The outcome of one load phase."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent: dict[str, float] = {}
        self.ack_latencies: list[float] = []
        self.first_sent = 0.0
        self.last_ack = 0.0
        self.last_reply = 0.0
        self.receipts_done = 0.0
        self.gateway_cpu = 0.0
        self.writer_cpu = 0.0
        self.bench_cpu = 0.0
        self.nacks = 0

    def reply_latencies(self, replies: Replies) -> list[float]:
        return [replies.at[n] - t for n, t in self.sent.items() if n in replies.at]

    @property
    def reply_rate(self) -> float:
        return self.count / (self.last_reply - self.first_sent)

    @property
    def ack_rate(self) -> float:
        return self.count / (self.last_ack - self.first_sent)


async def run_phase(
    simulator: SmscSimulator,
    replies: Replies,
    gateway: subprocess.Popen[bytes],
    first: int,
    count: int,
    rate: float,
    receipts: bool,
) -> Phase:
    """Send one MO from each of ``count`` subscribers starting at ``first`` (closed loop when rate is 0)."""
    numbers = [number(first + i) for i in range(count)]
    codes = list(CHOICES)
    pdus = [simulator.mo_pdus(n, SHORT_CODE, f"VOTE {codes[(first + i) % len(codes)]}")[0] for i, n in enumerate(numbers)]
    phase = Phase(count)
    done = replies.expect(numbers)
    receipts_before = simulator.stats["receipts_sent"]
    (cpu_gateway, cpu_writer), cpu_bench = tree_cpu_seconds(gateway.pid), own_cpu_seconds()

    async def one(source: str, pdu: Pdu) -> None:
        sent = trio.current_time()
        phase.sent[source] = sent
        response = await simulator.deliver(pdu)  # type: ignore[arg-type]
        now = trio.current_time()
        if not response.ok:
            phase.nacks += 1
        phase.ack_latencies.append(now - sent)
        phase.last_ack = max(phase.last_ack, now)

    async def sender(offset: int) -> None:
        for i in range(offset, count, 100):
            await one(numbers[i], pdus[i])

    phase.first_sent = start = trio.current_time()
    async with trio.open_nursery() as nursery:
        if rate:
            for i in range(count):
                await trio.sleep_until(start + i / rate)
                nursery.start_soon(one, numbers[i], pdus[i])
        else:
            for w in range(min(100, count)):
                nursery.start_soon(sender, w)
    await progressing(lambda: len(replies.at), done.is_set, "replies")
    phase.last_reply = max(replies.at[n] for n in numbers)
    if receipts:
        # Each reply's receipt acknowledged by the gateway (so stored), before the next phase.
        receipts_sent = lambda: simulator.stats["receipts_sent"] - receipts_before  # noqa: E731
        await progressing(receipts_sent, lambda: receipts_sent() >= count, "receipts")
        phase.receipts_done = trio.current_time()
    gateway_now, writer_now = tree_cpu_seconds(gateway.pid)
    phase.gateway_cpu, phase.writer_cpu = gateway_now - cpu_gateway, writer_now - cpu_writer
    phase.bench_cpu = own_cpu_seconds() - cpu_bench
    return phase


async def progressing(counter: Callable[[], int], finished: Callable[[], bool], what: str) -> None:
    """Wait until ``finished()``, as long as ``counter()`` keeps moving; raise when it stalls."""
    last, since = counter(), trio.current_time()
    while not finished():
        await trio.sleep(0.002)
        now = trio.current_time()
        if counter() != last:
            last, since = counter(), now
        elif now - since > STALL_TIMEOUT:
            raise RuntimeError(f"no {what} for {STALL_TIMEOUT:.0f} s ({last:,} so far)")


#: The vote's owner may answer its voters and keep their votes (the least a vote needs).
POLICY = """
[[data_user]]
name = "Bench"
[[data_user.rule]]
operations = ["read"]
categories = ["contact"]
purposes = ["response"]
[[data_user.rule]]
operations = ["read", "write"]
categories = ["participation", "profile"]
purposes = ["response"]
"""


def start_gateway(tmp: Path, port: int, writer: str) -> subprocess.Popen[bytes]:
    campaigns = tmp / "campaigns.d"
    campaigns.mkdir()
    choices = ", ".join(f'{code} = "{label}"' for code, label in CHOICES.items())
    (campaigns / "vote.toml").write_text(SHEET.format(short_code=SHORT_CODE, choices=choices), encoding="utf-8")
    (tmp / "policy.toml").write_text(POLICY, encoding="utf-8")
    state = tmp / "state"
    config = tmp / "gatewayd.toml"
    config.write_text(CONFIG.format(state=state, campaigns=campaigns, port=port, short_code=SHORT_CODE, writer=writer), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(tmp / "gateway.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log, env=env
        )


def stop_gateway(gateway: subprocess.Popen[bytes]) -> int:
    if gateway.poll() is None:
        gateway.send_signal(signal.SIGTERM)
        try:
            return gateway.wait(60)
        except subprocess.TimeoutExpired:
            gateway.kill()
    return gateway.wait()


def read_database(path: Path) -> dict[str, Any]:
    """What the gateway left in its database: MOs, replies, receipts and the tally."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "mo_by_status": dict(db.execute("SELECT status, count(*) FROM mo_messages GROUP BY status").fetchall()),
            "mo_by_route": dict(db.execute("SELECT coalesce(route, '-'), count(*) FROM mo_messages GROUP BY route").fetchall()),
            "subscribers": one("SELECT count(*) FROM subscribers"),
            "replies": one("SELECT count(*) FROM mt_messages WHERE in_reply_to IS NOT NULL"),
            "mos_replied": one("SELECT count(DISTINCT in_reply_to) FROM mt_messages"),
            "reply_by_status": dict(
                db.execute("SELECT status, count(*) FROM mt_messages WHERE in_reply_to IS NOT NULL GROUP BY status").fetchall()
            ),
            "parts_accepted": one("SELECT count(*) FROM mt_parts WHERE smsc_message_id IS NOT NULL"),
            "receipts": one("SELECT count(*) FROM dlr_events"),
            "receipts_matched": one("SELECT count(*) FROM dlr_events WHERE matched"),
            "tally": dict(
                db.execute(
                    "SELECT key, count(*) FROM campaign_records WHERE kind = 'vote' AND NOT withdrawn GROUP BY key ORDER BY key"
                ).fetchall()
            ),
        }
    finally:
        db.close()


def expected_tally(total: int) -> dict[str, int]:
    codes = list(CHOICES)
    return {code: len(range(k, total, len(codes))) for k, code in enumerate(codes) if k < total}


async def main(args: argparse.Namespace) -> int:
    configure_logging("warning", "console", stream=sys.stderr)
    receipts = not args.no_receipts
    replies = Replies()
    simulator = SmscSimulator(
        system_id="bench",
        password="bench",
        delivery_receipts=receipts,
        session_config=SessionConfig(window=100),
        history=1_000,
        on_submit=replies.on_submit,
    )
    tmp = Path(tempfile.mkdtemp(prefix="gatewayd-campaign-bench-"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(simulator.serve, "127.0.0.1", 0)
        gateway = start_gateway(tmp, port, args.writer)
        try:
            with trio.fail_after(60):
                await simulator.wait_bound()
            closed = await run_phase(simulator, replies, gateway, 0, args.subscribers, 0, receipts)
            offered = await run_phase(simulator, replies, gateway, args.subscribers, args.offered_count, args.rate, receipts)
        except BaseException:
            print(f"benchmark failed; the gateway's log and database are in {tmp}", file=sys.stderr)
            raise
        finally:
            status = await trio.to_thread.run_sync(stop_gateway, gateway)
            nursery.cancel_scope.cancel()
    if status not in (0, -signal.SIGTERM):
        print(f"gateway exited with status {status}; its log: {tmp / 'gateway.log'}")
    found = read_database(tmp / "state" / "gatewayd.db")
    report(args, closed, offered, replies, receipts)
    problems = verify(found, closed, offered, replies, receipts)
    if args.keep:
        print(f"kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if problems else 0


def report(args: argparse.Namespace, closed: Phase, offered: Phase, replies: Replies, receipts: bool) -> None:
    """Print the figures: the summary line first, then each phase in detail."""
    latencies = offered.reply_latencies(replies)
    sending = max(offered.sent.values()) - offered.first_sent
    achieved = (offered.count - 1) / sending if sending > 0 else float(offered.count)
    print()
    print(
        f"vote campaign, {args.subscribers:,} subscribers, SQLite: {closed.reply_rate:,.0f} MO->reply/s closed loop (window 100); "
        f"at {args.rate:,.0f}/s offered: p50 {percentile_ms(latencies, 50):.1f} ms p99 {percentile_ms(latencies, 99):.1f} ms "
        f"max {percentile_ms(latencies, 100):.0f} ms; receipts {'on' if receipts else 'off'}"
    )
    verdict = "met" if closed.reply_rate >= TARGET else "NOT met"
    print(f"target >= {TARGET:,} MO->reply/s on this machine ({os.cpu_count()} CPUs): {verdict}")
    print()

    lat = closed.reply_latencies(replies)
    elapsed = closed.last_reply - closed.first_sent
    print(f"closed loop, window 100, {closed.count:,} subscribers, one MO each:")
    print(f"  MO->reply          {closed.reply_rate:9,.0f} /s   ({elapsed:.2f} s from the first MO to the last reply)")
    print(
        f"  MO acknowledged    {closed.ack_rate:9,.0f} /s   "
        f"ack p50 {percentile_ms(closed.ack_latencies, 50):.1f} ms  p99 {percentile_ms(closed.ack_latencies, 99):.1f} ms"
    )
    print(f"  MO->MT latency     p50 {percentile_ms(lat, 50):.1f} ms  p99 {percentile_ms(lat, 99):.1f} ms  max {percentile_ms(lat, 100):.0f} ms")
    if receipts:
        print(
            f"  receipts stored    {closed.count / (closed.receipts_done - closed.first_sent):9,.0f} /s   "
            f"(the last acknowledged {closed.receipts_done - closed.last_reply:.2f} s after the last reply)"
        )
    print(f"  CPU                gateway {closed.gateway_cpu:.1f} s ({closed.gateway_cpu / elapsed:.0%} of a core), "
          f"store writer process {closed.writer_cpu:.1f} s ({closed.writer_cpu / elapsed:.0%}), this process (simulator) {closed.bench_cpu:.1f} s")

    elapsed = offered.last_reply - offered.first_sent
    print(f"offered {args.rate:,.0f} MO/s ({achieved:,.0f}/s achieved), {offered.count:,} more subscribers:")
    print(
        f"  MO->MT latency     p50 {percentile_ms(latencies, 50):.1f} ms  p90 {percentile_ms(latencies, 90):.1f} ms  "
        f"p99 {percentile_ms(latencies, 99):.1f} ms  max {percentile_ms(latencies, 100):.0f} ms"
    )
    print(f"  MO ack latency     p50 {percentile_ms(offered.ack_latencies, 50):.1f} ms  p99 {percentile_ms(offered.ack_latencies, 99):.1f} ms")
    print(f"  MO->reply          {offered.reply_rate:9,.0f} /s   MO acknowledged {offered.ack_rate:,.0f} /s")
    if offered.reply_rate < 0.9 * achieved:
        print("  (the gateway did not keep up with the offered rate: these latencies are mostly queueing)")
    print(f"  CPU                gateway {offered.gateway_cpu:.1f} s ({offered.gateway_cpu / elapsed:.0%} of a core), "
          f"store writer process {offered.writer_cpu:.1f} s ({offered.writer_cpu / elapsed:.0%}), this process (simulator) {offered.bench_cpu:.1f} s")
    print(f"delivery receipts: {'on: one per reply, stored and matched by the gateway' if receipts else 'off'}")


def verify(found: dict[str, Any], closed: Phase, offered: Phase, replies: Replies, receipts: bool) -> list[str]:
    """Print what the database holds and compare it with what was sent; returns the problems."""
    total = closed.count + offered.count
    tally: dict[str, int] = found["tally"]
    print("database after stopping the gateway:")
    print(f"  MOs                {found['mo_by_status']}   routes {found['mo_by_route']}")
    print(
        f"  replies            {found['replies']:,} rows for {found['mos_replied']:,} MOs   {found['reply_by_status']}   "
        f"parts accepted {found['parts_accepted']:,}"
    )
    print(f"  receipts           {found['receipts']:,} stored, {found['receipts_matched']:,} matched")
    print(f"  subscribers        {found['subscribers']:,}")
    ranked = sorted(tally.items(), key=lambda item: -item[1])
    print("  tally              " + ", ".join(f"{CHOICES.get(code, code)} ({code}) {votes:,}" for code, votes in ranked))

    problems = []
    nacks = closed.nacks + offered.nacks
    if nacks:
        problems.append(f"{nacks:,} MOs answered with an error status")
    if found["mo_by_status"] != {"processed": total}:
        problems.append(f"expected {total:,} processed MOs, found {found['mo_by_status']}")
    if found["replies"] != total or found["mos_replied"] != total:
        problems.append(f"expected one reply row for each of {total:,} MOs, found {found['replies']:,} for {found['mos_replied']:,}")
    if len(replies.at) != total or replies.extra:
        problems.append(f"the simulator received replies for {len(replies.at):,} of {total:,} numbers, and {replies.extra:,} more")
    if found["parts_accepted"] != total:
        problems.append(f"expected {total:,} accepted reply parts, found {found['parts_accepted']:,}")
    expected_receipts = total if receipts else 0
    if found["receipts"] != expected_receipts or found["receipts_matched"] != expected_receipts:
        problems.append(
            f"expected {expected_receipts:,} matched receipts, found {found['receipts_matched']:,} of {found['receipts']:,}"
        )
    if tally != expected_tally(total):
        problems.append(f"expected the tally {expected_tally(total)}, found {tally}")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    if not problems:
        print(f"  check              ok: {total:,} MOs processed, {total:,} replies stored and each submitted once, tally as sent")
    return problems


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=positive, help="subscribers in the closed loop, one MO each (default 100,000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered MO rate of the latency phase, per second")
    parser.add_argument("--offered-count", type=positive, help="subscribers in the latency phase (default 20,000)")
    parser.add_argument("--no-receipts", action="store_true", help="the simulator sends no delivery receipts")
    parser.add_argument("--quick", action="store_true", help="10,000 subscribers closed loop, 5,000 offered (unless given)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--writer", choices=("process", "thread"), default="process", help="[store] writer (default: process)")
    arguments = parser.parse_args()
    if arguments.subscribers is None:
        arguments.subscribers = 10_000 if arguments.quick else 100_000
    if arguments.offered_count is None:
        arguments.offered_count = 5_000 if arguments.quick else 20_000
    sys.exit(trio.run(main, arguments))
