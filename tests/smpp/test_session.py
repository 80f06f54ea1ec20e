"""The sans-I/O session: keep-alives, timeouts, unbind, explicit answers, malformed input, SMSC role."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.smpp import codec
from gatewayd.smpp.constants import BindMode, CommandId, CommandStatus
from gatewayd.smpp.errors import LocalProtocolError
from gatewayd.smpp.events import (
    BindRejected,
    ClosedReason,
    ConnectionClosed,
    Event,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Unbound,
)
from gatewayd.smpp.pdus import (
    AlertNotification,
    Bind,
    BindResp,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gatewayd.smpp.session import SessionConfig, SmppSession
from gatewayd.smpp.states import Role, State
from tests.smpp.helpers import (
    SessionPair,
    bad_length_frame,
    bind_pair,
    decode_all,
    deliver_sm_overrun,
    header,
    message_request,
    raw_frame,
)

_CONFIG = SessionConfig(
    window=4, response_timeout=10.0, bind_timeout=5.0, enquire_link_interval=30.0, dead_peer_timeout=90.0
)


def _bound(mode: BindMode = BindMode.TRANSCEIVER, config: SessionConfig = _CONFIG) -> SessionPair:
    pair = SessionPair(config)
    bind_pair(pair, mode)
    return pair


def _kinds(events: list[Event]) -> list[type]:
    return [type(e) for e in events]


# -- binding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        (BindMode.TRANSMITTER, State.BOUND_TX),
        (BindMode.RECEIVER, State.BOUND_RX),
        (BindMode.TRANSCEIVER, State.BOUND_TRX),
    ],
)
def test_bind_handshake_reaches_the_mode_state(mode: BindMode, state: State) -> None:
    """A bind accepted by the SMSC puts both ends in the bound state of the bind's mode."""
    pair = SessionPair(_CONFIG)
    bound = bind_pair(pair, mode)
    assert (bound.mode, bound.system_id) == (mode, "smsc")
    assert pair.esme.state is pair.smsc.state is state
    assert (pair.esme.mode, pair.esme.peer_system_id) == (mode, "smsc")
    assert (pair.smsc.mode, pair.smsc.peer_system_id) == (mode, "esme")
    assert pair.esme.is_bound and pair.smsc.is_bound


def test_smsc_refusal_returns_to_open_and_a_retry_binds() -> None:
    """A refused bind puts both ends back in OPEN, and a second bind on the same connection works."""
    pair = SessionPair(_CONFIG)
    bind = pair.send(Role.ESME, Bind(system_id="esme", password="wrong"))
    pair.deliver(Role.ESME)
    pair.send(Role.SMSC, bind.response(CommandStatus.ESME_RINVPASWD))
    assert pair.smsc.state is State.OPEN
    assert pair.deliver(Role.SMSC) == [BindRejected(CommandStatus.ESME_RINVPASWD, bind)]
    assert pair.esme.state is State.OPEN
    bind_pair(pair)
    assert pair.esme.state is pair.smsc.state is State.BOUND_TRX


def test_smsc_may_refuse_a_bind_with_generic_nack() -> None:
    """A generic_nack answering a bind is a refusal on both ends."""
    pair = SessionPair(_CONFIG)
    bind = pair.send(Role.ESME, Bind(system_id="esme"))
    pair.deliver(Role.ESME)
    pair.send(Role.SMSC, GenericNack(sequence=bind.sequence, command_status=CommandStatus.ESME_RSYSERR))
    assert pair.smsc.state is State.OPEN
    assert pair.deliver(Role.SMSC) == [BindRejected(CommandStatus.ESME_RSYSERR, bind)]
    assert pair.esme.state is State.OPEN
    bind_pair(pair)


def test_bind_resp_of_the_wrong_mode_is_refused_locally() -> None:
    """The SMSC cannot answer a transceiver bind with a bind_transmitter_resp."""
    pair = SessionPair(_CONFIG)
    bind = pair.send(Role.ESME, Bind(mode=BindMode.TRANSCEIVER))
    pair.deliver(Role.ESME)
    with pytest.raises(LocalProtocolError):
        pair.send(Role.SMSC, BindResp(sequence=bind.sequence, mode=BindMode.TRANSMITTER))
    assert pair.smsc.state is State.BINDING and pair.smsc.data_to_send() == b""


