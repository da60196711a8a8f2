"""The sampler of live spans: the SDK's composite samplers, with two fixes."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Link,
    SpanKind,
    TraceState,
    get_current_span,
)
from opentelemetry.util.types import Attributes

from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._otel.runtime.sdk import composable_samplers
from telemetry_otel._otel.sampling.probability import (
    MAX_THRESHOLD,
    PROBABILITY,
    calculate_threshold,
)

composable: ModuleType | None = composable_samplers()


def live_span_sampler(rate: float) -> Sampler:
    """Parent-based consistent sampling for live spans: a parent's decision (and its
    ``th``) is respected, a root is kept at ``rate``; kept spans carry the probability."""
    if composable is None:
        warn_limited(
            "sampling:composable",
            "this OpenTelemetry SDK has no composite samplers: live spans are sampled "
            "by ParentBased(TraceIdRatioBased) and carry no sampling threshold",
        )
        return ParentBased(TraceIdRatioBased(rate))
    root = composable.composable_traceid_ratio_based(rate)
    with_probability = _WithProbability(composable.composable_parent_threshold(root), rate)
    return _CompositeSamplerFixes(composable.composite_sampler(with_probability))


class _WithProbability:
    """A composable sampler that adds ``sampling.probability`` where the threshold is
    reliable (the composite sampler then also writes ``th``)."""

    def __init__(self, delegate: Any, rate: float) -> None:
        self._delegate = delegate
        # The root threshold's probability is the configured rate, as given.
        self._probabilities = {calculate_threshold(rate): rate}

    def sampling_intent(
        self,
        parent_ctx: Context | None,
        name: str,
        span_kind: SpanKind | None,
        attributes: Attributes,
        links: Sequence[Link] | None,
        trace_state: TraceState | None,
    ) -> Any:
        intent = self._delegate.sampling_intent(
            parent_ctx, name, span_kind, attributes, links, trace_state
        )
        threshold = intent.threshold
        if not (intent.threshold_reliable and 0 <= threshold <= MAX_THRESHOLD):
            return intent
        probability = self._probabilities.get(threshold)
        if probability is None:
            probability = (MAX_THRESHOLD - threshold) / MAX_THRESHOLD
        assert composable is not None  # only built when it is there
        return composable.SamplingIntent(
            threshold, True, {PROBABILITY: probability}, intent.update_trace_state
        )

    def get_description(self) -> str:
        return f"WithProbability{{{self._delegate.get_description()}}}"


class _CompositeSamplerFixes(Sampler):
    """The SDK's composite sampler, given what SDK 1.45 leaves out.

    ``Tracer.start_span`` never passes ``trace_state`` to its sampler
    (opentelemetry-python#5578), so the composite sampler could not see a parent's
    ``th`` and would drop it from every child: this hands it the parent's. And the
    Tracer gives a span only the attributes its sampler returns, while the composite
    sampler returns only its own: this adds back the ones the span started with.
    """

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if trace_state is None:
            parent = get_current_span(parent_context).get_span_context()
            if parent.is_valid:
                trace_state = parent.trace_state
        result = self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if not attributes:
            return result
        return SamplingResult(
            result.decision, {**attributes, **result.attributes}, result.trace_state
        )

    def get_description(self) -> str:
        return self._delegate.get_description()
