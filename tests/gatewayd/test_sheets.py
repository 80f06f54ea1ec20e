"""Tests for gatewayd.sheets: campaign sheets, loading and reloading a directory of them, watching it."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gatewayd.plugins import find_modules
from gatewayd.sheets import (
    CampaignSet,
    CampaignSheet,
    Content,
    ProjectType,
    Status,
    check_campaigns,
    load_campaigns,
    read_sheet,
    sheet_files,
    watch_campaigns,
)
from modules.api import CampaignInfo
from routing.table import CampaignRule, GlobalKeywords, ShortCodeRule
from tests.gatewayd import plugin_fixtures as fx
from tests.gatewayd.plugin_fixtures import entry_point
from tests.gatewayd.test_config import toml_key, toml_value

REGISTRY = find_modules([entry_point(name, target) for name, target in fx.INSTALLED.items()], quiet=True)
KEYWORDS = GlobalKeywords()
DROP = object()
UTC = datetime.UTC


def value(v: Any) -> str:
    """TOML for a value, dates and times unquoted."""
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    return toml_value(v)


def dump_sheet(doc: dict[str, Any]) -> str:
    """TOML text for a sheet: scalars at the top, then one [table] per dict value."""
    lines = [f"{toml_key(k)} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{name}]")
            lines.extend(f"{toml_key(k)} = {value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def vote(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "vote",
        "owner": "Channel 5 Interactive",
        "module": "vote",
        "project_type": "interactive-tv",
        "content": "interaction",
        "short_code": "4160",
        "keywords": ["VOTE", "ΨΗΦΟΣ"],
        "response": "Thanks! Your vote for {choice} is counted.",
        "settings": {"choices": {"GRE": "Greece", "POR": "Portugal"}},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not DROP}


def write(directory: Path, name: str, doc: dict[str, Any] | str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else dump_sheet(doc), encoding="utf-8")
    return path


def load(directory: Path | None, previous: CampaignSet | None = None, **kwargs: Any) -> CampaignSet:
    kwargs.setdefault("keywords", KEYWORDS)
    return load_campaigns(directory, REGISTRY, previous=previous, now=1000.0, **kwargs)


def problems_of(tmp_path: Path, doc: dict[str, Any] | str) -> list[tuple[str, str, str]]:
    path = write(tmp_path, "sheet.toml", doc)
    sheet, problems = read_sheet(path, REGISTRY)
    assert sheet is None
    assert all(p.file == str(path) for p in problems)
    return [(p.table, p.key, p.message) for p in problems]


# --- one sheet -------------------------------------------------------------------------------


class TestValidSheet:
    def test_every_key(self, tmp_path: Path) -> None:
        """Every key of a complete sheet lands in its field, times as UTC epoch seconds."""
        doc = vote(
            status="done",
            starts=datetime.datetime(2004, 7, 1, 18, 0, tzinfo=UTC),
            ends=datetime.datetime(2004, 7, 4, 23, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            closed_response="Voting is closed.",
            not_understood="Text VOTE GRE or VOTE POR.",
            responses={"already": "You voted already."},
        )
        doc["settings"]["votes_per_subscriber"] = 2
        path = write(tmp_path, "vote.toml", doc)
        sheet, problems = read_sheet(path, REGISTRY)
        assert problems == []
        assert sheet == CampaignSheet(
            path=path,
            name="vote",
            owner="Channel 5 Interactive",
            status=Status.DONE,
            module="vote",
            project_type=ProjectType.INTERACTIVE_TV,
            content=Content.INTERACTION,
            short_code="4160",
            keywords=("VOTE", "ΨΗΦΟΣ"),
            starts=1088704800.0,
            ends=1088974800.0,
            response="Thanks! Your vote for {choice} is counted.",
            closed_response="Voting is closed.",
            not_understood="Text VOTE GRE or VOTE POR.",
            responses={"already": "You voted already."},
            settings=fx.Good.Settings(choices={"GRE": "Greece", "POR": "Portugal"}, votes_per_subscriber=2),
        )
        assert sheet.status == "done" and sheet.project_type == "interactive-tv" and sheet.content == "interaction"

    def test_defaults(self, tmp_path: Path) -> None:
        """Optional keys take their defaults: running, no window, no extra responses."""
        sheet, _ = read_sheet(write(tmp_path, "v.toml", vote(response=DROP)), REGISTRY)
        assert sheet is not None
        assert sheet.status is Status.RUN and (sheet.starts, sheet.ends) == (None, None)
        assert (sheet.response, sheet.closed_response, sheet.not_understood) == ("", None, None)
        assert dict(sheet.responses) == {}

    def test_local_datetime_is_utc(self, tmp_path: Path) -> None:
        """A date-time without an offset is read as UTC."""
        doc = vote(starts=datetime.datetime(2004, 7, 1, 18, 0), ends=datetime.datetime(2004, 7, 1, 18, 0, 1))
        sheet, _ = read_sheet(write(tmp_path, "v.toml", doc), REGISTRY)
        assert sheet is not None
        assert sheet.starts == datetime.datetime(2004, 7, 1, 18, 0, tzinfo=UTC).timestamp() and sheet.ends == sheet.starts + 1

    def test_info_for_the_module(self, tmp_path: Path) -> None:
        """info() gives the module the sheet's texts, with "closed" and "not_understood" among the responses."""
        doc = vote(closed_response="Closed.", responses={"already": "Again?"})
        sheet, _ = read_sheet(write(tmp_path, "v.toml", doc), REGISTRY)
        assert sheet is not None
        info = sheet.info()
        assert info == CampaignInfo(
            name="vote",
            owner="Channel 5 Interactive",
            short_code="4160",
            keywords=("VOTE", "ΨΗΦΟΣ"),
            response="Thanks! Your vote for {choice} is counted.",
            responses={"already": "Again?", "closed": "Closed.", "not_understood": ""},
        )
        assert info.text("closed") == "Closed." and info.text("not_understood", "Sorry?") == "Sorry?"

    def test_info_is_made_once_and_follows_evolve(self, tmp_path: Path) -> None:
        """Every call returns the same info; a sheet changed with evolve has its own, and the
        cached info takes no part in equality or repr."""
        sheet, _ = read_sheet(write(tmp_path, "v.toml", vote(responses={"already": "Again?"})), REGISTRY)
        assert sheet is not None
        assert sheet.info() is sheet.info()
        changed = attrs.evolve(sheet, name="other", not_understood="Eh?", responses={"already": "Twice?"})
        assert changed.info() == CampaignInfo(
            name="other",
            owner=sheet.owner,
            short_code=sheet.short_code,
            keywords=sheet.keywords,
            response=sheet.response,
            responses={"already": "Twice?", "closed": "", "not_understood": "Eh?"},
        )
        assert sheet.info().name == "vote"
        assert attrs.evolve(sheet) == sheet
        assert "CampaignInfo" not in repr(sheet)

    @given(
        closed=st.none() | st.text(max_size=5),
        not_understood=st.none() | st.text(max_size=5),
        response=st.text(max_size=5),
        responses=st.dictionaries(st.text(max_size=8), st.text(max_size=5), max_size=4),
    )
    def test_info_is_what_the_fields_give(
        self, closed: str | None, not_understood: str | None, response: str, responses: dict[str, str]
    ) -> None:
        """The cached info equals one built from the sheet's fields at the time of the call."""
        sheet = CampaignSheet(
            path=Path("v.toml"),
            name="vote",
            owner="o",
            status=Status.RUN,
            module="vote",
            project_type=ProjectType.OTHER,
            content=Content.INTERACTION,
            short_code="4160",
            keywords=("VOTE",),
            starts=None,
            ends=None,
            response=response,
            closed_response=closed,
            not_understood=not_understood,
            responses=responses,
        )
        responses.clear()
        assert sheet.info() == CampaignInfo(
            name=sheet.name,
            owner=sheet.owner,
            short_code=sheet.short_code,
            keywords=sheet.keywords,
            response=sheet.response,
            responses={**sheet.responses, "closed": closed or "", "not_understood": not_understood or ""},
        )

    def test_rule_for_routing(self, tmp_path: Path) -> None:
        """rule() gives routing the name, short code, keywords, window, status and file name."""
        doc = vote(status="done", starts=datetime.datetime(2004, 7, 1, tzinfo=UTC))
        sheet, _ = read_sheet(write(tmp_path, "final.toml", doc), REGISTRY)
        assert sheet is not None
        assert sheet.rule() == CampaignRule(
            campaign="vote",
            short_code="4160",
            keywords=("VOTE", "ΨΗΦΟΣ"),
            starts=1088640000.0,
            ends=None,
            running=False,
            source="final.toml",
        )


