"""The legacy telemetry data models: Metric, Event and Trace.

Pure Python on purpose: nothing here imports OpenTelemetry, so the models can be
built, validated and serialised anywhere. Every model validates at construction
and raises an error that names the field and shows the bad value, because one bad
item reaching the OTLP encoder would make it throw away a whole batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

__all__ = ["Event", "EventSeverity", "Metric", "MetricType", "Trace"]

TagValue = str | int | float | bool

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Timestamps travel as unsigned 64-bit nanoseconds but several encoders treat
# them as signed, so the project keeps them below 2**63 ns.
_MAX_EPOCH_SECONDS = (2**63 - 1) / 1e9
# https://opentelemetry.io/docs/specs/otel/metrics/api/#instrument-name-syntax


class MetricType(str, Enum):
    """How a metric's values combine: summed, last value, or distribution."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class EventSeverity(str, Enum):
    """Severity of an event; each maps to an OpenTelemetry SeverityNumber."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    def __repr__(self) -> str:  # as written in code, so configs print as they were made
        return f"EventSeverity.{self.name}"

    @property
    def severity_number(self) -> int:
        """The OpenTelemetry SeverityNumber: DEBUG 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21."""
        return _SEVERITY_NUMBERS[self]


_SEVERITY_NUMBERS = {
    EventSeverity.DEBUG: 5,
    EventSeverity.INFO: 9,
    EventSeverity.WARNING: 13,
    EventSeverity.ERROR: 17,
    EventSeverity.CRITICAL: 21,
}


def _fail_type(owner: str, name: str, expected: str, value: object) -> TypeError:
    return TypeError(f"{owner}.{name} must be {expected}, got {_shown(value)}")


def _fail_value(owner: str, name: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{owner}.{name} must be {expected}, got {_shown(value)}")


def _shown(value: object, limit: int = 200) -> str:
    """A value's repr for an error message: cut short, and never the error itself
    (a user object's __repr__ may raise)."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object whose repr() failed>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unreadable(owner: str, error: Exception) -> TypeError:
    """A user object raised something else while a model read it: only TypeError and
    ValueError ever leave a model's constructor."""
    return TypeError(f"{owner}: a field could not be read: {type(error).__name__}"[:300])


class _Checked:
    """A model checked when built, from which only TypeError and ValueError escape,
    whatever the user objects it is given do when read."""

    def __post_init__(self) -> None:
        try:
            self._validate()
        except (TypeError, ValueError):
            raise
        except Exception as error:  # a user object's own method raised
            raise _unreadable(type(self).__name__, error) from None

    def _validate(self) -> None:
        raise NotImplementedError


def _plain(owner: str, name: str, mapping: object) -> dict[str, Any]:
    """A dict subclass as a plain dict, read without its own (possibly hostile) methods."""
    if not isinstance(mapping, dict):
        raise _fail_type(owner, name, "a dict", mapping)
    return dict(dict.items(mapping))


def _check_text(owner: str, name: str, value: object) -> None:
    if type(value) is not str and not isinstance(value, str):
        raise _fail_type(owner, name, "a str", value)
    if not value:
        raise _fail_value(owner, name, "a non-empty string", value)


def _check_number(owner: str, name: str, value: object) -> None:
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _fail_value(owner, name, "a finite number", value)
    elif kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise _fail_value(owner, name, "an integer within signed 64 bits", value)
    elif kind is bool or not isinstance(value, (int, float)):
        raise _fail_type(owner, name, "an int or float (not bool)", value)
    else:  # int and float subclasses, numpy scalars that subclass them
        _check_number(owner, name, float(value) if isinstance(value, float) else int(value))


def _check_timestamp(owner: str, name: str, value: object) -> None:
    _check_number(owner, name, value)
    if not 0 <= value <= _MAX_EPOCH_SECONDS:  # type: ignore[operator]
        raise _fail_value(owner, name, "epoch seconds between 0 and 2**63 ns", value)


def _check_tags(owner: str, name: str, tags: object) -> None:
    if not isinstance(tags, dict):
        raise _fail_type(owner, name, "a dict", tags)
    for key, value in dict.items(tags):
        if type(key) is not str:
            raise _fail_type(owner, f"{name} key", "a str", key)
        if not key:
            raise _fail_value(owner, f"{name} key", "a non-empty string", key)
        kind = type(value)
        if kind is str or kind is bool or kind is float:
            continue
        if kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _fail_value(owner, f"{name}[{key!r}]", "within signed 64 bits", value)
            continue
        raise _fail_type(owner, f"{name}[{key!r}]", "a str, int, float or bool", value)


def _check_metadata(owner: str, metadata: object) -> None:
    if not isinstance(metadata, dict):
        raise _fail_type(owner, "metadata", "a dict", metadata)
    for key in dict.keys(metadata):
        if type(key) is not str:
            raise _fail_type(owner, "metadata key", "a str", key)
        if not key:
            raise _fail_value(owner, "metadata key", "a non-empty string", key)


# Metric names that passed the check, so that repeated names skip it.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 4096


def _check_metric_name(name: object) -> None:
    """Any non-empty text, as the legacy API took: where OpenTelemetry's instrument name
    rule refuses it, the mapping renames the instrument (see the README)."""
    _check_text("Metric", "name", name)
    if type(name) is str and len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)


