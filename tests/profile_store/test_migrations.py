"""Schema migrations: they build exactly schema.py, on SQLite and PostgreSQL, and the daemon's checks and the ``db`` commands."""

from __future__ import annotations

import contextlib
import re
import shutil
import textwrap
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gatewayd.cli import main
from profile_store import migrate
from profile_store.db import StoreUnavailable, make_engine
from profile_store.migrate import (
    SchemaAhead,
    SchemaBehind,
    alembic_config,
    check_schema,
    current_revision,
    head_revision,
    upgrade,
)
from profile_store.schema import metadata, subscribers

#: Nothing listens on port 1, so connecting fails at once.
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/test"


def _with_engine(url: str, fn: Any) -> Any:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return fn(conn)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _expression_indexes_unreflected(conn: sa.Connection) -> Iterator[None]:
    """Silence SQLite's warnings that expression-based indexes (``coupons (campaign_id, upper(code))``)
    cannot be reflected, so Alembic cannot compare them: _index_definitions checks them instead."""
    with warnings.catch_warnings():
        if conn.dialect.name == "sqlite":
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", sa.exc.SAWarning)
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index", UserWarning)
        yield


def _compare(conn: sa.Connection) -> list[Any]:
    with _expression_indexes_unreflected(conn):
        return compare_metadata(MigrationContext.configure(conn), metadata)  # type: ignore[no-any-return]


def _differences(url: str) -> list[Any]:
    return _with_engine(url, _compare)  # type: ignore[no-any-return]


def _table_names(url: str) -> set[str]:
    return _with_engine(url, lambda conn: set(sa.inspect(conn).get_table_names()))  # type: ignore[no-any-return]


def _index_names(conn: sa.Connection, inspector: sa.Inspector, table: str) -> set[str]:
    if conn.dialect.name == "sqlite":
        # From the catalog: reflection skips expression-based indexes. Those behind a primary
        # key or unique constraint (sqlite_autoindex_*) have no SQL.
        rows = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
        )
        return set(rows.scalars())
    # PostgreSQL also lists the index behind each unique constraint.
    return {ix["name"] for ix in inspector.get_indexes(table) if not ix.get("duplicates_constraint")}


def _names_in_database(conn: sa.Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(conn)
    names: dict[str, set[str]] = {}
    with _expression_indexes_unreflected(conn):
        for table in metadata.sorted_tables:
            t = table.name
            names[t] = {
                f"pk {inspector.get_pk_constraint(t)['name']}",
                *(f"fk {fk['name']}" for fk in inspector.get_foreign_keys(t)),
                *(f"uq {uq['name']}" for uq in inspector.get_unique_constraints(t)),
                *(f"ck {ck['name']}" for ck in inspector.get_check_constraints(t)),
                *(f"ix {name}" for name in _index_names(conn, inspector, t)),
            }
    return names


def _index_definitions(conn: sa.Connection) -> dict[str, str]:
    """Every index of the current schema as the database itself prints it, by name.

    Unlike Alembic's comparison this covers the WHERE of partial indexes and, on SQLite,
    expression-based ones.
    """
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND sql IS NOT NULL AND tbl_name != 'alembic_version'"
        )
        return {name: " ".join(sql.split()) for name, sql in rows}
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    rows = conn.exec_driver_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename != 'alembic_version'"
    )
    return {name: definition.replace(f" ON {schema}.", " ON ") for name, definition in rows}


def _index_definitions_of_the_schema_module(url: str, tmp_path: Path) -> dict[str, str]:
    """What ``metadata.create_all`` gives on the same kind of database (nothing of it is kept)."""
    if url.startswith("sqlite"):
        reference = f"sqlite:///{tmp_path / 'create_all.db'}"
        engine = make_engine(reference)
        try:
            metadata.create_all(engine)
            with engine.connect() as conn:
                return _index_definitions(conn)
        finally:
            engine.dispose()
    engine = make_engine(url)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            schema = f"ref_{uuid.uuid4().hex[:12]}"
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            conn.exec_driver_sql(f'SET LOCAL search_path = "{schema}"')
            metadata.create_all(conn)
            definitions = _index_definitions(conn)
            transaction.rollback()
            return definitions
    finally:
        engine.dispose()


def _names_in_metadata() -> dict[str, set[str]]:
    kinds = {
        sa.PrimaryKeyConstraint: "pk",
        sa.ForeignKeyConstraint: "fk",
        sa.UniqueConstraint: "uq",
        sa.CheckConstraint: "ck",
    }
    return {
        table.name: {f"{kinds[type(c)]} {c.name}" for c in table.constraints} | {f"ix {ix.name}" for ix in table.indexes}
        for table in metadata.sorted_tables
    }


