"""The MT outbox units on SQLite and PostgreSQL: enqueue, claim with leases, part outcomes, retries."""

from __future__ import annotations

import functools
import time
from unittest import mock
from typing import Any, Callable, TypeVar

import pytest
import sqlalchemy as sa
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.smpp.receipts import DeliveryReceipt
from gatewayd.smpp.text import UnencodableError
from profile_store.dlr import record_receipt
from profile_store.db import Store
from profile_store.mt import (
    ClaimedMt,
    MtRequest,
    attempt_failed,
    claim_due,
    enqueue_mt,
    exponential_backoff,
    get_mt,
    get_parts,
    insert_mts,
    new_mt,
    outbox_counts,
    part_accepted,
    release_claims,
    settle_mt,
)
from profile_store.mt import _NEXT_QUEUED_PRIORITY, _SELECT_DUE, _due_ids
from profile_store import mt as mt_module
from profile_store.schema import dlr_events, metadata, mt_messages, mt_parts, subscribers

T = TypeVar("T")

T0 = 1_700_000_000.0
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 9  # 405 GSM septets: 3 parts


async def unit(store: Store, fn: Callable[..., T], **kwargs: Any) -> T:
    """Run ``fn(conn, **kwargs)`` through the store's writer."""
    return await store.write(functools.partial(fn, **kwargs))


def request(n: int = 1, **overrides: Any) -> MtRequest:
    """An MT to subscriber ``n`` from short code 4160."""
    values: dict[str, Any] = dict(msisdn=f"+4477009{n:05d}", source_addr="4160", text="Thanks for voting")
    values.update(overrides)
    return MtRequest(**values)


async def enqueue(store: Store, req: MtRequest, now: float = T0, ref: int = 7) -> int:
    """Enqueue ``req`` and return its id."""
    return (await unit(store, enqueue_mt, request=req, now=now, concat_ref=ref)).id


async def claim(store: Store, now: float, *, node: str = "a", limit: int = 100, lease: float = 60.0) -> list[ClaimedMt]:
    """Claim due MTs for ``node``."""
    return await unit(store, claim_due, node=node, now=now, limit=limit, lease=lease)


async def test_enqueue_computes_parts(store: Store) -> None:
    """Enqueued MTs are queued and due now, with one pending part row per submit_sm their text needs."""
    short = await unit(store, enqueue_mt, request=request(1), now=T0, concat_ref=3)
    long = await unit(store, enqueue_mt, request=request(2, text=LONG_TEXT), now=T0, concat_ref=4)
    ucs2 = await unit(store, enqueue_mt, request=request(3, text="Καλημέρα σας, ευχαριστούμε! ☺" * 3), now=T0, concat_ref=5)
    assert (short.parts_total, long.parts_total, ucs2.parts_total) == (1, 3, 2)
    assert short.status == "queued" and short.attempts == 0 and short.next_attempt_at == T0
    assert short.msisdn == "+447700900001" and long.concat_ref == 4
    parts = await store.read(get_parts, long.id)
    assert [(p.part_index, p.status) for p in parts] == [(1, "pending"), (2, "pending"), (3, "pending")]
    assert await store.read(outbox_counts) == {"queued": 3}


async def test_mts_inserted_together_get_their_own_ids_and_parts(store: Store) -> None:
    """Several MTs inserted in one call (as a batch of MOs inserts its replies) come back with
    the ids the database gave them, queued or claimed as built, each with its part rows."""

    def insert(conn: sa.Connection) -> list[Any]:
        built = [
            new_mt(conn, request(1), T0, concat_ref=1),
            new_mt(conn, request(2, text=LONG_TEXT), T0, concat_ref=2, claim=("node-a", T0 + 60)),
            new_mt(conn, request(3), T0, concat_ref=3, claim=("node-a", T0 + 60)),
        ]
        return insert_mts(conn, built)

    await enqueue(store, request(9))
    stored = await store.write(insert)
    assert [type(mt).__name__ for mt in stored] == ["StoredMt", "ClaimedMt", "ClaimedMt"]
    for mt, (msisdn, parts, status) in zip(
        stored, [("+447700900001", 1, "queued"), ("+447700900002", 3, "sending"), ("+447700900003", 1, "sending")], strict=True
    ):
        found = await store.read(get_mt, mt.id)
        assert found is not None and (found.msisdn, found.parts_total, found.status) == (msisdn, parts, status)
        assert [p.part_index for p in await store.read(get_parts, mt.id)] == list(range(1, parts + 1))
    assert stored[1].pending_parts == (1, 2, 3)  # type: ignore[union-attr]