# (overrides, table, key, message fragment): one problem each.
PROBLEMS = [
    (vote(name="final vote"), "", "name", "expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -, got 'final vote'"),
    (vote(name="x" * 65), "", "name", "(65 characters)"),
    (vote(name=DROP), "", "name", "missing; expected a name of 1 to 64 characters"),
    (vote(owner=""), "", "owner", "expected a non-empty string naming the data user responsible, got ''"),
    (vote(owner="   "), "", "owner", "got '   '"),
    (vote(owner=DROP), "", "owner", "missing"),
    (vote(status="paused"), "", "status", "expected one of 'run' or 'done', got 'paused'"),
    (vote(module=DROP, settings=DROP), "", "module", "missing; expected the name of an installed campaign module"),
    (vote(module="vots"), "", "module", "unknown module 'vots'; did you mean 'vote'? installed modules: bare, boom, quiz, vote"),
    (vote(module="lottery"), "", "module", "unknown module 'lottery'; installed modules: bare, boom, quiz, vote"),
    (vote(module="broken"), "", "module", "module 'broken' is installed but cannot be used: cannot import tests.gatewayd.no_such_plugin:Module"),
    (vote(project_type="tv"), "", "project_type", "expected one of 'mobile-marketing', 'interactive-tv', 'interactive-radio', 'print', 'event' or 'other', got 'tv'"),
    (vote(project_type=DROP), "", "project_type", "missing"),
    (vote(content="spam"), "", "content", "expected one of 'information', 'interaction' or 'advertising', got 'spam'"),
    (vote(short_code=4160), "", "short_code", "expected a string of 3 to 6 digits, got 4160 (quote it)"),
    (vote(short_code="41"), "", "short_code", "got '41'"),
    (vote(short_code=DROP), "", "short_code", "missing; expected a string of 3 to 6 digits"),
    (vote(keywords=[]), "", "keywords", "got an empty array"),
    (vote(keywords="VOTE"), "", "keywords", "expected a non-empty array of distinct single words of letters and digits, such as [\"VOTE\", \"ΨΗΦΟΣ\"], got 'VOTE'"),
    (vote(keywords=["VOTE", "vote"]), "", "keywords", "got 'VOTE' and 'vote', the same keyword"),
    (vote(keywords=["ΨΗΦΟΣ", "Ψήφος"]), "", "keywords", "got 'ΨΗΦΟΣ' and 'Ψήφος', the same keyword"),
    (vote(keywords=["E-VOTE"]), "", "keywords", "got 'E-VOTE'"),
    (vote(keywords=["MY VOTE"]), "", "keywords", "got 'MY VOTE'"),
    (vote(keywords=[1]), "", "keywords", "got 1"),
    (vote(starts="2004-07-01T18:00:00Z"), "", "starts", "got the string '2004-07-01T18:00:00Z' (write the date and time without quotes)"),
    (vote(starts=datetime.date(2004, 7, 1)), "", "starts", "expected a date and time such as 2004-07-01T18:00:00Z (UTC when it has no offset), got the date 2004-07-01 without a time"),
    (vote(ends=datetime.time(21, 0)), "", "ends", "got the time 21:00:00 without a date"),
    (vote(ends=1088974800), "", "ends", "got 1088974800"),
    (
        vote(starts=datetime.datetime(2004, 7, 4, tzinfo=UTC), ends=datetime.datetime(2004, 7, 1, tzinfo=UTC)),
        "",
        "ends",
        "expected a time after starts (2004-07-04T00:00:00Z), got 2004-07-01T00:00:00Z",
    ),
    (vote(response=5), "", "response", "expected a non-empty string, got 5"),
    (vote(closed_response=""), "", "closed_response", "expected a non-empty string, got ''"),
    (vote(not_understood=["?"]), "", "not_understood", "got ['?']"),
    (vote(responses="x"), "", "responses", "expected a table [responses], got 'x'"),
    (vote(responses={"thanks": 1}), "responses", "thanks", "expected a non-empty string, got 1"),
    (vote(responses={"closed": "Closed."}), "responses", "closed", "set by the top-level key 'closed_response' instead"),
    (vote(settings=5), "", "settings", "expected a table [settings], got 5"),
    (vote(settings={"choices": {"GRE": "Greece"}, "votes_per_subscriber": "x"}), "settings", "votes_per_subscriber", "expected an integer, got 'x'"),
    (vote(settings={"choices": {"GRE": "Greece"}, "votes_per_subscriber": 0}), "settings", "votes_per_subscriber", "must be >= 1: 0"),
    (vote(settings={"choices": {"GRE": "Greece"}, "vote_per_subscriber": 1}), "settings", "vote_per_subscriber", "unknown key; did you mean 'votes_per_subscriber'?"),
    (vote(settings=DROP), "settings", "choices", "missing; expected a table"),
    (vote(keyword=["VOTE"]), "", "keyword", "unknown key; did you mean 'keywords'?"),
    (vote(colour="blue"), "", "colour", "unknown key; expected one of: closed_response, content, ends, keywords"),
]


