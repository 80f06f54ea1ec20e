"""Reading and validating the privacy policy file (``conf/policy.toml``).

The file has four parts, all optional (an empty file is a policy that denies everything)::

    [obligations]                 # what the gateway must do (defaults shown)
    erase_after_months = 12
    minimum_age = 14
    under_age_reply = "Sorry, this service is for people aged 14 and over."
    erase_local_profile_on_opt_out = true

    [consent]                     # how the consent keywords behave
    confirm_window_hours = 24
    stop_all_words = ["STOPALL"]

    [[third_party]]               # each recipient of disclosures
    name = "Broadcast Audience Research Ltd"
    description = "..."

    [[data_user]]                 # each organisation that uses the data
    name = "Channel 5 Interactive"
    description = "..."

    [[data_user.rule]]            # what it may do: every combination listed
    operations = ["read", "write"]
    categories = ["participation", "declared"]
    purposes = ["response", "analytics"]
    attributes = ["age_band"]     # optional: narrows "declared" to these attributes

Loading never stops at the first mistake: :func:`load_policy` raises one
:class:`gatewayd.config.ConfigError` listing every problem with its file, table and key
(an unknown key or value with a did-you-mean, a wrong type, a value out of range, a rule
mixing ``disclose`` with other purposes, a disclosure to an undeclared third party, a data
user given twice). Tables are named as in the file: ``obligations``, ``data_user 'NAME'``,
``data_user 'NAME' rule[0]`` (rules counted from 0), ``data_user[2]`` when the name itself
is unusable. :func:`check_owners` then reports the campaigns whose owner is no data user.

This is the one module of the package that imports from :mod:`gatewayd` (for the problem
types shared by every configuration file); the decisions stay in :mod:`permissions.policy`.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import attrs

from gatewayd.config import ConfigError, ConfigProblem
from permissions.obligations import Obligations
from permissions.policy import (
    Category,
    ConsentRules,
    DataUser,
    Operation,
    Policy,
    Purpose,
    PurposeKind,
    Rule,
    ThirdParty,
)
from routing.normalise import fold, is_single_word

__all__ = ["check_owners", "load_policy", "parse_policy"]

_TOP = ("obligations", "consent", "third_party", "data_user")
_OBLIGATION_KEYS = ("erase_after_months", "minimum_age", "under_age_reply", "erase_local_profile_on_opt_out")
_CONSENT_KEYS = ("confirm_window_hours", "stop_all_words")
_THIRD_PARTY_KEYS = ("name", "description")
_DATA_USER_KEYS = ("name", "description", "rule")
_RULE_KEYS = ("operations", "categories", "purposes", "attributes")
_ATTRIBUTE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_NAME_MAX = 200


class _Invalid(Exception):
    """A value does not fit its key; the message says what was expected and found."""


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unknown(value: str, known: Iterable[str], what: str) -> str:
    known = list(known)
    close = difflib.get_close_matches(value, known, n=1)
    if not close:
        close = [k for k in known if k.casefold() == value.casefold()]
    if close:
        return f"unknown {what} {value!r}; did you mean {close[0]!r}?"
    return f"unknown {what} {value!r}; expected one of: {', '.join(known)}"


# --- value checks: each returns the value or raises _Invalid -------------------------------------


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if type(value) is int and lo <= value <= hi:
            return value
        raise _Invalid(f"expected an integer from {lo} to {hi}, got {_show(value)}")

    return check


def _hours(value: Any) -> float:
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= 24 * 30
    ):
        return float(value)
    raise _Invalid(f"expected a number of hours greater than 0 and at most 720, got {_show(value)}")


def _text(lo: int, hi: int, what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, str) and lo <= len(value) <= hi and (lo == 0 or value.strip()):
            return value
        found = _show(value) if not isinstance(value, str) or len(value) <= hi else f"{len(value)} characters"
        raise _Invalid(f"expected {what}, got {found}")

    return check


def _name(value: Any) -> str:
    if isinstance(value, str) and 0 < len(value) <= _NAME_MAX and value == value.strip():
        return value
    what = f"a non-empty string of at most {_NAME_MAX} characters, without spaces at either end"
    raise _Invalid(f"expected {what}, got {_show(value)}")


_DESCRIPTION = _text(0, 1000, "a string of at most 1000 characters")
_REPLY = _text(1, 1000, "a non-empty reply of at most 1000 characters")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid(f"expected true or false, got {_show(value)}")


def _strings(value: Any, what: str) -> list[str]:
    """A non-empty array of strings without repeats."""
    if isinstance(value, dict) or not isinstance(value, list):
        raise _Invalid(f"expected a non-empty array of {what}, got {_show(value)}")
    if not value:
        raise _Invalid(f"expected a non-empty array of {what}, got an empty array")
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise _Invalid(f"expected a non-empty array of {what}, got {_show(item)} in it")
        if item in seen:
            raise _Invalid(f"expected each of the {what} once, got {item!r} twice")
        seen.add(item)
    return value


def _words(value: Any) -> tuple[str, ...]:
    words = _strings(value, "single words of letters and digits")
    seen: dict[str, str] = {}
    for word in words:
        if not is_single_word(word):
            raise _Invalid(f"expected single words of letters and digits, got {word!r}")
        if fold(word) in seen:
            raise _Invalid(f"expected distinct words, got {seen[fold(word)]!r} and {word!r}, the same word")
        seen[fold(word)] = word
    return tuple(words)


def _table_name(kind: str, item: Mapping[str, Any], index: int, seen: dict[str, str]) -> tuple[str, str | None]:
    """How an array-of-tables entry is named in problems, and its usable name (or None)."""
    name = item.get("name")
    try:
        valid = _name(name)
    except _Invalid:
        return f"{kind}[{index}]", None
    if valid in seen:
        return f"{kind}[{index}]", valid
    return f"{kind} {valid!r}", valid


@attrs.define
class _Reader:
    """Reads the parsed TOML of one policy file, collecting every problem."""

    file: str
    problems: list[ConfigProblem] = attrs.Factory(list)

    def problem(self, table: str, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, table, key, message))

    def keys(self, data: Mapping[str, Any], table: str, known: tuple[str, ...]) -> None:
        for key in data:
            if key not in known:
                self.problem(table, key, _unknown(key, known, "key"))

    def value(self, data: Mapping[str, Any], table: str, key: str, check: Callable[[Any], Any]) -> Any:
        """The checked value of ``key`` (attrs.NOTHING when absent or wrong)."""
        if key not in data:
            return attrs.NOTHING
        try:
            return check(data[key])
        except _Invalid as exc:
            self.problem(table, key, str(exc))
            return attrs.NOTHING

    def table(self, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if isinstance(value, dict):
            return value
        self.problem("", name, f"expected a table [{name}], got {_show(value)}")
        return {}

    def array(self, data: Mapping[str, Any], name: str, table: str, shown: str) -> list[Any]:
        value = data.get(name, [])
        if isinstance(value, list):
            return value
        found = f"a single table [{shown}]" if isinstance(value, dict) else _show(value)
        self.problem(table, name, f"expected an array of tables [[{shown}]], got {found}")
        return []

    def settings(
        self, data: Mapping[str, Any], table: str, checks: Mapping[str, Callable[[Any], Any]], cls: type
    ) -> Any:
        self.keys(data, table, tuple(checks))
        kwargs = {}
        for key, check in checks.items():
            value = self.value(data, table, key, check)
            if value is not attrs.NOTHING:
                kwargs[key] = value
        return cls(**kwargs)

    def obligations(self, data: Mapping[str, Any]) -> Obligations:
        return self.settings(
            self.table(data, "obligations"),
            "obligations",
            {
                "erase_after_months": _int(1, 600),
                "minimum_age": _int(0, 120),
                "under_age_reply": _REPLY,
                "erase_local_profile_on_opt_out": _bool,
            },
            Obligations,
        )

    def consent(self, data: Mapping[str, Any]) -> ConsentRules:
        return self.settings(
            self.table(data, "consent"),
            "consent",
            {"confirm_window_hours": _hours, "stop_all_words": _words},
            ConsentRules,
        )

    def third_parties(self, data: Mapping[str, Any]) -> list[ThirdParty]:
        parties: list[ThirdParty] = []
        seen: dict[str, str] = {}
        for index, item in enumerate(self.array(data, "third_party", "", "third_party")):
            if not isinstance(item, dict):
                self.problem(f"third_party[{index}]", "", f"expected a table, got {_show(item)}")
                continue
            table, name = _table_name("third_party", item, index, seen)
            self.keys(item, table, _THIRD_PARTY_KEYS)
            self.require_name(item, table, name, seen, "third party")
            description = self.value(item, table, "description", _DESCRIPTION)
            if name is not None and name not in seen:
                seen[name] = table
                parties.append(ThirdParty(name, "" if description is attrs.NOTHING else description))
        return parties

    def require_name(self, item: Mapping[str, Any], table: str, name: str | None, seen: Mapping[str, str], what: str) -> None:
        if "name" not in item:
            self.problem(table, "name", f"missing; expected the {what}'s name, a non-empty string")
        elif name is None:
            self.value(item, table, "name", _name)
        elif name in seen:
            self.problem(table, "name", f"expected a name no other {what} has, got {name!r} again ({seen[name]} has it)")

    def data_users(self, data: Mapping[str, Any], third_parties: list[ThirdParty]) -> list[DataUser]:
        users: list[DataUser] = []
        seen: dict[str, str] = {}
        for index, item in enumerate(self.array(data, "data_user", "", "data_user")):
            if not isinstance(item, dict):
                self.problem(f"data_user[{index}]", "", f"expected a table, got {_show(item)}")
                continue
            table, name = _table_name("data_user", item, index, seen)
            self.keys(item, table, _DATA_USER_KEYS)
            self.require_name(item, table, name, seen, "data user")
            description = self.value(item, table, "description", _DESCRIPTION)
            rules = []
            for number, raw in enumerate(self.array(item, "rule", table, "data_user.rule")):
                rule_table = f"{table} rule[{number}]"
                if not isinstance(raw, dict):
                    self.problem(rule_table, "", f"expected a table, got {_show(raw)}")
                    continue
                rule = self.rule(raw, rule_table, third_parties)
                if rule is not None:
                    rules.append(rule)
            if name is not None and name not in seen:
                seen[name] = table
                users.append(DataUser(name, tuple(rules), "" if description is attrs.NOTHING else description))
        return users

    def names(self, data: Mapping[str, Any], table: str, key: str, what: str, known: tuple[str, ...]) -> list[str] | None:
        """The array ``key`` of ``what`` values, each one of ``known``; None after a problem."""
        if key not in data:
            self.problem(table, key, f"missing; expected a non-empty array of {what}s: {', '.join(known)}")
            return None
        try:
            values = _strings(data[key], f"{what}s")
        except _Invalid as exc:
            self.problem(table, key, str(exc))
            return None
        ok = True
        for value in values:
            if value not in known:
                self.problem(table, key, _unknown(value, known, what))
                ok = False
        return values if ok else None

    def purposes(self, data: Mapping[str, Any], table: str, third_parties: list[ThirdParty]) -> list[Purpose] | None:
        plain = tuple(kind.value for kind in PurposeKind if kind is not PurposeKind.DISCLOSURE)
        disclosures = tuple(f"disclosure:{party.name}" for party in third_parties)
        shown = ", ".join(plain) + ", disclosure:<third party>"
        if "purposes" not in data:
            self.problem(table, "purposes", f"missing; expected a non-empty array of purposes: {shown}")
            return None
        try:
            values = _strings(data["purposes"], "purposes")
        except _Invalid as exc:
            self.problem(table, "purposes", str(exc))
            return None
        purposes: list[Purpose] = []
        for value in values:
            if value.startswith("disclosure:"):
                party = value[len("disclosure:") :].strip()
                if not party:
                    self.problem(table, "purposes", f"expected 'disclosure:' followed by a third party's name, got {value!r}")
                    continue
                if party not in {p.name for p in third_parties}:
                    message = _unknown(party, [p.name for p in third_parties], "third party") if third_parties else (
                        f"unknown third party {party!r}; declare it in a [[third_party]] table"
                    )
                    self.problem(table, "purposes", f"{message} (in {value!r})")
                    continue
                purposes.append(Purpose.disclosure(party))
            elif value in plain:
                purposes.append(Purpose(PurposeKind(value)))
            else:
                self.problem(table, "purposes", _unknown(value, plain + disclosures, "purpose"))
        return purposes if len(purposes) == len(values) else None

    def rule(self, data: Mapping[str, Any], table: str, third_parties: list[ThirdParty]) -> Rule | None:
        self.keys(data, table, _RULE_KEYS)
        operations = self.names(data, table, "operations", "operation", tuple(o.value for o in Operation))
        categories = self.names(data, table, "categories", "category", tuple(c.value for c in Category))
        purposes = self.purposes(data, table, third_parties)
        attributes: list[str] | None = None
        ok = True
        if "attributes" in data:
            try:
                attributes = _strings(data["attributes"], "attribute names")
                for name in attributes:
                    if _ATTRIBUTE_RE.fullmatch(name) is None:
                        raise _Invalid(
                            f"expected attribute names of a lower-case letter and up to 63 of a-z 0-9 _, got {name!r}"
                        )
            except _Invalid as exc:
                self.problem(table, "attributes", str(exc))
                ok = False
            else:
                if categories is not None and Category.DECLARED.value not in categories:
                    self.problem(table, "attributes", "narrows the 'declared' category, which this rule's categories do not list")
                    ok = False
        if operations is not None and purposes is not None:
            disclose = Operation.DISCLOSE.value in operations
            kinds = {p.kind is PurposeKind.DISCLOSURE for p in purposes}
            if disclose and (len(operations) > 1 or kinds != {True}):
                self.problem(
                    table,
                    "operations",
                    "'disclose' goes in a rule of its own, with only 'disclosure:<third party>' purposes",
                )
                ok = False
            elif not disclose and True in kinds:
                self.problem(table, "purposes", "'disclosure:<third party>' purposes go only with the 'disclose' operation")
                ok = False
        if not ok or operations is None or categories is None or purposes is None:
            return None
        return Rule(operations, categories, purposes, attributes)

    def load(self, data: Mapping[str, Any]) -> Policy:
        for key in data:
            if key not in _TOP:
                self.problem("", key, _unknown(key, _TOP, "table"))
        obligations = self.obligations(data)
        consent = self.consent(data)
        parties = self.third_parties(data)
        users = self.data_users(data, parties)
        if self.problems:
            raise ConfigError(self.problems)
        return Policy(tuple(users), tuple(parties), obligations, consent, source=self.file)


def parse_policy(data: Mapping[str, Any], file: str = "policy.toml") -> Policy:
    """The policy in ``data`` (a parsed TOML document) read from ``file``.

    Raises:
        ConfigError: listing every problem found.
    """
    return _Reader(file).load(data)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file.

    Args:
        path: the file; problems name it as given.

    Raises:
        ConfigError: when the file cannot be read, is not valid TOML, or has any problem.
    """
    file = os.fspath(path)
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, "", "", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(file, "", "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
        message = f"invalid TOML at line {m[1]}, column {m[2]}: {text[: m.start()]}" if m else f"invalid TOML: {text}"
        raise ConfigError([ConfigProblem(file, "", "", message)]) from None
    return parse_policy(data, file)


def check_owners(
    policy: Policy, owners: Mapping[str, str], sources: Mapping[str, str] | None = None
) -> list[ConfigProblem]:
    """The campaigns whose owner is no data user of ``policy``.

    Args:
        policy: the loaded policy.
        owners: campaign name -> its sheet's ``owner``.
        sources: campaign name -> its sheet's file, for the problem's file (default: the
            policy's file).

    Returns:
        One problem per such campaign, in the mapping's order, at key ``owner``, naming the
        campaign and, when one is close, the data user meant.
    """
    problems = []
    known = policy.user_names
    for campaign, owner in owners.items():
        if policy.data_user(owner) is not None:
            continue
        close = difflib.get_close_matches(owner, known, n=1) or [k for k in known if k.casefold() == owner.casefold()]
        where = f" ({policy.source})" if policy.source else ""
        hint = f"; did you mean {close[0]!r}?" if close else (
            f"; the data users are: {', '.join(repr(k) for k in known)}" if known else "; the policy has no data users"
        )
        message = f"campaign {campaign!r}: owner {owner!r} is not a data user of the privacy policy{where}{hint}"
        file = (sources or {}).get(campaign) or policy.source or "policy"
        problems.append(ConfigProblem(file, "", "owner", message))
    return problems
