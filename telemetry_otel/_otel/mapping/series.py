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
import threading
from bisect import bisect_left
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from telemetry_otel._otel.runtime.forks import ForkSafeLock
from telemetry_otel._otel.runtime.log import logger, warn_once
from telemetry_otel._otel.runtime.sdk import (
    CHECKED_AGAINST,
    METRIC_INTERNALS_IMPORTED,
    SPAN_KEY,
    SynchronousGauge,
    collect_after,
    current_context,
    hash_attributes,
    is_synchronous_consumer,
    measurement_consumer,
    merge_histogram,
    outside_any_span,
    reader_storages,
    record_shaped,
    shared_bucket_bounds,
)
from telemetry_otel._shaping import Shaper

__all__ = [
    "OVERFLOW_ATTRIBUTES",
    "Combine",
    "RecorderClosed",
    "Series",
    "SeriesRecorder",
    "fast_path_consumer",
    "sdk_internals_fit",
]

# Where the SDK folds measurements past the cardinality limit; the recorder folds
# them there itself, so that every reader agrees on which tag sets were kept.
OVERFLOW_ATTRIBUTES: Mapping[str, Any] = {"otel.metric.overflow": True}
# How many times record_many records one value where it cannot add to the buckets at
# once (exponential histograms, or inside a span for exemplars): one measurement costs
# microseconds, and a sampled StatsD line may stand for a million. Past it the rest is
# left out, and the caller counts the line limited.
MAX_RECORDED_WEIGHT = 1_000
# Every NaN tag value becomes this one object: NaN equals nothing, not even itself, so
# each NaN would otherwise make a series of its own, and a flood of them fold every
# later tag set into the overflow series.
_NAN = float("nan")
# Distinct tag dicts remembered per instrument, as a multiple of its series limit:
# several tag sets can shape into one series (a redacted value, say).
_TAG_SETS_PER_SERIES = 4

TagsKey = tuple[tuple[str, ...], tuple[Any, ...], tuple[type, ...]]
Known = tuple["Series", bool]


def tags_key(tags: Mapping[str, Any]) -> TagsKey:
    """A hashable key for a tag dict; the types tell 1, 1.0 and True apart."""
    values = tuple(tags.values())
    return tuple(tags), values, tuple(map(type, values))


class Series:
    """One tag set of one instrument: its attributes, and their SDK hash."""

    __slots__ = ("attributes", "hashed", "started")

    def __init__(self, attributes: Mapping[str, Any], hashed: Any) -> None:
        self.attributes = attributes
        self.hashed = hashed
        # Whether a measurement reached the SDK: its first one creates the series'
        # aggregations, so that a cumulative series starts when it was first measured.
        self.started = False


def _not_counted() -> None:
    """A recorder's count_collected until its instrument cache gives it one."""


class RecorderClosed(Exception):
    """A measurement came after its pipeline's last collection began (stop()): it is
    refused, never taken in to be lost uncounted."""


class Combine(Enum):
    """How a recorder adds measurements up between collections (see SeriesRecorder)."""

    SUM = "sum"
    LAST = "last"
    BUCKETS = "buckets"


# Module constants: an Enum member read off its class costs a Python-level lookup.
_SUM, _LAST = Combine.SUM, Combine.LAST
# A histogram series' measurements since the last drain: sum, min, max, bucket counts,
# and the bucket bounds they were counted with.
Buckets = list[Any]


