"""Bound metric handles: one instrument and one tag set, checked and shaped once.

Why not ``collect_metric`` underneath: each of its calls builds and checks a
``Metric``, looks its instrument up and then its tag set's series. A bound handle
does that once, when it first records on a pipeline (again only if the collector's
pipeline changes: start, stop), and each measurement then pays for the checks a
number needs and for adding it up, on the same series ``collect_metric`` would
have used: every destination, callback and count sees the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from telemetry_otel._otel.mapping.series import Combine, RecorderClosed, Series, SeriesRecorder
from telemetry_otel._otel.runtime.sdk import SPAN_KEY, current_context
from telemetry_otel._validation import (
    _INT64_MAX,
    _INT64_MIN,
    _check_number,
    _fail_value,
    _unreadable,
)
from telemetry_otel.models import MetricType

__all__ = ["BoundCounter", "BoundGauge", "BoundHistogram"]

# Module constants: an Enum member read off its class costs a Python-level lookup.
_SUM, _LAST = Combine.SUM, Combine.LAST
# No pipeline bound yet (never the collector's: that is a Pipeline or None).
_UNBOUND: Any = object()


class _Owner(Protocol):
    """The collector: its ``_pipeline`` is set only while it runs and is enabled."""

    _pipeline: Any


class _Bound:
    """What the three bound kinds share: the binding to the owner's pipeline."""

    _type: MetricType
    # How the recorder adds this kind up between collections, where the fast path may
    # add to it directly: SUM (counters), LAST (gauges), None (never: histograms).
    _adds_up: Combine | None
    # Set by _bind, read only once it has bound (_pipeline is then no longer _UNBOUND).
    _recorder: SeriesRecorder
    _series: Series
    _limited: bool
    _metrics: Any
    _count: Callable[[], object]
    _count_limited: Callable[[], object]
    __slots__ = (
        "_count",
        "_count_limited",
        "_description",
        "_limited",
        "_metrics",
        "_name",
        "_owner",
        "_pipeline",
        "_ready",
        "_recorder",
        "_series",
        "_tags",
        "_unit",
    )

    def __init__(
        self, owner: _Owner, name: str, unit: str, description: str, tags: dict[str, Any]
    ) -> None:
        self._owner = owner
        self._name = name
        self._unit = unit
        self._description = description
        self._tags = tags
        # The pipeline whose series this handle adds to directly (see _record).
        self._pipeline = self._ready = _UNBOUND

    @property
    def name(self) -> str:
        return self._name

    @property
    def tags(self) -> dict[str, Any]:
        """The tags every measurement carries (a copy)."""
        return dict(self._tags)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} {self._tags!r}>"

    def _bind(self) -> bool:
        """Bind to the owner's pipeline as it is now; False when it is not collecting,
        or (counted as ``collect_metric`` counts it) when the name has another type."""
        pipeline = self._owner._pipeline
        if pipeline is None:
            return False
        metrics = pipeline.metrics
        try:
            recorder = metrics.instruments.recorder_for(
                self._name, self._type, self._unit, self._description
            )
            if recorder is None:
                return bool(metrics.reject_clash(self._name, self._type))
            self._recorder, self._series, self._limited = recorder.bind(self._tags)
        except Exception:
            return bool(metrics.internal_error())
        self._metrics = metrics
        self._count = metrics.count_collected
        self._count_limited = metrics.count_limited
        # Last: a thread that sees the new pipeline sees the rest of the binding.
        self._pipeline = pipeline
        return True

    def _record(self, value: float) -> bool:
        """The recorder's own path (a first measurement, inside a span, buckets), then
        the counts; False when not collecting, or when stop() began its last
        collection meanwhile. Once the series adds up as the handle's fast path does,
        that path is taken from the next measurement on, until the pipeline changes."""
        if self._pipeline is not self._owner._pipeline and not self._bind():
            return False
        # The pipeline first: a rebinding thread sets it last, so the recorder and
        # series read after it are at least as new, and _ready then names a pipeline
        # they belong to or one that is no longer the collector's.
        pipeline, recorder, series = self._pipeline, self._recorder, self._series
        try:
            recorder.record_series(series, value)
        except RecorderClosed:
            return False
        except Exception:
            return bool(self._metrics.internal_error())
        self._count()
        if self._limited:  # counted on this path every time: the fast path does not
            self._count_limited()
        elif series.started and recorder.combine is self._adds_up and SPAN_KEY:
            self._ready = pipeline
        return True


