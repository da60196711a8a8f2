from __future__ import annotations

import pytest

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


def test_endpoints_are_parsed_into_kind_and_base_url():
    config = TelemetryConfig(
        export_endpoints=["console", "grpc://h:4317", "https://h:443/prefix/", "http://h:4318"]
    )
    assert [(e.kind, e.url) for e in config.endpoints()] == [
        ("console", ""),
        ("grpc", "http://h:4317"),
        ("http", "https://h:443/prefix"),
        ("http", "http://h:4318"),
    ]


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("stdout", "export_endpoints: unknown endpoint 'stdout'"),
        ("ftp://h:21", "unknown endpoint 'ftp://h:21'"),
        ("grpc://:4317", "'grpc://:4317' has no host"),
        ("grpc://h", "'grpc://h' needs an explicit port"),
        ("http://h:99999", "'http://h:99999' has an invalid port"),
        ("http://h:abc", "has an invalid port"),
        ("http://h:0", "has port 0"),
        ("grpc://h:4317/v1", "a gRPC endpoint takes no path"),
        ("http://h:4318?x=1", "takes no query or fragment"),
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
