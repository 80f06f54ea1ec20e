"""The ``gatewayd`` command: ``run``, ``check-config``, ``smsc-sim`` and ``db``.

Exit codes: 0 on success (including a drained shutdown after SIGTERM), 1 when the
configuration is invalid, 2 for a usage error. ``db upgrade`` and ``db current`` also exit 1
when the database cannot be reached, and ``db current`` when the schema is not current.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import structlog
import trio

from gatewayd import __version__
from gatewayd.config import ConfigError, GatewayConfig, load_config

if TYPE_CHECKING:
    from gatewayd.simulator.smsc import SmscSimulator

__all__ = ["main", "default_config_path"]

log = structlog.get_logger("gatewayd.cli")

#: Where ``run`` and ``check-config`` look when no ``--config`` is given (besides $GATEWAYD_CONFIG).
DEFAULT_CONFIG = Path("conf/gatewayd.toml")


def default_config_path() -> Path | None:
    """$GATEWAYD_CONFIG, else ``conf/gatewayd.toml`` when it exists, else None (built-in defaults)."""
    env = os.environ.get("GATEWAYD_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatewayd", description="SMS short-code campaign gateway (SMPP 3.4).")
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, default=None, help="configuration file (default: $GATEWAYD_CONFIG or conf/gatewayd.toml)")

    check = sub.add_parser("check-config", help="validate the configuration and exit")
    check.add_argument("--config", type=Path, default=None, help="configuration file to validate")

    db = sub.add_parser("db", help="manage the database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate the database to the schema this gatewayd needs")
    upgrade.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")
    current = db_sub.add_parser("current", help="show the database's schema revision; exit 1 unless it is current")
    current.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")

    sim = sub.add_parser("smsc-sim", help="run the bundled SMSC simulator on its own")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=2775)
    sim.add_argument("--system-id", default="gatewayd")
    sim.add_argument("--password", default="secret")
    sim.add_argument("--mo-file", default=None, help="JSON lines {\"from\":..., \"to\":..., \"text\":...} to inject; '-' reads stdin")
    sim.add_argument("--no-receipts", action="store_true", help="do not send delivery receipts")
    sim.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def _load(path: Path | None) -> GatewayConfig | None:
    """The configuration, or None after printing its problems to stderr."""
    try:
        return load_config(path if path is not None else default_config_path())
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gatewayd`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "smsc-sim":
        return _smsc_sim(args)
    if args.command == "db":
        return _db_upgrade(args.config) if args.db_command == "upgrade" else _db_current(args.config)
    return _run(args.config)


def _check_config(path: Path | None) -> int:
    config = _load(path)
    if config is None:
        return 1
    where = str(config.path) if config.path else "built-in defaults"
    print(f"{where}: OK ({len(config.smscs)} SMSC(s){', simulator' if config.simulator_active else ''})")
    return 0


def _run(path: Path | None) -> int:
    from gatewayd.app import serve
    from gatewayd.logging import configure_logging
    from profile_store.db import StoreError

    config = _load(path)
    if config is None:
        return 1
    configure_logging(config.log_level, config.log_format)
    try:
        trio.run(serve, config)
    except StoreError as exc:
        # Raised before anything started: the database is unreachable or its schema does not match.
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 1
    return 0


def _db_upgrade(path: Path | None) -> int:
    from profile_store.db import StoreError
    from profile_store.migrate import current_revision, display_url, upgrade

    config = _load(path)
    if config is None:
        return 1
    where = display_url(config.store.url)
    try:
        # The default SQLite database lives in state_dir, which the daemon would create on start.
        config.state_dir.mkdir(parents=True, exist_ok=True)
        before = current_revision(config.store.url)
        upgrade(config.store.url)
        after = current_revision(config.store.url)
    except (StoreError, OSError) as exc:
        # StoreError messages name the database already.
        print(str(exc) if isinstance(exc, StoreError) else f"{where}: {exc}", file=sys.stderr)
        return 1
    done = " (already up to date)" if before == after else ""
    print(f"{where}: schema '{before or 'none'}' -> '{after or 'none'}'{done}")
    return 0


def _db_current(path: Path | None) -> int:
    from profile_store.db import StoreError
    from profile_store.migrate import SchemaMismatch, check_schema, display_url, head_revision

    config = _load(path)
    if config is None:
        return 1
    where = display_url(config.store.url)
    try:
        check_schema(config.store.url, config.path)
    except SchemaMismatch as exc:
        print(f"{where}: {exc}")
        return 1
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{where}: schema '{head_revision()}' (up to date)")
    return 0


def _smsc_sim(args: argparse.Namespace) -> int:
    from gatewayd.logging import configure_logging

    configure_logging(args.log_level)
    trio.run(_serve_simulator, args)
    return 0


async def _serve_simulator(args: argparse.Namespace) -> None:
    from gatewayd.simulator.smsc import SmscSimulator

    simulator = SmscSimulator(system_id=args.system_id, password=args.password, delivery_receipts=not args.no_receipts)
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.serve, args.host, args.port)
        if args.mo_file:
            nursery.start_soon(_inject_file, simulator, args.mo_file)


async def _inject_file(simulator: SmscSimulator, source: str) -> None:
    """Inject the MOs of a JSON-lines file (or stdin) once a receiver is bound."""
    if source == "-":
        lines = await trio.to_thread.run_sync(sys.stdin.read)
    else:
        lines = await trio.Path(source).read_text(encoding="utf-8")
    await simulator.wait_bound()
    for number, line in enumerate(lines.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            statuses = await simulator.inject_mo(str(item["from"]), str(item["to"]), str(item["text"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("mo_line_skipped", line=number, error=str(exc))
            continue
        except LookupError as exc:
            log.warning("mo_not_delivered", line=number, error=str(exc))
            await simulator.wait_bound()
            continue
        log.info("mo_injected", line=number, statuses=statuses)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