_reply_text = st.sampled_from(["Thanks for voting", LONG_TEXT, "Καλημέρα σας, ευχαριστούμε! ☺" * 3])


@settings(max_examples=40, deadline=None)
@given(
    mts=st.lists(st.tuples(st.integers(1, 3), _reply_text, st.booleans()), min_size=1, max_size=6),
    earlier=st.integers(0, 3),
)
def test_mts_inserted_together_are_stored_as_one_by_one(mts: list[tuple[int, str, bool]], earlier: int) -> None:
    """Whatever the MTs (long or short, claimed or queued, to new or known numbers) and the
    rows already there, inserting them in one call returns, and stores, what inserting them
    one at a time does."""
    outcomes = []
    for together in (False, True):
        engine = sa.create_engine("sqlite://")
        metadata.create_all(engine)
        with engine.begin() as conn:
            for n in range(earlier):
                enqueue_mt(conn, request(n + 1), T0, concat_ref=n)
            built = [
                new_mt(conn, request(n, text=text), T0 + 1, concat_ref=k, claim=("node", T0 + 61) if claimed else None)
                for k, (n, text, claimed) in enumerate(mts)
            ]
            stored = insert_mts(conn, built) if together else [insert_mts(conn, [mt])[0] for mt in built]
        with engine.connect() as conn:
            tables = [[tuple(row) for row in conn.execute(sa.select(table).order_by(table.c.id))] for table in (mt_messages, mt_parts)]
        outcomes.append((stored, tables))
        engine.dispose()
    assert outcomes[1] == outcomes[0]
    stored, (mt_rows, _) = outcomes[1]
    assert [mt.id for mt in stored] == [row[0] for row in mt_rows[earlier:]]


async def test_enqueue_rejects_text_the_coding_cannot_carry(store: Store) -> None:
    """Text the requested data_coding cannot represent is refused at enqueue and nothing is stored."""
    with pytest.raises(UnencodableError):
        await enqueue(store, request(text="你好", data_coding=0))
    assert await store.read(outbox_counts) == {}


async def test_claim_order_replies_first_then_due_time(store: Store) -> None:
    """Claims take priority 0 before 10, then the earliest due, and never MTs not yet due."""
    late_bulk = await enqueue(store, request(1, priority=10), now=T0)
    early_bulk = await enqueue(store, request(2, priority=10), now=T0 - 5)
    reply = await enqueue(store, request(3, priority=0), now=T0 + 1)
    await enqueue(store, request(4, priority=0), now=T0 + 100)
    claimed = await claim(store, T0 + 10)
    assert [mt.id for mt in claimed] == [reply, early_bulk, late_bulk]
    assert claimed[0].pending_parts == (1,) and claimed[0].destination_addr == "447700900003"
    assert (await store.read(get_mt, reply)).claimed_by == "a"  # type: ignore[union-attr]


