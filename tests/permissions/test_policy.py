"""The policy model: default deny, rules permit exactly what they list, views, segments, may_send."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modules.api import SubscriberView
from permissions.audit import AuditKind
from permissions.consent import (
    ALL,
    CampaignRef,
    ConsentPurpose,
    ConsentState,
    Evidence,
    OptIn,
    OptOut,
    Scope,
)
from permissions.policy import (
    ANALYTICS,
    MARKETING,
    RESPONSE,
    Category,
    DataUser,
    Deny,
    DenyReason,
    MtKind,
    Operation,
    Permit,
    Policy,
    Purpose,
    PurposeKind,
    Request,
    Rule,
    ThirdParty,
    may_send,
)
from tests.permissions.strategies import (
    ATTRIBUTES,
    THIRD_PARTIES,
    USERS,
    attributes,
    categories,
    deterministic,
    names,
    operations,
    purposes,
    rules,
)

PARTIES = tuple(ThirdParty(name) for name in THIRD_PARTIES)
PLAIN = (RESPONSE, MARKETING, ANALYTICS)


def lists(rule: Rule, operation: Operation, category: Category, purpose: Purpose, attribute: str | None) -> bool:
    """The oracle: what a rule permits, spelled out from its definition."""
    if operation not in rule.operations or category not in rule.categories or purpose not in rule.purposes:
        return False
    if category is not Category.DECLARED or rule.attributes is None:
        return True
    return attribute is not None and attribute in rule.attributes


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    users = draw(st.lists(st.sampled_from(USERS), unique=True, max_size=3))
    return Policy(
        tuple(DataUser(name, tuple(draw(st.lists(rules(), max_size=4)))) for name in users),
        PARTIES,
    )


# --- default deny and exact permits ---------------------------------------------------------------


@deterministic
@given(policies(), st.sampled_from(USERS), operations, categories, purposes, attributes)
def test_rules_permit_exactly_what_they_list(
    policy: Policy, user: str, operation: Operation, category: Category, purpose: Purpose, attribute: str | None
) -> None:
    """A quadruple is permitted iff some rule of the user lists it; everything else is denied."""
    if category is not Category.DECLARED:
        attribute = None
    decision = policy.may(user, operation, category, purpose, attribute)
    data_user = policy.data_user(user)
    if data_user is None:
        assert decision == Deny(DenyReason.UNKNOWN_USER, decision.request, decision.detail)
        return
    expected = any(lists(rule, operation, category, purpose, attribute) for rule in data_user.rules)
    assert decision.permitted is expected
    assert isinstance(decision, Permit if expected else Deny)
    if not expected:
        assert decision.reason is DenyReason.NO_RULE
    assert decision.request == Request(user, operation, category, purpose, attribute)


@deterministic
@given(names, operations, categories, purposes)
def test_unknown_users_are_denied(user: str, operation: Operation, category: Category, purpose: Purpose) -> None:
    """A name that is no data user gets UNKNOWN_USER, whatever it asks."""
    policy = Policy((DataUser("Acme", (Rule(set(Operation) - {Operation.DISCLOSE}, set(Category), PLAIN),)),))
    if user == "Acme":
        return
    decision = policy.may(user, operation, category, purpose)
    assert isinstance(decision, Deny) and decision.reason is DenyReason.UNKNOWN_USER


@deterministic
@given(st.sampled_from(USERS), operations, categories, purposes)
def test_the_empty_policy_denies_everything(user: str, operation: Operation, category: Category, purpose: Purpose) -> None:
    """Policy() has no data users."""
    assert not Policy().may(user, operation, category, purpose).permitted


def test_rules_without_a_category_deny_it() -> None:
    """A user with rules for some categories is denied the others (no rule, not unknown user)."""
    policy = Policy((DataUser("Acme", (Rule({"read"}, {"contact"}, {"response"}),)),))
    assert policy.may("Acme", "read", "contact", "response").permitted
    for category in set(Category) - {Category.CONTACT}:
        assert policy.may("Acme", "read", category, "response") == Deny(
            DenyReason.NO_RULE, Request("Acme", "read", category, "response")
        )
    assert not policy.may("Acme", "write", "contact", "response").permitted
    assert not policy.may("Acme", "read", "contact", "marketing").permitted


@pytest.mark.parametrize(
    ("rule_attributes", "attribute", "permitted"),
    [
        (None, None, True),
        (None, "postcode", True),
        ({"postcode"}, "postcode", True),
        ({"postcode"}, "age_band", False),
        ({"postcode"}, None, False),  # the whole category is more than the rule gives
        ({"postcode", "age_band"}, "age_band", True),
    ],
)
def test_attributes_narrow_the_declared_category(rule_attributes: Any, attribute: str | None, permitted: bool) -> None:
    """A rule's attributes limit what it permits of "declared", and only of "declared"."""
    rule = Rule({"read"}, {"declared", "participation"}, {"marketing"}, rule_attributes)
    policy = Policy((DataUser("Acme", (rule,)),))
    assert policy.may("Acme", "read", "declared", "marketing", attribute).permitted is permitted
    assert policy.may("Acme", "read", "participation", "marketing").permitted


