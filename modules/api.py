"""The contract between the gateway and its campaign modules.

A campaign module turns one routed MO into *actions*. It is pure: it gets a
:class:`Message` and a :class:`ModuleContext` (the campaign, its validated settings, the
read-only :class:`SubscriberView` the privacy policy lets it see, and the time) and returns a
:class:`ModuleResult`. It never touches the database, the network or the clock; the engine
applies the actions in the same transaction that marks the MO processed, so a module is
tested with plain values and the policy is enforced in one place.

A module is a class with:

* ``Settings``: a frozen attrs class; the campaign sheet's ``[settings]`` table is validated
  into it (types from the annotations, ranges from attrs validators raising ``ValueError``).
* ``handle(ctx, message) -> ModuleResult``.
* optionally ``summarise(settings, totals) -> list[tuple[str, str]]``: the module's own
  results for reports, from the totals of its :class:`Record` actions;
* optionally ``pool(settings, campaign_name) -> tuple[str, ...]``: the coupon codes the
  engine keeps for the campaign (a ``codes_file`` setting, a file of one code per line
  relative to the sheet, is read by the engine instead).

It is found through the ``gatewayd.modules`` entry-point group
(``vote = modules.vote:VoteModule``) and instantiated once per campaign with no arguments.

This module imports nothing from the gateway: modules depend on it alone.
"""

from __future__ import annotations

import re
from collections import abc
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

import attrs

__all__ = [
    "Action",
    "CampaignInfo",
    "CampaignModule",
    "ClaimCoupon",
    "Declare",
    "EndSession",
    "Message",
    "ModuleContext",
    "ModuleResult",
    "OpenSession",
    "Record",
    "RecordFact",
    "RedeemCoupon",
    "Reply",
    "SetState",
    "Subscribe",
    "SubscriberView",
    "Total",
    "Unsubscribe",
    "frozen_mapping",
    "render",
    "summarise_totals",
]


#: Immutable types that :func:`frozen_mapping` keeps as they are, checked by exact type.
_SCALARS = frozenset({str, int, float, bool, type(None)})
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def frozen_mapping(value: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only copy of ``value`` (nested dicts and lists frozen too).

    Keys become strings, nested mappings read-only mappings and lists or tuples tuples. A
    mapping is copied even when it is already read-only: a ``MappingProxyType`` may be a
    view of a dict its owner still changes.
    """
    if not value:
        return _EMPTY
    return _freeze(value)


def _freeze(item: Any) -> Any:
    if type(item) in _SCALARS:
        return item
    if isinstance(item, abc.Mapping):
        return MappingProxyType(
            {(k if type(k) is str else str(k)): (v if type(v) in _SCALARS else _freeze(v)) for k, v in item.items()}
        )
    if isinstance(item, (list, tuple)):
        if type(item) is tuple and all(type(v) in _SCALARS for v in item):
            return item
        return tuple([_freeze(v) for v in item])
    return item


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``{name}`` placeholders from ``values``; ``{{`` and ``}}`` give braces.

    Unlike ``str.format`` it never evaluates attribute or index expressions, and a
    placeholder with no value is left as written, so a sheet's typo shows in the reply
    instead of failing the MO.
    """

    def fill(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        name = m.group(1)
        return str(values[name]) if name in values else m.group(0)

    return _PLACEHOLDER.sub(fill, template)


# --- what a module receives --------------------------------------------------------------------


@attrs.frozen
class Message:
    """One routed MO, as a module sees it."""

    #: The stored MO's id (for the engine's records; modules need not use it).
    mo_id: int
    #: The short code it was sent to.
    short_code: str
    #: The whole text as received.
    text: str
    #: The campaign keyword it matched, in the sheet's spelling; "" when it reached the
    #: campaign through an open session or as the short code's default.
    keyword: str
    #: The text after the keyword, stripped ("GRE" for "vote gre").
    args: str
    #: When it was received (UTC seconds).
    received_at: float
    #: True when it reached the campaign through an open session rather than a keyword.
    via_session: bool = False

    @property
    def words(self) -> tuple[str, ...]:
        """``args`` split on whitespace."""
        return tuple(self.args.split())


@attrs.frozen
class CampaignInfo:
    """The parts of a campaign's sheet a module may use."""

    name: str
    owner: str
    short_code: str
    #: The keywords and aliases, as written in the sheet.
    keywords: tuple[str, ...]
    #: The main response template (``response`` in the sheet), "" when none.
    response: str = ""
    #: Named response templates (``[responses]`` in the sheet) plus "closed" and "not_understood".
    responses: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping)

    def text(self, name: str, default: str = "") -> str:
        """The response template called ``name``, or ``default`` when the sheet has none."""
        value = self.responses.get(name)
        return value if value else default


@attrs.frozen
class SubscriberView:
    """What the privacy policy lets a module see of the subscriber who sent the MO.

    ``ref`` is a pseudonym, stable within the campaign: modules never see the number.
    """

    ref: str
    #: The module's own state for this subscriber in this campaign (from :class:`SetState`).
    state: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    #: True while a session this campaign opened on the short code is open.
    in_session: bool = False
    #: Declared attributes the policy lets this campaign read ("age_band", "postcode", ...).
    attributes: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping)


