"""Prometheus metrics and the HTTP endpoint that serves them.

:class:`Metrics` owns a registry of its own (never the process-wide default, so that two
gateways in one test process do not collide) with:

* counters and histograms updated as things happen: MOs received, receipts by ``stat``,
  MO -> acknowledgement latency, store commit latency;
* PDUs in and out by SMSC, command and status, counted by :class:`WireTally` from the bytes
  each connection reads and writes. That path runs for every PDU, so it keeps plain integers
  (about 0.1 µs a PDU) and a collector turns them into samples only when scraped; a
  prometheus-client ``Counter`` child costs about 1 µs per ``inc()`` because of its lock;
* gauges read from the daemon at scrape time through a :data:`SnapshotSource`: binds up,
  queue depths, MTs submitted and failed, MOs processed.

:func:`serve_metrics` answers ``GET /metrics`` (``HEAD`` too) over HTTP/1.1 with the text
exposition format; anything else gets 404 (405 for another method on ``/metrics``). The
HTTP parsing is h11's; requests are bounded in size, connections in number and in time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Callable

import attrs
import h11
import structlog
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewayd import __version__
from gatewayd.smpp.constants import CommandId, describe_status

__all__ = [
    "Metrics",
    "MetricsSnapshot",
    "SnapshotSource",
    "PduCounts",
    "WireTally",
    "serve_metrics",
    "RECEIPT_STATS",
    "MAX_REQUEST_BYTES",
]

log = structlog.get_logger("gatewayd.metrics")

#: Receipt ``stat`` values counted by name; any other value is counted as ``other``.
RECEIPT_STATS = frozenset({"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD", "ENROUTE"})

#: The largest HTTP request head accepted; a scrape request is a few hundred bytes.
MAX_REQUEST_BYTES = 8192
#: Seconds a client has to send its request (and, on a kept-alive connection, the next one).
REQUEST_TIMEOUT = 10.0
#: Seconds to send a response.
SEND_TIMEOUT = 10.0
#: Connections served at once; more wait in the listen backlog.
MAX_CONNECTIONS = 16

# (command_id, command_status) pairs counted separately per direction; past this, a peer
# sending random command ids or statuses lands in one "other" sample instead of growing memory.
_MAX_KEYS = 256
_OTHER = -1
_HEADER = struct.Struct(">III")

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 413: b"Content Too Large", 431: b"Request Header Fields Too Large"}

_COMMAND_NAMES = {int(c): c.name.lower() for c in CommandId}

# MO -> acknowledgement: a commit of the store is inside it, so milliseconds to seconds.
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels_of(key: int) -> tuple[str, str]:
    if key == _OTHER:
        return "other", "other"
    command_id, status = key >> 32, key & 0xFFFFFFFF
    return _COMMAND_NAMES.get(command_id, "unknown"), describe_status(status)


class PduCounts:
    """PDUs of one SMSC (all its connections), by direction, command id and command status."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        #: ``(command_id << 32 | command_status) -> count``, PDUs read from the SMSC.
        self.received: dict[int, int] = {}
        #: The same for PDUs written to the SMSC.
        self.sent: dict[int, int] = {}

    def connection(self) -> "WireTally":
        """A tally for one new connection (each has its own position in its byte streams)."""
        return WireTally(self)


