"""Metric handles: counter(), histogram() and gauge(), bound to a tag set or not, record
exactly what the same collect_metric calls record, everywhere and in every count."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_otel import (
    BoundCounter,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
)
from tests.otlp_receiver import OtlpReceiver, attributes_of

TAG_SETS: list[dict[str, Any]] = [
    {},
    {"route": "/a", "ok": True},
    {"route": "/b", "code": 500},
    {"api_key": "s3cr3t-value"},  # redacted
    {"route": "/" + "x" * 40},  # cut by max_attribute_length: counted limited
    {"route": "/c", "ratio": 0.5},  # past max_metric_series: folded into overflow
]
NAMES = {MetricType.COUNTER: "requests", MetricType.HISTOGRAM: "latency", MetricType.GAUGE: "level"}
# Every operation: a measurement (type, tag set, value), or a flush.
Op = tuple[MetricType, int, float] | None
_services = itertools.count()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


class Models:
    """A callback keeping the Metric models it gets, without their timestamps."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, data_type: str, model: Any) -> None:
        data = model.to_dict()
        del data["timestamp"]
        with self._lock:
            self.items.append(data)

    def sorted(self) -> list[dict[str, Any]]:
        return sorted(self.items, key=repr)


def started(receiver: OtlpReceiver, service: str, models: Models) -> TelemetryCollector:
    config = TelemetryConfig(
        service_name=service,
        export_endpoints=[f"grpc://127.0.0.1:{receiver.grpc_port}"],
        max_attribute_length=20,
        max_metric_series=4,
        flush_interval_ms=600_000,
    )
    collector = TelemetryCollector(config.with_env({}))
    collector.register_exporter(models)
    collector.start()
    return collector


def on_the_wire(receiver: OtlpReceiver, service: str) -> list[list[tuple[Any, ...]]]:
    """Each metric request of one service: every point without its timestamps."""
    requests = []
    for received in receiver.requests("metrics"):
        points = []
        for rm in received.request.resource_metrics:
            if attributes_of(rm.resource.attributes).get("service.name") != service:
                continue
            for sm in rm.scope_metrics:
                if sm.scope.name != "telemetry_otel":
                    continue
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for p in getattr(metric, kind).data_points:
                        value = (
                            (p.count, p.sum, p.min, p.max, list(p.bucket_counts))
                            if kind == "histogram"
                            else (p.as_int, p.as_double)
                        )
                        key = sorted(attributes_of(p.attributes).items())
                        points.append((metric.name, metric.unit, kind, repr(key), value))
        if points:
            requests.append(sorted(points))
    return requests


def counts(collector: TelemetryCollector) -> dict[str, int]:
    stats = collector.stats()["metric"]
    keys = ("collected", "limited", "dropped_rejected", "exported", "pending")
    return {key: stats[key] for key in keys}


def run_unbound(collector: TelemetryCollector, ops: list[Op]) -> list[bool | None]:
    results: list[bool | None] = []
    for op in ops:
        if op is None:
            results.append(collector.flush(10_000))
            continue
        metric_type, tag_set, value = op
        metric = Metric(NAMES[metric_type], value, metric_type, dict(TAG_SETS[tag_set]), unit="1")
        results.append(collector.collect_metric(metric))
    return results


def run_bound(collector: TelemetryCollector, ops: list[Op]) -> list[bool | None]:
    handles = {
        MetricType.COUNTER: collector.counter("requests", unit="1"),
        MetricType.HISTOGRAM: collector.histogram("latency", unit="1"),
        MetricType.GAUGE: collector.gauge("level", unit="1"),
    }
    # Bound in the order the tag sets are first used, as collect_metric meets them.
    bound: dict[tuple[MetricType, int], Any] = {}
    results: list[bool | None] = []
    for op in ops:
        if op is None:
            results.append(collector.flush(10_000))
            continue
        metric_type, tag_set, value = op
        key = (metric_type, tag_set)
        if key not in bound:
            bound[key] = handles[metric_type].bind(TAG_SETS[tag_set])
        record = {
            MetricType.COUNTER: "add",
            MetricType.HISTOGRAM: "record",
            MetricType.GAUGE: "set",
        }[metric_type]
        results.append(getattr(bound[key], record)(value))
    return results


values = st.one_of(
    st.integers(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda v: round(v, 3)),
)
measurement = st.tuples(
    st.sampled_from(list(MetricType)), st.integers(0, len(TAG_SETS) - 1), values
)
operations = st.lists(st.one_of(measurement, st.none()), min_size=1, max_size=40)


