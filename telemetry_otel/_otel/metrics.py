"""Metric models to OpenTelemetry instruments, and exported metric data back to models."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import Counter, Histogram, _Gauge
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
from telemetry_otel._otel.spans import ns_to_seconds
from telemetry_otel.models import Metric, MetricType

Record = Callable[[Any, Any], None]

# The callback bridge hands out what changed in each interval.
DELTA_TEMPORALITY: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    _Gauge: AggregationTemporality.DELTA,
}


class InstrumentCache:
    """Creates one instrument per metric name and type, and returns its record method.

    Instrument names are case-insensitive in OpenTelemetry, so a name already used
    by another metric type (in any case) is refused rather than registered twice.
    """

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._records: dict[tuple[str, MetricType], Record] = {}
        self._types: dict[str, MetricType] = {}
        self._lock = ForkSafeLock()

    def record_method(self, metric: Metric) -> Record | None:
        """Return the bound add/set/record of the metric's instrument, or None on a type clash."""
        record = self._records.get((metric.name, metric.metric_type))
        if record is None:
            with self._lock:
                record = self._create(metric)
        return record

    def _create(self, metric: Metric) -> Record | None:
        key = (metric.name, metric.metric_type)
        if key in self._records:
            return self._records[key]
        known_type = self._types.get(metric.name.lower())
        if known_type is not None and known_type is not metric.metric_type:
            return None
        meter, name = self._meter, metric.name
        unit, description = metric.unit, metric.description
        record: Record
        if metric.metric_type is MetricType.COUNTER:
            record = meter.create_counter(name, unit=unit, description=description).add
        elif metric.metric_type is MetricType.GAUGE:
            record = meter.create_gauge(name, unit=unit, description=description).set
        else:
            record = meter.create_histogram(name, unit=unit, description=description).record
        self._types[name.lower()] = metric.metric_type
        self._records[key] = record
        return record


OVERFLOW_ATTRIBUTE = "otel.metric.overflow"


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


def count_overflow_points(data: MetricsData, skip_scope: str | None = None) -> int:
    """Data points holding the measurements past the cardinality limit."""
    return sum(
        1
        for metric in metrics_of(data, skip_scope)
        for point in metric.data.data_points
        if (point.attributes or {}).get(OVERFLOW_ATTRIBUTE)
    )


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
