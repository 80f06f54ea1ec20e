"""Store fixtures shared by every test that needs a database: SQLite always, PostgreSQL when reachable.

PostgreSQL is used when ``GATEWAYD_TEST_PG_URL`` is set or a server answers on
127.0.0.1:5432 (database ``test``); each test gets a schema of its own, dropped afterwards.
Elsewhere the PostgreSQL variants skip with the reason.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
import trio

from profile_store.db import Store, make_engine, normalise_url
from profile_store.schema import metadata

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_base_url() -> str | None:
    """The PostgreSQL URL to test against, or None when no server is reachable."""
    url = os.environ.get("GATEWAYD_TEST_PG_URL")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
    except OSError:
        return None
    try:
        engine = make_engine(DEFAULT_PG_URL)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.DBAPIError:
        return None
    return DEFAULT_PG_URL


_PG = pg_base_url()


def _pg_schema_url(base: str, schema: str) -> str:
    url = sa.engine.make_url(normalise_url(base))
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL: a SQLite file, or a fresh PostgreSQL schema (skipped without a server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gatewayd.db'}"
        return
    if _PG is None:
        pytest.skip("no PostgreSQL reachable (set GATEWAYD_TEST_PG_URL or run one on 127.0.0.1:5432)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(_PG)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _pg_schema_url(_PG, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    """An engine on ``store_url`` with every table created, for tests that run units directly."""
    e = make_engine(store_url)
    metadata.create_all(e)
    yield e
    e.dispose()


@pytest.fixture
async def store(store_url: str, nursery: trio.Nursery) -> AsyncIterator[Store]:
    """A Store on ``store_url`` with every table created and its writer running."""
    s = Store.open(store_url)
    metadata.create_all(s.engine)
    await nursery.start(s.run_writer)
    yield s
    await s.aclose()
