"""The text layout shared by the console and ``telemetry-otel receive``.

A line reads ``time SIGNAL LEVEL [bar] name details``: a short local time, the signal,
its level (event severity, span status or metric type, coloured on a terminal), and
the name indented by its depth in its trace. Both tools turn what they see (SDK
objects or OTLP messages) into the views below, so they print alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry_otel._otel.mapping.spans import (
    LEGACY_PARENT_SPAN_ID,
    LEGACY_SPAN_ID,
    LEGACY_TRACE_ID,
)
from telemetry_otel._otel.sampling.probability import PROBABILITY

Paint = Callable[[str], str]
_COLOURS = {
    "DEBUG": "2",  # dim
    "INFO": "32",  # green
    "OK": "32",
    "WARNING": "33",  # yellow
    "ERROR": "31",  # red
    "CRITICAL": "1;31",  # bold red
    "RUNNING": "34",  # blue
}
_METRIC_COLOUR = "36"  # cyan
BAR_WIDTH = 20
# The legacy ids are shown as the short ids they map to; a probability of 1 says nothing.
_HIDDEN_KEYS = frozenset((LEGACY_TRACE_ID, LEGACY_SPAN_ID, LEGACY_PARENT_SPAN_ID))


def plain(level: str) -> str:
    return f"{level:<9}"


def coloured(level: str) -> str:
    code = _COLOURS.get(level.strip(), _METRIC_COLOUR)
    return f"\x1b[{code}m{level:<9}\x1b[0m"


def short_time(ns: int) -> str:
    """Local wall-clock time with milliseconds: ``14:02:11.482``."""
    return datetime.fromtimestamp(ns / 1e9).strftime("%H:%M:%S.%f")[:-3]


def short_id(value: int, width: int) -> str:
    """The first 8 hex digits of an id, enough to tell spans apart on a terminal."""
    return f"{value:0{width}x}"[:8]


def format_fields(fields: Mapping[str, Any]) -> str:
    """``key=value`` pairs; strings with spaces, quotes or ``=`` are JSON-quoted."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, str):
            needs_quotes = not value or not value.isprintable() or any(c in value for c in ' "=')
            text = json.dumps(value, ensure_ascii=False) if needs_quotes else value
        else:
            text = json.dumps(value, default=str, ensure_ascii=False)
        parts.append(f"{printable(str(key))}={printable(text)}")
    return " ".join(parts)


def shown_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes worth a column: this library's own bookkeeping left out."""
    shown = {k: v for k, v in attributes.items() if k not in _HIDDEN_KEYS}
    if shown.get(PROBABILITY) == 1.0:  # kept at full rate
        del shown[PROBABILITY]
    return shown


