"""Readable console exporters: one line per span, log record or metric data point.

Each line reads ``time SIGNAL LEVEL name key-fields``; LEVEL is the event
severity, the span status (OK or ERROR) or the metric type, coloured when the
stream is a terminal (and NO_COLOR is not set), plain otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry_otel._otel.accounting import SELF_SCOPE
from telemetry_otel._otel.forks import ForkSafeLock
from telemetry_otel._otel.log import warn_limited
from telemetry_otel._otel.logs import log_record_to_event
from telemetry_otel._otel.metrics import DELTA_TEMPORALITY, metrics_data_to_models
from telemetry_otel._otel.sampling import PROBABILITY
from telemetry_otel._otel.spans import (
    LEGACY_PARENT_SPAN_ID,
    LEGACY_SPAN_ID,
    LEGACY_TRACE_ID,
    ns_to_seconds,
    seconds_to_ns,
)
from telemetry_otel.models import Metric, MetricType

_HIDDEN_SPAN_KEYS = (LEGACY_TRACE_ID, LEGACY_SPAN_ID, LEGACY_PARENT_SPAN_ID)
_COLOURS = {
    "DEBUG": "2",  # dim
    "INFO": "32",  # green
    "OK": "32",
    "WARNING": "33",  # yellow
    "ERROR": "31",  # red
    "CRITICAL": "1;31",  # bold red
}
_METRIC_COLOUR = "36"  # cyan
Paint = Callable[[str], str]


def _plain(level: str) -> str:
    return f"{level:<9}"


def _coloured(level: str) -> str:
    code = _COLOURS.get(level.strip(), _METRIC_COLOUR)
    return f"\x1b[{code}m{level:<9}\x1b[0m"


class ConsoleLines:
    """Writes whole lines to a stream (stdout by default, looked up at write time)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._lock = ForkSafeLock()

    def stream(self) -> TextIO:
        return self._out or sys.stdout

    def paint(self) -> Paint:
        """How to show the LEVEL column on the stream as it is now."""
        stream = self.stream()
        is_terminal = getattr(stream, "isatty", lambda: False)()
        return _coloured if is_terminal and "NO_COLOR" not in os.environ else _plain

    def write(self, lines: list[str]) -> None:
        """Write the lines; StreamClosed when the reader has gone (``| head``)."""
        if not lines:
            return
        out = self.stream()
        with self._lock:
            try:
                out.write("".join(line + "\n" for line in lines))
                out.flush()
            except BrokenPipeError:
                if out is sys.stdout:  # no traceback either when the interpreter exits
                    os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
                    STDOUT_CLOSED.set()
                raise StreamClosed("the console's output was closed by its reader") from None


# Set once stdout's reader has gone: the CLI then ends quietly.
STDOUT_CLOSED = threading.Event()


class StreamClosed(OSError):
    """The console's stream was closed by its reader: what it would print is not shown."""


def _printed(lines: ConsoleLines, text: list[str]) -> bool:
    """Print the lines; False (counted as failed, one warning) when nobody reads them."""
    try:
        lines.write(text)
    except StreamClosed as error:
        warn_limited("console:closed", "%s: telemetry is no longer printed", error)
        return False
    return True


def iso_time(ns: int) -> str:
    """Nanoseconds since the epoch as an ISO 8601 UTC time with milliseconds."""
    moment = datetime.fromtimestamp(ns_to_seconds(ns), tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_fields(fields: Mapping[str, Any]) -> str:
    """``key=value`` pairs; strings with spaces, quotes or ``=`` are JSON-quoted."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, str):
            needs_quotes = not value or any(c in value for c in ' "=\n')
            text = json.dumps(value, ensure_ascii=False) if needs_quotes else value
        else:
            text = json.dumps(value, default=str, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def short_id(value: int, width: int) -> str:
    """The first 8 hex digits of an id, enough to tell spans apart on a terminal."""
    return f"{value:0{width}x}"[:8]


def format_span(span: ReadableSpan, paint: Paint = _plain) -> str:
    context = span.context
    failed = span.status.is_ok is False
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1_000_000
    words = [
        iso_time(span.end_time or 0),
        "TRACE ",
        paint("ERROR" if failed else "OK"),
        span.name,
        f"{duration_ms:.3f}ms",
        f"trace={short_id(context.trace_id, 32)}",
        f"span={short_id(context.span_id, 16)}",
    ]
    if span.parent is not None:
        words.append(f"parent={short_id(span.parent.span_id, 16)}")
    if failed:
        words.append(f"error={json.dumps(span.status.description or 'ERROR')}")
    attributes = {k: v for k, v in (span.attributes or {}).items() if k not in _HIDDEN_SPAN_KEYS}
    if attributes.get(PROBABILITY) == 1.0:  # kept at full rate: nothing worth a column
        del attributes[PROBABILITY]
    if attributes:
        words.append(format_fields(attributes))
    return " ".join(words)


def format_log(record: ReadableLogRecord, paint: Paint = _plain) -> str:
    event = log_record_to_event(record, {})  # type: ignore[arg-type]
    log = record.log_record
    words = [
        iso_time(log.timestamp or log.observed_timestamp or 0),
        "EVENT ",
        paint(event.severity.name),
        f"{event.name}:",
        event.message,
    ]
    if log.trace_id:
        words.append(f"trace={short_id(log.trace_id, 32)} span={short_id(log.span_id or 0, 16)}")
    fields = {**event.tags, **event.metadata}
    if fields:
        words.append(format_fields(fields))
    return " ".join(words)


def format_metric(metric: Metric, paint: Paint = _plain) -> str:
    words = [
        iso_time(seconds_to_ns(metric.timestamp)),
        "METRIC",
        paint(metric.metric_type.name),
        metric.name,
    ]
    if metric.metric_type is MetricType.HISTOGRAM:
        words.append(f"sum={metric.value:g} count={metric.count} min={metric.min} max={metric.max}")
    else:
        words.append(f"{metric.value:g}")
    if metric.unit:
        words.append(metric.unit)
    if metric.tags:
        words.append(format_fields(metric.tags))
    return " ".join(words)


class ConsoleSpanExporter(SpanExporter):
    """Prints one line per span: time, status, name, duration, short ids, attributes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._lines = ConsoleLines(out)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        paint = self._lines.paint()
        printed = _printed(self._lines, [format_span(span, paint) for span in spans])
        return SpanExportResult.SUCCESS if printed else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


class ConsoleLogRecordExporter(LogRecordExporter):
    """Prints one line per log record: time, severity, event name, message, attributes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._lines = ConsoleLines(out)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        paint = self._lines.paint()
        printed = _printed(self._lines, [format_log(record, paint) for record in batch])
        return LogRecordExportResult.SUCCESS if printed else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


class ConsoleMetricExporter(MetricExporter):
    """Prints one line per data point that changed in the interval."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(preferred_temporality=DELTA_TEMPORALITY)
        self._lines = ConsoleLines(out)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        paint = self._lines.paint()
        models, unfit = metrics_data_to_models(metrics_data, {}, skip_scope=SELF_SCOPE)
        printed = _printed(self._lines, [format_metric(model, paint) for model in models])
        return MetricExportResult.FAILURE if unfit or not printed else MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass
