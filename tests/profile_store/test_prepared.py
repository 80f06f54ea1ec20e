"""Prepared statements: the same results as Connection.execute, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from profile_store.prepared import Prepared
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
    """Such a statement would need compiling per list length; it is refused with the reason."""
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
