"""The campaign engine: the MO processor that routes, runs campaign modules and applies their actions.

For each stored MO, inside the dispatcher's unit of work:

1. **route** it (:func:`routing.router.route`) by short code, keyword and the subscriber's
   open session;
2. for a campaign, build the module's :class:`~modules.api.ModuleContext` (the campaign's
   sheet, its settings, the subscriber's module state under a pseudonym) and call the
   module's pure ``handle``;
3. return a :class:`~gatewayd.dispatch.Decision` whose ``apply`` writes the actions (state,
   records, facts, coupons, alert subscriptions, sessions) and renders the replies, in the
   same transaction that marks the MO processed.

A module that raises, or returns something that is not an action, fails that MO alone (the
dispatcher records the error and logs ``mo_processing_failed``); it is not retried.

The campaigns are an immutable :class:`~gatewayd.sheets.CampaignSet` snapshot; a reload
swaps it with :meth:`CampaignEngine.swap` between two units, never during one.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import attrs
import sqlalchemy as sa
import structlog

from gatewayd.config import GatewayConfig, ShortCodeConfig
from gatewayd.dispatch import Decision
from gatewayd.sheets import CampaignSet, LoadedCampaign
from modules.api import (
    ClaimCoupon,
    EndSession,
    Message,
    ModuleContext,
    ModuleResult,
    OpenSession,
    Record,
    RecordFact,
    RedeemCoupon,
    Reply,
    SetState,
    Subscribe,
    SubscriberView,
    Unsubscribe,
    render,
)
from profile_store import campaigns as store
from profile_store.mt import MtRequest
from profile_store.values import StoredMo
from routing.outcomes import Closed, GlobalKeyword, NoRoute, ToCampaign
from routing.router import route

__all__ = ["CampaignEngine", "ModuleFailed", "pseudonym"]

log = structlog.get_logger("gatewayd.engine")


class ModuleFailed(Exception):
    """A campaign module raised or answered with something that is not a :class:`~modules.api.ModuleResult`."""


def pseudonym(key: bytes, campaign: str, subscriber_id: int) -> str:
    """The subscriber's reference within one campaign: stable, not linkable across campaigns."""
    digest = hashlib.blake2b(f"{campaign}\x00{subscriber_id}".encode(), key=key[:64], digest_size=10)
    return digest.hexdigest()


@attrs.define
class _Prefetched:
    """What :meth:`CampaignEngine.prepare` read for the batch being processed."""

    now: float
    sessions: dict[tuple[str, int], int]
    states: dict[tuple[int, int], dict[str, Any]]


