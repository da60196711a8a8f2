"""Other metric sources bridged in: prometheus_client registries, read at every collection."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from typing import Any

import prometheus_client as prom
import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    SummaryMetricFamily,
)

from telemetry_otel import Metric, MetricType, TelemetryCollector, TelemetryConfig
from telemetry_otel._otel.bridges import prometheus_registry
from tests.otlp_receiver import OtlpReceiver, attributes_of
from tests.prometheus_server import PrometheusServer, free_port, prometheus_binary, promtool_errors

SCOPE = "telemetry_otel.prometheus"


def every_type(registry: prom.CollectorRegistry) -> dict[str, Any]:
    """One metric of each prometheus_client type, with values whose sums are exact."""
    requests = prom.Counter("requests_total", "Requests", ["method"], registry=registry)
    requests.labels("GET").inc(2)
    requests.labels("POST").inc(0.5)
    latency = prom.Histogram("latency_seconds", "Latency", registry=registry, buckets=(0.25, 1))
    latency.observe(0.5)
    latency.observe(4)
    sizes = prom.Summary("sizes", "Sizes", registry=registry)
    sizes.observe(3)
    prom.Info("build", "Build", registry=registry).info({"version": "1.2"})
    prom.Enum("state", "State", states=["up", "down"], registry=registry)
    memory = prom.Gauge("memory", "Memory", registry=registry, unit="bytes")
    memory.set(3072)
    return {"requests": requests, "latency": latency, "sizes": sizes, "memory": memory}


def bridged(receiver: OtlpReceiver) -> dict[str, Any]:
    """The last export of each bridged metric, by name."""
    return {metric.name: metric for _, metric in receiver.metrics(SCOPE)}


def points(metric: Any) -> list[tuple[dict[str, Any], Any]]:
    data = getattr(metric, metric.WhichOneof("data"))
    return sorted(
        ((attributes_of(p.attributes), p) for p in data.data_points), key=lambda pair: repr(pair[0])
    )


def histogram(point: Any) -> tuple[int, float, list[int], list[float], bool]:
    """count, sum, bucket counts, bounds, and whether min or max was sent."""
    return (
        point.count,
        point.sum,
        list(point.bucket_counts),
        list(point.explicit_bounds),
        point.HasField("min") or point.HasField("max"),
    )


def test_every_prometheus_client_type_reaches_the_otlp_receiver_with_exact_values(
    otlp_receiver, make_collector
):
    registry = prom.CollectorRegistry()
    metrics = every_type(registry)
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        prometheus_registries=[registry],
    )
    assert collector.flush(10_000) is True
    got = bridged(otlp_receiver)
    assert sorted(got) == [
        "build_info",
        "latency_seconds",
        "memory_bytes",
        "requests",
        "sizes",
        "state",
    ]
    requests = got["requests"]
    assert (requests.sum.is_monotonic, requests.sum.aggregation_temporality) == (True, 2)
    assert [(a, p.as_double) for a, p in points(requests)] == [
        ({"method": "GET"}, 2.0),
        ({"method": "POST"}, 0.5),
    ]
    [(_, latency)] = points(got["latency_seconds"])
    assert histogram(latency) == (2, 4.5, [0, 1, 1], [0.25, 1.0], False)
    [(_, sizes)] = points(got["sizes"])  # an OTLP summary (prometheus_client: no quantiles)
    assert (sizes.count, sizes.sum, list(sizes.quantile_values)) == (1, 3.0, [])
    created = next(
        s.value for s in registry.collect() for s in s.samples if s.name == "sizes_created"
    )
    assert sizes.start_time_unix_nano == round(created * 1e9)
    assert [(a, p.as_double) for a, p in points(got["build_info"])] == [({"version": "1.2"}, 1.0)]
    assert [(a, p.as_int) for a, p in points(got["state"])] == [
        ({"state": "down"}, 0),
        ({"state": "up"}, 1),
    ]
    assert [(a, p.as_double) for a, p in points(got["memory_bytes"])] == [({}, 3072.0)]
    assert (got["memory_bytes"].unit, got["requests"].description) == ("bytes", "Requests")

    metrics["requests"].labels("GET").inc()
    metrics["latency"].observe(0.1)
    metrics["memory"].set(1024)
    assert collector.flush(10_000) is True
    got = bridged(otlp_receiver)
    assert next((a, p.as_double) for a, p in points(got["requests"])) == ({"method": "GET"}, 3.0)
    [(_, latency)] = points(got["latency_seconds"])
    assert histogram(latency) == (3, 4.6, [1, 1, 1], [0.25, 1.0], False)
    assert [p.as_double for _, p in points(got["memory_bytes"])] == [1024.0]
    stats = collector.stats()["metric"]
    # Per read: 3 counter and gauge samples, 2 state samples, 1 info, and per histogram
    # and summary its buckets and sum (4 and 2).
    assert (stats["bridged_prometheus"], stats["bridge_failed_prometheus"]) == (2 * 12, 0)


def test_callbacks_get_bridged_metrics_as_what_changed_in_each_interval(make_collector, recorder):
    registry = prom.CollectorRegistry()
    metrics = every_type(registry)
    collector = make_collector(prometheus_registries=[registry])
    collector.register_exporter(recorder)
    assert collector.flush(10_000) is True
    first = {m.name: m for m in recorder.of("metric") if m.tags.get("method") != "POST"}
    assert first["requests"].value == 2.0  # a counter's first delta is its total so far
    metrics["requests"].labels("GET").inc(5)
    metrics["latency"].observe(0.75)
    metrics["latency"].observe(0.75)
    recorder.items.clear()
    assert collector.flush(10_000) is True
    second = {(m.name, m.tags.get("method")): m for m in recorder.of("metric")}
    assert second[("requests", "GET")].value == 5.0
    assert second[("requests", "POST")].value == 0.0
    latency = second[("latency_seconds", None)]
    assert (latency.count, latency.value, latency.bucket_counts) == (2, 1.5, [0, 2, 0])
    assert (latency.min, latency.max) == (None, None)  # Prometheus does not keep them
    assert ("sizes", None) not in second  # nothing changed


class Quantiles:
    """A custom collector with a summary whose quantiles it computed itself."""

    def collect(self) -> Any:
        family = SummaryMetricFamily("rpc_seconds", "RPC latency", labels=["method"])
        family.add_metric(["get"], count_value=4, sum_value=10.0)
        family.add_sample("rpc_seconds", {"method": "get", "quantile": "0.5"}, 2.0)
        family.add_sample("rpc_seconds", {"method": "get", "quantile": "0.99"}, 4.5)
        yield family


@pytest.mark.parametrize("endpoint", ["grpc", "http"])
def test_a_summary_reaches_otlp_endpoints_as_a_summary_with_its_quantiles(
    otlp_receiver, make_collector, endpoint
):
    registry = prom.CollectorRegistry()
    registry.register(Quantiles())
    port = otlp_receiver.grpc_port if endpoint == "grpc" else otlp_receiver.http_port
    collector = make_collector(
        export_endpoints=[f"{endpoint}://127.0.0.1:{port}"], prometheus_registries=[registry]
    )
    assert collector.flush(10_000) is True
    metric = bridged(otlp_receiver)["rpc_seconds"]
    assert (metric.WhichOneof("data"), metric.description) == ("summary", "RPC latency")
    [(attributes, point)] = points(metric)
    assert (attributes, point.count, point.sum) == ({"method": "get"}, 4, 10.0)
    assert [(q.quantile, q.value) for q in point.quantile_values] == [(0.5, 2.0), (0.99, 4.5)]
    # Per read: count, sum and two quantiles.
    assert collector.stats()["metric"]["bridged_prometheus"] == 4


def test_callbacks_get_a_summarys_count_and_sum(make_collector, recorder):
    # Callbacks, the console and Prometheus pages take no summary: its count and sum.
    registry = prom.CollectorRegistry()
    sizes = prom.Summary("sizes", "Sizes", registry=registry)
    collector = make_collector(prometheus_registries=[registry])
    collector.register_exporter(recorder)
    for size in (3, 4, 5):
        sizes.observe(size)
    assert collector.flush(10_000) is True
    [model] = [m for m in recorder.of("metric") if m.name == "sizes"]
    assert (model.count, model.value, model.bucket_counts, model.explicit_bounds) == (
        3,
        12.0,
        [3],
        [],
    )


class Raising:
    """A custom prometheus_client collector whose collect() raises."""

    def collect(self) -> Any:
        raise RuntimeError("the database is down")


def test_a_registry_that_raises_is_counted_and_the_others_still_export(
    otlp_receiver, make_collector, caplog
):
    broken, healthy = prom.CollectorRegistry(), prom.CollectorRegistry()
    broken.register(Raising())
    prom.Counter("jobs_total", "Jobs", registry=healthy).inc(7)
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        prometheus_registries=[broken, healthy],
    )
    assert collector.flush(10_000) is True
    assert [p.as_double for _, p in points(bridged(otlp_receiver)["jobs"])] == [7.0]
    stats = collector.stats()["metric"]
    assert (stats["bridged_prometheus"], stats["bridge_failed_prometheus"]) == (1, 1)
    assert "a prometheus_client registry raised while it was read" in caplog.text
    assert "the database is down" in caplog.text  # the traceback, once


class NeverReturns:
    """A custom collector whose collect() waits until the test lets it go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self) -> Any:
        self.calls += 1
        self.release.wait(30)
        return iter(())


