"""Delivery receipts: matching parts, holding early receipts, settling multipart MTs."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import threading
from typing import Any, Callable
from unittest import mock

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.simulator.smsc import receipt_text
from gatewayd.smpp.constants import MessageState, Tag
from gatewayd.smpp.receipts import normalise_message_id, parse_receipt
from profile_store import dlr, mt, schema
from profile_store.db import Store, make_engine
from profile_store.dlr import apply_held_receipts, record_receipt, refresh_mt_status, unmatched_receipts
from profile_store.schema import dlr_events, mt_messages, mt_parts, subscribers
from profile_store.subscribers import RawNumber
from profile_store.values import MtPartStatus, MtStatus, ReceiptRecorded

T0 = 1_700_000_000.0
SMSC = "op-a"


def run(engine: sa.Engine, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a unit in a transaction of its own, as the writer would."""
    with engine.connect().execution_options(writer=True) as conn, conn.begin():
        return fn(conn, *args, **kwargs)


def make_mt(conn: sa.Connection, ids: list[str | None], *, status: str = "submitted") -> tuple[int, list[int]]:
    """An MT with one accepted part per SMSC message id (None: not yet known); returns its and its parts' ids."""
    subscriber = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.msisdn == "+447700900123")).scalar()
    if subscriber is None:
        subscriber = conn.execute(
            sa.insert(subscribers).values(msisdn="+447700900123", created_at=T0, last_seen_at=T0).returning(subscribers.c.id)
        ).scalar_one()
    mt_id = conn.execute(
        sa.insert(mt_messages)
        .values(subscriber_id=subscriber, source_addr="4160", smsc=SMSC, text="hello", concat_ref=1,
                parts_total=len(ids), priority=0, registered_delivery=True, status=status, attempts=1,
                next_attempt_at=T0, created_at=T0, updated_at=T0)
        .returning(mt_messages.c.id)
    ).scalar_one()
    parts = [
        conn.execute(
            sa.insert(mt_parts)
            .values(mt_id=mt_id, part_index=n, status="accepted", smsc=SMSC, smsc_message_id=message_id, submitted_at=T0)
            .returning(mt_parts.c.id)
        ).scalar_one()
        for n, message_id in enumerate(ids, 1)
    ]
    return mt_id, parts


def receipt(message_id: str, stat: str = "DELIVRD", **tlvs: int) -> Any:
    """A parsed receipt as the simulator formats it."""
    when = dt.datetime(2024, 1, 31, 12, 0)
    text = receipt_text(message_id, stat=stat, err="000", submitted=when, done=when, text="hello").decode()
    extra = [(Tag.MESSAGE_STATE, bytes([state])) for state in tlvs.values()]
    return parse_receipt(text, extra)


