"""The consent ledger's state machine: events in, current consent out.

The ledger is append-only: each subscriber's consent is the list of events recorded for
them, each with its :class:`Evidence` (the MO, the short code, the keyword, the time). The
current state is never stored: :meth:`ConsentState.from_events` derives it from the events
in time order (ties keep ledger order), so the ledger always shows *why* a number may or may
not be messaged.

Scopes
    An event applies to a :class:`Scope`: everything (:data:`ALL`), one short code, one owner
    (every campaign of that data user) or one campaign. A scope *covers* itself and the
    campaigns inside it: a short code covers its campaigns, an owner covers the owner's
    campaigns, everything covers everything.

Two questions, two channels
    * **Opted out?** (:meth:`ConsentState.opted_out_of`) Only events whose purpose is
      :attr:`ConsentPurpose.ALL` count: :class:`OptOut` (STOP) and :class:`OptIn` with purpose
      ALL (START). The *latest* such event whose scope covers the target decides. An opted-out
      subscriber gets nothing for that target, not even a response to their own MO; only
      keyword replies (the STOP confirmation, HELP) still go out.
    * **Marketing allowed?** (:meth:`ConsentState.allows_marketing`) The subscriber must not be
      opted out, *and* the latest marketing event whose scope covers the campaign must grant
      consent: an :class:`OptIn` for marketing, or a :class:`Confirmed` that answers a pending
      :class:`OptInRequested` in time; an :class:`OptOut` for marketing withdraws it.

The keyword semantics (:func:`decide_keyword`)
    * ``STOP`` (any stop word) opts out of everything from the short code it was sent to:
      every campaign and every owner on that short code, responses and marketing alike.
    * ``STOPALL`` (the configured all-words) opts out of everything on every short code.
    * ``STOP <keyword>`` opts out of that campaign only.
    * ``START`` and ``START <keyword>`` restore what the matching STOP removed: the latest
      event wins, so a START after a STOP lifts the block, and any marketing opt-in given
      before the STOP applies again. START grants no new marketing consent.
    * Every STOP appends an :class:`OptOut` (repeating one is harmless and keeps the
      evidence) and gets exactly one reply, :attr:`ReplyKind.STOP`.
    * A confirmed opt-in is an :class:`OptInRequested` with an expiry; a ``YES`` from the same
      short code before it expires appends :class:`Confirmed`. A later STOP covering the
      request voids it, and a YES after expiry confirms nothing.
    * HELP changes nothing and is answered whatever the consent.

STOP wins: no marketing opt-in, earlier or later, lifts an opt-out; only START does.

Everything here is pure: no clock, no I/O; times are UTC seconds given by the caller.
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Any, Iterable, Mapping, Sequence

import attrs

from routing.normalise import fold

__all__ = [
    "ALL",
    "CONFIRM_KIND",
    "CampaignRef",
    "ConsentEvent",
    "ConsentPurpose",
    "ConsentState",
    "Confirmed",
    "Evidence",
    "KeywordDecision",
    "OptIn",
    "OptInRequested",
    "OptOut",
    "ReplyKind",
    "Scope",
    "ScopeKind",
    "decide_keyword",
    "event_from_dict",
    "event_to_dict",
    "request_opt_in",
]

#: The global keyword kind that confirms a pending opt-in (an ``extra`` kind of the routing
#: table's :class:`routing.table.GlobalKeywords`, such as ``{"yes": ("YES",)}``).
CONFIRM_KIND = "yes"


def _non_empty(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _finite(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite time, got {value!r}")


@attrs.frozen
class CampaignRef:
    """The identity of a campaign as consent sees it: its name, owner and short code."""

    name: str = attrs.field(validator=_non_empty)
    #: The data user responsible (the sheet's ``owner``).
    owner: str = attrs.field(validator=_non_empty)
    short_code: str = attrs.field(validator=_non_empty)


class ScopeKind(enum.StrEnum):
    """How wide a consent event reaches."""

    #: Every short code, owner and campaign.
    ALL = "all"
    #: Every campaign on one short code.
    SHORT_CODE = "short_code"
    #: Every campaign of one data user.
    OWNER = "owner"
    #: One campaign.
    CAMPAIGN = "campaign"


_SCOPE_FIELDS = {
    ScopeKind.ALL: (),
    ScopeKind.SHORT_CODE: ("short_code",),
    ScopeKind.OWNER: ("owner",),
    ScopeKind.CAMPAIGN: ("campaign", "owner", "short_code"),
}


@attrs.frozen
class Scope:
    """What a consent event applies to.

    Use the constructors: :data:`ALL`, :meth:`of_short_code`, :meth:`of_owner`,
    :meth:`of_campaign`. A campaign scope carries its owner and short code so that wider
    scopes can tell whether they cover it; two campaign scopes are the same campaign when
    their names are equal.
    """

    kind: ScopeKind = attrs.field(converter=ScopeKind)
    short_code: str = ""
    owner: str = ""
    campaign: str = ""

    def __attrs_post_init__(self) -> None:
        needed = _SCOPE_FIELDS[self.kind]
        for name in ("short_code", "owner", "campaign"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"a scope's {name} must be a string, got {value!r}")
            if name in needed and not value.strip():
                raise ValueError(f"a {self.kind} scope needs a {name}")
            if name not in needed and value:
                raise ValueError(f"a {self.kind} scope has no {name}, got {value!r}")

    # The constructors hand out one instance per value (scopes are frozen): every MO asks for
    # the scopes of its short code and campaigns, and validating a new one each time cost
    # more than the consent check that needs it.
    @classmethod
    def of(cls, kind: str, short_code: str = "", owner: str = "", campaign: str = "") -> Scope:
        """The scope with these fields, as the consent ledger stores them (validated once
        per value, like the constructors below)."""
        return _scope(ScopeKind(kind), short_code, owner, campaign)

    @classmethod
    def of_short_code(cls, short_code: str) -> Scope:
        """Every campaign on ``short_code``."""
        return _scope(ScopeKind.SHORT_CODE, short_code, "", "")

    @classmethod
    def of_owner(cls, owner: str) -> Scope:
        """Every campaign of the data user ``owner``."""
        return _scope(ScopeKind.OWNER, "", owner, "")

    @classmethod
    def of_campaign(cls, campaign: CampaignRef) -> Scope:
        """One campaign."""
        return _scope(ScopeKind.CAMPAIGN, campaign.short_code, campaign.owner, campaign.name)

    def covers(self, other: Scope) -> bool:
        """Tell whether an event for this scope applies to ``other``."""
        if self.kind is ScopeKind.ALL:
            return True
        if self.kind is ScopeKind.SHORT_CODE:
            return other.kind in (ScopeKind.SHORT_CODE, ScopeKind.CAMPAIGN) and other.short_code == self.short_code
        if self.kind is ScopeKind.OWNER:
            return other.kind in (ScopeKind.OWNER, ScopeKind.CAMPAIGN) and other.owner == self.owner
        return other.kind is ScopeKind.CAMPAIGN and other.campaign == self.campaign

    def same(self, other: Scope) -> bool:
        """Tell whether both scopes name the same thing (campaigns compare by name)."""
        return self.covers(other) and other.covers(self)

    def __str__(self) -> str:
        if self.kind is ScopeKind.ALL:
            return "all"
        if self.kind is ScopeKind.SHORT_CODE:
            return f"short code {self.short_code}"
        if self.kind is ScopeKind.OWNER:
            return f"owner {self.owner!r}"
        return f"campaign {self.campaign!r}"


#: Everything: every short code, owner and campaign.
ALL = Scope(ScopeKind.ALL)


@functools.lru_cache(maxsize=4096)
def _scope(kind: ScopeKind, short_code: str, owner: str, campaign: str) -> Scope:
    return Scope(kind, short_code=short_code, owner=owner, campaign=campaign)


def _as_scope(target: Scope | CampaignRef) -> Scope:
    return Scope.of_campaign(target) if isinstance(target, CampaignRef) else target


class ConsentPurpose(enum.StrEnum):
    """What a consent event is about."""

    #: Every message: what STOP takes away and START gives back.
    ALL = "all"
    #: Marketing messages only: the opt-in a marketing MT needs.
    MARKETING = "marketing"


@attrs.frozen
class Evidence:
    """Where a consent event comes from."""

    #: When the subscriber acted (the MO's receive time; UTC seconds). Orders the ledger.
    at: float = attrs.field(converter=float, validator=_finite)
    #: The short code the MO was sent to ("" for evidence that is no MO).
    short_code: str = ""
    #: The keyword as typed ("STOP", "YES", a campaign keyword).
    keyword: str = ""
    #: The stored MO's id, None when the event did not come from an MO.
    mo_id: int | None = None
    #: Anything else worth keeping ("imported from the 2004 sign-up sheet").
    note: str = ""


@attrs.frozen
class OptIn:
    """Consent given for ``scope``.

    With purpose MARKETING, it is the opt-in a marketing MT needs. With purpose ALL, it is
    START: it lifts the opt-outs of the scope (and of the campaigns it covers) and grants
    nothing else.
    """

    scope: Scope
    evidence: Evidence
    purpose: ConsentPurpose = attrs.field(default=ConsentPurpose.MARKETING, converter=ConsentPurpose)

    label = "opt_in"

    @property
    def at(self) -> float:
        """The event's time."""
        return self.evidence.at


