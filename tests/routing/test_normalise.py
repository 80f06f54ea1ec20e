"""Folding keywords and splitting an MO's first word off, tolerant of what phones send."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.normalise import fold, is_single_word, split_first_word
from tests.routing.strategies import (
    SEPARATOR_PUNCTUATION,
    base_keywords,
    decorations,
    spellings,
)


@pytest.mark.parametrize(
    ("spelling", "folded"),
    [
        ("Ψήφος", "ψηφοσ"),
        ("ΨΗΦΟΣ", "ψηφοσ"),
        ("ψηφος", "ψηφοσ"),
        ("ψηφοσ", "ψηφοσ"),
        ("ΨΉΦΟΣ", "ψηφοσ"),
        ("Café", "cafe"),
        ("CAFE", "cafe"),
        ("cafe\u0301", "cafe"),
        ("ΐ", "ι"),
        ("ᾳ", "α"),
        ("Straße", "strasse"),
        ("ＶＯＴＥ", "vote"),
        ("VO\u200bTE", "vote"),
        ("vote1", "vote1"),
        ("", ""),
    ],
)
def test_fold_table(spelling: str, folded: str) -> None:
    """Each spelling folds to the expected comparison form."""
    assert fold(spelling) == folded


def test_fold_greek_final_sigma_anywhere() -> None:
    """A final sigma folds to a plain sigma, at the end of a word or inside a text."""
    assert fold("ς") == "σ"
    assert fold("ΟΔΟΣ") == fold("οδος") == fold("οδοσ") == "οδοσ"


def test_fold_keeps_indic_vowel_signs() -> None:
    """Marks that are part of a script's spelling are not dropped like accents."""
    assert fold("कि") != fold("क")


@given(st.text())
def test_fold_is_idempotent(text: str) -> None:
    """Folding a folded string changes nothing, for any string."""
    assert fold(fold(text)) == fold(text)


@given(base_keywords().flatmap(lambda base: st.tuples(st.just(base), spellings(base))))
def test_fold_ignores_case_accents_and_final_sigma(pair: tuple[str, str]) -> None:
    """Any case, any accents (combining or precomposed) and a final sigma fold to the base."""
    base, spelling = pair
    assert fold(spelling) == base


@given(base_keywords(), base_keywords())
def test_fold_tells_different_words_apart(first: str, second: str) -> None:
    """Two different unaccented lowercase words stay different once folded."""
    assert (fold(first) == fold(second)) == (first == second)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  #Vote!!  gre ", ("Vote", "gre")),
        ("vote,gre", ("vote", "gre")),
        ("VOTE:GRE", ("VOTE", "GRE")),
        ("vote", ("vote", "")),
        ("vote!!!", ("vote", "")),
        ("vote   a \n\t b  ", ("vote", "a b")),
        ("vote a,b. c!", ("vote", "a,b. c!")),
        ('vote "Song  title"', ("vote", '"Song title"')),
        ("vote (3)", ("vote", "(3)")),
        ("vote +3", ("vote", "+3")),
        ("vote - gre", ("vote", "gre")),
        ("👍 vote 👍", ("vote", "👍")),
        ("ψήφος: ΕΛΛΑΔΑ!", ("ψήφος", "ΕΛΛΑΔΑ!")),
        ("cafe\u0301 au lait", ("cafe\u0301", "au lait")),
        ("vote\u200b gre", ("vote", "gre")),
        ("E-VOTE", ("E", "VOTE")),
        ("2024 final", ("2024", "final")),
        ("", ("", "")),
        ("   ", ("", "")),
        ("!?!.,", ("", "")),
        ("👍🙂", ("", "")),
    ],
)
def test_split_first_word_table(text: str, expected: tuple[str, str]) -> None:
    """Each text splits into the expected first word and rest."""
    assert split_first_word(text) == expected


separators = st.text(alphabet=SEPARATOR_PUNCTUATION + " \t\n", min_size=1, max_size=5)


