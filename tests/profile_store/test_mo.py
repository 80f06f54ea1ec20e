"""MO storage: redelivery, reassembly from any concatenation method in any order, restarts, expiry."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import threading
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
import trio
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.ingest import InboundMessage
from gatewayd.smpp.constants import EsmClass, Tag
from gatewayd.smpp.pdus import DataSm, DeliverSm
from gatewayd.smpp.text import ConcatMethod, encode_gsm, encode_ucs2
from gatewayd.smpp.udh import IEI_CONCAT_8BIT, IEI_CONCAT_16BIT, IEI_PORTS_8BIT, build_udh
from profile_store import schema
from profile_store.db import Store, make_engine
from profile_store.mo import GAP, MoPartIn, expire_incomplete, get_mo, mark_mo, pending_mos, store_mo_part
from profile_store.schema import metadata, mo_messages, mo_parts, subscribers
from profile_store.subscribers import InvalidNumber
from profile_store.values import MoPartStatus, MoStatus, MoStored

T0 = 1_700_000_000.0
_sources = itertools.count(1)


def new_source() -> str:
    """A subscriber number no other test example uses."""
    return f"+3069{next(_sources):08d}"


def part(
    text: str,
    *,
    source: str = "+447700900123",
    at: float = T0,
    concat: tuple[ConcatMethod, int, int, int] | None = None,
    ton: int = 1,
    ucs2: bool = False,
) -> MoPartIn:
    """An MO part as ingest builds it from a deliver_sm; concat is (method, reference, total, index)."""
    user_data = encode_ucs2(text) if ucs2 else encode_gsm(text)
    esm_class, tlvs = 0, []
    if concat is not None:
        method, ref, total, index = concat
        if method is ConcatMethod.UDH8:
            user_data = build_udh([(IEI_CONCAT_8BIT, bytes([ref, total, index]))]) + user_data
            esm_class = EsmClass.UDHI
        elif method is ConcatMethod.UDH16:
            # Another element first: the concatenation element need not lead the header.
            ies = [(IEI_PORTS_8BIT, b"\x10\x20"), (IEI_CONCAT_16BIT, bytes([ref >> 8, ref & 0xFF, total, index]))]
            user_data = build_udh(ies) + user_data
            esm_class = EsmClass.UDHI
        else:
            tlvs = [
                (Tag.SAR_MSG_REF_NUM, ref.to_bytes(2, "big")),
                (Tag.SAR_TOTAL_SEGMENTS, bytes([total])),
                (Tag.SAR_SEGMENT_SEQNUM, bytes([index])),
            ]
    pdu = DeliverSm(
        source_addr=source,
        source_addr_ton=ton,
        destination_addr="4160",
        esm_class=esm_class,
        data_coding=8 if ucs2 else 0,
        short_message=user_data,
        tlvs=tuple(tlvs),
    )
    when = dt.datetime.fromtimestamp(at, dt.timezone.utc)
    return MoPartIn.from_inbound(InboundMessage.from_pdu(pdu, smsc="op-a", now=when))


def run(engine: sa.Engine, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a unit in a transaction of its own, as the writer would."""
    with engine.connect().execution_options(writer=True) as conn, conn.begin():
        return fn(conn, *args, **kwargs)


def statuses(engine: sa.Engine) -> list[str]:
    """Every MO part's status, in arrival order."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(mo_parts.c.status).order_by(mo_parts.c.id)).scalars())


def count(engine: sa.Engine, table: sa.Table) -> int:
    """Rows in ``table``."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_status_enums_match_the_schema() -> None:
    """The MO status enums list exactly the values the CHECK constraints allow."""
    assert tuple(MoPartStatus) == schema.MO_PART_STATUSES
    assert tuple(MoStatus) == schema.MO_STATUSES


def test_single_part_mo_is_complete_at_once(engine: sa.Engine) -> None:
    """A part that stands alone creates a complete, stored MO for the subscriber's E.164 number."""
    stored = run(engine, store_mo_part, part("YES please", source="07700900123", ton=2), T0 + 1, default_region="GB")
    assert not stored.duplicate
    mo = stored.mo
    assert mo is not None
    assert (mo.smsc, mo.msisdn, mo.short_code, mo.text) == ("op-a", "+447700900123", "4160", "YES please")
    assert (mo.parts, mo.complete, mo.received_at, mo.status, mo.route) == (1, True, T0, "stored", None)
    assert statuses(engine) == ["assembled"]


