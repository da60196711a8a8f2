from __future__ import annotations

import inspect

import pytest

import telemetry_otel


def test_all_lists_exactly_the_public_names_sorted():
    public = {
        name
        for name in dir(telemetry_otel)  # the names it imports on first use included
        if name.isidentifier()
        and not name.startswith("_")
        and not inspect.ismodule(getattr(telemetry_otel, name))
    }
    public -= {"annotations"}  # the __future__ import
    assert sorted(telemetry_otel.__all__) == list(telemetry_otel.__all__)
    assert set(telemetry_otel.__all__) - {"__version__"} == public


def test_importing_the_package_does_not_import_the_sdk_until_a_name_is_used():
    import subprocess
    import sys

    script = (
        "import sys, telemetry_otel; "
        "print(any(m.startswith('opentelemetry') for m in sys.modules)); "
        "telemetry_otel.TelemetryCollector; "
        "print('opentelemetry.sdk.trace' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True"], result.stderr
    with pytest.raises(AttributeError, match="has no attribute 'Collector'"):
        telemetry_otel.Collector  # noqa: B018


def test_the_legacy_import_paths_work():
    from telemetry_otel import (  # noqa: F401
        Event,
        EventSeverity,
        Metric,
        MetricType,
        TelemetryCollector,
        TelemetryConfig,
        Trace,
    )
    from telemetry_otel.config import TelemetryConfig as Config
    from telemetry_otel.models import Event as ModelEvent
    from telemetry_otel.models import EventSeverity as Severity
    from telemetry_otel.models import Metric as ModelMetric
    from telemetry_otel.models import MetricType as Type
    from telemetry_otel.models import Trace as ModelTrace

    assert (Config, ModelEvent, Severity, ModelMetric, Type, ModelTrace) == (
        TelemetryConfig,
        Event,
        EventSeverity,
        Metric,
        MetricType,
        Trace,
    )


def test_the_package_is_typed():
    from importlib.resources import files

    assert files("telemetry_otel").joinpath("py.typed").is_file()


def test_models_import_nothing_from_opentelemetry():
    import ast
    from pathlib import Path

    source = Path(telemetry_otel.__file__).with_name("models.py").read_text()
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("opentelemetry")]
