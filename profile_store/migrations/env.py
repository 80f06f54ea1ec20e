"""Alembic's environment for the store: what migrations connect to, and how.

:mod:`profile_store.migrate` configures Alembic in code (no ``alembic.ini``). The database
is, in order of preference:

* an open connection in ``config.attributes["connection"]``: migrations run on it as they
  are, inside the caller's transaction if one is open (tests use this to pick a connection
  or a PostgreSQL search_path);
* a URL in ``config.attributes["url"]`` or the ``sqlalchemy.url`` option: the engine comes
  from :func:`profile_store.db.make_engine`, so SQLite gets the same pragmas as the daemon,
  and the whole upgrade is one transaction.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from alembic import context
from sqlalchemy.engine import Connection

from profile_store.db import StoreError, make_engine, normalise_url
from profile_store.schema import metadata

config = context.config

#: What autogenerate and ``compare_metadata`` compare the database with.
target_metadata = metadata

#: Key of the PostgreSQL advisory lock taken while migrating; any constant shared by every
#: gatewayd version works.
PG_MIGRATION_LOCK = 0x67617465  # "gate"


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise StoreError("no database to migrate: pass a URL or a connection to the Alembic config")
    return normalise_url(str(url))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can hardly ALTER a table; batch operations copy it to a new one instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # make_engine issues an explicit BEGIN on SQLite, whose DDL is then transactional
        # like PostgreSQL's: a failing migration leaves nothing half done.
        transactional_ddl=True,
    )


@contextlib.contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Turn SQLite's foreign key enforcement off for the duration (the procedure SQLite documents).

    A batch operation rebuilds a table (create, copy, drop, rename); with enforcement on,
    dropping a table that other tables reference fails. The PRAGMA is ignored inside a
    transaction, so it goes straight to the driver before BEGIN; :func:`_check_foreign_keys`
    verifies the result before the commit instead.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise StoreError(f"the migration left rows referring to missing rows (table, rowid, parent): {broken[:5]}")


def run_migrations_offline() -> None:
    """Write the migrations' SQL out instead of running it (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on one of our own in one transaction."""
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection, _sqlite_foreign_keys_off(connection):
            # writer: BEGIN IMMEDIATE on SQLite, so two gatewayds upgrading at once take turns
            # instead of failing on a lock upgrade.
            connection.execution_options(writer=True)
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    # Likewise on PostgreSQL: the second one waits, then finds the schema current.
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
                _configure(connection)
                context.run_migrations()
                _check_foreign_keys(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