@pytest.mark.parametrize(("doc", "table", "key", "fragment"), PROBLEMS, ids=lambda v: "")
def test_problem_reported(tmp_path: Path, doc: dict[str, Any], table: str, key: str, fragment: str) -> None:
    """Each kind of mistake is one problem naming the file, table and key, and saying what was expected."""
    ((found_table, found_key, message),) = problems_of(tmp_path, doc)
    assert (found_table, found_key) == (table, key)
    assert fragment in message


class TestProblems:
    def test_every_problem_at_once(self, tmp_path: Path) -> None:
        """All problems of a sheet are reported together."""
        doc = vote(name="a b", status="x", short_code="1", settings={"choices": 1, "weight": "w"}, extra=1)
        found = [(table, key) for table, key, _ in problems_of(tmp_path, doc)]
        assert found == [("", "name"), ("", "short_code"), ("", "status"), ("", "extra"), ("settings", "choices"), ("settings", "weight")]

    def test_problem_rendering(self, tmp_path: Path) -> None:
        """A problem reads FILE: [table] key: message."""
        path = write(tmp_path, "vote.toml", vote(settings={"choices": {"A": "a"}, "votes_per_subscriber": "x"}))
        _, (problem,) = read_sheet(path, REGISTRY)
        assert str(problem) == f"{path}: [settings] votes_per_subscriber: expected an integer, got 'x'"

    def test_syntax_error(self, tmp_path: Path) -> None:
        """A sheet that is not TOML is one problem with line and column."""
        ((table, key, message),) = problems_of(tmp_path, 'name = "x"\nkeywords = [\n  "A",\n  = 3\n')
        assert (table, key) == ("", "") and message.startswith("invalid TOML at line 4, column 3: ")

    def test_not_utf8(self, tmp_path: Path) -> None:
        """A sheet that is not UTF-8 is one problem."""
        path = tmp_path / "latin1.toml"
        path.write_bytes('name = "Ψ"'.encode("iso-8859-7"))
        _, problems = read_sheet(path, REGISTRY)
        assert [p.message for p in problems] == ["expected UTF-8 text: invalid continuation byte at byte 8"]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A sheet deleted before it is read is one problem."""
        _, problems = read_sheet(tmp_path / "gone.toml", REGISTRY)
        assert [p.message for p in problems] == ["file not found"]

    def test_nested_settings_problem_path(self, tmp_path: Path) -> None:
        """A problem deep in [settings] is keyed by its path, as TOML would spell it."""
        doc = vote(module="quiz", settings={"questions": [{"text": "2+2?", "options": ["3", "4"], "answer": "5"}]})
        assert problems_of(tmp_path, doc) == [("settings", "questions[0].answer", "expected one of the options, got '5'")]


WRONG_VALUES = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2),
)


@given(key=st.sampled_from(["name", "owner", "status", "module", "short_code", "keywords", "starts", "response", "project_type"]), wrong=WRONG_VALUES)
def test_wrong_type_names_exactly_its_key(tmp_path_factory: pytest.TempPathFactory, key: str, wrong: Any) -> None:
    """Any value of the wrong type for a key is reported on that key alone."""
    if isinstance(wrong, dict):
        # A table value cannot be written inline at the top level of this writer; make it a sub-table.
        doc = vote(**{key: DROP})
        text = dump_sheet(doc).replace("[settings]", f"{key} = {toml_value(wrong)}\n[settings]", 1)
    else:
        doc = vote(**{key: wrong})
        text = dump_sheet(doc)
    path = write(tmp_path_factory.mktemp("h"), "s.toml", text)
    sheet, problems = read_sheet(path, REGISTRY)
    assert sheet is None
    assert [(p.table, p.key) for p in problems] == [("", key)]
    assert "expected" in problems[0].message


# --- a directory -----------------------------------------------------------------------------


def quiz(**overrides: Any) -> dict[str, Any]:
    doc = vote(name="quiz", module="quiz", keywords=["QUIZ"], settings={"questions": [{"text": "?", "options": ["a"], "answer": "a"}]})
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not DROP}


class TestLoad:
    def test_directory_in_file_order(self, tmp_path: Path) -> None:
        """Every sheet loads, in file-name order; dotfiles, other files and directories are ignored."""
        write(tmp_path, "b.toml", vote())
        write(tmp_path, "a.toml", quiz())
        write(tmp_path, ".c.toml", vote(name="hidden", keywords=["HIDDEN"]))
        write(tmp_path, "notes.txt", "not a sheet")
        write(tmp_path, "b.toml~", "backup")
        (tmp_path / "sub.toml").mkdir()
        loaded = load(tmp_path)
        assert list(loaded.campaigns) == ["quiz", "vote"]
        assert dict(loaded.problems) == {} and loaded.stale == frozenset() and loaded.loaded_at == 1000.0
        assert loaded.table.campaigns == ("quiz", "vote")
        campaign = loaded.get("vote")
        assert campaign is not None and isinstance(campaign.module, fx.Good)
        assert campaign.sheet.path == tmp_path / "b.toml" and loaded.get("nope") is None
        assert [p.name for p in sheet_files(tmp_path)] == ["a.toml", "b.toml"]

    def test_each_campaign_gets_its_own_instance(self, tmp_path: Path) -> None:
        """Two campaigns of one module get two instances."""
        write(tmp_path, "a.toml", vote(name="a", keywords=["A"]))
        write(tmp_path, "b.toml", vote(name="b", keywords=["B"]))
        loaded = load(tmp_path)
        assert loaded.campaigns["a"].module is not loaded.campaigns["b"].module

    @pytest.mark.parametrize("directory", [None, "missing"])
    def test_no_directory_means_no_campaigns(self, tmp_path: Path, directory: str | None) -> None:
        """No directory, or one that does not exist, gives an empty set and no problem."""
        loaded = load(None if directory is None else tmp_path / directory)
        assert dict(loaded.campaigns) == {} and dict(loaded.problems) == {} and loaded.table.campaigns == ()

    def test_bad_sheet_disables_only_its_campaign(self, tmp_path: Path) -> None:
        """A sheet that never loaded stays disabled; the others run."""
        write(tmp_path, "a.toml", vote(status="paused"))
        write(tmp_path, "b.toml", quiz())
        loaded = load(tmp_path)
        assert list(loaded.campaigns) == ["quiz"] and loaded.stale == frozenset()
        ((file, (problem,)),) = loaded.problems.items()
        assert file == str(tmp_path / "a.toml") and problem.key == "status"
        assert loaded.table.campaign("vote") is None

    def test_duplicate_names(self, tmp_path: Path) -> None:
        """A second sheet with a used name is a problem naming both files; the first one runs."""
        write(tmp_path, "a.toml", vote())
        write(tmp_path, "b.toml", vote(keywords=["OTHER"]))
        loaded = load(tmp_path)
        assert loaded.campaigns["vote"].sheet.path == tmp_path / "a.toml"
        (problem,) = loaded.problems[str(tmp_path / "b.toml")]
        assert problem.key == "name" and str(tmp_path / "a.toml") in problem.message and "'vote'" in problem.message

    def test_keyword_conflict_names_both_files(self, tmp_path: Path) -> None:
        """Two running campaigns with one keyword at the same time: the later file is rejected, naming both."""
        write(tmp_path, "a.toml", vote())
        write(tmp_path, "b.toml", quiz(keywords=["QUIZ", "vote"]))
        loaded = load(tmp_path)
        assert list(loaded.campaigns) == ["vote"]
        (problem,) = loaded.problems[str(tmp_path / "b.toml")]
        assert problem.key == "keywords" and "a.toml" in problem.message and "b.toml" in problem.message
        assert str(problem).startswith(f"{tmp_path / 'b.toml'}: keywords: ")

    def test_disjoint_windows_share_a_keyword(self, tmp_path: Path) -> None:
        """Campaigns whose windows do not overlap may use the same keyword."""
        june = datetime.datetime(2004, 6, 1, tzinfo=UTC)
        july = datetime.datetime(2004, 7, 1, tzinfo=UTC)
        write(tmp_path, "a.toml", vote(name="june", starts=june, ends=july))
        write(tmp_path, "b.toml", vote(name="july", starts=july))
        loaded = load(tmp_path)
        assert list(loaded.campaigns) == ["june", "july"] and dict(loaded.problems) == {}

    def test_system_keyword_refused(self, tmp_path: Path) -> None:
        """A campaign keyword that is a system keyword is a problem for that sheet."""
        write(tmp_path, "a.toml", vote(keywords=["VOTE", "Stop"]))
        loaded = load(tmp_path)
        (problem,) = loaded.problems[str(tmp_path / "a.toml")]
        assert problem.key == "keywords" and "global stop keyword" in problem.message and not loaded.campaigns

    def test_module_that_cannot_start(self, tmp_path: Path) -> None:
        """A module whose constructor fails disables the campaign with the reason."""
        write(tmp_path, "a.toml", vote(module="boom", settings=DROP))
        loaded = load(tmp_path)
        (problem,) = loaded.problems[str(tmp_path / "a.toml")]
        assert problem.key == "module" and "could not be started: RuntimeError: no licence key" in problem.message

    def test_unreadable_directory_keeps_everything(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A directory that cannot be listed keeps every running campaign, stale, with one problem for the directory."""
        write(tmp_path, "a.toml", vote())
        first = load(tmp_path)

        def refuse(path: Any) -> list[str]:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "listdir", refuse)
        second = load(tmp_path, previous=first)
        assert second.campaigns == first.campaigns and second.stale == {"vote"}
        assert [p.message for p in second.problems[str(tmp_path)]] == ["cannot list the directory: Permission denied"]

    def test_logs(self, tmp_path: Path) -> None:
        """One error line per problem, then a summary."""
        write(tmp_path, "a.toml", vote(status="x", short_code="1"))
        write(tmp_path, "b.toml", quiz())
        with capture_logs() as logs:
            load(tmp_path)
        invalid = [line for line in logs if line["event"] == "campaign_invalid"]
        assert [(line["file"], line["problem"]) for line in invalid] == [
            (str(tmp_path / "a.toml"), "short_code: expected a string of 3 to 6 digits, got '1'"),
            (str(tmp_path / "a.toml"), "status: expected one of 'run' or 'done', got 'x'"),
        ]
        assert all(line["log_level"] == "error" for line in invalid)
        (summary,) = [line for line in logs if line["event"] == "campaigns_loaded"]
        assert (summary["count"], summary["names"], summary["failed"]) == (1, ["quiz"], 1)

    def test_short_code_default_must_be_a_campaign_there(self, tmp_path: Path) -> None:
        """A short code's default that is not a campaign on it is logged and ignored."""
        write(tmp_path, "a.toml", vote())
        with capture_logs() as logs:
            loaded = load(tmp_path, short_codes=[ShortCodeRule("4160", "nope"), ShortCodeRule("5000", "vote")])
        assert loaded.table.default_for("4160") is None and loaded.table.default_for("5000") is None
        assert [line["short_code"] for line in logs if line["event"] == "short_code_default_ignored"] == ["4160", "5000"]
        ok = load(tmp_path, short_codes=[ShortCodeRule("4160", "vote")])
        assert ok.table.default_for("4160") == "vote"


