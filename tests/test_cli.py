"""The telemetry-otel command, run as a subprocess like a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_otel import Event, TelemetryCollector, TelemetryConfig, cli
from tests.misbehaving import Flooder
from tests.prometheus_server import free_port


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "telemetry_otel", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("command", [[], ["demo"], ["check"], ["receive"], ["config"]])
def test_every_command_has_help_with_a_description_and_its_exit_codes(command):
    result = _cli(*command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert result.stdout.startswith("usage: telemetry-otel")
    _, description, *rest = result.stdout.split("\n\n")
    assert len(description.split()) >= 12, description  # a sentence, not a word
    exit_codes = rest[-1].strip()
    assert exit_codes.startswith("Exit codes: 0 "), exit_codes
    assert " 2 " in exit_codes


def _check(capsys, endpoint: str) -> tuple[int, list[str], str]:
    code = cli.main(["check", endpoint])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _verdicts(lines: list[str]) -> list[str]:
    """What each signal's line says after its URL: the diagnosis, one line."""
    return [line.split(": ", 1)[1] if ": " in line else "" for line in lines]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_check_reports_each_signal_accepted_with_the_url_it_tried(otlp_receiver, transport, capsys):
    port = otlp_receiver.grpc_port if transport == "grpc" else otlp_receiver.http_port
    code, lines, _ = _check(capsys, f"{transport}://127.0.0.1:{port}")
    assert code == 0
    tried = {
        "grpc": [
            f"grpc://127.0.0.1:{port} {service}/Export"
            for service in ("TraceService", "MetricsService", "LogsService")
        ],
        "http": [f"http://127.0.0.1:{port}/v1/{name}" for name in ("traces", "metrics", "logs")],
    }[transport]
    assert [re.sub(r" +\d+\.\d ms  ", " | ", line) for line in lines] == [
        f"{name:<8} accepted | {url}"
        for name, url in zip(("traces", "metrics", "logs"), tried, strict=True)
    ]
    assert sorted(r.signal for r in otlp_receiver.received) == ["logs", "metrics", "traces"]


def test_check_smoke_as_a_command(otlp_receiver):
    result = _cli("check", f"grpc://127.0.0.1:{otlp_receiver.grpc_port}")
    assert result.returncode == 0, result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["traces", "accepted"],
        ["metrics", "accepted"],
        ["logs", "accepted"],
    ]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_check_against_a_closed_port_says_nothing_listens(transport, capsys):
    port = free_port()
    code, lines, _ = _check(capsys, f"{transport}://127.0.0.1:{port}?timeout_ms=2000")
    assert code == 1
    assert (
        _verdicts(lines)
        == [f"nothing listens on 127.0.0.1:{port}: is the receiver running, and on this port?"] * 3
    )


@pytest.mark.parametrize("status", [401, 403])
def test_check_says_to_check_the_headers_on_401_and_403(otlp_receiver, status, capsys):
    for signal_name in ("traces", "metrics", "logs"):
        otlp_receiver.fail_next("http", signal_name, (status, {}, b"no key"))
    code, lines, _ = _check(capsys, f"http://127.0.0.1:{otlp_receiver.http_port}")
    assert code == 1
    reason = {401: "Unauthorized", 403: "Forbidden"}[status]
    assert (
        _verdicts(lines)
        == [f"HTTP {status} {reason}: no key; check your headers (OTEL_EXPORTER_OTLP_HEADERS)"] * 3
    )


def test_check_names_the_path_that_answered_404(otlp_receiver, capsys):
    for signal_name in ("traces", "metrics", "logs"):
        otlp_receiver.fail_next("http", signal_name, (404, {}, b"not found"))
    code, lines, _ = _check(capsys, f"http://127.0.0.1:{otlp_receiver.http_port}/otlp")
    assert code == 1
    assert _verdicts(lines) == [
        f"HTTP 404 at /otlp/v1/{name}: give the receiver's base URL (this library adds "
        "/v1/<signal>) or the signal's full path"
        for name in ("traces", "metrics", "logs")
    ]


