"""Hypothesis strategies for the privacy layer: policy vocabulary, rules, consent events."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from permissions.consent import (
    ALL,
    CampaignRef,
    ConsentPurpose,
    Confirmed,
    Evidence,
    OptIn,
    OptInRequested,
    OptOut,
    Scope,
)
from permissions.policy import Category, Operation, Purpose, PurposeKind, Rule

#: Every test here runs the same examples on every run.
deterministic = settings(derandomize=True, database=None)

USERS = ("Channel 5 Interactive", "Acme Stores Marketing", "Radio One")
THIRD_PARTIES = ("Ratings Ltd", "Loyalty Club")
ATTRIBUTES = ("age_band", "postcode", "gender", "birth_year")
SHORT_CODES = ("4160", "5050")

PLAIN_PURPOSES = tuple(Purpose(kind) for kind in PurposeKind if kind is not PurposeKind.DISCLOSURE)
DISCLOSURES = tuple(Purpose.disclosure(name) for name in THIRD_PARTIES)

operations = st.sampled_from(Operation)
categories = st.sampled_from(Category)
purposes = st.sampled_from(PLAIN_PURPOSES + DISCLOSURES)
attributes = st.one_of(st.none(), st.sampled_from(ATTRIBUTES))
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    """Valid rules: a disclosure rule, or a read/write rule, possibly narrowed to attributes."""
    if draw(st.booleans()):
        ops = frozenset({Operation.DISCLOSE})
        purposes_ = draw(st.frozensets(st.sampled_from(DISCLOSURES), min_size=1))
    else:
        ops = draw(st.frozensets(st.sampled_from((Operation.READ, Operation.WRITE)), min_size=1))
        purposes_ = draw(st.frozensets(st.sampled_from(PLAIN_PURPOSES), min_size=1))
    cats = draw(st.frozensets(categories, min_size=1))
    narrowed = None
    if Category.DECLARED in cats and draw(st.booleans()):
        narrowed = draw(st.frozensets(st.sampled_from(ATTRIBUTES), min_size=1))
    return Rule(ops, cats, purposes_, narrowed)


campaigns = st.builds(
    CampaignRef,
    name=st.sampled_from(("vote", "quiz", "coupons", "alerts")),
    owner=st.sampled_from(USERS[:2]),
    short_code=st.sampled_from(SHORT_CODES),
)

#: Campaign names tied to one owner and short code each, as the sheets would have them.
CAMPAIGNS = (
    CampaignRef("vote", "Channel 5 Interactive", "4160"),
    CampaignRef("quiz", "Channel 5 Interactive", "4160"),
    CampaignRef("coupons", "Acme Stores Marketing", "4160"),
    CampaignRef("alerts", "Acme Stores Marketing", "5050"),
)
known_campaigns = st.sampled_from(CAMPAIGNS)

scopes = st.one_of(
    st.just(ALL),
    st.sampled_from(SHORT_CODES).map(Scope.of_short_code),
    st.sampled_from(USERS[:2]).map(Scope.of_owner),
    known_campaigns.map(Scope.of_campaign),
)


def evidence(at: float, short_code: str = "4160", keyword: str = "", mo_id: int | None = None) -> Evidence:
    """Evidence of an MO at ``at``."""
    return Evidence(at, short_code, keyword, mo_id)


@st.composite
def marketing_events(draw: st.DrawFn, lo: float = 0.0, hi: float = 1000.0) -> list:
    """Marketing-channel events (opt-ins, requests, confirmations, marketing opt-outs) in [lo, hi]."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.floats(lo, hi))
        scope = draw(scopes)
        code = draw(st.sampled_from(SHORT_CODES))
        ev = evidence(at, code)
        kind = draw(st.sampled_from(("in", "requested", "confirmed", "out")))
        if kind == "in":
            out.append(OptIn(scope, ev, ConsentPurpose.MARKETING))
        elif kind == "requested":
            out.append(OptInRequested(scope, ev, at + draw(st.floats(0, 500))))
        elif kind == "confirmed":
            out.append(Confirmed(scope, ev))
        else:
            out.append(OptOut(scope, ev, ConsentPurpose.MARKETING))
    return out
