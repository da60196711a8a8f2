"""The console endpoint: one readable line per item, coloured only on a terminal."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import subprocess
import sys
import textwrap

from telemetry_otel import Event, EventSeverity, Metric, MetricType, Trace

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _short(trace_id: str, span_id: str | None = None) -> str:
    """The console's 8-digit id for a legacy id, computed as the mapping defines it."""
    text = trace_id if span_id is None else f"{trace_id}\0{span_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_console_prints_one_readable_line_per_span(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"])
    collector.collect_trace(
        Trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "GET /users", 12.5,
              parent_span_id="53995c3f42cd8ad8", tags={"http.route": "/users"},
              timestamp=1_700_000_000.25, error="timed out")
    )  # fmt: skip
    collector.collect_trace(Trace("t", "s", "GET /health", 0.25, timestamp=1_700_000_000.0))
    collector.flush()
    assert _lines(capsys) == [
        "2023-11-14T22:13:20.250Z TRACE  ERROR     GET /users 12.500ms trace=4bf92f35 "
        'span=00f067aa parent=53995c3f error="timed out" http.route=/users',
        "2023-11-14T22:13:20.000Z TRACE  OK        GET /health 0.250ms "
        f"trace={_short('t')} span={_short('t', 's')}",
    ]


def test_console_prints_one_line_per_event_with_severity_message_and_fields(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"])
    collector.collect_event(
        Event("user_action", "User completed checkout", EventSeverity.WARNING,
              {"user_id": "12345", "note": "two words"}, 1_700_000_000.0, {"team": "web"})
    )  # fmt: skip
    collector.flush()
    assert _lines(capsys) == [
        "2023-11-14T22:13:20.000Z EVENT  WARNING   user_action: User completed checkout "
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
    assert re.fullmatch(rf"{TIME} METRIC COUNTER   orders 3 region=eu", lines[0])
    assert re.fullmatch(
        rf"{TIME} METRIC HISTOGRAM latency sum=20 count=2 min=7.5 max=12.5 ms", lines[1]
    )


def test_console_json_prints_otlp_json_export_requests(make_collector, capsys):
    collector = make_collector(export_endpoints=["console?format=json"])
    collector.collect_trace(
        Trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "op", 1.0,
              timestamp=1_700_000_000.0)
    )  # fmt: skip
    collector.flush()
    [request] = [json.loads(line) for line in _lines(capsys) if '"resourceSpans"' in line]
    [span] = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert (span["traceId"], span["spanId"], span["name"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "op",
    )
    assert (span["kind"], span["endTimeUnixNano"]) == (1, "1700000000000000000")


_SCRIPT = textwrap.dedent(
    """
    from telemetry_otel import *
    with TelemetryCollector(TelemetryConfig(export_endpoints=["console"])) as c:
        c.collect_event(Event("disk", "almost full", EventSeverity.ERROR, timestamp=1.0))
        c.collect_trace(Trace("t", "s", "op", 1.0, timestamp=2.0))
    """
)


def _run_on_a_terminal(extra_env: dict[str, str]) -> list[str]:
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | extra_env
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT], stdout=terminal, stderr=subprocess.PIPE, env=env
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the child is done
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    return output.decode().splitlines()


def test_on_a_terminal_the_level_is_coloured():
    lines = _run_on_a_terminal({})
    assert sorted(lines) == [
        "1970-01-01T00:00:01.000Z EVENT  \x1b[31mERROR    \x1b[0m disk: almost full",
        "1970-01-01T00:00:02.000Z TRACE  \x1b[32mOK       \x1b[0m op 1.000ms "
        f"trace={_short('t')} span={_short('t', 's')}",
    ]


def test_no_color_turns_colour_off_even_on_a_terminal():
    lines = sorted(_run_on_a_terminal({"NO_COLOR": "1"}))
    assert lines[0] == "1970-01-01T00:00:01.000Z EVENT  ERROR     disk: almost full"
    assert "\x1b[" not in lines[1]
