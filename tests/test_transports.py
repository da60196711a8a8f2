"""Every OTLP transport against a real loopback receiver: compression, headers and TLS."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import pytest

from telemetry_otel import (
    Event,
    Metric,
    MetricType,
    TelemetryCollector,
    TelemetryConfig,
    Trace,
    cli,
)
from telemetry_otel._otel.runtime import log
from tests.otlp_receiver import OtlpReceiver, Partial, any_value
from tests.tls import make_tls_files


def _collect_one_of_each(collector):
    collector.collect_trace(Trace("trace-1", "span-1", "charge", 3.5, timestamp=1_700_000_000.0))
    collector.collect_event(Event("paid", "order paid", timestamp=1_700_000_000.0))
    collector.collect_metric(Metric("orders", 2, MetricType.COUNTER, {"region": "eu"}))


def _assert_one_of_each_arrived(receiver):
    [(_, span)] = receiver.spans()
    [(_, record)] = receiver.log_records()
    [(_, metric)] = receiver.metrics()
    assert (span.name, span.end_time_unix_nano) == ("charge", 1_700_000_000_000_000_000)
    assert (record.event_name, any_value(record.body)) == ("paid", "order paid")
    assert (metric.name, metric.sum.data_points[0].as_int) == ("orders", 2)


def _one_of_each_arrives(config: TelemetryConfig, receiver: OtlpReceiver) -> None:
    """A collector of ``config`` sends one item of each signal, and they arrive."""
    collector = TelemetryCollector(config)
    collector.start()
    try:
        _collect_one_of_each(collector)
        assert collector.flush(10_000) is True
        _assert_one_of_each_arrived(receiver)
    finally:
        collector.stop(timeout_ms=2000)


@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_every_transport_and_compression_delivers_intact_with_headers(
    otlp_receiver, make_collector, transport, compression
):
    port = otlp_receiver.grpc_port if transport == "grpc" else otlp_receiver.http_port
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{port}?compression={compression}"],
        headers={"x-api-key": "k-123", "x-tenant": "acme"},
        flush_interval_ms=60_000,
    )
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    _assert_one_of_each_arrived(otlp_receiver)
    for received in otlp_receiver.received:
        assert (received.headers["x-api-key"], received.headers["x-tenant"]) == ("k-123", "acme")
        if transport == "http":
            assert received.headers.get("content-encoding") == (
                "gzip" if compression == "gzip" else None
            )
            assert received.headers[":path"] == f"/v1/{received.signal}"


def test_gzip_is_the_default_compression_on_http(otlp_receiver, make_collector):
    collector = make_collector(export_endpoints=[f"http://127.0.0.1:{otlp_receiver.http_port}"])
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    assert {r.headers.get("content-encoding") for r in otlp_receiver.received} == {"gzip"}


@pytest.fixture
def gzip_refusing_receiver():
    receiver = OtlpReceiver(accept_gzip=False).start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_receiver_without_gzip_gets_everything_uncompressed_after_one_refusal(
    transport, gzip_refusing_receiver, make_collector, caplog
):
    receiver = gzip_refusing_receiver
    port = receiver.grpc_port if transport == "grpc" else receiver.http_port
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = make_collector(
            export_endpoints=[f"{transport}://127.0.0.1:{port}"],  # gzip by default
            flush_interval_ms=60_000,
            self_metrics=False,
        )
        _collect_one_of_each(collector)
        assert collector.flush(10_000) is True
        collector.collect_trace(Trace("t", "later", "op", 1.0))
        assert collector.flush(10_000) is True
    # Each signal's first request was refused compressed (so gzip was really used), then
    # sent again plain; later ones go plain at once.
    # Metrics: refused, plain, and plain again at the second flush (cumulative). grpcio
    # refuses a compressed call before the service sees it: not an attempt there.
    refused = 1 if transport == "http" else 0
    attempts = [len(receiver.attempt_times(s)) for s in ("traces", "logs", "metrics")]
    assert attempts == [2 + refused, 1 + refused, 2 + refused]
    assert len(receiver.spans()) == 2 and len(receiver.log_records()) == 1
    assert {r.headers.get("content-encoding") for r in receiver.received} <= {None, "identity"}
    stats = collector.stats()
    assert all(stats[s]["export_failures"] == 0 for s in ("trace", "event", "metric"))
    [line] = [r.getMessage() for r in caplog.records]
    refusal = (
        "gRPC UNIMPLEMENTED: Compression algorithm 'gzip' is disabled."
        if transport == "grpc"
        else "HTTP 400 Bad Request: Failed to decode request body"
    )
    assert line.startswith(
        f"OTLP endpoint http://127.0.0.1:{port} cannot read gzip-compressed requests ({refusal}"
    ), line
    assert line.endswith(
        "sending it uncompressed from now on. Add ?compression=none to the endpoint (or "
        "set OTEL_EXPORTER_OTLP_COMPRESSION=none) to say so for good"
    )


def test_headers_from_otel_variables_reach_the_receiver(otlp_receiver, make_collector, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken")
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    assert collector.flush(10_000) is True
    assert otlp_receiver.requests("traces")[0].headers["authorization"] == "Bearer t0ken"


def test_otel_endpoint_variables_alone_configure_the_export(
    otlp_receiver, monkeypatch, make_collector
):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.grpc_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.http_port}/v1/logs"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf")
    collector = make_collector()
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    _assert_one_of_each_arrived(otlp_receiver)
    transports = {r.signal: r.transport for r in otlp_receiver.received}
    assert transports == {"traces": "grpc", "metrics": "grpc", "logs": "http"}


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path):
    return make_tls_files(tmp_path)


@pytest.fixture
def tls_receiver(tls_files):
    receiver = OtlpReceiver(tls=tls_files).start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_tls_endpoints_deliver_when_given_the_ca(tls_receiver, tls_files, make_collector, scheme):
    port = tls_receiver.grpc_port if scheme == "grpcs" else tls_receiver.http_port
    collector = make_collector(
        export_endpoints=[f"{scheme}://127.0.0.1:{port}?ca_file={tls_files.ca_file}"],
        flush_interval_ms=60_000,
    )
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    _assert_one_of_each_arrived(tls_receiver)


def test_a_ca_without_key_identifiers_is_refused_with_a_hint_where_python_verifies_strictly(
    tmp_path, make_collector, caplog
):
    # Strict X.509 verification, which asks for key identifiers, is Python 3.13's default;
    # earlier versions accept such a CA, and the event is delivered.
    strict = sys.version_info >= (3, 13)
    files = make_tls_files(tmp_path, key_identifiers=False)
    receiver = OtlpReceiver(tls=files).start()
    try:
        collector = make_collector(
            export_endpoints=[
                f"https://127.0.0.1:{receiver.http_port}?ca_file={files.ca_file}&timeout_ms=1000"
            ],
            flush_interval_ms=60_000,
        )
        collector.collect_event(Event("e", "m"))
        with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
            assert collector.flush(10_000) is not strict
        stats = collector.stats()["event"]
        assert (stats["export_failures_unavailable"], stats["exported"]) == (
            (1, 0) if strict else (0, 1)
        )
        lines = [r.getMessage() for r in caplog.records if "log records" in r.getMessage()]
        if strict:
            [line] = lines
            assert "Missing Authority Key Identifier" in line
            assert "reissue the certificates with key ids" in line
        else:
            assert lines == []
            assert len(receiver.log_records()) == 1
    finally:
        receiver.stop()


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_tls_without_the_ca_fails_clearly_and_counted_not_hanging(
    tls_receiver, make_collector, scheme, caplog
):
    port = tls_receiver.grpc_port if scheme == "grpcs" else tls_receiver.http_port
    collector = make_collector(export_endpoints=[f"{scheme}://127.0.0.1:{port}?timeout_ms=2000"])
    collector.collect_event(Event("e", "m"))
    started = time.monotonic()
    assert collector.flush(15_000) is False
    assert time.monotonic() - started < 15
    stats = collector.stats()["event"]
    assert (stats["exported"], stats["export_failures"], stats["pending"]) == (0, 1, 0)
    assert tls_receiver.received == []
    messages = " ".join(record.getMessage() for record in caplog.records).lower()
    assert "certificate" in messages or "ssl" in messages or "handshake" in messages


def test_an_http_path_prefix_is_kept_before_the_signal_path(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[f"http://127.0.0.1:{otlp_receiver.http_port}/tenant/a/"]
    )
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    paths = sorted(r.headers[":path"] for r in otlp_receiver.received)
    assert paths == ["/tenant/a/v1/logs", "/tenant/a/v1/metrics", "/tenant/a/v1/traces"]


def test_endpoints_receive_only_the_signals_they_take(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=[
            f"grpc://127.0.0.1:{otlp_receiver.grpc_port}?signals=traces",
            f"http://127.0.0.1:{otlp_receiver.http_port}/v1/logs",  # pasted: logs only
        ]
    )
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    routes = sorted((r.signal, r.transport) for r in otlp_receiver.received)
    assert routes == [("logs", "http"), ("traces", "grpc")]  # no metrics, self-metrics neither
    assert otlp_receiver.requests("logs")[0].headers[":path"] == "/v1/logs"
    stats = collector.stats()
    assert (stats["trace"]["exported"], stats["event"]["exported"]) == (1, 1)
    assert stats["metric"]["exported"] == 0


def test_the_signal_path_goes_before_the_query_of_the_otel_endpoint_variable(
    otlp_receiver, make_collector, monkeypatch
):
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.http_port}/otlp?tenant=a"
    )
    collector = make_collector()
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    paths = sorted(r.headers[":path"] for r in otlp_receiver.received)
    assert paths == [
        "/otlp/v1/logs?tenant=a",
        "/otlp/v1/metrics?tenant=a",
        "/otlp/v1/traces?tenant=a",
    ]


def test_an_otel_endpoint_variable_pasted_with_a_signal_path_is_taken_as_its_base(
    otlp_receiver, make_collector, monkeypatch, caplog
):
    url = f"http://127.0.0.1:{otlp_receiver.http_port}/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setattr(log, "_last_warned", {})
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = make_collector()
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    paths = sorted(r.headers[":path"] for r in otlp_receiver.received)
    assert paths == ["/v1/logs", "/v1/metrics", "/v1/traces"]
    [line] = [r.getMessage() for r in caplog.records if "ends in /v1/traces" in r.getMessage()]
    assert "set that signal's own URL as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in line


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_url_credentials_are_sent_as_basic_authorization(otlp_receiver, make_collector, transport):
    import base64

    port = otlp_receiver.grpc_port if transport == "grpc" else otlp_receiver.http_port
    collector = make_collector(export_endpoints=[f"{transport}://ann:p%40ss@127.0.0.1:{port}"])
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    assert collector.flush(10_000) is True
    expected = "Basic " + base64.b64encode(b"ann:p@ss").decode()
    assert otlp_receiver.requests("traces")[0].headers["authorization"] == expected


# -- mutual TLS ---------------------------------------------------------------------------


@pytest.fixture
def mtls_receiver(tls_files):
    receiver = OtlpReceiver(tls=tls_files, require_client_cert=True).start()
    yield receiver
    receiver.stop()


def _mtls_endpoint(scheme: str, receiver: OtlpReceiver, files: Any, **extra: str) -> str:
    port = receiver.grpc_port if scheme == "grpcs" else receiver.http_port
    options = {
        "ca_file": str(files.ca_file),
        "client_cert": str(files.client_cert_file),
        "client_key": str(files.client_key_file),
        **extra,
    }
    return f"{scheme}://127.0.0.1:{port}?" + "&".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_a_gateway_requiring_client_certificates_gets_every_signal(
    mtls_receiver, tls_files, make_collector, scheme
):
    endpoint = _mtls_endpoint(scheme, mtls_receiver, tls_files)
    collector = make_collector(export_endpoints=[endpoint], flush_interval_ms=60_000)
    _collect_one_of_each(collector)
    assert collector.flush(10_000) is True
    _assert_one_of_each_arrived(mtls_receiver)
    shown = collector.config.describe()
    assert f"client_cert={tls_files.client_cert_file}" in shown
    assert str(tls_files.client_key_file) not in shown.replace(endpoint, "")


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_the_client_certificate_variables_are_read_per_signal_and_for_all(
    mtls_receiver, tls_files, monkeypatch, scheme
):
    port = mtls_receiver.grpc_port if scheme == "grpcs" else mtls_receiver.http_port
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if scheme == "grpcs" else "http/protobuf",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(tls_files.ca_file),
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(tls_files.client_cert_file),
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(tls_files.client_key_file),
    }
    _one_of_each_arrives(TelemetryConfig().with_env(environ), mtls_receiver)


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_without_a_client_certificate_the_gateway_refuses_and_it_is_counted(
    mtls_receiver, tls_files, make_collector, scheme
):
    port = mtls_receiver.grpc_port if scheme == "grpcs" else mtls_receiver.http_port
    collector = make_collector(
        export_endpoints=[
            f"{scheme}://127.0.0.1:{port}?ca_file={tls_files.ca_file}&timeout_ms=500"
        ],
        flush_interval_ms=60_000,
    )
    collector.collect_event(Event("e", "m"))
    assert collector.flush(10_000) is False
    stats = collector.stats()["event"]
    assert (stats["exported"], stats["export_failures_unavailable"]) == (0, 1)
    assert mtls_receiver.received == []


def test_a_client_key_that_is_not_the_certificates_is_refused_naming_both_never_quoting_them(
    tmp_path, tls_files
):
    (tmp_path / "other").mkdir()
    other = make_tls_files(tmp_path / "other")
    endpoint = (
        f"https://127.0.0.1:4318?client_cert={tls_files.client_cert_file}"
        f"&client_key={other.client_key_file}"
    )
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(export_endpoints=[endpoint])
    message = str(raised.value)
    assert message.endswith(
        f"client_key {other.client_key_file} is not the key of client_cert "
        f"{tls_files.client_cert_file}"
    )
    key_text = other.client_key_file.read_text()
    assert "PRIVATE KEY" not in message and key_text.splitlines()[1] not in message


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            "client_cert=/nonexistent.pem&client_key=/nonexistent.key",
            "client_cert /nonexistent.pem cannot be read: No such file or directory",
        ),
        ("client_cert={cert}", "sets one of client_cert and client_key; mutual TLS takes both"),
        ("client_cert={key}&client_key={key}", "are not a PEM certificate and its key"),
    ],
)
def test_unusable_client_certificates_fail_when_the_config_is_built(tls_files, options, problem):
    filled = options.format(cert=tls_files.client_cert_file, key=tls_files.client_key_file)
    with pytest.raises(ValueError, match=re.escape(problem)):
        TelemetryConfig(export_endpoints=[f"https://127.0.0.1:4318?{filled}"])
    with pytest.raises(ValueError, match="sets client_cert without TLS"):
        TelemetryConfig(export_endpoints=[f"http://127.0.0.1:4318?{filled}"])


def test_a_client_certificate_variable_without_its_key_is_ignored_with_a_warning(tls_files, caplog):
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(tls_files.client_cert_file),
    }
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        config = TelemetryConfig().with_env(environ)
    [endpoint] = config.endpoints()
    assert all(t.client_cert is None for t in config.otlp_targets(endpoint).values())
    assert "only one of the two is set; mutual TLS takes both; ignored" in caplog.text


def test_check_says_which_client_certificate_it_showed(mtls_receiver, tls_files, capsys):
    code = cli.main(["check", _mtls_endpoint("https", mtls_receiver, tls_files)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count(f"(client certificate {tls_files.client_cert_file})") == 3


# -- OTLP/JSON ------------------------------------------------------------------------------


def _rich_workload(collector: TelemetryCollector) -> None:
    """Every field kind: ids, nesting, events, errors, int64 values, each metric type."""
    with collector.span("checkout", tags={"route": "/pay", "attempt": 2**40}) as span:
        span.add_event("card.checked", {"ok": True, "score": 0.75})
        with collector.span("charge"):
            collector.collect_event(
                Event("paid", "order paid", metadata={"items": [1, 2], "who": {"id": "u1"}})
            )
    collector.collect_trace(Trace("t-1", "s-1", "legacy", 3.5, error="declined"))
    collector.collect_metric(Metric("orders", 2**40, MetricType.COUNTER, {"region": "eu"}))
    collector.collect_metric(Metric("depth", 0.5, MetricType.GAUGE))
    collector.collect_metric(Metric("latency", 12.5, MetricType.HISTOGRAM, unit="ms"))


def _by_encoding(receiver: OtlpReceiver, signal: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {"json": [], "protobuf": []}
    for received in receiver.requests(signal):
        json_body = received.headers.get("content-type") == "application/json"
        found["json" if json_body else "protobuf"].append(received.request)
    return found


def _without_times(request: Any) -> Any:
    """A metrics request without its points' times (each destination collects apart)."""
    copy = type(request)()
    copy.CopyFrom(request)
    for resource in copy.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in getattr(metric, metric.WhichOneof("data")).data_points:
                    point.ClearField("time_unix_nano")
                    point.ClearField("start_time_unix_nano")
    return copy


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_http_json_carries_every_field_the_protobuf_path_does(
    otlp_receiver, make_collector, compression
):
    base = f"http://127.0.0.1:{otlp_receiver.http_port}?compression={compression}"
    collector = make_collector(
        export_endpoints=[base, f"{base}&protocol=http/json"],
        flush_interval_ms=60_000,
        self_metrics=False,
    )
    _rich_workload(collector)
    assert collector.flush(10_000) is True
    for signal in ("traces", "logs"):
        found = _by_encoding(otlp_receiver, signal)
        assert len(found["json"]) == len(found["protobuf"]) == 1, signal
        assert found["json"][0] == found["protobuf"][0], signal
    found = _by_encoding(otlp_receiver, "metrics")
    assert [_without_times(r) for r in found["json"]] == [
        _without_times(r) for r in found["protobuf"]
    ]
    stats = collector.stats()
    assert (stats["trace"]["exported"], stats["event"]["exported"]) == (6, 2)


