"""Outbound sends: schedule, segment under the policy, replies before bulk, pause/resume/cancel,
quiet hours in the recipients' time zones, caps, and send-again, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gatewayd.outbound import Outbound
from gatewayd.report import send_rows
from permissions import Evidence, OptIn, Scope
from profile_store import privacy as records
from profile_store.db import Store
from profile_store.mt import claim_due
from profile_store.sends import change_sends, send_stats
from tests.gatewayd.test_engine import VOTE, Harness, _harness

# 2027-01-15 08:00 UTC: 10:00 in Athens, 08:00 in London, 13:30 in Kolkata.
T0 = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.timezone.utc).timestamp()

OFFERS = """
name = "offers"
owner = "Acme"
module = "multicast"
project_type = "mobile-marketing"
content = "advertising"
short_code = "4160"
keywords = ["OFFER"]
response = "Here is your voucher."
[settings]
text = "Acme: 2 for 1 this weekend. Reply OFFER for a voucher."
send_at = [2027-01-15T08:00:00Z]
quiet_hours = "{window}"
per_day = 1
[settings.segment]
took_part_in = ["final-vote"]
[settings.send_again]
after_hours = 2
times = 1
text = "Last chance: 2 for 1 ends tonight."
"""

ATHENS, LONDON, KOLKATA = "+306900000101", "+447700900102", "+919800000103"


async def _setup(tmp_path: Path, store: Store, store_url: str, window: str = "09:00-21:00") -> Harness:
    h = await _harness(tmp_path, store, store_url, {"vote.toml": VOTE, "offers.toml": OFFERS.format(window=window)})
    h.clock = T0 - 3600
    for number in (ATHENS, LONDON, KOLKATA):
        await h.ask(number, "VOTE GRE")
    privacy = h.campaigns.privacy
    assert privacy is not None

    def opt_in(conn: sa.Connection) -> None:
        for number in (ATHENS, LONDON, KOLKATA):
            sid = conn.execute(sa.text("SELECT id FROM subscribers WHERE msisdn = :n"), {"n": number}).scalar_one()
            event = OptIn(Scope.of_owner("Acme"), Evidence(at=T0 - 7200, note="signed up in store"))
            records.append_consent(conn, privacy.number_hash(number), sid, [event], T0)

    await h.store.write(opt_in)
    return h


async def _replies_sent(h: Harness) -> None:
    """The replies queued so far went out and were delivered."""

    def deliver(conn: sa.Connection) -> None:
        conn.execute(sa.text("UPDATE mt_messages SET status = 'delivered' WHERE send_id IS NULL"))

    await h.store.write(deliver)


def _outbound(h: Harness, now: float) -> Outbound:
    return Outbound(h.store, h.campaigns, clock=lambda: now)


async def _claim(h: Harness, now: float) -> list[Any]:
    return await h.store.write(functools.partial(claim_due, node="n", now=now, limit=1000, lease=86400, screen=h.campaigns.engine.screen))


async def _rows(h: Harness, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    def read(conn: sa.Connection) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    return await h.store.read(read)


async def test_a_scheduled_send_reaches_the_segment_once_after_the_replies(tmp_path: Path, store: Store, store_url: str) -> None:
    h = await _setup(tmp_path, store, store_url, window="00:00-00:00")
    await _replies_sent(h)
    await _outbound(h, T0 - 60).tick()
    assert await _rows(h, "SELECT * FROM sends") == []
    await _outbound(h, T0).tick()
    await _outbound(h, T0 + 5).tick()  # a second look creates nothing more
    sends = await _rows(h, "SELECT name, status, targeted FROM sends")
    assert sends == [("2027-01-15T08:00:00+00:00", "running", 3)]
    bulk = await _rows(h, "SELECT kind, priority, campaign FROM mt_messages WHERE send_id IS NOT NULL")
    assert sorted(bulk) == [("marketing", 10, "offers")] * 3
    # A reply queued after the bulk still goes first.
    await h.ask("+306900000199", "VOTE POR")
    claimed = await _claim(h, T0 + 10)
    assert claimed[0].priority == 0 and [mt.priority for mt in claimed[1:]] == [10, 10, 10]


async def test_pause_resume_cancel_send_nothing_twice(tmp_path: Path, store: Store, store_url: str) -> None:
    h = await _setup(tmp_path, store, store_url, window="00:00-00:00")
    await _replies_sent(h)
    await _outbound(h, T0).tick()
    assert (await h.store.write(change_sends, "offers", "pause", T0 + 1)) == {"sends": 1, "mts": 3}
    assert await _claim(h, T0 + 2) == []
    assert (await h.store.write(change_sends, "offers", "resume", T0 + 3)) == {"sends": 1, "mts": 3}
    first = await _claim(h, T0 + 4)
    assert len(first) == 3
    assert (await h.store.write(change_sends, "offers", "cancel", T0 + 5)) == {"sends": 1, "mts": 0}
    assert await _claim(h, T0 + 100) == []
    assert await _rows(h, "SELECT count(*) FROM mt_messages WHERE send_id IS NOT NULL") == [(3,)]


async def test_quiet_hours_defer_by_the_recipients_local_time(tmp_path: Path, store: Store, store_url: str) -> None:
    """At 08:00 UTC with allowed hours 09:00-21:00: Athens (10:00) and Kolkata (13:30) get it,
    London (08:00) waits until 09:00 London time."""
    h = await _setup(tmp_path, store, store_url)
    await _replies_sent(h)
    await _outbound(h, T0).tick()
    claimed = {mt.msisdn for mt in await _claim(h, T0)}
    assert claimed == {ATHENS, KOLKATA}
    (due,) = await _rows(h, "SELECT m.next_attempt_at FROM mt_messages m JOIN subscribers s ON s.id = m.subscriber_id WHERE s.msisdn = :n AND m.send_id IS NOT NULL", n=LONDON)
    assert due[0] == T0 + 3600
    assert await _claim(h, T0 + 3599) == []
    assert [mt.msisdn for mt in await _claim(h, T0 + 3600)] == [LONDON]


async def test_the_daily_cap_suppresses_a_second_marketing_mt(tmp_path: Path, store: Store, store_url: str) -> None:
    h = await _setup(tmp_path, store, store_url, window="00:00-00:00")
    await _replies_sent(h)
    await _outbound(h, T0).tick()
    sent = await _claim(h, T0)
    assert len(sent) == 3

    def accepted(conn: sa.Connection) -> None:
        conn.execute(sa.text("UPDATE mt_messages SET status = 'submitted' WHERE send_id IS NOT NULL"))

    await h.store.write(accepted)
    await _outbound(h, T0 + 2 * 3600 + 1).tick()  # the send-again comes due
    await _outbound(h, T0 + 2 * 3600 + 2).tick()
    assert await _claim(h, T0 + 2 * 3600 + 3) == []
    errors = await _rows(h, "SELECT last_error FROM mt_messages WHERE status = 'cancelled'")
    assert errors and all("cap" in e[0] for e in errors)


async def test_send_again_goes_to_those_who_did_not_reply(tmp_path: Path, store: Store, store_url: str) -> None:
    h = await _setup(tmp_path, store, store_url, window="00:00-00:00")
    await _replies_sent(h)
    await _outbound(h, T0).tick()
    await _claim(h, T0)

    def accepted(conn: sa.Connection) -> None:
        conn.execute(sa.text("UPDATE mt_messages SET status = 'delivered' WHERE send_id IS NOT NULL"))

    await h.store.write(accepted)
    h.clock = T0 + 600
    assert await h.ask(ATHENS, "offer") == ["Here is your voucher."]
    await _outbound(h, T0 + 3600).tick()
    assert len(await _rows(h, "SELECT id FROM sends")) == 1  # not yet: after 2 hours
    await _outbound(h, T0 + 2 * 3600).tick()
    await _outbound(h, T0 + 2 * 3600 + 1).tick()
    again = await _rows(
        h,
        "SELECT s.msisdn FROM mt_messages m JOIN subscribers s ON s.id = m.subscriber_id JOIN sends d ON d.id = m.send_id WHERE d.parent_id IS NOT NULL",
    )
    assert sorted(n for (n,) in again) == sorted([LONDON, KOLKATA])
    await _outbound(h, T0 + 5 * 3600).tick()
    assert len(await _rows(h, "SELECT id FROM sends")) == 2  # at most `times` follow-ups
    stats = await h.store.read(send_stats, "offers")
    assert [(s.targeted, s.submitted, s.replied) for s in stats][0] == (3, 3, 1)
    rows = send_rows(stats)
    assert any(item.startswith("uplift") for _, item, _ in rows)


async def test_a_segment_reading_what_the_owner_may_not_is_refused(tmp_path: Path, store: Store, store_url: str) -> None:
    (tmp_path / "policy.toml").write_text(
        "[[data_user]]\nname = 'Channel 5'\n[[data_user.rule]]\noperations = ['read', 'write']\n"
        "categories = ['contact', 'participation']\npurposes = ['response']\n"
        "[[data_user]]\nname = 'Acme'\n[[data_user.rule]]\noperations = ['read']\ncategories = ['contact']\npurposes = ['response', 'marketing']\n"
    )
    h = await _setup(tmp_path, store, store_url, window="00:00-00:00")
    await _outbound(h, T0).tick()
    assert await _rows(h, "SELECT status FROM sends") == [("cancelled",)]
    assert await _rows(h, "SELECT count(*) FROM mt_messages WHERE send_id IS NOT NULL") == [(0,)]
    refusals = await _rows(h, "SELECT who, detail FROM audit_log WHERE kind = 'decision' AND subject LIKE 'send:%'")
    assert refusals and refusals[0][0] == "Acme" and "participation" in refusals[0][1]


async def test_a_send_materialised_in_many_units_queues_each_recipient_once(
    tmp_path: Path, store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gatewayd.outbound

    monkeypatch.setattr(gatewayd.outbound, "UNIT", 1)
    h = await _setup(tmp_path, store, store_url, window="00:00-00:00")
    await _replies_sent(h)
    await _outbound(h, T0).tick()
    assert await _rows(h, "SELECT status, targeted FROM sends") == [("running", 3)]
    assert await _rows(h, "SELECT count(*), count(DISTINCT subscriber_id) FROM mt_messages WHERE send_id IS NOT NULL") == [(3, 3)]


async def test_a_send_paused_before_its_time_is_not_materialised_until_resumed(tmp_path: Path, store: Store, store_url: str) -> None:
    h = await _setup(tmp_path, store, store_url, window="00:00-00:00")
    await _replies_sent(h)
    cid = h.campaigns.engine.campaign_ids["offers"]  # type: ignore[union-attr]

    from profile_store.sends import ensure_sends

    await h.store.write(ensure_sends, cid, [("2027-01-15T08:00:00+00:00", T0, "hello", None)], T0 - 10)
    await h.store.write(change_sends, "offers", "pause", T0 - 5)
    await _outbound(h, T0).tick()
    assert await _rows(h, "SELECT status FROM sends") == [("paused",)]
    assert await _rows(h, "SELECT count(*) FROM mt_messages WHERE send_id IS NOT NULL") == [(0,)]
    await h.store.write(change_sends, "offers", "resume", T0 + 1)
    await _outbound(h, T0 + 2).tick()
    assert await _rows(h, "SELECT status, targeted FROM sends") == [("running", 3)]