class TestReload:
    def test_broken_sheet_keeps_its_last_good_version(self, tmp_path: Path) -> None:
        """A sheet broken on reload keeps running as it was (stale) while the others reload."""
        write(tmp_path, "a.toml", vote())
        write(tmp_path, "b.toml", quiz())
        first = load(tmp_path)
        write(tmp_path, "a.toml", 'name = "vote"\nkeywords = [')
        write(tmp_path, "b.toml", quiz(response="New text."))
        with capture_logs() as logs:
            second = load(tmp_path, previous=first)
        assert second.campaigns["vote"] is first.campaigns["vote"]
        assert second.campaigns["quiz"].sheet.response == "New text."
        assert second.stale == {"vote"} and list(second.problems) == [str(tmp_path / "a.toml")]
        assert second.table.campaign("vote") is not None
        (stale,) = [line for line in logs if line["event"] == "campaign_stale"]
        assert (stale["campaign"], stale["file"], stale["log_level"]) == ("vote", str(tmp_path / "a.toml"), "warning")

    def test_fixed_sheet_is_no_longer_stale(self, tmp_path: Path) -> None:
        """Once its file is fixed, a stale campaign runs the new version."""
        write(tmp_path, "a.toml", vote())
        first = load(tmp_path)
        write(tmp_path, "a.toml", vote(status="bad"))
        second = load(tmp_path, previous=first)
        write(tmp_path, "a.toml", vote(response="Fixed."))
        third = load(tmp_path, previous=second)
        assert third.stale == frozenset() and dict(third.problems) == {}
        assert third.campaigns["vote"].sheet.response == "Fixed."

    def test_never_loaded_sheet_stays_disabled(self, tmp_path: Path) -> None:
        """A sheet added broken is not run, however many reloads follow."""
        write(tmp_path, "a.toml", vote())
        first = load(tmp_path)
        write(tmp_path, "b.toml", quiz(short_code="1"))
        second = load(tmp_path, previous=first)
        third = load(tmp_path, previous=second)
        assert list(third.campaigns) == ["vote"] and third.stale == frozenset()
        assert list(third.problems) == [str(tmp_path / "b.toml")]

    def test_deleted_sheet_is_gone(self, tmp_path: Path) -> None:
        """Deleting a sheet removes its campaign."""
        write(tmp_path, "a.toml", vote())
        path = write(tmp_path, "b.toml", quiz())
        first = load(tmp_path)
        path.unlink()
        assert list(load(tmp_path, previous=first).campaigns) == ["vote"]

    def test_running_campaign_wins_over_a_new_one(self, tmp_path: Path) -> None:
        """A new sheet that takes a running campaign's keyword is rejected, even when its file sorts first."""
        write(tmp_path, "m.toml", vote())
        first = load(tmp_path)
        write(tmp_path, "a.toml", quiz(keywords=["VOTE"]))
        second = load(tmp_path, previous=first)
        assert list(second.campaigns) == ["vote"]
        (problem,) = second.problems[str(tmp_path / "a.toml")]
        assert "a.toml" in problem.message and "m.toml" in problem.message
        # Without the previous set, file order decides.
        assert list(load(tmp_path).campaigns) == ["quiz"]

    def test_running_campaign_wins_over_a_changed_one(self, tmp_path: Path) -> None:
        """An edit that takes a running campaign's keyword is rejected, and the edited campaign keeps its last version."""
        write(tmp_path, "a.toml", quiz())
        write(tmp_path, "m.toml", vote())
        first = load(tmp_path)
        write(tmp_path, "a.toml", quiz(keywords=["QUIZ", "VOTE"]))
        second = load(tmp_path, previous=first)
        assert second.campaigns["vote"] is first.campaigns["vote"]
        assert second.campaigns["quiz"] is first.campaigns["quiz"] and second.stale == {"quiz"}
        assert second.table.campaign("quiz") == first.table.campaign("quiz")
        assert "m.toml" in second.problems[str(tmp_path / "a.toml")][0].message

    def test_renamed_onto_a_running_name_keeps_its_last_version(self, tmp_path: Path) -> None:
        """An edit that takes a running campaign's name keeps the edited campaign on its last version."""
        write(tmp_path, "a.toml", quiz())
        write(tmp_path, "m.toml", vote())
        first = load(tmp_path)
        write(tmp_path, "a.toml", quiz(name="vote"))
        second = load(tmp_path, previous=first)
        assert list(second.campaigns) == ["quiz", "vote"] and second.stale == {"quiz"}
        (problem,) = second.problems[str(tmp_path / "a.toml")]
        assert problem.key == "name" and str(tmp_path / "m.toml") in problem.message

    def test_stale_campaign_keeps_its_keyword_against_a_new_sheet(self, tmp_path: Path) -> None:
        """A stale campaign still owns its keyword: a new sheet cannot take it while the old file is broken."""
        write(tmp_path, "m.toml", vote())
        first = load(tmp_path)
        write(tmp_path, "m.toml", "broken = [")
        write(tmp_path, "a.toml", quiz(name="other", keywords=["VOTE"]))
        second = load(tmp_path, previous=first)
        assert list(second.campaigns) == ["vote"] and second.stale == {"vote"}
        assert set(second.problems) == {str(tmp_path / "a.toml"), str(tmp_path / "m.toml")}

    def test_unchanged_sheet_keeps_its_instance(self, tmp_path: Path) -> None:
        """A reload keeps the module instance of an unchanged sheet and makes a new one for a changed sheet."""
        write(tmp_path, "a.toml", vote())
        write(tmp_path, "b.toml", quiz())
        first = load(tmp_path)
        write(tmp_path, "b.toml", quiz(response="Changed."))
        second = load(tmp_path, previous=first)
        assert second.campaigns["vote"] is first.campaigns["vote"]
        assert second.campaigns["quiz"].module is not first.campaigns["quiz"].module


