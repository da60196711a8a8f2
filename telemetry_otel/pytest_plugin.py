"""The pytest plugin (registered through the ``pytest11`` entry point): ``telemetry_capture``.

Every pytest session of every project that installs this package loads the plugin, so
it imports nothing of the library (nor the OpenTelemetry SDK) until a test asks for
the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from telemetry_otel.testing import TelemetryCapture


@pytest.fixture
def telemetry_capture() -> Iterator[TelemetryCapture]:
    """A started collector exporting nowhere but to this capture; stopped afterwards.

    Use ``telemetry_capture.collector`` in the code under test, then
    ``telemetry_capture.flush().events`` (or ``.traces``, ``.metrics``) in assertions.
    Its settings are the defaults, whatever ``TELEMETRY_*`` and ``OTEL_*`` variables
    the test run has (``OTEL_SDK_DISABLED=true`` in CI, a sample rate of 0): a test
    sees everything its code collects.
    """
    from telemetry_otel.collector import TelemetryCollector
    from telemetry_otel.config import TelemetryConfig
    from telemetry_otel.testing import TelemetryCapture

    collector = TelemetryCollector(TelemetryConfig(export_endpoints=[]).with_env({}))
    capture = TelemetryCapture(collector)
    collector.start()
    try:
        yield capture
    finally:
        collector.stop()
