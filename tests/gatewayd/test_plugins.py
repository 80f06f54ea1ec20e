"""Tests for gatewayd.plugins: finding campaign modules and reading [settings] into their Settings."""

from __future__ import annotations

import enum
from importlib.metadata import EntryPoint
from typing import Literal, Sequence

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gatewayd.errors import GatewayError
from gatewayd.plugins import GROUP, ModuleLoadError, ModuleRegistry, find_modules, read_settings
from tests.gatewayd import plugin_fixtures as fx
from tests.gatewayd.plugin_fixtures import entry_point


class TestFindModules:
    def test_good_modules_load_in_name_order(self) -> None:
        """Every valid entry point is loaded, keyed by name and sorted whatever the input order."""
        registry = find_modules([entry_point("vote", "Good"), entry_point("bare", "Bare"), entry_point("quiz", "Quiz")])
        assert list(registry.modules) == ["bare", "quiz", "vote"]
        assert registry.get("vote") is fx.Good and registry.broken == {}

    @pytest.mark.parametrize(
        ("target", "fragment"),
        [
            ("tests.gatewayd.no_such_plugin:Module", "cannot import tests.gatewayd.no_such_plugin:Module: ModuleNotFoundError"),
            ("tests.gatewayd.plugin_fixtures:Missing", "cannot import tests.gatewayd.plugin_fixtures:Missing: AttributeError"),
            ("NoSettings", "NoSettings has no Settings attrs class"),
            ("PlainSettings", "PlainSettings has no Settings attrs class"),
            ("NoHandle", "NoHandle has no handle(ctx, message) method"),
            ("not_a_class", "expected a class, got function"),
        ],
    )
    def test_broken_module_is_recorded_and_logged(self, target: str, fragment: str) -> None:
        """A module that fails to import or is not a module class is broken with a reason, never an exception."""
        with capture_logs() as logs:
            registry = find_modules([entry_point("bad", target), entry_point("vote", "Good")])
        assert fragment in registry.broken["bad"]
        assert registry.get("bad") is None and registry.get("vote") is fx.Good
        (failed,) = [line for line in logs if line["event"] == "module_load_failed"]
        assert failed["module"] == "bad" and fragment in failed["error"] and failed["log_level"] == "error"

    def test_quiet_does_not_log(self) -> None:
        """With quiet, broken modules are recorded but nothing is logged."""
        with capture_logs() as logs:
            registry = find_modules([entry_point("bad", "NoHandle")], quiet=True)
        assert "bad" in registry.broken and logs == []

    def test_other_groups_ignored(self) -> None:
        """Entry points of other groups are not modules."""
        other = EntryPoint(name="gatewayd", value="gatewayd.cli:main", group="console_scripts")
        assert find_modules([other, entry_point("vote", "Good")]).modules == {"vote": fx.Good}

    def test_same_target_twice_counts_once(self) -> None:
        """A package seen twice on sys.path declares the same entry point twice: one module."""
        registry = find_modules([entry_point("vote", "Good"), entry_point("vote", "Good")])
        assert registry.modules == {"vote": fx.Good} and registry.broken == {}

    def test_name_declared_twice_with_different_targets_is_broken(self) -> None:
        """Which of two different classes is meant cannot be told: the name is broken."""
        registry = find_modules([entry_point("vote", "Good"), entry_point("vote", "Bare")])
        assert registry.get("vote") is None
        assert "declared more than once" in registry.broken["vote"] and "Bare" in registry.broken["vote"]

    def test_installed_entry_points_by_default(self) -> None:
        """Without arguments, the installed gatewayd.modules entry points are read."""
        registry = find_modules(quiet=True)
        assert isinstance(registry, ModuleRegistry)
        assert all(isinstance(cls, type) for cls in registry.modules.values())

    def test_registry_is_read_only(self) -> None:
        """The registry's mappings cannot be changed after the fact."""
        registry = find_modules([entry_point("vote", "Good")])
        with pytest.raises(TypeError):
            registry.modules["x"] = fx.Bare  # type: ignore[index]
        assert GROUP == "gatewayd.modules"