@pytest.fixture(scope="module")
def secure_receiver(tmp_path_factory):
    from tests.otlp_receiver import OtlpReceiver
    from tests.tls import make_tls_files

    tls = make_tls_files(tmp_path_factory.mktemp("tls"))
    receiver = OtlpReceiver(tls=tls).start()
    yield receiver, tls
    receiver.stop()


def _mistakes(otlp_receiver, secure_receiver):
    """(what was written, what it should have been) for each common mistake."""
    plain_grpc, plain_http = otlp_receiver.grpc_port, otlp_receiver.http_port
    tls_receiver, tls = secure_receiver
    ca = f"&ca_file={tls.ca_file}"
    return [
        (
            f"http://127.0.0.1:{plain_grpc}",
            "speaks plaintext gRPC, not plain HTTP",
            f"grpc://127.0.0.1:{plain_grpc}",
        ),
        (
            f"grpc://127.0.0.1:{plain_http}",
            "speaks plain HTTP, not plaintext gRPC",
            f"http://127.0.0.1:{plain_http}",
        ),
        (
            f"https://127.0.0.1:{plain_http}?timeout_ms=3000{ca}",
            "speaks plain HTTP, not HTTPS",
            f"http://127.0.0.1:{plain_http}",
        ),
        (
            f"grpcs://127.0.0.1:{plain_grpc}?timeout_ms=3000{ca}",
            "speaks plaintext gRPC, not gRPC over TLS",
            f"grpc://127.0.0.1:{plain_grpc}",
        ),
        (
            f"http://127.0.0.1:{tls_receiver.http_port}",
            "speaks HTTPS, not plain HTTP",
            f"https://127.0.0.1:{tls_receiver.http_port}",
        ),
        (
            f"grpc://127.0.0.1:{tls_receiver.grpc_port}",
            "speaks gRPC over TLS, not plaintext gRPC",
            f"grpcs://127.0.0.1:{tls_receiver.grpc_port}",
        ),
    ]


def test_check_recognises_a_wrong_scheme_and_says_what_to_write(
    otlp_receiver, secure_receiver, capsys
):
    for written, spoken, instead in _mistakes(otlp_receiver, secure_receiver):
        code, lines, err = _check(capsys, written)
        where = instead.split("://")[1]
        assert code == 1, written
        assert _verdicts(lines) == [f"{where} {spoken}: write {instead}"] * 3, (written, lines)
        assert err == ""


def test_check_keeps_grpc_logging_off_the_screen_on_a_tls_mismatch(otlp_receiver, secure_receiver):
    # gRPC's C core logs a failed handshake of its own client to stderr, unless told not to.
    _, tls = secure_receiver
    port = otlp_receiver.grpc_port
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "telemetry_otel",
            "check",
            f"grpcs://127.0.0.1:{port}?timeout_ms=3000&ca_file={tls.ca_file}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 3
    assert all(
        line.endswith(
            f": 127.0.0.1:{port} speaks plaintext gRPC, not gRPC over TLS: "
            f"write grpc://127.0.0.1:{port}"
        )
        for line in result.stdout.splitlines()
    ), result.stdout


def test_check_refuses_a_non_otlp_endpoint():
    result = _cli("check", "console")
    assert result.returncode == 2
    assert "check needs exactly one OTLP endpoint" in result.stderr


def test_demo_sends_a_realistic_sample_to_the_console():
    result = _cli("demo")
    assert result.returncode == 0, result.stderr
    kinds = [line.split()[1] for line in result.stdout.splitlines()]
    assert kinds.count("TRACE") == 3 and kinds.count("EVENT") == 5 and kinds.count("METRIC") == 3
    names = [line.split()[3] for line in result.stdout.splitlines() if " TRACE " in line]
    assert names == ["POST", "db.query", "payment.charge"]  # the root, then its children
    assert "ERROR       payment.charge" in result.stdout
    assert "all delivered: True" in result.stderr


