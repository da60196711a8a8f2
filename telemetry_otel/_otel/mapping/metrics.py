"""Metric models to OpenTelemetry instruments, and exported metric data back to models."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    HistogramDataPoint,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)

from telemetry_otel._otel.mapping.series import Combine, Series, SeriesRecorder, fast_path_consumer
from telemetry_otel._otel.mapping.spans import ns_to_seconds
from telemetry_otel._otel.mapping.summaries import SummaryBoard, as_summaries
from telemetry_otel._otel.runtime.forks import ForkSafeLock, follow_forks
from telemetry_otel._otel.runtime.log import shown, warn_limited, warn_once
from telemetry_otel._otel.runtime.sdk import SynchronousGauge, exemplars_only_in_spans
from telemetry_otel._shaping import Shaper
from telemetry_otel.models import Metric, MetricType

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
# The callback bridge hands out what changed in each interval.
DELTA_TEMPORALITY: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    SynchronousGauge: AggregationTemporality.DELTA,
    # Bridged prometheus_client counters are observed as their running totals.
    ObservableCounter: AggregationTemporality.DELTA,
}


class InstrumentCache:
    """Creates one instrument per metric name and type, and its SeriesRecorder.

    Instrument names are case-insensitive in OpenTelemetry, so a name already used
    by another metric type (in any case) is refused rather than registered twice.
    """

    def __init__(
        self,
        provider: MeterProvider,
        meter: Meter,
        shaper: Shaper,
        max_series: int,
        count_collected: Callable[[], object] | None = None,
    ) -> None:
        self._meter = meter
        # What each recorder's collect() counts with, where it holds no lock.
        self._count_collected = count_collected
        self._consumer = fast_path_consumer(provider)
        self._shaper = shaper
        self._max_series = max_series
        self._combines = False
        self._series_recorders: list[SeriesRecorder] = []
        # One drain at a time: a reader collecting during another's drain waits for
        # it, or it could collect before that drain reached its aggregation.
        self._drain_lock = ForkSafeLock()
        # By name alone (one type per name): an enum in the key would cost a
        # Python-level hash on every measurement. Read without a lock by the
        # collecting path; written under it.
        self.recorders: dict[str, tuple[MetricType, SeriesRecorder | RenamedRecorder]] = {}
        self._types: dict[str, MetricType] = {}
        self._lock = ForkSafeLock()
        follow_forks(self)

    def recorder(self, metric: Metric) -> SeriesRecorder | RenamedRecorder | None:
        """The recorder of the metric's instrument, or None on a type clash."""
        known = self.recorders.get(metric.name)
        if known is not None and known[0] is metric.metric_type:
            return known[1]
        return self.recorder_for(metric.name, metric.metric_type, metric.unit, metric.description)

    def recorder_for(
        self, name: str, metric_type: MetricType, unit: str = "", description: str = ""
    ) -> SeriesRecorder | RenamedRecorder | None:
        """The recorder of a name's instrument, created with this type, unit and
        description when the name is new; None when the name has another type."""
        with self._lock:
            known = self.recorders.get(name)
            if known is not None:
                return known[1] if known[0] is metric_type else None
            return self._create(name, metric_type, unit, description)

    def _create(
        self, legacy_name: str, metric_type: MetricType, unit: str, description: str
    ) -> SeriesRecorder | RenamedRecorder | None:
        name = instrument_name(legacy_name)
        known_type = self._types.get(name.lower())
        if known_type is not None and known_type is not metric_type:
            return None
        series = self._instrument(metric_type, name, unit, description)
        recorder: SeriesRecorder | RenamedRecorder = series
        self._types[name.lower()] = metric_type
        if name != legacy_name:
            warn_once(
                f"rename:{legacy_name}",
                "metric name %s is not a valid OpenTelemetry instrument name: exported as "
                "%s, with the name given in attribute %s",
                shown(legacy_name),
                shown(name),
                LEGACY_NAME,
            )
            recorder = RenamedRecorder(series, legacy_name)
        self.recorders[legacy_name] = (metric_type, recorder)
        return recorder

    def _instrument(
        self, metric_type: MetricType, name: str, unit: str, description: str
    ) -> SeriesRecorder:
        meter = self._meter
        instrument: Any
        combine: Combine | None = None
        if metric_type is MetricType.COUNTER:
            instrument = meter.create_counter(name, unit=unit, description=description)
            record, combine = instrument.add, Combine.SUM
        elif metric_type is MetricType.GAUGE:
            instrument = meter.create_gauge(name, unit=unit, description=description)
            record, combine = instrument.set, Combine.LAST
        else:
            instrument = meter.create_histogram(name, unit=unit, description=description)
            record, combine = instrument.record, Combine.BUCKETS
        recorder = SeriesRecorder(
            instrument,
            record,
            self._consumer,
            self._shaper,
            self._max_series,
            self._lock,
            combine if self._combines else None,
        )
        if self._count_collected is not None:
            recorder.count_collected = self._count_collected
        self._series_recorders.append(recorder)
        return recorder

    def combine_between_collections(self) -> None:
        """Let measurements add up between collections (see SeriesRecorder), once every
        reader's collection drains them first; before any metric is recorded. Not where
        exemplars are sampled outside spans: each measurement may be one."""
        consumer = self._consumer
        self._combines = consumer is not None and exemplars_only_in_spans(consumer)

    def drain(self) -> None:
        """Hand what the instruments added up to every reader (before a collection)."""
        with self._drain_lock:
            for recorder in list(self._series_recorders):
                recorder.drain()

    def counted(self) -> int:
        """What the recorders counted under their own locks (SeriesRecorder.counted)."""
        return sum(recorder.counted for recorder in self._series_recorders)

    def close(self) -> None:
        """Refuse every later measurement: the last collection is about to begin."""
        with self._lock:
            for recorder in self._series_recorders:
                recorder.close()

    def after_fork_in_child(self) -> None:
        for recorder in self._series_recorders:
            recorder.after_fork_in_child()


