"""Multicast: a segment materialised into the outbox, and the rate at which the outbox sends it.

Materialisation (the default): a fresh database (a SQLite file in a temporary directory, or a
scratch schema of the PostgreSQL server given with ``--postgres``) is bulk-loaded with N
subscribers, each with a customer profile (last MO within the past 30 days) and a marketing
opt-in for the campaign in the consent ledger; one in 20 then sent STOP to the short code and
one in 25 withdrew the marketing opt-in. A campaign row and a ``sends`` row are created, then
:func:`profile_store.segments.materialise_send` runs for the segment "opted in, seen within 90
days" in one transaction: a ``send_recipients`` row per subscriber, and an MT with its part
rows per queued one. Loading and materialising are timed separately.

Reported: subscribers, materialisation seconds (commit included), rows/s (recipients per
second), queued and suppressed by reason. Nothing is asserted.

Target: a segment of 1M materialised in under 30 s on SQLite on this machine (2 CPUs).

    python bench/multicast.py                        # 1,000,000 subscribers on SQLite
    python bench/multicast.py --subscribers 100000   # a shorter run
    python bench/multicast.py --parts 2              # a two-part message (two mt_parts per MT)
    python bench/multicast.py --postgres postgresql://postgres@127.0.0.1:5432/test

Submit rate (``--submit``): N subscribers, each opted in to the owner's marketing under the
keyed number hash the consent check at submit time uses, and one send to all of them
materialised into the outbox by :func:`~profile_store.segments.materialise_send` (N marketing
MTs of a multicast campaign with no quiet hours).
The daemon (:func:`gatewayd.app.serve`, in this process: outbox, privacy screen, SMSC links,
receipt ingest) then sends them over K binds, one SMSC each with no rate cap (``--rate``
sets one per bind, to see what a capped send costs), to the SMSC
simulator (in a process of its own, or in this one with ``--in-process-simulator``), which
answers at once and sends a delivery receipt for each a second later (``--receipt-delay``:
operator SMSCs report delivery after the submit_sm_resp; with 0 every receipt races its
response and most are held until the response's id is stored).

Reported: submit_sm accepted per second (from the first accepted to the last, and sustained:
between the 10th and 90th percentile), receipts matched per second, queue -> submit_sm_resp
latency p50/p99 (every MT is queued before the daemon starts, so this is the queue position),
the store writer's commits and how busy it was, and receipts left unmatched. With
``--profile``, the busiest functions of the event loop and of the store writer thread.

Target: >= 5,000 MT/s across binds when rate caps allow it.

    python bench/multicast.py --submit                          # 50,000 MTs over 2 binds, SQLite
    python bench/multicast.py --submit --mts 200000 --binds 4
    python bench/multicast.py --submit --postgres postgresql://postgres@127.0.0.1:5432/test
    python bench/multicast.py --submit --mts 20000 --profile    # where the time goes
    python bench/multicast.py --submit --receipt-delay 0        # receipts racing their responses
    python bench/multicast.py --submit --in-process-simulator   # one process, one GIL for both sides
    python bench/multicast.py --submit --mts 20000 --rate 500   # 1,000 MT/s over 2 capped binds
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.app import Gateway, prepare_store, serve  # noqa: E402
from gatewayd.config import GatewayConfig, load_config  # noqa: E402
from gatewayd.logging import configure_logging  # noqa: E402
from gatewayd.privacy import PrivacyKeys, load_key  # noqa: E402
from gatewayd.simulator.smsc import SmscSimulator  # noqa: E402
from permissions.obligations import keyed_number_hash  # noqa: E402
from profile_store.campaigns import CampaignRow, ensure_campaigns  # noqa: E402
from profile_store.db import Store, make_engine, normalise_url  # noqa: E402
from profile_store.mt import outbox_counts  # noqa: E402
from profile_store.schema import campaigns, consent_events, dlr_events, metadata, mt_messages, mt_parts, sends  # noqa: E402
from profile_store.segments import Segment, SendTarget, materialise_send  # noqa: E402
from stats import cpu_seconds, own_cpu_seconds, percentile_ms  # noqa: E402

CAMPAIGN = "bench-alerts"
OWNER = "Bench"
SHORT_CODE = "4160"
DAY = 86400.0
#: One subscriber in STOP_EVERY sent STOP to the short code; one in WITHDRAW_EVERY withdrew
#: the marketing opt-in.
STOP_EVERY = 20
WITHDRAW_EVERY = 25

# The numbers 1..N: a recursive CTE on SQLite, generate_series on PostgreSQL.
NUMBERS = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) SELECT i FROM n",
    "postgresql": "SELECT i FROM generate_series(1, :count) AS n(i)",
}
# The subscriber's number and a stand-in for the keyed hash of it.
MSISDN = {"sqlite": "'+3069' || printf('%08d', i)", "postgresql": "'+3069' || lpad(i::text, 8, '0')"}
HASH = {"sqlite": "printf('%064d', s.id)", "postgresql": "lpad(s.id::text, 64, '0')"}

SUBSCRIBERS = (
    "INSERT INTO subscribers (id, msisdn, created_at, last_seen_at) "
    "SELECT i, {msisdn}, :t0, :t0 FROM ({numbers}) AS numbers"
)
PROFILES = (
    "INSERT INTO customer_profiles (subscriber_id, first_seen_at, last_seen_at, mos, campaign_mos, updated_at) "
    "SELECT id, :t0, :now - (id % 30) * 86400.0, 1, 1, :now FROM subscribers"
)
LEDGER = (
    "INSERT INTO consent_events (number_hash, subscriber_id, event, purpose, scope_kind, scope_short_code, scope_owner, "
    "scope_campaign, at, short_code, keyword, note, recorded_at) "
    "SELECT {hash}, s.id, :event, :purpose, :kind, :scope_code, :scope_owner, :scope_campaign, :at, :code, :keyword, '', :now "
    "FROM subscribers AS s WHERE s.id % :every = 0"
)



def new_send(conn: sa.Connection, campaign_id: int, text: str, status: str, now: float) -> int:
    """A ``sends`` row named "bench" for the campaign; its id."""
    return int(
        conn.execute(
            sa.insert(sends)
            .values(
                campaign_id=campaign_id,
                name="bench",
                text=text,
                status=status,
                scheduled_at=now,
                targeted=0,
                created_at=now,
                updated_at=now,
            )
            .returning(sends.c.id)
        ).scalar_one()
    )

def load(engine: sa.Engine, count: int, now: float) -> tuple[int, int]:
    """Bulk-load the subscribers, profiles, ledger, campaign and send; returns (campaign id, send id)."""
    dialect = engine.dialect.name
    t0 = now - 400 * DAY
    ledger = sa.text(LEDGER.format(hash=HASH[dialect]))
    with engine.begin() as conn:
        subscribers = SUBSCRIBERS.format(msisdn=MSISDN[dialect], numbers=NUMBERS[dialect])
        conn.execute(sa.text(subscribers), {"t0": t0, "count": count})
        conn.execute(sa.text(PROFILES), {"t0": t0, "now": now})
        events = [
            # Everyone opted in to the campaign's marketing.
            ("opt_in", "marketing", "campaign", SHORT_CODE, OWNER, CAMPAIGN, now - 100 * DAY, "JOIN", 1),
            ("opt_out", "all", "short_code", SHORT_CODE, "", "", now - 50 * DAY, "STOP", STOP_EVERY),
            ("opt_out", "marketing", "campaign", SHORT_CODE, OWNER, CAMPAIGN, now - 40 * DAY, "NOMORE", WITHDRAW_EVERY),
        ]
        for event, purpose, kind, code, owner, campaign, at, keyword, every in events:
            params = {
                "event": event,
                "purpose": purpose,
                "kind": kind,
                "scope_code": code,
                "scope_owner": owner,
                "scope_campaign": campaign,
                "at": at,
                "code": SHORT_CODE,
                "keyword": keyword,
                "now": now,
                "every": every,
            }
            conn.execute(ledger, params)
        campaign_id = conn.execute(
            sa.insert(campaigns)
            .values(name=CAMPAIGN, owner=OWNER, module="alerts", short_code=SHORT_CODE, created_at=now, updated_at=now)
            .returning(campaigns.c.id)
        ).scalar_one()
        send_id = new_send(conn, campaign_id, "x", "running", now)
    if dialect == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return int(campaign_id), int(send_id)


def run(label: str, url: str, args: argparse.Namespace) -> None:
    """Load a fresh database at ``url``, materialise the segment once and print the figures."""
    engine = make_engine(url)
    metadata.create_all(engine)
    now = time.time()
    started = time.perf_counter()
    _, send_id = load(engine, args.subscribers, now)
    loaded = time.perf_counter() - started
    print(f"{label}: loaded {args.subscribers:,} subscribers (profile, ledger, campaign, send) in {loaded:.1f} s")

    text = "Bench alert: tonight at 9." if args.parts == 1 else "Bench alert: " + "x" * (153 * args.parts - 20)
    target = SendTarget(
        send_id=send_id, campaign=CAMPAIGN, owner=OWNER, short_code=SHORT_CODE, text=text, parts_total=args.parts, now=now
    )
    segment = Segment(opted_in=True, last_seen_within_days=90)
    started = time.perf_counter()
    with engine.begin() as conn:
        result = materialise_send(conn, segment, target)
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        parts = conn.execute(sa.select(sa.func.count()).select_from(mt_parts)).scalar_one()
    suppressed = ", ".join(f"{reason} {count:,}" for reason, count in sorted(result.suppressed.items())) or "none"
    print(
        f"{label}: materialised {result.targeted:,} recipients in {elapsed:.2f} s  ({result.targeted / elapsed:,.0f} rows/s)   "
        f"queued {result.queued:,} ({parts:,} parts)   suppressed: {suppressed}"
    )
    engine.dispose()


# --- the submit rate ------------------------------------------------------------------------

SUBMIT_CAMPAIGN = "bench-offers"
#: Every MT of the submit run carries this text: one GSM part.
SUBMIT_TEXT = "Bench: 2 for 1 on summer shoes this weekend. Reply OFFER for a voucher."
#: A run fails when no MT was submitted or settled for this many seconds.
STALL_TIMEOUT = 60.0
#: Seconds between reads of the outbox's counts while the send runs: each counts every row of
#: the outbox, on the daemon's process, so a shorter interval would weigh on its CPU figure.
PROGRESS_INTERVAL = 1.0

SHEET = f"""
name = "{SUBMIT_CAMPAIGN}"
owner = "{OWNER}"
module = "multicast"
project_type = "mobile-marketing"
content = "advertising"
short_code = "{SHORT_CODE}"
keywords = ["OFFER"]
[settings]
text = "{SUBMIT_TEXT}"
quiet_hours = "00:00-00:00"
"""

POLICY = f"""
[[data_user]]
name = "{OWNER}"
[[data_user.rule]]
operations = ["read", "write"]
categories = ["contact", "participation", "profile"]
purposes = ["response", "marketing"]
"""

CONFIG = """
[gateway]
state_dir = "{state}"
campaigns_dir = "{campaigns}"
campaigns_poll_interval = 0
log_level = "warning"
log_format = "json"
node = "bench"
drain_timeout = 5
[store]
url = "{url}"
writer = "{writer}"
[simulator]
enabled = false
[control]
enabled = false
[privacy]
obligations_interval = 0
"""

SMSC = """
[[smsc]]
name = "bind{n}"
host = "127.0.0.1"
port = {port}
system_id = "bench"
password = "bench"
short_codes = ["{short_code}"]
window = {window}
max_mt_per_second = {rate}
"""


def write_config(directory: Path, url: str, port: int, args: argparse.Namespace) -> GatewayConfig:
    """The daemon's configuration, its one multicast sheet and its policy, under ``directory``."""
    (directory / "campaigns.d").mkdir()
    (directory / "campaigns.d" / "offers.toml").write_text(SHEET, encoding="utf-8")
    (directory / "policy.toml").write_text(POLICY, encoding="utf-8")
    text = CONFIG.format(state=directory / "state", campaigns=directory / "campaigns.d", url=url, writer=args.writer)
    text += "".join(SMSC.format(n=n, port=port, short_code=SHORT_CODE, window=args.window, rate=args.rate) for n in range(1, args.binds + 1))
    path = directory / "gatewayd.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def seed_outbox(config: GatewayConfig, count: int, now: float) -> tuple[int, float]:
    """Subscribers 1..count, each opted in to the owner's marketing under the daemon's keyed
    number hash, then one send materialised for all of them; returns (send id, seconds)."""
    prepare_store(config)
    keys = PrivacyKeys.derive(load_key(config.key_path))
    engine = make_engine(config.store.url)
    dialect = engine.dialect.name
    opt_in = {
        "subscriber_id": None,
        "event": "opt_in",
        "purpose": "marketing",
        "scope_kind": "owner",
        "scope_short_code": "",
        "scope_owner": OWNER,
        "scope_campaign": "",
        "at": now - 100 * DAY,
        "short_code": SHORT_CODE,
        "keyword": "JOIN",
        "mo_id": None,
        "note": "",
        "expires_at": None,
        "recorded_at": now,
    }
    rows = []
    for i in range(1, count + 1):
        number = f"+3069{i:08d}"
        rows.append({**opt_in, "subscriber_id": i, "number_hash": keyed_number_hash(keys.number, number)})
    with engine.begin() as conn:
        subscribers = SUBSCRIBERS.format(msisdn=MSISDN[dialect], numbers=NUMBERS[dialect])
        conn.execute(sa.text(subscribers), {"t0": now, "count": count})
        conn.execute(sa.insert(consent_events), rows)
        ids = ensure_campaigns(conn, [CampaignRow(SUBMIT_CAMPAIGN, OWNER, "multicast", SHORT_CODE)], now)
        send_id = new_send(conn, ids[SUBMIT_CAMPAIGN], SUBMIT_TEXT, "scheduled", now)
    target = SendTarget(
        send_id=send_id, campaign=SUBMIT_CAMPAIGN, owner=OWNER, short_code=SHORT_CODE, text=SUBMIT_TEXT, parts_total=1, now=now
    )
    started = time.perf_counter()
    with engine.begin() as conn:
        result = materialise_send(conn, Segment(opted_in=True), target)
        conn.execute(sa.update(sends).where(sends.c.id == send_id).values(status="running", started_at=now))
    elapsed = time.perf_counter() - started
    assert result is not None and result.queued == count, result
    engine.dispose()
    return int(send_id), elapsed


