"""Endpoints to SDK exporters and metric readers: one Destination per endpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics import Counter, Histogram, _Gauge
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry_otel._endpoints import DEFAULT_BACKUPS, Endpoint, OtlpTarget
from telemetry_otel._otel.accounting import SELF_SCOPE
from telemetry_otel._otel.console import (
    ConsoleLines,
    ConsoleLogRecordExporter,
    ConsoleMetricExporter,
    ConsoleSpanExporter,
    ConsoleTrees,
)
from telemetry_otel._otel.delivery import EXPORTER, Delivered, DeliveryCounts
from telemetry_otel._otel.forks import ForkSafeLock
from telemetry_otel._otel.log import warn_limited
from telemetry_otel._otel.metrics import count_data_points, within_int64
from telemetry_otel._otel.otlp_json import (
    JsonLogRecordExporter,
    JsonMetricExporter,
    JsonSpanExporter,
    RotatingLineFile,
)
from telemetry_otel._redact import mask_url, split_credentials
from telemetry_otel.config import TelemetryConfig


@dataclass
class Destination:
    """What one endpoint needs: a span and a log exporter (pushed through delivery queues)
    and a metric reader; any may be absent (Prometheus only pulls metrics)."""

    name: str
    spans: SpanExporter | None = None
    logs: LogRecordExporter | None = None
    metric_reader: MetricReader | None = None
    metric_counts: CountingMetricExporter | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    # OTLP only: where each signal goes, for replaying spooled requests.
    otlp_targets: dict[str, OtlpTarget] | None = None
    # Sent as soon as an item is collected, not in batches (the console, for people).
    immediate: bool = False

    def close(self) -> None:
        """Release what the exporters hold (connections, files, servers)."""
        for exporter in (self.spans, self.logs):
            if exporter is not None:
                exporter.shutdown()
        for close in self.closers:
            close()


def build_destination(endpoint: Endpoint, config: TelemetryConfig) -> Destination:
    """The exporters and reader an endpoint stands for."""
    name = mask_url(endpoint.text)  # names reach logs and thread names: no credentials
    if endpoint.kind == "console":
        return _console_destination(name, endpoint, config)
    if endpoint.kind == "file":
        return _file_destination(name, endpoint, config)
    if endpoint.kind == "prometheus":
        from telemetry_otel._otel.prometheus import prometheus_destination

        return prometheus_destination(name, endpoint, cardinality_limits(config))
    targets = config.otlp_targets(endpoint)
    # Traces and logs go through OtlpDelivery (otlp_delivery.py); metrics through the
    # SDK's periodic reader to OtlpMetricExporter (otlp_delivery.py).
    from telemetry_otel._otel.otlp_delivery import OtlpMetricExporter

    if "metrics" not in targets:
        return Destination(name, otlp_targets=dict(targets))
    counting = OtlpMetricExporter(name, targets["metrics"])
    reader = PeriodicExportingMetricReader(
        counting, config.flush_interval_ms, cardinality_limits=cardinality_limits(config)
    )
    return Destination(
        name, metric_reader=reader, metric_counts=counting, otlp_targets=dict(targets)
    )


def _console_destination(name: str, endpoint: Endpoint, config: TelemetryConfig) -> Destination:
    takes = endpoint.takes
    if endpoint.options.get("format") != "json":
        trees = ConsoleTrees()
        destination = _pushing(
            name,
            ConsoleSpanExporter(trees) if takes("traces") else None,
            ConsoleLogRecordExporter(trees) if takes("logs") else None,
            ConsoleMetricExporter(trees) if takes("metrics") else None,
            config,
        )
    else:
        lines = ConsoleLines()

        def write(line: str) -> None:
            lines.write([line])

        destination = _pushing(
            name,
            JsonSpanExporter(write) if takes("traces") else None,
            JsonLogRecordExporter(write) if takes("logs") else None,
            JsonMetricExporter(write) if takes("metrics") else None,
            config,
        )
    destination.immediate = True
    return destination


def cardinality_limits(config: TelemetryConfig) -> dict[type, int]:
    """The SDK's per-instrument series limit, for the instruments this library creates."""
    series = config.max_metric_series
    return {Counter: series, Histogram: series, _Gauge: series}


