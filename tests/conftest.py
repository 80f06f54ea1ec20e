"""Shared test configuration: Hypothesis profiles suited to trio tests."""

from __future__ import annotations

import os

import pytest

from hypothesis import HealthCheck, settings

# Trio tests run each example inside the event loop, and CI machines are slow and shared:
# a per-example deadline would only make the suite flaky.
settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("GATEWAYD_HYPOTHESIS_PROFILE", "default"))

pytest_plugins = ["tests.profile_store_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: needs a PostgreSQL server (skipped when none is reachable)")
