"""multiprocessing workers deliver what they collected on every exit path, with the fork,
spawn and forkserver start methods: ``Process``, ``Pool`` with close()/join(), a
``ProcessPoolExecutor``, and a ``with Pool()`` block (terminate()) with the documented
initializer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TASKS = 12


def _drive(method: str, shape: str, endpoints: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.process_workers",
            method,
            shape,
            ",".join(endpoints),
            str(TASKS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _file_records(directory: Path, name: str) -> list[dict]:
    path = directory / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _file_counter_total(directory: Path) -> int:
    """The "tasks" counter summed over processes: each exports its cumulative total."""
    last: dict[str, int] = {}
    for request in _file_records(directory, "metrics"):
        for resource in request["resourceMetrics"]:
            attributes = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}
            instance = attributes["service.instance.id"]["stringValue"]
            for scope in resource["scopeMetrics"]:
                for metric in scope["metrics"]:
                    if metric["name"] == "tasks":
                        points = metric["sum"]["dataPoints"]
                        last[instance] = int(points[-1]["asInt"])
    return sum(last.values())


@pytest.mark.parametrize("shape", ["process", "pool", "executor", "with-pool"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_every_worker_delivers_every_span_event_and_measurement_when_it_leaves(
    method, shape, otlp_receiver, tmp_path
):
    endpoints = [f"grpc://127.0.0.1:{otlp_receiver.grpc_port}", f"file://{tmp_path}"]
    result = _drive(method, shape, endpoints)
    assert result.returncode == 0, result.stderr
    assert "losses" not in result.stderr

    expected_spans = sorted(f"task-{i}" for i in range(TASKS))
    expected_events = sorted(f"task {i}" for i in range(TASKS))
    assert sorted(span.name for _, span in otlp_receiver.spans()) == expected_spans
    assert sorted(r.body.string_value for _, r in otlp_receiver.log_records()) == expected_events
    last: dict[str, int] = {}
    for resource, metric in otlp_receiver.metrics():
        if metric.name == "tasks":
            last[resource["service.instance.id"]] = metric.sum.data_points[-1].as_int
    assert sum(last.values()) == TASKS

    file_spans = [
        span["name"]
        for request in _file_records(tmp_path, "traces")
        for resource in request["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    file_events = [
        record["body"]["stringValue"]
        for request in _file_records(tmp_path, "logs")
        for resource in request["resourceLogs"]
        for scope in resource["scopeLogs"]
        for record in scope["logRecords"]
    ]
    assert sorted(file_spans) == expected_spans
    assert sorted(file_events) == expected_events
    assert _file_counter_total(tmp_path) == TASKS