def test_an_attribute_of_another_category_is_a_bug() -> None:
    """Asking about an attribute of a category that has none raises."""
    with pytest.raises(ValueError):
        Policy().may("Acme", "read", "contact", "response", "postcode")


@pytest.mark.parametrize(
    ("operation", "category", "purpose"),
    [("peek", "contact", "response"), ("read", "phone", "response"), ("read", "contact", "spam"), ("read", "contact", "disclosure")],
)
def test_unknown_spellings_raise(operation: str, category: str, purpose: str) -> None:
    """Misspelt vocabulary is a programming error, not a decision."""
    with pytest.raises(ValueError):
        Policy().may("Acme", operation, category, purpose)


# --- the vocabulary --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "purpose"),
    [
        ("response", RESPONSE),
        ("marketing", MARKETING),
        ("analytics", ANALYTICS),
        ("disclosure:Ratings Ltd", Purpose(PurposeKind.DISCLOSURE, "Ratings Ltd")),
        ("disclosure: Ratings Ltd ", Purpose(PurposeKind.DISCLOSURE, "Ratings Ltd")),
    ],
)
def test_purposes_parse_and_print(text: str, purpose: Purpose) -> None:
    """Purposes read as the policy file spells them and print back the same way."""
    assert Purpose.parse(text) == purpose
    assert Purpose.parse(str(purpose)) == purpose


@pytest.mark.parametrize("text", ["", "disclosure", "disclosure:", "disclosure:  ", "Response", "ads"])
def test_bad_purposes_raise(text: str) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError):
        Purpose.parse(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"operations": (), "categories": {"contact"}, "purposes": {"response"}},
        {"operations": {"read"}, "categories": (), "purposes": {"response"}},
        {"operations": {"read"}, "categories": {"contact"}, "purposes": ()},
        {"operations": {"read"}, "categories": {"contact"}, "purposes": {"response"}, "attributes": {"postcode"}},
        {"operations": {"read"}, "categories": {"declared"}, "purposes": {"response"}, "attributes": ()},
        {"operations": {"disclose"}, "categories": {"contact"}, "purposes": {"response"}},
        {"operations": {"disclose", "read"}, "categories": {"contact"}, "purposes": {"disclosure:X"}},
        {"operations": {"read"}, "categories": {"contact"}, "purposes": {"disclosure:X"}},
    ],
)
def test_invalid_rules_raise(kwargs: dict[str, Any]) -> None:
    """Empty lists, attributes without "declared", and disclose mixed with anything else."""
    with pytest.raises(ValueError):
        Rule(**kwargs)


def test_policies_check_users_and_third_parties() -> None:
    """A data user given twice, or a disclosure to an unlisted third party, is refused."""
    with pytest.raises(ValueError, match="twice"):
        Policy((DataUser("A"), DataUser("A")))
    with pytest.raises(ValueError, match="third party"):
        Policy((DataUser("A", (Rule({"disclose"}, {"participation"}, {"disclosure:X"}),)),))
    policy = Policy((DataUser("A", (Rule({"disclose"}, {"participation"}, {"disclosure:X"}),)),), (ThirdParty("X"),))
    assert policy.may("A", "disclose", "participation", "disclosure:X").permitted
    assert not policy.may("A", "disclose", "participation", "disclosure:Y").permitted


