"""SmppConnection: the trio adapter around the session, over in-memory streams with a mock clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gatewayd.smpp import codec
from gatewayd.smpp.constants import BindMode, CommandStatus
from gatewayd.smpp.pdus import Bind, DeliverSm, EnquireLink, SubmitSm
from gatewayd.smpp.session import SessionConfig, SmppSession
from gatewayd.smpp.states import Role
from gatewayd.transport import BindFailed, ConnectionGone, ResponseTimeout, SmppConnection


async def _pair(nursery: trio.Nursery, *, esme_buffer: int = 100, config: SessionConfig | None = None) -> tuple[SmppConnection, SmppConnection]:
    """An ESME and an SMSC connection joined by memory streams, bound as transceiver."""
    a, b = trio.testing.memory_stream_pair()
    cfg = config or SessionConfig(window=5, response_timeout=10.0)
    esme = SmppConnection(a, SmppSession(Role.ESME, cfg), name="esme", request_buffer=esme_buffer)
    smsc = SmppConnection(b, SmppSession(Role.SMSC, cfg), name="smsc")
    await nursery.start(esme.run)
    await nursery.start(smsc.run)

    async def accept_bind() -> None:
        bind = await smsc.requests.receive()
        smsc.answer(bind.response(0, "SMSC"))

    nursery.start_soon(accept_bind)
    bound = await esme.bind(Bind(mode=BindMode.TRANSCEIVER, system_id="gw", password="pw"))
    assert bound.system_id == "SMSC"
    return esme, smsc


async def test_request_gets_its_response(nursery: trio.Nursery, autojump_clock: object) -> None:
    """request() returns the response matching the request's sequence number."""
    esme, smsc = await _pair(nursery)

    async def answer() -> None:
        submit = await smsc.requests.receive()
        smsc.answer(submit.response(0, "m-1"))

    nursery.start_soon(answer)
    response = await esme.request(SubmitSm(source_addr="4160", destination_addr="447700900123", short_message=b"hi"))
    assert response.ok and response.message_id == "m-1"


async def test_bind_refused_raises_with_status(nursery: trio.Nursery, autojump_clock: object) -> None:
    """A refused bind raises BindFailed carrying the SMSC's status."""
    a, b = trio.testing.memory_stream_pair()
    esme = SmppConnection(a, SmppSession(Role.ESME), name="esme")
    smsc = SmppConnection(b, SmppSession(Role.SMSC), name="smsc")
    await nursery.start(esme.run)
    await nursery.start(smsc.run)

    async def refuse() -> None:
        bind = await smsc.requests.receive()
        smsc.answer(bind.response(CommandStatus.ESME_RINVPASWD))

    nursery.start_soon(refuse)
    with pytest.raises(BindFailed) as info:
        await esme.bind(Bind(mode=BindMode.TRANSCEIVER, system_id="gw", password="bad"))
    assert info.value.command_status == CommandStatus.ESME_RINVPASWD


async def test_unanswered_request_times_out(nursery: trio.Nursery, autojump_clock: object) -> None:
    """A request the peer never answers raises ResponseTimeout after response_timeout."""
    esme, smsc = await _pair(nursery)
    started = trio.current_time()
    with pytest.raises(ResponseTimeout):
        await esme.request(SubmitSm(source_addr="4160", destination_addr="4477", short_message=b"x"))
    assert trio.current_time() - started == pytest.approx(10.0)


async def test_a_request_times_out_on_time_while_traffic_keeps_arriving(nursery: trio.Nursery, autojump_clock: object) -> None:
    """Arriving PDUs move the other deadlines later; the unanswered request still times out at 10 s."""
    esme, smsc = await _pair(nursery)

    async def chatter() -> None:
        for _ in range(40):
            await smsc.request(DeliverSm(source_addr="447700900123", destination_addr="4160", short_message=b"A"))
            await trio.sleep(0.5)

    async def acknowledge() -> None:
        async for pdu in esme.requests:
            esme.answer(pdu.response(0))

    nursery.start_soon(acknowledge)
    nursery.start_soon(chatter)
    await trio.sleep(1.25)
    started = trio.current_time()
    with pytest.raises(ResponseTimeout):
        await esme.request(SubmitSm(source_addr="4160", destination_addr="4477", short_message=b"x"))
    assert trio.current_time() - started == pytest.approx(10.0)


async def test_full_request_channel_answers_throttled(nursery: trio.Nursery, autojump_clock: object) -> None:
    """When the application does not keep up, further deliver_sm are answered ESME_RTHROTTLED, not dropped."""
    esme, smsc = await _pair(nursery, esme_buffer=2)
    statuses = []

    async def deliver() -> None:
        response = await smsc.request(DeliverSm(source_addr="447700900123", destination_addr="4160", short_message=b"A"))
        statuses.append(response.command_status)

    async with trio.open_nursery() as senders:
        for _ in range(4):
            senders.start_soon(deliver)
        await trio.sleep(1)
        # The two buffered ones are answered once the application reads them.
        for _ in range(2):
            pdu = await esme.requests.receive()
            esme.answer(pdu.response(0))
    assert sorted(statuses) == [0, 0, CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RTHROTTLED]


async def test_enquire_link_keeps_an_idle_bind_alive(nursery: trio.Nursery, autojump_clock: object) -> None:
    """An idle bind exchanges enquire_link and stays up far beyond the dead-peer timeout."""
    config = SessionConfig(enquire_link_interval=30.0, dead_peer_timeout=90.0)
    esme, smsc = await _pair(nursery, config=config)
    await trio.sleep(600)
    assert not esme.closed and esme.session.is_bound


async def test_silent_peer_is_declared_dead(nursery: trio.Nursery, autojump_clock: object) -> None:
    """When the peer stops answering, even enquire_link, the connection closes after dead_peer_timeout."""
    a, b = trio.testing.memory_stream_pair()
    esme = SmppConnection(a, SmppSession(Role.ESME, SessionConfig(enquire_link_interval=30.0, dead_peer_timeout=90.0)), name="esme")
    await nursery.start(esme.run)
    bind_task_done = trio.Event()

    async def bind() -> None:
        await esme.bind(Bind(mode=BindMode.TRANSCEIVER, system_id="gw", password="pw"))
        bind_task_done.set()

    nursery.start_soon(bind)
    # Answer the bind by hand, then never say anything again.
    reader = codec.FrameReader()
    while (frame := reader.next_frame()) is None:
        reader.feed(await b.receive_some(4096))
    request = codec.decode(frame)
    await b.send_all(codec.encode(request.response(0, "MUTE")))
    await bind_task_done.wait()
    started = trio.current_time()
    await esme.wait_closed()
    assert trio.current_time() - started == pytest.approx(90.0)
    assert esme.close_reason is not None and esme.close_reason.startswith("peer_dead")


async def test_abort_fails_waiting_requests(nursery: trio.Nursery, autojump_clock: object) -> None:
    """Requests waiting for a response fail with ConnectionGone when the connection is aborted."""
    esme, smsc = await _pair(nursery)
    failures = []

    async def submit() -> None:
        try:
            await esme.request(SubmitSm(source_addr="4160", destination_addr="4477", short_message=b"x"))
        except ConnectionGone as exc:
            failures.append(exc)

    nursery.start_soon(submit)
    await trio.sleep(1)
    esme.abort("test")
    await trio.sleep(1)
    assert len(failures) == 1
    with pytest.raises(ConnectionGone):
        await esme.request(SubmitSm(source_addr="4160", destination_addr="4477", short_message=b"x"))


async def test_request_nowait_calls_back_with_the_response_the_timeout_or_the_loss(nursery: trio.Nursery, autojump_clock: object) -> None:
    """A request sent with request_nowait ends in exactly one call: its response, ResponseTimeout, or ConnectionGone."""
    esme, smsc = await _pair(nursery)
    outcomes: dict[str, list[tuple[object, object]]] = {"answered": [], "ignored": [], "cut": []}

    def submit(label: str) -> None:
        pdu = SubmitSm(source_addr="4160", destination_addr="4477", short_message=label.encode())
        esme.request_nowait(pdu, lambda response, error: outcomes[label].append((response, error)))

    submit("answered")
    submit("ignored")
    first = await smsc.requests.receive()
    smsc.answer(first.response(0, "m-1"))
    await trio.sleep(1)
    ((response, error),) = outcomes["answered"]
    assert error is None and response.ok and response.message_id == "m-1"
    assert outcomes["ignored"] == []
    await trio.sleep(10)
    ((response, error),) = outcomes["ignored"]
    assert response is None and isinstance(error, ResponseTimeout)

    submit("cut")
    esme.abort("test")
    await trio.sleep(1)
    ((response, error),) = outcomes["cut"]
    assert response is None and isinstance(error, ConnectionGone)
    assert [len(calls) for calls in outcomes.values()] == [1, 1, 1]


async def test_unbind_handshake_closes_both_ends(nursery: trio.Nursery, autojump_clock: object) -> None:
    """unbind() waits for unbind_resp; both connections end closed with the reasons of each side."""
    esme, smsc = await _pair(nursery)
    await esme.unbind(timeout=5.0)
    await smsc.wait_closed()
    assert esme.close_reason == "unbound"
    assert smsc.close_reason == "unbound by peer"


async def test_writer_coalesces_and_keeps_order(nursery: trio.Nursery, autojump_clock: object) -> None:
    """Many answers queued at once reach the peer complete and in the order they were given."""
    esme, smsc = await _pair(nursery, config=SessionConfig(window=50))
    received = []

    async def deliver(i: int) -> None:
        response = await smsc.request(DeliverSm(source_addr="447700900123", destination_addr="4160", short_message=str(i).encode()))
        received.append(response.sequence)

    async with trio.open_nursery() as senders:
        for i in range(50):
            senders.start_soon(deliver, i)
        pdus = [await esme.requests.receive() for _ in range(50)]
        for pdu in pdus:
            esme.answer(pdu.response(0))
    assert sorted(received) == sorted(p.sequence for p in pdus)
    assert EnquireLink not in {type(p) for p in pdus}
