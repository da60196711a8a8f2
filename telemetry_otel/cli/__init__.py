"""The `telemetry-otel` command (also `python -m telemetry_otel`): demo, check, receive, config."""

from __future__ import annotations

import os

# gRPC's C core logs its own view of every failure (bind errors, handshakes) straight to
# stderr; the commands say what went wrong in one line of their own. Set before gRPC is
# first imported; a GRPC_VERBOSITY the user set still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telemetry_otel._otel.destinations.console import STDOUT_CLOSED
from telemetry_otel._version import __version__
from telemetry_otel.collector import TelemetryCollector
from telemetry_otel.config import TelemetryConfig
from telemetry_otel.models import Event, EventSeverity, Metric, MetricType, Trace


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the return value is the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except (ValueError, TypeError) as error:  # bad endpoint strings, variables
        print(f"telemetry-otel: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # a command's own output, closed by its reader
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-otel", description="The legacy telemetry API on OpenTelemetry."
    )
    parser.add_argument("--version", action="version", version=f"telemetry-otel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="collect a realistic sample and export it")
    demo.add_argument(
        "--endpoint",
        action="append",
        dest="endpoints",
        metavar="E",
        help="an export endpoint (repeatable); default: console",
    )
    demo.set_defaults(run=run_demo)
    check = commands.add_parser("check", help="send one item of each signal to an endpoint")
    check.add_argument("endpoint", help="an OTLP endpoint: grpc[s]://host:port or http[s]://…")
    check.set_defaults(run=run_check)
    receive = commands.add_parser(
        "receive",
        help="a local OTLP receiver that prints what arrives",
        description="Listen for OTLP (gRPC and HTTP/protobuf) and print what arrives, per "
        "service: traces as trees, events under their span, one line per metric series.",
    )
    receive.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    for option, transport, port in (("--grpc-port", "gRPC", 4317), ("--http-port", "HTTP", 4318)):
        receive.add_argument(
            option,
            type=int,
            default=port,
            metavar="PORT",
            help=f"OTLP/{transport} port, 0 for any free one (default: %(default)s)",
        )
    receive.add_argument(
        "--jsonl",
        type=Path,
        metavar="FILE",
        help="also append each request to FILE as an OTLP JSON line (default: no file)",
    )
    receive.add_argument(
        "--self-metrics",
        action="store_true",
        help="also show the collector's own telemetry_otel.* metrics (default: hidden)",
    )
    receive.set_defaults(run=run_receive)
    config = commands.add_parser("config", help="print the effective configuration")
    config.set_defaults(run=run_config)
    return parser


# -- demo ----------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    endpoints = args.endpoints or ["console"]
    config = TelemetryConfig(
        export_endpoints=endpoints, service_name="telemetry-otel-demo", tags={"environment": "demo"}
    )
    # Once a reader closes stdout (`demo | head`), the rest is not for it: no warnings.
    logging.getLogger("telemetry_otel").addFilter(lambda record: not STDOUT_CLOSED.is_set())
    with TelemetryCollector(config) as collector:
        collect_sample(collector)
        delivered = collector.flush()
    if STDOUT_CLOSED.is_set():  # `demo | head`: the reader has what it wanted
        return 0
    print(
        f"demo: sent a request trace, {len(EventSeverity)} events and 3 metrics to "
        f"{', '.join(endpoints)}; all delivered: {delivered}",
        file=sys.stderr,
    )
    return 0 if delivered else 1


def collect_sample(collector: TelemetryCollector) -> None:
    """One request's worth of telemetry: a trace with children, events, counters, gauges."""
    now = time.time()
    trace_id = f"demo-{int(now * 1000)}"
    # (operation, span id, duration ms, error, ended how long before the root): within it.
    children = [
        ("db.query", "db", 12.5, None, 0.060),
        ("payment.charge", "pay", 48.0, "card declined", 0.005),
    ]
    for operation, span_id, duration, error, before_root in children:
        child = Trace(
            trace_id,
            span_id,
            operation,
            duration,
            "root",
            {"component": span_id},
            now - before_root,
            error,
        )
        collector.collect_trace(child)
    collector.collect_trace(
        Trace(
            trace_id,
            "root",
            "POST /checkout",
            87.0,
            tags={"http.route": "/checkout"},
            timestamp=now,
        )
    )
    for severity in EventSeverity:
        article = "an" if severity.value[0] in "aeiou" else "a"
        collector.collect_event(
            Event("checkout", f"{article} {severity.value} event", severity, {"order_id": "A-1001"})
        )
    collector.collect_metric(Metric("http.requests", 1, MetricType.COUNTER, {"route": "/checkout"}))
    collector.collect_metric(Metric("queue.depth", 7, MetricType.GAUGE, unit="{item}"))
    for latency in (87.0, 41.5, 120.25):
        collector.collect_metric(Metric("http.duration", latency, MetricType.HISTOGRAM, unit="ms"))


# -- check ---------------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    from telemetry_otel.cli._check import check_endpoint

    config = TelemetryConfig(export_endpoints=[args.endpoint]).with_env()
    results = check_endpoint(config)
    for result in results:
        line = f"{result.signal:<8} {'accepted' if result.accepted else 'FAILED':<8} "
        line += f"{result.seconds * 1000:7.1f} ms  {result.url}"
        if not result.accepted or result.advice:  # accepted with advice: uncompressed
            line += f": {result.advice or result.reason}"
        print(line)
    return 0 if all(result.accepted for result in results) else 1


# -- receive -------------------------------------------------------------------------------------


def run_receive(args: argparse.Namespace) -> int:
    from telemetry_otel.cli._receive import (
        FileUnavailable,
        LocalReceiver,
        PortUnavailable,
        ReceivedLines,
    )

    for option, port in (("--grpc-port", args.grpc_port), ("--http-port", args.http_port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"receive: {option} {port} is out of range (0 to 65535)")
    stop = threading.Event()
    for handled in (signal.SIGINT, signal.SIGTERM):
        signal.signal(handled, lambda *_: stop.set())
    terminal = sys.stdout.isatty()
    lines = ReceivedLines(
        bars=terminal,
        colour=terminal and "NO_COLOR" not in os.environ,
        self_metrics=args.self_metrics,
    )
    try:
        receiver = LocalReceiver(
            args.host, args.grpc_port, args.http_port, _print_line, args.jsonl, lines
        )
    except (PortUnavailable, FileUnavailable) as error:
        print(f"telemetry-otel: receive: {error}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"receiving OTLP on grpc {host}:{receiver.grpc_port} and http {host}:{receiver.http_port}"
        f" (Ctrl-C to stop); to send here, set:\n"
        f"OTEL_EXPORTER_OTLP_ENDPOINT=http://{host}:{receiver.http_port}",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(0.25):  # traces show once settled (or their root is overdue)
        receiver.print_expired()
    receiver.stop()
    return 0


def _print_line(line: str) -> None:
    print(line, flush=True)


# -- config --------------------------------------------------------------------------------------


def run_config(args: Any) -> int:
    print(TelemetryConfig.from_env().describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