def test_a_registry_that_never_answers_holds_one_thread_never_the_collection(
    otlp_receiver, make_collector, monkeypatch, caplog
):
    monkeypatch.setattr(prometheus_registry, "READ_TIMEOUT_S", 0.3)
    stuck, healthy = prom.CollectorRegistry(), prom.CollectorRegistry()
    never = NeverReturns()
    stuck.register(never)
    prom.Counter("jobs_total", "Jobs", registry=healthy).inc(7)
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        prometheus_registries=[stuck, healthy],
    )
    try:
        for _ in range(3):
            started = time.monotonic()
            assert collector.flush(10_000) is True
            assert time.monotonic() - started < 3
        assert [p.as_double for _, p in points(bridged(otlp_receiver)["jobs"])] == [7.0]
        assert never.calls == 1  # not read again while its first read has not returned
        assert collector.stats()["metric"]["bridge_failed_prometheus"] == 3
        assert "a prometheus_client registry did not answer in time" in caplog.text
    finally:
        never.release.set()


def test_bridged_labels_are_redacted_and_capped_like_collected_tags(otlp_receiver, make_collector):
    registry = prom.CollectorRegistry()
    calls = prom.Counter("calls_total", "Calls", ["api_token", "route"], registry=registry)
    for route, value in (("/a", 1), ("/b", 2), ("/c", 4), ("/d", 8)):
        calls.labels("secret-value", route).inc(value)
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        prometheus_registries=[registry],
        max_metric_series=2,
    )
    assert collector.flush(10_000) is True
    assert [(a, p.as_double) for a, p in points(bridged(otlp_receiver)["calls"])] == [
        ({"api_token": "[REDACTED]", "route": "/a"}, 1.0),
        ({"api_token": "[REDACTED]", "route": "/b"}, 2.0),
        ({"otel.metric.overflow": True}, 12.0),
    ]
    assert collector.stats()["metric"]["limited"] == 2