def test_unencodable_bind_resp_changes_nothing() -> None:
    """A bind_resp that cannot be encoded raises and leaves the SMSC BINDING with the bind still to answer."""
    pair = SessionPair(_CONFIG)
    bind = pair.send(Role.ESME, Bind())
    pair.deliver(Role.ESME)
    with pytest.raises(LocalProtocolError):
        pair.send(Role.SMSC, bind.response(system_id="x" * 40))
    assert pair.smsc.state is State.BINDING and pair.smsc.mode is None
    assert pair.smsc.data_to_send() == b"" and pair.smsc.unanswered == 1
    pair.send(Role.SMSC, bind.response(system_id="smsc"))
    assert pair.smsc.state is State.BOUND_TRX


def test_unencodable_request_changes_nothing() -> None:
    """A submit_sm that cannot be encoded raises, queues nothing and takes no window slot."""
    pair = _bound()
    with pytest.raises(LocalProtocolError):
        pair.send(Role.ESME, SubmitSm(destination_addr="1" * 100))
    assert pair.esme.data_to_send() == b"" and pair.esme.in_flight == 0


def test_bind_timeout_closes_the_session() -> None:
    """No bind_resp within bind_timeout gives ResponseTimedOut and ConnectionClosed(HANDSHAKE_TIMEOUT)."""
    pair = SessionPair(_CONFIG)
    bind = pair.send(Role.ESME, Bind())
    assert pair.esme.next_deadline() == 5.0
    assert pair.esme.on_timer(4.9) == []
    events = pair.esme.on_timer(5.0)
    assert events[0] == ResponseTimedOut(bind)
    assert isinstance(events[1], ConnectionClosed) and events[1].reason is ClosedReason.HANDSHAKE_TIMEOUT
    assert pair.esme.state is State.CLOSED and pair.esme.next_deadline() is None


def test_outbind_invites_a_bind() -> None:
    """The SMSC's outbind reaches the ESME as a request that takes no response, and the ESME may then bind."""
    pair = SessionPair(_CONFIG)
    outbind = pair.send(Role.SMSC, Outbind(system_id="gw", password="pw"))
    assert pair.smsc.next_deadline() is None
    assert pair.deliver(Role.SMSC) == [RequestReceived(outbind)]
    assert pair.esme.data_to_send() == b"" and pair.esme.unanswered == 0
    bind_pair(pair)


@pytest.mark.parametrize(
    ("role", "pdu"),
    [
        (Role.ESME, DeliverSm()),
        (Role.ESME, Outbind()),
        (Role.SMSC, SubmitSm()),
        (Role.SMSC, Bind()),
        (Role.ESME, AlertNotification()),
    ],
)
def test_a_role_cannot_send_the_other_roles_requests(role: Role, pdu: object) -> None:
    """Requests only the other role may originate raise LocalProtocolError in every state."""
    pair = _bound()
    with pytest.raises(LocalProtocolError):
        pair.send(role, pdu)  # type: ignore[arg-type]
    assert pair.side(role).data_to_send() == b""


def test_sending_a_response_pdu_type_as_request_is_refused() -> None:
    """A response must answer an unanswered request; a fresh one raises LocalProtocolError."""
    pair = _bound()
    with pytest.raises(LocalProtocolError):
        pair.send(Role.SMSC, SubmitSmResp(sequence=1))


# -- data_sm and alert_notification --------------------------------------------------------------


def test_data_sm_in_both_directions() -> None:
    """data_sm is a submit from the ESME and a deliver from the SMSC, each answered by the application."""
    pair = _bound(BindMode.TRANSCEIVER)
    up = pair.send(Role.ESME, DataSm(source_addr="4100"))
    down = pair.send(Role.SMSC, DataSm(source_addr="41790000001"))
    assert pair.deliver(Role.ESME) == [RequestReceived(up)]
    assert pair.deliver(Role.SMSC) == [RequestReceived(down)]
    pair.send(Role.SMSC, up.response(message_id="x"))  # type: ignore[attr-defined]
    pair.send(Role.ESME, down.response())  # type: ignore[attr-defined]
    events = pair.flush()
    assert _kinds(events[Role.ESME]) == _kinds(events[Role.SMSC]) == [ResponseReceived]


