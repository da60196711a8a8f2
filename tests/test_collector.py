from __future__ import annotations

import contextlib
import logging
import threading
import time

import pytest
from opentelemetry import _logs, metrics, trace

from telemetry_otel import (
    Event,
    EventSeverity,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
    Trace,
)
from telemetry_otel._otel.mapping.ids import otel_trace_id
from telemetry_otel._otel.runtime import log
from tests.conftest import add_counter_from_threads, assert_identity

COUNT_KEYS = (
    "collected",
    "sampled_out",
    "dropped",
    "exported",
    "export_failures",
    "pending",
    "limited",
    "spooled",
    "recovered",
    "dropped_queue_full",
    "dropped_shutdown",
    "dropped_spool_full",
    "dropped_unregistered",
    "dropped_rejected",
    "dropped_too_large",
    "export_failures_unavailable",
    "export_failures_refused",
    "export_failures_partial",
    "export_failures_callback",
    "export_failures_exporter",
    "spool_unavailable",
    "no_destination",
    "awaiting_decision",
    "kept_by_rule",
    "kept_incomplete",
    "sampled_out_ratio",
    "sampled_out_rate_limit",
    "sampled_out_buffer_overflow",
    "sampled_out_with_trace",
)


def _trace(trace_id="t-1", span_id="s-1", **fields):
    return Trace(
        trace_id, span_id, fields.pop("operation", "op"), fields.pop("duration_ms", 5.0), **fields
    )


# -- lifecycle ---------------------------------------------------------------------------------


def test_start_is_idempotent_and_stop_is_final():
    collector = TelemetryCollector()
    assert not collector.is_running
    collector.start()
    collector.start()
    assert collector.is_running
    collector.stop()
    collector.stop()
    assert not collector.is_running
    with pytest.raises(RuntimeError, match="cannot be started again after stop"):
        collector.start()


def test_context_manager_starts_and_stops():
    with TelemetryCollector() as collector:
        assert collector.is_running
    assert not collector.is_running


def test_collect_returns_false_before_start_after_stop_and_when_disabled(recorder):
    collector = TelemetryCollector()
    assert collector.collect_metric(Metric("m", 1)) is False
    collector.start()
    collector.stop()
    assert collector.collect_event(Event("e", "m")) is False
    with TelemetryCollector(TelemetryConfig(enabled=False)) as disabled:
        disabled.register_exporter(recorder)
        assert disabled.collect_trace(_trace()) is False
        assert disabled.flush() is True
    assert recorder.items == []
    assert collector.stats()["event"] == dict.fromkeys(COUNT_KEYS, 0)
    assert disabled.stats()["trace"]["collected"] == 0


@pytest.mark.parametrize(
    ("method", "wrong"),
    [
        ("collect_metric", Event("e", "m")),
        ("collect_event", {"name": "e"}),
        ("collect_trace", None),
    ],
)
def test_collecting_anything_but_the_matching_model_raises_type_error(method, wrong):
    expected = rf"{method}\(\) takes an? \w+, got {type(wrong).__name__}"
    with TelemetryCollector() as collector, pytest.raises(TypeError, match=expected):
        getattr(collector, method)(wrong)


def test_config_must_be_a_telemetry_config():
    with pytest.raises(TypeError, match="config must be a TelemetryConfig or None, got"):
        TelemetryCollector({"enabled": True})  # type: ignore[arg-type]


@pytest.mark.parametrize(("timeout", "error"), [(-1, ValueError), ("1", TypeError)])
def test_flush_rejects_a_bad_timeout(timeout, error):
    with TelemetryCollector() as collector, pytest.raises(error, match="timeout_ms"):
        collector.flush(timeout)


# -- callbacks: the legacy exporters -----------------------------------------------------------


def test_callbacks_registered_before_and_after_start_both_receive_items(recorder):
    late = type(recorder)()
    collector = TelemetryCollector()
    collector.register_exporter(recorder)
    collector.start()
    collector.register_exporter(late)
    assert collector.collect_trace(_trace()) is True
    assert collector.flush(5000) is True
    assert [kind for kind, _ in recorder.items] == ["trace"]
    assert [kind for kind, _ in late.items] == ["trace"]
    collector.stop()


