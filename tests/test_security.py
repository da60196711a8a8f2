"""Secrets stay secret: redaction before any exporter or callback, nothing in logs or errors."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from typing import Any

import grpc
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
from telemetry_otel._otel.delivery.sender import one_line
from telemetry_otel._otel.runtime import log
from telemetry_otel._redact import header_secrets, is_sensitive, mask_secrets
from tests.otlp_receiver import BlackHole, GrpcFailure, attributes_of

SECRET = "hunter2-S3CR3T"


def test_sensitive_keys_are_redacted_on_the_wire_and_in_callbacks(
    otlp_receiver, make_collector, recorder
):
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        tags={"db_password": SECRET, "env": "prod"},
    )
    collector.register_exporter(recorder)
    collector.collect_trace(
        Trace(
            "t", "s", "login", 1.0, tags={"Authorization": SECRET, "user": "ann", "author": "bob"}
        )
    )
    collector.collect_event(
        Event(
            "login",
            "ok",
            metadata={
                "session_id": SECRET,
                "request": {"headers": {"X-Api-Key": SECRET, "accept": "json"}},
                "items": [{"credit_card_number": SECRET}],
            },
            tags={"authToken": SECRET},
        )
    )
    collector.collect_metric(Metric("logins", 1, MetricType.COUNTER, {"api_key": SECRET}))
    assert collector.flush(10_000) is True

    [(resource, span)] = otlp_receiver.spans()
    assert resource["db_password"] == "[REDACTED]" and resource["env"] == "prod"
    assert attributes_of(span.attributes) == {
        "Authorization": "[REDACTED]",
        "user": "ann",
        "author": "bob",
        "legacy.trace_id": "t",
        "legacy.span_id": "s",
        "sampling.probability": 1.0,
    }
    [(_, record)] = otlp_receiver.log_records()
    assert attributes_of(record.attributes) == {
        "authToken": "[REDACTED]",
        "session_id": "[REDACTED]",
        "request": {"headers": {"X-Api-Key": "[REDACTED]", "accept": "json"}},
        "items": [{"credit_card_number": "[REDACTED]"}],
        "sampling.probability": 1.0,
    }
    [(_, metric)] = otlp_receiver.metrics()
    assert attributes_of(metric.sum.data_points[0].attributes) == {"api_key": "[REDACTED]"}
    assert SECRET not in repr(recorder.items)


def test_redaction_can_be_extended_and_turned_off(make_collector, recorder):
    extended = make_collector(redact_keys=["pin", "Member ID"])
    extended.register_exporter(recorder)
    extended.collect_event(
        Event("e", "m", metadata={"card_pin": "1234", "memberId": "77", "note": "x"})
    )
    off = make_collector(redact=False)
    off.register_exporter(recorder)
    off.collect_event(Event("e", "m", metadata={"password": "visible"}))
    extended.flush()
    off.flush()
    metadata = [event.metadata for event in recorder.of("event")]
    assert {"card_pin": "[REDACTED]", "memberId": "[REDACTED]", "note": "x"} in metadata
    assert {"password": "visible"} in metadata


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_header_values_and_url_credentials_never_reach_logs_reprs_or_errors(scheme, caplog, capsys):
    hole = BlackHole()
    try:
        config = TelemetryConfig(
            export_endpoints=[f"{scheme}://user:{SECRET}@127.0.0.1:{hole.port}?timeout_ms=500"],
            headers={"authorization": f"Bearer {SECRET}"},
        )
        with caplog.at_level(logging.DEBUG):
            collector = TelemetryCollector(config)
            collector.start()
            collector.collect_event(Event("e", "m"))
            assert collector.flush(3000) is False
            collector.stop(timeout_ms=1000)
            shown = [
                repr(config),
                config.describe(),
                repr(collector.config),
                collector.config.describe(),
            ]
            with pytest.raises(ValueError) as raised:
                TelemetryConfig(export_endpoints=[f"{scheme}://user:{SECRET}@127.0.0.1:1?bad=1"])
    finally:
        hole.stop()
    captured = capsys.readouterr()
    everything = "\n".join([caplog.text, captured.out, captured.err, str(raised.value), *shown])
    assert "user:***@127.0.0.1" in everything
    assert SECRET not in everything


# -- secrets never printed, on any error path ------------------------------------------------


SECRETS = ["hunter2", "sk-live-abc123", "tok-9f8e7d"]


def _error_text(call) -> str:
    with pytest.raises(ValueError) as raised:
        call()
    return str(raised.value)


def _warning_text(environ, monkeypatch, caplog) -> str:
    """What reading a malformed OTEL_* variable logs (it is ignored, with a warning)."""
    monkeypatch.setattr(log, "_last_warned", {})
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        TelemetryConfig.from_env(environ)
    return "\n".join(r.getMessage() for r in caplog.records)


def test_a_malformed_headers_variable_never_quotes_its_value(monkeypatch, caplog):
    text = _warning_text(
        {"OTEL_EXPORTER_OTLP_HEADERS": f"api-key {SECRETS[1]}"}, monkeypatch, caplog
    )
    assert text == (
        "environment variable OTEL_EXPORTER_OTLP_HEADERS=<not shown: headers carry "
        "credentials>: expected comma-separated key=value pairs; ignored"
    )


def test_an_endpoint_variable_with_a_password_is_masked_in_its_warning(monkeypatch, caplog):
    text = _warning_text(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:{SECRETS[0]}@host:notaport"},
        monkeypatch,
        caplog,
    )
    assert text == (
        "environment variable OTEL_EXPORTER_OTLP_ENDPOINT='http://user:***@host:notaport': "
        "expected a URL such as http://host:4318; ignored"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (f"api_token={SECRETS[2]},oops", "'api_token=***,***'"),
        (f"region=eu,api_token {SECRETS[2]}", "'region=eu,***'"),  # the = forgotten
    ],
)
def test_a_malformed_tags_variable_masks_sensitive_values_in_its_error(value, shown):
    text = _error_text(lambda: TelemetryConfig.from_env({"TELEMETRY_TAGS": value}))
    assert text == (
        f"environment variable TELEMETRY_TAGS={shown}: expected comma-separated key=value pairs"
    )
    assert SECRETS[2] not in text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"Bearer {SECRETS[1]}\n", "its value holds a line break or NUL"),
        (f" {SECRETS[1]}", "its value starts or ends with white space"),
        (f"{SECRETS[1]}\r\nX-Injected: 1", "its value holds a line break or NUL"),
    ],
)
def test_a_header_that_cannot_be_sent_is_refused_when_the_config_is_built(value, problem):
    text = _error_text(lambda: TelemetryConfig(headers={"authorization": value}))
    assert text.startswith(f"TelemetryConfig.headers: 'authorization' cannot be sent: {problem}")
    assert SECRETS[1] not in text


def test_a_headers_variable_trims_its_values_and_refuses_a_line_break_inside_one(
    monkeypatch, caplog
):
    # The specification trims white space around each value of the variable.
    config = TelemetryConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key= k1 \n",
        }
    )
    [target] = {t.headers["api-key"] for t in config.otlp_targets(config.endpoints()[0]).values()}
    assert target == "k1"
    text = _warning_text(
        {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization={SECRETS[1]}\r\nX-Injected: 1"},
        monkeypatch,
        caplog,
    )
    assert "its value holds a line break or NUL" in text and SECRETS[1] not in text


def test_repr_and_describe_mask_the_tags_that_export_redacts():
    config = TelemetryConfig(tags={"api_token": SECRETS[2], "region": "eu"}, redact_keys=["dsn"])
    shown = repr(config) + config.describe()
    assert SECRETS[2] not in shown
    assert "'api_token': '[REDACTED]'" in shown and "'region': 'eu'" in shown


@pytest.mark.parametrize(
    "key",
    [
        "private_key",
        "passphrase",
        "aws_credentials",
        "jwt",
        "bearer",
        "signature",
        "sentry_dsn",
        "connection_string",
        "DATABASE_URL",
        "cvv",
        "iban",
    ],
)
def test_the_default_redaction_words_cover_common_secrets(key):
    assert is_sensitive(key)


@pytest.mark.parametrize("key", ["spinner", "designation", "author", "classname", "bearing"])
def test_redaction_matches_whole_words_so_innocent_keys_stay_readable(key):
    assert not is_sensitive(key)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Metric("m", 1, tags={"api_key": ["k3y-s3cr3t"]}),
            "Metric.tags['api_key'] must be a str, int, float or bool, "
            "got a list (its value is not shown: the key is sensitive)",
        ),
        (
            lambda: Trace("t", "s", "op", 1.0, tags={"api_token": 2**70 + 7}),
            "Trace.tags['api_token'] must be within signed 64 bits, "
            "got an int (its value is not shown: the key is sensitive)",
        ),
        (
            lambda: TelemetryConfig(tags={"db.password": {"v": "s3cr3t"}}),
            "TelemetryConfig.tags['db.password'] must be a str, int, float or bool, "
            "got a dict (its value is not shown: the key is sensitive)",
        ),
        (
            lambda: (
                TelemetryCollector(TelemetryConfig(enabled=False))
                .counter("calls")
                .bind(authToken=b"s3cr3t")
            ),
            "counter.bind.tags['authToken'] must be a str, int, float or bool, "
            "got a bytes (its value is not shown: the key is sensitive)",
        ),
    ],
)
def test_a_type_error_for_a_sensitive_tag_never_quotes_its_value(build, message):
    with pytest.raises((TypeError, ValueError)) as raised:
        build()
    assert str(raised.value) == message
    assert "s3cr3t" not in str(raised.value) and str(2**70 + 7) not in str(raised.value)


def test_a_type_error_for_an_ordinary_tag_still_shows_the_value():
    with pytest.raises(TypeError) as raised:
        Metric("m", 1, tags={"region": ["eu"]})
    assert str(raised.value).endswith("got ['eu']")


def test_a_statsd_endpoint_with_credentials_is_refused_without_repeating_the_password(
    monkeypatch,
):
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(statsd_endpoint="statsd://user:p4ssw0rd@127.0.0.1:8125")
    assert str(raised.value) == (
        "TelemetryConfig.statsd_endpoint takes no credentials (a StatsD listener has none), "
        "got 'statsd://user:***@127.0.0.1:8125'"
    )
    monkeypatch.setenv("TELEMETRY_STATSD_ENDPOINT", "statsd://user:p4ssw0rd@127.0.0.1:8125")
    with pytest.raises(ValueError) as from_env:
        TelemetryConfig.from_env()
    assert "p4ssw0rd" not in str(from_env.value)
    assert str(from_env.value).endswith("expected statsd://host:port, without credentials")


_RESOURCE_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.DEBUG)
from telemetry_otel import Event, TelemetryCollector, TelemetryConfig
config = TelemetryConfig(
    export_endpoints=[sys.argv[1], "file://" + sys.argv[2]],
    max_attribute_length=64,
    service_name="checkout-" + "s" * 100,
)
print(config.describe())
with TelemetryCollector(config) as collector:
    collector.collect_event(Event("deploy.done", "ok"))
"""