def test_a_number_the_caller_normalised_is_taken_as_it_is(engine: sa.Engine) -> None:
    """Given the normalised number, the part is stored as if it had been parsed here, and a
    redelivery is recognised either way."""
    given_number = run(engine, store_mo_part, part("NO", source="07700900124", ton=2), T0, default_region="GB", msisdn="+447700900124")
    assert given_number.mo is not None and given_number.mo.msisdn == "+447700900124"
    again = run(engine, store_mo_part, part("NO", source="07700900124", ton=2), T0 + 1, default_region="GB")
    assert again.duplicate and again.part_id == given_number.part_id


def test_data_sm_ucs2_mo(engine: sa.Engine) -> None:
    """A data_sm MO in UCS-2 is stored with its decoded text and data_coding."""
    payload = ((Tag.MESSAGE_PAYLOAD, encode_ucs2("Καλημέρα")),)
    pdu = DataSm(source_addr="306912345678", source_addr_ton=1, destination_addr="4160", data_coding=8, tlvs=payload)
    message = InboundMessage.from_pdu(pdu, smsc="op-b", now=dt.datetime.fromtimestamp(T0, dt.timezone.utc))
    mo = run(engine, store_mo_part, MoPartIn.from_inbound(message), T0).mo
    assert (mo.text, mo.data_coding, mo.msisdn) == ("Καλημέρα", 8, "+306912345678")


def test_redelivery_within_the_window_is_a_duplicate(engine: sa.Engine) -> None:
    """The same part again within dedupe_window is a duplicate; later, or with other text, it is a new MO."""
    first = run(engine, store_mo_part, part("STOP", at=T0), T0)
    again = run(engine, store_mo_part, part("STOP", at=T0 + 29), T0 + 29)
    assert again == MoStored(duplicate=True, part_id=first.part_id, mo=None)
    other = run(engine, store_mo_part, part("STOP!", at=T0 + 29), T0 + 29)
    later = run(engine, store_mo_part, part("STOP", at=T0 + 31), T0 + 31)
    assert not other.duplicate and not later.duplicate and later.mo is not None
    assert count(engine, mo_messages) == 3


def test_the_same_text_twice_on_one_connection_is_two_mos(engine: sa.Engine) -> None:
    """An identical part on the same live connection is a new MO (a quiz answered "A" twice); on another
    connection, as an SMSC redelivers after a broken connection, it is a duplicate."""
    first = run(engine, store_mo_part, attrs.evolve(part("A", at=T0), connection="p:1"), T0)
    second = run(engine, store_mo_part, attrs.evolve(part("A", at=T0 + 5), connection="p:1"), T0 + 5)
    assert not second.duplicate and second.mo is not None
    redelivered = run(engine, store_mo_part, attrs.evolve(part("A", at=T0 + 6), connection="p:2"), T0 + 6)
    assert redelivered.duplicate and redelivered.part_id == first.part_id
    unknown = run(engine, store_mo_part, part("A", at=T0 + 7), T0 + 7)
    assert unknown.duplicate
    assert count(engine, mo_messages) == 2


def test_alphanumeric_sender_is_refused(engine: sa.Engine) -> None:
    """An MO from an alphanumeric sender raises InvalidNumber and stores nothing."""
    with pytest.raises(InvalidNumber):
        run(engine, store_mo_part, part("hi", source="ACME", ton=5), T0)
    assert count(engine, mo_parts) == 0


METHODS = {ConcatMethod.UDH8: 255, ConcatMethod.UDH16: 0xFFFF, ConcatMethod.SAR: 0xFFFF}


