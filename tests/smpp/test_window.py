"""Sequence numbers and the outstanding-request window, alone and through a session."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.smpp.constants import BindMode, CommandStatus
from gatewayd.smpp.errors import LocalProtocolError, WindowFull
from gatewayd.smpp.events import (
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
    DataSm,
    EnquireLink,
    GenericNack,
    Pdu,
    SubmitSm,
    Unbind,
)
from gatewayd.smpp.session import SessionConfig
from gatewayd.smpp.states import Role, State
from gatewayd.smpp.window import MAX_SEQUENCE, Sequencer, Window
from tests.smpp.helpers import SessionPair, bind_pair, decode_all, message_request

# -- Sequencer ---------------------------------------------------------------------------------


def test_sequencer_counts_from_one() -> None:
    """A fresh sequencer hands out 1, 2, 3, ..."""
    seq = Sequencer()
    assert [seq.next() for _ in range(3)] == [1, 2, 3]


def test_sequencer_wraps_to_one() -> None:
    """After 0x7FFFFFFF the next number is 1, never 0 or 0x80000000."""
    seq = Sequencer(start=0x7FFFFFFE)
    assert [seq.next() for _ in range(4)] == [0x7FFFFFFE, 0x7FFFFFFF, 1, 2]
    assert MAX_SEQUENCE == 0x7FFFFFFF


@pytest.mark.parametrize("start", [0, -1, MAX_SEQUENCE + 1])
def test_sequencer_rejects_out_of_range_start(start: int) -> None:
    """A start outside 1..0x7FFFFFFF is refused."""
    with pytest.raises(ValueError):
        Sequencer(start=start)


# -- Window ------------------------------------------------------------------------------------


def _req(seq: int) -> Pdu:
    return SubmitSm(sequence=seq)


def test_window_size_must_be_positive() -> None:
    """A window of size 0 is refused."""
    with pytest.raises(ValueError):
        Window(0)


def test_allocate_skips_outstanding_numbers() -> None:
    """A number still outstanding is not handed out again."""
    window = Window(5)
    window.add(_req(2), 0.0, 10.0, counted=True)
    assert [window.allocate(), window.allocate()] == [1, 3]


def test_allocate_skips_outstanding_numbers_across_the_wrap() -> None:
    """After the wrap, numbers still outstanding from before are skipped."""
    window = Window(5, Sequencer(start=MAX_SEQUENCE))
    window.add(_req(1), 0.0, 10.0, counted=True)
    window.add(EnquireLink(sequence=2), 0.0, 10.0, counted=False)
    assert window.allocate() == MAX_SEQUENCE
    assert window.allocate() == 3


def test_add_refuses_when_full_and_keeps_control_requests_apart() -> None:
    """Message requests beyond the size raise WindowFull; uncounted ones are always accepted."""
    window = Window(2)
    window.add(_req(1), 0.0, 10.0, counted=True)
    window.add(_req(2), 0.0, 10.0, counted=True)
    assert not window.has_room
    with pytest.raises(WindowFull):
        window.add(_req(3), 0.0, 10.0, counted=True)
    window.add(EnquireLink(sequence=4), 0.0, 10.0, counted=False)
    assert (window.in_flight, len(window)) == (2, 3)


def test_add_refuses_a_duplicate_sequence() -> None:
    """Adding a sequence number that is already outstanding raises LocalProtocolError."""
    window = Window(2)
    window.add(_req(1), 0.0, 10.0, counted=True)
    with pytest.raises(LocalProtocolError):
        window.add(EnquireLink(sequence=1), 0.0, 10.0, counted=False)


def test_pop_frees_a_slot() -> None:
    """Popping a request returns it once and frees its slot."""
    window = Window(1)
    window.add(_req(1), 0.0, 10.0, counted=True)
    popped = window.pop(1)
    assert popped is not None and popped.request == _req(1)
    assert window.pop(1) is None
    assert window.has_room


def test_expiry_is_in_deadline_order() -> None:
    """pop_expired returns everything due at or before now, earliest first, and leaves the rest."""
    window = Window(5)
    window.add(_req(1), 0.0, 10.0, counted=True)
    window.add(Unbind(sequence=2), 1.0, 3.0, counted=False)
    window.add(_req(3), 2.0, 10.0, counted=True)
    assert window.next_deadline() == 4.0
    assert [o.request.sequence for o in window.pop_expired(10.0)] == [2, 1]
    assert window.next_deadline() == 12.0
    assert [o.request.sequence for o in window.drain()] == [3]
    assert window.next_deadline() is None and len(window) == 0


def test_deadlines_of_different_timeouts_in_one_kind() -> None:
    """A later request with a shorter timeout is due first, even among requests of one kind."""
    window = Window(5)
    window.add(EnquireLink(sequence=1), 0.0, 10.0, counted=False)
    window.add(Bind(sequence=2), 1.0, 5.0, counted=False)
    assert window.next_deadline() == 6.0
    assert [o.request.sequence for o in window.pop_expired(6.0)] == [2]
    assert window.next_deadline() == 10.0


# -- through a session ---------------------------------------------------------------------------


def _bound(window: int = 3, **kwargs: float) -> SessionPair:
    pair = SessionPair(SessionConfig(window=window, **kwargs))  # type: ignore[arg-type]
    bind_pair(pair)
    return pair


def test_window_plus_one_raises_and_queues_nothing() -> None:
    """The window+1-th submit raises WindowFull and neither queues bytes nor takes a slot."""
    pair = _bound(window=3)
    for _ in range(3):
        pair.send(Role.ESME, message_request(Role.ESME))
    queued = pair.esme.data_to_send()
    assert len(decode_all(queued)) == 3
    assert not pair.esme.can_submit
    with pytest.raises(WindowFull):
        pair.send(Role.ESME, message_request(Role.ESME))
    assert pair.esme.data_to_send() == b""
    assert pair.esme.in_flight == 3


def test_data_sm_counts_against_the_window() -> None:
    """data_sm from the ESME takes a window slot like submit_sm."""
    pair = _bound(window=1)
    pair.send(Role.ESME, DataSm(source_addr="4100"))
    with pytest.raises(WindowFull):
        pair.send(Role.ESME, message_request(Role.ESME))


def test_responses_free_slots() -> None:
    """A response, an error response or a generic_nack each free one slot."""
    pair = _bound(window=3)
    for _ in range(3):
        pair.send(Role.ESME, message_request(Role.ESME))
    received = [e.pdu for e in pair.deliver(Role.ESME) if isinstance(e, RequestReceived)]
    pair.send(Role.SMSC, received[0].response(message_id="m1"))  # type: ignore[attr-defined]
    pair.send(Role.SMSC, received[1].response(CommandStatus.ESME_RTHROTTLED))  # type: ignore[attr-defined]
    pair.send(Role.SMSC, GenericNack(sequence=received[2].sequence, command_status=CommandStatus.ESME_RSYSERR))
    events = pair.deliver(Role.SMSC)
    assert [type(e) for e in events] == [ResponseReceived] * 3
    assert pair.esme.in_flight == 0 and pair.esme.can_submit


def test_a_timeout_frees_a_slot() -> None:
    """A request that timed out no longer counts against the window."""
    pair = _bound(window=1, response_timeout=5.0)
    pair.send(Role.ESME, message_request(Role.ESME))
    events = pair.advance(5.0)
    assert [type(e) for e in events[Role.ESME]] == [ResponseTimedOut]
    assert pair.esme.can_submit


def test_link_control_is_never_blocked_by_a_full_window() -> None:
    """enquire_link and unbind go out while every message slot is taken."""
    pair = _bound(window=2)
    for _ in range(2):
        pair.send(Role.ESME, message_request(Role.ESME))
    enquire = pair.send(Role.ESME, EnquireLink())
    unbind = pair.send(Role.ESME, Unbind())
    assert decode_all(pair.esme.data_to_send())[-2:] == [enquire, unbind]
    assert pair.esme.state is State.UNBINDING


def test_smsc_deliver_window() -> None:
    """The SMSC's deliver_sm requests are limited by its own window and freed by deliver_sm_resp."""
    pair = _bound(window=2)
    for _ in range(2):
        pair.send(Role.SMSC, message_request(Role.SMSC))
    with pytest.raises(WindowFull):
        pair.send(Role.SMSC, message_request(Role.SMSC))
    assert pair.smsc.in_flight == 2 and not pair.smsc.can_submit
    first = pair.deliver(Role.SMSC)[0]
    assert isinstance(first, RequestReceived)
    pair.send(Role.ESME, first.pdu.response())  # type: ignore[attr-defined]
    assert [type(e) for e in pair.deliver(Role.ESME)] == [ResponseReceived]
    pair.send(Role.SMSC, message_request(Role.SMSC))
    assert pair.smsc.in_flight == 2


