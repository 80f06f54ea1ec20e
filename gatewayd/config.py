"""Reading and validating ``gatewayd.toml`` into frozen settings.

The file's top-level tables are ``[gateway]``, ``[store]``, ``[simulator]``, ``[outbind]``,
``[keywords]`` (the system keywords such as STOP and HELP) and any number of ``[[smsc]]``
and ``[[short_code]]`` (what each short code answers by itself). Every setting is declared
once, as an attrs field whose metadata carries a *check*; the same check parses the TOML
value at load time and validates the attribute when code builds a settings object directly.
Loading never stops at the first mistake: every problem in the file (wrong type, out of
range, unknown key, missing key, inconsistent pair) is collected and reported together in
one :class:`ConfigError`.

Relative paths (``[gateway] state_dir``, ``[simulator] mo_file``, a relative SQLite URL) are
resolved against the directory of the configuration file, so a file means the same thing
whatever the daemon's working directory is. Without a file (``load_config(None)``) the
built-in defaults apply and ``state_dir`` is ``./state`` under the current directory.

Only ``gatewayd.toml`` is validated here; other files next to it (``campaigns.d/*.toml``,
``policy.toml``) belong to the modules that read them (:mod:`gatewayd.sheets` for the
campaign sheets, whose directory is ``[gateway] campaigns_dir``).
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import math
import os
import re
import socket
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import attrs

from gatewayd.errors import GatewayError
from gatewayd.smpp.constants import INTERFACE_VERSION_34, BindMode
from routing.normalise import fold, is_single_word

if TYPE_CHECKING:
    from routing.table import GlobalKeywords, ShortCodeRule

__all__ = [
    "ConfigProblem",
    "ConfigError",
    "SmscConfig",
    "StoreConfig",
    "SimulatorConfig",
    "OutbindConfig",
    "KeywordsConfig",
    "ShortCodeConfig",
    "MetricsConfig",
    "ControlConfig",
    "PrivacyConfig",
    "GatewayConfig",
    "load_config",
    "default_config",
]

_CHECK = "gatewayd.config.check"
_KEY = "gatewayd.config.key"
_REQUIRED = "gatewayd.config.required"

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_CAMPAIGN_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHORT_CODE_RE = re.compile(r"[0-9]{3,6}")
_REGION_RE = re.compile(r"[A-Z]{2}")
_SQLITE_URL_RE = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(.*)", re.DOTALL)


# --- problems ------------------------------------------------------------------------------


@attrs.frozen
class ConfigProblem:
    """One mistake in a configuration file.

    ``table`` is empty for problems about the file as a whole or its top level (a syntax
    error, an unknown table); ``key`` is empty when the problem is about a whole table.
    """

    #: The file as it was named to :func:`load_config`.
    file: str
    #: Where in the file: ``"gateway"``, ``"store"``, ``"smsc 'operator-a'"``, ``"smsc[2]"``.
    table: str
    #: The offending key (as spelled in the file), or ``""``.
    key: str
    #: What was expected and what was found.
    message: str

    def __str__(self) -> str:
        where = " ".join(part for part in (f"[{self.table}]" if self.table else "", self.key) if part)
        return f"{self.file}: {where}: {self.message}" if where else f"{self.file}: {self.message}"


class ConfigError(GatewayError):
    """The configuration is unusable; ``problems`` lists everything wrong with it.

    ``str()`` gives one line per problem: ``FILE: [table] key: message``.
    """

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


class _Invalid(Exception):
    """A value does not fit its setting; the message says what was expected and found."""


class _Inconsistent(ValueError):
    """Settings that are fine one by one contradict each other.

    Attributes:
        problems: ``(key, message)`` pairs, all of them, not just the first.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))
        self.problems = problems