def test_each_callback_gets_its_own_copy_of_an_events_nested_metadata():
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource

    from telemetry_otel._otel.mapping.logs import event_to_log_record, log_record_to_event
    from telemetry_otel._shaping import Shaper

    event = Event(
        "order",
        "placed",
        EventSeverity.WARNING,
        {"items": [1, {"sku": "a"}], "n": 2},
        7.5,
        tags={"region": "eu"},
    )
    record, _ = event_to_log_record(event, Shaper(False, [], 128, None), 0.25)
    readable = ReadableLogRecord(log_record=record, resource=Resource.get_empty())
    first = log_record_to_event(readable, {"service": "shop"})
    first.metadata["items"][1]["sku"] = "changed"
    first.metadata["items"].append(3)
    first.tags["region"] = "us"
    second = log_record_to_event(readable, {"service": "shop"})
    assert second == Event(
        "order",
        "placed",
        EventSeverity.WARNING,
        {"items": [1, {"sku": "a"}], "n": 2},
        7.5,
        tags={"service": "shop", "region": "eu"},
    )
    assert record.attributes == {
        "region": "eu",
        "items": [1, {"sku": "a"}],
        "n": 2,
        "sampling.probability": 0.25,
    }


@pytest.mark.parametrize("inside_a_span", [False, True], ids=["no span", "live span"])
def test_an_events_log_record_is_the_one_the_sdk_constructor_builds(make_collector, inside_a_span):
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord

    from telemetry_otel._otel.mapping.logs import event_to_log_record
    from telemetry_otel._shaping import Shaper

    collector = make_collector()
    event = Event("paid", "ok", EventSeverity.ERROR, {"n": 1}, 12.5, tags={"k": "v"})
    with collector.span("request") if inside_a_span else contextlib.nullcontext():
        ours, _ = event_to_log_record(event, Shaper(False, [], 128, None), 1.0)
        sdks = LogRecord(
            timestamp=12_500_000_000,
            observed_timestamp=ours.observed_timestamp,
            severity_number=ours.severity_number,
            severity_text="ERROR",
            body="ok",
            attributes={"k": "v", "n": 1, "sampling.probability": 1.0},
            event_name="paid",
        )
    assert {**vars(ours)} == {
        **vars(sdks),
        "tag_keys": frozenset({"k"}),
        "severity": event.severity,
    }
    assert (ours.trace_id != 0) is inside_a_span
    pipeline = collector._pipeline
    received: list[ReadableLogRecord] = []
    pipeline.events.processor.add_queue(type("Q", (), {"submit": received.append})())
    assert collector.collect_event(event) is True
    [readable] = received
    expected = ReadableLogRecord(
        log_record=readable.log_record,
        resource=pipeline.events.provider.resource,
        instrumentation_scope=readable.instrumentation_scope,
        limits=readable.limits,
    )
    assert readable == expected and vars(readable) == vars(expected)


def test_unregistered_callback_receives_nothing_more(make_collector, recorder):
    collector = make_collector()
    collector.register_exporter(recorder)
    collector.collect_event(Event("first", "m"))
    collector.flush()
    collector.unregister_exporter(recorder)
    collector.collect_event(Event("second", "m"))
    collector.flush()
    assert [e.name for e in recorder.of("event")] == ["first"]


