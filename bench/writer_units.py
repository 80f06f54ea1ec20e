"""What the store writer spends on each MT of a multicast, without the daemon around it.

The submit-rate run of ``bench/multicast.py`` shares two cores between the daemon, the
writer process and the simulator, so its figures move with everything else on the machine.
This runs the writer's three units of an MT's life in one process, on one connection, in
transactions of ``--batch`` units like the writer's group commits: claiming it
(:func:`~profile_store.mt.claim_due`, in claims of four batches), storing the submit_sm_resp
(:func:`~profile_store.mt.part_accepted`) and its delivery receipt
(:func:`~profile_store.dlr.record_receipt`). The outbox is seeded as in the submit-rate run:
N single-part marketing MTs materialised for one send. The last two run as the writer runs
them, through its :class:`~profile_store.committer.Committer`, so that units of one function
in a batch run together where they are marked to.

Reported: CPU microseconds per MT for each of the three, and the statuses the MTs ended in
(all 'delivered', or the run is wrong). With ``--statements``, each SQL statement's mean
time and count, the driver's execute included. Nothing is asserted.

CPU time still moves with whatever else runs on the machine. For a figure that does not,
count instructions: the "Collected" total of
``valgrind --tool=callgrind python bench/writer_units.py --mts 3000`` (with
``PYTHONHASHSEED=0``) repeats from run to run, and seeding costs the same in every run, so
two versions differ by what their units cost.

    python bench/writer_units.py                  # 10,000 MTs, 50 units per transaction
    python bench/writer_units.py --mts 50000 --statements
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.logging import configure_logging  # noqa: E402
from gatewayd.smpp.receipts import DeliveryReceipt  # noqa: E402
from multicast import positive, seed_outbox, write_config  # noqa: E402
from profile_store import prepared  # noqa: E402
from profile_store.committer import Committer  # noqa: E402
from profile_store.db import make_engine  # noqa: E402
from profile_store.dlr import record_receipt  # noqa: E402
from profile_store.mt import claim_due, part_accepted  # noqa: E402

SMSC = "bind1"


class StatementTimes:
    """Wall time and count of each statement run through :class:`profile_store.prepared.Prepared`."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.count: collections.Counter[str] = collections.Counter()

    def install(self) -> None:
        run = prepared.Prepared._cursor

        def timed(statement: Any, conn: Any, compiled: Any, parameters: Any, many: bool) -> Any:
            started = time.perf_counter()
            try:
                return run(statement, conn, compiled, parameters, many)
            finally:
                key = " ".join(compiled.sql.split())[:100]
                self.seconds[key] += time.perf_counter() - started
                self.count[key] += 1

        prepared.Prepared._cursor = timed  # type: ignore[method-assign]

    def report(self) -> str:
        lines = [f"{self.seconds[key] / self.count[key] * 1e6:8.1f} µs x {self.count[key]:>7,}  {key}" for key, _ in self.seconds.most_common()]
        return "\n".join(lines)


@attrs.define
class BenchUnit:
    """A unit as the store hands it to the committer."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    first: bool = True
    result: Any = None
    error: BaseException | None = None


def commit(committer: Committer, units: list[BenchUnit]) -> None:
    """Commit one batch; every unit must succeed."""
    ran, failed = committer.commit(units)  # type: ignore[arg-type]
    if ran != len(units) or failed:
        raise RuntimeError(next(unit.error for unit in units if unit.error is not None))


def accept_all(committer: Committer, mts: list[Any], batch: int, now: float, *, first: bool) -> float:
    """Store each MT's submit_sm_resp (:func:`part_accepted`), ``batch`` per commit; CPU seconds."""
    started = time.process_time()
    for at in range(0, len(mts), batch):
        units = [
            BenchUnit(
                functools.partial(
                    part_accepted, mt_id=mt.id, part_index=1, smsc=SMSC, smsc_message_id=f"{mt.id:08x}",
                    submit_status=0, now=now, recipient=mt.msisdn, text=mt.text,
                ),
                (),
                first=first,
            )  # fmt: skip
            for mt in mts[at : at + batch]
        ]
        commit(committer, units)
    return time.process_time() - started


def receipt_all(committer: Committer, mts: list[Any], batch: int, now: float) -> float:
    """Store a DELIVRD receipt for each MT accepted by :func:`accept_all`, ``batch`` per commit; CPU seconds."""
    started = time.process_time()
    for at in range(0, len(mts), batch):
        units = []
        for mt in mts[at : at + batch]:
            message_id = f"{mt.id:08x}"
            receipt = DeliveryReceipt(
                message_id=message_id, sub="001", dlvrd="001", submit_date=None, done_date=None, stat="DELIVRD",
                err="000", text=mt.text[:20], message_state=2, network_error_code=None,
            )  # fmt: skip
            units.append(BenchUnit(functools.partial(record_receipt, recipient=mt.msisdn), (SMSC, receipt, message_id, now)))
        commit(committer, units)
    return time.process_time() - started


def per_item(cpu: dict[str, float], count: int) -> str:
    """Each stage's CPU microseconds per item, and their total."""
    stages = ", ".join(f"{name} {seconds / count * 1e6:,.0f} µs" for name, seconds in cpu.items())
    return f"{stages}; total {sum(cpu.values()) / count * 1e6:,.0f} µs"


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        settings = argparse.Namespace(writer="thread", binds=1, window=100, rate=1_000_000)
        config = write_config(directory, f"sqlite:///{tmp}/bench.db", 1, settings)
        now = time.time()
        seed_outbox(config, args.mts, now)
        statements = StatementTimes()
        if args.statements:
            statements.install()
        engine = make_engine(config.store.url)
        cpu: dict[str, float] = {}
        with engine.connect().execution_options(writer=True) as conn:
            claimed = []
            started = time.process_time()
            while len(claimed) < args.mts:
                with conn.begin():
                    got = claim_due(conn, node="bench", now=now, limit=4 * args.batch, lease=60.0)
                if not got:
                    break
                claimed += got
            cpu["claim"] = time.process_time() - started
            # The writer's own committer runs the batches of the other two, as it runs the
            # gateway's (units of one function may run together, see runs_together).
            committer = Committer(engine, cut_after=3600.0, urgent=lambda: False)
            # A bulk MT's acceptance goes in the bulk lane, as the outbox writes it.
            cpu["submit_sm_resp"] = accept_all(committer, claimed, args.batch, now + 1, first=False)
            cpu["receipt"] = receipt_all(committer, claimed, args.batch, now + 2)
            committer.drop_connection()
            statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM mt_messages GROUP BY status")).all())
        engine.dispose()
    print(f"sqlite: {len(claimed):,} MTs, {args.batch} units per transaction: CPU per MT: {per_item(cpu, len(claimed))}")
    print(f"sqlite: MT statuses afterwards: {statuses}")
    if args.statements:
        print(statements.report())


def bench_main(description: str | None, run: Callable[[argparse.Namespace], None], count: str, count_help: str, batch_help: str) -> None:
    """Parse a writer benchmark's options (``--COUNT``, ``--batch``, ``--statements``) and run it."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(f"--{count}", type=positive, default=10_000, help=f"{count_help} (default 10,000)")
    parser.add_argument("--batch", type=positive, default=50, help=f"{batch_help} (default 50)")
    parser.add_argument("--statements", action="store_true", help="also time each SQL statement")
    args = parser.parse_args()
    configure_logging("warning", "json")
    run(args)


def main() -> None:
    bench_main(__doc__, run, "mts", "MTs queued, claimed, accepted and receipted", "units per transaction")


if __name__ == "__main__":
    main()
