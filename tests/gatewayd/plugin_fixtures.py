"""Campaign module classes for the plugin and sheet tests, reached through hand-built entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Literal

import attrs

from modules.api import Message, ModuleContext, ModuleResult, Reply


def entry_point(name: str, target: str) -> EntryPoint:
    """An entry point of the gatewayd.modules group; ``target`` is an attribute of this module."""
    value = target if ":" in target else f"tests.gatewayd.plugin_fixtures:{target}"
    return EntryPoint(name=name, value=value, group="gatewayd.modules")


class Good:
    """A vote-like module with typed, validated settings."""

    @attrs.frozen
    class Settings:
        choices: dict[str, str]
        votes_per_subscriber: int = attrs.field(default=1, validator=attrs.validators.ge(1))
        change_of_vote: Literal["replace", "ignore"] = "replace"
        weight: float = 1.0
        tags: tuple[str, ...] = ()

        def __attrs_post_init__(self) -> None:
            if not self.choices:
                raise ValueError("choices: expected at least one choice, got an empty table")

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        return ModuleResult((Reply(ctx.campaign.response, {"choice": message.args}),))


@attrs.frozen
class Question:
    """One quiz question."""

    text: str
    options: tuple[str, ...]
    answer: str

    def __attrs_post_init__(self) -> None:
        if self.answer not in self.options:
            raise ValueError(f"answer: expected one of the options, got {self.answer!r}")


class Quiz:
    """A module whose settings nest tables in an array."""

    @attrs.frozen
    class Settings:
        questions: tuple[Question, ...]

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        return ModuleResult()


class Bare:
    """A module that takes no settings."""

    @attrs.frozen
    class Settings:
        pass

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        return ModuleResult()


class Exploding:
    """A module whose constructor fails."""

    @attrs.frozen
    class Settings:
        pass

    def __init__(self) -> None:
        raise RuntimeError("no licence key")

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        return ModuleResult()


class NoSettings:
    """Not a module: it has no Settings."""

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        return ModuleResult()


class NoHandle:
    """Not a module: it has no handle method."""

    @attrs.frozen
    class Settings:
        pass


class PlainSettings:
    """Not a module: its Settings is not an attrs class."""

    class Settings:
        pass

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        return ModuleResult()


def not_a_class() -> None:
    """Not a module: a function."""


#: The modules the sheet tests install, by entry-point name.
INSTALLED = {
    "vote": "Good",
    "quiz": "Quiz",
    "bare": "Bare",
    "boom": "Exploding",
    "broken": "tests.gatewayd.no_such_plugin:Module",
}
