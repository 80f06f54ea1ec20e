"""How an MO's text is cut into a keyword and its arguments, and how keywords compare.

Subscribers type keywords on phone keyboards: in any case, with or without accents, with
Greek tonos or without, with a final sigma or a plain one, after a ``#`` or before a ``!``.
Two functions absorb all of that so the rest of routing compares plain strings:

* :func:`split_first_word` finds the first word of a text and the rest after it;
* :func:`fold` turns a word into its *comparison form*: two spellings a subscriber would
  call "the same word" fold to the same string.

A word is a run of letters and digits of any script, with the combining marks and the
invisible format characters (zero-width joiners, bidi marks) that sit inside it. Everything
else (whitespace, punctuation, symbols, emoji) separates words, so ``E-VOTE`` is the word
``E`` followed by ``VOTE``: keywords are single words of letters and digits.

Both functions are total over ``str``, pure, and cheap for the common case of a short ASCII
word (a fast path that skips Unicode normalisation).
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["fold", "is_single_word", "split_first_word"]

# Code point ranges of the script-neutral combining diacritics (the blocks "Combining
# Diacritical Marks", "... Extended", "... Supplement", "... for Symbols" and "Combining Half
# Marks"). These are the accents of Latin, Greek and Cyrillic once a word is decomposed
# (acute, grave, diaeresis, tonos, dialytika, breathings, cedilla, ...). Marks that belong to
# a script's spelling (Indic vowel signs and viramas, for instance) are outside these blocks
# and are kept, so folding never merges two different words of those scripts.
_DIACRITIC_RANGES = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)

# Punctuation that opens or quotes something is part of the arguments, not a separator:
# "VOTE "Song"" keeps its quotes and "VOTE (3)" its bracket.
_KEPT_PUNCTUATION_CATEGORIES = frozenset({"Ps", "Pi", "Pf"})
_KEPT_PUNCTUATION = frozenset("\"'")


def _is_diacritic(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _DIACRITIC_RANGES)


def _fold_once(text: str) -> str:
    # Accents go before casefolding: the Greek ypogegrammeni (U+0345) casefolds to a full
    # iota, so folding first would turn "ᾳ" into "αι" instead of "α".
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(
        char
        for char in decomposed
        if not _is_diacritic(char) and unicodedata.category(char) != "Cf"
    )
    return kept.casefold().replace("ς", "σ")


@functools.lru_cache(maxsize=4096)
def _fold_unicode(word: str) -> str:
    # Case folding and compatibility decomposition do not commute in general (a compatibility
    # character can decompose to a capital, a casefold can produce a decomposable character),
    # so the steps are repeated until nothing changes. With decomposition first, one pass is
    # already a fixed point for every code point of the Unicode version Python ships; the
    # loop keeps fold idempotent should a later version differ, and the bound keeps it total.
    current = word
    for _ in range(6):
        folded = _fold_once(current)
        if folded == current:
            break
        current = folded
    return current


def fold(word: str) -> str:
    """Return the comparison form of a keyword.

    The word is decomposed (Unicode NFKD, so compatibility forms such as full-width letters
    become plain ones), its accents are dropped (combining diacritics, which include the
    Greek tonos and dialytika), invisible format characters are dropped, it is casefolded,
    and a Greek final sigma becomes a plain one. "Ψήφος", "ΨΗΦΟΣ", "ψηφος" and "ψηφοσ" all
    fold to "ψηφοσ"; "Café" and "CAFE" to "cafe". ``fold(fold(w)) == fold(w)`` for every
    string.

    Args:
        word: any string; normally the first word of an MO or a keyword from a sheet.

    Returns:
        The comparison form; "" for "".
    """
    if word.isascii():
        return word.lower()
    return _fold_unicode(word)


def _continues_word(char: str) -> bool:
    if char.isalnum():
        return True
    category = unicodedata.category(char)
    return category[0] == "M" or category == "Cf"


def _separates(char: str) -> bool:
    if char.isspace():
        return True
    category = unicodedata.category(char)
    if category == "Cf":
        return True
    return (
        category[0] == "P"
        and category not in _KEPT_PUNCTUATION_CATEGORIES
        and char not in _KEPT_PUNCTUATION
    )


# The ASCII case in one regex, with the separators computed by the general rule so both
# paths cut every ASCII text the same way.
_ASCII_SEPARATORS = "".join(chr(code) for code in range(128) if _separates(chr(code)))
_ASCII_SPLIT = re.compile(
    rf"[^0-9A-Za-z]*([0-9A-Za-z]+)[{re.escape(_ASCII_SEPARATORS)}]*(.*)", re.DOTALL
)
# A run of letters and digits of any script (``\w`` without the underscore).
_ALNUM_RUN = re.compile(r"[^\W_]+")


def split_first_word(text: str) -> tuple[str, str]:
    """Split an MO's text into its first word and the rest, tolerating what phones add.

    Whatever precedes the first letter or digit is skipped (whitespace, ``#``, quotes,
    emoji). The word runs to the first character that is neither a letter, a digit, a
    combining mark nor an invisible format character. Then the separator after it is
    skipped: whitespace and punctuation, except opening brackets and quotes, which belong to
    the arguments. The rest is stripped and its runs of whitespace collapse to one space; its
    internal punctuation is kept, so a module can split it again with this function.

    ``"  #Vote!!  gre "`` gives ``("Vote", "gre")``, ``"vote,gre"`` gives
    ``("vote", "gre")``, ``"VOTE:GRE"`` gives ``("VOTE", "GRE")``.

    Args:
        text: any string.

    Returns:
        ``(word, rest)``, the word as typed (not folded); ``("", "")`` when the text holds
        no letter or digit.
    """
    if text.isascii():
        match = _ASCII_SPLIT.match(text)
        if match is None:
            return "", ""
        word, rest = match.groups()
        return word, " ".join(rest.split())
    first = _ALNUM_RUN.search(text)
    if first is None:
        return "", ""
    start, end = first.span()
    length = len(text)
    while end < length and _continues_word(text[end]):
        end += 1
    # A joiner or bidi mark at the very end of the word belongs to what follows it.
    while end > start + 1 and unicodedata.category(text[end - 1]) == "Cf":
        end -= 1
    word = text[start:end]
    rest_start = end
    while rest_start < length and _separates(text[rest_start]):
        rest_start += 1
    if rest_start == length:
        return word, ""
    return word, " ".join(text[rest_start:].split())


def is_single_word(word: str) -> bool:
    """Tell whether ``word`` is exactly one word as :func:`split_first_word` cuts them.

    Keywords in a sheet must be: a keyword with a space or a hyphen in it could never be the
    first word of an MO, so it could never match.

    Args:
        word: the keyword as written.

    Returns:
        True when ``word`` is not empty and ``split_first_word(word) == (word, "")``.
    """
    return bool(word) and split_first_word(word) == (word, "")
