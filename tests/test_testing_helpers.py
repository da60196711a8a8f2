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
