"""A user's module that uses the whole public API: tests/test_typing.py runs
``mypy --strict`` over it (it must pass with no ignore but the ones it checks) and
runs ``main()``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from telemetry_otel import (
    BoundCounter,
    BoundGauge,
    BoundHistogram,
    CounterHandle,
    Event,
    EventSeverity,
    GaugeHandle,
    HistogramHandle,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
    Trace,
    deliver_on_terminate,
)
from telemetry_otel.testing import TelemetryCapture


def build() -> TelemetryCollector:
    config = TelemetryConfig(service_name="typed", tags={"team": "payments"}).with_env({})
    config.sample_rate = 1.0
    return TelemetryCollector(config)


def main() -> dict[str, int]:
    collector = build()
    capture = TelemetryCapture(collector)

    @collector.traced
    def add(a: int, b: int = 1) -> int:
        return a + b

    @collector.traced("fetch", tags={"kind": "io"})
    async def fetch(url: str) -> bytes:
        return url.encode()

    with collector:
        total: int = add(2, b=3)
        body: bytes = asyncio.run(fetch("https://example.com"))
        if TYPE_CHECKING:  # the signature is kept: mypy sees this call as the error it is
            add("two")  # type: ignore[arg-type]
        requests: CounterHandle = collector.counter("requests", unit="1", tags={"a": "b"})
        latency: HistogramHandle = collector.histogram("latency", unit="ms")
        depth: GaugeHandle = collector.gauge("queue.depth")
        ok: BoundCounter = requests.bind(route="/pay")
        slow: BoundHistogram = latency.bind({"route": "/pay"})
        level: BoundGauge = depth.bind()
        recorded: bool = ok.add(1) and slow.record(12.5) and level.set(3)
        recorded = recorded and requests.add(1, {"route": "/health"})
        collector.collect_metric(Metric("jobs", 1, MetricType.COUNTER, tags={"q": "high"}))
        collector.collect_event(Event("user_action", "checkout", EventSeverity.INFO))
        collector.collect_trace(Trace("trace-1", "span-1", "process_payment", 234.5))
        with collector.span("work", tags={"step": 1}) as span:
            span.set_attribute("items", 3)
            carrier = collector.inject_context()
        with collector.span("child", parent=collector.extract_context(carrier)):
            pass
        logging.getLogger("typed").addHandler(collector.logging_handler(logging.WARNING))
        flushed: bool = collector.flush(5000)
        events: list[Event] = capture.flush().events
    stats = collector.stats()
    deliver_on_terminate  # noqa: B018 - a Pool initializer, named for the type checker
    return {
        "total": total,
        "body": len(body),
        "recorded": int(recorded),
        "flushed": int(flushed),
        "events": len(events),
        "metrics": stats["metric"]["collected"],
    }
