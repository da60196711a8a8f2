"""Against peers nobody here wrote, as they behave in production: rotel's receive limit,
and OtelTap, an OTLP/HTTP receiver that reads no gzip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from telemetry_otel import Event, TelemetryCollector, TelemetryConfig, Trace
from tests.otlp_receiver import OtlpReceiver
from tests.prometheus_server import free_port
from tests.rotel_peer import Rotel, rotel_agent

ITEMS = 2000
PAD = "x" * 3000  # 512 items a batch: about 1.5 MB a request, over rotel's 1 MiB


@pytest.fixture
def forwarded_to():
    """Where rotel forwards: a receiver that takes rotel's own (large) batches."""
    rotel_agent()
    receiver = OtlpReceiver(max_grpc_receive_bytes=256 << 20).start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("spool", [False, True], ids=["no-spool", "spool"])
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_rotels_out_of_range_size_refusal_is_split_and_everything_arrives_once(
    compression, spool, forwarded_to, tmp_path
):
    rotel = Rotel(forwarded_to.grpc_port, max_receive_mib=1)
    collector = TelemetryCollector(
        TelemetryConfig(
            export_endpoints=[f"grpc://127.0.0.1:{rotel.grpc_port}?compression={compression}"],
            flush_interval_ms=60_000,
            buffer_size=5000,
            spool_dir=str(tmp_path / "spool") if spool else None,
            self_metrics=False,
        )
    )
    collector.start()
    try:
        for i in range(ITEMS):
            collector.collect_event(Event("large", f"{PAD} {i}"))
            collector.collect_trace(Trace(f"t{i // 10}", f"s{i}", "op", 1.0, tags={"pad": PAD}))
        for i in range(10):  # small items behind the large ones
            collector.collect_event(Event("small", f"small {i}"))
        assert collector.flush(60_000) is True
    finally:
        collector.stop()
        output = rotel.stop()
    stats = collector.stats()
    assert (stats["event"]["exported"], stats["event"]["export_failures"]) == (ITEMS + 10, 0)
    assert (stats["trace"]["exported"], stats["trace"]["export_failures"]) == (ITEMS, 0)
    assert stats["event"]["spooled"] == 0
    assert forwarded_to.wait_for(
        lambda: (
            len(forwarded_to.log_records()) >= ITEMS + 10 and len(forwarded_to.spans()) >= ITEMS
        ),
        30,
    ), output
    bodies = sorted(record.body.string_value for _, record in forwarded_to.log_records())
    assert bodies == sorted(
        [f"{PAD} {i}" for i in range(ITEMS)] + [f"small {i}" for i in range(10)]
    )
    assert len(forwarded_to.spans()) == ITEMS


def test_oteltap_which_reads_no_gzip_gets_everything_after_one_refusal(make_collector, caplog):
    pytest.importorskip("oteltap", reason="oteltap ships its native part for x86_64 Linux")
    port = free_port()
    tap = subprocess.Popen(
        [sys.executable, "-m", "oteltap", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tap.stdout is not None
        assert tap.stdout.readline().startswith(f"Listening for OTLP/HTTP telemetry on port {port}")
        collector = make_collector(
            export_endpoints=[f"http://127.0.0.1:{port}"],  # gzip, the default
            flush_interval_ms=60_000,
            self_metrics=False,
        )
        for i in range(5):
            collector.collect_trace(Trace("t", f"s{i}", f"op {i}", 1.0))
            collector.collect_event(Event("e", f"event {i}"))
        assert collector.flush(10_000) is True
        collector.stop()
    finally:
        tap.terminate()
        printed, _ = tap.communicate(timeout=30)
    # OtelTap prints each item it decoded as one JSON line.
    items = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert sorted(i["name"] for i in items if "kind" in i) == [f"op {i}" for i in range(5)]
    bodies = sorted(i["body"]["stringValue"] for i in items if "severityNumber" in i)
    assert bodies == [f"event {i}" for i in range(5)]
    stats = collector.stats()
    assert (stats["trace"]["exported"], stats["event"]["exported"]) == (5, 5)
    assert stats["trace"]["export_failures"] + stats["event"]["export_failures"] == 0
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"OTLP endpoint http://127.0.0.1:{port} cannot read gzip-compressed requests"
    ]


def test_rotel_reads_every_field_of_http_json_as_it_reads_protobuf(forwarded_to):
    # Two collectors, one per encoding, with the same workload: rotel decodes each and
    # forwards it, and what it forwards for one equals what it forwards for the other.
    rotel = Rotel(forwarded_to.grpc_port, max_receive_mib=4)
    try:
        for encoding in ("http/protobuf", "http/json"):
            config = TelemetryConfig(
                export_endpoints=[f"http://127.0.0.1:{rotel.http_port}?protocol={encoding}"],
                service_name=encoding,
                flush_interval_ms=60_000,
                self_metrics=False,
            )
            with TelemetryCollector(config) as collector:
                _workload(collector)
            assert collector.stats()["trace"]["exported"] == 3, encoding
        assert forwarded_to.wait_for(
            lambda: len(forwarded_to.spans()) >= 6 and len(forwarded_to.log_records()) >= 2, 30
        )
    finally:
        output = rotel.stop()
    for signal, items in (("spans", forwarded_to.spans()), ("logs", forwarded_to.log_records())):
        by_service: dict[str, list[str]] = {"http/protobuf": [], "http/json": []}
        for resource, item in items:
            if signal == "logs":
                item.ClearField("observed_time_unix_nano")  # when each collector took it
            by_service[resource["service.name"]].append(str(item))
        assert sorted(by_service["http/json"]) == sorted(by_service["http/protobuf"]), (
            signal,
            output,
        )
        assert len(by_service["http/json"]) == (3 if signal == "spans" else 1)


def _workload(collector: TelemetryCollector) -> None:
    """Fixed ids and times, so that both encodings send the same items."""
    at = 1_700_000_000.0
    collector.collect_trace(
        Trace("t-1", "root", "checkout", 12.5, tags={"route": "/pay", "n": 2**40}, timestamp=at)
    )
    collector.collect_trace(Trace("t-1", "kid", "charge", 3.5, "root", error="no", timestamp=at))
    collector.collect_trace(Trace("t-2", "alone", "ping", 0.5, timestamp=at))
    collector.collect_event(
        Event("paid", "order paid", metadata={"items": [1, 2], "who": {"id": "u"}}, timestamp=at)
    )
