"""The event pipeline: Event items as log records, sampled, to every destination's queue."""

from __future__ import annotations

import random
from collections.abc import Callable

from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry_otel._otel.delivery.processors import QueueLogRecordProcessor
from telemetry_otel._otel.mapping.logs import event_to_log_record
from telemetry_otel._otel.sampling.probability import (
    WITH_TRACE,
    current_span_context,
    kept_probability,
)
from telemetry_otel._otel.signals.common import (
    SCOPE_NAME,
    ItemPipeline,
    Shared,
    enabled_by_the_collector,
    or_default,
)
from telemetry_otel._version import __version__
from telemetry_otel.models import Event, EventSeverity


class EventPipeline(ItemPipeline):
    """The logger provider (the collector's own, or the application's when joined), its
    processor, one queue per destination, and the sampling of events."""

    signal = "event"
    provider: LoggerProvider

    def __init__(
        self, shared: Shared, joined: LoggerProvider | None, meter_provider: MeterProvider
    ) -> None:
        config = shared.config
        self.processor: QueueLogRecordProcessor = QueueLogRecordProcessor(
            only_scope=SCOPE_NAME if joined else None
        )
        super().__init__(shared, joined, self.processor)
        self._shaper = shared.shaper
        self._rate = float(or_default(config.event_sample_rate, config.sample_rate))
        self._follow_traces = config.events_follow_traces
        keep = config.event_keep_severity
        # By identity, as the collect path looks severities up.
        self._always_kept_severities = frozenset(
            id(s)
            for s in EventSeverity
            if keep is not None and s.severity_number >= keep.severity_number
        )
        # Every limit given, as for spans: the SDK would read a malformed variable and raise.
        length = config.max_attribute_length
        length_limit = LogRecordLimits.UNSET if length is None else length
        limits = LogRecordLimits(
            max_attributes=config.max_attributes,
            max_attribute_length=length_limit,
            max_log_record_attributes=config.max_attributes,
            max_log_record_attribute_length=length_limit,
        )
        self.provider = joined or enabled_by_the_collector(
            LoggerProvider(
                resource=shared.resource,
                shutdown_on_exit=False,
                meter_provider=meter_provider,
                log_record_limits=limits,
            )
        )
        self.provider.add_log_record_processor(self.processor)
        self._logger = self.provider.get_logger(SCOPE_NAME, __version__)
        # Events skip Logger.emit on the collector's own provider: the Shaper already
        # did what its second pass over the attributes would do. On a joined
        # provider they go through all of the application's processors.
        self._emit_record: Callable[[LogRecord], None] = (
            self._logger.emit if joined else self._readable_record_emitter(shared.resource, limits)
        )

    def _readable_record_emitter(
        self, resource: Resource, limits: LogRecordLimits
    ) -> Callable[[LogRecord], None]:
        scope = InstrumentationScope(SCOPE_NAME, __version__)
        submit = self.processor.submit
        new_readable = ReadableLogRecord.__new__

        def emit(record: LogRecord) -> None:
            # What ReadableLogRecord(log_record=record, ...) builds: a frozen dataclass's
            # __init__ pays an object.__setattr__ per field, on every event.
            readable = new_readable(ReadableLogRecord)
            readable.__dict__.update(
                log_record=record, resource=resource, instrumentation_scope=scope, limits=limits
            )
            submit(readable)

        return emit

    # -- the collecting path: never raises for a valid model --------------------------------

    def collect(self, event: Event) -> bool:
        """Sample the event, then emit it as a log record; False when sampled out."""
        tally = self._tally
        tally.collected.increment()
        always_kept = id(event.severity) in self._always_kept_severities
        if self._follow_traces and not always_kept:
            span_context = current_span_context()
            if span_context is not None:  # inside a live span: its trace decides
                if not span_context.trace_flags.sampled:
                    tally.sampled_out[WITH_TRACE].increment()
                    return False
                return self._emit(event, kept_probability(span_context))
        probability = self._rate
        if probability < 1.0:
            if always_kept:
                probability = 1.0
            elif random.random() >= probability:
                tally.sampled_out_by_ratio.increment()
                return False
        return self._emit(event, probability)

    def _emit(self, event: Event, probability: float | None) -> bool:
        try:
            record, limited = event_to_log_record(event, self._shaper, probability)
            if limited:
                self._tally.limited.increment()
            self._emit_record(record)
            return True
        except Exception:
            return self.fail()
