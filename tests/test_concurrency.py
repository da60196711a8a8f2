"""Many threads at once on one collector: no exception, no deadlock."""

from __future__ import annotations

import itertools
import threading
import time

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig, Trace
from tests.conftest import Recorder


def test_start_stop_collect_register_and_flush_from_many_threads(tmp_path):
    collector = TelemetryCollector(
        TelemetryConfig(
            export_endpoints=[f"file://{tmp_path}"], flush_interval_ms=20, buffer_size=200
        )
    )
    errors: list[BaseException] = []
    running = threading.Event()
    stopped = threading.Event()

    def guarded(work):
        def run():
            try:
                running.wait(5)
                work()
            except BaseException as error:
                errors.append(error)

        return run

    accepted = {"metric": 0, "event": 0, "trace": 0}
    lock = threading.Lock()

    def collect():
        mine = dict.fromkeys(accepted, 0)
        for i in range(3000):
            mine["metric"] += collector.collect_metric(Metric("hits", 1, MetricType.COUNTER))
            mine["event"] += collector.collect_event(Event("e", f"m{i}"))
            mine["trace"] += collector.collect_trace(Trace(f"t{i % 50}", f"s{i}", "op", 1.0))
        with lock:
            for signal, count in mine.items():
                accepted[signal] += count

    def register():
        for _ in range(200):
            callback = Recorder()
            collector.register_exporter(callback)
            collector.unregister_exporter(callback)

    def flush():
        while not stopped.is_set():
            collector.flush(timeout_ms=200)
            collector.stats()

    def start():
        for _ in range(200):
            collector.start()

    def stop():
        time.sleep(0.5)
        collector.stop(timeout_ms=2000)
        stopped.set()

    collector.start()
    work = [collect] * 4 + [register] * 2 + [flush] * 2 + [start] + [stop] * 3
    threads = [threading.Thread(target=guarded(w), daemon=True) for w in work]
    for thread in threads:
        thread.start()
    running.set()
    for thread in threads:
        thread.join(60)
    assert not [t for t in threads if t.is_alive()], "a thread deadlocked"
    unexpected = [e for e in errors if not (isinstance(e, RuntimeError) and "again" in str(e))]
    assert unexpected == []
    assert not collector.is_running
    stats = collector.stats()
    # Every call that returned True was counted once, whatever raced with it.
    assert {signal: stats[signal]["collected"] for signal in accepted} == accepted
    assert collector.collect_event(Event("late", "m")) is False


def test_a_stats_snapshot_taken_while_threads_collect_lags_only_by_what_they_collect_meanwhile(
    busy_cores,
):
    """docs/collector.md, "Stats": a snapshot reads the destinations' counts, then the collect path's
    tallies. The left side of the identity never trails the right (nothing is counted
    delivered that was not counted collected), and leads by no more than the deliveries
    of what the other threads collected while stats() ran, plus the items they hold."""
    threads, destinations = 4, 2
    collector = TelemetryCollector(TelemetryConfig(flush_interval_ms=20, buffer_size=50))
    for _ in range(destinations):
        collector.register_exporter(Recorder())
    collector.start()
    done = threading.Event()

    def produce() -> None:
        while not done.is_set():
            collector.collect_event(Event("e", "m"))

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for worker in workers:
        worker.start()
    snapshots = []
    try:
        for _ in range(2000):  # bounded
            snapshots.append(collector.stats()["event"])
    finally:
        done.set()
        for worker in workers:
            worker.join()
        collector.stop()
    for before, counts in itertools.pairwise(snapshots):
        left = destinations * (counts["collected"] - counts["sampled_out"])
        right = (
            counts["dropped"] + counts["exported"] + counts["export_failures"] + counts["pending"]
        )
        during = counts["collected"] - before["collected"]  # at least what came in meanwhile
        assert 0 <= left - right <= destinations * (during + threads), (left - right, during)
    final = collector.stats()["event"]
    assert destinations * final["collected"] == (
        final["dropped"] + final["exported"] + final["export_failures"] + final["pending"]
    )