def test_data_sm_from_an_smsc_to_a_transmitter_is_refused() -> None:
    """A data_sm from the SMSC to a transmitter-only ESME gets data_sm_resp ESME_RINVBNDSTS."""
    pair = _bound(BindMode.TRANSMITTER)
    frame = codec.encode(DataSm(sequence=44))
    events = pair.esme.receive_data(frame, 1.0)
    assert _kinds(events) == [ProtocolViolation]
    (answer,) = decode_all(pair.esme.data_to_send())
    assert answer.command_id is CommandId.DATA_SM_RESP and answer.command_status == CommandStatus.ESME_RINVBNDSTS


def test_alert_notification_needs_no_answer() -> None:
    """An alert_notification reaches the ESME as a request nothing has to answer."""
    pair = _bound(BindMode.RECEIVER)
    alert = pair.send(Role.SMSC, AlertNotification(source_addr="41790000001", esme_addr="4100"))
    assert pair.deliver(Role.SMSC) == [RequestReceived(alert)]
    assert pair.esme.data_to_send() == b"" and pair.esme.unanswered == 0


# -- enquire_link and the dead peer ----------------------------------------------------------------


def test_enquire_link_after_silence_is_answered_by_the_peer() -> None:
    """After enquire_link_interval without traffic the ESME sends enquire_link, the SMSC answers it itself."""
    pair = _bound()
    assert pair.esme.next_deadline() == 30.0
    assert pair.esme.on_timer(29.9) == [] and pair.esme.data_to_send() == b""
    pair.now = 30.0
    assert pair.esme.on_timer(30.0) == []
    wire = pair.esme.data_to_send()
    (enquire,) = decode_all(wire)
    assert isinstance(enquire, EnquireLink)
    assert pair.smsc.receive_data(wire, 30.0) == []
    (answer,) = decode_all(pair.smsc.data_to_send())
    assert answer == EnquireLinkResp(sequence=enquire.sequence)
    assert pair.esme.receive_data(codec.encode(answer), 30.5) == []
    assert pair.esme.next_deadline() == 60.5


def test_enquire_link_is_not_resent_while_pending() -> None:
    """While an enquire_link awaits its answer no second one is sent."""
    pair = _bound()
    pair.esme.on_timer(30.0)
    assert len(decode_all(pair.esme.data_to_send())) == 1
    for now in (31.0, 35.0, 39.9):
        assert pair.esme.on_timer(now) == []
        assert pair.esme.data_to_send() == b""
    assert pair.esme.next_deadline() == 40.0


def test_unanswered_enquire_link_is_retried_after_another_interval() -> None:
    """An enquire_link that times out is dropped silently and the next goes out an interval after the last."""
    pair = _bound()
    pair.esme.on_timer(30.0)
    pair.esme.data_to_send()
    assert pair.esme.on_timer(40.0) == []
    assert pair.esme.data_to_send() == b""
    assert pair.esme.next_deadline() == 60.0
    pair.esme.on_timer(60.0)
    assert isinstance(decode_all(pair.esme.data_to_send())[0], EnquireLink)


def test_traffic_from_the_peer_postpones_enquire_link() -> None:
    """Any PDU from the peer restarts the silence interval."""
    pair = _bound()
    pair.now = 20.0
    pair.send(Role.SMSC, message_request(Role.SMSC))
    pair.deliver(Role.SMSC)
    assert pair.esme.next_deadline() == 50.0
    assert pair.esme.on_timer(30.0) == [] and pair.esme.data_to_send() == b""


