"""Campaign sheets: one TOML file per campaign, read into routing rules and module instances.

Every ``*.toml`` file in ``[gateway] campaigns_dir`` is one campaign (a *project sheet*).
Files are read in file-name order; other files, and files whose name starts with a dot
(editor backups), are ignored. A sheet has these keys::

    name = "euro2004-final-vote"       # required; 1 to 64 of A-Z a-z 0-9 _ . -, unique among sheets
    owner = "Channel 5 Interactive"    # required; the data user responsible for the campaign
    status = "run"                     # "run" (default) or "done": closed whatever the dates
    module = "vote"                    # required; an installed campaign module
    project_type = "interactive-tv"    # required; "mobile-marketing", "interactive-tv",
                                       #   "interactive-radio", "print", "event" or "other"
    content = "interaction"            # required; "information", "interaction" or "advertising"
    short_code = "4160"                # required; 3 to 6 digits, quoted
    keywords = ["VOTE", "ΨΗΦΟΣ"]       # required; the keyword and its aliases, single words of
                                       #   letters and digits, distinct ignoring case and accents
    starts = 2004-07-01T18:00:00Z      # optional; a TOML date-time, unquoted; without an offset
    ends = 2004-07-04T21:00:00Z        #   it is UTC. Open from starts (inclusive) to ends
                                       #   (exclusive); ends must be after starts
    response = "Thanks! Your vote for {choice} is counted."      # optional; the main reply
    closed_response = "Voting is closed."                          # optional; outside the window
    not_understood = "Text VOTE and a team code, e.g. VOTE GRE."   # optional; unusable arguments
    opt_in = "single"                  # optional; how joining an alerts list grants marketing
                                       #   consent: "single" (at once) or "confirmed" (after YES)
    opt_in_request = "Reply YES to get alerts from {campaign}."    # optional; the YES request

    [responses]                        # optional; more named reply templates for the module
    already_voted = "You have voted already."

    [settings]                         # the module's own settings, checked against its Settings
    choices = { GRE = "Greece", POR = "Portugal" }
    votes_per_subscriber = 1

Two running campaigns may share a keyword on one short code only while their windows do not
overlap (see :mod:`routing.table`); a keyword that is also a system keyword (``[keywords]``
in ``gatewayd.toml``) is refused.

:func:`load_campaigns` never raises for a bad sheet. Each file is checked on its own and
every problem is reported with its file, table and key. A bad sheet disables only its own
campaign, and a campaign that was running keeps its last good version (it is *stale*) until
its file is fixed: an edit that does not validate, or whose name or keywords collide with
another campaign, never takes a running campaign down. In a collision the campaign that was
already running wins over a changed or new one; among equals the earlier file name wins.
"""

from __future__ import annotations

import datetime
import enum
import os
import re
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import structlog
import trio

from gatewayd.config import (
    _CAMPAIGN_NAME_RE,
    _SHORT_CODE_RE,
    ConfigProblem,
    _Check,
    _Choice,
    _Invalid,
    _show,
    _Str,
    _syntax_problem,
    _unknown,
    _Words,
)
from gatewayd.plugins import ModuleLoadError, ModuleRegistry, read_settings
from modules.api import CampaignInfo, frozen_mapping
from routing.table import CampaignRule, Conflict, ConflictReason, GlobalKeywords, RoutingTable, ShortCodeRule

__all__ = [
    "CampaignSet",
    "CampaignSheet",
    "Content",
    "LoadedCampaign",
    "ProjectType",
    "Status",
    "check_campaigns",
    "load_campaigns",
    "read_sheet",
    "sheet_files",
    "watch_campaigns",
]

log = structlog.get_logger("gatewayd.sheets")


class Status(enum.StrEnum):
    """Whether a campaign takes part in routing."""

    #: Open within its window.
    RUN = "run"
    #: Closed whatever the dates: its keywords get the closed response.
    DONE = "done"