class _Stream:
    """Finds PDU headers in one direction of a byte stream and counts them.

    Only the 16-octet header of each PDU is read; bodies are skipped by ``command_length``.
    A header split across two reads is put back together. A ``command_length`` below 16
    means the framing is lost (the session closes the connection then): counting stops.
    """

    __slots__ = ("counts", "skip", "partial", "lost")

    def __init__(self, counts: dict[int, int]) -> None:
        self.counts = counts
        self.skip = 0
        self.partial = b""
        self.lost = False

    def feed(self, data: bytes) -> None:
        n = len(data)
        if self.lost or not n:
            return
        if self.skip >= n:
            self.skip -= n
            return
        pos = self.skip
        if self.partial:
            data = self.partial + data[pos:]
            n, pos, self.partial = len(data), 0, b""
        counts = self.counts
        unpack = _HEADER.unpack_from
        while pos + 16 <= n:
            length, command_id, status = unpack(data, pos)
            if length < 16:
                self.lost = True
                return
            key = command_id << 32 | status
            try:
                counts[key] += 1
            except KeyError:
                if len(counts) >= _MAX_KEYS:
                    key = _OTHER
                counts[key] = counts.get(key, 0) + 1
            pos += length
        if pos < n:
            self.partial = data[pos:]
            self.skip = 0
        else:
            self.skip = pos - n


class WireTally:
    """Counts the PDUs of one connection; :class:`gatewayd.transport.SmppConnection` calls it.

    ``received`` gets every chunk read from the socket, ``sent`` every chunk the session
    queued for writing (whole PDUs).
    """

    __slots__ = ("_in", "_out")

    def __init__(self, counts: PduCounts) -> None:
        self._in = _Stream(counts.received)
        self._out = _Stream(counts.sent)

    def received(self, data: bytes) -> None:
        self._in.feed(data)

    def sent(self, data: bytes) -> None:
        self._out.feed(data)


@attrs.frozen
class MetricsSnapshot:
    """The daemon's state as gauges and counters want it, taken at scrape time."""

    #: SMSC name -> (binds up, binds configured).
    binds: Mapping[str, tuple[int, int]] = attrs.Factory(dict)
    #: MT status -> count in the outbox (as last read from the store; may be a few seconds old).
    outbox: Mapping[str, int] = attrs.Factory(dict)
    #: MTs being sent by this node now.
    outbox_in_flight: int = 0
    #: MOs stored and waiting for the dispatcher.
    dispatch_queue: int = 0
    #: Since start: MTs fully submitted, MTs failed for good, attempts requeued.
    mt_submitted: int = 0
    #: The same, by campaign ("" for MTs that belong to none).
    mt_submitted_by_campaign: Mapping[str, int] = attrs.Factory(dict)
    mt_failed: int = 0
    mt_retried: int = 0
    #: Since start: MOs processed, MOs whose processing failed.
    mo_processed: int = 0
    mo_failed: int = 0


#: Returns the daemon's current :class:`MetricsSnapshot`; must be quick and must not block.
SnapshotSource = Callable[[], MetricsSnapshot]


class _LiveCollector(Collector):
    """Samples taken at scrape time: PDU counts and the daemon's snapshot."""

    def __init__(self, metrics: "Metrics") -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self._metrics
        pdus = CounterMetricFamily(
            "gatewayd_smpp_pdus",
            "SMPP PDUs read from (in) and written to (out) SMSCs, by command and command_status",
            labels=["smsc", "direction", "command", "status"],
        )
        for smsc, counts in list(metrics.pdu_counts.items()):
            for direction, table in (("in", counts.received), ("out", counts.sent)):
                for key, value in list(table.items()):
                    pdus.add_metric([smsc, direction, *_labels_of(key)], value)
        yield pdus
        snap = metrics.snapshot()
        up = GaugeMetricFamily("gatewayd_binds_up", "Binds up (bound) per SMSC", labels=["smsc"])
        configured = GaugeMetricFamily("gatewayd_binds_configured", "Binds configured per SMSC", labels=["smsc"])
        for smsc, (n_up, n_all) in sorted(snap.binds.items()):
            up.add_metric([smsc], n_up)
            configured.add_metric([smsc], n_all)
        yield up
        yield configured
        outbox = GaugeMetricFamily("gatewayd_outbox_messages", "MTs in the outbox by status (sampled from the store)", labels=["status"])
        for status, count in sorted(snap.outbox.items()):
            outbox.add_metric([status], count)
        yield outbox
        yield GaugeMetricFamily("gatewayd_outbox_in_flight", "MTs being sent by this node", value=snap.outbox_in_flight)
        yield GaugeMetricFamily("gatewayd_dispatch_queue", "Stored MOs waiting for the dispatcher", value=snap.dispatch_queue)
        submitted = CounterMetricFamily("gatewayd_mt_submitted", "MTs whose every part an SMSC accepted", labels=["campaign"])
        for campaign, count in sorted(snap.mt_submitted_by_campaign.items()):
            submitted.add_metric([campaign], count)
        yield submitted
        yield CounterMetricFamily("gatewayd_mt_failed", "MTs that failed for good", value=snap.mt_failed)
        yield CounterMetricFamily("gatewayd_mt_retried", "MT attempts that ended in a retry", value=snap.mt_retried)
        yield CounterMetricFamily("gatewayd_mo_processed", "MOs processed by the dispatcher", value=snap.mo_processed)
        yield CounterMetricFamily("gatewayd_mo_processing_failed", "MOs whose processing failed", value=snap.mo_failed)


