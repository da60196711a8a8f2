"""Whatever comes in: only ValueError/TypeError escape, and valid items always export."""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Mapping

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Metric as SdkMetric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry_otel import (
    Event,
    EventSeverity,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
    Trace,
)
from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.destinations.otlp import OtlpMetricExporter
from tests.otlp_receiver import any_value, attributes_of

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(), st.integers(), max_size=3),
    st.sampled_from(list(MetricType) + list(EventSeverity)),
)
FIELDS = {
    Metric: [
        "name",
        "value",
        "metric_type",
        "tags",
        "timestamp",
        "unit",
        "description",
        "count",
        "min",
        "max",
        "bucket_counts",
        "explicit_bounds",
    ],
    Event: ["name", "message", "severity", "metadata", "timestamp", "tags"],
    Trace: [
        "trace_id",
        "span_id",
        "operation",
        "duration_ms",
        "parent_span_id",
        "tags",
        "timestamp",
        "error",
    ],
}
quick = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_clear_errors(build):
    try:
        build()
    except (ValueError, TypeError) as error:
        assert str(error), "errors must say what is wrong"


@quick
@given(model=st.sampled_from([Metric, Event, Trace]), data=st.data())
def test_model_constructors_raise_only_value_or_type_errors(model, data):
    names = data.draw(st.lists(st.sampled_from(FIELDS[model]), unique=True))
    kwargs = {name: data.draw(anything) for name in names}
    _only_clear_errors(lambda: model(**kwargs))


@quick
@given(
    model=st.sampled_from([Metric, Event, Trace]),
    payload=st.one_of(
        anything,
        st.dictionaries(
            st.one_of(st.sampled_from(FIELDS[Trace] + FIELDS[Metric]), st.text()), anything
        ),
    ),
)
def test_from_dict_raises_only_value_or_type_errors(model, payload):
    _only_clear_errors(lambda: model.from_dict(payload))


@quick
@given(
    kwargs=st.dictionaries(
        st.sampled_from(
            [
                "enabled",
                "buffer_size",
                "flush_interval_ms",
                "export_endpoints",
                "sample_rate",
                "tags",
                "service_name",
                "headers",
            ]
        ),
        st.one_of(anything, st.lists(st.text(), max_size=2)),
    )
)
def test_config_raises_only_value_or_type_errors(kwargs):
    _only_clear_errors(lambda: TelemetryConfig(**kwargs))


ENV_NAMES = [
    "TELEMETRY_ENABLED",
    "TELEMETRY_BUFFER_SIZE",
    "TELEMETRY_EXPORT_ENDPOINTS",
    "TELEMETRY_SAMPLE_RATE",
    "TELEMETRY_TAGS",
    "TELEMETRY_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "TELEMETRY_MAX_ATTRIBUTE_LENGTH",
    "TELEMETRY_REDACT_KEYS",
]


@quick
@given(environ=st.dictionaries(st.sampled_from(ENV_NAMES), st.text(max_size=30)))
def test_from_env_raises_only_value_errors_naming_the_variable(environ):
    try:
        TelemetryConfig.from_env(environ)
    except ValueError as error:
        assert any(name in str(error) for name in environ), str(error)


# -- valid models of any shape always go through --------------------------------------------