class TestRequire:
    def test_known(self) -> None:
        """A loaded module is returned."""
        assert ModuleRegistry({"vote": fx.Good}).require("vote") is fx.Good

    def test_unknown_suggests_and_lists(self) -> None:
        """An unknown name gets a suggestion and the installed modules."""
        registry = ModuleRegistry({"vote": fx.Good, "quiz": fx.Quiz})
        with pytest.raises(ModuleLoadError) as info:
            registry.require("vots")
        assert info.value.plugin_name == "vots"
        assert str(info.value) == "unknown module 'vots'; did you mean 'vote'? installed modules: quiz, vote"
        assert isinstance(info.value, GatewayError)

    def test_unknown_without_suggestion(self) -> None:
        """A name like no other lists the installed modules."""
        with pytest.raises(ModuleLoadError, match=r"^unknown module 'lottery'; installed modules: quiz, vote$"):
            ModuleRegistry({"vote": fx.Good, "quiz": fx.Quiz}).require("lottery")

    def test_nothing_installed(self) -> None:
        """With no module installed, the message says so and names the entry-point group."""
        with pytest.raises(ModuleLoadError, match="no module is installed.*gatewayd.modules"):
            ModuleRegistry().require("vote")

    def test_broken_says_why(self) -> None:
        """A broken module's reason is in the error."""
        with pytest.raises(ModuleLoadError, match="installed but cannot be used: cannot import x"):
            ModuleRegistry({}, {"vote": "cannot import x"}).require("vote")


# --- read_settings ----------------------------------------------------------------------------


class Colour(enum.IntEnum):
    RED = 1
    BLUE = 2


@attrs.frozen
class Everything:
    names: Sequence[str] = ()
    pair: tuple[int, str] = (0, "")
    mapping: dict[str, int] = attrs.field(factory=dict)
    items: list[int] = attrs.field(factory=list)
    unique: frozenset[str] = frozenset()
    colour: Colour = Colour.RED
    mode: Literal["a", "b"] = "a"
    flag: bool = False