def read(engine: sa.Engine, table: sa.Table, *columns: str) -> list[tuple[Any, ...]]:
    """The given columns of every row of ``table``, by id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*(table.c[c] for c in columns)).order_by(table.c.id)).all()
    return [tuple(row) for row in rows]


def test_status_enums_match_the_schema() -> None:
    """The MT status enums list exactly the values the CHECK constraints allow."""
    assert tuple(MtStatus) == schema.MT_STATUSES
    assert tuple(MtPartStatus) == schema.MT_PART_STATUSES


def test_receipt_after_the_submit_id(engine: sa.Engine) -> None:
    """A receipt for a known id settles its part and its single-part MT."""
    mt_id, (part_id,) = run(engine, make_mt, ["abc123"])
    done = run(engine, record_receipt, SMSC, receipt("ABC123"), "abc123", T0 + 5)
    assert (done.matched, done.mt_part_id, done.mt_id, done.part_status, done.mt_status) == (
        True, part_id, mt_id, "delivered", "delivered",
    )
    assert read(engine, mt_parts, "status", "receipt_stat", "done_at") == [("delivered", "DELIVRD", T0 + 5)]
    assert read(engine, mt_messages, "status", "updated_at") == [("delivered", T0 + 5)]
    assert read(engine, dlr_events, "smsc_message_id", "mt_part_id", "stat", "err", "matched") == [
        ("abc123", part_id, "DELIVRD", "000", True)
    ]


def test_multipart_mt_is_delivered_when_every_part_is(engine: sa.Engine) -> None:
    """An MT of three parts stays submitted until the receipt of its last part."""
    mt_id, _ = run(engine, make_mt, ["1", "2", "3"])
    assert [run(engine, record_receipt, SMSC, receipt(i), i, T0).mt_status for i in "312"] == [
        "submitted", "submitted", "delivered",
    ]


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        (["DELIVRD", "UNDELIV"], "undelivered"),
        (["REJECTD", None], "undelivered"),
        (["DELETED", "DELIVRD"], "undelivered"),
        (["EXPIRED", "DELIVRD"], "expired"),
        (["EXPIRED", None], "submitted"),
        (["EXPIRED", "UNDELIV"], "undelivered"),
        (["DELIVRD", "ENROUTE"], "submitted"),
        (["ACCEPTD", "UNKNOWN"], "submitted"),
    ],
)
def test_mt_status_from_its_parts(engine: sa.Engine, stats: list[str | None], expected: str) -> None:
    """Any undelivered part makes the MT undelivered; all final with one expired, expired; else unchanged."""
    run(engine, make_mt, ["a", "b"])
    last = None
    for message_id, stat in zip("ab", stats):
        if stat is not None:
            last = run(engine, record_receipt, SMSC, receipt(message_id, stat), message_id, T0)
    assert last is not None and last.mt_status == expected


def test_intermediate_then_final(engine: sa.Engine) -> None:
    """ENROUTE records its stat without settling; a later final receipt settles; nothing changes it after."""
    run(engine, make_mt, ["x"])
    assert run(engine, record_receipt, SMSC, receipt("x", "ENROUTE"), "x", T0).part_status == "accepted"
    assert read(engine, mt_parts, "status", "receipt_stat", "done_at") == [("accepted", "ENROUTE", None)]
    assert run(engine, record_receipt, SMSC, receipt("x", "UNDELIV"), "x", T0 + 1).part_status == "undelivered"
    late = run(engine, record_receipt, SMSC, receipt("x", "DELIVRD"), "x", T0 + 2)
    assert (late.matched, late.part_status, late.mt_status) == (True, "undelivered", "undelivered")
    assert read(engine, mt_parts, "status", "receipt_stat", "done_at") == [("undelivered", "UNDELIV", T0 + 1)]


def test_message_state_tlv_without_stat(engine: sa.Engine) -> None:
    """A receipt whose text has no stat is settled by its message_state TLV."""
    run(engine, make_mt, ["x"])
    bare = parse_receipt("id:x", [(Tag.MESSAGE_STATE, bytes([MessageState.EXPIRED]))])
    done = run(engine, record_receipt, SMSC, bare, "x", T0)
    assert (done.part_status, done.mt_status) == ("expired", "expired")
    assert read(engine, mt_parts, "receipt_stat") == [("EXPIRED",)]


def test_receipt_before_the_submit_id_is_held_then_applied(engine: sa.Engine) -> None:
    """A receipt arriving before its submit_sm_resp is stored is held, then applied when the id is."""
    mt_id, (part_id,) = run(engine, make_mt, [None])
    held = run(engine, record_receipt, SMSC, receipt("77"), "77", T0)
    assert held == ReceiptRecorded(event_id=held.event_id, matched=False, mt_part_id=None, mt_id=None,
                                   part_status=None, mt_status=None)
    assert run(engine, unmatched_receipts, older_than=0, now=T0 + 1) == 1

    def submit_resp_stored(conn: sa.Connection) -> int:
        # What the MT outbox does: store the id, then apply what was waiting for it.
        conn.execute(sa.update(mt_parts).where(mt_parts.c.id == part_id).values(smsc_message_id="77"))
        return apply_held_receipts(conn, smsc=SMSC, smsc_message_id="77", mt_part_id=part_id, now=T0 + 2)

    assert run(engine, submit_resp_stored) == 1
    assert read(engine, mt_parts, "status") == [("delivered",)]
    assert read(engine, mt_messages, "status") == [("delivered",)]
    assert read(engine, dlr_events, "mt_part_id", "matched") == [(part_id, True)]
    assert run(engine, unmatched_receipts, older_than=0, now=T0 + 3) == 0
    assert run(engine, apply_held_receipts, smsc=SMSC, smsc_message_id="77", mt_part_id=part_id, now=T0 + 3) == 0


def test_held_receipt_outside_the_grace_stays_unmatched(engine: sa.Engine) -> None:
    """A receipt older than the grace period is not applied to a part that gets its id later."""
    _, (part_id,) = run(engine, make_mt, ["77"])
    run(engine, record_receipt, "op-b", receipt("77"), "77", T0)  # another SMSC: never matches
    run(engine, record_receipt, SMSC, receipt("88"), "88", T0)
    applied = run(engine, apply_held_receipts, smsc=SMSC, smsc_message_id="88", mt_part_id=part_id,
                  now=T0 + 301, grace=300)
    assert applied == 0
    assert read(engine, mt_parts, "status") == [("accepted",)]
    assert run(engine, unmatched_receipts, older_than=300, now=T0 + 301) == 2
    assert run(engine, unmatched_receipts, older_than=300, now=T0 + 299) == 0


def test_mt_still_sending_is_settled_once_submitted(engine: sa.Engine) -> None:
    """Receipts do not touch an MT the sender still owns; refreshing after 'submitted' settles it."""
    mt_id, _ = run(engine, make_mt, ["1"], status="sending")
    assert run(engine, record_receipt, SMSC, receipt("1"), "1", T0).mt_status == "sending"
    with engine.begin() as conn:
        conn.execute(sa.update(mt_messages).values(status="submitted"))
    assert run(engine, refresh_mt_status, mt_id, T0 + 1) == "delivered"


@pytest.mark.parametrize(
    ("fmt", "submit_id", "receipt_id"),
    [
        ("hex_submit_decimal_receipt", "000000FF", "255"),
        ("decimal_submit_hex_receipt", "4294967295", "ffffffff"),
        ("hex", "0a1b", "A1B"),
        ("string", "Msg-1", "msg-1"),
    ],
)
def test_ids_correlate_across_representations(engine: sa.Engine, fmt: str, submit_id: str, receipt_id: str) -> None:
    """A receipt finds its part when the SMSC writes the id in another base or case than its submit_sm_resp."""
    stored_id = normalise_message_id(submit_id, fmt, from_receipt=False)
    _, (part_id,) = run(engine, make_mt, [stored_id])
    parsed = receipt(receipt_id)
    looked_up = normalise_message_id(parsed.message_id, fmt, from_receipt=True)
    assert run(engine, record_receipt, SMSC, parsed, looked_up, T0).mt_part_id == part_id


def test_receipt_and_submit_resp_on_two_nodes_at_once(engine: sa.Engine, store_url: str) -> None:
    """A receipt stored while another node stores its submit id is matched, not held for ever."""
    _, (part_id,) = run(engine, make_mt, [None])
    other = make_engine(store_url)
    first = engine.connect().execution_options(writer=True)
    tx = first.begin()
    held = record_receipt(first, SMSC, receipt("99"), "99", T0)
    applied: list[int] = []

    def submit_resp_stored(conn: sa.Connection) -> None:
        conn.execute(sa.update(mt_parts).where(mt_parts.c.id == part_id).values(smsc_message_id="99"))
        applied.append(apply_held_receipts(conn, smsc=SMSC, smsc_message_id="99", mt_part_id=part_id, now=T0 + 1))

    thread = threading.Thread(target=functools.partial(run, other, submit_resp_stored))
    thread.start()
    thread.join(0.3)
    tx.commit()
    first.close()
    thread.join(10)
    other.dispose()
    assert not held.matched and applied == [1]
    assert read(engine, dlr_events, "matched") == [(True,)]


async def test_through_the_store(store: Store) -> None:
    """Units run through the group-committing writer; the simulator's receipt with its TLVs matches."""
    await store.write(make_mt, ["0000002a"])
    raw = receipt_text("0000002a", stat="DELIVRD", err="000", submitted=dt.datetime(2024, 1, 1),
                       done=dt.datetime(2024, 1, 1), text="hi")
    parsed = parse_receipt(raw.decode("latin-1"), [(Tag.RECEIPTED_MESSAGE_ID, b"0000002a\x00"),
                                                   (Tag.MESSAGE_STATE, bytes([MessageState.DELIVERED]))])
    message_id = normalise_message_id(parsed.message_id or "", "string", from_receipt=True)
    done = await store.write(record_receipt, SMSC, parsed, message_id, T0)
    assert (done.matched, done.mt_status) == (True, "delivered")
    count: Callable[..., int] = functools.partial(unmatched_receipts, older_than=0, now=T0 + 1)
    assert await store.read(count) == 0


