"""Prepared statements: the same results as Connection.execute, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from profile_store.prepared import Prepared, _taker
from profile_store.schema import mt_messages, mt_parts, subscribers

_NEW_SUBSCRIBER = Prepared(sa.insert(subscribers), keys=("msisdn", "created_at", "last_seen_at"), returning_id=True)
_SEEN = Prepared(
    sa.update(subscribers)
    .where(subscribers.c.msisdn == sa.bindparam("b_msisdn"))
    .values(last_seen_at=sa.bindparam("b_at"))
    .returning(subscribers.c.id, subscribers.c.last_seen_at)
)
_ID_OF = Prepared(sa.select(subscribers.c.id).where(subscribers.c.msisdn == sa.bindparam("b_msisdn")))
# A value bound in the statement itself.
_RESET = Prepared(
    sa.update(subscribers)
    .where(subscribers.c.msisdn.in_([sa.literal_column("'+301'"), sa.literal_column("'+302'")]), subscribers.c.id > sa.bindparam("b_after"))
    .values(last_seen_at=0.0)
)


def _subscriber(conn: sa.Connection, msisdn: str, at: float = 1.0) -> int:
    return _NEW_SUBSCRIBER.insert_id(conn, {"msisdn": msisdn, "created_at": at, "last_seen_at": at})


def test_insert_id_select_and_returning_agree_with_core(engine: sa.Engine) -> None:
    """The id an insert reports is the row's; RETURNING rows read by column name; a miss is None."""
    with engine.begin() as conn:
        first = _subscriber(conn, "+301")
        second = _subscriber(conn, "+302")
        assert second != first
        assert conn.execute(sa.select(subscribers.c.msisdn).where(subscribers.c.id == second)).scalar_one() == "+302"
        assert _ID_OF.scalar(conn, {"b_msisdn": "+301"}) == first
        assert _ID_OF.scalar(conn, {"b_msisdn": "+399"}) is None
        row = _SEEN.first(conn, {"b_msisdn": "+302", "b_at": 7.5})
        assert (row.id, row.last_seen_at) == (second, 7.5)
        assert _SEEN.first(conn, {"b_msisdn": "+399", "b_at": 1.0}) is None
        assert _RESET.run(conn, {"b_after": first}) == 1
        assert conn.execute(sa.select(subscribers.c.last_seen_at).where(subscribers.c.id == second)).scalar_one() == 0.0
        assert conn.execute(sa.select(subscribers.c.last_seen_at).where(subscribers.c.id == first)).scalar_one() == 1.0


def test_many_inserts_every_row_in_the_callers_transaction(engine: sa.Engine) -> None:
    """executemany joins the open transaction: a rollback takes its rows away too."""
    with engine.connect() as conn:
        with conn.begin():
            owner = _subscriber(conn, "+303")
        insert_mt = Prepared(
            sa.insert(mt_messages).values(
                subscriber_id=sa.bindparam("sid"),
                source_addr="4160",
                text="hi",
                concat_ref=1,
                parts_total=2,
                priority=0,
                registered_delivery=True,
                status="queued",
                attempts=0,
                next_attempt_at=0.0,
                created_at=0.0,
                updated_at=0.0,
                kind="response",
            ),
            returning_id=True,
        )
        parts = Prepared(sa.insert(mt_parts), keys=("mt_id", "part_index", "status"))
        transaction = conn.begin()
        mt_id = insert_mt.insert_id(conn, {"sid": owner})
        parts.many(conn, [{"mt_id": mt_id, "part_index": i, "status": "pending"} for i in (1, 2)])
        assert conn.execute(sa.select(sa.func.count()).select_from(mt_parts).where(mt_parts.c.mt_id == mt_id)).scalar_one() == 2
        transaction.rollback()
        with conn.begin():
            assert conn.execute(sa.select(sa.func.count()).select_from(mt_messages)).scalar_one() == 0
            assert conn.execute(sa.select(sa.func.count()).select_from(mt_parts)).scalar_one() == 0


def test_outside_a_transaction_it_begins_one_the_caller_commits(engine: sa.Engine) -> None:
    """Like Connection.execute's autobegin: what the caller commits stays, on either database."""
    with engine.connect() as conn:
        _subscriber(conn, "+304")
        conn.commit()
    with engine.connect() as conn:
        assert _ID_OF.scalar(conn, {"b_msisdn": "+304"}) is not None


def test_errors_are_sqlalchemys_classes(engine: sa.Engine) -> None:
    """A duplicate key raises sa.exc.IntegrityError, as Connection.execute would."""
    with engine.connect() as conn:
        with conn.begin():
            _subscriber(conn, "+305")
        with pytest.raises(sa.exc.IntegrityError) as raised, conn.begin():
            _subscriber(conn, "+305")
        assert isinstance(raised.value, sa.exc.DBAPIError)
        assert not raised.value.connection_invalidated


