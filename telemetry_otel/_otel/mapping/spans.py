"""Trace models to finished OpenTelemetry spans, and spans back to Trace models."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from telemetry_otel._otel.mapping.ids import otel_span_id, otel_trace_id
from telemetry_otel._otel.sampling.probability import (
    INCOMPLETE,
    KEPT_BY,
    PROBABILITY,
    RANDOMNESS,
    SAMPLING_KEYS,
    Label,
)
from telemetry_otel._shaping import Shaper
from telemetry_otel.models import Trace

LEGACY_TRACE_ID = "legacy.trace_id"
LEGACY_SPAN_ID = "legacy.span_id"
LEGACY_PARENT_SPAN_ID = "legacy.parent_span_id"
_LEGACY_KEYS = frozenset((LEGACY_TRACE_ID, LEGACY_SPAN_ID, LEGACY_PARENT_SPAN_ID))
# Attributes this library adds to a legacy span: not tags, so callbacks never see them.
_OWN_KEYS = _LEGACY_KEYS | SAMPLING_KEYS
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_NO_ATTRIBUTES: Mapping[str, Any] = {}
# A context with no span in it: samplers decide a legacy trace as a root.
_ROOT = Context()


def seconds_to_ns(seconds: float) -> int:
    """Epoch seconds (float) to the nearest integer nanosecond.

    Whole and fractional seconds are scaled apart: ``seconds * 1e9`` would round
    to the ~256 ns spacing of floats near 1e18, and ``ns / 1e9`` would then not
    give back the timestamp that was collected.
    """
    whole = int(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def ns_to_seconds(ns: int) -> float:
    """Integer nanoseconds to epoch seconds, correctly rounded (int / float would not be)."""
    return ns / 1_000_000_000


def ms_to_ns(milliseconds: float) -> int:
    """A duration in milliseconds to integer nanoseconds."""
    return round(milliseconds * 1e6)


@lru_cache(maxsize=8192)
def _parent(legacy_trace_id: str, legacy_parent_span_id: str) -> SpanContext:
    """The parent's context; cached, as a parent comes back for each of its children."""
    trace_id = otel_trace_id(legacy_trace_id)
    return SpanContext(
        trace_id, otel_span_id(legacy_trace_id, legacy_parent_span_id), False, _SAMPLED
    )


class LegacySpan(ReadableSpan):
    """A finished span built from a Trace.

    Its attributes were redacted and limited once by the Shaper, which leaves only
    short scalar values: it carries them as a plain dict rather than through a
    BoundedAttributes that would check every value again, and reports what the
    limit dropped itself.
    """

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        resource: Resource,
        attributes: Mapping[str, Any],
        status: Status,
        start_time: int,
        end_time: int,
        scope: InstrumentationScope,
        dropped_attributes: int,
    ) -> None:
        # Positional: this runs for every legacy span, and keywords cost more.
        super().__init__(
            name,
            context,
            parent,
            resource,
            attributes,
            (),
            (),
            SpanKind.INTERNAL,
            None,
            status,
            start_time,
            end_time,
            scope,
        )
        self._dropped_attributes = dropped_attributes

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    def to_trace(self, global_tags: Mapping[str, Any]) -> Trace:
        """The Trace this span was built from, as shaped, global tags added.

        What the span holds came from a validated Trace (non-empty ids and name,
        scalar tags, end after start), so the Trace is not validated again.
        """
        # Set by __init__ (typing.cast would cost a call on every span).
        attributes: dict[str, Any] = self._attributes  # type: ignore[assignment]
        tags = {**global_tags, **attributes}
        if _OWN_KEYS.isdisjoint(global_tags):
            del tags[LEGACY_TRACE_ID], tags[LEGACY_SPAN_ID]
            tags.pop(LEGACY_PARENT_SPAN_ID, None)
            tags.pop(PROBABILITY, None)
            tags.pop(KEPT_BY, None)
            tags.pop(INCOMPLETE, None)
        else:  # a global tag named like one of these attributes stays
            tags = dict(global_tags)
            tags.update((k, v) for k, v in attributes.items() if k not in _OWN_KEYS)
        end: int = self._end_time  # type: ignore[assignment]
        start: int = self._start_time  # type: ignore[assignment]
        status = self._status
        return Trace._trusted(
            {
                "trace_id": attributes[LEGACY_TRACE_ID],
                "span_id": attributes[LEGACY_SPAN_ID],
                "operation": self._name,
                "duration_ms": (end - start) / 1_000_000,
                "parent_span_id": attributes.get(LEGACY_PARENT_SPAN_ID),
                "tags": tags,
                "timestamp": end / 1_000_000_000,
                "error": None if status is _UNSET else status.description,
            }
        )

    # Built finished, with no events or links: constants, where the base class
    # would copy an empty sequence on every read.
    @property
    def events(self) -> tuple[()]:
        return ()

    @property
    def links(self) -> tuple[()]:
        return ()

    @property
    def dropped_events(self) -> int:
        return 0

    @property
    def dropped_links(self) -> int:
        return 0


