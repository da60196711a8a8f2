"""Consistent probability: thresholds, ``th``, the labels of kept spans, the current span."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from opentelemetry.trace import (
    Span,
    SpanContext,
    TraceState,
    get_current_span,
)

from telemetry_otel._otel.runtime.sdk import current_context_getter, span_key

_SPAN_KEY = span_key()
_current_context = current_context_getter()


PROBABILITY = "sampling.probability"
KEPT_BY = "sampling.kept_by"
# On the spans a rule kept after the rest of their trace had been dropped.
INCOMPLETE = "sampling.incomplete"
SAMPLING_KEYS = frozenset((PROBABILITY, KEPT_BY, INCOMPLETE))
# The specification's 56-bit randomness and threshold (the same formulas as the SDK's
# composable samplers, whose helpers are private; a test checks they agree).
MAX_THRESHOLD = 1 << 56  # rejects everything: probability 0
RANDOMNESS = MAX_THRESHOLD - 1  # the low 56 bits of a trace id


def calculate_threshold(probability: float) -> int:
    """The rejection threshold for keeping a trace at ``probability``."""
    return MAX_THRESHOLD - round(probability * MAX_THRESHOLD)


def serialize_th(threshold: int) -> str:
    """``th`` as the tracestate carries it: 14 hex digits without trailing zeros."""
    return f"{threshold:014x}".rstrip("0") or "0"


# Why an item was sampled out, as stats() names it; WITH_TRACE: an event in a live span
# whose trace was sampled out.
RATIO, RATE_LIMIT, BUFFER_OVERFLOW = "ratio", "rate_limit", "buffer_overflow"
WITH_TRACE = "with_trace"
OUT_REASONS = (RATIO, RATE_LIMIT, BUFFER_OVERFLOW, WITH_TRACE)


class Label:
    """What every kept span of a trace carries: the probability it was kept with, as
    the ``ot=th:`` tracestate and as attributes (with the tail rule that kept it)."""

    __slots__ = ("attributes", "probability", "threshold", "trace_state")

    def __init__(
        self, probability: float, kept_by: str | None = None, incomplete: bool = False
    ) -> None:
        self.probability = probability
        self.threshold = calculate_threshold(probability)
        self.trace_state = TraceState([("ot", f"th:{serialize_th(self.threshold)}")])
        self.attributes: dict[str, Any] = {PROBABILITY: probability}
        if kept_by is not None:
            self.attributes[KEPT_BY] = kept_by
        if incomplete:
            self.attributes[INCOMPLETE] = True


# A handful of probabilities come back all the time (the configured rates, and the
# limiter's scaled ones); each label is built once.
label = lru_cache(maxsize=256)(Label)


def keeps(threshold: int, trace_id: int) -> bool:
    """The consistent-probability decision: randomness at or above the threshold."""
    return trace_id & RANDOMNESS >= threshold


def current_span_context() -> SpanContext | None:
    """The context of the current span (live, or remote from an attached context), or
    None outside any: ``get_current_span()``, a third of its cost on the event path.
    Reads the key the API stores the span under; if a release moves it, the public
    function is used."""
    if _SPAN_KEY is None:  # pragma: no cover - depends on the installed API
        span_context = get_current_span().get_span_context()
        return span_context if span_context.is_valid else None
    span = _current_context().get(_SPAN_KEY)
    if span is None or not isinstance(span, Span):  # None first: Span is an ABC, slow
        return None
    span_context = span.get_span_context()
    return span_context if span_context.is_valid else None


def kept_probability(span_context: SpanContext) -> float | None:
    """The probability a sampled span's trace was kept with, from the ``th`` of its
    tracestate; None when it does not say (a parent that sampled without ``th``)."""
    ot = span_context.trace_state.get("ot")
    return None if ot is None else _probability_in(ot)


@lru_cache(maxsize=256)
def _probability_in(ot: str) -> float | None:
    for entry in ot.split(";"):
        key, _, value = entry.partition(":")
        if key == "th":
            if not 0 < len(value) <= 14 or value.strip("0123456789abcdef"):
                return None
            threshold = int(value.ljust(14, "0"), 16)
            return (MAX_THRESHOLD - threshold) / MAX_THRESHOLD
    return None