def test_dead_peer_closes_the_session() -> None:
    """After dead_peer_timeout of silence the session closes with PEER_DEAD, listing unanswered submits."""
    config = SessionConfig(window=4, response_timeout=200.0, enquire_link_interval=30.0, dead_peer_timeout=90.0)
    pair = _bound(config=config)
    submit = pair.send(Role.ESME, message_request(Role.ESME))
    for now in (30.0, 60.0, 89.0):
        assert pair.esme.on_timer(now) == []
    assert pair.esme.next_deadline() == 90.0
    events = pair.esme.on_timer(90.0)
    assert _kinds(events) == [ConnectionClosed]
    assert events[0].reason is ClosedReason.PEER_DEAD and events[0].unanswered == (submit,)  # type: ignore[attr-defined]
    assert pair.esme.state is State.CLOSED
    assert pair.esme.on_timer(1000.0) == []


def test_open_session_without_requests_has_no_deadline() -> None:
    """An unbound session with nothing outstanding never needs its timer."""
    assert SmppSession(Role.ESME, _CONFIG).next_deadline() is None
    assert SmppSession(Role.SMSC, _CONFIG).on_timer(1e9) == []


# -- request timeouts ------------------------------------------------------------------------------


def test_request_times_out_at_its_deadline() -> None:
    """A submit with no response gets ResponseTimedOut exactly at now + response_timeout."""
    pair = _bound()
    pair.now = 2.0
    submit = pair.send(Role.ESME, message_request(Role.ESME))
    assert pair.esme.next_deadline() == 12.0
    assert pair.esme.on_timer(11.99) == []
    assert pair.esme.on_timer(12.0) == [ResponseTimedOut(submit)]
    assert pair.esme.in_flight == 0


def test_late_response_is_a_violation_with_no_second_event() -> None:
    """A response after the request timed out gives ProtocolViolation and no ResponseReceived."""
    pair = _bound()
    pair.send(Role.ESME, message_request(Role.ESME))
    (received,) = pair.deliver(Role.ESME)
    pair.esme.on_timer(10.0)
    pair.send(Role.SMSC, received.pdu.response(message_id="late"))  # type: ignore[attr-defined]
    events = pair.deliver(Role.SMSC)
    assert _kinds(events) == [ProtocolViolation]
    assert events[0].answered_with is None  # type: ignore[attr-defined]
    assert pair.esme.data_to_send() == b""


def test_response_reports_latency() -> None:
    """ResponseReceived carries the request, the response and the time between them."""
    pair = _bound()
    pair.now = 1.0
    submit = pair.send(Role.ESME, message_request(Role.ESME))
    (received,) = pair.deliver(Role.ESME)
    pair.now = 1.25
    resp = pair.send(Role.SMSC, received.pdu.response(message_id="abc"))  # type: ignore[attr-defined]
    assert pair.deliver(Role.SMSC) == [ResponseReceived(submit, resp, 0.25)]


# -- unbind ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("initiator", [Role.ESME, Role.SMSC])
def test_unbind_handshake(initiator: Role) -> None:
    """Either end may unbind: the peer answers by itself and both report Unbound and end CLOSED."""
    pair = _bound()
    pair.send(initiator, Unbind())
    assert pair.side(initiator).state is State.UNBINDING
    responder = Role.SMSC if initiator is Role.ESME else Role.ESME
    assert pair.deliver(initiator) == [Unbound(by_peer=True)]
    assert pair.side(responder).state is State.CLOSED
    assert pair.deliver(responder) == [Unbound(by_peer=False)]
    assert pair.side(initiator).state is State.CLOSED


def test_no_submit_after_unbind() -> None:
    """Once the ESME has sent unbind, submit_sm raises LocalProtocolError and nothing is queued."""
    pair = _bound()
    pair.send(Role.ESME, Unbind())
    pair.esme.data_to_send()
    with pytest.raises(LocalProtocolError):
        pair.send(Role.ESME, message_request(Role.ESME))
    assert pair.esme.state is State.UNBINDING and pair.esme.data_to_send() == b""


def test_responses_still_complete_while_unbinding() -> None:
    """A response to a submit sent before the unbind is still delivered as ResponseReceived."""
    pair = _bound()
    submit = pair.send(Role.ESME, message_request(Role.ESME))
    (received,) = pair.deliver(Role.ESME)
    pair.send(Role.ESME, Unbind())
    resp = pair.send(Role.SMSC, received.pdu.response(message_id="m"))  # type: ignore[attr-defined]
    events = pair.deliver(Role.SMSC)
    assert events == [ResponseReceived(submit, resp, 0.0)]
    assert pair.esme.state is State.UNBINDING
    pair.deliver(Role.ESME)
    assert pair.deliver(Role.SMSC) == [Unbound(by_peer=False, unanswered=())]