@attrs.frozen
class OptInRequested:
    """A marketing opt-in waiting for its confirmation (reply YES) until ``expires_at``."""

    scope: Scope
    evidence: Evidence
    #: The last moment a confirmation counts (UTC seconds).
    expires_at: float = attrs.field(converter=float, validator=_finite)

    label = "opt_in_requested"

    def __attrs_post_init__(self) -> None:
        if self.expires_at < self.evidence.at:
            raise ValueError(f"an opt-in request cannot expire ({self.expires_at}) before it is made ({self.evidence.at})")

    @property
    def at(self) -> float:
        """The event's time."""
        return self.evidence.at


@attrs.frozen
class Confirmed:
    """The subscriber confirmed the pending opt-in request for ``scope``."""

    scope: Scope
    evidence: Evidence

    label = "confirmed"

    @property
    def at(self) -> float:
        """The event's time."""
        return self.evidence.at


@attrs.frozen
class OptOut:
    """Consent withdrawn for ``scope``: everything (STOP, purpose ALL) or marketing only."""

    scope: Scope
    evidence: Evidence
    purpose: ConsentPurpose = attrs.field(default=ConsentPurpose.ALL, converter=ConsentPurpose)

    label = "opt_out"

    @property
    def at(self) -> float:
        """The event's time."""
        return self.evidence.at


