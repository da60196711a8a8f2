"""The legacy telemetry data models: Metric, Event and Trace.

Pure Python on purpose: nothing here imports OpenTelemetry, so the models can be
built, validated and serialised anywhere. Every model validates at construction
and raises an error that names the field and shows the bad value, because one bad
item reaching the OTLP encoder would make it throw away a whole batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from telemetry_otel._validation import (
    _INT64_MAX,
    _INT64_MIN,
    _MAX_EPOCH_SECONDS,
    _VALID_NAMES,
    FRESH,
    _check_histogram_fields,
    _check_metadata,
    _check_metric_name,
    _check_number,
    _check_text,
    _check_timestamp,
    _Checked,
    _checked_tags,
    _enum_member,
    _fail_type,
    _fail_value,
    _jsonable,
    _plain,
    _read_fields,
    _unreadable,
)

__all__ = ["Event", "EventSeverity", "Metric", "MetricType", "Trace"]

TagValue = str | int | float | bool


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


# Module constants: an Enum member read off its class costs a Python-level lookup.
_COUNTER = MetricType.COUNTER
_now = time.time

_SEVERITY_NUMBERS = {
    EventSeverity.DEBUG: 5,
    EventSeverity.INFO: 9,
    EventSeverity.WARNING: 13,
    EventSeverity.ERROR: 17,
    EventSeverity.CRITICAL: 21,
}


@dataclass(eq=True, init=False)
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

    # Written out rather than generated: the checks then read arguments, not
    # attributes, and nothing else runs between them, which halves the cost of
    # building a Metric on every collect_metric call.
    def __init__(
        self,
        name: str,
        value: int | float,
        metric_type: MetricType = MetricType.GAUGE,
        tags: dict[str, TagValue] = FRESH,
        timestamp: float = FRESH,
        unit: str = "",
        description: str = "",
        count: int | None = None,
        min: float | None = None,
        max: float | None = None,
        bucket_counts: list[int] | None = None,
        explicit_bounds: list[float] | None = None,
    ) -> None:
        try:
            if type(name) is not str or name not in _VALID_NAMES:
                _check_metric_name(name)
                if type(name) is not str:  # a str subclass: its own methods are not trusted
                    name = str.__str__(name)
            # Fast checks first (x - x is 0.0 only for finite floats); the full check
            # then names the problem.
            if not (type(value) is float and value - value == 0.0) and not (
                type(value) is int and _INT64_MIN <= value <= _INT64_MAX
            ):
                _check_number("Metric", "value", value)
            if type(metric_type) is not MetricType:
                metric_type = _enum_member("Metric", "metric_type", MetricType, metric_type)
            if metric_type is _COUNTER and value < 0:
                raise _fail_value("Metric", "value", "non-negative for a COUNTER", value)
            tags = {} if tags is FRESH else _checked_tags("Metric", tags)
            if timestamp is FRESH:
                timestamp = _now()
            elif not (type(timestamp) is float and 0 <= timestamp <= _MAX_EPOCH_SECONDS):
                _check_timestamp("Metric", "timestamp", timestamp)
            if type(unit) is not str:
                raise _fail_type("Metric", "unit", "a str", unit)
            if type(description) is not str:
                raise _fail_type("Metric", "description", "a str", description)
            if count is not None or bucket_counts is not None:
                _check_histogram_fields(count, min, max, bucket_counts, explicit_bounds)
        except (TypeError, ValueError):
            raise
        except Exception as error:  # a user object's own method raised
            raise _unreadable("Metric", error) from None
        self.name = name
        self.value = value
        self.metric_type = metric_type
        self.tags = tags
        self.timestamp = timestamp
        self.unit = unit
        self.description = description
        self.count = count
        self.min = min
        self.max = max
        self.bucket_counts = bucket_counts
        self.explicit_bounds = explicit_bounds

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


@dataclass(eq=True, init=False)
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

    # Written out rather than generated, as Metric's is.
    def __init__(
        self,
        name: str,
        message: str,
        severity: EventSeverity = EventSeverity.INFO,
        metadata: dict[str, Any] = FRESH,
        timestamp: float = FRESH,
        tags: dict[str, TagValue] = FRESH,
    ) -> None:
        try:
            if not (type(name) is str and name):
                _check_text("Event", "name", name)
            if type(message) is not str and not isinstance(message, str):
                raise _fail_type("Event", "message", "a str", message)
            if type(severity) is not EventSeverity:
                severity = _enum_member("Event", "severity", EventSeverity, severity)
            if metadata is FRESH:
                metadata = {}
            else:
                if type(metadata) is not dict:
                    metadata = _plain("Event", "metadata", metadata)
                if metadata:
                    _check_metadata("Event", metadata)
            if timestamp is FRESH:
                timestamp = _now()
            elif not (type(timestamp) is float and 0 <= timestamp <= _MAX_EPOCH_SECONDS):
                _check_timestamp("Event", "timestamp", timestamp)
            tags = {} if tags is FRESH else _checked_tags("Event", tags)
        except (TypeError, ValueError):
            raise
        except Exception as error:  # a user object's own method raised
            raise _unreadable("Event", error) from None
        self.name = name
        self.message = message
        self.severity = severity
        self.metadata = metadata
        self.timestamp = timestamp
        self.tags = tags

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


@dataclass(eq=True, init=False)
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

    # Written out rather than generated, as Metric's is.
    def __init__(
        self,
        trace_id: str,
        span_id: str,
        operation: str,
        duration_ms: float,
        parent_span_id: str | None = None,
        tags: dict[str, TagValue] = FRESH,
        timestamp: float = FRESH,
        error: str | None = None,
    ) -> None:
        try:
            if not (type(trace_id) is str and trace_id and type(span_id) is str and span_id):
                _check_text("Trace", "trace_id", trace_id)
                _check_text("Trace", "span_id", span_id)
            if not (type(operation) is str and operation):
                _check_text("Trace", "operation", operation)
            duration = duration_ms
            # Fast checks first (x - x is 0.0 only for finite floats); the full check
            # then names the problem.
            if not (type(duration) is float and duration - duration == 0.0 and duration >= 0):
                _check_number("Trace", "duration_ms", duration)
                if duration < 0:
                    raise _fail_value("Trace", "duration_ms", "non-negative", duration)
            if parent_span_id is not None and not (type(parent_span_id) is str and parent_span_id):
                _check_text("Trace", "parent_span_id", parent_span_id)
            tags = {} if tags is FRESH else _checked_tags("Trace", tags)
            if timestamp is FRESH:
                timestamp = _now()
            elif not (type(timestamp) is float and 0 <= timestamp <= _MAX_EPOCH_SECONDS):
                _check_timestamp("Trace", "timestamp", timestamp)
            if timestamp - duration / 1000 < 0:
                raise _fail_value(
                    "Trace", "timestamp", "at least duration_ms after the epoch", timestamp
                )
            if error is not None and type(error) is not str:
                raise _fail_type("Trace", "error", "a str or None", error)
        except (TypeError, ValueError):
            raise
        except Exception as error_raised:  # a user object's own method raised
            raise _unreadable("Trace", error_raised) from None
        self.trace_id = trace_id
        self.span_id = span_id
        self.operation = operation
        self.duration_ms = duration_ms
        self.parent_span_id = parent_span_id
        self.tags = tags
        self.timestamp = timestamp
        self.error = error

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
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        """Rebuild a Trace from :meth:`to_dict` output, validating every field."""
        return cls(**_read_fields(cls, data, ("trace_id", "span_id", "operation", "duration_ms")))
