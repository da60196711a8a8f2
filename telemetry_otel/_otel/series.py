"""Measurements onto SDK instruments, with each tag set shaped and hashed once.

Why not only ``Counter.add`` / ``Histogram.record`` / ``Gauge.set``: for every
measurement, the SDK checks and copies the attributes, then hashes them again for
each metric reader: about 2 µs of its 4.4 µs. Services repeat a small set of tag
sets, so a :class:`SeriesRecorder` shapes (redaction, limits) and hashes each one
once, keeps it in a bounded cache, and hands the measurement to every reader's
aggregation the way the SDK's own ``_ViewInstrumentMatch.consume_measurement``
does. Aggregation, temporality, cardinality limits and exemplars stay the SDK's.

That path uses SDK internals. :func:`sdk_internals_fit` checks them once per
process, on a private MeterProvider, against the public path; where they do not
fit (another SDK release), every measurement takes the public instrument method.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import time_ns
from typing import Any

from opentelemetry.context import get_current
from opentelemetry.sdk.metrics import MeterProvider

from telemetry_otel._otel.forks import ForkSafeLock
from telemetry_otel._shaping import Shaper

try:
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.measurement import Measurement
    from opentelemetry.sdk.metrics._internal.measurement_consumer import (
        SynchronousMeasurementConsumer,
    )

    _IMPORTED = True
except ImportError:  # another SDK release: the public path only
    _IMPORTED = False

__all__ = ["OVERFLOW_ATTRIBUTES", "SeriesRecorder", "fast_path_consumer", "sdk_internals_fit"]

# Where the SDK folds measurements past the cardinality limit; the recorder folds
# them there itself, so that every reader agrees on which tag sets were kept.
OVERFLOW_ATTRIBUTES: Mapping[str, Any] = {"otel.metric.overflow": True}
# Every NaN tag value becomes this one object: NaN equals nothing, not even itself, so
# each NaN would otherwise make a series of its own, and a flood of them fold every
# later tag set into the overflow series.
_NAN = float("nan")
# Distinct tag dicts remembered per instrument, as a multiple of its series limit:
# several tag sets can shape into one series (a redacted value, say).
_TAG_SETS_PER_SERIES = 4

TagsKey = tuple[tuple[str, ...], tuple[Any, ...], tuple[type, ...]]


def tags_key(tags: Mapping[str, Any]) -> TagsKey:
    """A hashable key for a tag dict; the types tell 1, 1.0 and True apart."""
    values = tuple(tags.values())
    return tuple(tags), values, tuple(map(type, values))


if _IMPORTED:

    class _ShapedMeasurement(Measurement):
        """A Measurement whose attributes were shaped (checked, limited) once, when
        its series was first seen: the SDK's per-measurement check is skipped."""

        def __post_init__(self) -> None:
            pass

    _new_measurement = _ShapedMeasurement.__new__


def _measurement(value: float, time: int, instrument: Any, context: Any, attributes: Any) -> Any:
    # A frozen dataclass's __init__ pays an object.__setattr__ per field; filling
    # the instance dict gives the same object for half the cost (the probe in
    # sdk_internals_fit checks the result against the public path).
    measurement = _new_measurement(_ShapedMeasurement)
    measurement.__dict__.update(
        value=value,
        time_unix_nano=time,
        instrument=instrument,
        context=context,
        attributes=attributes,
    )
    return measurement


@dataclass(frozen=True)
class Series:
    """One tag set of one instrument: its attributes, and their SDK hash."""

    attributes: Mapping[str, Any]
    hashed: Any