# --- views -------------------------------------------------------------------------------------------


def shop_policy() -> Policy:
    return Policy(
        (
            DataUser(
                "Acme",
                (
                    Rule({"read"}, {"contact"}, {"response", "marketing"}),
                    Rule({"read", "write"}, {"participation"}, {"response"}),
                    Rule({"read"}, {"participation", "declared"}, {"marketing"}, {"age_band", "postcode"}),
                    Rule({"read"}, {"declared", "profile"}, {"analytics"}),
                ),
            ),
        )
    )


DECLARED = {"age_band": "18+", "postcode": "10431", "gender": "f"}


@pytest.mark.parametrize(
    ("purpose", "categories", "kept", "withheld"),
    [
        ("response", {"contact", "participation"}, {}, ("age_band", "gender", "postcode")),
        ("marketing", {"contact", "participation"}, {"age_band": "18+", "postcode": "10431"}, ("gender",)),
        ("analytics", {"declared", "profile"}, DECLARED, ()),
    ],
)
def test_view_for_narrows_by_purpose(purpose: str, categories: set[str], kept: dict[str, str], withheld: tuple[str, ...]) -> None:
    """The view holds the readable categories, the readable attributes and what was held back."""
    view = shop_policy().view_for("Acme", purpose, DECLARED, facts=[("Greece", "supports")])
    assert view.categories == {Category(c) for c in categories}
    assert dict(view.attributes) == kept
    assert view.withheld == withheld
    assert view.facts == ((("Greece", "supports"),) if "profile" in categories else ())


@deterministic
@given(policies(), st.sampled_from(USERS), purposes, st.dictionaries(st.sampled_from(ATTRIBUTES), st.text(max_size=5)))
def test_view_for_agrees_with_may(policy: Policy, user: str, purpose: Purpose, declared: dict[str, str]) -> None:
    """Every attribute in a view is readable by may(); every withheld one is not."""
    view = policy.view_for(user, purpose, declared)
    for name in view.attributes:
        assert policy.may(user, "read", "declared", purpose, name).permitted
    for name in view.withheld:
        assert not policy.may(user, "read", "declared", purpose, name).permitted
    assert set(view.attributes) | set(view.withheld) == set(declared)
    for category in Category:
        assert (category in view.categories) is policy.may(user, "read", category, purpose).permitted


@deterministic
@given(policies(), st.lists(st.tuples(st.sampled_from(USERS), purposes), min_size=1, max_size=8))
def test_readable_answers_each_user_and_purpose_apart(policy: Policy, questions: list[tuple[str, Purpose]]) -> None:
    """readable() remembers its answers: asked again, or by the purpose's spelling, about
    several users and purposes in any order, each answer is still the one may() gives."""
    for user, purpose in questions + questions:
        for asked in (purpose, str(purpose)):
            expected = {category for category in Category if policy.may(user, "read", category, purpose).permitted}
            assert policy.readable(user, asked) == expected


def test_subscriber_view_passes_state_only_with_participation() -> None:
    """The module's state is participation data: without it the module sees none."""
    policy = shop_policy()
    seen = policy.view_for("Acme", "response", DECLARED).subscriber_view("ref-1", {"voted": "GRE"}, in_session=True)
    assert seen == SubscriberView(ref="ref-1", state={"voted": "GRE"}, in_session=True, attributes={})
    hidden = policy.view_for("Acme", "analytics", DECLARED).subscriber_view("ref-1", {"voted": "GRE"})
    assert dict(hidden.state) == {} and dict(hidden.attributes) == DECLARED
    assert dict(policy.view_for("Nobody", "response", DECLARED).subscriber_view("r", {"a": 1}).attributes) == {}


