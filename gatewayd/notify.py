"""systemd's notification protocol (sd_notify) and the watchdog task.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a Unix datagram socket (a path, or
an abstract name written with a leading ``@``). The daemon sends newline-separated
``KEY=value`` assignments to it:

* ``READY=1`` once the store is open and the configuration loaded (binds may still be
  connecting), and again after each reload;
* ``STATUS=...`` a one-line summary that ``systemctl status`` shows (binds up);
* ``RELOADING=1`` with ``MONOTONIC_USEC=`` while a reload runs;
* ``STOPPING=1`` when the drain starts;
* ``WATCHDOG=1`` from :func:`run_watchdog`, only while the event loop runs and the store
  answers, so that a wedged daemon is restarted by systemd (``WatchdogSec=``).

Without ``$NOTIFY_SOCKET`` (a terminal, the tests, another supervisor) every call is a no-op.
A failed send is logged once and otherwise ignored: notifications must never stop the daemon.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Mapping
from typing import Awaitable, Callable

import structlog
import trio

__all__ = ["Notifier", "watchdog_interval", "run_watchdog"]

log = structlog.get_logger("gatewayd.notify")


def _address(value: str) -> str | bytes:
    """The socket address for a ``$NOTIFY_SOCKET`` value: ``@name`` is in the abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends notifications to the service manager, or nothing when there is none.

    Args:
        address: the ``$NOTIFY_SOCKET`` value; None or empty disables notifications.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._sock: socket.socket | None = None
        self._warned = False
        #: The last STATUS= text sent (so callers can send only changes).
        self.last_status: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        """A notifier for ``$NOTIFY_SOCKET`` (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self.address is not None

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines (keys upper-cased: ``notify(ready=1)`` sends ``READY=1``).

        Returns:
            True when the datagram was sent; False when disabled or the send failed.
        """
        if self.address is None:
            return False
        # A value with a newline would start a new assignment: keep each on its line.
        message = "\n".join(f"{key.upper()}={str(value).replace(chr(10), ' ')}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8", "replace"), _address(self.address))
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("notify_failed", socket=self.address, error=errno.errorcode.get(exc.errno or 0, str(exc)))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and a STATUS= line when given)."""
        if status is None:
            return self.notify(ready=1)
        self.last_status = status
        return self.notify(ready=1, status=status)

    def status(self, text: str) -> bool:
        """``STATUS=text``, only when it differs from the last one sent."""
        if text == self.last_status:
            return False
        self.last_status = text
        return self.notify(status=text)

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (the time systemd matches the READY=1 against)."""
        return self.notify(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``."""
        if status is None:
            return self.notify(stopping=1)
        return self.notify(stopping=1, status=status)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the daemon is healthy."""
        return self.notify(watchdog=1)

    def close(self) -> None:
        """Close the socket (notifications sent later open it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings: half of ``$WATCHDOG_USEC``; None when there is no watchdog.

    ``$WATCHDOG_PID``, when set, must be this process (it is not inherited by children).
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


async def run_watchdog(
    notifier: Notifier,
    probe: Callable[[], Awaitable[object]],
    interval: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds while the daemon is healthy.

    Healthy means: this task got scheduled (the event loop is not stuck), and ``probe()``
    (a round trip through the store's writer) returned within ``interval`` seconds. When the
    probe fails or hangs, no ping goes out; if that lasts the whole ``WatchdogSec=``,
    systemd kills and restarts the daemon. A warning is logged when health is lost and an
    info line when it returns.
    """
    task_status.started()
    healthy = True
    while True:
        started = trio.current_time()
        error: str | None = None
        with trio.move_on_after(interval) as scope:
            try:
                await probe()
            except Exception as exc:  # any failure means "not healthy"; the daemon goes on
                error = f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"the store did not answer within {interval:g} s"
        if error is None:
            notifier.watchdog()
            if not healthy:
                healthy = True
                log.info("watchdog_healthy")
        elif healthy:
            healthy = False
            log.warning("watchdog_unhealthy", error=error)
        await trio.sleep_until(started + interval)