def test_application_may_answer_a_deliver_while_unbinding() -> None:
    """A deliver_sm received before our unbind can still be answered while UNBINDING."""
    pair = _bound()
    pair.send(Role.SMSC, message_request(Role.SMSC))
    (received,) = pair.deliver(Role.SMSC)
    unbind = pair.send(Role.ESME, Unbind())
    resp = pair.send(Role.ESME, received.pdu.response())  # type: ignore[attr-defined]
    assert pair.esme.state is State.UNBINDING
    assert decode_all(pair.esme.data_to_send()) == [unbind, resp]


def test_deliver_while_unbinding_is_refused() -> None:
    """A deliver_sm arriving after we sent unbind is answered with ESME_RINVBNDSTS and not reported."""
    pair = _bound()
    pair.send(Role.ESME, Unbind())
    pair.esme.data_to_send()
    events = pair.esme.receive_data(codec.encode(DeliverSm(sequence=77)), 0.0)
    assert _kinds(events) == [ProtocolViolation]
    assert decode_all(pair.esme.data_to_send()) == [
        DeliverSmResp(sequence=77, command_status=CommandStatus.ESME_RINVBNDSTS)
    ]
    assert pair.esme.state is State.UNBINDING


def test_peer_unbind_reports_unanswered_requests() -> None:
    """When the SMSC unbinds, the ESME's submits still awaiting a response are listed as unanswered."""
    pair = _bound()
    first = pair.send(Role.ESME, message_request(Role.ESME))
    second = pair.send(Role.ESME, message_request(Role.ESME))
    pair.send(Role.ESME, EnquireLink())
    pair.deliver(Role.ESME)
    pair.send(Role.SMSC, Unbind())
    assert pair.deliver(Role.SMSC) == [Unbound(by_peer=True, unanswered=(first, second))]
    assert pair.esme.in_flight == 0 and pair.esme.next_deadline() is None


def test_unbind_timeout_closes_the_session() -> None:
    """An unbind without unbind_resp within response_timeout closes with HANDSHAKE_TIMEOUT."""
    pair = _bound()
    unbind = pair.send(Role.ESME, Unbind())
    events = pair.esme.on_timer(10.0)
    assert events[0] == ResponseTimedOut(unbind)
    assert isinstance(events[1], ConnectionClosed) and events[1].reason is ClosedReason.HANDSHAKE_TIMEOUT


def test_simultaneous_unbind_closes_both_ends() -> None:
    """When both ends unbind at once each refuses the other's unbind, and both still end CLOSED."""
    pair = _bound()
    pair.send(Role.ESME, Unbind())
    pair.send(Role.SMSC, Unbind())
    events = pair.flush()
    assert pair.esme.state is pair.smsc.state is State.CLOSED
    assert Unbound(by_peer=False) in events[Role.ESME] and Unbound(by_peer=False) in events[Role.SMSC]


@pytest.mark.parametrize("how", ["connection_lost", "empty_read"])
def test_connection_lost_reports_unanswered_requests(how: str) -> None:
    """A lost connection closes with CONNECTION_LOST and lists the submits still outstanding."""
    pair = _bound()
    first = pair.send(Role.ESME, message_request(Role.ESME))
    pair.send(Role.ESME, Unbind())
    events = pair.esme.connection_lost() if how == "connection_lost" else pair.esme.receive_data(b"", 0.0)
    assert _kinds(events) == [ConnectionClosed]
    assert events[0].reason is ClosedReason.CONNECTION_LOST and events[0].unanswered == (first,)  # type: ignore[attr-defined]
    assert pair.esme.state is State.CLOSED
    assert pair.esme.connection_lost() == [] and pair.esme.receive_data(b"", 1.0) == []