def test_an_in_list_expanded_at_run_time_is_refused(engine: sa.Engine) -> None:
    """A list not named as the expanding one would need compiling per length: refused, with the reason."""
    expanding = Prepared(sa.select(subscribers.c.id).where(subscribers.c.msisdn.in_(["+301", "+302"])))
    with engine.begin() as conn, pytest.raises(ValueError, match="IN lists"):
        expanding.all(conn, {})


def test_a_missing_parameter_is_refused_before_the_database_sees_it(engine: sa.Engine) -> None:
    """No silent NULL: a parameter the statement needs and the caller left out raises KeyError."""
    with engine.begin() as conn, pytest.raises(KeyError):
        _NEW_SUBSCRIBER.insert_id(conn, {"msisdn": "+306", "created_at": 1.0})


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8, unique=True))
def test_values_round_trip_like_core(texts: list[str]) -> None:
    """Whatever text goes in through a Prepared insert comes back unchanged through Core."""
    engine = sa.create_engine("sqlite://")
    subscribers.create(engine)
    with engine.begin() as conn:
        ids = [_subscriber(conn, text) for text in texts]
        rows = dict(conn.execute(sa.select(subscribers.c.id, subscribers.c.msisdn)).all())
    assert [rows[i] for i in ids] == texts


_SEEN_AMONG = Prepared(
    sa.select(subscribers.c.msisdn)
    .where(subscribers.c.id.in_(sa.bindparam("ids", expanding=True)), subscribers.c.last_seen_at >= sa.bindparam("since"))
    .order_by(subscribers.c.msisdn),
    expanding="ids",
)


def test_an_expanding_list_selects_what_core_selects_at_every_length(engine: sa.Engine) -> None:
    """Lists of each length up to past two powers of two, with repeats and misses, on either database."""
    with engine.begin() as conn:
        ids = [_subscriber(conn, f"+31{n:02}", at=float(n)) for n in range(20)]
        core = _SEEN_AMONG.stmt
        for length in range(1, 19):
            wanted = ids[:length] + ids[:2] + [-1]
            expected = list(conn.execute(core, {"ids": wanted, "since": 3.0}).scalars())
            assert [row.msisdn for row in _SEEN_AMONG.all(conn, {"ids": wanted, "since": 3.0})] == expected


def test_an_expanding_update_claims_each_row_once(engine: sa.Engine) -> None:
    """Padding repeats the last value: a row it names twice is still changed once."""
    claim = Prepared(
        sa.update(subscribers)
        .where(subscribers.c.id.in_(sa.bindparam("ids", expanding=True)), subscribers.c.last_seen_at < 100.0)
        .values(last_seen_at=100.0)
        .returning(subscribers.c.id),
        expanding="ids",
    )
    with engine.begin() as conn:
        ids = [_subscriber(conn, f"+32{n}") for n in range(5)]
        assert sorted(row.id for row in claim.all(conn, {"ids": ids[:3]})) == ids[:3]
        assert sorted(row.id for row in claim.all(conn, {"ids": ids})) == ids[3:]
        assert claim.all(conn, {"ids": ids}) == []


def test_an_empty_expanding_list_is_refused(engine: sa.Engine) -> None:
    """An empty IN list would need SQL of its own; callers skip the query instead."""
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="empty"):
            _SEEN_AMONG.all(conn, {"ids": [], "since": 0.0})
        with pytest.raises(ValueError, match="per row"):
            _SEEN_AMONG.many(conn, [{"ids": [1], "since": 0.0}])


@settings(max_examples=60, deadline=None)
@given(
    seen=st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=12),
    picks=st.lists(st.integers(min_value=-2, max_value=14), min_size=1, max_size=40),
    since=st.floats(min_value=0, max_value=10, allow_nan=False),
)
def test_expanding_lists_agree_with_core(seen: list[float], picks: list[int], since: float) -> None:
    """Any list (repeats, misses, any length) selects exactly what Core's expanding IN selects."""
    engine = sa.create_engine("sqlite://")
    subscribers.create(engine)
    with engine.begin() as conn:
        ids = [_subscriber(conn, f"+33{n}", at=at) for n, at in enumerate(seen)]
        wanted = [ids[pick] if 0 <= pick < len(ids) else 10_000 + pick for pick in picks]
        expected = list(conn.execute(_SEEN_AMONG.stmt, {"ids": wanted, "since": since}).scalars())
        assert [row.msisdn for row in _SEEN_AMONG.all(conn, {"ids": wanted, "since": since})] == expected


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.sampled_from("abcdefgh"), max_size=10),
    values=st.dictionaries(st.sampled_from("abcdefghij"), st.integers(), max_size=10),
)
def test_parameters_are_taken_in_placeholder_order_or_refused(names: list[str], values: dict[str, int]) -> None:
    """In placeholder order (a name may repeat) or by name, exactly what was asked; KeyError for a name left out."""
    positional, named = _taker(tuple(names), ()), _taker(None, tuple(dict.fromkeys(names)))
    if all(name in values for name in names):
        assert list(positional(values)) == [values[name] for name in names]
        assert named(values) == {name: values[name] for name in names}
    else:
        with pytest.raises(KeyError):
            positional(values)
        with pytest.raises(KeyError):
            named(values)