class TestCheckCampaigns:
    def test_problems_of_every_sheet(self, tmp_path: Path) -> None:
        """check_campaigns lists the problems of every sheet, in file order, and logs nothing."""
        write(tmp_path, "a.toml", vote(module="vots"))
        write(tmp_path, "b.toml", quiz(short_code="1"))
        write(tmp_path, "c.toml", vote(name="c", keywords=["QUIZ"]))
        with capture_logs() as logs:
            problems = check_campaigns(tmp_path, REGISTRY, KEYWORDS)
        assert [(Path(p.file).name, p.key) for p in problems] == [("a.toml", "module"), ("b.toml", "short_code")]
        assert logs == []

    def test_conflicts_and_defaults(self, tmp_path: Path) -> None:
        """Conflicts are problems of the rejected sheet; a bad default is a problem of gatewayd.toml."""
        write(tmp_path, "a.toml", vote())
        write(tmp_path, "b.toml", quiz(keywords=["VOTE"]))
        problems = check_campaigns(tmp_path, REGISTRY, KEYWORDS, [ShortCodeRule("4160", "quiz")], config_file="conf/gatewayd.toml")
        assert [(p.file, p.table, p.key) for p in problems] == [
            (str(tmp_path / "b.toml"), "", "keywords"),
            ("conf/gatewayd.toml", "short_code '4160'", "default_campaign"),
        ]

    def test_all_good(self, tmp_path: Path) -> None:
        """Valid sheets give no problem."""
        write(tmp_path, "a.toml", vote())
        assert check_campaigns(tmp_path, REGISTRY, KEYWORDS, [ShortCodeRule("4160", "vote")]) == []


