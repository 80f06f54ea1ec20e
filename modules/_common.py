"""What the built-in modules share: comparing what subscribers type, option lists, checks.

Subscribers answer on phone keyboards: in any case, with or without accents, with a full
stop or an exclamation mark, "b)" for the second option or the option's text itself. The
functions here absorb that so each module compares plain strings:

* :func:`words` cuts a text into folded words (case and accents removed, punctuation and
  symbols treated as separators);
* :func:`key` is the *comparison form* of a whole answer: its folded words run together, so
  "United-Kingdom", "united kingdom" and "UNITED KINGDOM!" are one key;
* :func:`match_option` finds which of a question's options an answer names, by its number
  ("2"), its letter ("B", "b)"), its text ("Paris") or both ("B) Paris").

Option lists are written "1) Red 2) Blue" or "A) Red B) Blue" (:func:`format_options`);
both numbers and letters are always accepted, whichever the sheet shows. The settings
checks raise ``ValueError`` with the attribute's name first (``"choices: ..."``), which is
how the gateway reports a sheet's bad value under its key.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from modules.api import Action, CampaignInfo, Message, ModuleResult, Total

__all__ = [
    "LABEL_STYLES",
    "MAX_KEY_LENGTH",
    "MAX_OPTIONS",
    "MAX_QUESTIONS",
    "QUESTION",
    "check_bool",
    "check_items",
    "check_labels",
    "check_mapping",
    "check_options",
    "check_text",
    "check_texts",
    "current_question",
    "fold",
    "format_options",
    "in_range",
    "key",
    "keyword_of",
    "label_range",
    "match_option",
    "module_result",
    "option_label",
    "percent",
    "question_values",
    "totals_of",
    "validator",
    "words",
]

#: The most options a question may have: one digit, one letter.
MAX_OPTIONS = 9
#: The gateway stores a record's key in at most this many characters.
MAX_KEY_LENGTH = 64
#: How options are labelled in a question: "1) … 2) …" or "A) … B) …".
LABEL_STYLES = ("numbers", "letters")
_LETTERS = "abcdefghi"

# The script-neutral combining diacritics (accents of Latin, Greek and Cyrillic once a text
# is decomposed). Marks that belong to a script's spelling (Indic vowel signs, ...) lie
# outside these blocks and are kept, so folding never merges two different words there.
_DIACRITIC_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))


def _is_diacritic(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _DIACRITIC_RANGES)


def _fold_once(text: str) -> str:
    # Accents go before casefolding: the Greek ypogegrammeni casefolds to a full iota, so
    # folding first would turn "ᾳ" into "αι" instead of "α".
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not _is_diacritic(c) and unicodedata.category(c) != "Cf")
    return kept.casefold().replace("ς", "σ")


@functools.lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """``text`` without case, accents or invisible format characters (punctuation is kept).

    Args:
        text: any text.

    Returns:
        The folded text; ``fold(fold(t)) == fold(t)``.
    """
    # Casefolding and compatibility decomposition do not commute for every code point, so
    # the steps repeat until nothing changes; the bound keeps the function total.
    current = text
    for _ in range(6):
        folded = _fold_once(current)
        if folded == current:
            break
        current = folded
    return current


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LNM"


def words(text: str) -> tuple[str, ...]:
    """The folded words of ``text``: runs of letters, digits and marks; all else separates.

    Args:
        text: any text.

    Returns:
        The words in order, each folded with :func:`fold`.
    """
    out: list[str] = []
    current: list[str] = []
    for char in fold(text):
        if _is_word_char(char):
            current.append(char)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return tuple(out)


# Modules compare every answer with their settings' choices, codes and keywords, the same
# few strings for every MO: remembering their forms saves folding them again each time.
@functools.lru_cache(maxsize=4096)
def key(text: str) -> str:
    """The comparison form of a whole answer: its folded words without separators.

    Args:
        text: any text.

    Returns:
        ``""`` when ``text`` has no letters or digits.
    """
    return "".join(words(text))


def option_label(index: int, style: str) -> str:
    """The label shown for option ``index`` (0-based): "1", "2", … or "A", "B", …."""
    return _LETTERS[index].upper() if style == "letters" else str(index + 1)


def format_options(options: Sequence[str], style: str) -> str:
    """The options as one line: ``"1) Red 2) Blue"`` or ``"A) Red B) Blue"``."""
    return " ".join(f"{option_label(i, style)}) {text}" for i, text in enumerate(options))


def label_range(count: int, style: str) -> str:
    """How to describe the valid labels of ``count`` options: ``"1-3"`` or ``"A-C"``."""
    return f"{option_label(0, style)}-{option_label(count - 1, style)}"


def _label_index(word: str, count: int) -> int | None:
    """The option a single folded word names by number or letter, if any."""
    if word.isdecimal():
        number = int(word)
        return number - 1 if 1 <= number <= count else None
    if len(word) == 1 and word in _LETTERS[:count]:
        return _LETTERS.index(word)
    return None


def match_option(answer: str, options: Sequence[str]) -> int | None:
    """Which option ``answer`` names, case, accent and punctuation aside.

    An answer names an option by its text ("paris!"), its number ("2", "2."), its letter
    ("b", "(B)"), or its label followed by its text ("b) Paris").

    Args:
        answer: the subscriber's text.
        options: the question's options, in order.

    Returns:
        The option's 0-based index, or ``None`` when the answer names none.
    """
    answer_words = words(answer)
    if not answer_words:
        return None
    wanted = "".join(answer_words)
    for index, option in enumerate(options):
        if key(option) == wanted:
            return index
    labelled = _label_index(answer_words[0], len(options))
    if labelled is None:
        return None
    if len(answer_words) == 1 or "".join(answer_words[1:]) == key(options[labelled]):
        return labelled
    return None


#: The most questions a poll or quiz may have.
MAX_QUESTIONS = 50
#: The default text of a question; the values are those of :func:`question_values`.
QUESTION = "Q{number}/{count}: {question} {options}"


def question_values(text: str, options: Sequence[str], number: int, count: int, style: str) -> dict[str, object]:
    """The values a question's text is rendered with.

    Returns:
        ``number`` (1-based) and ``count`` of questions, ``question`` (its text),
        ``options`` ("1) Red 2) Blue") and ``range`` ("1-2").
    """
    return {
        "number": number,
        "count": count,
        "question": text,
        "options": format_options(options, style),
        "range": label_range(len(options), style),
    }


def current_question(state: Mapping[str, Any], count: int) -> int | None:
    """The index of the question a subscriber's state (``{"q": index}``) awaits an answer to."""
    index = state.get("q")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count:
        return index
    return None


