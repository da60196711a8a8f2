from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import pytest

from telemetry_otel.config import TelemetryConfig
from telemetry_otel.models import Event, EventSeverity, Metric, MetricType, Trace


def test_enum_values_are_the_legacy_strings():
    assert [m.value for m in MetricType] == ["counter", "gauge", "histogram"]
    assert [s.value for s in EventSeverity] == ["debug", "info", "warning", "error", "critical"]


def test_each_severity_maps_to_its_otel_severity_number():
    numbers = {s: s.severity_number for s in EventSeverity}
    assert numbers == {
        EventSeverity.DEBUG: 5,
        EventSeverity.INFO: 9,
        EventSeverity.WARNING: 13,
        EventSeverity.ERROR: 17,
        EventSeverity.CRITICAL: 21,
    }


def test_models_take_the_legacy_keyword_arguments_and_defaults():
    before = time.time()
    metric = Metric(name="cpu_usage", value=75.5)
    event = Event(name="error_occurred", message="Database connection failed")
    trace = Trace(trace_id="trace-123", span_id="span-001", operation="api_call", duration_ms=1.5)
    after = time.time()
    assert (metric.metric_type, metric.tags, metric.unit, metric.description) == (
        MetricType.GAUGE,
        {},
        "",
        "",
    )
    assert (metric.count, metric.min, metric.max, metric.bucket_counts) == (None,) * 4
    assert (event.severity, event.metadata, event.tags) == (EventSeverity.INFO, {}, {})
    assert (trace.parent_span_id, trace.tags, trace.error) == (None, {}, None)
    for model in (metric, event, trace):
        assert before <= model.timestamp <= after


def test_models_compare_by_value():
    assert Metric("a", 1, timestamp=5.0) == Metric("a", 1, timestamp=5.0)
    assert Metric("a", 1, timestamp=5.0) != Metric("a", 2, timestamp=5.0)


def test_default_tag_dicts_are_not_shared():
    first, second = Metric("a", 1), Metric("a", 1)
    first.tags["k"] = "v"
    assert second.tags == {}


def test_a_dataclass_subclass_of_a_model_is_checked_and_keeps_its_fields():
    @dataclass(eq=True)
    class TimedMetric(Metric):
        source: str = "app"

    metric = TimedMetric("latency", 3, MetricType.COUNTER, {"k": "v"}, 5.0, source="db")
    assert (metric.name, metric.value, metric.tags, metric.timestamp, metric.source) == (
        "latency",
        3,
        {"k": "v"},
        5.0,
        "db",
    )
    with pytest.raises(ValueError, match=r"^Metric.value must be non-negative for a COUNTER"):
        TimedMetric("latency", -1, MetricType.COUNTER)
    with pytest.raises(TypeError, match=r"^Trace.tags\['n'\] must be a str, int, float or bool"):

        @dataclass
        class TaggedTrace(Trace):
            team: str = "core"

        TaggedTrace("t", "s", "op", 1.0, tags={"n": None})


def test_a_model_built_from_a_str_subclass_name_keeps_a_plain_str():
    class Shouting(str):
        def upper(self) -> str:
            raise RuntimeError("never called")

    metric = Metric(Shouting("requests"), 1, "COUNTER")
    assert type(metric.name) is str and metric.metric_type is MetricType.COUNTER


@pytest.mark.parametrize(
    "model",
    [
        Metric(
            "requests",
            3,
            MetricType.COUNTER,
            {"a": "b", "n": 1, "f": 1.5, "t": True},
            10.5,
            "1",
            "Requests served",
        ),
        Metric(
            "latency",
            12.5,
            MetricType.HISTOGRAM,
            timestamp=1.0,
            count=2,
            min=1.0,
            max=11.5,
            bucket_counts=[1, 1],
            explicit_bounds=[5.0],
        ),
        Event(
            "user_action",
            "done",
            EventSeverity.CRITICAL,
            {"n": {"deep": [1, 2]}},
            3.0,
            {"env": "prod"},
        ),
        Trace("t", "s", "op", 12.25, "p", {"k": "v"}, 100.0, "boom"),
    ],
)
def test_from_dict_is_the_exact_inverse_of_to_dict(model):
    data = model.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert type(model).from_dict(data) == model