E = TypeVar("E", bound=Enum)


def enum_member(enum: type[E], value: object) -> E | None:
    """The one rule for enum fields in models and config: the member itself, or a str
    naming it in any case (``"ERROR"``, ``"error"``, ``"Error"``); None otherwise."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        # str.upper on the instance: a str subclass's own methods are never called.
        return enum.__members__.get(str.upper(value))
    return None


def enum_error(
    owner: str, name: str, enum: type[Enum], value: object, or_none: bool = False
) -> Exception:
    """The error for a value the enum rule refuses: TypeError when it is not even a str."""
    names = ", ".join(enum.__members__)
    expected = f"{enum.__name__}.<NAME> or its name in any case ({names})"
    if or_none:
        expected += ", or None"
    if isinstance(value, str):
        return _fail_value(owner, name, expected, value)
    return _fail_type(owner, name, expected, value)


def _enum_member(owner: str, name: str, enum: type[E], value: object) -> E:
    member = enum_member(enum, value)
    if member is None:
        raise enum_error(owner, name, enum, value)
    return member


def _jsonable(value: object) -> Any:
    """Copy a metadata value into plain JSON types; anything else becomes str(value)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _read_fields(owner: type, data: object, required: tuple[str, ...]) -> dict[str, Any]:
    """Check a from_dict() argument: a dict with the required keys and no unknown ones."""
    name = owner.__name__
    if not isinstance(data, dict):
        raise TypeError(f"{name}.from_dict() needs a dict, got {data!r}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{name}.from_dict(): missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(owner.__dataclass_fields__))  # type: ignore[attr-defined]
    if unknown:
        raise ValueError(f"{name}.from_dict(): unknown field(s) {', '.join(map(repr, unknown))}")
    return dict(data)


@dataclass(eq=True)
class Metric(_Checked):
    """A numerical measurement.

    Attributes:
        name: Any non-empty text. A name OpenTelemetry's instrument rule refuses
            (``5xx_errors``, ``http requests``) is renamed on export (see the README).
        value: The measurement (int or float, finite). For a histogram that the
            callback bridge rebuilt, the sum of the observations.
        metric_type: COUNTER (summed), GAUGE (last value) or HISTOGRAM (distribution).
        tags: Attributes of the measurement.
        timestamp: Epoch seconds; defaults to now.
        unit: Unit of the instrument, e.g. ``"ms"``.
        description: Description of the instrument.
        count: Histogram only, filled by the callback bridge: number of observations.
        min: Histogram only, filled by the callback bridge: smallest observation.
        max: Histogram only, filled by the callback bridge: largest observation.
        bucket_counts: Histogram only, filled by the callback bridge: count per bucket.
        explicit_bounds: Histogram only, filled by the callback bridge: bucket bounds.
    """

    name: str
    value: int | float
    metric_type: MetricType = MetricType.GAUGE
    tags: dict[str, TagValue] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    unit: str = ""
    description: str = ""
    count: int | None = None
    min: float | None = None
    max: float | None = None
    bucket_counts: list[int] | None = None
    explicit_bounds: list[float] | None = None

    def _validate(self) -> None:
        name = self.name
        if type(name) is not str or name not in _VALID_NAMES:
            _check_metric_name(name)
            if type(name) is not str:  # a str subclass: its own methods are not trusted
                self.name = name = str.__str__(name)
        value = self.value
        # Fast checks first (x - x is 0.0 only for finite floats); the full check
        # then names the problem.
        if not (type(value) is float and value - value == 0.0) and not (
            type(value) is int and _INT64_MIN <= value <= _INT64_MAX
        ):
            _check_number("Metric", "value", value)
        if type(self.metric_type) is not MetricType:
            self.metric_type = _enum_member("Metric", "metric_type", MetricType, self.metric_type)
        if self.metric_type is MetricType.COUNTER and value < 0:
            raise _fail_value("Metric", "value", "non-negative for a COUNTER", value)
        if type(self.tags) is not dict:
            self.tags = _plain("Metric", "tags", self.tags)
        _check_tags("Metric", "tags", self.tags)
        timestamp = self.timestamp
        if not (type(timestamp) is float and 0 <= timestamp <= _MAX_EPOCH_SECONDS):
            _check_timestamp("Metric", "timestamp", timestamp)
        if type(self.unit) is not str:
            raise _fail_type("Metric", "unit", "a str", self.unit)
        if type(self.description) is not str:
            raise _fail_type("Metric", "description", "a str", self.description)
        if self.count is not None or self.bucket_counts is not None:
            self._check_histogram_fields()

    def _check_histogram_fields(self) -> None:
        if self.count is not None and (type(self.count) is not int or self.count < 0):
            raise _fail_value("Metric", "count", "a non-negative int or None", self.count)
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is not None:
                _check_number("Metric", name, value)
        for name in ("bucket_counts", "explicit_bounds"):
            values = getattr(self, name)
            if values is not None and not isinstance(values, list):
                raise _fail_type("Metric", name, "a list or None", values)
            for value in values or ():
                _check_number("Metric", name, value)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict; histogram fields that are None are omitted."""
        data: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "metric_type": self.metric_type.value,
            "tags": dict(self.tags),
            "timestamp": self.timestamp,
            "unit": self.unit,
            "description": self.description,
        }
        for name in ("count", "min", "max"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        for name in ("bucket_counts", "explicit_bounds"):
            if getattr(self, name) is not None:
                data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metric:
        """Rebuild a Metric from :meth:`to_dict` output, validating every field."""
        return cls(**_read_fields(cls, data, ("name", "value")))


@dataclass(eq=True)
class Event(_Checked):
    """A discrete event or log entry.

    Attributes:
        name: What happened, e.g. ``"user_action"``; becomes the log record's event name.
        message: Human-readable text; becomes the log record's body.
        severity: DEBUG, INFO, WARNING, ERROR or CRITICAL.
        metadata: Event details; nested dicts and lists are kept as they are.
        timestamp: Epoch seconds; defaults to now.
        tags: Attributes shared with other telemetry (str, int, float or bool values).
    """

    name: str
    message: str
    severity: EventSeverity = EventSeverity.INFO
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    tags: dict[str, TagValue] = field(default_factory=dict)

    def _validate(self) -> None:
        name = self.name
        if not (type(name) is str and name):
            _check_text("Event", "name", name)
        if type(self.message) is not str and not isinstance(self.message, str):
            raise _fail_type("Event", "message", "a str", self.message)
        if type(self.severity) is not EventSeverity:
            self.severity = _enum_member("Event", "severity", EventSeverity, self.severity)
        if type(self.metadata) is not dict:
            self.metadata = _plain("Event", "metadata", self.metadata)
        if self.metadata:
            _check_metadata("Event", self.metadata)
        timestamp = self.timestamp
        if not (type(timestamp) is float and 0 <= timestamp <= _MAX_EPOCH_SECONDS):
            _check_timestamp("Event", "timestamp", timestamp)
        if type(self.tags) is not dict:
            self.tags = _plain("Event", "tags", self.tags)
        _check_tags("Event", "tags", self.tags)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict; metadata values JSON cannot hold become strings."""
        return {
            "name": self.name,
            "message": self.message,
            "severity": self.severity.value,
            "metadata": _jsonable(self.metadata),
            "timestamp": self.timestamp,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Rebuild an Event from :meth:`to_dict` output, validating every field."""
        return cls(**_read_fields(cls, data, ("name", "message")))


@dataclass(eq=True)
class Trace(_Checked):
    """A finished span of a distributed trace.

    Attributes:
        trace_id: The trace this span belongs to (any non-empty string; 32 lowercase
            hex digits are used as the OpenTelemetry trace id as they are).
        span_id: This span (any non-empty string; 16 lowercase hex digits are used as
            they are).
        operation: What the span did; becomes the span name.
        duration_ms: How long it took, in milliseconds.
        parent_span_id: The parent span in the same trace, or None for a root span.
        tags: Span attributes.
        timestamp: When the span ended, epoch seconds; defaults to now.
        error: A non-empty message marks the span failed (status ERROR).
    """

    trace_id: str
    span_id: str
    operation: str
    duration_ms: float
    parent_span_id: str | None = None
    tags: dict[str, TagValue] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    error: str | None = None

    def _validate(self) -> None:
        trace_id, span_id, operation = self.trace_id, self.span_id, self.operation
        if not (type(trace_id) is str and trace_id and type(span_id) is str and span_id):
            _check_text("Trace", "trace_id", trace_id)
            _check_text("Trace", "span_id", span_id)
        if not (type(operation) is str and operation):
            _check_text("Trace", "operation", operation)
        duration = self.duration_ms
        # Fast checks first (x - x is 0.0 only for finite floats); the full check
        # then names the problem.
        if not (type(duration) is float and duration - duration == 0.0 and duration >= 0):
            _check_number("Trace", "duration_ms", duration)
            if duration < 0:
                raise _fail_value("Trace", "duration_ms", "non-negative", duration)
        parent = self.parent_span_id
        if parent is not None and not (type(parent) is str and parent):
            _check_text("Trace", "parent_span_id", parent)
        if type(self.tags) is not dict:
            self.tags = _plain("Trace", "tags", self.tags)
        _check_tags("Trace", "tags", self.tags)
        timestamp = self.timestamp
        if not (type(timestamp) is float and 0 <= timestamp <= _MAX_EPOCH_SECONDS):
            _check_timestamp("Trace", "timestamp", timestamp)
        if timestamp - duration / 1000 < 0:
            raise _fail_value(
                "Trace", "timestamp", "at least duration_ms after the epoch", timestamp
            )
        if self.error is not None and type(self.error) is not str:
            raise _fail_type("Trace", "error", "a str or None", self.error)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of every field."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "operation": self.operation,
            "duration_ms": self.duration_ms,
            "parent_span_id": self.parent_span_id,
            "tags": dict(self.tags),
            "timestamp": self.timestamp,
            "error": self.error,
        }

    @classmethod
    def _trusted(cls, fields: dict[str, Any]) -> Trace:
        """A Trace from fields that passed these checks already (a copy of a checked
        Trace, or one read back from the span built from it): no ``__init__``, which
        costs more than the rest of the callback path. The one place that skips them."""
        trace = cls.__new__(cls)
        trace.__dict__ = fields
        return trace

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        """Rebuild a Trace from :meth:`to_dict` output, validating every field."""
        return cls(**_read_fields(cls, data, ("trace_id", "span_id", "operation", "duration_ms")))
