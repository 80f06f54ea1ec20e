"""Tests for gatewayd.config: loading gatewayd.toml and reporting every problem in it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gatewayd.config import (
    ConfigError,
    ConfigProblem,
    GatewayConfig,
    KeywordsConfig,
    OutbindConfig,
    ShortCodeConfig,
    SimulatorConfig,
    SmscConfig,
    StoreConfig,
    default_config,
    load_config,
)
from gatewayd.errors import GatewayError
from gatewayd.smpp.constants import BindMode
from routing.table import GlobalKeywords, ShortCodeRule

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "gatewayd.toml"

# --- a tiny TOML writer, enough for generated values ---------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # TOML basic strings share JSON's escapes, except that DEL must be escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_value(key)


def dump(doc: dict[str, Any]) -> str:
    """TOML text for ``{"table": {...}, "smsc": [{...}, ...]}``."""
    lines = []
    for name, body in doc.items():
        tables = body if isinstance(body, list) else [body]
        header = f"[[{name}]]" if isinstance(body, list) else f"[{name}]"
        for table in tables:
            lines.append(header)
            lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
            lines.append("")
    return "\n".join(lines)


def write(tmp_path: Path, text: str, name: str = "gatewayd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_doc(tmp_path: Path, doc: dict[str, Any]) -> GatewayConfig:
    return load_config(write(tmp_path, dump(doc)))


def problems_of(tmp_path: Path, doc: dict[str, Any] | str) -> tuple[ConfigProblem, ...]:
    text = doc if isinstance(doc, str) else dump(doc)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


def smsc(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "op-a",
        "host": "smsc.example",
        "port": 2775,
        "system_id": "acme",
        "password": "pw",
        "short_codes": ["4160"],
    }
    base.update(overrides)
    return base


FULL = """
[gateway]
state_dir = "var/state"
log_level = "debug"
log_format = "json"
drain_timeout = 5

[store]
url = "sqlite:///db/gw.db"

[simulator]
enabled = true
host = "0.0.0.0"
port = 12775
system_id = "sim"
password = "pw"
short_code = "80888"
demo_mo_per_second = 0
mo_file = "mos.jsonl"
delivery_receipts = false

[outbind]
host = "127.0.0.1"
port = 2776
system_id = "opb"
password = "obpw"

[[smsc]]
name = "operator-a"
host = "smsc.a.example"
port = 2775
system_id = "acme"
password = "s3cr3t"
system_type = "VMA"
interface_version = 0x33
addr_ton = 1
addr_npi = 1
address_range = "^4160"
bind = "transmitter+receiver"
short_codes = ["4160", "80888"]
window = 50
max_mt_per_second = 12.5
enquire_link_interval = 20
dead_peer_timeout = 45
response_timeout = 7
bind_timeout = 8
reconnect_delay = 2
reconnect_max_delay = 120
max_pdu_length = 4096
source_addr_ton = 3
source_addr_npi = 0
dest_addr_ton = 1
dest_addr_npi = 1
message_id_format = "hex"