@attrs.frozen
class ModuleContext:
    """Everything a module may know besides the message."""

    campaign: CampaignInfo
    #: The campaign's validated ``[settings]``: an instance of the module's ``Settings``.
    settings: Any
    subscriber: SubscriberView
    #: The time the decision is made (UTC seconds); modules never read a clock.
    now: float


# --- what a module returns -------------------------------------------------------------------


@attrs.frozen
class Reply:
    """Send ``template`` (rendered with ``values``) to the subscriber as the answer to the MO."""

    template: str
    values: Mapping[str, object] = attrs.field(factory=dict, converter=frozen_mapping)

    @property
    def text(self) -> str:
        """The rendered text."""
        return render(self.template, self.values)


@attrs.frozen
class SetState:
    """Replace the module's state for this subscriber in this campaign (JSON-compatible values)."""

    state: Mapping[str, Any] = attrs.field(converter=frozen_mapping)


@attrs.frozen
class Record:
    """Count a result: a vote for "GRE", an answer to question 2, a final score.

    Reports and tallies add up records by ``(kind, key)``: their number and the sum of
    ``value``. With ``replace``, this subscriber's earlier records of the same ``kind`` in
    the campaign are withdrawn first (a changed vote).
    """

    kind: str
    key: str
    value: float = 1.0
    replace: bool = False


@attrs.frozen
class RecordFact:
    """Add a pair to the subscriber's local profile for the campaign: an object or event and
    the subscriber's attitude to it (``RecordFact("Greece", "supports")``)."""

    object: str
    attitude: str
    #: The attitude is the subscriber's own words (an opinion), which the privacy policy
    #: treats as ``free_text`` rather than ``profile`` data.
    free_text: bool = False


@attrs.frozen
class Declare:
    """Keep an attribute the subscriber declared about themselves (``Declare("age_band",
    "14-17")``). The engine keeps the latest value of each attribute; an age, age band or
    birth year showing the subscriber is under the policy's minimum age stops the gateway
    operating for them."""

    name: str
    value: str


@attrs.frozen
class ClaimCoupon:
    """Give the subscriber a code from the campaign's pool, once per subscriber.

    The engine replies with ``reply`` for a new code, ``already`` when the subscriber
    already holds one (the same code again), or ``exhausted`` when the pool is empty; the
    code fills ``{coupon}``.
    """

    reply: str
    already: str
    exhausted: str


@attrs.frozen
class RedeemCoupon:
    """Mark ``code`` of this campaign redeemed; reply ``reply`` or, for an unknown or already
    redeemed code, ``unknown`` (``{coupon}`` is the code)."""

    code: str
    reply: str
    unknown: str


@attrs.frozen
class Subscribe:
    """Subscribe the sender to the campaign's alert topic ``topic``."""

    topic: str


@attrs.frozen
class Unsubscribe:
    """Unsubscribe the sender from ``topic`` (every topic of the campaign when ``topic`` is "")."""

    topic: str = ""


@attrs.frozen
class OpenSession:
    """Route the sender's next MOs on this short code to this campaign, even without its
    keyword, until ``timeout`` seconds pass without one (or :class:`EndSession`)."""

    timeout: float


@attrs.frozen
class EndSession:
    """Close the sender's session with this campaign."""


Action = (
    Reply
    | SetState
    | Record
    | RecordFact
    | Declare
    | ClaimCoupon
    | RedeemCoupon
    | Subscribe
    | Unsubscribe
    | OpenSession
    | EndSession
)


def _actions(actions: Iterable[Action]) -> tuple[Action, ...]:
    return tuple(actions)


@attrs.frozen
class ModuleResult:
    """The actions for one MO, applied in order."""

    actions: tuple[Action, ...] = attrs.field(default=(), converter=_actions)


@attrs.frozen
class Total:
    """The records of one ``(kind, key)`` in a campaign: how many, and the sum of their values."""

    kind: str
    key: str
    count: int
    sum: float


@runtime_checkable
class CampaignModule(Protocol):
    """What the engine calls. ``Settings`` is a frozen attrs class."""

    Settings: type

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Decide what to do with one MO."""
        ...


def summarise_totals(totals: Sequence[Total]) -> list[tuple[str, str]]:
    """The default report lines for a module without ``summarise``: one per (kind, key)."""
    return [(f"{t.kind} {t.key}", f"{t.count}") for t in sorted(totals, key=lambda t: (t.kind, t.key))]
