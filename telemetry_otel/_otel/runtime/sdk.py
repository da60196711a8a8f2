"""The OpenTelemetry API's and SDK's private names this library reads, all in one place.

Each is read by one small function that says what it is for and which releases it was
checked against (API and SDK 1.45, exporters 1.45). Where a name is missing, the
function falls back to the public way (slower, or with less information) and logs
once that it did: a release that moves a name costs speed, never data.

Not here: the private attributes of the SDK's own ``ReadableSpan`` that the span
mapping (``mapping/spans.py``) and encoder (``mapping/encoding.py``) read on every
span. An accessor per attribute would cost what those paths exist to save; the
encoder's tests compare its bytes with the SDK encoder's on every run, so a release
that changes them fails the tests, not a user.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from time import time_ns
from types import ModuleType
from typing import Any

from opentelemetry import context as api_context
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
    _Gauge,
)
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource, get_aggregated_resources
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from telemetry_otel._otel.runtime.log import logger

CHECKED_AGAINST = "opentelemetry-api/sdk 1.45"
# The SDK's synchronous gauge, exported under a private name while the API's is new.
SynchronousGauge = _Gauge


def _fell_back(what: str) -> None:
    logger.warning(
        "telemetry_otel: the installed OpenTelemetry has no %s (checked against %s); "
        "using the public way instead",
        what,
        CHECKED_AGAINST,
    )


# -- context --------------------------------------------------------------------------------


def span_key() -> str | None:
    """The key the API stores the current span under in a Context
    (``opentelemetry.trace.propagation._SPAN_KEY``); None: use ``get_current_span``."""
    try:
        from opentelemetry.trace.propagation import _SPAN_KEY
    except ImportError:  # pragma: no cover - depends on the installed API
        _fell_back("trace.propagation._SPAN_KEY")
        return None
    return _SPAN_KEY


def current_context_getter() -> Callable[[], Context]:
    """The fastest way to the current Context: the ContextVar behind the API's default
    runtime context (``_RUNTIME_CONTEXT._current_context``), a third of
    ``get_current()``'s cost; ``get_current`` when another runtime context is in use."""
    runtime = getattr(api_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and variable is not None:
        get: Callable[[], Context] = variable.get
        return get
    return get_current  # pragma: no cover - another runtime context configured


def suppress_instrumentation_key() -> str:
    """The Context key instrumentations check before tracing an exporter's own calls."""
    key: str = api_context._SUPPRESS_INSTRUMENTATION_KEY
    return key


# -- providers ------------------------------------------------------------------------------


def enable_provider(provider: Any) -> None:
    """Undo a provider's reading of ``OTEL_SDK_DISABLED`` (its ``_disabled`` flag, on the
    three SDK providers): the collector has decided already."""
    if getattr(provider, "_disabled", False):
        provider._disabled = False


def span_limits(provider: TracerProvider) -> SpanLimits:
    """The limits a joined TracerProvider applies (``_span_limits``); the SDK's default
    limits if it keeps them elsewhere."""
    limits = getattr(provider, "_span_limits", None)
    return limits if isinstance(limits, SpanLimits) else SpanLimits()


def span_sink(provider: TracerProvider) -> Callable[[Any], None]:
    """Where a joined TracerProvider's ended spans go: every processor the application
    added (``_active_span_processor.on_end``)."""
    processor = getattr(provider, "_active_span_processor", None)
    if processor is None:  # pragma: no cover - depends on the installed SDK
        _fell_back("TracerProvider._active_span_processor")
        return lambda span: None
    on_end: Callable[[Any], None] = processor.on_end
    return on_end


def measurement_consumer(provider: MeterProvider) -> Any:
    """The MeterProvider's measurement consumer (``_measurement_consumer``), or None."""
    return getattr(provider, "_measurement_consumer", None)


def remove_metric_reader(provider: MeterProvider, reader: Any) -> None:
    """Stop feeding a reader that was shut down already: the consumer's own
    ``remove_metric_reader`` (MeterProvider's shuts the reader down a second time)."""
    consumer = measurement_consumer(provider)
    if hasattr(consumer, "remove_metric_reader"):
        consumer.remove_metric_reader(reader)
    else:  # pragma: no cover - depends on the installed SDK
        provider.remove_metric_reader(reader)


# -- exporters ------------------------------------------------------------------------------


def exporter_preferences(exporter: MetricExporter) -> tuple[dict[type, Any], dict[type, Any]]:
    """The temporality and aggregation a metric exporter asked for."""
    return exporter._preferred_temporality or {}, exporter._preferred_aggregation or {}


@functools.cache
def otlp_metric_preferences() -> tuple[dict[type, Any], dict[type, Any]]:
    """The temporality and aggregation the SDK's OTLP metric exporters would prefer, from
    the same variables (its private ``OTLPMetricExporterMixin``); the SDK's defaults
    (cumulative, explicit buckets) if the mixin moves."""
    try:
        from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import (
            OTLPMetricExporterMixin,
        )
    except ImportError:  # pragma: no cover - depends on the installed exporter
        _fell_back("OTLPMetricExporterMixin")
        return {}, {}
    preferences: Any = OTLPMetricExporterMixin()
    aggregation = preferences._get_aggregation({})
    # The SDK compares this variable as written (its temporality one in any case), and
    # the specification asks for enum values in any case.
    chosen = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "")
    if chosen.strip().lower() == "base2_exponential_bucket_histogram":
        from opentelemetry.sdk.metrics import Histogram
        from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

        aggregation = {**aggregation, Histogram: ExponentialBucketHistogramAggregation()}
    return preferences._get_temporality({}), aggregation


