from __future__ import annotations

import re

import pytest

from telemetry_otel import Event, TelemetryCollector
from telemetry_otel.config import TelemetryConfig


def test_defaults_are_the_legacy_defaults():
    config = TelemetryConfig()
    assert (
        config.enabled,
        config.buffer_size,
        config.flush_interval_ms,
        config.export_endpoints,
        config.sample_rate,
        config.tags,
        config.service_name,
    ) == (True, 1000, 5000, [], 1.0, {}, None)


@pytest.mark.parametrize(
    "endpoint",
    [
        "console",
        "grpc://127.0.0.1:4317",
        "grpc://collector.internal:4317",
        "http://127.0.0.1:4318",
        "https://otlp.example.com:443/tenant/a",
        "http://[::1]:4318",
    ],
)
def test_known_endpoint_forms_are_accepted(endpoint):
    assert TelemetryConfig(export_endpoints=[endpoint]).export_endpoints == [endpoint]


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://api.vendor.example", "https://api.vendor.example:443"),
        ("http://collector", "http://collector:80"),
        ("grpc://collector", "http://collector:4317"),
        ("grpcs://api.vendor.example", "https://api.vendor.example:443"),
        ("https://user:pw@api.vendor.example/otlp", "https://user:pw@api.vendor.example:443/otlp"),
    ],
)
def test_an_endpoint_without_a_port_gets_its_scheme_s_default(endpoint, url):
    [parsed] = TelemetryConfig(export_endpoints=[endpoint]).endpoints()
    assert parsed.url == url


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_a_pasted_signal_url_is_that_signal_s_url_and_takes_only_that_signal(signal):
    config = TelemetryConfig(export_endpoints=[f"http://h:4318/otlp/v1/{signal}/"])
    [endpoint] = config.endpoints()
    assert endpoint.signals == {signal}
    assert {s: t.url for s, t in config.otlp_targets(endpoint).items()} == {
        signal: f"http://h:4318/otlp/v1/{signal}"
    }


def test_the_signals_option_chooses_what_an_endpoint_receives():
    config = TelemetryConfig(
        export_endpoints=["grpc://h:4317?signals=traces,logs", "console?signals=metrics"]
    )
    otlp, console = config.endpoints()
    assert (otlp.signals, console.signals) == ({"traces", "logs"}, {"metrics"})
    assert set(config.otlp_targets(otlp)) == {"traces", "logs"}
    shown = config.describe()
    assert "endpoint grpc://h:4317?signals=traces,logs" in shown
    assert "  traces   grpc http://h:4317" in shown and "  metrics " not in shown


