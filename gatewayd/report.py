"""``gatewayd report CAMPAIGN``: what a campaign did, as a table, JSON or CSV.

The figures come from the store (:func:`profile_store.reports.campaign_stats`); the
module's own results (tallies, scores) come from its ``summarise`` when the campaign's
sheet is still in the campaigns directory, else from the plain record totals.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

from gatewayd.config import GatewayConfig
from gatewayd.plugins import find_modules
from gatewayd.sheets import read_sheet, sheet_files
from modules.api import Total, summarise_totals
from profile_store.reports import CampaignStats, UnknownCampaign, campaign_stats

__all__ = ["report_command", "report_rows", "results_lines"]


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
    """Print the report of campaign ``name`` in ``fmt`` ("table", "json" or "csv"); the exit status."""
    from profile_store.db import StoreError, make_engine
    from profile_store.migrate import check_schema

    try:
        check_schema(config.store.url, config.path)
        engine = make_engine(config.store.url)
        try:
            with engine.connect() as conn:
                stats = campaign_stats(conn, name)
        finally:
            engine.dispose()
    except UnknownCampaign:
        print(f"gatewayd: no campaign called {name!r} has run on this database", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 1
    results = results_lines(config, stats)
    if fmt == "json":
        print(json.dumps(_json(stats, results), indent=2, ensure_ascii=False))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("section", "item", "value"))
        writer.writerows(report_rows(stats, results))
        print(out.getvalue(), end="")
    else:
        rows = report_rows(stats, results)
        width = max(len(item) for _, item, _ in rows)
        section = None
        for sec, item, value in rows:
            if sec != section:
                print(f"{'' if section is None else chr(10)}{sec}")
                section = sec
            print(f"  {item:<{width}}  {value}")
    return 0