def log_encoder() -> Callable[[Any], Any]:
    """The OTLP exporter's log encoder (``proto.common._log_encoder.encode_logs``): the
    only way the exporters package offers to build an ExportLogsServiceRequest."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    encode: Callable[[Any], Any] = encode_logs
    return encode


# -- samplers -------------------------------------------------------------------------------


@functools.cache
def composable_samplers() -> ModuleType | None:
    """The SDK's composite (consistent probability) samplers, in its private,
    experimental ``trace._sampling_experimental``; None where a release moved them."""
    try:
        from opentelemetry.sdk.trace import _sampling_experimental
    except ImportError:  # pragma: no cover - depends on the installed SDK
        return None
    return _sampling_experimental


# -- the metric fast path (mapping/series.py) -----------------------------------------------

try:
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation,
    )
    from opentelemetry.sdk.metrics._internal.measurement import Measurement
    from opentelemetry.sdk.metrics._internal.measurement_consumer import (
        SynchronousMeasurementConsumer,
    )

    METRIC_INTERNALS_IMPORTED = True
except ImportError:  # pragma: no cover - another SDK release: the public path only
    METRIC_INTERNALS_IMPORTED = False


if METRIC_INTERNALS_IMPORTED:

    class _ShapedMeasurement(Measurement):
        """A Measurement whose attributes were shaped (checked, limited) once, when
        its series was first seen: the SDK's per-measurement check is skipped."""

        def __post_init__(self) -> None:
            pass

    _new_measurement = _ShapedMeasurement.__new__

_current_context = current_context_getter()
# Where the current span sits in a Context; "" (never a key) if the API moved it, and
# then the exemplar filter is always asked.
_SPAN_KEY = span_key() or ""
# For callers that test outside_any_span() inline, without the call.
current_context, SPAN_KEY = _current_context, _SPAN_KEY


def hash_attributes(attributes: dict[str, Any]) -> Any:
    """The SDK's hash of an attribute set, as its aggregations are keyed."""
    return _hash_attributes(attributes) if METRIC_INTERNALS_IMPORTED else None


def outside_any_span() -> bool:
    """No span is current: the trace-based exemplar filter would sample nothing."""
    return bool(_SPAN_KEY) and _current_context().get(_SPAN_KEY) is None


