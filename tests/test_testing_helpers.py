"""telemetry_otel.testing, used the way an application's own tests would use it."""

from __future__ import annotations

from telemetry_otel import Event, EventSeverity, Metric, MetricType, TelemetryCollector, Trace
from telemetry_otel.testing import TelemetryCapture


def checkout(collector: TelemetryCollector) -> None:
    """Application code under test."""
    collector.collect_metric(Metric("orders", 1, MetricType.COUNTER, {"region": "eu"}))
    collector.collect_event(Event("user_action", "checkout", EventSeverity.INFO))
    collector.collect_trace(Trace("t-1", "s-1", "POST /checkout", 12.0))


def test_capture_records_what_the_collector_exports():
    with TelemetryCollector() as collector, TelemetryCapture(collector) as captured:
        checkout(collector)
        captured.flush()
        # Signals are exported side by side: only each signal's own order is defined.
        assert sorted(kind for kind, _ in captured.items) == ["event", "metric", "trace"]
        assert [e.name for e in captured.events] == ["user_action"]
        assert [(t.trace_id, t.operation) for t in captured.traces] == [("t-1", "POST /checkout")]
        assert [(m.name, m.value, m.tags) for m in captured.metrics] == [
            ("orders", 1, {"region": "eu"})
        ]
        captured.clear()
        assert captured.items == []
    assert collector.stats()["event"]["exported"] == 1


def test_the_pytest_fixture_comes_from_the_installed_plugin(telemetry_capture):
    checkout(telemetry_capture.collector)
    events = telemetry_capture.flush().events
    assert [(e.name, e.severity) for e in events] == [("user_action", EventSeverity.INFO)]
    assert telemetry_capture.collector.is_running


HOSTILE_CI = {
    "OTEL_SDK_DISABLED": "true",
    "TELEMETRY_EVENT_SAMPLE_RATE": "0",
    "TELEMETRY_SAMPLE_RATE": "0",
    "TELEMETRY_REDACT_KEYS": "user_action,orders",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    "TELEMETRY_EXPORT_ENDPOINTS": "console",
}


def test_the_fixture_captures_everything_whatever_the_ci_variables_say(
    pytester, monkeypatch, capfd
):
    for name, value in HOSTILE_CI.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(
        """
        from telemetry_otel import Event, Metric, MetricType, Trace

        def test_checkout(telemetry_capture):
            collector = telemetry_capture.collector
            assert collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
            assert collector.collect_event(Event("user_action", "checkout", tags={"k": "v"}))
            assert collector.collect_trace(Trace("t-1", "s-1", "POST /checkout", 12.0))
            captured = telemetry_capture.flush()
            assert [e.tags for e in captured.events] == [{"k": "v"}]
            assert [m.name for m in captured.metrics] == ["orders"]
            assert [t.operation for t in captured.traces] == ["POST /checkout"]
            assert collector.config.export_endpoints == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_service_s_own_collector_is_captured_by_wrapping_it():
    # The service builds its collector from the environment as it does in production.
    service_collector = TelemetryCollector()
    with service_collector, TelemetryCapture(service_collector) as captured:
        checkout(service_collector)
        assert [e.name for e in captured.flush().events] == ["user_action"]


def test_a_captured_event_knows_the_span_it_was_collected_in(telemetry_capture):
    collector = telemetry_capture.collector

    @collector.traced
    def place_order() -> None:
        collector.collect_event(Event("order_placed", "A-1001"))

    with collector.span("request", tags={"route": "/orders"}) as span:
        span.add_event("cache miss", {"key": "cart"})
        place_order()
    collector.collect_event(Event("idle", "no span"))
    captured = telemetry_capture.flush()
    inner, outer = captured.spans  # a child ends first
    assert (inner.name, outer.name) == (place_order.__qualname__, "request")
    assert inner.parent_span_id == outer.span_id and inner.trace_id == outer.trace_id
    assert (outer.kind, outer.status, outer.attributes) == (
        "INTERNAL",
        "UNSET",
        {"route": "/orders", "sampling.probability": 1.0},
    )
    assert [(e.name, e.attributes) for e in outer.events] == [("cache miss", {"key": "cart"})]
    placed, idle = captured.events
    assert captured.span_of(placed) == inner
    assert captured.span_of(idle) is None
    assert [(log.name, log.span_id) for log in captured.logs] == [
        ("order_placed", inner.span_id),
        ("idle", None),
    ]
    assert captured.resource["service.name"].startswith("unknown_service")


def test_normalized_dicts_are_the_same_on_every_run():
    def run() -> list[dict]:
        collector = TelemetryCollector()
        collector.config.export_endpoints = []
        with collector, TelemetryCapture(collector) as captured:
            with collector.span("job"):
                collector.collect_event(Event("step", "half way"))
            try:
                with collector.span("fails"):
                    raise KeyError("missing")
            except KeyError:
                pass
            collector.collect_metric(Metric("jobs", 1, MetricType.COUNTER))
            return captured.flush().as_dicts(normalize=True)

    first = run()
    assert first == run()
    job, failed, step, jobs = first
    assert job == {
        "type": "span",
        "name": "job",
        "trace_id": "trace-1",
        "span_id": "span-1",
        "parent_span_id": None,
        "kind": "INTERNAL",
        "status": "UNSET",
        "status_description": None,
        "attributes": {"sampling.probability": 1.0},
        "events": [],
        "start_ns": 0,
        "end_ns": 0,
    }
    assert (failed["trace_id"], failed["span_id"], failed["status"]) == (
        "trace-2",
        "span-2",
        "ERROR",
    )
    assert failed["status_description"] == "KeyError: 'missing'"
    assert [e["name"] for e in failed["events"]] == ["exception"]
    assert failed["events"][0]["attributes"]["exception.type"] == "KeyError"
    assert failed["events"][0]["time_ns"] == 0
    assert step == {
        "type": "log",
        "name": "step",
        "message": "half way",
        "severity": "INFO",
        "attributes": {"sampling.probability": 1.0},
        "trace_id": "trace-1",
        "span_id": "span-1",
        "time_ns": 0,
    }
    assert jobs == {
        "type": "metric",
        "name": "jobs",
        "value": 1,
        "metric_type": "counter",
        "tags": {},
        "timestamp": 0,
        "unit": "",
        "description": "",
    }


def test_a_capture_prints_what_it_holds(telemetry_capture):
    collector = telemetry_capture.collector
    collector.collect_event(Event("a", "b"))
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    assert repr(telemetry_capture.flush()) == (
        f"<TelemetryCapture of {collector!r}: 1 trace, 1 event, 0 metrics>"
    )
