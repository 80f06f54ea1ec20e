"""Fixtures for the trio layer: a simulator reachable through in-memory streams."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

from gatewayd.binds import Connector
from gatewayd.config import SmscConfig
from gatewayd.simulator.smsc import SmscSimulator
from gatewayd.smpp.session import SessionConfig


def smsc_config(**overrides: Any) -> SmscConfig:
    """An SMSC configuration matching the :func:`simulator` fixture's credentials."""
    values: dict[str, Any] = dict(name="op", host="smsc.test", port=2775, system_id="gw", password="pw", short_codes=("4160",))
    values.update(overrides)
    return SmscConfig(**values)


def memory_connector(simulator: SmscSimulator, nursery: trio.Nursery) -> Connector:
    """A connector that hands the far end of an in-memory stream pair to ``simulator``."""

    async def connect(host: str, port: int) -> trio.abc.Stream:
        ours, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(simulator.handle_stream, theirs)
        return ours

    return connect


@pytest.fixture
async def simulator(nursery: trio.Nursery) -> SmscSimulator:
    """A running simulator (receipts on, window 100) that accepts system_id 'gw', password 'pw'."""
    sim = SmscSimulator(system_id="gw", password="pw", session_config=SessionConfig(window=100))
    await nursery.start(sim.run)
    return sim


@attrs.define
class Collected:
    """What an accept hook saw."""

    messages: list[Any] = attrs.Factory(list)
    arrived: trio.Event = attrs.Factory(trio.Event)
    want: int = 1

    async def accept(self, message: Any) -> int:
        self.messages.append(message)
        if len(self.messages) >= self.want:
            self.arrived.set()
        return 0
