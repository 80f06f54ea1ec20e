"""The root of the daemon's exceptions.

Every error the gateway raises on purpose derives from :class:`GatewayError`, so the CLI can
tell an expected failure (bad configuration, unreachable store) from a bug and report the
former in one line without a traceback.
"""

from __future__ import annotations

__all__ = ["GatewayError"]


class GatewayError(Exception):
    """Root of every exception raised on purpose by :mod:`gatewayd`."""
