"""The gateway's SMPP stack without the store: binds, transport, ingest, acknowledge at once.

Used by ``bench/echo.py`` to measure what the transport alone can carry, so that a change in
the store never hides a regression in the protocol path (bench/pipeline.py measures the
durable path). Not a way to run the gateway: nothing is stored.

    python bench/ack_only_gateway.py HOST PORT SYSTEM_ID PASSWORD WINDOW [LOG_LEVEL]
"""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatewayd.binds import SmscLink  # noqa: E402
from gatewayd.config import SmscConfig  # noqa: E402
from gatewayd.ingest import Ingest  # noqa: E402
from gatewayd.logging import configure_logging  # noqa: E402


async def main(host: str, port: int, system_id: str, password: str, window: int) -> None:
    cfg = SmscConfig(name="bench", host=host, port=port, system_id=system_id, password=password, short_codes=("4160",), window=window)
    ingest = Ingest()
    link = SmscLink(cfg, functools.partial(ingest.handle, smsc=cfg.name))
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            async for _ in signals:
                await link.stop(5.0)
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    configure_logging(sys.argv[6] if len(sys.argv) > 6 else "info", "json")
    host, port, system_id, password, window = sys.argv[1:6]
    trio.run(main, host, int(port), system_id, password, int(window))