# --- watching --------------------------------------------------------------------------------


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def test_watcher_sees_add_modify_delete(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """The watcher calls back once per change: a sheet added, modified, deleted; nothing when idle."""
    changes = Changes()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_campaigns, tmp_path, 2.0, changes)
        await trio.sleep(1)
        path = write(tmp_path, "a.toml", vote())
        await trio.sleep(2)
        assert changes.count == 1
        await trio.sleep(10)
        assert changes.count == 1
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        await trio.sleep(2)
        assert changes.count == 2
        path.write_text(dump_sheet(vote(response="Longer text than before.")))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        await trio.sleep(2)
        assert changes.count == 3
        write(tmp_path, "notes.txt", "ignored")
        await trio.sleep(2)
        assert changes.count == 3
        path.unlink()
        await trio.sleep(2)
        assert changes.count == 4
        nursery.cancel_scope.cancel()


async def test_watcher_survives_a_failing_callback(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """An exception from the callback is logged and watching goes on."""
    calls = []

    def fail() -> None:
        calls.append(1)
        raise RuntimeError("reload broke")

    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_campaigns, tmp_path / "later", 1.0, fail)
            await trio.sleep(0.5)
            write(tmp_path / "later", "a.toml", vote())
            await trio.sleep(1)
            write(tmp_path / "later", "b.toml", quiz())
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert len(calls) == 2
    assert [line["error"] for line in logs if line["event"] == "campaigns_reload_failed"] == ["RuntimeError: reload broke"] * 2


