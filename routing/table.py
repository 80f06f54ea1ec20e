"""The routing table: which keyword on which short code reaches which campaign, and when.

The configuration turns each campaign sheet into a :class:`CampaignRule`, each short code
with a default campaign into a :class:`ShortCodeRule`, and the global keywords into
:class:`GlobalKeywords`. :meth:`RoutingTable.build` checks them against each other and
returns the table together with every :class:`Conflict` it found; the table holds only the
rules that can be routed unambiguously.

The rules of the build, all deterministic:

* **Earlier rules win.** The sequence is the configuration's order (the sheets sorted by
  file name); a later rule that conflicts with an earlier one is rejected *entirely*, with
  all its keywords, so a campaign is never half-routed. A rejected rule blocks nothing.
* **Overlap.** Two running campaigns may share a keyword on one short code only if their
  ``[starts, ends)`` windows do not overlap (``None`` is unbounded): weekly quizzes reuse
  one keyword. Keywords compare folded (:func:`routing.normalise.fold`), so "Ψήφος" and
  "ΨΗΦΟΣ" are the same keyword.
* **Done campaigns block nothing.** A campaign whose sheet says "done" (``running=False``)
  is always closed, so it never competes for MOs: it neither blocks a later campaign nor is
  rejected by an earlier one. It stays in the table so that its keyword still gets its
  "closed" answer when no other campaign with that keyword is open.
* **Global keywords win.** A campaign keyword that is also a global keyword (STOP, HELP,
  ...) could never be routed to the campaign, so the campaign is rejected.
* **Names are unique.** A second rule with a campaign name already seen is rejected.
* **Defaults.** A short code's default must be a campaign kept in the table on that same
  short code; otherwise the default is dropped (and reported). A short code given twice
  with different defaults keeps the first.

A keyword repeated within one sheet (after folding: "VOTE" and "vote") is not a conflict
between campaigns but a mistake in one sheet: :class:`CampaignRule` refuses it with a
``ValueError`` when the sheet is loaded, like any other invalid field, and the loader
reports that file alone.
"""

from __future__ import annotations

import bisect
import enum
import math
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import attrs

from routing.normalise import fold, is_single_word

__all__ = [
    "CampaignRule",
    "Conflict",
    "ConflictReason",
    "Entry",
    "GlobalKeywords",
    "KeywordSlot",
    "RoutingTable",
    "ShortCodeRule",
]

_BUILTIN_KINDS = ("stop", "start", "help")