ConsentEvent = OptIn | OptInRequested | Confirmed | OptOut

_EVENT_TYPES: dict[str, type[Any]] = {cls.label: cls for cls in (OptIn, OptInRequested, Confirmed, OptOut)}


def request_opt_in(scope: Scope | CampaignRef, evidence: Evidence, window: float) -> OptInRequested:
    """The request a confirmed opt-in starts with: it expires ``window`` seconds after the
    evidence (``Policy.consent.confirm_window``)."""
    if not math.isfinite(window) or window < 0:
        raise ValueError(f"the confirmation window must be a finite number of seconds >= 0, got {window!r}")
    return OptInRequested(_as_scope(scope), evidence, evidence.at + window)


def event_to_dict(event: ConsentEvent) -> dict[str, Any]:
    """A JSON-compatible dict for one event (what the store keeps; see :func:`event_from_dict`)."""
    data: dict[str, Any] = {
        "event": event.label,
        "scope": attrs.asdict(event.scope),
        "evidence": attrs.asdict(event.evidence),
    }
    if isinstance(event, (OptIn, OptOut)):
        data["purpose"] = str(event.purpose)
    if isinstance(event, OptInRequested):
        data["expires_at"] = event.expires_at
    return data


def event_from_dict(data: Mapping[str, Any]) -> ConsentEvent:
    """The event :func:`event_to_dict` described; raises ``ValueError`` for anything else."""
    try:
        cls = _EVENT_TYPES[data["event"]]
        fields = {key: value for key, value in data.items() if key not in ("event", "scope", "evidence")}
        event: ConsentEvent = cls(Scope(**data["scope"]), Evidence(**data["evidence"]), **fields)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a consent event: {data!r}") from exc
    return event


# --- the derived state -------------------------------------------------------------------------


@attrs.frozen
class _Grant:
    """A marketing-channel step: consent granted (True) or withdrawn (False) for a scope."""

    scope: Scope
    granted: bool
    event: ConsentEvent


