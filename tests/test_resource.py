from __future__ import annotations

import pytest

from telemetry_otel import TelemetryConfig
from telemetry_otel._otel.pipeline import build_resource


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