[[smsc]]
name = "operator-b"
host = "10.0.0.2"
port = 2775
system_id = "acme"
password = ""
short_codes = ["4160"]
"""


class TestValidFiles:
    def test_full_file(self, tmp_path: Path) -> None:
        """Every setting of a complete file lands in the matching field."""
        (tmp_path / "mos.jsonl").write_text("")
        cfg = load_config(write(tmp_path, FULL))
        assert cfg.path == tmp_path / "gatewayd.toml"
        assert cfg.state_dir == tmp_path / "var" / "state"
        assert (cfg.log_level, cfg.log_format, cfg.drain_timeout) == ("debug", "json", 5.0)
        assert cfg.store == StoreConfig(url=f"sqlite:///{tmp_path}/db/gw.db")
        assert cfg.simulator == SimulatorConfig(
            enabled=True,
            host="0.0.0.0",
            port=12775,
            system_id="sim",
            password="pw",
            short_code="80888",
            demo_mo_per_second=0.0,
            mo_file=tmp_path / "mos.jsonl",
            delivery_receipts=False,
        )
        assert cfg.outbind == OutbindConfig(host="127.0.0.1", port=2776, system_id="opb", password="obpw")
        a, b = cfg.smscs
        assert a == SmscConfig(
            name="operator-a",
            host="smsc.a.example",
            port=2775,
            system_id="acme",
            password="s3cr3t",
            system_type="VMA",
            interface_version=0x33,
            addr_ton=1,
            addr_npi=1,
            address_range="^4160",
            binds=(BindMode.TRANSMITTER, BindMode.RECEIVER),
            short_codes=("4160", "80888"),
            window=50,
            max_mt_per_second=12.5,
            enquire_link_interval=20.0,
            dead_peer_timeout=45.0,
            response_timeout=7.0,
            bind_timeout=8.0,
            reconnect_delay=2.0,
            reconnect_max_delay=120.0,
            max_pdu_length=4096,
            source_addr_ton=3,
            source_addr_npi=0,
            dest_addr_ton=1,
            dest_addr_npi=1,
            message_id_format="hex",
        )
        assert b.name == "operator-b" and b.password == "" and b.short_codes == ("4160",)
        assert cfg.simulator_active

    def test_smsc_defaults(self, tmp_path: Path) -> None:
        """Optional SMSC settings take their documented defaults."""
        (s,) = load_doc(tmp_path, {"smsc": [smsc()]}).smscs
        assert s.binds == (BindMode.TRANSCEIVER,)
        assert (s.system_type, s.interface_version, s.addr_ton, s.addr_npi, s.address_range) == ("", 0x34, 0, 0, "")
        assert (s.window, s.max_mt_per_second, s.max_pdu_length) == (10, 100.0, 65536)
        assert (s.enquire_link_interval, s.dead_peer_timeout) == (30.0, 90.0)
        assert (s.response_timeout, s.bind_timeout) == (10.0, 10.0)
        assert (s.reconnect_delay, s.reconnect_max_delay) == (1.0, 60.0)
        assert (s.source_addr_ton, s.source_addr_npi, s.dest_addr_ton, s.dest_addr_npi) == (0, 0, 1, 1)
        assert s.message_id_format == "string"

    def test_dead_peer_timeout_follows_enquire_link_interval(self, tmp_path: Path) -> None:
        """Without dead_peer_timeout, it is three enquire_link intervals."""
        (s,) = load_doc(tmp_path, {"smsc": [smsc(enquire_link_interval=7)]}).smscs
        assert s.dead_peer_timeout == 21.0

    def test_gateway_defaults_relative_to_file(self, tmp_path: Path) -> None:
        """An empty file gives the defaults, with state in "state" next to the file."""
        cfg = load_config(write(tmp_path, ""))
        assert cfg.state_dir == tmp_path / "state"
        assert cfg.store.url == f"sqlite:///{tmp_path}/state/gatewayd.db"
        assert (cfg.log_level, cfg.log_format, cfg.drain_timeout) == ("info", "auto", 10.0)
        assert cfg.smscs == () and cfg.outbind is None and cfg.simulator == SimulatorConfig()
        assert cfg.simulator_active

    def test_no_file_gives_defaults_under_cwd(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """load_config(None) uses the built-in defaults with ./state under the current directory."""
        monkeypatch.chdir(tmp_path)
        cfg = load_config(None)
        assert cfg == default_config() == default_config(state_dir=tmp_path / "state")
        assert cfg.path is None and cfg.state_dir == tmp_path / "state"
        assert cfg.store.url == f"sqlite:///{tmp_path}/state/gatewayd.db"

    def test_absolute_paths_and_urls_kept(self, tmp_path: Path) -> None:
        """Absolute state_dir and non-relative store URLs are used as written."""
        doc = {"gateway": {"state_dir": "/var/lib/gatewayd"}, "store": {"url": "postgresql://u:pw@db/gw"}}
        cfg = load_doc(tmp_path, doc)
        assert cfg.state_dir == Path("/var/lib/gatewayd")
        assert cfg.store.url == "postgresql://u:pw@db/gw"
        assert "pw" not in repr(cfg.store)

    def test_sqlite_url_with_driver_and_query_resolved(self, tmp_path: Path) -> None:
        """A relative SQLite path is made absolute, keeping the driver and query."""
        cfg = load_doc(tmp_path, {"store": {"url": "sqlite+aiosqlite:///gw.db?timeout=5"}})
        assert cfg.store.url == f"sqlite+aiosqlite:///{tmp_path}/gw.db?timeout=5"

    def test_short_code_shared_by_smscs(self, tmp_path: Path) -> None:
        """Two SMSCs may serve the same short code."""
        cfg = load_doc(tmp_path, {"smsc": [smsc(name="a"), smsc(name="b")]})
        assert [s.short_codes for s in cfg.smscs] == [("4160",), ("4160",)]

    def test_simulator_inactive_with_smsc(self, tmp_path: Path) -> None:
        """With an SMSC configured, the "auto" simulator stays off."""
        assert not load_doc(tmp_path, {"smsc": [smsc()]}).simulator_active

    def test_simulator_forced_on_with_smsc(self, tmp_path: Path) -> None:
        """enabled = true runs the simulator next to real SMSCs."""
        cfg = load_doc(tmp_path, {"simulator": {"enabled": True}, "smsc": [smsc()]})
        assert cfg.simulator_active

    def test_simulator_off_with_outbind(self, tmp_path: Path) -> None:
        """enabled = false is fine when SMSCs can reach the gateway through outbind."""
        doc = {"simulator": {"enabled": False}, "outbind": {"port": 2776, "system_id": "x", "password": ""}}
        assert not load_doc(tmp_path, doc).simulator_active

    def test_passwords_not_in_repr(self, tmp_path: Path) -> None:
        """No password appears in the repr of the loaded configuration."""
        (tmp_path / "mos.jsonl").write_text("")
        text = repr(load_config(write(tmp_path, FULL)))
        for secret in ("s3cr3t", "obpw", "password="):
            assert secret not in text

    def test_other_files_next_to_config_ignored(self, tmp_path: Path) -> None:
        """campaigns.d/ and policy.toml next to the file are not this module's business."""
        (tmp_path / "campaigns.d").mkdir()
        (tmp_path / "campaigns.d" / "x.toml").write_text("this is = not [valid")
        (tmp_path / "policy.toml").write_text("[whatever]\nx = 1\n")
        assert load_config(write(tmp_path, "")).smscs == ()

    def test_example_file_loads(self) -> None:
        """The shipped example loads, configures no SMSC and so runs the simulator."""
        cfg = load_config(EXAMPLE)
        assert cfg.smscs == () and cfg.simulator_active and cfg.outbind is None
        assert cfg.state_dir == EXAMPLE.parent.parent / "state"

    def test_example_smsc_block_loads_when_uncommented(self, tmp_path: Path) -> None:
        """Uncommenting the example's [[smsc]] and [outbind] gives a valid configuration."""
        text = EXAMPLE.read_text().replace('# mo_file = "demo-mos.jsonl"', "")
        text = re.sub(r"^# (\[|\w+ = )", r"\1", text, flags=re.M)
        (tmp_path / "campaigns.d").mkdir()
        cfg = load_config(write(tmp_path, text))
        assert [s.name for s in cfg.smscs] == ["operator-a"] and cfg.outbind is not None
        assert cfg.smscs[0] == SmscConfig(
            name="operator-a",
            host="smsc.operator-a.example",
            port=2775,
            system_id="acme",
            password="changeme",
            short_codes=("4160", "80888"),
        )


