"""The privacy policy: who may do what with which personal data, for which purpose.

The model
    * **Data users** are the organisations that use the data; every campaign's ``owner`` is
      one of them.
    * **Categories** (:class:`Category`) are the kinds of personal data the gateway holds:
      the number itself (``contact``), what the subscriber did (``participation``: MOs,
      votes, answers, records, module state), what they told about themselves
      (``declared``: age band, postcode, ...), their opinions in their own words
      (``free_text``) and the profiles built from all that (``profile``: local profile facts
      and the customer profile).
    * **Operations** (:class:`Operation`): ``read``, ``write``, ``disclose``.
    * **Purposes** (:class:`Purpose`): ``response`` (answer the subscriber's own MO),
      ``marketing`` (send marketing messages), ``analytics`` (reports, segments) and
      ``disclosure:<third party>`` (hand data to a named third party).
    * **Rules** (:class:`Rule`) list what a data user may do: every combination of their
      operations, categories and purposes. A rule may narrow the ``declared`` category to
      some attributes. Anything no rule lists is denied (**default deny**).

Decisions
    :meth:`Policy.may` answers one question with :class:`Permit` or :class:`Deny` (whose
    :class:`DenyReason` says why); either can become an :class:`permissions.audit.AuditRecord`
    with :meth:`Permit.audit` / :meth:`Deny.audit`. :meth:`Policy.view_for` narrows what a
    module may read for a purpose, and :func:`may_send` combines a policy decision with the
    subscriber's consent and age for one MT:

    * a keyword reply (STOP/START/YES confirmation, HELP) always goes out;
    * after an opt-out covering the campaign, nothing else does (STOP wins);
    * a subscriber known to be under age gets only the fixed refusal;
    * a response to the subscriber's own MO needs the policy's permit and no opt-in;
    * a marketing MT needs the policy's permit and a standing marketing opt-in.

Sending an MT uses the number for the MT's purpose: the policy question is "may the owner
``read`` ``contact`` for ``response`` (or ``marketing``)", which :meth:`Policy.may_message`
asks.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import attrs

from permissions.audit import AuditRecord, record_decision
from permissions.consent import CampaignRef, ConsentState, OptOut
from permissions.obligations import Obligations

if TYPE_CHECKING:
    from modules.api import SubscriberView

__all__ = [
    "ANALYTICS",
    "MARKETING",
    "RESPONSE",
    "Category",
    "ConsentRules",
    "DataUser",
    "Decision",
    "Deny",
    "DenyReason",
    "MtKind",
    "Operation",
    "Permit",
    "Policy",
    "PolicyProblem",
    "PolicyView",
    "Purpose",
    "PurposeKind",
    "Request",
    "Rule",
    "ThirdParty",
    "may_send",
]


class Operation(enum.StrEnum):
    """What a data user does with personal data."""

    READ = "read"
    WRITE = "write"
    #: Hand it to a third party (only for ``disclosure:<third party>`` purposes).
    DISCLOSE = "disclose"


class Category(enum.StrEnum):
    """The kinds of personal data the gateway holds."""

    #: The subscriber's number.
    CONTACT = "contact"
    #: What the subscriber did: MOs, votes, answers, records, a module's state.
    PARTICIPATION = "participation"
    #: Attributes the subscriber declared: age band, postcode, ...
    DECLARED = "declared"
    #: Opinions and other text in the subscriber's own words.
    FREE_TEXT = "free_text"
    #: Local profile facts and the customer profile built from the traffic.
    PROFILE = "profile"


class PurposeKind(enum.StrEnum):
    """The kinds of purpose; a disclosure also names its third party."""

    RESPONSE = "response"
    MARKETING = "marketing"
    ANALYTICS = "analytics"
    DISCLOSURE = "disclosure"


_DISCLOSURE_PREFIX = "disclosure:"


@attrs.frozen(order=True, cache_hash=True)
class Purpose:
    """Why data is used. ``str()`` gives the policy file's spelling (``disclosure:NAME``)."""

    kind: PurposeKind = attrs.field(converter=PurposeKind)
    #: The third party of a disclosure; "" for the other kinds.
    third_party: str = ""

    def __attrs_post_init__(self) -> None:
        if self.kind is PurposeKind.DISCLOSURE:
            if not isinstance(self.third_party, str) or not self.third_party.strip() or self.third_party != self.third_party.strip():
                raise ValueError(f"a disclosure purpose names its third party, got {self.third_party!r}")
        elif self.third_party:
            raise ValueError(f"only a disclosure purpose names a third party, got {self.third_party!r}")

    @classmethod
    def disclosure(cls, third_party: str) -> Purpose:
        """Disclosure to ``third_party``."""
        return cls(PurposeKind.DISCLOSURE, third_party)

    @classmethod
    def parse(cls, text: str | Purpose) -> Purpose:
        """``"response"``, ``"marketing"``, ``"analytics"`` or ``"disclosure:NAME"``.

        Raises ``ValueError`` for anything else.
        """
        if isinstance(text, Purpose):
            return text
        if not isinstance(text, str):
            raise ValueError(f"a purpose is a string, got {text!r}")
        if text.startswith(_DISCLOSURE_PREFIX):
            return cls.disclosure(text[len(_DISCLOSURE_PREFIX) :].strip())
        if text == PurposeKind.DISCLOSURE:
            raise ValueError("a disclosure purpose names its third party: 'disclosure:NAME'")
        try:
            return cls(PurposeKind(text))
        except ValueError:
            raise ValueError(f"unknown purpose {text!r}") from None

    def __str__(self) -> str:
        return f"{_DISCLOSURE_PREFIX}{self.third_party}" if self.kind is PurposeKind.DISCLOSURE else str(self.kind)