# --- segments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "attributes", "expected"),
    [
        ((), (), []),
        (("participation",), ("age_band",), []),
        (("participation", "free_text"), (), [("free_text", None)]),
        (("declared",), (), [("declared", None)]),
        ((), ("postcode", "gender"), [("declared", "gender")]),
    ],
)
def test_segment_criteria(categories: tuple[str, ...], attributes: tuple[str, ...], expected: list[Any]) -> None:
    """Each category or attribute a segment reads without a rule is one problem."""
    problems = shop_policy().check_segment_criteria("Acme", categories, attributes_used=attributes)
    assert [(str(p.category), p.attribute) for p in problems] == expected
    assert all(p.reason is DenyReason.NO_RULE and "Acme" in p.message for p in problems)


def test_segments_always_check_contact() -> None:
    """A segment is messaged, so contact must be readable for the purpose."""
    problems = shop_policy().check_segment_criteria("Acme", ["declared"], purpose="analytics")
    assert [(p.category, p.attribute) for p in problems] == [(Category.CONTACT, None)]
    unknown = shop_policy().check_segment_criteria("Nobody", [])
    assert [p.reason for p in unknown] == [DenyReason.UNKNOWN_USER]


# --- may_send ----------------------------------------------------------------------------------------

VOTE = CampaignRef("vote", "Acme", "4160")
OTHER_CODE = CampaignRef("alerts", "Acme", "5050")


def ev(at: float, code: str = "4160") -> Evidence:
    return Evidence(at, code, "KW", at)


CONSENT = {
    "none": ConsentState.empty(),
    "opted in": ConsentState.from_events([OptIn(Scope.of_campaign(VOTE), ev(1))]),
    "opted out": ConsentState.from_events([OptIn(Scope.of_campaign(VOTE), ev(1)), OptOut(Scope.of_short_code("4160"), ev(2))]),
    "opted out of marketing": ConsentState.from_events(
        [OptIn(Scope.of_campaign(VOTE), ev(1)), OptOut(Scope.of_owner("Acme"), ev(2), ConsentPurpose.MARKETING)]
    ),
    "restarted": ConsentState.from_events(
        [OptIn(Scope.of_campaign(VOTE), ev(1)), OptOut(Scope.of_short_code("4160"), ev(2)), OptIn(ALL, ev(3), "all")]
    ),
}

#: (kind, consent, under age) -> expected reason (None: permitted), with the policy permitting.
MATRIX = [
    ("response", "none", False, None),
    ("response", "none", None, None),
    ("response", "opted in", False, None),
    ("response", "opted out", False, DenyReason.OPTED_OUT),
    ("response", "opted out of marketing", False, None),
    ("response", "restarted", False, None),
    ("response", "none", True, DenyReason.UNDER_AGE),
    ("response", "opted in", True, DenyReason.UNDER_AGE),
    ("response", "opted out", True, DenyReason.OPTED_OUT),
    ("marketing", "none", False, DenyReason.NO_CONSENT),
    ("marketing", "opted in", False, None),
    ("marketing", "opted in", None, None),
    ("marketing", "opted out", False, DenyReason.OPTED_OUT),
    ("marketing", "opted out of marketing", False, DenyReason.NO_CONSENT),
    ("marketing", "restarted", False, None),
    ("marketing", "none", True, DenyReason.UNDER_AGE),
    ("marketing", "opted in", True, DenyReason.UNDER_AGE),
    ("marketing", "opted out", True, DenyReason.OPTED_OUT),
    ("refusal", "none", True, None),
    ("refusal", "opted in", True, None),
    ("refusal", "opted out", True, DenyReason.OPTED_OUT),
    ("keyword", "none", False, None),
    ("keyword", "opted out", False, None),
    ("keyword", "opted out", True, None),
    ("keyword", "none", True, None),
]


def full_policy() -> Policy:
    return Policy((DataUser("Acme", (Rule({"read"}, {"contact"}, {"response", "marketing"}),)),))


@pytest.mark.parametrize(("kind", "consent", "under_age", "reason"), MATRIX)
def test_may_send_matrix(kind: str, consent: str, under_age: bool | None, reason: DenyReason | None) -> None:
    """Response vs marketing vs keyword replies, by consent and age, with the policy permitting."""
    policy = full_policy()
    decision = may_send(kind, VOTE, CONSENT[consent], policy.may_message("Acme", kind), under_age)
    if reason is None:
        assert isinstance(decision, Permit)
    else:
        assert isinstance(decision, Deny) and decision.reason is reason


