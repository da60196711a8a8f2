"""collect_* latency and peak memory during an OTLP outage, next to a healthy run, and stop() time.

Each scenario runs in its own process (so peak RSS is its own), producing flat out
for the same time: ``healthy`` exports to a loopback OTLP/gRPC receiver;
``outage`` to a socket that accepts and never answers (a black hole);
``outage+spool`` the same with the durable spool on. Then ``stop()`` of a collector
with 50,000 events queued for each of three black-holed endpoints and a spool,
against a 1 s deadline: how long it took, and what was spooled or dropped. Last,
what 1,000 collectors started and stopped leave behind (RSS). Run
``make bench`` or
``python benchmarks/bench_outage.py [--seconds 30]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCENARIOS = ("healthy", "outage", "outage+spool")


def run_scenario(name: str, seconds: float) -> dict[str, float]:
    """Produce flat out for ``seconds``; latency percentiles, peak RSS, stop() time."""
    from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig, Trace
    from tests.otlp_receiver import BlackHole, OtlpReceiver

    if name == "healthy":
        server = OtlpReceiver(keep_requests=False).start()
        port = server.grpc_port
    else:
        server = BlackHole()
        port = server.port
    spool = tempfile.mkdtemp() if name.endswith("spool") else None
    collector = TelemetryCollector(
        TelemetryConfig(
            export_endpoints=[f"grpc://127.0.0.1:{port}?timeout_ms=10000"],
            flush_interval_ms=1000,
            spool_dir=spool,
        )
    )
    collector.start()
    # 8 bytes a sample (a list of ints would cost ~36): RSS should show the collector.
    latencies = array("q")
    tags = {"endpoint": "/api/users"}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        start = time.perf_counter_ns()
        if i % 3 == 0:
            collector.collect_trace(Trace(f"trace-{i // 30}", f"span-{i}", "op", 2.5, tags=tags))
        elif i % 3 == 1:
            collector.collect_event(Event("user_action", "checkout", tags=tags))
        else:
            collector.collect_metric(Metric("requests", 1, MetricType.COUNTER, tags))
        latencies.append(time.perf_counter_ns() - start)
        i += 1
    started = time.monotonic()
    collector.stop()
    stop_seconds = time.monotonic() - started
    stats = collector.stats()
    server.stop()
    # Read the high-water mark before sorting the samples, which needs memory of its own.
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ordered = sorted(latencies)
    return {
        "calls": len(ordered),
        "p50_ns": statistics.median(ordered),
        "p99_ns": ordered[int(len(ordered) * 0.99)],
        "max_ns": ordered[-1],
        "peak_rss_mb": peak_rss_mb,
        "stop_s": stop_seconds,
        "exported": stats["trace"]["exported"] + stats["event"]["exported"],
        "dropped": stats["trace"]["dropped"] + stats["event"]["dropped"],
        "pending": stats["trace"]["pending"] + stats["event"]["pending"],
    }


def stop_with_spool(items: int = 50_000, endpoints: int = 3) -> dict[str, float]:
    """stop(timeout_ms=1000) with ``items`` events queued per black-holed endpoint."""
    from telemetry_otel import Event, TelemetryCollector, TelemetryConfig
    from tests.otlp_receiver import BlackHole

    holes = [BlackHole() for _ in range(endpoints)]
    collector = TelemetryCollector(
        TelemetryConfig(
            export_endpoints=[f"grpc://127.0.0.1:{h.port}?timeout_ms=60000" for h in holes],
            spool_dir=tempfile.mkdtemp(),
            buffer_size=items,
            flush_interval_ms=60_000,
        )
    )
    collector.start()
    for i in range(items):
        collector.collect_event(Event("user_action", f"checkout {i}", metadata={"k": "v"}))
    started = time.monotonic()
    collector.stop(timeout_ms=1000)
    stop_seconds = time.monotonic() - started
    stats = collector.stats()["event"]
    for hole in holes:
        hole.stop()
    return {
        "stop_s": stop_seconds,
        "spooled": stats["spooled"],
        "dropped": stats["dropped_shutdown"],
        "pending": stats["pending"],
    }


def churn(cycles: int = 1000) -> dict[str, float]:
    """RSS before and after ``cycles`` collectors (a file endpoint and a callback each)
    were built, started, used and stopped: what a stopped collector leaves behind."""
    import gc

    from telemetry_otel import Event, TelemetryCollector, TelemetryConfig

    directory = tempfile.mkdtemp()

    def cycle() -> None:
        collector = TelemetryCollector(TelemetryConfig(export_endpoints=[f"file://{directory}"]))
        collector.register_exporter(lambda data_type, item: None)
        collector.start()
        collector.collect_event(Event("user_action", "checkout"))
        collector.stop()

    def rss_mb() -> float:
        gc.collect()
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 1e6

    for _ in range(50):  # warm up: imports, caches, the SDK probe
        cycle()
    before = rss_mb()
    for _ in range(cycles):
        cycle()
    return {"before_mb": before, "after_mb": rss_mb(), "cycles": cycles}


def idle_stop(runs: int = 20) -> dict[str, float]:
    """Median seconds of start() then stop() with nothing collected, per endpoint state:
    a short script or cron job pays this on every run, outage or not."""
    from telemetry_otel import TelemetryCollector, TelemetryConfig
    from tests.misbehaving import refusing_port
    from tests.otlp_receiver import BlackHole, OtlpReceiver

    receiver, hole = OtlpReceiver(keep_requests=False).start(), BlackHole()
    ports = {"healthy": receiver.grpc_port, "refused": refusing_port(), "black_hole": hole.port}
    medians = {}
    for state, port in ports.items():
        config = TelemetryConfig(export_endpoints=[f"grpc://127.0.0.1:{port}"])
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            collector = TelemetryCollector(config)
            collector.start()
            collector.stop()
            seconds.append(time.perf_counter() - started)
        medians[state] = statistics.median(seconds)
    receiver.stop()
    return medians


def _child(scenario: str, timeout_s: float, seconds: float = 0.0) -> dict[str, float]:
    """Run one scenario in a process of its own (its own peak RSS); what it printed."""
    output = subprocess.run(
        [sys.executable, __file__, "--scenario", scenario, "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout_s,
    ).stdout
    result: dict[str, float] = json.loads(output.splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="production time per run")
    parser.add_argument(
        "--scenario", choices=[*SCENARIOS, "stop", "churn", "idle"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.scenario == "stop":
        print(json.dumps(stop_with_spool()))
        return
    if args.scenario == "churn":
        print(json.dumps(churn()))
        return
    if args.scenario == "idle":
        print(json.dumps(idle_stop()))
        return
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario, args.seconds)))
        return
    print(f"flat-out collect_* (trace/event/metric in turn) for {args.seconds:g} s per scenario")
    print(
        f"{'scenario':<14}{'calls':>10}{'p50 ns':>9}{'p99 ns':>9}{'max ms':>9}"
        f"{'RSS MB':>8}{'stop s':>8}{'exported':>10}{'dropped':>9}{'pending':>9}"
    )
    for name in SCENARIOS:
        r = _child(name, timeout_s=args.seconds + 120, seconds=args.seconds)
        print(
            f"{name:<14}{r['calls']:>10.0f}{r['p50_ns']:>9.0f}{r['p99_ns']:>9.0f}"
            f"{r['max_ns'] / 1e6:>9.1f}{r['peak_rss_mb']:>8.0f}{r['stop_s']:>8.2f}"
            f"{r['exported']:>10.0f}{r['dropped']:>9.0f}{r['pending']:>9.0f}"
        )
    r = _child("stop", timeout_s=120)
    print("stop(timeout_ms=1000), spool, 3 black-holed endpoints, 50,000 events queued for each:")
    print(
        f"  {r['stop_s']:.2f} s; spooled {r['spooled']:.0f}, dropped {r['dropped']:.0f}, "
        f"pending {r['pending']:.0f} (target: within 1 s plus one encoded chunk)"
    )
    r = _child("churn", timeout_s=300)
    each_kb = (r["after_mb"] - r["before_mb"]) * 1000 / r["cycles"]
    print(
        f"churn: {r['cycles']:.0f} collectors started and stopped: RSS "
        f"{r['before_mb']:.1f} -> {r['after_mb']:.1f} MB, {each_kb:.1f} KB each "
        "(target: a few MB in all)"
    )
    r = _child("idle", timeout_s=120)
    print(
        "start()+stop(), nothing collected, median of 20: "
        + ", ".join(f"{state} {seconds:.3f} s" for state, seconds in r.items())
        + " (target: under 0.2 s)"
    )


if __name__ == "__main__":
    main()
