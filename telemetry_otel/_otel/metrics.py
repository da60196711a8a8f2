"""Metric models to OpenTelemetry instruments, and exported metric data back to models."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, _Gauge
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)

from telemetry_otel._otel.forks import ForkSafeLock
from telemetry_otel._otel.series import SeriesRecorder, fast_path_consumer
from telemetry_otel._otel.spans import ns_to_seconds
from telemetry_otel._shaping import Shaper
from telemetry_otel.models import Metric, MetricType

# The callback bridge hands out what changed in each interval.
DELTA_TEMPORALITY: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    _Gauge: AggregationTemporality.DELTA,
}


class InstrumentCache:
    """Creates one instrument per metric name and type, and its SeriesRecorder.

    Instrument names are case-insensitive in OpenTelemetry, so a name already used
    by another metric type (in any case) is refused rather than registered twice.
    """

    def __init__(
        self, provider: MeterProvider, meter: Meter, shaper: Shaper, max_series: int
    ) -> None:
        self._meter = meter
        self._consumer = fast_path_consumer(provider)
        self._shaper = shaper
        self._max_series = max_series
        # By name alone (one type per name): an enum in the key would cost a
        # Python-level hash on every measurement.
        self._recorders: dict[str, tuple[MetricType, SeriesRecorder]] = {}
        self._types: dict[str, MetricType] = {}
        self._lock = ForkSafeLock()

    def recorder(self, metric: Metric) -> SeriesRecorder | None:
        """The recorder of the metric's instrument, or None on a type clash."""
        known = self._recorders.get(metric.name)
        if known is not None and known[0] is metric.metric_type:
            return known[1]
        with self._lock:
            return self._create(metric)

    def _create(self, metric: Metric) -> SeriesRecorder | None:
        known = self._recorders.get(metric.name)
        if known is not None:
            return known[1] if known[0] is metric.metric_type else None
        known_type = self._types.get(metric.name.lower())
        if known_type is not None and known_type is not metric.metric_type:
            return None
        meter, name = self._meter, metric.name
        unit, description = metric.unit, metric.description
        instrument: Any
        if metric.metric_type is MetricType.COUNTER:
            instrument = meter.create_counter(name, unit=unit, description=description)
            record = instrument.add
        elif metric.metric_type is MetricType.GAUGE:
            instrument = meter.create_gauge(name, unit=unit, description=description)
            record = instrument.set
        else:
            instrument = meter.create_histogram(name, unit=unit, description=description)
            record = instrument.record
        recorder = SeriesRecorder(
            instrument, record, self._consumer, self._shaper, self._max_series, self._lock
        )
        self._types[name.lower()] = metric.metric_type
        self._recorders[name] = (metric.metric_type, recorder)
        return recorder


def metrics_of(data: MetricsData, skip_scope: str | None = None) -> Iterator[Any]:
    """Every metric in an export, leaving out one instrumentation scope."""
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != skip_scope:
                yield from scope_metrics.metrics


def metrics_data_to_models(
    data: MetricsData, global_tags: Mapping[str, Any], skip_scope: str | None = None
) -> list[Metric]:
    """One Metric per exported data point: counters, gauges and explicit-bucket histograms."""
    models: list[Metric] = []
    for metric in metrics_of(data, skip_scope):
        models.extend(_points_to_models(metric, global_tags))
    return models


def count_data_points(data: MetricsData, skip_scope: str | None = None) -> int:
    """How many data points an export carries."""
    return sum(len(metric.data.data_points) for metric in metrics_of(data, skip_scope))


def _points_to_models(metric: Any, global_tags: Mapping[str, Any]) -> Iterator[Metric]:
    data = metric.data
    if isinstance(data, Sum):
        metric_type = MetricType.COUNTER if data.is_monotonic else MetricType.GAUGE
    elif isinstance(data, Gauge):
        metric_type = MetricType.GAUGE
    elif isinstance(data, HistogramData):
        metric_type = MetricType.HISTOGRAM
    else:  # exponential histograms are not produced by this library's instruments
        return
    for point in data.data_points:
        tags = dict(global_tags)
        tags.update(point.attributes or {})
        common = {
            "name": metric.name,
            "metric_type": metric_type,
            "tags": tags,
            "timestamp": ns_to_seconds(point.time_unix_nano),
            "unit": metric.unit or "",
            "description": metric.description or "",
        }
        if metric_type is MetricType.HISTOGRAM:
            yield Metric(
                value=point.sum,
                count=point.count,
                min=point.min if point.count else None,
                max=point.max if point.count else None,
                bucket_counts=list(point.bucket_counts),
                explicit_bounds=list(point.explicit_bounds),
                **common,
            )
        else:
            yield Metric(value=point.value, **common)
