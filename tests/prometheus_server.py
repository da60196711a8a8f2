"""A real Prometheus server (Debian's package) on 127.0.0.1, scraping every second."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

INSTALL = "apt-get install -y --no-install-recommends prometheus (make test does it as root)"
# .ci/run sets this: there, a missing Prometheus is a failure, not a skip.
REQUIRED = os.environ.get("REQUIRE_PROMETHEUS_TESTS") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prometheus_binary(name: str = "prometheus") -> str:
    """The server, or ``promtool`` (the same package), or a skip (a failure in CI)."""
    binary = shutil.which(name)
    if binary is None:
        message = f"{name} (the Prometheus package) is not installed: {INSTALL}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return binary


def promtool_errors(page: str) -> str:
    """What ``promtool check metrics`` finds wrong with a page, past lint advice (help
    texts, suffixes): a page Prometheus would refuse to scrape. Empty when none."""
    result = subprocess.run(
        [prometheus_binary("promtool"), "check", "metrics"],
        input=page,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "" if result.returncode in (0, 3) else result.stdout + result.stderr  # 3: lint only


class PrometheusServer:
    """Starts Prometheus scraping one target; stops it (and only it) on stop()."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: telemetry_otel\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self._log = (directory / "prometheus.log").open("w")
        self._process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"Prometheus did not become ready on {self.url}")

    def query(self, promql: str) -> list[dict[str, object]]:
        """Instant PromQL query: the result vector."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, promql: str, timeout_s: float = 30) -> float | None:
        """The single value of a query once Prometheus has scraped it, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return float(result[0]["value"][1])  # type: ignore[index]
            time.sleep(0.25)
        return None

    def wait_for_value(self, promql: str, expected: float, timeout_s: float = 30) -> float | None:
        """The query's value once it reads ``expected``, or the last one read at the timeout."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.value(promql, timeout_s=max(0.1, deadline - time.monotonic()))
            if value == expected:
                return value
            time.sleep(0.25)
        return value

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._log.close()
