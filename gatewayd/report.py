"""``gatewayd report CAMPAIGN``: what a campaign did, as a table, JSON or CSV.

The figures come from the store (:func:`profile_store.reports.campaign_stats`); the
module's own results (tallies, scores) come from its ``summarise`` when the campaign's
sheet is still in the campaigns directory, else from the plain record totals. The privacy
policy must let the campaign's owner read participation for analytics; each report is
audited.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from typing import Any

import sqlalchemy as sa

from gatewayd.config import GatewayConfig
from gatewayd.plugins import find_modules
from gatewayd.sheets import read_sheet, sheet_files
from modules.api import Total, summarise_totals
from permissions import ANALYTICS, Category, Deny, Operation
from profile_store.privacy import append_audit
from profile_store.reports import CampaignStats, campaign_stats
from profile_store.schema import campaigns
from profile_store.sends import change_sends, send_stats

__all__ = ["campaign_command", "report_command", "report_rows", "results_lines", "send_rows"]


def results_lines(config: GatewayConfig, stats: CampaignStats) -> list[tuple[str, str]]:
    """The module's own result lines for the campaign (its ``summarise``, or one line per total)."""
    totals = [Total(t.kind, t.key, t.count, t.sum) for t in stats.totals]
    registry = find_modules(quiet=True)
    for path in sheet_files(config.campaigns_dir):
        sheet, problems = read_sheet(path, registry)
        if sheet is None or sheet.name != stats.name:
            continue
        module_class = registry.get(sheet.module)
        summarise = getattr(module_class(), "summarise", None) if module_class is not None else None
        if summarise is not None:
            return [(str(label), str(value)) for label, value in summarise(sheet.settings, totals)]
    return summarise_totals(totals)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def report_rows(stats: CampaignStats, results: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(section, item, value) rows: the figures every campaign has, then the module's results."""
    rows = [
        ("campaign", "name", stats.name),
        ("campaign", "owner", stats.owner),
        ("campaign", "module", stats.module),
        ("campaign", "short code", stats.short_code),
        ("traffic", "participants", str(stats.participants)),
        ("traffic", "MOs received", str(stats.mos)),
        ("traffic", "MOs failed", str(stats.mos_failed)),
        ("traffic", "responses sent", str(stats.replies)),
        ("traffic", "response rate", _rate(stats.response_rate)),
        ("traffic", "MTs queued", str(stats.mts)),
        ("traffic", "MTs delivered", str(stats.delivered)),
        ("traffic", "delivery rate", _rate(stats.delivery_rate)),
    ]
    rows += [("MT status", status, str(n)) for status, n in sorted(stats.mt_status.items())]
    if stats.coupons_total:
        rows += [
            ("coupons", "pool", str(stats.coupons_total)),
            ("coupons", "claimed", str(stats.coupons_claimed)),
            ("coupons", "redeemed", str(stats.coupons_redeemed)),
        ]
    rows += [("results", label, value) for label, value in results]
    return rows


def send_rows(sends: list[Any]) -> list[tuple[str, str, str]]:
    """(section, item, value) rows per outbound send: targeted, suppressed and why, submitted,
    delivered, replied, response rate, and each follow-up's uplift."""
    rows: list[tuple[str, str, str]] = []
    by_id = {s.send.id: s for s in sends}
    for s in sends:
        section = f"send {s.send.name}"
        suppressed = {**s.suppressed}
        for reason, n in s.suppressed_at_submit.items():
            suppressed[reason] = suppressed.get(reason, 0) + n
        rows += [
            (section, "status", s.send.status),
            (section, "targeted", str(s.targeted)),
            (section, "suppressed", str(sum(suppressed.values()))),
            *[(section, f"suppressed: {reason}", str(n)) for reason, n in sorted(suppressed.items())],
            (section, "submitted", str(s.submitted)),
            (section, "delivered", str(s.delivered)),
            (section, "replied", str(s.replied)),
            (section, "response rate", _rate(s.response_rate)),
        ]
        parent = by_id.get(s.send.parent_id) if s.send.parent_id is not None else None
        if parent is not None:
            non_responders = max(parent.submitted - parent.replied, 0)
            uplift = s.replied / non_responders if non_responders else None
            rows.append((section, "uplift (replies / earlier non-responders)", _rate(uplift)))
    return rows


def _json(stats: CampaignStats, results: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "campaign": stats.name,
        "owner": stats.owner,
        "module": stats.module,
        "short_code": stats.short_code,
        "participants": stats.participants,
        "mos": stats.mos,
        "mos_failed": stats.mos_failed,
        "responses_sent": stats.replies,
        "response_rate": stats.response_rate,
        "mts": stats.mts,
        "delivered": stats.delivered,
        "delivery_rate": stats.delivery_rate,
        "mt_status": stats.mt_status,
        "coupons": {"pool": stats.coupons_total, "claimed": stats.coupons_claimed, "redeemed": stats.coupons_redeemed},
        "totals": [{"kind": t.kind, "key": t.key, "count": t.count, "sum": t.sum} for t in stats.totals],
        "results": [{"item": label, "value": value} for label, value in results],
    }


def report_command(config: GatewayConfig, name: str, fmt: str) -> int:
    """Print the report of campaign ``name`` in ``fmt`` ("table", "json" or "csv"); the exit status.

    A report reads the campaign's participation for analytics: the privacy policy must let the
    campaign's owner do that. Refused or permitted, the read is audited.
    """
    from gatewayd.config import ConfigError
    from gatewayd.privacy import read_policy
    from gatewayd.subject import with_store

    try:
        policy = read_policy(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    read: dict[str, Any] = {}

    def work(conn: sa.Connection) -> int:
        owner = conn.execute(sa.select(campaigns.c.owner).where(campaigns.c.name == name)).scalar()
        if owner is None:
            print(f"gatewayd: no campaign called {name!r} has run on this database", file=sys.stderr)
            return 1
        decision = policy.may(owner, Operation.READ, Category.PARTICIPATION, ANALYTICS)
        subject = f"campaign:{name}"
        if isinstance(decision, Deny):
            append_audit(conn, [decision.audit(subject=subject, at=time.time(), detail="report refused")])
            print(f"gatewayd: the privacy policy does not let {owner!r} read participation for analytics ({decision.reason})", file=sys.stderr)
            return 1
        read["stats"], read["sends"] = campaign_stats(conn, name), send_stats(conn, name)
        append_audit(conn, [decision.audit(subject=subject, at=time.time(), detail="report")])
        return 0

    status = with_store(config, work, write=True)
    if status:
        return status
    stats: CampaignStats = read["stats"]
    sends = read["sends"]
    results = results_lines(config, stats)
    if fmt == "json":
        data = _json(stats, results)
        data["sends"] = [
            {"send": s.send.name, **{item: value for section, item, value in send_rows([s]) if section == f"send {s.send.name}"}}
            for s in sends
        ]
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("section", "item", "value"))
        writer.writerows(report_rows(stats, results) + send_rows(sends))
        print(out.getvalue(), end="")
    else:
        rows = report_rows(stats, results) + send_rows(sends)
        width = max(len(item) for _, item, _ in rows)
        section = None
        for sec, item, value in rows:
            if sec != section:
                print(f"{'' if section is None else chr(10)}{sec}")
                section = sec
            print(f"  {item:<{width}}  {value}")
    return 0


def campaign_command(config: GatewayConfig, action: str, name: str) -> int:
    """Pause, resume or cancel a campaign's sends (``gatewayd campaign ACTION NAME``); the exit status.

    It acts on the store, so a running daemon follows at its next claim: queued MTs of a
    paused send stay queued out of reach, a cancelled send's queued MTs are cancelled, MTs
    being sent finish, and nothing is queued or sent twice.
    """
    import time

    from gatewayd.subject import with_store

    def work(conn: Any) -> int:
        try:
            changed = change_sends(conn, name, action, time.time())
        except LookupError:
            print(f"gatewayd: no campaign called {name!r} has run on this database", file=sys.stderr)
            return 1
        done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
        print(f"{name}: {changed['sends']} send(s) {done}, {changed['mts']} queued MT(s) {done}")
        return 0

    return with_store(config, work, write=True)