def test_alert_notification_takes_no_slot() -> None:
    """alert_notification expects no response, so it neither needs nor takes a window slot."""
    pair = _bound(window=1)
    pair.send(Role.SMSC, message_request(Role.SMSC))
    pair.send(Role.SMSC, AlertNotification(source_addr="41790000001"))
    assert pair.smsc.in_flight == 1 and pair.smsc.next_deadline() == 10.0


def test_session_sequence_numbers_wrap_to_one() -> None:
    """Sequence numbers on the wire run up to 0x7FFFFFFF and continue at 1."""
    pair = SessionPair(SessionConfig(window=10), esme_sequencer=Sequencer(start=0x7FFFFFFE))
    bound = bind_pair(pair)
    assert bound.bind.sequence == 0x7FFFFFFE
    sent = [pair.send(Role.ESME, message_request(Role.ESME)).sequence for _ in range(3)]
    assert sent == [0x7FFFFFFF, 1, 2]
    assert [p.sequence for p in decode_all(pair.esme.data_to_send())] == sent


class _Scripted(Sequencer):
    """A sequencer that replays fixed numbers, to make a collision happen on demand."""

    def __init__(self, numbers: list[int]) -> None:
        super().__init__()
        self._numbers = iter(numbers)

    def next(self) -> int:
        return next(self._numbers)


