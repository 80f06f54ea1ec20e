"""Coupons: each subscriber who sends the keyword gets one code from the campaign's pool.

A sheet::

    module = "coupon"
    keywords = ["DEAL"]
    response = "Your discount code: {coupon}"

    [settings]
    generate = 5000          # or: codes = ["SUMMER-01", ...]  or: codes_file = "deal.txt"
    code_length = 8
    code_prefix = "DL"
    code_seed = "a long secret string"

"DEAL" claims a code (the same one again on a second claim; the gateway keeps the pool and
who holds what). "DEAL REDEEM DLX7K2P9QA" marks a code used, for the shop's till or a partner
line; when the redeem keyword is itself one of the campaign's keywords, "REDEEM DLX7K2P9QA"
works too.

The pool comes from exactly one source:

* ``codes``: listed in the sheet;
* ``codes_file``: a text file with one code per line, which the **engine** reads when it
  loads the sheet (this module never opens files); relative paths are the engine's to
  resolve;
* ``generate``: that many codes made by :meth:`CouponModule.pool`, deterministically from
  ``code_seed``, the campaign's name and the code's position, so a reload or a second node
  makes the same codes and raising ``generate`` later only adds new ones. The codes use an
  alphabet without look-alike characters (no 0, O, 1 or I). **Without a** ``code_seed``
  **anyone who knows the campaign's name can compute its codes**; a sheet whose codes are
  worth anything sets a secret seed.

Settings:
    ``codes`` (codes of letters and digits with inner "-" or "_", at most 64 characters,
    distinct ignoring case); ``codes_file``; ``generate`` (0 to 1,000,000); ``code_length``
    (4 to 32, default 8); ``code_prefix`` (letters and digits, upper-cased; prefix and
    code at most 64 characters); ``code_seed`` (default ""); ``redeem_keyword`` (one word,
    default "REDEEM"). ``code_length`` must leave room for 100 times more codes than ``generate``,
    so codes stay hard to guess.

Texts (``{coupon}`` is the code in each):
    ``response`` — a new code; default "Your code: {coupon}";
    ``already`` — a second claim; default "You already have a code: {coupon}";
    ``exhausted`` — the pool is empty; default "Sorry, all the codes have been given out.";
    ``redeemed`` — default "Code {coupon} is now redeemed. Thank you!";
    ``unknown_code`` — default "Sorry, {coupon} is not a valid code or was already redeemed.";
    ``redeem_usage`` — the redeem keyword without a code; default "Please send {command}
    followed by the code." (``{command}``: what to send, e.g. "DEAL REDEEM").
    ``response`` and ``already`` get " {coupon}" appended when a sheet's text lacks it, so a
    subscriber always receives the code.

State: none (the gateway's coupon pool records who holds which code).

Records: ``Record("claim", "coupon")`` per claim request (first or repeated; how many codes
were given out is the pool's to tell).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Sequence

import attrs

from modules._common import (
    MAX_KEY_LENGTH,
    check_text,
    in_range,
    key,
    module_result,
    totals_of,
    validator,
    words,
)
from modules.api import ClaimCoupon, Message, ModuleContext, ModuleResult, Record, RedeemCoupon, Reply, Total

__all__ = ["ALPHABET", "CouponModule", "CouponSettings"]

#: The characters of generated codes: capitals and digits without 0, O, 1 and I.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

RESPONSE = "Your code: {coupon}"
ALREADY = "You already have a code: {coupon}"
EXHAUSTED = "Sorry, all the codes have been given out."
REDEEMED = "Code {coupon} is now redeemed. Thank you!"
UNKNOWN_CODE = "Sorry, {coupon} is not a valid code or was already redeemed."
REDEEM_USAGE = "Please send {command} followed by the code."

_CODE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")
_PREFIX = re.compile(r"[A-Za-z0-9]*")
# What may surround a code a subscriber types: "REDEEM: ABC123." or "REDEEM (ABC123)".
_EDGES = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def _check_codes(name: str, value: object) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"{name}: expected a tuple, got {type(value).__name__}")
    seen: set[str] = set()
    for code in value:
        if not isinstance(code, str):
            raise TypeError(f"{name}: expected strings, got {type(code).__name__}")
        if not _CODE.fullmatch(code) or len(code) > MAX_KEY_LENGTH:
            raise ValueError(
                f"{name}: {code!r} is not a code (letters and digits, '-' or '_' inside, at most {MAX_KEY_LENGTH})"
            )
        if code.upper() in seen:
            raise ValueError(f"{name}: duplicate code {code!r} (codes compare ignoring case)")
        seen.add(code.upper())


def _check_file(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip() or "\x00" in value):
        raise ValueError(f"{name}: must be a file path, got {value!r}")


def _check_prefix(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if not _PREFIX.fullmatch(value):
        raise ValueError(f"{name}: only letters and digits, got {value!r}")


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")


def _check_word(name: str, value: object) -> None:
    check_text(name, value, max_length=MAX_KEY_LENGTH)
    assert isinstance(value, str)
    if len(words(value)) != 1 or len(value.split()) != 1:
        raise ValueError(f"{name}: must be a single word, got {value!r}")


@attrs.frozen
class CouponSettings:
    """The ``[settings]`` of a coupon campaign (see the module's documentation)."""

    codes: tuple[str, ...] = attrs.field(default=(), validator=validator(_check_codes))
    codes_file: str | None = attrs.field(default=None, validator=validator(_check_file))
    generate: int = attrs.field(default=0, validator=validator(in_range, minimum=0, maximum=1_000_000, integer=True))
    code_length: int = attrs.field(default=8, validator=validator(in_range, minimum=4, maximum=32, integer=True))
    code_prefix: str = attrs.field(default="", validator=validator(_check_prefix))
    code_seed: str = attrs.field(default="", validator=validator(_check_str))
    redeem_keyword: str = attrs.field(default="REDEEM", validator=validator(_check_word))

    def __attrs_post_init__(self) -> None:
        sources = [name for name, given in (("codes", bool(self.codes)), ("codes_file", self.codes_file is not None),
                                             ("generate", self.generate > 0)) if given]
        if len(sources) != 1:
            found = " and ".join(sources) if sources else "none"
            raise ValueError(f"give exactly one source of codes: codes, codes_file or generate (found {found})")
        if len(self.code_prefix) + self.code_length > MAX_KEY_LENGTH:
            raise ValueError(f"code_prefix: with code_length {self.code_length}, codes would exceed {MAX_KEY_LENGTH} characters")
        if self.generate and len(ALPHABET) ** self.code_length < 100 * self.generate:
            raise ValueError(f"code_length: {self.code_length} characters are too few for {self.generate} hard-to-guess codes")


def _generated(settings: CouponSettings, campaign_name: str) -> tuple[str, ...]:
    seed = settings.code_seed.encode()
    codes: dict[str, None] = {}
    counter = 0
    while len(codes) < settings.generate:
        digest = hmac.new(seed, f"{campaign_name}\x00{counter}".encode(), hashlib.sha256).digest()
        counter += 1
        number = int.from_bytes(digest, "big")
        chars = []
        for _ in range(settings.code_length):
            number, digit = divmod(number, len(ALPHABET))
            chars.append(ALPHABET[digit])
        # A repeat (rare by the length check) is skipped, so every position keeps its code.
        codes.setdefault(settings.code_prefix.upper() + "".join(chars), None)
    return tuple(codes)


def _with_coupon(template: str) -> str:
    return template if "{coupon}" in template else f"{template} {{coupon}}"


class CouponModule:
    """Hand out one code per subscriber from the campaign's pool, and redeem codes."""

    Settings = CouponSettings

    def pool(self, settings: CouponSettings, campaign_name: str) -> tuple[str, ...]:
        """The codes the engine puts in the campaign's pool.

        Args:
            settings: the campaign's settings.
            campaign_name: the campaign's name (part of every generated code's derivation).

        Returns:
            ``settings.codes``; or ``generate`` codes, the same for the same seed, name and
            settings, each position's code unchanged when ``generate`` grows; or ``()`` for
            ``codes_file``, which the engine reads itself.
        """
        if settings.generate:
            return _generated(settings, campaign_name)
        return settings.codes

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Claim a code, or redeem one.

        Args:
            ctx: the campaign and its :class:`CouponSettings`.
            message: the keyword (a claim), "<keyword> <redeem keyword> <code>", or the
                redeem keyword itself as the campaign keyword followed by the code.

        Returns:
            A :class:`ClaimCoupon` with its claim record, a :class:`RedeemCoupon`, or the
            ``redeem_usage`` reply.
        """
        settings: CouponSettings = ctx.settings
        campaign = ctx.campaign
        redeem = key(settings.redeem_keyword)
        given = message.words
        if message.keyword and key(message.keyword) == redeem:
            command, code = message.keyword, given[0] if given else ""
        elif given and key(given[0]) == redeem:
            keyword = message.keyword or (campaign.keywords[0] if campaign.keywords else "")
            command, code = f"{keyword} {settings.redeem_keyword}".strip(), given[1] if len(given) > 1 else ""
        else:
            claim = ClaimCoupon(
                reply=_with_coupon(campaign.response or RESPONSE),
                already=_with_coupon(campaign.text("already", ALREADY)),
                exhausted=campaign.text("exhausted", EXHAUSTED),
            )
            return module_result([Record("claim", "coupon"), claim])
        code = _EDGES.sub("", code)
        if not code:
            return module_result([Reply(campaign.text("redeem_usage", REDEEM_USAGE), {"command": command})])
        return module_result(
            [RedeemCoupon(code, campaign.text("redeemed", REDEEMED), campaign.text("unknown_code", UNKNOWN_CODE))]
        )

    def summarise(self, settings: CouponSettings, totals: Sequence[Total]) -> list[tuple[str, str]]:
        """How many claim requests the campaign had (codes given and redeemed are the pool's report).

        Returns:
            ``[("Claim requests", "120")]``.
        """
        claims = totals_of(totals, "claim").get("coupon")
        return [("Claim requests", str(claims.count if claims else 0))]
