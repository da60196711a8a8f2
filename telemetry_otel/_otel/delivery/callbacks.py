"""The callback bridge: legacy ``callback(data_type, model)`` exporters fed by the OTel pipeline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan

from telemetry_otel._otel.delivery.accounting import SELF_SCOPE
from telemetry_otel._otel.delivery.outcomes import CALLBACK, EXPORTER, REJECTED, Outcome
from telemetry_otel._otel.delivery.queue import DeliveryQueue, Spooler
from telemetry_otel._otel.mapping.logs import log_record_to_event
from telemetry_otel._otel.mapping.metrics import (
    DELTA_TEMPORALITY,
    metrics_data_to_models,
    within_int64,
)
from telemetry_otel._otel.mapping.spans import span_to_trace
from telemetry_otel._otel.runtime.forks import ForkSafeLock
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel.models import Metric

# A legacy exporter: callback(data_type, model), data_type "metric", "event" or "trace".
ExporterCallback = Callable[[str, Any], object]


class QueueSettings:
    """Size, batch and delay shared by every delivery queue of one pipeline."""

    def __init__(self, max_size: int, batch_size: int, delay_s: float) -> None:
        self.max_size = max_size
        self.batch_size = batch_size
        self.delay_s = delay_s

    def make_queue(
        self,
        name: str,
        deliver: Callable[[list[Any]], Outcome],
        spooler: Spooler[Any] | None = None,
        failure_reason: str = EXPORTER,
        immediate: bool = False,
    ) -> DeliveryQueue[Any]:
        return DeliveryQueue(
            name,
            deliver,
            self.max_size,
            self.batch_size,
            self.delay_s,
            spooler=spooler,
            failure_reason=failure_reason,
            immediate=immediate,
        )


class CallbackDestination:
    """One registered callback, with a queue per signal so a slow callback blocks nothing else."""

    def __init__(
        self, callback: ExporterCallback, global_tags: Mapping[str, Any], settings: QueueSettings
    ) -> None:
        self.callback = callback
        self._global_tags = dict(global_tags)
        # Legacy callbacks were written for one exporting thread: the three queues'
        # workers take turns, a batch at a time, so a callback never runs twice at once.
        self._calling = ForkSafeLock()
        name = f"callback-{getattr(callback, '__qualname__', type(callback).__name__)}"
        self.traces = settings.make_queue(f"{name}-traces", self._deliver_spans, None, CALLBACK)
        self.events = settings.make_queue(f"{name}-events", self._deliver_logs, None, CALLBACK)
        self.metrics = settings.make_queue(f"{name}-metrics", self._deliver_metrics, None, CALLBACK)
        for queue, kind in ((self.traces, "span"), (self.events, "log")):
            queue.component = (f"callback_{kind}_exporter", f"callback_{kind}_exporter/{name}")

    def queues(self) -> tuple[DeliveryQueue[Any], ...]:
        return (self.traces, self.events, self.metrics)

    def _deliver_spans(self, batch: list[ReadableSpan]) -> int:
        return self._call_each("trace", batch, span_to_trace)

    def _deliver_logs(self, batch: list[ReadableLogRecord]) -> int:
        return self._call_each("event", batch, log_record_to_event)

    def _deliver_metrics(self, batch: list[Metric]) -> int:
        return self._call_each("metric", batch, None)

    def _call_each(
        self,
        data_type: str,
        batch: list[Any],
        to_model: Callable[[Any, Mapping[str, Any]], Any] | None,
    ) -> int:
        """Call the callback with each item's model (``to_model(item, global_tags)``,
        or the item itself); how many calls returned."""
        with self._calling:
            callback, global_tags = self.callback, self._global_tags
            # The test capture (telemetry_otel.testing) also takes the OTel item the model
            # was built from: its ids, kind and span events, which no legacy model has.
            with_item = getattr(callback, "wants_otel_items", False) is True
            delivered = 0
            for item in batch:
                try:
                    model = item if to_model is None else to_model(item, global_tags)
                    if with_item:
                        callback(data_type, model, item)  # type: ignore[call-arg]
                    else:
                        callback(data_type, model)
                    delivered += 1
                except Exception:
                    # Every failure is counted; the log gets one traceback a minute per callback.
                    warn_limited(
                        f"callback:{id(callback)}",
                        "telemetry exporter callback %r raised",
                        callback,
                        exc_info=True,
                    )
            return delivered


class CallbackMetricExporter(MetricExporter):
    """Turns each interval's delta metrics into Metric models for every callback's queue."""

    def __init__(self, global_tags: Mapping[str, Any]) -> None:
        super().__init__(preferred_temporality=DELTA_TEMPORALITY)
        self._global_tags = dict(global_tags)
        self._queues: tuple[DeliveryQueue[Metric], ...] = ()
        self._stopped = False

    def set_queues(self, queues: tuple[DeliveryQueue[Metric], ...]) -> None:
        self._queues = queues

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        queues = self._queues
        if queues and not self._stopped:  # stopped: a forked child of a stopped collector
            data = within_int64(metrics_data)
            models, unfit = metrics_data_to_models(data, self._global_tags, SELF_SCOPE)
            for queue in queues:
                queue.hold_at_least(len(models))
                for model in models:
                    queue.submit(model)
                if unfit:  # a point no Metric can hold: counted, the others still go
                    queue.drop_unsent(REJECTED, unfit)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._stopped = True

    def resume(self) -> None:
        """Export again, behind a new reader (a callback was registered again)."""
        self._stopped = False