def test_the_default_registry_is_read_when_the_environment_names_it(otlp_receiver, monkeypatch):
    counter = prom.Counter("bridged_from_default_total", "From the default registry")
    try:
        counter.inc(3)
        monkeypatch.setenv("TELEMETRY_PROMETHEUS_REGISTRIES", "default")
        config = TelemetryConfig(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
        with TelemetryCollector(config) as collector:
            assert collector.flush(10_000) is True
        got = bridged(otlp_receiver)
        assert [p.as_double for _, p in points(got["bridged_from_default"])] == [3.0]
        assert "python_gc_objects_collected" in got  # the default registry's own collectors
    finally:
        prom.REGISTRY.unregister(counter)


def test_a_collector_serving_prometheus_never_reads_its_own_page_back(make_collector):
    port = free_port()
    registry = prom.CollectorRegistry()
    registry.register(_Fixed("orders", 5.0))
    collector = make_collector(
        export_endpoints=[f"prometheus://127.0.0.1:{port}"],
        prometheus_registries=["default", registry],
    )
    pages = []
    for _ in range(3):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            pages.append(response.read().decode())
    for page in pages:
        lines = [line for line in page.splitlines() if line.startswith("orders_total")]
        assert len(lines) == 1 and lines[0].endswith(" 5.0"), lines
    assert collector.stats()["metric"]["bridge_failed_prometheus"] == 0


class _Fixed:
    """A custom collector with one counter of a fixed value."""

    def __init__(self, name: str, value: float) -> None:
        self._name, self._value = name, value

    def collect(self) -> Any:
        family = CounterMetricFamily(self._name, "Fixed")
        family.add_metric([], self._value)
        yield family


def test_promql_and_otlp_read_the_same_values_of_one_registry(
    tmp_path, otlp_receiver, make_collector
):
    prometheus_binary()
    port = free_port()
    registry = prom.CollectorRegistry()
    every_type(registry)
    collector = make_collector(
        export_endpoints=[
            f"grpc://127.0.0.1:{otlp_receiver.grpc_port}",
            f"prometheus://127.0.0.1:{port}",
        ],
        prometheus_registries=[registry],
    )
    server = PrometheusServer(tmp_path, f"127.0.0.1:{port}")
    try:
        server.wait_ready()
        assert server.value('requests_total{method="GET"}') == 2.0
        assert collector.flush(10_000) is True
        got = bridged(otlp_receiver)
        [(_, latency)] = points(got["latency_seconds"])
        [(_, sizes)] = points(got["sizes"])  # a summary here, a histogram on the page
        wire = {
            'requests_total{method="GET"}': points(got["requests"])[0][1].as_double,
            'requests_total{method="POST"}': points(got["requests"])[1][1].as_double,
            "latency_seconds_count": float(latency.count),
            "latency_seconds_sum": latency.sum,
            'latency_seconds_bucket{le="0.25"}': float(latency.bucket_counts[0]),
            'latency_seconds_bucket{le="1.0"}': float(sum(latency.bucket_counts[:2])),
            "sizes_count": float(sizes.count),
            "sizes_sum": sizes.sum,
            "memory_bytes": points(got["memory_bytes"])[0][1].as_double,
            'build_info{version="1.2"}': points(got["build_info"])[0][1].as_double,
            'state{state="up"}': float(points(got["state"])[1][1].as_int),
        }
        promql = {query: server.value(query) for query in wire}
        assert promql == wire
        assert wire['latency_seconds_bucket{le="1.0"}'] == 1.0 and wire["sizes_sum"] == 3.0
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (["defaults"], ValueError, 'a registry named by a str must be "default"'),
        ([object()], TypeError, "is not a prometheus_client registry"),
        ({"registry": 1}, TypeError, "must be a list of prometheus_client registries"),
    ],
)
def test_prometheus_registries_refuses_what_is_not_a_registry(value, error, message):
    with pytest.raises(error, match=f"TelemetryConfig.prometheus_registries.*{message}"):
        TelemetryConfig(prometheus_registries=value)


