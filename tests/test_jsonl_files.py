"""file:// endpoints: OTLP JSON Lines that protobuf's own JSON parser reads back."""

from __future__ import annotations

import base64
import json
import logging

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry_otel import Event, EventSeverity, Metric, MetricType, Trace
from tests.otlp_receiver import any_value, attributes_of


def _base64_ids(value):
    """OTLP JSON ids are hex; protobuf's JSON mapping wants base64: convert back."""
    if isinstance(value, dict):
        return {
            key: base64.b64encode(bytes.fromhex(item)).decode()
            if key in ("traceId", "spanId", "parentSpanId")
            else _base64_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_base64_ids(item) for item in value]
    return value


def _read(path, message_type):
    return [
        ParseDict(_base64_ids(json.loads(line)), message_type())
        for line in path.read_text().splitlines()
    ]


def test_each_signal_goes_to_its_own_jsonl_file_as_official_requests(tmp_path, make_collector):
    collector = make_collector(
        export_endpoints=[f"file://{tmp_path}"], flush_interval_ms=60_000, service_name="files"
    )
    collector.collect_trace(
        Trace(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            "op",
            2.5,
            parent_span_id="53995c3f42cd8ad8",
            tags={"k": "v"},
            timestamp=1_700_000_000.0,
        )
    )
    collector.collect_event(
        Event("paid", "order paid", EventSeverity.ERROR, {"n": 1}, timestamp=1_700_000_000.0)
    )
    collector.collect_metric(Metric("orders", 3, MetricType.COUNTER, {"region": "eu"}))
    assert collector.flush(10_000) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "logs.jsonl",
        "metrics.jsonl",
        "traces.jsonl",
    ]

    [traces] = _read(tmp_path / "traces.jsonl", ExportTraceServiceRequest)
    resource = attributes_of(traces.resource_spans[0].resource.attributes)
    [span] = traces.resource_spans[0].scope_spans[0].spans
    assert resource["service.name"] == "files"
    assert (span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex()) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "53995c3f42cd8ad8",
    )
    assert (span.name, span.start_time_unix_nano, span.end_time_unix_nano) == (
        "op",
        1_699_999_999_997_500_000,
        1_700_000_000_000_000_000,
    )
    assert attributes_of(span.attributes)["k"] == "v"

    [logs] = _read(tmp_path / "logs.jsonl", ExportLogsServiceRequest)
    [record] = logs.resource_logs[0].scope_logs[0].log_records
    assert (record.event_name, any_value(record.body), record.severity_number) == (
        "paid",
        "order paid",
        17,
    )
    assert attributes_of(record.attributes) == {"n": 1, "sampling.probability": 1.0}

    [metrics] = _read(tmp_path / "metrics.jsonl", ExportMetricsServiceRequest)
    [metric] = metrics.resource_metrics[0].scope_metrics[0].metrics
    assert (metric.name, metric.sum.data_points[0].as_int) == ("orders", 3)


def test_ids_are_hex_and_keys_lower_camel_case_as_the_file_exporter_spec_says(
    tmp_path, make_collector
):
    collector = make_collector(export_endpoints=[f"file://{tmp_path}"])
    collector.collect_trace(Trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "op", 1))
    collector.flush()
    line = json.loads((tmp_path / "traces.jsonl").read_text())
    span = line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert {"startTimeUnixNano", "endTimeUnixNano", "spanId"} <= set(span)


def test_rotation_keeps_at_most_backups_files_each_within_max_bytes(tmp_path, make_collector):
    collector = make_collector(export_endpoints=[f"file://{tmp_path}?max_bytes=3000&backups=2"])
    for batch in range(12):
        for span in range(3):
            collector.collect_trace(Trace(f"trace-{batch}", f"span-{span}", "op", 1.0))
        assert collector.flush() is True
    files = sorted(p.name for p in tmp_path.glob("traces.jsonl*"))
    assert files == ["traces.jsonl", "traces.jsonl.1", "traces.jsonl.2"]
    lines = []
    for name in files:
        content = (tmp_path / name).read_text()
        assert len(content.encode()) <= 3000
        lines += [json.loads(line) for line in content.splitlines()]
    # The newest batches survive, whole: the current file holds the last one.
    last = json.loads((tmp_path / "traces.jsonl").read_text().splitlines()[-1])
    [span] = last["resourceSpans"][0]["scopeSpans"][0]["spans"][-1:]
    assert {a["key"]: a["value"].get("stringValue") for a in span["attributes"]}[
        "legacy.trace_id"
    ] == "trace-11"
    assert 3 <= len(lines) < 12


def test_a_file_endpoint_writes_only_the_signals_it_takes(tmp_path, make_collector, capsys):
    collector = make_collector(
        export_endpoints=[f"file://{tmp_path}?signals=traces,logs", "console?signals=metrics"]
    )
    collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
    collector.collect_event(Event("e", "m"))
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    assert collector.flush(10_000) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs.jsonl", "traces.jsonl"]
    signals = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert signals == ["METRIC"]


def test_a_file_endpoint_that_cannot_write_names_the_file_and_counts_the_failure(
    tmp_path, make_collector, caplog
):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    collector = make_collector(export_endpoints=[f"file://{blocker}/out"], self_metrics=False)
    collector.collect_event(Event("e", "m"))
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        assert collector.flush(5000) is False
    assert [r.getMessage() for r in caplog.records if "OTLP JSON logs" in r.getMessage()] == [
        f"could not write OTLP JSON logs: cannot write {blocker}/out/logs.jsonl: Not a directory"
    ]
    stats = collector.stats()["event"]
    assert (stats["exported"], stats["export_failures"]) == (0, 1)