async def test_claim_merges_expired_sends_into_the_priority_order(store: Store) -> None:
    """An abandoned send is resumed in its place among due rows, and rows not yet due at a
    higher priority do not hide due rows at a lower one."""
    abandoned = await enqueue(store, request(1, priority=10), now=T0 - 50)
    await claim(store, T0 - 50, node="dead", lease=10)
    not_due_reply = await enqueue(store, request(2, priority=0), now=T0 + 500)
    bulk = [await enqueue(store, request(3 + n, priority=10), now=T0 - 60 + 20 * n) for n in range(3)]
    later_bulk = await enqueue(store, request(9, priority=20), now=T0 - 100)
    claimed = await claim(store, T0, node="b", limit=4)
    # Due times: bulk[0] T0-60, abandoned T0-50, bulk[1] T0-40, bulk[2] T0-20, all priority 10.
    assert [mt.id for mt in claimed] == [bulk[0], abandoned, bulk[1], bulk[2]]
    assert [mt.id for mt in await claim(store, T0, node="b")] == [later_bulk]
    assert not_due_reply not in {mt.id for mt in claimed}


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([0, 10, 11, 50]), st.integers(-5, 5), st.sampled_from(["queued", "sending", "submitted"]), st.integers(-5, 5)),
        max_size=25,
    ),
    limit=st.integers(1, 12),
)
def test_due_rows_are_the_first_of_one_ordered_query(rows: list[tuple[int, int, str, int]], limit: int) -> None:
    """The per-priority claim selects exactly what the single "queued and due, or sending and
    expired, by priority, due time and id" query selects, on any mix of rows."""
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        sid = conn.execute(sa.insert(subscribers).values(msisdn="+447700900001", created_at=T0, last_seen_at=T0)).inserted_primary_key[0]
        for priority, due, status, expires in rows:
            values = _mt_row(sid, priority=priority, next_attempt_at=T0 + due, status=status, claim_expires_at=T0 + expires)
            conn.execute(sa.insert(mt_messages).values(**values))
        m = mt_messages.c
        expected = list(
            conn.execute(
                sa.select(m.id)
                .where(sa.or_(sa.and_(m.status == "queued", m.next_attempt_at <= T0), sa.and_(m.status == "sending", m.claim_expires_at < T0)))
                .order_by(m.priority, m.next_attempt_at, m.id)
                .limit(limit)
            ).scalars()
        )
        assert _due_ids(conn, T0, limit) == expected


def test_due_rows_are_found_by_index_ranges_without_sorting_the_queue() -> None:
    """Claiming reads ranges of the partial indexes: no full scan and no sort of the queued
    rows; only the sends whose claim ran out, found by expiry, are sorted (SQLite's plan)."""
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    dialect = engine.dialect
    due, expired = _SELECT_DUE["sqlite"]
    expected = {
        _NEXT_QUEUED_PRIORITY: ["SEARCH mt_messages USING INDEX ix_mt_messages_queued (priority>?)"],
        due: ["SEARCH mt_messages USING INDEX ix_mt_messages_queued (priority=? AND next_attempt_at<?)"],
        expired: ["SEARCH mt_messages USING INDEX ix_mt_messages_sending (claim_expires_at<?)", "USE TEMP B-TREE FOR ORDER BY"],
    }
    with engine.connect() as conn:
        for prepared, plan in expected.items():
            sql = prepared._compile(dialect).sql
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(range(sql.count("?"))))
            # Whether SQLite calls an index covering when it leaves out the status (which its
            # WHERE implies) changed between versions.
            assert [str(row[3]).replace("COVERING ", "") for row in rows] == plan, sql


def _mt_row(subscriber_id: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        subscriber_id=subscriber_id, source_addr="4160", text="x", data_coding=0, concat_ref=1, parts_total=1,
        priority=0, registered_delivery=True, status="queued", attempts=0, next_attempt_at=T0, created_at=T0, updated_at=T0, kind="keyword",
    )
    row.update(values)
    return row


async def test_claim_respects_limit(store: Store) -> None:
    """A claim takes at most ``limit`` rows and the next claim takes the rest."""
    ids = [await enqueue(store, request(n)) for n in range(5)]
    first = await claim(store, T0, limit=3)
    second = await claim(store, T0, limit=3)
    assert [mt.id for mt in first] == ids[:3] and [mt.id for mt in second] == ids[3:]


