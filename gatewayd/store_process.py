"""``python -m gatewayd.store_process``: the store writer's own process, started by the gateway.

It logs as the gateway does (the same masking, to the same stdout) and then serves the
gateway's batches (:func:`profile_store.writer_process.serve`) until the gateway closes
its socket.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

__all__ = ["command", "main"]


def command(log_level: str, log_format: str) -> list[str]:
    """The command that starts the writer process with this logging."""
    return [sys.executable, "-m", "gatewayd.store_process", "--log-level", log_level, "--log-format", log_format]


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments :func:`command` and the gateway give, then serve."""
    from gatewayd.logging import configure_logging
    from gatewayd.runtime import tune_gc
    from profile_store.writer_process import serve

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="auto")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--poke-fd", type=int, required=True)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    tune_gc()
    serve(args.fd, args.poke_fd, configure_logging)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
