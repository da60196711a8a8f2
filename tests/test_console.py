from __future__ import annotations

import re

from telemetry_otel import Event, EventSeverity, Metric, MetricType, Trace

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_console_prints_one_readable_line_per_span(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"])
    collector.collect_trace(
        Trace(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            "GET /users",
            12.5,
            parent_span_id="53995c3f42cd8ad8",
            tags={"http.route": "/users"},
            timestamp=1_700_000_000.25,
            error="timed out",
        )
    )
    collector.flush()
    assert _lines(capsys) == [
        "2023-11-14T22:13:20.250Z TRACE  GET /users 12.500ms trace=4bf92f35 span=00f067aa "
        'parent=53995c3f error="timed out" http.route=/users'
    ]


def test_console_prints_one_line_per_event_with_severity_message_and_fields(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"])
    collector.collect_event(
        Event(
            "user_action",
            "User completed checkout",
            EventSeverity.WARNING,
            {"user_id": "12345", "note": "two words"},
            1_700_000_000.0,
            {"team": "web"},
        )
    )
    collector.flush()
    assert _lines(capsys) == [
        "2023-11-14T22:13:20.000Z EVENT  WARNING  user_action: User completed checkout "
        'team=web user_id=12345 note="two words"'
    ]


def test_console_prints_one_line_per_metric_data_point(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"], flush_interval_ms=60_000)
    collector.collect_metric(Metric("orders", 3, MetricType.COUNTER, {"region": "eu"}))
    collector.collect_metric(Metric("latency", 12.5, MetricType.HISTOGRAM, unit="ms"))
    collector.collect_metric(Metric("latency", 7.5, MetricType.HISTOGRAM, unit="ms"))
    collector.flush()
    lines = _lines(capsys)
    assert len(lines) == 2
    assert re.fullmatch(rf"{TIME} METRIC COUNTER  orders 3 region=eu", lines[0])
    assert re.fullmatch(
        rf"{TIME} METRIC HISTOGRAM latency sum=20 count=2 min=7.5 max=12.5 ms", lines[1]
    )