@contextlib.contextmanager
def simulator_process(directory: Path, receipt_delay: float) -> Iterator[tuple[int, int]]:
    """The SMSC simulator in a process of its own (this script with ``--serve-simulator``); yields its port and pid."""
    port_file = directory / "smsc-sim.port"
    command = [sys.executable, __file__, "--serve-simulator", str(port_file), "--receipt-delay", str(receipt_delay)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().endswith("\n"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.05)
        yield int(port_file.read_text()), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def serve_simulator(port_file: Path, receipt_delay: float) -> None:
    """Run the simulator until SIGTERM, writing its port to ``port_file`` once it listens."""
    simulator = SmscSimulator(system_id="bench", password="bench", receipt_delay=receipt_delay)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(simulator.serve, "127.0.0.1", 0)
        port_file.write_text(f"{port}\n")


class WriterTimes:
    """The store writer's commits: how many, and the seconds spent in them; and on SQLite the
    largest the write-ahead log grew to while the send ran."""

    def __init__(self) -> None:
        self.commits = 0
        self.units = 0
        self.seconds = 0.0
        self.wal_peak = 0

    def __call__(self, seconds: float, units: int) -> None:
        self.commits += 1
        self.units += units
        self.seconds += seconds


class WriterProfile:
    """cProfile of the store writer's thread: each commit runs under one profiler, enabled
    and disabled in that thread (a profiler only sees the thread that enabled it)."""

    def __init__(self, store: Store) -> None:
        self.profile = cProfile.Profile()
        committer = store._committer
        commit = committer.commit

        def profiled(batch: Any) -> tuple[int, int]:
            self.profile.enable()
            try:
                return commit(batch)
            finally:
                self.profile.disable()

        committer.commit = profiled  # type: ignore[method-assign]


def _top(profile: cProfile.Profile, title: str, lines: int = 30) -> str:
    out = io.StringIO()
    out.write(f"--- {title}: by own time ---\n")
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(lines)
    out.write(f"--- {title}: by cumulative time ---\n")
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def _timings(conn: sa.Connection, send_id: int) -> list[tuple[float, float, float | None]]:
    """(queued at, submit_sm_resp stored at, receipt settled at) of every part of the send."""
    rows = conn.execute(
        sa.select(mt_messages.c.created_at, mt_parts.c.submitted_at, mt_parts.c.done_at)
        .join(mt_parts, mt_parts.c.mt_id == mt_messages.c.id)
        .where(mt_messages.c.send_id == send_id, mt_parts.c.submitted_at.is_not(None))
    ).all()
    return [(float(q), float(s), None if d is None else float(d)) for q, s, d in rows]


def _unmatched(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(dlr_events).where(dlr_events.c.matched == sa.false())).scalar_one())