names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-/]{0,20}", fullmatch=True)
tag_values = st.one_of(st.text(), st.booleans(), st.floats(), st.integers(-(2**63), 2**63 - 1))
tags = st.dictionaries(st.text(min_size=1, max_size=20), tag_values, max_size=5)
metadata = st.recursive(
    st.one_of(st.none(), tag_values, st.binary(max_size=8), st.integers(), st.complex_numbers()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
stamps = st.floats(min_value=1.0, max_value=4e9)
valid_models = st.one_of(
    # One name per type: a name already used by another type is refused by design.
    st.builds(
        lambda name, value, kind, tags: Metric(f"{kind.value}.{name}", value, kind, tags),
        names,
        st.integers(0, 2**63 - 1),
        st.sampled_from(list(MetricType)),
        tags,
    ),
    st.builds(
        Event,
        st.text(min_size=1),
        st.text(),
        st.sampled_from(list(EventSeverity)),
        st.dictionaries(st.text(min_size=1, max_size=10), metadata, max_size=4),
        stamps,
        tags,
    ),
    st.builds(
        Trace,
        st.text(min_size=1),
        st.text(min_size=1),
        st.text(min_size=1),
        st.floats(0, 1000),
        st.one_of(st.none(), st.text(min_size=1)),
        tags,
        stamps,
        st.one_of(st.none(), st.text()),
    ),
)


@pytest.fixture(scope="module")
def shared_collector(tmp_path_factory):
    """One collector for every example: OTLP JSON files exercise the real encoders."""
    directory = tmp_path_factory.mktemp("hostile")
    collector = TelemetryCollector(
        TelemetryConfig(export_endpoints=[f"file://{directory}"], flush_interval_ms=60_000)
    )
    collector.start()
    received = []
    collector.register_exporter(lambda kind, data: received.append(data))
    yield collector, directory, received
    collector.stop()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=valid_models)
def test_collecting_any_valid_model_never_raises_and_it_is_encoded(shared_collector, model):
    collector, _, _ = shared_collector
    method = {
        Metric: collector.collect_metric,
        Event: collector.collect_event,
        Trace: collector.collect_trace,
    }[type(model)]
    assert method(model) is True


def test_everything_collected_by_the_property_test_was_encoded(shared_collector):
    collector, directory, received = shared_collector
    assert collector.flush(30_000) is True
    assert received, "the callback bridge rebuilt models from every signal"
    stats = collector.stats()
    for signal in ("trace", "event"):
        assert stats[signal]["export_failures"] == 0
        assert stats[signal]["pending"] == 0
    requests = {"traces.jsonl": ExportTraceServiceRequest, "logs.jsonl": ExportLogsServiceRequest}
    for name, request in requests.items():
        path = directory / name
        if path.exists():
            for line in path.read_text().splitlines():
                # What a gRPC or HTTP exporter would have to serialise, too.
                json_format.Parse(line, request()).SerializeToString()


# -- huge and odd data -------------------------------------------------------------------------


def test_huge_and_odd_data_is_cut_counted_and_still_exported(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        max_attributes=50,
        max_attribute_length=1000,
    )
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(5000):
        deep = {"d": deep}
    many_tags = {f"tag{i}": i for i in range(10_000)}
    assert collector.collect_trace(
        Trace("t", "s", "x" * 10_000_000, 1.0, tags=many_tags, error="lone \ud800" + "e" * 5000)
    )
    assert collector.collect_event(
        Event(
            "odd",
            "nul\x00byte and lone \ud800 surrogate " + "m" * 2_000_000,
            metadata={"deep": deep, "text": "\udfff" * 3, "big": 2**80, "nan": math.nan},
            tags={"k\ud83d": "v"},
        )
    )
    assert collector.collect_metric(Metric("m", 1, MetricType.COUNTER, {"v": "\ud800" * 5000}))
    assert collector.flush(30_000) is True
    [(_, span)] = otlp_receiver.spans()
    assert len(span.name) == 1000
    span_attributes = attributes_of(span.attributes)
    assert len(span_attributes) == 50 and span_attributes["legacy.span_id"] == "s"
    # 50 attributes: 47 tags, the two legacy ids and sampling.probability
    assert span.dropped_attributes_count == 10_000 - 47
    assert span.status.message.startswith("lone \ufffdeee") and len(span.status.message) == 1000
    [(_, record)] = otlp_receiver.log_records()
    body = any_value(record.body)
    assert body.startswith("nul\x00byte and lone \ufffd surrogate") and len(body) == 1000
    attributes = attributes_of(record.attributes)
    assert attributes["text"] == "\ufffd" * 3 and attributes["big"] == str(2**80)
    depth, node = 0, attributes["deep"]
    while isinstance(node, dict):
        node, depth = node.get("d"), depth + 1
    assert node == "[TOO DEEP]" and depth == 16
    stats = collector.stats()
    assert (stats["trace"]["limited"], stats["event"]["limited"], stats["metric"]["limited"]) == (
        1,
        1,
        1,
    )
    assert stats["trace"]["export_failures"] == stats["event"]["export_failures"] == 0


def test_a_metric_cardinality_explosion_is_capped_and_counted(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"], max_metric_series=10
    )
    for user in range(50):
        collector.collect_metric(Metric("logins", 1, MetricType.COUNTER, {"user": str(user)}))
    assert collector.flush(10_000) is True
    [(_, metric)] = otlp_receiver.metrics()
    points = metric.sum.data_points
    assert len(points) == 11  # ten tag sets, then the one overflow series
    overflow = [p for p in points if attributes_of(p.attributes).get("otel.metric.overflow")]
    assert len(overflow) == 1 and sum(p.as_int for p in points) == 50
    assert collector.stats()["metric"]["limited"] == 40  # the measurements folded


def test_bytes_lists_and_nested_maps_in_metadata_are_cut_to_the_attribute_limits(
    otlp_receiver, make_collector
):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        max_attributes=20,
        max_attribute_length=100,
    )
    metadata = {
        "blob": b"\x01" * 6_000_000,
        "items": ["x" * 500] * 1000,
        "nested": {f"k{i}": i for i in range(1000)},
    }
    assert collector.collect_event(Event("big", "metadata", metadata=metadata))
    for i in range(50):
        assert collector.collect_event(Event("normal", f"m{i}"))
    assert collector.flush(10_000) is True
    records = [record for _, record in otlp_receiver.log_records()]
    assert [r.event_name for r in records] == ["big"] + ["normal"] * 50
    attributes = attributes_of(records[0].attributes)
    assert attributes["blob"] == b"\x01" * 100
    assert attributes["items"] == ["x" * 100] * 20
    assert attributes["nested"] == {f"k{i}": i for i in range(20)}
    assert collector.stats()["event"]["limited"] == 1


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_counter_whose_total_passes_int64_never_blocks_other_metrics(
    otlp_receiver, make_collector, tmp_path, transport
):
    port = otlp_receiver.grpc_port if transport == "grpc" else otlp_receiver.http_port
    seen = []
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{port}", f"file://{tmp_path}"],
        flush_interval_ms=60_000,
    )
    collector.register_exporter(lambda kind, item: seen.append(item))
    for round_ in range(4):
        for _ in range(3):
            assert collector.collect_metric(Metric("big", 2**62, MetricType.COUNTER))
        for _ in range(3):
            assert collector.collect_metric(Metric("normal", 1, MetricType.COUNTER))
        assert collector.flush(10_000) is True, round_
    # The receiver's last export: cumulative totals; "big" switched to a double.
    last = {m.name: m.sum.data_points[0] for _, m in otlp_receiver.metrics()}
    assert last["normal"].as_int == 12
    assert last["big"].as_double == float(12 * 2**62)
    last_line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    in_file = {
        metric["name"]: metric["sum"]["dataPoints"][0]
        for resource in last_line["resourceMetrics"]
        for scope in resource["scopeMetrics"]
        if scope["scope"]["name"] == "telemetry_otel"
        for metric in scope["metrics"]
    }
    assert in_file["normal"]["asInt"] == "12"
    assert in_file["big"]["asDouble"] == float(12 * 2**62)
    normal = [m.value for m in seen if m.name == "normal"]
    big = [m.value for m in seen if m.name == "big"]
    assert normal == [3, 3, 3, 3]  # callbacks get deltas
    assert big == [float(3 * 2**62)] * 4