RESPONSE = Purpose(PurposeKind.RESPONSE)
MARKETING = Purpose(PurposeKind.MARKETING)
ANALYTICS = Purpose(PurposeKind.ANALYTICS)


class DenyReason(enum.StrEnum):
    """Why something was refused."""

    #: No rule of the data user lists this operation, category and purpose.
    NO_RULE = "no_rule"
    #: The data user is not in the policy.
    UNKNOWN_USER = "unknown_user"
    #: The subscriber is known to be younger than the policy's minimum age.
    UNDER_AGE = "under_age"
    #: The subscriber opted out of this campaign (or of its short code, owner or everything).
    OPTED_OUT = "opted_out"
    #: A marketing MT without a standing marketing opt-in.
    NO_CONSENT = "no_consent"


@attrs.frozen
class Request:
    """One question put to the policy."""

    user: str
    operation: Operation = attrs.field(converter=Operation)
    category: Category = attrs.field(converter=Category)
    purpose: Purpose = attrs.field(converter=Purpose.parse)
    #: For the ``declared`` category: the one attribute concerned (None: the whole category).
    attribute: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.attribute is not None and self.category is not Category.DECLARED:
            raise ValueError(f"only the 'declared' category has attributes, got {self.attribute!r} for {self.category}")


@attrs.frozen
class Permit:
    """The policy allows it."""

    #: The question answered (None for decisions that need no policy, such as keyword replies).
    request: Request | None = None

    permitted = True

    def audit(self, *, subject: str, at: float, detail: str = "") -> AuditRecord:
        """The audit record of this decision about ``subject`` (a pseudonymous reference)."""
        return record_decision(self, subject=subject, at=at, detail=detail)


@attrs.frozen
class Deny:
    """The policy, the consent or an obligation refuses it, for ``reason``."""

    reason: DenyReason = attrs.field(converter=DenyReason)
    request: Request | None = None
    #: What an operator needs to understand the refusal ("opted out: short code 4160").
    detail: str = ""

    permitted = False

    def audit(self, *, subject: str, at: float, detail: str = "") -> AuditRecord:
        """The audit record of this decision about ``subject`` (a pseudonymous reference)."""
        return record_decision(self, subject=subject, at=at, detail=detail)


Decision = Permit | Deny


def _enum_set(enum_cls: type[enum.StrEnum]) -> Any:
    def convert(values: Iterable[Any]) -> frozenset[Any]:
        if isinstance(values, str):
            values = (values,)
        return frozenset(enum_cls(value) for value in values)

    return convert


def _purpose_set(values: Iterable[Any]) -> frozenset[Purpose]:
    if isinstance(values, (str, Purpose)):
        values = (values,)
    return frozenset(Purpose.parse(value) for value in values)


