"""The simulator's own edge cases (its everyday behaviour is exercised by the bind tests)."""

from __future__ import annotations

import trio.testing

from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import BindMode
from gatewayd.smpp.events import RequestReceived
from gatewayd.smpp.pdus import SubmitSm
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
