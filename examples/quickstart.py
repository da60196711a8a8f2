"""Quick start: collect a metric, an event and a small trace, printed on the console."""

from __future__ import annotations

import time

from telemetry_otel import (
    Event,
    EventSeverity,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
    Trace,
)


def main() -> None:
    config = TelemetryConfig(
        export_endpoints=["console"],
        service_name="checkout",
        tags={"environment": "demo", "version": "1.0.0"},
    )
    with TelemetryCollector(config) as collector:
        for duration in (95.0, 125.5, 310.2):
            collector.collect_metric(
                Metric(
                    "api_response_time",
                    duration,
                    MetricType.HISTOGRAM,
                    tags={"endpoint": "/api/users"},
                    unit="ms",
                )
            )
        collector.collect_metric(
            Metric("orders_total", 3, MetricType.COUNTER, tags={"region": "eu"})
        )
        collector.collect_metric(Metric("queue_depth", 17, MetricType.GAUGE))
        collector.collect_event(
            Event(
                "user_action",
                "User completed checkout",
                EventSeverity.INFO,
                metadata={"user_id": "12345", "amount": 99.99},
            )
        )
        collector.collect_event(Event("payment_declined", "Card declined", EventSeverity.WARNING))
        now = time.time()
        collector.collect_trace(
            Trace("order-7", "db", "SELECT orders", 40.0, parent_span_id="root", timestamp=now)
        )
        collector.collect_trace(
            Trace(
                "order-7",
                "root",
                "POST /checkout",
                234.5,
                tags={"http.method": "POST"},
                timestamp=now,
            )
        )
    print()
    print(collector.stats())  # a dict of counts per signal, printed as a table


if __name__ == "__main__":
    main()
