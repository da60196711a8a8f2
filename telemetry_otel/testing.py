"""Helpers for asserting on telemetry in your own tests.

Example::

    from telemetry_otel import Event, TelemetryCollector
    from telemetry_otel.testing import TelemetryCapture

    def test_checkout_emits_an_event():
        with TelemetryCollector() as collector, TelemetryCapture(collector) as captured:
            checkout(collector)
            assert [e.name for e in captured.flush().events] == ["user_action"]

With pytest, the ``telemetry_capture`` fixture (installed with this package) gives
a started collector's capture: ``telemetry_capture.collector``.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from telemetry_otel.collector import TelemetryCollector
from telemetry_otel.models import Event, Metric, Trace

__all__ = ["TelemetryCapture"]


class TelemetryCapture:
    """Records, in order, the models a collector exports (through a registered callback).

    What you read back went through the real OpenTelemetry pipeline: traces and events
    one to one, metrics aggregated per export interval (call :meth:`flush` first).

    Args:
        collector: The collector to listen to; it may be started before or after.
    """

    def __init__(self, collector: TelemetryCollector) -> None:
        self.collector = collector
        self._items: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        collector.register_exporter(self._record)

    def _record(self, data_type: str, data: Any) -> None:
        with self._lock:
            self._items.append((data_type, data))

    def flush(self, timeout_ms: float = 10_000) -> TelemetryCapture:
        """Export everything collected so far, so it is captured; returns self."""
        self.collector.flush(timeout_ms)
        return self

    @property
    def items(self) -> list[tuple[str, Any]]:
        """Every ``(data_type, model)`` captured, in the order it arrived."""
        with self._lock:
            return list(self._items)

    @property
    def metrics(self) -> list[Metric]:
        return [data for kind, data in self.items if kind == "metric"]

    @property
    def events(self) -> list[Event]:
        return [data for kind, data in self.items if kind == "event"]

    @property
    def traces(self) -> list[Trace]:
        return [data for kind, data in self.items if kind == "trace"]

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            self._items.clear()

    def close(self) -> None:
        """Stop capturing."""
        self.collector.unregister_exporter(self._record)

    def __enter__(self) -> TelemetryCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
