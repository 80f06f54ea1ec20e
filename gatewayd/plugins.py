"""Finding the campaign modules, and reading a sheet's ``[settings]`` into a module's ``Settings``.

Modules are installed packages that declare an entry point in the ``gatewayd.modules`` group
(``vote = modules.vote:VoteModule``). :func:`find_modules` loads every one of them, in name
order so that the result never depends on the order of ``sys.path``. A module that cannot be
imported, or is not a module class (see :mod:`modules.api`), is recorded as *broken* with the
reason and logged: a sheet that names it is reported with that reason, and the daemon runs
the other campaigns.

:func:`read_settings` validates a ``[settings]`` table with cattrs into the module's
``Settings`` attrs class. TOML values are taken strictly: an integer setting refuses ``"5"``
and ``true``, a string setting refuses ``5``, an array setting refuses a string (it would
otherwise become a sequence of characters). Arrays become tuples (or lists where the
annotation says ``list``), unknown keys are refused with a suggestion, and the ``ValueError``
of a ``Settings`` validator becomes a problem for its key.
"""

from __future__ import annotations

import collections.abc
import datetime
import difflib
import enum
import importlib.metadata
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import cattrs
import structlog
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from gatewayd.config import _show, _unknown
from gatewayd.errors import GatewayError

__all__ = ["GROUP", "ModuleLoadError", "ModuleRegistry", "find_modules", "read_settings"]

log = structlog.get_logger("gatewayd.plugins")

#: The entry-point group campaign modules are declared in.
GROUP = "gatewayd.modules"


