"""The campaign engine: the MO processor that routes, runs campaign modules and applies their actions.

For each stored MO, inside the dispatcher's unit of work:

1. **route** it (:func:`routing.router.route`) by short code, keyword and the subscriber's
   open session;
2. apply the privacy policy before anything else: consent keywords (STOP, START, YES, HELP,
   MYDATA) act on the consent ledger at once, whatever session is open; a subscriber known to
   be under the policy's minimum age gets its fixed reply and nothing else; a subscriber
   who opted out of the campaign (or its short code) gets nothing;
3. for a campaign, build the module's :class:`~modules.api.ModuleContext` (the campaign's
   sheet, its settings, and the view of the subscriber that the policy lets the campaign's
   owner read for answering: module state under a pseudonym, declared attributes) and call
   the module's pure ``handle``;
4. return a :class:`~gatewayd.dispatch.Decision` whose ``apply`` writes the actions the
   policy permits (state, records, facts, declared attributes, coupons, alert
   subscriptions and the marketing consent they imply, sessions), refuses, logs and audits
   the others, and renders the replies the policy and the consent allow, in the same
   transaction that marks the MO processed.

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
from gatewayd.privacy import Privacy
from gatewayd.sheets import CampaignSet, LoadedCampaign
from modules.api import (
    ClaimCoupon,
    Declare,
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
    Unsubscribe,
    render,
)
from permissions import (
    CONFIRM_KIND,
    RESPONSE,
    AuditKind,
    AuditRecord,
    CampaignRef,
    Category,
    ConsentPurpose,
    ConsentState,
    Deny,
    Evidence,
    MtKind,
    Operation,
    OptIn,
    OptOut,
    Policy,
    ReplyKind,
    Scope,
    ScopeKind,
    decide_keyword,
    is_under_age,
    may_send,
    plan_opt_out_erasures,
    record_consent,
    record_erasure,
    record_obligation_run,
    request_opt_in,
)
from profile_store import campaigns as store
from profile_store import privacy as records
from profile_store.mt import MtRequest
from profile_store.values import StoredMo
from routing.outcomes import Closed, GlobalKeyword, NoRoute, ToCampaign, Via
from routing.router import route

__all__ = ["CampaignEngine", "ModuleFailed", "pseudonym"]

log = structlog.get_logger("gatewayd.engine")


class ModuleFailed(Exception):
    """A campaign module raised or answered with something that is not a :class:`~modules.api.ModuleResult`."""


def pseudonym(key: bytes, campaign: str, subscriber_id: int) -> str:
    """The subscriber's reference within one campaign: stable, not linkable across campaigns."""
    digest = hashlib.blake2b(f"{campaign}\x00{subscriber_id}".encode(), key=key[:64], digest_size=10)
    return digest.hexdigest()


#: The data category each action writes (checked against the policy for the purpose
#: "response"); actions not listed only steer the conversation (sessions, replies).
_WRITES: dict[type, Category] = {
    SetState: Category.PARTICIPATION,
    Record: Category.PARTICIPATION,
    ClaimCoupon: Category.PARTICIPATION,
    RedeemCoupon: Category.PARTICIPATION,
    Subscribe: Category.PARTICIPATION,
    RecordFact: Category.PROFILE,
    Declare: Category.DECLARED,
}


@attrs.define
class _Prefetched:
    """What :meth:`CampaignEngine.prepare` read for the batch being processed."""

    now: float
    sessions: dict[tuple[str, int], int]
    states: dict[tuple[int, int], dict[str, Any]]
    consent: dict[str, ConsentState]
    attributes: dict[int, dict[str, str]]


