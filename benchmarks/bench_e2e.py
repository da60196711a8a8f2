"""End to end: a flat-out producer of legacy traces into a loopback OTLP/gRPC receiver.

The facade (``collect_trace`` with ``buffer_size`` large enough for the whole run)
and the raw SDK (pre-timed ``start_span`` + ``end`` with a BatchSpanProcessor of the
same queue size and the SDK's OTLP/gRPC exporter) each run in a process of their
own, against a receiver in a third process, so that no side shares its GIL or its
peak RSS with another. Items per second count from the first call until every
span has reached the receiver. Run ``make bench`` or
``python benchmarks/bench_e2e.py [--spans 200000]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIDES = ("raw", "facade", "facade+gzip")
TAGS = {"endpoint": "/api/users", "method": "GET"}
# Spans per legacy trace: a request's spans share a trace id.
SPANS_PER_TRACE = 10


def serve(conn: Any) -> None:
    """The receiver process: answer each request on ``conn`` with the spans received."""
    from tests.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver(keep_requests=False).start()
    conn.send(receiver.grpc_port)
    while conn.recv() == "count":
        conn.send(receiver.span_count)
    receiver.stop()


def wait_for_spans(conn: Any, spans: int, stalled_s: float = 30.0) -> int:
    """Spans received, once all arrived or when none has arrived for ``stalled_s``."""
    received, moved_at = -1, time.monotonic()
    while True:
        conn.send("count")
        count: int = conn.recv()
        if count != received:
            received, moved_at = count, time.monotonic()
        if received >= spans or time.monotonic() - moved_at > stalled_s:
            return received
        time.sleep(0.01)


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def produce_raw(port: int, spans: int) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(shutdown_on_exit=False)
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=spans))
    tracer = provider.get_tracer("bench")
    for _ in range(spans):
        end = time.time_ns()
        tracer.start_span("process_payment", start_time=end - 234_500_000, attributes=TAGS).end(
            end_time=end
        )
    provider.force_flush()


def produce_facade(port: int, spans: int, compression: str = "none") -> dict[str, int]:
    from telemetry_otel import TelemetryCollector, TelemetryConfig, Trace

    config = TelemetryConfig(
        # The SDK exporter sends uncompressed by default: "facade" compares like with
        # like; "facade+gzip" is the facade's own default.
        export_endpoints=[f"grpc://127.0.0.1:{port}?compression={compression}"],
        buffer_size=spans,
    )
    with TelemetryCollector(config) as collector:
        for i in range(spans):
            trace_id, span = divmod(i, SPANS_PER_TRACE)
            parent = None if span == 0 else f"span-{trace_id}-0"
            name = f"span-{trace_id}-{span}"
            trace = Trace(f"trace-{trace_id}", name, "process_payment", 234.5, parent, TAGS)
            collector.collect_trace(trace)
        collector.flush(timeout_ms=600_000)
    trace_stats: dict[str, int] = collector.stats()["trace"]
    return trace_stats


def run_side(side: str, spans: int) -> dict[str, float]:
    """One side in this process: items per second until all arrived, and peak memory."""
    parent, child = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=serve, args=(child,), daemon=True)
    receiver.start()
    port = parent.recv()
    baseline_kb = peak_rss_kb()
    start = time.perf_counter()
    stats: dict[str, int] = {}
    if side == "raw":
        produce_raw(port, spans)
    else:
        stats = produce_facade(port, spans, "gzip" if side.endswith("gzip") else "none")
    received = wait_for_spans(parent, spans)
    if received < spans:  # say what the facade counted, for whoever reads the failure
        print(f"{side}: {received} of {spans} spans received; trace stats {stats}", file=sys.stderr)
    seconds = time.perf_counter() - start
    peak_kb = peak_rss_kb()
    parent.send("stop")
    receiver.join(10)
    return {
        "received": received,
        "seconds": seconds,
        "per_second": received / seconds,
        "bytes_per_span": (peak_kb - baseline_kb) * 1024 / spans,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_side(args.side, args.spans)))
        return
    print(f"{args.spans} legacy traces flat out into a loopback OTLP/gRPC receiver")
    print(f"{'side':<14}{'received':>10}{'seconds':>9}{'spans/s':>10}{'peak B/span':>13}")
    results = {}
    for side in SIDES:
        output = subprocess.run(
            [sys.executable, __file__, "--side", side, "--spans", str(args.spans)],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        r = results[side] = json.loads(output.stdout.splitlines()[-1])
        sys.stderr.write(output.stderr)
        print(
            f"{side:<14}{r['received']:>10.0f}{r['seconds']:>9.2f}{r['per_second']:>10.0f}"
            f"{r['bytes_per_span']:>13.0f}"
        )
    for side in SIDES[1:]:
        ratio = results[side]["per_second"] / results["raw"]["per_second"]
        print(f"{side} / raw items per second: {ratio:.2f}")
    if any(r["received"] < args.spans for r in results.values()):
        sys.exit("not every span reached the receiver (see above)")


if __name__ == "__main__":
    main()