async def send_all(config: GatewayConfig, count: int, args: argparse.Namespace) -> tuple[WriterTimes, str]:
    """Run the daemon until every MT of the outbox is settled by its receipt."""
    writer = WriterTimes()
    report = ""
    loop_profile = cProfile.Profile() if args.profile else None
    async with trio.open_nursery() as nursery:
        gateway: Gateway = await nursery.start(functools.partial(serve, config, handle_signals=False, own_process=True))
        store = gateway.store
        assert store is not None
        store.on_commit = writer
        threads = WriterProfile(store) if args.profile else None
        if loop_profile is not None:
            loop_profile.enable()
        progress, stalled_since = -1, time.monotonic()
        wal = f"{store.engine.url.database}-wal" if store.dialect == "sqlite" else None
        while True:
            if wal is not None:
                with contextlib.suppress(OSError):
                    writer.wal_peak = max(writer.wal_peak, os.path.getsize(wal))
            counts = await store.read(outbox_counts)
            done = sum(n for status, n in counts.items() if status not in ("queued", "sending", "submitted"))
            moved = done * 2 + counts.get("submitted", 0)
            if done >= count:
                break
            if moved != progress:
                progress, stalled_since = moved, time.monotonic()
            elif time.monotonic() - stalled_since > STALL_TIMEOUT:
                raise RuntimeError(f"no progress for {STALL_TIMEOUT:.0f} s: {counts}")
            await trio.sleep(PROGRESS_INTERVAL)
        if loop_profile is not None:
            loop_profile.disable()
            report += _top(loop_profile, "event loop thread")
        if threads is not None:
            report += _top(threads.profile, "store writer thread")
        gateway.request_stop()
    return writer, report


