"""The `telemetry-otel` command (also `python -m telemetry_otel`): demo, check, receive, config."""

from __future__ import annotations

import os

# gRPC's C core logs its own view of every failure (bind errors, handshakes) straight to
# stderr; the commands say what went wrong in one line of their own. Set before gRPC is
# first imported; a GRPC_VERBOSITY the user set still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telemetry_otel._endpoints import Endpoint
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
        prog="telemetry-otel",
        description="The legacy telemetry API on OpenTelemetry: try it (demo), test an "
        "endpoint (check), receive OTLP locally (receive), and see the effective "
        "configuration (config).",
        epilog="Exit codes: 0 done; 1 the command ran and something failed (see each "
        "command's --help); 2 a usage error, a malformed variable or an unusable port.",
    )
    parser.add_argument("--version", action="version", version=f"telemetry-otel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = _command(
        commands,
        "demo",
        "collect a realistic sample and export it",
        "Collect one request's worth of telemetry (a trace with children, an event of "
        "each severity, a counter, a gauge and a histogram) and export it.",
        "0 everything was delivered; 1 something was not (an endpoint failed); "
        "2 a malformed endpoint or variable.",
    )
    demo.add_argument(
        "--endpoint",
        action="append",
        dest="endpoints",
        metavar="E",
        help="an export endpoint (repeatable); default: console",
    )
    demo.set_defaults(run=run_demo)
    check = _command(
        commands,
        "check",
        "send one item of each signal to an endpoint",
        "Send one trace, one metric and one log request to an OTLP endpoint and print "
        "what each got, with what to write instead for the usual mistakes (a wrong "
        "scheme or port, TLS against plaintext, an untrusted certificate, a wrong path "
        "or credentials). With no ENDPOINT, check the OTLP endpoints the environment "
        "configures (TELEMETRY_EXPORT_ENDPOINTS, OTEL_EXPORTER_OTLP_[<SIGNAL>_]ENDPOINT).",
        "0 every request was accepted; 1 a request failed; 2 no endpoint to check, a "
        "malformed endpoint or variable.",
    )
    check.add_argument(
        "endpoint",
        nargs="?",
        help="an OTLP endpoint: grpc[s]://host:port or http[s]://host:port[/prefix] "
        "(default: the configured ones)",
    )
    check.set_defaults(run=run_check)
    receive = _command(
        commands,
        "receive",
        "a local OTLP receiver that prints what arrives",
        "Listen for OTLP (gRPC and HTTP/protobuf) and print what arrives, per "
        "service: traces as trees, events under their span, one line per metric series.",
        "0 stopped (Ctrl-C or SIGTERM); 2 a port out of range or in use, or a --jsonl "
        "file that cannot be written.",
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
        help="also show the collector's own telemetry_otel.* and otel.sdk.* metrics "
        "(default: hidden)",
    )
    receive.set_defaults(run=run_receive)
    config = _command(
        commands,
        "config",
        "print the effective configuration",
        "Print the configuration a collector started here would run with, from the "
        "TELEMETRY_* and OTEL_* variables (or OTEL_CONFIG_FILE), each value with where it "
        "came from; secrets masked.",
        "0 printed; 2 a malformed TELEMETRY_* variable.",
    )
    config.add_argument(
        "--explain",
        action="store_true",
        help="also list every variable and file key read and not applied, and why "
        "(overridden, invalid, not supported)",
    )
    config.set_defaults(run=run_config)
    return parser


def _command(
    commands: Any, name: str, summary: str, description: str, exit_codes: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description, epilog=f"Exit codes: {exit_codes}"
    )
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

    if args.endpoint is None:
        config = TelemetryConfig().with_env()
        endpoints: list[Endpoint | None] = [e for e in config.endpoints() if e.kind == "otlp"]
        if not endpoints:
            raise ValueError(
                "check: no endpoint given and none configured: give one "
                "(grpc://host:4317, http://host:4318) or set OTEL_EXPORTER_OTLP_ENDPOINT"
            )
    else:
        config = TelemetryConfig(export_endpoints=[args.endpoint]).with_env()
        endpoints = [None]
    results = [result for endpoint in endpoints for result in check_endpoint(config, endpoint)]
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
        columns=shutil.get_terminal_size().columns if terminal else None,
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
    while not stop.wait(0.25) and not _READER_GONE.is_set():
        receiver.print_expired()  # traces show once settled (or their root is overdue)
    receiver.stop()
    return 0


# Set when receive's reader went away (`receive | head -1`): it then stops, quietly.
_READER_GONE = threading.Event()


def _print_line(line: str) -> None:
    if _READER_GONE.is_set():
        return
    try:
        print(line, flush=True)
    except BrokenPipeError:
        # Many server threads print: the first to find the pipe closed points stdout at
        # /dev/null (so that no flush at exit raises again) and tells receive to stop.
        _READER_GONE.set()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# -- config --------------------------------------------------------------------------------------


def run_config(args: Any) -> int:
    config = TelemetryConfig.from_env()
    if getattr(args, "explain", False):
        from telemetry_otel.cli._explain import explain

        print(explain(config, os.environ))
    else:
        print(config.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
