"""The console endpoint: traces as trees, events under their span, printed at once."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import subprocess
import sys
import textwrap
import time
from datetime import datetime

from telemetry_otel import (
    Event,
    EventSeverity,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
    Trace,
)

TIME = r"\d\d:\d\d:\d\d\.\d{3}"


def _at(epoch_seconds: float) -> str:
    """The console's short local time for a moment."""
    return datetime.fromtimestamp(epoch_seconds).strftime("%H:%M:%S.%f")[:-3]


def _short(trace_id: str, span_id: str | None = None) -> str:
    """The console's 8-digit id for a legacy id, computed as the mapping defines it."""
    text = trace_id if span_id is None else f"{trace_id}\0{span_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


def _wait_for_lines(capsys, count: int, seconds: float = 5.0) -> list[str]:
    """What the console printed by itself (no flush), once ``count`` lines are there."""
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while len(lines) < count and time.monotonic() < deadline:
        lines += _lines(capsys)
        time.sleep(0.01)
    return lines


def test_a_legacy_trace_prints_as_a_tree_under_its_root_once_the_root_ends(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"])
    end = 1_700_000_000.25
    collector.collect_trace(
        Trace("t", "db", "db.query", 12.5, "root", {"table": "users"}, end - 0.05)
    )
    collector.collect_trace(
        Trace("t", "pay", "charge", 48.0, "root", timestamp=end - 0.005, error="card declined")
    )
    collector.collect_trace(Trace("t", "row", "fetch row", 2.0, "db", timestamp=end - 0.052))
    time.sleep(0.3)  # printed at once, were they not held
    assert _lines(capsys) == []  # the root has not ended: the tree waits for it
    collector.collect_trace(
        Trace("t", "root", "POST /checkout", 87.0, tags={"route": "/c"}, timestamp=end)
    )
    assert _wait_for_lines(capsys, 4) == [
        f"{_at(end - 0.087)} TRACE  OK        POST /checkout 87.000ms trace={_short('t')} "
        f"span={_short('t', 'root')} route=/c",
        f"{_at(end - 0.0625)} TRACE  OK          db.query 12.500ms span={_short('t', 'db')} "
        "table=users",
        f"{_at(end - 0.054)} TRACE  OK            fetch row 2.000ms span={_short('t', 'row')}",
        f"{_at(end - 0.053)} TRACE  ERROR       charge 48.000ms span={_short('t', 'pay')} "
        'error="card declined"',
    ]


def test_a_span_that_ends_after_its_root_prints_at_once_indented_under_it(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"])
    collector.collect_trace(Trace("t", "root", "job", 10.0, timestamp=1_700_000_000.0))
    assert len(_wait_for_lines(capsys, 1)) == 1
    collector.collect_trace(Trace("t", "late", "cleanup", 1.0, "root", timestamp=1_700_000_000.5))
    assert _wait_for_lines(capsys, 1) == [
        f"{_at(1_700_000_000.499)} TRACE  OK          cleanup 1.000ms span={_short('t', 'late')}"
    ]


def test_events_in_live_spans_print_under_the_span_they_happened_in(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"], flush_interval_ms=60_000)
    with collector.span("GET /orders") as root:
        collector.collect_event(Event("orders", "listing", EventSeverity.INFO))
        with collector.span("db.query") as child:
            collector.collect_event(Event("db", "slow query", EventSeverity.WARNING))
    lines = _wait_for_lines(capsys, 4)
    trace_id = f"{root.get_span_context().trace_id:032x}"[:8]
    child_id = f"{child.get_span_context().span_id:016x}"[:8]
    pattern = [
        rf"{TIME} TRACE  OK        GET /orders \d+\.\d{{3}}ms trace={trace_id} span=\w{{8}}",
        rf"{TIME} EVENT  INFO        orders: listing",
        rf"{TIME} TRACE  OK          db.query \d+\.\d{{3}}ms span={child_id}",
        rf"{TIME} EVENT  WARNING       db: slow query",
    ]
    assert len(lines) == 4, lines
    for line, expected in zip(lines, pattern, strict=True):
        assert re.fullmatch(expected, line), (line, expected)


def test_an_event_prints_at_once_without_waiting_for_the_flush_interval(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"], flush_interval_ms=60_000)
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
    assert _wait_for_lines(capsys, 1) == [
        f"{_at(1_700_000_000.0)} EVENT  WARNING   user_action: User completed checkout "
        'team=web user_id=12345 note="two words"'
    ]


def test_spans_whose_root_has_not_come_print_at_flush(capsys):
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=["console"]))
    collector.start()
    collector.collect_trace(Trace("t", "orphan", "lost parent", 3.0, "gone", timestamp=1.0))
    assert collector.flush() is True
    collector.stop()
    # Shown at the top, with the ids its missing place in a tree would have said.
    assert _lines(capsys) == [
        f"{_at(0.997)} TRACE  OK        lost parent 3.000ms trace={_short('t')} "
        f"span={_short('t', 'orphan')} parent={_short('t', 'gone')}"
    ]
    assert collector.stats()["trace"]["exported"] == 1


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
        rf"{TIME} METRIC HISTOGRAM latency count=2 sum=20 min=7.5 max=12.5 ms", lines[1]
    )


def test_console_json_prints_otlp_json_export_requests(make_collector, capsys):
    collector = make_collector(export_endpoints=["console?format=json"])
    collector.collect_trace(
        Trace(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            "op",
            1.0,
            timestamp=1_700_000_000.0,
        )
    )
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


def _run_on_a_terminal(extra_env: dict[str, str], command: list[str] | None = None) -> list[str]:
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | extra_env
    process = subprocess.Popen(
        command or [sys.executable, "-c", _SCRIPT],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=env,
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
    lines = sorted(_run_on_a_terminal({"TZ": "UTC"}))  # two queues, two threads: any order
    assert lines == [
        "00:00:01.000 EVENT  \x1b[31mERROR    \x1b[0m disk: almost full",
        "00:00:01.999 TRACE  \x1b[32mOK       \x1b[0m op 1.000ms "
        f"trace={_short('t')} span={_short('t', 's')}",
    ]


def test_no_color_turns_colour_off_even_on_a_terminal():
    lines = sorted(_run_on_a_terminal({"NO_COLOR": "1", "TZ": "UTC"}))
    assert lines[0] == "00:00:01.000 EVENT  ERROR     disk: almost full"
    assert "\x1b[" not in lines[1]


_FORK_SCRIPT = textwrap.dedent(
    """
    import io, os
    from telemetry_otel._otel.destinations.console import ConsoleTrees
    from telemetry_otel._otel.destinations.layout import SpanView
    from telemetry_otel._otel.destinations.tree import Node

    out = io.StringIO()
    trees = ConsoleTrees(out)
    view = SpanView("waiting for its root", 0, 1, 7, 2, 1, None, {})
    trees.print_views([(7, Node(view, 2, 1, 0, 1, True))])
    pid = os.fork()
    trees.drain()  # what each would print at its stop()
    printed = len(out.getvalue().splitlines())
    if pid == 0:
        os.write(1, f"child {printed}\\n".encode())  # one write: no interleaving
        os._exit(0)
    os.waitpid(pid, 0)
    print("parent", printed)
    """
)


def test_a_forked_child_does_not_print_the_spans_its_parent_holds():
    # In a process of its own: forking pytest's, with its threads, is asking for trouble.
    result = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:2]) == ["child 0", "parent 1"]