def exemplars_only_in_spans(consumer: Any) -> bool:
    """The consumer samples exemplars as the default trace-based filter does: never
    outside a span (``OTEL_METRICS_EXEMPLAR_FILTER=always_on`` samples everywhere)."""
    kind = type(consumer._sdk_config.exemplar_filter)
    return kind is TraceBasedExemplarFilter or kind is AlwaysOffExemplarFilter


def collect_after(provider: MeterProvider, readers: Any, before: Callable[[], None]) -> bool:
    """Make every collection of the provider's readers, those given and those added
    later, call ``before`` first; False (nothing changed) where the SDK differs.

    The provider hands each reader its consumer's ``collect`` as the collect callback
    (``MetricReader._set_collect_callback``), read off the consumer when the reader
    is added: wrapping it on the consumer covers later readers, and the readers
    given are handed the wrapper again.
    """
    consumer = measurement_consumer(provider)
    collect = getattr(consumer, "collect", None)
    if collect is None or not all(hasattr(r, "_set_collect_callback") for r in readers):
        _fell_back("MeasurementConsumer.collect or MetricReader._set_collect_callback")
        return False

    def collect_after_before(reader: Any, timeout_millis: float = 10_000) -> Any:
        before()
        return collect(reader, timeout_millis)

    consumer.collect = collect_after_before
    for reader in readers:
        reader._set_collect_callback(collect_after_before)
    return True


def is_synchronous_consumer(consumer: Any) -> bool:
    """The consumer the fast path was written against (SynchronousMeasurementConsumer)."""
    return METRIC_INTERNALS_IMPORTED and type(consumer) is SynchronousMeasurementConsumer


def record_shaped(
    consumer: Any,
    instrument: Any,
    hashed: Any,
    attributes: Any,
    value: float,
    exemplars: bool = True,
) -> bool:
    """Hand one measurement of a known series to every reader's aggregation, as the
    SDK's ``_ViewInstrumentMatch.consume_measurement`` does but with the series' hash;
    False when the instrument is disabled (the caller takes the public path).
    ``exemplars=False``: a sum or last value of several measurements, which is no
    measurement of its own to sample.

    One function, with no calls of its own where a line does: it runs for every
    measurement, and each Python call costs about a tenth of it.
    """
    if not instrument._is_enabled():
        return False
    now, context = time_ns(), _current_context()
    # A frozen dataclass's __init__ pays an object.__setattr__ per field; filling
    # the instance dict gives the same object for half the cost (the probe in
    # series.sdk_internals_fit checks the result against the public path).
    measurement = _new_measurement(_ShapedMeasurement)
    measurement.__dict__.update(
        value=value,
        time_unix_nano=now,
        instrument=instrument,
        context=context,
        attributes=attributes,
    )
    exemplar_filter = consumer._sdk_config.exemplar_filter
    if not exemplars:
        sample = False
    elif (
        type(exemplar_filter) is TraceBasedExemplarFilter
        and _SPAN_KEY
        and context.get(_SPAN_KEY) is None
    ):
        sample = False  # what the filter answers outside a span, without its calls
    else:
        sample = exemplar_filter.should_sample(value, now, attributes, context)
    for storage in consumer._reader_storages.values():
        for match in storage._get_or_init_view_instrument_match(instrument):
            if match._view._attribute_keys is not None:
                # A view that keeps only some attribute keys: let the SDK filter and hash.
                match.consume_measurement(measurement, sample)
            elif match._reset_on_collect:
                # Delta collection discards the aggregations: hold the lock until aggregated.
                with match._lock:
                    aggregation = match._get_or_create_aggregation(hashed, attributes)
                    aggregation.aggregate(measurement, sample)
            else:
                aggregation = match._attributes_aggregation.get(hashed)
                if aggregation is None:
                    with match._lock:
                        aggregation = match._get_or_create_aggregation(hashed, attributes)
                aggregation.aggregate(measurement, sample)
    return True


# -- histograms added up between collections (mapping/series.py) ---------------------------


def reader_storages(consumer: Any) -> object:
    """The consumer's reader storages, which the SDK replaces (never changes in place)
    when a reader is added or removed: compare by identity to notice."""
    storages: object = consumer._reader_storages
    return storages