def bar(start_ns: int, end_ns: int, trace_start_ns: int, trace_end_ns: int) -> str:
    """Where a span sits in its trace: ``[···████······]``, at least one block wide."""
    extent = max(trace_end_ns - trace_start_ns, 1)
    first = min(BAR_WIDTH - 1, (start_ns - trace_start_ns) * BAR_WIDTH // extent)
    width = max(1, min(BAR_WIDTH - first, -(-(end_ns - start_ns) * BAR_WIDTH // extent)))
    return "[" + "·" * first + "█" * width + "·" * (BAR_WIDTH - first - width) + "]"


@dataclass
class SpanEventView:
    """An event recorded on a span: ``span.add_event(...)``, or a recorded exception."""

    name: str
    time_ns: int
    attributes: Mapping[str, Any]


@dataclass
class SpanView:
    name: str
    start_ns: int
    end_ns: int
    trace_id: int
    span_id: int
    parent_id: int | None  # a local parent; None for a root
    error: str | None  # the status description of a failed span
    attributes: Mapping[str, Any]
    remote_parent: int | None = None  # a root's parent in another process
    events: Sequence[SpanEventView] = ()


@dataclass
class EventView:
    time_ns: int
    severity: str
    name: str
    message: Any
    trace_id: int  # 0 outside a trace
    span_id: int
    fields: Mapping[str, Any]


@dataclass
class MetricView:
    time_ns: int
    kind: str  # COUNTER, UPDOWNCOUNTER, GAUGE, HISTOGRAM, SUMMARY
    name: str
    value: str  # the number, or count/sum/min/max for a histogram
    unit: str
    fields: Mapping[str, Any]


def span_line(
    span: SpanView, depth: int, paint: Paint, in_tree: bool, bar_text: str = "", again: bool = False
) -> str:
    """A span's line; ``in_tree`` leaves out the ids its place in the tree already says;
    ``again`` marks a span id shown before (a span sent twice, or a legacy trace id
    reused by a later run)."""
    status = "ERROR" if span.error is not None else "OK"
    words = [short_time(span.start_ns), "TRACE ", paint(status)]
    if bar_text:
        words.append(bar_text)
    duration_ms = (span.end_ns - span.start_ns) / 1_000_000
    words += [indent(depth) + printable(span.name), f"{duration_ms:.3f}ms"]
    if not in_tree or depth == 0:
        words.append(f"trace={short_id(span.trace_id, 32)}")
    words.append(f"span={short_id(span.span_id, 16)}")
    parent = span.parent_id if span.parent_id is not None else span.remote_parent
    if parent is not None and (not in_tree or depth == 0):
        words.append(f"parent={short_id(parent, 16)}")
    if span.error is not None:
        words.append(f"error={printable(json.dumps(span.error or 'ERROR', ensure_ascii=False))}")
    if span.attributes:
        words.append(format_fields(span.attributes))
    if again:
        words.append("(sent again: this span id was shown before)")
    return " ".join(words)


# OpenTelemetry's exception event and attributes (semantic conventions).
EXCEPTION_EVENT = "exception"
_STACKTRACE, _TYPE, _MESSAGE = "exception.stacktrace", "exception.type", "exception.message"
# A traceback printed on a terminal keeps its last lines: the frames nearest the raise.
TRACEBACK_LINES = 10


def span_lines(
    span: SpanView,
    depth: int,
    paint: Paint,
    in_tree: bool,
    bar_text: str = "",
    terminal: bool = False,
    again: bool = False,
) -> list[str]:
    """A span's line, then a line for each of its span events, one level down; on a
    terminal an exception's traceback follows it as lines of its own."""
    lines = [span_line(span, depth, paint, in_tree, bar_text, again)]
    pad = " " * len(bar_text)
    for event in span.events:
        attributes = dict(event.attributes)
        stacktrace = attributes.pop(_STACKTRACE, None)
        failed = event.name == EXCEPTION_EVENT
        words = [short_time(event.time_ns), "EVENT ", paint("ERROR" if failed else "INFO")]
        if pad:
            words.append(pad)
        if failed:
            kind, message = attributes.pop(_TYPE, "Exception"), attributes.pop(_MESSAGE, "")
            words.append(indent(depth + 1) + printable(f"exception {kind}: {message}"))
        else:
            words.append(indent(depth + 1) + printable(event.name))
        if attributes:
            words.append(format_fields(attributes))
        lines.append(" ".join(words))
        if terminal and isinstance(stacktrace, str):
            lines += traceback_lines(stacktrace, _name_column(pad) + len(indent(depth + 1)))
    return lines


def event_lines(
    event: EventView, depth: int, paint: Paint, in_tree: bool, pad: str = "", terminal: bool = False
) -> list[str]:
    """An event's line; on a terminal, an ``exception.stacktrace`` field (the logging
    bridge's) follows as lines of its own instead of one escaped string."""
    stacktrace = event.fields.get(_STACKTRACE) if terminal else None
    if not isinstance(stacktrace, str):
        return [event_line(event, depth, paint, in_tree, pad)]
    fields = {k: v for k, v in event.fields.items() if k != _STACKTRACE}
    shown = EventView(
        event.time_ns,
        event.severity,
        event.name,
        event.message,
        event.trace_id,
        event.span_id,
        fields,
    )
    line = event_line(shown, depth, paint, in_tree, pad)
    return [line, *traceback_lines(stacktrace, _name_column(pad) + len(indent(depth)))]


def traceback_lines(stacktrace: str, indent: int) -> list[str]:
    """A traceback's last lines, each on a line of its own under the event's name, with
    anything that is no printable character replaced (a traceback quotes user text).
    OpenTelemetry's own frames (the span's context manager the exception passed
    through) are left out: they say nothing about the application."""
    lines = _without_sdk_frames(stacktrace.rstrip("\n").splitlines())
    lines = [printable(line) for line in lines]
    if len(lines) > TRACEBACK_LINES:
        lines = ["…", *lines[-TRACEBACK_LINES:]]
    return [" " * indent + "│ " + line for line in lines]


def _without_sdk_frames(lines: list[str]) -> list[str]:
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith('  File "'):
            path = line.replace("\\", "/")
            skipping = any(sdk in path for sdk in _SDK_PATHS)
        elif not line.startswith("    "):  # not a frame's source or caret line
            skipping = False
        if not skipping:
            kept.append(line)
    return kept


_SDK_PATHS = ("/opentelemetry/sdk/", "/opentelemetry/trace/", "/opentelemetry/context/")


def _name_column(pad: str) -> int:
    """Where a line's name starts: after ``time SIGNAL LEVEL`` (12 + 1 + 6 + 1 + 9 + 1
    columns; colour codes take none) and the bar column's padding."""
    return 30 + (len(pad) + 1 if pad else 0)


def printable(text: str) -> str:
    """Text a sender wrote, as a terminal line may show it: a character that is not
    printable (an escape code that would set the window title or clear the screen, a
    line break that would forge a line of its own) becomes ``?``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def indent(depth: int) -> str:
    """A name's indentation in its trace: two spaces a level, to MAX_INDENT levels; a
    deeper one says its depth instead (a 10,000-deep trace would otherwise print 100
    MB of spaces)."""
    if depth <= MAX_INDENT:
        return "  " * depth
    return "  " * MAX_INDENT + f"[{depth}] "


MAX_INDENT = 32


def running_line(trace_id: int, since_ns: int, paint: Paint) -> str:
    """The line above what a trace whose root has not ended prints so far."""
    words = [short_time(since_ns), "TRACE ", paint("RUNNING"), f"trace={short_id(trace_id, 32)}"]
    return " ".join([*words, "waiting for its root; ended so far:"])


def event_line(event: EventView, depth: int, paint: Paint, in_tree: bool, pad: str = "") -> str:
    """An event's line; outside a tree it names its trace and span."""
    words = [short_time(event.time_ns), "EVENT ", paint(event.severity)]
    if pad:
        words.append(pad)
    words += [indent(depth) + printable(f"{event.name}:"), printable(str(event.message))]
    if event.trace_id and not in_tree:
        words.append(f"trace={short_id(event.trace_id, 32)} span={short_id(event.span_id, 16)}")
    if event.fields:
        words.append(format_fields(event.fields))
    return " ".join(words)


def metric_line(metric: MetricView, paint: Paint) -> str:
    words = [short_time(metric.time_ns), "METRIC", paint(metric.kind), printable(metric.name)]
    words.append(metric.value)
    if metric.unit:
        words.append(printable(metric.unit))
    if metric.fields:
        words.append(format_fields(metric.fields))
    return " ".join(words)


def histogram_value(count: int, total: float, low: float | None, high: float | None) -> str:
    """count and sum, then min and max where known (a bridged histogram has none)."""
    words = [f"count={count}", f"sum={number_text(total)}"]
    if low is not None:
        words.append(f"min={number_text(low)}")
    if high is not None:
        words.append(f"max={number_text(high)}")
    return " ".join(words)


def number_text(value: float) -> str:
    """A number to read: an integer (or a float holding one) in full, any other float
    to 12 significant digits; never 1.79666e+09 for a value a reader compares."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return f"{value:.12g}"