def test_an_orphan_span_prints_by_itself_once_its_wait_is_over():
    import io

    from telemetry_otel._otel.destinations.console import ConsoleTrees
    from telemetry_otel._otel.destinations.layout import SpanView
    from telemetry_otel._otel.destinations.tree import Node

    out = io.StringIO()
    trees = ConsoleTrees(out, max_wait_s=0.2)
    view = SpanView("root never came", 0, 1_000_000, 7, 2, 1, None, {})
    trees.print_views([(7, Node(view, 2, 1, 0, 1_000_000, True))])
    assert out.getvalue() == ""
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert " root never came 1.000ms " in out.getvalue()


def test_events_stay_under_their_span_with_both_cores_busy(make_collector, capsys, busy_cores):
    collector = make_collector(export_endpoints=["console"], flush_interval_ms=60_000)
    for round_number in range(20):
        with collector.span(f"request {round_number}"):
            collector.collect_event(Event("step", f"inside {round_number}"))
        lines = _wait_for_lines(capsys, 2)
        assert [line.split()[3:5] for line in lines] == [
            ["request", str(round_number)],
            ["step:", "inside"],
        ], lines


_FLUSH_THEN_EXIT = textwrap.dedent(
    """
    import os
    from telemetry_otel import *
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=["console"]))
    collector.start()
    with collector.span("job"):
        with collector.span("step"):
            collector.collect_event(Event("progress", "half way"))
    print("flushed", collector.flush(), flush=True)
    os._exit(0)  # as a multiprocessing worker leaves: no exit hook
    """
)


