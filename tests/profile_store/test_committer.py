"""The committer: units of a function marked ``runs_together`` run as one call, and a call
that raises leaves each unit to fail or succeed alone."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from profile_store.committer import Committer, runs_together
from profile_store.db import make_engine
from profile_store.schema import metadata, subscribers


@attrs.define
class _Unit:
    fn: Any
    args: tuple[Any, ...]
    first: bool = True
    result: Any = None
    error: BaseException | None = None


#: The calls the together function was given, one list of msisdns per call.
GROUPS: list[list[str]] = []


def _insert_together(conn: sa.Connection, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[int]:
    GROUPS.append([args[0] for args, _ in calls])
    return [_insert.__wrapped__(conn, *args, **kwargs) for args, kwargs in calls]


def _plain_insert(conn: sa.Connection, msisdn: str, *, seen: float = 0.0) -> int:
    row = conn.execute(sa.insert(subscribers).values(msisdn=msisdn, created_at=0.0, last_seen_at=seen).returning(subscribers.c.id))
    return int(row.scalar_one())


@runs_together(_insert_together)
@functools.wraps(_plain_insert)
def _insert(conn: sa.Connection, msisdn: str, *, seen: float = 0.0) -> int:
    return _plain_insert(conn, msisdn, seen=seen)


@pytest.fixture
def committer(tmp_path: Any) -> Committer:
    engine = make_engine(f"sqlite:///{tmp_path}/c.db")
    metadata.create_all(engine)
    GROUPS.clear()
    return Committer(engine, cut_after=60.0, urgent=lambda: False)


def _numbers(committer: Committer) -> dict[int, tuple[str, float]]:
    with committer.engine.connect() as conn:
        return {row.id: (row.msisdn, row.last_seen_at) for row in conn.execute(sa.select(subscribers))}


def test_first_lane_units_of_a_function_run_as_one_call_in_their_order(committer: Committer) -> None:
    batch = [
        _Unit(_insert, ("+306900000001",)),
        _Unit(_plain_insert, ("+306900000002",)),
        _Unit(functools.partial(_insert, seen=5.0), ("+306900000003",)),
        _Unit(_insert, ("+306900000004",)),
        _Unit(_insert, ("+306900000005",), first=False),
    ]
    assert committer.commit(batch) == (5, 0)  # type: ignore[arg-type]
    # The bulk unit ran alone, through the function itself.
    assert GROUPS == [["+306900000001", "+306900000003", "+306900000004"]]
    numbers = _numbers(committer)
    assert {numbers[unit.result] for unit in batch} == {
        ("+306900000001", 0.0), ("+306900000002", 0.0), ("+306900000003", 5.0), ("+306900000004", 0.0), ("+306900000005", 0.0)
    }
    assert [numbers[unit.result][0] for unit in batch] == [f"+30690000000{n}" for n in range(1, 6)]


def test_bulk_units_of_a_function_run_as_one_call_apart_from_the_first_lane_ones(committer: Committer) -> None:
    batch = [
        _Unit(_insert, ("+306900000001",)),
        _Unit(_insert, ("+306900000002",)),
        _Unit(_insert, ("+306900000003",), first=False),
        _Unit(_plain_insert, ("+306900000004",), first=False),
        _Unit(_insert, ("+306900000005",), first=False),
    ]
    assert committer.commit(batch) == (5, 0)  # type: ignore[arg-type]
    assert GROUPS == [["+306900000001", "+306900000002"], ["+306900000003", "+306900000005"]]
    numbers = _numbers(committer)
    assert [numbers[unit.result][0] for unit in batch] == [f"+30690000000{n}" for n in range(1, 6)]


def test_a_batch_cut_short_is_never_cut_before_a_unit_that_ran_in_a_group(tmp_path: Any) -> None:
    """Past its time with a unit waiting, a batch stops at its next bulk unit, but not while a
    later unit already ran with its group: the units left for the next batch are exactly
    those after the cut, none of them written."""
    engine = make_engine(f"sqlite:///{tmp_path}/cut.db")
    metadata.create_all(engine)
    GROUPS.clear()
    committer = Committer(engine, cut_after=0.0, urgent=lambda: True)
    batch = [
        _Unit(_insert, ("+306900000001",), first=False),
        _Unit(_plain_insert, ("+306900000002",), first=False),
        _Unit(_insert, ("+306900000003",), first=False),
        _Unit(_plain_insert, ("+306900000004",), first=False),
        _Unit(_insert, ("+306900000005",), first=False),
    ]
    # The group of 1, 3 and 5 runs first, so nothing before 5 may be left over: all run.
    assert committer.commit(batch) == (5, 0)  # type: ignore[arg-type]
    batch = [
        _Unit(_insert, ("+306900000011",), first=False),
        _Unit(_plain_insert, ("+306900000012",), first=False),
        _Unit(_insert, ("+306900000013",), first=False),
        _Unit(_plain_insert, ("+306900000014",), first=False),
    ]
    assert committer.commit(batch) == (3, 0)  # type: ignore[arg-type]
    assert batch[3].result is None
    assert "+306900000014" not in {msisdn for msisdn, _ in _numbers(committer).values()}
    assert GROUPS[-1] == ["+306900000011", "+306900000013"]
    committer.drop_connection()
    engine.dispose()


def test_a_lone_unit_runs_through_the_function_itself(committer: Committer) -> None:
    batch = [_Unit(_insert, ("+306900000001",)), _Unit(_plain_insert, ("+306900000002",))]
    assert committer.commit(batch) == (2, 0)  # type: ignore[arg-type]
    assert GROUPS == []


def test_when_the_call_raises_each_unit_runs_alone_and_only_the_culprit_fails(committer: Committer) -> None:
    batch = [_Unit(_insert, (f"+30690000000{n}",)) for n in (1, 2, 1, 3)]
    assert committer.commit(batch) == (4, 1)  # type: ignore[arg-type]
    assert GROUPS == [["+306900000001", "+306900000002", "+306900000001", "+306900000003"]]
    assert isinstance(batch[2].error, sa.exc.IntegrityError) and batch[2].result is None
    numbers = _numbers(committer)
    assert [numbers[unit.result][0] for unit in batch if unit.error is None] == ["+306900000001", "+306900000002", "+306900000003"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=12), st.booleans())
def test_every_unit_gets_its_own_result_however_the_batch_mixes_them(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[tuple[bool, bool]], cut: bool
) -> None:
    """Whatever the mix, and whether or not the batch is cut short (past its time with a unit
    waiting): the units that ran are a prefix of the batch, each with its own result, and
    the others left no trace."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('mix')}/m.db")
    metadata.create_all(engine)
    committer = Committer(engine, cut_after=0.0 if cut else 60.0, urgent=lambda: cut)
    # First-lane units precede bulk ones in every batch the store forms.
    kinds = sorted(kinds, key=lambda kind: not kind[1])
    batch = [_Unit(_insert if together else _plain_insert, (f"+3069{n:08d}",), first=first) for n, (together, first) in enumerate(kinds)]
    ran, failed = committer.commit(batch)  # type: ignore[arg-type]
    assert failed == 0 and (ran == len(batch) or cut)
    numbers = _numbers(committer)
    assert [numbers[unit.result][0] for unit in batch[:ran]] == [unit.args[0] for unit in batch[:ran]]
    assert all(unit.result is None for unit in batch[ran:])
    assert len(numbers) == ran
    committer.drop_connection()
    engine.dispose()
