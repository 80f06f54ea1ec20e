"""Alembic migrations of the store: the only way its schema changes.

Run them with :mod:`profile_store.migrate` (or ``gatewayd db upgrade``); no ``alembic.ini``
is needed. Revisions live in ``versions/`` as small numbered files (``001_messaging.py``,
then ``002_...`` revising ``'001'``), each with a docstring saying what it changes and why,
and both ``upgrade()`` and ``downgrade()``.
"""
