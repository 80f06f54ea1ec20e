"""Pure pacing arithmetic: MT rate caps, throttling penalties and reconnect backoff.

Nothing here sleeps or reads a clock: callers pass ``now`` and get back how long to wait,
so the same code is exact under trio's MockClock in tests.
"""

from __future__ import annotations

import random
from typing import Callable

import attrs

__all__ = ["TokenBucket", "Penalty", "Backoff"]


@attrs.define
class TokenBucket:
    """A rate cap: at most ``rate`` events per second on average, bursts up to ``burst``.

    Args:
        rate: events per second (> 0).
        burst: how many events may go back to back after a quiet spell (>= 1).
        now: the current time, to start full.
    """

    rate: float
    burst: float = 1.0
    now: float = 0.0
    _tokens: float = attrs.field(init=False)
    _stamp: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")
        self._tokens = self.burst
        self._stamp = self.now

    def reserve(self, now: float) -> float:
        """Take one token, possibly borrowed from the future.

        Returns:
            Seconds to wait before the event may happen (0.0 when a token was there).
        """
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@attrs.define
class Penalty:
    """How long to hold back after the peer said ESME_RTHROTTLED or ESME_RMSGQFUL.

    Each consecutive complaint doubles the pause, from ``initial`` up to ``maximum``; a
    success clears it.
    """

    initial: float = 0.5
    maximum: float = 30.0
    until: float = 0.0
    _next: float = attrs.field(init=False, default=0.0)

    def complain(self, now: float) -> float:
        """Record a throttling answer at ``now``; return the pause it imposes in seconds."""
        pause = self._next or self.initial
        self._next = min(self.maximum, pause * 2)
        self.until = max(self.until, now + pause)
        return pause

    def clear(self) -> None:
        """A request went through: forget earlier complaints."""
        self._next = 0.0

    def wait(self, now: float) -> float:
        """Seconds still to hold back at ``now``."""
        return max(0.0, self.until - now)


@attrs.define
class Backoff:
    """Capped exponential backoff with jitter, for reconnects.

    The n-th consecutive failure waits ``min(maximum, initial * 2**n)`` scaled by a random
    factor in [0.5, 1.0], so a fleet of gateways restarted together does not reconnect in
    lock step, and never less than half the capped delay, so a bad password never becomes a
    tight loop.
    """

    initial: float = 1.0
    maximum: float = 60.0
    random: Callable[[], float] = random.random
    failures: int = 0

    def next_delay(self) -> float:
        """Record a failure and return the seconds to wait before the next attempt."""
        capped = min(self.maximum, self.initial * 2 ** min(self.failures, 32))
        self.failures += 1
        return capped * (0.5 + 0.5 * self.random())

    def reset(self) -> None:
        """A connection succeeded: start again from ``initial`` next time."""
        self.failures = 0