class BoundCounter(_Bound):
    """A counter with its tags bound: ``add(value)``. From ``CounterHandle.bind()``."""

    _type = MetricType.COUNTER
    _adds_up = _SUM
    __slots__ = ()

    def add(self, value: int | float) -> bool:
        """Add a non-negative int or float; the same checks, errors and result as
        ``collect_metric(Metric(name, value, MetricType.COUNTER, tags))``."""
        if not (
            (type(value) is int and 0 <= value <= _INT64_MAX)
            or (type(value) is float and value - value == 0.0 and value >= 0.0)
        ):
            _check_value(value, MetricType.COUNTER)
        if self._ready is not self._owner._pipeline or current_context().get(SPAN_KEY) is not None:
            return self._record(value)
        # SeriesRecorder.record's addition, written out: it is all a measurement costs,
        # and counted under the lock it holds anyway (Tally.include).
        recorder = self._recorder
        with recorder.pending_lock:  # `with`: see SeriesRecorder.record
            if recorder.closed:
                return False
            pending, series = recorder.pending, self._series
            pending[series] = pending.get(series, 0) + value
            recorder.counted += 1
        return True


class BoundGauge(_Bound):
    """A gauge with its tags bound: ``set(value)``. From ``GaugeHandle.bind()``."""

    _type = MetricType.GAUGE
    _adds_up = _LAST
    __slots__ = ()

    def set(self, value: int | float) -> bool:
        """Set a finite int or float; as ``collect_metric`` with a GAUGE."""
        if not (
            (type(value) is float and value - value == 0.0)
            or (type(value) is int and _INT64_MIN <= value <= _INT64_MAX)
        ):
            _check_value(value, MetricType.GAUGE)
        if self._ready is not self._owner._pipeline or current_context().get(SPAN_KEY) is not None:
            return self._record(value)
        recorder = self._recorder
        with recorder.pending_lock:
            if recorder.closed:
                return False
            recorder.pending[self._series] = value
            recorder.counted += 1
        return True


class BoundHistogram(_Bound):
    """A histogram with its tags bound: ``record(value)``. From ``HistogramHandle.bind()``."""

    _type = MetricType.HISTOGRAM
    _adds_up = None  # buckets: always the recorder's own path
    __slots__ = ()

    def record(self, value: int | float) -> bool:
        """Record a finite int or float; as ``collect_metric`` with a HISTOGRAM: a
        negative value is refused (False) and counted rejected."""
        if not (
            (type(value) is float and value - value == 0.0)
            or (type(value) is int and _INT64_MIN <= value <= _INT64_MAX)
        ):
            _check_value(value, MetricType.HISTOGRAM)
        if self._pipeline is not self._owner._pipeline and not self._bind():
            return False
        if value < 0:
            return bool(self._metrics.reject_negative(self._name, value))
        return self._record(value)


def _check_value(value: object, metric_type: MetricType) -> None:
    """Metric's own checks of a value, with its errors: what the fast test let through
    (int and float subclasses, numpy scalars) or refuses."""
    try:
        _check_number("Metric", "value", value)
        if metric_type is MetricType.COUNTER and value < 0:  # type: ignore[operator]
            raise _fail_value("Metric", "value", "non-negative for a COUNTER", value)
    except (TypeError, ValueError):
        raise
    except Exception as error:  # a user object's own method raised
        raise _unreadable("Metric", error) from None