async def test_claim_holds_until_the_lease_expires(store: Store) -> None:
    """A claimed row is not claimed again while its lease holds, and is resumed by another node after."""
    mt_id = await enqueue(store, request())
    assert [mt.id for mt in await claim(store, T0, node="a", lease=60)] == [mt_id]
    assert await claim(store, T0 + 30, node="b") == []
    resumed = await claim(store, T0 + 61, node="b")
    assert [mt.id for mt in resumed] == [mt_id] and resumed[0].claim_expires_at == T0 + 61 + 60
    assert (await store.read(get_mt, mt_id)).claimed_by == "b"  # type: ignore[union-attr]


async def test_all_parts_accepted_submits(store: Store) -> None:
    """The MT becomes submitted with its claim released once every part is accepted, not before."""
    mt_id = await enqueue(store, request(text=LONG_TEXT))
    await claim(store, T0)
    for index in (1, 2):
        progress = await unit(store, part_accepted, mt_id=mt_id, part_index=index, smsc="op", smsc_message_id=f"id{index}", submit_status=0, now=T0 + 1)
        assert progress.status == "sending" and progress.parts_accepted == index
    progress = await unit(store, part_accepted, mt_id=mt_id, part_index=3, smsc="op", smsc_message_id="id3", submit_status=0, now=T0 + 2)
    assert progress.status == "submitted" and progress.parts_accepted == 3 and progress.done
    mt = await store.read(get_mt, mt_id)
    assert mt is not None and mt.claimed_by is None and mt.claim_expires_at is None
    parts = await store.read(get_parts, mt_id)
    assert [(p.status, p.smsc, p.smsc_message_id, p.submit_status) for p in parts] == [("accepted", "op", f"id{i}", 0) for i in (1, 2, 3)]
    assert parts[2].submitted_at == T0 + 2 and progress.receipts_applied == 0


def delivered(message_id: str) -> DeliveryReceipt:
    """A DELIVRD receipt for ``message_id``."""
    return DeliveryReceipt(
        message_id=message_id, sub="001", dlvrd="001", submit_date=None, done_date=None,
        stat="DELIVRD", err="000", text=None, message_state=None, network_error_code=None,
    )  # fmt: skip


async def test_receipt_held_before_the_submit_response_is_applied(store: Store) -> None:
    """A receipt that arrived before its submit_sm_resp was stored is applied when the part is accepted."""
    mt_id = await enqueue(store, request())
    await claim(store, T0)
    held = await store.write(record_receipt, "op", delivered("abc"), "abc", T0 + 1)
    assert not held.matched
    progress = await unit(store, part_accepted, mt_id=mt_id, part_index=1, smsc="op", smsc_message_id="abc", submit_status=0, now=T0 + 2)
    assert (progress.status, progress.receipts_applied) == ("delivered", 1)
    assert [p.status for p in await store.read(get_parts, mt_id)] == ["delivered"]


async def test_receipts_for_earlier_parts_settle_the_mt_once_submitted(store: Store) -> None:
    """Receipts that matched parts while the MT was being sent settle it when the last part is accepted."""
    mt_id = await enqueue(store, request(text=LONG_TEXT))
    await claim(store, T0)
    for index in (1, 2):
        await unit(store, part_accepted, mt_id=mt_id, part_index=index, smsc="op", smsc_message_id=f"m{index}", submit_status=0, now=T0)
        recorded = await store.write(record_receipt, "op", delivered(f"m{index}"), f"m{index}", T0 + 1)
        assert recorded.matched
    assert (await store.read(get_mt, mt_id)).status == "sending"  # type: ignore[union-attr]
    progress = await unit(store, part_accepted, mt_id=mt_id, part_index=3, smsc="op", smsc_message_id="m3", submit_status=0, now=T0 + 2)
    assert progress.status == "submitted"
    recorded = await store.write(record_receipt, "op", delivered("m3"), "m3", T0 + 3)
    assert (await store.read(get_mt, mt_id)).status == "delivered"  # type: ignore[union-attr]