@pytest.mark.parametrize("kind", ["response", "marketing"])
@pytest.mark.parametrize("consent", ["none", "opted in", "restarted"])
def test_may_send_needs_the_policy(kind: str, consent: str) -> None:
    """Without a rule for contact and the purpose, nothing goes; the policy's reason is kept."""
    for policy, reason in ((Policy(), DenyReason.UNKNOWN_USER), (Policy((DataUser("Acme"),)), DenyReason.NO_RULE)):
        decision = may_send(kind, VOTE, CONSENT[consent], policy.may_message("Acme", kind), False)
        assert isinstance(decision, Deny) and decision.reason is reason
        assert decision.request == Request("Acme", "read", "contact", kind)


def test_stop_suppresses_only_its_short_code() -> None:
    """A STOP on 4160 leaves a campaign on 5050 alone; STOPALL does not."""
    policy = full_policy()
    state = ConsentState.from_events([OptIn(Scope.of_owner("Acme"), ev(1)), OptOut(Scope.of_short_code("4160"), ev(2))])
    assert may_send("marketing", OTHER_CODE, state, policy.may_message("Acme", "marketing"), False).permitted
    assert not may_send("marketing", VOTE, state, policy.may_message("Acme", "marketing"), False).permitted
    everything = state.with_events([OptOut(ALL, ev(3, "5050"))])
    assert not may_send("response", OTHER_CODE, everything, policy.may_message("Acme", "response"), False).permitted


def test_may_send_needs_a_campaign_except_for_keyword_replies() -> None:
    """Only a keyword reply may go without a campaign."""
    assert may_send(MtKind.KEYWORD, None, ConsentState.empty(), Permit(), True).permitted
    with pytest.raises(ValueError):
        may_send(MtKind.RESPONSE, None, ConsentState.empty(), Permit(), False)


@deterministic
@given(
    st.sampled_from(MtKind),
    st.sampled_from(sorted(CONSENT)),
    st.sampled_from((True, False, None)),
    st.sampled_from(("policy permits", "policy denies")),
)
def test_nothing_but_keyword_replies_after_stop(kind: MtKind, consent: str, under_age: bool | None, policy_says: str) -> None:
    """After an opt-out only keyword replies go; under age only the refusal and keyword replies go."""
    policy = full_policy() if policy_says == "policy permits" else Policy()
    decision = may_send(kind, VOTE, CONSENT[consent], policy.may_message("Acme", kind), under_age)
    if kind is MtKind.KEYWORD:
        assert decision.permitted
    elif consent == "opted out":
        assert not decision.permitted and decision.reason is DenyReason.OPTED_OUT
    elif under_age and kind is not MtKind.REFUSAL:
        assert not decision.permitted and decision.reason is DenyReason.UNDER_AGE
    if policy_says == "policy denies" and kind in (MtKind.RESPONSE, MtKind.MARKETING):
        assert not decision.permitted


# --- audit ------------------------------------------------------------------------------------------


def test_every_decision_has_an_audit_record() -> None:
    """Permit and Deny both give a record naming who, what, why and about whom."""
    policy = shop_policy()
    denied = policy.may("Acme", "read", "declared", "marketing", "gender")
    record = denied.audit(subject="ref-9", at=1000.0)
    assert record.kind is AuditKind.DECISION
    assert (record.who, record.operation, record.category, record.purpose) == ("Acme", "read", "declared", "marketing")
    assert (record.subject, record.decision, record.reason, record.at) == ("ref-9", "deny", "no_rule", 1000.0)
    assert "gender" in record.detail
    allowed = policy.may("Acme", "read", "contact", "response").audit(subject="ref-9", at=1001.0)
    assert (allowed.decision, allowed.reason) == ("permit", "")
    sent = may_send("response", VOTE, CONSENT["opted out"], policy.may_message("Acme", "response"), False)
    record = sent.audit(subject="ref-9", at=1002.0)
    assert (record.decision, record.reason, record.purpose) == ("deny", "opted_out", "response")
    assert "short code 4160" in record.detail
