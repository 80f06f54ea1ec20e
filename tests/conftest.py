"""Shared test configuration: Hypothesis profiles suited to trio tests."""

from __future__ import annotations

import os

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
