"""Helpers for asserting on telemetry in your own tests.

Example::

    from telemetry_otel import Event, TelemetryCollector
    from telemetry_otel.testing import TelemetryCapture

    def test_checkout_emits_an_event():
        with TelemetryCollector() as collector, TelemetryCapture(collector) as captured:
            checkout(collector)
            assert [e.name for e in captured.flush().events] == ["user_action"]

With pytest, the ``telemetry_capture`` fixture (installed with this package) gives
a started collector's capture: ``telemetry_capture.collector``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from telemetry_otel.collector import TelemetryCollector
from telemetry_otel.models import Event, Metric, Trace

__all__ = ["CapturedLog", "CapturedSpan", "CapturedSpanEvent", "TelemetryCapture"]


class TelemetryCapture:
    """Records, in order, the models a collector exports (through a registered callback).

    What you read back went through the real OpenTelemetry pipeline: traces and events
    one to one, metrics aggregated per export interval (call :meth:`flush` first).

    Args:
        collector: The collector to listen to; it may be started before or after.
    """

    def __init__(self, collector: TelemetryCollector) -> None:
        self.collector = collector
        # (data_type, legacy model, what OpenTelemetry exported it as)
        self._items: list[tuple[str, Any, Any]] = []
        self._lock = threading.Lock()
        self._record = _Recorder(self)
        collector.register_exporter(self._record)

    def __repr__(self) -> str:
        counts = {"trace": 0, "event": 0, "metric": 0}
        for kind, _, _ in self.items_with_otel:
            counts[kind] += 1
        shown = ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())
        return f"<TelemetryCapture of {self.collector!r}: {shown}>"

    def flush(self, timeout_ms: float = 10_000) -> TelemetryCapture:
        """Export everything collected so far, so it is captured; returns self."""
        self.collector.flush(timeout_ms)
        return self

    @property
    def items(self) -> list[tuple[str, Any]]:
        """Every ``(data_type, model)`` captured, in the order it arrived."""
        return [(kind, model) for kind, model, _ in self.items_with_otel]

    @property
    def items_with_otel(self) -> list[tuple[str, Any, Any]]:
        """Every ``(data_type, model, otel_item)``: the model with the OpenTelemetry span
        or log record it was exported as (the metric model again for metrics)."""
        with self._lock:
            return list(self._items)

    @property
    def metrics(self) -> list[Metric]:
        return [data for kind, data in self.items if kind == "metric"]

    @property
    def events(self) -> list[Event]:
        return [data for kind, data in self.items if kind == "event"]

    @property
    def traces(self) -> list[Trace]:
        return [data for kind, data in self.items if kind == "trace"]

    @property
    def spans(self) -> list[CapturedSpan]:
        """Every span (live spans and legacy traces) as exported: ids, kind, status,
        attributes and span events."""
        return [_span(item) for kind, _, item in self.items_with_otel if kind == "trace"]

    @property
    def logs(self) -> list[CapturedLog]:
        """Every event as the log record exported, with the trace and span ids of the
        span it was collected in (None outside any span)."""
        return [_log(item) for kind, _, item in self.items_with_otel if kind == "event"]

    @property
    def resource(self) -> dict[str, Any]:
        """The resource attributes the collector exports with (``service.name``, ...)."""
        for kind, _, item in self.items_with_otel:
            if kind != "metric":
                return dict(item.resource.attributes)
        pipeline = self.collector._pipeline or self.collector._last_pipeline
        return {} if pipeline is None else dict(pipeline.resource_attributes())

    def span_of(self, event: Event | CapturedLog) -> CapturedSpan | None:
        """The captured span an event was collected in, if any."""
        log = event if isinstance(event, CapturedLog) else self._log_of(event)
        if log is None or log.span_id is None:
            return None
        return next((s for s in self.spans if s.span_id == log.span_id), None)

    def _log_of(self, event: Event) -> CapturedLog | None:
        for kind, model, item in self.items_with_otel:
            if kind == "event" and model is event:
                return _log(item)
        return None

    def as_dicts(self, normalize: bool = False) -> list[dict[str, Any]]:
        """Everything captured as plain dicts: the spans (``"type": "span"``), then the
        logs, then the metrics, each in the order it was exported (each signal has a
        queue of its own, so their interleaving varies from run to run; this order does
        not). ``normalize=True`` gives the same output on every run, for snapshot tests:
        trace and span ids become ``trace-1``, ``span-1``, ... in the order they first
        appear, and every time becomes 0 (a span's ``duration_ms`` stays readable on
        :attr:`spans`)."""
        items = self.items_with_otel
        dicts: list[dict[str, Any]] = [
            {"type": "span", **_span(item).to_dict()} for kind, _, item in items if kind == "trace"
        ]
        dicts += [
            {"type": "log", **_log(item).to_dict()} for kind, _, item in items if kind == "event"
        ]
        dicts += [
            {"type": "metric", **model.to_dict()} for kind, model, _ in items if kind == "metric"
        ]
        return _normalized(dicts) if normalize else dicts

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            self._items.clear()

    def close(self) -> None:
        """Stop capturing."""
        self.collector.unregister_exporter(self._record)

    def __enter__(self) -> TelemetryCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Recorder:
    """The capture's exporter callback; it takes the OTel item with each model."""

    wants_otel_items = True

    def __init__(self, capture: TelemetryCapture) -> None:
        self._capture = capture

    def __call__(self, data_type: str, model: Any, item: Any = None) -> None:
        capture = self._capture
        with capture._lock:
            capture._items.append((data_type, model, model if item is None else item))


