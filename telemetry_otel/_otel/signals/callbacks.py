"""The callback hub: legacy ``register_exporter`` callbacks, each fed by its own queues."""

from __future__ import annotations

import time
from typing import Any

from telemetry_otel._otel.delivery.callbacks import CallbackDestination, ExporterCallback
from telemetry_otel._otel.delivery.outcomes import UNREGISTERED
from telemetry_otel._otel.delivery.queue import DeliveryQueue
from telemetry_otel._otel.signals.common import Shared
from telemetry_otel._otel.signals.events import EventPipeline
from telemetry_otel._otel.signals.metrics import MetricPipeline
from telemetry_otel._otel.signals.traces import TracePipeline


class CallbackHub:
    """Adds and removes callbacks on every signal's pipeline; keeps the removed ones,
    whose counts stay in stats()."""

    def __init__(
        self, shared: Shared, traces: TracePipeline, events: EventPipeline, metrics: MetricPipeline
    ) -> None:
        self._shared = shared
        self._traces = traces
        self._events = events
        self._metrics = metrics
        self.active: list[CallbackDestination] = []
        self.retired: list[CallbackDestination] = []

    def add(self, callback: ExporterCallback) -> None:
        """Start feeding a callback with everything collected from now on."""
        shared = self._shared
        destination = CallbackDestination(callback, shared.global_tags, shared.settings)
        self.active.append(destination)
        self._traces.processor.add_queue(destination.traces)
        self._events.processor.add_queue(destination.events)
        self._metrics.callback_exporter.set_queues(tuple(d.metrics for d in self.active))
        self._metrics.attach_bridge_reader()

    def remove(self, callback: ExporterCallback) -> None:
        """Stop feeding a callback; what it had not received yet is dropped (counted)."""
        destination = next(d for d in self.active if d.callback == callback)
        if len(self.active) == 1:
            self._metrics.detach_bridge_reader()
        self.active.remove(destination)
        self.retired.append(destination)
        self._traces.processor.remove_queue(destination.traces)
        self._events.processor.remove_queue(destination.events)
        self._metrics.callback_exporter.set_queues(tuple(d.metrics for d in self.active))
        for queue in destination.queues():
            queue.close(deadline=time.monotonic(), reason=UNREGISTERED)

    @property
    def any_ever(self) -> bool:
        return bool(self.active or self.retired)

    def trace_queues(self) -> list[DeliveryQueue[Any]]:
        return [d.traces for d in (*self.active, *self.retired)]

    def event_queues(self) -> list[DeliveryQueue[Any]]:
        return [d.events for d in (*self.active, *self.retired)]

    def metric_queues(self) -> list[DeliveryQueue[Any]]:
        return [d.metrics for d in (*self.active, *self.retired)]