class ProjectType(enum.StrEnum):
    """The medium a campaign runs in, for reports."""

    MOBILE_MARKETING = "mobile-marketing"
    INTERACTIVE_TV = "interactive-tv"
    INTERACTIVE_RADIO = "interactive-radio"
    PRINT = "print"
    EVENT = "event"
    OTHER = "other"


class Content(enum.StrEnum):
    """What a campaign sends, which the privacy policy may treat differently."""

    INFORMATION = "information"
    INTERACTION = "interaction"
    ADVERTISING = "advertising"


@attrs.frozen
class CampaignSheet:
    """One valid campaign sheet."""

    #: The file, as the directory was named to :func:`load_campaigns` joined with its name.
    path: Path
    name: str
    owner: str
    status: Status
    #: The module's entry-point name.
    module: str
    project_type: ProjectType
    content: Content
    short_code: str
    keywords: tuple[str, ...]
    #: Opening time (UTC epoch seconds, inclusive); None: open since forever.
    starts: float | None
    #: Closing time (UTC epoch seconds, exclusive); None: never closes.
    ends: float | None
    #: The main response template; "" when the sheet has none.
    response: str = ""
    closed_response: str | None = None
    not_understood: str | None = None
    #: The ``[responses]`` table: name -> template.
    responses: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping)
    #: The ``[settings]`` table, validated: an instance of the module's ``Settings``.
    settings: Any = None
    #: "single": subscribing grants marketing consent at once; "confirmed": after a YES.
    opt_in: str = "single"
    #: The request for that YES (``{campaign}`` is the sheet's name).
    opt_in_request: str = "Reply YES to confirm you want messages from {campaign}. Text STOP to opt out."
    #: What :meth:`info` returns, made once: the sheet is frozen and so is the CampaignInfo.
    _info: CampaignInfo = attrs.field(init=False, eq=False, repr=False)

    @_info.default
    def _make_info(self) -> CampaignInfo:
        responses = {**self.responses, "closed": self.closed_response or "", "not_understood": self.not_understood or ""}
        return CampaignInfo(
            name=self.name,
            owner=self.owner,
            short_code=self.short_code,
            keywords=self.keywords,
            response=self.response,
            responses=responses,
        )

    def info(self) -> CampaignInfo:
        """The parts of the sheet the module sees; ``responses`` has "closed" and
        "not_understood" ("" when the sheet has none) besides the ``[responses]``."""
        return self._info

    def rule(self) -> CampaignRule:
        """The campaign's routing rule; its source is the sheet's file name."""
        return CampaignRule(
            campaign=self.name,
            short_code=self.short_code,
            keywords=self.keywords,
            starts=self.starts,
            ends=self.ends,
            running=self.status is Status.RUN,
            source=self.path.name,
        )


@attrs.frozen
class LoadedCampaign:
    """A sheet and the instance of its module that serves it."""

    sheet: CampaignSheet
    #: The module class, instantiated once with no arguments.
    module: object


@attrs.frozen
class CampaignSet:
    """The campaigns in force: an immutable snapshot, replaced whole on reload."""

    #: name -> campaign, in file-name order.
    campaigns: Mapping[str, LoadedCampaign] = attrs.field(converter=MappingProxyType)
    #: The routing table of these campaigns.
    table: RoutingTable
    #: file -> its problems, for every sheet that currently fails.
    problems: Mapping[str, tuple[ConfigProblem, ...]] = attrs.field(converter=MappingProxyType)
    #: Campaigns running on their last good version because their file now fails.
    stale: frozenset[str]
    #: When the set was loaded (UTC epoch seconds).
    loaded_at: float

    def get(self, name: str) -> LoadedCampaign | None:
        """The campaign called ``name``, or None."""
        return self.campaigns.get(name)


# --- one sheet -------------------------------------------------------------------------------


@attrs.frozen
class _ShortCode(_Str):
    def parse(self, value: Any) -> str:
        if type(value) is int:
            self.fail(value, f"{value} (quote it)")
        return super().parse(value)