def _derive(
    events: Sequence[ConsentEvent],
) -> tuple[tuple[OptIn | OptOut, ...], tuple[_Grant, ...], tuple[OptInRequested, ...], tuple[Confirmed, ...]]:
    blocks: list[OptIn | OptOut] = []
    grants: list[_Grant] = []
    pending: list[OptInRequested] = []
    ignored: list[Confirmed] = []
    for event in events:
        if isinstance(event, OptOut):
            # Any opt-out voids the pending requests it covers.
            pending = [request for request in pending if not event.scope.covers(request.scope)]
            if event.purpose is ConsentPurpose.ALL:
                blocks.append(event)
            else:
                grants.append(_Grant(event.scope, False, event))
        elif isinstance(event, OptIn):
            if event.purpose is ConsentPurpose.ALL:
                blocks.append(event)
            else:
                grants.append(_Grant(event.scope, True, event))
        elif isinstance(event, OptInRequested):
            pending = [request for request in pending if not request.scope.same(event.scope)]
            pending.append(event)
        else:
            match = next(
                (r for r in pending if r.scope.same(event.scope) and r.at <= event.at <= r.expires_at),
                None,
            )
            if match is None:
                ignored.append(event)
            else:
                pending.remove(match)
                grants.append(_Grant(match.scope, True, event))
    return tuple(blocks), tuple(grants), tuple(pending), tuple(ignored)


@attrs.frozen(eq=False)
class ConsentState:
    """One subscriber's consent, derived from their ledger (see the module docstring)."""

    #: The ledger in time order (ties in ledger order).
    events: tuple[ConsentEvent, ...]
    _blocks: tuple[OptIn | OptOut, ...] = attrs.field(repr=False)
    _grants: tuple[_Grant, ...] = attrs.field(repr=False)
    _pending: tuple[OptInRequested, ...] = attrs.field(repr=False)
    #: Confirmations that matched no pending request (late, or nothing was asked).
    ignored: tuple[Confirmed, ...] = attrs.field(repr=False)

    @classmethod
    def from_events(cls, events: Iterable[ConsentEvent]) -> ConsentState:
        """Derive the state from ledger events (in any order; sorted stably by time)."""
        given = tuple(events)
        for event in given:
            if not isinstance(event, (OptIn, OptInRequested, Confirmed, OptOut)):
                raise TypeError(f"not a consent event: {event!r}")
        ordered = tuple(sorted(given, key=lambda event: event.at))
        return cls(ordered, *_derive(ordered))

    @classmethod
    def empty(cls) -> ConsentState:
        """A subscriber with no ledger: never opted in, never opted out."""
        return cls.from_events(())

    def with_events(self, events: Iterable[ConsentEvent]) -> ConsentState:
        """The state after appending ``events`` to the ledger."""
        return ConsentState.from_events(self.events + tuple(events))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConsentState) and self.events == other.events

    def __hash__(self) -> int:
        return hash(self.events)

    def deciding_opt_out(self, target: Scope | CampaignRef) -> OptIn | OptOut | None:
        """The latest STOP or START whose scope covers ``target``, None when there is none."""
        if not self._blocks:
            return None
        scope = _as_scope(target)
        return next((event for event in reversed(self._blocks) if event.scope.covers(scope)), None)

    def opted_out_of(self, target: Scope | CampaignRef) -> bool:
        """Tell whether ``target`` is blocked: its deciding event is an opt-out.

        ``opted_out_of(ALL)`` is true after STOPALL (until a START); a campaign is blocked by
        a STOP of its own, of its short code, of its owner or of everything.
        """
        return isinstance(self.deciding_opt_out(target), OptOut)

    def deciding_consent(self, campaign: CampaignRef) -> ConsentEvent | None:
        """The latest marketing opt-in, confirmation or marketing opt-out covering ``campaign``."""
        if not self._grants:
            return None
        scope = Scope.of_campaign(campaign)
        grant = next((g for g in reversed(self._grants) if g.scope.covers(scope)), None)
        return None if grant is None else grant.event

    def has_marketing_consent(self, campaign: CampaignRef) -> bool:
        """Tell whether a marketing opt-in covering ``campaign`` stands (ignoring opt-outs
        of everything; see :meth:`allows_marketing`)."""
        if not self._grants:
            return False
        scope = Scope.of_campaign(campaign)
        grant = next((g for g in reversed(self._grants) if g.scope.covers(scope)), None)
        return grant is not None and grant.granted

    def allows_marketing(self, campaign: CampaignRef) -> bool:
        """Tell whether a marketing MT for ``campaign`` may be sent: not opted out, and a
        marketing opt-in (or confirmed opt-in) covering it stands."""
        return not self.opted_out_of(campaign) and self.has_marketing_consent(campaign)

    def allows_response(self, campaign: CampaignRef) -> bool:
        """Tell whether a response to the subscriber's own MO to ``campaign`` may be sent."""
        return not self.opted_out_of(campaign)

    def pending_request(
        self, short_code: str, at: float, scope: Scope | CampaignRef | None = None
    ) -> OptInRequested | None:
        """The opt-in request a YES sent to ``short_code`` at ``at`` would confirm.

        The latest request made from that short code (or for ``scope`` when given) at or
        before ``at`` that has not expired, been confirmed or been voided by an opt-out.
        """
        wanted = None if scope is None else _as_scope(scope)
        for request in reversed(self._pending):
            if request.at > at or at > request.expires_at:
                continue
            if wanted is not None:
                if request.scope.same(wanted):
                    return request
            elif request.evidence.short_code == short_code:
                return request
        return None


