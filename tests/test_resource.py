from __future__ import annotations

import pytest

from telemetry_otel import TelemetryConfig
from telemetry_otel._otel.mapping.resource import build_resource


@pytest.fixture(autouse=True)
def _no_resource_env(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)


def _service_name(**config):
    return build_resource(TelemetryConfig(**config)).attributes["service.name"]


def test_service_name_comes_from_the_config_first(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert _service_name(service_name="explicit", tags={"service.name": "tag"}) == "explicit"


def test_then_from_a_service_name_tag(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert _service_name(tags={"service.name": "tag"}) == "tag"


def test_then_from_otel_service_name(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert _service_name() == "from-env"


def test_then_the_otel_default():
    assert _service_name().startswith("unknown_service")  # ":<executable>" per the spec


def test_global_tags_become_resource_attributes_over_otel_resource_attributes(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "environment=staging,region=eu")
    attributes = build_resource(TelemetryConfig(tags={"environment": "prod", "n": 3})).attributes
    assert (attributes["environment"], attributes["region"], attributes["n"]) == ("prod", "eu", 3)


def _resource_lines(config: TelemetryConfig) -> list[str]:
    return [
        " ".join(line.split())
        for line in config.describe().splitlines()
        if line.startswith("resource ")
    ]


def test_describe_shows_the_effective_service_name_and_where_it_came_from(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert "resource service.name 'checkout' (OTEL_SERVICE_NAME)" in _resource_lines(
        TelemetryConfig()
    )
    tagged = _resource_lines(TelemetryConfig(tags={"service.name": "tagged"}))
    assert "resource service.name 'tagged' (tags)" in tagged
    named = _resource_lines(TelemetryConfig(service_name="named", tags={"service.name": "t"}))
    assert "resource service.name 'named' (service_name)" in named


def test_describe_shows_resource_attributes_with_sources_and_masks_secrets(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,api_key=sk-live-1,region=us")
    lines = _resource_lines(TelemetryConfig(tags={"region": "eu"}))
    assert "resource team 'payments' (OTEL_RESOURCE_ATTRIBUTES)" in lines
    assert "resource region 'eu' (tags)" in lines
    assert "resource api_key '[REDACTED]' (OTEL_RESOURCE_ATTRIBUTES)" in lines
    assert "resource telemetry.sdk.language 'python' (OpenTelemetry SDK)" in lines
    assert not any("sk-live-1" in line for line in lines)
    assert any(line.startswith("resource service.name 'unknown_service") for line in lines)
