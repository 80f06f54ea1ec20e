"""End to end with the simulator: a subscriber votes, answers a quiz, and says "stop" mid-quiz.

They get exactly one confirmation and nothing more; the local profiles the opt-out covers are
gone, the consent ledger says why, and MYDATA afterwards reports it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
import trio

from gatewayd.app import Gateway, serve
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.constants import CommandStatus
from gatewayd.smpp.session import SessionConfig
from tests.system.test_campaigns_e2e import QUIZ_NAME, SHORT_CODE, VOTE_NAME, Handsets, _write_setup

SUBSCRIBER = "306909000001"
BYSTANDER = "306909000002"


async def _until(check, what: str, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll the store every 50 ms until ``check`` holds (bounded)."""
    with trio.move_on_after(seconds):
        while not await check():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting until {what}")


async def test_stop_mid_quiz_gets_one_confirmation_erases_the_profile_and_mydata_reports_it(tmp_path: Path) -> None:
    handsets = Handsets()
    simulator = SmscSimulator(system_id="e2e", password="e2e-pw", session_config=SessionConfig(window=10), on_submit=handsets.on_submit)
    handsets.simulator = simulator
    with trio.fail_after(90):
        async with trio.open_nursery() as outer:
            port = await outer.start(simulator.serve, "127.0.0.1", 0)
            config = _write_setup(tmp_path, port)
            async with trio.open_nursery() as daemon:
                gateway: Gateway = await daemon.start(functools.partial(serve, config, handle_signals=False))
                store = gateway.store
                assert store is not None
                await simulator.wait_bound()

                vote = await handsets.send(SUBSCRIBER, "vote gre")
                assert vote.reply is not None and vote.reply.text.startswith("Thanks!")
                first = await handsets.send(SUBSCRIBER, "QUIZ")
                assert first.reply is not None and "Capital of Greece?" in first.reply.text
                second = await handsets.send(SUBSCRIBER, "athens")
                assert second.reply is not None and second.reply.text.startswith("Correct!")

                stop = await handsets.send(SUBSCRIBER, "stop")
                assert stop.reply is not None and "unsubscribed" in stop.reply.text
                # An answer to the quiz after the STOP, and a vote: neither gets anything.
                for text in ("Lisbon", "VOTE POR"):
                    statuses = await simulator.inject_mo(SUBSCRIBER, SHORT_CODE, text)
                    assert statuses == [CommandStatus.ESME_ROK]
                # A bystander's message goes through the same queue after them: once it is
                # answered, anything the subscriber was going to get has been sent too.
                other = await handsets.send(BYSTANDER, "VOTE POR")
                assert other.reply is not None

                def settled(conn: sa.Connection) -> bool:
                    open_mos = conn.execute(sa.text("SELECT count(*) FROM mo_messages WHERE status = 'stored'")).scalar_one()
                    open_mts = conn.execute(sa.text("SELECT count(*) FROM mt_messages WHERE status IN ('queued', 'sending')")).scalar_one()
                    return open_mos == 0 and open_mts == 0

                await _until(lambda: store.read(settled), "every MO is processed and every MT sent")
                assert [mt.text for mt in handsets.inbox[SUBSCRIBER]] == [
                    vote.reply.text,
                    first.reply.text,
                    second.reply.text,
                    stop.reply.text,
                ]

                def held(conn: sa.Connection) -> dict[str, list[tuple[object, ...]]]:
                    sid = conn.execute(sa.text("SELECT id FROM subscribers WHERE msisdn = :n"), {"n": "+" + SUBSCRIBER}).scalar_one()
                    query = {
                        "state": "SELECT c.name FROM campaign_state s JOIN campaigns c ON c.id = s.campaign_id WHERE s.subscriber_id = :s",
                        "sessions": "SELECT campaign_id FROM sessions WHERE subscriber_id = :s",
                        "ledger": "SELECT event, scope_kind, scope_short_code, keyword, mo_id FROM consent_events WHERE subscriber_id = :s",
                        "stop_mo": "SELECT id FROM mo_messages WHERE subscriber_id = :s AND text = 'stop'",
                        "erased": "SELECT category, reason FROM audit_log WHERE kind = 'erasure' AND subject = 'subscriber:' || :s",
                        "routes": "SELECT route FROM mo_messages WHERE subscriber_id = :s ORDER BY id",
                    }
                    return {name: [tuple(row) for row in conn.execute(sa.text(sql), {"s": sid})] for name, sql in query.items()}

                found = await store.read(held)
                assert found["state"] == [] and found["sessions"] == []
                (stop_mo,) = found["stop_mo"]
                assert found["ledger"] == [("opt_out", "short_code", SHORT_CODE, "STOP", stop_mo[0])]
                assert sorted(found["erased"]) == sorted([(f"campaign:{VOTE_NAME}", "opt_out"), (f"campaign:{QUIZ_NAME}", "opt_out")])
                assert [r[0] for r in found["routes"]][-3:] == ["global:stop", "unknown", f"opted_out:{VOTE_NAME}"]

                mydata = await handsets.send(SUBSCRIBER, "MYDATA")
                assert mydata.reply is not None
                assert "opted out of: short code 4160" in mydata.reply.text
                assert "data in campaigns: none" in mydata.reply.text
                assert SUBSCRIBER not in mydata.reply.text
                gateway.request_stop()
            outer.cancel_scope.cancel()
