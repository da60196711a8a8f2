"""The OpenTelemetry pipeline behind one collector: resource, providers, destinations."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, TypeVar

from opentelemetry._logs import LogRecord
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.accounting import (
    SELF_SCOPE,
    SIGNALS,
    Accounting,
    Stats,
    register_self_metrics,
)
from telemetry_otel._otel.bridge import (
    Callback,
    CallbackDestination,
    CallbackMetricExporter,
    QueueSettings,
)
from telemetry_otel._otel.delivery import (
    SHUTDOWN,
    UNREGISTERED,
    DeliveryQueue,
    begin_flush_all,
    close_all,
    flush_all,
)
from telemetry_otel._otel.exporters import Destination, build_destination, cardinality_limits
from telemetry_otel._otel.forks import follow_forks
from telemetry_otel._otel.ids import otel_trace_id
from telemetry_otel._otel.log import warn_limited
from telemetry_otel._otel.logs import event_to_log_record
from telemetry_otel._otel.metrics import InstrumentCache, instrument_name
from telemetry_otel._otel.otlp_delivery import OtlpDelivery
from telemetry_otel._otel.processors import (
    LiveSpanCounter,
    QueueLogRecordProcessor,
    QueueSpanProcessor,
)
from telemetry_otel._otel.providers import global_sdk_provider
from telemetry_otel._otel.resource import build_resource
from telemetry_otel._otel.sampling import (
    WITH_TRACE,
    Label,
    RateLimiter,
    TailRules,
    TraceDecider,
    current_span_context,
    kept_probability,
    live_span_sampler,
)
from telemetry_otel._otel.spans import SpanFactory
from telemetry_otel._otel.spool import Spool, open_spool
from telemetry_otel._otel.threads import run_all_until, run_until
from telemetry_otel._shaping import Shaper
from telemetry_otel._version import __version__
from telemetry_otel.config import TelemetryConfig
from telemetry_otel.models import Event, EventSeverity, Metric, MetricType, Trace

__all__ = ["SIGNALS", "Pipeline"]

SCOPE_NAME = "telemetry_otel"
# Largest batch an export carries, as the SDK's batch processors default to.
_MAX_BATCH = 512
_MAX_SPOOL_RESERVE_S = 1.0
_NOWHERE_CHECK_S = 1.0
_OTLP_SIGNALS = {"trace": "traces", "metric": "metrics", "event": "logs"}


P = TypeVar("P")


def enabled_by_the_collector(provider: P) -> P:
    """A provider of the collector's own that does not read ``OTEL_SDK_DISABLED`` again.

    The SDK's providers read the variable when they are built and then hand out no-op
    tracers, meters or loggers. The collector has decided already: the variable turns
    it off before any provider is built, and a collector the application built from
    ``with_env({})`` (the test fixture) ignores it. Left to the SDK, the variable would
    silently empty one signal of a running collector. ``_disabled`` is private (SDK
    1.45's three providers); without it there is nothing to undo.
    """
    if getattr(provider, "_disabled", False):
        provider._disabled = False  # type: ignore[attr-defined]
    return provider


def _exporter_delivery(
    exporter: SpanExporter | LogRecordExporter,
) -> Callable[[list[Any]], int]:
    """An SDK exporter (console, file) as a queue's delivery: all or nothing."""

    def export(batch: list[Any]) -> int:
        result = exporter.export(batch)
        ok = result in (SpanExportResult.SUCCESS, LogRecordExportResult.SUCCESS)
        return len(batch) if ok else 0

    return export


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class Pipeline:
    """Everything one running collector needs, built from its config."""

    def __init__(self, config: TelemetryConfig) -> None:
        self._config = config
        self._settings = QueueSettings(
            config.buffer_size, min(_MAX_BATCH, config.buffer_size), config.flush_interval_ms / 1000
        )
        self._event_rate = float(_or(config.event_sample_rate, config.sample_rate))
        self._events_follow_traces = config.events_follow_traces
        keep = config.event_keep_severity
        # By identity, as the collect path looks severities up.
        self._always_kept_severities = frozenset(
            id(s)
            for s in EventSeverity
            if keep is not None and s.severity_number >= keep.severity_number
        )
        self._shaper = Shaper(
            config.redact, config.redact_keys, config.max_attributes, config.max_attribute_length
        )
        self.accounting = Accounting()
        self._trace_tally = self.accounting.tallies["trace"]
        self._event_tally = self.accounting.tallies["event"]
        # What callbacks get back as global tags: redacted like everything else.
        self._global_tags = dict(self._shaper.attributes(config.tags)[0])
        self._queues: dict[str, list[DeliveryQueue[Any]]] = {"trace": [], "event": []}
        self._callbacks: list[CallbackDestination] = []
        self._retired: list[CallbackDestination] = []
        self._destinations: list[Destination] = []
        self._global = {
            signal: global_sdk_provider(signal) if config.use_global_providers else None
            for signal in SIGNALS
        }
        own = [signal for signal in SIGNALS if self._global[signal] is None]
        if config.use_global_providers and config.endpoints() and own:
            # Half an OTel setup (often a TracerProvider alone): what it does not cover
            # goes through the collector's own providers, to the endpoints.
            warn_limited(
                "global:endpoints",
                "use_global_providers: %ss go through the "
                "collector's own providers to export_endpoints; everything else "
                "through the application's",
                "s, ".join(own),
            )
        elif config.use_global_providers and config.endpoints():
            warn_limited(
                "global:endpoints",
                "use_global_providers: export_endpoints are "
                "ignored; the application's exporters send everything",
            )
        if own:
            self._build_destinations(config)
        self._spool: Spool | None = None
        self._otlp_deliveries: list[OtlpDelivery] = []
        self._metric_readers: list[MetricReader] = []
        try:
            resource = build_resource(config, self._shaper)
            self._build_metrics(resource, config)
            if config.spool_dir:
                self._spool = open_spool(config.spool_dir, config.spool_max_bytes)
            self._spool_unavailable = bool(config.spool_dir) and self._spool is None
            self._build_traces(resource, config)
            self._build_logs(resource, config)
        except BaseException:
            self._abandon()
            raise
        self._nowhere_timer = self._start_nowhere_check(config)
        follow_forks(self)

    def _start_nowhere_check(self, config: TelemetryConfig) -> threading.Timer | None:
        """Without an endpoint, check a second from now that a callback was registered.

        Not at start() itself: the legacy quick start registers its callback just after.
        """
        if self._destinations or config.use_global_providers:
            return None
        timer = threading.Timer(_NOWHERE_CHECK_S, self._warn_if_exported_nowhere)
        timer.daemon = True
        with contextlib.suppress(RuntimeError):  # interpreter shutdown (3.12+)
            timer.start()
        return timer

    def _warn_if_exported_nowhere(self) -> None:
        if self._destinations or self._callbacks or self._retired:
            return
        warn_limited(
            "nowhere",
            "telemetry_otel: nothing is exported: no export_endpoints, no "
            "OTEL_EXPORTER_OTLP_ENDPOINT and no callback, so everything collected is "
            "discarded; set export_endpoints (or TELEMETRY_EXPORT_ENDPOINTS, e.g. "
            "'console') or call register_exporter()",
        )

    def _abandon(self) -> None:
        """Undo a half-built pipeline: a failed start leaves no thread, file or reader
        running. Each step covers only what the build got to."""
        for reader in self._metric_readers:
            with contextlib.suppress(Exception):
                reader.shutdown(timeout_millis=100)
        for queue in self._item_queues():
            with contextlib.suppress(Exception):
                queue.close(time.monotonic())
        for delivery in self._otlp_deliveries:
            with contextlib.suppress(Exception):
                delivery.close()
        self._close_destinations()
        decider = getattr(self, "_decider", None)
        for closer in (self._spool.close if self._spool else None, decider and decider.close):
            if closer:
                with contextlib.suppress(Exception):
                    closer()

    def _build_destinations(self, config: TelemetryConfig) -> None:
        """One destination per endpoint, for the signals it takes that go through the
        collector's own providers (with use_global_providers, the application's
        exporters send the others)."""
        joined = {_OTLP_SIGNALS[s] for s in SIGNALS if self._global[s] is not None}
        try:
            for endpoint in config.endpoints():
                if endpoint.signals - joined:
                    endpoint = replace(endpoint, signals=endpoint.signals - joined)
                    self._destinations.append(build_destination(endpoint, config))
        except Exception:
            self._close_destinations()
            raise

    def _build_metrics(self, resource: Resource, config: TelemetryConfig) -> None:
        destinations = self._destinations
        self._metric_exporters = [d.metric_counts for d in destinations if d.metric_counts]
        self._metric_failures_seen = 0
        self._callback_metrics = CallbackMetricExporter(self._global_tags)
        # The callback bridge's reader, attached only while a callback is registered:
        # each reader costs every measurement an aggregation of its own.
        self._bridge_reader: MetricReader | None = None
        joined: MeterProvider | None = self._global["metric"]
        if joined is not None:
            # An existing MeterProvider takes no more readers: no metrics for callbacks.
            self.meter_provider = joined
        else:
            self._metric_readers = [d.metric_reader for d in destinations if d.metric_reader]
            self.meter_provider = enabled_by_the_collector(
                MeterProvider(
                    metric_readers=self._metric_readers, resource=resource, shutdown_on_exit=False
                )
            )
        meter = self.meter_provider.get_meter(SCOPE_NAME, __version__)
        self._instruments = InstrumentCache(
            self.meter_provider, meter, self._shaper, config.max_metric_series
        )
        if config.self_metrics:
            register_self_metrics(
                self.meter_provider.get_meter(SELF_SCOPE, __version__), self.stats
            )

    def _attach_bridge_reader(self) -> None:
        if self._bridge_reader is None and self._global["metric"] is None:
            self._callback_metrics.resume()
            self._bridge_reader = PeriodicExportingMetricReader(
                self._callback_metrics,
                self._config.flush_interval_ms,
                cardinality_limits=cardinality_limits(self._config),
            )
            self.meter_provider.add_metric_reader(self._bridge_reader)

    def _detach_bridge_reader(self, timeout_millis: float = 30_000) -> None:
        """Shut the reader down, which exports what it holds to the callbacks' queues,
        then stop feeding it.

        Not MeterProvider.remove_metric_reader alone: it drops the reader's storage
        before shutting the reader down, and the reader's last collection then fails
        (SDK 1.45); called after shutdown, it would warn of a second shutdown.
        """
        reader, self._bridge_reader = self._bridge_reader, None
        if reader is None:
            return
        reader.shutdown(timeout_millis=timeout_millis)
        consumer: Any = getattr(self.meter_provider, "_measurement_consumer", None)
        if hasattr(consumer, "remove_metric_reader"):
            consumer.remove_metric_reader(reader)
        else:
            self.meter_provider.remove_metric_reader(reader)

    def _build_traces(self, resource: Resource, config: TelemetryConfig) -> None:
        joined: TracerProvider | None = self._global["trace"]
        self._span_processor = QueueSpanProcessor(only_scope=SCOPE_NAME if joined else None)
        self._add_queues("trace")
        rate = float(_or(config.trace_sample_rate, config.sample_rate))
        if joined is None:
            sampler: Sampler = live_span_sampler(rate)
            limits = SpanLimits(
                max_span_attributes=config.max_attributes,
                max_span_attribute_length=config.max_attribute_length,
            )
            provider = enabled_by_the_collector(
                TracerProvider(
                    sampler=sampler, resource=resource, shutdown_on_exit=False, span_limits=limits
                )
            )
        else:
            provider, sampler, limits = joined, joined.sampler, joined._span_limits
        self.tracer_provider = provider
        scope = InstrumentationScope(SCOPE_NAME, __version__)
        count = self.accounting.tallies["trace"].collected.increment
        self._live_counter = LiveSpanCounter(count, SCOPE_NAME, legacy_scope=scope)
        provider.add_span_processor(self._live_counter)
        provider.add_span_processor(self._span_processor)
        # Legacy spans skip the provider's start/end machinery; on a joined provider
        # they still go through all of the application's processors.
        self._span_sink = (
            self._span_processor.submit if joined is None else joined._active_span_processor.on_end
        )
        self._spans = SpanFactory(
            provider.resource,
            scope,
            limits,
            self._shaper,
            rate=rate,
            sampler=None if joined is None else sampler,
        )
        self._decider = self._trace_decider(rate, config) if joined is None else None
        self.tracer = provider.get_tracer(SCOPE_NAME, __version__)

    def _trace_decider(self, rate: float, config: TelemetryConfig) -> TraceDecider | None:
        """Legacy traces are decided one span at a time by the span factory, unless a
        rate limit or tail rules that can change a decision need a trace's history."""
        rules = TailRules(config.keep_error_traces, config.keep_traces_slower_than_ms)
        hold = rules.active and rate < 1.0
        per_second = config.max_traces_per_second
        if not hold and per_second is None:
            return None

        def sample_out(reason: str, count: int) -> None:
            increment = self.accounting.tallies["trace"].sampled_out[reason].increment
            for _ in range(count):
                increment()

        return TraceDecider(
            rate,
            rules,
            None if per_second is None else RateLimiter(per_second, time.monotonic),
            hold=hold,
            wait_s=config.trace_decision_wait_ms / 1000,
            max_pending=config.max_pending_spans,
            keep=self._keep_spans,
            sample_out=sample_out,
        )

    def _keep_spans(self, traces: Sequence[Trace], label: Label) -> None:
        """Build and hand on the spans of a trace the decider kept."""
        tally = self._trace_tally
        for trace in traces:
            try:
                span, limited = self._spans.build_kept(trace, label)
                if limited:
                    tally.limited.increment()
                self._span_sink(span)
            except Exception:
                self._fail("trace")

    def _build_logs(self, resource: Resource, config: TelemetryConfig) -> None:
        joined: LoggerProvider | None = self._global["event"]
        self._log_processor = QueueLogRecordProcessor(only_scope=SCOPE_NAME if joined else None)
        self._add_queues("event")
        limits = LogRecordLimits(
            max_attributes=config.max_attributes, max_attribute_length=config.max_attribute_length
        )
        self.logger_provider = joined or enabled_by_the_collector(
            LoggerProvider(
                resource=resource,
                shutdown_on_exit=False,
                meter_provider=self.meter_provider,
                log_record_limits=limits,
            )
        )
        self.logger_provider.add_log_record_processor(self._log_processor)
        self._logger = self.logger_provider.get_logger(SCOPE_NAME, __version__)
        # Events skip Logger.emit on the collector's own provider: the Shaper already
        # did what its second pass over the attributes would do. On a joined
        # provider they go through all of the application's processors.
        self._emit_record: Callable[[LogRecord], None] = (
            self._logger.emit if joined else self._readable_record_emitter(resource, limits)
        )

    def _readable_record_emitter(
        self, resource: Resource, limits: LogRecordLimits
    ) -> Callable[[LogRecord], None]:
        scope = InstrumentationScope(SCOPE_NAME, __version__)
        submit = self._log_processor.submit

        def emit(record: LogRecord) -> None:
            submit(
                ReadableLogRecord(
                    log_record=record, resource=resource, instrumentation_scope=scope, limits=limits
                )
            )

        return emit

    def _add_queues(self, signal: str) -> None:
        """One delivery queue per destination that takes this signal; none when the
        signal goes through the application's provider, whose exporters send it."""
        if self._global[signal] is not None:
            return
        for destination in self._destinations:
            self._add_destination_queue(destination, signal)

    def _add_destination_queue(self, destination: Destination, signal: str) -> None:
        otlp_signal = "traces" if signal == "trace" else "logs"
        name = f"{destination.name}-{otlp_signal}"
        targets = destination.otlp_targets
        if targets is not None:
            if otlp_signal not in targets:  # the endpoint does not take this signal
                return
            queue = self._otlp_queue(name, destination.name, otlp_signal, targets)
        else:
            exporter = destination.spans if signal == "trace" else destination.logs
            if exporter is None:
                return
            delivery = _exporter_delivery(exporter)
            queue = self._settings.make_queue(name, delivery, immediate=destination.immediate)
        self._queues[signal].append(queue)
        processor = self._span_processor if signal == "trace" else self._log_processor
        processor.add_queue(queue)

    def _otlp_queue(
        self, name: str, destination: str, signal: str, targets: Mapping[str, OtlpTarget]
    ) -> DeliveryQueue[Any]:
        delivery = OtlpDelivery(
            destination,
            signal,
            targets[signal],
            self._config.max_export_batch_bytes,
            self._spool,
        )
        spooler = delivery if self._spool is not None else None
        queue = self._settings.make_queue(name, delivery.deliver, spooler=spooler)
        delivery.attach(queue)
        self._otlp_deliveries.append(delivery)
        return queue

    # -- the collecting path: never raises for a valid model --------------------------------

    def record_metric(self, metric: Metric) -> bool:
        """Record a measurement on its instrument; False on a name/type clash or a
        negative histogram value (which OpenTelemetry histograms do not take)."""
        tally = self.accounting.tallies["metric"]
        try:
            recorder = self._instruments.recorder(metric)
            if recorder is None:
                return self._reject_metric(
                    f"clash:{metric.name.lower()}",
                    "metric %r (instrument %r) is already registered as another type; "
                    "dropping %s values",
                    metric.name,
                    instrument_name(metric.name),
                    metric.metric_type.value,
                )
            if metric.value < 0 and metric.metric_type is MetricType.HISTOGRAM:
                return self._reject_metric(
                    f"negative:{metric.name.lower()}",
                    "histogram %r takes no negative values; dropping %r",
                    metric.name,
                    metric.value,
                )
            tally.collected.increment()
            if recorder.record(metric.value, metric.tags):
                tally.limited.increment()
            return True
        except Exception:
            return self._fail("metric")

    def _reject_metric(self, reason: str, message: str, *args: object) -> bool:
        self.accounting.tallies["metric"].rejected.increment()
        warn_limited(reason, message, *args)
        return False

    def emit_event(self, event: Event) -> bool:
        """Sample the event, then emit it as a log record; False when sampled out."""
        tally = self._event_tally
        tally.collected.increment()
        always_kept = id(event.severity) in self._always_kept_severities
        if self._events_follow_traces and not always_kept:
            span_context = current_span_context()
            if span_context is not None:  # inside a live span: its trace decides
                if not span_context.trace_flags.sampled:
                    tally.sampled_out[WITH_TRACE].increment()
                    return False
                return self._emit_event(event, kept_probability(span_context))
        probability = self._event_rate
        if probability < 1.0:
            if always_kept:
                probability = 1.0
            elif random.random() >= probability:
                tally.sampled_out_by_ratio.increment()
                return False
        return self._emit_event(event, probability)

    def _emit_event(self, event: Event, probability: float | None) -> bool:
        try:
            record, limited = event_to_log_record(event, self._shaper, probability)
            if limited:
                self._event_tally.limited.increment()
            self._emit_record(record)
            return True
        except Exception:
            return self._fail("event")

    def emit_trace(self, trace: Trace) -> bool:
        """Hand the trace's finished span to the processors; False when its trace is sampled out."""
        tally = self._trace_tally
        tally.collected.increment()
        try:
            if self._decider is not None:
                return self._decider.offer(trace, otel_trace_id(trace.trace_id))
            span, limited = self._spans.build(trace)
            if span is None:
                tally.sampled_out_by_ratio.increment()
                return False
            if limited:
                tally.limited.increment()
            self._span_sink(span)
            return True
        except Exception:
            return self._fail("trace")

    def live_span(
        self, name: str, tags: Mapping[str, Any], parent: Context | None
    ) -> AbstractContextManager[Span]:
        """A real span, current while the block runs (see LiveSpan)."""
        attributes, _ = self._shaper.attributes(tags)
        span_name, _ = self._shaper.text(name)
        return self.tracer.start_as_current_span(
            span_name,
            context=parent,
            attributes=dict(attributes),
            record_exception=True,
            set_status_on_exception=True,
        )

    def _fail(self, signal: str) -> bool:
        # An item that entered the pipeline and then failed is lost for every destination.
        processor = self._span_processor if signal == "trace" else self._log_processor
        for _ in range(1 if signal == "metric" else len(processor.queues)):
            self.accounting.tallies[signal].rejected.increment()
        warn_limited(f"internal:{signal}", "telemetry_otel could not process a %s", signal)
        return False

    # -- callbacks ---------------------------------------------------------------------------

    def add_callback(self, callback: Callback) -> None:
        """Start feeding a callback with everything collected from now on."""
        destination = CallbackDestination(callback, self._global_tags, self._settings)
        self._callbacks.append(destination)
        self._span_processor.add_queue(destination.traces)
        self._log_processor.add_queue(destination.events)
        self._callback_metrics.set_queues(tuple(d.metrics for d in self._callbacks))
        self._attach_bridge_reader()

    def remove_callback(self, callback: Callback) -> None:
        """Stop feeding a callback; what it had not received yet is dropped (counted)."""
        destination = next(d for d in self._callbacks if d.callback == callback)
        if len(self._callbacks) == 1:
            self._detach_bridge_reader()
        self._callbacks.remove(destination)
        self._retired.append(destination)
        self._span_processor.remove_queue(destination.traces)
        self._log_processor.remove_queue(destination.events)
        self._callback_metrics.set_queues(tuple(d.metrics for d in self._callbacks))
        for queue in destination.queues():
            queue.close(deadline=time.monotonic(), reason=UNREGISTERED)

    # -- flush and shutdown ------------------------------------------------------------------

    def _item_queues(self) -> list[DeliveryQueue[Any]]:
        """Every trace and event queue, the callbacks' included."""
        callbacks = (*self._callbacks, *self._retired)
        callback_queues = [q for d in callbacks for q in (d.traces, d.events)]
        return [*self._queues["trace"], *self._queues["event"], *callback_queues]

    def _callback_metric_queues(self) -> list[DeliveryQueue[Any]]:
        return [d.metrics for d in (*self._callbacks, *self._retired)]

    def flush(self, deadline: float) -> bool:
        """Export everything collected so far, to every destination side by side.

        False if the deadline passed, or anything was lost since the last flush.
        """
        if self._decider is not None:
            self._decider.decide_all()
        items_flushed = begin_flush_all(self._item_queues())
        failed: list[str] = []
        works = self._metric_works(deadline, failed, shutdown=False)
        readers_ok = run_all_until(deadline, works) and not failed
        queues_ok = items_flushed(deadline)
        failures = self._metric_failures()
        metrics_ok = readers_ok and failures == self._metric_failures_seen
        self._metric_failures_seen = failures
        return metrics_ok and queues_ok

    def shutdown(self, deadline: float) -> bool:
        """Export what is left within the deadline, whatever the endpoints do.

        Every destination drains side by side, so a dead one costs only its own
        queue. What is still queued at the deadline is spooled or dropped
        (counted), and exporters still busy then are left to finish in their
        daemon threads. Joined global providers are flushed, not shut down: they
        belong to the application.
        """
        self._live_counter.enabled = False
        if self._nowhere_timer is not None:
            self._nowhere_timer.cancel()
            if any(t.collected.value for t in self.accounting.tallies.values()):
                self._warn_if_exported_nowhere()
        if self._decider is not None:
            self._decider.close()
        queues = self._item_queues()
        items_drained = begin_flush_all(queues)
        failed: list[str] = []
        send_until = deadline - self._spool_reserve(deadline)
        metrics_done = run_all_until(
            send_until, self._metric_works(send_until, failed, shutdown=True)
        )
        drained = items_drained(send_until)
        self._close_queues(queues, deadline)
        self._span_processor.detach_queues()
        self._log_processor.detach_queues()
        released = run_until(deadline, self._release(deadline), "release")
        return drained and metrics_done and not failed and released

    def _spool_reserve(self, deadline: float) -> float:
        """The end of stop()'s deadline kept for spooling what could not be sent: a
        quarter of what is left, at most a second (none without a spool)."""
        if self._spool is None:
            return 0.0
        return min(_MAX_SPOOL_RESERVE_S, max(0.0, deadline - time.monotonic()) / 4)

    @staticmethod
    def _close_queues(queues: list[DeliveryQueue[Any]], deadline: float) -> None:
        """Close every queue; those that spool share what is left of the deadline
        fairly, each spooling (oldest first) until its share runs out."""
        spooling = [queue for queue in queues if queue.spools]
        for queue in queues:
            if not queue.spools:
                queue.finish_close(SHUTDOWN)
        for index, queue in enumerate(spooling):
            share = max(0.0, deadline - time.monotonic()) / (len(spooling) - index)
            queue.finish_close(SHUTDOWN, time.monotonic() + share)

    def _metric_works(
        self, deadline: float, failed: list[str], *, shutdown: bool
    ) -> dict[str, Callable[[], object]]:
        """Each metric reader's flush (or last collection and shutdown), side by side.

        Not MeterProvider.force_flush/shutdown: they take their readers one after
        another, so a reader stuck on a dead endpoint would cost the others their
        collection; and they reach only the readers the provider was built with,
        not the callbacks' reader.
        """
        works: dict[str, Callable[[], object]] = {
            "callbacks": self._callback_metrics_work(deadline, failed, shutdown=shutdown)
        }
        if self._global["metric"] is not None:
            works["joined"] = self._timed(deadline, self.meter_provider.force_flush, failed)
            return works
        readers = self._metric_readers if shutdown else self._push_readers()
        for i, reader in enumerate(readers):
            step = reader.shutdown if shutdown else reader.force_flush
            works[f"metrics-{i}"] = self._timed(deadline, step, failed)
        return works

    def _callback_metrics_work(
        self, deadline: float, failed: list[str], *, shutdown: bool
    ) -> Callable[[], None]:
        """The callbacks' reader pushes its collection into their metric queues: flush (or
        close) those only once it is done, or its last values would miss them."""

        def run() -> None:
            bridge = self._bridge_reader
            if shutdown:
                self._timed(deadline, self._detach_bridge_reader, failed)()
            elif bridge is not None:
                self._timed(deadline, bridge.force_flush, failed)()
            queues = self._callback_metric_queues()
            done = close_all(queues, deadline) if shutdown else flush_all(queues, deadline)
            if not done:
                failed.append("callbacks")

        return run

    def _push_readers(self) -> list[MetricReader]:
        """The readers that export on their own: a pull reader (Prometheus) is only
        ever collected by its scrapes, or each flush would queue another copy of
        every series for the next scrape."""
        return [r for r in self._metric_readers if isinstance(r, PeriodicExportingMetricReader)]

    @staticmethod
    def _timed(
        deadline: float, call: Callable[..., object], failed: list[str]
    ) -> Callable[[], None]:
        """``call(timeout_millis=<what is left>)``, raising nothing: the SDK raises when a
        reader timed out (noted in ``failed``), and run_all_until tells a late one by
        its thread."""

        def run() -> None:
            try:
                if call(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000) is False:
                    raise TimeoutError
            except Exception:
                failed.append(getattr(call, "__qualname__", "metrics"))
                warn_limited("metrics:timeout", "a metric reader did not finish in time")

        return run

    def _metric_failures(self) -> int:
        return sum(e.counts().export_failures for e in self._metric_exporters)

    def _release(self, deadline: float) -> Callable[[], None]:
        def release() -> None:
            self._close_destinations()
            for delivery in self._otlp_deliveries:
                delivery.close()
            if self._spool is not None:
                self._spool.close()
            for signal, provider in (
                ("trace", self.tracer_provider),
                ("event", self.logger_provider),
            ):
                if self._global[signal] is None:
                    provider.shutdown()
                else:
                    remaining_ms = max(0, deadline - time.monotonic()) * 1000
                    provider.force_flush(int(remaining_ms))

        return release

    def _close_destinations(self) -> None:
        for destination in self._destinations:
            try:
                destination.close()
            except Exception:
                warn_limited(f"close:{destination.name}", "could not close %s", destination.name)

    # -- accounting --------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Per-signal counts, summed over destinations (see TelemetryCollector.stats)."""
        callbacks = (*self._callbacks, *self._retired)
        queues = {
            "trace": [*self._queues["trace"], *(d.traces for d in callbacks)],
            "event": [*self._queues["event"], *(d.events for d in callbacks)],
            "metric": [d.metrics for d in callbacks],
        }
        counts = {
            signal: [q.counts() for q in signal_queues] for signal, signal_queues in queues.items()
        }
        counts["metric"] += [e.counts() for e in self._metric_exporters]
        decider = self._decider
        held = (
            {"trace": (decider.pending, decider.kept_by_rule, decider.kept_incomplete)}
            if decider
            else None
        )
        return self.accounting.stats(counts, held, self._spool_unavailable)

    def after_fork_in_child(self) -> None:
        """The span factory must follow the provider's resource, which a fork refreshes."""
        self._spans.resource = self.tracer_provider.resource
