"""SmscLink against the simulator over in-memory streams, with trio's autojump clock."""

from __future__ import annotations

import functools

import pytest
import structlog
import trio

from gatewayd.binds import NoBind, SmscLink
from gatewayd.ingest import Ingest
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import BindMode, CommandStatus
from gatewayd.smpp.pdus import SubmitSm
from tests.gatewayd.conftest import Collected, memory_connector, smsc_config


def _link(simulator: SmscSimulator, nursery: trio.Nursery, collected: Collected | None = None, **cfg: object) -> SmscLink:
    ingest = Ingest(collected.accept if collected else Ingest().accept)
    config = smsc_config(**cfg)
    return SmscLink(config, functools.partial(ingest.handle, smsc=config.name), rng=lambda: 1.0, connect=memory_connector(simulator, nursery))


def _mt(text: bytes = b"Thanks for voting", registered_delivery: int = 0) -> SubmitSm:
    return SubmitSm(source_addr="4160", destination_addr="447700900123", short_message=text, registered_delivery=registered_delivery)


async def test_binds_and_acknowledges_mo(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """A transceiver bind comes up and an MO injected by the SMSC is accepted and acknowledged."""
    collected = Collected()
    link = _link(simulator, nursery, collected)
    await nursery.start(link.run)
    await link.wait_bound()
    statuses = await simulator.inject_mo("447700900123", "4160", "VOTE GRE")
    assert statuses == [CommandStatus.ESME_ROK]
    assert collected.messages[0].text == "VOTE GRE"
    assert collected.messages[0].source_addr == "447700900123"


async def test_transmitter_and_receiver_pair(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """'transmitter+receiver' opens two binds: MTs go on the transmitter, MOs arrive on the receiver."""
    collected = Collected()
    link = _link(simulator, nursery, collected, binds=(BindMode.TRANSMITTER, BindMode.RECEIVER))
    await nursery.start(link.run)
    await link.wait_bound(BindMode.TRANSMITTER)
    await link.wait_bound(BindMode.RECEIVER)
    assert {c.session.mode for c in simulator.connections} == {BindMode.TRANSMITTER, BindMode.RECEIVER}
    response = await link.submit(_mt())
    assert response.ok and response.message_id
    assert await simulator.inject_mo("447700900123", "4160", "hello") == [0]
    assert collected.messages[0].text == "hello"


async def test_reconnects_after_the_smsc_drops(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """When the SMSC drops the connection, the link reconnects and binds again by itself."""
    link = _link(simulator, nursery)
    await nursery.start(link.run)
    await link.wait_bound()
    simulator.drop_connections()
    with trio.fail_after(30):
        while simulator.stats["binds_accepted"] < 2:
            await trio.sleep(0.1)
    assert (await link.wait_bound()).session.is_bound


async def test_wrong_password_is_logged_and_retried_with_backoff(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """A refused bind logs ESME_RINVPASWD and is retried on a capped exponential backoff, not in a loop."""
    link = _link(simulator, nursery, password="wrong", reconnect_delay=1.0, reconnect_max_delay=8.0)
    with structlog.testing.capture_logs() as logs:
        await nursery.start(link.run)
        await trio.sleep(60)
    refused = simulator.stats["binds_refused"]
    # rng=1.0 makes the delays exactly 1, 2, 4, 8, 8, ...: attempts at 0, 1, 3, 7, 15, 23, 31, 39, 47, 55.
    assert refused == 10
    assert not link.bound
    rejected = [e for e in logs if e["event"] == "bind_rejected"]
    assert rejected and rejected[0]["status"] == "ESME_RINVPASWD"


async def test_throttled_submit_pauses_and_retries(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """ESME_RTHROTTLED answers pause the SMSC's MT traffic with doubling pauses, then the MT goes through."""
    link = _link(simulator, nursery)
    await nursery.start(link.run)
    await link.wait_bound()
    simulator.faults.throttle_next = 3
    started = trio.current_time()
    response = await link.submit(_mt())
    assert response.ok
    assert simulator.stats["submits_throttled"] == 3
    assert trio.current_time() - started >= 0.5 + 1.0 + 2.0


async def test_throttled_too_often_returns_the_status(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """After max_throttled attempts the throttling status is returned to the caller instead of looping."""
    link = _link(simulator, nursery)
    await nursery.start(link.run)
    await link.wait_bound()
    simulator.faults.throttle_next = 100
    response = await link.submit(_mt(), max_throttled=2)
    assert response.command_status == CommandStatus.ESME_RTHROTTLED
    assert simulator.stats["submits_throttled"] == 3


async def test_rate_cap_spaces_submits(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """With max_mt_per_second=10 and window 10, 50 MTs take at least (50 - burst) / 10 seconds."""
    link = _link(simulator, nursery, max_mt_per_second=10.0, window=10)
    await nursery.start(link.run)
    await link.wait_bound()
    started = trio.current_time()
    async with trio.open_nursery() as senders:
        for _ in range(50):
            senders.start_soon(link.submit, _mt())
    assert simulator.stats["submits_accepted"] == 50
    assert trio.current_time() - started >= (50 - 10) / 10.0


async def test_a_reply_waiting_for_the_rate_cap_goes_before_bulk_queued_earlier(
    nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object
) -> None:
    """Bulk MTs (priority 10) fill the rate cap; a reply (priority 0) submitted later takes the next token."""
    link = _link(simulator, nursery, max_mt_per_second=10.0, window=10)
    await nursery.start(link.run)
    await link.wait_bound()
    order: list[str] = []
    done: dict[str, float] = {}

    async def send(name: str, priority: int) -> None:
        await link.submit(_mt(name.encode()), priority=priority)
        order.append(name)
        done[name] = trio.current_time()

    async with trio.open_nursery() as senders:
        for i in range(40):
            senders.start_soon(send, f"bulk{i}", 10)
        await trio.sleep(1.05)
        sent_before_reply = len(order)
        reply_asked = trio.current_time()
        senders.start_soon(send, "reply", 0)
    # The burst and the first second's tokens went to bulk; the reply was next after that,
    # within one token's spacing, not behind the 40 - 20 bulk MTs still waiting.
    assert 10 <= sent_before_reply < 40
    assert order.index("reply") <= sent_before_reply + 1
    assert simulator.stats["submits_accepted"] == 41
    assert done["reply"] - reply_asked <= 0.2


async def test_bulk_waiting_for_the_rate_cap_leaves_in_bursts_within_the_cap(
    nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object
) -> None:
    """At 1,000 MT/s with a burst of 100, 600 bulk MTs leave in groups a few milliseconds
    apart (not one per token), never faster than the bucket allows, and in the time the cap
    takes; a reply asked for meanwhile does not wait for the next group."""
    link = _link(simulator, nursery, max_mt_per_second=1000.0, window=100)
    await nursery.start(link.run)
    await link.wait_bound()
    times: list[float] = []
    simulator.on_submit = lambda pdu: times.append(trio.current_time())
    reply_took: list[float] = []

    async def reply() -> None:
        await trio.sleep(0.2013)
        asked = trio.current_time()
        await link.submit(_mt(b"reply"), priority=0)
        reply_took.append(trio.current_time() - asked)

    started = trio.current_time()
    async with trio.open_nursery() as senders:
        for _ in range(600):
            senders.start_soon(functools.partial(link.submit, _mt(), priority=10))
        senders.start_soon(reply)
    assert len(times) == 601
    # The cap: no more than the burst plus the rate over any stretch of time.
    for i, at in enumerate(times):
        within = sum(1 for later in times[i:] if later - at <= 0.05)
        assert within <= 100 + 1000 * 0.05 + 1, (at - started, within)
    # The throughput: 500 tokens after the burst take 0.5 s; oversleeping lost none of it.
    assert times[-1] - started <= 0.5 + 0.02
    # Bursts: after the first 100, the MTs left at about one instant per 5 ms, not per token.
    instants = {round(at, 6) for at in times[100:]}
    assert len(instants) <= 500 / 4
    # The reply went at its token's time, not the bulk MTs' next group.
    assert reply_took and reply_took[0] <= 0.0015


async def test_window_bounds_outstanding_submits(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """No more than `window` submits are ever outstanding, however many callers submit at once."""
    link = _link(simulator, nursery, window=3, max_mt_per_second=1000.0)
    await nursery.start(link.run)
    conn = await link.wait_bound()
    simulator.faults.response_delay = 1.0
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, conn.session.in_flight)
            await trio.sleep(0.01)

    async with trio.open_nursery() as senders:
        senders.start_soon(watch)
        async with trio.open_nursery() as inner:
            for _ in range(12):
                inner.start_soon(link.submit, _mt())
        senders.cancel_scope.cancel()
    assert peak == 3
    assert simulator.stats["submits_accepted"] == 12


async def test_stop_waits_for_outstanding_then_unbinds(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """stop() lets an outstanding submit finish, refuses new ones, and unbinds cleanly."""
    link = _link(simulator, nursery)
    await nursery.start(link.run)
    await link.wait_bound()
    simulator.faults.response_delay = 2.0
    results = []

    async def send() -> None:
        results.append(await link.submit(_mt()))

    nursery.start_soon(send)
    await trio.sleep(0.1)
    await link.stop(grace=10.0)
    assert results and results[0].ok
    await trio.sleep(1)  # the simulator's side of the connection finishes closing
    assert simulator.stats["unbinds_received"] == 1
    with pytest.raises(NoBind):
        await link.submit(_mt())


async def test_garbage_is_answered_and_the_bind_survives(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """An unknown command id from the SMSC gets a generic_nack; the bind stays up and MOs still flow."""
    collected = Collected(want=1)
    link = _link(simulator, nursery, collected)
    await nursery.start(link.run)
    await link.wait_bound()
    with structlog.testing.capture_logs() as logs:
        simulator.send_garbage(bytes.fromhex("00000010" "000000ff" "00000000" "00000007"))
        await trio.sleep(1)
    assert any(e["event"] == "pdu_rejected" and e["answered_with"] == "ESME_RINVCMDID" for e in logs)
    assert await simulator.inject_mo("447700900123", "4160", "still here") == [0]
    assert simulator.stats["binds_accepted"] == 1


async def test_oversize_pdu_closes_and_rebinds(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """A command_length beyond the maximum closes that connection (generic_nack first) and the link rebinds."""
    link = _link(simulator, nursery)
    await nursery.start(link.run)
    await link.wait_bound()
    with structlog.testing.capture_logs() as logs:
        simulator.send_oversize()
        with trio.fail_after(30):
            while simulator.stats["binds_accepted"] < 2:
                await trio.sleep(0.1)
    assert any(e["event"] == "bind_lost" and "framing_error" in e["reason"] for e in logs)


async def test_receipt_for_a_submit_reaches_the_handler(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """An MT with registered_delivery gets a delivery receipt whose receipted_message_id is the submit's id."""
    collected = Collected()
    link = _link(simulator, nursery, collected)
    await nursery.start(link.run)
    await link.wait_bound()
    response = await link.submit(_mt(registered_delivery=1))
    await collected.arrived.wait()
    receipt = collected.messages[0]
    assert receipt.is_receipt
    assert receipt.receipted_message_id == response.message_id
    assert f"id:{response.message_id} " in receipt.text and "stat:DELIVRD" in receipt.text


async def test_submit_without_bind_raises(nursery: trio.Nursery, simulator: SmscSimulator, autojump_clock: object) -> None:
    """Submitting while no transmitter is bound fails fast with NoBind instead of waiting."""
    link = _link(simulator, nursery, password="wrong")
    await nursery.start(link.run)
    await trio.sleep(5)
    with pytest.raises(NoBind):
        await link.submit(_mt())
    assert not simulator.submitted