class TestReadSettings:
    def test_valid_settings(self) -> None:
        """A valid table becomes the Settings instance; arrays become tuples, ints widen to floats."""
        table = {"choices": {"GRE": "Greece"}, "votes_per_subscriber": 2, "weight": 3, "tags": ["a", "b"]}
        settings, problems = read_settings(fx.Good.Settings, table)
        assert problems == []
        assert settings == fx.Good.Settings(choices={"GRE": "Greece"}, votes_per_subscriber=2, weight=3.0, tags=("a", "b"))
        assert isinstance(settings.tags, tuple) and isinstance(settings.weight, float)

    def test_defaults(self) -> None:
        """Settings left out take their defaults."""
        settings, problems = read_settings(fx.Good.Settings, {"choices": {"A": "a"}})
        assert problems == [] and settings.votes_per_subscriber == 1

    def test_collections_and_choices(self) -> None:
        """Sequences, fixed tuples, mappings, lists, sets, enums, literals and booleans are read from TOML values."""
        table = {
            "names": ["x"],
            "pair": [1, "y"],
            "mapping": {"k": 1},
            "items": [1, 2],
            "unique": ["a", "a"],
            "colour": 2,
            "mode": "b",
            "flag": True,
        }
        settings, problems = read_settings(Everything, table)
        assert problems == []
        assert settings == Everything(("x",), (1, "y"), {"k": 1}, [1, 2], frozenset({"a"}), Colour.BLUE, "b", True)

    @pytest.mark.parametrize(
        ("table", "key", "message"),
        [
            ({"choices": {"A": "a"}, "votes_per_subscriber": "x"}, "votes_per_subscriber", "expected an integer, got 'x'"),
            ({"choices": {"A": "a"}, "votes_per_subscriber": True}, "votes_per_subscriber", "expected an integer, got true"),
            ({"choices": {"A": "a"}, "votes_per_subscriber": 1.5}, "votes_per_subscriber", "expected an integer, got 1.5"),
            ({"choices": {"A": "a"}, "votes_per_subscriber": 0}, "votes_per_subscriber", "'votes_per_subscriber' must be >= 1: 0"),
            ({"choices": {"A": "a"}, "weight": "1"}, "weight", "expected a number, got '1'"),
            ({"choices": {"A": "a"}, "change_of_vote": "keep"}, "change_of_vote", "expected one of 'replace', 'ignore', got 'keep'"),
            ({"choices": {"A": "a"}, "tags": "abc"}, "tags", "expected an array, got 'abc'"),
            ({"choices": {"A": "a"}, "tags": ["a", 1]}, "tags[1]", "expected a string, got 1"),
            ({"choices": ["A"]}, "choices", "expected a table, got ['A']"),
            ({"choices": {"A": 1}}, "choices.A", "expected a string, got 1"),
            ({"choices": {"two words": 1}}, "choices.'two words'", "expected a string, got 1"),
            ({"choices": {}}, "choices", "expected at least one choice, got an empty table"),
            ({}, "choices", "missing; expected a table"),
            ({"choices": {"A": "a"}, "votes_per_subscribr": 1}, "votes_per_subscribr", "unknown key; did you mean 'votes_per_subscriber'?"),
        ],
    )
    def test_problem_names_its_key(self, table: dict, key: str, message: str) -> None:
        """Each wrong value is one problem, keyed by its path in the table, saying what was expected."""
        settings, problems = read_settings(fx.Good.Settings, table)
        assert settings is None and problems == [(key, message)]

    def test_nested_tables_in_arrays(self) -> None:
        """Problems inside an array of tables are keyed by index and field; a validator's message names its field."""
        table = {
            "questions": [
                {"text": "2+2?", "options": ["3", "4"], "answer": "5"},
                "what?",
                {"text": 1, "options": "a"},
                {"text": "ok", "options": ["x"], "answer": "x", "hint": "h"},
            ]
        }
        settings, problems = read_settings(fx.Quiz.Settings, table)
        assert settings is None
        assert problems == [
            ("questions[0].answer", "expected one of the options, got '5'"),
            ("questions[1]", "expected a table, got 'what?'"),
            ("questions[2].text", "expected a string, got 1"),
            ("questions[2].options", "expected an array, got 'a'"),
            ("questions[2].answer", "missing; expected a string"),
            ("questions[3].hint", "unknown key; expected one of: answer, options, text"),
        ]

    def test_no_settings_expected(self) -> None:
        """A module without settings refuses any key."""
        assert read_settings(fx.Bare.Settings, {"x": 1}) == (None, [("x", "unknown key; expected no settings")])

    def test_every_problem_at_once(self) -> None:
        """All wrong keys are reported, not only the first."""
        _, problems = read_settings(fx.Good.Settings, {"choices": 1, "weight": "w", "extra": 0})
        assert [key for key, _ in problems] == ["choices", "weight", "extra"]

    def test_fixed_tuple_length(self) -> None:
        """A fixed-length tuple wants exactly its number of items."""
        assert read_settings(Everything, {"pair": [1]}) == (None, [("pair", "expected an array of 2 items, got 1")])

    def test_enum_and_literal_choices(self) -> None:
        """Enum and Literal settings list their values."""
        _, problems = read_settings(Everything, {"colour": 3, "mode": "c", "flag": "yes"})
        assert problems == [
            ("colour", "expected one of 1, 2, got 3"),
            ("mode", "expected one of 'a', 'b', got 'c'"),
            ("flag", "expected true or false, got 'yes'"),
        ]

    def test_unusable_settings_class_is_a_problem(self) -> None:
        """A Settings class whose annotations cannot be resolved is reported for the whole table, not raised."""

        class Opaque:
            pass

        @attrs.frozen
        class Odd:
            thing: Opaque  # a string annotation naming a local class: unresolvable

        settings, problems = read_settings(Odd, {"thing": 1})
        assert settings is None and len(problems) == 1
        assert problems[0][0] == "" and "NameError" in problems[0][1]

    @given(
        value=st.one_of(
            st.text(max_size=5),
            st.floats(allow_nan=False),
            st.booleans(),
            st.lists(st.integers(), max_size=3),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        )
    )
    def test_wrong_type_for_an_integer_never_passes(self, value: object) -> None:
        """Any non-integer TOML value for an integer setting is one problem on that key."""
        settings, problems = read_settings(fx.Good.Settings, {"choices": {"A": "a"}, "votes_per_subscriber": value})
        assert settings is None
        assert problems[0][0] == "votes_per_subscriber" and problems[0][1].startswith("expected an integer, got ")

    @given(value=st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.text(max_size=2), max_size=2)))
    def test_wrong_type_for_a_table_never_passes(self, value: object) -> None:
        """Any non-table value for a table setting is one problem on that key."""
        settings, problems = read_settings(fx.Good.Settings, {"choices": value})
        assert settings is None and len(problems) == 1
        assert problems[0][0] == "choices" and problems[0][1].startswith("expected a table, got ")
