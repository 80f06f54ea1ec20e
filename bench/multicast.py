"""Multicast materialisation: a segment selected and written into the outbox in one transaction.

A fresh database (a SQLite file in a temporary directory, or a scratch schema of the
PostgreSQL server given with ``--postgres``) is bulk-loaded with N subscribers, each with a
customer profile (last MO within the past 30 days) and a marketing opt-in for the campaign in
the consent ledger; one in 20 then sent STOP to the short code and one in 25 withdrew the
marketing opt-in. A campaign row and a ``sends`` row are created, then
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
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profile_store.db import make_engine, normalise_url  # noqa: E402
from profile_store.schema import campaigns, metadata, mt_parts, sends  # noqa: E402
from profile_store.segments import Segment, SendTarget, materialise_send  # noqa: E402

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
        send_id = conn.execute(
            sa.insert(sends)
            .values(
                campaign_id=campaign_id,
                name="bench",
                text="x",
                status="running",
                scheduled_at=now,
                targeted=0,
                created_at=now,
                updated_at=now,
            )
            .returning(sends.c.id)
        ).scalar_one()
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite    ", f"sqlite:///{tmp}/bench.db", args)
    if args.postgres:
        base = normalise_url(args.postgres)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            run("postgresql", url.render_as_string(hide_password=False), args)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


if __name__ == "__main__":
    main()
