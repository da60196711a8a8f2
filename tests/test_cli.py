"""The telemetry-otel command, run as a subprocess like a user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig, Trace
from tests.prometheus_server import free_port


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "telemetry_otel", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("command", [[], ["demo"], ["check"], ["receive"], ["config"]])
def test_every_command_has_help(command):
    result = _cli(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: telemetry-otel")


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_check_reports_each_signal_accepted_and_exits_zero(otlp_receiver, transport):
    port = otlp_receiver.grpc_port if transport == "grpc" else otlp_receiver.http_port
    result = _cli("check", f"{transport}://127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["traces", "accepted"], ["metrics", "accepted"], ["logs", "accepted"],
    ]  # fmt: skip
    assert all(re.search(r"\d+\.\d ms$", line) for line in lines)
    assert sorted(r.signal for r in otlp_receiver.received) == ["logs", "metrics", "traces"]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_check_against_a_closed_port_says_refused(transport):
    result = _cli("check", f"{transport}://127.0.0.1:{free_port()}?timeout_ms=2000")
    assert result.returncode == 1
    assert all("FAILED (refused" in line for line in result.stdout.splitlines()), result.stdout


def test_check_reports_an_http_401(otlp_receiver):
    for signal_name in ("traces", "metrics", "logs"):
        otlp_receiver.fail_next("http", signal_name, (401, {}, b"no key"))
    result = _cli("check", f"http://127.0.0.1:{otlp_receiver.http_port}")
    assert result.returncode == 1
    assert [line.split("(")[1].split(")")[0] for line in result.stdout.splitlines()] == [
        "HTTP 401 Unauthorized: no key"
    ] * 3


def test_check_refuses_a_non_otlp_endpoint():
    result = _cli("check", "console")
    assert result.returncode == 2
    assert "check needs exactly one OTLP endpoint" in result.stderr


def test_receive_prints_what_a_collector_sends(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    jsonl = tmp_path / "received.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "telemetry_otel", "receive", "--grpc-port", str(grpc_port),
         "--http-port", str(http_port), "--jsonl", str(jsonl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        assert "receiving OTLP on grpc" in process.stderr.readline()
        config = TelemetryConfig(export_endpoints=[f"grpc://127.0.0.1:{grpc_port}"],
                                 flush_interval_ms=60_000)  # fmt: skip
        with TelemetryCollector(config) as collector:
            collector.collect_trace(Trace("t", "s", "GET /users", 12.5, tags={"route": "/u"}))
            collector.collect_event(Event("user_action", "checkout"))
            collector.collect_metric(Metric("orders", 3, MetricType.COUNTER))
            assert collector.flush(10_000) is True
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    lines = out.splitlines()
    assert any(re.search(r" TRACE  OK +GET /users 12\.500ms trace=\w{8} span=\w{8} .*route=/u", line)
               for line in lines), out  # fmt: skip
    assert any(" EVENT  INFO      user_action: checkout" in line for line in lines), out
    assert any(re.search(r" METRIC SUM +orders 3$", line) for line in lines), out
    assert len(jsonl.read_text().splitlines()) >= 3


def test_demo_sends_a_realistic_sample_to_the_console():
    result = _cli("demo")
    assert result.returncode == 0, result.stderr
    kinds = [line.split()[1] for line in result.stdout.splitlines()]
    assert kinds.count("TRACE") == 3 and kinds.count("EVENT") == 5 and kinds.count("METRIC") == 3
    assert "ERROR     payment.charge" in result.stdout
    assert "all delivered: True" in result.stderr


def test_config_prints_the_effective_configuration_with_secrets_masked():
    result = _cli("config", env={
        "TELEMETRY_SAMPLE_RATE": "0.25",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr3t-value",
    })  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sample_rate                0.25  (TELEMETRY_SAMPLE_RATE)" in result.stdout
    assert "headers={'api-key': '***'}" in result.stdout
    assert "s3cr3t-value" not in result.stdout


def test_a_malformed_variable_is_a_clear_error_and_exit_code_2():
    result = _cli("config", env={"TELEMETRY_BUFFER_SIZE": "lots"})
    assert result.returncode == 2
    assert "TELEMETRY_BUFFER_SIZE='lots'" in result.stderr


def test_version_prints_the_package_version(capsys):
    from telemetry_otel import __version__, cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"telemetry-otel {__version__}\n"


def test_demo_into_a_closed_pipe_ends_quietly():
    # `telemetry-otel demo | head -2`: the shell's pipe, the reader gone after two lines
    # (or still there, if the demo wrote everything first: both end the same way).
    result = subprocess.run(
        f"{sys.executable} -m telemetry_otel demo | head -2; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_demo_events_read_with_the_right_article():
    result = _cli("demo")
    messages = [line.split(": ", 1)[1].split(" order_id")[0] for line in
                result.stdout.splitlines() if " EVENT " in line]  # fmt: skip
    assert messages == ["a debug event", "an info event", "a warning event", "an error event",
                        "a critical event"]  # fmt: skip


def test_a_console_whose_reader_left_counts_the_loss_and_warns_once(caplog):
    from telemetry_otel._otel.log import _last_warned

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def isatty(self):
            return False

    _last_warned.pop("console:closed", None)
    with TelemetryCollector(TelemetryConfig(export_endpoints=["console"])) as collector:
        [console] = collector._pipeline._destinations
        console.logs._lines._out = ClosedPipe()  # as if stdout's reader had gone
        with caplog.at_level("WARNING", logger="telemetry_otel"):
            for n in range(3):
                collector.collect_event(Event("e", f"m{n}"))
                collector.flush(5_000)
        stats = collector.stats()["event"]
    assert (stats["exported"], stats["export_failures_exporter"]) == (0, 3)
    closed = [r for r in caplog.records if "closed by its reader" in r.getMessage()]
    assert len(closed) == 1 and not closed[0].exc_info