def test_endpoints_are_parsed_into_kind_and_base_url():
    config = TelemetryConfig(
        export_endpoints=["console", "grpc://h:4317", "https://h:443/prefix/", "http://h:4318"]
    )
    assert [(e.kind, e.protocol, e.url) for e in config.endpoints()] == [
        ("console", "", ""),
        ("otlp", "grpc", "http://h:4317"),
        ("otlp", "http", "https://h:443/prefix"),
        ("otlp", "http", "http://h:4318"),
    ]


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("stdout", "export_endpoints: unknown endpoint 'stdout'; expected one of 'console"),
        ("ftp://h:21", "unknown endpoint 'ftp://h:21'"),
        ("grpc://:4317", "'grpc://:4317' has no host"),
        ("http://h:99999", "'http://h:99999' has an invalid port"),
        ("http://h:abc", "has an invalid port"),
        ("http://h:0", "has port 0"),
        ("grpc://h:4317/v1", "has a path; a gRPC endpoint takes none"),
        (
            "http://h:4318?x=1",
            "has an unknown option 'x' (allowed: protocol, compression, timeout_ms, ca_file, "
            "client_cert, client_key, signals)",
        ),
        ("http://h:4318?compression=zstd", "has compression='zstd'; expected gzip or none"),
        ("grpc://h:4317?timeout_ms=-5", "has timeout_ms='-5'; expected a whole number >= 1"),
        ("grpc://h:4317?timeout_ms=0", "has timeout_ms='0'"),
        ("grpc://h:4317?ca_file=/ca.pem", "sets ca_file without TLS; use grpcs:// or https://"),
        ("https://h:443?ca_file=", "has an empty ca_file"),
        ("http://h:4318#frag", "takes no fragment"),
        ("console?format=yaml", "has format='yaml'; expected text or json"),
        ("console?colour=1", "has an unknown option 'colour' (allowed: format, signals)"),
        ("file://relative/dir", "must be file:///absolute/directory"),
        ("file:///tmp/t?max_bytes=0", "has max_bytes='0'; expected a whole number >= 1"),
        ("file:///tmp/t?backups=2", "sets backups without max_bytes"),
        (
            "file:///tmp/t?rotate=1",
            "has an unknown option 'rotate' (allowed: max_bytes, backups, signals)",
        ),
        ("http://h:4318?signals=spans", "has signals='spans'; expected a comma-separated subset"),
        ("console?signals=", "has signals=''; expected a comma-separated subset"),
        ("http://h:4318/v1/traces?signals=logs", "ends in /v1/traces but says signals=logs"),
        ("prometheus://127.0.0.1", "needs an explicit port"),
        ("prometheus://127.0.0.1:9464/metrics", "takes no path"),
        (
            "https://user:hunter2@h:443?zip=1",
            "'https://user:***@h:443?zip=1' has an unknown option",
        ),
    ],
)
def test_unknown_or_malformed_endpoints_fail_at_config_time(endpoint, message):
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(export_endpoints=[endpoint])
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"sample_rate": 1.5}, ValueError, "sample_rate must be between 0 and 1, got 1.5"),
        ({"sample_rate": -0.1}, ValueError, "sample_rate must be between 0 and 1, got -0.1"),
        ({"sample_rate": float("nan")}, ValueError, "sample_rate must be between 0 and 1, got nan"),
        ({"sample_rate": "1"}, TypeError, "sample_rate must be a number, got '1'"),
        ({"buffer_size": 0}, ValueError, "buffer_size must be at least 1, got 0"),
        ({"buffer_size": 1.5}, TypeError, "buffer_size must be an int, got 1.5"),
        ({"flush_interval_ms": 0}, ValueError, "flush_interval_ms must be at least 1, got 0"),
        ({"enabled": "yes"}, TypeError, "enabled must be a bool, got 'yes'"),
        ({"tags": {"k": None}}, TypeError, "TelemetryConfig.tags['k']"),
        ({"service_name": ""}, ValueError, "service_name must be a non-empty str or None, got ''"),
        ({"export_endpoints": "console"}, TypeError, "export_endpoints must be a list of str"),
        ({"export_endpoints": [4317]}, TypeError, "export_endpoints entries must be str, got 4317"),
    ],
)
def test_bad_values_fail_fast_naming_field_and_value(options, error, message):
    with pytest.raises(error) as raised:
        TelemetryConfig(**options)
    assert message in str(raised.value)


def test_sample_rate_limits_are_inclusive():
    assert TelemetryConfig(sample_rate=0).sample_rate == 0
    assert TelemetryConfig(sample_rate=1).sample_rate == 1


@pytest.mark.parametrize(
    ("endpoint", "kind", "options"),
    [
        ("console?format=json", "console", {"format": "json"}),
        (
            "grpcs://h:4317?compression=none&timeout_ms=2500&ca_file=/ca.pem",
            "otlp",
            {"compression": "none", "timeout_ms": 2500, "ca_file": "/ca.pem"},
        ),
        (
            "file:///var/spool/telemetry?max_bytes=1048576&backups=3",
            "file",
            {"max_bytes": 1048576, "backups": 3},
        ),
        ("prometheus://127.0.0.1:9464", "prometheus", {}),
    ],
)
def test_endpoint_options_are_parsed_and_typed(endpoint, kind, options):
    [parsed] = TelemetryConfig(export_endpoints=[endpoint]).endpoints()
    assert (parsed.kind, dict(parsed.options)) == (kind, options)


def test_otlp_string_endpoints_get_per_signal_targets_with_defaults():
    config = TelemetryConfig(
        export_endpoints=["http://h:4318/prefix", "grpcs://g:4317?compression=none"],
        headers={"Authorization": "Bearer s3cret"},
    )
    http, grpc = (config.otlp_targets(e) for e in config.endpoints())
    assert {s: t.url for s, t in http.items()} == {
        "traces": "http://h:4318/prefix/v1/traces",
        "metrics": "http://h:4318/prefix/v1/metrics",
        "logs": "http://h:4318/prefix/v1/logs",
    }
    assert {t.url for t in grpc.values()} == {"https://g:4317"}
    assert (http["traces"].compression, grpc["logs"].compression) == ("gzip", "none")
    assert (http["traces"].timeout_ms, grpc["traces"].tls, http["traces"].tls) == (
        10_000,
        True,
        False,
    )
    assert dict(http["metrics"].headers) == {"Authorization": "Bearer s3cret"}