def test_a_callback_interval_with_a_point_no_model_can_hold_still_delivers_the_others(
    make_collector, recorder
):
    collector = make_collector(flush_interval_ms=60_000)
    collector.register_exporter(recorder)
    for _ in range(2):  # each is finite; their sum is not
        assert collector.collect_metric(Metric("huge", 1e308, MetricType.HISTOGRAM))
    assert collector.collect_metric(Metric("normal", 5, MetricType.COUNTER))
    assert collector.flush(5000) is False  # a point was lost, and flush says so
    assert [(m.name, m.value) for m in recorder.of("metric")] == [("normal", 5)]
    assert collector.stats()["metric"]["dropped_rejected"] == 1


# -- hostile user objects: methods that raise, never end, or lie --------------------------------


class Boom(Exception):
    """Not a TypeError or ValueError: what a user object's method might raise."""


class RaisingHashStr(str):
    """Raises on hashing once armed: it must first get into a dict as a key."""

    armed = False

    def __hash__(self):
        if RaisingHashStr.armed:
            raise Boom("__hash__")
        return str.__hash__(self)

    def __eq__(self, other):
        if RaisingHashStr.armed:
            raise Boom("__eq__")
        return str.__eq__(self, other)


class LyingStr(str):
    def __eq__(self, other):
        return True

    def __hash__(self):
        return 0