def shared_bucket_bounds(consumer: Any, instrument: Any) -> tuple[float, ...] | None:
    """The bucket bounds of this histogram in every reader, when each reader aggregates
    it in explicit buckets with min and max, all with the same bounds, and no view
    keeps only some of its attribute keys; None otherwise (or with no reader)."""
    bounds: tuple[float, ...] | None = None
    for storage in consumer._reader_storages.values():
        for match in storage._get_or_init_view_instrument_match(instrument):
            template = match._aggregation
            if (
                match._view._attribute_keys is not None
                or type(template) is not _ExplicitBucketHistogramAggregation
                or not template._record_min_max
                or (bounds is not None and template._boundaries != bounds)
            ):
                return None
            bounds = template._boundaries
    return bounds


def merge_histogram(
    consumer: Any,
    instrument: Any,
    hashed: Any,
    attributes: Any,
    bounds: tuple[float, ...],
    added: tuple[float, float, float, list[int]],
) -> int:
    """Add a series' sum, min, max and bucket counts since the last drain to every
    reader's aggregation of it, as its measurements one by one would have been;
    how many readers' aggregations no longer had those bounds (left out)."""
    total, low, high, counts = added
    mismatched = 0
    for storage in consumer._reader_storages.values():
        for match in storage._get_or_init_view_instrument_match(instrument):
            with match._lock:  # a delta collection must not discard it halfway
                aggregation = match._get_or_create_aggregation(hashed, attributes)
                if (
                    type(aggregation) is not _ExplicitBucketHistogramAggregation
                    or aggregation._boundaries != bounds
                ):
                    mismatched += 1
                    continue
                _merge_buckets(aggregation, total, low, high, counts)
    return mismatched


def _merge_buckets(
    aggregation: Any, total: float, low: float, high: float, counts: list[int]
) -> None:
    """What _ExplicitBucketHistogramAggregation.aggregate does, for many measurements."""
    with aggregation._lock:
        if aggregation._value is None:
            aggregation._value = aggregation._get_empty_bucket_counts()
        buckets = aggregation._value
        for index, count in enumerate(counts):
            if count:
                buckets[index] += count
        aggregation._sum += total
        aggregation._min = min(aggregation._min, low)
        aggregation._max = max(aggregation._max, high)


# -- forks ------------------------------------------------------------------------------------


def forget_aggregations(provider: MeterProvider) -> None:
    """Start every reader's aggregations afresh in a forked child, with fresh locks.

    What the parent measured before the fork is the parent's to export: a child that
    kept it (``_ViewInstrumentMatch._attributes_aggregation`` in each reader storage's
    ``_instrument_view_instrument_matches``) would export it again under its own
    ``service.instance.id``, and a sum over processes would count it twice. The
    locks may have been held by threads the child does not have. SDK 1.45.
    """
    consumer = measurement_consumer(provider)
    for storage in getattr(consumer, "_reader_storages", {}).values():
        storage._lock = threading.RLock()
        for matches in getattr(storage, "_instrument_view_instrument_matches", {}).values():
            for match in matches:
                match._lock = threading.Lock()
                match._attributes_aggregation = {}


# -- resource ---------------------------------------------------------------------------------


def detected_resource() -> Resource:
    """What ``Resource.create`` detects (the SDK's own attributes, the service instance
    id, any ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS``) without its OTELResourceDetector:
    the library reads ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` itself, so
    that their values are redacted and limited, and a malformed pair (perhaps a key and
    its secret with the ``=`` missing) is never logged as it is
    (``resources._build_resource_detectors``, ``resources._DEFAULT_RESOURCE``)."""
    try:
        from opentelemetry.sdk.resources import _DEFAULT_RESOURCE, _build_resource_detectors
    except ImportError:  # pragma: no cover - depends on the installed SDK
        _fell_back("resources._build_resource_detectors")
        return Resource.create()
    detectors = [d for d in _build_resource_detectors() if not isinstance(d, OTELResourceDetector)]
    return get_aggregated_resources(detectors, _DEFAULT_RESOURCE)
