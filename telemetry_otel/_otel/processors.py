"""SDK span and log-record processors that fan items out to delivery queues."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from telemetry_otel._otel.delivery import DeliveryQueue


class _QueueFanOut:
    """The set of queues a processor feeds, replaced whole so that readers never lock."""

    def __init__(self) -> None:
        self.queues: tuple[DeliveryQueue[Any], ...] = ()

    def add_queue(self, queue: DeliveryQueue[Any]) -> None:
        self.queues = (*self.queues, queue)

    def remove_queue(self, queue: DeliveryQueue[Any]) -> None:
        self.queues = tuple(q for q in self.queues if q is not queue)

    def flush_queues(self, deadline: float) -> bool:
        return all([queue.flush(deadline) for queue in self.queues])


class QueueSpanProcessor(_QueueFanOut, SpanProcessor):
    """Hands every ended, sampled span to each destination's queue."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        for queue in self.queues:
            queue.submit(span)

    def shutdown(self) -> None:
        pass  # the pipeline closes the queues within its own deadline

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.flush_queues(time.monotonic() + timeout_millis / 1000)


class QueueLogRecordProcessor(_QueueFanOut, LogRecordProcessor):
    """Hands every emitted log record, made read-only once, to each destination's queue."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        readable = ReadableLogRecord(
            log_record=log_record.log_record,
            resource=log_record.resource or Resource.get_empty(),
            instrumentation_scope=log_record.instrumentation_scope,
            limits=log_record.limits,
        )
        for queue in self.queues:
            queue.submit(readable)

    def shutdown(self) -> None:
        pass  # the pipeline closes the queues within its own deadline

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.flush_queues(time.monotonic() + timeout_millis / 1000)