class SeriesRecorder:
    """Records one SDK synchronous instrument's measurements.

    ``record(value, tags)`` returns whether the size limits cut the tags; a tag
    set past ``max_series`` distinct (shaped) sets folds into the overflow
    series, as the SDK's cardinality limit would fold it, and counts as changed.

    With ``combine`` (counters: SUM, gauges: LAST, histograms: BUCKETS),
    measurements taken outside any span add up per series, as prometheus_client
    keeps its metrics, and ``drain()`` hands what each series added up to every
    reader's aggregation once, right before a reader collects. Aggregating a sum, a
    last value or a histogram's sum, min, max and bucket counts gives what the
    measurements one by one would, for a fraction of the cost, whatever the number
    of readers (callbacks included). Float sums may differ in their last bits, as
    any other order of the same additions would. Measurements inside a span go to
    the SDK at once, where the exemplar filter may keep them. Histograms add up only
    while every reader counts them in the same explicit buckets.
    """

    def __init__(
        self,
        instrument: Any,
        public_record: Callable[[Any, Any], None],
        consumer: Any,
        shaper: Shaper,
        max_series: int,
        lock: ForkSafeLock,
        combine: Combine | None = None,
    ) -> None:
        self._instrument = instrument
        self._public_record = public_record
        # From fast_path_consumer(): None takes the public path.
        self._consumer = consumer
        self._shaper = shaper
        self._max_series = max_series
        self._lock = lock
        self._overflow = _series(dict(OVERFLOW_ATTRIBUTES))
        # Tag dict -> (its series, whether the size limits cut it), by the dict's items.
        # Equal items can still differ in type (1, 1.0 and True are equal): a tag set
        # of strings only is cached as it is, since no other type equals a str; any
        # other holds a dict by value types.
        self._by_items: dict[tuple[tuple[str, Any], ...], Known | dict[tuple[type, ...], Known]]
        self._by_items = {}
        self._remembered = 0
        self._by_shape: dict[TagsKey, Series] = {}
        self.combine = combine if consumer is not None else None
        # Series -> what its measurements since the last drain add up to, under a
        # plain lock (forks: see after_fork_in_child). Public: bound handles
        # (signals/bound.py) add to them without a call in between.
        self.pending: dict[Series, Any] = {}
        self.pending_lock = threading.Lock()
        # Set under pending_lock by close(): every measurement checks it under the same
        # lock, so none lands after the last collection took what was pending.
        self.closed = False
        # Measurements the collect path and bound handles added to pending, counted
        # under pending_lock where they hold it anyway (the collected count includes
        # it: Tally.include); the others go to count_collected.
        self.counted = 0
        self.count_collected: Callable[[], object] = _not_counted
        # The bucket bounds every reader shares (None: not all the same), and the
        # reader storages they were read from.
        self._bounds: tuple[float, ...] | None = None
        self._bounds_for: object = None

    def collect(self, value: float, tags: Mapping[str, Any]) -> bool:
        """Record a measurement of the collect path and count it collected; whether
        the size limits (or the series cap) changed its tags."""
        items = tuple(tags.items())
        known = self._by_items.get(items)
        if not isinstance(known, tuple):
            known = self._typed_series(tags, items, known)
        series, limited = known
        # A counter's addition written out, and counted under the lock it holds anyway
        # (Tally.include): it is most of what a measurement costs. The lock is taken by
        # `with`, never acquire()/release(): a signal handler raising between those
        # (Ctrl-C, deliver_on_terminate's SIGTERM) would leave it held.
        if (
            self.combine is _SUM
            and series.started
            and SPAN_KEY
            and current_context().get(SPAN_KEY) is None  # outside_any_span(), inline
        ):
            with self.pending_lock:
                if self.closed:
                    raise RecorderClosed
                pending = self.pending
                pending[series] = pending.get(series, 0) + value
                self.counted += 1
            return limited
        self.record_series(series, value)
        self.count_collected()
        return limited

    def record(self, value: float, tags: Mapping[str, Any]) -> bool:
        """``collect`` without the count: for the bridges, which count what they bring."""
        series, limited = self.known(tags)
        self.record_series(series, value)
        return limited

    def record_series(self, series: Series, value: float) -> None:
        """Record a measurement of a series from :meth:`known` (or ``record``'s lookup);
        raises RecorderClosed after close()."""
        combine = self.combine
        if combine is not None and series.started and outside_any_span():
            if combine is _SUM or combine is _LAST:
                with self.pending_lock:
                    if self.closed:
                        raise RecorderClosed
                    pending = self.pending
                    pending[series] = pending.get(series, 0) + value if combine is _SUM else value
                return
            if self._add_to_buckets(series, value):
                return
        # Straight to the SDK (a first measurement, inside a span, no adding up): under
        # the lock too, or it could land after the last collection.
        with self.pending_lock:
            if self.closed:
                raise RecorderClosed
            series.started = True
            if combine is _LAST:  # an older last value must not overwrite this one
                self.pending.pop(series, None)
            consumer = self._consumer
            if consumer is None or not record_shaped(
                consumer, self._instrument, series.hashed, series.attributes, value
            ):
                self._public_record(value, series.attributes)

    def close(self) -> None:
        """Refuse every later measurement (RecorderClosed); what is pending stays for
        the last collection."""
        with self.pending_lock:
            self.closed = True

    def record_many(self, value: float, tags: Mapping[str, Any], count: int) -> bool:
        """Record ``count`` measurements of one value (a sampled StatsD timer stands for
        1/rate of them): added up at once where the series adds up its buckets."""
        limited = self.record(value, tags)
        if count <= 1:
            return limited
        series, _ = self.known(tags)
        buckets = self.combine is Combine.BUCKETS and outside_any_span()
        if buckets and self._add_to_buckets(series, value, count - 1):
            return limited
        for _ in range(min(count, MAX_RECORDED_WEIGHT) - 1):
            self.record(value, tags)
        return limited or count > MAX_RECORDED_WEIGHT

    def bind(self, tags: Mapping[str, Any]) -> tuple[SeriesRecorder, Series, bool]:
        """The recorder and series a bound handle records on, and whether the size
        limits (or the series cap) changed its tags."""
        series, limited = self.known(tags)
        return self, series, limited

    def known(self, tags: Mapping[str, Any]) -> Known:
        """The series of a tag set, shaped and capped as ``record`` would, and whether
        the size limits (or the series cap) changed it."""
        items = tuple(tags.items())
        known = self._by_items.get(items)
        return known if isinstance(known, tuple) else self._typed_series(tags, items, known)

    def _add_to_buckets(self, series: Series, value: float, count: int = 1) -> bool:
        """Add ``count`` histogram measurements of ``value`` to its series' buckets;
        False when the readers do not all count it in the same buckets."""
        storages = reader_storages(self._consumer)
        if storages is not self._bounds_for:
            self._bounds = shared_bucket_bounds(self._consumer, self._instrument)
            self._bounds_for = storages
        bounds = self._bounds
        if bounds is None:
            return False
        bucket = bisect_left(bounds, value)
        with self.pending_lock:
            if self.closed:
                raise RecorderClosed
            added: Buckets | None = self.pending.get(series)
            if added is None or added[4] is not bounds:
                if added is not None:  # the readers changed: counted with other bounds
                    return False
                counts = [0] * (len(bounds) + 1)
                counts[bucket] = count
                self.pending[series] = [value * count, value, value, counts, bounds]
                return True
            added[0] += value if count == 1 else value * count
            if value < added[1]:
                added[1] = value
            if value > added[2]:
                added[2] = value
            added[3][bucket] += count
        return True

    def drain(self) -> None:
        """Hand what every series added up since the last drain to the readers'
        aggregations."""
        if not self.pending:
            return
        with self.pending_lock:
            pending, self.pending = self.pending, {}
        consumer, instrument = self._consumer, self._instrument
        for series, added in pending.items():
            if self.combine is Combine.BUCKETS:
                bounds = added[4]
                left_out = merge_histogram(
                    consumer, instrument, series.hashed, series.attributes, bounds, added[:4]
                )
                if left_out:
                    warn_once(
                        f"buckets:{id(self)}",
                        "a metric reader added while histogram %r had values waiting counts "
                        "other buckets: those values are left out of its first collection",
                        instrument.name,
                    )
            elif not record_shaped(
                consumer, instrument, series.hashed, series.attributes, added, exemplars=False
            ):
                self._public_record(added, series.attributes)

    def after_fork_in_child(self) -> None:
        """What waits belongs to the parent, which hands it on; the lock may be held."""
        self.pending = {}
        self.pending_lock = threading.Lock()

    def _typed_series(
        self,
        tags: Mapping[str, Any],
        items: tuple[tuple[str, Any], ...],
        typed: dict[tuple[type, ...], Known] | None,
    ) -> Known:
        types = tuple(map(type, tags.values()))
        known = typed.get(types) if typed is not None else None
        if known is not None:
            return known
        known = self._new_series(tags)
        with self._lock:
            if self._remembered < self._max_series * _TAG_SETS_PER_SERIES:
                self._remembered += 1
                if all(kind is str for kind in types):
                    self._by_items[items] = known
                else:
                    by_type = self._by_items.setdefault(items, {})
                    by_type[types] = known  # type: ignore[index]
        return known

    def _new_series(self, tags: Mapping[str, Any]) -> Known:
        shaped, limited = self._shaper.attributes(tags)
        attributes = {k: _NAN if v != v else v for k, v in shaped.items()}
        shape = tags_key(attributes)
        with self._lock:
            series = self._by_shape.get(shape)
            if series is None and len(self._by_shape) < self._max_series:
                series = self._by_shape[shape] = _series(attributes)
        return (series, limited) if series is not None else (self._overflow, True)