class SpanFactory:
    """Builds the finished span for a Trace, or None when its trace is sampled out.

    A legacy Trace is already finished, so the span is built finished: the SDK's
    start/end machinery (context, locks, on_start) would only add cost. Span limits
    still apply. The sampling decision rests on the mapped trace id alone, never on
    whatever live span is current, so every span of a legacy trace gets the same
    decision in every process. Without a ``sampler`` (the collector's own
    provider), that is consistent probability sampling at ``rate``, applied inline
    (see sampling/), and kept spans carry its label; with one (an application's
    global provider), the sampler is asked as for a root span.
    """

    def __init__(
        self,
        resource: Resource,
        scope: InstrumentationScope,
        limits: SpanLimits,
        shaper: Shaper,
        rate: float = 1.0,
        sampler: Sampler | None = None,
    ) -> None:
        self.resource = resource
        self._scope = scope
        self._sampler = sampler
        kept = Label(rate)
        self._threshold = kept.threshold
        self._trace_state, self._label_attributes = kept.trace_state, kept.attributes
        self._max_attributes = limits.max_span_attributes
        self._max_value_len = limits.max_span_attribute_length
        # The Shaper applies the config's limits; other limits (an application's
        # provider) are applied on top, by BoundedAttributes.
        self._shaped_is_bounded = (shaper.max_attributes, shaper.max_length) == (
            limits.max_span_attributes,
            limits.max_span_attribute_length,
        )
        self._shaper = shaper

    def build(self, trace: Trace) -> tuple[ReadableSpan | None, bool]:
        """The span for ``trace`` (None when its trace is sampled out), and whether
        redaction or limits had to cut something."""
        trace_id = otel_trace_id(trace.trace_id)
        if self._sampler is None:
            if trace_id & RANDOMNESS < self._threshold:
                return None, False
            return self._build(trace, trace_id, self._trace_state, self._label_attributes)
        decision = self._sampler.should_sample(_ROOT, trace_id, trace.operation)
        if not decision.decision.is_sampled():  # type: ignore[no-untyped-call]
            return None, False
        return self._build(trace, trace_id, decision.trace_state, _NO_ATTRIBUTES)

    def build_kept(self, trace: Trace, label: Label) -> tuple[ReadableSpan, bool]:
        """The span for a trace already decided kept, with its label (see build)."""
        return self._build(
            trace, otel_trace_id(trace.trace_id), label.trace_state, label.attributes
        )

    def _build(
        self,
        trace: Trace,
        trace_id: int,
        trace_state: TraceState | None,
        label: Mapping[str, Any],
    ) -> tuple[ReadableSpan, bool]:
        name, parent = trace.operation, trace.parent_span_id
        # One test for the name and ids together: none is too long or needs repair
        # when their concatenation is short ASCII (the common case).
        texts_fit = self._shaper.is_short_ascii(
            name + trace.trace_id + trace.span_id + (parent or "")
        )
        attributes, dropped, limited = self._span_attributes(trace, texts_fit, label)
        name_cut = False
        if not texts_fit:
            name, name_cut = self._shaper.text(name)
        # Positional (trace id, span id, is_remote, flags, state): called for every span.
        span_id = otel_span_id(trace.trace_id, trace.span_id)
        context = SpanContext(trace_id, span_id, False, _SAMPLED, trace_state)
        end = seconds_to_ns(trace.timestamp)
        start = end - ms_to_ns(trace.duration_ms)
        status, error_cut = self._status(trace.error)
        span = LegacySpan(
            name,
            context,
            None if parent is None else _parent(trace.trace_id, parent),
            self.resource,
            attributes
            if self._shaped_is_bounded
            else BoundedAttributes(
                self._max_attributes, attributes, immutable=True, max_value_len=self._max_value_len
            ),
            status,
            start if start > 0 else 0,
            end,
            self._scope,
            dropped,
        )
        return span, limited or name_cut or error_cut

    def _status(self, error: str | None) -> tuple[Status, bool]:
        """ERROR with the message, which is text like any other: limited and repaired
        (a lone surrogate would make the encoder refuse the whole batch)."""
        if not error:
            return _UNSET, False
        cut = False
        if not self._shaper.is_short_ascii(error):
            error, cut = self._shaper.text(error)
        return Status(StatusCode.ERROR, error), cut

    def _span_attributes(
        self, trace: Trace, ids_fit: bool, label: Mapping[str, Any]
    ) -> tuple[dict[str, Any], int, bool]:
        """Tags, shaped, then the legacy ids (always kept: the bridge needs them) and
        the sampling label; how many tags the attribute limit dropped; whether
        anything was cut. ``ids_fit``: the ids need no shaping."""
        shaper, parent = self._shaper, trace.parent_span_id
        reserved = (2 if parent is None else 3) + len(label)
        tags, limited = shaper.attributes(trace.tags, reserved=reserved)
        trace_id, span_id = trace.trace_id, trace.span_id
        if ids_fit:
            attributes = {**tags, LEGACY_TRACE_ID: trace_id, LEGACY_SPAN_ID: span_id, **label}
            if parent is not None:
                attributes[LEGACY_PARENT_SPAN_ID] = parent
        else:
            attributes = dict(tags)
            ids = {LEGACY_TRACE_ID: trace_id, LEGACY_SPAN_ID: span_id}
            if parent is not None:
                ids[LEGACY_PARENT_SPAN_ID] = parent
            for key, value in ids.items():
                attributes[key], cut = shaper.text(value)
                limited = limited or cut
            attributes.update(label)
        if not limited:
            return attributes, 0, False
        dropped = len(trace.tags) - (shaper.max_attributes - reserved)
        return attributes, max(0, dropped), True