def test_register_rejects_non_callables_and_unregister_unknown_callbacks(make_collector):
    collector = make_collector()
    with pytest.raises(TypeError, match="register_exporter\\(\\) takes a callable, got 42"):
        collector.register_exporter(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not registered"):
        collector.unregister_exporter(print)


def test_registering_a_callback_twice_delivers_once(make_collector, recorder):
    collector = make_collector()
    collector.register_exporter(recorder)
    collector.register_exporter(recorder)
    collector.collect_trace(_trace())
    collector.flush()
    assert len(recorder.items) == 1


def test_a_raising_callback_is_counted_and_never_stops_the_others(make_collector, recorder, caplog):
    def broken(data_type, data):
        raise RuntimeError("callback bug")

    collector = make_collector()
    collector.register_exporter(broken)
    collector.register_exporter(recorder)
    for i in range(3):
        assert collector.collect_trace(_trace(span_id=f"s{i}")) is True
    assert collector.flush() is False  # one destination failed
    assert len(recorder.of("trace")) == 3
    stats = collector.stats()["trace"]
    assert (stats["exported"], stats["export_failures"], stats["pending"]) == (3, 3, 0)
    assert sum("callback bug" in r.exc_text for r in caplog.records if r.exc_text) == 1


# -- stats -------------------------------------------------------------------------------------


def test_stats_count_every_delivery_per_destination(make_collector, recorder):
    other = type(recorder)()
    collector = make_collector(sample_rate=0.5)
    collector.register_exporter(recorder)
    collector.register_exporter(other)
    for i in range(200):  # each waits for its decision (keep_error_traces is on)
        assert collector.collect_trace(_trace(trace_id=f"trace-{i}")) is True
    for i in range(50):
        collector.collect_event(Event("e", f"m{i}"))
    assert collector.flush() is True
    kept = len(recorder.of("trace"))
    assert 0 < kept < 200
    stats = collector.stats()
    assert stats["trace"]["collected"] == 200
    assert stats["trace"]["sampled_out"] == 200 - kept
    assert stats["trace"]["exported"] == 2 * kept
    for signal in ("trace", "event"):
        assert_identity(stats, signal, destinations=2)
        assert stats[signal]["pending"] == 0


def test_a_full_queue_drops_oldest_items_and_counts_them(make_collector):
    entered, release = threading.Event(), threading.Event()
    received = []

    def slow(data_type, data):
        entered.set()
        release.wait(10)
        received.append(data.span_id)

    collector = make_collector(buffer_size=5, flush_interval_ms=60_000)
    collector.register_exporter(slow)
    collector.collect_trace(_trace(span_id="first"))
    assert collector.flush(timeout_ms=50) is False  # the callback holds the first item
    assert entered.wait(5)
    for i in range(8):
        assert collector.collect_trace(_trace(span_id=f"s{i}")) is True
    stats = collector.stats()["trace"]
    assert (stats["collected"], stats["dropped"], stats["pending"], stats["exported"]) == (
        9,
        3,
        6,
        0,
    )
    assert_identity(collector.stats(), "trace", destinations=1)
    release.set()
    assert collector.flush(5000) is False  # three items were dropped since the last flush
    assert received == ["first", "s3", "s4", "s5", "s6", "s7"]
    assert collector.flush(5000) is True
    assert collector.stats()["trace"]["exported"] == 6


def test_stop_returns_by_its_deadline_and_counts_what_it_could_not_deliver(make_collector):
    release = threading.Event()
    collector = make_collector(flush_interval_ms=60_000)
    collector.register_exporter(lambda data_type, data: release.wait(10))
    for i in range(4):
        collector.collect_trace(_trace(span_id=f"s{i}"))
    started = time.monotonic()
    collector.stop(timeout_ms=200)
    assert time.monotonic() - started < 2
    stats = collector.stats()["trace"]
    # The worker holds the batch (all four) in the blocked callback: counted as dropped at
    # the deadline, so a stopped collector has nothing pending.
    assert (stats["collected"], stats["pending"], stats["dropped_shutdown"]) == (4, 0, 4)
    release.set()
    time.sleep(0.2)  # the late export ends: it is not counted a second time
    stats = collector.stats()["trace"]
    assert (stats["exported"], stats["export_failures"], stats["dropped_shutdown"]) == (0, 0, 4)


# -- sampling ----------------------------------------------------------------------------------


def test_sample_rate_keeps_or_drops_every_span_of_a_trace_together(make_collector, recorder):
    collector = make_collector(sample_rate=0.25, keep_error_traces=False)  # decided at once
    collector.register_exporter(recorder)
    decisions: dict[str, set[bool]] = {}
    for trace_number in range(400):
        trace_id = f"trace-{trace_number}"
        for span in ("child", "root"):
            kept = collector.collect_trace(_trace(trace_id=trace_id, span_id=span))
            decisions.setdefault(trace_id, set()).add(kept)
    assert all(len(kept) == 1 for kept in decisions.values())
    # OTel consistent probability sampling: keep when the low 56 bits of the trace id
    # are at least the threshold 2**56 - rate * 2**56.
    threshold = 2**56 - round(0.25 * 2**56)
    expected = {t for t in decisions if otel_trace_id(t) & (2**56 - 1) >= threshold}
    assert {t for t, kept in decisions.items() if kept == {True}} == expected
    assert 60 < len(expected) < 140
    collector.flush()
    assert {t.trace_id for t in recorder.of("trace")} == expected


def test_sample_rate_zero_drops_traces_and_events_but_never_metrics(make_collector, recorder):
    collector = make_collector(sample_rate=0.0)
    collector.register_exporter(recorder)
    # keep_error_traces is on: the span waits for its trace's window, in case of an error.
    assert collector.collect_trace(_trace()) is True
    assert collector.stats()["trace"]["awaiting_decision"] == 1
    assert collector.collect_event(Event("e", "m")) is False
    assert collector.collect_metric(Metric("m", 1, MetricType.COUNTER)) is True
    collector.flush()
    stats = collector.stats()
    assert (stats["trace"]["collected"], stats["trace"]["sampled_out"]) == (1, 1)
    assert (stats["event"]["collected"], stats["event"]["sampled_out"]) == (1, 1)
    assert stats["metric"]["sampled_out"] == 0
    assert [kind for kind, _ in recorder.items] == ["metric"]


def test_events_are_sampled_independently_at_the_sample_rate(make_collector):
    collector = make_collector(sample_rate=0.3)
    kept = sum(collector.collect_event(Event("e", "m")) for _ in range(4000))
    # Binomial(4000, 0.3): standard deviation 29; 6 sigma either side.
    assert abs(kept - 1200) < 175
    assert collector.stats()["event"]["sampled_out"] == 4000 - kept


# -- metrics -----------------------------------------------------------------------------------


def test_a_metric_name_used_by_another_type_is_refused_and_counted(make_collector, recorder):
    collector = make_collector()
    collector.register_exporter(recorder)
    assert collector.collect_metric(Metric("jobs", 1, MetricType.COUNTER)) is True
    assert collector.collect_metric(Metric("jobs", 5, MetricType.GAUGE)) is False
    assert collector.collect_metric(Metric("JOBS", 5, MetricType.HISTOGRAM)) is False
    collector.flush()
    stats = collector.stats()["metric"]
    assert (stats["collected"], stats["dropped"]) == (1, 2)
    assert [(m.name, m.metric_type, m.value) for m in recorder.of("metric")] == [
        ("jobs", MetricType.COUNTER, 1)
    ]


def test_eight_threads_of_counter_increments_sum_exactly(make_collector, recorder):
    collector = make_collector(flush_interval_ms=60_000)
    collector.register_exporter(recorder)

    add_counter_from_threads(collector, threads=8, each=10_000)
    assert collector.flush(10_000) is True
    assert [m.value for m in recorder.of("metric")] == [80_000]
    assert collector.stats()["metric"]["collected"] == 80_000


def test_bridge_metrics_are_deltas_per_interval_with_global_tags(make_collector, recorder):
    collector = make_collector(flush_interval_ms=60_000, tags={"env": "prod"})
    collector.register_exporter(recorder)
    for value in (2, 3):
        collector.collect_metric(
            Metric(
                "orders",
                value,
                MetricType.COUNTER,
                {"region": "eu"},
                unit="1",
                description="Orders placed",
            )
        )
    for value in (7, 4):
        collector.collect_metric(Metric("depth", value, MetricType.GAUGE))
    for value in (1.0, 30.0, 8.0):
        collector.collect_metric(Metric("latency", value, MetricType.HISTOGRAM, unit="ms"))
    before = time.time()
    collector.flush()
    first = {m.name: m for m in recorder.of("metric")}
    assert first["orders"].value == 5
    assert first["orders"].tags == {"env": "prod", "region": "eu"}
    assert (first["orders"].unit, first["orders"].description) == ("1", "Orders placed")
    assert first["depth"].value == 4
    latency = first["latency"]
    assert (latency.value, latency.count, latency.min, latency.max) == (39.0, 3, 1.0, 30.0)
    assert latency.explicit_bounds[:4] == [0.0, 5.0, 10.0, 25.0]
    assert latency.bucket_counts[:5] == [0, 1, 1, 0, 1]
    assert sum(latency.bucket_counts) == 3
    assert before <= latency.timestamp <= time.time()

    collector.collect_metric(Metric("orders", 4, MetricType.COUNTER, {"region": "eu"}))
    collector.flush()
    second = recorder.of("metric")[len(first) :]
    assert [(m.name, m.value) for m in second] == [("orders", 4)]


# -- the bridge gives back what was collected --------------------------------------------------


def test_bridge_restores_legacy_trace_ids_parent_error_and_tags(make_collector, recorder):
    collector = make_collector(tags={"env": "prod"})
    collector.register_exporter(recorder)
    trace = Trace(
        "trace-abc-123",
        "span-002",
        "charge_card",
        12.5,
        parent_span_id="span-001",
        tags={"payment_method": "card"},
        timestamp=1_700_000_000.25,
        error="declined",
    )
    collector.collect_trace(trace)
    collector.flush()
    [received] = recorder.of("trace")
    assert received == Trace(
        "trace-abc-123",
        "span-002",
        "charge_card",
        12.5,
        parent_span_id="span-001",
        tags={"env": "prod", "payment_method": "card"},
        timestamp=1_700_000_000.25,
        error="declined",
    )


def test_bridge_gives_event_metadata_and_tags_back_apart(make_collector, recorder):
    collector = make_collector(tags={"env": "prod"})
    collector.register_exporter(recorder)
    event = Event(
        "user_action",
        "checkout",
        EventSeverity.WARNING,
        metadata={"user_id": "12345", "cart": {"items": [1, 2]}, "amount": 99.99},
        timestamp=1_700_000_000.5,
        tags={"team": "payments"},
    )
    collector.collect_event(event)
    collector.flush()
    [received] = recorder.of("event")
    assert received == Event(
        "user_action",
        "checkout",
        EventSeverity.WARNING,
        metadata={"user_id": "12345", "cart": {"items": [1, 2]}, "amount": 99.99},
        timestamp=1_700_000_000.5,
        tags={"env": "prod", "team": "payments"},
    )


@pytest.mark.parametrize(
    ("global_tags", "tags", "expected"),
    [
        ({"env": "prod"}, {"team": "payments"}, {"env": "prod", "team": "payments"}),
        # A global tag named like the probability attribute keeps its own value.
        (
            {"sampling.probability": "global"},
            {"team": "a"},
            {"sampling.probability": "global", "team": "a"},
        ),
        # An event's own tag of that name: the record (and so the wire) holds the
        # probability the event was kept with under that name, and gives it back.
        ({}, {"sampling.probability": "mine"}, {"sampling.probability": 0.5}),
    ],
)
def test_an_event_without_metadata_comes_back_with_its_tags_only(
    make_collector, recorder, global_tags, tags, expected
):
    collector = make_collector(tags=global_tags, sample_rate=0.5, event_sample_rate=0.5)
    collector.register_exporter(recorder)
    events = [Event("user_action", "checkout", tags=tags, timestamp=1_700_000_000.5)] * 200
    kept = sum(collector.collect_event(event) for event in events)
    collector.flush()
    received = recorder.of("event")
    assert 0 < kept == len(received)
    assert {repr(event.tags) for event in received} == {repr(expected)}
    assert {(repr(event.metadata), event.timestamp) for event in received} == {
        ("{}", 1_700_000_000.5)
    }


def test_the_collector_leaves_otel_global_providers_alone(make_collector):
    before = (
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        _logs.get_logger_provider(),
    )
    collector = make_collector()
    collector.collect_trace(_trace())
    collector.collect_metric(Metric("m", 1))
    collector.collect_event(Event("e", "m"))
    after = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    assert after == before


# -- a collector that sends nowhere -----------------------------------------------------------

NOWHERE = "telemetry_otel: nothing is exported: no export_endpoints"


@pytest.fixture
def warnings_seen(monkeypatch, caplog):
    monkeypatch.setattr(log, "_last_warned", {})
    caplog.set_level(logging.WARNING, logger="telemetry_otel")
    return lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith(NOWHERE)]