async def submit_run(label: str, url: str, args: argparse.Namespace) -> None:
    """Seed, materialise and send ``args.mts`` MTs against a fresh database at ``url``; print the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        now = time.time()
        with contextlib.ExitStack() as stack:
            async with trio.open_nursery() as nursery:
                simulator_pid = None
                if args.in_process_simulator:
                    simulator = SmscSimulator(system_id="bench", password="bench", receipt_delay=args.receipt_delay)
                    port = await nursery.start(simulator.serve, "127.0.0.1", 0)
                else:
                    port, simulator_pid = stack.enter_context(simulator_process(directory, args.receipt_delay))
                config = write_config(directory, url, port, args)
                started = time.perf_counter()
                send_id, materialised = await trio.to_thread.run_sync(seed_outbox, config, args.mts, now)
                print(
                    f"{label}: loaded and queued {args.mts:,} MTs in {time.perf_counter() - started:.1f} s "
                    f"(materialised in {materialised:.2f} s)"
                )
                cpu_before = _cpu(simulator_pid)
                writer, report = await send_all(config, args.mts, args)
                cpu = [after - before for after, before in zip(_cpu(simulator_pid), cpu_before)]
                nursery.cancel_scope.cancel()
        engine = make_engine(url)
        with engine.connect() as conn:
            rows = _timings(conn, send_id)
            unmatched = _unmatched(conn)
        engine.dispose()
    submitted = sorted(s for _, s, _ in rows)
    settled = sorted(d for _, _, d in rows if d is not None)
    first, last = submitted[0], submitted[-1]
    low, high = submitted[len(submitted) // 10], submitted[len(submitted) * 9 // 10]
    overall = len(submitted) / max(last - first, 1e-9)
    sustained = (len(submitted) * 8 // 10) / max(high - low, 1e-9)
    receipts = len(settled) / max(settled[-1] - first, 1e-9)
    latency = [s - q for q, s, _ in rows]
    elapsed = settled[-1] - first
    print(
        f"{label}: {len(submitted):,} MTs over {args.binds} binds: {overall:,.0f} MT/s submitted first to last, "
        f"{sustained:,.0f} MT/s sustained (10th-90th percentile); receipts matched {receipts:,.0f}/s; "
        f"queue -> submit_sm_resp p50 {percentile_ms(latency, 50):,.0f} ms p99 {percentile_ms(latency, 99):,.0f} ms (all queued at once)"
    )
    print(
        f"{label}: store writer {writer.commits:,} commits, {writer.units:,} units ({writer.units / len(submitted):.1f} per MT), "
        f"busy {writer.seconds:.1f} s of {elapsed:.1f} s; receipts unmatched: {unmatched}"
        + (f"; write-ahead log at most {writer.wal_peak / 1e6:,.1f} MB" if writer.wal_peak else "")
    )
    where = "this process (the daemon and the simulator)" if simulator_pid is None else "this process (the daemon)"
    print(
        f"{label}: CPU per MT sent: {where} {cpu[0] / len(submitted) * 1e6:,.0f} µs, "
        f"store writer process {cpu[1] / len(submitted) * 1e6:,.0f} µs"
        + ("" if simulator_pid is None else f", simulator process {cpu[2] / len(submitted) * 1e6:,.0f} µs")
        + f" ({sum(cpu):.1f} CPU seconds in {elapsed:.1f} s)"
    )
    if report:
        print(report)


def _cpu(simulator_pid: int | None) -> tuple[float, float, float]:
    """CPU seconds so far of this process, of its children that exited (the store writer,
    once the daemon stopped), and of the simulator's process."""
    times = os.times()
    return own_cpu_seconds(), times.children_user + times.children_system, 0.0 if simulator_pid is None else cpu_seconds(simulator_pid)