class CampaignEngine:
    """The :data:`~gatewayd.dispatch.MoProcessor` of a gateway with campaigns.

    Args:
        campaigns: the loaded campaigns and their routing table.
        campaign_ids: campaign name -> ``campaigns.id`` (see :func:`profile_store.campaigns.ensure_campaigns`).
        config: the gateway configuration (short code texts).
        pseudonym_key: the key of the per-campaign subscriber pseudonyms.
    """

    def __init__(
        self,
        campaigns: CampaignSet,
        campaign_ids: Mapping[str, int],
        config: GatewayConfig,
        *,
        pseudonym_key: bytes = b"gatewayd",
    ) -> None:
        self.config = config
        self._key = pseudonym_key
        self._prefetched: _Prefetched | None = None
        self.swap(campaigns, campaign_ids)

    def swap(self, campaigns: CampaignSet, campaign_ids: Mapping[str, int], config: GatewayConfig | None = None) -> None:
        """Use a new snapshot of the campaigns (and of the configuration) from the next MO on."""
        ids = dict(campaign_ids)
        by_code: dict[str, list[int]] = {}
        for name, loaded in campaigns.campaigns.items():
            if name in ids:
                by_code.setdefault(loaded.sheet.short_code, []).append(ids[name])
        self.campaigns = campaigns
        self.campaign_ids = ids
        self._names = {cid: name for name, cid in ids.items()}
        self._by_code = by_code
        if config is not None:
            self.config = config

    # --- reading ---------------------------------------------------------------------------

    def prepare(self, conn: sa.Connection, mos: Sequence[StoredMo], now: float) -> None:
        """Read the sessions and module states of a batch of MOs in two queries."""
        sessions = store.open_sessions(conn, ((mo.short_code, mo.subscriber_id) for mo in mos), now)
        pairs = [(cid, mo.subscriber_id) for mo in mos for cid in self._by_code.get(mo.short_code, ())]
        self._prefetched = _Prefetched(now, sessions, store.load_states(conn, pairs))

    def _session(self, conn: sa.Connection, mo: StoredMo, now: float) -> str | None:
        cache = self._prefetched
        if cache is not None and cache.now == now:
            cid = cache.sessions.get((mo.short_code, mo.subscriber_id))
        else:
            cid = store.open_session(conn, mo.short_code, mo.subscriber_id, now)
        return self._names.get(cid) if cid is not None else None

    def _state(self, conn: sa.Connection, campaign_id: int, mo: StoredMo, now: float) -> dict[str, Any]:
        cache = self._prefetched
        if cache is not None and cache.now == now:
            return cache.states.get((campaign_id, mo.subscriber_id), {})
        return store.load_state(conn, campaign_id, mo.subscriber_id)

    # --- deciding --------------------------------------------------------------------------

    def __call__(self, conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        """Decide about one MO (reads only; the writes are in the decision's ``apply``)."""
        campaigns = self.campaigns
        session = self._session(conn, mo, now)
        outcome = route(campaigns.table, mo.short_code, mo.text, now, session)
        code = self.config.short_code(mo.short_code)
        if isinstance(outcome, GlobalKeyword):
            return self._global(mo, outcome, code)
        if isinstance(outcome, NoRoute):
            replies = (self._reply(mo, code.not_understood, None),) if code.not_understood else ()
            return Decision(route=outcome.label, replies=replies)
        loaded = campaigns.get(outcome.campaign)
        campaign_id = self.campaign_ids.get(outcome.campaign)
        if loaded is None or campaign_id is None:
            # The table and the campaigns come from one snapshot; this is a bug, not bad input.
            raise ModuleFailed(f"campaign {outcome.campaign!r} is routed to but not loaded")
        if isinstance(outcome, Closed):
            text = loaded.sheet.closed_response
            replies = (self._reply(mo, text, loaded.sheet.name),) if text else ()
            return Decision(route=outcome.label, replies=replies, campaign_id=campaign_id)
        assert isinstance(outcome, ToCampaign)
        result = self._run_module(conn, loaded, campaign_id, mo, outcome, now, in_session=session == outcome.campaign)
        apply = _Applier(self, loaded, campaign_id, mo, result)
        return Decision(route=outcome.label, campaign_id=campaign_id, apply=apply)

    def _run_module(
        self,
        conn: sa.Connection,
        loaded: LoadedCampaign,
        campaign_id: int,
        mo: StoredMo,
        outcome: ToCampaign,
        now: float,
        *,
        in_session: bool,
    ) -> ModuleResult:
        sheet = loaded.sheet
        view = SubscriberView(
            ref=pseudonym(self._key, sheet.name, mo.subscriber_id),
            state=self._state(conn, campaign_id, mo, now),
            in_session=in_session,
        )
        ctx = ModuleContext(campaign=sheet.info(), settings=sheet.settings, subscriber=view, now=now)
        message = Message(
            mo_id=mo.id,
            short_code=mo.short_code,
            text=mo.text,
            keyword=outcome.keyword,
            args=outcome.args,
            received_at=mo.received_at,
            via_session=outcome.via.name == "SESSION",
        )
        try:
            result = loaded.module.handle(ctx, message)
        except Exception as exc:
            raise ModuleFailed(f"module {sheet.module!r} of {sheet.name!r} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, ModuleResult):
            raise ModuleFailed(f"module {sheet.module!r} of {sheet.name!r} returned {type(result).__name__}, not a ModuleResult")
        return result

    def _global(self, mo: StoredMo, outcome: GlobalKeyword, code: ShortCodeConfig) -> Decision:
        campaign_id = self.campaign_ids.get(outcome.campaign) if outcome.campaign else None
        if outcome.kind == "help":
            return Decision(route=outcome.label, replies=(self._reply(mo, code.help, None),))
        if outcome.kind == "start":
            return Decision(route=outcome.label, replies=(self._reply(mo, code.start_reply, None),))
        if outcome.kind == "stop":

            def stop(conn: sa.Connection, now: float) -> Sequence[MtRequest]:
                if campaign_id is None:
                    store.end_sessions_of(conn, mo.subscriber_id)
                    cache = self._prefetched
                    if cache is not None and cache.now == now:
                        for key in [k for k in cache.sessions if k[1] == mo.subscriber_id]:
                            del cache.sessions[key]
                else:
                    store.end_session(conn, mo.short_code, mo.subscriber_id, campaign_id)
                    store.unsubscribe(conn, campaign_id, "", mo.subscriber_id)
                    self._remember(mo, campaign_id, now, None, None)
                return ()

            return Decision(
                route=outcome.label,
                replies=(self._reply(mo, code.stop_reply, outcome.campaign),),
                campaign_id=campaign_id,
                apply=stop,
            )
        return Decision(route=outcome.label, campaign_id=campaign_id)

    def _remember(self, mo: StoredMo, campaign_id: int, now: float, state: dict[str, Any] | None, session: int | None | bool) -> None:
        """Keep the batch's prefetched reads current after an MO's writes (the next MO may be
        from the same subscriber)."""
        cache = self._prefetched
        if cache is None or cache.now != now:
            return
        if state is not None:
            cache.states[(campaign_id, mo.subscriber_id)] = state
        if session is None:
            if cache.sessions.get((mo.short_code, mo.subscriber_id)) == campaign_id:
                del cache.sessions[(mo.short_code, mo.subscriber_id)]
        elif session is not False:
            cache.sessions[(mo.short_code, mo.subscriber_id)] = session

    def _reply(self, mo: StoredMo, text: str, campaign: str | None) -> MtRequest:
        """An answer to ``mo``: priority 0, from the short code it was sent to."""
        return MtRequest(
            msisdn=mo.msisdn,
            source_addr=mo.short_code,
            text=text,
            priority=0,
            in_reply_to=mo.id,
            campaign=campaign,
        )


@attrs.frozen
class _Applier:
    """Writes a module's actions for one MO and renders its replies (the decision's ``apply``)."""

    engine: CampaignEngine
    loaded: LoadedCampaign
    campaign_id: int
    mo: StoredMo
    result: ModuleResult

    def __call__(self, conn: sa.Connection, now: float) -> Sequence[MtRequest]:
        mo, cid, name = self.mo, self.campaign_id, self.loaded.sheet.name
        sid = mo.subscriber_id
        texts: list[str] = []
        state: dict[str, Any] | None = None
        session: int | None | bool = False  # False: unchanged; None: ended; else the campaign id
        for action in self.result.actions:
            match action:
                case Reply():
                    texts.append(action.text)
                case SetState():
                    store.save_state(conn, cid, sid, action.state, now)
                    state = store.thaw(action.state)
                case Record():
                    store.add_record(conn, cid, sid, mo.id, action.kind, action.key, action.value, now, replace=action.replace)
                case RecordFact():
                    store.add_fact(conn, cid, sid, mo.id, action.object, action.attitude, now)
                case ClaimCoupon():
                    got = store.claim_coupon(conn, cid, sid, now)
                    template = {"claimed": action.reply, "already": action.already}.get(got.status, action.exhausted)
                    texts.append(render(template, {"coupon": got.code}))
                case RedeemCoupon():
                    got = store.redeem_coupon(conn, cid, action.code, now)
                    texts.append(render(action.reply if got.status == "redeemed" else action.unknown, {"coupon": got.code}))
                case Subscribe():
                    store.subscribe(conn, cid, action.topic, sid, now)
                case Unsubscribe():
                    store.unsubscribe(conn, cid, action.topic, sid)
                case OpenSession():
                    store.set_session(conn, mo.short_code, sid, cid, now + action.timeout)
                    session = cid
                case EndSession():
                    store.end_session(conn, mo.short_code, sid, cid)
                    session = None
                case _:
                    raise ModuleFailed(f"module {self.loaded.sheet.module!r} returned {type(action).__name__}, not an action")
        self.engine._remember(mo, cid, now, state, session)
        return [self.engine._reply(mo, text, name) for text in texts if text]