def test_a_collector_with_no_destination_says_so_once(warnings_seen):
    collector = TelemetryCollector()
    collector.start()
    collector.collect_event(Event("e", "m"))
    for _ in range(60):  # bounded: 3 s at most; the check runs a second after start
        if warnings_seen():
            break
        time.sleep(0.05)
    collector.stop()
    [line] = warnings_seen()
    assert "set export_endpoints (or TELEMETRY_EXPORT_ENDPOINTS" in line
    assert "register_exporter()" in line


def test_a_short_run_with_no_destination_says_so_at_stop(warnings_seen):
    with TelemetryCollector() as collector:
        collector.collect_metric(Metric("m", 1, MetricType.COUNTER))
    assert len(warnings_seen()) == 1


def test_the_legacy_order_start_then_register_a_callback_is_not_warned_about(
    warnings_seen, recorder
):
    collector = TelemetryCollector()
    collector.start()
    collector.register_exporter(recorder)
    collector.collect_event(Event("e", "m"))
    time.sleep(1.3)  # past the check
    collector.stop()
    assert warnings_seen() == []
    assert [e.name for e in recorder.of("event")] == ["e"]


def test_a_signal_every_endpoint_filters_out_is_said_once_and_shown_in_stats(
    otlp_receiver, monkeypatch, caplog
):
    monkeypatch.setattr(log, "_last_warned", {})
    caplog.set_level(logging.WARNING, logger="telemetry_otel")
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}?signals=traces"
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=[endpoint]))
    collector.start()
    for _ in range(3):
        collector.collect_event(Event("e", "m"))
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    lines = []
    for _ in range(60):  # bounded: 3 s at most; the check runs a second after start
        lines = [r.getMessage() for r in caplog.records if "no export endpoint" in r.getMessage()]
        if len(lines) == 2:
            break
        time.sleep(0.05)
    collector.stop()
    stats = collector.stats()
    assert sorted(lines) == [
        f"telemetry_otel: no export endpoint takes {plural} (the signals= options leave them "
        "out) and no callback is registered: they are counted as collected, then discarded "
        f"(stats() shows no_destination); add {otlp} to an endpoint's signals= or call "
        "register_exporter()"
        for plural, otlp in (("events", "logs"), ("metrics", "metrics"))
    ]
    assert (stats["event"]["collected"], stats["event"]["no_destination"]) == (3, 1)
    assert (stats["trace"]["exported"], stats["trace"]["no_destination"]) == (1, 0)
    assert stats["metric"]["no_destination"] == 1


def test_a_callback_takes_what_no_endpoint_does(otlp_receiver, recorder, caplog):
    caplog.set_level(logging.WARNING, logger="telemetry_otel")
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}?signals=traces"
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=[endpoint]))
    collector.start()
    collector.register_exporter(recorder)
    collector.collect_event(Event("e", "m"))
    time.sleep(1.3)  # past the check
    assert collector.stats()["event"]["no_destination"] == 0
    collector.stop()
    assert not [r for r in caplog.records if "no export endpoint" in r.getMessage()]
    assert [e.name for e in recorder.of("event")] == ["e"]