def _write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "gatewayd.toml"
    path.write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    return path


# --- the migrations agree with schema.py --------------------------------------------------------


def test_migrating_an_empty_database_gives_exactly_the_schema_module(store_url: str) -> None:
    """After upgrading an empty database, Alembic finds no difference from profile_store.schema.metadata."""
    upgrade(store_url)
    assert _table_names(store_url) == set(metadata.tables) | {"alembic_version"}
    assert _differences(store_url) == []
    assert current_revision(store_url) == head_revision()


def test_constraints_and_indexes_carry_the_conventional_names(store_url: str) -> None:
    """Every primary key, foreign key, unique and check constraint and index has the name schema.py's convention gives it."""
    upgrade(store_url)
    assert _with_engine(store_url, _names_in_database) == _names_in_metadata()


def test_indexes_are_defined_exactly_as_in_the_schema_module(store_url: str, tmp_path: Path) -> None:
    """The migrated database's indexes, as the database prints them (columns, expressions, partial
    WHERE), are those metadata.create_all makes: what Alembic's comparison cannot see agrees too."""
    upgrade(store_url)
    migrated = _with_engine(store_url, _index_definitions)
    assert migrated == _index_definitions_of_the_schema_module(store_url, tmp_path)
    assert "ix_coupons_campaign_id_upper_code" in migrated and "ix_coupons_campaign_id_id_unclaimed" in migrated


def test_alembic_version_lands_in_the_urls_schema(store_url: str) -> None:
    """On PostgreSQL the version table is created in the schema the URL's search_path names, next to the tables."""
    upgrade(store_url)

    def where(conn: sa.Connection) -> tuple[str, set[str]]:
        if conn.dialect.name != "postgresql":
            return "main", {"main"}
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        rows = conn.execute(
            sa.text(
                "SELECT table_schema FROM information_schema.tables"
                " WHERE table_name IN ('alembic_version', 'subscribers') AND table_schema = :s"
            ),
            {"s": schema},
        )
        return schema, {row[0] for row in rows}

    schema, found = _with_engine(store_url, where)
    assert found == {schema}
    if "search_path" in store_url:
        assert re.search(rf"search_path(=|%3D){schema}", store_url)


def test_upgrade_is_idempotent_and_keeps_the_data(store_url: str) -> None:
    """Upgrading a current database again changes nothing and keeps its rows."""
    upgrade(store_url)
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(subscribers).values(msisdn="+447700900123", created_at=1.0, last_seen_at=1.0))
        upgrade(store_url)
        with engine.connect() as conn:
            assert conn.execute(sa.select(subscribers.c.msisdn)).scalars().all() == ["+447700900123"]
    finally:
        engine.dispose()
    assert current_revision(store_url) == head_revision()


def test_002_keeps_the_mos_stored_under_001(store_url: str) -> None:
    """Upgrading from 001 rebuilds mo_messages with its rows, which reach no campaign yet."""
    upgrade(store_url, "001")

    def store_one(conn: sa.Connection) -> None:
        conn.exec_driver_sql(
            "INSERT INTO subscribers (msisdn, created_at, last_seen_at) VALUES ('+447700900123', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO mo_messages (smsc, subscriber_id, short_code, text, data_coding, parts, complete,"
            " received_at, stored_at, status) VALUES ('op', 1, '4160', 'VOTE GRE', 0, 1, true, 1, 1, 'stored')"
        )

    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            store_one(conn)
    finally:
        engine.dispose()
    upgrade(store_url)
    found = _with_engine(store_url, lambda conn: conn.exec_driver_sql("SELECT text, campaign_id FROM mo_messages").all())
    assert found == [("VOTE GRE", None)]
    assert _differences(store_url) == []


