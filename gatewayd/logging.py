"""Structured logging: structlog to stdout, JSON lines for journald, personal data masked.

:func:`configure_logging` is called once at startup. Under systemd, stdout goes to the
journal; each JSON line starts with a ``<N>`` syslog priority that journald turns into
``PRIORITY=``, so ``journalctl -p err`` works. On a terminal the console renderer is used.
Stdlib loggers (smpplib, SQLAlchemy, trio) are routed to the same output through the same
processors, including :func:`mask_personal_data`, so no library can leak a phone number
around the mask.

Modules log with ``log = structlog.get_logger()`` and short snake_case event names, with
details in keys.
"""

from __future__ import annotations

import datetime
import enum
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

__all__ = [
    "NUMBER_KEYS",
    "TEXT_KEYS",
    "SECRET_KEYS",
    "ID_KEYS",
    "JournaldJSONRenderer",
    "configure_logging",
    "mask_personal_data",
]

#: Keys whose values are phone numbers: all but the last 3 characters are masked, except
#: for short codes (3 to 6 digits), which are not personal data.
NUMBER_KEYS = frozenset(
    {
        "msisdn", "source_addr", "destination_addr", "dest_addr", "src", "dst", "to", "from_",
        "sender", "recipient", "number", "phone",
    }
)  # fmt: skip
#: Keys whose values are message content: replaced by a length marker.
TEXT_KEYS = frozenset({"text", "message", "short_message", "body", "payload", "message_payload"})
#: Keys whose values are credentials: replaced by ``***``.
SECRET_KEYS = frozenset({"password", "passwd", "secret", "token"})
#: Keys whose values are SMSC message ids: left alone even when they are long decimal
#: numbers, because receipts are correlated by them.
ID_KEYS = frozenset({"message_id", "receipted_message_id", "smsc_message_id"})

# Event-dict entries that are never personal data or must keep their type for later
# processors (exc_info is rendered after the mask would otherwise have stringified it).
_SKIP_KEYS = frozenset(
    {"level", "timestamp", "logger", "exc_info", "stack_info", "_record", "_from_structlog"}
)
# Any run of 7 or more digits could be a phone number; masking longer runs is harmless.
_PHONE_RE = re.compile(r"\+?[0-9]{7,}")
_SHORT_CODE_RE = re.compile(r"[0-9]{3,6}")
# Values whose text never holds a phone number, or whose type a renderer relies on.
_PLAIN_TYPES = (int, float, enum.Enum, datetime.date, datetime.time, datetime.timedelta)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_PRIORITIES = {
    "critical": "<2>",
    "exception": "<3>",
    "error": "<3>",
    "warning": "<4>",
    "warn": "<4>",
    "info": "<6>",
    "debug": "<7>",
}
_HANDLER_NAME = "gatewayd"

# Set by configure_logging(); read on every debug line.
_show_personal_data_at_debug = False


def _mask_digits(match: re.Match[str]) -> str:
    digits = match.group()
    return "*" * (len(digits) - 3) + digits[-3:]


