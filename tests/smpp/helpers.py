"""Test helpers for the session layer: an in-memory ESME/SMSC pair and raw frame builders.

:class:`SessionPair` wires an ESME and an SMSC :class:`SmppSession` together through explicit
byte passing: nothing moves between them until a test calls :meth:`SessionPair.deliver`, so a
test can hold a PDU "on the wire" while it acts on either end. Time is a plain attribute that
tests advance by hand.

:func:`drive` puts one end of a fresh pair (the *subject*) into any bind state, optionally with
message requests outstanding in both directions, so that the transition tests can apply every
input in every state.
"""

from __future__ import annotations

import struct

import attrs

from gatewayd.smpp import codec
from gatewayd.smpp.constants import BindMode, CommandId
from gatewayd.smpp.events import Bound, Event, RequestReceived
from gatewayd.smpp.pdus import Bind, DeliverSm, Pdu, SubmitSm, Unbind
from gatewayd.smpp.session import SessionConfig, SmppSession
from gatewayd.smpp.states import Input, Role, State
from gatewayd.smpp.window import Sequencer

__all__ = [
    "SessionPair",
    "Driven",
    "drive",
    "bind_pair",
    "mode_for",
    "peer_of",
    "header",
    "raw_frame",
    "bad_length_frame",
    "deliver_sm_overrun",
    "decode_all",
    "message_request",
]


def peer_of(role: Role) -> Role:
    """The other end's role."""
    return Role.SMSC if role is Role.ESME else Role.ESME


class SessionPair:
    """An ESME and an SMSC session joined by an in-memory wire that moves bytes on request.

    Args:
        config: the configuration of both ends, unless overridden per end.
        esme_config: the ESME's configuration.
        smsc_config: the SMSC's configuration.
        now: the starting time.
        esme_sequencer: the ESME's sequence number source.
        smsc_sequencer: the SMSC's sequence number source.
    """

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        esme_config: SessionConfig | None = None,
        smsc_config: SessionConfig | None = None,
        now: float = 0.0,
        esme_sequencer: Sequencer | None = None,
        smsc_sequencer: Sequencer | None = None,
    ) -> None:
        self.now = now
        self.esme = SmppSession(Role.ESME, esme_config or config, now=now, sequencer=esme_sequencer)
        self.smsc = SmppSession(Role.SMSC, smsc_config or config, now=now, sequencer=smsc_sequencer)

    def side(self, role: Role) -> SmppSession:
        """The session playing ``role``."""
        return self.esme if role is Role.ESME else self.smsc

    def send(self, role: Role, pdu: Pdu) -> Pdu:
        """Queue ``pdu`` on the ``role`` end at the pair's current time."""
        return self.side(role).send(pdu, self.now)

    def deliver(self, role: Role) -> list[Event]:
        """Move everything the ``role`` end has queued to its peer; return the peer's events."""
        data = self.side(role).data_to_send()
        if not data:
            return []
        return self.side(peer_of(role)).receive_data(data, self.now)

    def flush(self) -> dict[Role, list[Event]]:
        """Deliver in both directions until neither end has anything queued."""
        events: dict[Role, list[Event]] = {Role.ESME: [], Role.SMSC: []}
        while True:
            moved = False
            for role in (Role.ESME, Role.SMSC):
                data = self.side(role).data_to_send()
                if data:
                    moved = True
                    events[peer_of(role)] += self.side(peer_of(role)).receive_data(data, self.now)
            if not moved:
                return events

    def advance(self, seconds: float) -> dict[Role, list[Event]]:
        """Move time on by ``seconds`` and fire both ends' timers."""
        self.now += seconds
        return {role: self.side(role).on_timer(self.now) for role in (Role.ESME, Role.SMSC)}


def bind_pair(pair: SessionPair, mode: BindMode = BindMode.TRANSCEIVER) -> Bound:
    """Run a successful bind handshake of ``mode`` through ``pair``; return the ESME's Bound."""
    bind = pair.send(Role.ESME, Bind(mode=mode, system_id="esme", password="secret"))
    (received,) = pair.deliver(Role.ESME)
    assert received == RequestReceived(bind)
    pair.send(Role.SMSC, bind.response(system_id="smsc"))
    (bound,) = pair.deliver(Role.SMSC)
    assert isinstance(bound, Bound)
    return bound


def message_request(role: Role) -> Pdu:
    """A message request that ``role`` may originate: submit_sm for the ESME, deliver_sm for the SMSC."""
    if role is Role.ESME:
        return SubmitSm(source_addr="4100", destination_addr="41790000001", short_message=b"hello")
    return DeliverSm(source_addr="41790000001", destination_addr="4100", short_message=b"hi there")