def test_receipt_for_an_unrecorded_submission_matches_by_content(engine: sa.Engine) -> None:
    """A receipt whose id was never stored (the gateway died before the submit_sm_resp) matches its MT by recipient and text."""
    mt_id, parts = run(engine, make_mt, ["resubmitted-id"])
    _mark_uncertain(engine, parts[0])
    recorded = run(engine, record_receipt, SMSC, receipt("lost-id"), "lost-id", T0 + 5, recipient="+447700900123")
    assert recorded.matched and recorded.by_content and recorded.mt_part_id == parts[0]
    assert recorded.mt_status == "delivered"


def test_a_handset_number_as_received_is_normalised_only_to_match_by_content(engine: sa.Engine) -> None:
    """The ingest hands over the receipt's source as received: a receipt its id matches keeps
    no number; one its id does not match is matched by content on the normalised number, and
    one left unmatched keeps that number for a later match."""
    _, (known,) = run(engine, make_mt, ["known-id"])
    _, (lost,) = run(engine, make_mt, ["resubmitted-id"])
    _mark_uncertain(engine, lost)
    national = RawNumber("07700900123", ton=2, default_region="GB")
    by_id = run(engine, record_receipt, SMSC, receipt("known-id"), "known-id", T0 + 1, recipient=national)
    by_content = run(engine, record_receipt, SMSC, receipt("lost-id"), "lost-id", T0 + 2, recipient=national)
    held = run(engine, record_receipt, SMSC, receipt("early-id"), "early-id", T0 + 3, recipient=RawNumber("306900000000"))
    alphanumeric = run(engine, record_receipt, SMSC, receipt("odd-id"), "odd-id", T0 + 4, recipient=RawNumber("Operator"))
    assert (by_id.mt_part_id, by_id.by_content) == (known, False)
    assert (by_content.mt_part_id, by_content.by_content) == (lost, True)
    assert not held.matched and not alphanumeric.matched
    assert read(engine, dlr_events, "smsc_message_id", "matched", "recipient") == [
        ("known-id", True, None),
        ("lost-id", True, None),
        ("early-id", False, "+306900000000"),
        ("odd-id", False, None),
    ]