class Metrics:
    """Every metric of one daemon, in a registry of its own.

    Args:
        snapshot: reads the daemon's state at scrape time (nothing by default).
    """

    def __init__(self, snapshot: SnapshotSource = MetricsSnapshot) -> None:
        self.registry = CollectorRegistry()
        self.snapshot = snapshot
        #: SMSC name -> its PDU counts (kept across reconnects and reloads).
        self.pdu_counts: dict[str, PduCounts] = {}
        info = GaugeMetricFamily("gatewayd_build_info", "The running gatewayd version", labels=["version"])
        info.add_metric([__version__], 1)
        self.registry.register(_Constant([info]))
        # No campaign label: an MO part is acknowledged before it is routed.
        self.mo_received = Counter("gatewayd_mo_received", "MO parts received and acknowledged with ESME_ROK", registry=self.registry)
        self.mo_rejected = Counter(
            "gatewayd_mo_not_accepted", "MO parts and receipts answered with an error (the SMSC retries them)", registry=self.registry
        )
        self.receipts = Counter("gatewayd_receipts", "Delivery receipts received, by stat", ["stat"], registry=self.registry)
        self.mo_ack_latency = Histogram(
            "gatewayd_mo_ack_latency_seconds",
            "From taking up an MO part (deliver_sm) to queueing its deliver_sm_resp, the store commit included",
            buckets=_ACK_BUCKETS,
            registry=self.registry,
        )
        self.store_commit = Histogram(
            "gatewayd_store_commit_seconds", "Duration of the store's group commits", buckets=_COMMIT_BUCKETS, registry=self.registry
        )
        self.store_commit_units = Counter("gatewayd_store_committed_units", "Units of work committed", registry=self.registry)
        self.registry.register(_LiveCollector(self))
        # Hot-path children, created once.
        self._receipt_children = {stat: self.receipts.labels(stat) for stat in (*sorted(RECEIPT_STATS), "other")}
        #: Totals the status command turns into rates.
        self.mo_total = 0
        self.receipts_total = 0

    def pdus(self, smsc: str) -> PduCounts:
        """The PDU counts of ``smsc``, created on first use."""
        counts = self.pdu_counts.get(smsc)
        if counts is None:
            counts = self.pdu_counts[smsc] = PduCounts()
        return counts

    def observe_message(self, *, is_receipt: bool, stat: str | None, status: int, elapsed: float) -> None:
        """One deliver_sm/data_sm answered: an MO part or a receipt, its ack status, its latency."""
        if status != 0:
            self.mo_rejected.inc()
            return
        if is_receipt:
            self.receipts_total += 1
            child = self._receipt_children.get(stat or "")
            (child if child is not None else self._receipt_children["other"]).inc()
            return
        self.mo_total += 1
        self.mo_received.inc()
        self.mo_ack_latency.observe(elapsed)

    def observe_commit(self, seconds: float, units: int) -> None:
        """One group commit of the store (see :attr:`profile_store.db.Store.on_commit`)."""
        self.store_commit.observe(seconds)
        self.store_commit_units.inc(units)

    def pdu_total(self, smsc: str | None = None) -> dict[tuple[str, str, str], int]:
        """``(direction, command, status) -> count`` for one SMSC or all, for status output and tests."""
        out: dict[tuple[str, str, str], int] = {}
        for name, counts in self.pdu_counts.items():
            if smsc is not None and name != smsc:
                continue
            for direction, table in (("in", counts.received), ("out", counts.sent)):
                for key, value in table.items():
                    label = (direction, *_labels_of(key))
                    out[label] = out.get(label, 0) + value
        return out

    def exposition(self) -> bytes:
        """The registry in the text exposition format."""
        return generate_latest(self.registry)


class _Constant(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


# --- the HTTP endpoint ---------------------------------------------------------------------


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``host:port`` until cancelled.

    Reports the port actually bound through ``task_status`` (``port`` 0 picks a free one).

    Raises:
        OSError: the address cannot be bound (in use, not a local address).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics_listening", host=host, port=bound)
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handler(stream: trio.SocketStream) -> None:
        async with limiter:
            await _serve_connection(stream, metrics)

    task_status.started(bound)
    await trio.serve_listeners(handler, listeners)


async def _serve_connection(stream: trio.abc.Stream, metrics: Metrics) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    try:
        while True:
            request = await _next_request(stream, conn)
            if request is None:
                return
            status, headers, body = _respond(request, metrics)
            with trio.move_on_after(SEND_TIMEOUT) as scope:
                data = conn.send(h11.Response(status_code=status, headers=headers, reason=_REASONS[status]))
                if request.method != b"HEAD":
                    data += conn.send(h11.Data(data=body)) or b""
                data += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(data)
            if scope.cancelled_caught or conn.our_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except h11.RemoteProtocolError as exc:
        # A malformed or oversized request: answer it when the protocol still allows.
        await _send_error(stream, conn, exc.error_status_hint)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _next_request(stream: trio.abc.Stream, conn: h11.Connection) -> h11.Request | None:
    """The next complete request (its body, if any, read and dropped), or None to close."""
    request: h11.Request | None = None
    received = 0
    with trio.move_on_after(REQUEST_TIMEOUT):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(4096)
                received += len(data)
                if received > MAX_REQUEST_BYTES + 4096:
                    raise h11.RemoteProtocolError("request too large", error_status_hint=413)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
    return None


def _respond(request: h11.Request, metrics: Metrics) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    path = request.target.split(b"?", 1)[0]
    if path != b"/metrics":
        return 404, _headers(b"text/plain; charset=utf-8", 10), b"not found\n"
    if request.method not in (b"GET", b"HEAD"):
        headers = _headers(b"text/plain; charset=utf-8", 19)
        headers.append((b"allow", b"GET, HEAD"))
        return 405, headers, b"method not allowed\n"
    body = metrics.exposition()
    return 200, _headers(CONTENT_TYPE_LATEST.encode(), len(body)), body


def _headers(content_type: bytes, length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"content-length", str(length).encode()), (b"server", b"gatewayd")]


async def _send_error(stream: trio.abc.Stream, conn: h11.Connection, status: int) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = f"{status}\n".encode()
    try:
        headers = [*_headers(b"text/plain", len(body)), (b"connection", b"close")]
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b"Error")))
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        return
    with trio.move_on_after(SEND_TIMEOUT):
        try:
            await stream.send_all(data)
            # Read what the client still sends for a moment before closing: closing with
            # unread data makes the kernel reset the connection, and the client would lose
            # the response.
            if isinstance(stream, trio.SocketStream):
                await stream.send_eof()
            with trio.move_on_after(1.0):
                drained = 0
                while drained < 4 * MAX_REQUEST_BYTES and (chunk := await stream.receive_some(4096)):
                    drained += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