def test_repr_and_describe_mask_header_values_and_url_credentials():
    config = TelemetryConfig(
        export_endpoints=["https://user:hunter2@otlp.example.com:443?timeout_ms=5000"],
        headers={"api-key": "s3cret-key"},
    )
    for shown in (repr(config), config.describe()):
        assert "hunter2" not in shown and "s3cret-key" not in shown
        assert "user:***@otlp.example.com" in shown
        assert "'api-key': '***'" in shown
    assert "  traces   http/protobuf https://user:***@otlp.example.com:443/v1/traces" in (
        config.describe()
    )


def test_bad_headers_are_refused_without_showing_their_values():
    with pytest.raises(TypeError) as raised:
        TelemetryConfig(headers={"authorization": 12345678})
    assert "'authorization'" in str(raised.value) and "12345678" not in str(raised.value)


def test_configs_compare_by_field_values():
    assert TelemetryConfig(buffer_size=5) == TelemetryConfig(buffer_size=5)
    assert TelemetryConfig(buffer_size=5) != TelemetryConfig(buffer_size=6)


# -- fields set after the config is built ------------------------------------------------------


def test_fields_assigned_after_building_are_honoured_over_the_environment(monkeypatch):
    monkeypatch.setenv("TELEMETRY_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    config = TelemetryConfig()
    config.enabled = False
    config.export_endpoints = ["console"]
    config.sample_rate = 0.0
    config.tags["team"] = "payments"  # changed in place, not assigned
    collector = TelemetryCollector(config)
    resolved = collector.config
    assert (resolved.enabled, resolved.export_endpoints, resolved.sample_rate) == (
        False,
        ["console"],
        0.0,
    )
    assert resolved.tags == {"team": "payments"}
    shown = resolved.describe().splitlines()
    assert "enabled                    False  (assignment)" in shown
    assert "sample_rate                0.0  (assignment)" in shown


def test_a_field_passed_then_assigned_takes_the_assigned_value(monkeypatch):
    config = TelemetryConfig(sample_rate=0.25, buffer_size=10)
    config.sample_rate = 0.75
    resolved = TelemetryCollector(config).config
    assert (resolved.sample_rate, resolved.buffer_size) == (0.75, 10)


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("sample_rate", 5, ValueError, "sample_rate must be between 0 and 1, got 5"),
        ("enabled", "no", TypeError, "enabled must be a bool, got 'no'"),
        ("buffer_size", 0, ValueError, "buffer_size must be at least 1, got 0"),
        ("export_endpoints", ["ftp://x"], ValueError, "ftp://x"),
    ],
)
def test_a_bad_assignment_fails_at_once_and_leaves_the_config_as_it_was(
    field, value, error, message
):
    config = TelemetryConfig()
    before = getattr(config, field)
    with pytest.raises(error, match=re.escape(message)):
        setattr(config, field, value)
    assert getattr(config, field) == before
    assert TelemetryCollector(config).config == TelemetryCollector(TelemetryConfig()).config


def test_assigning_a_misspelt_field_raises_with_the_field_it_resembles():
    config = TelemetryConfig()
    with pytest.raises(
        AttributeError,
        match=r"^TelemetryConfig has no field 'smaple_rate'; did you mean 'sample_rate'\?$",
    ):
        config.smaple_rate = 0.5  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match=r"^TelemetryConfig has no field 'zzz'$"):
        config.zzz = 1  # type: ignore[attr-defined]
    assert not hasattr(config, "smaple_rate") and config == TelemetryConfig()


def test_a_running_collector_keeps_the_config_it_started_with(make_collector, recorder):
    collector = make_collector(sample_rate=1.0)
    collector.register_exporter(recorder)
    collector.config.sample_rate = 0.0  # checked, but too late for this collector
    assert collector.collect_event(Event("e", "m")) is True
    assert collector.flush() is True
    assert [e.name for e in recorder.of("event")] == ["e"]


def test_a_collector_config_changed_before_start_is_the_one_it_runs_with():
    collector = TelemetryCollector(TelemetryConfig(sample_rate=1.0))
    collector.config.event_sample_rate = 0.0
    collector.start()
    try:
        assert collector.collect_event(Event("e", "m")) is False
        assert collector.stats()["event"]["sampled_out_ratio"] == 1
    finally:
        collector.stop()