async def test_part_accepted_is_idempotent(store: Store) -> None:
    """Recording the same accepted part twice keeps the first answer and the MT submitted."""
    mt_id = await enqueue(store, request())
    await claim(store, T0)
    for message_id in ("first", "second"):
        progress = await unit(store, part_accepted, mt_id=mt_id, part_index=1, smsc="op", smsc_message_id=message_id, submit_status=0, now=T0)
    assert progress.status == "submitted"
    assert [p.smsc_message_id for p in await store.read(get_parts, mt_id)] == ["first"]


async def test_temporary_failure_requeues_with_backoff(store: Store) -> None:
    """A temporary failure requeues the MT after an exponential backoff and releases the claim."""
    mt_id = await enqueue(store, request())
    await claim(store, T0)
    progress = await unit(store, attempt_failed, mt_id=mt_id, error="ESME_RSYSERR", temporary=True, now=T0 + 1)
    assert (progress.status, progress.attempts, progress.next_attempt_at) == ("queued", 1, T0 + 6)
    mt = await store.read(get_mt, mt_id)
    assert mt is not None and mt.claimed_by is None and mt.last_error == "ESME_RSYSERR"
    assert await claim(store, T0 + 5.9) == []
    assert len(await claim(store, T0 + 6)) == 1
    progress = await unit(store, attempt_failed, mt_id=mt_id, error="response timeout", temporary=True, now=T0 + 10)
    assert (progress.attempts, progress.next_attempt_at) == (2, T0 + 20)


async def test_permanent_failure_fails_the_mt_and_its_pending_parts(store: Store) -> None:
    """A permanent failure fails the MT with the error and its pending parts, keeping accepted ones."""
    mt_id = await enqueue(store, request(text=LONG_TEXT))
    await claim(store, T0)
    await unit(store, part_accepted, mt_id=mt_id, part_index=1, smsc="op", smsc_message_id="x1", submit_status=0, now=T0)
    progress = await unit(store, attempt_failed, mt_id=mt_id, error="ESME_RINVDSTADR", temporary=False, now=T0 + 1)
    assert (progress.status, progress.last_error, progress.attempts) == ("failed", "ESME_RINVDSTADR", 1)
    assert [p.status for p in await store.read(get_parts, mt_id)] == ["accepted", "failed", "failed"]
    assert await claim(store, T0 + 3600) == []


async def test_max_attempts_makes_a_temporary_failure_final(store: Store) -> None:
    """The attempt that reaches max_attempts fails the MT even when its error is temporary."""
    mt_id = await enqueue(store, request())
    now = T0
    statuses = []
    for _ in range(3):
        (claimed,) = await claim(store, now)
        progress = await unit(store, attempt_failed, mt_id=claimed.id, error="ESME_RTHROTTLED", temporary=True, now=now, max_attempts=3, backoff=lambda n: 1.0)
        statuses.append(progress.status)
        now += 1
    assert statuses == ["queued", "queued", "failed"]
    assert (await store.read(get_mt, mt_id)).attempts == 3  # type: ignore[union-attr]


async def test_uncounted_failure_keeps_attempts(store: Store) -> None:
    """A failure with count_attempt=False (nothing sent) requeues without using an attempt."""
    mt_id = await enqueue(store, request())
    await claim(store, T0)
    progress = await unit(store, attempt_failed, mt_id=mt_id, error="no bind", temporary=True, now=T0, max_attempts=1, count_attempt=False)
    assert (progress.status, progress.attempts, progress.next_attempt_at) == ("queued", 0, T0 + 5)


