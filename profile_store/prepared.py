"""Hot statements compiled once per dialect and run on the connection's DBAPI cursor.

``Connection.execute`` spends about 30 µs of Python per call (cache key, parameter
processing, execution context, result wrapping) around an insert that SQLite itself runs in
2 µs. The statements every MO, MT and receipt runs are built with SQLAlchemy Core like all
others, but a :class:`Prepared` compiles each one once per dialect and hands the SQL text and
its parameters to the DBAPI cursor of the same connection, inside the same transaction.

What is lost is what these statements do not use: type processors (their columns are
integers, floats, strings, booleans and bytes, which sqlite3 and psycopg bind natively),
IN lists expanded at run time (refused when compiled, except the one named ``expanding``:
it is compiled once per power-of-two length, the list padded with its last value), and
SQLAlchemy's execution events. Errors are wrapped in SQLAlchemy's exception classes as
``Connection.execute`` would, so callers catch
``sa.exc.IntegrityError`` or ``sa.exc.OperationalError`` either way, and a lost connection
is invalidated.
"""

from __future__ import annotations

import collections
import operator
import re
import types
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

__all__ = ["Prepared", "first_inserted_id"]

_PYFORMAT = re.compile(r"%\((\w+)\)s")
_NO_PARAMETERS: Mapping[str, Any] = types.MappingProxyType({})


class _Compiled(NamedTuple):
    sql: str
    #: Parameter names in placeholder order (qmark/format), or None for named placeholders.
    positions: tuple[str, ...] | None
    #: Names the named placeholders use (pyformat/named).
    names: tuple[str, ...]
    #: Values bound in the statement itself (``.values(status="queued")``), by name.
    defaults: dict[str, Any]
    #: Whether the new primary key comes back in a row (else from the cursor's lastrowid).
    returns_id: bool
    #: The names the expanding list's values are bound to, in list order.
    expanded: tuple[str, ...] = ()
    #: The DBAPI parameters from the caller's mapping (defaults merged in already).
    take: Callable[[Mapping[str, Any]], Any] = dict