@settings(max_examples=30, deadline=None)
@given(ops=operations, negative=st.booleans())
def test_bound_handles_record_what_collect_metric_records_everywhere(receiver, ops, negative):
    if negative:  # a negative histogram value: refused and counted alike
        ops = [*ops, (MetricType.HISTOGRAM, 1, -2.5), (MetricType.GAUGE, 2, -7)]
    ops = [*ops, None]  # and what the last flush exports
    service = f"handles-{next(_services)}"
    results, wire, models, numbers = [], [], [], []
    for run in (run_unbound, run_bound):
        name = f"{service}-{run.__name__}"
        callback = Models()
        collector = started(receiver, name, callback)
        results.append(run(collector, ops))
        numbers.append(counts(collector))
        collector.stop(5000)
        wire.append(on_the_wire(receiver, name))
        models.append(callback.sorted())
    assert results[0] == results[1]
    assert wire[0] == wire[1]
    assert models[0] == models[1]
    assert numbers[0] == numbers[1]


def test_handles_on_eight_threads_add_up_exactly(receiver):
    callback = Models()
    collector = started(receiver, "threads", callback)
    counter = collector.counter("hits").bind(route="/a")
    histogram = collector.histogram("sizes").bind(route="/a")

    def work() -> None:
        for n in range(5000):
            counter.add(1)
            histogram.record(n % 10)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert collector.flush(10_000) is True
    wire = on_the_wire(receiver, "threads")[-1]
    assert [p[4] for p in wire if p[0] == "hits"] == [(40_000, 0.0)]
    [(count, total, *_)] = [p[4] for p in wire if p[0] == "sizes"]
    assert (count, total) == (40_000, 8 * 500 * 45)
    assert collector.stats()["metric"]["collected"] == 80_000
    collector.stop(5000)
    assert [(m["name"], m["value"]) for m in callback.items if m["name"] == "hits"] == [
        ("hits", 40_000)
    ]


def unstarted(receiver: OtlpReceiver, service: str) -> TelemetryCollector:
    """A collector with default limits, exporting to the receiver, not started yet."""
    config = TelemetryConfig(
        service_name=service, export_endpoints=[f"grpc://127.0.0.1:{receiver.grpc_port}"]
    )
    return TelemetryCollector(config.with_env({}))


def test_a_bound_handle_records_nothing_before_start_and_after_stop(receiver):
    collector = unstarted(receiver, "lifecycle")
    counter = collector.counter("jobs").bind(queue="high")
    assert isinstance(counter, BoundCounter)
    assert counter.add(1) is False
    collector.start()
    assert (counter.add(2), counter.add(3)) == (True, True)
    collector.stop(5000)
    assert counter.add(4) is False
    assert collector.stats()["metric"]["collected"] == 2
    [request] = on_the_wire(receiver, "lifecycle")
    assert [(p[0], p[3], p[4]) for p in request] == [("jobs", repr([("queue", "high")]), (5, 0.0))]


def test_a_bound_handle_in_a_span_keeps_its_exemplar(receiver):
    collector = unstarted(receiver, "exemplars")
    orders = collector.counter("orders").bind(shop="a")
    level = collector.gauge("stock").bind(shop="a")
    collector.start()
    for _ in range(3):  # past the first measurement: the handles add up directly
        assert (orders.add(2), level.set(7)) == (True, True)
    with collector.span("checkout") as span:
        assert (orders.add(5), level.set(4)) == (True, True)
    collector.stop(5000)
    assert (orders.add(1), level.set(1)) == (False, False)
    assert collector.stats()["metric"]["collected"] == 8
    points = {
        metric.name: metric
        for resource, metric in receiver.metrics()
        if resource["service.name"] == "exemplars"
    }
    [total] = points["orders"].sum.data_points
    [last] = points["stock"].gauge.data_points
    assert (total.as_int, last.as_int) == (11, 4)
    [exemplar] = total.exemplars
    assert exemplar.as_int == 5
    assert exemplar.span_id == span.get_span_context().span_id.to_bytes(8, "big")


def test_a_disabled_collector_s_handles_record_nothing():
    collector = TelemetryCollector(TelemetryConfig(enabled=False))
    collector.start()
    assert collector.gauge("level").bind().set(3) is False
    assert collector.histogram("latency").record(1.5, {"a": "b"}) is False
    collector.stop()


