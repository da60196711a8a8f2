"""One service in many processes: gunicorn workers share one Prometheus page.

A real gunicorn serves ``tests/gunicorn_app.py`` with 4 sync workers, its collector
started after the fork in each worker (``post_fork``) or in the master with
``--preload``; a real Prometheus server scrapes the one port, and an OTLP receiver
takes the same metrics.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.prometheus_server import PrometheusServer, free_port, prometheus_binary

ROOT = Path(__file__).resolve().parent.parent
INTERVAL_MS = 500


class Gunicorn:
    """gunicorn serving the test app on 127.0.0.1; stops it (and only it) on stop()."""

    def __init__(self, preload: bool, environment: dict[str, str]) -> None:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "4",
            "-b",
            f"127.0.0.1:{self.port}",
            "-c",
            "tests/gunicorn_conf.py",
            "--no-control-socket",
            *(["--preload"] if preload else []),
            "tests.gunicorn_app:app",
        ]
        environment = {**environment, "APP_START": "master" if preload else "worker"}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def get(self) -> int:
        """One request; the pid of the worker that served it."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/")
            return int(connection.getresponse().read())
        finally:
            connection.close()

    def wait_ready(self) -> int:
        """Once it answers: the pid of the worker that answered the first request."""
        for _ in range(300):  # bounded: 30 s at most
            try:
                return self.get()
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("gunicorn did not answer")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=60)
        return output.decode(errors="replace")


def _published_requests(folder: Path, pid: int) -> float | None:
    """The "requests" total a worker last published to the page's folder."""
    for path in folder.glob(f"{pid}-*.json"):
        families = json.loads(path.read_text())["families"]
        samples = [s for f in families if f["name"] == "requests" for s in f["samples"]]
        return sum(value for name, _, value, *_ in samples if name == "requests_total")
    return None


@pytest.mark.parametrize("preload", [False, True], ids=["post_fork", "preload"])
def test_gunicorn_workers_share_one_exact_prometheus_page_across_worker_deaths(
    preload, tmp_path, otlp_receiver
):
    prometheus_binary()
    page_port = free_port()
    environment = {
        **os.environ,
        "TELEMETRY_EXPORT_ENDPOINTS": (
            f"prometheus://127.0.0.1:{page_port},grpc://127.0.0.1:{otlp_receiver.grpc_port}"
        ),
        "TELEMETRY_PROMETHEUS_DIR": str(tmp_path / "page"),
        "TELEMETRY_FLUSH_INTERVAL_MS": str(INTERVAL_MS),
    }
    prometheus = PrometheusServer(tmp_path, f"127.0.0.1:{page_port}")
    gunicorn = Gunicorn(preload, environment)
    output = ""
    try:
        prometheus.wait_ready()
        by_worker = Counter([gunicorn.wait_ready()])
        by_worker.update(gunicorn.get() for _ in range(999))
        served = 1 + 999
        pids = set(by_worker)
        assert len(pids) >= 2
        assert prometheus.wait_for_value("requests_total", served) == served

        # A worker that exits gracefully, and one killed outright once it has published
        # what it served (the one serving the port, unless the master serves it): a
        # worker killed so loses what it counted since its last publication, at most
        # one interval's. Both are replaced.
        graceful = min(pids)
        os.kill(graceful, signal.SIGTERM)
        folder = tmp_path / "page" / f"127.0.0.1_{page_port}"
        serving = int((folder / ".serve.lock").read_text())
        killed = serving if not preload else max(pids - {graceful})
        for _ in range(100):  # bounded: 10 s at most
            if _published_requests(folder, killed) == by_worker[killed]:
                break
            time.sleep(0.1)
        assert _published_requests(folder, killed) == by_worker[killed]
        os.kill(killed, signal.SIGKILL)
        # Another worker takes the port within an interval; no count is lost.
        assert prometheus.wait_for_value("requests_total", served) == served
        for _ in range(1000):
            pids.add(gunicorn.get())
        served += 1000
        assert prometheus.wait_for_value("requests_total", served) == served
        # Gauges: one series per living process, labelled with its pid.
        gauges = prometheus.query("worker_pid")
        for series in gauges:
            assert series["value"][1] == series["metric"]["process_pid"]  # type: ignore[index]
        assert {int(s["metric"]["process_pid"]) for s in gauges} <= pids  # type: ignore[index]
        assert graceful not in {int(s["metric"]["process_pid"]) for s in gauges}  # type: ignore[index]
    finally:
        output = gunicorn.stop()
        prometheus.stop()
    assert "Traceback" not in output, output
    # The same counts through OTLP: one stream per worker, each a cumulative total.
    last: dict[str, int] = {}
    for resource, metric in otlp_receiver.metrics():
        if metric.name == "requests":
            last[resource["service.instance.id"]] = metric.sum.data_points[-1].as_int
    assert sum(last.values()) == served
    assert len(last) >= 5  # 4 workers, the replacement of the graceful one (and others)