def test_http_json_is_split_retried_and_partially_accepted_like_protobuf(make_collector):
    receiver = OtlpReceiver(max_http_body=200_000).start()
    try:
        receiver.fail_next("http", "logs", (503, {"Retry-After": "0"}, b'{"message":"busy"}'))
        receiver.fail_next("http", "logs", Partial(3, "three too old"))
        collector = make_collector(
            export_endpoints=[f"http://127.0.0.1:{receiver.http_port}?protocol=http/json"],
            max_export_batch_bytes=16_000_000,
            flush_interval_ms=60_000,
        )
        for i in range(200):
            collector.collect_event(Event("big", f"{i:04d}" + "x" * 2000))
        assert collector.flush(10_000) is False  # three rejected
        counts = collector.stats()["event"]
        assert (counts["exported"], counts["export_failures_partial"]) == (197, 3)
        bodies = [r for r in receiver.requests("logs")]
        assert len(bodies) > 2  # split: the first request was over the receiver's limit
        assert all(r.headers["content-type"] == "application/json" for r in bodies)
    finally:
        receiver.stop()


def test_the_protocol_variable_names_http_json(otlp_receiver):
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_receiver.http_port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/JSON",  # enum values in any case
    }
    config = TelemetryConfig(flush_interval_ms=60_000).with_env(environ)
    assert "  traces   http/json http://127.0.0.1" in config.describe()
    _one_of_each_arrives(config, otlp_receiver)
    assert {r.headers["content-type"] for r in otlp_receiver.received} == {"application/json"}


@pytest.mark.parametrize("endpoint", ["grpc://h:4317?protocol=http/json", "http://h?protocol=grpc"])
def test_a_protocol_its_scheme_does_not_speak_is_refused(endpoint):
    with pytest.raises(ValueError, match=r"which (grpc|http)s?:// does not speak"):
        TelemetryConfig(export_endpoints=[endpoint])
