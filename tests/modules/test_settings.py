"""Every module's Settings reads from a sheet's [settings] table, and refuses bad values."""

from __future__ import annotations

import tomllib
from typing import Any, Callable

import attrs
import cattrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modules.alerts import AlertsModule, AlertsSettings
from modules.api import CampaignModule
from modules.coupon import CouponModule, CouponSettings
from modules.opinion import OpinionModule, OpinionSettings
from modules.poll import PollModule, PollSettings, Question
from modules.quiz import QuizModule, QuizQuestion, QuizSettings
from modules.vote import VoteModule, VoteSettings

SHEETS: dict[type, str] = {
    VoteModule: """
        choices = { GRE = "Greece", UK = "United Kingdom" }
        votes_per_subscriber = 1
        change_of_vote = "replace"
    """,
    PollModule: """
        session_timeout = 300
        option_labels = "letters"
        [[questions]]
        text = "Do you watch?"
        options = ["Yes", "No"]
        [[questions]]
        text = "Which day?"
        options = ["Friday", "Saturday"]
    """,
    QuizModule: """
        time_limit = 30
        points = 2
        [[questions]]
        text = "Capital of France?"
        options = ["Paris", "Lyon"]
        answer = "A"
    """,
    CouponModule: """
        generate = 100
        code_length = 6
        code_prefix = "DL"
        redeem_keyword = "USE"
    """,
    OpinionModule: """
        min_length = 2
        max_length = 300
        ask = "What did you think?"
    """,
    AlertsModule: """
        topics = { NEWS = "Breaking news", SPORT = "Sport results" }
        default_topic = "NEWS"
    """,
}


@pytest.mark.parametrize("module", list(SHEETS), ids=lambda m: m.__name__)
def test_settings_structure_from_a_toml_table(module: type) -> None:
    """The sheet's table becomes the module's frozen Settings, arrays as tuples, tables as classes."""
    settings_class: type = getattr(module, "Settings")
    table = tomllib.loads("\n".join(line.strip() for line in SHEETS[module].splitlines()))
    value: object = cattrs.Converter().structure(table, settings_class)
    assert isinstance(value, settings_class)
    assert attrs.has(settings_class)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(value, attrs.fields(settings_class)[0].name, None)
    assert isinstance(module(), CampaignModule)


def test_nested_questions_become_attrs_instances() -> None:
    converter = cattrs.Converter()
    poll = converter.structure(
        {"questions": [{"text": "Q?", "options": ["Yes", "No"]}], "allow_repeat": True}, PollSettings
    )
    assert poll == PollSettings(questions=(Question("Q?", ("Yes", "No")),), allow_repeat=True)
    quiz = converter.structure({"questions": [{"text": "Q?", "options": ["a", "b"], "answer": "b"}]}, QuizSettings)
    assert quiz.questions == (QuizQuestion("Q?", ("a", "b"), "b"),) and quiz.time_limit is None
    assert quiz.questions[0].correct == 1


def test_defaults_from_a_minimal_table() -> None:
    converter = cattrs.Converter()
    assert converter.structure({"choices": {"A": "Alpha"}}, VoteSettings) == VoteSettings({"A": "Alpha"}, 1, "reject")
    assert converter.structure({}, OpinionSettings) == OpinionSettings()
    assert converter.structure({"codes": ["X1"]}, CouponSettings).redeem_keyword == "REDEEM"
    assert converter.structure({"topics": {"A": "Alpha"}}, AlertsSettings).default_topic is None


def test_structuring_runs_the_validators() -> None:
    """A bad nested value fails while the table is read, as the engine reports it."""
    with pytest.raises(cattrs.errors.ClassValidationError) as caught:
        cattrs.Converter().structure({"questions": [{"text": "Q?", "options": ["a", "b"], "answer": "z"}]}, QuizSettings)
    assert "answer: 'z' is not one of the options" in repr(caught.value.exceptions)


# --- property tests: invalid values ---------------------------------------------------------------

not_strings = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=2))
not_ints = st.one_of(st.floats(), st.booleans(), st.text(max_size=3), st.none())
not_numbers = st.one_of(st.booleans(), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=1))
code_words = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=1, max_size=6)

QUESTION = Question("Q?", ("Yes", "No"))
QUIZ_QUESTION = QuizQuestion("Q?", ("Yes", "No"), "Yes")