def test_config_prints_the_effective_configuration_with_secrets_masked():
    result = _cli(
        "config",
        env={
            "TELEMETRY_SAMPLE_RATE": "0.25",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr3t-value",
        },
    )
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
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_demo_events_read_with_the_right_article():
    result = _cli("demo")
    messages = [
        line.split(": ", 1)[1].split(" order_id")[0]
        for line in result.stdout.splitlines()
        if " EVENT " in line
    ]
    assert messages == [
        "a debug event",
        "an info event",
        "a warning event",
        "an error event",
        "a critical event",
    ]


def test_a_console_whose_reader_left_counts_the_loss_and_warns_once(caplog):
    from telemetry_otel._otel.runtime.log import _last_warned

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
        console.logs._trees.lines._out = ClosedPipe()  # as if stdout's reader had gone
        with caplog.at_level("WARNING", logger="telemetry_otel"):
            for n in range(3):
                collector.collect_event(Event("e", f"m{n}"))
                collector.flush(5_000)
        stats = collector.stats()["event"]
    assert (stats["exported"], stats["export_failures_exporter"]) == (0, 3)
    closed = [r for r in caplog.records if "closed by its reader" in r.getMessage()]
    assert len(closed) == 1 and not closed[0].exc_info


def test_the_installed_command_and_python_m_are_the_same_program():
    script = Path(sys.executable).with_name("telemetry-otel")
    for args in (["--version"], ["receive", "--help"]):
        installed = subprocess.run([str(script), *args], capture_output=True, text=True)
        module = _cli(*args)
        assert (installed.returncode, installed.stdout) == (module.returncode, module.stdout)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_check_says_plainly_that_a_server_does_not_accept_gzip(transport, capsys):
    from tests.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver(accept_gzip=False).start()
    try:
        port = receiver.grpc_port if transport == "grpc" else receiver.http_port
        code, lines, err = _check(capsys, f"{transport}://127.0.0.1:{port}")
    finally:
        receiver.stop()
    assert code == 0  # everything was taken, uncompressed
    refusal = {
        "grpc": "gRPC UNIMPLEMENTED: Compression algorithm 'gzip' is disabled.",
        "http": "HTTP 400 Bad Request: Failed to decode request body",
    }[transport]
    assert (
        _verdicts(lines)
        == [
            f"the server does not accept gzip ({refusal}): add ?compression=none to the "
            "endpoint (the collector falls back by itself, after one refused request)"
        ]
        * 3
    )
    assert all(line.split()[1] == "accepted" for line in lines)
    assert err == ""


def test_check_does_not_call_an_http_server_that_speaks_h2c_a_grpc_server(capsys):
    from tests.misbehaving import H2cLookalike

    server = H2cLookalike(400, b"cannot read this request")
    try:
        code, lines, _ = _check(capsys, f"http://127.0.0.1:{server.port}?timeout_ms=3000")
    finally:
        server.stop()
    assert code == 1
    # Its answer, not a "write grpc://" that would fail too.
    assert _verdicts(lines) == ["HTTP 400 Bad Request: cannot read this request"] * 3


def _secure_check(capsys, written: str) -> list[str]:
    code, lines, err = _check(capsys, written)
    assert (code, err) == (1, "")
    return _verdicts(lines)