async def test_failure_after_submission_changes_nothing(store: Store) -> None:
    """attempt_failed on an MT that is no longer being sent leaves it as it is."""
    mt_id = await enqueue(store, request())
    await claim(store, T0)
    await unit(store, part_accepted, mt_id=mt_id, part_index=1, smsc="op", smsc_message_id="m", submit_status=0, now=T0)
    progress = await unit(store, attempt_failed, mt_id=mt_id, error="late", temporary=False, now=T0)
    assert (progress.status, progress.attempts) == ("submitted", 0)


async def test_parts_accepted_in_a_first_attempt_are_not_resent(store: Store) -> None:
    """After a failed attempt the next claim carries only the parts not yet accepted."""
    mt_id = await enqueue(store, request(text=LONG_TEXT))
    (first,) = await claim(store, T0)
    assert first.pending_parts == (1, 2, 3)
    await unit(store, part_accepted, mt_id=mt_id, part_index=1, smsc="op", smsc_message_id="p1", submit_status=0, now=T0)
    await unit(store, attempt_failed, mt_id=mt_id, error="connection lost", temporary=True, now=T0)
    (second,) = await claim(store, T0 + 5)
    assert second.pending_parts == (2, 3) and second.attempts == 1 and second.concat_ref == first.concat_ref


async def test_crashed_sender_resumes_with_pending_parts_only(store: Store) -> None:
    """A row abandoned mid-send is resumed after its lease with only the unaccepted parts."""
    mt_id = await enqueue(store, request(text=LONG_TEXT))
    await claim(store, T0, node="dead", lease=60)
    await unit(store, part_accepted, mt_id=mt_id, part_index=1, smsc="op", smsc_message_id="p1", submit_status=0, now=T0)
    await unit(store, part_accepted, mt_id=mt_id, part_index=2, smsc="op", smsc_message_id="p2", submit_status=0, now=T0)
    (resumed,) = await claim(store, T0 + 61, node="alive")
    assert resumed.pending_parts == (3,)


def _mark_parts(conn: Any, mt_id: int, status: str) -> None:
    conn.execute(sa.update(mt_parts).where(mt_parts.c.mt_id == mt_id).values(status=status, smsc="op"))


@pytest.mark.parametrize(("part_status", "settled"), [("accepted", "submitted"), ("delivered", "delivered")])
async def test_settle_finishes_a_resumed_mt_with_nothing_pending(store: Store, part_status: str, settled: str) -> None:
    """settle_mt ends a claimed MT whose parts are all with the SMSC: submitted, or settled by their receipts."""
    mt_id = await enqueue(store, request(text=LONG_TEXT))
    await store.write(_mark_parts, mt_id, part_status)
    (resumed,) = await claim(store, T0)
    assert resumed.pending_parts == ()
    progress = await unit(store, settle_mt, mt_id=mt_id, now=T0 + 2)
    assert (progress.status, progress.parts_accepted) == (settled, 3)
    assert (await store.read(get_mt, mt_id)).claimed_by is None  # type: ignore[union-attr]