# --- problems --------------------------------------------------------------------------------

# (document, table, key, message fragment): one problem each.
PROBLEMS = [
    ({"gateway": {"log_level": "verbose"}}, "gateway", "log_level", "expected one of 'debug', 'info', 'warning' or 'error', got 'verbose'"),
    ({"gateway": {"log_format": 1}}, "gateway", "log_format", "got 1"),
    ({"gateway": {"drain_timeout": -1}}, "gateway", "drain_timeout", "expected a number of at least 0, got -1"),
    ({"gateway": {"drain_timeout": "10s"}}, "gateway", "drain_timeout", "got '10s'"),
    ({"gateway": {"state_dir": 5}}, "gateway", "state_dir", "expected a path, got 5"),
    ({"store": {"url": "gatewayd.db"}}, "store", "url", "expected a database URL"),
    ({"simulator": {"enabled": "yes"}}, "simulator", "enabled", "expected 'auto', true or false, got 'yes'"),
    ({"simulator": {"port": 70000}}, "simulator", "port", "expected an integer from 0 to 65535, got 70000"),
    ({"simulator": {"short_code": "41"}}, "simulator", "short_code", "expected a string of 3 to 6 digits, got '41'"),
    ({"simulator": {"demo_mo_per_second": -0.5}}, "simulator", "demo_mo_per_second", "at least 0, got -0.5"),
    ({"simulator": {"mo_file": "nope.jsonl"}}, "simulator", "mo_file", "expected a path to an existing file"),
    ({"simulator": {"delivery_receipts": 1}}, "simulator", "delivery_receipts", "expected true or false, got 1"),
    ({"simulator": {"enabled": False}}, "simulator", "enabled", "no [[smsc]] or [outbind]"),
    ({"outbind": {"system_id": "x", "password": ""}}, "outbind", "port", "missing; expected an integer from 1 to 65535"),
    ({"smsc": [smsc(window="ten")]}, "smsc 'op-a'", "window", "expected an integer from 1 to 1000, got 'ten'"),
    ({"smsc": [smsc(window=0)]}, "smsc 'op-a'", "window", "got 0"),
    ({"smsc": [smsc(window=True)]}, "smsc 'op-a'", "window", "got true"),
    ({"smsc": [smsc(port=0)]}, "smsc 'op-a'", "port", "expected an integer from 1 to 65535, got 0"),
    ({"smsc": [smsc(name="op a")]}, "smsc[0]", "name", "expected a name of 1 to 32 characters"),
    ({"smsc": [smsc(host="")]}, "smsc 'op-a'", "host", "expected a non-empty string, got ''"),
    ({"smsc": [smsc(system_id="x" * 16)]}, "smsc 'op-a'", "system_id", "expected a string of 1 to 15 ASCII characters, got 'xxxxxxxxxxxxxxxx' (16 characters)"),
    ({"smsc": [smsc(system_id="ümlaut")]}, "smsc 'op-a'", "system_id", "ASCII"),
    ({"smsc": [smsc(password="123456789")]}, "smsc 'op-a'", "password", "expected a string of at most 8 ASCII characters, got a string of 9 characters"),
    ({"smsc": [smsc(password=12345678)]}, "smsc 'op-a'", "password", "got an integer"),
    ({"smsc": [smsc(system_type="x" * 13)]}, "smsc 'op-a'", "system_type", "at most 12"),
    ({"smsc": [smsc(interface_version=0x50)]}, "smsc 'op-a'", "interface_version", "expected 0x33 or 0x34 (51 or 52), got 80"),
    ({"smsc": [smsc(addr_ton=256)]}, "smsc 'op-a'", "addr_ton", "from 0 to 255, got 256"),
    ({"smsc": [smsc(address_range="x" * 41)]}, "smsc 'op-a'", "address_range", "at most 40"),
    ({"smsc": [smsc(bind="receiver")]}, "smsc 'op-a'", "bind", "expected 'transceiver' or 'transmitter+receiver', got 'receiver'"),
    ({"smsc": [smsc(short_codes=[])]}, "smsc 'op-a'", "short_codes", "got an empty array"),
    ({"smsc": [smsc(short_codes="4160")]}, "smsc 'op-a'", "short_codes", "expected an array"),
    ({"smsc": [smsc(short_codes=[4160])]}, "smsc 'op-a'", "short_codes", "got 4160 (quote it)"),
    ({"smsc": [smsc(short_codes=["41601234"])]}, "smsc 'op-a'", "short_codes", "got '41601234'"),
    ({"smsc": [smsc(short_codes=["4160", "4160"])]}, "smsc 'op-a'", "short_codes", "got '4160' twice"),
    ({"smsc": [smsc(max_mt_per_second=0)]}, "smsc 'op-a'", "max_mt_per_second", "expected a number greater than 0, got 0"),
    ({"smsc": [smsc(response_timeout=math.inf)]}, "smsc 'op-a'", "response_timeout", "got inf"),
    ({"smsc": [smsc(bind_timeout=math.nan)]}, "smsc 'op-a'", "bind_timeout", "got nan"),
    ({"smsc": [smsc(enquire_link_interval=30, dead_peer_timeout=30)]}, "smsc 'op-a'", "dead_peer_timeout", "greater than enquire_link_interval (30), got 30"),
    ({"smsc": [smsc(reconnect_delay=90)]}, "smsc 'op-a'", "reconnect_max_delay", "at least reconnect_delay (90), got 60"),
    ({"smsc": [smsc(max_pdu_length=512)]}, "smsc 'op-a'", "max_pdu_length", "from 1024 to 1048576, got 512"),
    ({"smsc": [smsc(message_id_format="base64")]}, "smsc 'op-a'", "message_id_format", "got 'base64'"),
    ({"smsc": [{k: v for k, v in smsc().items() if k != "host"}]}, "smsc 'op-a'", "host", "missing; expected a non-empty string"),
    ({"smsc": [smsc(windw=5)]}, "smsc 'op-a'", "windw", "unknown key; did you mean 'window'?"),
    ({"smsc": [smsc(binds="transceiver")]}, "smsc 'op-a'", "binds", "did you mean 'bind'?"),
    ({"store": {"writer": "fork"}}, "store", "writer", "expected 'process' or 'thread', got 'fork'"),
    ({"gateway": {"colour": "blue"}}, "gateway", "colour", "unknown key; expected one of: campaigns_dir, campaigns_poll_interval, drain_timeout, log_format, log_level, node, state_dir"),
    ({"smcs": {"name": "x"}}, "", "smcs", "unknown table; did you mean 'smsc'?"),
    ({"smsc": {"name": "x"}}, "", "smsc", "expected an array of tables [[smsc]], got a single table [smsc]"),
]


