"""What the store writer spends on each MO of a vote campaign, without the daemon around it.

``bench/campaign.py`` shares two cores between the daemon, the writer process and the
simulator, so its figures move with everything else on the machine. This runs the writer's
units of a vote MO's life in one process, on one connection, through the writer's own
:class:`~profile_store.committer.Committer`, with the campaign, policy and engine the daemon
would load for ``bench/campaign.py``'s sheet:

* storing the MO (:func:`~profile_store.mo.store_mo_part`, ``--batch`` per transaction, the
  number already normalised as ingest does);
* deciding about it (:func:`~gatewayd.dispatch.process_mos`, 100 MOs per unit as the
  dispatcher gathers them under load): vote counted, local and customer profile written,
  reply enqueued already claimed;
* storing the reply's submit_sm_resp (:func:`~profile_store.mt.part_accepted`);
* storing its delivery receipt (:func:`~profile_store.dlr.record_receipt`).

Every subscriber is a new number with one "VOTE <choice>". Reported: CPU microseconds per MO
for each of the four, and what the database holds afterwards (the run is wrong unless every
MO is processed, every reply delivered and the tally is as sent). With ``--statements``, each
SQL statement's mean time and count. Nothing is asserted.

For a figure that does not move with the machine, count instructions: the "Collected" total
of ``valgrind --tool=callgrind python bench/writer_mo_units.py --mos 2000`` (with
``PYTHONHASHSEED=0``) repeats from run to run; two versions differ by what their units cost
(and by the seeding, which costs the same in both).

    python bench/writer_mo_units.py                 # 10,000 MOs
    python bench/writer_mo_units.py --mos 20000 --statements
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaign import CHOICES, CONFIG, POLICY, SHEET, SHORT_CODE, number  # noqa: E402
from gatewayd.app import prepare_store  # noqa: E402
from gatewayd.campaigns import Campaigns  # noqa: E402
from gatewayd.config import load_config  # noqa: E402
from gatewayd.dispatch import process_mos  # noqa: E402
from gatewayd.smpp.text import ConcatReferences  # noqa: E402
from profile_store.committer import Committer  # noqa: E402
from profile_store.db import Store, make_engine  # noqa: E402
from profile_store.mo import MoPartIn, store_mo_part  # noqa: E402
from profile_store.subscribers import normalise_msisdn  # noqa: E402
from writer_units import BenchUnit, StatementTimes, accept_all, bench_main, commit, per_item, receipt_all  # noqa: E402

SMSC = "bench"
#: MOs per process_mos unit: what the dispatcher gathers under load.
DECIDE_BATCH = 100


def write_config(directory: Path) -> Path:
    """``bench/campaign.py``'s configuration, vote sheet and policy, under ``directory``."""
    campaigns = directory / "campaigns.d"
    campaigns.mkdir()
    choices = ", ".join(f'{code} = "{label}"' for code, label in CHOICES.items())
    (campaigns / "vote.toml").write_text(SHEET.format(short_code=SHORT_CODE, choices=choices), encoding="utf-8")
    (directory / "policy.toml").write_text(POLICY, encoding="utf-8")
    (directory / "state").mkdir()
    path = directory / "gatewayd.toml"
    text = CONFIG.format(state=directory / "state", campaigns=campaigns, port=2775, short_code=SHORT_CODE, writer="thread")
    path.write_text(text, encoding="utf-8")
    return path


async def load_engine(path: Path) -> Campaigns:
    """The campaigns as the daemon loads them (registered in the database, policy in force)."""
    config = load_config(path)
    prepare_store(config)
    store = Store(make_engine(config.store.url))
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run_writer)
        campaigns = Campaigns(store, config)
        await campaigns.load()
        nursery.cancel_scope.cancel()
    await store.aclose()
    return campaigns


def vote(i: int, now: float) -> MoPartIn:
    """Subscriber i's one MO, as ingest hands it to the writer."""
    text = f"VOTE {list(CHOICES)[i % len(CHOICES)]}"
    return MoPartIn(
        smsc=SMSC, source_addr=number(i), source_addr_ton=1, short_code=SHORT_CODE, esm_class=0, data_coding=0,
        payload=text.encode(), text=text, concat=None, sar=None, received_at=now, connection="bench#1",
    )  # fmt: skip


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp))
        campaigns = trio.run(load_engine, path)
        config = campaigns.config
        processor = campaigns.engine
        assert processor is not None
        statements = StatementTimes()
        if args.statements:
            statements.install()
        engine = make_engine(config.store.url)
        committer = Committer(engine, cut_after=3600.0, urgent=lambda: False)
        refs = ConcatReferences(8)
        now = time.time()
        parts = [vote(i, now) for i in range(args.mos)]
        numbers = [normalise_msisdn(part.source_addr, ton=1, default_region=config.store.default_region) for part in parts]
        options = {"dedupe_window": config.store.dedupe_window, "reassembly_window": config.store.reassembly_timeout}
        cpu: dict[str, float] = {}
        started = time.process_time()
        stored = []
        for first in range(0, args.mos, args.batch):
            units = [
                BenchUnit(functools.partial(store_mo_part, msisdn=msisdn, default_region=config.store.default_region, **options), (part, now))
                for part, msisdn in zip(parts[first : first + args.batch], numbers[first : first + args.batch])
            ]
            commit(committer, units)
            stored += [unit.result.mo for unit in units]
        cpu["store MO"] = time.process_time() - started
        started = time.process_time()
        replies = []
        for first in range(0, len(stored), DECIDE_BATCH):
            unit = BenchUnit(process_mos, (stored[first : first + DECIDE_BATCH], now, processor, refs.next, ("bench", 60.0)))
            commit(committer, [unit])
            replies += [mt for outcome in unit.result for mt in outcome.claimed]
        cpu["decide"] = time.process_time() - started
        cpu["submit_sm_resp"] = accept_all(committer, replies, args.batch, now + 1, first=True)
        cpu["receipt"] = receipt_all(committer, replies, args.batch, now + 2)
        committer.drop_connection()
        with engine.connect() as conn:
            found = {
                "MOs": dict(conn.execute(sa.text("SELECT status, count(*) FROM mo_messages GROUP BY status")).all()),
                "replies": dict(conn.execute(sa.text("SELECT status, count(*) FROM mt_messages GROUP BY status")).all()),
                "tally": dict(
                    conn.execute(sa.text("SELECT key, count(*) FROM campaign_records WHERE NOT withdrawn GROUP BY key ORDER BY key")).all()
                ),
            }
        engine.dispose()
    print(f"sqlite: {args.mos:,} vote MOs, {args.batch} units per transaction: CPU per MO: {per_item(cpu, args.mos)}")
    print(f"sqlite: afterwards: {found}")
    if args.statements:
        print(statements.report())


def main() -> None:
    bench_main(__doc__, run, "mos", "vote MOs, each from a new subscriber", "store, submit_sm_resp and receipt units per transaction")


if __name__ == "__main__":
    main()