def _show(value: object) -> str:
    """How a found value is quoted in a problem message (TOML spelling, kept short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: object) -> str:
    """The TOML type of a value, for messages that must not show the value itself."""
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    return kinds.get(type(value), "a table" if isinstance(value, dict) else "a " + type(value).__name__)


# --- checks: parse a TOML value, and validate an attribute ----------------------------------


@attrs.frozen
class _Check:
    """Turns a TOML value into a setting value or raises :class:`_Invalid`.

    Each parse accepts its own output unchanged, so the check doubles as an attrs validator.
    """

    #: What a valid value looks like, for checks whose description never varies.
    what: ClassVar[str] = ""

    def describe(self) -> str:
        """What a valid value looks like, for messages."""
        return self.what

    def parse(self, value: Any) -> Any:
        """Return the setting value for ``value`` or raise :class:`_Invalid`."""
        raise NotImplementedError

    def fail(self, value: object, found: str | None = None) -> NoReturn:
        """Raise the standard "expected ..., got ..." problem."""
        raise _Invalid(f"expected {self.describe()}, got {found or _show(value)}")

    def __call__(self, instance: object, attribute: attrs.Attribute, value: object) -> None:
        try:
            self.parse(value)
        except _Invalid as exc:
            raise ValueError(f"{attribute.name}: {exc}") from None


@attrs.frozen
class _Int(_Check):
    lo: int
    hi: int

    def describe(self) -> str:
        return f"an integer from {self.lo} to {self.hi}"

    def parse(self, value: Any) -> int:
        if type(value) is int and self.lo <= value <= self.hi:
            return value
        self.fail(value)


@attrs.frozen
class _Number(_Check):
    """A finite int or float above ``gt`` (exclusive) or from ``ge`` (inclusive); stored as float."""

    gt: float | None = None
    ge: float | None = None

    def describe(self) -> str:
        if self.gt is not None:
            return f"a number greater than {self.gt:g}"
        return f"a number of at least {self.ge:g}"

    def parse(self, value: Any) -> float:
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
        ):
            return float(value)
        self.fail(value)


@attrs.frozen
class _Str(_Check):
    """A string of ``lo`` to ``hi`` characters, ASCII without NUL when it goes into a PDU."""

    lo: int
    hi: int
    pattern: re.Pattern[str] | None = None
    what: str | None = None
    smpp: bool = False
    secret: bool = False

    def describe(self) -> str:
        if self.what:
            return self.what
        ascii_ = " ASCII" if self.smpp else ""
        if self.lo == 0:
            return f"a string of at most {self.hi}{ascii_} characters"
        if self.lo == 1 and self.hi >= 100:
            return "a non-empty string"
        return f"a string of {self.lo} to {self.hi}{ascii_} characters"

    def parse(self, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(value, _kind(value) if self.secret else None)
        ok = (
            self.lo <= len(value) <= self.hi
            and (self.pattern is None or self.pattern.fullmatch(value) is not None)
            and (not self.smpp or (value.isascii() and "\x00" not in value))
        )
        if not ok:
            # A secret is never echoed into an error message (which ends up in logs).
            found = f"a string of {len(value)} characters" if self.secret else None
            if found is None and len(value) > self.hi:
                found = f"{_show(value)} ({len(value)} characters)"
            self.fail(value, found)
        return value


@attrs.frozen
class _Choice(_Check):
    values: tuple[Any, ...]
    shown: str | None = None

    def describe(self) -> str:
        if self.shown:
            return self.shown
        quoted = [_show(v) for v in self.values]
        return "one of " + ", ".join(quoted[:-1]) + " or " + quoted[-1]

    def parse(self, value: Any) -> Any:
        # type() equality keeps true from passing for 1 (bool is an int subclass).
        if any(type(value) is type(v) and value == v for v in self.values):
            return value
        self.fail(value)


_BIND_FORMS: dict[str, tuple[BindMode, ...]] = {
    "transceiver": (BindMode.TRANSCEIVER,),
    "transmitter+receiver": (BindMode.TRANSMITTER, BindMode.RECEIVER),
}


@attrs.frozen
class _Binds(_Check):
    what = "'transceiver' or 'transmitter+receiver'"

    def parse(self, value: Any) -> tuple[BindMode, ...]:
        if isinstance(value, str) and value in _BIND_FORMS:
            return _BIND_FORMS[value]
        if isinstance(value, tuple) and value in _BIND_FORMS.values():
            return value
        self.fail(value)


@attrs.frozen
class _ShortCodes(_Check):
    what = "an array of distinct short codes (strings of 3 to 6 digits)"

    def parse(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            self.fail(value)
        if not value:
            self.fail(value, "an empty array")
        seen: set[str] = set()
        for code in value:
            if not isinstance(code, str) or _SHORT_CODE_RE.fullmatch(code) is None:
                hint = " (quote it)" if type(code) is int else ""
                self.fail(value, f"{_show(code)}{hint}")
            if code in seen:
                self.fail(value, f"{code!r} twice")
            seen.add(code)
        return tuple(value)


@attrs.frozen
class _PathCheck(_Check):
    """A filesystem path; the loader resolves it against the file's directory."""

    must_exist: bool = False

    def describe(self) -> str:
        return "a path to an existing file" if self.must_exist else "a path"

    def parse(self, value: Any) -> Path:
        if isinstance(value, Path):
            return value
        if isinstance(value, str) and value and "\x00" not in value:
            return Path(value).expanduser()
        self.fail(value)