def test_the_series_cap_and_redaction_apply_when_a_handle_is_bound(receiver):
    callback = Models()
    collector = started(receiver, "cap", callback)  # max_metric_series=4
    handle = collector.counter("calls")
    bound = [handle.bind(n=str(n)) for n in range(5)]
    secret = handle.bind({"api_key": "s3cr3t-value"})
    for each in bound:
        each.add(1)
    secret.add(2)
    assert collector.flush(10_000) is True
    points = {p[3]: p[4][0] for p in on_the_wire(receiver, "cap")[-1] if p[0] == "calls"}
    assert points == {
        repr([("n", "0")]): 1,
        repr([("n", "1")]): 1,
        repr([("n", "2")]): 1,
        repr([("n", "3")]): 1,
        # The fifth tag set and the secret (a sixth): past the cap, folded together.
        repr([("otel.metric.overflow", True)]): 3,
    }
    stats = collector.stats()["metric"]
    assert (stats["collected"], stats["limited"]) == (6, 2)
    collector.stop(5000)
    redacted = TelemetryCollector(TelemetryConfig(service_name="redacted").with_env({}))
    redacted.register_exporter(models := Models())
    redacted.start()
    redacted.counter("calls").bind({"api_key": "s3cr3t-value"}).add(2)
    redacted.stop(5000)
    assert [m["tags"] for m in models.items] == [{"api_key": "[REDACTED]"}]
    assert "s3cr3t" not in repr(models.items)


def test_handles_refuse_bad_input_with_the_errors_metric_raises():
    collector = TelemetryCollector(TelemetryConfig(enabled=False))
    with pytest.raises(ValueError, match=r"^counter\.name must be a non-empty string, got ''$"):
        collector.counter("")
    with pytest.raises(TypeError, match=r"^gauge\.unit must be a str, got 5$"):
        collector.gauge("level", unit=5)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"^histogram\.tags\['a'\] must be a str, int, float or bool, got \[1\]$",
    ):
        collector.histogram("latency", tags={"a": [1]})  # type: ignore[dict-item]
    counter = collector.counter("requests")
    with pytest.raises(
        TypeError,
        match=r"^counter\.bind\.tags\['b'\] must be a str, int, float or bool, got None$",
    ):
        counter.bind(b=None)  # type: ignore[arg-type]
    bound = counter.bind()
    for value, error, message in (
        (-1, ValueError, "Metric.value must be non-negative for a COUNTER, got -1"),
        (float("nan"), ValueError, "Metric.value must be a finite number, got nan"),
        (2**63, ValueError, "Metric.value must be an integer within signed 64 bits"),
        (True, TypeError, "Metric.value must be an int or float (not bool), got True"),
        ("1", TypeError, "Metric.value must be an int or float (not bool), got '1'"),
    ):
        with pytest.raises(error) as raised:
            bound.add(value)  # type: ignore[arg-type]
        assert str(raised.value).startswith(message)
        with pytest.raises(error) as from_metric:
            Metric("requests", value, MetricType.COUNTER)  # type: ignore[arg-type]
        assert str(from_metric.value) == str(raised.value)


def test_a_handle_of_a_name_registered_as_another_type_is_refused_and_counted(receiver):
    collector = started(receiver, "clash", Models())
    assert collector.counter("jobs").bind().add(1) is True
    level = collector.gauge("jobs").bind(q="a")
    assert (level.set(1), level.set(2)) == (False, False)
    assert collector.histogram("jobs").record(1.0) is False
    stats = collector.stats()["metric"]
    assert (stats["collected"], stats["dropped_rejected"]) == (1, 3)
    collector.stop(5000)


_FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from telemetry_otel import TelemetryCollector, TelemetryConfig
    port = sys.argv[1]
    collector = TelemetryCollector(TelemetryConfig(
        service_name="forked", export_endpoints=[f"grpc://127.0.0.1:{port}"],
        flush_interval_ms=600_000).with_env({}))
    collector.start()
    jobs = collector.counter("jobs").bind(queue="high")
    jobs.add(5)
    assert collector.flush(10_000)
    pid = os.fork()
    if pid == 0:
        jobs.add(7)
        collector.stop(10_000)
        os._exit(0 if collector.stats()["metric"]["collected"] == 1 else 3)
    _, status = os.waitpid(pid, 0)
    jobs.add(3)
    collector.stop(10_000)
    print(os.waitstatus_to_exitcode(status), collector.stats()["metric"]["collected"])
    """
)


def test_a_bound_handle_records_in_a_forked_child_only_what_the_child_adds(receiver):
    result = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, str(receiver.grpc_port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "2"]
    last: dict[str, int] = {}
    for received in receiver.requests("metrics"):
        for rm in received.request.resource_metrics:
            resource = attributes_of(rm.resource.attributes)
            if resource.get("service.name") != "forked":
                continue
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "jobs":
                        last[resource["service.instance.id"]] = metric.sum.data_points[-1].as_int
    # The parent: 5 then 3; the child: its own 7, never the parent's 5 again.
    assert sorted(last.values()) == [7, 8]