@given(data=st.data(), method=st.sampled_from(list(METHODS)), total=st.integers(2, 5), ucs2=st.booleans())
def test_concatenated_mo_in_any_order_with_a_duplicate(
    engine: sa.Engine, data: st.DataObject, method: ConcatMethod, total: int, ucs2: bool
) -> None:
    """Parts arriving in any order, one of them twice, assemble into exactly one complete MO."""
    source, ref = new_source(), data.draw(st.integers(0, METHODS[method]), label="ref")
    order = data.draw(st.permutations(range(1, total + 1)), label="order")
    repeated = data.draw(st.sampled_from(order), label="repeated")
    order.insert(data.draw(st.integers(order.index(repeated) + 1, total), label="at"), repeated)
    texts = {i: f"part {i} of {total}; " for i in range(1, total + 1)}
    results = []
    for k, index in enumerate(order):
        # 40 s apart: the repeated part is outside the dedupe window, like a late redelivery.
        at = T0 + 40 * k
        incoming = part(texts[index], source=source, at=at, concat=(method, ref, total, index), ucs2=ucs2)
        results.append(run(engine, store_mo_part, incoming, at))
    complete = [r.mo for r in results if r.mo is not None]
    assert len(complete) == 1
    mo = complete[0]
    assert (mo.text, mo.parts, mo.complete, mo.msisdn) == ("".join(texts.values()), total, True, source)
    assert mo.received_at == T0
    with engine.connect() as conn:
        # Every part, the repeated one included, belongs to the message: none is left pending.
        unattached = conn.execute(
            sa.select(sa.func.count()).select_from(mo_parts).where(mo_parts.c.mo_id.is_(None))
        ).scalar_one()
        mos = conn.execute(
            sa.select(sa.func.count()).select_from(mo_messages.join(subscribers)).where(subscribers.c.msisdn == source)
        ).scalar_one()
    assert (unattached, mos) == (0, 1)


def test_parts_of_different_messages_stay_apart(engine: sa.Engine) -> None:
    """Parts with another reference, total or method do not complete each other's message."""
    run(engine, store_mo_part, part("a", concat=(ConcatMethod.UDH8, 7, 2, 1)), T0)
    for concat in [(ConcatMethod.UDH8, 8, 2, 2), (ConcatMethod.UDH8, 7, 3, 2), (ConcatMethod.SAR, 7, 2, 2)]:
        assert run(engine, store_mo_part, part("b", concat=concat), T0).mo is None
    mo = run(engine, store_mo_part, part("b", concat=(ConcatMethod.UDH16, 7, 2, 2)), T0).mo
    assert mo is None
    assert run(engine, store_mo_part, part("b", concat=(ConcatMethod.UDH8, 7, 2, 2)), T0).mo.text == "ab"


def create_tables(url: str) -> None:
    """Create every table in the database at ``url``."""
    e = make_engine(url)
    metadata.create_all(e)
    e.dispose()


async def _with_store(url: str, fn: Any) -> Any:
    """Run ``fn(store)`` with a fresh Store (as after a restart) whose writer runs meanwhile."""
    s = Store.open(url)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(s.run_writer)
            result = await fn(s)
            nursery.cancel_scope.cancel()
        return result
    finally:
        await s.aclose()


async def test_reassembly_survives_a_restart(store_url: str) -> None:
    """Half a message stored before a restart is completed by the parts arriving after it."""
    create_tables(store_url)
    parts = [part(f"<{i}>", at=T0 + i, concat=(ConcatMethod.UDH8, 42, 4, i)) for i in (1, 2, 3, 4)]

    async def before(s: Store) -> list[MoStored]:
        return [await s.write(store_mo_part, p, p.received_at) for p in (parts[2], parts[0])]

    async def after(s: Store) -> list[MoStored]:
        return [await s.write(store_mo_part, p, p.received_at) for p in (parts[3], parts[1])]

    assert [r.mo for r in await _with_store(store_url, before)] == [None, None]
    results = await _with_store(store_url, after)
    assert results[0].mo is None
    mo = results[1].mo
    assert (mo.text, mo.parts, mo.complete, mo.received_at) == ("<1><2><3><4>", 4, True, T0 + 1)


async def test_pending_mos_after_a_restart(store_url: str) -> None:
    """MOs stored but not processed before a restart are listed afterwards, by id, in pages."""
    create_tables(store_url)

    async def before(s: Store) -> list[int]:
        ids = [(await s.write(store_mo_part, part(f"m{n}", at=T0 + n), T0 + n)).mo.id for n in range(4)]
        await s.write(functools.partial(mark_mo, route="campaign:quiz"), ids[1], "processed", T0 + 10)
        return ids

    ids = await _with_store(store_url, before)

    async def after(s: Store) -> tuple[list[int], list[int]]:
        first = await s.read(functools.partial(pending_mos, limit=2))
        rest = await s.read(functools.partial(pending_mos, limit=10, after_id=first[-1].id))
        return [m.id for m in first], [m.id for m in rest]

    assert await _with_store(store_url, after) == ([ids[0], ids[2]], [ids[3]])


