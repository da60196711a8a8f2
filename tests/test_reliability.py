"""Outages, retries, bounded shutdown, forks and exits, driven by real failures on loopback."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import pytest

from telemetry_otel import Event, Metric, MetricType, Trace
from tests.conftest import assert_identity
from tests.otlp_receiver import BlackHole, GrpcFailure, OtlpReceiver, attributes_of
from tests.prometheus_server import free_port

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _collect_in_thread(collector, count, timeout_s=20):
    """Collect from another thread; True when every call returned within the timeout."""
    results = []

    def produce():
        for i in range(count):
            results.append(collector.collect_trace(Trace("t", f"s{i}", "op", 1.0)))
            collector.collect_event(Event("e", f"m{i}"))

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return not worker.is_alive() and results == [True] * count


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.stop()


# -- outages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_black_holed_endpoint_never_blocks_collection_and_memory_stays_bounded(
    black_hole, make_collector, scheme
):
    collector = make_collector(
        export_endpoints=[f"{scheme}://127.0.0.1:{black_hole.port}?timeout_ms=60000"],
        buffer_size=100,
        flush_interval_ms=60_000,
    )
    assert _collect_in_thread(collector, 1000)
    stats = collector.stats()
    for signal in ("trace", "event"):
        assert_identity(stats, signal)
        assert stats[signal]["exported"] == 0
        # At most one batch stuck in the exporter and one full queue: bounded by buffer_size.
        assert stats[signal]["pending"] <= 200
        assert stats[signal]["dropped_queue_full"] == 1000 - stats[signal]["pending"]


def test_stop_returns_by_its_deadline_when_the_endpoint_never_answers(black_hole, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{black_hole.port}?timeout_ms=60000"],
        flush_interval_ms=60_000,
    )
    for i in range(10):
        collector.collect_trace(Trace("t", f"s{i}", "op", 1.0))
        collector.collect_event(Event("e", "m"))
        collector.collect_metric(Metric("m", 1, MetricType.COUNTER))
    started = time.monotonic()
    collector.stop(timeout_ms=1500)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed
    stats = collector.stats()
    for signal in ("trace", "event"):
        assert_identity(stats, signal)
        assert stats[signal]["exported"] == 0


def test_flush_honours_its_timeout_when_the_endpoint_never_answers(black_hole, make_collector):
    collector = make_collector(
        export_endpoints=[f"http://127.0.0.1:{black_hole.port}?timeout_ms=60000"]
    )
    collector.collect_event(Event("e", "m"))
    started = time.monotonic()
    assert collector.flush(timeout_ms=500) is False
    assert time.monotonic() - started < 2.0


def test_the_shutdown_timeout_is_the_default_deadline(black_hole, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{black_hole.port}?timeout_ms=60000"],
        shutdown_timeout_ms=700,
    )
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    started = time.monotonic()
    assert collector.flush() is False
    collector.stop()
    assert time.monotonic() - started < 3.5


def test_export_resumes_by_itself_when_a_stopped_receiver_comes_back(make_collector):
    grpc_port = free_port()
    receiver = OtlpReceiver(grpc_port=grpc_port).start()
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{grpc_port}?timeout_ms=1000"], flush_interval_ms=100
    )
    collector.collect_trace(Trace("t", "before", "op", 1.0))
    assert collector.flush(5000) is True
    receiver.stop()

    collector.collect_trace(Trace("t", "during", "op", 1.0))
    assert collector.flush(5000) is False  # refused, retried until its 1 s timeout, failed
    restarted = OtlpReceiver(grpc_port=grpc_port).start()
    try:
        # The channel reconnects with its own backoff: keep collecting until spans arrive.
        deadline = time.monotonic() + 20
        sent = 0
        while not restarted.spans() and time.monotonic() < deadline:
            collector.collect_trace(Trace("t", f"after-{sent}", "op", 1.0))
            sent += 1
            time.sleep(0.2)
        assert restarted.spans(), "export did not resume"
        collector.flush(10_000)  # let what is in flight settle; its result is asserted below
        stats = collector.stats()["trace"]
        assert (stats["collected"], stats["pending"]) == (2 + sent, 0)
        assert stats["exported"] == 1 + len(restarted.spans())
        assert stats["export_failures"] == 1 + sent - len(restarted.spans())
    finally:
        restarted.stop()


# -- retries as the OTLP specification says --------------------------------------------------


def test_http_503_with_retry_after_is_retried_after_the_given_delay(otlp_receiver, make_collector):
    otlp_receiver.fail_next("http", "logs", (503, {"Retry-After": "2"}, b"busy"))
    collector = make_collector(export_endpoints=[f"http://127.0.0.1:{otlp_receiver.http_port}"])
    collector.collect_event(Event("e", "m"))
    assert collector.flush(10_000) is True
    assert len(otlp_receiver.log_records()) == 1
    [first, second] = otlp_receiver.attempt_times("logs")
    assert second - first >= 1.9
    stats = collector.stats()["event"]
    assert (stats["exported"], stats["export_failures"]) == (1, 0)


def test_http_400_is_not_retried_and_is_counted_as_refused_with_one_log_line(
    otlp_receiver, make_collector, caplog
):
    otlp_receiver.fail_next("http", "traces", (400, {}, b"bad payload"))
    collector = make_collector(export_endpoints=[f"http://127.0.0.1:{otlp_receiver.http_port}"])
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    with caplog.at_level(logging.WARNING):
        assert collector.flush(10_000) is False
    assert len(otlp_receiver.attempt_times("traces")) == 1
    stats = collector.stats()["trace"]
    assert (stats["export_failures"], stats["export_failures_refused"]) == (1, 1)
    [line] = [r.getMessage() for r in caplog.records if "400" in r.getMessage()]
    assert line == (
        f"OTLP endpoint http://127.0.0.1:{otlp_receiver.http_port} refused for good (not "
        "retried, not spooled) spans (HTTP 400 Bad Request: bad payload): 1 since the last report"
    )


def test_an_item_an_http_413_refuses_alone_is_dropped_as_too_large(otlp_receiver, make_collector):
    otlp_receiver.fail_next("http", "traces", (413, {}, b"too big"))
    collector = make_collector(export_endpoints=[f"http://127.0.0.1:{otlp_receiver.http_port}"])
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    assert collector.flush(10_000) is False
    assert len(otlp_receiver.attempt_times("traces")) == 1
    stats = collector.stats()["trace"]
    assert (stats["dropped_too_large"], stats["export_failures"], stats["pending"]) == (1, 0, 0)


def test_grpc_unavailable_is_retried(otlp_receiver, make_collector):
    otlp_receiver.fail_next("grpc", "traces", grpc.StatusCode.UNAVAILABLE)
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    assert collector.flush(10_000) is True
    assert len(otlp_receiver.attempt_times("traces")) == 2
    assert len(otlp_receiver.spans()) == 1


def test_grpc_resource_exhausted_is_retried_only_with_retry_info(otlp_receiver, make_collector):
    # The specification: RESOURCE_EXHAUSTED is retryable only when the server says when.
    otlp_receiver.fail_next("grpc", "traces", GrpcFailure(RESOURCE_EXHAUSTED, "slow down", 0.5))
    otlp_receiver.fail_next("grpc", "logs", GrpcFailure(RESOURCE_EXHAUSTED, "quota used up"))
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    collector.collect_event(Event("e", "m"))
    assert collector.flush(10_000) is False
    [first, second] = otlp_receiver.attempt_times("traces")
    assert second - first >= 0.45
    assert len(otlp_receiver.attempt_times("logs")) == 1
    assert (len(otlp_receiver.spans()), len(otlp_receiver.log_records())) == (1, 0)
    assert collector.stats()["event"]["export_failures_refused"] == 1


# -- warnings ----------------------------------------------------------------------------------


def test_a_full_queue_warns_once_not_once_per_item(black_hole, make_collector, caplog):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{black_hole.port}?timeout_ms=60000"],
        buffer_size=10,
        flush_interval_ms=60_000,
    )
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        for i in range(500):
            collector.collect_trace(Trace(f"t{i}", "s", "op", 1.0))
    full = [r for r in caplog.records if "is full" in r.getMessage() and "traces" in r.getMessage()]
    assert len(full) == 1
    assert collector.stats()["trace"]["dropped_queue_full"] >= 480


# -- the collector's own metrics ---------------------------------------------------------------


def test_the_counts_are_exported_as_the_collectors_own_metrics(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"], sample_rate=0.0
    )
    for i in range(3):
        collector.collect_trace(Trace(f"t{i}", "s", "op", 1.0))
    assert collector.flush(10_000) is True
    own = {m.name: m for _, m in otlp_receiver.metrics(scope="telemetry_otel.self")}
    collected = {
        attributes_of(p.attributes)["signal"]: p.as_int
        for p in own["telemetry_otel.collected"].sum.data_points
    }
    sampled_out = [
        (attributes_of(p.attributes), p.as_int)
        for p in own["telemetry_otel.sampled_out"].sum.data_points
    ]
    assert collected["trace"] == 3
    assert sampled_out == [({"signal": "trace", "reason": "ratio"}, 3)]
    # A series appears once it is not zero: 21 series of zeros tell a backend nothing.
    assert "telemetry_otel.dropped" not in own
    assert "telemetry_otel.awaiting_decision" not in own  # decided before the collection
    assert {
        attributes_of(p.attributes)["signal"]
        for p in own["telemetry_otel.collected"].sum.data_points
    } == {"trace"}
    assert collector.collect_metric(Metric("clash", 1, MetricType.COUNTER))
    assert not collector.collect_metric(Metric("clash", 1, MetricType.GAUGE))
    assert collector.flush(10_000) is True
    dropped = [
        (attributes_of(p.attributes), p.as_int)
        for _, m in otlp_receiver.metrics(scope="telemetry_otel.self")
        if m.name == "telemetry_otel.dropped"
        for p in m.sum.data_points
    ]
    assert dropped[-1] == ({"signal": "metric", "reason": "rejected"}, 1)


def test_a_count_that_was_seen_stays_when_it_goes_back_to_zero(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        trace_sample_rate=0.0,
        trace_decision_wait_ms=60_000,
        flush_interval_ms=100,
    )

    def awaiting():
        return [
            p.as_int
            for _, m in otlp_receiver.metrics(scope="telemetry_otel.self")
            if m.name == "telemetry_otel.awaiting_decision"
            for p in m.sum.data_points
        ]

    collector.collect_trace(Trace("t", "child", "op", 1.0, parent_span_id="root"))
    for _ in range(100):  # bounded: 5 s; an interval's collection while the span waits
        if awaiting():
            break
        time.sleep(0.05)
    assert awaiting()[0] == 1
    assert collector.flush(10_000) is True  # decides it: back to 0, still reported
    assert awaiting()[-1] == 0


def test_the_collectors_own_metrics_can_be_turned_off(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"], self_metrics=False
    )
    collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
    assert collector.flush(10_000) is True
    assert otlp_receiver.metrics(scope="telemetry_otel.self") == []
    assert [m.name for _, m in otlp_receiver.metrics()] == ["orders"]


# -- forgotten stop, fork ----------------------------------------------------------------------


def _run(script: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_an_atexit_hook_flushes_a_collector_the_application_forgot_to_stop():
    result = _run(
        """
        from telemetry_otel import *
        collector = TelemetryCollector(TelemetryConfig(export_endpoints=["console"],
                                                       flush_interval_ms=60000))
        collector.start()
        collector.collect_event(Event("goodbye", "flushed at exit"))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "goodbye: flushed at exit" in result.stdout