def _taker(positions: tuple[str, ...] | None, names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    """A function from the caller's mapping to the DBAPI parameters: a tuple in placeholder
    order, or a mapping of exactly the names used; KeyError for a name left out."""
    if positions is None:
        return lambda params: {name: params[name] for name in names}
    if not positions:
        return lambda params: ()
    if len(positions) == 1:
        (only,) = positions
        return lambda params: (params[only],)
    return operator.itemgetter(*positions)


class Prepared:
    """A Core statement, compiled once per dialect, executed without SQLAlchemy's per-call work.

    Args:
        stmt: the statement; its bind parameters are the keys the callers pass.
        keys: for an INSERT without ``.values()``, the columns the callers pass.
        returning_id: an INSERT whose new primary key the caller wants (:meth:`insert_id`):
            SQLite answers with the cursor's lastrowid, PostgreSQL with ``RETURNING id``.
        expanding: the name of the one ``sa.bindparam(name, expanding=True)`` IN list whose
            values the callers pass as a non-empty sequence.
    """

    def __init__(
        self, stmt: Any, *, keys: Sequence[str] | None = None, returning_id: bool = False, expanding: str | None = None
    ) -> None:
        self.stmt = stmt
        self._keys = list(keys) if keys is not None else None
        self._returning_id = returning_id
        self._expanding = expanding
        #: By dialect name, or (dialect name, list length) with an expanding list.
        self._compiled: dict[Any, _Compiled] = {}
        self._row_types: dict[tuple[str, ...], type] = {}

    def _compile(self, dialect: Dialect, params: Mapping[str, Any] = _NO_PARAMETERS) -> _Compiled:
        length = 0
        key: Any = dialect.name
        if self._expanding is not None:
            length = len(params[self._expanding])
            if not length:
                raise ValueError(f"the IN list {self._expanding!r} is empty")
            length = 1 << (length - 1).bit_length()
            key = (dialect.name, length)
        found = self._compiled.get(key)
        if found is not None:
            return found
        stmt = self.stmt
        if self._returning_id and dialect.name != "sqlite":
            stmt = stmt.returning(*stmt.table.primary_key.columns)
        compiled = stmt.compile(dialect=dialect, column_keys=self._keys)
        sql = str(compiled)
        positions: tuple[str, ...] | None = tuple(compiled.positiontup or ()) if compiled.positional else None
        expanded: tuple[str, ...] = ()
        if length:
            # The list's values are their own positions, to find which name binds which.
            state = compiled.construct_expanded_state({**dict.fromkeys(compiled.binds), self._expanding: list(range(length))})
            sql = state.statement
            positions = tuple(state.positiontup) if positions is not None else None
            by_position = {value: name for name, value in state.parameters.items() if name not in compiled.binds}
            expanded = tuple(by_position[index] for index in range(length))
        if "POSTCOMPILE" in sql:
            raise ValueError("a Prepared statement cannot expand IN lists at run time; write constant lists as literal columns")
        names = () if positions is not None else tuple(dict.fromkeys(_PYFORMAT.findall(sql)))
        defaults = {}
        for name in positions if positions is not None else names:
            bind = compiled.binds.get(name)
            if bind is not None and not bind.required:
                defaults[name] = bind.effective_value
        found = _Compiled(
            sql, positions, names, defaults, self._returning_id and dialect.name != "sqlite", expanded, _taker(positions, names)
        )
        self._compiled[key] = found
        return found

    def _parameters(self, compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        if compiled.expanded:
            values = list(params[self._expanding])  # type: ignore[index]
            values += values[-1:] * (len(compiled.expanded) - len(values))
            params = {**params, **dict(zip(compiled.expanded, values))}
        if compiled.defaults:
            params = {**compiled.defaults, **params}
        return compiled.take(params)

    def _cursor(self, conn: Connection, compiled: _Compiled, parameters: Any, many: bool) -> Any:
        if not conn.in_transaction():
            conn.begin()
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            if many:
                cursor.executemany(compiled.sql, parameters)
            else:
                cursor.execute(compiled.sql, parameters)
        except conn.dialect.loaded_dbapi.Error as exc:
            invalidated = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
            if invalidated:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                compiled.sql,
                parameters,
                exc,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=invalidated,
                dialect=conn.dialect,
            ) from exc
        return cursor

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute once; the number of rows changed."""
        compiled = self._compile(conn.dialect, params)
        cursor = self._cursor(conn, compiled, self._parameters(compiled, params), many=False)
        if cursor.description is not None:
            cursor.fetchall()
        return int(cursor.rowcount)

    def many(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Execute once per parameter set, in one DBAPI ``executemany``."""
        batch = list(rows)
        if not batch:
            return
        if self._expanding is not None:
            raise ValueError("executemany cannot expand an IN list per row")
        compiled = self._compile(conn.dialect, batch[0])
        self._cursor(conn, compiled, [self._parameters(compiled, row) for row in batch], many=True)

    def insert_id(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute an INSERT built with ``returning_id``; the new row's primary key."""
        compiled = self._compile(conn.dialect, params)
        cursor = self._cursor(conn, compiled, self._parameters(compiled, params), many=False)
        if compiled.returns_id:
            return int(cursor.fetchone()[0])
        return int(cursor.lastrowid)

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row returned, or None when there is none."""
        compiled = self._compile(conn.dialect, params)
        cursor = self._cursor(conn, compiled, self._parameters(compiled, params), many=False)
        rows = cursor.fetchall()
        return rows[0][0] if rows else None

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row returned, as a named tuple (columns by name), or None."""
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row returned, as named tuples (columns by name)."""
        compiled = self._compile(conn.dialect, params)
        cursor = self._cursor(conn, compiled, self._parameters(compiled, params), many=False)
        rows = cursor.fetchall()
        if not rows:
            return []
        names = tuple(column[0] for column in cursor.description)
        row_type = self._row_types.get(names)
        if row_type is None:
            row_type = self._row_types[names] = collections.namedtuple("Row", names, rename=True)  # type: ignore[misc]
        return [row_type._make(row) for row in rows]


_LAST_ROWID = Prepared(sa.text("SELECT last_insert_rowid()"))


def first_inserted_id(conn: Connection, count: int) -> int:
    """On SQLite, the id of the first of the ``count`` rows the last ``executemany`` INSERT
    added to a table whose ids are rowids (no AUTOINCREMENT): one statement inserted them in
    order, under the write lock, each taking the next id after the last."""
    return int(_LAST_ROWID.scalar(conn, {})) - count + 1
