"""`telemetry-otel receive`: what two services send, shown per service as trees and series."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry_otel import (
    Event,
    EventSeverity,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
    Trace,
    cli,
)
from telemetry_otel._otel.delivery.sender import GRPC_METHODS
from telemetry_otel.cli._receive import LocalReceiver, ReceivedLines
from tests.prometheus_server import free_port

TIME = r"\d\d:\d\d:\d\d\.\d{3}"
MS = r"\d+\.\d{3}ms"
ID = r"[0-9a-f]{8}"


class Screen:
    """The lines a receiver printed, collected from its threads."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def wait_for(self, receiver: LocalReceiver, count: int, seconds: float = 15.0) -> list[str]:
        deadline = time.monotonic() + seconds
        while len(self.lines) < count and time.monotonic() < deadline:
            receiver.print_expired()
            time.sleep(0.05)
        with self._lock:
            return list(self.lines)


def send_workload(endpoint: str, service: str) -> None:
    """Nested live and legacy spans, events inside spans, and the three metric types."""
    config = TelemetryConfig(
        export_endpoints=[endpoint], service_name=service, flush_interval_ms=60_000
    )
    with TelemetryCollector(config) as collector:
        with collector.span("POST /pay", tags={"route": "/pay"}):
            collector.collect_event(Event("order", "started"))
            with collector.span("charge"):
                collector.collect_event(Event("card", "declined", EventSeverity.ERROR))
        end = time.time()
        collector.collect_trace(
            Trace(f"legacy-{service}", "kid", "legacy child", 20.0, "root", timestamp=end - 0.01)
        )
        collector.collect_trace(
            Trace(f"legacy-{service}", "root", "legacy op", 50.0, timestamp=end, error="failed")
        )
        collector.collect_metric(Metric("requests", 1, MetricType.COUNTER, {"route": "/pay"}))
        collector.collect_metric(Metric("queue", 3, MetricType.GAUGE, unit="{item}"))
        for value in (12.0, 30.0):
            collector.collect_metric(Metric("latency", value, MetricType.HISTOGRAM, unit="ms"))
    # stop() sent everything once (a flush as well would send the cumulative series twice).
    assert collector.stats()["trace"]["exported"] == 4


@pytest.fixture
def receiving() -> Iterator[tuple[LocalReceiver, Screen]]:
    screen = Screen()
    receiver = LocalReceiver("127.0.0.1", 0, 0, screen, lines=ReceivedLines(settle_s=0.3))
    yield receiver, screen
    receiver.stop()


def _of(lines: list[str], service: str, kind: str) -> list[str]:
    return [line for line in lines if line.startswith(f"{service} ") and f" {kind} " in line]


def test_two_services_show_as_trees_with_events_under_their_spans_and_a_line_per_series(
    receiving,
):
    receiver, screen = receiving
    send_workload(f"grpc://127.0.0.1:{receiver.grpc_port}", "checkout")
    send_workload(f"http://127.0.0.1:{receiver.http_port}", "payments-api")
    lines = screen.wait_for(receiver, 2 * 9)
    assert len(lines) == 18, "\n".join(lines)
    for service in ("checkout", "payments-api"):
        pad = f"{service:<12} "
        trees = [line for line in lines if line.startswith(pad) and " METRIC " not in line]
        expected = [
            rf"{TIME} TRACE  OK        POST /pay {MS} trace=({ID}) span=({ID}) route=/pay",
            rf"{TIME} EVENT  INFO        order: started trace=\1 span=\2",
            rf"{TIME} TRACE  OK          charge {MS} trace=\1 span=({ID}) parent=\2",
            rf"{TIME} EVENT  ERROR         card: declined trace=\1 span=\3",
            rf"{TIME} TRACE  ERROR     legacy op 50\.000ms trace=({ID}) span=({ID}) "
            r'error="failed"',
            rf"{TIME} TRACE  OK          legacy child 20\.000ms trace=\4 span={ID} parent=\5",
        ]
        assert re.fullmatch(
            re.escape(pad) + (r"\n" + re.escape(pad)).join(expected), "\n".join(trees)
        ), "\n".join(trees)
        assert sorted(line[len(pad) + 13 :] for line in _of(lines, service, "METRIC")) == [
            "METRIC COUNTER   requests total 1 route=/pay",
            "METRIC GAUGE     queue 3 {item}",
            "METRIC HISTOGRAM latency total count=2 sum=42 min=12 max=30 ms",
        ]
    assert not [line for line in lines if "telemetry_otel." in line]


