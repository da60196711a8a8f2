"""Readable console exporters: spans as trees, events under their span, one line per metric.

The layout is ``layout.py``'s, shared with ``telemetry-otel receive``. Spans of one trace
are held until the root ends (``tree.py``), then printed as an indented tree with the
events collected inside them; coloured on a terminal (unless NO_COLOR is set).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Hashable, Sequence
from typing import Any, TextIO, TypeVar

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry_otel._otel.delivery.accounting import SELF_SCOPE
from telemetry_otel._otel.destinations.layout import (
    EventView,
    MetricView,
    Paint,
    SpanEventView,
    SpanView,
    coloured,
    event_lines,
    histogram_value,
    metric_line,
    number_text,
    plain,
    running_line,
    shown_attributes,
    span_lines,
)
from telemetry_otel._otel.destinations.tree import Node, Placed, TraceTrees
from telemetry_otel._otel.mapping.logs import log_record_to_event
from telemetry_otel._otel.mapping.metrics import DELTA_TEMPORALITY, metrics_data_to_models
from telemetry_otel._otel.mapping.spans import seconds_to_ns
from telemetry_otel._otel.runtime.forks import ForkSafeLock, follow_forks
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._otel.runtime.threads import start_daemon
from telemetry_otel.models import Metric, MetricType


class ConsoleLines:
    """Writes whole lines to a stream (stdout by default, looked up at write time)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._lock = ForkSafeLock()

    def stream(self) -> TextIO:
        return self._out or sys.stdout

    def is_terminal(self) -> bool:
        return bool(getattr(self.stream(), "isatty", lambda: False)())

    def paint(self) -> Paint:
        """How to show the LEVEL column on the stream as it is now."""
        return coloured if self.is_terminal() and "NO_COLOR" not in os.environ else plain

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