def _non_empty(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _to_time(value: float | None) -> float | None:
    return None if value is None else float(value)


def _check_time(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite time or None, got {value!r}")


def _check_words(what: str, words: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}
    for word in words:
        if not isinstance(word, str) or not is_single_word(word):
            raise ValueError(f"{what} {word!r} is not a single word of letters and digits")
        folded = fold(word)
        if folded in seen:
            raise ValueError(f"{what} {word!r} repeats {seen[folded]!r}")
        seen[folded] = word


@attrs.frozen
class CampaignRule:
    """One campaign's routing: its short code, keywords and aliases, and when it is open.

    Raises ``ValueError`` at construction for an empty name or short code, a keyword that is
    not a single word, a keyword repeated after folding, a non-finite time, or a window that
    ends before it starts.
    """

    #: The campaign's name (unique in the configuration).
    campaign: str = attrs.field(validator=_non_empty)
    short_code: str = attrs.field(validator=_non_empty)
    #: The keyword and its aliases, in the sheet's spelling; may be empty for a campaign
    #: reached only as a default or through sessions.
    keywords: tuple[str, ...] = attrs.field(converter=tuple)
    #: Opening time (UTC epoch seconds, inclusive); None: open since forever.
    starts: float | None = attrs.field(default=None, converter=_to_time, validator=_check_time)
    #: Closing time (UTC epoch seconds, exclusive); None: never closes.
    ends: float | None = attrs.field(default=None, converter=_to_time, validator=_check_time)
    #: False when the sheet's status is "done": the campaign is closed whatever the time.
    running: bool = True
    #: The sheet's file name, for messages.
    source: str = ""

    @keywords.validator
    def _check_keywords(self, _attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        _check_words("keyword", value)

    def __attrs_post_init__(self) -> None:
        if self.starts is not None and self.ends is not None and self.ends <= self.starts:
            raise ValueError(
                f"campaign {self.campaign!r} ends ({self.ends}) before it starts ({self.starts})"
            )

    def is_open(self, now: float) -> bool:
        """Tell whether the campaign takes MOs at ``now``: running and ``starts <= now < ends``."""
        return (
            self.running
            and (self.starts is None or self.starts <= now)
            and (self.ends is None or now < self.ends)
        )

    def overlaps(self, other: CampaignRule) -> bool:
        """Tell whether the two ``[starts, ends)`` windows share an instant."""
        return (self.starts is None or other.ends is None or self.starts < other.ends) and (
            other.starts is None or self.ends is None or other.starts < self.ends
        )


@attrs.frozen
class ShortCodeRule:
    """A short code's own settings: the campaign that takes MOs no keyword matched."""

    short_code: str = attrs.field(validator=_non_empty)
    #: The default campaign, None for none.
    default_campaign: str | None = None


def _freeze_extra(value: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({kind: tuple(words) for kind, words in value.items()})


@attrs.frozen
class GlobalKeywords:
    """The keywords that mean the same on every short code, whatever campaign is running.

    ``extra`` adds kinds beyond stop/start/help ("yes" for a consent reply, "optout-all"),
    each with its words. Raises ``ValueError`` at construction when a word belongs to two
    kinds (after folding), is not a single word, or an extra kind is empty or reuses a
    built-in kind's name. A word listed twice within one kind is harmless and accepted.
    """

    stop: tuple[str, ...] = attrs.field(
        default=("STOP", "END", "CANCEL", "UNSUBSCRIBE", "QUIT", "STOPALL"), converter=tuple
    )
    start: tuple[str, ...] = attrs.field(default=("START",), converter=tuple)
    help: tuple[str, ...] = attrs.field(default=("HELP",), converter=tuple)
    extra: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=_freeze_extra, hash=False
    )
    # folded word -> (kind, the word as configured)
    _by_fold: dict[str, tuple[str, str]] = attrs.field(
        init=False, factory=dict, eq=False, hash=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        by_fold: dict[str, tuple[str, str]] = {}
        for kind, words in self.items():
            if not isinstance(kind, str) or not kind:
                raise ValueError(f"a global keyword kind must be a non-empty string, got {kind!r}")
            for word in words:
                if not isinstance(word, str) or not is_single_word(word):
                    raise ValueError(
                        f"global {kind} keyword {word!r} is not a single word of letters and digits"
                    )
                folded = fold(word)
                known = by_fold.get(folded)
                if known is not None and known[0] != kind:
                    raise ValueError(
                        f"global keyword {word!r} is both a {known[0]} and a {kind} keyword"
                    )
                by_fold.setdefault(folded, (kind, word))
        for kind in self.extra:
            if kind in _BUILTIN_KINDS:
                raise ValueError(f"extra global keyword kind {kind!r} is a built-in kind")
        object.__setattr__(self, "_by_fold", by_fold)

    def items(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Every kind with its words: stop, start, help, then the extra kinds."""
        builtin = (("stop", self.stop), ("start", self.start), ("help", self.help))
        return builtin + tuple(self.extra.items())

    def match(self, word: str) -> tuple[str, str] | None:
        """Look a word up, ignoring case and accents.

        Args:
            word: a word as typed.

        Returns:
            ``(kind, word as configured)``, or None when it is no global keyword.
        """
        return self._by_fold.get(fold(word))

    def kind_of(self, word: str) -> str | None:
        """The kind ("stop", "start", "help" or an extra kind) of a word, None for none."""
        found = self._by_fold.get(fold(word))
        return None if found is None else found[0]


class ConflictReason(enum.Enum):
    """Why a rule was left out of the table."""

    #: Same keyword, same short code, overlapping windows, both running.
    OVERLAP = "overlap"
    #: A campaign keyword is a global keyword.
    GLOBAL_KEYWORD = "global-keyword"
    #: A campaign name given twice.
    DUPLICATE_CAMPAIGN = "duplicate-campaign"
    #: A short code's default is not a campaign kept on that short code.
    UNKNOWN_DEFAULT = "unknown-default"
    #: A short code given twice with different defaults.
    DUPLICATE_SHORT_CODE = "duplicate-short-code"


def _who(name: str, source: str) -> str:
    return f"{source} ({name})" if source else f"campaign {name!r}"


@attrs.frozen
class Conflict:
    """A rule left out of the table, and the one it lost to.

    For an overlap, ``kept``/``rejected`` are campaign names and the sources their files;
    for a global keyword, ``kept`` is the global kind and ``kept_source`` is "". For the
    short code reasons, they are the default campaigns (the kept one "" when it is not
    known). ``str()`` gives the message an operator reads.
    """

    short_code: str
    #: The keyword in the rejected sheet's spelling ("" when no keyword is involved).
    keyword: str
    kept: str
    kept_source: str
    rejected: str
    rejected_source: str
    reason: ConflictReason = ConflictReason.OVERLAP

    def __str__(self) -> str:
        rejected = _who(self.rejected, self.rejected_source)
        if self.reason is ConflictReason.OVERLAP:
            return (
                f"keyword {self.keyword!r} on {self.short_code}: {rejected} overlaps "
                f"{_who(self.kept, self.kept_source)} in time"
            )
        if self.reason is ConflictReason.GLOBAL_KEYWORD:
            return (
                f"keyword {self.keyword!r} on {self.short_code}: {rejected} uses "
                f"a global {self.kept} keyword"
            )
        if self.reason is ConflictReason.DUPLICATE_CAMPAIGN:
            return (
                f"campaign {self.rejected!r} on {self.short_code}: {rejected} repeats the "
                f"name already used by {_who(self.kept, self.kept_source)}"
            )
        if self.reason is ConflictReason.UNKNOWN_DEFAULT:
            return (
                f"short code {self.short_code}: default campaign {self.rejected!r} is not "
                f"a campaign routed on {self.short_code}"
            )
        return (
            f"short code {self.short_code}: default {self.rejected or None!r} ignored, "
            f"the short code is already given the default {self.kept or None!r}"
        )


#: One campaign keyword in the table: the rule and the keyword in its sheet's spelling.
Entry = tuple[CampaignRule, str]


def _start_key(rule: CampaignRule) -> float:
    return -math.inf if rule.starts is None else rule.starts


def _closest_key(rule: CampaignRule, now: float) -> tuple[int, float]:
    # Smaller is nearer: windows containing now (only done campaigns are closed there), then
    # those already ended, then those not yet started; within each, the nearest in time. A
    # NaN ``now`` fits none and ranks last, leaving configuration order to decide.
    starts, ends = rule.starts, rule.ends
    if (starts is None or starts <= now) and (ends is None or now < ends):
        return 0, (math.inf if starts is None else now - starts)
    if ends is not None and ends <= now:
        return 1, now - ends
    if starts is not None and now < starts:
        return 2, starts - now
    return 3, 0.0


@attrs.frozen(eq=False)
class KeywordSlot:
    """The kept campaigns sharing one folded keyword on one short code.

    Running campaigns in a slot never overlap (the build rejects those that would), so
    sorted by start they are sorted by end too, and the one open at ``now`` is found by
    bisection: a year of weekly quizzes on one keyword costs no more than one campaign.
    """

    #: The entries in configuration order.
    entries: tuple[Entry, ...]
    # (configuration index, entry) of the running campaigns, sorted by start
    _running: tuple[tuple[int, Entry], ...] = attrs.field(repr=False)
    _starts: tuple[float, ...] = attrs.field(repr=False)
    # (configuration index, entry) of the done campaigns
    _done: tuple[tuple[int, Entry], ...] = attrs.field(repr=False)

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> KeywordSlot:
        """Index ``entries`` (given in configuration order)."""
        indexed = list(enumerate(entries))
        running = sorted(
            (item for item in indexed if item[1][0].running),
            key=lambda item: (_start_key(item[1][0]), item[0]),
        )
        return cls(
            tuple(entries),
            tuple(running),
            tuple(_start_key(entry[0]) for _index, entry in running),
            tuple(item for item in indexed if not item[1][0].running),
        )

    def pick(self, now: float) -> tuple[Entry, bool]:
        """The entry that answers at ``now``, and whether its campaign is open.

        The open campaign when there is one; else the nearest in time for the closed
        answer: a done campaign whose window contains ``now`` (the latest started), else
        the most recently ended, else the next to start; configuration order breaks ties.
        """
        entries = self.entries
        if len(entries) == 1:
            return entries[0], entries[0][0].is_open(now)
        position = bisect.bisect_right(self._starts, now)
        if position:
            entry = self._running[position - 1][1]
            if entry[0].is_open(now):
                return entry, True
        candidates: Sequence[tuple[int, Entry]]
        if math.isnan(now):
            candidates = tuple(enumerate(entries))
        else:
            # Only the neighbours of ``now`` among the running ones can be nearest.
            candidates = self._running[max(position - 1, 0) : position + 1] + self._done
        best = min(candidates, key=lambda item: (_closest_key(item[1][0], now), item[0]))
        return best[1], False


@attrs.frozen(eq=False)
class RoutingTable:
    """The rules that survived :meth:`build`, indexed for :func:`routing.router.route`.

    Built once per configuration snapshot and never changed; a reload builds a new one.
    The lookups are plain dicts keyed by folded words, so routing one MO costs a few dict
    lookups whatever the number of campaigns. :mod:`routing.router` reads these indexes
    directly (it is their one reader, and routing runs for every MO); everything else uses
    the methods.
    """

    global_keywords: GlobalKeywords
    # name -> rule, in configuration order
    _rules: dict[str, CampaignRule] = attrs.field(repr=False)
    # (short code, folded keyword) -> the kept rules with that keyword
    _keywords: dict[tuple[str, str], KeywordSlot] = attrs.field(repr=False)
    # short code -> default campaign name (present only when it is a kept campaign there)
    _defaults: dict[str, str] = attrs.field(repr=False)

    @classmethod
    def build(
        cls,
        rules: Sequence[CampaignRule],
        short_codes: Sequence[ShortCodeRule] = (),
        global_keywords: GlobalKeywords = GlobalKeywords(),
    ) -> tuple[RoutingTable, tuple[Conflict, ...]]:
        """Check the rules against each other and index those that can be kept.

        Args:
            rules: the campaigns in configuration order; earlier ones win conflicts.
            short_codes: the short codes' defaults; earlier ones win for a repeated code.
            global_keywords: the keywords every short code understands.

        Returns:
            The table and the conflicts, in the order found (rule by rule, then short code
            by short code). A campaign named in a conflict's ``rejected`` for a campaign
            reason is not in the table.
        """
        conflicts: list[Conflict] = []
        seen: dict[str, CampaignRule] = {}
        kept: dict[str, CampaignRule] = {}
        index: dict[tuple[str, str], list[Entry]] = {}
        for rule in rules:
            found = _check_rule(rule, seen, index, global_keywords)
            seen.setdefault(rule.campaign, rule)
            if found:
                conflicts.extend(found)
                continue
            kept[rule.campaign] = rule
            for word in rule.keywords:
                index.setdefault((rule.short_code, fold(word)), []).append((rule, word))
        defaults: dict[str, str] = {}
        given: dict[str, str | None] = {}
        for code in short_codes:
            name = code.default_campaign
            if code.short_code in given:
                first = given[code.short_code]
                if first != name:
                    conflicts.append(
                        Conflict(
                            code.short_code, "", first or "", "", name or "", "",
                            ConflictReason.DUPLICATE_SHORT_CODE,
                        )
                    )
                continue
            given[code.short_code] = name
            if name is None:
                continue
            target = kept.get(name)
            if target is None or target.short_code != code.short_code:
                conflicts.append(
                    Conflict(code.short_code, "", "", "", name, "", ConflictReason.UNKNOWN_DEFAULT)
                )
                continue
            defaults[code.short_code] = name
        keywords = {key: KeywordSlot.of(entries) for key, entries in index.items()}
        return cls(global_keywords, kept, keywords, defaults), tuple(conflicts)

    @property
    def campaigns(self) -> tuple[str, ...]:
        """The names of the campaigns kept, in configuration order."""
        return tuple(self._rules)

    @property
    def short_codes(self) -> tuple[str, ...]:
        """Every short code with a kept campaign or a default, sorted."""
        codes = {rule.short_code for rule in self._rules.values()}
        return tuple(sorted(codes | set(self._defaults)))

    def campaign(self, name: str) -> CampaignRule | None:
        """The kept rule of campaign ``name``, None when it is not in the table."""
        return self._rules.get(name)

    def default_for(self, short_code: str) -> str | None:
        """The default campaign of a short code, None when it has none."""
        return self._defaults.get(short_code)

    def entries(self, short_code: str, word: str) -> tuple[Entry, ...]:
        """The kept campaigns whose keyword on ``short_code`` folds like ``word``."""
        slot = self._keywords.get((short_code, fold(word)))
        return () if slot is None else slot.entries


def _check_rule(
    rule: CampaignRule,
    seen: Mapping[str, CampaignRule],
    index: Mapping[tuple[str, str], list[Entry]],
    global_keywords: GlobalKeywords,
) -> list[Conflict]:
    first = seen.get(rule.campaign)
    if first is not None:
        return [
            Conflict(
                rule.short_code, "", rule.campaign, first.source, rule.campaign, rule.source,
                ConflictReason.DUPLICATE_CAMPAIGN,
            )
        ]
    found: list[Conflict] = []
    for word in rule.keywords:
        glob = global_keywords.match(word)
        if glob is not None:
            found.append(
                Conflict(
                    rule.short_code, word, glob[0], "", rule.campaign, rule.source,
                    ConflictReason.GLOBAL_KEYWORD,
                )
            )
            continue
        if not rule.running:
            continue
        for other, _spelling in index.get((rule.short_code, fold(word)), ()):
            if other.running and rule.overlaps(other):
                found.append(
                    Conflict(
                        rule.short_code, word, other.campaign, other.source,
                        rule.campaign, rule.source,
                    )
                )
    return found