class RaisingStr(str):
    def __repr__(self):
        raise Boom("__repr__")

    def __str__(self):
        raise Boom("__str__")

    def __len__(self):
        raise Boom("__len__")


class EndlessDict(dict):
    """A dict whose own methods never end (its real storage holds one entry)."""

    def items(self):
        return ((f"k{i}", i) for i in itertools.count())

    def keys(self):
        return (f"k{i}" for i in itertools.count())

    def __iter__(self):
        return self.keys()

    def __len__(self):
        return 10**9


class RaisingDict(dict):
    def items(self):
        raise Boom("items")

    def keys(self):
        raise Boom("keys")

    def __iter__(self):
        raise Boom("__iter__")

    def __getitem__(self, key):
        raise Boom("__getitem__")


class EndlessMapping(Mapping):
    def __getitem__(self, key):
        return key

    def __iter__(self):
        return (f"k{i}" for i in itertools.count())

    def __len__(self):
        return 10**9


class RepeatingDict(dict):
    """A dict whose items() yields its one key again and again, for ever."""

    def items(self):
        return (("k", 1) for _ in itertools.count())

    def __iter__(self):
        return ("k" for _ in itertools.count())


class RepeatingMapping(Mapping):
    """A mapping of one key whose iteration never ends: that key, again and again."""

    def __getitem__(self, key):
        return 1

    def __iter__(self):
        return ("k" for _ in itertools.count())

    def __len__(self):
        return 1


class RaisingMapping(Mapping):
    def __getitem__(self, key):
        raise Boom("__getitem__")

    def __iter__(self):
        raise Boom("__iter__")

    def __len__(self):
        raise Boom("__len__")


def _hostile_objects():
    return [
        RaisingHashStr("k"),
        LyingStr("k"),
        RaisingStr("k"),
        EndlessDict(a=1),
        RaisingDict(a=1),
        EndlessMapping(),
        RaisingMapping(),
        [EndlessMapping()],
        {"nested": RaisingMapping()},
        {"nested": EndlessMapping()},
        RepeatingDict(k=1),
        RepeatingMapping(),
        {"nested": RepeatingMapping()},
        {"nested": RepeatingDict(k=1)},
        [RepeatingMapping()],
        (x for x in itertools.count()),
    ]


HOSTILE_PLACES = [
    lambda h: (Event, (h, "m"), {}),
    lambda h: (Event, ("e", h), {}),
    lambda h: (Event, ("e", "m"), {"metadata": h}),
    lambda h: (Event, ("e", "m"), {"metadata": {"k": h}}),
    lambda h: (Event, ("e", "m"), {"metadata": {h: 1}}),
    lambda h: (Event, ("e", "m"), {"tags": h}),
    lambda h: (Event, ("e", "m"), {"tags": {h: "v"}}),
    lambda h: (Event, ("e", "m"), {"tags": {"k": h}}),
    lambda h: (Metric, (h, 1), {}),
    lambda h: (Metric, ("m", 1), {"tags": h}),
    lambda h: (Metric, ("m", 1), {"tags": {"k": h}}),
    lambda h: (Trace, (h, "s", "op", 1.0), {}),
    lambda h: (Trace, ("t", "s", h, 1.0), {}),
    lambda h: (Trace, ("t", "s", "op", 1.0), {"tags": h}),
    lambda h: (Trace, ("t", "s", "op", 1.0), {"parent_span_id": h}),
]


