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
        self._pipeline = _UNBOUND

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
        """The recorder's own path (inside a span, a first measurement, buckets), then
        the counts; False when stop() began its last collection meanwhile."""
        try:
            self._recorder.record_series(self._series, value)
        except RecorderClosed:
            return False
        except Exception:
            return bool(self._metrics.internal_error())
        self._count()
        if self._limited:
            self._count_limited()
        return True


class BoundCounter(_Bound):
    """A counter with its tags bound: ``add(value)``. From ``CounterHandle.bind()``."""

    _type = MetricType.COUNTER
    __slots__ = ()

    def add(self, value: int | float) -> bool:
        """Add a non-negative int or float; the same checks, errors and result as
        ``collect_metric(Metric(name, value, MetricType.COUNTER, tags))``."""
        if not (
            (type(value) is int and 0 <= value <= _INT64_MAX)
            or (type(value) is float and value - value == 0.0 and value >= 0.0)
        ):
            _check_value(value, MetricType.COUNTER)
        if self._pipeline is not self._owner._pipeline and not self._bind():
            return False
        series, recorder = self._series, self._recorder
        # SeriesRecorder.record's addition, written out: it is all a measurement costs.
        if not (
            recorder.combine is _SUM
            and series.started
            and SPAN_KEY
            and current_context().get(SPAN_KEY) is None
        ):
            return self._record(value)
        with recorder.pending_lock:  # `with`: see SeriesRecorder.record
            if recorder.closed:
                return False
            pending = recorder.pending
            pending[series] = pending.get(series, 0) + value
        self._count()
        if self._limited:
            self._count_limited()
        return True


class BoundGauge(_Bound):
    """A gauge with its tags bound: ``set(value)``. From ``GaugeHandle.bind()``."""

    _type = MetricType.GAUGE
    __slots__ = ()

    def set(self, value: int | float) -> bool:
        """Set a finite int or float; as ``collect_metric`` with a GAUGE."""
        if not (
            (type(value) is float and value - value == 0.0)
            or (type(value) is int and _INT64_MIN <= value <= _INT64_MAX)
        ):
            _check_value(value, MetricType.GAUGE)
        if self._pipeline is not self._owner._pipeline and not self._bind():
            return False
        series, recorder = self._series, self._recorder
        if not (
            recorder.combine is _LAST
            and series.started
            and SPAN_KEY
            and current_context().get(SPAN_KEY) is None
        ):
            return self._record(value)
        with recorder.pending_lock:
            if recorder.closed:
                return False
            recorder.pending[series] = value
        self._count()
        if self._limited:
            self._count_limited()
        return True


class BoundHistogram(_Bound):
    """A histogram with its tags bound: ``record(value)``. From ``HistogramHandle.bind()``."""

    _type = MetricType.HISTOGRAM
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
