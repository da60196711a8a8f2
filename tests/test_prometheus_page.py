"""The page shared by the processes of a service: what each process publishes, how the
page merges it, who serves it, and what a process that cannot bind does."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from telemetry_otel import Metric, MetricType, TelemetryConfig
from telemetry_otel._otel.destinations.prometheus import _FOLD_AFTER
from tests.prometheus_server import free_port

ROOT = Path(__file__).resolve().parent.parent

_PUBLISHER = """
import sys
from telemetry_otel import *
collector = TelemetryCollector(TelemetryConfig(
    export_endpoints=[sys.argv[1]], prometheus_dir=sys.argv[2], flush_interval_ms=200,
    self_metrics=False))
collector.start()
collector.collect_metric(Metric("orders", int(sys.argv[3]), MetricType.COUNTER))
collector.collect_metric(Metric("depth", float(sys.argv[4]), MetricType.GAUGE))
collector.collect_metric(Metric("latency", float(sys.argv[3]), MetricType.HISTOGRAM))
assert collector.flush(5000)
print("published", flush=True)
sys.stdin.readline()
collector.stop()
"""


class Publisher:
    """Another process of the service: publishes a counter, a gauge and a histogram."""

    def __init__(self, endpoint: str, directory: Path, orders: int, depth: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PUBLISHER, endpoint, str(directory), str(orders), str(depth)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "published\n", self.process.stderr

    def stop(self) -> None:
        self.process.communicate("stop\n", timeout=30)
        assert self.process.returncode == 0

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=30)


def _page(port: int) -> dict[str, float]:
    """The page's samples, by their line up to the value (comments left out)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series.replace('otel_scope_name="telemetry_otel",', "")] = float(value)
    return samples


def _named(samples: dict[str, float], name: str) -> dict[str, float]:
    return {series: value for series, value in samples.items() if series.startswith(name + "{")}


def _scope(series: str) -> str:
    """A series without the scope's version labels, for shorter expected values."""
    for label in ('otel_scope_schema_url="",', 'otel_scope_version="0.1.0",'):
        series = series.replace(label, "")
    return series.replace('otel_scope_version="0.1.0"', "").replace(",}", "}")


def _short(samples: dict[str, float], name: str) -> dict[str, float]:
    return {_scope(series): value for series, value in _named(samples, name).items()}


