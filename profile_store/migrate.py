"""Bring a database's schema to what this gatewayd needs, and refuse to run on any other.

The schema only changes through the Alembic revisions in ``profile_store/migrations``
(numbered: ``'001'``, then ``'002'`` revising it, ...). Alembic is configured here in code,
so neither the daemon nor ``gatewayd db`` needs an ``alembic.ini``.

Every function is synchronous and opens its own short-lived engine: the daemon calls them
on a worker thread before it starts the store.

To draft a new revision, run Alembic's own command on this configuration and review the
result by hand (autogenerate is a draft, never the answer)::

    from alembic import command
    command.revision(alembic_config(url), "what changes", autogenerate=True, rev_id="002")
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from profile_store.db import StoreError, StoreUnavailable, make_engine, normalise_url

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaMismatch",
    "SchemaBehind",
    "SchemaAhead",
    "alembic_config",
    "head_revision",
    "current_revision",
    "upgrade",
    "check_schema",
    "display_url",
]

#: The installed Alembic script directory (env.py, script.py.mako, versions/).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _name(revision: str | None) -> str:
    return "none" if revision is None else revision


def _upgrade_command(config_path: str | os.PathLike[str] | None) -> str:
    if config_path is None:
        return "gatewayd db upgrade"
    return f"gatewayd db upgrade --config {os.fspath(config_path)}"


class SchemaMismatch(StoreError):
    """The database's schema revision is not the one this gatewayd was built for.

    Attributes:
        current: the database's revision (None: no schema at all).
        head: the revision this gatewayd needs.
        config_path: the configuration file the advice in the message names, if any.
    """

    def __init__(self, current: str | None, head: str, config_path: str | os.PathLike[str] | None = None) -> None:
        self.current = current
        self.head = head
        self.config_path = config_path
        super().__init__(self._message())

    def _message(self) -> str:
        raise NotImplementedError


class SchemaBehind(SchemaMismatch):
    """The database is older than this gatewayd (or empty): it must be upgraded first."""

    def _message(self) -> str:
        return (
            f"the database schema is at '{_name(self.current)}', this gatewayd needs '{self.head}':"
            f" run `{_upgrade_command(self.config_path)}`"
        )


class SchemaAhead(SchemaMismatch):
    """The database has a revision this gatewayd does not know: a newer gatewayd migrated it."""

    def _message(self) -> str:
        return (
            f"the database schema is at '{_name(self.current)}', which this gatewayd (schema '{self.head}')"
            " does not know: a newer gatewayd has upgraded it; run that version, or restore a backup"
            " taken before the upgrade"
        )


def display_url(url: str) -> str:
    """``url`` with any password hidden, for messages and logs."""
    try:
        return sa.engine.make_url(normalise_url(url)).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid database URL>"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the store, without any ``alembic.ini``.

    Args:
        url: the database to migrate. Tests may instead put an open connection in
            ``config.attributes["connection"]``.

    Returns:
        A config usable with :mod:`alembic.command`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # New revision files are named like the existing ones: 002_what_changes.py.
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        # An attribute, not the sqlalchemy.url option: options go through ConfigParser
        # interpolation, which a '%' in a URL-encoded password would break.
        config.attributes["url"] = url
    return config


@functools.lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    # Loading the revisions imports every file in versions/; they never change at run time.
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The schema revision this gatewayd needs (the newest revision it ships)."""
    head = _script().get_current_head()
    assert head is not None, "profile_store/migrations/versions has no revision"
    return head


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in _script().walk_revisions())


def _engine(url: str) -> Engine:
    try:
        return make_engine(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"cannot use the database URL {display_url(url)}: {exc}") from exc


def current_revision(url: str) -> str | None:
    """The database's schema revision.

    Args:
        url: the database.

    Returns:
        The revision, or None when the database has no schema yet.

    Raises:
        StoreUnavailable: the database could not be reached.
        StoreError: the URL is unusable.
    """
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa.exc.DBAPIError as exc:
        raise StoreUnavailable(f"cannot reach the database {display_url(url)}: {exc.orig}") from exc
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database to ``revision``; nothing happens when it is there already.

    The whole upgrade is one transaction; concurrent upgrades of one database take turns.

    Args:
        url: the database.
        revision: the target, ``"head"`` (this gatewayd's schema) by default.

    Raises:
        SchemaAhead: the database was migrated by a newer gatewayd.
        StoreUnavailable: the database could not be reached.
        StoreError: the URL is unusable.
    """
    current = current_revision(url)
    if current is not None and not _known(current):
        raise SchemaAhead(current, head_revision())
    try:
        command.upgrade(alembic_config(url), revision)
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(f"upgrading the database {display_url(url)} failed: {exc.orig}") from exc


def check_schema(url: str, config_path: str | os.PathLike[str] | None = None) -> None:
    """Make sure the database's schema is exactly the one this gatewayd needs.

    Args:
        url: the database.
        config_path: the configuration file, named in the advice of the errors.

    Raises:
        SchemaBehind: the database is empty or older: run ``gatewayd db upgrade``.
        SchemaAhead: a newer gatewayd has migrated it.
        StoreUnavailable: the database could not be reached.
        StoreError: the URL is unusable.
    """
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return
    if current is None or _known(current):
        raise SchemaBehind(current, head, config_path)
    raise SchemaAhead(current, head, config_path)
