"""Exceptions of the SMPP core, rooted at :class:`SmppError`.

As in h11, :class:`LocalProtocolError` means *we* tried something the protocol forbids
(a bug or a misuse in the caller) and :class:`RemoteProtocolError` means the *peer* did;
the latter carries the command_status to answer with.
"""

from __future__ import annotations

from gatewayd.smpp.constants import CommandStatus

__all__ = [
    "SmppError",
    "LocalProtocolError",
    "EncodeError",
    "WindowFull",
    "RemoteProtocolError",
    "DecodeError",
    "FramingError",
]


class SmppError(Exception):
    """Root of every error raised by :mod:`gatewayd.smpp`."""


class LocalProtocolError(SmppError):
    """We asked for something the protocol or the current session state does not allow."""


class EncodeError(LocalProtocolError):
    """A PDU value cannot be put on the wire (a field too long, out of range, not encodable).

    Attributes:
        field: the name of the offending field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class WindowFull(LocalProtocolError):
    """Every slot of the outstanding-request window is taken; wait for a response first."""


class RemoteProtocolError(SmppError):
    """The peer sent something invalid.

    Attributes:
        command_status: the status to answer the offending PDU with.
    """

    def __init__(self, message: str, command_status: int = CommandStatus.ESME_RSYSERR) -> None:
        super().__init__(message)
        self.command_status = command_status


class DecodeError(RemoteProtocolError):
    """A complete frame could not be decoded into a PDU value.

    The header was readable, so the session can still answer it: with generic_nack for an
    unknown command id, or with the matching ``*_resp`` carrying ``command_status``.

    Attributes:
        command_id: the frame's command_id as read from the header.
        sequence: the frame's sequence_number as read from the header.
        command_status: the status to answer with (ESME_RINVCMDID, ESME_RINVMSGLEN, ...).
    """

    def __init__(self, message: str, *, command_id: int, sequence: int, command_status: int) -> None:
        super().__init__(message, command_status)
        self.command_id = command_id
        self.sequence = sequence


class FramingError(RemoteProtocolError):
    """The byte stream cannot be split into PDUs any more (a command_length out of bounds).

    There is no way to find the next PDU boundary, so the session answers generic_nack
    (ESME_RINVCMDLEN) and closes the connection.

    Attributes:
        command_length: the offending length.
        sequence: the sequence_number, when the header was complete enough to read it.
    """

    def __init__(self, message: str, *, command_length: int, sequence: int | None = None) -> None:
        super().__init__(message, CommandStatus.ESME_RINVCMDLEN)
        self.command_length = command_length
        self.sequence = sequence
