"""aflush(), astop() and ``async with``: the waiting happens off the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig, Trace
from tests.otlp_receiver import BlackHole
from tests.prometheus_server import free_port

ROOT = Path(__file__).resolve().parent.parent


async def _ticks_while(awaitable, interval_s: float = 0.01):
    """Run ``awaitable`` while a task ticks every ``interval_s``: (its result, ticks)."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(interval_s)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        result = await awaitable
    finally:
        ticker.cancel()
    return result, ticks


def test_aflush_lets_other_tasks_run_while_it_waits_for_a_dead_endpoint():
    hole = BlackHole()
    collector = TelemetryCollector(
        TelemetryConfig(export_endpoints=[f"grpc://127.0.0.1:{hole.port}"], self_metrics=False)
    )
    collector.start()
    try:
        collector.collect_event(Event("e", "waits"))
        began = time.monotonic()
        flushed, ticks = asyncio.run(_ticks_while(collector.aflush(timeout_ms=600)))
        took = time.monotonic() - began
    finally:
        collector.stop(timeout_ms=100)
        hole.stop()
    assert flushed is False
    assert took >= 0.55
    # A flush that blocked the loop would let the ticker run no more than once.
    assert ticks >= 10


def test_aflush_and_astop_deliver_and_count_exactly_what_flush_and_stop_do(otlp_receiver):
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"

    async def run() -> tuple[bool, dict]:
        collector = TelemetryCollector(
            TelemetryConfig(export_endpoints=[endpoint], flush_interval_ms=60_000)
        )
        async with collector:
            for i in range(30):
                collector.collect_trace(Trace("t", f"s{i}", "op", 1.0))
                collector.collect_event(Event("e", f"event {i}"))
            flushed = await collector.aflush()
            assert len(otlp_receiver.spans()) == 30
            collector.collect_metric(Metric("hits", 5, MetricType.COUNTER))
            collector.collect_event(Event("e", "after the flush"))
        assert not collector.is_running
        return flushed, collector.stats()

    flushed, stats = asyncio.run(run())
    assert flushed is True
    assert (stats["trace"]["collected"], stats["trace"]["exported"]) == (30, 30)
    assert (stats["event"]["collected"], stats["event"]["exported"]) == (31, 31)
    assert stats["event"]["pending"] == 0
    assert len(otlp_receiver.log_records()) == 31
    hits = [m for _, m in otlp_receiver.metrics() if m.name == "hits"]
    assert hits[-1].sum.data_points[0].as_int == 5


def test_astop_returns_by_its_deadline_and_a_second_stop_does_nothing():
    hole = BlackHole()
    collector = TelemetryCollector(
        TelemetryConfig(export_endpoints=[f"grpc://127.0.0.1:{hole.port}"], self_metrics=False)
    )
    collector.start()
    collector.collect_event(Event("e", "lost at the deadline"))

    async def run() -> tuple[float, int]:
        began = time.monotonic()
        _, ticks = await _ticks_while(collector.astop(timeout_ms=500))
        took = time.monotonic() - began
        await collector.astop()
        return took, ticks

    try:
        took, ticks = asyncio.run(run())
    finally:
        hole.stop()
    assert took < 3
    assert ticks >= 5
    assert not collector.is_running
    event = collector.stats()["event"]
    assert (event["collected"], event["dropped"], event["exported"], event["pending"]) == (
        1,
        1,
        0,
        0,
    )


def test_aflush_and_astop_refuse_a_bad_timeout_on_the_loop_itself(make_collector):
    collector = make_collector()
    with pytest.raises(ValueError, match="timeout_ms must be non-negative, got -1"):
        asyncio.run(collector.aflush(timeout_ms=-1))
    with pytest.raises(TypeError, match="timeout_ms must be a number or None, got '5'"):
        asyncio.run(collector.astop(timeout_ms="5"))
    assert collector.is_running


def test_the_asgi_example_serves_under_uvicorn_and_its_lifespan_delivers_everything(
    otlp_receiver,
):
    port = free_port()
    environment = {
        **os.environ,
        "TELEMETRY_EXPORT_ENDPOINTS": f"grpc://127.0.0.1:{otlp_receiver.grpc_port}",
        "TELEMETRY_FLUSH_INTERVAL_MS": "60000",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.asgi_app:app",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):  # bounded: 20 s at most
            try:
                urllib.request.urlopen(f"{base}/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for i in range(20):
            assert urllib.request.urlopen(f"{base}/orders/{i}", timeout=5).read() == b"ok\n"
        assert urllib.request.urlopen(f"{base}/flush", timeout=10).read() == b"True\n"
        # Everything before /flush has arrived; /flush's own span ends after it.
        names = {span.name for _, span in otlp_receiver.spans()}
        assert {f"GET /orders/{i}" for i in range(20)} <= names
        for i in range(5):
            urllib.request.urlopen(f"{base}/late/{i}", timeout=5).read()
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert "Application shutdown complete" in stderr
    names = sorted(span.name for _, span in otlp_receiver.spans())
    assert len(names) == 27  # ready, 20 orders, flush, 5 late
    assert names.count("GET /flush") == 1
    assert sum(name.startswith("GET /late/") for name in names) == 5
    totals = {}
    for _, metric in otlp_receiver.metrics():
        if metric.name == "requests":
            for point in metric.sum.data_points:
                path = point.attributes[0].value.string_value
                totals[path] = point.as_int
    assert sum(totals.values()) == 27