def test_nothing_can_be_sent_once_closed() -> None:
    """After the session closed every send raises LocalProtocolError."""
    pair = _bound()
    pair.send(Role.SMSC, message_request(Role.SMSC))
    (received,) = pair.deliver(Role.SMSC)
    pair.esme.connection_lost()
    for pdu in (EnquireLink(), Unbind(), message_request(Role.ESME), received.pdu.response()):  # type: ignore[attr-defined]
        with pytest.raises(LocalProtocolError):
            pair.send(Role.ESME, pdu)
    assert pair.esme.data_to_send() == b""


# -- explicit answers ------------------------------------------------------------------------------


def test_deliver_sm_resp_is_never_automatic() -> None:
    """An ESME receiving deliver_sm reports it and sends nothing until the application answers."""
    pair = _bound(BindMode.RECEIVER)
    deliver = pair.send(Role.SMSC, message_request(Role.SMSC))
    assert pair.deliver(Role.SMSC) == [RequestReceived(deliver)]
    assert pair.esme.data_to_send() == b""
    assert pair.esme.on_timer(5.0) == [] and pair.esme.data_to_send() == b""
    assert pair.esme.unanswered == 1
    resp = pair.send(Role.ESME, deliver.response())  # type: ignore[attr-defined]
    assert decode_all(pair.esme.data_to_send()) == [resp]
    assert pair.esme.unanswered == 0


def test_answering_twice_or_nothing_is_refused() -> None:
    """Answering a request twice, a sequence never received, or with the wrong response type raises LocalProtocolError."""
    pair = _bound()
    deliver = pair.send(Role.SMSC, message_request(Role.SMSC))
    pair.deliver(Role.SMSC)
    with pytest.raises(LocalProtocolError):
        pair.send(Role.ESME, SubmitSmResp(sequence=deliver.sequence))
    with pytest.raises(LocalProtocolError):
        pair.send(Role.ESME, DeliverSmResp(sequence=deliver.sequence + 100))
    pair.send(Role.ESME, deliver.response())  # type: ignore[attr-defined]
    with pytest.raises(LocalProtocolError):
        pair.send(Role.ESME, deliver.response())  # type: ignore[attr-defined]
    assert len(decode_all(pair.esme.data_to_send())) == 1


def test_submit_is_reported_to_the_smsc_application() -> None:
    """The SMSC reports a submit_sm and answers only when told, with the message id it chose."""
    pair = _bound(BindMode.TRANSMITTER)
    submit = pair.send(Role.ESME, message_request(Role.ESME))
    assert pair.deliver(Role.ESME) == [RequestReceived(submit)]
    assert pair.smsc.data_to_send() == b""
    resp = pair.send(Role.SMSC, submit.response(message_id="abc123"))  # type: ignore[attr-defined]
    (event,) = pair.deliver(Role.SMSC)
    assert isinstance(event, ResponseReceived) and event.response == resp


def test_submit_to_a_receiver_smsc_is_refused() -> None:
    """An SMSC bound as receiver answers submit_sm with ESME_RINVBNDSTS and reports no request."""
    pair = _bound(BindMode.RECEIVER)
    events = pair.smsc.receive_data(codec.encode(SubmitSm(sequence=12)), 0.0)
    assert events == [
        ProtocolViolation("SubmitSm not allowed in state bound_rx", CommandId.SUBMIT_SM, 12, CommandStatus.ESME_RINVBNDSTS)
    ]
    assert decode_all(pair.smsc.data_to_send()) == [SubmitSmResp(sequence=12, command_status=CommandStatus.ESME_RINVBNDSTS)]
    assert pair.smsc.state is State.BOUND_RX


def test_second_bind_is_refused_as_already_bound() -> None:
    """A bind arriving at a bound SMSC gets ESME_RALYBND in the matching bind_resp."""
    pair = _bound()
    pair.smsc.receive_data(codec.encode(Bind(sequence=5, mode=BindMode.RECEIVER)), 0.0)
    assert decode_all(pair.smsc.data_to_send()) == [
        BindResp(sequence=5, command_status=CommandStatus.ESME_RALYBND, mode=BindMode.RECEIVER)
    ]
    assert pair.smsc.state is State.BOUND_TRX