def test_describe_shows_the_bridges():
    config = TelemetryConfig(
        prometheus_registries=["default", prom.CollectorRegistry()],
        statsd_endpoint="statsd://127.0.0.1:8125",
    )
    lines = config.describe().splitlines()
    assert "prometheus_registries      ['default', <CollectorRegistry>]  (argument)" in lines
    assert "statsd_endpoint            'statsd://127.0.0.1:8125'  (argument)" in lines
    assert "prometheus_registries=['default', <CollectorRegistry>]" in repr(config)


def test_a_summary_is_written_to_jsonl_files_as_a_summary(tmp_path, make_collector):
    registry = prom.CollectorRegistry()
    registry.register(Quantiles())
    collector = make_collector(
        export_endpoints=[f"file://{tmp_path}"], prometheus_registries=[registry]
    )
    assert collector.flush(10_000) is True
    [line] = (tmp_path / "metrics.jsonl").read_text().splitlines()
    [metric] = [
        metric
        for scope in json.loads(line)["resourceMetrics"][0]["scopeMetrics"]
        if scope["scope"]["name"] == SCOPE
        for metric in scope["metrics"]
    ]
    [point] = metric["summary"]["dataPoints"]
    assert (point["count"], point["sum"], point["quantileValues"]) == (
        "4",
        10.0,
        [{"quantile": 0.5, "value": 2.0}, {"quantile": 0.99, "value": 4.5}],
    )


