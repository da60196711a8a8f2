"""The event loop's lag while a flush waits for a slow endpoint: aflush() next to flush().

A loopback OTLP/gRPC receiver answers every request 200 ms after it arrived. A task
sleeps 1 ms at a time and notes how late each wake-up is (the loop's lag), while
another collects a few items and flushes them, again and again: once with ``await
collector.aflush()``, once with ``collector.flush()`` called on the loop (what an
``async`` job that flushes does without aflush). Target: p99 lag under 1 ms with
aflush. Run ``make bench`` or ``python benchmarks/bench_asyncio.py [--flushes 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ANSWER_DELAY_S = 0.2
TICK_S = 0.001
TARGET_P99_MS = 1.0


async def _lags_while_flushing(collector: object, flushes: int, blocking: bool) -> list[float]:
    from telemetry_otel import Event, TelemetryCollector

    assert isinstance(collector, TelemetryCollector)
    lags: list[float] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lags.append(time.perf_counter() - before - TICK_S)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.01)
    for i in range(flushes):
        collector.collect_event(Event("job", f"batch {i}"))
        if blocking:
            collector.flush()
        else:
            await collector.aflush()
        await asyncio.sleep(0.01)  # the watcher notes the lag a blocking flush caused
    done.set()
    await watcher
    return lags


def measure(flushes: int, blocking: bool) -> dict[str, float]:
    from telemetry_otel import TelemetryCollector, TelemetryConfig
    from tests.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver(answer_delay_s=ANSWER_DELAY_S, keep_requests=False).start()
    collector = TelemetryCollector(
        TelemetryConfig(
            export_endpoints=[f"grpc://127.0.0.1:{receiver.grpc_port}?signals=logs"],
            flush_interval_ms=60_000,
            self_metrics=False,
        )
    )
    collector.start()
    began = time.monotonic()
    lags = sorted(asyncio.run(_lags_while_flushing(collector, flushes, blocking)))
    took = time.monotonic() - began
    collector.stop()
    receiver.stop()
    return {
        "p50_ms": statistics.median(lags) * 1000,
        "p99_ms": lags[int(len(lags) * 0.99)] * 1000,
        "max_ms": lags[-1] * 1000,
        "ticks": len(lags),
        "seconds": took,
        "exported": collector.stats()["event"]["exported"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flushes", type=int, default=10)
    args = parser.parse_args(argv)
    print(
        f"event loop lag while flushing {args.flushes} times to a receiver that answers "
        f"after {ANSWER_DELAY_S * 1000:.0f} ms"
    )
    print(
        f"{'call':<24}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'ticks':>7}{'exported':>9}"
        f"{'target':>9}{'met':>5}"
    )
    for label, blocking in (("await aflush()", False), ("flush() on the loop", True)):
        row = measure(args.flushes, blocking)
        target = f"{'':>9}" if blocking else f"{f'<{TARGET_P99_MS:.1f}':>9}"
        met = f"{'':>5}" if blocking else f"{'yes' if row['p99_ms'] < TARGET_P99_MS else 'no':>5}"
        print(
            f"{label:<24}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}{row['max_ms']:>9.1f}"
            f"{row['ticks']:>7.0f}{row['exported']:>9.0f}{target}{met}"
        )


if __name__ == "__main__":
    main()
