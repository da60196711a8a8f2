"""The pytest plugin (registered through the ``pytest11`` entry point): ``telemetry_capture``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from telemetry_otel.collector import TelemetryCollector
from telemetry_otel.config import TelemetryConfig
from telemetry_otel.testing import TelemetryCapture


@pytest.fixture
def telemetry_capture() -> Iterator[TelemetryCapture]:
    """A started collector exporting nowhere but to this capture; stopped afterwards.

    Use ``telemetry_capture.collector`` in the code under test, then
    ``telemetry_capture.flush().events`` (or ``.traces``, ``.metrics``) in assertions.
    """
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=[]))
    capture = TelemetryCapture(collector)
    collector.start()
    try:
        yield capture
    finally:
        collector.stop()
