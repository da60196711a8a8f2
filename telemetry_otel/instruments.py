"""Metric handles: ``collector.counter(...)``, ``.histogram(...)`` and ``.gauge(...)``.

A handle names one instrument (name, unit, description, and tags every
measurement carries). ``handle.add(value, tags)`` (``record``, ``set``) is
``collect_metric`` with a Metric built from it; ``handle.bind(**tags)`` returns a
bound handle for one tag set, checked, redacted, limited and capped once, whose
``add`` / ``record`` / ``set`` then costs about what prometheus_client's
``labels(...).inc()`` child costs. Either way every destination, callback and
count sees exactly what the same ``collect_metric`` calls would give.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Protocol, TypeVar

from telemetry_otel._otel.signals.bound import BoundCounter, BoundGauge, BoundHistogram
from telemetry_otel._validation import _check_metric_name, _checked_tags, _fail_type, _plain
from telemetry_otel.models import Metric, MetricType, TagValue

__all__ = [
    "BoundCounter",
    "BoundGauge",
    "BoundHistogram",
    "CounterHandle",
    "GaugeHandle",
    "HistogramHandle",
]

B = TypeVar("B", BoundCounter, BoundGauge, BoundHistogram)


class _Collector(Protocol):
    _pipeline: Any

    def collect_metric(self, metric: Metric) -> bool: ...


class _Handle(Generic[B]):
    _type: ClassVar[MetricType]
    _bound: type[B]
    __slots__ = ("_owner", "description", "name", "tags", "unit")

    def __init__(
        self,
        owner: _Collector,
        name: str,
        unit: str = "",
        description: str = "",
        tags: dict[str, TagValue] | None = None,
    ) -> None:
        kind = self._type.value
        _check_metric_name(name, kind)
        if type(name) is not str:  # a str subclass: its own methods are not trusted
            name = str.__str__(name)
        if type(unit) is not str:
            raise _fail_type(kind, "unit", "a str", unit)
        if type(description) is not str:
            raise _fail_type(kind, "description", "a str", description)
        self._owner = owner
        self.name: str = name
        self.unit: str = unit
        self.description: str = description
        # A copy: the caller's dict may change afterwards.
        self.tags: dict[str, TagValue] = dict(_checked_tags(kind, _or_empty(kind, tags)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.tags!r}>"

    def bind(self, tags: dict[str, TagValue] | None = None, /, **more: TagValue) -> B:
        """A handle for one tag set: the handle's tags, then ``tags``, then keywords.

        Checked now (the errors ``Metric(tags=...)`` raises), then redacted, limited
        and counted against ``max_metric_series`` when it first records. Bind once and
        keep the result: binding in the hot loop costs what ``collect_metric`` costs.
        """
        kind = f"{self._type.value}.bind"
        merged = {**self.tags, **_or_empty(kind, tags), **more}
        return self._bound(
            self._owner, self.name, self.unit, self.description, _checked_tags(kind, merged)
        )

    def _collect(self, value: int | float, tags: dict[str, TagValue] | None) -> bool:
        merged = {**self.tags, **_or_empty(f"{self._type.value}.tags", tags)} if tags else self.tags
        metric = Metric(
            self.name, value, self._type, merged, unit=self.unit, description=self.description
        )
        return self._owner.collect_metric(metric)


class CounterHandle(_Handle[BoundCounter]):
    """A counter: ``add(value, tags=None)``, or ``bind(**tags).add(value)``."""

    _type = MetricType.COUNTER
    _bound = BoundCounter
    __slots__ = ()

    def add(self, value: int | float, tags: dict[str, TagValue] | None = None) -> bool:
        """``collect_metric(Metric(name, value, COUNTER, {**self.tags, **tags}, ...))``."""
        return self._collect(value, tags)


class HistogramHandle(_Handle[BoundHistogram]):
    """A histogram: ``record(value, tags=None)``, or ``bind(**tags).record(value)``."""

    _type = MetricType.HISTOGRAM
    _bound = BoundHistogram
    __slots__ = ()

    def record(self, value: int | float, tags: dict[str, TagValue] | None = None) -> bool:
        """``collect_metric(Metric(name, value, HISTOGRAM, {**self.tags, **tags}, ...))``."""
        return self._collect(value, tags)


class GaugeHandle(_Handle[BoundGauge]):
    """A gauge: ``set(value, tags=None)``, or ``bind(**tags).set(value)``."""

    _type = MetricType.GAUGE
    _bound = BoundGauge
    __slots__ = ()

    def set(self, value: int | float, tags: dict[str, TagValue] | None = None) -> bool:
        """``collect_metric(Metric(name, value, GAUGE, {**self.tags, **tags}, ...))``."""
        return self._collect(value, tags)


def _or_empty(owner: str, tags: object) -> dict[str, Any]:
    """A tags argument as a plain dict ({} for None), without its own methods."""
    if tags is None:
        return {}
    return tags if type(tags) is dict else _plain(owner, "tags", tags)
