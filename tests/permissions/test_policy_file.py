"""The policy file: the shipped example, every kind of mistake, owners of the campaigns."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.config import ConfigError, ConfigProblem
from permissions.obligations import Obligations
from permissions.policy import Category, ConsentRules, DenyReason, Policy, Purpose
from permissions.policy_file import check_owners, load_policy, parse_policy
from tests.permissions.strategies import deterministic

CONF = Path(__file__).resolve().parents[2] / "conf"

VALID: dict[str, Any] = {
    "obligations": {
        "erase_after_months": 6,
        "minimum_age": 16,
        "under_age_reply": "Sorry, 16 and over only.",
        "erase_local_profile_on_opt_out": False,
    },
    "consent": {"confirm_window_hours": 2, "stop_all_words": ["STOPALL", "ΣΤΟΠΟΛΑ"]},
    "third_party": [{"name": "Ratings Ltd", "description": "audience research"}],
    "data_user": [
        {
            "name": "Channel 5 Interactive",
            "description": "the broadcaster",
            "rule": [
                {"operations": ["read", "write"], "categories": ["participation", "declared"], "purposes": ["response", "analytics"]},
                {"operations": ["disclose"], "categories": ["participation"], "purposes": ["disclosure:Ratings Ltd"]},
            ],
        },
        {
            "name": "Acme Stores Marketing",
            "rule": [
                {
                    "operations": ["read"],
                    "categories": ["contact", "declared"],
                    "purposes": ["marketing"],
                    "attributes": ["age_band", "postcode"],
                }
            ],
        },
    ],
}


def problems_of(data: dict[str, Any]) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        parse_policy(data, "policy.toml")
    return list(info.value.problems)


def where(problems: list[ConfigProblem]) -> list[tuple[str, str]]:
    return [(p.table, p.key) for p in problems]


def demo_owners() -> tuple[dict[str, str], dict[str, str]]:
    owners, sources = {}, {}
    for sheet in sorted((CONF / "campaigns.d").glob("*.toml")):
        data = tomllib.loads(sheet.read_text())
        owners[data["name"]] = data["owner"]
        sources[data["name"]] = str(sheet)
    return owners, sources


# --- the shipped example -----------------------------------------------------------------------------


def test_the_shipped_policy_loads_and_covers_the_demo_campaigns() -> None:
    """conf/policy.toml is valid and names every owner of conf/campaigns.d as a data user."""
    policy = load_policy(CONF / "policy.toml")
    owners, sources = demo_owners()
    assert set(owners.values()) == {"Channel 5 Interactive", "Acme Stores Marketing"}
    assert check_owners(policy, owners, sources) == []
    assert policy.source == str(CONF / "policy.toml")
    assert policy.obligations == Obligations()
    # Every demo campaign can answer its subscribers, and only the advertiser may market.
    for owner in owners.values():
        assert policy.may_message(owner, "response").permitted
    assert policy.may_message("Acme Stores Marketing", "marketing").permitted
    assert not policy.may_message("Channel 5 Interactive", "marketing").permitted
    assert policy.check_segment_criteria("Acme Stores Marketing", ["participation"], attributes_used=["age_band"]) == []
    assert policy.may("Channel 5 Interactive", "disclose", "participation", "disclosure:Broadcast Audience Research Ltd").permitted
    assert not policy.may("Channel 5 Interactive", "read", "free_text", "analytics").permitted


def test_a_valid_file_reads_every_setting(tmp_path: Path) -> None:
    text = """
[obligations]
erase_after_months = 6
minimum_age = 16
under_age_reply = "Sorry, 16 and over only."
erase_local_profile_on_opt_out = false

[consent]
confirm_window_hours = 2
stop_all_words = ["STOPALL", "ΣΤΟΠΟΛΑ"]

[[third_party]]
name = "Ratings Ltd"
description = "audience research"

[[data_user]]
name = "Channel 5 Interactive"
description = "the broadcaster"

[[data_user.rule]]
operations = ["read", "write"]
categories = ["participation", "declared"]
purposes = ["response", "analytics"]