# The attribute that carries a legacy metric name OpenTelemetry's rule refused: it keeps
# two legacy names that map to one instrument name apart, and callbacks get it back.
LEGACY_NAME = "legacy.metric_name"
_INSTRUMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_.\-/]")


def instrument_name(name: str) -> str:
    """A legacy metric name as a valid OpenTelemetry instrument name, deterministically:
    accents dropped (``ümlaut`` → ``umlaut``), any other character outside letters,
    digits and ``_ . - /`` made ``_``, ``m_`` put before a name that does not start
    with a letter, and the whole cut to 255 characters."""
    if _INSTRUMENT_NAME.fullmatch(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    valid = _NOT_ALLOWED.sub("_", ascii_name or name)
    if not valid[:1].isalpha():
        valid = f"m_{valid}"
    return valid[:255]


class RenamedRecorder:
    """Records a metric whose legacy name was renamed, with that name as an attribute;
    ``record`` reports every measurement as limited (the name was changed)."""

    def __init__(self, inner: SeriesRecorder, legacy_name: str) -> None:
        self._inner = inner
        self._legacy_name = legacy_name

    def collect(self, value: float, tags: Mapping[str, Any]) -> bool:
        self._inner.collect(value, {**tags, LEGACY_NAME: self._legacy_name})
        return True

    def record(self, value: float, tags: Mapping[str, Any]) -> bool:
        self._inner.record(value, {**tags, LEGACY_NAME: self._legacy_name})
        return True

    def record_many(self, value: float, tags: Mapping[str, Any], count: int) -> bool:
        self._inner.record_many(value, {**tags, LEGACY_NAME: self._legacy_name}, count)
        return True

    def bind(self, tags: Mapping[str, Any]) -> tuple[SeriesRecorder, Series, bool]:
        series, _ = self._inner.known({**tags, LEGACY_NAME: self._legacy_name})
        return self._inner, series, True


def metrics_of(data: MetricsData, skip_scope: str | None = None) -> Iterator[Any]:
    """Every metric in an export, leaving out one instrumentation scope."""
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != skip_scope:
                yield from scope_metrics.metrics


def metrics_data_to_models(
    data: MetricsData, global_tags: Mapping[str, Any], skip_scope: str | None = None
) -> tuple[list[Metric], int]:
    """One Metric per exported data point (counters, gauges and explicit-bucket
    histograms), and how many points no model can hold (a histogram sum that reached
    infinity): those are left out, never the interval's other metrics with them."""
    models: list[Metric] = []
    unfit = 0
    for metric in metrics_of(data, skip_scope):
        for model in _points_to_models(metric, global_tags):
            if model is None:
                unfit += 1
            else:
                models.append(model)
    return models, unfit


def within_int64(data: MetricsData) -> MetricsData:
    """``data`` with every integer point outside int64 turned into a double.

    A counter's running total can leave int64 although each measurement was
    within it; OTLP carries an integer point as int64, so the encoder would refuse
    the whole export, every metric with it, at every interval from then on. Such a
    point goes out as a double instead (as_double: exact to 2**53, then rounded),
    and so does its callback model. Nothing is copied unless a point needs it.
    """
    if not any(_overflows(metric) for metric in metrics_of(data)):
        return data
    return replace(
        data,
        resource_metrics=[
            replace(
                rm,
                scope_metrics=[
                    replace(sm, metrics=[_metric_within_int64(m) for m in sm.metrics])
                    for sm in rm.scope_metrics
                ],
            )
            for rm in data.resource_metrics
        ],
    )


def _overflows(metric: Any) -> bool:
    return isinstance(metric.data, (Sum, Gauge)) and any(
        type(point.value) is int and not _INT64_MIN <= point.value <= _INT64_MAX
        for point in metric.data.data_points
    )


def _metric_within_int64(metric: Any) -> Any:
    if not _overflows(metric):
        return metric
    points = [
        replace(point, value=float(point.value))
        if type(point.value) is int and not _INT64_MIN <= point.value <= _INT64_MAX
        else point
        for point in metric.data.data_points
    ]
    return replace(metric, data=replace(metric.data, data_points=points))


def without_uncountable(data: MetricsData) -> tuple[MetricsData, int]:
    """``data`` without the histogram points whose counts OTLP cannot carry, and how
    many were left out.

    OTLP carries a histogram's count and bucket counts as uint64: one count past it
    (a bridged registry's, or a hostile sample rate's) makes the encoder refuse the
    whole export, every metric with it, at every interval from then on, since the
    point is cumulative. Only that point is left out (counted ``dropped_rejected`` by
    the caller, logged once a minute per metric); nothing is copied unless a point
    needs it.
    """
    left_out = 0
    for metric in metrics_of(data):
        uncountable = _uncountable_points(metric)
        if uncountable:
            left_out += uncountable
            warn_limited(
                f"uncountable:{metric.name}",
                "metric %r has a histogram count OTLP cannot carry (past 2**64 - 1, or "
                "negative): its point is left out of every export, counted dropped_rejected",
                metric.name,
            )
    if not left_out:
        return data, 0
    kept = replace(
        data,
        resource_metrics=[
            replace(
                rm,
                scope_metrics=[
                    replace(sm, metrics=[m for m in map(_countable, sm.metrics) if m is not None])
                    for sm in rm.scope_metrics
                ],
            )
            for rm in data.resource_metrics
        ],
    )
    return kept, left_out


def _uncountable_points(metric: Any) -> int:
    if not isinstance(metric.data, (HistogramData, ExponentialHistogram)):
        return 0
    return sum(not _countable_point(point) for point in metric.data.data_points)


def _countable_point(point: Any) -> bool:
    if isinstance(point, HistogramDataPoint):
        counts = [point.count, *point.bucket_counts]
    else:
        counts = [
            point.count,
            point.zero_count,
            *point.positive.bucket_counts,
            *point.negative.bucket_counts,
        ]
    return all(0 <= count <= _UINT64_MAX for count in counts)


def _countable(metric: Any) -> Any:
    """The metric without its uncountable points; None when none is left."""
    if not _uncountable_points(metric):
        return metric
    points = [point for point in metric.data.data_points if _countable_point(point)]
    return replace(metric, data=replace(metric.data, data_points=points)) if points else None


def count_data_points(data: MetricsData, skip_scope: str | None = None) -> int:
    """How many data points an export carries."""
    return sum(len(metric.data.data_points) for metric in metrics_of(data, skip_scope))


def _points_to_models(metric: Any, global_tags: Mapping[str, Any]) -> Iterator[Metric | None]:
    for point_model in _point_models(metric, global_tags):
        try:
            yield point_model()
        except (TypeError, ValueError):
            yield None


def _point_models(metric: Any, global_tags: Mapping[str, Any]) -> Iterator[Callable[[], Metric]]:
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
            "name": tags.pop(LEGACY_NAME, metric.name),
            "metric_type": metric_type,
            "tags": tags,
            "timestamp": ns_to_seconds(point.time_unix_nano),
            "unit": metric.unit or "",
            "description": metric.description or "",
        }
        if metric_type is MetricType.HISTOGRAM:
            yield partial(
                Metric,
                value=point.sum,
                count=point.count,
                min=_known(point.min) if point.count else None,
                max=_known(point.max) if point.count else None,
                bucket_counts=list(point.bucket_counts),
                explicit_bounds=list(point.explicit_bounds),
                **common,
            )
        else:
            yield partial(Metric, value=point.value, **common)


def _known(bound: float) -> float | None:
    """A histogram's min or max; None where it is not known (a bridged Prometheus
    histogram has none: the SDK's point then carries an infinity)."""
    return bound if math.isfinite(bound) else None


def metrics_request(data: MetricsData, summaries: SummaryBoard | None = None) -> Any:
    """The OTLP ExportMetricsServiceRequest for ``data``, by the SDK's encoder, without
    the infinite min and max of histogram points whose min and max are not known
    (OTLP leaves such fields unset), and with bridged summaries written as summaries."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    request = encode_metrics(data)
    if summaries is not None:
        as_summaries(request, summaries)
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.WhichOneof("data") != "histogram":
                    continue
                for point in metric.histogram.data_points:
                    if not math.isfinite(point.min):
                        point.ClearField("min")
                    if not math.isfinite(point.max):
                        point.ClearField("max")
    return request