def _mark_uncertain(engine: sa.Engine, part_id: int) -> None:
    """What the outbox does to a part whose earlier submission may have gone out unrecorded."""
    with engine.begin() as conn:
        conn.execute(sa.update(mt_parts).where(mt_parts.c.id == part_id).values(uncertain=True))


def test_content_matching_needs_the_same_recipient(engine: sa.Engine) -> None:
    """A receipt for another number, or without a recipient, is not matched by content."""
    _, parts = run(engine, make_mt, ["resubmitted-id"])
    _mark_uncertain(engine, parts[0])
    assert not run(engine, record_receipt, SMSC, receipt("lost-id"), "lost-id", T0 + 5, recipient="+306900000000").matched
    assert not run(engine, record_receipt, SMSC, receipt("lost-id-2"), "lost-id-2", T0 + 5).matched


def test_receipt_of_a_lost_submission_before_the_resubmission_is_applied_when_it_is_accepted(engine: sa.Engine) -> None:
    """A receipt whose id was never stored, arriving before the MT is resubmitted, is applied once the resubmission is accepted."""
    from profile_store.mt import part_accepted

    mt_id, parts = run(engine, make_mt, [None], status="sending")
    with engine.begin() as conn:
        conn.execute(sa.update(mt_parts).where(mt_parts.c.id == parts[0]).values(status="pending", submitted_at=None))
    _mark_uncertain(engine, parts[0])
    held = run(engine, record_receipt, SMSC, receipt("lost-id"), "lost-id", T0 + 1, recipient="+447700900123")
    assert not held.matched
    progress = run(
        engine, part_accepted, mt_id=mt_id, part_index=1, smsc=SMSC, smsc_message_id="new-id", submit_status=0,
        now=T0 + 2, recipient="+447700900123", text="hello",
    )
    assert progress.status == "delivered"
    assert read(engine, dlr_events, "matched", "mt_part_id") == [(True, parts[0])]