@attrs.frozen
class _Time(_Check):
    """A TOML date-time; one without an offset is UTC. Parsed to epoch seconds."""

    what = "a date and time such as 2004-07-01T18:00:00Z (UTC when it has no offset)"

    def parse(self, value: Any) -> float:
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=datetime.UTC)
            return value.timestamp()
        if isinstance(value, datetime.date):
            self.fail(value, f"the date {value.isoformat()} without a time")
        if isinstance(value, datetime.time):
            self.fail(value, f"the time {value.isoformat()} without a date")
        if isinstance(value, str):
            self.fail(value, f"the string {_show(value)} (write the date and time without quotes)")
        self.fail(value)


_TEXT = _Str(1, 1000)

#: Top-level key -> its check, for the plain values; None marks the tables.
_KEYS: dict[str, _Check | None] = {
    "name": _Str(1, 64, _CAMPAIGN_NAME_RE, "a name of 1 to 64 characters from A-Z a-z 0-9 _ . -"),
    "owner": _Str(1, 200, re.compile(r"(?s).*\S.*"), "a non-empty string naming the data user responsible"),
    "status": _Choice(tuple(s.value for s in Status)),
    "module": _Str(1, 100, what="the name of an installed campaign module"),
    "project_type": _Choice(tuple(p.value for p in ProjectType)),
    "content": _Choice(tuple(c.value for c in Content)),
    "short_code": _ShortCode(3, 6, _SHORT_CODE_RE, "a string of 3 to 6 digits"),
    "keywords": _Words(example='["VOTE", "ΨΗΦΟΣ"]'),
    "starts": _Time(),
    "ends": _Time(),
    "response": _TEXT,
    "closed_response": _TEXT,
    "not_understood": _TEXT,
    "opt_in": _Choice(("single", "confirmed")),
    "opt_in_request": _TEXT,
    "responses": None,
    "settings": None,
}
_REQUIRED = ("name", "owner", "module", "project_type", "content", "short_code", "keywords")
#: Responses with a key of their own at the top level.
_RESERVED_RESPONSES = {"closed": "closed_response", "not_understood": "not_understood"}


def _read_toml(path: Path, file: str) -> tuple[dict[str, Any] | None, ConfigProblem | None]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f), None
    except FileNotFoundError:
        return None, ConfigProblem(file, "", "", "file not found")
    except tomllib.TOMLDecodeError as exc:
        return None, _syntax_problem(file, exc)
    except UnicodeDecodeError as exc:
        return None, ConfigProblem(file, "", "", f"expected UTF-8 text: {exc.reason} at byte {exc.start}")
    except OSError as exc:
        return None, ConfigProblem(file, "", "", f"cannot read the file: {exc.strerror}")


