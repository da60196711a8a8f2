"""Endpoints to destinations: the exporters and reader each endpoint stands for."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry_otel._endpoints import DEFAULT_BACKUPS, Endpoint
from telemetry_otel._otel.destinations.console import (
    ConsoleLines,
    ConsoleLogRecordExporter,
    ConsoleMetricExporter,
    ConsoleSpanExporter,
    ConsoleTrees,
)
from telemetry_otel._otel.destinations.destination import (
    CountingMetricExporter,
    Destination,
    cardinality_limits,
    component,
    otlp_exporter_type,
)
from telemetry_otel._otel.destinations.files import (
    JsonLogRecordExporter,
    JsonMetricExporter,
    JsonSpanExporter,
    RotatingLineFile,
)
from telemetry_otel._redact import mask_url
from telemetry_otel.config import TelemetryConfig


def build_destination(endpoint: Endpoint, config: TelemetryConfig) -> Destination:
    """The exporters and reader an endpoint stands for."""
    destination = _built(endpoint, config)
    destination.kind = endpoint.kind
    counting = destination.metric_counts
    if counting is not None:
        kind = "otlp" if destination.otlp_targets else endpoint.kind
        targets = destination.otlp_targets or {}
        exporter_type = (
            otlp_exporter_type(targets["metrics"], "metric")
            if "metrics" in targets
            else f"{kind}_metric_exporter"
        )
        counting.component = component(exporter_type, destination)
    return destination


def _built(endpoint: Endpoint, config: TelemetryConfig) -> Destination:
    name = mask_url(endpoint.text)  # names reach logs and thread names: no credentials
    if endpoint.kind == "console":
        return _console_destination(name, endpoint, config)
    if endpoint.kind == "file":
        return _file_destination(name, endpoint, config)
    if endpoint.kind == "prometheus":
        from telemetry_otel._otel.destinations.prometheus import prometheus_destination

        return prometheus_destination(name, endpoint, config, cardinality_limits(config))
    targets = config.otlp_targets(endpoint)
    # Traces and logs go through OtlpDelivery (delivery/otlp.py); metrics through the
    # SDK's periodic reader to OtlpMetricExporter (destinations/otlp.py).
    from telemetry_otel._otel.destinations.otlp import OtlpMetricExporter

    if "metrics" not in targets:
        return Destination(name, otlp_targets=dict(targets))
    counting = OtlpMetricExporter(name, targets["metrics"], config.max_export_batch_bytes)
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
        destination.flush_held = trees.drain
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
