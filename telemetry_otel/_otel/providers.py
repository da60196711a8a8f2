"""The application's global OTel providers, when a collector is asked to join them."""

from __future__ import annotations

from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from telemetry_otel._otel.runtime.log import warn_limited

_SDK_TYPES: dict[str, tuple[type, Any]] = {
    "trace": (TracerProvider, trace.get_tracer_provider),
    "metric": (MeterProvider, metrics.get_meter_provider),
    "event": (LoggerProvider, _logs.get_logger_provider),
}


def global_sdk_provider(signal: str) -> Any:
    """The global SDK provider of a signal, or None (with a warning) when none is set."""
    sdk_type, get_global = _SDK_TYPES[signal]
    provider = get_global()
    if isinstance(provider, sdk_type):
        return provider
    warn_limited(
        f"global:{signal}",
        "use_global_providers: no global SDK %s is set (found %s); "
        "the collector uses its own for %ss",
        sdk_type.__name__,
        type(provider).__name__,
        signal,
    )
    return None
