"""Hypothesis strategies for routing: keywords and the ways subscribers misspell them.

A *base* keyword is lowercase Latin or Greek letters without accents (and without the final
sigma), which is exactly its folded form. :func:`spellings` draws, for a base keyword, a
spelling a subscriber might type: each letter in random case, some with accents added as
combining marks, some of those precomposed (NFC), and a Greek sigma at the end written as
the final form.
"""

from __future__ import annotations

import string
import unicodedata

from hypothesis import strategies as st

__all__ = [
    "ACCENTS",
    "GREEK",
    "LATIN",
    "SEPARATOR_PUNCTUATION",
    "base_keywords",
    "campaign_rules",
    "decorations",
    "spellings",
]

LATIN = string.ascii_lowercase
#: The Greek lowercase letters, without the final sigma.
GREEK = "αβγδεζηθικλμνξοπρστυφχψω"

#: Combining accents a phone keyboard may add: acute (also the Greek tonos), grave,
#: diaeresis (also the dialytika), circumflex, tilde, cedilla, caron, ring, macron.
ACCENTS = "\u0301\u0300\u0308\u0302\u0303\u0327\u030c\u030a\u0304"

#: Punctuation that separates a keyword from its arguments.
SEPARATOR_PUNCTUATION = "!?.,:;-#*/&@"

#: What may surround a message: whitespace, punctuation, symbols and emoji.
DECORATION = " \t\n#!?.,:;-*\"'()[]+=~👍🙂€«»"


def base_keywords(min_size: int = 1, max_size: int = 10) -> st.SearchStrategy[str]:
    """Folded keywords: lowercase letters of one script, Latin or Greek."""
    latin = st.text(alphabet=LATIN, min_size=min_size, max_size=max_size)
    greek = st.text(alphabet=GREEK, min_size=min_size, max_size=max_size)
    return st.one_of(latin, greek)


@st.composite
def spellings(draw: st.DrawFn, base: str) -> str:
    """A spelling of ``base`` in random case and accents that folds back to ``base``."""
    letters = []
    for index, letter in enumerate(base):
        if letter == "σ" and index == len(base) - 1 and draw(st.booleans()):
            letter = "ς"
        if draw(st.booleans()):
            letter = letter.upper()
        accents = draw(st.text(alphabet=ACCENTS, max_size=2))
        letters.append(letter + accents)
    typed = "".join(letters)
    form = draw(st.sampled_from(("NFC", "NFD", "none")))
    return typed if form == "none" else unicodedata.normalize(form, typed)


def decorations(min_size: int = 0) -> st.SearchStrategy[str]:
    """Whitespace, punctuation, symbols and emoji with no letter or digit."""
    return st.text(alphabet=DECORATION, min_size=min_size, max_size=6)


@st.composite
def campaign_rules(draw: st.DrawFn, count: int = 6) -> list[dict[str, object]]:
    """Keyword arguments for up to ``count`` CampaignRules on two short codes.

    The keywords come from a small pool so that rules collide often; windows are small
    integer intervals (or open-ended) so that they overlap often too.
    """
    pool = ("vote", "quiz", "win", "ψηφοσ", "cafe")
    rules: list[dict[str, object]] = []
    for index in range(draw(st.integers(min_value=0, max_value=count))):
        keywords = draw(st.lists(st.sampled_from(pool), unique=True, max_size=2))
        starts = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=8)))
        length = draw(st.integers(min_value=1, max_value=6))
        ends = draw(st.one_of(st.none(), st.just((starts or 0) + length)))
        rules.append(
            {
                "campaign": f"c{index}",
                "short_code": draw(st.sampled_from(("4160", "5000"))),
                "keywords": tuple(keywords),
                "starts": starts,
                "ends": ends,
                "running": draw(st.booleans()),
                "source": f"c{index}.toml",
            }
        )
    return rules