def _attribute_set(values: Iterable[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = (values,)
    return frozenset(values)


@attrs.frozen
class Rule:
    """What a data user may do: every (operation, category, purpose) combination listed.

    ``attributes`` narrows the ``declared`` category to those attribute names (the other
    categories of the rule are unaffected); None allows every declared attribute.

    Raises ``ValueError`` for an empty list, ``attributes`` without the ``declared``
    category, or ``disclose`` mixed with other operations or with purposes that are not
    disclosures (a disclosure goes to a named third party, and only a disclosure does).
    """

    operations: frozenset[Operation] = attrs.field(converter=_enum_set(Operation))
    categories: frozenset[Category] = attrs.field(converter=_enum_set(Category))
    purposes: frozenset[Purpose] = attrs.field(converter=_purpose_set)
    attributes: frozenset[str] | None = attrs.field(default=None, converter=_attribute_set)

    def __attrs_post_init__(self) -> None:
        for name in ("operations", "categories", "purposes"):
            if not getattr(self, name):
                raise ValueError(f"a rule lists at least one of its {name}")
        if self.attributes is not None:
            if not self.attributes or not all(isinstance(a, str) and a for a in self.attributes):
                raise ValueError(f"a rule's attributes are non-empty names, got {sorted(self.attributes)!r}")
            if Category.DECLARED not in self.categories:
                raise ValueError("a rule's attributes narrow the 'declared' category, which it does not list")
        disclose = Operation.DISCLOSE in self.operations
        disclosures = {p.kind is PurposeKind.DISCLOSURE for p in self.purposes}
        if disclose and (len(self.operations) > 1 or disclosures != {True}):
            raise ValueError("'disclose' goes in a rule of its own, with 'disclosure:<third party>' purposes only")
        if not disclose and True in disclosures:
            raise ValueError("'disclosure:<third party>' purposes go only with the 'disclose' operation")

    def lists(self, operation: Operation, category: Category, purpose: Purpose) -> bool:
        """Tell whether the rule names this combination (ignoring ``attributes``)."""
        return operation in self.operations and category in self.categories and purpose in self.purposes

    def allows_attribute(self, category: Category, attribute: str | None) -> bool:
        """Tell whether the rule reaches ``attribute`` (or the whole category when None)."""
        if category is not Category.DECLARED or self.attributes is None:
            return True
        return attribute is not None and attribute in self.attributes


@attrs.frozen
class DataUser:
    """An organisation that uses the data, and its rules."""

    name: str
    rules: tuple[Rule, ...] = attrs.field(default=(), converter=tuple)
    #: Who they are, for operators and for subject access answers.
    description: str = ""


@attrs.frozen
class ThirdParty:
    """A recipient of disclosures (``disclosure:<name>`` purposes name it)."""

    name: str
    description: str = ""


@attrs.frozen
class ConsentRules:
    """How consent keywords behave (the policy file's ``[consent]``)."""

    #: How long a YES confirms a pending opt-in (hours).
    confirm_window_hours: float = 24.0
    #: Stop and start words that reach every short code instead of the one they were sent to.
    stop_all_words: tuple[str, ...] = attrs.field(default=("STOPALL",), converter=tuple)

    @property
    def confirm_window(self) -> float:
        """The confirmation window in seconds."""
        return self.confirm_window_hours * 3600.0


@attrs.frozen
class PolicyProblem:
    """Something a planned use of data (an outbound segment) needs and the policy denies."""

    category: Category
    #: The declared attribute concerned, None for a whole category.
    attribute: str | None
    reason: DenyReason
    message: str


@attrs.frozen
class PolicyView:
    """What a data user may read of one subscriber for one purpose."""

    user: str
    purpose: Purpose
    #: The categories readable in full.
    categories: frozenset[Category]
    #: The declared attributes readable (all of them when ``declared`` is readable in full).
    attributes: Mapping[str, str] = attrs.field(converter=lambda m: MappingProxyType(dict(m)))
    #: The names of the declared attributes held back, sorted (for the audit trail).
    withheld: tuple[str, ...]
    #: The local profile facts, or () when ``profile`` is not readable.
    facts: tuple[Any, ...] = ()

    def may_read(self, category: Category | str) -> bool:
        """Tell whether ``category`` is readable in full."""
        return Category(category) in self.categories

    def subscriber_view(self, ref: str, state: Mapping[str, Any] | None = None, in_session: bool = False) -> SubscriberView:
        """The :class:`modules.api.SubscriberView` a module gets.

        The module's own ``state`` is participation data: it is passed on only when
        ``participation`` is readable for the purpose, and is empty otherwise.
        """
        from modules.api import SubscriberView

        readable_state = state if (state is not None and Category.PARTICIPATION in self.categories) else {}
        return SubscriberView(ref=ref, state=readable_state, in_session=in_session, attributes=self.attributes)


def _index(users: tuple[DataUser, ...]) -> Mapping[str, DataUser]:
    by_name: dict[str, DataUser] = {}
    for user in users:
        if user.name in by_name:
            raise ValueError(f"data user {user.name!r} is given twice")
        by_name[user.name] = user
    return MappingProxyType(by_name)


@attrs.frozen
class Policy:
    """A complete privacy policy: data users with their rules, third parties, obligations
    and consent rules. Built by :func:`permissions.policy_file.load_policy` from
    ``conf/policy.toml``, or directly.

    ``Policy()`` has no data users: it denies everything.

    Raises ``ValueError`` for a data user given twice, or a disclosure to a third party the
    policy does not list.
    """

    data_users: tuple[DataUser, ...] = attrs.field(default=(), converter=tuple)
    third_parties: tuple[ThirdParty, ...] = attrs.field(default=(), converter=tuple)
    obligations: Obligations = Obligations()
    consent: ConsentRules = ConsentRules()
    #: The file it was read from ("" when built in code), for messages.
    source: str = ""
    _users: Mapping[str, DataUser] = attrs.field(init=False, repr=False, eq=False)
    #: Answers already given by :meth:`may` (the policy never changes; the gateway asks the
    #: same few questions for every MO).
    _answers: dict[tuple[Any, ...], Decision] = attrs.field(init=False, repr=False, eq=False)
    #: Answers already given by :meth:`readable`.
    _readable: dict[tuple[str, Purpose | str], frozenset[Category]] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_users", _index(self.data_users))
        object.__setattr__(self, "_answers", {})
        object.__setattr__(self, "_readable", {})
        known = {party.name for party in self.third_parties}
        for user in self.data_users:
            for rule in user.rules:
                for purpose in rule.purposes:
                    if purpose.kind is PurposeKind.DISCLOSURE and purpose.third_party not in known:
                        raise ValueError(f"data user {user.name!r} discloses to {purpose.third_party!r}, which is no third party of the policy")

    def data_user(self, name: str) -> DataUser | None:
        """The data user called ``name``, None when there is none."""
        return self._users.get(name)

    @property
    def user_names(self) -> tuple[str, ...]:
        """The data users' names, in the policy's order."""
        return tuple(user.name for user in self.data_users)

    def decide(self, request: Request) -> Decision:
        """Answer ``request``: :class:`Permit` when a rule of its data user lists it."""
        user = self._users.get(request.user)
        if user is None:
            return Deny(DenyReason.UNKNOWN_USER, request, f"{request.user!r} is no data user of the policy")
        for rule in user.rules:
            if rule.lists(request.operation, request.category, request.purpose) and rule.allows_attribute(
                request.category, request.attribute
            ):
                return Permit(request)
        return Deny(DenyReason.NO_RULE, request)

    def may(
        self,
        user: str,
        operation: Operation | str,
        category: Category | str,
        purpose: Purpose | str,
        attribute: str | None = None,
    ) -> Decision:
        """May ``user`` perform ``operation`` on ``category`` for ``purpose``?

        For the ``declared`` category, ``attribute`` asks about one attribute; without it
        the question is about the whole category, which a rule narrowed to some attributes
        does not permit. Unknown operation, category or purpose spellings raise ``ValueError``
        (they are bugs, not decisions).
        """
        key = (user, operation, category, purpose, attribute)
        answer = self._answers.get(key)
        if answer is None:
            answer = self.decide(Request(user, operation, category, purpose, attribute))  # type: ignore[arg-type]
            if len(self._answers) < 4096:
                self._answers[key] = answer
        return answer

    def may_message(self, owner: str, kind: MtKind | str) -> Decision:
        """The policy decision for sending an MT of ``kind`` for a campaign of ``owner``:
        reading ``contact`` for ``response`` or ``marketing``. Keyword replies and the
        under-age refusal are the gateway's own and need no rule: they get a bare Permit."""
        kind = MtKind(kind)
        if kind is MtKind.RESPONSE:
            return self.may(owner, Operation.READ, Category.CONTACT, RESPONSE)
        if kind is MtKind.MARKETING:
            return self.may(owner, Operation.READ, Category.CONTACT, MARKETING)
        return Permit()

    def readable(self, user: str, purpose: Purpose | str) -> frozenset[Category]:
        """The categories ``user`` may read in full for ``purpose``."""
        key = (user, purpose)
        found = self._readable.get(key)
        if found is None:
            parsed = Purpose.parse(purpose)
            found = frozenset(category for category in Category if self.may(user, Operation.READ, category, parsed).permitted)
            if len(self._readable) < 1024:
                self._readable[key] = found
        return found

    def view_for(
        self,
        user: str,
        purpose: Purpose | str,
        attributes: Mapping[str, str] | None = None,
        facts: Iterable[Any] = (),
    ) -> PolicyView:
        """What ``user`` may read for ``purpose``: the readable categories, the declared
        ``attributes`` narrowed to the readable ones, and ``facts`` (local profile facts)
        when ``profile`` is readable."""
        purpose = Purpose.parse(purpose)
        categories = self.readable(user, purpose)
        held = dict(attributes or {})
        if Category.DECLARED in categories:
            kept = held
        else:
            kept = {
                name: value
                for name, value in held.items()
                if self.may(user, Operation.READ, Category.DECLARED, purpose, attribute=name).permitted
            }
        return PolicyView(
            user=user,
            purpose=purpose,
            categories=categories,
            attributes=kept,
            withheld=tuple(sorted(set(held) - set(kept))),
            facts=tuple(facts) if Category.PROFILE in categories else (),
        )

    def check_segment_criteria(
        self,
        user: str,
        categories_used: Iterable[Category | str],
        *,
        attributes_used: Iterable[str] = (),
        purpose: Purpose | str = MARKETING,
    ) -> list[PolicyProblem]:
        """The problems with a segment ``user`` wants to select and message for ``purpose``.

        Selecting reads every category used (the ``declared`` ones attribute by attribute
        when ``attributes_used`` names them), and messaging the segment reads ``contact``,
        which is therefore always checked. Returns one problem per refusal, in category
        order; an empty list means the segment is within the policy.
        """
        purpose = Purpose.parse(purpose)
        used = {Category(category) for category in categories_used} | {Category.CONTACT}
        attributes = sorted(set(attributes_used))
        if attributes:
            used.add(Category.DECLARED)
        problems = []
        for category in Category:
            if category not in used:
                continue
            asks = [None] if category is not Category.DECLARED or not attributes else attributes
            for attribute in asks:
                decision = self.may(user, Operation.READ, category, purpose, attribute=attribute)
                if isinstance(decision, Deny):
                    what = f"declared attribute {attribute!r}" if attribute else f"{category} data"
                    problems.append(
                        PolicyProblem(category, attribute, decision.reason, f"{user!r} may not read {what} for {purpose}")
                    )
        return problems


class MtKind(enum.StrEnum):
    """What an MT is, for :func:`may_send`."""

    #: The answer to the subscriber's own MO (a campaign's reply).
    RESPONSE = "response"
    #: A message the gateway starts: alerts, marketing, anything not asked for.
    MARKETING = "marketing"
    #: A reply to a consent keyword: STOP/START/YES confirmation, HELP text.
    KEYWORD = "keyword"
    #: The fixed reply to a subscriber known to be under age.
    REFUSAL = "refusal"


def may_send(
    kind: MtKind | str,
    campaign: CampaignRef | None,
    consent: ConsentState,
    decision: Decision,
    under_age: bool | None,
) -> Decision:
    """May an MT of ``kind`` for ``campaign`` go to this subscriber now?

    Checked at decision time and again at submit time (so that a STOP suppresses MTs
    already queued).

    Args:
        kind: the MT's kind.
        campaign: the campaign it belongs to; may be None only for a keyword reply.
        consent: the subscriber's consent state.
        decision: the policy's decision for it (:meth:`Policy.may_message`).
        under_age: whether the subscriber is known to be under the minimum age (None:
            unknown, which is not under age).

    Returns:
        ``decision`` itself when it decides, else :class:`Permit` or :class:`Deny` with
        OPTED_OUT, UNDER_AGE or NO_CONSENT. In order: keyword replies always go; an opt-out
        stops everything else; under age, only the refusal goes; the policy must permit; a
        marketing MT needs a standing marketing opt-in.
    """
    kind = MtKind(kind)
    if kind is MtKind.KEYWORD:
        return decision if isinstance(decision, Permit) else Permit(decision.request)
    if campaign is None:
        raise ValueError(f"a {kind} MT belongs to a campaign")
    request = decision.request
    blocker = consent.deciding_opt_out(campaign)
    if isinstance(blocker, OptOut):
        return Deny(DenyReason.OPTED_OUT, request, f"opted out: {blocker.scope}")
    if kind is MtKind.REFUSAL:
        return Permit(request)
    if under_age:
        return Deny(DenyReason.UNDER_AGE, request)
    if isinstance(decision, Deny):
        return decision
    if kind is MtKind.MARKETING and not consent.has_marketing_consent(campaign):
        return Deny(DenyReason.NO_CONSENT, request, f"no marketing opt-in for campaign {campaign.name!r}")
    return decision