def test_mark_mo(engine: sa.Engine) -> None:
    """mark_mo records status, route, error and time; bad statuses and ids are refused."""
    mo_id = run(engine, store_mo_part, part("QUIZ"), T0).mo.id
    run(engine, mark_mo, mo_id, "failed", T0 + 5, route="campaign:quiz", error="boom")
    run(engine, mark_mo, mo_id, "processed", T0 + 6)
    mo = run(engine, get_mo, mo_id)
    assert (mo.status, mo.route) == ("processed", "campaign:quiz")
    with engine.connect() as conn:
        row = conn.execute(sa.select(mo_messages.c.processed_at, mo_messages.c.error)).one()
    assert tuple(row) == (T0 + 6, None)
    with pytest.raises(ValueError):
        run(engine, mark_mo, mo_id, "done", T0)
    with pytest.raises(LookupError):
        run(engine, mark_mo, mo_id + 100, "processed", T0)


def test_expiry_keeps_the_parts_present(engine: sa.Engine) -> None:
    """A message missing parts for too long becomes an incomplete MO with gaps marked, once."""
    for i in (1, 3, 5):
        run(engine, store_mo_part, part(f"<{i}>", at=T0 + i, concat=(ConcatMethod.SAR, 300, 6, i)), T0 + i)
    recent = part("<1>", source="+447700900999", at=T0 + 500, concat=(ConcatMethod.SAR, 300, 2, 1))
    run(engine, store_mo_part, recent, T0 + 500)
    assert run(engine, expire_incomplete, T0 + 100, older_than=600) == []
    expired = run(engine, expire_incomplete, T0 + 700, older_than=600)
    assert len(expired) == 1
    mo = expired[0]
    assert (mo.text, mo.parts, mo.complete, mo.status) == (f"<1>{GAP}<3>{GAP}<5>{GAP}", 3, False, "stored")
    assert mo.received_at == T0 + 1
    assert statuses(engine) == ["expired", "expired", "expired", "pending"]
    assert run(engine, expire_incomplete, T0 + 700, older_than=600) == []
    # A part arriving after its group expired starts afresh rather than reviving it.
    assert run(engine, store_mo_part, part("<2>", at=T0 + 800, concat=(ConcatMethod.SAR, 300, 6, 2)), T0 + 800).mo is None


def concurrently(engine: sa.Engine, store_url: str, first_part: MoPartIn, second_part: MoPartIn) -> list[MoStored]:
    """Store two parts from two connections, the second starting while the first is uncommitted."""
    other = make_engine(store_url)
    results: list[MoStored] = []
    first = engine.connect().execution_options(writer=True)
    tx = first.begin()
    results.append(store_mo_part(first, first_part, first_part.received_at))

    def second() -> None:
        results.append(run(other, store_mo_part, second_part, second_part.received_at))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.3)  # the second waits for the first to commit
    tx.commit()
    first.close()
    thread.join(10)
    other.dispose()
    return results


def test_two_nodes_store_the_last_parts_at_once(engine: sa.Engine, store_url: str) -> None:
    """Two connections storing the last two parts concurrently still assemble the message once."""
    run(engine, store_mo_part, part("a", at=T0, concat=(ConcatMethod.UDH8, 9, 3, 1)), T0)
    results = concurrently(
        engine,
        store_url,
        part("b", at=T0 + 1, concat=(ConcatMethod.UDH8, 9, 3, 2)),
        part("c", at=T0 + 2, concat=(ConcatMethod.UDH8, 9, 3, 3)),
    )
    assert results[0].mo is None and results[1].mo is not None
    assert results[1].mo.text == "abc"


def test_two_nodes_receive_the_same_redelivery_at_once(engine: sa.Engine, store_url: str) -> None:
    """The same MO stored from two connections at once is stored once and reported as a duplicate once."""
    results = concurrently(engine, store_url, part("YES", at=T0), part("YES", at=T0 + 1))
    assert [r.duplicate for r in results] == [False, True]
    assert count(engine, mo_messages) == 1
