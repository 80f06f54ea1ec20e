"""Televoting: subscribers vote for one of a fixed set of choices; votes are tallied per choice.

A sheet::

    module = "vote"
    keywords = ["VOTE"]
    response = "Thank you! Your vote for {choice} has been counted."

    [settings]
    choices = { GRE = "Greece", UK = "United Kingdom" }
    votes_per_subscriber = 1
    change_of_vote = "reject"

A choice is named by its code or its label, in any case, with or without accents or
punctuation: "VOTE gre", "vote Greece", "Vote united-kingdom!". When the keyword itself is a
choice's code or label (a sheet may list ``keywords = ["GRE", "UK"]``), the keyword alone is a
vote for it.

Settings:
    ``choices`` (code → label, at least one; codes single words of at most 64 characters,
    labels at most 200; no code or label may name two choices);
    ``votes_per_subscriber`` (at least 1, default 1);
    ``change_of_vote``: ``"reject"`` (default: votes beyond the limit are refused with the
    ``already_voted`` text), ``"replace"`` (a new vote withdraws the subscriber's previous
    one; needs ``votes_per_subscriber = 1``) or ``"allow"`` (every vote counts, no limit;
    needs ``votes_per_subscriber = 1``, which it ignores).

Texts (``response`` and ``[responses]``), with their values:
    ``response`` — a counted vote; default "Thank you! Your vote for {choice} has been
    counted." Values: ``{choice}`` (label), ``{code}``, ``{remaining}`` (votes left;
    ``"unlimited"`` with ``allow``).
    ``changed`` — a replaced vote for a different choice; default "Your vote has been changed
    to {choice}." Values: as ``response`` plus ``{previous}`` (the earlier label).
    ``already_voted`` — the limit is reached; default "You have already voted, thank you! Your
    vote was for {choice}." Values: ``{choice}``, ``{code}`` (the latest vote), ``{limit}``.
    ``invalid_choice`` — no choice named; default "Sorry, that is not one of the choices. Send
    {keyword} followed by one of: {choices}". Values: ``{keyword}``, ``{choices}``
    ("GRE (Greece), UK (United Kingdom)").

State: ``{"votes": <votes counted>, "choice": <code of the latest vote>}``.

Records: ``Record("vote", code)`` per counted vote (``replace=True`` with ``"replace"``).
Facts: ``RecordFact(label, "voted for")``.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from modules._common import (
    check_mapping,
    in_range,
    key,
    keyword_of,
    module_result,
    percent,
    totals_of,
    validator,
    words,
)
from modules.api import Message, ModuleContext, ModuleResult, Record, RecordFact, Reply, SetState, Total

__all__ = ["CHANGE_OF_VOTE", "VoteModule", "VoteSettings"]

#: The accepted values of ``change_of_vote``.
CHANGE_OF_VOTE = ("reject", "replace", "allow")

RESPONSE = "Thank you! Your vote for {choice} has been counted."
CHANGED = "Your vote has been changed to {choice}."
ALREADY_VOTED = "You have already voted, thank you! Your vote was for {choice}."
INVALID_CHOICE = "Sorry, that is not one of the choices. Send {keyword} followed by one of: {choices}"


def _check_change(name: str, value: object) -> None:
    if value not in CHANGE_OF_VOTE:
        raise ValueError(f"{name}: must be one of {', '.join(map(repr, CHANGE_OF_VOTE))}, got {value!r}")


@attrs.frozen
class VoteSettings:
    """The ``[settings]`` of a vote campaign (see the module's documentation)."""

    choices: dict[str, str] = attrs.field(validator=validator(check_mapping, what="choice"))
    votes_per_subscriber: int = attrs.field(default=1, validator=validator(in_range, minimum=1, maximum=1_000_000, integer=True))
    change_of_vote: str = attrs.field(default="reject", validator=validator(_check_change))

    def __attrs_post_init__(self) -> None:
        if self.change_of_vote != "reject" and self.votes_per_subscriber != 1:
            raise ValueError(
                f"votes_per_subscriber: must be 1 with change_of_vote = {self.change_of_vote!r} "
                f"(got {self.votes_per_subscriber}); only 'reject' limits votes to more than one"
            )

    def find(self, text: str) -> str | None:
        """The code of the choice ``text`` names by code or label, or ``None``."""
        wanted = key(text)
        if not wanted:
            return None
        for code, label in self.choices.items():
            if wanted in (key(code), key(label)):
                return code
        return None

    def find_in(self, text: str) -> str | None:
        """The choice ``text`` names: all of it, else its first words followed by a comment
        ("GRE what a match!", "GRE GRE GRE"). None when it names none, or names another choice
        after the first ("GRE or UK"): that vote is ambiguous."""
        code = self.find(text)
        if code is not None:
            return code
        found = words(text)
        for n in range(len(found) - 1, 0, -1):
            code = self.find(" ".join(found[:n]))
            if code is None:
                continue
            rest = found[n:]
            runs = (" ".join(rest[i:j]) for i in range(len(rest)) for j in range(i + 1, len(rest) + 1))
            return None if any(self.find(run) not in (None, code) for run in runs) else code
        return None

    def listing(self) -> str:
        """The choices as one line for a reply: ``"GRE (Greece), UK (United Kingdom)"``."""
        return ", ".join(
            label if key(code) == key(label) else f"{code} ({label})" for code, label in self.choices.items()
        )


class VoteModule:
    """Count one vote per subscriber (or several, or a changed one) for a choice."""

    Settings = VoteSettings

    def handle(self, ctx: ModuleContext, message: Message) -> ModuleResult:
        """Count a vote, or say why not.

        Args:
            ctx: the campaign, its :class:`VoteSettings` and the subscriber's state.
            message: "VOTE <code or label>", or a keyword that is itself a choice.

        Returns:
            The vote's record, fact, new state and reply; or only a reply when the vote is
            refused (limit reached, no such choice).
        """
        settings: VoteSettings = ctx.settings
        campaign = ctx.campaign
        state = ctx.subscriber.state
        votes = _count(state.get("votes"))
        previous = state.get("choice")
        previous_label = settings.choices.get(previous, previous) if isinstance(previous, str) else ""

        if settings.change_of_vote == "reject" and votes >= settings.votes_per_subscriber:
            template = campaign.text("already_voted", ALREADY_VOTED)
            values = {"choice": previous_label, "code": previous or "", "limit": settings.votes_per_subscriber}
            return module_result([Reply(template, values)])

        code = settings.find_in(message.args) if message.args else None
        if code is None and not message.args and message.keyword:
            code = settings.find(message.keyword)
        if code is None:
            values = {"keyword": keyword_of(campaign, message), "choices": settings.listing()}
            return module_result([Reply(campaign.text("invalid_choice", INVALID_CHOICE), values)])

        label = settings.choices[code]
        template = campaign.response or RESPONSE
        if settings.change_of_vote == "replace":
            votes = 1
            remaining: int | str = 0
            if previous_label and previous != code:
                template = campaign.text("changed", CHANGED)
        else:
            votes += 1
            remaining = "unlimited" if settings.change_of_vote == "allow" else settings.votes_per_subscriber - votes
        values = {"choice": label, "code": code, "remaining": remaining, "previous": previous_label}
        return module_result(
            [
                Record("vote", code, replace=settings.change_of_vote == "replace"),
                RecordFact(label, "voted for"),
                SetState({"votes": votes, "choice": code}),
                Reply(template, values),
            ]
        )

    def summarise(self, settings: VoteSettings, totals: Sequence[Total]) -> list[tuple[str, str]]:
        """The tally: one line per choice, most votes first, with its share; then the total.

        Args:
            settings: the campaign's settings (for the labels and choices without votes).
            totals: the campaign's record totals.

        Returns:
            ``[("Greece (GRE)", "12 (60.0%)"), ..., ("Total votes", "20")]``. Votes for codes
            no longer in the sheet are listed under their code.
        """
        votes = totals_of(totals, "vote")
        order = list(settings.choices) + sorted(code for code in votes if code not in settings.choices)
        counts = {code: votes[code].count if code in votes else 0 for code in order}
        everyone = sum(counts.values())
        ranked = sorted(order, key=lambda code: (-counts[code], order.index(code)))
        lines = []
        for code in ranked:
            label = settings.choices.get(code)
            name = code if label is None else label if key(label) == key(code) else f"{label} ({code})"
            lines.append((name, f"{counts[code]} ({percent(counts[code], everyone)})"))
        lines.append(("Total votes", str(everyone)))
        return lines


def _count(value: object) -> int:
    """A count kept in state (0 for a missing or damaged value)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