def test_an_early_receipt_is_not_taken_by_an_earlier_mt_with_the_same_start(engine: sa.Engine) -> None:
    """A receipt that overtook its submit_sm_resp waits for its own MT instead of matching a
    delivered one to the same number whose text starts alike; the MT is delivered once accepted."""
    from profile_store.mt import part_accepted

    first, _ = run(engine, make_mt, ["id-a"])
    assert run(engine, record_receipt, SMSC, receipt("id-a"), "id-a", T0 + 1, recipient="+447700900123").mt_id == first
    second, parts = run(engine, make_mt, [None], status="sending")
    with engine.begin() as conn:
        conn.execute(sa.update(mt_parts).where(mt_parts.c.id == parts[0]).values(status="pending", submitted_at=None))
    early = run(engine, record_receipt, SMSC, receipt("id-b"), "id-b", T0 + 2, recipient="+447700900123")
    assert not early.matched
    progress = run(
        engine, part_accepted, mt_id=second, part_index=1, smsc=SMSC, smsc_message_id="id-b", submit_status=0,
        now=T0 + 3, recipient="+447700900123", text="hello",
    )
    assert progress.status == "delivered"
    assert read(engine, dlr_events, "smsc_message_id", "mt_part_id") == [("id-a", parts[0] - 1), ("id-b", parts[0])]


def test_parts_that_may_have_gone_out_unrecorded_are_marked_uncertain(engine: sa.Engine) -> None:
    """Pending parts become uncertain when their attempt timed out, their claim was released, or another node took them over."""
    from profile_store.mt import attempt_failed, claim_due, release_claims

    def pending_mt() -> tuple[int, int]:
        mt_id, parts = run(engine, make_mt, [None], status="sending")
        with engine.begin() as conn:
            conn.execute(sa.update(mt_parts).where(mt_parts.c.id == parts[0]).values(status="pending", submitted_at=None))
            conn.execute(sa.update(mt_messages).where(mt_messages.c.id == mt_id).values(claimed_by="n1", claim_expires_at=T0 + 10))
        return mt_id, parts[0]

    def uncertain(part_id: int) -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(sa.select(mt_parts.c.uncertain).where(mt_parts.c.id == part_id)).scalar_one())

    timed_out, timed_out_part = pending_mt()
    refused, refused_part = pending_mt()
    run(engine, attempt_failed, mt_id=timed_out, error="response timeout", temporary=True, now=T0 + 1, uncertain=True)
    run(engine, attempt_failed, mt_id=refused, error="ESME_RTHROTTLED", temporary=True, now=T0 + 1)
    assert uncertain(timed_out_part) and not uncertain(refused_part)
    _, released_part = pending_mt()
    run(engine, release_claims, node="n1", now=T0 + 2)
    assert uncertain(released_part)
    _, abandoned_part = pending_mt()
    run(engine, claim_due, node="n2", now=T0 + 60, limit=10, lease=30)
    assert uncertain(abandoned_part)


_STATS = ("DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "ENROUTE", "ACCEPTD", "UNKNOWN")
_twins = itertools.count()


@given(
    mt_status=st.sampled_from(schema.MT_STATUSES),
    part_status=st.sampled_from([s for s in schema.MT_PART_STATUSES if s != "pending"]),
    stats=st.lists(st.sampled_from(_STATS), min_size=1, max_size=4),
)
def test_a_single_part_mt_settles_as_the_rule_for_any_number_of_parts_settles_it(
    engine: sa.Engine, mt_status: str, part_status: str, stats: list[str]
) -> None:
    """Receipts for an MT of one part take a shorter path; it must end where the general one does.

    Twin MTs in the same state get the same receipts, one through record_receipt as it is,
    the other with the general refresh_mt_status in place of the single-part path.
    """
    twin = next(_twins)
    ids = (f"fast{twin}", f"general{twin}")
    mts = []
    for message_id in ids:
        mt_id, (part_id,) = run(engine, make_mt, [message_id], status=mt_status)
        with engine.begin() as conn:
            conn.execute(sa.update(mt_parts).where(mt_parts.c.id == part_id).values(status=part_status))
        mts.append(mt_id)
    general = functools.partial(
        mock.patch, "profile_store.dlr._refresh_single_part_mt", lambda conn, mt_id, part, now: refresh_mt_status(conn, mt_id, now)
    )
    for n, stat in enumerate(stats):
        fast = run(engine, record_receipt, SMSC, receipt(ids[0], stat), ids[0], T0 + n)
        with general():
            slow = run(engine, record_receipt, SMSC, receipt(ids[1], stat), ids[1], T0 + n)
        assert (fast.matched, fast.part_status, fast.mt_status) == (slow.matched, slow.part_status, slow.mt_status)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(mt_messages.c.status, mt_messages.c.updated_at).where(mt_messages.c.id.in_(mts)).order_by(mt_messages.c.id)
        ).all()
    assert rows[0] == rows[1]
    assert rows[0].status == fast.mt_status


