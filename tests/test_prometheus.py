"""prometheus:// endpoints, scraped by a real Prometheus server and queried with PromQL."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from telemetry_otel import Metric, MetricType
from tests.prometheus_server import PrometheusServer, free_port, prometheus_binary


@pytest.fixture
def scraped(tmp_path, make_collector):
    """A collector serving /metrics, and a Prometheus server scraping it every second."""
    prometheus_binary()
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"prometheus://127.0.0.1:{port}"], service_name="shop"
    )
    server = PrometheusServer(tmp_path, f"127.0.0.1:{port}")
    try:
        server.wait_ready()
        yield collector, server
    finally:
        server.stop()


def test_promql_returns_the_counter_histogram_and_gauge_that_were_collected(scraped):
    collector, server = scraped
    for value in (3, 4):
        collector.collect_metric(Metric("orders", value, MetricType.COUNTER, {"region": "eu"}))
    for value in (12.5, 40.0, 3.0):
        collector.collect_metric(Metric("latency", value, MetricType.HISTOGRAM, unit="ms"))
    collector.collect_metric(Metric("queue.depth", 9, MetricType.GAUGE, unit="By"))
    collector.collect_metric(Metric("queue.depth", 4, MetricType.GAUGE, unit="By"))

    assert server.wait_for_value('orders_total{region="eu"}', 7.0) == 7.0
    assert server.wait_for_value("latency_milliseconds_count", 3.0) == 3.0
    assert server.value("latency_milliseconds_sum") == 55.5
    assert server.value('latency_milliseconds_bucket{le="5.0"}') == 1.0
    assert server.value('latency_milliseconds_bucket{le="25.0"}') == 2.0
    assert server.value('latency_milliseconds_bucket{le="+Inf"}') == 3.0
    assert server.wait_for_value("queue_depth_bytes", 4.0) == 4.0
    [target] = server.query('target_info{service_name="shop"}')
    assert target["metric"]["job"] == "telemetry_otel"  # type: ignore[index]


def test_stopping_the_collector_stops_serving_metrics(make_collector):
    port = free_port()
    collector = make_collector(export_endpoints=[f"prometheus://127.0.0.1:{port}"])
    collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        page = response.read().decode()
    assert re.search(r'^orders_total\{otel_scope_name="telemetry_otel".*\} 1\.0$', page, re.M)
    collector.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_without_the_prometheus_extra_the_config_says_what_to_install(monkeypatch):
    import telemetry_otel._endpoints as endpoints
    from telemetry_otel import TelemetryConfig

    real_find_spec = endpoints.find_spec
    monkeypatch.setattr(
        endpoints,
        "find_spec",
        lambda name: None if name == "opentelemetry.exporter.prometheus" else real_find_spec(name),
    )
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(export_endpoints=["prometheus://127.0.0.1:9464"])
    assert str(raised.value) == (
        "export_endpoints: 'prometheus://127.0.0.1:9464' needs the prometheus extra: "
        "pip install 'telemetry-otel[prometheus]'"
    )
