"""stop() and flush() deliver everything to every healthy destination, side by side."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import urllib.request

import pytest

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig, Trace
from tests.conftest import Recorder, add_counter_from_threads, assert_identity
from tests.otlp_receiver import BlackHole
from tests.prometheus_server import free_port

RUNS = 20


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.stop()


def _callback_collector(**config) -> tuple[TelemetryCollector, Recorder]:
    recorder = Recorder()
    collector = TelemetryCollector(TelemetryConfig(flush_interval_ms=60_000, **config))
    collector.register_exporter(recorder)
    collector.start()
    return collector, recorder


def _counter_total(recorder: Recorder, name: str) -> int:
    return sum(m.value for m in recorder.of("metric") if m.name == name)


def test_every_increment_reaches_the_callback_at_stop_under_contention(busy_cores):
    for run in range(RUNS):
        collector, recorder = _callback_collector()
        add_counter_from_threads(collector, threads=8, each=500)
        collector.stop()
        assert _counter_total(recorder, "hits") == 4000, f"run {run}"
        assert collector.stats()["metric"]["dropped"] == 0, f"run {run}"


def test_a_single_histogram_value_reaches_the_callback_at_stop_under_contention(busy_cores):
    for run in range(RUNS):
        collector, recorder = _callback_collector()
        collector.collect_metric(Metric("latency", 12.5, MetricType.HISTOGRAM))
        collector.stop()
        [metric] = [m for m in recorder.of("metric") if m.name == "latency"]
        assert (metric.value, metric.count) == (12.5, 1), f"run {run}"


def test_what_is_collected_after_a_flush_still_reaches_the_callback_at_stop(busy_cores):
    for run in range(RUNS):
        collector, recorder = _callback_collector()
        collector.collect_metric(Metric("orders", 2, MetricType.COUNTER))
        assert collector.flush()
        collector.collect_metric(Metric("orders", 3, MetricType.COUNTER))
        collector.stop()
        values = [m.value for m in recorder.of("metric") if m.name == "orders"]
        assert values == [2, 3], f"run {run}"


def _items_in(path, resources: str, scopes: str, items: str) -> int:
    """How many spans or log records an OTLP JSON Lines file holds."""
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(
        len(scope[items])
        for line in lines
        for resource in json.loads(line)[resources]
        for scope in resource[scopes]
    )


def test_a_black_holed_endpoint_costs_the_file_and_the_callback_nothing_at_stop(
    black_hole, tmp_path, busy_cores
):
    for run in range(3):
        _stop_beside_a_black_hole(black_hole, tmp_path / f"run{run}")


def _stop_beside_a_black_hole(black_hole, directory):
    collector, recorder = _callback_collector(
        export_endpoints=[
            f"grpc://127.0.0.1:{black_hole.port}?timeout_ms=60000",
            f"file://{directory}",
        ],
        buffer_size=2000,
    )
    for i in range(1000):
        collector.collect_trace(Trace("t", f"s{i}", "op", 1.0))
        collector.collect_event(Event("e", f"m{i}"))
    collector.stop(timeout_ms=2000)

    traces = _items_in(directory / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")
    records = _items_in(directory / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords")
    assert (traces, records) == (1000, 1000)
    assert (len(recorder.of("trace")), len(recorder.of("event"))) == (1000, 1000)
    stats = collector.stats()
    for signal in ("trace", "event"):
        # File and callback got everything; the black hole's 1,000 are dropped at shutdown.
        assert stats[signal]["exported"] == 2000
        assert stats[signal]["dropped_shutdown"] == 1000
        assert stats[signal]["pending"] == 0
        assert_identity(stats, signal, destinations=3)


def test_flush_with_a_dead_endpoint_still_delivers_to_the_console(black_hole, capsys):
    collector = TelemetryCollector(
        TelemetryConfig(
            export_endpoints=[f"http://127.0.0.1:{black_hole.port}?timeout_ms=60000", "console"],
            flush_interval_ms=60_000,
        )
    )
    collector.start()
    try:
        collector.collect_event(Event("checkout", "paid"))
        assert collector.flush(timeout_ms=1000) is False  # the dead endpoint did not answer
        assert "checkout: paid" in capsys.readouterr().out
    finally:
        collector.stop(timeout_ms=500)


def test_the_legacy_quick_start_keeps_its_callback_metric_when_the_collector_is_down(
    black_hole, make_collector
):
    collector, recorder = _callback_collector(
        export_endpoints=[f"grpc://127.0.0.1:{black_hole.port}?timeout_ms=60000"]
    )
    collector.collect_metric(Metric("api_response_time", 125.5, MetricType.HISTOGRAM))
    collector.stop(timeout_ms=2000)
    assert [m.value for m in recorder.of("metric") if m.name == "api_response_time"] == [125.5]


def test_a_scrape_shows_each_series_once_however_often_flush_ran(make_collector):
    port = free_port()
    collector = make_collector(export_endpoints=[f"prometheus://127.0.0.1:{port}"])
    collector.collect_metric(Metric("loop_check", 2, MetricType.COUNTER))
    for _ in range(3):
        assert collector.flush()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        page = response.read().decode()
    assert len(re.findall(r"^loop_check_total\{.*\} 2\.0$", page, re.M)) == 1


def test_stop_with_a_spool_keeps_its_deadline_and_counts_every_item(tmp_path):
    holes = [BlackHole() for _ in range(3)]
    try:
        collector = TelemetryCollector(
            TelemetryConfig(
                export_endpoints=[f"grpc://127.0.0.1:{h.port}?timeout_ms=60000" for h in holes],
                spool_dir=str(tmp_path),
                buffer_size=20_000,
                flush_interval_ms=60_000,
            )
        )
        collector.start()
        for i in range(20_000):
            collector.collect_event(Event("e", f"m{i}"))
        started = time.monotonic()
        collector.stop(timeout_ms=1000)
        assert time.monotonic() - started < 2.5  # the deadline, plus one encoded chunk
        stats = collector.stats()["event"]
        assert stats["spooled"] > 0
        assert stats["spooled"] + stats["dropped_shutdown"] == 60_000
        assert stats["pending"] == stats["spooled"]  # what waits in the spool, and nothing else
        with sqlite3.connect(tmp_path / "spool.sqlite3") as db:
            [(rows_items,)] = db.execute("SELECT SUM(items) FROM batches").fetchall()
        assert rows_items == stats["spooled"]
    finally:
        for hole in holes:
            hole.stop()


def test_every_bound_increment_reaches_the_callback_at_stop_under_contention(busy_cores):
    for run in range(RUNS):
        collector, recorder = _callback_collector()
        hits = collector.counter("hits").bind(k="v")

        def add_many(hits=hits) -> None:
            for _ in range(500):
                hits.add(1)

        threads = [threading.Thread(target=add_many) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        collector.stop()
        assert _counter_total(recorder, "hits") == 4000, f"run {run}"
        assert collector.stats()["metric"]["collected"] == 4000, f"run {run}"


@pytest.mark.parametrize("bound", [True, False], ids=["bound handle", "collect_metric"])
def test_what_is_recorded_while_stop_runs_arrives_or_is_refused(busy_cores, bound):
    # Threads add until a call returns False; every True was recorded and must arrive.
    for run in range(RUNS):
        collector, recorder = _callback_collector()
        hits = collector.counter("hits").bind(k="v")

        def add(hits=hits, collector=collector) -> bool:
            if bound:
                return hits.add(1)
            return collector.collect_metric(Metric("hits", 1, MetricType.COUNTER, {"k": "v"}))

        accepted = [0] * 4

        def add_until_refused(slot: int, add=add, accepted=accepted) -> None:
            for _ in range(100_000):
                if not add():
                    return
                accepted[slot] += 1

        threads = [threading.Thread(target=add_until_refused, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.02)
        collector.stop()
        for thread in threads:
            thread.join()
        assert 0 < sum(accepted) < 400_000, f"run {run}: stop() came after the adds"
        assert _counter_total(recorder, "hits") == sum(accepted), f"run {run}"
        assert collector.stats()["metric"]["collected"] == sum(accepted), f"run {run}"


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_metric_points_in_an_export_that_never_returns_are_counted_at_stop(transport, busy_cores):
    hole = BlackHole()
    try:
        collector = TelemetryCollector(
            TelemetryConfig(
                export_endpoints=[f"{transport}://127.0.0.1:{hole.port}?timeout_ms=30000"],
                flush_interval_ms=60_000,
            )
        )
        collector.start()
        for name in ("jobs", "retries", "errors"):
            collector.collect_metric(Metric(name, 1, MetricType.COUNTER))
        collector.stop(timeout_ms=3000)  # the export starts in time on a busy machine too
        stats = collector.stats()["metric"]
        # A stopped collector has nothing pending: the unanswered export is a loss.
        assert (stats["pending"], stats["dropped_shutdown"], stats["exported"]) == (0, 3, 0), str(
            stats
        )
        assert_identity(collector.stats(), "metric")
        time.sleep(0.5)  # the abandoned export's answer, if any, is not counted again
        assert collector.stats()["metric"]["dropped_shutdown"] == 3
        assert collector.stats()["metric"]["export_failures"] == 0
    finally:
        hole.stop()


def test_a_callback_gets_every_tag_set_of_an_interval_past_buffer_size(make_collector, recorder):
    collector = make_collector(buffer_size=100, flush_interval_ms=60_000)
    collector.register_exporter(recorder)
    for round_ in range(2):
        for tag in range(1_500):
            collector.collect_metric(Metric("hits", 1, MetricType.COUNTER, {"route": str(tag)}))
        assert collector.flush(10_000) is True, round_
    got = [(m.tags["route"], m.value) for kind, m in recorder.items if kind == "metric"]
    assert len(got) == 3_000
    assert sorted(set(got)) == sorted((str(tag), 1) for tag in range(1_500))
    stats = collector.stats()["metric"]
    assert (stats["dropped_queue_full"], stats["exported"]) == (0, 3_000)


@pytest.mark.parametrize("call", ["flush", "stop"])
def test_a_callback_that_flushes_or_stops_never_waits_for_its_own_batch(call, caplog, busy_cores):
    collector = TelemetryCollector(TelemetryConfig(flush_interval_ms=50))
    returned: list[tuple[object, float]] = []

    def callback(kind: str, item: object) -> None:
        if returned:
            return
        started = time.monotonic()
        outcome = collector.flush(5000) if call == "flush" else collector.stop(timeout_ms=5000)
        returned.append((outcome, time.monotonic() - started))

    collector.register_exporter(callback)
    collector.start()
    try:
        collector.collect_event(Event("order.paid", "m"))
        deadline = time.monotonic() + 10
        while not returned and time.monotonic() < deadline:
            time.sleep(0.01)
        [(outcome, took)] = returned
        assert took < 1.0, took  # was the whole 5 s: it waited for its own batch
        if call == "flush":
            assert outcome is False
            assert collector.is_running
        else:
            deadline = time.monotonic() + 10
            while collector.is_running and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not collector.is_running
            assert collector.stats()["event"]["exported"] == 1
        assert f"{call}() was called from an exporter callback" in caplog.text
    finally:
        collector.stop(timeout_ms=2000)
