"""The OTLP destination's metrics: sent through OtlpSender behind the SDK's periodic reader."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.delivery.accounting import SELF_SCOPE
from telemetry_otel._otel.delivery.otlp import VERDICTS, metric_points, split_metrics
from telemetry_otel._otel.delivery.outcomes import (
    PARTIAL,
    REFUSED,
    TOO_LARGE,
    UNAVAILABLE,
    Delivered,
)
from telemetry_otel._otel.delivery.sender import (
    PERMANENT,
    RETRYABLE,
    Answer,
    OtlpSender,
)
from telemetry_otel._otel.delivery.sender import TOO_LARGE as SENT_TOO_LARGE
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

    def __init__(self, name: str, target: OtlpTarget, max_request_bytes: int) -> None:
        super().__init__(name, NoOpMetricExporter(), otlp_metric_preferences())
        self._sender = OtlpSender(target, "metrics")
        self._budget = max_request_bytes
        self._items = "metric data points"

    def _deliver(self, metrics_data: MetricsData, points: int, timeout_millis: float) -> Delivered:
        """Send the export in requests that fit the byte budget; one the endpoint still
        refuses for its size is split in two and each half sent again. An outage ends
        the export: the parts not sent yet fail with it (OTLP metrics are cumulative,
        so the next export carries their totals again)."""
        delivered = Delivered()
        outage: Answer | None = None
        for items, request in self._fitting(metrics_request(metrics_data, self.summaries), points):
            if outage is None:
                outage = self._send(request, items, delivered)
            else:
                delivered.fail(UNAVAILABLE, items)
                self._report_loss(outage, items)
        return delivered

    def _fitting(self, request: Any, items: int) -> list[tuple[int, Any]]:
        """The request cut in halves until each part fits the byte budget (a single data
        point goes as it is: the endpoint decides)."""
        if request.ByteSize() <= self._budget or metric_points(request) <= 1:
            return [(items, request)]
        return [
            fitting
            for part_items, part in split_metrics(request, SELF_SCOPE)
            for fitting in self._fitting(part, part_items)
        ]

    def _send(self, request: Any, items: int, delivered: Delivered) -> Answer | None:
        """Send one request and count its points; the answer if it was an outage."""
        answer = self._sender.send_with_retries(request.SerializeToString())
        if answer.kind == SENT_TOO_LARGE and metric_points(request) > 1:
            for part_items, part in split_metrics(request, SELF_SCOPE):
                outage = self._send(part, part_items, delivered)
                if outage is not None:
                    return outage
            return None
        exported = items - min(answer.rejected, items) if answer.taken else 0
        delivered.exported += exported
        if answer.taken:
            delivered.fail(PARTIAL, items - exported)
        elif answer.kind == SENT_TOO_LARGE:  # one data point, refused alone
            delivered.drop(TOO_LARGE, items)
        else:
            delivered.fail(UNAVAILABLE if answer.kind == RETRYABLE else REFUSED, items)
        self._report_loss(answer, items - exported)
        return answer if answer.kind == RETRYABLE else None

    def _report_loss(self, answer: Answer, lost: int) -> None:
        if not lost:
            return
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
