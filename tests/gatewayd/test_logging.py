"""Tests for gatewayd.logging: journald JSON lines, console output and the privacy mask."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

import gatewayd.logging as gwlog
from gatewayd.logging import ID_KEYS, NUMBER_KEYS, SECRET_KEYS, configure_logging, mask_personal_data
from gatewayd.smpp.pdus import Bind, DeliverSm

MSISDN = "447700900123"


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """Leave structlog, the stdlib root logger and the mask flag as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    smpplib_level = logging.getLogger("smpplib").level
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("smpplib").setLevel(smpplib_level)
    gwlog._show_personal_data_at_debug = False


def masked(**event: Any) -> dict[str, Any]:
    """The event dict as an info line leaves the mask."""
    with capture_logs(processors=[mask_personal_data]) as logs:
        structlog.get_logger().info(event.pop("event", "e"), **event)
    (entry,) = logs
    return entry


def json_lines(stream: io.StringIO) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for line in stream.getvalue().splitlines():
        m = re.fullmatch(r"<(\d)>(\{.*\})", line)
        assert m, line
        out.append((m[1], json.loads(m[2])))
    return out


def configured(level: str = "info", fmt: str = "json", **kwargs: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream, cache_loggers=False, **kwargs)
    return stream


class TestMask:
    def test_msisdn_keeps_last_three_digits(self) -> None:
        """A phone number under a number key keeps only its last 3 digits."""
        assert masked(msisdn=MSISDN)["msisdn"] == "*********123"

    @pytest.mark.parametrize("key", sorted(NUMBER_KEYS))
    def test_every_number_key_masked(self, key: str) -> None:
        """Every number key is masked, including numbers given as int and with a +."""
        entry = masked(**{key: "+" + MSISDN})
        assert entry[key] == "**********123"
        assert masked(**{key: int(MSISDN)})[key] == "*********123"

    @pytest.mark.parametrize("code", ["416", "4160", "80888", "123456"])
    def test_short_codes_kept(self, code: str) -> None:
        """Short codes of 3 to 6 digits are not personal data and stay readable."""
        entry = masked(event=f"mo to {code}", source_addr=MSISDN, destination_addr=code, short_code=code)
        assert (entry["destination_addr"], entry["short_code"], entry["event"]) == (code, code, f"mo to {code}")

    def test_text_becomes_length(self) -> None:
        """Message content is replaced by its length, for text and bytes."""
        entry = masked(text="hello world", short_message=b"\x00\x01hi", message_payload=None, body=["x"])
        assert entry["text"] == "<text: 11 chars>"
        assert entry["short_message"] == "<bytes: 4>"
        assert entry["message_payload"] is None
        assert entry["body"] == "<list>"

    @pytest.mark.parametrize("key", sorted(SECRET_KEYS))
    def test_secrets_hidden(self, key: str) -> None:
        """Credentials are replaced by ***."""
        assert masked(**{key: "hunter2"})[key] == "***"

    def test_numbers_in_event_and_other_strings(self) -> None:
        """A phone number pasted into the event text or any other string is masked."""
        entry = masked(event=f"cannot deliver to +{MSISDN}: busy", error=f"subscriber {MSISDN}x unknown")
        assert entry["event"] == "cannot deliver to **********123: busy"
        assert entry["error"] == "subscriber *********123x unknown"

    def test_nested_structures(self) -> None:
        """Dicts, lists and tuples are masked recursively, key rules included."""
        entry = masked(mo={"msisdn": MSISDN, "text": "hi", "meta": [f"from {MSISDN}", ("x", MSISDN)]})
        assert entry["mo"] == {
            "msisdn": "*********123",
            "text": "<text: 2 chars>",
            "meta": ["from *********123", ["x", "*********123"]],
        }

    def test_pdu_repr_masked(self) -> None:
        """A PDU logged as a value shows its repr with numbers masked and no content or password."""
        pdu = DeliverSm(source_addr=MSISDN, destination_addr="4160", short_message=b"secret words")
        entry = masked(pdu=pdu, bind=Bind(system_id="acme", password="pw123"))
        assert "source_addr='*********123'" in entry["pdu"] and "destination_addr='4160'" in entry["pdu"]
        assert "secret" not in entry["pdu"] and MSISDN not in entry["pdu"]
        assert "pw123" not in entry["bind"]

    def test_ids_numbers_and_plain_values_untouched(self) -> None:
        """Message ids, ints, floats and bools keep their value and type."""
        entry = masked(message_id="1234567890", sequence=12345678, latency_ms=1.5, ok=True, missing=None)
        assert entry == {
            "event": "e",
            "log_level": "info",
            "message_id": "1234567890",
            "sequence": 12345678,
            "latency_ms": 1.5,
            "ok": True,
            "missing": None,
        }

    def test_debug_masked_by_default(self) -> None:
        """Debug lines are masked unless showing personal data at debug was asked for."""
        with capture_logs(processors=[mask_personal_data]) as logs:
            structlog.get_logger().debug("d", msisdn=MSISDN)
        assert logs[0]["msisdn"] == "*********123"

    def test_debug_unmasked_when_asked(self) -> None:
        """With show_personal_data_at_debug, debug lines keep numbers while info stays masked."""
        configure_logging("debug", "json", io.StringIO(), show_personal_data_at_debug=True, cache_loggers=False)
        with capture_logs(processors=[mask_personal_data]) as logs:
            structlog.get_logger().debug("d", msisdn=MSISDN)
            structlog.get_logger().info("i", msisdn=MSISDN)
        assert [entry["msisdn"] for entry in logs] == [MSISDN, "*********123"]