@pytest.mark.parametrize(("doc", "table", "key", "fragment"), PROBLEMS, ids=lambda v: "")
def test_problem_reported(tmp_path: Path, doc: dict[str, Any], table: str, key: str, fragment: str) -> None:
    """Each kind of mistake is one problem naming the file, table and key."""
    (problem,) = problems_of(tmp_path, doc)
    assert (problem.file, problem.table, problem.key) == (str(tmp_path / "gatewayd.toml"), table, key)
    assert fragment in problem.message


class TestProblems:
    def test_all_problems_reported_at_once(self, tmp_path: Path) -> None:
        """Loading reports every problem in the file, not just the first."""
        doc = {
            "gateway": {"log_levl": "debug", "drain_timeout": -1},
            "smsc": [smsc(port=70000, window="ten"), smsc(name="b", password="x" * 9, reconnect_delay=100)],
        }
        found = {(p.table, p.key) for p in problems_of(tmp_path, doc)}
        assert found == {
            ("gateway", "log_levl"),
            ("gateway", "drain_timeout"),
            ("smsc 'op-a'", "port"),
            ("smsc 'op-a'", "window"),
            ("smsc 'b'", "password"),
        }

    def test_inconsistent_pairs_reported_together(self, tmp_path: Path) -> None:
        """Both cross-field problems of one SMSC are reported."""
        doc = {"smsc": [smsc(enquire_link_interval=50, dead_peer_timeout=40, reconnect_delay=100)]}
        assert [p.key for p in problems_of(tmp_path, doc)] == ["dead_peer_timeout", "reconnect_max_delay"]

    def test_duplicate_smsc_names(self, tmp_path: Path) -> None:
        """A second SMSC with a used name is a problem pointing at both."""
        doc = {"smsc": [smsc(name="a"), smsc(name="b"), smsc(name="a")]}
        (problem,) = problems_of(tmp_path, doc)
        assert (problem.table, problem.key) == ("smsc[2]", "name")
        assert "'a'" in problem.message and "smsc 'a'" in problem.message

    def test_top_level_setting_points_to_its_table(self, tmp_path: Path) -> None:
        """A gateway setting written at the top level says which table it belongs in."""
        (problem,) = problems_of(tmp_path, 'log_level = "debug"\n')
        assert (problem.table, problem.key) == ("", "log_level")
        assert "belongs in [gateway]" in problem.message

    def test_table_of_wrong_type(self, tmp_path: Path) -> None:
        """A top-level table given as a value is reported."""
        (problem,) = problems_of(tmp_path, "gateway = 3\n")
        assert (problem.table, problem.key) == ("", "gateway")
        assert "expected a table [gateway], got 3" in problem.message

    def test_smsc_item_not_a_table(self, tmp_path: Path) -> None:
        """An [[smsc]] array holding something else than tables is reported."""
        (problem,) = problems_of(tmp_path, "smsc = [1]\n")
        assert (problem.table, problem.key) == ("smsc[0]", "")

    def test_syntax_error_has_line_and_column(self, tmp_path: Path) -> None:
        """A TOML syntax error is one problem giving its line and column."""
        (problem,) = problems_of(tmp_path, "[gateway]\nlog_level = \n")
        assert (problem.table, problem.key) == ("", "")
        assert problem.message.startswith("invalid TOML at line 2, column 13: ")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError naming the path as given."""
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "absent.toml")
        assert info.value.problems == (ConfigProblem(str(tmp_path / "absent.toml"), "", "", "file not found"),)

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A directory where the file should be is a ConfigError, not an OSError."""
        with pytest.raises(ConfigError, match="cannot read the file"):
            load_config(tmp_path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 is a ConfigError."""
        path = tmp_path / "gatewayd.toml"
        path.write_bytes(b'[gateway]\nlog_level = "\xff"\n')
        with pytest.raises(ConfigError, match="UTF-8"):
            load_config(path)

    def test_password_never_echoed(self, tmp_path: Path) -> None:
        """Problems with a password do not quote it."""
        (problem,) = problems_of(tmp_path, {"smsc": [smsc(password="hunter2hunter2")]})
        assert "hunter2" not in str(problem)

    def test_error_rendering(self) -> None:
        """str(ConfigError) has one "FILE: [table] key: message" line per problem."""
        err = ConfigError(
            [
                ConfigProblem("gw.toml", "smsc 'a'", "window", "expected an integer from 1 to 1000, got 'ten'"),
                ConfigProblem("gw.toml", "", "smcs", "unknown table; did you mean 'smsc'?"),
                ConfigProblem("gw.toml", "", "", "file not found"),
            ]
        )
        assert str(err).splitlines() == [
            "gw.toml: [smsc 'a'] window: expected an integer from 1 to 1000, got 'ten'",
            "gw.toml: smcs: unknown table; did you mean 'smsc'?",
            "gw.toml: file not found",
        ]
        assert isinstance(err, GatewayError)


class TestDirectConstruction:
    def test_validators_guard_direct_construction(self) -> None:
        """Settings built in code are checked with the same rules as the file."""
        with pytest.raises(ValueError, match="window: expected an integer from 1 to 1000, got 0"):
            SmscConfig(name="a", host="h", port=1, system_id="s", password="", short_codes=("123",), window=0)

    def test_relations_guard_direct_construction(self) -> None:
        """dead_peer_timeout must exceed enquire_link_interval in code too."""
        with pytest.raises(ValueError, match="dead_peer_timeout"):
            SmscConfig(
                name="a", host="h", port=1, system_id="s", password="", short_codes=("123",),
                enquire_link_interval=10, dead_peer_timeout=5,
            )  # fmt: skip

    def test_duplicate_names_rejected(self, tmp_path: Path) -> None:
        """A GatewayConfig cannot hold two SMSCs with one name."""
        s = SmscConfig(name="a", host="h", port=1, system_id="s", password="", short_codes=["123"])
        with pytest.raises(ValueError, match="duplicate SMSC name 'a'"):
            GatewayConfig(state_dir=tmp_path, smscs=[s, s])

    def test_list_short_codes_become_tuple(self) -> None:
        """Short codes passed as a list are stored as a tuple, keeping the value hashable."""
        s = SmscConfig(name="a", host="h", port=1, system_id="s", password="", short_codes=["123"])
        assert s.short_codes == ("123",) and hash(s)

    def test_changed_setting_changes_equality(self) -> None:
        """Any changed setting makes two SmscConfigs unequal (what a reload compares)."""
        s = SmscConfig(name="a", host="h", port=1, system_id="s", password="p", short_codes=("123",))
        assert s == attrs.evolve(s)
        assert s != attrs.evolve(s, password="q")
        assert s != attrs.evolve(s, message_id_format="hex")


# --- property tests --------------------------------------------------------------------------

_SMPP_CHARS = st.characters(min_codepoint=1, max_codepoint=127)


def smpp_text(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.text(_SMPP_CHARS, min_size=lo, max_size=hi)


def seconds() -> st.SearchStrategy[float | int]:
    return st.floats(min_value=1e-3, max_value=1e6, allow_nan=False) | st.integers(1, 10**6)


@st.composite
def valid_smsc(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A TOML [[smsc]] table and the attribute values expected from it."""
    toml = {
        "name": draw(st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)),
        "host": draw(st.text(min_size=1, max_size=253)),
        "port": draw(st.integers(1, 65535)),
        "system_id": draw(smpp_text(1, 15)),
        "password": draw(smpp_text(0, 8)),
        "short_codes": draw(st.lists(st.from_regex(r"[0-9]{3,6}", fullmatch=True), min_size=1, max_size=5, unique=True)),
    }
    optional = {
        "system_type": smpp_text(0, 12),
        "interface_version": st.sampled_from([0x33, 0x34]),
        "addr_ton": st.integers(0, 255),
        "addr_npi": st.integers(0, 255),
        "address_range": smpp_text(0, 40),
        "bind": st.sampled_from(["transceiver", "transmitter+receiver"]),
        "window": st.integers(1, 1000),
        "max_mt_per_second": seconds(),
        "response_timeout": seconds(),
        "bind_timeout": seconds(),
        "max_pdu_length": st.integers(1024, 1048576),
        "source_addr_ton": st.integers(0, 255),
        "source_addr_npi": st.integers(0, 255),
        "dest_addr_ton": st.integers(0, 255),
        "dest_addr_npi": st.integers(0, 255),
        "message_id_format": st.sampled_from(["string", "decimal", "hex", "hex_submit_decimal_receipt", "decimal_submit_hex_receipt"]),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            toml[key] = draw(strategy)
    if draw(st.booleans()):
        toml["enquire_link_interval"] = draw(seconds())
        if draw(st.booleans()):
            toml["dead_peer_timeout"] = toml["enquire_link_interval"] * 2 + draw(seconds())
    if draw(st.booleans()):
        toml["reconnect_delay"] = draw(seconds())
        toml["reconnect_max_delay"] = toml["reconnect_delay"] + draw(st.integers(0, 1000))
    expected = {k: v for k, v in toml.items() if k != "bind"}
    expected["short_codes"] = tuple(toml["short_codes"])
    if "bind" in toml:
        modes = {"transceiver": (BindMode.TRANSCEIVER,), "transmitter+receiver": (BindMode.TRANSMITTER, BindMode.RECEIVER)}
        expected["binds"] = modes[toml["bind"]]
    return toml, expected


FLOAT_KEYS = {f.name for f in attrs.fields(SmscConfig) if f.type in ("float", float)}


@given(valid_smsc())
def test_valid_smsc_round_trips(tmp_path_factory: pytest.TempPathFactory, case: tuple[dict, dict]) -> None:
    """Any valid [[smsc]] table loads into exactly the values written."""
    toml, expected = case
    cfg = load_config(write(tmp_path_factory.mktemp("cfg"), dump({"smsc": [toml]})))
    (s,) = cfg.smscs
    for key, value in expected.items():
        got = getattr(s, key)
        assert got == value
        assert type(got) is (float if key in FLOAT_KEYS else type(value))
    default_dpt = 3 * s.enquire_link_interval
    assert s.dead_peer_timeout == expected.get("dead_peer_timeout", default_dpt)


def _wrong_types(*exclude: type) -> st.SearchStrategy[Any]:
    pool = {
        bool: st.booleans(),
        int: st.integers(),
        float: st.floats(),
        str: st.text(max_size=20),
        list: st.lists(st.integers(), max_size=3),
        dict: st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.integers(), max_size=2),
    }
    return st.one_of(*(s for t, s in pool.items() if t not in exclude))


