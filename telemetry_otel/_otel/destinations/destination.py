"""What one endpoint stands for: its exporters and metric reader, and metric counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics import Counter, Histogram
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.delivery.accounting import SELF_SCOPE
from telemetry_otel._otel.delivery.outcomes import (
    EXPORTER,
    REJECTED,
    SHUTDOWN,
    Delivered,
    DeliveryCounts,
)
from telemetry_otel._otel.mapping.metrics import (
    count_data_points,
    within_int64,
    without_uncountable,
)
from telemetry_otel._otel.mapping.summaries import SummaryBoard
from telemetry_otel._otel.runtime.forks import ForkSafeLock
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._otel.runtime.sdk import SynchronousGauge, exporter_preferences
from telemetry_otel._signals import Signal
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
    # Shows what it holds back (the console's trees) at flush(); False if it could not.
    flush_held: Callable[[], bool] | None = None
    # The endpoint's kind: otlp, console, file or prometheus.
    kind: str = ""

    def takes(self, signal: str) -> bool:
        """Whether it exports ``signal`` (``"trace"``, ``"event"`` or ``"metric"``)."""
        kinds = {"trace": self.spans, "event": self.logs, "metric": self.metric_reader}
        return kinds[signal] is not None or (
            self.otlp_targets is not None and Signal(signal).otlp in self.otlp_targets
        )

    def close(self) -> None:
        """Release what the exporters hold (connections, files, servers)."""
        for exporter in (self.spans, self.logs):
            if exporter is not None:
                exporter.shutdown()
        for close in self.closers:
            close()


def otlp_exporter_type(target: OtlpTarget, kind: str) -> str:
    """``otel.component.type`` of the OTLP exporter for one signal, as the SDK-metric
    conventions name them (``otlp_grpc_span_exporter``, ``otlp_http_json_log_exporter``…);
    ``kind`` is span, log or metric."""
    if target.protocol == "grpc":
        transport = "grpc"
    else:
        transport = "http_json" if target.encoding == "json" else "http"
    return f"otlp_{transport}_{kind}_exporter"


def component(exporter_type: str, destination: Destination) -> tuple[str, str]:
    """``(otel.component.type, otel.component.name)``: the name is the type and the
    endpoint, unique within the collector."""
    return exporter_type, f"{exporter_type}/{destination.name}"


def cardinality_limits(config: TelemetryConfig) -> dict[type, int]:
    """The SDK's per-instrument series limit, for the instruments this library creates."""
    series = config.max_metric_series
    return {Counter: series, Histogram: series, SynchronousGauge: series}


class CountingMetricExporter(MetricExporter):
    """Wraps a metric exporter and counts the data points it exported or failed to."""

    def __init__(
        self,
        name: str,
        inner: MetricExporter,
        preferences: tuple[dict[type, Any], dict[type, Any]] | None = None,
    ) -> None:
        temporality, aggregation = preferences or exporter_preferences(inner)
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        self.name = name
        self._inner = inner
        self._counts = DeliveryCounts()
        self._lock = ForkSafeLock()
        self._stopped = False
        # (otel.component.type, otel.component.name), for the SDK-metric conventions.
        self.component: tuple[str, str] | None = None
        # Points of exports that have not returned, and which stop() counted them for.
        self._in_flight = 0
        self._generation = 0
        # Bridged Prometheus summaries, for a destination that writes OTLP (see
        # mapping/summaries.py).
        self.summaries: SummaryBoard | None = None

    def carry_summaries(self, board: SummaryBoard) -> None:
        """Write bridged summaries as OTLP summaries, where this destination writes OTLP."""
        self.summaries = board
        if hasattr(self._inner, "summaries"):
            self._inner.summaries = board

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._stopped:
            # A forked child of a stopped collector: the SDK restarts the reader's
            # thread there, whose last collection must not be sent again.
            return MetricExportResult.FAILURE
        metrics_data, uncountable = without_uncountable(within_int64(metrics_data))
        points = count_data_points(metrics_data, skip_scope=SELF_SCOPE)
        with self._lock:  # pending while the export has not returned
            self._counts.submitted += points + uncountable
            self._counts.drop(REJECTED, uncountable)
            self._in_flight += points
            generation = self._generation
        try:
            delivered = self._deliver(metrics_data, points, timeout_millis)
        except Exception:
            warn_limited(f"metric-export:{self.name}", "metric export to %s raised", self.name)
            delivered = Delivered()
        with self._lock:
            if generation == self._generation:  # else stop() counted it already
                self._in_flight -= points
                self._counts.record(delivered, points, EXPORTER)
        return (
            MetricExportResult.SUCCESS
            if delivered.exported == points
            else (MetricExportResult.FAILURE)
        )

    def _deliver(self, metrics_data: MetricsData, points: int, timeout_millis: float) -> Delivered:
        result = self._inner.export(metrics_data, timeout_millis=timeout_millis)
        return Delivered(exported=points if result is MetricExportResult.SUCCESS else 0)

    def count_unreturned_as_shutdown(self) -> None:
        """At the end of stop(): the points of an export that has not returned (a black
        hole, an endpoint slower than the deadline) are counted ``dropped_shutdown``, not
        left pending; its answer, if it ever comes, is not counted again."""
        with self._lock:
            self._counts.drop(SHUTDOWN, self._in_flight)
            self._in_flight = 0
            self._generation += 1

    def counts(self) -> DeliveryCounts:
        """A snapshot of the data points exported and failed."""
        with self._lock:
            return self._counts.copy()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._stopped = True
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