def fast_path_consumer(provider: MeterProvider) -> Any:
    """The provider's measurement consumer, when the fast path fits it; else None."""
    consumer = measurement_consumer(provider)
    if is_synchronous_consumer(consumer) and sdk_internals_fit():
        return consumer
    return None


def _series(attributes: dict[str, Any]) -> Series:
    return Series(attributes, hash_attributes(attributes))


@functools.cache
def sdk_internals_fit() -> bool:
    """Whether the SDK's internals are as this module uses them: the same numbers
    reach a reader through both paths, for each instrument kind, cumulative and delta."""
    fits = False
    if METRIC_INTERNALS_IMPORTED:
        try:
            fits = _same_as_public_path()
        except Exception:
            fits = False
    if not fits:
        logger.warning(
            "telemetry_otel: the installed OpenTelemetry SDK's metric internals differ "
            "from those checked (%s); measurements take the public, slower path",
            CHECKED_AGAINST,
        )
    return fits


def _same_as_public_path() -> bool:
    from opentelemetry.sdk.metrics import Counter, Histogram, TraceBasedExemplarFilter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

    delta: dict[type, AggregationTemporality] = {
        kind: AggregationTemporality.DELTA for kind in (Counter, Histogram, SynchronousGauge)
    }
    readers = [InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=delta)]
    # The filter given: the SDK would read OTEL_METRICS_EXEMPLAR_FILTER and refuse a
    # value the collector accepts (any case) or ignores (an invalid one).
    provider = MeterProvider(
        metric_readers=readers,
        exemplar_filter=TraceBasedExemplarFilter(),
        shutdown_on_exit=False,
        resource=Resource.get_empty(),  # not Resource.create: it would read the environment
    )
    meter = provider.get_meter("probe")
    shaper = Shaper(False, [], 128, None)
    tags = {"k": "v", "n": 1}
    recorders: list[SeriesRecorder] = []

    def drain() -> None:
        for recorder in recorders:
            recorder.drain()

    if not collect_after(provider, readers, drain):
        return False
    for name, make, method, combine in (
        ("c", meter.create_counter, "add", Combine.SUM),
        ("h", meter.create_histogram, "record", Combine.BUCKETS),
        ("g", meter.create_gauge, "set", Combine.LAST),
    ):
        public, fast = make(f"{name}.public"), make(f"{name}.fast")
        consumer = measurement_consumer(provider)
        recorder = SeriesRecorder(
            fast, getattr(fast, method), consumer, shaper, 10, ForkSafeLock(), combine
        )
        recorders.append(recorder)
        # The first value reaches the SDK at once, the others wait for the drain.
        for value in (3, 4.5, 2):
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