def test_a_collector_the_application_dropped_unstopped_is_flushed_at_exit(otlp_receiver):
    result = _run(
        f"""
        import gc
        from telemetry_otel import *

        def main():
            collector = TelemetryCollector(TelemetryConfig(
                export_endpoints=["grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
                flush_interval_ms=60000))
            collector.start()
            for i in range(100):
                collector.collect_event(Event("goodbye", f"event {{i}}"))

        main()
        gc.collect()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    bodies = sorted(r.body.string_value for _, r in otlp_receiver.log_records())
    assert bodies == sorted(f"event {i}" for i in range(100))


def test_a_forked_child_keeps_exporting_every_signal_and_the_parent_is_unaffected(otlp_receiver):
    result = _run(
        f"""
        import os, time
        from telemetry_otel import *
        collector = TelemetryCollector(TelemetryConfig(
            export_endpoints=["grpc://127.0.0.1:{otlp_receiver.grpc_port}"], flush_interval_ms=200))
        collector.start()
        collector.collect_event(Event("before_fork", "parent"))
        pid = os.fork()
        who = "child" if pid == 0 else "parent"
        collector.collect_trace(Trace(f"trace-{{who}}", "s", "op", 1.0, tags={{"who": who}}))
        collector.collect_event(Event("after_fork", who, tags={{"who": who}}))
        collector.collect_metric(Metric(f"hits_{{who}}", 1, MetricType.COUNTER))
        if pid == 0:
            time.sleep(2)  # long-lived: its background threads export, no stop() needed
            trace = collector.stats()["trace"]
            print("child", trace["collected"], trace["exported"], flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        collector.stop()
        print("parent", collector.stats()["trace"]["exported"],
              collector.stats()["event"]["exported"], flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["child 1 1", "parent 1 2"]
    spans = {attributes_of(span.attributes)["who"] for _, span in otlp_receiver.spans()}
    events = sorted(
        (r.event_name, attributes_of(r.attributes).get("who"))
        for _, r in otlp_receiver.log_records()
    )
    metrics = {metric.name for _, metric in otlp_receiver.metrics()}
    assert spans == {"child", "parent"}
    assert events == [("after_fork", "child"), ("after_fork", "parent"), ("before_fork", None)]
    assert {"hits_child", "hits_parent"} <= metrics


def test_a_collector_stopped_before_a_fork_exports_nothing_from_the_children(tmp_path):
    result = _run(
        f"""
        import os, time
        from telemetry_otel import *
        seen = []
        collector = TelemetryCollector(TelemetryConfig(
            export_endpoints=["file://{tmp_path}"], flush_interval_ms=100))
        collector.register_exporter(lambda kind, item: seen.append(kind))
        collector.start()
        collector.collect_metric(Metric("before_fork", 1, MetricType.COUNTER))
        collector.stop()
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                time.sleep(0.5)  # the SDK restarts its reader threads in a child
                os._exit(0 if seen == ["metric"] else 1)
            children.append(pid)
        assert all(os.waitpid(pid, 0)[1] == 0 for pid in children)
        print(len(seen))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    exported = [line for line in lines if '"before_fork"' in line]
    assert len(exported) == 1, lines


def test_a_forked_child_starts_with_no_held_spans_and_decides_its_own_after_the_wait():
    result = _run(
        """
        import os, time
        from telemetry_otel import *
        collector = TelemetryCollector(TelemetryConfig(
            trace_sample_rate=0.0, trace_decision_wait_ms=100))
        collector.start()
        collector.collect_trace(Trace("before", "child", "op", 1.0, parent_span_id="root"))
        pid = os.fork()
        who = "child" if pid == 0 else "parent"
        held_at_fork = collector.stats()["trace"]["awaiting_decision"]
        collector.collect_trace(Trace(who, "child", "op", 1.0, parent_span_id="root"))
        for _ in range(100):  # bounded: 5 s at most
            if collector.stats()["trace"]["awaiting_decision"] == 0:
                break
            time.sleep(0.05)
        trace = collector.stats()["trace"]
        print(who, held_at_fork, trace["awaiting_decision"], trace["sampled_out_ratio"], flush=True)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        collector.stop()
        """
    )
    assert result.returncode == 0, result.stderr
    # The parent decides what it held before the fork; the child never sees it again.
    assert sorted(result.stdout.splitlines()) == ["child 0 0 1", "parent 1 0 2"]


def _conventional(receiver: OtlpReceiver, name: str) -> dict[tuple[str, str], int]:
    """The last export of one ``otel.sdk.*`` metric: (component name, error.type) -> value."""
    found: dict[tuple[str, str], int] = {}
    for _, metric in receiver.metrics(scope="telemetry_otel.self"):
        if metric.name == name:
            for point in getattr(metric, metric.WhichOneof("data")).data_points:
                attributes = attributes_of(point.attributes)
                key = (attributes["otel.component.name"], attributes.get("error.type", ""))
                found[key] = point.as_int
    return found


def test_the_counts_are_exported_under_the_sdk_metric_conventions_names_too(
    otlp_receiver, make_collector
):
    down = free_port()
    collector = make_collector(
        export_endpoints=[
            f"grpc://127.0.0.1:{otlp_receiver.grpc_port}",
            f"http://127.0.0.1:{down}?protocol=http/json&timeout_ms=200",
        ],
        buffer_size=50,
        flush_interval_ms=60_000,
    )
    for i in range(3):
        collector.collect_trace(Trace(f"t{i}", "s", "op", 1.0))
    collector.collect_event(Event("deploy.done", "ok"))
    collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
    assert collector.flush(10_000) is False  # the second endpoint is down
    assert collector.flush(10_000) is False  # and the counts of the first flush go out
    healthy = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"
    down_name = f"http://127.0.0.1:{down}?protocol=http/json&timeout_ms=200"
    assert _conventional(otlp_receiver, "otel.sdk.exporter.span.exported") == {
        (f"otlp_grpc_span_exporter/{healthy}", ""): 3,
        (f"otlp_http_json_span_exporter/{down_name}", "unavailable"): 3,
    }
    assert _conventional(otlp_receiver, "otel.sdk.exporter.log.exported") == {
        (f"otlp_grpc_log_exporter/{healthy}", ""): 1,
        (f"otlp_http_json_log_exporter/{down_name}", "unavailable"): 1,
    }
    processed = _conventional(otlp_receiver, "otel.sdk.processor.span.processed")
    assert processed == {
        (f"batching_span_processor/otlp_grpc_span_exporter/{healthy}", ""): 3,
        (f"batching_span_processor/otlp_http_json_span_exporter/{down_name}", ""): 3,
    }
    capacity = _conventional(otlp_receiver, "otel.sdk.processor.log.queue.capacity")
    assert set(capacity.values()) == {50}
    exported_points = _conventional(otlp_receiver, "otel.sdk.exporter.metric_data_point.exported")
    assert exported_points[(f"otlp_grpc_metric_exporter/{healthy}", "")] >= 1
    # The library's own names stay, beside them.
    names = {m.name for _, m in otlp_receiver.metrics(scope="telemetry_otel.self")}
    assert {"telemetry_otel.exported", "telemetry_otel.collected"} <= names
