"""Events a :class:`~gatewayd.smpp.session.SmppSession` reports to the code driving it.

Each event is a frozen value. The session answers the link-level PDUs itself
(enquire_link, unbind, malformed input); everything that needs a decision or a database
reaches the application as an event, and the application answers with ``session.send``.
"""

from __future__ import annotations

import enum

import attrs

from gatewayd.smpp.constants import BindMode
from gatewayd.smpp.pdus import Bind, BindResp, Pdu

__all__ = [
    "Event",
    "RequestReceived",
    "ResponseReceived",
    "ResponseTimedOut",
    "Bound",
    "BindRejected",
    "Unbound",
    "ClosedReason",
    "ConnectionClosed",
    "ProtocolViolation",
]


@attrs.frozen
class Event:
    """Base class of every session event."""


@attrs.frozen
class RequestReceived(Event):
    """The peer sent a request the application must answer or act on.

    For the ESME: deliver_sm, data_sm, alert_notification, outbind. For the SMSC: bind_*,
    submit_sm, data_sm. The application answers with ``session.send(pdu.response(...))``,
    except for alert_notification and outbind, which take no response.
    """

    pdu: Pdu


@attrs.frozen
class ResponseReceived(Event):
    """A response (or generic_nack) arrived for one of our outstanding requests."""

    request: Pdu
    response: Pdu
    #: Seconds between sending the request and receiving the response.
    latency: float


@attrs.frozen
class ResponseTimedOut(Event):
    """No response arrived for ``request`` before its deadline; it is no longer outstanding."""

    request: Pdu


@attrs.frozen
class Bound(Event):
    """Our bind succeeded (ESME side; an SMSC learns of its own acceptance from what it sent)."""

    mode: BindMode
    #: The peer's system_id: the SMSC's from the bind_resp, or the ESME's from its bind.
    system_id: str
    bind: Bind
    response: BindResp


@attrs.frozen
class BindRejected(Event):
    """Our bind was refused (ESME) or we refused the peer's (SMSC); the state is OPEN again."""

    command_status: int
    bind: Bind


@attrs.frozen
class Unbound(Event):
    """The unbind handshake finished; the session is CLOSED and the connection should close."""

    #: True when the peer sent the unbind, False when we did.
    by_peer: bool
    #: Our message requests that were still awaiting a response: they were not answered.
    unanswered: tuple[Pdu, ...] = ()


class ClosedReason(enum.Enum):
    """Why a session closed without an unbind handshake."""

    #: The transport reported the connection gone.
    CONNECTION_LOST = "connection_lost"
    #: Nothing arrived from the peer for the dead-peer timeout, enquire_link included.
    PEER_DEAD = "peer_dead"
    #: The byte stream could not be split into PDUs (command_length out of bounds).
    FRAMING_ERROR = "framing_error"
    #: A bind or unbind got no response in time.
    HANDSHAKE_TIMEOUT = "handshake_timeout"


@attrs.frozen
class ConnectionClosed(Event):
    """The session is CLOSED for ``reason``; our message requests still outstanding are listed."""

    reason: ClosedReason
    unanswered: tuple[Pdu, ...] = ()
    detail: str = ""


@attrs.frozen
class ProtocolViolation(Event):
    """The peer sent something invalid; the session answered it (or dropped it) and carries on.

    Reported so that the transport can log it: the session itself never logs.
    """

    description: str
    command_id: int
    sequence: int
    #: The status we answered with, or None when nothing was sent (e.g. a stray response).
    answered_with: int | None