def test_to_dict_writes_enums_as_strings_and_omits_unset_histogram_fields():
    assert Metric("m", 1, MetricType.COUNTER, timestamp=2.0).to_dict() == {
        "name": "m",
        "value": 1,
        "metric_type": "counter",
        "tags": {},
        "timestamp": 2.0,
        "unit": "",
        "description": "",
    }
    assert Event("e", "msg", EventSeverity.WARNING, timestamp=2.0).to_dict()["severity"] == (
        "warning"
    )


def test_event_to_dict_turns_values_json_cannot_hold_into_strings():
    event = Event(
        "e", "m", metadata={"when": time.gmtime(0)[:2], "obj": object.__name__, "set": {1}}
    )
    assert event.to_dict()["metadata"] == {"when": [1970, 1], "obj": "object", "set": "{1}"}


def test_constructors_accept_enum_values_as_strings():
    assert Metric("m", 1, "counter").metric_type is MetricType.COUNTER
    assert Event("e", "m", "error").severity is EventSeverity.ERROR


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Metric("", 1), ValueError, "Metric.name must be a non-empty string"),
        (lambda: Metric(5, 1), TypeError, "Metric.name must be a str, got 5"),
        (
            lambda: Metric("m", math.nan),
            ValueError,
            "Metric.value must be a finite number, got nan",
        ),
        (lambda: Metric("m", math.inf), ValueError, "Metric.value must be a finite number"),
        (lambda: Metric("m", 2**63), ValueError, "within signed 64 bits, got 9223372036854775808"),
        (lambda: Metric("m", -(2**63) - 1), ValueError, "Metric.value"),
        (lambda: Metric("m", True), TypeError, "Metric.value must be an int or float (not bool)"),
        (lambda: Metric("m", "1"), TypeError, "got '1'"),
        (lambda: Metric("m", -1, MetricType.COUNTER), ValueError, "non-negative for a COUNTER"),
        (
            lambda: Metric("m", 1, "timer"),
            ValueError,
            "Metric.metric_type must be MetricType.<NAME> or its name in any case "
            "(COUNTER, GAUGE, HISTOGRAM), got 'timer'",
        ),
        (lambda: Metric("m", 1, 2), TypeError, "Metric.metric_type must be MetricType.<NAME>"),
        (lambda: Metric("m", 1, tags={1: "a"}), TypeError, "Metric.tags key must be a str, got 1"),
        (lambda: Metric("m", 1, tags={"": "a"}), ValueError, "Metric.tags key must be a non-empty"),
        (lambda: Event("e", "m", metadata={"": 1}), ValueError, "Event.metadata key must be a non"),
        (lambda: Metric("m", 1, tags={"k": None}), TypeError, "Metric.tags['k'] must be a str"),
        (lambda: Metric("m", 1, tags={"k": [1]}), TypeError, "Metric.tags['k']"),
        (lambda: Metric("m", 1, tags={"k": 2**64}), ValueError, "Metric.tags['k']"),
        (lambda: Metric("m", 1, tags=[("k", "v")]), TypeError, "Metric.tags must be a dict"),
        (lambda: Metric("m", 1, timestamp=-1.0), ValueError, "Metric.timestamp must be epoch"),
        (lambda: Metric("m", 1, timestamp=1e10), ValueError, "Metric.timestamp"),
        (lambda: Metric("m", 1, timestamp=math.nan), ValueError, "Metric.timestamp"),
        (lambda: Metric("m", 1, unit=5), TypeError, "Metric.unit must be a str"),
        (lambda: Metric("m", 1, count=-1), ValueError, "Metric.count"),
        (lambda: Metric("m", 1, bucket_counts=[1, "2"]), TypeError, "Metric.bucket_counts"),
        (lambda: Event("", "m"), ValueError, "Event.name must be a non-empty string, got ''"),
        (lambda: Event("e", None), TypeError, "Event.message must be a str, got None"),
        (
            lambda: Event("e", "m", "fatal"),
            ValueError,
            "Event.severity must be EventSeverity.<NAME> or its name in any case "
            "(DEBUG, INFO, WARNING, ERROR, CRITICAL), got 'fatal'",
        ),
        (lambda: Event("e", "m", metadata={1: "x"}), TypeError, "Event.metadata key must be a str"),
        (lambda: Event("e", "m", metadata=[]), TypeError, "Event.metadata must be a dict"),
        (lambda: Event("e", "m", tags={"k": object}), TypeError, "Event.tags['k']"),
        (lambda: Event("e", "m", timestamp=2**63), ValueError, "Event.timestamp"),
        (lambda: Trace("", "s", "op", 1), ValueError, "Trace.trace_id must be a non-empty"),
        (lambda: Trace("t", "", "op", 1), ValueError, "Trace.span_id must be a non-empty"),
        (lambda: Trace("t", "s", "", 1), ValueError, "Trace.operation must be a non-empty"),
        (lambda: Trace(1, "s", "op", 1), TypeError, "Trace.trace_id must be a str, got 1"),
        (lambda: Trace("t", "s", "op", -1), ValueError, "Trace.duration_ms must be non-negative"),
        (lambda: Trace("t", "s", "op", math.nan), ValueError, "Trace.duration_ms must be a finite"),
        (lambda: Trace("t", "s", "op", 1, ""), ValueError, "Trace.parent_span_id must be a non"),
        (
            lambda: Trace("t", "s", "op", 2000, timestamp=1.0),
            ValueError,
            "Trace.timestamp must be at least duration_ms after the epoch, got 1.0",
        ),
        (lambda: Trace("t", "s", "op", 1, error=5), TypeError, "Trace.error must be a str or None"),
    ],
)
def test_construction_rejects_bad_fields_naming_field_and_value(build, error, message):
    with pytest.raises(error) as raised:
        build()
    assert message in str(raised.value)


