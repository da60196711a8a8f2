"""SDK span and log-record processors that fan items out to delivery queues."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from telemetry_otel._otel.delivery.queue import DeliveryQueue


class _QueueFanOut:
    """The set of queues a processor feeds, replaced whole so that readers never lock.

    ``only_scope`` keeps items of that instrumentation scope only: on an application's
    global provider, the collector's destinations get what the collector produced.
    """

    def __init__(self, only_scope: str | None = None) -> None:
        self.queues: tuple[DeliveryQueue[Any], ...] = ()
        self.only_scope = only_scope

    def add_queue(self, queue: DeliveryQueue[Any]) -> None:
        self.queues = (*self.queues, queue)

    def remove_queue(self, queue: DeliveryQueue[Any]) -> None:
        self.queues = tuple(q for q in self.queues if q is not queue)

    def submit(self, item: Any) -> None:
        """Queue a finished item for every destination; items built directly (not
        through a provider) come here without the scope check."""
        for queue in self.queues:
            queue.submit(item)

    def flush_queues(self, deadline: float) -> bool:
        return all([queue.flush(deadline) for queue in self.queues])

    def detach_queues(self) -> None:
        """Feed nothing any more: a global provider keeps its processors after stop()."""
        self.queues = ()

    def _wanted(self, scope: Any) -> bool:
        return self.only_scope is None or (scope is not None and scope.name == self.only_scope)


class QueueSpanProcessor(_QueueFanOut, SpanProcessor):
    """Hands every ended, sampled span to each destination's queue."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.only_scope is not None and not self._wanted(span.instrumentation_scope):
            return
        self.submit(span)

    def shutdown(self) -> None:
        pass  # the pipeline closes the queues within its own deadline

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.flush_queues(time.monotonic() + timeout_millis / 1000)


class QueueLogRecordProcessor(_QueueFanOut, LogRecordProcessor):
    """Hands every emitted log record, made read-only once, to each destination's queue."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self.only_scope is not None and not self._wanted(log_record.instrumentation_scope):
            return
        readable = ReadableLogRecord(
            log_record=log_record.log_record,
            resource=log_record.resource or Resource.get_empty(),
            instrumentation_scope=log_record.instrumentation_scope,
            limits=log_record.limits,
        )
        self.submit(readable)

    def shutdown(self) -> None:
        pass  # the pipeline closes the queues within its own deadline

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.flush_queues(time.monotonic() + timeout_millis / 1000)


class LiveSpanCounter(SpanProcessor):
    """Counts live spans (collector.span / traced) in ``collected`` as they end.

    Registered before the queue processor so a span is counted before it is
    delivered. Legacy spans are counted on the collect path; they are told apart by
    their scope object, which only the span factory uses.
    """

    def __init__(self, count: Callable[[], object], scope_name: str, legacy_scope: object) -> None:
        self._count = count
        self._scope_name = scope_name
        self._legacy_scope = legacy_scope
        self.enabled = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if scope is None or scope is self._legacy_scope:
            return
        if self.enabled and scope.name == self._scope_name:
            self._count()

    def shutdown(self) -> None:
        self.enabled = False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
