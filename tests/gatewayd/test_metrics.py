"""Metrics: PDU counting from the byte streams, the HTTP endpoint, and the content after a short end-to-end run."""

from __future__ import annotations

import functools
from pathlib import Path

import h11
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gatewayd.app import Gateway, serve
from gatewayd.config import ConfigError, load_config
from gatewayd.metrics import MAX_REQUEST_BYTES, Metrics, MetricsSnapshot, PduCounts, serve_metrics
from gatewayd.smpp import codec
from gatewayd.smpp.constants import CommandId, CommandStatus
from gatewayd.smpp.pdus import DeliverSm, DeliverSmResp, EnquireLink, SubmitSmResp


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _stream() -> bytes:
    pdus = [
        DeliverSm(sequence=1, source_addr="306912345678", destination_addr="4160", short_message=b"VOTE GRE"),
        DeliverSm(sequence=2, source_addr="306912345679", destination_addr="4160", short_message=b"x" * 140),
        EnquireLink(sequence=3),
        SubmitSmResp(sequence=4, command_status=CommandStatus.ESME_RTHROTTLED),
        DeliverSmResp(sequence=5),
    ]
    return b"".join(codec.encode(pdu) for pdu in pdus)


_EXPECTED = {
    (CommandId.DELIVER_SM << 32 | 0): 2,
    (CommandId.ENQUIRE_LINK << 32 | 0): 1,
    (CommandId.SUBMIT_SM_RESP << 32 | CommandStatus.ESME_RTHROTTLED): 1,
    (CommandId.DELIVER_SM_RESP << 32 | 0): 1,
}


@pytest.mark.parametrize("size", [1, 2, 7, 15, 16, 17, 40, 1000])
def test_pdus_are_counted_whatever_the_chunking(size: int) -> None:
    """Headers split across reads, several PDUs per read: each PDU is counted once."""
    data = _stream()
    counts = PduCounts()
    tally = counts.connection()
    for i in range(0, len(data), size):
        tally.received(data[i : i + size])
    assert counts.received == _EXPECTED
    assert counts.sent == {}


def test_counting_stops_when_framing_is_lost() -> None:
    """A command_length below 16 ends counting for that connection (the session closes it)."""
    counts = PduCounts()
    tally = counts.connection()
    tally.received(codec.encode(EnquireLink(sequence=1)) + b"\x00\x00\x00\x05garbagegarbage" + codec.encode(EnquireLink(sequence=2)))
    tally.received(codec.encode(EnquireLink(sequence=3)))
    assert sum(counts.received.values()) == 1


def test_label_sets_are_bounded() -> None:
    """A peer sending random command ids cannot grow the counters without bound."""
    counts = PduCounts()
    tally = counts.connection()
    tally.sent(b"".join((16).to_bytes(4, "big") + (0x1000 + i).to_bytes(4, "big") + bytes(8) for i in range(1000)))
    assert len(counts.sent) <= 257
    assert sum(counts.sent.values()) == 1000
    metrics = Metrics()
    metrics.pdu_counts["x"] = counts
    samples = _samples(metrics.exposition().decode())
    assert samples[("gatewayd_smpp_pdus_total", (("command", "other"), ("direction", "out"), ("smsc", "x"), ("status", "other")))] > 0


def test_exposition_has_every_family() -> None:
    """Counters, histograms and the scrape-time gauges are all in the text exposition."""
    metrics = Metrics(lambda: MetricsSnapshot(binds={"op": (1, 2)}, outbox={"queued": 3}, dispatch_queue=4, mt_submitted=5, mt_submitted_by_campaign={"final-vote": 4, "": 1}))
    metrics.observe_message(is_receipt=False, stat=None, status=0, elapsed=0.004)
    metrics.observe_message(is_receipt=True, stat="DELIVRD", status=0, elapsed=0.001)
    metrics.observe_message(is_receipt=True, stat="WEIRD", status=0, elapsed=0.001)
    metrics.observe_message(is_receipt=False, stat=None, status=0x64, elapsed=0.001)
    metrics.observe_commit(0.002, 7)
    samples = _samples(metrics.exposition().decode())
    assert samples[("gatewayd_binds_up", (("smsc", "op"),))] == 1
    assert samples[("gatewayd_binds_configured", (("smsc", "op"),))] == 2
    assert samples[("gatewayd_outbox_messages", (("status", "queued"),))] == 3
    assert samples[("gatewayd_dispatch_queue", ())] == 4
    assert samples[("gatewayd_mt_submitted_total", (("campaign", "final-vote"),))] == 4
    assert samples[("gatewayd_mt_submitted_total", (("campaign", ""),))] == 1
    assert samples[("gatewayd_mo_received_total", ())] == 1
    assert samples[("gatewayd_mo_not_accepted_total", ())] == 1
    assert samples[("gatewayd_receipts_total", (("stat", "DELIVRD"),))] == 1
    assert samples[("gatewayd_receipts_total", (("stat", "other"),))] == 1
    assert samples[("gatewayd_mo_ack_latency_seconds_count", ())] == 1
    assert samples[("gatewayd_mo_ack_latency_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("gatewayd_store_commit_seconds_count", ())] == 1
    assert samples[("gatewayd_store_committed_units_total", ())] == 7


def test_metrics_config() -> None:
    """[metrics]: off by default, loopback only, port 0..65535."""
    config = load_config(None)
    assert (config.metrics.enabled, config.metrics.host, config.metrics.port) == (False, "127.0.0.1", 9464)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('host = "0.0.0.0"', "[metrics] host: expected a loopback address"),
        ('host = "192.168.1.5"', "[metrics] host: expected a loopback address"),
        ("port = 70000", "[metrics] port: expected an integer from 0 to 65535"),
        ('enabled = "yes"', "[metrics] enabled: expected true or false"),
        ("scrape = 1", "[metrics] scrape: unknown key"),
    ],
)
def test_metrics_config_problems(tmp_path: Path, table: str, problem: str) -> None:
    """Each mistake is reported with its table and key."""
    path = tmp_path / "gatewayd.toml"
    path.write_text(f"[metrics]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert problem in str(info.value)


# --- the HTTP endpoint ---------------------------------------------------------------------


async def _http(port: int, *requests: h11.Request, raw: bytes | None = None) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send requests on one connection (h11 as the client) and read every response."""
    client = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    responses: list[tuple[int, dict[bytes, bytes], bytes]] = []
    async with stream:
        if raw is not None:
            await stream.send_all(raw)
            data = b""
            with trio.fail_after(10):
                while chunk := await stream.receive_some(65536):
                    data += chunk
            return [(int(data.split(b" ")[1]), {}, data)] if data else []
        for request in requests:
            await stream.send_all(client.send(request) + client.send(h11.EndOfMessage()))
            status, headers, body = 0, {}, b""
            with trio.fail_after(10):
                while True:
                    event = client.next_event()
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        status, headers = event.status_code, dict(event.headers)
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
            responses.append((status, headers, body))
            if client.our_state is h11.MUST_CLOSE:
                break
            client.start_next_cycle()
    return responses


def _get(target: bytes, method: bytes = b"GET") -> h11.Request:
    return h11.Request(method=method, target=target, headers=[(b"host", b"127.0.0.1")])


async def test_endpoint_serves_get_metrics_only(nursery: trio.Nursery) -> None:
    """GET and HEAD /metrics: 200 with the exposition; other paths 404; other methods 405; keep-alive works."""
    metrics = Metrics()
    metrics.observe_message(is_receipt=False, stat=None, status=0, elapsed=0.01)
    port = await nursery.start(serve_metrics, metrics, "127.0.0.1", 0)
    ok, head, missing, query, post = await _http(
        port, _get(b"/metrics"), _get(b"/metrics", b"HEAD"), _get(b"/"), _get(b"/metrics?name[]=x"), _get(b"/metrics", b"POST")
    )
    assert ok[0] == 200 and ok[1][b"content-type"].startswith(b"text/plain")
    assert b"gatewayd_mo_received_total 1.0" in ok[2]
    assert head[0] == 200 and head[2] == b"" and int(head[1][b"content-length"]) > 0
    assert missing[0] == 404
    assert query[0] == 200
    assert post[0] == 405 and post[1][b"allow"] == b"GET, HEAD"


async def test_endpoint_refuses_oversized_and_broken_requests(nursery: trio.Nursery) -> None:
    """A request head over the limit, or one that is not HTTP, gets a 4xx and the connection closes."""
    port = await nursery.start(serve_metrics, Metrics(), "127.0.0.1", 0)
    huge = b"GET /metrics HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * (MAX_REQUEST_BYTES * 2) + b"\r\n\r\n"
    [(status, _, _)] = await _http(port, raw=huge)
    assert 400 <= status < 500
    [(status, _, _)] = await _http(port, raw=b"\x16\x03\x01 not http at all\r\n\r\n")
    assert status == 400


# --- after a short end-to-end run ----------------------------------------------------------


async def test_metrics_after_an_end_to_end_run(tmp_path: Path) -> None:
    """The daemon with its simulator and metrics on port 0: binds up 1, MOs counted, PDUs by command."""
    path = tmp_path / "gatewayd.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n[simulator]\ndemo_mo_per_second = 0\n[metrics]\nenabled = true\nport = 0\n'
    )
    async with trio.open_nursery() as nursery:
        gateway: Gateway = await nursery.start(functools.partial(serve, load_config(path), handle_signals=False))
        assert gateway.operations is not None and gateway.operations.metrics_port
        sim = gateway.simulator
        assert sim is not None
        with trio.fail_after(20):
            await sim.wait_bound()
            for i in range(5):
                assert await sim.inject_mo(f"3069{i:08d}", "4160", f"VOTE {i}") == [0]
            assert await sim.inject_mo("306900000099", "4160", "long " * 60) == [0, 0]  # two parts
        [(status, _, body)] = await _http(gateway.operations.metrics_port, _get(b"/metrics"))
        gateway.request_stop()
    assert status == 200
    samples = _samples(body.decode())
    assert samples[("gatewayd_binds_up", (("smsc", "simulator"),))] == 1
    assert samples[("gatewayd_mo_received_total", ())] == 7
    assert samples[("gatewayd_mo_ack_latency_seconds_count", ())] == 7

    def pdus(direction: str, command: str) -> float:
        key = ("gatewayd_smpp_pdus_total", (("command", command), ("direction", direction), ("smsc", "simulator"), ("status", "ESME_ROK")))
        return samples.get(key, 0)

    assert pdus("out", "bind_transceiver") == 1
    assert pdus("in", "bind_transceiver_resp") == 1
    assert pdus("in", "deliver_sm") == 7
    assert pdus("out", "deliver_sm_resp") == 7
    assert samples[("gatewayd_store_commit_seconds_count", ())] > 0
    assert samples[("gatewayd_build_info", (("version", "0.1.0"),))] == 1
