"""The bind state machine: the table itself, and every (state, input) pair through a session.

Each input is applied in two directions: *local* (the subject end originates it through
``send`` or ``connection_lost``) and *remote* (the subject receives it from the peer as bytes).
A response input can only be meaningful when the subject has the matching request in flight,
so :func:`apply` first checks that and otherwise uses a sequence number nothing is waiting for.
"""

from __future__ import annotations

import itertools

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.smpp import codec
from gatewayd.smpp.constants import BindMode, CommandStatus
from gatewayd.smpp.errors import LocalProtocolError
from gatewayd.smpp.events import (
    BindRejected,
    Bound,
    ClosedReason,
    ConnectionClosed,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
    Unbound,
)
from gatewayd.smpp.pdus import (
    Bind,
    BindResp,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gatewayd.smpp.states import BOUND_STATE, SENDER, TRANSITIONS, Input, Role, State, next_state
from tests.smpp.helpers import Driven, bad_length_frame, decode_all, drive, message_request, mode_for, peer_of

_REQUEST_INPUTS = (Input.BIND, Input.OUTBIND, Input.SUBMIT, Input.DELIVER, Input.ENQUIRE_LINK, Input.UNBIND)
_BIND_RESPONSES = (Input.BIND_OK_TX, Input.BIND_OK_RX, Input.BIND_OK_TRX, Input.BIND_FAILED)
_LIVE = tuple(s for s in State if s is not State.CLOSED)
#: A sequence number no request in these tests ever gets.
_STRAY = 0x5A5A


# -- the table on its own --------------------------------------------------------------------


def test_closed_has_no_way_out() -> None:
    """No input leaves CLOSED."""
    assert [pair for pair in TRANSITIONS if pair[0] is State.CLOSED] == []


def test_every_state_is_reachable_from_open() -> None:
    """Following the table from OPEN reaches every state."""
    seen = {State.OPEN}
    frontier = [State.OPEN]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(State)


def test_every_live_state_can_close() -> None:
    """A lost connection or a framing error closes every state but CLOSED."""
    for state in _LIVE:
        assert next_state(state, Input.CONNECTION_LOST) is State.CLOSED
        assert next_state(state, Input.FRAMING_ERROR) is State.CLOSED


def test_next_state_is_none_for_absent_pairs() -> None:
    """next_state answers None exactly for the pairs missing from the table."""
    for state, event in itertools.product(State, Input):
        assert next_state(state, event) == TRANSITIONS.get((state, event))


def test_bound_state_matches_the_table() -> None:
    """Each bind mode's success input leads from BINDING to that mode's bound state."""
    assert set(BOUND_STATE) == set(BindMode)
    for event, state in BOUND_STATE.values():
        assert next_state(State.BINDING, event) is state
        assert SENDER[event] is Role.SMSC


def test_message_directions_follow_the_bind_mode() -> None:
    """Submits are allowed only in TX/TRX and delivers only in RX/TRX."""
    assert {s for s in State if next_state(s, Input.SUBMIT)} == {State.BOUND_TX, State.BOUND_TRX}
    assert {s for s in State if next_state(s, Input.DELIVER)} == {State.BOUND_RX, State.BOUND_TRX}


# -- every pair through a session ------------------------------------------------------------


def _may_originate(event: Input, role: Role) -> bool:
    return SENDER.get(event, role) is role


def _local_request(event: Input, role: Role) -> Pdu:
    if event is Input.BIND:
        return Bind(mode=BindMode.TRANSCEIVER, system_id="esme")
    if event is Input.OUTBIND:
        return Outbind(system_id="esme")
    if event is Input.SUBMIT:
        return message_request(Role.ESME)
    if event is Input.DELIVER:
        return message_request(Role.SMSC)
    if event is Input.ENQUIRE_LINK:
        return EnquireLink()
    assert event is Input.UNBIND
    return Unbind()


def _local_response(d: Driven, event: Input) -> tuple[Pdu, bool]:
    """The response the subject would send for ``event``, and whether it answers a real request."""
    if event in _BIND_RESPONSES:
        status = CommandStatus.ESME_RBINDFAIL if event is Input.BIND_FAILED else CommandStatus.ESME_ROK
        if d.role is Role.SMSC and d.bind is not None:
            return d.bind.response(status, system_id="smsc"), True
        return BindResp(sequence=_STRAY, command_status=status, mode=mode_for(event)), False
    if event is Input.MESSAGE_RESPONSE:
        if d.inbound is not None:
            return d.inbound.response(), True  # type: ignore[attr-defined]
        return (SubmitSmResp if d.role is Role.SMSC else DeliverSmResp)(sequence=_STRAY), False
    if event is Input.GENERIC_NACK:
        if d.inbound is not None:
            return GenericNack(sequence=d.inbound.sequence, command_status=CommandStatus.ESME_RSYSERR), True
        return GenericNack(sequence=_STRAY, command_status=CommandStatus.ESME_RSYSERR), False
    assert event is Input.UNBIND_RESP
    # The session answers unbind itself, so there is never one for the application to answer.
    return UnbindResp(sequence=_STRAY), False


def _apply_local(d: Driven, state: State, event: Input) -> bool:
    """Originate ``event`` at the subject; return True when a transition was taken."""
    subject = d.subject
    expected = next_state(state, event)
    before = (subject.in_flight, subject.unanswered)
    if event is Input.CONNECTION_LOST:
        events = subject.connection_lost()
        if expected is None:
            assert events == [] and subject.state is state
            return False
        assert subject.state is expected
        assert [type(e) for e in events] == [ConnectionClosed]
        assert events[0].reason is ClosedReason.CONNECTION_LOST  # type: ignore[attr-defined]
        return True
    if event is Input.FRAMING_ERROR:
        return False  # only the peer's bytes can be unframeable
    if event in _REQUEST_INPUTS:
        pdu, real = _local_request(event, d.role), _may_originate(event, d.role)
    else:
        pdu, real = _local_response(d, event)
    if real and expected is not None:
        sent = subject.send(pdu, d.pair.now)
        assert subject.state is expected
        (on_wire,) = decode_all(subject.data_to_send())
        assert on_wire == sent
        return True
    with pytest.raises(LocalProtocolError):
        subject.send(pdu, d.pair.now)
    assert subject.state is state
    assert subject.data_to_send() == b""
    assert (subject.in_flight, subject.unanswered) == before
    return False


def _refusal_status(state: State, event: Input, role: Role) -> int:
    if not _may_originate(event, peer_of(role)):
        return CommandStatus.ESME_RINVCMDID
    if event is Input.BIND and state is not State.BINDING:
        return CommandStatus.ESME_RALYBND
    return CommandStatus.ESME_RINVBNDSTS


def _remote_request(d: Driven, state: State, event: Input) -> bool:
    subject, role = d.subject, d.role
    pdu = attrs.evolve(_local_request(event, peer_of(role)), sequence=_STRAY)
    events = subject.receive_data(codec.encode(pdu), d.pair.now)
    sent = decode_all(subject.data_to_send())
    expected = next_state(state, event)
    if _may_originate(event, peer_of(role)) and expected is not None:
        if event is Input.ENQUIRE_LINK:
            assert events == [] and sent == [EnquireLinkResp(sequence=_STRAY)]
            assert subject.state is expected
        elif event is Input.UNBIND:
            # Answered at once: UNBINDING is passed through on the way to CLOSED.
            assert sent == [UnbindResp(sequence=_STRAY)]
            assert [type(e) for e in events] == [Unbound] and events[0].by_peer  # type: ignore[attr-defined]
            assert subject.state is next_state(expected, Input.UNBIND_RESP) is State.CLOSED
        else:
            assert events == [RequestReceived(pdu)] and sent == []
            assert subject.state is expected
        return True
    status = _refusal_status(state, event, role)
    assert subject.state is state
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
    assert events[0].sequence == _STRAY
    if event is Input.OUTBIND:
        # outbind takes no response, not even an error.
        assert sent == [] and events[0].answered_with is None
        return False
    assert events[0].answered_with == status
    (answer,) = sent
    assert answer.sequence == _STRAY and answer.command_status == status
    if status == CommandStatus.ESME_RINVCMDID:
        assert isinstance(answer, GenericNack)
    else:
        assert answer.command_id == pdu.command_id | 0x80000000
    return False


def _remote_response(d: Driven, state: State, event: Input) -> bool:
    subject, role = d.subject, d.role
    pdu: Pdu | None = None
    if event in _BIND_RESPONSES and role is Role.ESME and d.bind is not None:
        status = CommandStatus.ESME_RBINDFAIL if event is Input.BIND_FAILED else CommandStatus.ESME_ROK
        pdu = d.bind.response(status, system_id="smsc")
    elif event is Input.MESSAGE_RESPONSE and d.outbound is not None:
        pdu = d.outbound.response()  # type: ignore[attr-defined]
    elif event is Input.GENERIC_NACK and next_state(state, Input.ENQUIRE_LINK) is not None:
        probe = subject.send(EnquireLink(), d.pair.now)
        subject.data_to_send()
        pdu = GenericNack(sequence=probe.sequence, command_status=CommandStatus.ESME_RSYSERR)
    elif event is Input.UNBIND_RESP and state is State.UNBINDING:
        assert d.unbind is not None
        pdu = d.unbind.response()  # type: ignore[attr-defined]
    if pdu is None:
        stray = {
            Input.MESSAGE_RESPONSE: SubmitSmResp(sequence=_STRAY),
            Input.GENERIC_NACK: GenericNack(sequence=_STRAY),
            Input.UNBIND_RESP: UnbindResp(sequence=_STRAY),
        }.get(event, BindResp(sequence=_STRAY, mode=mode_for(event)))
        events = subject.receive_data(codec.encode(stray), d.pair.now)
        assert events == [ProtocolViolation("response to no outstanding request", stray.command_id, _STRAY, None)]
        assert subject.data_to_send() == b""
        assert subject.state is state
        return False
    expected = next_state(state, event)
    # A response the session can be waiting for is always one the table allows.
    assert expected is not None
    events = subject.receive_data(codec.encode(pdu), d.pair.now)
    assert subject.data_to_send() == b""
    assert subject.state is expected
    kinds = [type(e) for e in events]
    if event in _BIND_RESPONSES:
        assert kinds == [BindRejected if event is Input.BIND_FAILED else Bound]
    elif event is Input.MESSAGE_RESPONSE:
        assert kinds == [ResponseReceived]
    elif event is Input.GENERIC_NACK:
        assert kinds == []
    else:
        assert kinds == [Unbound] and not events[0].by_peer  # type: ignore[attr-defined]
    return True


def _apply_remote(d: Driven, state: State, event: Input) -> bool:
    """Feed ``event`` to the subject from the peer; return True when a transition was taken."""
    subject = d.subject
    if state is State.CLOSED:
        data = b"" if event is Input.CONNECTION_LOST else codec.encode(EnquireLink(sequence=3))
        assert subject.receive_data(data, d.pair.now) == []
        assert subject.data_to_send() == b"" and subject.state is State.CLOSED
        return False
    if event is Input.CONNECTION_LOST:
        events = subject.receive_data(b"", d.pair.now)
        assert subject.state is State.CLOSED
        assert [type(e) for e in events] == [ConnectionClosed]
        assert events[0].reason is ClosedReason.CONNECTION_LOST  # type: ignore[attr-defined]
        return True
    if event is Input.FRAMING_ERROR:
        events = subject.receive_data(bad_length_frame(8, sequence=_STRAY), d.pair.now)
        assert subject.state is State.CLOSED
        assert [type(e) for e in events] == [ConnectionClosed]
        assert events[0].reason is ClosedReason.FRAMING_ERROR  # type: ignore[attr-defined]
        assert decode_all(subject.data_to_send()) == [
            GenericNack(sequence=_STRAY, command_status=CommandStatus.ESME_RINVCMDLEN)
        ]
        return True
    if event in _REQUEST_INPUTS:
        return _remote_request(d, state, event)
    return _remote_response(d, state, event)


def apply(state: State, event: Input, role: Role, local: bool) -> bool:
    """Drive a ``role`` subject into ``state``, apply ``event`` and check the outcome.

    Returns:
        True when the input was actually taken as a transition (not refused).
    """
    d = drive(state, role, mode=mode_for(event))
    return _apply_local(d, state, event) if local else _apply_remote(d, state, event)


_PAIRS = list(itertools.product(State, Input))


@pytest.mark.parametrize(("state", "event"), _PAIRS, ids=[f"{s.value}-{e.value}" for s, e in _PAIRS])
def test_every_state_and_input(state: State, event: Input) -> None:
    """Each input in each state, from each role and direction, follows the table or is refused without a state change."""
    taken = [apply(state, event, role, local) for role in Role for local in (True, False)]
    # Every pair in the table is reachable through some role and direction.
    assert any(taken) == ((state, event) in TRANSITIONS)


@given(st.sampled_from(State), st.sampled_from(Input), st.sampled_from(Role), st.booleans())
def test_state_input_property(state: State, event: Input, role: Role, local: bool) -> None:
    """Any drawn (state, input, role, direction) either takes the table's transition or leaves the state as it was."""
    taken = apply(state, event, role, local)
    if taken:
        assert (state, event) in TRANSITIONS


def test_bind_while_binding_is_refused_with_invalid_bind_status() -> None:
    """A second bind while the first is unanswered gets ESME_RINVBNDSTS, not ESME_RALYBND."""
    assert _refusal_status(State.BINDING, Input.BIND, Role.SMSC) == CommandStatus.ESME_RINVBNDSTS
    assert apply(State.BINDING, Input.BIND, Role.SMSC, local=False) is False
