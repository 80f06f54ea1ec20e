"""Answer matching and the shared settings checks: tolerant of what phones send, strict on sheets."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from modules._common import (
    check_mapping,
    check_options,
    fold,
    format_options,
    key,
    label_range,
    match_option,
    totals_of,
    words,
)
from modules.api import Total

OPTIONS = ("Paris", "Lyon", "Saint-Étienne")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Paris", 0),
        ("paris", 0),
        ("PARIS!", 0),
        ("  paris. ", 0),
        ("1", 0),
        ("1.", 0),
        ("(1)", 0),
        ("a", 0),
        ("A)", 0),
        ("b", 1),
        ("2", 1),
        ("b) Lyon", 1),
        ("2 - lyon", 1),
        ("saint etienne", 2),
        ("SAINT-ETIENNE", 2),
        ("Saint Étienne!!", 2),
        ("sainteTienne", 2),
        ("c", 2),
        ("３", 2),
        ("4", None),
        ("d", None),
        ("0", None),
        ("b) Paris", None),
        ("Marseille", None),
        ("", None),
        ("?!", None),
        ("1 2", None),
    ],
)
def test_match_option_table(answer: str, expected: int | None) -> None:
    assert match_option(answer, OPTIONS) == expected


def test_option_text_wins_over_nothing_but_labels_are_per_count() -> None:
    """A number beyond the options is no label, so an option may read as such a number."""
    assert match_option("8", ("6", "8", "10")) == 1
    assert match_option("3", ("6", "8", "10")) == 2
    assert match_option("10", ("6", "8", "10")) == 2


@pytest.mark.parametrize(
    ("text", "folded_words"),
    [
        ("Ψήφος Ελλάδα", ("ψηφοσ", "ελλαδα")),
        ("Café-Crème!", ("cafe", "creme")),
        ("ＶＯＴＥ  gre", ("vote", "gre")),
        ("VO\u200bTE", ("vote",)),
        ("Straße", ("strasse",)),
        ("...", ()),
        ("", ()),
    ],
)
def test_words_table(text: str, folded_words: tuple[str, ...]) -> None:
    assert words(text) == folded_words


def test_format_and_range() -> None:
    assert format_options(("Red", "Blue"), "numbers") == "1) Red 2) Blue"
    assert format_options(("Red", "Blue"), "letters") == "A) Red B) Blue"
    assert label_range(3, "numbers") == "1-3"
    assert label_range(9, "letters") == "A-I"


def test_totals_of_adds_rows_of_one_key() -> None:
    totals = [Total("vote", "A", 2, 2.0), Total("vote", "A", 1, 1.0), Total("other", "A", 5, 5.0)]
    assert totals_of(totals, "vote")["A"] == Total("vote", "A", 3, 3.0)
    assert set(totals_of(totals, "vote")) == {"A"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("Only",), "between 2 and 9"),
        (tuple(f"o{i}" for i in range(10)), "between 2 and 9"),
        (("Yes", "YES!"), "duplicate"),
        (("Yes", " "), "letters or digits"),
        (("B", "A"), "reads as the label"),
        (("2", "1"), "reads as the label"),
        (("x" * 65, "y"), "at most 64"),
        ((), "must not be empty"),
    ],
)
def test_check_options_rejects(options: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_options("options", options)


def test_check_options_accepts_labels_in_place() -> None:
    """Options that read as their own label ("A", "B"; "1", "2") are not ambiguous."""
    check_options("options", ("A", "B"))
    check_options("options", ("1", "2", "3"))


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, "must not be empty"),
        ({"GRE": "Greece", "gre": "Grenada"}, "names both"),
        ({"GRE": "Greece", "GREECE": "Hellas"}, "names both"),
        ({"TWO WORDS": "x"}, "single word"),
        ({"A": ""}, "letters or digits"),
    ],
)
def test_check_mapping_rejects(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_mapping("choices", mapping, what="choice")


# --- property tests ----------------------------------------------------------------------------

_ACCENTS = ("\u0301", "\u0300", "\u0308", "\u0302", "\u0327")
_PUNCTUATION = ".,!?;:-'\"()"

option_texts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=20).filter(lambda t: t.strip())


@st.composite
def decorated(draw: st.DrawFn, text: str) -> str:
    """``text`` as a phone might send it: random case, accents, punctuation and spacing."""
    out = []
    for char in text:
        if char == " ":
            out.append(draw(st.sampled_from([" ", "  ", "-", " . "])))
            continue
        char = char.upper() if draw(st.booleans()) else char
        if draw(st.booleans()):
            char += draw(st.sampled_from(_ACCENTS))
        out.append(char)
    before = draw(st.text(alphabet=_PUNCTUATION + " ", max_size=3))
    after = draw(st.text(alphabet=_PUNCTUATION + " ", max_size=3))
    return unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), before + "".join(out) + after)


@st.composite
def option_lists(draw: st.DrawFn) -> tuple[str, ...]:
    options = draw(st.lists(option_texts, min_size=2, max_size=9, unique_by=key))
    result = tuple(options)
    try:
        check_options("options", result)
    except ValueError:
        assume(False)
    return result


@given(data=st.data(), options=option_lists())
def test_any_spelling_of_an_option_text_matches_it(data: st.DataObject, options: tuple[str, ...]) -> None:
    index = data.draw(st.integers(0, len(options) - 1))
    answer = data.draw(decorated(options[index]))
    assert match_option(answer, options) == index


@given(data=st.data(), options=option_lists())
def test_any_label_of_an_option_matches_it(data: st.DataObject, options: tuple[str, ...]) -> None:
    index = data.draw(st.integers(0, len(options) - 1))
    label = data.draw(st.sampled_from([str(index + 1), "abcdefghi"[index], "ABCDEFGHI"[index]]))
    decoration = data.draw(st.sampled_from(["{}", "{}.", "({})", "{})", " {} ", "{}) " + options[index]]))
    answer = decoration.format(label)
    # An option whose own text reads like this answer would rightly win; that is another test.
    assume(all(key(option) != key(answer) for option in options))
    assert match_option(answer, options) == index


@given(text=st.text(max_size=30))
def test_fold_is_idempotent_and_key_is_separator_free(text: str) -> None:
    assert fold(fold(text)) == fold(text)
    assert words(" ".join(words(text))) == words(text)
    assert key(text) == key(key(text))


@given(data=st.data(), text=option_texts)
def test_decorated_text_has_the_same_key(data: st.DataObject, text: str) -> None:
    assert key(data.draw(decorated(text))) == key(text)