def check_text(name: str, value: object, *, max_length: int | None = None) -> None:
    """Raise unless ``value`` is a string with letters or digits (and not too long).

    Raises:
        TypeError: ``value`` is not a string.
        ValueError: it is blank, or longer than ``max_length``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if not key(value):
        raise ValueError(f"{name}: must contain letters or digits, got {value!r}")
    if max_length is not None and len(value) > max_length:
        raise ValueError(f"{name}: at most {max_length} characters, got {len(value)}")


def check_texts(name: str, values: object, *, max_length: int | None = None, what: str = "value") -> None:
    """Raise unless ``values`` is a non-empty tuple of distinct texts (compared as :func:`key`).

    Raises:
        TypeError: not a tuple, or an item is not a string.
        ValueError: empty, an item is blank or too long, or two items compare equal.
    """
    if not isinstance(values, tuple):
        raise TypeError(f"{name}: expected a tuple, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{name}: must not be empty")
    seen: dict[str, str] = {}
    for item in values:
        check_text(name, item, max_length=max_length)
        folded = key(item)
        if folded in seen:
            raise ValueError(f"{name}: duplicate {what} {item!r} (same as {seen[folded]!r})")
        seen[folded] = item


def check_options(name: str, options: object) -> None:
    """Raise unless ``options`` is a valid option list for a question.

    Valid means 2 to 9 distinct, non-blank texts of at most 64 characters, where no
    option's text is the number or letter of another option (options ("B", "A") would make
    "A" ambiguous).

    Raises:
        TypeError: not a tuple of strings.
        ValueError: otherwise invalid, with the reason.
    """
    check_texts(name, options, max_length=MAX_KEY_LENGTH, what="option")
    assert isinstance(options, tuple)
    if not 2 <= len(options) <= MAX_OPTIONS:
        raise ValueError(f"{name}: between 2 and {MAX_OPTIONS} options, got {len(options)}")
    for index, option in enumerate(options):
        folded = words(option)
        named = _label_index(folded[0], len(options)) if len(folded) == 1 else None
        if named is not None and named != index:
            raise ValueError(
                f"{name}: option {option!r} reads as the label of option {named + 1}; reword or reorder the options"
            )


def check_labels(name: str, value: object) -> None:
    """Raise unless ``value`` is one of :data:`LABEL_STYLES`."""
    if value not in LABEL_STYLES:
        raise ValueError(f"{name}: must be one of {', '.join(map(repr, LABEL_STYLES))}, got {value!r}")


def check_mapping(name: str, value: object, *, what: str) -> None:
    """Raise unless ``value`` is a non-empty ``code -> description`` dict with distinct codes.

    Codes must be single words of at most 64 characters; codes and descriptions are
    compared as :func:`key`, and no code or description may equal another entry's code or
    description, so whatever a subscriber types names at most one entry.

    Raises:
        TypeError: not a dict of strings.
        ValueError: empty, blank, multi-word or clashing entries.
    """
    if not isinstance(value, dict):
        raise TypeError(f"{name}: expected a table, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name}: must not be empty")
    owner: dict[str, str] = {}
    for code, description in value.items():
        check_text(name, code, max_length=MAX_KEY_LENGTH)
        check_text(name, description, max_length=200)
        if len(words(code)) != 1:
            raise ValueError(f"{name}: {what} code {code!r} must be a single word")
        for spelling in (code, description):
            folded = key(spelling)
            if owner.get(folded, code) != code:
                raise ValueError(f"{name}: {spelling!r} names both {what} {owner[folded]!r} and {what} {code!r}")
            owner[folded] = code


def in_range(name: str, value: object, *, minimum: float, maximum: float | None = None, integer: bool = False) -> None:
    """Raise unless ``value`` is a number (an int when ``integer``; never a bool) in ``[minimum, maximum]``.

    Raises:
        TypeError: not an int (or float, unless ``integer``).
        ValueError: out of range, or not a number (NaN).
    """
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise TypeError(f"{name}: expected {'an integer' if integer else 'a number'}, got {type(value).__name__}")
    assert isinstance(value, (int, float))
    if value != value or value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"{name}: must be {bound}, got {value!r}")


def check_bool(name: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected true or false, got {type(value).__name__}")


def check_items(name: str, value: object, *, of: type, maximum: int) -> None:
    """Raise unless ``value`` is a tuple of 1 to ``maximum`` instances of ``of``.

    Raises:
        TypeError: not a tuple, or an item of another type.
        ValueError: empty or too long.
    """
    if not isinstance(value, tuple):
        raise TypeError(f"{name}: expected a tuple, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name}: must not be empty")
    if len(value) > maximum:
        raise ValueError(f"{name}: at most {maximum}, got {len(value)}")
    for item in value:
        if not isinstance(item, of):
            raise TypeError(f"{name}: expected {of.__name__} items, got {type(item).__name__}")


def validator(check: Callable[..., None], **options: Any) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator running ``check(attribute name, value, **options)``."""

    def run(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        check(attribute.name, value, **options)

    return run


def module_result(actions: Iterable[Action]) -> ModuleResult:
    """A :class:`ModuleResult` of ``actions``, in order.

    ``ModuleResult`` converts with the bare ``tuple`` type, which the attrs plugin of mypy
    types as ``Iterable[_T_co]`` and so refuses every argument; this one call says what the
    converter accepts.
    """
    return ModuleResult(tuple(actions))  # type: ignore[arg-type]


def keyword_of(campaign: CampaignInfo, message: Message) -> str:
    """The keyword to tell a subscriber to send: the one they used, else the sheet's first."""
    if message.keyword:
        return message.keyword
    return campaign.keywords[0] if campaign.keywords else ""


def totals_of(totals: Iterable[Total], kind: str) -> Mapping[str, Total]:
    """The totals of one record ``kind``, by key (several rows of a key are added up)."""
    out: dict[str, Total] = {}
    for total in totals:
        if total.kind != kind:
            continue
        seen = out.get(total.key)
        out[total.key] = (
            total if seen is None else Total(kind, total.key, seen.count + total.count, seen.sum + total.sum)
        )
    return out


def percent(part: float, whole: float) -> str:
    """``part`` of ``whole`` as ``"42.9%"`` (``"0.0%"`` of nothing)."""
    return f"{100.0 * part / whole:.1f}%" if whole else "0.0%"