@attrs.frozen
class _Url(_Check):
    what = "a database URL such as 'sqlite:////var/lib/gatewayd/gatewayd.db'"

    def parse(self, value: Any) -> str:
        if isinstance(value, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
            return value
        self.fail(value)


@attrs.frozen
class _Words(_Check):
    """A non-empty array of distinct keywords, each one word of letters and digits.

    Keywords compare as routing compares them (:func:`routing.normalise.fold`): words that
    differ only in case or accents are the same keyword, so they count as duplicates. A word
    with a space or a hyphen could never be the first word of an MO, so it is refused.
    """

    #: Shown in messages as what a valid value looks like.
    example: str = '["STOP", "END"]'

    def describe(self) -> str:
        return f"a non-empty array of distinct single words of letters and digits, such as {self.example}"

    def parse(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            self.fail(value)
        if not value:
            self.fail(value, "an empty array")
        seen: dict[str, str] = {}
        for word in value:
            if not isinstance(word, str) or not is_single_word(word):
                self.fail(value, _show(word))
            folded = fold(word)
            if folded in seen:
                same = f"{word!r} twice" if seen[folded] == word else f"{seen[folded]!r} and {word!r}, the same keyword"
                self.fail(value, same)
            seen[folded] = word
        return tuple(value)


def _setting(
    check: _Check,
    default: Any = attrs.NOTHING,
    *,
    key: str | None = None,
    required: bool | None = None,
    repr: Any = True,  # noqa: A002 - mirrors attrs.field
    converter: Any = None,
) -> Any:
    """An attrs field read from TOML key ``key`` (default: the attribute name) with ``check``.

    ``required`` says whether the TOML key must be present; by default, when there is no
    attrs default.
    """
    if required is None:
        required = default is attrs.NOTHING
    return attrs.field(
        default=default,
        validator=attrs.validators.optional(check) if default is None else check,
        repr=repr,
        converter=converter,
        metadata={_CHECK: check, _KEY: key, _REQUIRED: required},
    )


def _to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _url_repr(url: str) -> str:
    """The URL with any password replaced, for reprs."""
    return repr(re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url))


# --- settings --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SmscConfig:
    """How to reach and bind to one operator SMSC (an ``[[smsc]]`` table).

    Equality covers every setting: a reload re-establishes exactly the binds whose
    ``SmscConfig`` changed. Durations are seconds. The default source TON/NPI are 0/0
    ("unknown"), which lets the SMSC interpret a short code by itself; operators that insist
    on a specific type usually want TON 3 (network specific) or 6 (abbreviated).
    """

    #: Unique name, used in logs and the store (``[A-Za-z0-9_.-]``, 1 to 32 characters).
    name: str = _setting(_Str(1, 32, _NAME_RE, "a name of 1 to 32 characters from A-Z a-z 0-9 _ . -"))
    #: Host name or address of the SMSC.
    host: str = _setting(_Str(1, 253))
    #: TCP port of the SMSC.
    port: int = _setting(_Int(1, 65535))
    #: ESME system_id given in the bind.
    system_id: str = _setting(_Str(1, 15, smpp=True))
    #: Bind password; never shown in reprs, logs or error messages.
    password: str = _setting(_Str(0, 8, smpp=True, secret=True), repr=False)
    #: system_type given in the bind.
    system_type: str = _setting(_Str(0, 12, smpp=True), "")
    #: interface_version given in the bind: 0x33 or 0x34.
    interface_version: int = _setting(
        _Choice((0x33, INTERFACE_VERSION_34), "0x33 or 0x34 (51 or 52)"), INTERFACE_VERSION_34
    )
    #: addr_ton given in the bind.
    addr_ton: int = _setting(_Int(0, 255), 0)
    #: addr_npi given in the bind.
    addr_npi: int = _setting(_Int(0, 255), 0)
    #: address_range given in the bind.
    address_range: str = _setting(_Str(0, 40, smpp=True), "")
    #: One transceiver bind, or a transmitter and a receiver (TOML key ``bind``).
    binds: tuple[BindMode, ...] = _setting(_Binds(), (BindMode.TRANSCEIVER,), key="bind")
    #: Short codes served through this SMSC; several SMSCs may share one.
    short_codes: tuple[str, ...] = _setting(_ShortCodes(), converter=_to_tuple)
    #: Most requests outstanding (sent, unanswered) at once on one bind.
    window: int = _setting(_Int(1, 1000), 10)
    #: Throttle for submit_sm on this SMSC, across its binds.
    max_mt_per_second: float = _setting(_Number(gt=0), 100.0)
    #: Idle time after which an enquire_link is sent.
    enquire_link_interval: float = _setting(_Number(gt=0), 30.0)
    #: Silence after which the peer is declared dead; default 3 x enquire_link_interval.
    dead_peer_timeout: float = _setting(
        _Number(gt=0), attrs.Factory(lambda self: 3 * self.enquire_link_interval, takes_self=True)
    )
    #: How long a request waits for its response.
    response_timeout: float = _setting(_Number(gt=0), 10.0)
    #: How long a bind waits for its bind_*_resp.
    bind_timeout: float = _setting(_Number(gt=0), 10.0)
    #: First delay before reconnecting; it doubles up to reconnect_max_delay.
    reconnect_delay: float = _setting(_Number(gt=0), 1.0)
    #: Longest delay between reconnection attempts.
    reconnect_max_delay: float = _setting(_Number(gt=0), 60.0)
    #: Largest PDU accepted from the SMSC, in octets.
    max_pdu_length: int = _setting(_Int(1024, 1048576), 65536)
    #: source_addr_ton of MTs (the short code).
    source_addr_ton: int = _setting(_Int(0, 255), 0)
    #: source_addr_npi of MTs.
    source_addr_npi: int = _setting(_Int(0, 255), 0)
    #: dest_addr_ton of MTs (1: international).
    dest_addr_ton: int = _setting(_Int(0, 255), 1)
    #: dest_addr_npi of MTs (1: ISDN/E.164).
    dest_addr_npi: int = _setting(_Int(0, 255), 1)
    #: How the SMSC writes message ids in submit_sm_resp and in receipts, so they correlate:
    #: ``"string"`` (the same text, compared case-insensitively), ``"decimal"`` or ``"hex"``
    #: (a number in that base on both sides, leading zeros ignored),
    #: ``"hex_submit_decimal_receipt"`` or ``"decimal_submit_hex_receipt"`` (one number, two bases).
    message_id_format: str = _setting(
        _Choice(("string", "decimal", "hex", "hex_submit_decimal_receipt", "decimal_submit_hex_receipt")), "string"
    )

    def __attrs_post_init__(self) -> None:
        eli, dpt = self.enquire_link_interval, self.dead_peer_timeout
        rd, rmd = self.reconnect_delay, self.reconnect_max_delay
        problems = []
        if dpt <= eli:
            problems.append(
                ("dead_peer_timeout", f"expected a number greater than enquire_link_interval ({eli:g}), got {dpt:g}")
            )
        if rmd < rd:
            problems.append(
                ("reconnect_max_delay", f"expected a number of at least reconnect_delay ({rd:g}), got {rmd:g}")
            )
        if problems:
            raise _Inconsistent(problems)


@attrs.frozen(kw_only=True)
class StoreConfig:
    """Where messages and state are kept (the ``[store]`` table)."""

    #: SQLAlchemy URL; default ``sqlite:///{state_dir}/gatewayd.db``. Relative SQLite paths
    #: are made absolute against the configuration file's directory.
    url: str = _setting(_Url(), required=False, repr=_url_repr)
    #: An MO identical to one received this many seconds earlier (same SMSC, sender, short
    #: code and content) is a redelivery: acknowledged, processed once. SMPP gives MOs no id.
    dedupe_window: float = _setting(_Number(ge=0), 30.0)
    #: Seconds to wait for the missing parts of a concatenated MO before processing what came.
    reassembly_timeout: float = _setting(_Number(gt=0), 300.0)
    #: Seconds a receipt that arrived before its submit_sm_resp waits to be matched.
    receipt_grace: float = _setting(_Number(gt=0), 300.0)
    #: ISO region (e.g. "GR") for numbers an SMSC sends in national format; unset: international only.
    default_region: str | None = _setting(_Str(2, 2, _REGION_RE, "a two-letter ISO region code such as 'GR'"), None)
    #: Attempts before a temporarily failing MT is given up.
    mt_max_attempts: int = _setting(_Int(1, 100), 5)
    #: Where the store writer runs: ``"process"``, a process of its own, so that its work
    #: runs on another core than the SMPP side's; or ``"thread"``, a worker thread of the
    #: gateway's process (one core for everything). An in-memory SQLite database always
    #: uses a thread.
    writer: str = _setting(_Choice(("process", "thread"), "'process' or 'thread'"), "process")

    @property
    def writer_process(self) -> bool:
        """Whether the writer runs in a process of its own."""
        return self.writer == "process" and self.url not in ("sqlite://", "sqlite:///:memory:")


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """The bundled SMSC simulator (the ``[simulator]`` table), for trying the gateway out."""

    #: ``"auto"`` (run it only when no ``[[smsc]]`` is configured), true or false.
    enabled: bool | str = _setting(_Choice(("auto", True, False), "'auto', true or false"), "auto")
    #: Address the simulator listens on.
    host: str = _setting(_Str(1, 253), "127.0.0.1")
    #: Port it listens on; 0 picks any free port.
    port: int = _setting(_Int(0, 65535), 0)
    #: system_id the gateway binds with.
    system_id: str = _setting(_Str(1, 15, smpp=True), "gatewayd")
    #: Password the gateway binds with.
    password: str = _setting(_Str(0, 8, smpp=True, secret=True), "secret", repr=False)
    #: The short code the simulated subscribers write to.
    short_code: str = _setting(_Str(3, 6, _SHORT_CODE_RE, "a string of 3 to 6 digits"), "4160")
    #: Demo MOs injected per second so that traffic shows in the log; 0 turns them off.
    demo_mo_per_second: float = _setting(_Number(ge=0), 1.0)
    #: Optional JSON-lines file of MOs to inject.
    mo_file: Path | None = _setting(_PathCheck(must_exist=True), None)
    #: Whether the simulator sends delivery receipts for MTs that ask for them.
    delivery_receipts: bool = _setting(_Choice((True, False), "true or false"), True)


@attrs.frozen(kw_only=True)
class OutbindConfig:
    """Where SMSCs may connect to send an outbind (the optional ``[outbind]`` table)."""

    #: Address to listen on.
    host: str = _setting(_Str(1, 253), "0.0.0.0")
    #: Port to listen on.
    port: int = _setting(_Int(1, 65535))
    #: system_id an SMSC must present in its outbind.
    system_id: str = _setting(_Str(1, 15, smpp=True))
    #: password an SMSC must present in its outbind.
    password: str = _setting(_Str(0, 8, smpp=True, secret=True), repr=False)


_STOP_WORDS = ("STOP", "END", "CANCEL", "UNSUBSCRIBE", "QUIT", "STOPALL")


@attrs.frozen(kw_only=True)
class KeywordsConfig:
    """The system keywords, answered on every short code before any campaign (``[keywords]``).

    Words compare without regard to case or accents; no word may be in two lists.
    """

    #: Opt-out words: the sender is unsubscribed from the short code.
    stop: tuple[str, ...] = _setting(_Words(), _STOP_WORDS, converter=_to_tuple)
    #: Opt-in words: a sender who stopped is subscribed again.
    start: tuple[str, ...] = _setting(_Words(), ("START",), converter=_to_tuple)
    #: Words answered with the short code's help text.
    help: tuple[str, ...] = _setting(_Words(), ("HELP",), converter=_to_tuple)
    #: Words that confirm a pending marketing opt-in (sheets with ``opt_in = "confirmed"``).
    yes: tuple[str, ...] = _setting(_Words(), ("YES",), converter=_to_tuple)
    #: Words answered with a summary of what is held about the sender.
    mydata: tuple[str, ...] = _setting(_Words(), ("MYDATA",), converter=_to_tuple)

    def __attrs_post_init__(self) -> None:
        problems, owner = [], {}
        for key in ("stop", "start", "help", "yes", "mydata"):
            for word in getattr(self, key):
                other = owner.setdefault(fold(word), key)
                if other != key:
                    problems.append((key, f"expected words that are not in [keywords] {other}, got {word!r} in both"))
        if problems:
            raise _Inconsistent(problems)

    def global_keywords(self) -> GlobalKeywords:
        """These words as the routing table takes them."""
        from routing.table import GlobalKeywords

        return GlobalKeywords(stop=self.stop, start=self.start, help=self.help, extra={"yes": self.yes, "mydata": self.mydata})


def _default_help(config: ShortCodeConfig) -> str:
    return f"You have reached short code {config.code}. Text a campaign keyword to take part, or STOP to unsubscribe."


def _default_stop_reply(config: ShortCodeConfig) -> str:
    return f"You are unsubscribed from {config.code} and will get no more messages from it. Text START to subscribe again."


def _default_start_reply(config: ShortCodeConfig) -> str:
    return f"You are subscribed to {config.code} again. Text STOP to unsubscribe."


def _default_confirm_reply(config: ShortCodeConfig) -> str:
    return f"Thank you, your subscription on {config.code} is confirmed. Text STOP to unsubscribe."


def _default_nothing_to_confirm(config: ShortCodeConfig) -> str:
    return f"There is nothing to confirm on {config.code}. Text HELP for help."


_REPLY = _Str(1, 1000)


@attrs.frozen(kw_only=True)
class ShortCodeConfig:
    """What one short code answers by itself (a ``[[short_code]]`` table).

    A short code without a table gets the defaults: see :meth:`GatewayConfig.short_code`.
    """

    #: The short code: a string of 3 to 6 digits.
    code: str = _setting(_Str(3, 6, _SHORT_CODE_RE, "a string of 3 to 6 digits"))
    #: The reply to a help keyword.
    help: str = _setting(_REPLY, attrs.Factory(_default_help, takes_self=True))
    #: The reply to a message no campaign claims; None sends nothing.
    not_understood: str | None = _setting(_REPLY, None)
    #: The campaign that gets the messages no keyword claims; None: no such campaign.
    default_campaign: str | None = _setting(
        _Str(1, 64, _CAMPAIGN_NAME_RE, "a campaign name of 1 to 64 characters from A-Z a-z 0-9 _ . -"), None
    )
    #: The confirmation of an opt-out.
    stop_reply: str = _setting(_REPLY, attrs.Factory(_default_stop_reply, takes_self=True))
    #: The confirmation of an opt-in.
    start_reply: str = _setting(_REPLY, attrs.Factory(_default_start_reply, takes_self=True))
    #: The reply to a YES that confirms a pending marketing opt-in.
    confirm_reply: str = _setting(_REPLY, attrs.Factory(_default_confirm_reply, takes_self=True))
    #: The reply to a YES with nothing pending.
    nothing_to_confirm_reply: str = _setting(_REPLY, attrs.Factory(_default_nothing_to_confirm, takes_self=True))

    def rule(self) -> ShortCodeRule:
        """This short code as the routing table takes it."""
        from routing.table import ShortCodeRule

        return ShortCodeRule(short_code=self.code, default_campaign=self.default_campaign)


# --- operations: [metrics] and [control] --------------------------------------------------


@attrs.frozen
class _Loopback(_Check):
    """A loopback address or ``localhost``: the metrics endpoint has no authentication."""

    what = "a loopback address such as '127.0.0.1', '::1' or 'localhost' (the endpoint has no authentication)"

    def parse(self, value: Any) -> str:
        if isinstance(value, str):
            if value == "localhost":
                return value
            try:
                if ipaddress.ip_address(value).is_loopback:
                    return value
            except ValueError:
                pass
        self.fail(value)


@attrs.frozen(kw_only=True)
class MetricsConfig:
    """The Prometheus endpoint (the ``[metrics]`` table); read at start, a reload does not move it."""

    #: Serve ``GET /metrics``.
    enabled: bool = _setting(_Choice((True, False), "true or false"), False)
    #: Loopback address to listen on; put a reverse proxy in front to expose it further.
    host: str = _setting(_Loopback(), "127.0.0.1")
    #: TCP port; 0 picks any free port (logged in ``metrics_listening``).
    port: int = _setting(_Int(0, 65535), 9464)


@attrs.frozen(kw_only=True)
class ControlConfig:
    """The control socket of ``gatewayd status``/``reload``/``drain`` (the ``[control]`` table)."""

    #: Listen on the control socket.
    enabled: bool = _setting(_Choice((True, False), "true or false"), True)
    #: Its path; default ``control.sock`` in ``[gateway] state_dir``. Relative to the file.
    socket: Path | None = _setting(_PathCheck(), None)


@attrs.frozen(kw_only=True)
class PrivacyConfig:
    """Where the privacy policy and the privacy key are, and how often obligations run (``[privacy]``)."""

    #: The policy file; default ``policy.toml`` beside the configuration file. Relative to the file.
    policy_file: Path | None = _setting(_PathCheck(), None)
    #: The secret key of the number hashes and pseudonyms; default ``privacy.key`` in
    #: ``state_dir``, created (0600) when missing. Nodes sharing a database need the same key.
    key_file: Path | None = _setting(_PathCheck(), None)
    #: Seconds between runs of the scheduled obligations (idle erasure); 0 turns them off.
    obligations_interval: float = _setting(_Number(ge=0), 3600.0)


def _default_node() -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    return name or "gatewayd"


def _default_store(config: GatewayConfig) -> StoreConfig:
    return StoreConfig(url=f"sqlite:///{config.state_dir}/gatewayd.db")


@attrs.frozen(kw_only=True)
class GatewayConfig:
    """Everything the daemon was configured with."""

    #: Absolute path of the file this was read from; None for built-in defaults.
    path: Path | None = None
    #: Absolute directory for the database and other state.
    state_dir: Path = _setting(_PathCheck(), required=False)
    #: "debug", "info", "warning" or "error".
    log_level: str = _setting(_Choice(("debug", "info", "warning", "error")), "info")
    #: "auto" (console on a tty, JSON otherwise), "json" or "console".
    log_format: str = _setting(_Choice(("auto", "json", "console")), "auto")
    #: On SIGTERM, seconds to wait for outstanding responses before closing binds.
    drain_timeout: float = _setting(_Number(ge=0), 10.0)
    #: This gateway's name among the nodes sharing one database (claims of the outbox).
    node: str = _setting(_Str(1, 64, _NAME_RE, "a name of 1 to 64 characters from A-Z a-z 0-9 _ . -"), attrs.Factory(_default_node))
    #: Absolute directory of the campaign sheets (``*.toml``); None: no campaigns.
    campaigns_dir: Path | None = _setting(_PathCheck(), None)
    #: Seconds between looks at campaigns_dir for changed sheets; 0 turns watching off.
    campaigns_poll_interval: float = _setting(_Number(ge=0), 2.0)
    #: The configured SMSCs, in file order.
    smscs: tuple[SmscConfig, ...] = attrs.field(default=(), converter=tuple)
    #: The store.
    store: StoreConfig = attrs.field(default=attrs.Factory(_default_store, takes_self=True))
    #: The bundled simulator.
    simulator: SimulatorConfig = attrs.field(factory=SimulatorConfig)
    #: The outbind listener, when ``[outbind]`` is present.
    outbind: OutbindConfig | None = None
    #: The system keywords.
    keywords: KeywordsConfig = attrs.field(factory=KeywordsConfig)
    #: The configured short codes, in file order.
    short_codes: tuple[ShortCodeConfig, ...] = attrs.field(default=(), converter=tuple)
    #: The metrics endpoint.
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    #: The control socket.
    control: ControlConfig = attrs.field(factory=ControlConfig)
    #: The privacy policy and key.
    privacy: PrivacyConfig = attrs.field(factory=PrivacyConfig)

    @property
    def policy_path(self) -> Path:
        """The privacy policy file: ``[privacy] policy_file``, else ``policy.toml`` beside the
        configuration file (``conf/policy.toml`` under the current directory without one)."""
        if self.privacy.policy_file is not None:
            return self.privacy.policy_file
        if self.path is not None:
            return self.path.parent / "policy.toml"
        return Path(os.path.abspath("conf/policy.toml"))

    @property
    def key_path(self) -> Path:
        """The privacy key file: ``[privacy] key_file``, else ``state_dir/privacy.key``."""
        return self.privacy.key_file if self.privacy.key_file is not None else self.state_dir / "privacy.key"

    @property
    def control_socket(self) -> Path | None:
        """Where the control socket is: ``[control] socket``, else ``state_dir/control.sock``; None when disabled."""
        if not self.control.enabled:
            return None
        return self.control.socket if self.control.socket is not None else self.state_dir / "control.sock"

    def __attrs_post_init__(self) -> None:
        names = [smsc.name for smsc in self.smscs]
        dups = sorted({name for name in names if names.count(name) > 1})
        if dups:
            raise _Inconsistent([("name", f"duplicate SMSC name {name!r}") for name in dups])
        codes = [short_code.code for short_code in self.short_codes]
        dups = sorted({code for code in codes if codes.count(code) > 1})
        if dups:
            raise _Inconsistent([("code", f"duplicate short code {code!r}") for code in dups])

    def short_code(self, code: str) -> ShortCodeConfig:
        """The settings of short code ``code``: its ``[[short_code]]``, else the defaults."""
        for short_code in self.short_codes:
            if short_code.code == code:
                return short_code
        return _default_short_code(code)

    def short_code_rules(self) -> tuple[ShortCodeRule, ...]:
        """The configured short codes as the routing table takes them."""
        return tuple(short_code.rule() for short_code in self.short_codes)

    @property
    def simulator_active(self) -> bool:
        """True when the bundled simulator should run: enabled, or "auto" with no SMSC."""
        enabled = self.simulator.enabled
        return enabled is True or (enabled == "auto" and not self.smscs)


@functools.lru_cache(maxsize=1024)
def _default_short_code(code: str) -> ShortCodeConfig:
    """The defaults of a short code with no ``[[short_code]]`` (validated once per code, not per MO)."""
    return ShortCodeConfig(code=code)


# --- loading -------------------------------------------------------------------------------

_TABLES: dict[str, type] = {
    "gateway": GatewayConfig,
    "store": StoreConfig,
    "simulator": SimulatorConfig,
    "outbind": OutbindConfig,
    "smsc": SmscConfig,
    "keywords": KeywordsConfig,
    "short_code": ShortCodeConfig,
    "metrics": MetricsConfig,
    "control": ControlConfig,
    "privacy": PrivacyConfig,
}


def _keys(cls: type) -> dict[str, attrs.Attribute]:
    """TOML key -> attribute, for the attributes of ``cls`` that are read from TOML."""
    return {
        field.metadata[_KEY] or field.name: field
        for field in attrs.fields(cls)
        if _CHECK in field.metadata
    }


def _resolve(base: Path, path: Path) -> Path:
    return Path(os.path.abspath(base / path))


def _absolute_sqlite(url: str, base: Path) -> str:
    """``url`` with a relative SQLite file path made absolute against ``base``."""
    m = _SQLITE_URL_RE.fullmatch(url)
    if m is None:
        return url
    prefix, path, rest = m.groups()
    if not path or path.startswith("/") or path == ":memory:" or path.startswith("file:"):
        return url
    return f"{prefix}{_resolve(base, Path(path))}{rest}"


def _unknown(key: str, known: Iterable[str], what: str) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"unknown {what}; did you mean {close[0]!r}?"
    return f"unknown {what}; expected one of: {', '.join(sorted(known))}"


@attrs.define
class _Loader:
    """Reads the parsed TOML of one file, collecting every problem."""

    file: str
    base: Path
    problems: list[ConfigProblem] = attrs.Factory(list)

    def problem(self, table: str, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, table, key, message))

    def table(self, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        """Top-level table ``name``; empty when absent or not a table."""
        value = data.get(name, {})
        if isinstance(value, dict):
            return value
        self.problem("", name, f"expected a table [{name}], got {_show(value)}")
        return {}

    def read(self, cls: type, data: Mapping[str, Any], table: str) -> dict[str, Any] | None:
        """Keyword arguments for ``cls`` from ``data``, or None when a value was wrong."""
        before = len(self.problems)
        known = _keys(cls)
        kwargs: dict[str, Any] = {}
        for key, raw in data.items():
            field = known.get(key)
            if field is None:
                self.problem(table, key, _unknown(key, known, "key"))
                continue
            check = field.metadata[_CHECK]
            try:
                value = check.parse(raw)
            except _Invalid as exc:
                self.problem(table, key, str(exc))
                continue
            if isinstance(check, _PathCheck):
                value = _resolve(self.base, value)
                if check.must_exist and not value.is_file():
                    self.problem(table, key, f"expected a path to an existing file, got {str(value)!r}")
            elif isinstance(check, _Url):
                value = _absolute_sqlite(value, self.base)
            kwargs[field.name] = value
        for key, field in known.items():
            if field.metadata[_REQUIRED] and key not in data:
                self.problem(table, key, f"missing; expected {field.metadata[_CHECK].describe()}")
        return kwargs if len(self.problems) == before else None

    def build(self, cls: type, kwargs: dict[str, Any] | None, table: str) -> Any:
        """``cls(**kwargs)``, reporting inconsistent settings; None when that fails."""
        if kwargs is None:
            return None
        try:
            return cls(**kwargs)
        except _Inconsistent as exc:
            for key, message in exc.problems:
                self.problem(table, key, message)
            return None

    def section(self, cls: type, data: Mapping[str, Any], name: str) -> Any:
        """The settings object for top-level table ``name``, or None when it has problems."""
        return self.build(cls, self.read(cls, self.table(data, name), name), name)

    def smscs(self, raw: Any) -> list[SmscConfig]:
        """Every valid ``[[smsc]]``; tables named by name, or by index when it is unusable."""
        return self._tables(raw, "smsc", SmscConfig, "name", _NAME_RE, "a unique name")

    def _tables(self, raw: Any, array: str, cls: type, key: str, pattern: re.Pattern[str], unique: str) -> list[Any]:
        """Every valid table of the array of tables ``[[array]]``, each identified by ``key``.

        A table is named after its ``key`` when that is valid and not seen before (a repeat
        is a problem), else by its index.
        """
        if not isinstance(raw, list):
            found = f"a single table [{array}]" if isinstance(raw, dict) else _show(raw)
            self.problem("", array, f"expected an array of tables [[{array}]], got {found}")
            return []
        built, seen = [], {}
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.problem(f"{array}[{i}]", "", f"expected a table, got {_show(item)}")
                continue
            ident = item.get(key)
            valid = isinstance(ident, str) and pattern.fullmatch(ident) is not None
            table = f"{array} {ident!r}" if valid and ident not in seen else f"{array}[{i}]"
            if valid and ident in seen:
                self.problem(table, key, f"expected {unique}, got {ident!r} again ({seen[ident]} has it)")
            elif valid:
                seen[ident] = table
            value = self.build(cls, self.read(cls, item, table), table)
            if value is not None:
                built.append(value)
        return built

    def check_campaigns_dir(self, gateway: Any) -> None:
        """Report a configured ``campaigns_dir`` that is not a directory.

        The default directory may be absent (no campaigns yet), but a configured one is
        meant to exist. Checked on the raw table so that the problem shows even when another
        ``[gateway]`` setting is wrong.
        """
        if not isinstance(gateway, dict) or "campaigns_dir" not in gateway:
            return
        try:
            directory = _resolve(self.base, _PathCheck().parse(gateway["campaigns_dir"]))
        except _Invalid:
            return
        if not directory.is_dir():
            self.problem("gateway", "campaigns_dir", f"expected a path to an existing directory, got {str(directory)!r}")

    def short_codes(self, raw: Any) -> list[ShortCodeConfig]:
        """Every valid ``[[short_code]]``; tables named by code, or by index when it is unusable."""
        return self._tables(raw, "short_code", ShortCodeConfig, "code", _SHORT_CODE_RE, "a short code not configured before")

    def load(self, data: Mapping[str, Any], path: Path) -> GatewayConfig:
        """The whole configuration, or :class:`ConfigError` with every problem found."""
        for key, value in data.items():
            if key in _TABLES:
                continue
            homes = [name for name, cls in _TABLES.items() if key in _keys(cls)]
            if homes and not isinstance(value, dict):
                self.problem("", key, f"unknown top-level key; it belongs in [{homes[0]}]")
            else:
                self.problem("", key, _unknown(key, _TABLES, "table"))
        gateway = self.read(GatewayConfig, self.table(data, "gateway"), "gateway")
        state_dir = (gateway or {}).get("state_dir", self.base / "state")
        campaigns_dir = (gateway or {}).get("campaigns_dir", self.base / "campaigns.d")
        self.check_campaigns_dir(data.get("gateway"))
        store = self.read(StoreConfig, self.table(data, "store"), "store")
        if store is not None:
            store.setdefault("url", f"sqlite:///{state_dir}/gatewayd.db")
        simulator = self.section(SimulatorConfig, data, "simulator")
        outbind = self.section(OutbindConfig, data, "outbind") if "outbind" in data else None
        smscs = self.smscs(data.get("smsc", []))
        keywords = self.section(KeywordsConfig, data, "keywords")
        short_codes = self.short_codes(data.get("short_code", []))
        metrics = self.section(MetricsConfig, data, "metrics")
        control = self.section(ControlConfig, data, "control")
        privacy = self.section(PrivacyConfig, data, "privacy")
        if simulator is not None and simulator.enabled is False and not ({"smsc", "outbind"} & data.keys()):
            self.problem(
                "simulator",
                "enabled",
                "expected true or 'auto' when no [[smsc]] or [outbind] is configured, got false"
                " (there would be nothing to bind to)",
            )
        if self.problems:
            raise ConfigError(self.problems)
        return GatewayConfig(
            path=path,
            state_dir=state_dir,
            campaigns_dir=campaigns_dir,
            **{k: v for k, v in (gateway or {}).items() if k not in ("state_dir", "campaigns_dir")},
            smscs=tuple(smscs),
            store=StoreConfig(**(store or {})),
            simulator=simulator,
            outbind=outbind,
            keywords=keywords,
            short_codes=tuple(short_codes),
            metrics=metrics,
            control=control,
            privacy=privacy,
        )


def _syntax_problem(file: str, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    """A TOML syntax error as a problem that leads with its line and column."""
    text = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if m:
        text = f"line {m[1]}, column {m[2]}: {text[: m.start()]}"
    return ConfigProblem(file, "", "", f"invalid TOML at {text}" if m else f"invalid TOML: {text}")


def default_config(state_dir: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """The built-in configuration: no SMSC, so the bundled simulator runs.

    Campaign sheets are read from ``./conf/campaigns.d`` when that directory exists.

    Args:
        state_dir: where state is kept; relative paths are taken from the current
            directory. Default ``./state``.

    Returns:
        The defaults, with ``path`` None.
    """
    state = Path(os.path.abspath(Path(state_dir if state_dir is not None else "state").expanduser()))
    campaigns = Path(os.path.abspath("conf/campaigns.d"))
    return GatewayConfig(state_dir=state, campaigns_dir=campaigns if campaigns.is_dir() else None)


def load_config(path: str | os.PathLike[str] | None) -> GatewayConfig:
    """Read and validate a ``gatewayd.toml``.

    Args:
        path: the file; None means no file, and gives :func:`default_config`.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: with every problem found: the file is missing or unreadable, is not
            valid TOML, or has wrong, unknown, missing or contradictory settings.
    """
    if path is None:
        return default_config()
    file = os.fspath(path)
    absolute = Path(os.path.abspath(Path(file).expanduser()))
    try:
        with open(absolute, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file, "", "", "file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(file, exc)]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(file, "", "", f"expected UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, "", "", f"cannot read the file: {exc.strerror}")]) from None
    return _Loader(file, absolute.parent).load(data, absolute)