def _int_out_of(lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.integers(max_value=lo - 1) | st.integers(min_value=hi + 1) | _wrong_types(int)


def _number_not_above(bound: float) -> st.SearchStrategy[Any]:
    return (
        st.floats(max_value=bound)
        | st.integers(max_value=int(bound))
        | st.sampled_from([math.inf, -math.inf, math.nan])
        | _wrong_types(int, float)
    )


def _text_out_of(lo: int, hi: int) -> st.SearchStrategy[Any]:
    too_long = st.text(_SMPP_CHARS, min_size=hi + 1, max_size=hi + 10)
    too_short = st.text(_SMPP_CHARS, max_size=lo - 1) if lo > 0 else st.nothing()
    return too_long | too_short | _wrong_types(str)


# (table, key) -> invalid values; every one must be reported as exactly that key.
INVALID: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("smsc", "name"): st.text(max_size=40).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", s)) | _wrong_types(str),
    ("smsc", "host"): st.just("") | _wrong_types(str),
    ("smsc", "port"): _int_out_of(1, 65535),
    ("smsc", "system_id"): _text_out_of(1, 15),
    ("smsc", "password"): _text_out_of(0, 8),
    ("smsc", "system_type"): _text_out_of(0, 12),
    ("smsc", "interface_version"): st.integers().filter(lambda v: v not in (0x33, 0x34)) | _wrong_types(int),
    ("smsc", "addr_ton"): _int_out_of(0, 255),
    ("smsc", "address_range"): _text_out_of(0, 40),
    ("smsc", "bind"): st.text().filter(lambda s: s not in ("transceiver", "transmitter+receiver")) | _wrong_types(str),
    ("smsc", "short_codes"): st.lists(st.text(max_size=8), max_size=3).filter(
        lambda v: not v or len(set(v)) < len(v) or any(not re.fullmatch(r"[0-9]{3,6}", c) for c in v)
    ) | _wrong_types(list),
    ("smsc", "window"): _int_out_of(1, 1000),
    ("smsc", "max_mt_per_second"): _number_not_above(0),
    ("smsc", "enquire_link_interval"): _number_not_above(0),
    ("smsc", "dead_peer_timeout"): _number_not_above(30),
    ("smsc", "response_timeout"): _number_not_above(0),
    ("smsc", "reconnect_max_delay"): _number_not_above(0.99),
    ("smsc", "max_pdu_length"): _int_out_of(1024, 1048576),
    ("smsc", "dest_addr_npi"): _int_out_of(0, 255),
    ("smsc", "message_id_format"): st.text().filter(lambda s: s not in ("string", "decimal", "hex", "hex_submit_decimal_receipt", "decimal_submit_hex_receipt")) | _wrong_types(str),
    ("gateway", "log_level"): st.text().filter(lambda s: s not in ("debug", "info", "warning", "error")) | _wrong_types(str),
    ("gateway", "drain_timeout"): st.floats(max_value=-1e-9) | _wrong_types(int, float),
    ("simulator", "port"): _int_out_of(0, 65535),
    ("simulator", "short_code"): st.text(max_size=8).filter(lambda s: not re.fullmatch(r"[0-9]{3,6}", s)) | _wrong_types(str),
    ("simulator", "demo_mo_per_second"): st.floats(max_value=-1e-9) | _wrong_types(int, float),
    ("simulator", "delivery_receipts"): _wrong_types(bool),
    ("outbind", "port"): _int_out_of(1, 65535),
}