async def test_release_claims_requeues_this_nodes_rows(store: Store) -> None:
    """release_claims puts only this node's sending rows back in the queue, claimable at once."""
    mine = await enqueue(store, request(1))
    theirs = await enqueue(store, request(2))
    await claim(store, T0, node="a", limit=1)
    await claim(store, T0, node="b", limit=1)
    assert await unit(store, release_claims, node="a", now=T0 + 1) == 1
    assert await store.read(outbox_counts) == {"queued": 1, "sending": 1}
    assert [mt.id for mt in await claim(store, T0 + 1, node="c")] == [mine]
    assert (await store.read(get_mt, theirs)).claimed_by == "b"  # type: ignore[union-attr]


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    """The default backoff is 5 s doubling per attempt, capped at 15 minutes."""
    assert [exponential_backoff(n) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert exponential_backoff(9) == 900.0 and exponential_backoff(1000) == 900.0


def _bulk_enqueue(conn: Any, count: int) -> None:
    for n in range(count):
        enqueue_mt(conn, request(n), T0, concat_ref=n % 256)


def _slow_claim(conn: Any, **kwargs: Any) -> list[int]:
    claimed = [mt.id for mt in claim_due(conn, **kwargs)]
    # Keep the transaction (and its row locks) open so the other node's claims overlap it.
    time.sleep(0.005)
    return claimed


# SKIP LOCKED claims are PostgreSQL's; on SQLite one writer serialises every claim anyway.
@pytest.mark.postgresql
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_two_nodes_never_claim_the_same_row(store: Store, store_url: str) -> None:
    """Two nodes claiming concurrently from one PostgreSQL database get disjoint rows covering all 1,000 MTs."""
    await store.write(_bulk_enqueue, 1000)
    other = Store.open(store_url)
    metadata.create_all(other.engine)
    got: dict[str, list[int]] = {"a": [], "b": []}

    async def node(name: str, s: Store) -> None:
        while True:
            ids = await s.write(functools.partial(_slow_claim, node=name, now=T0, limit=25, lease=600.0))
            if not ids:
                return
            got[name].extend(ids)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(other.run_writer)
            async with trio.open_nursery() as claimers:
                claimers.start_soon(node, "a", store)
                claimers.start_soon(node, "b", other)
            nursery.cancel_scope.cancel()
    finally:
        await other.aclose()
    assert not set(got["a"]) & set(got["b"])
    assert len(got["a"]) + len(got["b"]) == 1000 == len(set(got["a"]) | set(got["b"]))
    assert got["a"] and got["b"]


# --- a batch's acceptances at once ------------------------------------------------------------

#: What the committer calls for a batch's part_accepted units.
_ACCEPTED_TOGETHER = part_accepted.runs_together  # type: ignore[attr-defined]
_SMSC = "op-a"

_Outbox = list[tuple[int, str, list[str], bool, bool]]


def _outbox_for_acceptances(mts: _Outbox) -> sa.Engine:
    """A fresh SQLite database with one claimed MT per (parts, MT status, part statuses,
    uncertain, a receipt held for its first part's id); the ids the SMSC gives are a0, a1, ..."""
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        sid = conn.execute(sa.insert(subscribers).values(msisdn="+447700900001", created_at=T0, last_seen_at=T0)).inserted_primary_key[0]
        for n, (parts, status, part_statuses, uncertain, held) in enumerate(mts):
            values = _mt_row(sid, parts_total=parts, status=status, claimed_by="node", claim_expires_at=T0 + 60, last_error="busy")
            mt_id = conn.execute(sa.insert(mt_messages).values(**values)).inserted_primary_key[0]
            for index in range(1, parts + 1):
                conn.execute(sa.insert(mt_parts).values(mt_id=mt_id, part_index=index, status=part_statuses[index - 1], uncertain=uncertain))
            if held:
                conn.execute(
                    sa.insert(dlr_events).values(
                        smsc=_SMSC, smsc_message_id=f"a{n}", stat="DELIVRD", received_at=T0 + 1, matched=False
                    )
                )
    return engine


def _outbox_rows(engine: sa.Engine) -> list[list[tuple[Any, ...]]]:
    m, p, e = mt_messages.c, mt_parts.c, dlr_events.c
    with engine.connect() as conn:
        return [
            [tuple(r) for r in conn.execute(sa.select(m.status, m.last_error, m.claimed_by, m.claim_expires_at, m.updated_at).order_by(m.id))],
            [
                tuple(r)
                for r in conn.execute(
                    sa.select(p.status, p.smsc, p.smsc_message_id, p.submit_status, p.submitted_at, p.done_at, p.receipt_stat).order_by(p.id)
                )
            ],
            [tuple(r) for r in conn.execute(sa.select(e.matched, e.mt_part_id).order_by(e.id))],
        ]


def _accept_one_by_one_and_together(mts: _Outbox, picks: list[tuple[int, int]]) -> list[tuple[list[Any], list[Any]]]:
    """The results and table contents after accepting the picked (MT, part) one call at a time,
    and after accepting them as one batch, each on its own copy of the outbox."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (
            (),
            dict(
                mt_id=n + 1, part_index=index, smsc=_SMSC, smsc_message_id=f"a{n}" if index == 1 else f"a{n}-{index}",
                submit_status=0, now=T0 + 5 + k, recipient="+447700900001", text="x",
            ),
        )  # fmt: skip
        for k, (n, index) in enumerate(picks)
    ]
    outcomes = []
    for together in (False, True):
        engine = _outbox_for_acceptances(mts)
        with engine.connect() as conn, conn.begin():
            results = _ACCEPTED_TOGETHER(conn, calls) if together else [part_accepted(conn, *a, **k) for a, k in calls]
        outcomes.append((results, _outbox_rows(engine)))
        engine.dispose()
    return outcomes


_mt_status = st.sampled_from(["sending", "sending", "queued", "failed", "submitted", "delivered", "cancelled"])
_accept_part_status = st.sampled_from(["pending", "pending", "pending", "failed", "accepted", "delivered"])


@settings(max_examples=60, deadline=None)
@given(
    mts=st.lists(
        st.tuples(st.sampled_from([1, 1, 1, 2]), _mt_status, st.lists(_accept_part_status, min_size=2, max_size=2), st.booleans(), st.booleans()),
        min_size=2,
        max_size=6,
    ),
    data=st.data(),
)
def test_a_batch_of_acceptances_ends_where_accepting_one_by_one_does(mts: _Outbox, data: st.DataObject) -> None:
    """Whatever the acceptances (of MTs in any status, of parts already accepted or further, of
    longer MTs, of uncertain parts, with receipts waiting for the id, twice for one MT),
    accepting them as one batch gives each the progress, and leaves the MTs, parts and
    receipts, that accepting them one by one in the same order does."""
    # Half the time the batch path's case: single-part MTs, sent, pending, certain, no receipt.
    usual = data.draw(st.booleans())
    if usual:
        mts = [(1, status, ["pending", "pending"], False, False) for _, status, _, _, _ in mts]
    order = data.draw(st.permutations(range(len(mts))))
    picks = [(n, data.draw(st.integers(1, mts[n][0]))) for n in order[: data.draw(st.integers(1, len(mts)))]]
    if not usual and data.draw(st.booleans()):
        picks.append(picks[0])
    one_by_one, together = _accept_one_by_one_and_together(mts, picks)
    assert together == one_by_one


def test_a_batch_of_acceptances_of_single_part_mts_skips_the_per_call_path() -> None:
    """The batch's usual shape takes the few-statement path: part_accepted itself never runs;
    sending and failed MTs become submitted with their error cleared and their claim released,
    a cancelled one keeps its status."""
    mts = [(1, status, ["pending", "pending"], False, False) for status in ("sending", "failed", "cancelled")]
    picks = [(2, 1), (0, 1), (1, 1)]
    one_by_one, _ = _accept_one_by_one_and_together(mts, picks)
    with mock.patch.object(mt_module, "part_accepted", side_effect=AssertionError("the per-call path ran")):
        _, together = _accept_one_by_one_and_together(mts, picks)
    assert together == one_by_one
    results, (mt_rows, part_rows, _) = together
    assert [(p.mt_id, p.status, p.parts_accepted, p.last_error) for p in results] == [
        (3, "cancelled", 1, "busy"),
        (1, "submitted", 1, None),
        (2, "submitted", 1, None),
    ]
    assert mt_rows == [("submitted", None, None, None, T0 + 6), ("submitted", None, None, None, T0 + 7), ("cancelled", "busy", None, None, T0 + 5)]
    assert [row[:4] for row in part_rows] == [("accepted", _SMSC, "a0", 0), ("accepted", _SMSC, "a1", 0), ("accepted", _SMSC, "a2", 0)]