def test_timestamp_limits_are_inclusive_of_the_epoch():
    assert Metric("m", 1, timestamp=0).timestamp == 0
    assert Trace("t", "s", "op", 0, timestamp=0.0).timestamp == 0.0


def test_integer_values_at_the_64_bit_limits_are_accepted():
    assert Metric("m", 2**63 - 1).value == 2**63 - 1
    assert Metric("m", -(2**63)).value == -(2**63)


@pytest.mark.parametrize(
    ("cls", "data", "error", "message"),
    [
        (Metric, {"name": "m"}, ValueError, "Metric.from_dict(): missing field(s) value"),
        (
            Metric,
            {"name": "m", "value": 1, "colour": "red"},
            ValueError,
            "unknown field(s) 'colour'",
        ),
        (Metric, ["name"], TypeError, "Metric.from_dict() needs a dict, got ['name']"),
        (Event, {"name": "e"}, ValueError, "Event.from_dict(): missing field(s) message"),
        (Trace, {"trace_id": "t"}, ValueError, "missing field(s) span_id, operation, duration_ms"),
        (
            Metric,
            {"name": "m", "value": 1, "metric_type": "timer"},
            ValueError,
            "Metric.metric_type must be MetricType.<NAME>",
        ),
    ],
)
def test_from_dict_rejects_malformed_input(cls, data, error, message):
    with pytest.raises(error) as raised:
        cls.from_dict(data)
    assert message in str(raised.value)


class ShoutingStr(str):
    def upper(self):
        raise RuntimeError("never called")


@pytest.mark.parametrize(
    "given", ["ERROR", "error", "Error", EventSeverity.ERROR, ShoutingStr("error")]
)
def test_one_rule_reads_enum_fields_in_models_and_config(given):
    assert Event("e", "m", given).severity is EventSeverity.ERROR
    assert TelemetryConfig(event_keep_severity=given).event_keep_severity is EventSeverity.ERROR
    config = TelemetryConfig()
    config.event_keep_severity = given
    assert config.event_keep_severity is EventSeverity.ERROR
    kind = {"ERROR": "COUNTER", "error": "counter", "Error": "Counter"}.get(given, "counter")
    assert Metric("m", 1, kind).metric_type is MetricType.COUNTER
