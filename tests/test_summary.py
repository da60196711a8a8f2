"""What a developer reads at a glance: stats() as a table, stop()'s line on losses, the repr."""

from __future__ import annotations

import logging

from telemetry_otel import Event, Metric, TelemetryCollector, TelemetryConfig, Trace
from tests.misbehaving import refusing_port


def test_stats_stay_the_documented_dict_but_print_as_a_short_table(recorder):
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=[], buffer_size=2))
    collector.register_exporter(recorder)
    collector.start()
    collector.collect_metric(Metric("hits", 1))
    for n in range(5):
        collector.collect_trace(Trace("t", f"s{n}", "op", 1.0))
    collector.stop()
    stats = collector.stats()
    assert isinstance(stats, dict) and set(stats) == {"metric", "event", "trace"}
    assert stats["trace"]["dropped_queue_full"] == stats["trace"]["dropped"]
    dropped = stats["trace"]["dropped"]
    exported = 5 - dropped
    assert dropped > 0
    assert str(stats).splitlines() == [
        "signal  collected  sampled_out  exported  dropped  failed  pending  why",
        "metric          1            0         1        0       0        0",
        "event           0            0         0        0       0        0",
        f"trace           5            0         {exported}        {dropped}       0        0"
        f"  queue_full={dropped}",
    ]
    assert repr(stats) == repr(dict(stats))


def test_stop_logs_one_line_saying_what_was_lost_and_why(caplog):
    endpoint = f"grpc://127.0.0.1:{refusing_port()}?timeout_ms=200"
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=[endpoint], self_metrics=False))
    collector.start()
    for n in range(3):
        collector.collect_event(Event("e", f"m{n}"))
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector.stop(timeout_ms=2000)
    summaries = [r.getMessage() for r in caplog.records if "stopped with losses" in r.getMessage()]
    assert summaries == [
        "telemetry stopped with losses: event: 3 collected, deliveries 0 exported, 3 lost "
        "(unavailable=3)"
    ]


def test_stop_says_nothing_when_nothing_was_lost(caplog, tmp_path):
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=[f"file://{tmp_path}"]))
    collector.start()
    collector.collect_event(Event("e", "m"))
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector.stop()
    assert not [r for r in caplog.records if "stopped" in r.getMessage()]


def test_the_collector_repr_says_its_state_and_endpoints_without_secrets():
    endpoint = "https://user:s3cr3t@collector.example:4318?timeout_ms=500"
    config = TelemetryConfig(export_endpoints=["console", endpoint], service_name="shop")
    collector = TelemetryCollector(config)
    assert repr(collector) == (
        "<TelemetryCollector 'shop' new: console, "
        "https://user:***@collector.example:4318?timeout_ms=500>"
    )
    collector.register_exporter(lambda kind, item: None)
    collector.start()
    assert repr(collector).startswith("<TelemetryCollector 'shop' running: console, https://")
    assert repr(collector).endswith(", 1 callbacks>")
    collector.stop(timeout_ms=500)
    assert "s3cr3t" not in repr(collector) and " stopped: " in repr(collector)
    disabled = TelemetryCollector(TelemetryConfig(enabled=False, export_endpoints=[]))
    assert repr(disabled) == "<TelemetryCollector new, disabled: no endpoints>"
