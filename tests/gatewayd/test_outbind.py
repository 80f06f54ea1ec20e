"""The outbind listener: an SMSC calls us, we bind as receiver on its connection."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gatewayd.config import OutbindConfig
from gatewayd.ingest import Ingest
from gatewayd.outbind import handle_outbind
from gatewayd.smpp.constants import BindMode
from gatewayd.smpp.pdus import Bind, DeliverSm, Outbind
from gatewayd.smpp.session import SmppSession
from gatewayd.smpp.states import Role
from gatewayd.transport import SmppConnection
from tests.gatewayd.conftest import Collected

CFG = OutbindConfig(port=2776, system_id="operator", password="pw")


async def _smsc_side(nursery: trio.Nursery) -> tuple[SmppConnection, trio.abc.Stream]:
    ours, theirs = trio.testing.memory_stream_pair()
    smsc = SmppConnection(theirs, SmppSession(Role.SMSC), name="smsc")
    await nursery.start(smsc.run)
    return smsc, ours


async def test_outbind_leads_to_a_receiver_bind_that_takes_mos(nursery: trio.Nursery, autojump_clock: object) -> None:
    """A correct outbind is answered with bind_receiver, and MOs on that connection are accepted."""
    smsc, gateway_end = await _smsc_side(nursery)
    collected = Collected()
    ingest = Ingest(collected.accept)
    nursery.start_soon(handle_outbind, gateway_end, CFG, ingest.handle)
    smsc.send_nowait(Outbind(system_id="operator", password="pw"))
    bind = await smsc.requests.receive()
    assert isinstance(bind, Bind) and bind.mode is BindMode.RECEIVER and bind.system_id == "operator"
    smsc.answer(bind.response(0, "SMSC"))
    response = await smsc.request(DeliverSm(source_addr="447700900123", destination_addr="4160", short_message=b"HELLO"))
    assert response.ok
    assert collected.messages[0].text == "HELLO"


@pytest.mark.parametrize("password", ["bad", None])
async def test_wrong_or_missing_outbind_closes_the_connection(nursery: trio.Nursery, autojump_clock: object, password: str | None) -> None:
    """A wrong password, or no outbind within the timeout, closes the connection without a bind."""
    smsc, gateway_end = await _smsc_side(nursery)
    nursery.start_soon(handle_outbind, gateway_end, CFG, Ingest().handle)
    if password is not None:
        smsc.send_nowait(Outbind(system_id="operator", password=password))
    await smsc.wait_closed()
    assert smsc.session.mode is None
