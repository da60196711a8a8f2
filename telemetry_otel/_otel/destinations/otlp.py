"""The OTLP destination's metrics: sent through OtlpSender behind the SDK's periodic reader."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.delivery.otlp import VERDICTS
from telemetry_otel._otel.delivery.outcomes import PARTIAL, REFUSED, UNAVAILABLE, Delivered
from telemetry_otel._otel.delivery.sender import PERMANENT, RETRYABLE, OtlpSender
from telemetry_otel._otel.destinations.destination import CountingMetricExporter
from telemetry_otel._otel.mapping.metrics import metrics_request
from telemetry_otel._otel.runtime.log import report_loss
from telemetry_otel._otel.runtime.sdk import otlp_metric_preferences


class OtlpMetricExporter(CountingMetricExporter):
    """Metrics to one OTLP endpoint through OtlpSender, for the reasons delivery/sender.py
    gives; behind the SDK's periodic reader, which aggregates and collects.

    Temporality and the default histogram aggregation follow the
    ``OTEL_EXPORTER_OTLP_METRICS_*`` variables, read by the SDK's own code.
    """

    def __init__(self, name: str, target: OtlpTarget) -> None:
        super().__init__(name, NoOpMetricExporter(), otlp_metric_preferences())
        self._sender = OtlpSender(target, "metrics")
        self._items = "metric data points"

    def _deliver(self, metrics_data: MetricsData, points: int, timeout_millis: float) -> Delivered:
        request = metrics_request(metrics_data, self.summaries)
        answer = self._sender.send_with_retries(request.SerializeToString())
        delivered = Delivered()
        if answer.taken:
            rejected = min(answer.rejected, points)
            delivered.exported = points - rejected
            delivered.fail(PARTIAL, rejected)
        else:
            delivered.fail(UNAVAILABLE if answer.kind == RETRYABLE else REFUSED, points)
        lost = points - delivered.exported
        if lost:
            what = VERDICTS.get(answer.kind, VERDICTS[PERMANENT])
            message = f": {answer.message}" if answer.message else ""
            report_loss(
                f"export:{self.name}:metrics:{answer.kind}",
                lost,
                "OTLP endpoint %s %s (%s%s): %d lost since the last report",
                self.name,
                what.format(self._items),
                answer.reason,
                message,
            )
        return delivered

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        super().shutdown(timeout_millis, **kwargs)
        self._sender.close()


class NoOpMetricExporter(MetricExporter):
    """Stands for the wrapped exporter where the sending is done by the subclass."""

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass
