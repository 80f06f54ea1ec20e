"""The daemon's operations side: what systemd, ``gatewayd status`` and Prometheus see.

:class:`Operations` joins the running :class:`~gatewayd.app.Gateway` to

* the service manager (:mod:`gatewayd.notify`): ``READY=1``, a ``STATUS=`` line whenever the
  number of binds up changes, and the watchdog, which pings only while the store's writer
  answers;
* the control socket (:mod:`gatewayd.control`): ``status``, ``reload``, ``drain``;
* the metrics (:mod:`gatewayd.metrics`): hooks on ingest (MOs, receipts, ack latency), on the
  store (commit latency) and on each SMSC link (PDUs, binds), and the optional endpoint.

Nothing here is needed for messages to flow: a control socket or metrics port that cannot
be opened is logged and the daemon carries on.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import structlog
import trio

from gatewayd import __version__
from gatewayd.control import ControlError, ControlServer
from gatewayd.metrics import Metrics, MetricsSnapshot, serve_metrics
from gatewayd.notify import run_watchdog, watchdog_interval
from profile_store.db import StoreError
from profile_store.mt import outbox_counts

if TYPE_CHECKING:
    from gatewayd.app import Gateway
    from gatewayd.binds import SmscLink
    from gatewayd.ingest import InboundMessage

__all__ = ["Operations", "RATE_WINDOW"]

log = structlog.get_logger("gatewayd.ops")

#: Seconds over which ``gatewayd status`` reports MO/MT rates.
RATE_WINDOW = 60.0
#: Seconds between rate samples.
RATE_SAMPLE = 5.0
#: Seconds between reads of the outbox counts for the metrics (a GROUP BY over the outbox).
OUTBOX_SAMPLE = 15.0


class Operations:
    """Notifications, control socket and metrics of one running gateway.

    Args:
        gateway: the gateway; its store, ingest, dispatcher and outbox exist already.
        environ: where ``WATCHDOG_USEC`` is read (``os.environ`` by default).
    """

    def __init__(self, gateway: "Gateway", *, environ: Mapping[str, str] | None = None) -> None:
        self.gateway = gateway
        gateway.operations = self
        self.notifier = gateway.notifier
        self.metrics = Metrics(self.snapshot)
        self._environ = environ
        self.started_at = time.time()
        self._rates: collections.deque[tuple[float, int, int, int]] = collections.deque(maxlen=int(RATE_WINDOW / RATE_SAMPLE) + 1)
        self._outbox: dict[str, int] = {}
        self._changed = trio.Event()
        #: The metrics endpoint's port, once it listens.
        self.metrics_port: int | None = None
        #: The control socket's path, once it listens.
        self.control_path: os.PathLike[str] | None = None
        #: Campaigns loaded and failed, for ``gatewayd status``; set by whoever loads them.
        self.campaigns: Callable[[], Mapping[str, Any]] = lambda: {"loaded": [], "failed": []}

    # -- wiring --------------------------------------------------------------------------------

    def _install_hooks(self) -> None:
        gateway = self.gateway
        gateway.ingest.observer = self._observe_message
        if gateway.store is not None:
            gateway.store.on_commit = self.metrics.observe_commit
        gateway.link_hooks.append(self._hook_link)
        for link in gateway.links.values():
            self._hook_link(link)

    def _hook_link(self, link: "SmscLink") -> None:
        link.wire_observer = self.metrics.pdus(link.cfg.name).connection
        link.on_bound_change = self._binds_changed

    def _binds_changed(self) -> None:
        self._changed.set()

    def _observe_message(self, message: "InboundMessage", status: int, elapsed: float) -> None:
        stat = message.receipt.stat if message.is_receipt else None
        self.metrics.observe_message(is_receipt=message.is_receipt, stat=stat, status=status, elapsed=elapsed)

    async def run(self, *, task_status: trio.TaskStatus["Operations"] = trio.TASK_STATUS_IGNORED) -> None:
        """Install the hooks and serve the control socket, metrics and watchdog until cancelled."""
        self._install_hooks()
        try:
            await self._run(task_status)
        finally:
            self.notifier.close()

    async def _run(self, task_status: trio.TaskStatus["Operations"]) -> None:
        config = self.gateway.config
        async with trio.open_nursery() as nursery:
            socket_path = config.control_socket
            if socket_path is not None:
                server = ControlServer(socket_path, status=self.status, reload=self._reload, drain=self._drain)
                try:
                    self.control_path = await nursery.start(server.serve)
                except (ControlError, OSError) as exc:
                    log.error("control_socket_failed", path=str(socket_path), error=str(exc))
            if config.metrics.enabled:
                try:
                    self.metrics_port = await nursery.start(serve_metrics, self.metrics, config.metrics.host, config.metrics.port)
                except OSError as exc:
                    log.error("metrics_failed", host=config.metrics.host, port=config.metrics.port, error=str(exc))
                else:
                    nursery.start_soon(self._sample_outbox)
            interval = watchdog_interval(self._environ)
            if interval is not None and self.gateway.store is not None:
                await nursery.start(run_watchdog, self.notifier, self.gateway.store.ping, interval)
            nursery.start_soon(self._report_status)
            nursery.start_soon(self._sample_rates)
            task_status.started(self)

    def ready(self) -> None:
        """``READY=1`` with the status line: the store is open, the configuration loaded, links started."""
        self.notifier.ready(self.status_line())

    # -- status line ---------------------------------------------------------------------------

    def binds(self) -> tuple[int, int]:
        """(binds up, binds configured) over every SMSC link."""
        up = total = 0
        for link in list(self.gateway.links.values()):
            up += len(link.bound)
            total += len(link.cfg.binds)
        return up, total

    def status_line(self) -> str:
        """The one line ``systemctl status`` shows: ``2/2 binds up``, and the state when not running."""
        up, total = self.binds()
        line = f"{up}/{total} binds up"
        state = self.state()
        return line if state == "running" else f"{line}; {state}"

    def state(self) -> str:
        """``running``, ``reloading`` or ``draining``."""
        gateway = self.gateway
        if gateway.stopping:
            return "draining"
        if gateway.reloading:
            return "reloading"
        return "running"

    async def _report_status(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            self.notifier.status(self.status_line())

    # -- samples -------------------------------------------------------------------------------

    def _totals(self) -> tuple[float, int, int, int]:
        outbox = self.gateway.outbox
        return (trio.current_time(), self.metrics.mo_total, outbox.submitted if outbox else 0, self.metrics.receipts_total)

    async def _sample_rates(self) -> None:
        while True:
            self._rates.append(self._totals())
            await trio.sleep(RATE_SAMPLE)

    async def _sample_outbox(self) -> None:
        store = self.gateway.store
        assert store is not None
        while True:
            try:
                self._outbox = await store.read(outbox_counts)
            except StoreError:
                pass  # the metric keeps its last value; the watchdog and the logs tell the rest
            await trio.sleep(OUTBOX_SAMPLE)

    def rates(self) -> dict[str, float]:
        """MOs, MTs and receipts per second over the last :data:`RATE_WINDOW` seconds (or since start)."""
        now = self._totals()
        first = self._rates[0] if self._rates else now
        elapsed = now[0] - first[0]
        if elapsed <= 0:
            return {"window_seconds": 0.0, "mo_per_second": 0.0, "mt_per_second": 0.0, "receipts_per_second": 0.0}
        return {
            "window_seconds": round(elapsed, 1),
            "mo_per_second": round((now[1] - first[1]) / elapsed, 3),
            "mt_per_second": round((now[2] - first[2]) / elapsed, 3),
            "receipts_per_second": round((now[3] - first[3]) / elapsed, 3),
        }

    def snapshot(self) -> MetricsSnapshot:
        """The gauges' values now (read by the metrics collector at scrape time)."""
        gateway = self.gateway
        binds = {name: (len(link.bound), len(link.cfg.binds)) for name, link in list(gateway.links.items())}
        outbox, dispatcher = gateway.outbox, gateway.dispatcher
        return MetricsSnapshot(
            binds=binds,
            outbox=dict(self._outbox),
            outbox_in_flight=outbox.in_flight if outbox else 0,
            dispatch_queue=_dispatch_queue(dispatcher),
            mt_submitted=outbox.submitted if outbox else 0,
            mt_submitted_by_campaign=dict(outbox.submitted_by_campaign) if outbox else {},
            mt_failed=outbox.failed if outbox else 0,
            mt_retried=outbox.retried if outbox else 0,
            mo_processed=dispatcher.processed if dispatcher else 0,
            mo_failed=dispatcher.failed if dispatcher else 0,
        )

    # -- control commands ----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Everything ``gatewayd status`` shows."""
        gateway = self.gateway
        config = gateway.config
        store_error = None
        counts: dict[str, int] = dict(self._outbox)
        if gateway.store is not None:
            try:
                with trio.move_on_after(5):
                    counts = await gateway.store.read(outbox_counts)
                    self._outbox = dict(counts)
            except StoreError as exc:
                store_error = str(exc)
        binds = []
        for name, link in sorted(gateway.links.items()):
            for mode in link.cfg.binds:
                conn = link.bound.get(mode)
                binds.append(
                    {
                        "smsc": name,
                        "bind": mode.value,
                        "state": "bound" if conn is not None and not conn.closed else "down",
                        "host": f"{link.cfg.host}:{link.cfg.port}",
                    }
                )
        up, total = self.binds()
        outbox = gateway.outbox
        snap = self.snapshot()
        return {
            "version": __version__,
            "node": config.node,
            "pid": os.getpid(),
            "state": self.state(),
            "started_at": dt.datetime.fromtimestamp(self.started_at, dt.timezone.utc).isoformat(timespec="seconds"),
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "config": str(config.path) if config.path else None,
            "state_dir": str(config.state_dir),
            "binds_up": up,
            "binds_configured": total,
            "binds": binds,
            "queues": {
                "outbox": counts,
                "outbox_in_flight": outbox.in_flight if outbox else 0,
                "dispatch": snap.dispatch_queue,
            },
            "receipts_pending": counts.get("submitted", 0),
            "rates": self.rates(),
            "totals": {
                "mo_received": self.metrics.mo_total,
                "receipts_received": self.metrics.receipts_total,
                "mt_submitted": snap.mt_submitted,
                "mt_failed": snap.mt_failed,
                "mo_processed": snap.mo_processed,
            },
            "campaigns": dict(self.campaigns()),
            "store_error": store_error,
            "last_reload": gateway.last_reload,
            "metrics_endpoint": f"{config.metrics.host}:{self.metrics_port}" if self.metrics_port is not None else None,
        }

    async def _reload(self) -> dict[str, Any]:
        applied = await self.gateway.reload_notifying()
        result: dict[str, Any] = {"applied": applied, **(self.gateway.last_reload or {})}
        if not applied:
            result["ok"] = False
            result["error"] = "the configuration was not applied; still running on the previous one"
        return result

    async def _drain(self) -> dict[str, Any]:
        gateway = self.gateway
        grace = gateway.config.drain_timeout
        gateway.request_stop()
        await gateway.drained.wait()
        return {"drained": True, "grace": grace}


def _dispatch_queue(dispatcher: Any) -> int:
    """MOs handed to the dispatcher and not yet processed."""
    if dispatcher is None:
        return 0
    queued = getattr(dispatcher, "_queued", None)
    return len(queued) if queued is not None else 0