class SeriesRecorder:
    """Records one SDK synchronous instrument's measurements.

    ``record(value, tags)`` returns whether the size limits cut the tags; a tag
    set past ``max_series`` distinct (shaped) sets folds into the overflow
    series, as the SDK's cardinality limit would fold it, and counts as changed.
    """

    def __init__(
        self,
        instrument: Any,
        public_record: Callable[[Any, Any], None],
        consumer: Any,
        shaper: Shaper,
        max_series: int,
        lock: ForkSafeLock,
    ) -> None:
        self._instrument = instrument
        self._public_record = public_record
        # From fast_path_consumer(): None takes the public path.
        self._consumer = consumer
        self._shaper = shaper
        self._max_series = max_series
        self._lock = lock
        self._overflow = _series(dict(OVERFLOW_ATTRIBUTES))
        # Tag dict -> (its series, whether the size limits cut it).
        self._by_tags: dict[TagsKey, tuple[Series, bool]] = {}
        self._by_shape: dict[TagsKey, Series] = {}

    def record(self, value: float, tags: Mapping[str, Any]) -> bool:
        key = tags_key(tags)
        known = self._by_tags.get(key)
        series, limited = known if known is not None else self._new_series(tags, key)
        consumer = self._consumer
        if consumer is None or not self._instrument._is_enabled():
            self._public_record(value, series.attributes)
            return limited
        now, context, attributes = time_ns(), get_current(), series.attributes
        measurement = _measurement(value, now, self._instrument, context, attributes)
        sample = consumer._sdk_config.exemplar_filter.should_sample(value, now, attributes, context)
        for storage in consumer._reader_storages.values():
            for match in storage._get_or_init_view_instrument_match(self._instrument):
                _aggregate(match, series, measurement, sample)
        return limited

    def _new_series(self, tags: Mapping[str, Any], key: TagsKey) -> tuple[Series, bool]:
        shaped, limited = self._shaper.attributes(tags)
        attributes = {k: _NAN if v != v else v for k, v in shaped.items()}
        shape = tags_key(attributes)
        with self._lock:
            series = self._by_shape.get(shape)
            if series is None and len(self._by_shape) < self._max_series:
                series = self._by_shape[shape] = _series(attributes)
            known = (series, limited) if series is not None else (self._overflow, True)
            if len(self._by_tags) < self._max_series * _TAG_SETS_PER_SERIES:
                self._by_tags[key] = known
        return known


def fast_path_consumer(provider: MeterProvider) -> Any:
    """The provider's measurement consumer, when the fast path fits it; else None."""
    consumer = getattr(provider, "_measurement_consumer", None)
    if sdk_internals_fit() and type(consumer) is SynchronousMeasurementConsumer:
        return consumer
    return None


def _series(attributes: dict[str, Any]) -> Series:
    return Series(attributes, _hash_attributes(attributes) if _IMPORTED else None)


def _aggregate(match: Any, series: Series, measurement: Measurement, sample: bool) -> None:
    """``_ViewInstrumentMatch.consume_measurement``, with the series' attributes and hash."""
    if match._view._attribute_keys is not None:
        # A view that keeps only some attribute keys: let the SDK filter and hash.
        match.consume_measurement(measurement, sample)
        return
    if match._reset_on_collect:
        # Delta collection discards the aggregations: hold the lock until aggregated.
        with match._lock:
            aggregation = match._get_or_create_aggregation(series.hashed, series.attributes)
            aggregation.aggregate(measurement, sample)
        return
    aggregation = match._attributes_aggregation.get(series.hashed)
    if aggregation is None:
        with match._lock:
            aggregation = match._get_or_create_aggregation(series.hashed, series.attributes)
    aggregation.aggregate(measurement, sample)


@functools.cache
def sdk_internals_fit() -> bool:
    """Whether the SDK's internals are as this module uses them: the same numbers
    reach a reader through both paths, for each instrument kind, cumulative and delta."""
    if not _IMPORTED:
        return False
    try:
        return _same_as_public_path()
    except Exception:
        return False


def _same_as_public_path() -> bool:
    from opentelemetry.sdk.metrics import Counter, Histogram, _Gauge
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

    delta: dict[type, AggregationTemporality] = {
        kind: AggregationTemporality.DELTA for kind in (Counter, Histogram, _Gauge)
    }
    readers = [InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=delta)]
    provider = MeterProvider(metric_readers=readers, shutdown_on_exit=False)
    meter = provider.get_meter("probe")
    shaper = Shaper(False, [], 128, None)
    tags = {"k": "v", "n": 1}
    for name, make, method in (
        ("c", meter.create_counter, "add"),
        ("h", meter.create_histogram, "record"),
        ("g", meter.create_gauge, "set"),
    ):
        public, fast = make(f"{name}.public"), make(f"{name}.fast")
        consumer = provider._measurement_consumer
        recorder = SeriesRecorder(fast, getattr(fast, method), consumer, shaper, 10, ForkSafeLock())
        for value in (3, 4.5):
            getattr(public, method)(value, tags)
            recorder.record(value, tags)
    for reader in readers:
        data = reader.get_metrics_data()
        if data is None:
            return False
        points = {
            metric.name: [
                (
                    dict(p.attributes or {}),
                    *(getattr(p, f, None) for f in ("value", "sum", "count")),
                )
                for p in metric.data.data_points
            ]
            for metric in data.resource_metrics[0].scope_metrics[0].metrics
        }
        for name in ("c", "h", "g"):
            if not points.get(f"{name}.fast") or points[f"{name}.fast"] != points[f"{name}.public"]:
                return False
    provider.shutdown()
    return True