def read_sheet(path: Path, registry: ModuleRegistry) -> tuple[CampaignSheet | None, list[ConfigProblem]]:
    """Read and validate one campaign sheet.

    Args:
        path: the file; problems name it as given.
        registry: the installed modules, for ``module`` and ``[settings]``.

    Returns:
        ``(sheet, [])``, or ``(None, problems)`` with every problem found in the file.
        Never raises.
    """
    file = os.fspath(path)
    data, broken = _read_toml(path, file)
    if data is None:
        return None, [broken] if broken else []
    problems: list[ConfigProblem] = []

    def problem(table: str, key: str, message: str) -> None:
        problems.append(ConfigProblem(file, table, key, message))

    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in _KEYS:
            problem("", key, _unknown(key, _KEYS, "key"))
            continue
        check = _KEYS[key]
        if check is None:
            if not isinstance(raw, dict):
                problem("", key, f"expected a table [{key}], got {_show(raw)}")
            continue
        try:
            values[key] = check.parse(raw)
        except _Invalid as exc:
            problem("", key, str(exc))
    for key in _REQUIRED:
        if key not in data:
            problem("", key, f"missing; expected {_KEYS[key].describe()}")  # type: ignore[union-attr]
    starts, ends = values.get("starts"), values.get("ends")
    if starts is not None and ends is not None and ends <= starts:
        problem("", "ends", f"expected a time after starts ({_iso(starts)}), got {_iso(ends)}")

    responses = data.get("responses", {})
    if isinstance(responses, dict):
        for name, text in responses.items():
            if name in _RESERVED_RESPONSES:
                problem("responses", name, f"set by the top-level key {_RESERVED_RESPONSES[name]!r} instead")
                continue
            try:
                _TEXT.parse(text)
            except _Invalid as exc:
                problem("responses", name, str(exc))

    settings = None
    module = values.get("module")
    if module is not None:
        try:
            module_class = registry.require(module)
        except ModuleLoadError as exc:
            problem("", "module", str(exc))
        else:
            raw_settings = data.get("settings", {})
            if isinstance(raw_settings, dict):
                settings, wrong = read_settings(module_class.Settings, raw_settings)  # type: ignore[attr-defined]
                for key, message in wrong:
                    problem("settings", key, message)

    if problems:
        return None, problems
    sheet = CampaignSheet(
        path=path,
        name=values["name"],
        owner=values["owner"],
        status=Status(values.get("status", "run")),
        module=values["module"],
        project_type=ProjectType(values["project_type"]),
        content=Content(values["content"]),
        short_code=values["short_code"],
        keywords=values["keywords"],
        starts=starts,
        ends=ends,
        response=values.get("response", ""),
        closed_response=values.get("closed_response"),
        not_understood=values.get("not_understood"),
        responses=responses,
        settings=settings,
        opt_in=values.get("opt_in", "single"),
        opt_in_request=values.get("opt_in_request", CampaignSheet.__attrs_attrs__.opt_in_request.default),
    )
    try:
        sheet.rule()
    except ValueError as exc:
        # The checks above should have caught it; routing's own rules have the last word.
        return None, [ConfigProblem(file, "", "keywords", str(exc))]
    return sheet, []


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat().replace("+00:00", "Z")


def _instantiate(sheet: CampaignSheet, registry: ModuleRegistry) -> tuple[LoadedCampaign | None, list[ConfigProblem]]:
    """The sheet with a new instance of its module, or the problem of creating one."""
    try:
        module = registry.require(sheet.module)()
    except Exception as exc:  # noqa: BLE001 - a module's constructor may raise anything
        message = f"module {sheet.module!r} could not be started: {type(exc).__name__}: {exc}"
        return None, [ConfigProblem(os.fspath(sheet.path), "", "module", message)]
    return LoadedCampaign(sheet, module), []


# --- the directory ---------------------------------------------------------------------------


def sheet_files(directory: Path | None) -> list[Path]:
    """The sheets in ``directory``, sorted by file name: ``*.toml``, no dotfiles.

    Returns:
        ``directory / name`` for each; empty when ``directory`` is None or does not exist.

    Raises:
        OSError: the directory exists but cannot be listed.
    """
    if directory is None:
        return []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    return [directory / name for name in names if name.endswith(".toml") and not name.startswith(".") and (directory / name).is_file()]


_CAMPAIGN_REASONS = (ConflictReason.OVERLAP, ConflictReason.GLOBAL_KEYWORD, ConflictReason.DUPLICATE_CAMPAIGN)


@attrs.frozen
class _Outcome:
    campaigns: CampaignSet
    #: Conflicts about the short codes' defaults (they concern gatewayd.toml, not a sheet).
    short_code_conflicts: tuple[Conflict, ...]