def test_the_collectors_own_metrics_show_only_when_asked():
    screen = Screen()
    lines = ReceivedLines(self_metrics=True, settle_s=0.1)
    receiver = LocalReceiver("127.0.0.1", 0, 0, screen, lines=lines)
    try:
        send_workload(f"grpc://127.0.0.1:{receiver.grpc_port}", "checkout")
        shown = screen.wait_for(receiver, 10)
    finally:
        receiver.stop()
    own = [line for line in shown if " telemetry_otel." in line]
    assert (
        "checkout     " + "METRIC COUNTER   telemetry_otel.collected total 4 {item} signal=trace"
        in [line[:13] + line[26:] for line in own]
    )


@pytest.mark.parametrize("option", ["--grpc-port", "--http-port"])
def test_a_port_out_of_range_is_refused_in_one_line(option, capsys):
    assert cli.main(["receive", option, "70000"]) == 2
    assert capsys.readouterr().err == (
        f"telemetry-otel: receive: {option} 70000 is out of range (0 to 65535)\n"
    )


@pytest.mark.parametrize("transport", ["gRPC", "HTTP"])
def test_a_busy_port_is_refused_in_one_line_naming_it(transport, capsys):
    busy = LocalReceiver("127.0.0.1", 0, 0, Screen())
    try:
        taken = busy.grpc_port if transport == "gRPC" else busy.http_port
        other = free_port()
        ports = [taken, other] if transport == "gRPC" else [other, taken]
        code = cli.main(["receive", "--grpc-port", str(ports[0]), "--http-port", str(ports[1])])
    finally:
        busy.stop()
    assert code == 2
    assert capsys.readouterr().err == (
        f"telemetry-otel: receive: cannot listen for OTLP/{transport} on 127.0.0.1:{taken}: "
        "port in use\n"
    )


def test_every_receive_option_says_what_it_does_and_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["receive", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for option, default in (
        ("--host", "127.0.0.1"),
        ("--grpc-port", "4317"),
        ("--http-port", "4318"),
        ("--jsonl", "no file"),
        ("--self-metrics", "hidden"),
    ):
        assert re.search(rf"{option}( \w+)? [^-]+\(default: {re.escape(default)}\)", help_text), (
            option
        )


def _start_receive(*args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "telemetry_otel", "receive", *args], **popen)