def span_view(span: ReadableSpan) -> SpanView:
    context, parent = span.context, span.parent
    attributes = shown_attributes(span.attributes or {})
    local_parent = parent is not None and not parent.is_remote
    return SpanView(
        span.name,
        span.start_time or 0,
        span.end_time or 0,
        context.trace_id,
        context.span_id,
        parent.span_id if parent is not None and local_parent else None,
        (span.status.description or "") if span.status.is_ok is False else None,
        attributes,
        parent.span_id if parent is not None and not local_parent else None,
        [SpanEventView(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
    )


def event_view(record: ReadableLogRecord) -> EventView:
    event = log_record_to_event(record, {})  # type: ignore[arg-type]
    log = record.log_record
    time_ns = log.timestamp or log.observed_timestamp or 0
    fields = {**event.tags, **event.metadata}
    return EventView(
        time_ns,
        event.severity.name,
        event.name,
        event.message,
        log.trace_id or 0,
        log.span_id or 0,
        fields,
    )


def metric_view(metric: Metric) -> MetricView:
    if metric.metric_type is MetricType.HISTOGRAM:
        value = histogram_value(metric.count or 0, metric.value, metric.min, metric.max)
    else:
        value = number_text(metric.value)
    return MetricView(
        seconds_to_ns(metric.timestamp),
        metric.metric_type.name,
        metric.name,
        value,
        metric.unit or "",
        metric.tags,
    )


View = SpanView | EventView
P = TypeVar("P")


def view_lines(placed: Placed[View], paint: Paint, terminal: bool) -> list[str]:
    view = placed.payload
    if isinstance(view, SpanView):
        again = placed.again
        return span_lines(view, placed.depth, paint, True, terminal=terminal, again=again)
    in_tree = bool(view.trace_id)
    return event_lines(view, placed.depth, paint, in_tree, terminal=terminal)


# A trace prints this long after its root ended: its events travel through their own
# queue and may reach the console just after the root does.
SETTLE_S = 0.1
# A trace whose root has not ended this long after its first span or event ended (a
# long job) prints what has ended so far under a line saying it still runs.
RUNNING_AFTER_S = 1.0


class ConsoleTrees:
    """What the span and log exporters of one console share: the stream and the trees.

    A timer thread, alive only while something is held, prints each trace once settled
    (or overdue, when its root never comes).
    """

    def __init__(
        self,
        out: TextIO | None = None,
        max_wait_s: float = 10.0,
        settle_s: float = SETTLE_S,
        running_after_s: float = RUNNING_AFTER_S,
    ) -> None:
        self.lines = ConsoleLines(out)
        self._max_wait_s = max_wait_s
        self._settle_s = settle_s
        self._running_after_s = running_after_s
        self._lock = ForkSafeLock()
        self._init_state()
        follow_forks(self)

    def _init_state(self) -> None:
        self._trees: TraceTrees[View] = TraceTrees(
            max_wait_s=self._max_wait_s,
            settle_s=self._settle_s,
            running_after_s=self._running_after_s,
        )
        self._wake = threading.Event()
        self._timer: threading.Thread | None = None

    def after_fork_in_child(self) -> None:
        # What the parent holds, the parent prints; the child would print it twice.
        self._init_state()

    def print_views(self, views: Sequence[tuple[int, Node[View]]]) -> bool:
        """Print what can be shown once these arrived; False when nobody reads the stream."""
        with self._lock:
            placed = [p for trace_id, node in views for p in self._add(trace_id, node)]
            placed += self._trees.expired()
            if self._trees.held and self._timer is None:
                self._timer = start_daemon(self._print_when_due, "console-trees")
            self._wake.set()
            return self._print(placed, self._trees.running())

    def drain(self) -> bool:
        """Print everything held, root or not: at flush() and at shutdown."""
        with self._lock:
            return self._print(self._trees.drain())

    def _print_when_due(self) -> None:
        while True:
            with self._lock:
                due = self._trees.next_due()
                if due is None:
                    self._timer = None
                    return
                wait = due - time.monotonic()
                if wait <= 0:
                    self._print(self._trees.expired(), self._trees.running())
                    continue
                self._wake.clear()
            self._wake.wait(wait)

    def _add(self, trace_id: int, node: Node[View]) -> list[Placed[View]]:
        if not trace_id:  # an event outside any trace: at once
            return [Placed(node.payload, 0, node.start_ns, node.end_ns)]
        return self._trees.add(trace_id, node)

    def _print(
        self,
        placed: list[Placed[View]],
        running: Sequence[tuple[Hashable, list[Placed[View]]]] = (),
    ) -> bool:
        paint, terminal = self.lines.paint(), self.lines.is_terminal()
        lines = [line for p in placed for line in view_lines(p, paint, terminal)]
        for trace_id, so_far in running:
            assert isinstance(trace_id, int)  # the console's traces are keyed by their id
            lines.append(running_line(trace_id, so_far[0].trace_start_ns, paint))
            lines += [line for p in so_far for line in view_lines(p, paint, terminal)]
        return _printed(self.lines, lines)


def _span_node(span: ReadableSpan) -> tuple[int, Node[View]]:
    view = span_view(span)
    return view.trace_id, span_node(view, view)


def span_node(payload: P, view: SpanView) -> Node[P]:
    """A span's node: under its local parent, or under a remote parent when that span
    is in the trace too (both ends of a call in one process, or at one receiver)."""
    remote = view.remote_parent is not None
    parent = view.remote_parent if remote else view.parent_id
    return Node(payload, view.span_id, parent, view.start_ns, view.end_ns, True, remote)


def _event_node(record: ReadableLogRecord) -> tuple[int, Node[View]]:
    view = event_view(record)
    return view.trace_id, Node(view, view.span_id, None, view.time_ns, view.time_ns, False)


class ConsoleSpanExporter(SpanExporter):
    """Prints spans as trees under their root, once the root has ended."""

    def __init__(self, trees: ConsoleTrees | None = None) -> None:
        self._trees = trees or ConsoleTrees()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        printed = self._trees.print_views([_span_node(span) for span in spans])
        return SpanExportResult.SUCCESS if printed else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._trees.drain()


class ConsoleLogRecordExporter(LogRecordExporter):
    """Prints events: at once outside a trace, under their span inside one."""

    def __init__(self, trees: ConsoleTrees | None = None) -> None:
        self._trees = trees or ConsoleTrees()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        printed = self._trees.print_views([_event_node(record) for record in batch])
        return LogRecordExportResult.SUCCESS if printed else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._trees.drain()


class ConsoleMetricExporter(MetricExporter):
    """Prints one line per data point that changed in the interval."""

    def __init__(self, trees: ConsoleTrees | None = None) -> None:
        super().__init__(preferred_temporality=DELTA_TEMPORALITY)
        self._trees = trees or ConsoleTrees()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        lines = self._trees.lines
        paint = lines.paint()
        models, unfit = metrics_data_to_models(metrics_data, {}, skip_scope=SELF_SCOPE)
        printed = _printed(lines, [metric_line(metric_view(model), paint) for model in models])
        return MetricExportResult.FAILURE if unfit or not printed else MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass
