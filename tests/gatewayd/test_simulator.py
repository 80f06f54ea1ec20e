"""The simulator's own edge cases (its everyday behaviour is exercised by the bind tests)."""

from __future__ import annotations

import trio.testing

from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import BindMode
from gatewayd.smpp.events import RequestReceived
from gatewayd.smpp.pdus import Bind, DeliverSm, SubmitSm
from gatewayd.smpp.session import SessionConfig, SmppSession
from gatewayd.smpp.states import Role
from gatewayd.transport import SmppConnection
from tests.smpp.helpers import SessionPair, bind_pair


async def test_a_submit_queued_when_the_connection_closed_is_not_counted_as_received() -> None:
    pair = SessionPair()
    bind_pair(pair, BindMode.TRANSCEIVER)
    pair.send(Role.ESME, SubmitSm(source_addr="4160", destination_addr="306900000001", short_message=b"hi"))
    (received,) = pair.deliver(Role.ESME)
    assert isinstance(received, RequestReceived)
    pair.smsc.connection_lost()
    ours, _theirs = trio.testing.memory_stream_pair()
    conn = SmppConnection(ours, pair.smsc, name="closed")
    simulator = SmscSimulator()

    simulator._answer_submit(conn, received.pdu)

    assert not simulator.submitted
    assert simulator.stats["submits_accepted"] == 0
    assert simulator.stats["submits_unanswerable"] == 1


async def _bound_esme(nursery: trio.Nursery, simulator: SmscSimulator) -> SmppConnection:
    """Run ``simulator`` in ``nursery`` and bind an ESME to it as transceiver over memory streams."""
    await nursery.start(simulator.run)
    ours, theirs = trio.testing.memory_stream_pair()
    nursery.start_soon(simulator.handle_stream, theirs)
    esme = SmppConnection(ours, SmppSession(Role.ESME, SessionConfig()), name="esme")
    await nursery.start(esme.run)
    await esme.bind(Bind(mode=BindMode.TRANSCEIVER, system_id="gw", password="pw"))
    return esme


async def test_receipts_go_out_after_the_delay_in_the_order_of_their_submits(autojump_clock: trio.testing.MockClock) -> None:
    simulator = SmscSimulator(system_id="gw", password="pw", receipt_delay=5.0)
    arrivals: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:
        esme = await _bound_esme(nursery, simulator)

        async def answer_receipts() -> None:
            async for pdu in esme.requests:
                assert isinstance(pdu, DeliverSm) and pdu.is_receipt
                arrivals.append((trio.current_time(), pdu.short_message.decode().split()[0]))
                esme.answer(pdu.response(0))

        nursery.start_soon(answer_receipts)
        start = trio.current_time()
        ids = []
        for offset in (0.0, 1.0, 1.5, 4.0):
            await trio.sleep_until(start + offset)
            submit = SubmitSm(source_addr="4160", destination_addr="306900000001", short_message=b"hi", registered_delivery=1)
            response = await esme.request(submit)
            ids.append((offset, response.message_id))
        # A submit that asks for no receipt gets none.
        await esme.request(SubmitSm(source_addr="4160", destination_addr="306900000002", short_message=b"no"))
        await trio.sleep(20)
        nursery.cancel_scope.cancel()

    assert [text for _, text in arrivals] == [f"id:{message_id}" for _, message_id in ids]
    for (at, _), (offset, _) in zip(arrivals, ids):
        assert 5.0 <= at - start - offset < 5.1
    assert simulator.stats["receipts_sent"] == 4


async def test_a_refused_receipt_is_sent_again_until_acknowledged_then_given_up(autojump_clock: trio.testing.MockClock) -> None:
    simulator = SmscSimulator(system_id="gw", password="pw")
    simulator.receipt_retry_delay = 2.0
    simulator.receipt_attempts = 3
    arrivals: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:
        esme = await _bound_esme(nursery, simulator)
        refuse = {"first": 1, "second": 5}

        async def answer_receipts() -> None:
            async for pdu in esme.requests:
                assert isinstance(pdu, DeliverSm) and pdu.is_receipt
                label = pdu.short_message.decode().rsplit("text:", 1)[1]
                arrivals.append((trio.current_time(), label))
                refused = refuse[label] > 0
                refuse[label] -= 1
                esme.answer(pdu.response(0x64 if refused else 0))

        nursery.start_soon(answer_receipts)
        start = trio.current_time()
        for label in ("first", "second"):
            submit = SubmitSm(source_addr="4160", destination_addr="306900000001", short_message=label.encode(), registered_delivery=1)
            assert (await esme.request(submit)).ok
        await trio.sleep(60)
        nursery.cancel_scope.cancel()

    # "first" is refused once and acknowledged on its second try; "second" is refused on all three.
    assert sorted((round(at - start), label) for at, label in arrivals) == [
        (0, "first"), (0, "second"), (2, "first"), (2, "second"), (4, "second")
    ]
    assert simulator.stats["receipts_sent"] == 1
    assert simulator.stats["receipts_retried"] == 3
    assert simulator.stats["receipts_lost"] == 1