def test_receive_piped_prints_plain_lines_and_the_line_to_paste(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    jsonl = tmp_path / "received.jsonl"
    process = _start_receive(
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        "--jsonl",
        str(jsonl),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        assert (
            process.stderr.readline()
            .decode()
            .startswith(
                f"receiving OTLP on grpc 127.0.0.1:{grpc_port} and http 127.0.0.1:{http_port}"
            )
        )
        assert process.stderr.readline().decode() == (
            f"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{http_port}\n"
        )
        send_workload(f"http://127.0.0.1:{http_port}", "checkout")
        time.sleep(1.5)  # the settle time, for the last trace
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    lines = out.decode().splitlines()
    assert len(lines) == 9 and all(line.startswith("checkout     ") for line in lines), lines
    assert "\x1b[" not in out.decode() and "█" not in out.decode()
    assert len(jsonl.read_text().splitlines()) >= 3


def test_receive_on_a_terminal_draws_bars_and_colours_levels():
    grpc_port, http_port = free_port(), free_port()
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"COLUMNS": "160"}
    process = _start_receive(
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(terminal)
    try:
        assert process.stderr is not None
        process.stderr.readline()  # listening
        send_workload(f"grpc://127.0.0.1:{grpc_port}", "checkout")
        output = _read_terminal(controller, lines=9, seconds=15)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        os.close(controller)
    spans = [line for line in output if " TRACE " in line]
    bar = r"\[[·█]{20}\]"
    assert [re.sub(r".* (\[.*\]) +(\S+( \S+)?) \d.*", r"\1 \2", line) for line in spans][:1] == [
        "[" + "█" * 20 + "] POST /pay"
    ]
    assert all(re.search(rf"\x1b\[3\dm(OK|ERROR) *\x1b\[0m {bar} ", line) for line in spans)
    events = [line for line in output if " EVENT " in line]
    assert any("\x1b[31mERROR    \x1b[0m" in line and "card: declined" in line for line in events)


def _read_terminal(controller: int, lines: int, seconds: float) -> list[str]:
    data = b""
    deadline = time.monotonic() + seconds
    while data.count(b"\n") < lines and time.monotonic() < deadline:
        import select

        ready, _, _ = select.select([controller], [], [], 0.1)
        if ready:
            data += os.read(controller, 65536)
    return data.decode().replace("\r\n", "\n").splitlines()


def _post(port: int, path: str, body: bytes, **headers: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.reason


def test_a_request_it_cannot_read_is_refused_in_one_line_and_receive_keeps_going(receiving, capsys):
    import gzip

    receiver, screen = receiving
    port = receiver.http_port
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros, 64 KB on the wire
    assert _post(port, "/v1/traces", b"not protobuf at all \xff\xfe") == (
        400,
        "the body is not an OTLP traces request",
    )
    assert _post(port, "/v1/logs", b"not gzip", **{"Content-Encoding": "gzip"}) == (
        400,
        "the body is not valid gzip",
    )
    assert _post(port, "/v1/metrics", bomb, **{"Content-Encoding": "gzip"}) == (
        413,
        "the body is over 4194304 bytes once gunzipped",
    )
    assert _post(port, "/v1/logs", b"{not json", **{"Content-Type": "application/json"}) == (
        400,
        "the body is not an OTLP logs request",
    )
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "receive: refused a request to /v1/traces: the body is not an OTLP traces request",
        "receive: refused a request to /v1/logs: the body is not valid gzip",
        "receive: refused a request to /v1/metrics: the body is over 4194304 bytes once gunzipped",
        "receive: refused a request to /v1/logs: the body is not an OTLP logs request",
    ]
    send_workload(f"http://127.0.0.1:{port}", "checkout")  # and it still receives
    assert len(screen.wait_for(receiver, 9)) == 9


def test_http_json_is_received_and_shown_as_protobuf_is(receiving):
    receiver, screen = receiving
    send_workload(f"http://127.0.0.1:{receiver.http_port}?protocol=http/json", "checkout")
    lines = screen.wait_for(receiver, 9)
    assert len(lines) == 9
    assert any("POST /pay" in line and "route=/pay" in line for line in lines)
    assert any("METRIC HISTOGRAM latency total count=2 sum=42" in line for line in lines)


@pytest.mark.parametrize("path", ["/foo/v1/traces", "/v1/traces/", "/v1/spans", "/traces"])
def test_only_the_collector_s_own_paths_are_accepted(receiving, path):
    receiver, _ = receiving
    assert _post(receiver.http_port, path, b"") == (404, f"no OTLP signal at {path}")
    assert _post(receiver.http_port, "/v1/traces", b"") == (200, "")


def test_an_unusable_jsonl_path_is_refused_at_start_in_one_line(tmp_path, capsys):
    args = ["receive", "--grpc-port", "0", "--http-port", "0", "--jsonl", str(tmp_path)]
    assert cli.main(args) == 2
    assert capsys.readouterr().err == (
        f"telemetry-otel: receive: cannot write {tmp_path}: Is a directory\n"
    )


def test_a_jsonl_write_that_fails_later_is_answered_500_and_said_once(capsys):
    from pathlib import Path

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    screen = Screen()
    # /dev/full opens, then refuses every write: a disk that filled up after start.
    receiver = LocalReceiver("127.0.0.1", 0, 0, screen, jsonl=Path("/dev/full"))
    try:
        message = "cannot write /dev/full: No space left on device"
        assert _post(receiver.http_port, "/v1/traces", b"") == (500, message)
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as failed:
                stub.Export(trace_service_pb2.ExportTraceServiceRequest(), timeout=10)
        assert (failed.value.code(), failed.value.details()) == (
            grpc.StatusCode.INTERNAL,
            message,
        )
    finally:
        receiver.stop()
    assert capsys.readouterr().err.splitlines() == [f"receive: {message}"] * 2


def test_metric_values_print_in_full_marked_cumulative_or_not_without_unknown_bounds():
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb

    delta, cumulative = 1, 2
    request = pb.ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    epoch = metrics.add(name="started", unit="s")
    epoch.gauge.data_points.add(as_double=1796660000.25, time_unix_nano=1)
    big = metrics.add(name="bytes")
    big.sum.aggregation_temporality, big.sum.is_monotonic = delta, True
    big.sum.data_points.add(as_int=12345678901234, time_unix_nano=1)
    whole = metrics.add(name="seconds")
    whole.sum.aggregation_temporality, whole.sum.is_monotonic = cumulative, True
    whole.sum.data_points.add(as_double=3e9, time_unix_nano=1)
    bridged = metrics.add(name="latency")  # a bridged histogram: no min, no max
    bridged.histogram.aggregation_temporality = cumulative
    bridged.histogram.data_points.add(count=3, sum=0.1 + 0.2, time_unix_nano=1)
    lines = ReceivedLines(settle_s=0.1).request("metrics", request)
    assert [line.split(" ", 2)[2].strip() for line in lines] == [
        "METRIC GAUGE     started 1796660000.25 s",
        "METRIC COUNTER   bytes 12345678901234",
        "METRIC COUNTER   seconds total 3000000000",
        "METRIC HISTOGRAM latency total count=3 sum=0.3",
    ]


def _span_with_events() -> object:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
    from opentelemetry.proto.common.v1 import common_pb2

    request = pb.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(
        key="service.name", value=common_pb2.AnyValue(string_value="checkout")
    )
    span = resource_spans.scope_spans.add().spans.add(
        name="charge",
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        start_time_unix_nano=1_000_000_000,
        end_time_unix_nano=1_005_000_000,
    )
    span.status.code, span.status.message = 2, "ValueError: bad card"
    miss = span.events.add(name="cache miss", time_unix_nano=1_001_000_000)
    miss.attributes.add(key="key", value=common_pb2.AnyValue(string_value="cart"))
    raised = span.events.add(name="exception", time_unix_nano=1_004_000_000)
    for key, text in (
        ("exception.type", "ValueError"),
        ("exception.message", "bad card"),
        ("exception.stacktrace", "Traceback (most recent call last):\n  raise\x1b[2J ValueError\n"),
    ):
        raised.attributes.add(key=key, value=common_pb2.AnyValue(string_value=text))
    return request


def test_receive_prints_span_events_under_their_span_and_tracebacks_on_a_terminal():
    piped = ReceivedLines(settle_s=0.0).request("traces", _span_with_events())
    assert all(line.startswith("checkout     ") for line in piped)
    assert [line[13 + 13 :] for line in piped] == [  # without the service and the time
        'TRACE  ERROR     charge 5.000ms trace=01020304 span=01020304 error="ValueError: bad card"',
        "EVENT  INFO        cache miss key=cart",
        "EVENT  ERROR       exception ValueError: bad card",
    ]
    on_terminal = ReceivedLines(bars=True, settle_s=0.0).request("traces", _span_with_events())
    assert len(on_terminal) == 5
    margin = "checkout     " + " " * (30 + 23 + 2)  # time, signal, level; the bar column
    assert on_terminal[3:] == [
        margin + "│ Traceback (most recent call last):",
        margin + "│   raise?[2J ValueError",  # no escape code reaches the terminal
    ]


def test_a_trace_across_two_services_is_one_tree_with_each_line_s_service():
    screen = Screen()
    receiver = LocalReceiver("127.0.0.1", 0, 0, screen, lines=ReceivedLines(settle_s=1.0))
    try:

        def collector(service: str, endpoint: str) -> TelemetryCollector:
            config = TelemetryConfig(
                export_endpoints=[endpoint], service_name=service, flush_interval_ms=60_000
            )
            return TelemetryCollector(config.with_env({}))

        client = collector("web", f"grpc://127.0.0.1:{receiver.grpc_port}")
        server = collector("payments-api", f"http://127.0.0.1:{receiver.http_port}")
        with client, server:
            with client.span("GET /checkout"):
                headers = client.inject_context()
                with server.span("POST /pay", parent=server.extract_context(headers)):
                    server.collect_event(Event("charged", "ok"))
            assert server.flush(5000) and client.flush(5000)
        lines = screen.wait_for(receiver, 3)
    finally:
        receiver.stop()
    assert [line.split()[0] for line in lines] == ["web", "payments-api", "payments-api"], (
        "\n".join(lines)
    )
    assert " TRACE  OK        GET /checkout " in lines[0]
    assert " TRACE  OK          POST /pay " in lines[1]  # one level under its caller
    assert " EVENT  INFO          charged: ok " in lines[2] + " "
    trace = re.search(r" trace=(\w+) ", lines[0])
    assert trace is not None and all(f" trace={trace[1]} " in line for line in lines)


def test_a_span_sent_again_is_marked():
    request = _span_with_events()
    lines = ReceivedLines(settle_s=0.0)
    first = lines.request("traces", request)
    again = lines.request("traces", request)
    assert "sent again" not in first[0]
    assert again[0].endswith(" (sent again: this span id was shown before)")


def test_a_narrow_terminal_drops_the_bars_and_cuts_long_service_names():
    request = _span_with_events()
    [resource_spans] = request.resource_spans
    resource_spans.resource.attributes[0].value.string_value = "payments-reconciliation-worker"
    wide = ReceivedLines(bars=True, settle_s=0.0, columns=160).request("traces", request)
    narrow = ReceivedLines(bars=True, settle_s=0.0, columns=80).request("traces", request)
    assert wide[0].startswith("payments-reconciliation-worker ")
    assert "[████████████████████] charge 5.000ms" in wide[0]
    assert narrow[0].startswith("payments-re… ")
    assert "█" not in narrow[0]
    assert narrow[0][13 + 13 :].startswith("TRACE  ERROR     charge 5.000ms trace=01020304 ")
    # Still a terminal: the traceback prints as lines, under the event's name.
    assert narrow[3:] == [
        "payments-re… " + " " * 32 + "│ Traceback (most recent call last):",
        "payments-re… " + " " * 32 + "│   raise?[2J ValueError",
    ]


def test_receive_whose_reader_leaves_stops_quietly():
    # `receive | head -1`: the reader takes a line and goes; the next lines find the pipe
    # closed in several server threads at once.
    grpc_port, http_port = free_port(), free_port()
    process = _start_receive(
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        process.stderr.readline()  # listening
        send_workload(f"grpc://127.0.0.1:{grpc_port}", "checkout")
        assert process.stdout.readline()  # the one line head -1 takes
        process.stdout.close()
        for round_number in range(3):  # each has lines that find nobody reading
            send_workload(f"http://127.0.0.1:{http_port}", f"round-{round_number}")
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = process.stderr.read().decode()
    assert code == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def _chain_request(depth: int) -> ExportTraceServiceRequest:
    """One trace ``depth`` spans deep: each span the parent of the next."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "deep"
    scope = resource.scope_spans.add()
    for level in range(depth):
        span = scope.spans.add(name=f"level{level}", trace_id=(7).to_bytes(16, "big"))
        span.span_id = (level + 1).to_bytes(8, "big")
        if level:
            span.parent_span_id = level.to_bytes(8, "big")
        span.start_time_unix_nano, span.end_time_unix_nano = 1_000 + level, 10_000_000 - level
    return request


def test_a_ten_thousand_deep_trace_prints_in_lines_of_bounded_width():
    lines = ReceivedLines(bars=True, settle_s=0.0)
    printed = lines.request("traces", _chain_request(10_000)) + lines.drain()
    assert len(printed) == 10_000
    assert max(len(line) for line in printed) < 250  # was 20 KB: two spaces a level
    assert re.search(r" {64}\[9999\] level9999 ", printed[-1]), printed[-1]
    assert re.search(r" {62}level31 ", printed[31]), printed[31]


HOSTILE = "ok\x1b]0;owned\x07\x1b[2J\r\nTRACE OK forged\x9b31m"


def test_escape_codes_and_line_breaks_from_a_sender_never_reach_the_terminal(tmp_path):
    screen = Screen()
    receiver = LocalReceiver("127.0.0.1", 0, 0, screen, lines=ReceivedLines(settle_s=0.1))
    try:
        config = TelemetryConfig(
            export_endpoints=[f"grpc://127.0.0.1:{receiver.grpc_port}"],
            service_name=HOSTILE,
            flush_interval_ms=60_000,
        )
        with TelemetryCollector(config) as collector:
            with collector.span(HOSTILE, tags={HOSTILE: HOSTILE}) as span:
                span.add_event(HOSTILE, {"k": HOSTILE})
            collector.collect_event(Event(HOSTILE, HOSTILE, metadata={"k": [HOSTILE]}))
            collector.collect_metric(Metric("queue", 3, MetricType.GAUGE, {"k": HOSTILE}))
        printed = screen.wait_for(receiver, 4)
    finally:
        receiver.stop()
    assert len(printed) >= 4
    for line in printed:
        assert line.isprintable(), repr(line)
    assert sum("ok?]0;owned?" in line for line in printed) >= 4


def test_the_console_never_prints_a_senders_escape_codes(capsys):
    config = TelemetryConfig(export_endpoints=["console"], flush_interval_ms=60_000)
    with TelemetryCollector(config) as collector:
        with collector.span(HOSTILE, tags={"k": HOSTILE}):
            collector.collect_event(Event(HOSTILE, HOSTILE))
        collector.collect_metric(Metric("queue", 3, MetricType.GAUGE, {"k": HOSTILE}))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) >= 3
    assert all(line.isprintable() for line in lines), [
        line for line in lines if not line.isprintable()
    ]
    assert "TRACE OK forged" not in [line.strip() for line in lines]


def test_half_open_http_connections_hold_no_thread_for_good(monkeypatch):
    from telemetry_otel.cli import _receive

    monkeypatch.setattr(_receive._HttpHandler, "timeout", 2.0)
    screen = Screen()
    receiver = LocalReceiver("127.0.0.1", 0, 0, screen)
    before = threading.active_count()
    sockets = []
    try:
        for _ in range(200):
            sockets.append(socket.create_connection(("127.0.0.1", receiver.http_port)))
        time.sleep(0.3)
        held = threading.active_count() - before
        assert _receive.MAX_HTTP_CONNECTIONS // 2 <= held <= _receive.MAX_HTTP_CONNECTIONS + 2
        deadline = time.monotonic() + 10
        while threading.active_count() > before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before + 2  # every idle one timed out
        send_workload(f"http://127.0.0.1:{receiver.http_port}", "after")
        assert any("after" in line for line in screen.wait_for(receiver, 3))
    finally:
        for sock in sockets:
            sock.close()
        receiver.stop()


def test_an_undecodable_grpc_request_is_refused_with_a_line_on_stderr(capfd):
    receiver = LocalReceiver("127.0.0.1", 0, 0, Screen())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            export = channel.unary_unary(GRPC_METHODS["traces"])
            with pytest.raises(grpc.RpcError) as raised:
                export(b"\xff\xff\xff not protobuf", timeout=5)
    finally:
        receiver.stop()
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "the body is not an OTLP traces request"
    assert (
        "receive: refused a gRPC traces request: the body is not an OTLP traces request"
        in capfd.readouterr().err
    )