class Hostile:
    """A custom collector with values no OTel measurement takes."""

    def collect(self) -> Any:
        yield HistogramMetricFamily(
            "huge", "Huge", buckets=[("1", 2.0**70), ("+Inf", 2.0**70)], sum_value=1.0
        )
        yield HistogramMetricFamily(
            "fractional", "Fractional", buckets=[("1", 0.5), ("+Inf", 1.0)], sum_value=1.0
        )
        yield GaugeMetricFamily("nan_gauge", "NaN", value=math.nan)
        yield GaugeMetricFamily("inf_gauge", "Inf", value=math.inf)


def test_hostile_registry_values_are_counted_and_never_stop_the_other_metrics(
    otlp_receiver, make_collector, caplog
):
    registry = prom.CollectorRegistry()
    registry.register(Hostile())
    prom.Counter("jobs_total", "Jobs", registry=registry).inc(7)
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        prometheus_registries=[registry],
    )
    for _ in range(3):
        assert collector.flush(10_000) is True
    got = bridged(otlp_receiver)
    assert sorted(got) == ["jobs"]
    assert [p.as_double for _, p in points(got["jobs"])] == [7.0]
    stats = collector.stats()["metric"]
    # Every read: two histograms and two gauges not bridged, one counter bridged.
    reads = stats["bridged_prometheus"]
    assert reads >= 3
    assert stats["bridge_failed_prometheus"] == 4 * reads
    assert "non-finite" not in caplog.text  # the SDK's warning, at every collection
    assert caplog.text.count("has NaN or infinite samples") == 2
    assert caplog.text.count("a bucket count is not a whole number") == 2


def test_a_page_never_writes_two_types_for_one_name_when_metrics_clash(make_collector, caplog):
    registry = prom.CollectorRegistry()
    prom.Counter("jobs", "Jobs", registry=registry).inc(3)  # jobs_total, a counter
    prom.Gauge("depth", "Depth", registry=registry).set(3)
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"prometheus://127.0.0.1:{port}"], prometheus_registries=[registry]
    )
    collector.collect_metric(Metric("jobs_total", 5, MetricType.GAUGE))
    collector.collect_metric(Metric("depth", 2, MetricType.COUNTER))
    collector.collect_metric(Metric("jobs", 2, MetricType.COUNTER))
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert promtool_errors(page) == ""
    types = [line.split()[2] for line in page.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    # Two clashes (jobs_total as a gauge and as a counter; depth as a gauge and as a
    # counter): one family of each left off, each said once; the first one written wins.
    left_off = [
        r.getMessage() for r in caplog.records if "off the Prometheus page" in r.getMessage()
    ]
    assert len(left_off) == 2, left_off
    assert any("its name is taken by metric 'jobs" in line for line in left_off)
    assert any("metric 'depth'" in line for line in left_off)


class Slow:
    """A healthy custom collector that takes a while to answer, as one reading a
    database does."""

    def collect(self) -> Any:
        time.sleep(0.05)
        yield CounterMetricFamily("orders", "Orders", value=7)


def test_destinations_collecting_at_once_share_each_read_of_a_healthy_registry(
    otlp_receiver, make_collector, tmp_path
):
    registry = prom.CollectorRegistry()
    registry.register(Slow())
    collector = make_collector(
        export_endpoints=[
            f"grpc://127.0.0.1:{otlp_receiver.grpc_port}",
            f"http://127.0.0.1:{otlp_receiver.http_port}",
            f"file://{tmp_path}",
        ],
        prometheus_registries=[registry],
        flush_interval_ms=100,
    )
    time.sleep(2)
    assert collector.flush(10_000) is True
    assert collector.stats()["metric"]["bridge_failed_prometheus"] == 0
    for transport in ("grpc", "http"):
        exports = [r.request for r in otlp_receiver.requests("metrics") if r.transport == transport]
        assert len(exports) >= 5, transport
        bridged_in_each = [
            any(
                sm.scope.name == SCOPE and any(m.name == "orders" for m in sm.metrics)
                for rm in request.resource_metrics
                for sm in rm.scope_metrics
            )
            for request in exports
        ]
        assert all(bridged_in_each), (transport, bridged_in_each)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert all('"orders"' in line for line in lines), len(lines)
