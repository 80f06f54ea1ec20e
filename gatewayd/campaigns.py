"""The campaigns in force in a running gateway: load, register in the store, swap on reload.

:class:`Campaigns` reads the sheets (:func:`gatewayd.sheets.load_campaigns`, on a worker
thread), records each campaign in the store and fills coupon pools (one write unit), then
hands the new snapshot to the :class:`~gatewayd.engine.CampaignEngine`. A reload (SIGHUP,
``gatewayd reload`` or a changed sheet) does the same with the previous snapshot, so a
broken sheet keeps its campaign's last good version; reloads never overlap.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import attrs
import sqlalchemy as sa
import structlog
import trio

from gatewayd.config import ConfigError, GatewayConfig
from gatewayd.engine import CampaignEngine
from gatewayd.plugins import ModuleRegistry, find_modules
from gatewayd.privacy import DeliveryRules, Privacy, PrivacyKeys, audit_config, load_key, read_policy
from gatewayd.quiet_hours import Caps, QuietHours
from gatewayd.sheets import CampaignSet, LoadedCampaign, load_campaigns, watch_campaigns
from permissions import Policy
from permissions.policy_file import check_owners
from profile_store.campaigns import CampaignRow, campaign_refs, ensure_campaigns, fill_coupon_pool
from profile_store.db import Store, StoreUnavailable

__all__ = ["Campaigns", "coupon_codes", "register_campaigns"]

log = structlog.get_logger("gatewayd.campaigns")


def coupon_codes(campaign: LoadedCampaign) -> tuple[str, ...] | None:
    """The code pool a campaign's module asks for, or None when it keeps none.

    A module with a ``pool(settings, name)`` method gets those codes; a ``codes_file``
    setting names a file of one code per line (blank lines and ``#`` comments skipped),
    relative to the sheet's directory. Blocking: call it on a worker thread.

    Raises:
        OSError, UnicodeDecodeError: the codes file cannot be read.
    """
    pool = getattr(campaign.module, "pool", None)
    if pool is None:
        return None
    settings = campaign.sheet.settings
    codes_file = getattr(settings, "codes_file", None)
    if codes_file:
        path = Path(campaign.sheet.path).parent / os.path.expanduser(codes_file)
        lines = path.read_text(encoding="utf-8").splitlines()
        return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return tuple(pool(settings, campaign.sheet.name))


def register_campaigns(
    conn: sa.Connection,
    rows: Sequence[CampaignRow],
    pools: dict[str, tuple[str, ...]],
    now: float,
    policy: Policy | None = None,
    what: str = "load",
) -> dict[str, int]:
    """The store unit of a load: a row per campaign, coupon pools topped up, the load audited
    (with ``policy``); returns the ids by name."""
    ids = ensure_campaigns(conn, rows, now)
    for name, codes in pools.items():
        added = fill_coupon_pool(conn, ids[name], codes)
        if added:
            log.info("coupon_pool_filled", campaign=name, added=added, size=len(codes))
    if policy is not None:
        audit_config(conn, now, policy, len(rows), what)
    return ids


def delivery_rules(campaigns: CampaignSet) -> dict[str, DeliveryRules]:
    """The quiet hours and caps of the campaigns whose settings set them (multicasts)."""
    rules = {}
    for name, loaded in campaigns.campaigns.items():
        settings = loaded.sheet.settings
        window = getattr(settings, "quiet_hours", None)
        if window is None:
            continue
        rules[name] = DeliveryRules(
            window=QuietHours.parse(window),
            zone=getattr(settings, "time_zone", None),
            default_zone=getattr(settings, "default_time_zone", "UTC"),
            caps=Caps(per_day=getattr(settings, "per_day", None), per_week=getattr(settings, "per_week", None)),
        )
    return rules



@attrs.define
class Campaigns:
    """The campaigns of a running gateway and the engine that serves them."""

    store: Store
    config: GatewayConfig
    registry: ModuleRegistry = attrs.field(factory=lambda: find_modules())
    engine: CampaignEngine | None = None
    current: CampaignSet | None = None
    #: The policy in force and the keys (None until the first load).
    privacy: Privacy | None = None
    _lock: trio.Lock = attrs.Factory(trio.Lock)

    async def load(self, config: GatewayConfig | None = None) -> CampaignSet:
        """Read the privacy policy and the sheets and put them in force (the first load, or a reload).

        Raises:
            ConfigError: the policy file, or the privacy key, is not usable; the previous
                policy and campaigns stay.
            StoreUnavailable: the campaigns could not be recorded; the previous ones stay.
        """
        async with self._lock:
            config = config if config is not None else self.config
            policy = await trio.to_thread.run_sync(read_policy, config)
            keys = self.privacy.keys if self.privacy is not None else PrivacyKeys.derive(await trio.to_thread.run_sync(load_key, config.key_path))
            self.config = config
            previous = self.current
            new = await trio.to_thread.run_sync(
                lambda: load_campaigns(
                    config.campaigns_dir,
                    self.registry,
                    keywords=config.keywords.global_keywords(),
                    short_codes=config.short_code_rules(),
                    previous=previous,
                )
            )
            pools = await trio.to_thread.run_sync(self._pools, new)
            rows = [
                CampaignRow(c.sheet.name, c.sheet.owner, c.sheet.module, c.sheet.short_code) for c in new.campaigns.values()
            ]
            what = "load" if self.current is None else "reload"
            ids = await self.store.write(register_campaigns, rows, pools, time.time(), policy, what)
            refs = {ref.name: ref for ref in (await self.store.read(campaign_refs)).values()}
            privacy = Privacy(policy, keys, refs, delivery_rules(new))
            for problem in check_owners(policy, {n: c.sheet.owner for n, c in new.campaigns.items()}, {n: str(c.sheet.path) for n, c in new.campaigns.items()}):
                log.error("campaign_owner_unknown", problem=str(problem))
            if self.engine is None:
                self.engine = CampaignEngine(new, ids, config, privacy)
            else:
                self.engine.swap(new, ids, config, privacy)
            self.privacy = privacy
            self.current = new
            return new

    @staticmethod
    def _pools(campaigns: CampaignSet) -> dict[str, tuple[str, ...]]:
        pools = {}
        for name, campaign in campaigns.campaigns.items():
            try:
                codes = coupon_codes(campaign)
            except (OSError, UnicodeDecodeError) as exc:
                log.error("coupon_pool_unreadable", campaign=name, error=str(exc))
                continue
            if codes is not None:
                pools[name] = codes
        return pools

    async def reload(self, config: GatewayConfig | None = None) -> bool:
        """:meth:`load` that logs instead of raising; False when the store refused it."""
        try:
            await self.load(config)
        except StoreUnavailable as exc:
            log.error("campaigns_reload_failed", error=str(exc))
            return False
        except ConfigError as exc:
            log.error("policy_reload_failed", problems=[str(p) for p in exc.problems])
            return False
        return True

    async def watch(self, nursery: trio.Nursery) -> None:
        """Reload whenever a sheet changes (every ``campaigns_poll_interval`` seconds), until cancelled."""
        await watch_campaigns(
            self.config.campaigns_dir,
            self.config.campaigns_poll_interval,
            lambda: nursery.start_soon(self.reload),
        )

    def status(self) -> dict[str, Any]:
        """What ``gatewayd status`` shows: campaigns loaded, stale and failing."""
        current = self.current
        if current is None:
            return {"loaded": [], "failed": [], "stale": []}
        return {
            "loaded": list(current.campaigns),
            "failed": [str(problem) for problems in current.problems.values() for problem in problems],
            "stale": sorted(current.stale),
        }
