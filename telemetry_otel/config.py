"""TelemetryConfig: the legacy configuration, validated when it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from telemetry_otel._endpoints import Endpoint, parse_endpoint
from telemetry_otel.models import _check_tags

__all__ = ["TelemetryConfig"]


@dataclass
class TelemetryConfig:
    """How a TelemetryCollector collects and where it exports.

    Attributes:
        enabled: When False, ``collect_*`` return False and nothing is exported.
        buffer_size: Queue size of each trace and event destination; a full queue
            drops its oldest item (counted in ``stats()``). Export batches hold at
            most ``min(512, buffer_size)`` items.
        flush_interval_ms: How often queued traces and events are exported, and the
            metric export interval.
        export_endpoints: Where telemetry goes: ``"console"``, ``"grpc://host:port"``
            (OTLP/gRPC) or ``"http(s)://host:port[/prefix]"`` (OTLP/HTTP protobuf).
        sample_rate: Fraction of traces (decided per trace id) and events kept, 0.0 to 1.0.
            Metrics are never sampled.
        tags: Global tags: resource attributes of everything the collector exports.
        service_name: The ``service.name`` resource attribute; when None, a
            ``service.name`` tag, then ``OTEL_SERVICE_NAME``, then the OTel default.
    """

    enabled: bool = True
    buffer_size: int = 1000
    flush_interval_ms: int = 5000
    export_endpoints: list[str] = field(default_factory=list)
    sample_rate: float = 1.0
    tags: dict[str, str | int | float | bool] = field(default_factory=dict)
    service_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError(f"TelemetryConfig.enabled must be a bool, got {self.enabled!r}")
        _check_positive_int("buffer_size", self.buffer_size)
        _check_positive_int("flush_interval_ms", self.flush_interval_ms)
        _check_sample_rate(self.sample_rate)
        _check_tags("TelemetryConfig", "tags", self.tags)
        if self.service_name is not None and (
            not isinstance(self.service_name, str) or not self.service_name
        ):
            raise ValueError(
                "TelemetryConfig.service_name must be a non-empty str or None, "
                f"got {self.service_name!r}"
            )
        self.endpoints()

    def endpoints(self) -> list[Endpoint]:
        """Return ``export_endpoints`` parsed, raising ValueError for an unknown form."""
        if not isinstance(self.export_endpoints, (list, tuple)):
            raise TypeError(
                "TelemetryConfig.export_endpoints must be a list of str, "
                f"got {self.export_endpoints!r}"
            )
        return [parse_endpoint(text) for text in self.export_endpoints]


def _check_positive_int(name: str, value: object) -> None:
    if type(value) is not int:
        raise TypeError(f"TelemetryConfig.{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"TelemetryConfig.{name} must be at least 1, got {value!r}")


def _check_sample_rate(value: object) -> None:
    if type(value) not in (int, float):
        raise TypeError(f"TelemetryConfig.sample_rate must be a number, got {value!r}")
    assert isinstance(value, (int, float))
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"TelemetryConfig.sample_rate must be between 0 and 1, got {value!r}")