def _collect_within(collector, model, timeout_s=5.0):
    """collect_*(model) in a thread: what it returned, or a timeout."""
    method = {
        Event: collector.collect_event,
        Metric: collector.collect_metric,
        Trace: collector.collect_trace,
    }[type(model)]
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(method(model)), daemon=True)
    worker.start()
    worker.join(timeout_s)
    return outcome[0] if outcome else "timed out"


@quick
@given(
    place=st.sampled_from(range(len(HOSTILE_PLACES))),
    hostile=st.sampled_from(range(len(_hostile_objects()))),
)
def test_hostile_user_objects_raise_only_type_or_value_errors_and_never_hang_collect(
    shared_collector, place, hostile
):
    collector, _, _ = shared_collector
    try:
        # Built before the hash is armed: a dict must take the key first.
        try:
            model_type, args, kwargs = HOSTILE_PLACES[place](_hostile_objects()[hostile])
        except TypeError:  # unhashable: no dict can hold it as a key
            assume(False)
        RaisingHashStr.armed = True
        try:
            model = model_type(*args, **kwargs)
        except (TypeError, ValueError):
            return
        assert _collect_within(collector, model) in (True, False)
    finally:
        RaisingHashStr.armed = False


def _metrics_data(*metrics: SdkMetric) -> MetricsData:
    scope = ScopeMetrics(InstrumentationScope("telemetry_otel"), list(metrics), "")
    return MetricsData([ResourceMetrics(Resource({}), [scope], "")])


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_histogram_count_past_uint64_costs_only_its_own_point(otlp_receiver, transport):
    def point(count: int, attributes: dict[str, str]) -> HistogramDataPoint:
        return HistogramDataPoint(attributes, 0, 1, count, 1.0, [count, 0], [1.0], 1.0, 1.0)

    cumulative = AggregationTemporality.CUMULATIVE
    histogram = Histogram([point(2**64, {"k": "huge"}), point(3, {"k": "ok"})], cumulative)
    counter = Sum([NumberDataPoint({}, 0, 1, 5)], cumulative, True)
    data = _metrics_data(
        SdkMetric("latency", "", "", histogram),
        SdkMetric("alone", "", "", Histogram([point(-1, {})], cumulative)),
        SdkMetric("jobs", "", "", counter),
    )
    if transport == "grpc":
        target = OtlpTarget("grpc", f"http://127.0.0.1:{otlp_receiver.grpc_port}")
    else:
        target = OtlpTarget("http", f"http://127.0.0.1:{otlp_receiver.http_port}/v1/metrics")
    exporter = OtlpMetricExporter("receiver", target, max_request_bytes=4_000_000)
    try:
        assert exporter.export(data) is MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
    got = {m.name: m for _, m in otlp_receiver.metrics()}
    assert sorted(got) == ["jobs", "latency"]
    assert [
        (p.count, attributes_of(p.attributes)) for p in got["latency"].histogram.data_points
    ] == [(3, {"k": "ok"})]
    counts = exporter.counts()
    assert (counts.submitted, counts.exported, counts.dropped_by) == (4, 2, {"rejected": 2})


CONFIG_TEXT_FIELDS = [
    ("export_endpoints", lambda s: [s], ["console"]),
    ("statsd_endpoint", lambda s: s, "statsd://127.0.0.1:8125"),
    ("service_name", lambda s: s, "checkout"),
    ("redact_keys", lambda s: [s], ["tenant"]),
    ("headers", lambda s: {"x-tenant": s}, {"x-tenant": "acme"}),
    ("spool_dir", lambda s: s, "/tmp/spool"),
]


@pytest.mark.parametrize(("field", "wrap", "expected"), CONFIG_TEXT_FIELDS)
@pytest.mark.parametrize("hostile", [RaisingHashStr, LyingStr, RaisingStr])
def test_a_str_subclass_in_the_config_is_read_as_the_text_it_holds(field, wrap, expected, hostile):
    text = expected[0] if isinstance(expected, list) else expected
    if isinstance(expected, dict):
        text = expected["x-tenant"]
    RaisingHashStr.armed = True
    try:
        config = TelemetryConfig(**{field: wrap(hostile(text))})
        assert getattr(config, field) == expected
        assert repr(config) and config.describe()  # printing it calls nothing of theirs
    finally:
        RaisingHashStr.armed = False
