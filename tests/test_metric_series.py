"""Metric measurements: each tag set shaped once, the SDK's aggregation, exact values."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View

from telemetry_otel import Metric, MetricType
from telemetry_otel._otel.mapping import series
from telemetry_otel._otel.runtime import sdk
from telemetry_otel._otel.runtime.forks import ForkSafeLock
from telemetry_otel._shaping import Shaper
from tests.otlp_receiver import OtlpReceiver, attributes_of


def points_by_name(receiver: OtlpReceiver) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """The last export's data points of each metric: (attributes, value or histogram)."""
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for _, metric in receiver.metrics():
        data = getattr(metric, metric.WhichOneof("data"))
        points[metric.name] = sorted(
            (
                (
                    attributes_of(p.attributes),
                    (p.count, p.sum, list(p.bucket_counts))
                    if metric.WhichOneof("data") == "histogram"
                    else p.as_int or p.as_double,
                )
                for p in data.data_points
            ),
            key=repr,
        )
    return points


def collect_a_mix(collector: Any) -> None:
    for value, method in ((1, "GET"), (2, "GET"), (5, "POST")):
        tags = {"method": method, "ok": True}
        collector.collect_metric(Metric("requests", value, MetricType.COUNTER, tags))
        collector.collect_metric(Metric("latency", value * 10.0, MetricType.HISTOGRAM, tags))
        collector.collect_metric(Metric("queue", value * 1.5, MetricType.GAUGE, tags))
    # 1, 1.0 and True are equal in Python, and different tag values in OpenTelemetry.
    for value in (1, 1.0, True):
        collector.collect_metric(Metric("typed", 1, MetricType.COUNTER, {"v": value}))


def test_the_installed_sdk_takes_the_fast_path():
    # A release of the SDK whose internals differ would silently take the slower
    # public path; this test says so.
    assert series.sdk_internals_fit() is True


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "public path"])
def test_both_paths_put_the_same_exact_points_on_the_wire(
    otlp_receiver, make_collector, monkeypatch, fast
):
    if not fast:
        monkeypatch.setattr(series, "sdk_internals_fit", lambda: False)
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    assert (collector._pipeline.metrics.instruments._consumer is not None) is fast
    collect_a_mix(collector)
    assert collector.flush(10_000) is True
    get, post = {"method": "GET", "ok": True}, {"method": "POST", "ok": True}
    assert points_by_name(otlp_receiver) == {
        "requests": [(get, 3), (post, 5)],
        "latency": [
            (get, (2, 30.0, [0, 0, 1, 1] + [0] * 12)),
            (post, (1, 50.0, [0, 0, 0, 0, 1] + [0] * 11)),
        ],
        "queue": [(get, 3.0), (post, 7.5)],
        "typed": [({"v": 1.0}, 1), ({"v": 1}, 1), ({"v": True}, 1)],
    }


def test_tag_values_redacted_alike_share_one_series(otlp_receiver, make_collector):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    for token in ("a", "b", "c"):
        collector.collect_metric(Metric("calls", 1, MetricType.COUNTER, {"api_token": token}))
    assert collector.flush(10_000) is True
    assert points_by_name(otlp_receiver)["calls"] == [({"api_token": "[REDACTED]"}, 3)]
    assert collector.stats()["metric"]["limited"] == 0  # redaction is not a size limit


def test_a_negative_histogram_value_is_refused_and_counted(otlp_receiver, make_collector):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    assert collector.collect_metric(Metric("delta", -2.0, MetricType.HISTOGRAM)) is False
    assert collector.collect_metric(Metric("delta", 2.0, MetricType.HISTOGRAM)) is True
    assert collector.flush(10_000) is True
    assert points_by_name(otlp_receiver)["delta"] == [({}, (1, 2.0, [0, 1] + [0] * 14))]
    stats = collector.stats()["metric"]
    assert (stats["collected"], stats["dropped_rejected"]) == (1, 1)