def _page_lines(caplog) -> list[str]:
    """What the page logged: a second after start, a collector whose only endpoint is a
    page also says that its traces and events go nowhere."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("prometheus://")]


def _wait(condition, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture
def page(tmp_path, make_collector):
    """This process serves a page on a free port; others publish to the same directory."""
    port = free_port()
    endpoint = f"prometheus://127.0.0.1:{port}"
    collector = make_collector(
        export_endpoints=[endpoint],
        prometheus_dir=str(tmp_path),
        flush_interval_ms=200,
        self_metrics=False,
    )
    return collector, endpoint, port, tmp_path


def test_counters_and_histograms_add_up_over_processes_and_gauges_carry_each_pid(page):
    collector, endpoint, port, directory = page
    collector.collect_metric(Metric("orders", 5, MetricType.COUNTER))
    collector.collect_metric(Metric("depth", 2.0, MetricType.GAUGE))
    collector.collect_metric(Metric("latency", 5.0, MetricType.HISTOGRAM))
    other = Publisher(endpoint, directory, orders=7, depth=9.5)
    try:
        samples = _page(port)
        assert _short(samples, "orders_total") == {"orders_total{}": 12.0}
        assert _short(samples, "depth") == {
            f'depth{{process_pid="{os.getpid()}"}}': 2.0,
            f'depth{{process_pid="{other.process.pid}"}}': 9.5,
        }
        assert _short(samples, "latency_count") == {"latency_count{}": 2.0}
        assert _short(samples, "latency_sum") == {"latency_sum{}": 12.0}
        buckets = _short(samples, "latency_bucket")
        assert (buckets['latency_bucket{le="5.0"}'], buckets['latency_bucket{le="10.0"}']) == (
            1.0,
            2.0,
        )
        # The serving process's resource, without the attribute that differs per process.
        [target] = _named(samples, "target_info")
        assert "service_instance_id" not in target
    finally:
        other.kill()
    # An exited process's totals stay counted; its gauges leave with it.
    samples = _page(port)
    assert _short(samples, "orders_total") == {"orders_total{}": 12.0}
    assert _short(samples, "depth") == {f'depth{{process_pid="{os.getpid()}"}}': 2.0}


@pytest.mark.parametrize(
    ("rule", "expected"), [("sum", 11.5), ("max", 9.5), ("min", 2.0), ("last", 9.5)]
)
def test_a_gauge_rule_shows_one_series_over_the_living_processes(
    rule, expected, tmp_path, make_collector
):
    port = free_port()
    endpoint = f"prometheus://127.0.0.1:{port}?gauges={rule}"
    collector = make_collector(
        export_endpoints=[endpoint], prometheus_dir=str(tmp_path), flush_interval_ms=200
    )
    collector.collect_metric(Metric("depth", 2.0, MetricType.GAUGE))
    assert collector.flush(5000)
    time.sleep(0.05)  # "last": the other process publishes later
    other = Publisher(endpoint, tmp_path, orders=1, depth=9.5)
    try:
        assert _short(_page(port), "depth") == {"depth{}": expected}
    finally:
        other.stop()
    assert _short(_page(port), "depth") == {"depth{}": 2.0}


# Forking while the collector's threads run is what this test is about.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_counts_only_what_it_measured_itself(page):
    collector, _, port, _ = page
    collector.collect_metric(Metric("orders", 10, MetricType.COUNTER))
    assert collector.flush(5000)
    to_parent, from_child = os.pipe()
    to_child, from_parent = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = b"E"
        try:
            collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
            status = b"1" if collector.flush(5000) else b"0"
        finally:
            os.write(from_child, status)
            os.read(to_child, 1)  # until the parent has read the page
            collector.stop()
            os._exit(0)
    os.close(from_child)
    os.close(to_child)
    try:
        assert os.read(to_parent, 1) == b"1"
        collector.collect_metric(Metric("orders", 2, MetricType.COUNTER))
        # 10 + 2 in the parent, 1 in the child: never the parent's 10 twice.
        assert _short(_page(port), "orders_total") == {"orders_total{}": 13.0}
    finally:
        os.write(from_parent, b"x")
        os.waitpid(pid, 0)
    assert _short(_page(port), "orders_total") == {"orders_total{}": 13.0}


def test_the_page_outlives_its_server_another_process_takes_the_port(tmp_path):
    port = free_port()
    endpoint = f"prometheus://127.0.0.1:{port}"
    first = Publisher(endpoint, tmp_path, orders=3, depth=1.0)  # serves: the first to join
    second = Publisher(endpoint, tmp_path, orders=4, depth=2.0)
    try:
        assert _short(_page(port), "orders_total") == {"orders_total{}": 7.0}
        first.kill()  # SIGKILL, after it published everything it counted
        # The other process takes the port within its interval (200 ms here).
        samples = _wait(lambda: _safe_page(port))
        assert _short(samples, "orders_total") == {"orders_total{}": 7.0}
        assert _short(samples, "depth") == {f'depth{{process_pid="{second.process.pid}"}}': 2.0}
    finally:
        second.stop()


def _safe_page(port: int) -> dict[str, float] | None:
    try:
        return _page(port)
    except OSError:
        return None


def test_a_process_that_cannot_bind_starts_and_serves_once_the_port_is_free(
    tmp_path, make_collector, caplog
):
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = make_collector(
            export_endpoints=[f"prometheus://127.0.0.1:{port}"],
            prometheus_dir=str(tmp_path),
            flush_interval_ms=200,
        )
    [line] = _page_lines(caplog)
    assert line == (
        f"prometheus://127.0.0.1:{port}: cannot serve 127.0.0.1:{port} (Address already in "
        f"use); retrying every 0.2 s. This process's metrics are kept in "
        f"{tmp_path / f'127.0.0.1_{port}'} meanwhile"
    )
    collector.collect_metric(Metric("orders", 4, MetricType.COUNTER))
    assert collector.flush(5000) is True
    [published] = (tmp_path / f"127.0.0.1_{port}").glob("*.json")
    families = {f["name"]: f for f in json.loads(published.read_text())["families"]}
    assert families["orders"]["samples"][0][0::2] == ["orders_total", 4.0]
    squatter.close()
    samples = _wait(lambda: _safe_page(port))
    assert _short(samples, "orders_total") == {"orders_total{}": 4.0}


def test_a_corrupt_file_in_the_directory_is_skipped_with_one_warning(page, caplog):
    collector, _, port, directory = page
    collector.collect_metric(Metric("orders", 2, MetricType.COUNTER))
    folder = next(directory.iterdir())
    (folder / "4242-0badf00d.json").write_text('{"pid": 4242, "families": [')
    (folder / "4242-0badf00d.lock").write_text("")
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        assert _short(_page(port), "orders_total") == {"orders_total{}": 2.0}
        assert _short(_page(port), "orders_total") == {"orders_total{}": 2.0}
    [line] = _page_lines(caplog)
    assert line.startswith(f"prometheus://127.0.0.1:{port}: skipping {folder}/4242-0badf00d.json")


def test_exited_processes_fold_into_one_file_and_their_totals_stay(page):
    collector, endpoint, port, directory = page
    collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
    for n in range(_FOLD_AFTER):  # the exited files kept apart before they are folded
        Publisher(endpoint, directory, orders=10 + n, depth=1.0).stop()
    folder = next(directory.iterdir())

    def members() -> list[str]:
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    # Folded by the serving process's upkeep (the folded file is written first, then the
    # exited ones removed): one file for them all, their sum kept.
    _wait(lambda: (folder / ".exited.json").exists() and len(members()) == 2)
    assert (folder / ".exited.json").exists()
    assert [name.split("-")[0] for name in members()] == [str(os.getpid())] * 2
    total = 1.0 + sum(range(10, 10 + _FOLD_AFTER))
    assert _short(_page(port), "orders_total") == {"orders_total{}": total}
    assert "depth" not in {series.split("{")[0] for series in _page(port)}


def test_a_service_started_again_from_nothing_starts_its_page_afresh(tmp_path):
    port = free_port()
    endpoint = f"prometheus://127.0.0.1:{port}"
    Publisher(endpoint, tmp_path, orders=5, depth=1.0).stop()
    again = Publisher(endpoint, tmp_path, orders=2, depth=1.0)
    try:
        assert _short(_page(port), "orders_total") == {"orders_total{}": 2.0}
    finally:
        again.stop()


def test_the_directory_option_its_variable_and_its_defaults(tmp_path, monkeypatch):
    from telemetry_otel._endpoints import parse_endpoint
    from telemetry_otel._otel.destinations.prometheus import page_directory

    endpoint = parse_endpoint("prometheus://[::1]:9464")
    assert page_directory(TelemetryConfig(prometheus_dir="/srv/page"), endpoint) == Path(
        "/srv/page/__1_9464"
    )
    assert page_directory(TelemetryConfig(spool_dir="/var/spool/x"), endpoint) == Path(
        "/var/spool/x/prometheus/__1_9464"
    )
    monkeypatch.setenv("TELEMETRY_PROMETHEUS_DIR", str(tmp_path))
    assert TelemetryConfig.from_env().prometheus_dir == str(tmp_path)
    with pytest.raises(
        ValueError, match=r"prometheus_dir must be a non-empty path or None, got ''"
    ):
        TelemetryConfig(prometheus_dir="")
    with pytest.raises(
        ValueError,
        match=r"'prometheus://127.0.0.1:9464\?gauges=avg' has gauges='avg'; expected one of "
        r"per_process, sum, max, min, last",
    ):
        TelemetryConfig(export_endpoints=["prometheus://127.0.0.1:9464?gauges=avg"])


def test_stop_leaves_the_page_and_a_second_collector_in_the_process_serves_it(
    tmp_path, make_collector
):
    port = free_port()
    endpoint = f"prometheus://127.0.0.1:{port}"
    first = make_collector(export_endpoints=[endpoint], prometheus_dir=str(tmp_path))
    second = make_collector(
        export_endpoints=[endpoint], prometheus_dir=str(tmp_path), flush_interval_ms=200
    )
    first.collect_metric(Metric("orders", 3, MetricType.COUNTER))
    second.collect_metric(Metric("orders", 4, MetricType.COUNTER))
    assert second.flush(5000)
    assert _short(_page(port), "orders_total") == {"orders_total{}": 7.0}
    first.stop()
    samples = _wait(lambda: _safe_page(port))
    assert _short(samples, "orders_total") == {"orders_total{}": 7.0}


def test_a_worker_killed_by_sigterm_without_a_handler_keeps_what_it_had_published(tmp_path):
    port = free_port()
    endpoint = f"prometheus://127.0.0.1:{port}"
    server = Publisher(endpoint, tmp_path, orders=1, depth=1.0)
    worker = Publisher(endpoint, tmp_path, orders=6, depth=1.0)
    try:
        worker.process.send_signal(signal.SIGTERM)
        worker.process.communicate(timeout=30)
        assert _short(_page(port), "orders_total") == {"orders_total{}": 7.0}
    finally:
        server.stop()


def test_a_directory_that_cannot_be_used_leaves_the_process_serving_its_own_page(
    tmp_path, make_collector, caplog
):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = make_collector(
            export_endpoints=[f"prometheus://127.0.0.1:{port}"], prometheus_dir=str(not_a_folder)
        )
    [line] = _page_lines(caplog)
    assert line.startswith(
        f"prometheus://127.0.0.1:{port}: cannot share the page through "
        f"{not_a_folder / f'127.0.0.1_{port}'} ("
    )
    assert line.endswith("); this process serves its own metrics alone")
    collector.collect_metric(Metric("orders", 2, MetricType.COUNTER))
    assert collector.flush(5000) is True
    assert _short(_page(port), "orders_total") == {"orders_total{}": 2.0}


def test_a_folder_in_the_temporary_directory_made_by_someone_else_is_not_used(
    tmp_path, monkeypatch, make_collector, caplog
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    planted = tmp_path / f"telemetry_otel-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # as another user would leave it: anyone may write there
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = make_collector(export_endpoints=[f"prometheus://127.0.0.1:{port}"])
    [line] = _page_lines(caplog)
    assert f"({planted} belongs to uid {os.getuid()} with mode 777)" in line
    assert not (planted / "prometheus").exists()
    collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
    assert _short(_page(port), "orders_total") == {"orders_total{}": 1.0}  # served alone


_FORKS_WHILE_BUSY = """
import os, sys, threading, urllib.request
from telemetry_otel import *
port, directory = int(sys.argv[1]), sys.argv[2]
collector = TelemetryCollector(TelemetryConfig(
    export_endpoints=[f"prometheus://127.0.0.1:{port}"], prometheus_dir=directory,
    flush_interval_ms=5, self_metrics=False))
collector.start()
collector.collect_metric(Metric("orders", 100, MetricType.COUNTER))
scraping = True

def scrape():  # the members lock taken again and again while the parent forks
    while scraping:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()

scraper = threading.Thread(target=scrape, daemon=True)
scraper.start()
for n in range(20):
    pid = os.fork()
    if pid == 0:
        collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
        ok = collector.flush(5000)
        collector.stop(timeout_ms=5000)
        os._exit(0 if ok else 1)
    assert os.waitpid(pid, 0)[1] == 0, n
scraping = False
scraper.join()
page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
print([line for line in page.splitlines() if line.startswith("orders_total")][0].split()[-1])
collector.stop()
"""


def test_children_forked_while_the_page_is_scraped_and_published_join_it_exactly(
    tmp_path, busy_cores
):
    result = subprocess.run(
        [sys.executable, "-c", _FORKS_WHILE_BUSY, str(free_port()), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # The parent's 100 once, and each child's 1: no child counted the parent's again,
    # none hung on a lock its parent held at the fork.
    assert result.stdout.split() == ["120.0"]