def _pushing(
    name: str,
    spans: SpanExporter | None,
    logs: LogRecordExporter | None,
    metrics: MetricExporter | None,
    config: TelemetryConfig,
) -> Destination:
    if metrics is None:
        return Destination(name, spans, logs)
    counting = CountingMetricExporter(name, metrics)
    reader = PeriodicExportingMetricReader(
        counting, config.flush_interval_ms, cardinality_limits=cardinality_limits(config)
    )
    return Destination(name, spans, logs, reader, counting)


def _file_destination(name: str, endpoint: Endpoint, config: TelemetryConfig) -> Destination:
    directory = Path(endpoint.url)
    max_bytes = endpoint.options.get("max_bytes")
    backups = int(endpoint.options.get("backups", DEFAULT_BACKUPS))
    files = {
        name: RotatingLineFile(
            directory / f"{name}.jsonl", int(max_bytes) if max_bytes else None, backups
        )
        for name in ("traces", "metrics", "logs")
        if endpoint.takes(name)
    }
    traces, logs, metrics = (files.get(signal) for signal in ("traces", "logs", "metrics"))
    return _pushing(
        name,
        JsonSpanExporter(traces.write_line, traces.close) if traces else None,
        JsonLogRecordExporter(logs.write_line, logs.close) if logs else None,
        JsonMetricExporter(metrics.write_line, metrics.close) if metrics else None,
        config,
    )


# -- OTLP ------------------------------------------------------------------------------------


def url_and_headers(target: OtlpTarget) -> tuple[str, dict[str, str] | None]:
    """URL credentials become a Basic authorization header; an explicit one wins."""
    url, authorization = split_credentials(target.url)
    headers = dict(target.headers)
    if authorization and not any(name.lower() == "authorization" for name in headers):
        headers["authorization"] = authorization
    return url, headers or None


def read_ca_file(ca_file: str | None) -> bytes | None:
    """The PEM bytes of an endpoint's CA file; None: the system's CAs."""
    return Path(ca_file).read_bytes() if ca_file else None


class CountingMetricExporter(MetricExporter):
    """Wraps a metric exporter and counts the data points it exported or failed to."""

    def __init__(
        self,
        name: str,
        inner: MetricExporter,
        preferences: tuple[dict[type, Any], dict[type, Any]] | None = None,
    ) -> None:
        temporality, aggregation = preferences or (
            inner._preferred_temporality,
            inner._preferred_aggregation,
        )
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        self.name = name
        self._inner = inner
        self._counts = DeliveryCounts()
        self._lock = ForkSafeLock()
        self._stopped = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._stopped:
            # A forked child of a stopped collector: the SDK restarts the reader's
            # thread there, whose last collection must not be sent again.
            return MetricExportResult.FAILURE
        metrics_data = within_int64(metrics_data)
        points = count_data_points(metrics_data, skip_scope=SELF_SCOPE)
        with self._lock:  # pending while the export has not returned
            self._counts.submitted += points
        try:
            delivered = self._deliver(metrics_data, points, timeout_millis)
        except Exception:
            warn_limited(f"metric-export:{self.name}", "metric export to %s raised", self.name)
            delivered = Delivered()
        with self._lock:
            self._counts.record(delivered, points, EXPORTER)
        return (
            MetricExportResult.SUCCESS
            if delivered.exported == points
            else (MetricExportResult.FAILURE)
        )

    def _deliver(self, metrics_data: MetricsData, points: int, timeout_millis: float) -> Delivered:
        result = self._inner.export(metrics_data, timeout_millis=timeout_millis)
        return Delivered(exported=points if result is MetricExportResult.SUCCESS else 0)

    def counts(self) -> DeliveryCounts:
        """A snapshot of the data points exported and failed."""
        with self._lock:
            return self._counts.copy()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._stopped = True
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