def test_callbacks_get_metrics_collected_while_they_are_registered(make_collector, recorder):
    collector = make_collector()
    collector.collect_metric(Metric("before", 1, MetricType.COUNTER))
    # Added up with the first, and still measured before the callback.
    collector.collect_metric(Metric("before", 1, MetricType.COUNTER))
    collector.collect_metric(Metric("level", 5, MetricType.GAUGE))
    collector.collect_metric(Metric("level", 6, MetricType.GAUGE))
    collector.register_exporter(recorder)
    assert collector.flush(10_000) is True
    assert recorder.of("metric") == []
    collector.collect_metric(Metric("during", 2, MetricType.COUNTER))
    assert collector.flush(10_000) is True
    assert [(m.name, m.value) for m in recorder.of("metric")] == [("during", 2)]
    collector.unregister_exporter(recorder)
    collector.collect_metric(Metric("during", 7, MetricType.COUNTER))
    collector.register_exporter(recorder)
    collector.collect_metric(Metric("during", 3, MetricType.COUNTER))
    assert collector.flush(10_000) is True
    assert [(m.name, m.value) for m in recorder.of("metric")] == [("during", 2), ("during", 3)]


def test_a_view_keeping_some_attribute_keys_still_applies():
    reader = InMemoryMetricReader()
    view = View(instrument_name="requests", attribute_keys={"method"})
    provider = MeterProvider(metric_readers=[reader], views=[view], shutdown_on_exit=False)
    counter = provider.get_meter("app").create_counter("requests")
    consumer = series.fast_path_consumer(provider)
    assert consumer is not None
    recorder = series.SeriesRecorder(
        counter, counter.add, consumer, Shaper(True, [], 128, None), 10, ForkSafeLock()
    )
    recorder.record(1, {"method": "GET", "user": "a"})
    recorder.record(2, {"method": "GET", "user": "b"})
    data = reader.get_metrics_data()
    [point] = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    assert (dict(point.attributes), point.value) == ({"method": "GET"}, 3)


def test_measurements_inside_a_sampled_live_span_keep_their_exemplars(
    otlp_receiver, make_collector
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    with collector.span("request") as span:
        collector.collect_metric(Metric("latency", 12.0, MetricType.HISTOGRAM))
    assert collector.flush(10_000) is True
    [(_, metric)] = otlp_receiver.metrics()
    [point] = metric.histogram.data_points
    [exemplar] = point.exemplars
    context = span.get_span_context()
    assert exemplar.as_double == 12.0
    assert exemplar.trace_id == context.trace_id.to_bytes(16, "big")
    assert exemplar.span_id == context.span_id.to_bytes(8, "big")


def test_nan_tag_values_make_one_series_not_one_per_measurement(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"], max_metric_series=10
    )
    for _ in range(500):
        assert collector.collect_metric(Metric("ratio", 1, MetricType.COUNTER, {"v": float("nan")}))
    assert collector.collect_metric(Metric("ratio", 1, MetricType.COUNTER, {"v": 1.5}))
    assert collector.flush(5000) is True
    [(_, metric)] = [(r, m) for r, m in otlp_receiver.metrics() if m.name == "ratio"][-1:]
    points = [(attributes_of(p.attributes)["v"], p.as_int) for p in metric.sum.data_points]
    assert sorted((repr(v), n) for v, n in points) == [("1.5", 1), ("nan", 500)]
    assert collector.stats()["metric"]["limited"] == 0


LEGACY_NAMES = {
    "5xx_errors": "m_5xx_errors",
    "http requests": "http_requests",
    "cpu%": "cpu_",
    "ümlaut": "umlaut",
    "a" * 300: "a" * 255,
}


def test_legacy_metric_names_are_accepted_and_renamed_by_the_documented_rule(
    otlp_receiver, make_collector, recorder, caplog
):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"], flush_interval_ms=60_000
    )
    collector.register_exporter(recorder)
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        for legacy in LEGACY_NAMES:
            for _ in range(2):
                assert collector.collect_metric(Metric(legacy, 1, MetricType.COUNTER))
    assert collector.flush(5000) is True
    on_the_wire = {
        (metric.name, attributes_of(point.attributes).get("legacy.metric_name"), point.as_int)
        for _, metric in otlp_receiver.metrics()
        for point in metric.sum.data_points
    }
    for legacy, renamed in LEGACY_NAMES.items():
        assert (renamed, legacy, 2) in on_the_wire
    # Callbacks get the legacy name back, without the attribute.
    assert sorted((m.name, m.value, m.tags) for m in recorder.of("metric")) == sorted(
        (legacy, 2, {}) for legacy in LEGACY_NAMES
    )
    renames = [
        r.getMessage() for r in caplog.records if "not a valid OpenTelemetry" in r.getMessage()
    ]
    assert len(renames) == len(LEGACY_NAMES)  # once per name, not per measurement
    assert collector.stats()["metric"]["limited"] == 2 * len(LEGACY_NAMES)


