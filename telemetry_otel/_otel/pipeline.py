"""The OpenTelemetry pipeline behind one collector: resource, providers, destinations."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry_otel._otel.bridge import (
    Callback,
    CallbackDestination,
    CallbackMetricExporter,
    QueueSettings,
)
from telemetry_otel._otel.delivery import DeliveryCounts, DeliveryQueue, warn_once
from telemetry_otel._otel.exporters import Destination, build_destination
from telemetry_otel._otel.logs import event_to_log_record
from telemetry_otel._otel.metrics import InstrumentCache
from telemetry_otel._otel.processors import QueueLogRecordProcessor, QueueSpanProcessor
from telemetry_otel._otel.spans import SpanFactory
from telemetry_otel._otel.tally import Tally
from telemetry_otel._version import __version__
from telemetry_otel.config import TelemetryConfig
from telemetry_otel.models import Event, Metric, Trace

SCOPE_NAME = "telemetry_otel"
SIGNALS = ("metric", "event", "trace")
# Largest batch an export carries, as the SDK's batch processors default to.
_MAX_BATCH = 512


def build_resource(config: TelemetryConfig) -> Resource:
    """Global tags as resource attributes; service_name overrides a service.name tag.

    Resource.create adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME beneath
    these and falls back to the OTel default service name.
    """
    attributes: dict[str, Any] = dict(config.tags)
    if config.service_name is not None:
        attributes["service.name"] = config.service_name
    return Resource.create(attributes)


def _span_delivery(exporter: SpanExporter) -> Callable[[list[ReadableSpan]], int]:
    def deliver(batch: list[ReadableSpan]) -> int:
        return len(batch) if exporter.export(batch) is SpanExportResult.SUCCESS else 0

    return deliver


def _log_delivery(exporter: LogRecordExporter) -> Callable[[list[ReadableLogRecord]], int]:
    def deliver(batch: list[ReadableLogRecord]) -> int:
        return len(batch) if exporter.export(batch) is LogRecordExportResult.SUCCESS else 0

    return deliver


class _SignalTally:
    def __init__(self) -> None:
        self.collected = Tally()
        self.sampled_out = Tally()
        self.rejected = Tally()


class Pipeline:
    """Everything one running collector needs, built from its config."""

    def __init__(self, config: TelemetryConfig) -> None:
        self._global_tags = dict(config.tags)
        self._settings = QueueSettings(
            config.buffer_size, min(_MAX_BATCH, config.buffer_size), config.flush_interval_ms / 1000
        )
        self._event_rate = float(config.sample_rate)
        self.tallies = {signal: _SignalTally() for signal in SIGNALS}
        self._queues: dict[str, list[DeliveryQueue[Any]]] = {"trace": [], "event": []}
        self._callbacks: list[CallbackDestination] = []
        self._retired: list[CallbackDestination] = []
        resource = build_resource(config)
        self._destinations: list[Destination] = []
        try:
            for endpoint in config.endpoints():
                self._destinations.append(build_destination(endpoint, config))
        except Exception:
            self._close_destinations()
            raise
        self._build_metrics(resource, config.flush_interval_ms)
        self._build_traces_and_logs(resource, config.sample_rate)

    def _build_metrics(self, resource: Resource, interval_ms: int) -> None:
        destinations = self._destinations
        self._metric_exporters = [d.metric_counts for d in destinations if d.metric_counts]
        self._callback_metrics = CallbackMetricExporter(self._global_tags)
        readers: list[MetricReader] = [d.metric_reader for d in destinations if d.metric_reader]
        bridge = PeriodicExportingMetricReader(self._callback_metrics, interval_ms)
        readers.append(bridge)
        self.meter_provider = MeterProvider(
            metric_readers=readers, resource=resource, shutdown_on_exit=False
        )
        meter = self.meter_provider.get_meter(SCOPE_NAME, __version__)
        self._instruments = InstrumentCache(meter)

    def _build_traces_and_logs(self, resource: Resource, rate: float) -> None:
        self._span_processor = QueueSpanProcessor()
        self._log_processor = QueueLogRecordProcessor()
        for destination in self._destinations:
            name = destination.name
            if destination.spans is not None:
                self._add_queue("trace", f"{name}-traces", _span_delivery(destination.spans))
            if destination.logs is not None:
                self._add_queue("event", f"{name}-events", _log_delivery(destination.logs))
        sampler = TraceIdRatioBased(rate)
        limits = SpanLimits()
        self.tracer_provider = TracerProvider(
            sampler=sampler, resource=resource, shutdown_on_exit=False, span_limits=limits
        )
        self.tracer_provider.add_span_processor(self._span_processor)
        self.logger_provider = LoggerProvider(
            resource=resource, shutdown_on_exit=False, meter_provider=self.meter_provider
        )
        self.logger_provider.add_log_record_processor(self._log_processor)
        self._logger = self.logger_provider.get_logger(SCOPE_NAME, __version__)
        scope = InstrumentationScope(SCOPE_NAME, __version__)
        self._spans = SpanFactory(resource, scope, sampler, limits)

    def _add_queue(self, signal: str, name: str, deliver: Callable[[list[Any]], int]) -> None:
        queue = self._settings.make_queue(name, deliver)
        self._queues[signal].append(queue)
        processor = self._span_processor if signal == "trace" else self._log_processor
        processor.add_queue(queue)

    # -- the collecting path: never raises for a valid model --------------------------------

    def record_metric(self, metric: Metric) -> bool:
        """Record a measurement on its instrument; False on a name/type clash."""
        tally = self.tallies["metric"]
        try:
            record = self._instruments.record_method(metric)
            if record is None:
                tally.rejected.increment()
                warn_once(
                    f"clash:{metric.name.lower()}",
                    "metric %r is already registered as another type; dropping %s values",
                    metric.name,
                    metric.metric_type.value,
                )
                return False
            tally.collected.increment()
            record(metric.value, metric.tags)
            return True
        except Exception:
            return self._fail("metric")

    def emit_event(self, event: Event) -> bool:
        """Sample the event, then emit it as a log record; False when sampled out."""
        tally = self.tallies["event"]
        tally.collected.increment()
        rate = self._event_rate
        if rate < 1.0 and random.random() >= rate:
            tally.sampled_out.increment()
            return False
        try:
            self._logger.emit(event_to_log_record(event))
            return True
        except Exception:
            return self._fail("event")

    def emit_trace(self, trace: Trace) -> bool:
        """Hand the trace's finished span to the processors; False when its trace is sampled out."""
        tally = self.tallies["trace"]
        tally.collected.increment()
        try:
            span = self._spans.build(trace)
            if span is None:
                tally.sampled_out.increment()
                return False
            self._span_processor.on_end(span)
            return True
        except Exception:
            return self._fail("trace")

    def _fail(self, signal: str) -> bool:
        # An item that entered the pipeline and then failed is lost for every destination.
        processor = self._span_processor if signal == "trace" else self._log_processor
        for _ in range(1 if signal == "metric" else len(processor.queues)):
            self.tallies[signal].rejected.increment()
        warn_once(f"internal:{signal}", "telemetry_otel could not process a %s", signal)
        return False

    # -- callbacks ---------------------------------------------------------------------------

    def add_callback(self, callback: Callback) -> None:
        """Start feeding a callback with everything collected from now on."""
        destination = CallbackDestination(callback, self._global_tags, self._settings)
        self._callbacks.append(destination)
        self._span_processor.add_queue(destination.traces)
        self._log_processor.add_queue(destination.events)
        self._callback_metrics.set_queues(tuple(d.metrics for d in self._callbacks))

    def remove_callback(self, callback: Callback) -> None:
        """Stop feeding a callback; what it had not received yet is dropped (counted)."""
        destination = next(d for d in self._callbacks if d.callback == callback)
        self._callbacks.remove(destination)
        self._retired.append(destination)
        self._span_processor.remove_queue(destination.traces)
        self._log_processor.remove_queue(destination.events)
        self._callback_metrics.set_queues(tuple(d.metrics for d in self._callbacks))
        for queue in destination.queues():
            queue.close(deadline=time.monotonic())

    # -- flush, shutdown and stats -----------------------------------------------------------

    def _all_queues(self) -> list[DeliveryQueue[Any]]:
        callback_queues = [q for d in (*self._callbacks, *self._retired) for q in d.queues()]
        return [*self._queues["trace"], *self._queues["event"], *callback_queues]

    def flush(self, deadline: float) -> bool:
        """Export everything collected so far; False if the deadline passed or an export failed."""
        failures_before = self._metric_failures()
        metrics_ok = self._flush_metric_readers(deadline)
        queues_ok = all([queue.flush(deadline) for queue in self._all_queues()])
        return metrics_ok and queues_ok and self._metric_failures() == failures_before

    def _flush_metric_readers(self, deadline: float) -> bool:
        try:
            remaining_ms = max(0.0, deadline - time.monotonic()) * 1000
            return bool(self.meter_provider.force_flush(timeout_millis=remaining_ms))
        except Exception:
            return False

    def _metric_failures(self) -> int:
        return sum(e.counts().export_failures for e in self._metric_exporters)

    def shutdown(self, deadline: float) -> bool:
        """Export what is left (metrics get a last collection), then release every exporter."""
        remaining_ms = max(0.0, deadline - time.monotonic()) * 1000
        try:
            self.meter_provider.shutdown(timeout_millis=remaining_ms)
        except Exception:
            warn_once("shutdown:metrics", "metric readers did not shut down cleanly")
        flushed = all([queue.close(deadline) for queue in self._all_queues()])
        self._close_destinations()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        return flushed

    def _close_destinations(self) -> None:
        for destination in self._destinations:
            try:
                destination.close()
            except Exception:
                warn_once(f"close:{destination.name}", "could not close %s", destination.name)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-signal counts, summed over destinations (see TelemetryCollector.stats)."""
        callbacks = (*self._callbacks, *self._retired)
        destinations: dict[str, list[DeliveryCounts]] = {
            "trace": [q.counts() for q in (*self._queues["trace"], *(d.traces for d in callbacks))],
            "event": [q.counts() for q in (*self._queues["event"], *(d.events for d in callbacks))],
            "metric": [
                *(e.counts() for e in self._metric_exporters),
                *(d.metrics.counts() for d in callbacks),
            ],
        }
        return {signal: self._signal_stats(signal, destinations[signal]) for signal in SIGNALS}

    def _signal_stats(self, signal: str, counts: list[DeliveryCounts]) -> dict[str, int]:
        tally = self.tallies[signal]
        return {
            "collected": tally.collected.value,
            "sampled_out": tally.sampled_out.value,
            "dropped": tally.rejected.value + sum(c.dropped for c in counts),
            "exported": sum(c.exported for c in counts),
            "export_failures": sum(c.export_failures for c in counts),
            "pending": sum(c.pending for c in counts),
        }
