"""System-test fixtures: no gateway process outlives its test."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.system.harness import kill_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    kill_leftovers()
