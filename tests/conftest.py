from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from telemetry_otel import TelemetryCollector, TelemetryConfig
from tests.otlp_receiver import OtlpReceiver

pytest_plugins = ["pytester"]  # tests that run a user's test file through pytest


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Both cores loaded by busy child processes, as on a shared CI machine: a race
    that shows once in five runs on a quiet machine shows every run then."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait(10)


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    """Each test sees the library's rate-limited and once-only warnings afresh: a warning
    another test logged must not silence the same one here."""
    from telemetry_otel._otel.runtime import log

    log._last_warned.clear()
    log._unreported.clear()
    log._warned_once.clear()
    yield


@pytest.fixture
def make_collector() -> Iterator[Callable[..., TelemetryCollector]]:
    """Started collectors built from TelemetryConfig keywords, stopped after the test."""
    collectors: list[TelemetryCollector] = []

    def make(**config: Any) -> TelemetryCollector:
        collector = TelemetryCollector(TelemetryConfig(**config))
        collector.start()
        collectors.append(collector)
        return collector

    yield make
    for collector in collectors:
        collector.stop(timeout_ms=2000)


class Recorder:
    """A legacy exporter callback that keeps what it receives, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, data_type: str, data: Any) -> None:
        with self._lock:
            self.items.append((data_type, data))

    def of(self, data_type: str) -> list[Any]:
        with self._lock:
            return [data for kind, data in self.items if kind == data_type]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def add_counter_from_threads(collector: TelemetryCollector, threads: int, each: int) -> None:
    """Increment counter "hits" {k=v} by 1, ``each`` times from each of ``threads`` threads."""
    from telemetry_otel import Metric, MetricType

    def add_many() -> None:
        for _ in range(each):
            collector.collect_metric(Metric("hits", 1, MetricType.COUNTER, tags={"k": "v"}))

    workers = [threading.Thread(target=add_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def assert_identity(stats: dict[str, dict[str, int]], signal: str, destinations: int = 1) -> None:
    """Every item collected and not sampled out or awaiting its trace's decision is, for
    each destination, dropped, exported, failed or pending (docs/collector.md, "Stats")."""
    counts = stats[signal]
    waiting = counts["sampled_out"] + counts["awaiting_decision"]
    assert destinations * (counts["collected"] - waiting) == (
        counts["dropped"] + counts["exported"] + counts["export_failures"] + counts["pending"]
    ), counts