class ModuleLoadError(GatewayError):
    """A campaign module is not installed or cannot be used.

    Attributes:
        plugin_name: the module name a sheet asked for.
        reason: what is wrong, in a sentence that names the module.
    """

    def __init__(self, plugin_name: str, reason: str) -> None:
        super().__init__(plugin_name, reason)
        self.plugin_name = plugin_name
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def _read_only(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ModuleRegistry:
    """The installed campaign modules, by entry-point name."""

    #: Module classes that loaded and look like modules.
    modules: Mapping[str, type] = attrs.field(factory=dict, converter=_read_only)
    #: Modules that are declared but unusable: name -> why.
    broken: Mapping[str, str] = attrs.field(factory=dict, converter=_read_only)

    def get(self, name: str) -> type | None:
        """The module class called ``name``, or None when it is unknown or broken."""
        return self.modules.get(name)

    def require(self, name: str) -> type:
        """The module class called ``name``.

        Raises:
            ModuleLoadError: it is not installed (with a suggestion and the installed
                modules), or it is broken (with the reason).
        """
        if name in self.modules:
            return self.modules[name]
        if name in self.broken:
            raise ModuleLoadError(name, f"module {name!r} is installed but cannot be used: {self.broken[name]}")
        installed = sorted(self.modules)
        if not installed:
            raise ModuleLoadError(name, f"unknown module {name!r}; no module is installed (entry points of group {GROUP!r})")
        close = difflib.get_close_matches(name, installed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ModuleLoadError(name, f"unknown module {name!r}; {hint}installed modules: {', '.join(installed)}")


def _check_module(obj: object) -> str | None:
    """Why ``obj`` is not a usable module class, or None when it is one."""
    if not isinstance(obj, type):
        return f"expected a class, got {type(obj).__name__} {obj!r}"
    settings = getattr(obj, "Settings", None)
    if not (isinstance(settings, type) and attrs.has(settings)):
        return f"{obj.__qualname__} has no Settings attrs class"
    if not callable(getattr(obj, "handle", None)):
        return f"{obj.__qualname__} has no handle(ctx, message) method"
    return None


def find_modules(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None, *, quiet: bool = False
) -> ModuleRegistry:
    """Load the campaign modules declared in the ``gatewayd.modules`` entry-point group.

    Entry points are loaded in name order. A name declared twice with different targets
    is broken (which one is meant cannot be told); the same target declared twice (a
    package seen through two ``sys.path`` entries) counts once.

    Args:
        entry_points: the entry points to consider (those of other groups are ignored);
            default: every installed one.
        quiet: do not log the broken modules (for ``check-config``, which prints them).

    Returns:
        The modules that loaded, and the reason for each one that did not. Never raises
        for a faulty module.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=GROUP)
    targets: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in entry_points:
        if ep.group == GROUP and all(other.value != ep.value for other in targets.get(ep.name, [])):
            targets.setdefault(ep.name, []).append(ep)
    modules: dict[str, type] = {}
    broken: dict[str, str] = {}
    for name in sorted(targets):
        eps = targets[name]
        if len(eps) > 1:
            broken[name] = "declared more than once: " + " and ".join(sorted(ep.value for ep in eps))
            continue
        try:
            obj = eps[0].load()
        except Exception as exc:  # noqa: BLE001 - a faulty plugin must not stop the daemon
            broken[name] = f"cannot import {eps[0].value}: {type(exc).__name__}: {exc}"
            continue
        reason = _check_module(obj)
        if reason is None:
            modules[name] = obj
        else:
            broken[name] = reason
    if not quiet:
        for name, reason in broken.items():
            log.error("module_load_failed", module=name, error=reason)
        log.info("modules_found", modules=sorted(modules), broken=sorted(broken))
    return ModuleRegistry(modules, broken)


# --- [settings] -> Settings -------------------------------------------------------------------


class _Wrong(ValueError):
    """A settings value of the wrong type or outside its choices; the message is final."""


def _wrong(expected: str, value: object) -> _Wrong:
    return _Wrong(f"expected {expected}, got {_show(value)}")


_SEQUENCES = {list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
              collections.abc.Set, collections.abc.MutableSet}
_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}


def _origin(t: Any) -> Any:
    return typing.get_origin(t) or t


def _describe(t: Any) -> str:
    """What a TOML value for annotation ``t`` looks like."""
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if t in simple:
        return simple[t]
    origin = _origin(t)
    if origin in _SEQUENCES:
        return "an array"
    if origin in _MAPPINGS or (isinstance(t, type) and attrs.has(t)):
        return "a table"
    if origin is typing.Literal:
        return "one of " + ", ".join(_show(v) for v in typing.get_args(t))
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return "one of " + ", ".join(_show(m.value) for m in t)
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if len(args) == 1:
        return _describe(args[0])
    return getattr(t, "__name__", str(t))


def _strict(base: type) -> Callable[[Any, Any], Any]:
    """The hook for ``base`` (bool, int, float, str) and its subclasses.

    Enums derived from int or str reach this hook too (cattrs dispatches on the class
    hierarchy first), so they are handed to the choice check.
    """

    def hook(value: Any, t: Any) -> Any:
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return _choice_hook(t)(value, t)
        # type() rather than isinstance(): true is not an integer here.
        if base is float and type(value) in (int, float):
            return float(value)
        if type(value) is base:
            return value
        raise _wrong(_describe(base), value)

    return hook


def _path(value: Any, _: Any) -> Path:
    if isinstance(value, str) and value and "\x00" not in value:
        return Path(value)
    raise _wrong("a path", value)


def _datetime(value: Any, _: Any) -> datetime.datetime:
    # TOML gives date-times as objects; one without an offset is UTC, as in the sheets.
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=datetime.timezone.utc)
    raise _wrong("a TOML date-time such as 2026-11-24T09:00:00Z (unquoted)", value)


def _note(exc: Exception, index: int | str, t: Any) -> Exception:
    exc.__notes__ = [*getattr(exc, "__notes__", []), IterableValidationNote(f"Structuring @ {index!r}", index, t)]
    return exc


def _sequence_hook(t: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    origin, args = _origin(t), typing.get_args(t)
    fixed = origin is tuple and args and args[-1] is not Ellipsis
    element = args[0] if args else Any
    result: Callable[[list[Any]], Any] = {list: list, set: set, collections.abc.MutableSequence: list,
                                          collections.abc.MutableSet: set, frozenset: frozenset,
                                          collections.abc.Set: frozenset}.get(origin, tuple)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _wrong("an array", value)
        if fixed and len(value) != len(args):
            raise _Wrong(f"expected an array of {len(args)} items, got {len(value)}")
        items, errors = [], []
        for i, item in enumerate(value):
            item_type = args[i] if fixed else element
            try:
                items.append(conv.structure(item, item_type))
            except Exception as exc:  # noqa: BLE001 - collected, reported by key
                errors.append(_note(exc, i, item_type))
        if errors:
            raise IterableValidationError(f"While structuring {t!r}", errors, t)
        return result(items)

    return hook


def _mapping_hook(t: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = typing.get_args(t)
    key_type, value_type = args if len(args) == 2 else (str, Any)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _wrong("a table", value)
        items, errors = {}, []
        for key, item in value.items():
            try:
                items[conv.structure(key, key_type)] = conv.structure(item, value_type)
            except Exception as exc:  # noqa: BLE001 - collected, reported by key
                errors.append(_note(exc, key, value_type))
        if errors:
            raise IterableValidationError(f"While structuring {t!r}", errors, t)
        return items

    return hook


def _attrs_hook(t: type, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    structure = make_dict_structure_fn(t, conv)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _wrong("a table", value)
        return structure(value, t)

    return hook


def _choice_hook(t: Any) -> Callable[[Any, Any], Any]:
    if isinstance(t, type) and issubclass(t, enum.Enum):
        members = {(type(m.value), m.value): m for m in t}
    else:
        members = {(type(v), v): v for v in typing.get_args(t)}

    def hook(value: Any, _: Any) -> Any:
        try:
            return members[(type(value), value)]
        except (KeyError, TypeError):
            raise _wrong(_describe(t), value) from None

    return hook


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for t in (bool, int, float, str):
        conv.register_structure_hook(t, _strict(t))
    conv.register_structure_hook(Path, _path)
    conv.register_structure_hook(datetime.datetime, _datetime)
    conv.register_structure_hook_factory(lambda t: _origin(t) in _SEQUENCES, lambda t: _sequence_hook(t, conv))
    conv.register_structure_hook_factory(lambda t: _origin(t) in _MAPPINGS, lambda t: _mapping_hook(t, conv))
    conv.register_structure_hook_factory(
        lambda t: _origin(t) is typing.Literal or (isinstance(t, type) and issubclass(t, enum.Enum)), _choice_hook
    )
    conv.register_structure_hook_factory(lambda t: isinstance(t, type) and attrs.has(t), lambda t: _attrs_hook(t, conv))
    return conv


_CONVERTER = _converter()
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _join(path: str, part: int | str) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    name = part if _BARE_KEY.fullmatch(part) else repr(part)
    return f"{path}.{name}" if path else name


def _message(exc: BaseException, t: Any) -> str:
    if isinstance(exc, _Wrong):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"missing; expected {_describe(t)}" if t is not None else "missing"
    if isinstance(exc, cattrs.StructureHandlerNotFoundError):
        return f"the module's Settings has a type that cannot be read from a sheet: {exc}"
    if isinstance(exc, (ValueError, TypeError)) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return f"invalid value ({type(exc).__name__}: {exc})"


def _blame(path: str, cl: type, exc: BaseException) -> tuple[str, str]:
    """Key and message of an error the ``Settings`` class raised while being built.

    A validator's message usually starts with the attribute's name (``"votes: ..."``,
    attrs' ``"'votes' must be ..."``); that name becomes the key.
    """
    message = _message(exc, None)
    names = sorted((a.name for a in attrs.fields(cl)), key=len, reverse=True) if attrs.has(cl) else []
    for name in names:
        if message.startswith(f"{name}: "):
            return _join(path, name), message[len(name) + 2 :]
        if message.startswith((f"'{name}' ", f"{name} ")):
            return _join(path, name), message
    return path, message


def _problems(exc: BaseException, path: str, t: Any = None) -> Iterator[tuple[str, str]]:
    """(key, message) for every leaf error of a cattrs error, keys spelled as in TOML.

    The same walk as :func:`cattrs.transform_error`, but with each unknown key reported
    under its own name (with a suggestion) and validator errors under the attribute named
    in their message.
    """
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for inner, attribute in with_notes:
            yield from _problems(inner, _join(path, attribute.name), attribute.type)
        known = [a.name for a in attrs.fields(exc.cl) if a.init] if attrs.has(exc.cl) else []
        for inner in without:
            if isinstance(inner, ForbiddenExtraKeysError):
                for key in sorted(inner.extra_fields):
                    yield _join(path, key), _unknown(key, known, "key") if known else "unknown key; expected no settings"
            else:
                yield _blame(path, exc.cl, inner)
    elif isinstance(exc, IterableValidationError):
        with_notes, without_items = exc.group_exceptions()
        for inner, item in with_notes:
            yield from _problems(inner, _join(path, item.index), item.type)
        for inner in without_items:
            yield path, _message(inner, None)
    elif isinstance(t, type) and attrs.has(t) and isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, _Wrong):
        # A validator's error that cattrs did not wrap (older cattrs raise it as it is).
        yield _blame(path, t, exc)
    else:
        yield path, _message(exc, t)


def read_settings(settings_class: type, data: Mapping[str, Any]) -> tuple[Any, list[tuple[str, str]]]:
    """Validate a sheet's ``[settings]`` table into ``settings_class``.

    Args:
        settings_class: the module's ``Settings`` (an attrs class).
        data: the table as parsed from TOML.

    Returns:
        ``(settings, [])``, or ``(None, problems)`` where each problem is ``(key, message)``
        and ``key`` is the setting's path in the table (``votes_per_subscriber``,
        ``questions[0].answer``; ``""`` for the table as a whole). Never raises.
    """
    try:
        return _CONVERTER.structure(dict(data), settings_class), []
    except Exception as exc:  # noqa: BLE001 - a module's Settings may raise anything
        problems = list(_problems(exc, "", settings_class))
        return None, problems or [("", _message(exc, None))]
