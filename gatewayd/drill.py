"""A gateway that answers every MO: the subject of crash drills, multi-node tests and load tests.

``python -m gatewayd.drill --config PATH`` runs the ordinary daemon with one difference: its
MO processor replies to every MO with ``Thanks: <text>`` (priority 0, a delivery receipt
requested), so one MO exercises the whole pipeline: ingest, store, dispatch, outbox,
submit_sm, receipt. Nothing else about the daemon changes.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import sqlalchemy as sa
import trio

from gatewayd.app import serve
from gatewayd.config import ConfigError, load_config
from gatewayd.dispatch import Decision
from gatewayd.logging import configure_logging
from profile_store.mt import MtRequest
from profile_store.values import StoredMo

__all__ = ["reply_to_everything", "main"]


def reply_to_everything(conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
    """Answer each MO with its own text."""
    reply = MtRequest(msisdn=mo.msisdn, source_addr=mo.short_code, text=f"Thanks: {mo.text}"[:300], priority=0, in_reply_to=mo.id)
    return Decision(route="drill", replies=(reply,))


def main(argv: list[str] | None = None) -> int:
    """Run the drill gateway until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m gatewayd.drill", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    configure_logging(config.log_level, config.log_format)
    # Run as "python -m", this module is __main__, which the store writer process cannot
    # import the processor from; by its own name, it can.
    from gatewayd.drill import reply_to_everything as processor

    trio.run(functools.partial(serve, config, processor=processor, own_process=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
