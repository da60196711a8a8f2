"""The span encoder builds the same OTLP request as the SDK's encoder, byte for byte."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.trace.status import Status, StatusCode

from telemetry_otel import TelemetryConfig, Trace
from telemetry_otel._otel.delivery.otlp import metric_points, split_metrics
from telemetry_otel._otel.mapping.encoding import encode_spans
from telemetry_otel._otel.pipeline import Pipeline

TAGS: dict[str, Any] = {"s": "text", "i": 7, "f": 2.5, "b": True, "one": 1, "one_f": 1.0}


def legacy_spans(**config: Any) -> list[ReadableSpan]:
    pipeline = Pipeline(TelemetryConfig(**config))
    traces = [
        Trace("t-1", "root", "checkout", 12.5, tags=TAGS),
        Trace("t-1", "child", "charge", 3.0, parent_span_id="root", error="card declined"),
        Trace("t-2", "zero", "op", 0.0, tags={"neg": -0.0, "pos": 0.0, "nan": float("nan")}),
        Trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "w3c", 1.0),
        Trace("t-3", "many", "wide", 1.0, tags={f"k{i}": i for i in range(200)}),
    ]
    spans = []
    for trace in traces:
        span, _ = pipeline.traces.spans.build(trace)
        assert span is not None
        spans.append(span)
    pipeline.shutdown(0)
    return spans


def live_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "live"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("live.scope", "1.0", schema_url="https://example.com/s")
    remote = SpanContext(
        0x1234,
        0x5678,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("ot", "th:8"), ("vendor", "x")]),
    )
    parent = set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("server", context=parent, kind=SpanKind.SERVER) as span:
        span.set_attribute("list", [1, 2, 3])
    with tracer.start_as_current_span("with-event", links=[Link(remote, {"why": "retry"})]) as span:
        span.add_event("cache miss", {"key": "users"})
        span.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("plain", kind=SpanKind.CLIENT):
        pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def same_bytes(spans: list[ReadableSpan]) -> bool:
    ours = encode_spans(spans).SerializeToString(deterministic=True)
    theirs = sdk_encode(spans).SerializeToString(deterministic=True)
    return ours == theirs


def test_legacy_spans_encode_exactly_as_the_sdk_does() -> None:
    assert same_bytes(legacy_spans())


def test_legacy_spans_cut_by_limits_carry_the_dropped_count_as_the_sdk_does() -> None:
    spans = legacy_spans(max_attributes=10, max_attribute_length=4)
    wide = next(span for span in spans if span.name == "wide")
    # room for 7 tags beside 2 legacy ids and sampling.probability
    assert wide.dropped_attributes == 200 - 7
    assert same_bytes(spans)


def test_live_spans_with_events_links_remote_parents_and_trace_state_encode_as_the_sdk_does() -> (
    None
):
    assert same_bytes(live_spans())


def test_a_batch_from_several_resources_and_scopes_groups_them_as_the_sdk_does() -> None:
    spans = [*legacy_spans(), *live_spans(), *legacy_spans(tags={"env": "other"})]
    request = encode_spans(spans)
    assert [len(rs.scope_spans[0].spans) for rs in request.resource_spans] == [5, 3, 5]
    assert same_bytes(spans)


def test_negative_zero_is_not_taken_from_the_attribute_cache_as_zero() -> None:
    request = encode_spans(legacy_spans())
    [zero] = [span for span in request.resource_spans[0].scope_spans[0].spans if span.name == "op"]
    values = {kv.key: kv.value.double_value for kv in zero.attributes if kv.key in ("neg", "pos")}
    assert (str(values["neg"]), str(values["pos"])) == ("-0.0", "0.0")


def _metrics_request() -> ExportMetricsServiceRequest:
    """Two resources; an app scope with a sum, a histogram and a gauge; a self scope."""
    request = ExportMetricsServiceRequest()
    for service in ("checkout", "billing"):
        resource = request.resource_metrics.add(schema_url="https://schema/1")
        resource.resource.attributes.add(key="service.name").value.string_value = service
        app = resource.scope_metrics.add()
        app.scope.name, app.scope.version = "telemetry_otel", "1.0"
        jobs = app.metrics.add(name="jobs", unit="1", description="Jobs")
        jobs.sum.is_monotonic, jobs.sum.aggregation_temporality = True, 2
        for n in range(3):
            jobs.sum.data_points.add(as_int=n).attributes.add(key="n").value.int_value = n
        latency = app.metrics.add(name="latency", unit="s")
        latency.histogram.aggregation_temporality = 1
        latency.histogram.data_points.add(count=2, sum=3.0, bucket_counts=[1, 1])
        app.metrics.add(name="depth").gauge.data_points.add(as_double=0.5)
        own = resource.scope_metrics.add()
        own.scope.name = "telemetry_otel.self"
        own.metrics.add(name="telemetry_otel.exported").sum.data_points.add(as_int=9)
    return request


def _flat_points(request: ExportMetricsServiceRequest) -> list[str]:
    """Each point with everything it carries from its resource, scope and metric."""
    flat = []
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                shell = type(data)()
                shell.CopyFrom(data)
                shell.ClearField("data_points")
                for point in data.data_points:
                    flat.append(
                        "|".join(
                            str(part)
                            for part in (
                                resource.resource,
                                resource.schema_url,
                                scope.scope,
                                metric.name,
                                metric.unit,
                                metric.description,
                                kind,
                                shell,
                                point,
                            )
                        )
                    )
    return flat


def test_a_metrics_request_splits_into_halves_that_carry_every_point_and_its_context():
    request = _metrics_request()
    parts = split_metrics(request, skip_scope="telemetry_otel.self")
    assert [metric_points(part) for _, part in parts] == [6, 6]
    # The self scope's points are not the application's: not counted as items.
    assert sum(items for items, _ in parts) == metric_points(request, "telemetry_otel.self") == 10
    assert _flat_points(parts[0][1]) + _flat_points(parts[1][1]) == _flat_points(request)
    quarters = [q for _, half in parts for _, q in split_metrics(half)]
    assert [metric_points(q) for q in quarters] == [3, 3, 3, 3]
    assert [p for q in quarters for p in _flat_points(q)] == _flat_points(request)
