"""The ``gatewayd`` command: ``run``, ``check-config``, ``smsc-sim``, ``db``, ``report``, ``subject``, ``audit``, and ``status``, ``reload``, ``drain``.

Exit codes: 0 on success (including a drained shutdown after SIGTERM), 1 when the
configuration is invalid, 2 for a usage error. ``db upgrade`` and ``db current`` also exit 1
when the database cannot be reached, and ``db current`` when the schema is not current.
``status``, ``reload`` and ``drain`` exit 1 when the daemon cannot be reached or refuses
(an invalid configuration on ``reload``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

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

    check = sub.add_parser("check-config", help="validate the configuration and the campaign sheets, and exit")
    check.add_argument("--config", type=Path, default=None, help="configuration file to validate")

    db = sub.add_parser("db", help="manage the database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate the database to the schema this gatewayd needs")
    upgrade.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")
    current = db_sub.add_parser("current", help="show the database's schema revision; exit 1 unless it is current")
    current.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")

    # Control commands: they talk to the running daemon over its control socket.
    for name, text in (
        ("status", "show the running daemon's binds, queues and rates"),
        ("reload", "make the running daemon re-read its configuration (an invalid one is reported and not applied)"),
        ("drain", "make the running daemon drain (no new MTs, outstanding responses awaited, unbind) and exit"),
    ):
        control = sub.add_parser(name, help=text)
        control.add_argument("--config", type=Path, default=None, help="configuration file naming the socket ([control] socket or [gateway] state_dir)")
        control.add_argument("--socket", type=Path, default=None, help="the control socket (overrides the configuration)")
        control.add_argument("--timeout", type=float, default=None, help="seconds to wait for the answer")
        if name == "status":
            control.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")

    report = sub.add_parser("report", help="print a campaign's participation, replies, delivery and results")
    report.add_argument("campaign", help="the campaign's name (as in its sheet)")
    report.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default: table)")

    campaign = sub.add_parser("campaign", help="pause, resume or cancel a campaign's outbound sends")
    campaign.add_argument("action", choices=("pause", "resume", "cancel"))
    campaign.add_argument("name", help="the campaign's name (as in its sheet)")
    campaign.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")

    subject = sub.add_parser("subject", help="a subscriber's rights: export or erase what is held about them")
    subject_sub = subject.add_subparsers(dest="subject_command", required=True)
    export = subject_sub.add_parser("export", help="write everything held about a number as JSON")
    export.add_argument("number", help="the subscriber's number, e.g. +306912345678")
    export.add_argument("--out", type=Path, default=None, help="file to write (mode 0600; default: stdout)")
    export.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")
    erase = subject_sub.add_parser("erase", help="erase everything held about a number, keeping only its opt-outs")
    erase.add_argument("number", help="the subscriber's number, e.g. +306912345678")
    erase.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")

    disclose = sub.add_parser("disclose", help="hand a campaign's results, per pseudonymous subscriber, to a third party the policy allows")
    disclose.add_argument("campaign", help="the campaign's name (as in its sheet)")
    disclose.add_argument("--to", required=True, dest="third_party", help="the third party, as named in the policy's [[third_party]]")
    disclose.add_argument("--out", type=Path, default=None, help="file to write (mode 0600; default: stdout)")
    disclose.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the audit log's hash chain; name the first broken entry")
    verify.add_argument("--config", type=Path, default=None, help="configuration file naming the database ([store] url)")

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
    if args.command in ("status", "reload", "drain"):
        return _control(args)
    if args.command == "report":
        from gatewayd.report import report_command

        config = _load(args.config)
        return 1 if config is None else report_command(config, args.campaign, args.format)
    if args.command == "campaign":
        from gatewayd.report import campaign_command

        config = _load(args.config)
        return 1 if config is None else campaign_command(config, args.action, args.name)
    if args.command in ("subject", "audit", "disclose"):
        from gatewayd import subject as rights

        config = _load(args.config)
        if config is None:
            return 1
        if args.command == "audit":
            return rights.audit_verify_command(config)
        if args.command == "disclose":
            return rights.disclose_command(config, args.campaign, args.third_party, args.out)
        if args.subject_command == "export":
            return rights.subject_export_command(config, args.number, args.out)
        return rights.subject_erase_command(config, args.number)
    return _run(args.config)


def _check_config(path: Path | None) -> int:
    """Validate gatewayd.toml, then every campaign sheet and the routing between them."""
    from gatewayd.plugins import find_modules
    from gatewayd.sheets import check_campaigns, read_sheet, sheet_files

    config = _load(path)
    if config is None:
        return 1
    registry = find_modules(quiet=True)
    for name, reason in registry.broken.items():
        print(f"warning: module {name!r} cannot be used: {reason}", file=sys.stderr)
    problems = check_campaigns(
        config.campaigns_dir,
        registry,
        config.keywords.global_keywords(),
        config.short_code_rules(),
        config_file=str(config.path) if config.path else "gatewayd.toml",
    )
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    # Every sheet is valid now, so each one reads into a campaign.
    sheets = [sheet for sheet in (read_sheet(file, registry)[0] for file in sheet_files(config.campaigns_dir)) if sheet is not None]
    policy_note = _check_policy(config, sheets)
    if policy_note is None:
        return 1
    names = [sheet.name for sheet in sheets]
    campaigns = f"{len(names)} campaign(s): {', '.join(names)}" if names else "no campaigns"
    where = str(config.path) if config.path else "built-in defaults"
    print(f"{where}: OK ({len(config.smscs)} SMSC(s){', simulator' if config.simulator_active else ''}; {campaigns}; {policy_note})")
    return 0


def _check_policy(config: GatewayConfig, sheets: list[Any]) -> str | None:
    """Validate the privacy policy and the sheets' owners against it; None after printing problems."""
    from permissions.policy_file import check_owners, load_policy

    path = config.policy_path
    if not path.exists():
        if sheets:
            print(f"{path}: file not found; without a privacy policy every campaign's use of personal data is refused", file=sys.stderr)
            return None
        return "no privacy policy"
    try:
        policy = load_policy(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    problems = check_owners(policy, {s.name: s.owner for s in sheets}, {s.name: str(s.path) for s in sheets})
    for problem in problems:
        print(problem, file=sys.stderr)
    return None if problems else f"policy {path.name}: {len(policy.data_users)} data user(s)"


def _run(path: Path | None) -> int:
    from gatewayd.app import serve
    from gatewayd.logging import configure_logging
    from profile_store.db import StoreError

    config = _load(path)
    if config is None:
        return 1
    configure_logging(config.log_level, config.log_format)
    try:
        trio.run(functools.partial(serve, config, own_process=True))
    except ConfigError as exc:
        # The privacy policy or key, read once the store is open.
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
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


# --- status, reload, drain ------------------------------------------------------------------

_CONTROL_TIMEOUTS = {"status": 30.0, "reload": 120.0}


def _control_socket(args: argparse.Namespace) -> Path | None:
    """The socket to talk to: --socket, else the configuration's; None after saying why not."""
    from gatewayd.control import socket_path_for_file

    if args.socket is not None:
        return Path(args.socket)
    file = args.config if args.config is not None else default_config_path()
    try:
        config = load_config(file)
    except ConfigError as exc:
        # A reload must still reach the daemon, which reports the problems and keeps running.
        path = socket_path_for_file(file)
        if path is None:
            print(str(exc), file=sys.stderr)
            print(
                "gatewayd: cannot tell where the control socket is: give it with --socket, or run this as a user"
                " who can read the file (the service user or root)",
                file=sys.stderr,
            )
        return path
    if config.control_socket is None:
        print(f"gatewayd: the control socket is disabled in {file} ([control] enabled = false)", file=sys.stderr)
    return config.control_socket


def _control(args: argparse.Namespace) -> int:
    from gatewayd.control import ControlUnavailable, request

    path = _control_socket(args)
    if path is None:
        return 1
    # A drain waits for outstanding responses (drain_timeout) and the unbinds.
    timeout = args.timeout or _CONTROL_TIMEOUTS.get(args.command, 600.0)
    try:
        response = request(path, args.command, timeout=timeout)
    except ControlUnavailable as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 1
    result = response.get("result") or {}
    if args.command == "status":
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            print(_format_status(result))
        return 0 if response.get("ok") else 1
    if args.command == "reload":
        if response.get("ok"):
            changes = ", ".join(f"{key} {', '.join(result[key])}" for key in ("rebound", "added", "removed") if result.get(key))
            print(f"gatewayd: configuration reloaded{'; ' + changes if changes else ' (no SMSC changed)'}")
            return 0
        print(f"gatewayd: {response.get('error', 'reload failed')}", file=sys.stderr)
        for problem in result.get("problems", []):
            print(problem, file=sys.stderr)
        return 1
    if response.get("ok"):
        print("gatewayd: drained; the daemon is exiting")
        return 0
    print(f"gatewayd: {response.get('error', 'drain failed')}", file=sys.stderr)
    return 1


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _format_status(status: dict[str, object]) -> str:
    """``gatewayd status`` for people: a header, a table of binds, then queues and rates."""
    s: dict = status  # type: ignore[type-arg]
    lines = [
        f"gatewayd {s.get('version')}  node {s.get('node')}  pid {s.get('pid')}  {s.get('state')}  "
        f"up {_duration(float(s.get('uptime_seconds') or 0))}",
        f"config      {s.get('config') or '(built-in defaults)'}",
        f"state dir   {s.get('state_dir')}",
        "",
    ]
    binds = s.get("binds") or []
    rows = [("SMSC", "BIND", "STATE", "ADDRESS")] + [(b["smsc"], b["bind"], b["state"], b["host"]) for b in binds]
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    for row in rows:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    lines.append(f"binds up    {s.get('binds_up')}/{s.get('binds_configured')}")
    queues = s.get("queues") or {}
    outbox = queues.get("outbox") or {}
    active = ", ".join(f"{status} {outbox.get(status, 0)}" for status in ("queued", "sending"))
    lines += [
        "",
        f"outbox      {active}; in flight here {queues.get('outbox_in_flight', 0)}",
        f"dispatch    {queues.get('dispatch', 0)} MO(s) waiting",
        f"receipts    {s.get('receipts_pending', 0)} MT(s) submitted and awaiting their receipt",
    ]
    rates = s.get("rates") or {}
    window = rates.get("window_seconds") or 0
    lines.append(
        f"rates       MO {rates.get('mo_per_second', 0):g}/s, MT {rates.get('mt_per_second', 0):g}/s, "
        f"receipts {rates.get('receipts_per_second', 0):g}/s (last {window:g} s)"
    )
    totals = s.get("totals") or {}
    lines.append(
        f"since start MO {totals.get('mo_received', 0)}, MT submitted {totals.get('mt_submitted', 0)}, "
        f"MT failed {totals.get('mt_failed', 0)}, receipts {totals.get('receipts_received', 0)}"
    )
    campaigns = s.get("campaigns") or {}
    loaded, failed = campaigns.get("loaded") or [], campaigns.get("failed") or []
    lines.append(f"campaigns   {len(loaded)} loaded{': ' + ', '.join(map(str, loaded)) if loaded else ''}")
    for item in failed:
        lines.append(f"            failed to load: {item}")
    for name in campaigns.get("stale") or []:
        lines.append(f"            {name}: running its last good version (its sheet now fails)")
    reload = s.get("last_reload")
    if reload:
        outcome = "applied" if reload.get("applied") else "REJECTED, running on the previous configuration"
        lines.append(f"last reload {reload.get('at')}: {outcome}")
        for problem in reload.get("problems") or []:
            lines.append(f"            {problem}")
    if s.get("store_error"):
        lines.append(f"store       UNAVAILABLE: {s['store_error']}")
    if s.get("metrics_endpoint"):
        lines.append(f"metrics     http://{s['metrics_endpoint']}/metrics")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
