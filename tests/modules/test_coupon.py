"""The coupon module: claims, redemptions, settings sources and the deterministic generated pool."""

from __future__ import annotations

import pytest

from modules.api import ClaimCoupon, Record, RedeemCoupon, Reply, Total
from modules.coupon import ALPHABET, CouponModule, CouponSettings
from tests.modules.support import campaign, context, mo

DEFAULT_CLAIM = ClaimCoupon(
    reply="Your code: {coupon}",
    already="You already have a code: {coupon}",
    exhausted="Sorry, all the codes have been given out.",
)


def settings(**overrides: object) -> CouponSettings:
    return CouponSettings(**{"codes": ("SUMMER-01", "SUMMER-02"), **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keyword", "args", "actions"),
    [
        ("DEAL", "", (Record("claim", "coupon"), DEFAULT_CLAIM)),
        ("DEAL", "please", (Record("claim", "coupon"), DEFAULT_CLAIM)),
        (
            "DEAL",
            "redeem summer-01",
            (RedeemCoupon("summer-01", "Code {coupon} is now redeemed. Thank you!", "Sorry, {coupon} is not a valid code or was already redeemed."),),
        ),
        (
            "DEAL",
            "Rédeem: (SUMMER-02).",
            (RedeemCoupon("SUMMER-02", "Code {coupon} is now redeemed. Thank you!", "Sorry, {coupon} is not a valid code or was already redeemed."),),
        ),
        (
            "Redeem",
            "SUMMER-02 thanks",
            (RedeemCoupon("SUMMER-02", "Code {coupon} is now redeemed. Thank you!", "Sorry, {coupon} is not a valid code or was already redeemed."),),
        ),
        ("DEAL", "REDEEM", (Reply("Please send {command} followed by the code.", {"command": "DEAL REDEEM"}),)),
        ("DEAL", "REDEEM ...", (Reply("Please send {command} followed by the code.", {"command": "DEAL REDEEM"}),)),
        ("REDEEM", "", (Reply("Please send {command} followed by the code.", {"command": "REDEEM"}),)),
    ],
)
def test_claims_and_redemptions(keyword: str, args: str, actions: tuple[object, ...]) -> None:
    result = CouponModule().handle(context(settings()), mo(args, keyword=keyword))
    assert result.actions == actions


def test_sheet_texts_and_a_missing_placeholder() -> None:
    """A response without {coupon} still gives the subscriber the code."""
    info = campaign(response="Enjoy!", already="Again: {coupon}", exhausted="None left", redeemed="ok", unknown_code="bad")
    module = CouponModule()
    claim = module.handle(context(settings(), info=info), mo()).actions[1]
    assert claim == ClaimCoupon(reply="Enjoy! {coupon}", already="Again: {coupon}", exhausted="None left")
    redeem = module.handle(context(settings(redeem_keyword="USE"), info=info), mo("use X1")).actions[0]
    assert redeem == RedeemCoupon("X1", "ok", "bad")


def test_generated_pool_is_deterministic_unique_and_unambiguous() -> None:
    module = CouponModule()
    chosen = settings(codes=(), generate=500, code_length=6, code_prefix="dl", code_seed="secret")
    pool = module.pool(chosen, "summer")
    assert pool == module.pool(chosen, "summer")
    assert len(pool) == len(set(pool)) == 500
    assert all(code.startswith("DL") and len(code) == 8 and set(code[2:]) <= set(ALPHABET) for code in pool)
    assert not set("".join(code[2:] for code in pool)) & set("0O1I")


def test_generated_pool_depends_on_name_and_seed_and_grows_stably() -> None:
    module = CouponModule()
    base = settings(codes=(), generate=50)
    pool = module.pool(base, "summer")
    assert module.pool(base, "winter") != pool
    assert module.pool(settings(codes=(), generate=50, code_seed="s"), "summer") != pool
    assert module.pool(settings(codes=(), generate=80), "summer")[:50] == pool


def test_listed_codes_are_the_pool_and_a_file_is_the_engines() -> None:
    module = CouponModule()
    assert module.pool(settings(), "x") == ("SUMMER-01", "SUMMER-02")
    assert module.pool(settings(codes=(), codes_file="codes.txt"), "x") == ()


def test_summarise() -> None:
    assert CouponModule().summarise(settings(), [Total("claim", "coupon", 7, 7.0)]) == [("Claim requests", "7")]
    assert CouponModule().summarise(settings(), []) == [("Claim requests", "0")]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"codes": ()}, ValueError, "exactly one source"),
        ({"generate": 10}, ValueError, "found codes and generate"),
        ({"codes_file": "c.txt"}, ValueError, "found codes and codes_file"),
        ({"codes": (), "codes_file": " "}, ValueError, "codes_file"),
        ({"codes": ("A1", "a1")}, ValueError, "duplicate code"),
        ({"codes": ("has space",)}, ValueError, "not a code"),
        ({"codes": ("-x",)}, ValueError, "not a code"),
        ({"codes": ["A1"]}, TypeError, "codes"),
        ({"codes": (), "generate": -1}, ValueError, "generate"),
        ({"codes": (), "generate": 10, "code_length": 3}, ValueError, "code_length"),
        ({"codes": (), "generate": 1_000_000, "code_length": 4}, ValueError, "too few"),
        ({"codes": (), "generate": 10, "code_prefix": "A-"}, ValueError, "code_prefix"),
        ({"codes": (), "generate": 10, "code_prefix": "A" * 40, "code_length": 32}, ValueError, "exceed 64"),
        ({"redeem_keyword": "RE DEEM"}, ValueError, "single word"),
        ({"redeem_keyword": ""}, ValueError, "redeem_keyword"),
    ],
)
def test_invalid_settings(overrides: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        settings(**overrides)