def test_session_skips_a_number_still_outstanding() -> None:
    """When the sequencer comes back to a number still awaiting its response, the session skips it."""
    pair = SessionPair(esme_sequencer=_Scripted([MAX_SEQUENCE, 1, 1, 2]))
    bind_pair(pair)
    first = pair.send(Role.ESME, message_request(Role.ESME))
    second = pair.send(Role.ESME, message_request(Role.ESME))
    assert (first.sequence, second.sequence) == (1, 2)


# -- the property ---------------------------------------------------------------------------------

_WINDOW = 3
_TIMEOUT = 5

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.just(0)),
        st.tuples(st.just("answer"), st.integers(0, 7)),
        st.tuples(st.just("nack"), st.integers(0, 7)),
        st.tuples(st.just("deliver"), st.just(0)),
        st.tuples(st.just("wait"), st.integers(1, 4)),
    ),
    max_size=50,
)


@given(_ops, st.sampled_from(["esme_unbinds", "smsc_unbinds", "lost", "timeout"]), st.integers(1, 6))
def test_every_request_ends_exactly_once(ops: list[tuple[str, int]], ending: str, start_back: int) -> None:
    """Over random sends, answers and waits the window never overflows and every submit gets exactly one outcome."""
    config = SessionConfig(window=_WINDOW, response_timeout=_TIMEOUT, enquire_link_interval=1e6, dead_peer_timeout=1e7)
    pair = SessionPair(config, esme_sequencer=Sequencer(start=MAX_SEQUENCE - start_back))
    bind_pair(pair)
    sent: list[Pdu] = []
    to_answer: list[Pdu] = []
    esme_events: list[Event] = []

    def collect(events: dict[Role, list[Event]]) -> None:
        esme_events.extend(events[Role.ESME])
        to_answer.extend(e.pdu for e in events[Role.SMSC] if isinstance(e, RequestReceived))

    for op, arg in ops:
        if op == "submit":
            if pair.esme.can_submit:
                sent.append(pair.send(Role.ESME, message_request(Role.ESME)))
            else:
                with pytest.raises(WindowFull):
                    pair.send(Role.ESME, message_request(Role.ESME))
        elif op in ("answer", "nack") and to_answer:
            request = to_answer.pop(arg % len(to_answer))
            reply = request.response() if op == "answer" else GenericNack(sequence=request.sequence, command_status=8)  # type: ignore[attr-defined]
            pair.send(Role.SMSC, reply)
        elif op == "deliver":
            collect(pair.flush())
        elif op == "wait":
            collect(pair.advance(arg))
        assert pair.esme.in_flight <= _WINDOW
        outstanding = [o.request.sequence for o in pair.esme._window]
        assert len(set(outstanding)) == len(outstanding)
        assert all(1 <= s <= MAX_SEQUENCE for s in outstanding)

    if ending == "esme_unbinds":
        pair.send(Role.ESME, Unbind())
        collect(pair.flush())
    elif ending == "smsc_unbinds":
        collect(pair.flush())
        pair.send(Role.SMSC, Unbind())
        collect(pair.flush())
    elif ending == "lost":
        esme_events.extend(pair.esme.connection_lost())
    else:
        collect(pair.flush())
        collect(pair.advance(_TIMEOUT))
        pair.send(Role.ESME, Unbind())
        collect(pair.flush())
    assert pair.esme.state is State.CLOSED

    outcomes: Counter[int] = Counter()
    for event in esme_events:
        if isinstance(event, (ResponseReceived, ResponseTimedOut)):
            assert isinstance(event.request, SubmitSm)
            outcomes[event.request.sequence] += 1
        elif isinstance(event, (ConnectionClosed, Unbound)):
            outcomes.update(p.sequence for p in event.unanswered)
        else:
            # Only a late answer to a request that already timed out may show up otherwise.
            assert isinstance(event, ProtocolViolation) and event.answered_with is None
    assert outcomes == Counter(p.sequence for p in sent)
    assert len({p.sequence for p in sent}) == len(sent)
    if ending == "timeout":
        assert not any(isinstance(e, Unbound) and e.unanswered for e in esme_events)


def test_bind_timeout_is_not_hidden_by_an_earlier_enquire_link() -> None:
    """An enquire_link sent before a bind with a shorter timeout does not delay the bind's deadline."""
    pair = SessionPair(SessionConfig(bind_timeout=5.0, response_timeout=10.0))
    pair.send(Role.ESME, EnquireLink())
    pair.now = 1.0
    pair.send(Role.ESME, Bind(mode=BindMode.TRANSMITTER))
    assert pair.esme.next_deadline() == 6.0
    events = pair.esme.on_timer(6.0)
    assert [type(e) for e in events] == [ResponseTimedOut, ConnectionClosed]
    assert pair.esme.state is State.CLOSED