class CampaignEngine:
    """The :data:`~gatewayd.dispatch.MoProcessor` of a gateway with campaigns.

    Args:
        campaigns: the loaded campaigns and their routing table.
        campaign_ids: campaign name -> ``campaigns.id`` (see :func:`profile_store.campaigns.ensure_campaigns`).
        config: the gateway configuration (short code texts).
        privacy: the privacy policy in force and the keys of hashes and pseudonyms.
    """

    def __init__(
        self,
        campaigns: CampaignSet,
        campaign_ids: Mapping[str, int],
        config: GatewayConfig,
        privacy: Privacy,
    ) -> None:
        self.config = config
        self._prefetched: _Prefetched | None = None
        self.privacy = privacy
        #: Changes with every :meth:`swap` (a store writer process then gets the new state).
        self.generation = 0
        self.swap(campaigns, campaign_ids)

    def swap(
        self,
        campaigns: CampaignSet,
        campaign_ids: Mapping[str, int],
        config: GatewayConfig | None = None,
        privacy: Privacy | None = None,
    ) -> None:
        """Use a new snapshot of the campaigns (and of the configuration and policy) from the next MO on."""
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
        if privacy is not None:
            self.privacy = privacy
        self._prefetched = None
        self._refs: dict[str, CampaignRef] = {}
        self.generation += 1

    @property
    def policy(self) -> Policy:
        """The privacy policy in force."""
        return self.privacy.policy

    def screen(self, conn: sa.Connection, mts: list[Any], now: float) -> dict[int, str]:
        """The outbox's consent check at claim time, with the policy in force."""
        return self.privacy.screen(conn, mts, now)

    # --- reading ---------------------------------------------------------------------------

    def prepare(self, conn: sa.Connection, mos: Sequence[StoredMo], now: float) -> None:
        """Read the sessions, module states, consent and declared attributes of a batch of MOs in four queries."""
        sessions = store.open_sessions(conn, ((mo.short_code, mo.subscriber_id) for mo in mos), now)
        pairs = [(cid, mo.subscriber_id) for mo in mos for cid in self._by_code.get(mo.short_code, ())]
        consent = records.load_consent(conn, {self.privacy.number_hash(mo.msisdn) for mo in mos})
        attributes = records.load_attributes(conn, {mo.subscriber_id for mo in mos})
        self._prefetched = _Prefetched(now, sessions, store.load_states(conn, pairs), consent, attributes)

    def _cache(self, now: float) -> _Prefetched | None:
        cache = self._prefetched
        return cache if cache is not None and cache.now == now else None

    def _session(self, conn: sa.Connection, mo: StoredMo, now: float) -> str | None:
        cache = self._cache(now)
        if cache is not None:
            cid = cache.sessions.get((mo.short_code, mo.subscriber_id))
        else:
            cid = store.open_session(conn, mo.short_code, mo.subscriber_id, now)
        return self._names.get(cid) if cid is not None else None

    def _state(self, conn: sa.Connection, campaign_id: int, mo: StoredMo, now: float) -> dict[str, Any]:
        cache = self._cache(now)
        if cache is not None:
            return cache.states.get((campaign_id, mo.subscriber_id), {})
        return store.load_state(conn, campaign_id, mo.subscriber_id)

    def _consent(self, conn: sa.Connection, number_hash: str, now: float) -> ConsentState:
        cache = self._cache(now)
        if cache is not None:
            return cache.consent.get(number_hash) or ConsentState.empty()
        return records.load_consent(conn, [number_hash]).get(number_hash) or ConsentState.empty()

    def _attributes(self, conn: sa.Connection, mo: StoredMo, now: float) -> dict[str, str]:
        cache = self._cache(now)
        if cache is not None:
            return cache.attributes.get(mo.subscriber_id, {})
        return records.load_attributes(conn, [mo.subscriber_id]).get(mo.subscriber_id, {})

    def _ref(self, loaded: LoadedCampaign) -> CampaignRef:
        sheet = loaded.sheet
        # One per campaign of the snapshot in force (swap starts afresh).
        ref = self._refs.get(sheet.name)
        if ref is None:
            ref = self._refs[sheet.name] = CampaignRef(sheet.name, sheet.owner, sheet.short_code)
        return ref

    # --- deciding --------------------------------------------------------------------------

    def __call__(self, conn: sa.Connection, mo: StoredMo, now: float) -> Decision:
        """Decide about one MO (reads only; the writes are in the decision's ``apply``)."""
        campaigns = self.campaigns
        number_hash = self.privacy.number_hash(mo.msisdn)
        consent = self._consent(conn, number_hash, now)
        session = self._session(conn, mo, now)
        outcome = route(campaigns.table, mo.short_code, mo.text, now, session)
        code = self.config.short_code(mo.short_code)
        if isinstance(outcome, GlobalKeyword):
            if outcome.kind == CONFIRM_KIND and session is not None and consent.pending_request(mo.short_code, mo.received_at) is None:
                # Nothing waits for a YES: in a conversation, "yes" is an answer.
                outcome = ToCampaign(session, "", " ".join(mo.text.split()), Via.SESSION)
            else:
                return self._global(mo, outcome, code, consent, number_hash)
        attributes = self._attributes(conn, mo, now)
        minimum = self.policy.obligations.minimum_age
        if minimum and is_under_age(attributes, minimum, now=now):
            return self._under_age(mo)
        if isinstance(outcome, NoRoute):
            blocked = consent.opted_out_of(Scope.of_short_code(mo.short_code))
            replies = (self._reply(mo, code.not_understood, None),) if code.not_understood and not blocked else ()
            return Decision(route=outcome.label, replies=replies, apply=self._participation(mo, None))
        loaded = campaigns.get(outcome.campaign)
        campaign_id = self.campaign_ids.get(outcome.campaign)
        if loaded is None or campaign_id is None:
            # The table and the campaigns come from one snapshot; this is a bug, not bad input.
            raise ModuleFailed(f"campaign {outcome.campaign!r} is routed to but not loaded")
        ref = self._ref(loaded)
        if consent.opted_out_of(ref):
            log.info("mo_opted_out", mo_id=mo.id, campaign=ref.name)
            return Decision(route=f"opted_out:{ref.name}"[:64], campaign_id=campaign_id)
        if isinstance(outcome, Closed):
            text = loaded.sheet.closed_response
            apply = _Applier(self, loaded, campaign_id, mo, ModuleResult((Reply(text),) if text else ()), consent, number_hash)
            return Decision(route=outcome.label, campaign_id=campaign_id, apply=apply)
        assert isinstance(outcome, ToCampaign)
        result = self._run_module(conn, loaded, campaign_id, mo, outcome, now, attributes, in_session=session == outcome.campaign)
        apply = _Applier(self, loaded, campaign_id, mo, result, consent, number_hash)
        return Decision(route=outcome.label, campaign_id=campaign_id, apply=apply)

    def _run_module(
        self,
        conn: sa.Connection,
        loaded: LoadedCampaign,
        campaign_id: int,
        mo: StoredMo,
        outcome: ToCampaign,
        now: float,
        attributes: Mapping[str, str],
        *,
        in_session: bool,
    ) -> ModuleResult:
        sheet = loaded.sheet
        view = self.policy.view_for(sheet.owner, RESPONSE, attributes)
        subscriber = view.subscriber_view(
            ref=pseudonym(self.privacy.keys.pseudonym, sheet.name, mo.subscriber_id),
            state=self._state(conn, campaign_id, mo, now),
            in_session=in_session,
        )
        ctx = ModuleContext(campaign=sheet.info(), settings=sheet.settings, subscriber=subscriber, now=now)
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

    def _participation(self, mo: StoredMo, campaign_id: int | None) -> Any:
        """The ``apply`` of an MO that changes nothing but the customer profile."""

        def note(conn: sa.Connection, now: float) -> Sequence[MtRequest]:
            records.note_participation(conn, mo.subscriber_id, campaign_id, mo.received_at, now)
            return ()

        return note

    def _under_age(self, mo: StoredMo) -> Decision:
        """The fixed refusal, audited; nothing about the subscriber is written."""
        reply = attrs.evolve(self._reply(mo, self.policy.obligations.under_age_reply, None), kind=MtKind.REFUSAL.value)

        def audit(conn: sa.Connection, now: float) -> Sequence[MtRequest]:
            run = record_obligation_run("minimum_age", at=now, count=1, detail=f"mo {mo.id} refused")
            records.append_audit(conn, [attrs.evolve(run, subject=records.subject_ref(mo.subscriber_id))])
            return ()

        log.info("mo_under_age", mo_id=mo.id)
        return Decision(route="under_age", replies=(reply,), apply=audit)

    def _global(self, mo: StoredMo, outcome: GlobalKeyword, code: ShortCodeConfig, consent: ConsentState, number_hash: str) -> Decision:
        loaded = self.campaigns.get(outcome.campaign) if outcome.campaign else None
        campaign_id = self.campaign_ids.get(outcome.campaign) if outcome.campaign else None
        if outcome.kind == "mydata":

            def summary(conn: sa.Connection, now: float) -> Sequence[MtRequest]:
                text = self.privacy.summary(conn, mo.subscriber_id, mo.msisdn, mo.short_code, now)
                records.append_audit(
                    conn,
                    [AuditRecord(kind=AuditKind.EXPORT, at=now, who="gatewayd", subject=records.subject_ref(mo.subscriber_id), operation="mydata", detail=f"summary by SMS to mo {mo.id}")],
                )
                return [self._keyword_reply(mo, text)]

            return Decision(route=outcome.label, apply=summary)
        ref = self._ref(loaded) if loaded is not None else None
        evidence = Evidence(at=mo.received_at, short_code=mo.short_code, keyword=outcome.word, mo_id=mo.id)
        decided = decide_keyword(outcome.kind, outcome.word, ref, consent, evidence, all_words=self.policy.consent.stop_all_words)
        if decided.reply is None:
            return Decision(route=outcome.label, campaign_id=campaign_id)
        texts = {
            ReplyKind.STOP: code.stop_reply,
            ReplyKind.START: code.start_reply,
            ReplyKind.HELP: code.help,
            ReplyKind.CONFIRMED: code.confirm_reply,
            ReplyKind.NOTHING_TO_CONFIRM: code.nothing_to_confirm_reply,
        }
        reply = self._keyword_reply(mo, texts[decided.reply], outcome.campaign)
        if not decided.events:
            return Decision(route=outcome.label, replies=(reply,), campaign_id=campaign_id)

        def record(conn: sa.Connection, now: float) -> Sequence[MtRequest]:
            self._append_consent(conn, mo, number_hash, consent, decided.events, now)
            for event in decided.events:
                if isinstance(event, OptOut):
                    self._leave(conn, mo, event, now)
            return ()

        if decided.reply is ReplyKind.STOP:
            log.info("consent_opt_out", mo_id=mo.id, scope=str(decided.scope))
        return Decision(route=outcome.label, replies=(reply,), campaign_id=campaign_id, apply=record)

    def _append_consent(
        self, conn: sa.Connection, mo: StoredMo, number_hash: str, consent: ConsentState, events: Sequence[Any], now: float
    ) -> ConsentState:
        """Append ledger events (audited) and keep the batch's view of the ledger current."""
        records.append_consent(conn, number_hash, mo.subscriber_id, events, now)
        subject = records.subject_ref(mo.subscriber_id)
        records.append_audit(conn, [record_consent(event, subject=subject) for event in events])
        updated = consent.with_events(events)
        cache = self._cache(now)
        if cache is not None:
            cache.consent[number_hash] = updated
        return updated

    def _leave(self, conn: sa.Connection, mo: StoredMo, event: OptOut, now: float) -> None:
        """What an opt-out does besides the ledger: end the sessions and alert subscriptions it
        covers, and erase the local profiles it covers when the policy says so."""
        sid = mo.subscriber_id
        scope = event.scope
        held = records.local_profile_campaigns(conn, sid)
        refs = store.campaign_refs(conn, held)
        covered = [cid for cid, ref in refs.items() if scope.covers(Scope.of_campaign(ref))]
        if scope.kind is ScopeKind.ALL:
            store.end_sessions_of(conn, sid)
        elif scope.kind is ScopeKind.SHORT_CODE:
            store.end_session(conn, scope.short_code, sid)
        for cid in covered:
            store.end_session(conn, refs[cid].short_code, sid, cid)
            store.unsubscribe(conn, cid, "", sid)
        cache = self._cache(now)
        if cache is not None:
            for key in [k for k, cid in cache.sessions.items() if k[1] == sid and (cid in covered or scope.kind is not ScopeKind.CAMPAIGN)]:
                del cache.sessions[key]
        plans = plan_opt_out_erasures(sid, event, [refs[cid] for cid in covered], self.policy.obligations)
        if not plans:
            return
        ids = {ref.name: cid for cid, ref in refs.items()}
        audit: list[AuditRecord] = []
        for plan in plans:
            cid = ids[plan.campaign]  # type: ignore[index]
            records.erase_local_profile(conn, sid, cid)
            if cache is not None:
                cache.states.pop((cid, sid), None)
            audit.append(record_erasure(plan, at=now, subject=records.subject_ref(sid)))
        audit.append(record_obligation_run("erase_on_opt_out", at=now, count=1, detail=f"{len(plans)} local profiles; mo {mo.id}"))
        records.append_audit(conn, audit)
        log.info("local_profiles_erased", mo_id=mo.id, campaigns=len(plans))

    def _remember(self, mo: StoredMo, campaign_id: int, now: float, state: dict[str, Any] | None, session: int | None | bool) -> None:
        """Keep the batch's prefetched reads current after an MO's writes (the next MO may be
        from the same subscriber)."""
        cache = self._cache(now)
        if cache is None:
            return
        if state is not None:
            cache.states[(campaign_id, mo.subscriber_id)] = state
        if session is None:
            if cache.sessions.get((mo.short_code, mo.subscriber_id)) == campaign_id:
                del cache.sessions[(mo.short_code, mo.subscriber_id)]
        elif session is not False:
            cache.sessions[(mo.short_code, mo.subscriber_id)] = session

    def _remember_attribute(self, mo: StoredMo, name: str, value: str, now: float) -> None:
        cache = self._cache(now)
        if cache is not None:
            cache.attributes.setdefault(mo.subscriber_id, {})[name] = value

    def _reply(self, mo: StoredMo, text: str, campaign: str | None) -> MtRequest:
        """An answer to ``mo``: priority 0, from the short code it was sent to."""
        return MtRequest(
            msisdn=mo.msisdn,
            source_addr=mo.short_code,
            text=text,
            priority=0,
            in_reply_to=mo.id,
            campaign=campaign,
            kind=MtKind.RESPONSE.value,
            subscriber_id=mo.subscriber_id,
        )

    def _keyword_reply(self, mo: StoredMo, text: str, campaign: str | None = None) -> MtRequest:
        """The one reply to a consent keyword: it goes whatever the consent."""
        return attrs.evolve(self._reply(mo, text, campaign), kind=MtKind.KEYWORD.value)