def span_to_trace(span: ReadableSpan, global_tags: Mapping[str, Any]) -> Trace:
    """Rebuild the Trace model a span came from, legacy ids restored.

    Spans that did not come from a Trace (no ``legacy.*`` attributes) get their
    W3C hex ids instead.
    """
    if type(span) is LegacySpan:
        return span.to_trace(global_tags)
    attributes = dict(span.attributes or {})
    context = span.context
    trace_id = attributes.get(LEGACY_TRACE_ID) or f"{context.trace_id:032x}"
    span_id = attributes.get(LEGACY_SPAN_ID) or f"{context.span_id:016x}"
    parent_span_id = attributes.get(LEGACY_PARENT_SPAN_ID)
    if parent_span_id is None and span.parent is not None:
        parent_span_id = f"{span.parent.span_id:016x}"
    start, end = span.start_time or 0, span.end_time or 0
    tags = dict(global_tags)
    tags.update((k, v) for k, v in attributes.items() if k not in _OWN_KEYS)
    return Trace(
        trace_id=str(trace_id),
        span_id=str(span_id),
        operation=span.name,
        duration_ms=(end - start) / 1_000_000,
        parent_span_id=str(parent_span_id) if parent_span_id is not None else None,
        tags=_plain_tags(tags),
        timestamp=ns_to_seconds(end),
        error=_error_message(span.status),
    )


def _error_message(status: Status) -> str | None:
    if status.status_code is not StatusCode.ERROR:
        return None
    return status.description or "ERROR"


def _plain_tags(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attribute values as tag values: sequences become their string form."""
    return {
        key: value if isinstance(value, (str, bool, int, float)) else str(list(value))
        for key, value in attributes.items()
    }