# A worker as deliver_on_terminate makes it, with one event to deliver; what follows it
# says where the SIGTERM finds the worker.
_WORKER_WITH_AN_EVENT = """
import multiprocessing, signal, sys, time
from telemetry_otel import Event, TelemetryCollector, TelemetryConfig, deliver_on_terminate
deliver_on_terminate()
collector = TelemetryCollector(TelemetryConfig(export_endpoints=["file://" + sys.argv[1]],
                                               flush_interval_ms=60_000))
collector.start()
collector.collect_event(Event("task_done", "before the SIGTERM"))
"""

_SWALLOWS_SYSTEM_EXIT = (
    _WORKER_WITH_AN_EVENT
    + """
print("ready", flush=True)
for _ in range(600):  # bounded: a minute
    try:
        time.sleep(0.1)
    except SystemExit:
        pass  # as Python swallows it when it lands in a weakref callback or a __del__
"""
)


def _terminated(script: str, directory: Path) -> tuple[int, float]:
    """Run a worker script until it says ready, SIGTERM it: its exit code, and how long
    it took to end. Kills it (the one process started here) if it does not end."""
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        return worker.wait(timeout=30), time.monotonic() - started
    finally:
        worker.kill()
        worker.wait()


def test_a_sigterm_whose_system_exit_is_swallowed_still_delivers_and_ends_the_worker(tmp_path):
    # Pool.terminate() ends a worker with SIGTERM; when the SystemExit it raises lands
    # where Python ignores exceptions, the worker used to wait for tasks for ever.
    code, _ = _terminated(_SWALLOWS_SYSTEM_EXIT, tmp_path)
    assert code == 128 + signal.SIGTERM
    lines = (tmp_path / "logs.jsonl").read_text().splitlines()
    assert ['"before the SIGTERM"' in line for line in lines] == [True]


_SIGTERM_WHILE_EXITING = """
import multiprocessing, os, signal, sys
from multiprocessing import util
from telemetry_otel import Event, TelemetryCollector, TelemetryConfig, deliver_on_terminate

def work(directory, when):
    deliver_on_terminate()
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=["file://" + directory],
                                                   flush_interval_ms=60_000))
    collector.start()
    collector.collect_event(Event("task_done", "before the exit"))
    # Pool.terminate() can signal a worker that is already leaving (it got its
    # sentinel): the SIGTERM lands as its exit function begins, or among the
    # function's finalizers before the one that stops the collector (a higher
    # priority runs first).
    if when == "as it begins":
        def signal_on_entry(frame, event, arg):
            if event == "call" and frame.f_code is util._exit_function.__code__:
                sys.setprofile(None)
                os.kill(os.getpid(), signal.SIGTERM)
        sys.setprofile(signal_on_entry)
    else:
        util.Finalize(None, os.kill, (os.getpid(), signal.SIGTERM), exitpriority=100)

if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[2])
    worker = context.Process(target=work, args=(sys.argv[1], sys.argv[3]))
    worker.start()
    worker.join(60)
    print(worker.exitcode)
"""


@pytest.mark.parametrize("when", ["as it begins", "among the finalizers"])
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_sigterm_while_a_worker_is_already_leaving_does_not_cut_its_delivery_short(
    method, when, tmp_path
):
    script = tmp_path / "leaving.py"
    script.write_text(_SIGTERM_WHILE_EXITING)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), method, when],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert (result.stdout, result.stderr) == ("0\n", "")
    lines = (tmp_path / "logs.jsonl").read_text().splitlines()
    assert ['"before the exit"' in line for line in lines] == [True]


_MAIN_THREAD_BLOCKED_IN_C = (
    _WORKER_WITH_AN_EVENT
    + """
# The kernel hands a process signal to any thread that does not block it: here never
# the main one, which then waits in C on a lock nobody releases, as a Pool worker waits
# for the task queue's lock that Pool.terminate() keeps.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
lock = multiprocessing.Lock()
lock.acquire()
print("ready", flush=True)
lock.acquire(timeout=60)  # bounded: a minute
"""
)


def test_a_sigterm_another_thread_receives_still_delivers_and_ends_the_worker(tmp_path):
    code, took = _terminated(_MAIN_THREAD_BLOCKED_IN_C, tmp_path)
    assert code == 128 + signal.SIGTERM
    assert took < 20  # not the minute the lock would wait
    lines = (tmp_path / "logs.jsonl").read_text().splitlines()
    assert ['"before the SIGTERM"' in line for line in lines] == [True]