def test_submit_arriving_at_an_esme_gets_generic_nack() -> None:
    """An ESME never accepts submit_sm: generic_nack ESME_RINVCMDID, state unchanged."""
    pair = _bound()
    events = pair.esme.receive_data(codec.encode(SubmitSm(sequence=31)), 0.0)
    assert _kinds(events) == [ProtocolViolation]
    assert decode_all(pair.esme.data_to_send()) == [GenericNack(sequence=31, command_status=CommandStatus.ESME_RINVCMDID)]
    assert pair.esme.state is State.BOUND_TRX


# -- malformed input -------------------------------------------------------------------------------


@pytest.mark.parametrize("command_id", [0x00000099, CommandId.QUERY_SM, CommandId.SUBMIT_MULTI])
def test_unknown_command_gets_generic_nack(command_id: int) -> None:
    """An unknown or unsupported command gets generic_nack ESME_RINVCMDID with its sequence; the session stays bound."""
    pair = _bound()
    events = pair.esme.receive_data(raw_frame(command_id, b"\0" * 8, sequence=4242), 1.0)
    assert _kinds(events) == [ProtocolViolation]
    assert (events[0].command_id, events[0].sequence, events[0].answered_with) == (  # type: ignore[attr-defined]
        command_id,
        4242,
        CommandStatus.ESME_RINVCMDID,
    )
    assert decode_all(pair.esme.data_to_send()) == [GenericNack(sequence=4242, command_status=CommandStatus.ESME_RINVCMDID)]
    assert pair.esme.state is State.BOUND_TRX


def test_deliver_sm_with_sm_length_overrun_gets_deliver_sm_resp() -> None:
    """A deliver_sm whose sm_length overruns the PDU is answered with deliver_sm_resp and the decoder's status."""
    pair = _bound()
    frame = deliver_sm_overrun(sequence=9)
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(frame)
    events = pair.esme.receive_data(frame, 1.0)
    assert _kinds(events) == [ProtocolViolation]
    assert events[0].answered_with == info.value.command_status  # type: ignore[attr-defined]
    assert decode_all(pair.esme.data_to_send()) == [DeliverSmResp(sequence=9, command_status=info.value.command_status)]
    assert pair.esme.state is State.BOUND_TRX and pair.esme.unanswered == 0


def test_malformed_response_is_not_answered() -> None:
    """A response that cannot be decoded is reported and never answered."""
    pair = _bound()
    events = pair.esme.receive_data(raw_frame(CommandId.SUBMIT_SM_RESP, b"no-nul", sequence=3), 1.0)
    assert _kinds(events) == [ProtocolViolation]
    assert events[0].answered_with is None  # type: ignore[attr-defined]
    assert pair.esme.data_to_send() == b""


@pytest.mark.parametrize("length", [0, 8, 15, 1025, 0xFFFFFFFF])
def test_command_length_out_of_bounds_closes(length: int) -> None:
    """A command_length below 16 or above the maximum gets generic_nack ESME_RINVCMDLEN and FRAMING_ERROR."""
    config = SessionConfig(max_pdu_length=1024)
    pair = SessionPair(config)
    bind_pair(pair)
    submit = pair.send(Role.ESME, message_request(Role.ESME))
    pair.esme.data_to_send()
    events = pair.esme.receive_data(codec.encode(EnquireLink(sequence=1)) + bad_length_frame(length, sequence=66), 1.0)
    assert _kinds(events) == [ConnectionClosed]
    assert events[0].reason is ClosedReason.FRAMING_ERROR and events[0].unanswered == (submit,)  # type: ignore[attr-defined]
    assert decode_all(pair.esme.data_to_send()) == [
        EnquireLinkResp(sequence=1),
        GenericNack(sequence=66, command_status=CommandStatus.ESME_RINVCMDLEN),
    ]
    assert pair.esme.state is State.CLOSED
    assert pair.esme.receive_data(codec.encode(EnquireLink(sequence=2)), 2.0) == []


def test_bad_length_with_a_short_header_uses_sequence_zero() -> None:
    """When the bad header is cut short the generic_nack carries sequence 0."""
    pair = _bound()
    pair.esme.receive_data(header(4, 0, 0, 0)[:8], 1.0)
    assert decode_all(pair.esme.data_to_send()) == [GenericNack(sequence=0, command_status=CommandStatus.ESME_RINVCMDLEN)]


