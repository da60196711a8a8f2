"""Endpoint strings to SDK exporters, and the counting wrapper for metric exporters."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry_otel._endpoints import Endpoint
from telemetry_otel._otel.console import (
    ConsoleLogRecordExporter,
    ConsoleMetricExporter,
    ConsoleSpanExporter,
)
from telemetry_otel._otel.delivery import DeliveryCounts, warn_once
from telemetry_otel._otel.metrics import count_data_points


@dataclass
class SignalExporters:
    """One endpoint's exporter for each signal."""

    spans: SpanExporter
    logs: LogRecordExporter
    metrics: MetricExporter


def exporters_for(endpoint: Endpoint) -> SignalExporters:
    """Build the SDK exporters an endpoint string stands for."""
    if endpoint.kind == "console":
        return SignalExporters(
            ConsoleSpanExporter(), ConsoleLogRecordExporter(), ConsoleMetricExporter()
        )
    if endpoint.kind == "grpc":
        return _grpc_exporters(endpoint.url)
    return _http_exporters(endpoint.url)


def _grpc_exporters(url: str) -> SignalExporters:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    options: dict[str, Any] = {"endpoint": url, "insecure": True}
    return SignalExporters(
        OTLPSpanExporter(**options),
        OTLPLogExporter(**options),
        OTLPMetricExporter(**options),
    )


def _http_exporters(url: str) -> SignalExporters:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return SignalExporters(
        OTLPSpanExporter(endpoint=f"{url}/v1/traces"),
        OTLPLogExporter(endpoint=f"{url}/v1/logs"),
        OTLPMetricExporter(endpoint=f"{url}/v1/metrics"),
    )


class CountingMetricExporter(MetricExporter):
    """Wraps a metric exporter and counts the data points it exported or failed to."""

    def __init__(self, name: str, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.name = name
        self._inner = inner
        self._counts = DeliveryCounts()
        self._lock = threading.Lock()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = count_data_points(metrics_data)
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            warn_once(f"metric-export:{self.name}", "metric export to %s raised", self.name)
            result = MetricExportResult.FAILURE
        with self._lock:
            self._counts.submitted += points
            if result is MetricExportResult.SUCCESS:
                self._counts.exported += points
            else:
                self._counts.export_failures += points
        return result

    def counts(self) -> DeliveryCounts:
        """A snapshot of the data points exported and failed."""
        with self._lock:
            return DeliveryCounts(**vars(self._counts))

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