_MODE_OF_STATE = {
    State.BOUND_TX: BindMode.TRANSMITTER,
    State.BOUND_RX: BindMode.RECEIVER,
    State.BOUND_TRX: BindMode.TRANSCEIVER,
}
_MODE_OF_INPUT = {
    Input.BIND_OK_TX: BindMode.TRANSMITTER,
    Input.BIND_OK_RX: BindMode.RECEIVER,
    Input.BIND_OK_TRX: BindMode.TRANSCEIVER,
}
_MAY_SEND_MESSAGES = {
    Role.ESME: (BindMode.TRANSMITTER, BindMode.TRANSCEIVER),
    Role.SMSC: (BindMode.RECEIVER, BindMode.TRANSCEIVER),
}


def mode_for(event: Input) -> BindMode:
    """The bind mode whose successful response is ``event`` (transceiver for other inputs)."""
    return _MODE_OF_INPUT.get(event, BindMode.TRANSCEIVER)


@attrs.define
class Driven:
    """A pair whose ``subject`` end was driven into a state, with what is in flight."""

    pair: SessionPair
    role: Role
    #: The bind on the wire while BINDING (sent by the ESME, unanswered by the SMSC).
    bind: Bind | None = None
    #: A message request the subject sent and the peer has not answered.
    outbound: Pdu | None = None
    #: A message request the subject received and has not answered.
    inbound: Pdu | None = None
    #: The unbind the subject sent, while UNBINDING.
    unbind: Pdu | None = None

    @property
    def subject(self) -> SmppSession:
        """The end under test."""
        return self.pair.side(self.role)

    @property
    def peer(self) -> SmppSession:
        """The other end."""
        return self.pair.side(peer_of(self.role))


def drive(state: State, role: Role, *, mode: BindMode = BindMode.TRANSCEIVER, load: bool = True) -> Driven:
    """Put the ``role`` end of a fresh pair into ``state``.

    Args:
        state: the state wanted.
        role: which end is the subject.
        mode: the bind mode while BINDING (bound states imply their own mode).
        load: in bound states and UNBINDING, leave one message request outstanding in each
            direction the bind allows.

    Returns:
        The pair and what is in flight; the subject has nothing queued to send.
    """
    pair = SessionPair()
    driven = Driven(pair, role)
    if state is State.OPEN:
        pass
    elif state is State.BINDING:
        driven.bind = pair.send(Role.ESME, Bind(mode=mode, system_id="esme"))
        pair.deliver(Role.ESME)
    elif state in _MODE_OF_STATE or state is State.UNBINDING:
        bound_mode = _MODE_OF_STATE.get(state, BindMode.TRANSCEIVER)
        bind_pair(pair, bound_mode)
        if load:
            if bound_mode in _MAY_SEND_MESSAGES[role]:
                driven.outbound = pair.send(role, message_request(role))
                pair.deliver(role)
            if bound_mode in _MAY_SEND_MESSAGES[peer_of(role)]:
                driven.inbound = pair.send(peer_of(role), message_request(peer_of(role)))
                pair.deliver(peer_of(role))
        if state is State.UNBINDING:
            driven.unbind = pair.send(role, Unbind())
            pair.side(role).data_to_send()
    elif state is State.CLOSED:
        bind_pair(pair)
        pair.send(role, Unbind())
        pair.flush()
    assert driven.subject.state is state
    assert driven.subject.data_to_send() == b""
    return driven


# -- raw frames --------------------------------------------------------------------------------

_HEADER = struct.Struct(">LLLL")


def header(length: int, command_id: int, status: int = 0, sequence: int = 1) -> bytes:
    """A 16-octet PDU header with exactly these fields."""
    return _HEADER.pack(length, command_id, status, sequence)


def raw_frame(command_id: int, body: bytes = b"", *, sequence: int = 1, status: int = 0) -> bytes:
    """A frame with a correct command_length around ``body``."""
    return header(16 + len(body), command_id, status, sequence) + body


def bad_length_frame(length: int, *, sequence: int = 7) -> bytes:
    """A complete 16-octet header claiming ``length`` octets (out of bounds in the tests)."""
    return header(length, CommandId.ENQUIRE_LINK, 0, sequence)


def deliver_sm_overrun(*, sequence: int = 9, sm_length: int = 200) -> bytes:
    """A deliver_sm whose sm_length claims more octets than the PDU holds."""
    body = (
        b"\0"  # service_type
        + b"\x01\x01" + b"41790000001\0"  # source
        + b"\x01\x01" + b"4100\0"  # destination
        + b"\0\0\0"  # esm_class, protocol_id, priority_flag
        + b"\0\0"  # schedule_delivery_time, validity_period
        + b"\0\0\0\0"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        + bytes([sm_length])
        + b"hi"
    )
    return raw_frame(CommandId.DELIVER_SM, body, sequence=sequence)


def decode_all(data: bytes) -> list[Pdu]:
    """Split and decode every PDU in ``data`` (what a session queued for its peer)."""
    reader = codec.FrameReader()
    reader.feed(data)
    pdus: list[Pdu] = []
    while (frame := reader.next_frame()) is not None:
        pdus.append(codec.decode(frame))
    assert reader.pending == 0
    return pdus

