"""The legacy telemetry API (collector, metrics, events, traces) on the OpenTelemetry SDK.

Migrating from the legacy bootstrap is one import line::

    from telemetry_otel import TelemetryCollector, Metric, Event, Trace, TelemetryConfig
"""

from __future__ import annotations

from telemetry_otel._version import __version__
from telemetry_otel.collector import TelemetryCollector
from telemetry_otel.config import TelemetryConfig
from telemetry_otel.models import Event, EventSeverity, Metric, MetricType, Trace

__all__ = [
    "Event",
    "EventSeverity",
    "Metric",
    "MetricType",
    "TelemetryCollector",
    "TelemetryConfig",
    "Trace",
    "__version__",
]