def _mask_number(value: Any) -> Any:
    """A value under a number key: keep the last 3 characters, and short codes whole."""
    if isinstance(value, str):
        if len(value) <= 3 or _SHORT_CODE_RE.fullmatch(value):
            return value
        return "*" * (len(value) - 3) + value[-3:]
    if isinstance(value, int) and not isinstance(value, bool):
        return _mask_number(str(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask_number(item) for item in value]
    return _mask_value(value)


def _mask_content(value: Any) -> Any:
    """A value under a text key: only its length survives."""
    if value is None:
        return None
    if isinstance(value, str):
        return f"<text: {len(value)} chars>"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<bytes: {len(bytes(value)) if isinstance(value, memoryview) else len(value)}>"
    return f"<{type(value).__name__}>"


def _mask_item(key: Any, value: Any) -> Any:
    if key in NUMBER_KEYS:
        return _mask_number(value)
    if key in TEXT_KEYS:
        return _mask_content(value)
    if key in SECRET_KEYS:
        return None if value is None else "***"
    if key in ID_KEYS:
        return value
    return _mask_value(value)


def _mask_value(value: Any) -> Any:
    """Any other value: digit runs of 7 or more masked wherever they appear."""
    if isinstance(value, str):
        return _PHONE_RE.sub(_mask_digits, value)
    if value is None or isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, dict):
        return {k: _mask_item(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask_value(item) for item in value]
    # Renderers would show repr() (or __structlog__()) of anything else, e.g. a PDU whose
    # repr includes source_addr: mask that text instead of the object.
    text = value.__structlog__() if hasattr(value, "__structlog__") else repr(value)
    return _PHONE_RE.sub(_mask_digits, text)


def mask_personal_data(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hide phone numbers, message content and credentials.

    - :data:`NUMBER_KEYS`: all but the last 3 characters become ``*``
      (``"447700900123"`` -> ``"*********123"``); short codes of 3 to 6 digits stay.
    - :data:`TEXT_KEYS`: ``"<text: 42 chars>"`` or ``"<bytes: 17>"``.
    - :data:`SECRET_KEYS`: ``"***"``.
    - Everything else, including the event text and nested dicts, lists and tuples: each run
      of 7 or more digits (with an optional ``+``) keeps only its last 3 digits. Other
      objects are replaced by their masked ``repr()``, which is what a renderer would show.
      Numbers (int, float), enums, dates and :data:`ID_KEYS` are left alone.

    Debug lines are left unmasked only when :func:`configure_logging` was called with
    ``show_personal_data_at_debug=True``.

    Args:
        logger: unused.
        method_name: the log method (``"info"``...), used to recognise debug lines.
        event_dict: the event, masked in place.

    Returns:
        ``event_dict``.
    """
    if _show_personal_data_at_debug and method_name == "debug":
        return event_dict
    for key, value in event_dict.items():
        if key not in _SKIP_KEYS:
            event_dict[key] = _mask_item(key, value)
    return event_dict


class JournaldJSONRenderer:
    """Render an event as one JSON line prefixed with its syslog priority (``<6>{...}``).

    journald reads the prefix as the line's priority (``SyslogLevelPrefix=``, on by default
    for ``StandardOutput=journal``).
    """

    __slots__ = ("_json",)

    def __init__(self) -> None:
        self._json = structlog.processors.JSONRenderer(separators=(",", ":"))

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        prefix = _PRIORITIES.get(event_dict.get("level", method_name), "<6>")
        return prefix + self._json(logger, method_name, event_dict)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    show_personal_data_at_debug: bool = False,
    cache_loggers: bool = True,
) -> None:
    """Configure structlog and stdlib logging for the daemon; call once at startup.

    Args:
        level: "debug", "info", "warning", "error" or "critical".
        fmt: "json" (journald lines), "console", or "auto": console when ``stream`` is a
            tty, JSON otherwise.
        stream: where lines go; default ``sys.stdout`` (at call time).
        show_personal_data_at_debug: leave debug lines unmasked, for troubleshooting a
            test system. Info and above are always masked.
        cache_loggers: structlog's ``cache_logger_on_first_use``; tests pass False so that
            a later configuration takes effect.

    Raises:
        ValueError: for an unknown ``level`` or ``fmt``.
    """
    global _show_personal_data_at_debug
    if level not in _LEVELS:
        raise ValueError(f"level: expected one of {', '.join(_LEVELS)}, got {level!r}")
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"fmt: expected 'auto', 'json' or 'console', got {fmt!r}")
    stream = sys.stdout if stream is None else stream
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    _show_personal_data_at_debug = show_personal_data_at_debug

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Exceptions are rendered to text/dicts before the mask so that a number in an
    # exception message or traceback is masked too. Locals stay out: they may hold anything.
    if fmt == "json":
        tail: list[Any] = [
            structlog.processors.StackInfoRenderer(),
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            mask_personal_data,
            JournaldJSONRenderer(),
        ]
    else:
        tail = [
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            mask_personal_data,
            structlog.dev.ConsoleRenderer(colors=_isatty(stream)),
        ]
    structlog.configure(
        processors=shared + tail,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=cache_loggers,
    )

    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    # smpplib warns about every unknown TLV; at any real traffic that floods the journal.
    logging.getLogger("smpplib").setLevel(logging.ERROR)
    # Migrations narrate every step at INFO; the daemon logs its own store_initialised line.
    logging.getLogger("alembic").setLevel(logging.WARNING)