def submit(args: argparse.Namespace) -> None:
    """The submit-rate runs: SQLite, then PostgreSQL when asked for."""
    configure_logging("warning", "json")
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(submit_run, "sqlite    ", f"sqlite:///{tmp}/bench.db", args)
    if args.postgres:
        with scratch_schema(args.postgres) as url:
            trio.run(submit_run, "postgresql", url, args)


@contextlib.contextmanager
def scratch_schema(server: str) -> Iterator[str]:
    """A URL on ``server`` whose tables go to a new schema, dropped afterwards."""
    base = normalise_url(server)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def positive(value: str) -> int:
    number = int(value.replace(",", "").replace("_", ""))
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=positive, default=1_000_000, help="subscribers loaded (default 1,000,000)")
    parser.add_argument("--parts", type=positive, default=1, help="parts of the message (default 1)")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server, in a scratch schema")
    parser.add_argument("--submit", action="store_true", help="measure the submit rate instead of materialisation")
    parser.add_argument("--mts", type=positive, default=50_000, help="--submit: MTs queued and sent (default 50,000)")
    parser.add_argument("--binds", type=positive, default=2, help="--submit: binds, one SMSC each (default 2)")
    parser.add_argument("--window", type=positive, default=100, help="--submit: window of each bind (default 100)")
    parser.add_argument(
        "--rate", type=positive, default=1_000_000, help="--submit: max_mt_per_second of each bind (default 1,000,000: no cap)"
    )
    parser.add_argument("--in-process-simulator", action="store_true", help="--submit: run the simulator in this process")
    parser.add_argument(
        "--receipt-delay", type=float, default=1.0, help="--submit: seconds from submit_sm_resp to receipt (default 1; 0 races them)"
    )
    parser.add_argument("--writer", choices=("process", "thread"), default="process", help="[store] writer (default: process)")
    parser.add_argument(
        "--profile", action="store_true", help="--submit: profile the event loop and the store writer (implies --writer thread)"
    )
    parser.add_argument("--serve-simulator", metavar="PORT_FILE", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile:
        # cProfile sees the writer only on a thread of this process.
        args.writer = "thread"
    if args.serve_simulator:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(serve_simulator, args.serve_simulator, args.receipt_delay)
        return
    if args.submit:
        submit(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite    ", f"sqlite:///{tmp}/bench.db", args)
    if args.postgres:
        with scratch_schema(args.postgres) as url:
            run("postgresql", url, args)


if __name__ == "__main__":
    main()
