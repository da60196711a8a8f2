"""The legacy telemetry API (collector, metrics, events, traces) on the OpenTelemetry SDK.

Migrating from the legacy bootstrap is one import line::

    from telemetry_otel import TelemetryCollector, Metric, Event, Trace, TelemetryConfig
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

# Imported first: it masks what the SDK logs when its modules are imported.
from telemetry_otel._otel.runtime import log as _log  # noqa: F401
from telemetry_otel._version import __version__

if _typing.TYPE_CHECKING:
    from telemetry_otel.collector import TelemetryCollector, deliver_on_terminate
    from telemetry_otel.config import TelemetryConfig
    from telemetry_otel.instruments import (
        BoundCounter,
        BoundGauge,
        BoundHistogram,
        CounterHandle,
        GaugeHandle,
        HistogramHandle,
    )
    from telemetry_otel.models import Event, EventSeverity, Metric, MetricType, Trace

# Imported on first use: the pytest plugin lives in this package, and every pytest
# session of a project that installs it loads the plugin, which must not cost them the
# OpenTelemetry SDK's import.
_HOMES = {
    "TelemetryCollector": "telemetry_otel.collector",
    "TelemetryConfig": "telemetry_otel.config",
    "Event": "telemetry_otel.models",
    "EventSeverity": "telemetry_otel.models",
    "Metric": "telemetry_otel.models",
    "MetricType": "telemetry_otel.models",
    "Trace": "telemetry_otel.models",
    "deliver_on_terminate": "telemetry_otel.collector",
    **dict.fromkeys(
        (
            "BoundCounter",
            "BoundGauge",
            "BoundHistogram",
            "CounterHandle",
            "GaugeHandle",
            "HistogramHandle",
        ),
        "telemetry_otel.instruments",
    ),
}


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'telemetry_otel' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "BoundCounter",
    "BoundGauge",
    "BoundHistogram",
    "CounterHandle",
    "Event",
    "EventSeverity",
    "GaugeHandle",
    "HistogramHandle",
    "Metric",
    "MetricType",
    "TelemetryCollector",
    "TelemetryConfig",
    "Trace",
    "__version__",
    "deliver_on_terminate",
]