@pytest.mark.parametrize(("directory", "interval"), [(None, 2.0), ("d", 0.0)])
async def test_watcher_off(tmp_path: Path, directory: str | None, interval: float) -> None:
    """Without a directory, or with interval 0, the watcher returns at once."""
    with trio.fail_after(1):
        await watch_campaigns(None if directory is None else tmp_path / directory, interval, Changes())


# --- the shipped demo ------------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[2] / "conf" / "campaigns.d"


def test_shipped_sheets_load_with_the_installed_modules() -> None:
    """conf/campaigns.d loads with the installed built-in modules: vote, quiz and coupon on 4160, no problem."""
    from gatewayd.config import load_config

    config = load_config(SHIPPED.parent / "gatewayd.toml")
    registry = find_modules(quiet=True)
    loaded = load_campaigns(
        config.campaigns_dir, registry, keywords=config.keywords.global_keywords(), short_codes=config.short_code_rules()
    )
    assert dict(loaded.problems) == {}
    assert sorted(c.sheet.module for c in loaded.campaigns.values()) == ["coupon", "quiz", "vote"]
    assert {c.sheet.short_code for c in loaded.campaigns.values()} == {"4160"}
    assert all(c.sheet.ends is None for c in loaded.campaigns.values())
    for word in ("VOTE", "ψηφος", "QUIZ", "win"):
        assert loaded.table.entries("4160", word)