def test_a_worker_that_flushes_then_exits_at_once_loses_no_console_line():
    result = subprocess.run(
        [sys.executable, "-c", _FLUSH_THEN_EXIT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    words = [line.split()[1:5] for line in result.stdout.splitlines()]
    assert words == [
        ["TRACE", "OK", "job", words[0][3]],
        ["TRACE", "OK", "step", words[1][3]],
        ["EVENT", "INFO", "progress:", "half"],
        ["True"],
    ]


def test_a_long_job_shows_what_has_ended_while_its_root_still_runs(make_collector, capsys):
    collector = make_collector(export_endpoints=["console"])
    with collector.span("nightly job"):
        for n in range(3):
            with collector.span(f"batch {n}", tags={"rows": 500}):
                pass
        # About a second after the first batch ended, without waiting for the root: what
        # ended so far, one level down, under a line saying the root still runs.
        so_far = _wait_for_lines(capsys, 4, seconds=10)
        assert re.fullmatch(
            rf"{TIME} TRACE  RUNNING   trace=[0-9a-f]{{8}} waiting for its root; ended so far:",
            so_far[0],
        ), so_far
        assert [line[13:].split(" span=")[0].rsplit(" ", 1)[0] for line in so_far[1:]] == [
            f"TRACE  OK          batch {n}" for n in range(3)
        ]
        with collector.span("batch 3"):
            pass
        [late] = _wait_for_lines(capsys, 1)  # at once now, under the same header
        assert late[13:].startswith("TRACE  OK          batch 3 ")
    [root] = _wait_for_lines(capsys, 1)
    assert root[13:].startswith("TRACE  OK        nightly job ")
    assert f"trace={so_far[0].split('trace=')[1][:8]}" in root


_FAILING_APP = textwrap.dedent(
    """
    import logging
    from telemetry_otel import TelemetryCollector, TelemetryConfig

    collector = TelemetryCollector(TelemetryConfig(export_endpoints=["console"]).with_env({}))
    log = logging.getLogger("app")
    log.addHandler(collector.logging_handler())
    log.propagate = False


    def lookup(items):
        return items["missing"]


    with collector:
        try:
            with collector.span("checkout") as span:
                span.add_event("cache miss", {"key": "cart:42"})
                try:
                    lookup({})
                except KeyError:
                    log.exception("lookup failed")
                    raise
        except KeyError:
            pass
    """
)


def _without_times(lines: list[str]) -> list[str]:
    return [re.sub(rf"^{TIME} ", "", re.sub(r" \d+\.\d{3}ms", " Nms", line)) for line in lines]


def test_span_events_and_exceptions_print_under_their_span_piped_in_one_line_each(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(_FAILING_APP)
    result = subprocess.run(
        [sys.executable, str(app)], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert result.returncode == 0, result.stderr
    lines = _without_times(result.stdout.splitlines())
    assert lines[0].startswith("TRACE  ERROR     checkout Nms trace=")
    assert lines[0].endswith(" error=\"KeyError: 'missing'\"")
    assert lines[1:3] == [
        "EVENT  INFO        cache miss key=cart:42",
        "EVENT  ERROR       exception KeyError: 'missing' exception.escaped=False",
    ]
    # The logging bridge's traceback stays one field: piped output is for programs.
    assert lines[3].startswith("EVENT  ERROR       app: lookup failed ")
    assert 'exception.stacktrace="Traceback (most recent call last):\\n' in lines[3]
    assert len(lines) == 4


def _traceback_under(lines: list[str], first: int) -> list[str]:
    """The traceback lines from ``first`` on, without their margin (32 columns: under
    the event's name, one level below its span) and the bar."""
    block = []
    for line in lines[first:]:
        if not line.startswith(" " * 32 + "│ "):
            break
        block.append(line[34:])
    return block


def test_on_a_terminal_an_exception_s_traceback_prints_as_lines_under_it(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(_FAILING_APP)
    lines = _without_times(_run_on_a_terminal({"NO_COLOR": "1"}, [sys.executable, str(app)]))
    frames = [f'  File "{app}", line 20, in <module>', f'  File "{app}", line 12, in lookup']
    assert lines[1] == "EVENT  INFO        cache miss key=cart:42"
    assert lines[2] == "EVENT  ERROR       exception KeyError: 'missing' exception.escaped=False"
    # The span's exception event: its traceback, OpenTelemetry's own frames left out,
    # the same as the logging bridge's.
    recorded = _traceback_under(lines, 3)
    assert recorded[0] == "Traceback (most recent call last):"
    assert recorded[-1] == "KeyError: 'missing'"
    assert [line for line in recorded if line.startswith("  File")] == frames
    logged = 3 + len(recorded)
    assert lines[logged].startswith("EVENT  ERROR       app: lookup failed ")
    assert "exception.stacktrace" not in lines[logged]
    bridged = _traceback_under(lines, logged + 1)
    assert bridged == recorded
    assert len(lines) == logged + 1 + len(bridged)