@attrs.frozen
class _Applier:
    """Writes what the policy permits of a module's actions for one MO and renders the
    replies the policy and the consent allow (the decision's ``apply``)."""

    engine: CampaignEngine
    loaded: LoadedCampaign
    campaign_id: int
    mo: StoredMo
    result: ModuleResult
    consent: ConsentState
    number_hash: str

    def _refused(self, conn: sa.Connection, decision: Deny, now: float, what: str) -> None:
        name = self.loaded.sheet.name
        records.append_audit(
            conn, [decision.audit(subject=records.subject_ref(self.mo.subscriber_id), at=now, detail=f"campaign {name!r}: {what}")]
        )
        request = decision.request
        log.warning(
            "policy_refused",
            mo_id=self.mo.id,
            campaign=name,
            operation=str(request.operation) if request else "send",
            category=str(request.category) if request else "",
            reason=str(decision.reason),
            what=what,
        )

    def __call__(self, conn: sa.Connection, now: float) -> Sequence[MtRequest]:
        engine, mo, cid, sheet = self.engine, self.mo, self.campaign_id, self.loaded.sheet
        policy = engine.policy
        sid = mo.subscriber_id
        ref = engine._ref(self.loaded)
        consent = self.consent
        texts: list[str] = []
        state: dict[str, Any] | None = None
        session: int | None | bool = False  # False: unchanged; None: ended; else the campaign id
        for action in self.result.actions:
            category = _WRITES.get(type(action))
            if isinstance(action, RecordFact) and action.free_text:
                category = Category.FREE_TEXT
            if category is not None:
                attribute = action.name if isinstance(action, Declare) else None
                decision = policy.may(sheet.owner, Operation.WRITE, category, RESPONSE, attribute=attribute)
                if isinstance(decision, Deny):
                    self._refused(conn, decision, now, type(action).__name__)
                    continue
            match action:
                case Reply():
                    texts.append(action.text)
                case SetState():
                    state = store.thaw(action.state)
                    store.save_state(conn, cid, sid, state, now)
                case Record():
                    store.add_record(conn, cid, sid, mo.id, action.kind, action.key, action.value, now, replace=action.replace)
                case RecordFact():
                    store.add_fact(conn, cid, sid, mo.id, action.object, action.attitude, now)
                case Declare():
                    records.declare_attribute(conn, sid, action.name, action.value, cid, now)
                    engine._remember_attribute(mo, action.name, action.value, now)
                case ClaimCoupon():
                    got = store.claim_coupon(conn, cid, sid, now)
                    template = {"claimed": action.reply, "already": action.already}.get(got.status, action.exhausted)
                    texts.append(render(template, {"coupon": got.code}))
                case RedeemCoupon():
                    got = store.redeem_coupon(conn, cid, action.code, now)
                    texts.append(render(action.reply if got.status == "redeemed" else action.unknown, {"coupon": got.code}))
                case Subscribe():
                    store.subscribe(conn, cid, action.topic, sid, now)
                    consent, request = self._opt_in(conn, consent, now)
                    if request:
                        texts.append(request)
                case Unsubscribe():
                    store.unsubscribe(conn, cid, action.topic, sid)
                    if not action.topic:
                        withdraw = OptOut(Scope.of_campaign(ref), self._evidence(), ConsentPurpose.MARKETING)
                        consent = engine._append_consent(conn, mo, self.number_hash, consent, [withdraw], now)
                case OpenSession():
                    store.set_session(conn, mo.short_code, sid, cid, now + action.timeout)
                    session = cid
                case EndSession():
                    store.end_session(conn, mo.short_code, sid, cid)
                    session = None
                case _:
                    raise ModuleFailed(f"module {sheet.module!r} returned {type(action).__name__}, not an action")
        engine._remember(mo, cid, now, state, session)
        records.note_participation(conn, sid, cid, mo.received_at, now)
        if not texts:
            return []
        sending = may_send(MtKind.RESPONSE, ref, consent, policy.may_message(sheet.owner, MtKind.RESPONSE), None)
        if isinstance(sending, Deny):
            self._refused(conn, sending, now, f"{len(texts)} replies not sent")
            return []
        return [engine._reply(mo, text, sheet.name) for text in texts if text]

    def _evidence(self) -> Evidence:
        mo = self.mo
        return Evidence(at=mo.received_at, short_code=mo.short_code, keyword=self.loaded.sheet.keywords[0], mo_id=mo.id)

    def _opt_in(self, conn: sa.Connection, consent: ConsentState, now: float) -> tuple[ConsentState, str]:
        """The marketing consent joining a list gives: at once, or (``opt_in = "confirmed"``)
        a request answered by YES; returns the consent after it and the request text."""
        sheet = self.loaded.sheet
        ref = self.engine._ref(self.loaded)
        if consent.has_marketing_consent(ref):
            return consent, ""
        evidence = self._evidence()
        if sheet.opt_in == "confirmed":
            if consent.pending_request(sheet.short_code, evidence.at, ref) is not None:
                return consent, ""
            event: Any = request_opt_in(ref, evidence, self.engine.policy.consent.confirm_window)
            text = render(sheet.opt_in_request, {"campaign": sheet.name})
        else:
            event, text = OptIn(Scope.of_campaign(ref), evidence), ""
        return self.engine._append_consent(conn, self.mo, self.number_hash, consent, [event], now), text