def test_two_legacy_names_that_map_to_one_instrument_stay_apart(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"], flush_interval_ms=60_000
    )
    assert collector.collect_metric(Metric("cpu%", 3, MetricType.COUNTER))
    assert collector.collect_metric(Metric("cpu#", 4, MetricType.COUNTER))
    assert collector.collect_metric(Metric("cpu&", 1, MetricType.GAUGE)) is False  # a clash
    assert collector.flush(5000) is True
    [(_, metric)] = [(r, m) for r, m in otlp_receiver.metrics() if m.name == "cpu_"]
    points = {
        attributes_of(p.attributes)["legacy.metric_name"]: p.as_int for p in metric.sum.data_points
    }
    assert points == {"cpu%": 3, "cpu#": 4}
    assert collector.stats()["metric"]["dropped_rejected"] == 1


def test_a_probe_that_turns_the_fast_path_off_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(series, "_same_as_public_path", lambda: False)
    series.sdk_internals_fit.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="telemetry_otel"):
            assert series.sdk_internals_fit() is False
            assert series.sdk_internals_fit() is False
    finally:
        series.sdk_internals_fit.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if "public, slower path" in r.getMessage()]
    assert len(warnings) == 1
    assert "checked (opentelemetry-api/sdk 1.45)" in warnings[0]


# -- counters and gauges added up between collections --------------------------------------


def in_four_threads_while_flushing(collector: Any, work: Callable[[int], None]) -> None:
    """``work(n)`` in threads 0 to 3 while a fifth flushes (collects) over and over."""
    done = threading.Event()

    def collect_repeatedly() -> None:
        while not done.is_set():
            collector.flush(10_000)

    flusher = threading.Thread(target=collect_repeatedly)
    flusher.start()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    flusher.join()


def test_counts_added_up_between_collections_reach_every_reader_and_callback_exactly(
    otlp_receiver, make_collector, recorder, busy_cores
):
    # Four threads count while a fifth flushes (collects) over and over: every increment
    # reaches the cumulative OTLP reader and the callbacks' delta reader exactly once.
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.register_exporter(recorder)

    def count(thread: int) -> None:
        for i in range(3000):
            tags = {"thread": str(thread % 2)}
            collector.collect_metric(Metric("hits", 1 + i % 3, MetricType.COUNTER, tags))

    in_four_threads_while_flushing(collector, count)
    assert collector.flush(10_000) is True
    each = sum(1 + i % 3 for i in range(3000))  # 5,999 per thread
    assert points_by_name(otlp_receiver)["hits"] == [
        ({"thread": "0"}, 2 * each),
        ({"thread": "1"}, 2 * each),
    ]
    by_thread: dict[str, int] = {"0": 0, "1": 0}
    for metric in recorder.of("metric"):
        by_thread[metric.tags["thread"]] += metric.value
    assert by_thread == {"0": 2 * each, "1": 2 * each}
    assert collector.stats()["metric"]["collected"] == 12_000