@given(
    lead=decorations(),
    word=base_keywords().flatmap(spellings),
    separator=separators,
    args=st.lists(st.text(alphabet="abcxyz019,.'αβ", min_size=1, max_size=5), max_size=4),
    gaps=st.lists(st.sampled_from([" ", "  ", "\t", "\n", " \n "]), min_size=4, max_size=4),
    tail=st.text(alphabet=" \t\n", max_size=3),
)
def test_split_tolerates_surroundings(
    lead: str, word: str, separator: str, args: list[str], gaps: list[str], tail: str
) -> None:
    """Whatever surrounds the keyword and separates it, the word and the rest come out clean."""
    # A rest that starts with punctuation would be eaten by the separator: start it with a letter.
    args = ["a" + arg for arg in args]
    rest = "".join(arg + gap for arg, gap in zip(args, gaps)).rstrip()
    text = lead + word + (separator + rest if rest else separator) + tail
    assert split_first_word(text) == (word, " ".join(args))


@given(st.text())
def test_split_is_total_and_clean(text: str) -> None:
    """Any text gives a word that is one word of the text and a rest without stray whitespace."""
    word, rest = split_first_word(text)
    assert word in text
    assert rest == " ".join(rest.split())
    if word:
        assert word[0].isalnum()
        assert split_first_word(word) == (word, "")
    else:
        assert rest == ""
        assert not any(char.isalnum() for char in text)


def reference_split(text: str) -> tuple[str, str]:
    """The documented rule of split_first_word, one character at a time, without shortcuts."""

    def continues(char: str) -> bool:
        return char.isalnum() or unicodedata.category(char)[0] == "M" or unicodedata.category(char) == "Cf"

    def separates(char: str) -> bool:
        category = unicodedata.category(char)
        if char.isspace() or category == "Cf":
            return True
        return category[0] == "P" and category not in ("Ps", "Pi", "Pf") and char not in "\"'"

    start = 0
    while start < len(text) and not text[start].isalnum():
        start += 1
    if start == len(text):
        return "", ""
    end = start + 1
    while end < len(text) and continues(text[end]):
        end += 1
    while end > start + 1 and unicodedata.category(text[end - 1]) == "Cf":
        end -= 1
    rest = end
    while rest < len(text) and separates(text[rest]):
        rest += 1
    return text[start:end], " ".join(text[rest:].split())


@given(st.one_of(st.text(), st.text(alphabet=st.characters(codec="ascii"))))
def test_split_agrees_with_reference_rule(text: str) -> None:
    """The regex shortcuts (ASCII and letter runs) cut every text as the plain rule does."""
    assert split_first_word(text) == reference_split(text)


@pytest.mark.parametrize("text", ["vote,gre", "  #Vote!!  gre ", "a\x1cb", "x'y", "(vote) x", "\x7fvote"])
def test_split_reference_examples(text: str) -> None:
    """The reference rule and the implementation agree on hand-picked ASCII corners."""
    assert split_first_word(text) == reference_split(text)


def test_split_surrogates_and_controls() -> None:
    """Lone surrogates and control characters neither raise nor join the word."""
    assert split_first_word("\ud800vote\udfff x") == ("vote", "\udfff x")
    assert split_first_word("\x00vote\x00x") == ("vote", "\x00x")


@pytest.mark.parametrize(
    ("word", "single"),
    [("VOTE", True), ("Ψήφος", True), ("vote2", True), ("", False), (" VOTE", False),
     ("VOTE NOW", False), ("E-VOTE", False), ("VOTE!", False)],
)
def test_is_single_word(word: str, single: bool) -> None:
    """Only a non-empty run of letters and digits with nothing around it is a single word."""
    assert is_single_word(word) is single


def test_nfc_and_nfd_spellings_split_alike() -> None:
    """A decomposed accent stays inside the word, so NFC and NFD texts give the same word."""
    nfc = unicodedata.normalize("NFC", "Ψήφος ναι")
    nfd = unicodedata.normalize("NFD", "Ψήφος ναι")
    assert fold(split_first_word(nfc)[0]) == fold(split_first_word(nfd)[0]) == "ψηφοσ"
    assert split_first_word(nfd)[1] == "ναι"