INVALID: list[tuple[str, Callable[[Any], object], st.SearchStrategy[Any]]] = [
    ("vote limit", lambda v: VoteSettings({"A": "a"}, votes_per_subscriber=v), st.integers(max_value=0) | not_ints),
    ("vote mode", lambda v: VoteSettings({"A": "a"}, change_of_vote=v),
     st.text(max_size=8).filter(lambda t: t not in ("reject", "replace", "allow")) | not_strings),
    ("vote choices", lambda v: VoteSettings(v), st.dictionaries(st.text(max_size=3), not_strings, min_size=1, max_size=2)
     | st.just({}) | st.lists(st.text(), max_size=2)),
    ("poll options count", lambda v: Question("Q?", tuple(f"o{i}" for i in range(v))), st.integers(0, 1) | st.integers(10, 30)),
    ("poll text", lambda v: Question(v, ("a", "b")), not_strings | st.text(alphabet=" .!?", max_size=5)),
    ("poll timeout", lambda v: PollSettings((QUESTION,), session_timeout=v),
     st.floats(max_value=0.99) | st.floats(min_value=86_400.01) | not_numbers),
    ("poll questions", lambda v: PollSettings(v), st.just(()) | st.lists(st.builds(lambda: QUESTION), max_size=2)),
    # Answers are read punctuation aside, so "-1" names option 1 as "1." does: only numbers
    # that name no option, whatever their sign, are invalid.
    (
        "quiz answer number",
        lambda v: QuizQuestion("Q?", ("Paris", "Lyon"), str(v)),
        st.integers(min_value=3) | st.just(0) | st.integers(max_value=-3),
    ),
    ("quiz answer letter", lambda v: QuizQuestion("Q?", ("Paris", "Lyon"), v), st.sampled_from("cdefghiCDEFGHI")),
    ("quiz points", lambda v: QuizSettings((QUIZ_QUESTION,), points=v), st.integers(max_value=0) | st.integers(min_value=1001) | not_ints),
    ("quiz time limit", lambda v: QuizSettings((QUIZ_QUESTION,), time_limit=v),
     st.floats(max_value=0.99) | st.floats(min_value=600.01) | not_numbers.filter(lambda x: x is not None)),
    ("coupon length", lambda v: CouponSettings(generate=1, code_length=v), st.integers(max_value=3) | st.integers(min_value=33) | not_ints),
    ("coupon sources", lambda v: CouponSettings(codes=("A1",) if v[0] else (), codes_file="f" if v[1] else None, generate=v[2]),
     st.tuples(st.booleans(), st.booleans(), st.integers(0, 5)).filter(lambda v: (v[0] + v[1] + (v[2] > 0)) != 1)),
    ("coupon codes", lambda v: CouponSettings(codes=(v,)), st.text(alphabet=" -_.!", max_size=4) | not_strings),
    ("opinion lengths", lambda v: OpinionSettings(min_length=v[0], max_length=v[1]),
     st.tuples(st.integers(2, 5000), st.integers(1, 5000)).filter(lambda v: v[0] > v[1])),
    ("alerts default", lambda v: AlertsSettings({"NEWS": "News"}, default_topic=v), code_words.filter(lambda t: t != "NEWS")),
    ("alerts reserved", lambda v: AlertsSettings({v: "x"}), st.sampled_from(["OFF", "off", "Stop", "STOP!"])),
]


@pytest.mark.parametrize(("name", "build", "values"), INVALID, ids=[row[0] for row in INVALID])
@given(data=st.data())
def test_invalid_values_are_refused(
    data: st.DataObject, name: str, build: Callable[[Any], object], values: st.SearchStrategy[Any]
) -> None:
    with pytest.raises((ValueError, TypeError)):
        build(data.draw(values))


@given(code=code_words, data=st.data())
def test_two_choices_differing_only_in_spelling_are_refused(code: str, data: st.DataObject) -> None:
    variant = data.draw(st.sampled_from([code.lower(), code + "!", "-" + code, code.lower() + "."]))
    if variant == code:
        variant = code.lower() + "."
    with pytest.raises(ValueError, match="choices"):
        VoteSettings({code: "first", variant: "second"})


@given(option=st.text(alphabet="abcdefgh", min_size=1, max_size=8), data=st.data())
def test_options_differing_only_in_spelling_are_refused(option: str, data: st.DataObject) -> None:
    variant = data.draw(st.sampled_from([option.upper(), option + "?", " " + option.title() + "!"]))
    with pytest.raises(ValueError, match="duplicate option"):
        Question("Q?", (option, variant))