@dataclass(frozen=True)
class CapturedSpanEvent:
    """An event recorded on a span (``span.add_event``, an exception)."""

    name: str
    attributes: dict[str, Any]
    time_ns: int


@dataclass(frozen=True)
class CapturedSpan:
    """A span as exported: ids in hex, ``kind`` and ``status`` by name."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER
    status: str  # UNSET, OK, ERROR
    status_description: str | None
    attributes: dict[str, Any]
    events: list[CapturedSpanEvent] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "kind": self.kind,
            "status": self.status,
            "status_description": self.status_description,
            "attributes": dict(self.attributes),
            "events": [
                {"name": e.name, "attributes": dict(e.attributes), "time_ns": e.time_ns}
                for e in self.events
            ],
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
        }


@dataclass(frozen=True)
class CapturedLog:
    """An event as the exported log record, with the span it was collected in."""

    name: str
    message: str
    severity: str
    attributes: dict[str, Any]
    trace_id: str | None
    span_id: str | None
    time_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "message": self.message,
            "severity": self.severity,
            "attributes": dict(self.attributes),
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "time_ns": self.time_ns,
        }


def _span(span: Any) -> CapturedSpan:
    parent = span.parent
    status = span.status
    return CapturedSpan(
        name=span.name,
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        parent_span_id=None if parent is None else f"{parent.span_id:016x}",
        kind=span.kind.name,
        status=status.status_code.name,
        status_description=status.description,
        attributes=dict(span.attributes or {}),
        events=[
            CapturedSpanEvent(e.name, dict(e.attributes or {}), e.timestamp) for e in span.events
        ],
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
    )


def _log(readable: Any) -> CapturedLog:
    record = readable.log_record
    return CapturedLog(
        name=record.event_name or "",
        message=record.body if isinstance(record.body, str) else str(record.body),
        severity=record.severity_text or "",
        attributes=dict(record.attributes or {}),
        trace_id=f"{record.trace_id:032x}" if record.trace_id else None,
        span_id=f"{record.span_id:016x}" if record.span_id else None,
        time_ns=record.timestamp or 0,
    )


_ID_KEYS = {"trace_id": "trace", "span_id": "span", "parent_span_id": "span"}
_TIME_KEYS = ("time_ns", "start_ns", "end_ns", "timestamp")


def _normalized(dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids numbered in order of first appearance, times set to 0."""
    numbers: dict[tuple[str, str], str] = {}

    def number(kind: str, value: str | None) -> str | None:
        if value is None:
            return None
        key = (kind, value)
        if key not in numbers:
            count = sum(1 for known in numbers if known[0] == kind)
            numbers[key] = f"{kind}-{count + 1}"
        return numbers[key]

    normalized = []
    for item in dicts:
        item = dict(item)
        for key, kind in _ID_KEYS.items():
            if key in item and item[key] is not None:
                item[key] = number(kind, item[key])
        for key in _TIME_KEYS:
            if key in item:
                item[key] = 0
        if "events" in item:
            item["events"] = [{**e, "time_ns": 0} for e in item["events"]]
        normalized.append(item)
    return normalized