[[data_user.rule]]
operations = ["disclose"]
categories = ["participation"]
purposes = ["disclosure:Ratings Ltd"]

[[data_user]]
name = "Acme Stores Marketing"

[[data_user.rule]]
operations = ["read"]
categories = ["contact", "declared"]
purposes = ["marketing"]
attributes = ["age_band", "postcode"]
"""
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path)
    assert policy == parse_policy(VALID, str(path))
    assert policy.obligations == Obligations(6, 16, "Sorry, 16 and over only.", False)
    assert policy.consent == ConsentRules(2.0, ("STOPALL", "ΣΤΟΠΟΛΑ"))
    assert policy.user_names == ("Channel 5 Interactive", "Acme Stores Marketing")
    acme = policy.data_user("Acme Stores Marketing")
    assert acme is not None and acme.rules[0].attributes == {"age_band", "postcode"}
    assert policy.may("Channel 5 Interactive", "disclose", "participation", Purpose.disclosure("Ratings Ltd")).permitted


def test_an_empty_file_denies_everything() -> None:
    policy = parse_policy({})
    assert policy == Policy(source="policy.toml")
    assert policy.may("Anyone", "read", "contact", "response").reason is DenyReason.UNKNOWN_USER


# --- mistakes ------------------------------------------------------------------------------------------


def mutate(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """VALID with the value at ``path`` replaced (or deleted when value is ...)."""
    data = copy.deepcopy(VALID)
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


C5 = "data_user 'Channel 5 Interactive'"
ACME = "data_user 'Acme Stores Marketing'"

MISTAKES = [
    # unknown keys and tables, with did-you-mean
    (mutate(("obligation",), {}), "", "obligation", "did you mean 'obligations'?"),
    (mutate(("obligations", "erase_after_month"), 3), "obligations", "erase_after_month", "did you mean 'erase_after_months'?"),
    (mutate(("consent", "confirm_window"), 3), "consent", "confirm_window", "did you mean 'confirm_window_hours'?"),
    (mutate(("data_user", 0, "rules"), []), C5, "rules", "did you mean 'rule'?"),
    (mutate(("data_user", 0, "rule", 0, "purpose"), []), f"{C5} rule[0]", "purpose", "did you mean 'purposes'?"),
    (mutate(("third_party", 0, "nmae"), "x"), "third_party 'Ratings Ltd'", "nmae", "did you mean 'name'?"),
    # unknown vocabulary
    (mutate(("data_user", 0, "rule", 0, "categories"), ["participaton"]), f"{C5} rule[0]", "categories", "did you mean 'participation'?"),
    (mutate(("data_user", 0, "rule", 0, "operations"), ["reed"]), f"{C5} rule[0]", "operations", "did you mean 'read'?"),
    (mutate(("data_user", 0, "rule", 0, "purposes"), ["analytic"]), f"{C5} rule[0]", "purposes", "did you mean 'analytics'?"),
    (mutate(("data_user", 0, "rule", 0, "purposes"), ["Response"]), f"{C5} rule[0]", "purposes", "did you mean 'response'?"),
    (mutate(("data_user", 0, "rule", 1, "purposes"), ["disclosure:Ratings"]), f"{C5} rule[1]", "purposes", "did you mean 'Ratings Ltd'?"),
    (mutate(("data_user", 0, "rule", 1, "purposes"), ["disclosure:"]), f"{C5} rule[1]", "purposes", "third party's name"),
    (mutate(("data_user", 1, "rule", 0, "attributes"), ["Post Code"]), f"{ACME} rule[0]", "attributes", "'Post Code'"),
    # inconsistent rules
    (mutate(("data_user", 0, "rule", 1, "operations"), ["disclose", "read"]), f"{C5} rule[1]", "operations", "rule of its own"),
    (mutate(("data_user", 0, "rule", 0, "purposes"), ["disclosure:Ratings Ltd"]), f"{C5} rule[0]", "purposes", "only with the 'disclose'"),
    (mutate(("data_user", 1, "rule", 0, "categories"), ["contact"]), f"{ACME} rule[0]", "attributes", "'declared'"),
    # missing, empty, repeated
    (mutate(("data_user", 0, "rule", 0, "operations"), ...), f"{C5} rule[0]", "operations", "missing"),
    (mutate(("data_user", 0, "rule", 0, "categories"), []), f"{C5} rule[0]", "categories", "empty array"),
    (mutate(("data_user", 0, "rule", 0, "categories"), ["declared", "declared"]), f"{C5} rule[0]", "categories", "twice"),
    (mutate(("data_user", 1, "name"), ...), "data_user[1]", "name", "missing"),
    (mutate(("data_user", 1, "name"), "Channel 5 Interactive"), "data_user[1]", "name", "again"),
    (mutate(("third_party",), [{"name": "A"}, {"name": "A"}]), "third_party[1]", "name", "again"),
    (mutate(("third_party", 0, "name"), "Ratings Ltd "), "third_party[0]", "name", "without spaces"),
    (mutate(("consent", "stop_all_words"), ["STOPALL", "stopall"]), "consent", "stop_all_words", "the same word"),
    (mutate(("consent", "stop_all_words"), ["STOP ALL"]), "consent", "stop_all_words", "single words"),
    # obligations with bad values
    (mutate(("obligations", "erase_after_months"), 0), "obligations", "erase_after_months", "from 1 to 600"),
    (mutate(("obligations", "minimum_age"), 121), "obligations", "minimum_age", "from 0 to 120"),
    (mutate(("obligations", "minimum_age"), "14"), "obligations", "minimum_age", "got '14'"),
    (mutate(("obligations", "under_age_reply"), "  "), "obligations", "under_age_reply", "non-empty"),
    (mutate(("obligations", "erase_local_profile_on_opt_out"), "yes"), "obligations", "erase_local_profile_on_opt_out", "true or false"),
    (mutate(("consent", "confirm_window_hours"), 0), "consent", "confirm_window_hours", "greater than 0"),
    # wrong shapes
    (mutate(("data_user",), {"name": "x"}), "", "data_user", "single table [data_user]"),
    (mutate(("data_user", 0, "rule"), {"operations": ["read"]}), C5, "rule", "single table [data_user.rule]"),
    (mutate(("data_user", 0, "rule", 0), "read"), f"{C5} rule[0]", "", "expected a table"),
    (mutate(("obligations",), 12), "", "obligations", "expected a table"),
    (mutate(("third_party",), ["x"]), "third_party[0]", "", "expected a table"),
]


@pytest.mark.parametrize(("data", "table", "key", "text"), MISTAKES)
def test_each_mistake_names_file_table_and_key(data: dict[str, Any], table: str, key: str, text: str) -> None:
    found = problems_of(data)
    assert (table, key) in where(found), found
    problem = next(p for p in found if (p.table, p.key) == (table, key))
    assert problem.file == "policy.toml"
    assert text in problem.message, problem.message


def test_every_problem_is_reported_at_once() -> None:
    data = mutate(("obligations", "minimum_age"), -1)
    data["consent"]["confirm_window_hours"] = "a day"
    data["data_user"][0]["rule"][0]["categories"] = ["opinions"]
    data["data_user"][1]["colour"] = "blue"
    assert where(problems_of(data)) == [
        ("obligations", "minimum_age"),
        ("consent", "confirm_window_hours"),
        (f"{C5} rule[0]", "categories"),
        (ACME, "colour"),
    ]


def test_a_disclosure_without_third_parties_says_how_to_declare_one() -> None:
    data = mutate(("third_party",), ...)
    (problem,) = problems_of(data)
    assert (problem.table, problem.key) == (f"{C5} rule[1]", "purposes")
    assert "[[third_party]]" in problem.message


def test_problems_print_like_the_other_configuration_files() -> None:
    (problem,) = problems_of(mutate(("obligations", "minimum_age"), 200))
    assert str(problem) == "policy.toml: [obligations] minimum_age: expected an integer from 0 to 120, got 200"


#: Every key of VALID with a path to it and the TOML types it accepts.
KEYS: list[tuple[tuple[Any, ...], tuple[type, ...]]] = [
    (("obligations", "erase_after_months"), (int,)),
    (("obligations", "minimum_age"), (int,)),
    (("obligations", "under_age_reply"), (str,)),
    (("obligations", "erase_local_profile_on_opt_out"), (bool,)),
    (("consent", "confirm_window_hours"), (int, float)),
    (("consent", "stop_all_words"), (list,)),
    (("third_party", 0, "name"), (str,)),
    (("third_party", 0, "description"), (str,)),
    (("data_user", 0, "description"), (str,)),
    (("data_user", 0, "rule", 0, "operations"), (list,)),
    (("data_user", 0, "rule", 0, "categories"), (list,)),
    (("data_user", 0, "rule", 0, "purposes"), (list,)),
    (("data_user", 1, "rule", 0, "attributes"), (list,)),
    (("data_user", 1, "name"), (str,)),
]

TABLES = {
    ("obligations",): "obligations",
    ("consent",): "consent",
    ("third_party", 0): ("third_party 'Ratings Ltd'", "third_party[0]"),
    ("data_user", 0): (C5,),
    ("data_user", 1): (ACME, "data_user[1]"),
    ("data_user", 0, "rule", 0): (f"{C5} rule[0]",),
    ("data_user", 1, "rule", 0): (f"{ACME} rule[0]", "data_user[1] rule[0]"),
}

toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


def type_fits(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, dict):
        return dict in types
    return isinstance(value, types)


@deterministic
@given(st.sampled_from(KEYS), toml_values)
def test_wrong_types_are_reported_where_they_are(key: tuple[tuple[Any, ...], tuple[type, ...]], value: Any) -> None:
    """Any value of the wrong TOML type is a problem at its own table and key, never a crash."""
    path, types = key
    if type_fits(value, types):
        return
    found = problems_of(mutate(path, value))
    tables = TABLES[path[:-1]]
    tables = (tables,) if isinstance(tables, str) else tables
    assert any(p.table in tables and p.key == path[-1] for p in found), found


@deterministic
@given(st.sampled_from(KEYS), toml_values)
def test_any_value_either_loads_or_is_reported(key: tuple[tuple[Any, ...], tuple[type, ...]], value: Any) -> None:
    """Whatever is put at a key, loading gives a policy or a ConfigError, nothing else."""
    try:
        policy = parse_policy(mutate(key[0], value))
    except ConfigError as exc:
        assert exc.problems
    else:
        assert isinstance(policy, Policy)


# --- reading the file -----------------------------------------------------------------------------------


def test_a_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[obligations]\nminimum_age = = 3\n')
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.table, problem.key) == (str(path), "", "")
    assert problem.message.startswith("invalid TOML at line 2, column")


def test_a_missing_or_binary_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_policy(tmp_path / "absent.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_policy(binary)


# --- owners ----------------------------------------------------------------------------------------------


def test_campaigns_whose_owner_is_no_data_user() -> None:
    policy = parse_policy(VALID, "conf/policy.toml")
    owners = {"vote": "Channel 5 Interactive", "quiz": "Channel 5 interactive", "coupons": "Someone Else"}
    problems = check_owners(policy, owners, {"quiz": "campaigns.d/quiz.toml"})
    assert [(p.file, p.table, p.key) for p in problems] == [("campaigns.d/quiz.toml", "", "owner"), ("conf/policy.toml", "", "owner")]
    assert "campaign 'quiz'" in problems[0].message and "did you mean 'Channel 5 Interactive'?" in problems[0].message
    assert "campaign 'coupons'" in problems[1].message and "'Acme Stores Marketing'" in problems[1].message
    assert "no data users" in check_owners(parse_policy({}), {"vote": "A"})[0].message


def test_categories_match_the_file_vocabulary() -> None:
    """The file's words are the enums' values (the example file documents the same list)."""
    text = (CONF / "policy.toml").read_text()
    for category in Category:
        assert category.value in text
