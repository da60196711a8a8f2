"""The trace pipeline: legacy Trace items and live spans, to every destination's queue."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span

from telemetry_otel._env_sdk import span_count_limits
from telemetry_otel._otel.delivery.processors import LiveSpanCounter, QueueSpanProcessor
from telemetry_otel._otel.mapping.ids import otel_trace_id
from telemetry_otel._otel.mapping.spans import SpanFactory
from telemetry_otel._otel.runtime.sdk import span_limits, span_sink
from telemetry_otel._otel.sampling.decider import TailRules, TraceDecider
from telemetry_otel._otel.sampling.live import live_span_sampler
from telemetry_otel._otel.sampling.probability import Label
from telemetry_otel._otel.sampling.rate_limit import RateLimiter
from telemetry_otel._otel.signals.common import (
    SCOPE_NAME,
    ItemPipeline,
    Shared,
    enabled_by_the_collector,
    or_default,
)
from telemetry_otel._version import __version__
from telemetry_otel.config import TelemetryConfig
from telemetry_otel.models import Trace


class TracePipeline(ItemPipeline):
    """The tracer provider (the collector's own, or the application's when joined), its
    processors, one queue per destination, and the sampling of legacy traces."""

    signal = "trace"
    provider: TracerProvider

    def __init__(self, shared: Shared, joined: TracerProvider | None) -> None:
        config = shared.config
        self.processor: QueueSpanProcessor = QueueSpanProcessor(
            only_scope=SCOPE_NAME if joined else None
        )
        super().__init__(shared, joined, self.processor)
        rate = float(or_default(config.trace_sample_rate, config.sample_rate))
        if joined is None:
            sampler: Sampler = live_span_sampler(rate)
            # Every limit given: the SDK reads the one left out from its variable and
            # raises on a malformed value, failing start(); the collector judged them.
            length = config.max_attribute_length
            limits = SpanLimits(
                max_attributes=config.max_attributes,
                max_span_attributes=config.max_attributes,
                max_attribute_length=SpanLimits.UNSET if length is None else length,
                max_span_attribute_length=SpanLimits.UNSET if length is None else length,
                **span_count_limits(config.environ),
            )
            provider = enabled_by_the_collector(
                TracerProvider(
                    sampler=sampler,
                    resource=shared.resource,
                    shutdown_on_exit=False,
                    span_limits=limits,
                )
            )
        else:
            provider, sampler, limits = joined, joined.sampler, span_limits(joined)
        self.provider = provider
        scope = InstrumentationScope(SCOPE_NAME, __version__)
        self._live_counter = LiveSpanCounter(
            self._tally.collected.increment, SCOPE_NAME, legacy_scope=scope
        )
        provider.add_span_processor(self._live_counter)
        provider.add_span_processor(self.processor)
        # Legacy spans skip the provider's start/end machinery; on a joined provider
        # they still go through all of the application's processors.
        self._span_sink = self.processor.submit if joined is None else span_sink(joined)
        self.spans = SpanFactory(
            provider.resource,
            scope,
            limits,
            shared.shaper,
            rate=rate,
            sampler=None if joined is None else sampler,
        )
        self.decider = self._trace_decider(rate, config) if joined is None else None
        self.tracer = provider.get_tracer(SCOPE_NAME, __version__)

    def _trace_decider(self, rate: float, config: TelemetryConfig) -> TraceDecider | None:
        """Legacy traces are decided one span at a time by the span factory, unless a
        rate limit or tail rules that can change a decision need a trace's history."""
        rules = TailRules(config.keep_error_traces, config.keep_traces_slower_than_ms)
        hold = rules.active and rate < 1.0
        per_second = config.max_traces_per_second
        if not hold and per_second is None:
            return None
        sampled_out = self._tally.sampled_out

        def sample_out(reason: str, count: int) -> None:
            increment = sampled_out[reason].increment
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

    # -- the collecting path: never raises for a valid model --------------------------------

    def collect(self, trace: Trace) -> bool:
        """Hand the trace's finished span to the processors; False when its trace is sampled out."""
        tally = self._tally
        tally.collected.increment()
        try:
            if self.decider is not None:
                return self.decider.offer(trace, otel_trace_id(trace.trace_id))
            span, limited = self.spans.build(trace)
            if span is None:
                tally.sampled_out_by_ratio.increment()
                return False
            if limited:
                tally.limited.increment()
            self._span_sink(span)
            return True
        except Exception:
            return self.fail()

    def _keep_spans(self, traces: Sequence[Trace], label: Label) -> None:
        """Build and hand on the spans of a trace the decider kept."""
        tally = self._tally
        for trace in traces:
            try:
                span, limited = self.spans.build_kept(trace, label)
                if limited:
                    tally.limited.increment()
                self._span_sink(span)
            except Exception:
                self.fail()

    def live_span(
        self, name: str, tags: Mapping[str, Any], parent: Context | None
    ) -> AbstractContextManager[Span]:
        """A real span, current while the block runs (see LiveSpan)."""
        shaper = self._shared.shaper
        attributes, _ = shaper.attributes(tags)
        span_name, _ = shaper.text(name)
        return self.tracer.start_as_current_span(
            span_name,
            context=parent,
            attributes=dict(attributes),
            record_exception=True,
            set_status_on_exception=True,
        )

    # -- flush, stop and counts --------------------------------------------------------------

    def held(self) -> tuple[int, int, int]:
        """Spans awaiting their trace's decision, traces kept whole by a rule, traces a
        rule kept the rest of."""
        decider = self.decider
        if decider is None:
            return (0, 0, 0)
        return (decider.pending, decider.kept_by_rule, decider.kept_incomplete)

    def before_flush(self) -> None:
        """Decide every held trace, so that a flush sends them."""
        if self.decider is not None:
            self.decider.decide_all()

    def before_close(self) -> None:
        """Stop counting live spans and decide what the decider holds, for the last time."""
        self._live_counter.enabled = False
        if self.decider is not None:
            self.decider.close()

    def abandon(self) -> None:
        if self.decider is not None:
            self.decider.close()

    def after_fork_in_child(self) -> None:
        """The span factory must follow the provider's resource, which a fork refreshes."""
        self.spans.resource = self.provider.resource