@given(
    mt_status=st.sampled_from(schema.MT_STATUSES),
    part_status=st.sampled_from(["pending", "failed"]),
    held=st.lists(st.sampled_from(_STATS), max_size=2),
)
def test_accepting_the_part_of_a_single_part_mt_ends_where_the_general_settle_does(
    engine: sa.Engine, mt_status: str, part_status: str, held: list[str]
) -> None:
    """part_accepted settles an MT of one part with a shorter statement; twin MTs, one through
    the general statement, must end in the same state and report the same progress,
    receipts that overtook the submit_sm_resp included."""
    twin = next(_twins)
    outcomes, rows = [], []
    for path, message_id in (("single", f"s{twin}"), ("general", f"g{twin}")):
        mt_id, (part_id,) = run(engine, make_mt, [None], status=mt_status)
        with engine.begin() as conn:
            conn.execute(sa.update(mt_parts).where(mt_parts.c.id == part_id).values(status=part_status, smsc=None))
            conn.execute(sa.update(mt_messages).where(mt_messages.c.id == mt_id).values(claimed_by="node", claim_expires_at=T0 + 60))
        for n, stat in enumerate(held):
            assert not run(engine, record_receipt, SMSC, receipt(message_id, stat), message_id, T0 + n).matched
        statement = mt._SETTLE_SINGLE_ACCEPTED if path == "single" else mt._SETTLE_ACCEPTED
        with mock.patch.object(mt, "_SETTLE_SINGLE_ACCEPTED", statement):
            progress = run(
                engine, mt.part_accepted, mt_id=mt_id, part_index=1, smsc=SMSC, smsc_message_id=message_id, submit_status=0, now=T0 + 5
            )
        outcomes.append(attrs.evolve(progress, mt_id=0))
        with engine.connect() as conn:
            mt_row = conn.execute(
                sa.select(mt_messages.c.status, mt_messages.c.last_error, mt_messages.c.claimed_by, mt_messages.c.updated_at)
                .where(mt_messages.c.id == mt_id)
            ).one()
            part_row = conn.execute(sa.select(mt_parts.c.status, mt_parts.c.receipt_stat).where(mt_parts.c.id == part_id)).one()
        rows.append((tuple(mt_row), tuple(part_row)))
    assert outcomes[0] == outcomes[1]
    assert rows[0] == rows[1]
    assert outcomes[0].receipts_applied == len(held)


# --- a batch's receipts at once ---------------------------------------------------------------

_STATS = ["DELIVRD", "UNDELIV", "EXPIRED", "ENROUTE", "ACCEPTD", "REJECTD"]
#: What the committer calls for a batch's record_receipt units.
_TOGETHER = record_receipt.runs_together  # type: ignore[attr-defined]


def _outbox_of(mts: list[tuple[int, str, list[str]]]) -> sa.Engine:
    """A fresh SQLite database holding one MT per (parts, MT status, part statuses); the
    parts' SMSC message ids are m0, m1, ... in order."""
    engine = make_engine("sqlite://")
    schema.metadata.create_all(engine)
    ids = itertools.count()
    with engine.begin() as conn:
        for parts, mt_status, part_statuses in mts:
            _, part_ids = make_mt(conn, [f"m{next(ids)}" for _ in range(parts)], status=mt_status)
            for part_id, status in zip(part_ids, part_statuses):
                conn.execute(sa.update(mt_parts).where(mt_parts.c.id == part_id).values(status=status))
    return engine


def _contents(engine: sa.Engine) -> list[list[tuple[Any, ...]]]:
    return [
        read(engine, mt_messages, "status", "updated_at"),
        read(engine, mt_parts, "status", "receipt_stat", "done_at"),
        read(engine, dlr_events, "id", "smsc_message_id", "mt_part_id", "stat", "err", "received_at", "matched", "recipient", "text"),
    ]