def test_a_gauge_set_inside_a_span_is_not_overwritten_by_an_older_value(
    otlp_receiver, make_collector
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.collect_metric(Metric("depth", 1, MetricType.GAUGE))
    collector.collect_metric(Metric("depth", 2, MetricType.GAUGE))  # waits for the collection
    with collector.span("work"):
        collector.collect_metric(Metric("depth", 3, MetricType.GAUGE))  # goes to the SDK now
    assert collector.flush(10_000) is True
    assert points_by_name(otlp_receiver)["depth"] == [({}, 3)]


def test_a_cumulative_counter_starts_when_it_was_first_measured(otlp_receiver, make_collector):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    before = time.time_ns()
    collector.collect_metric(Metric("jobs", 1, MetricType.COUNTER))
    time.sleep(0.2)
    collector.collect_metric(Metric("jobs", 1, MetricType.COUNTER))
    assert collector.flush(10_000) is True
    [(_, metric)] = [(r, m) for r, m in otlp_receiver.metrics() if m.name == "jobs"]
    [point] = metric.sum.data_points
    assert point.as_int == 2
    assert before <= point.start_time_unix_nano <= before + 100_000_000
    assert point.time_unix_nano - point.start_time_unix_nano >= 200_000_000


def test_a_count_inside_a_sampled_span_keeps_its_exemplar_and_the_total_stays_exact(
    otlp_receiver, make_collector
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    for _ in range(3):
        collector.collect_metric(Metric("orders", 2, MetricType.COUNTER))
    with collector.span("checkout") as span:
        collector.collect_metric(Metric("orders", 5, MetricType.COUNTER))
    assert collector.flush(10_000) is True
    [(_, metric)] = [(r, m) for r, m in otlp_receiver.metrics() if m.name == "orders"]
    [point] = metric.sum.data_points
    assert point.as_int == 11
    [exemplar] = point.exemplars
    assert exemplar.as_int == 5
    assert exemplar.span_id == span.get_span_context().span_id.to_bytes(8, "big")


def test_histograms_added_up_between_collections_reach_every_reader_and_callback_exactly(
    otlp_receiver, make_collector, recorder, busy_cores
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.register_exporter(recorder)
    values = [float(v) for v in (0, 3, 7, 12, 60, 99, 400, 2500, 9000, 20000)]

    def measure(_: int) -> None:
        for i in range(2000):
            collector.collect_metric(Metric("took", values[i % 10], MetricType.HISTOGRAM))

    in_four_threads_while_flushing(collector, measure)
    assert collector.flush(10_000) is True
    # 800 of each value; the default bounds 0, 5, 10, 25, 50, 75, 100, 250, 500, 750,
    # 1000, 2500, 5000, 7500, 10000 put each in its own bucket.
    buckets = [800, 800, 800, 800, 0, 800, 800, 0, 800, 0, 0, 800, 0, 0, 800, 800]
    expected = (8000, 800 * sum(values), buckets)
    assert points_by_name(otlp_receiver)["took"] == [({}, expected)]
    [(_, metric)] = [(r, m) for r, m in otlp_receiver.metrics() if m.name == "took"][-1:]
    [point] = metric.histogram.data_points
    assert (point.min, point.max) == (0.0, 20000.0)
    deltas = recorder.of("metric")
    assert sum(m.count for m in deltas) == 8000
    assert sum(m.value for m in deltas) == 800 * sum(values)
    assert [
        sum(column) for column in zip(*(m.bucket_counts for m in deltas), strict=True)
    ] == buckets
    assert (min(m.min for m in deltas), max(m.max for m in deltas)) == (0.0, 20000.0)


@pytest.fixture(params=["base2_exponential_bucket_histogram", "BASE2_Exponential_Bucket_Histogram"])
def exponential_histograms(monkeypatch, request):
    """OTLP endpoints ask for base-2 exponential histograms (the SDK's variable), written
    in any case, as the specification allows enum values."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", request.param)
    sdk.otlp_metric_preferences.cache_clear()
    yield
    sdk.otlp_metric_preferences.cache_clear()


def test_histograms_in_exponential_buckets_are_measured_one_by_one(
    otlp_receiver, make_collector, exponential_histograms
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    for value in (1.0, 2.0, 4.0, 4.0):
        collector.collect_metric(Metric("size", value, MetricType.HISTOGRAM))
    assert collector.flush(10_000) is True
    [(_, metric)] = [(r, m) for r, m in otlp_receiver.metrics() if m.name == "size"]
    [point] = metric.exponential_histogram.data_points
    assert (point.count, point.sum, point.min, point.max) == (4, 11.0, 1.0, 4.0)