def test_response_to_nothing_is_a_violation() -> None:
    """A response matching no outstanding request gives ProtocolViolation and nothing is sent."""
    pair = _bound()
    events = pair.esme.receive_data(codec.encode(SubmitSmResp(sequence=999, message_id="x")), 1.0)
    assert events == [ProtocolViolation("response to no outstanding request", CommandId.SUBMIT_SM_RESP, 999, None)]
    assert pair.esme.data_to_send() == b"" and pair.esme.state is State.BOUND_TRX


def test_response_of_the_wrong_type_still_completes_the_request() -> None:
    """A response of the wrong type is reported and resolves its request as a generic_nack."""
    pair = _bound()
    submit = pair.send(Role.ESME, message_request(Role.ESME))
    events = pair.esme.receive_data(codec.encode(UnbindResp(sequence=submit.sequence)), 1.0)
    assert _kinds(events) == [ProtocolViolation, ResponseReceived]
    assert events[1].response == GenericNack(sequence=submit.sequence, command_status=CommandStatus.ESME_RSYSERR)  # type: ignore[attr-defined]
    assert pair.esme.in_flight == 0 and pair.esme.state is State.BOUND_TRX


def test_frames_split_and_batched_arbitrarily() -> None:
    """PDUs are found however the byte stream is cut: one octet at a time or many in one read."""
    pair = _bound()
    first = DeliverSm(sequence=10, short_message=b"one")
    second = DeliverSm(sequence=11, short_message=b"two")
    data = codec.encode(first) + codec.encode(EnquireLink(sequence=12)) + codec.encode(second)
    events: list[Event] = []
    for i in range(len(data)):
        events += pair.esme.receive_data(data[i : i + 1], 1.0)
    assert events == [RequestReceived(first), RequestReceived(second)]
    assert decode_all(pair.esme.data_to_send()) == [EnquireLinkResp(sequence=12)]


_frames = st.builds(
    lambda cid, seq, status, body: raw_frame(cid, body, sequence=seq, status=status),
    st.one_of(st.sampled_from(CommandId), st.integers(0, 0xFFFFFFFF)),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=80),
)
_chunks = st.lists(st.one_of(st.binary(min_size=1, max_size=64), _frames), max_size=12)


@given(_chunks, st.sampled_from(BindMode))
def test_arbitrary_bytes_never_raise(chunks: list[bytes], mode: BindMode) -> None:
    """Arbitrary bytes fed to a bound ESME only produce events; the state stays or becomes CLOSED, and what it sends is well formed."""
    pair = _bound(mode)
    start = pair.esme.state
    for chunk in chunks:
        events = pair.esme.receive_data(chunk, 1.0)
        assert all(isinstance(e, Event) for e in events)
        assert pair.esme.state in (start, State.CLOSED)
        for pdu in decode_all(pair.esme.data_to_send()):
            assert pdu.is_response
    pair.esme.on_timer(1000.0)


def test_request_with_an_out_of_range_sequence_is_dropped() -> None:
    """A request whose sequence number exceeds 0x7FFFFFFF cannot be answered, so it is reported and dropped."""
    pair = _bound()
    for frame in (raw_frame(CommandId.ENQUIRE_LINK, sequence=0x80000000), raw_frame(0x99, sequence=0xFFFFFFFF)):
        events = pair.esme.receive_data(frame, 1.0)
        assert _kinds(events) == [ProtocolViolation]
        assert events[0].answered_with is None  # type: ignore[attr-defined]
    assert pair.esme.data_to_send() == b"" and pair.esme.unanswered == 0
    assert pair.esme.state is State.BOUND_TRX


def test_framing_error_with_an_out_of_range_sequence_nacks_sequence_zero() -> None:
    """A bad command_length whose header carries an unencodable sequence is nacked with sequence 0."""
    pair = _bound()
    events = pair.esme.receive_data(bad_length_frame(4, sequence=0x80000000), 1.0)
    assert _kinds(events) == [ConnectionClosed]
    assert decode_all(pair.esme.data_to_send()) == [GenericNack(sequence=0, command_status=CommandStatus.ESME_RINVCMDLEN)]
