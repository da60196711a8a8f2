"""What reaches a real OTLP receiver on 127.0.0.1, over gRPC and over HTTP/protobuf."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from telemetry_otel import Event, EventSeverity, Metric, MetricType, Trace
from tests.conftest import add_counter_from_threads
from tests.otlp_receiver import any_value, attributes_of

TRANSPORTS = ["grpc", "http"]


def _endpoint(receiver, transport):
    port = receiver.grpc_port if transport == "grpc" else receiver.http_port
    return f"{transport}://127.0.0.1:{port}"


def _sha(text: str, size: int) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:size]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_spans_arrive_with_mapped_ids_parent_links_and_legacy_attributes(
    otlp_receiver, make_collector, transport
):
    collector = make_collector(
        export_endpoints=[_endpoint(otlp_receiver, transport)],
        service_name="checkout",
        tags={"environment": "production", "version": "1.0.0"},
    )
    # The child is collected before its parent, as legacy services often do.
    collector.collect_trace(
        Trace(
            "trace-abc-123",
            "span-002",
            "charge_card",
            12.5,
            "span-001",
            {"payment_method": "card", "attempt": 2},
            1_700_000_000.25,
            error="declined",
        )
    )
    collector.collect_trace(
        Trace("trace-abc-123", "span-001", "checkout", 40.0, timestamp=1_700_000_000.5)
    )
    assert collector.flush(10_000) is True
    spans = {span.name: (resource, span) for resource, span in otlp_receiver.spans()}
    assert set(spans) == {"charge_card", "checkout"}
    resource, child = spans["charge_card"]
    _, parent = spans["checkout"]
    assert resource["service.name"] == "checkout"
    assert (resource["environment"], resource["version"]) == ("production", "1.0.0")
    assert resource["telemetry.sdk.name"] == "opentelemetry"
    assert child.trace_id == parent.trace_id == _sha("trace-abc-123", 16)
    assert child.span_id == _sha("trace-abc-123\0span-002", 8)
    assert parent.span_id == _sha("trace-abc-123\0span-001", 8)
    assert child.parent_span_id == parent.span_id
    assert parent.parent_span_id == b""
    assert (child.start_time_unix_nano, child.end_time_unix_nano) == (
        1_700_000_000_237_500_000,
        1_700_000_000_250_000_000,
    )
    assert (child.status.code, child.status.message) == (2, "declined")  # STATUS_CODE_ERROR
    assert parent.status.code == 0  # UNSET
    assert attributes_of(child.attributes) == {
        "payment_method": "card",
        "attempt": 2,
        "legacy.trace_id": "trace-abc-123",
        "legacy.span_id": "span-002",
        "legacy.parent_span_id": "span-001",
        "sampling.probability": 1.0,
    }
    # Kept at probability 1: the consistent-sampling threshold 0, in the W3C tracestate.
    assert child.trace_state == parent.trace_state == "ot=th:0"
    assert collector.stats()["trace"]["exported"] == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_w3c_ids_travel_unchanged(otlp_receiver, make_collector, transport):
    collector = make_collector(export_endpoints=[_endpoint(otlp_receiver, transport)])
    collector.collect_trace(
        Trace(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            "op",
            1.0,
            parent_span_id="53995c3f42cd8ad8",
        )
    )
    assert collector.flush(10_000) is True
    [(_, span)] = otlp_receiver.spans()
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.span_id.hex() == "00f067aa0ba902b7"
    assert span.parent_span_id.hex() == "53995c3f42cd8ad8"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_events_arrive_as_log_records_with_event_name_severity_and_attributes(
    otlp_receiver, make_collector, transport
):
    collector = make_collector(
        export_endpoints=[_endpoint(otlp_receiver, transport)], tags={"environment": "prod"}
    )
    collector.collect_event(
        Event(
            "payment_failed",
            "Card declined",
            EventSeverity.WARNING,
            metadata={
                "user_id": "12345",
                "amount": 99.99,
                "cart": {"items": [1, 2]},
                "big": 2**70,
                "price": Decimal("1.50"),
            },
            timestamp=1_700_000_000.5,
            tags={"team": "payments"},
        )
    )
    collector.collect_event(Event("crash", "boom", EventSeverity.CRITICAL))
    assert collector.flush(10_000) is True
    records = {record.event_name: (res, record) for res, record in otlp_receiver.log_records()}
    resource, record = records["payment_failed"]
    assert resource["environment"] == "prod"
    assert (record.severity_number, record.severity_text) == (13, "WARNING")
    assert any_value(record.body) == "Card declined"
    assert record.time_unix_nano == 1_700_000_000_500_000_000
    assert attributes_of(record.attributes) == {
        "user_id": "12345",
        "amount": 99.99,
        "cart": {"items": [1, 2]},
        "big": str(2**70),
        "price": "1.50",
        "team": "payments",
        "sampling.probability": 1.0,
    }
    assert (records["crash"][1].severity_number, records["crash"][1].severity_text) == (
        21,
        "CRITICAL",
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_metrics_arrive_on_their_instruments_with_values_units_and_attributes(
    otlp_receiver, make_collector, transport
):
    collector = make_collector(
        export_endpoints=[_endpoint(otlp_receiver, transport)], flush_interval_ms=60_000
    )
    for value in (2, 3):
        collector.collect_metric(
            Metric(
                "orders",
                value,
                MetricType.COUNTER,
                {"region": "eu"},
                unit="1",
                description="Orders placed",
            )
        )
    collector.collect_metric(Metric("depth", 7, MetricType.GAUGE))
    collector.collect_metric(Metric("depth", 4, MetricType.GAUGE))
    for value in (1.0, 30.0):
        collector.collect_metric(Metric("latency", value, MetricType.HISTOGRAM, unit="ms"))
    assert collector.flush(10_000) is True
    metrics = {metric.name: metric for _, metric in otlp_receiver.metrics()}
    orders = metrics["orders"]
    assert (orders.unit, orders.description) == ("1", "Orders placed")
    assert orders.sum.is_monotonic
    [point] = orders.sum.data_points
    assert (point.as_int, attributes_of(point.attributes)) == (5, {"region": "eu"})
    assert [p.as_int for p in metrics["depth"].gauge.data_points] == [4]
    [histogram] = metrics["latency"].histogram.data_points
    assert (histogram.count, histogram.sum, histogram.min, histogram.max) == (2, 31.0, 1.0, 30.0)
    assert metrics["latency"].unit == "ms"
    assert collector.stats()["metric"]["exported"] == 3


def test_eight_threads_of_counter_increments_sum_exactly_on_the_wire(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[_endpoint(otlp_receiver, "grpc")], flush_interval_ms=60_000
    )

    add_counter_from_threads(collector, threads=8, each=10_000)
    assert collector.flush(10_000) is True
    points = [p for _, m in otlp_receiver.metrics() if m.name == "hits" for p in m.sum.data_points]
    # OTLP's default temporality is cumulative: the last point holds the total.
    assert points[-1].as_int == 80_000