def test_check_says_why_a_certificate_is_refused_over_grpcs_and_https_alike(
    secure_receiver, tmp_path, capsys
):
    from tests.otlp_receiver import OtlpReceiver
    from tests.tls import make_tls_files

    receiver, _ = secure_receiver
    other = make_tls_files(tmp_path, dns_names=("otlp.example.com",))
    elsewhere = OtlpReceiver(tls=other).start()
    try:
        for scheme, port_of in (("grpcs", "grpc_port"), ("https", "http_port")):
            port = getattr(receiver, port_of)
            untrusted = _secure_check(capsys, f"{scheme}://127.0.0.1:{port}?timeout_ms=3000")
            assert (
                untrusted
                == [
                    "the server's certificate was not trusted (unable to get local issuer "
                    "certificate): set ca_file= to the CA that signed it"
                ]
                * 3
            ), scheme
            wrong_ca = _secure_check(
                capsys, f"{scheme}://127.0.0.1:{port}?timeout_ms=3000&ca_file={other.ca_file}"
            )
            assert (
                wrong_ca
                == [
                    "the server's certificate was not trusted (unable to get local issuer "
                    f"certificate): {other.ca_file} is not the CA that signed it"
                ]
                * 3
            ), scheme
            other_port = getattr(elsewhere, port_of)
            wrong_name = _secure_check(
                capsys,
                f"{scheme}://127.0.0.1:{other_port}?timeout_ms=3000&ca_file={other.ca_file}",
            )
            assert (
                wrong_name
                == [
                    "the server's certificate is not valid for 127.0.0.1 (IP address mismatch, "
                    "certificate is not valid for '127.0.0.1'.): connect by a name the "
                    "certificate has, or give the server a certificate for this one"
                ]
                * 3
            ), scheme
    finally:
        elsewhere.stop()


def test_check_with_no_endpoint_checks_the_configured_ones(otlp_receiver, monkeypatch, capsys):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.http_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.grpc_port}"
    )
    assert cli.main(["check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r" +\d+\.\d ms  ", " | ", line) for line in lines] == [
        f"traces   accepted | grpc://127.0.0.1:{otlp_receiver.grpc_port} TraceService/Export",
        f"metrics  accepted | http://127.0.0.1:{otlp_receiver.http_port}/v1/metrics",
        f"logs     accepted | http://127.0.0.1:{otlp_receiver.http_port}/v1/logs",
    ]
    assert len(otlp_receiver.requests("traces")) == 1


def test_check_with_no_endpoint_and_none_configured_says_how_to_give_one(monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith(("OTEL_", "TELEMETRY_")):
            monkeypatch.delenv(name)
    assert cli.main(["check"]) == 2
    assert capsys.readouterr().err == (
        "telemetry-otel: check: no endpoint given and none configured: give one "
        "(grpc://host:4317, http://host:4318) or set OTEL_EXPORTER_OTLP_ENDPOINT\n"
    )


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("htp://127.0.0.1:4318", "'http://127.0.0.1:4318'?"),
        ("grcp://user:s3cret@collector:4317", "'grpc://user:***@collector:4317'?"),
        ("127.0.0.1:4317", "'grpc://127.0.0.1:4317', OTLP/gRPC's port?"),
        ("localhost:4318", "'http://localhost:4318', OTLP/HTTP's port?"),
        ("collector:9000", "'grpc://collector:9000' or 'http://collector:9000'?"),
    ],
)
def test_a_misspelt_scheme_or_a_bare_host_and_port_gets_a_did_you_mean(written, meant, capsys):
    assert cli.main(["check", written]) == 2
    err = capsys.readouterr().err
    shown = written.replace("s3cret", "***")
    assert err.startswith(
        f"telemetry-otel: export_endpoints: unknown endpoint {shown!r} (did you mean {meant}); "
        "expected one of 'console"
    ), err
    assert "s3cret" not in err


def test_check_reads_no_further_than_the_start_of_a_gigabyte_error_page(capsys):
    flooder = Flooder(status=502)
    try:
        code, lines, _ = _check(capsys, f"http://127.0.0.1:{flooder.port}?timeout_ms=1500")
    finally:
        flooder.stop()
    assert code == 1
    assert len(lines) == 3
    assert all("FAILED" in line and "HTTP 502: the server says no; the" in line for line in lines)
    assert flooder.sent < len(flooder.paths) * 16 * 1024 * 1024