def _resolve(
    files: list[Path],
    fresh: dict[str, LoadedCampaign],
    previous: dict[str, LoadedCampaign],
    problems: dict[str, list[ConfigProblem]],
    short_codes: Sequence[ShortCodeRule],
    keywords: GlobalKeywords,
) -> tuple[dict[str, tuple[LoadedCampaign, bool]], RoutingTable, tuple[Conflict, ...]]:
    """Pick one version per file so that names are unique and the rules do not conflict.

    A file's new version is used when it loaded; else its previous version (stale). What is
    already running comes first: unchanged or stale campaigns, then changed ones, then new
    ones, each in file order. A version that loses a name or a keyword is replaced by the
    file's previous version when there is one (and the choice is made again), else dropped.
    """
    position = {os.fspath(path): i for i, path in enumerate(files)}
    chosen: dict[str, tuple[LoadedCampaign, bool]] = {}
    for file in position:
        if file in fresh:
            chosen[file] = (fresh[file], False)
        elif file in previous:
            chosen[file] = (previous[file], True)

    def rank(file: str) -> tuple[int, int]:
        campaign, stale = chosen[file]
        old = previous.get(file)
        if old is None:
            return 2, position[file]
        same = stale or (campaign.sheet.name == old.sheet.name and campaign.sheet.rule() == old.sheet.rule())
        return (0 if same else 1), position[file]

    while True:
        order = sorted(chosen, key=rank)
        rejected: dict[str, list[ConfigProblem]] = {}
        owners: dict[str, str] = {}
        rules = []
        for file in order:
            name = chosen[file][0].sheet.name
            if name in owners:
                message = f"expected a name no other sheet has, got {name!r} again ({owners[name]} has it)"
                rejected.setdefault(file, []).append(ConfigProblem(file, "", "name", message))
                continue
            owners[name] = file
            rules.append(chosen[file][0].sheet.rule())
        table, conflicts = RoutingTable.build(rules, short_codes, keywords)
        others = []
        for conflict in conflicts:
            file = owners.get(conflict.rejected) if conflict.reason in _CAMPAIGN_REASONS else None
            if file is None:
                others.append(conflict)
            else:
                rejected.setdefault(file, []).append(ConfigProblem(file, "", "keywords", str(conflict)))
        if not rejected:
            return chosen, table, tuple(others)
        for file, found in rejected.items():
            problems.setdefault(file, []).extend(found)
            stale = chosen[file][1]
            if not stale and file in previous:
                chosen[file] = (previous[file], True)
            else:
                del chosen[file]


def _load(
    directory: Path | None,
    registry: ModuleRegistry,
    keywords: GlobalKeywords,
    short_codes: Sequence[ShortCodeRule],
    previous: CampaignSet | None,
    now: float | None,
) -> _Outcome:
    loaded_at = time.time() if now is None else now
    old = {os.fspath(c.sheet.path): c for c in previous.campaigns.values()} if previous else {}
    problems: dict[str, list[ConfigProblem]] = {}
    fresh: dict[str, LoadedCampaign] = {}
    try:
        files = sheet_files(directory)
        readable = files
    except OSError as exc:
        # Unlisted is not deleted: every campaign keeps running until the directory is readable.
        where = os.fspath(directory)  # type: ignore[arg-type]
        problems[where] = [ConfigProblem(where, "", "", f"cannot list the directory: {exc.strerror}")]
        files, readable = [c.sheet.path for c in old.values()], []
    for path in readable:
        file = os.fspath(path)
        sheet, found = read_sheet(path, registry)
        if sheet is not None:
            before = old.get(file)
            if before is not None and before.sheet == sheet and type(before.module) is registry.get(sheet.module):
                fresh[file] = before
            else:
                campaign, found = _instantiate(sheet, registry)
                if campaign is not None:
                    fresh[file] = campaign
        if found:
            problems[file] = found
    chosen, table, others = _resolve(files, fresh, old, problems, short_codes, keywords)
    order = {os.fspath(path): i for i, path in enumerate(files)}
    campaigns = {c.sheet.name: c for c, _ in chosen.values()}
    stale = frozenset(c.sheet.name for c, is_stale in chosen.values() if is_stale)
    result = CampaignSet(
        campaigns=campaigns,
        table=table,
        problems={file: tuple(problems[file]) for file in sorted(problems, key=lambda f: order.get(f, -1))},
        stale=stale,
        loaded_at=loaded_at,
    )
    return _Outcome(result, others)


def _detail(problem: ConfigProblem) -> str:
    """The problem without its file name."""
    return str(problem)[len(problem.file) + 2 :]