def _receipt_calls(receipts: list[tuple[str, str]]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    return [((SMSC, receipt(message_id, stat), message_id, T0 + n), {"recipient": "+447700900123"}) for n, (message_id, stat) in enumerate(receipts)]


def _one_by_one_and_together(
    mts: list[tuple[int, str, list[str]]], receipts: list[tuple[str, str]]
) -> tuple[tuple[list[ReceiptRecorded], list[Any]], tuple[list[ReceiptRecorded], list[Any]]]:
    """The results and table contents after recording the receipts one call at a time, and
    after recording them as one batch, each on its own copy of the outbox."""
    calls = _receipt_calls(receipts)
    outcomes = []
    for together in (False, True):
        engine = _outbox_of(mts)
        with engine.connect().execution_options(writer=True) as conn, conn.begin():
            if together:
                results = _TOGETHER(conn, calls)
            else:
                results = [record_receipt(conn, *args, **kwargs) for args, kwargs in calls]
        outcomes.append((results, _contents(engine)))
        engine.dispose()
    return outcomes[0], outcomes[1]


_part_status = st.sampled_from(["accepted", "accepted", "accepted", "delivered", "undelivered", "expired"])


@given(
    mts=st.lists(
        st.tuples(
            st.sampled_from([1, 1, 1, 1, 2]),
            st.sampled_from(["submitted", "submitted", "sending", "delivered", "undelivered"]),
            st.lists(_part_status, min_size=2, max_size=2),
        ),
        min_size=1,
        max_size=6,
    ),
    data=st.data(),
)
def test_a_batch_of_receipts_ends_where_recording_them_one_by_one_does(mts: list[tuple[int, str, list[str]]], data: st.DataObject) -> None:
    """Whatever the receipts (final or not, for parts already final, for MTs not yet submitted
    or already settled, of longer MTs, twice for one id, for ids nobody sent), recording them
    as one batch gives each the result, and leaves the parts, MTs and events, that recording
    them one by one in the same order does."""
    # Half the time the batch path's case: single-part MTs, each id once, every id known.
    usual = data.draw(st.booleans())
    if usual:
        mts = [(1, mt_status, part_statuses) for _, mt_status, part_statuses in mts]
    known = sum(parts for parts, _, _ in mts)
    picks = data.draw(
        st.lists(
            st.tuples(st.integers(0, known - usual), st.sampled_from(_STATS)), min_size=1, max_size=8, unique_by=lambda pick: pick[0]
        )
    )
    if not usual and data.draw(st.booleans()):
        picks.append((picks[0][0], data.draw(st.sampled_from(_STATS))))
    receipts = [(f"m{n}" if n < known else f"x{n}", stat) for n, stat in picks]
    one_by_one, together = _one_by_one_and_together(mts, receipts)
    assert together == one_by_one


def test_a_batch_of_receipts_for_single_part_mts_is_recorded_without_the_per_receipt_path() -> None:
    """The batch's usual shape (each receipt names its own single-part MT by id) takes the
    few-statement path: the per-receipt function is never called, and every receipt is
    matched, its event numbered in order."""
    mts = [(1, "submitted", ["accepted"]), (1, "submitted", ["delivered"]), (1, "sending", ["accepted"]), (1, "submitted", ["accepted"])]
    receipts = [("m3", "DELIVRD"), ("m0", "UNDELIV"), ("m1", "EXPIRED"), ("m2", "DELIVRD")]
    one_by_one, _ = _one_by_one_and_together(mts, receipts)
    with mock.patch.object(dlr, "record_receipt", side_effect=AssertionError("the per-receipt path ran")):
        _, together = _one_by_one_and_together(mts, receipts)
    assert together == one_by_one
    results, (mt_rows, part_rows, events) = together
    assert [(r.event_id, r.part_status, r.mt_status) for r in results] == [
        (1, "delivered", "delivered"),
        (2, "undelivered", "undelivered"),
        (3, "delivered", "delivered"),  # the part was final already; its MT settles now
        (4, "delivered", "sending"),  # still being sent: the sender owns its status
    ]
    assert [row[0] for row in mt_rows] == ["undelivered", "delivered", "sending", "delivered"]
    assert [event[0] for event in events] == [1, 2, 3, 4]