# --- global keywords -----------------------------------------------------------------------------


class ReplyKind(enum.StrEnum):
    """Which keyword reply the engine sends (its text is the short code's configuration)."""

    #: The one confirmation of an opt-out.
    STOP = "stop"
    #: The confirmation that START restored what STOP removed.
    START = "start"
    #: The short code's help text (sent to anyone, subscribed or not).
    HELP = "help"
    #: The confirmation that a pending opt-in is now confirmed.
    CONFIRMED = "confirmed"
    #: A YES with no pending request to confirm.
    NOTHING_TO_CONFIRM = "nothing_to_confirm"


@attrs.frozen
class KeywordDecision:
    """What one global keyword MO does to the ledger and which reply it gets."""

    #: The events to append to the sender's ledger (in this order).
    events: tuple[ConsentEvent, ...] = attrs.field(default=(), converter=tuple)
    #: The one reply to send, None when the kind is not a consent keyword.
    reply: ReplyKind | None = None
    #: What the keyword acted on (None for HELP and unknown kinds).
    scope: Scope | None = None


def _target_scope(word: str, campaign: CampaignRef | None, evidence: Evidence, all_words: Iterable[str]) -> Scope:
    if fold(word) in {fold(w) for w in all_words}:
        return ALL
    if campaign is not None:
        return Scope.of_campaign(campaign)
    if not evidence.short_code:
        raise ValueError("a keyword without a campaign needs the evidence's short code")
    return Scope.of_short_code(evidence.short_code)


def decide_keyword(
    kind: str,
    word: str,
    campaign: CampaignRef | None,
    state: ConsentState,
    evidence: Evidence,
    *,
    all_words: Iterable[str] = ("STOPALL",),
) -> KeywordDecision:
    """Map one global keyword MO to ledger events and its one reply.

    Args:
        kind: the routing outcome's kind ("stop", "start", "help", :data:`CONFIRM_KIND`, or
            another configured kind, which gets no decision).
        word: the keyword as configured ("STOPALL" is told from "STOP" by it).
        campaign: the campaign named after the keyword ("STOP VOTE"), None for none.
        state: the sender's current consent.
        evidence: the MO (its time orders the ledger and decides whether a YES is in time).
        all_words: the stop and start words that reach every short code (``consent``
            ``stop_all_words`` in the policy); they ignore ``campaign``.

    Returns:
        The events to append and the reply: exactly one reply for each STOP, START, HELP and
        YES, and no event for HELP or a YES with nothing pending.
    """
    if kind == "stop":
        scope = _target_scope(word, campaign, evidence, all_words)
        return KeywordDecision((OptOut(scope, evidence, ConsentPurpose.ALL),), ReplyKind.STOP, scope)
    if kind == "start":
        scope = _target_scope(word, campaign, evidence, all_words)
        return KeywordDecision((OptIn(scope, evidence, ConsentPurpose.ALL),), ReplyKind.START, scope)
    if kind == "help":
        return KeywordDecision((), ReplyKind.HELP)
    if kind == CONFIRM_KIND:
        wanted = None if campaign is None else Scope.of_campaign(campaign)
        request = state.pending_request(evidence.short_code, evidence.at, wanted)
        if request is None:
            return KeywordDecision((), ReplyKind.NOTHING_TO_CONFIRM, wanted)
        return KeywordDecision((Confirmed(request.scope, evidence),), ReplyKind.CONFIRMED, request.scope)
    return KeywordDecision()