class TestConfigured:
    def test_json_line_with_priority(self) -> None:
        """Info lines are JSON prefixed with <6>, with level, ISO UTC timestamp and keys."""
        stream = configured()
        structlog.get_logger().info("bind_established", smsc="op-a", window=10)
        ((prio, entry),) = json_lines(stream)
        assert prio == "6"
        assert entry["event"] == "bind_established" and entry["smsc"] == "op-a" and entry["window"] == 10
        assert entry["level"] == "info" and entry["timestamp"].endswith("Z")

    def test_priorities_and_filtering(self) -> None:
        """Each level gets its syslog priority and lines below the level are dropped."""
        stream = configured("debug")
        log = structlog.get_logger()
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        log.critical("c")
        assert [prio for prio, _ in json_lines(stream)] == ["7", "6", "4", "3", "2"]
        stream = configured("warning")
        structlog.get_logger().info("dropped")
        structlog.get_logger().warning("kept")
        assert [e["event"] for _, e in json_lines(stream)] == ["kept"]

    def test_masking_in_output(self) -> None:
        """The rendered line carries masked numbers, text lengths and no password."""
        stream = configured()
        structlog.get_logger().info(
            f"mo_received from {MSISDN}", msisdn=MSISDN, short_code="4160", text="VOTE A", password="pw"
        )
        ((_, entry),) = json_lines(stream)
        assert entry["event"] == "mo_received from *********123"
        assert (entry["msisdn"], entry["short_code"]) == ("*********123", "4160")
        assert (entry["text"], entry["password"]) == ("<text: 6 chars>", "***")
        assert MSISDN not in stream.getvalue()

    def test_contextvars_merged(self) -> None:
        """Keys bound with bind_contextvars appear on every line."""
        stream = configured()
        structlog.contextvars.bind_contextvars(bind="op-a", system_id="acme")
        structlog.get_logger().info("enquire_link_sent")
        ((_, entry),) = json_lines(stream)
        assert (entry["bind"], entry["system_id"]) == ("op-a", "acme")

    def test_exception_rendered_and_masked(self) -> None:
        """An exception is rendered as a dict traceback, with numbers in it masked."""
        stream = configured()
        try:
            raise ValueError(f"bad destination {MSISDN}")
        except ValueError:
            structlog.get_logger().exception("submit_failed")
        ((prio, entry),) = json_lines(stream)
        assert prio == "3"
        assert entry["exception"][0]["exc_type"] == "ValueError"
        assert "*********123" in entry["exception"][0]["exc_value"]
        assert MSISDN not in stream.getvalue()

    def test_stdlib_routed_and_masked(self) -> None:
        """Stdlib logging goes to the same stream as masked JSON with the logger name."""
        stream = configured()
        structlog.contextvars.bind_contextvars(bind="op-a")
        logging.getLogger("sqlalchemy.engine").warning("slow query for %s", MSISDN, extra={"msisdn": MSISDN})
        ((prio, entry),) = json_lines(stream)
        assert prio == "4"
        assert entry["event"] == "slow query for *********123" and entry["msisdn"] == "*********123"
        assert (entry["logger"], entry["bind"], entry["level"]) == ("sqlalchemy.engine", "op-a", "warning")

    def test_stdlib_exception_masked(self) -> None:
        """Exceptions logged through stdlib are rendered and masked too."""
        stream = configured()
        try:
            raise KeyError(MSISDN)
        except KeyError:
            logging.getLogger("trio").exception("task crashed")
        ((_, entry),) = json_lines(stream)
        assert entry["exception"][0]["exc_type"] == "KeyError"
        assert MSISDN not in stream.getvalue()

    def test_smpplib_warnings_silenced(self) -> None:
        """smpplib is limited to errors so unknown-TLV warnings do not flood the journal."""
        stream = configured()
        logging.getLogger("smpplib.command").warning("Unknown optional parameter type 0x1401")
        logging.getLogger("smpplib.client").error("connection lost")
        assert [e["event"] for _, e in json_lines(stream)] == ["connection lost"]

    def test_reconfiguring_replaces_handler(self) -> None:
        """Configuring twice leaves a single stdlib handler writing to the latest stream."""
        first = configured()
        second = configured()
        logging.getLogger("x").warning("once")
        assert first.getvalue() == "" and len(json_lines(second)) == 1

    def test_console_format(self) -> None:
        """The console renderer writes readable, masked, colourless lines to a non-tty."""
        stream = configured(fmt="console")
        structlog.get_logger().info("mo_received", msisdn=MSISDN, short_code="4160")
        line = stream.getvalue()
        assert "mo_received" in line and "msisdn=*********123" in line and "short_code=4160" in line
        assert "\x1b[" not in line and not line.startswith("<")

    def test_auto_is_json_off_a_tty(self) -> None:
        """"auto" picks JSON for a stream that is not a terminal."""
        stream = configured(fmt="auto")
        structlog.get_logger().info("x")
        assert stream.getvalue().startswith("<6>{")

    def test_auto_is_console_on_a_tty(self) -> None:
        """"auto" picks the console renderer on a terminal."""

        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        stream = Tty()
        configure_logging("info", "auto", stream, cache_loggers=False)
        structlog.get_logger().info("x")
        assert not stream.getvalue().startswith("<")

    @pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
    def test_bad_arguments(self, level: str, fmt: str) -> None:
        """An unknown level or format is a ValueError."""
        with pytest.raises(ValueError):
            configure_logging(level, fmt, io.StringIO())


_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_KEYS = st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True).filter(
    lambda k: k not in ID_KEYS and k not in {"level", "timestamp", "logger", "event", "exc_info", "stack_info"}
)


@given(
    digits=st.from_regex(r"[0-9]{7,15}", fullmatch=True),
    plus=st.booleans(),
    prefix=st.text(max_size=10),
    suffix=st.text(max_size=10),
    key=_KEYS,
    where=st.sampled_from(["event", "value", "nested", "stdlib"]),
)
def test_phone_numbers_never_rendered(
    digits: str, plus: bool, prefix: str, suffix: str, key: str, where: str
) -> None:
    """A 7 to 15 digit number in any string of an info line never reaches the output."""
    text = prefix + ("+" if plus else "") + digits + suffix
    stream = configured()
    log = structlog.get_logger()
    if where == "event":
        log.info(text)
    elif where == "value":
        log.info("e", **{key: text})
    elif where == "nested":
        log.info("e", **{key: {"inner": [text]}})
    else:
        extra = {} if key in _RECORD_ATTRIBUTES else {key: text}
        logging.getLogger("lib").warning("%s", text, extra=extra)
    out = stream.getvalue()
    assert json_lines(stream) and digits not in out