def load_campaigns(
    directory: Path | None,
    registry: ModuleRegistry,
    *,
    keywords: GlobalKeywords,
    short_codes: Sequence[ShortCodeRule] = (),
    previous: CampaignSet | None = None,
    now: float | None = None,
) -> CampaignSet:
    """Read every sheet in ``directory`` into the campaigns in force.

    Args:
        directory: the campaigns directory; None or a missing directory means no campaigns.
        registry: the installed modules.
        keywords: the system keywords, which no campaign may use.
        short_codes: the short codes' defaults, for the routing table.
        previous: the set in force, when reloading: a campaign whose file (by path) now
            fails keeps its version from there, and running campaigns win conflicts.
        now: the load time (UTC epoch seconds); default the clock.

    Returns:
        The new set. Never raises for a bad sheet: its problems are in ``problems`` and
        logged (``campaign_invalid``, ``campaign_stale``, then ``campaigns_loaded``).
    """
    outcome = _load(directory, registry, keywords, short_codes, previous, now)
    result = outcome.campaigns
    for file, found in result.problems.items():
        for problem in found:
            log.error("campaign_invalid", file=file, problem=_detail(problem))
    for campaign in result.campaigns.values():
        if campaign.sheet.name in result.stale:
            log.warning("campaign_stale", campaign=campaign.sheet.name, file=os.fspath(campaign.sheet.path))
    for conflict in outcome.short_code_conflicts:
        log.warning("short_code_default_ignored", short_code=conflict.short_code, problem=str(conflict))
    log.info(
        "campaigns_loaded",
        count=len(result.campaigns),
        names=list(result.campaigns),
        failed=len(result.problems),
        stale=sorted(result.stale),
    )
    return result


def check_campaigns(
    directory: Path | None,
    registry: ModuleRegistry,
    keywords: GlobalKeywords,
    short_codes: Sequence[ShortCodeRule] = (),
    *,
    config_file: str = "gatewayd.toml",
) -> list[ConfigProblem]:
    """Every problem of the sheets in ``directory``, as ``check-config`` reports them.

    Args:
        directory: the campaigns directory.
        registry: the installed modules.
        keywords: the system keywords.
        short_codes: the short codes' defaults; a default that is not a campaign on its
            short code is a problem of ``[short_code]`` in ``config_file``.
        config_file: how to name ``gatewayd.toml`` in those problems.

    Returns:
        The problems, file by file in file-name order; empty when all is well. Nothing is
        logged.
    """
    outcome = _load(directory, registry, keywords, short_codes, None, None)
    found = [problem for problems in outcome.campaigns.problems.values() for problem in problems]
    for conflict in outcome.short_code_conflicts:
        table = f"short_code {conflict.short_code!r}"
        found.append(ConfigProblem(config_file, table, "default_campaign", str(conflict)))
    return found


# --- watching --------------------------------------------------------------------------------


def _snapshot(directory: Path) -> frozenset[tuple[str, int, int]]:
    # A few dozen stat calls take microseconds, less than a hop to a worker thread would.
    seen = set()
    try:
        for path in sheet_files(directory):
            try:
                stat = path.stat()
            except OSError:
                continue
            seen.add((path.name, stat.st_mtime_ns, stat.st_size))
    except OSError:
        pass
    return frozenset(seen)


async def watch_campaigns(directory: Path | None, interval: float, on_change: Callable[[], object]) -> None:
    """Call ``on_change()`` whenever a sheet in ``directory`` is added, changed or removed.

    The directory is looked at every ``interval`` seconds; a sheet counts as changed when
    its modification time or size changes. Returns at once when ``directory`` is None or
    ``interval`` is 0 (watching is off); otherwise runs until cancelled. An exception from
    ``on_change`` is logged (``campaigns_reload_failed``) and watching goes on.

    Args:
        directory: the campaigns directory (it may appear and disappear).
        interval: seconds between looks.
        on_change: called, synchronously, after each change seen.
    """
    if directory is None or interval <= 0:
        return
    last = _snapshot(directory)
    while True:
        await trio.sleep(interval)
        current = _snapshot(directory)
        if current == last:
            continue
        last = current
        try:
            on_change()
        except Exception as exc:  # noqa: BLE001 - the watcher outlives a failed reload
            log.error("campaigns_reload_failed", error=f"{type(exc).__name__}: {exc}")