def test_resource_attributes_from_the_environment_are_redacted_and_cut_everywhere(
    otlp_receiver, tmp_path
):
    secrets = ["T0ken-1", "S3cr3t-2", "S3cr3t-3"]
    environ = {
        **os.environ,
        "OTEL_RESOURCE_ATTRIBUTES": (
            "api_token=T0ken-1,db.password=S3cr3t-2,db_password:S3cr3t-3,"
            f"deployment.environment=prod,note={'n' * 5000}"
        ),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RESOURCE_SCRIPT,
            f"grpc://127.0.0.1:{otlp_receiver.grpc_port}",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    assert result.returncode == 0, result.stderr
    [(resource, _)] = otlp_receiver.log_records()
    assert resource["api_token"] == resource["db.password"] == "[REDACTED]"
    assert resource["deployment.environment"] == "prod"
    assert resource["note"] == "n" * 64
    assert resource["service.name"] == "checkout-" + "s" * 100  # resources are exempt: not cut
    assert "db_password" not in resource  # malformed: skipped, as the SDK skips it
    written = (tmp_path / "logs.jsonl").read_text()
    assert '"[REDACTED]"' in written
    for secret in secrets:
        assert secret not in written
        assert secret not in result.stdout + result.stderr, secret
    assert "Invalid key value resource attribute pair ***" in result.stderr


def _echoing_credentials(transport: str, headers: dict[str, str]) -> Any:
    """A refusal that quotes the request's credentials back, as some proxies' 401 pages
    do: every header value, each credential after its scheme, the Basic one decoded."""
    echoed = "; ".join(f"{name}: {value}" for name, value in headers.items())
    text = f"401 Unauthorized. You sent {echoed}; user:{SECRET} is not allowed"
    if transport == "grpc":
        return GrpcFailure(grpc.StatusCode.UNAUTHENTICATED, text)
    return (401, {}, text.encode())


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_refusal_that_echoes_the_credentials_never_prints_them(
    transport, otlp_receiver, caplog, capsys, monkeypatch
):
    port = otlp_receiver.grpc_port if transport == "grpc" else otlp_receiver.http_port
    endpoint = f"{transport}://user:{SECRET}@127.0.0.1:{port}"
    basic = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
    sent = {"authorization": basic, "x-api-key": "k3y-abcdef-123"}
    for signal in ("logs", "traces", "metrics", "logs"):  # the collector's, then check's
        otlp_receiver.fail_next(transport, signal, _echoing_credentials(transport, sent))
    with caplog.at_level(logging.DEBUG):
        collector = TelemetryCollector(
            TelemetryConfig(export_endpoints=[endpoint], headers={"x-api-key": "k3y-abcdef-123"})
        )
        collector.start()
        collector.collect_event(Event("e", "m"))
        assert collector.flush(5000) is False
        collector.stop(timeout_ms=2000)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k3y-abcdef-123")
        code = cli.main(["check", endpoint])
    assert code == 1
    captured = capsys.readouterr()
    everything = "\n".join([caplog.text, captured.out, captured.err])
    assert "401 Unauthorized. You sent authorization: ***; x-api-key: ***; *** is not" in everything
    for secret in (SECRET, basic.split()[1], "k3y-abcdef-123"):
        assert secret not in everything, secret


def test_a_server_message_cut_inside_a_secret_masks_the_start_it_kept():
    secrets = header_secrets({"authorization": "Bearer sk-live-abc123"})
    cut = one_line("denied: " + "x" * 180 + " sk-live-abc123 more")
    assert cut.endswith(" sk-live-ab…")
    assert mask_secrets(cut, secrets).endswith(" ***…")
