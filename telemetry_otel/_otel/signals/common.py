"""What the signal pipelines of one collector share, and each endpoint's delivery queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry_otel._otel.delivery.accounting import Accounting
from telemetry_otel._otel.delivery.callbacks import QueueSettings
from telemetry_otel._otel.delivery.otlp import OtlpDelivery
from telemetry_otel._otel.delivery.queue import DeliveryQueue
from telemetry_otel._otel.delivery.spool import Spool
from telemetry_otel._otel.destinations.destination import (
    Destination,
    component,
    otlp_exporter_type,
)
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._otel.runtime.sdk import enable_provider
from telemetry_otel._shaping import Shaper
from telemetry_otel._signals import Signal
from telemetry_otel.config import TelemetryConfig

SCOPE_NAME = "telemetry_otel"
ItemSignal = Literal["trace", "event"]
P = TypeVar("P")


@dataclass
class Shared:
    """Built once per collector, before any signal's pipeline."""

    config: TelemetryConfig
    settings: QueueSettings
    shaper: Shaper
    accounting: Accounting
    resource: Resource
    destinations: list[Destination]
    # What callbacks get back as global tags: redacted like everything else.
    global_tags: dict[str, Any]
    spool: Spool | None = None
    # Every OTLP delivery the queues were given, to close at shutdown.
    deliveries: list[OtlpDelivery] = field(default_factory=list)
    # Every destination queue built, to close should the pipeline's build fail halfway.
    queues: list[DeliveryQueue[Any]] = field(default_factory=list)


def or_default(value: float | None, default: float) -> float:
    return default if value is None else value


def enabled_by_the_collector(provider: P) -> P:
    """A provider of the collector's own that does not read ``OTEL_SDK_DISABLED`` again.

    The SDK's providers read the variable when they are built and then hand out no-op
    tracers, meters or loggers. The collector has decided already: the variable turns
    it off before any provider is built, and a collector the application built from
    ``with_env({})`` (the test fixture) ignores it. Left to the SDK, the variable would
    silently empty one signal of a running collector.
    """
    enable_provider(provider)
    return provider


class _Provider(Protocol):
    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30_000) -> bool: ...


class _Processor(Protocol):
    @property
    def queues(self) -> Sequence[DeliveryQueue[Any]]: ...

    def add_queue(self, queue: DeliveryQueue[Any]) -> None: ...


class ItemPipeline:
    """What the trace and event pipelines share: one queue per destination that takes
    the signal, fed by one processor on the signal's provider."""

    signal: ItemSignal
    provider: _Provider

    def __init__(self, shared: Shared, joined: _Provider | None, processor: _Processor) -> None:
        self._shared = shared
        self._joined = joined
        self._tally = shared.accounting.tallies[self.signal]
        self.processor = processor
        self.queues: list[DeliveryQueue[Any]] = []
        if joined is None:  # else the application's exporters send what the provider gets
            for destination in shared.destinations:
                self.add_destination(destination)

    def add_destination(self, destination: Destination) -> None:
        """Feed one more destination, if it takes this signal."""
        queue = _destination_queue(self._shared, destination, self.signal)
        if queue is not None:
            self._shared.queues.append(queue)
            self.queues.append(queue)
            self.processor.add_queue(queue)

    def fail(self) -> bool:
        """An item that entered the pipeline and then failed is lost for every destination."""
        for _ in range(len(self.processor.queues)):
            self._tally.rejected.increment()
        warn_limited(
            f"internal:{self.signal}", "telemetry_otel could not process a %s", self.signal
        )
        return False

    def release(self, deadline: float) -> None:
        """Shut the collector's own provider down; a joined one is flushed, not shut down:
        it belongs to the application."""
        if self._joined is None:
            self.provider.shutdown()
        else:
            self.provider.force_flush(int(max(0, deadline - time.monotonic()) * 1000))


# The exporter kind in an ``otel.component.type``, by signal.
_KINDS = {"trace": "span", "event": "log"}


def _destination_queue(
    shared: Shared, destination: Destination, signal: ItemSignal
) -> DeliveryQueue[Any] | None:
    otlp_signal = Signal(signal).otlp
    name = f"{destination.name}-{otlp_signal}"
    targets = destination.otlp_targets
    if targets is not None:
        if otlp_signal not in targets:  # the endpoint does not take this signal
            return None
        delivery = OtlpDelivery(
            destination.name,
            otlp_signal,
            targets[otlp_signal],
            shared.config.max_export_batch_bytes,
            shared.spool,
        )
        spooler = delivery if shared.spool is not None else None
        queue = shared.settings.make_queue(name, delivery.deliver, spooler=spooler)
        exporter_type = otlp_exporter_type(targets[otlp_signal], _KINDS[signal])
        queue.component = component(exporter_type, destination)
        delivery.attach(queue)
        shared.deliveries.append(delivery)
        return queue
    exporter = destination.spans if signal == "trace" else destination.logs
    if exporter is None:
        return None
    deliver = _exporter_delivery(exporter)
    queue = shared.settings.make_queue(name, deliver, immediate=destination.immediate)
    queue.component = component(f"{destination.kind}_{_KINDS[signal]}_exporter", destination)
    return queue


def _exporter_delivery(
    exporter: SpanExporter | LogRecordExporter,
) -> Callable[[list[Any]], int]:
    """An SDK exporter (console, file) as a queue's delivery: all or nothing."""

    def export(batch: list[Any]) -> int:
        result = exporter.export(batch)
        ok = result in (SpanExportResult.SUCCESS, LogRecordExportResult.SUCCESS)
        return len(batch) if ok else 0

    return export