def test_db_upgrade_from_the_previous_revision_keeps_the_rows(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gatewayd db upgrade` takes a database at the revision before head to head with its rows
    (005 only changes indexes), the result is schema.py, index definitions included; downgrading
    one step goes back with the rows."""
    head = head_revision()
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(previous, str)
    upgrade(store_url, previous)

    def fill(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO subscribers (msisdn, created_at, last_seen_at) VALUES ('+447700900123', 1, 1)")
        conn.exec_driver_sql(
            "INSERT INTO campaigns (name, owner, module, short_code, created_at, updated_at)"
            " VALUES ('promo', 'Acme', 'coupon', '4160', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO coupons (campaign_id, code, subscriber_id, claimed_at)"
            " SELECT c.id, 'AbC', s.id, 2 FROM campaigns c, subscribers s"
            " UNION ALL SELECT c.id, 'DEF', NULL, NULL FROM campaigns c"
        )
        conn.exec_driver_sql(
            "INSERT INTO sessions (short_code, subscriber_id, campaign_id, expires_at)"
            " SELECT '4160', s.id, c.id, 100 FROM campaigns c, subscribers s"
        )

    def rows(conn: sa.Connection) -> list[Any]:
        return [
            *conn.exec_driver_sql("SELECT code, claimed_at FROM coupons ORDER BY code").all(),
            *conn.exec_driver_sql("SELECT short_code, expires_at FROM sessions").all(),
        ]

    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            fill(conn)
    finally:
        engine.dispose()
    before = _with_engine(store_url, rows)
    assert len(before) == 3

    config = _write_config(tmp_path, store_url)
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert f"schema '{previous}' -> '{head}'" in capsys.readouterr().out
    assert _differences(store_url) == []
    assert _with_engine(store_url, _index_definitions) == _index_definitions_of_the_schema_module(store_url, tmp_path)
    assert _with_engine(store_url, rows) == before

    command.downgrade(alembic_config(store_url), previous)
    assert current_revision(store_url) == previous
    assert _with_engine(store_url, rows) == before
    upgrade(store_url)
    assert _differences(store_url) == []


def test_downgrade_to_base_then_upgrade_again(store_url: str) -> None:
    """Downgrading to base drops every table; upgrading again rebuilds the same schema."""
    upgrade(store_url)
    command.downgrade(alembic_config(store_url), "base")
    assert current_revision(store_url) is None
    assert _table_names(store_url) == {"alembic_version"}
    upgrade(store_url)
    assert _differences(store_url) == []


def test_migrations_run_on_a_connection_given_in_the_config(store_url: str) -> None:
    """A connection put in config.attributes['connection'] is used as is, inside the caller's transaction."""
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    assert current_revision(store_url) == head_revision()
    assert _differences(store_url) == []


def test_revisions_are_numbered_in_one_line() -> None:
    """Revisions are '001', '002', ..., each revising the one before, in files named after them."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [f"{n:03d}" for n in range(1, len(revisions) + 1)]
    assert [r.down_revision for r in revisions] == [None] + [r.revision for r in revisions[:-1]]
    for r in revisions:
        assert Path(r.path).name.startswith(f"{r.revision}_")
        assert r.module.__doc__ and r.module.__doc__.strip()
    assert head_revision() == revisions[-1].revision
    assert (migrate.MIGRATIONS_DIR / "script.py.mako").is_file()


def _scripts_with(tmp_path: Path, extra: dict[str, str]) -> Path:
    """A copy of the migrations with ``extra`` revision files added to versions/."""
    where = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, where, ignore=shutil.ignore_patterns("__pycache__"))
    for name, source in extra.items():
        (where / "versions" / name).write_text(textwrap.dedent(source), encoding="utf-8")
    return where


_BATCH_REVISION = """
    \"\"\"Test revision: rebuild (move and copy) a table others refer to.\"\"\"
    import sqlalchemy as sa
    from alembic import op

    revision = "901"
    down_revision = "HEAD"

    def _recreate() -> str:
        # Move and copy on SQLite even where ALTER would do; PostgreSQL just ALTERs.
        return "always" if op.get_bind().dialect.name == "sqlite" else "auto"

    def upgrade() -> None:
        with op.batch_alter_table("subscribers", recreate=_recreate()) as batch:
            batch.add_column(sa.Column("note", sa.Text(), nullable=True))

    def downgrade() -> None:
        with op.batch_alter_table("subscribers", recreate=_recreate()) as batch:
            batch.drop_column("note")
"""

_FAILING_REVISION = """
    \"\"\"Test revision: create a table, then fail.\"\"\"
    import sqlalchemy as sa
    from alembic import op

    revision = "902"
    down_revision = "901"

    def upgrade() -> None:
        op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
        raise RuntimeError("revision 902 fails")

    def downgrade() -> None:
        pass
"""


def test_later_revisions_rebuild_referenced_tables_and_fail_atomically(store_url: str, tmp_path: Path) -> None:
    """A batch rebuild of a table with referring rows succeeds, and a failing revision leaves nothing behind."""
    upgrade(store_url)
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            sid = conn.execute(
                sa.insert(subscribers).values(msisdn="+447700900123", created_at=1.0, last_seen_at=1.0).returning(subscribers.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(metadata.tables["mt_messages"]).values(
                    subscriber_id=sid, source_addr="4160", text="hi", concat_ref=1, parts_total=1, priority=0,
                    registered_delivery=False, status="queued", attempts=0, next_attempt_at=0.0, created_at=0.0, updated_at=0.0,
                )
            )
    finally:
        engine.dispose()
    config = alembic_config(store_url)
    head = head_revision()
    scripts = _scripts_with(
        tmp_path,
        {"901_note.py": _BATCH_REVISION.replace("HEAD", head), "902_fails.py": _FAILING_REVISION},
    )
    config.set_main_option("script_location", str(scripts))
    command.upgrade(config, "901")
    assert current_revision(store_url) == "901"
    with pytest.raises(RuntimeError, match="revision 902 fails"):
        command.upgrade(config, "902")
    assert current_revision(store_url) == "901"
    assert "half_done" not in _table_names(store_url)

    def rows(conn: sa.Connection) -> tuple[list[Any], list[Any], bool]:
        fk_on = conn.dialect.name != "sqlite" or conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        return (
            conn.exec_driver_sql("SELECT msisdn, note FROM subscribers").all(),
            conn.exec_driver_sql("SELECT subscriber_id FROM mt_messages").scalars().all(),
            fk_on,
        )

    assert _with_engine(store_url, rows) == ([("+447700900123", None)], [sid], True)
    command.downgrade(config, head)
    assert _differences(store_url) == []


# --- refusing to run on the wrong schema ---------------------------------------------------------


def test_check_schema_wants_an_upgrade_of_an_empty_database(store_url: str) -> None:
    """check_schema raises SchemaBehind on an empty database, naming the command to run, and passes once upgraded."""
    with pytest.raises(SchemaBehind) as caught:
        check_schema(store_url, "/etc/gatewayd/gatewayd.toml")
    assert caught.value.current is None and caught.value.head == head_revision()
    assert str(caught.value) == (
        f"the database schema is at 'none', this gatewayd needs '{head_revision()}':"
        " run `gatewayd db upgrade --config /etc/gatewayd/gatewayd.toml`"
    )
    upgrade(store_url)
    check_schema(store_url)


def test_schema_behind_without_a_config_path_advises_the_plain_command() -> None:
    """Without a configuration path the advice is plain `gatewayd db upgrade`."""
    assert str(SchemaBehind("001", "002")).endswith("run `gatewayd db upgrade`")


def test_a_schema_from_a_newer_gatewayd_is_refused(store_url: str) -> None:
    """A revision this code does not know makes check_schema and upgrade raise SchemaAhead."""
    upgrade(store_url)
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '999'")
    finally:
        engine.dispose()
    with pytest.raises(SchemaAhead, match="'999'.*newer gatewayd"):
        check_schema(store_url)
    with pytest.raises(SchemaAhead):
        upgrade(store_url)


def test_an_unreachable_database_is_store_unavailable() -> None:
    """Reading the revision of a database that refuses connections raises StoreUnavailable."""
    with pytest.raises(StoreUnavailable, match="cannot reach the database"):
        current_revision(UNREACHABLE_URL)


# --- gatewayd db ---------------------------------------------------------------------------------


def test_db_upgrade_brings_the_configured_database_to_head(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gatewayd db upgrade --config` migrates [store] url, prints from and to, and exits 0 (again 0 when current)."""
    config = _write_config(tmp_path, store_url)
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert f"schema 'none' -> '{head_revision()}'" in capsys.readouterr().out
    check_schema(store_url)
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert "already up to date" in capsys.readouterr().out


def test_db_current_exit_codes(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gatewayd db current` exits 1 with the advice while the schema is behind, 0 once it is current."""
    config = _write_config(tmp_path, store_url)
    assert main(["db", "current", "--config", str(config)]) == 1
    assert f"run `gatewayd db upgrade --config {config}`" in capsys.readouterr().out
    upgrade(store_url)
    assert main(["db", "current", "--config", str(config)]) == 0
    assert f"schema '{head_revision()}' (up to date)" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["upgrade", "current"])
def test_db_commands_fail_cleanly_on_an_unreachable_database(action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the database down, `gatewayd db upgrade` and `db current` exit 1 with one clear line, no traceback."""
    config = _write_config(tmp_path, UNREACHABLE_URL)
    assert main(["db", action, "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the database" in err and "Traceback" not in err