@st.composite
def invalid_case(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    table, key = draw(st.sampled_from(sorted(INVALID)))
    value = draw(INVALID[(table, key)])
    if table == "smsc":
        doc = {"smsc": [smsc(**{key: value})]}
        where = "smsc 'op-a'" if key != "name" else "smsc[0]"
    elif table == "outbind":
        doc = {"outbind": {"port": value, "system_id": "x", "password": ""}}
        where = table
    else:
        doc = {table: {key: value}}
        where = table
    return doc, where, key


@given(invalid_case())
def test_invalid_value_names_exactly_its_key(tmp_path_factory: pytest.TempPathFactory, case: tuple[dict, str, str]) -> None:
    """Any invalid value is one ConfigError problem naming exactly its table and key."""
    doc, table, key = case
    path = write(tmp_path_factory.mktemp("cfg"), dump(doc))
    try:
        load_config(path)
    except ConfigError as exc:
        assert [(p.table, p.key) for p in exc.problems] == [(table, key)]
        assert str(exc).startswith(f"{path}: [{table}] {key}: expected ")
    else:
        pytest.fail(f"{doc!r} loaded")


@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    """Any text either loads or raises ConfigError, never another exception."""
    assume("\x00" not in text)
    try:
        load_config(write(tmp_path_factory.mktemp("cfg"), text))
    except ConfigError:
        pass


# --- [gateway] campaigns, [keywords], [[short_code]] -------------------------------------------


class TestCampaignSettings:
    def test_defaults(self, tmp_path: Path) -> None:
        """Without the new tables: campaigns.d next to the file, polled every 2 s, the usual system keywords, no short code."""
        cfg = load_config(write(tmp_path, ""))
        assert cfg.campaigns_dir == tmp_path / "campaigns.d" and cfg.campaigns_poll_interval == 2.0
        assert cfg.keywords == KeywordsConfig(
            stop=("STOP", "END", "CANCEL", "UNSUBSCRIBE", "QUIT", "STOPALL"), start=("START",), help=("HELP",)
        )
        assert cfg.short_codes == ()

    def test_every_key(self, tmp_path: Path) -> None:
        """Every key of the new tables lands in its field."""
        (tmp_path / "sheets").mkdir()
        doc = {
            "gateway": {"campaigns_dir": "sheets", "campaigns_poll_interval": 0},
            "keywords": {"stop": ["STOP", "ΤΕΛΟΣ"], "start": ["GO"], "help": ["INFO", "ΒΟΗΘΕΙΑ"]},
            "short_code": [
                {
                    "code": "4160",
                    "help": "Help for 4160.",
                    "not_understood": "Eh?",
                    "default_campaign": "euro2004-final-vote",
                    "stop_reply": "Bye.",
                    "start_reply": "Hi again.",
                },
                {"code": "80888"},
            ],
        }
        cfg = load_doc(tmp_path, doc)
        assert cfg.campaigns_dir == tmp_path / "sheets" and cfg.campaigns_poll_interval == 0.0
        assert cfg.keywords == KeywordsConfig(stop=("STOP", "ΤΕΛΟΣ"), start=("GO",), help=("INFO", "ΒΟΗΘΕΙΑ"))
        first, second = cfg.short_codes
        assert first == ShortCodeConfig(
            code="4160",
            help="Help for 4160.",
            not_understood="Eh?",
            default_campaign="euro2004-final-vote",
            stop_reply="Bye.",
            start_reply="Hi again.",
        )
        assert second == ShortCodeConfig(code="80888") and cfg.short_code("80888") is second

    def test_short_code_defaults_name_the_code(self) -> None:
        """An unconfigured short code gets default replies that mention it, and no not-understood reply."""
        sc = GatewayConfig(state_dir=Path("/s")).short_code("4160")
        assert sc.code == "4160" and sc.not_understood is None and sc.default_campaign is None
        for text in (sc.help, sc.stop_reply, sc.start_reply):
            assert "4160" in text
        assert "unsubscribed" in sc.stop_reply and "subscribed" in sc.start_reply

    def test_routing_values(self, tmp_path: Path) -> None:
        """The keywords and short codes convert to the routing table's values."""
        doc = {"keywords": {"help": ["INFO"]}, "short_code": [{"code": "4160", "default_campaign": "vote"}, {"code": "80888"}]}
        cfg = load_doc(tmp_path, doc)
        assert cfg.keywords.global_keywords() == GlobalKeywords(help=("INFO",), extra={"yes": ("YES",), "mydata": ("MYDATA",)})
        assert cfg.short_code_rules() == (ShortCodeRule("4160", "vote"), ShortCodeRule("80888", None))

    def test_absolute_campaigns_dir(self, tmp_path: Path) -> None:
        """An absolute campaigns_dir is used as written."""
        cfg = load_doc(tmp_path, {"gateway": {"campaigns_dir": str(tmp_path)}})
        assert cfg.campaigns_dir == tmp_path

    def test_default_config_campaigns_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Built-in defaults read ./conf/campaigns.d when it exists, else no campaigns."""
        monkeypatch.chdir(tmp_path)
        assert default_config().campaigns_dir is None
        (tmp_path / "conf" / "campaigns.d").mkdir(parents=True)
        assert default_config().campaigns_dir == tmp_path / "conf" / "campaigns.d"

    def test_example_short_code_loads_when_uncommented(self, tmp_path: Path) -> None:
        """The example's [[short_code]] and campaigns_dir are valid once uncommented."""
        text = re.sub(r"^# (\[|\w+ = )", r"\1", EXAMPLE.read_text().replace('# mo_file = "demo-mos.jsonl"', ""), flags=re.M)
        (tmp_path / "campaigns.d").mkdir()
        cfg = load_config(write(tmp_path, text))
        assert cfg.campaigns_dir == tmp_path / "campaigns.d"
        (sc,) = cfg.short_codes
        assert sc.code == "4160" and sc.default_campaign == "euro2004-final-vote"
        assert (sc.help, sc.stop_reply, sc.start_reply) == (
            ShortCodeConfig(code="4160").help,
            ShortCodeConfig(code="4160").stop_reply,
            ShortCodeConfig(code="4160").start_reply,
        )

    def test_example_keywords_are_the_defaults(self) -> None:
        """The shipped [keywords] table spells out the defaults."""
        assert load_config(EXAMPLE).keywords == KeywordsConfig()


# (document, table, key, message fragment): one problem each.
CAMPAIGN_PROBLEMS = [
    ({"gateway": {"campaigns_dir": "nowhere"}}, "gateway", "campaigns_dir", "expected a path to an existing directory, got '"),
    ({"gateway": {"campaigns_dir": 3}}, "gateway", "campaigns_dir", "expected a path, got 3"),
    ({"gateway": {"campaigns_poll_interval": -1}}, "gateway", "campaigns_poll_interval", "expected a number of at least 0, got -1"),
    ({"keywords": {"stop": []}}, "keywords", "stop", "got an empty array"),
    ({"keywords": {"stop": "STOP"}}, "keywords", "stop", "expected a non-empty array of distinct single words of letters and digits, such as [\"STOP\", \"END\"], got 'STOP'"),
    ({"keywords": {"stop": ["STOP", "stop"]}}, "keywords", "stop", "got 'STOP' and 'stop', the same keyword"),
    ({"keywords": {"stop": ["STOP", "STOP"]}}, "keywords", "stop", "got 'STOP' twice"),
    ({"keywords": {"help": ["HELP ME"]}}, "keywords", "help", "got 'HELP ME'"),
    ({"keywords": {"help": ["E-HELP"]}}, "keywords", "help", "got 'E-HELP'"),
    ({"keywords": {"help": [""]}}, "keywords", "help", "got ''"),
    ({"keywords": {"start": ["START", "End"]}}, "keywords", "start", "expected words that are not in [keywords] stop, got 'End' in both"),
    ({"keywords": {"help": ["Stóp"]}}, "keywords", "help", "expected words that are not in [keywords] stop, got 'Stóp' in both"),
    ({"keywords": {"halp": ["HELP"]}}, "keywords", "halp", "unknown key; did you mean 'help'?"),
    ({"short_code": [{"code": "41"}]}, "short_code[0]", "code", "expected a string of 3 to 6 digits, got '41'"),
    ({"short_code": [{"code": 4160}]}, "short_code[0]", "code", "got 4160"),
    ({"short_code": [{"help": "x"}]}, "short_code[0]", "code", "missing; expected a string of 3 to 6 digits"),
    ({"short_code": [{"code": "4160", "help": ""}]}, "short_code '4160'", "help", "expected a non-empty string, got ''"),
    ({"short_code": [{"code": "4160", "not_understood": 5}]}, "short_code '4160'", "not_understood", "got 5"),
    ({"short_code": [{"code": "4160", "default_campaign": "my vote"}]}, "short_code '4160'", "default_campaign", "expected a campaign name of 1 to 64 characters"),
    ({"short_code": [{"code": "4160", "stop_reply": ["x"]}]}, "short_code '4160'", "stop_reply", "got ['x']"),
    ({"short_code": [{"code": "4160", "start_replay": "x"}]}, "short_code '4160'", "start_replay", "unknown key; did you mean 'start_reply'?"),
    ({"short_code": [{"code": "4160"}, {"code": "4160"}]}, "short_code[1]", "code", "got '4160' again (short_code '4160' has it)"),
    ("short_code = [3]\n", "short_code[0]", "", "expected a table, got 3"),
    ({"short_code": {"code": "4160"}}, "", "short_code", "expected an array of tables [[short_code]], got a single table [short_code]"),
    ({"short_cod": {"code": "4160"}}, "", "short_cod", "unknown table; did you mean 'short_code'?"),
]


@pytest.mark.parametrize(("doc", "table", "key", "fragment"), CAMPAIGN_PROBLEMS, ids=lambda v: "")
def test_campaign_setting_problem_reported(tmp_path: Path, doc: dict[str, Any] | str, table: str, key: str, fragment: str) -> None:
    """Each mistake in the campaign settings is one problem naming the file, table and key."""
    (problem,) = problems_of(tmp_path, doc)
    assert (problem.file, problem.table, problem.key) == (str(tmp_path / "gatewayd.toml"), table, key)
    assert fragment in problem.message


class TestCampaignSettingProblems:
    def test_campaigns_dir_reported_with_other_gateway_problems(self, tmp_path: Path) -> None:
        """A missing campaigns_dir is reported even when another [gateway] key is wrong."""
        found = {(p.table, p.key) for p in problems_of(tmp_path, {"gateway": {"campaigns_dir": "nowhere", "log_level": "loud"}})}
        assert found == {("gateway", "campaigns_dir"), ("gateway", "log_level")}

    def test_top_level_help_points_to_its_table(self, tmp_path: Path) -> None:
        """A keywords list written at the top level says which table it belongs in."""
        (problem,) = problems_of(tmp_path, 'stop = ["STOP"]\n')
        assert (problem.table, problem.key) == ("", "stop") and "belongs in [keywords]" in problem.message

    def test_validators_guard_direct_construction(self) -> None:
        """Building the settings in code applies the same checks."""
        with pytest.raises(ValueError, match="stop"):
            KeywordsConfig(stop=("STOP", "stop"))
        with pytest.raises(ValueError, match="in both"):
            KeywordsConfig(help=("STOP",))
        with pytest.raises(ValueError, match="code"):
            ShortCodeConfig(code="12")
        with pytest.raises(ValueError, match="duplicate short code '4160'"):
            GatewayConfig(state_dir=Path("/s"), short_codes=(ShortCodeConfig(code="4160"), ShortCodeConfig(code="4160")))


@pytest.mark.parametrize(
    ("store", "own_process"),
    [({}, True), ({"writer": "thread"}, False), ({"url": "sqlite://"}, False), ({"url": "sqlite:///:memory:", "writer": "process"}, False)],
)
def test_the_store_writer_has_a_process_of_its_own_unless_it_cannot(tmp_path: Path, store: dict[str, Any], own_process: bool) -> None:
    """A process by default; a thread when asked, and always for an in-memory database,
    which another process could not see."""
    assert load_doc(tmp_path, {"store": store}).store.writer_process is own_process
