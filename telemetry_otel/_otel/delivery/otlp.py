"""Trace and log batches to one OTLP endpoint: cut to fit its size limit, each outcome
counted by what the endpoint did, and the spool (if any) behind it for outages only.

What happens to a batch (docs/reliability.md says the same):
- it is cut into requests of at most ``max_export_batch_bytes`` (encoded); an item
  that cannot fit even alone is dropped (``dropped_too_large``);
- a request the endpoint refuses for its size (HTTP 413, an HTTP 400 whose body says
  so, gRPC RESOURCE_EXHAUSTED or OUT_OF_RANGE with a message about the size: see
  ``sender.is_size_refusal``) is split in two and each half sent again, live or on
  replay from the spool; an item refused alone is dropped (live, ``dropped_too_large``)
  or counted rejected (replayed), never spooled again;
- an outage (refused, reset, timeout, 429/502/503/504, UNAVAILABLE…) that outlasts
  the endpoint's retries is spooled with a spool, or counted in
  ``export_failures_unavailable``;
- a permanent refusal (other 4xx, 3xx, INVALID_ARGUMENT…) is never spooled:
  ``export_failures_refused``; items a partial success rejects:
  ``export_failures_partial``. Each is logged once a minute per endpoint, with the
  server's message and how many items it cost.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.delivery.outcomes import (
    PARTIAL,
    REFUSED,
    TOO_LARGE,
    UNAVAILABLE,
    Delivered,
)
from telemetry_otel._otel.delivery.queue import DeliveryQueue
from telemetry_otel._otel.delivery.sender import (
    ACCEPTED,
    PERMANENT,
    RETRYABLE,
    Answer,
    OtlpSender,
)
from telemetry_otel._otel.delivery.sender import PARTIAL as SENT_PARTIAL
from telemetry_otel._otel.delivery.sender import TOO_LARGE as SENT_TOO_LARGE
from telemetry_otel._otel.delivery.spool import BUSY, Settlement, Spool, SpooledBatch
from telemetry_otel._otel.mapping.encoding import encode_spans
from telemetry_otel._otel.runtime.log import report_loss
from telemetry_otel._otel.runtime.sdk import log_encoder

ENCODERS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "traces": encode_spans,
    "logs": log_encoder(),
}
_ITEMS = {"traces": "spans", "logs": "log records"}
# A replay that keeps failing waits longer each time (1 s, 2 s, 4 s, then this at
# most), instead of retrying on every idle pass of the queue; a short cap, because
# the spool is sent only by replays once the endpoint is back.
_MAX_REPLAY_BACKOFF_S = 5.0

Request = tuple[list[Any], bytes]
# Items encoded at a time when spooling at stop(): each chunk checks the deadline.
_SPOOL_CHUNK = 512
# How a batch's loss is worded, by the kind of answer (delivery/sender.py's).
VERDICTS = {
    RETRYABLE: "could not take {} past its retries",
    SENT_PARTIAL: "rejected {}",
    PERMANENT: "refused {} for good",
}


class OtlpDelivery:
    """The ``deliver`` (and, with a spool, the Spooler) of one OTLP destination's queue."""

    def __init__(
        self,
        name: str,
        signal: str,
        target: OtlpTarget,
        max_request_bytes: int,
        spool: Spool | None = None,
    ) -> None:
        self._name = name
        self._signal = signal
        self._items = _ITEMS[signal]
        self._encode = ENCODERS[signal]
        self._budget = max_request_bytes
        self._sender = OtlpSender(target, signal)
        self._spool = spool
        self._queue: DeliveryQueue[Any] | None = None
        self._replay_failures = 0
        self._replay_after = 0.0
        # Long enough for one send; a process that dies mid-replay frees its row then.
        self._lease_s = target.timeout_ms / 1000 + 5.0

    def attach(self, queue: DeliveryQueue[Any]) -> None:
        self._queue = queue
        if self._spool is not None:
            self._spool.on_evict(
                self._name, self._signal, lambda items: queue.settle_spooled(dropped=items)
            )

    # -- live batches ------------------------------------------------------------------------

    def deliver(self, batch: list[Any]) -> Delivered:
        outcome = Delivered()
        queue = self._queue_or_fail()
        if self._spool is not None and not self.replay(queue, force=queue.flushing):
            # Older batches wait in the spool: this one queues behind them, in order.
            return self._spool_or_fail(self.requests(batch, outcome), outcome, None)
        requests = self.requests(batch, outcome)
        for index, (items, payload) in enumerate(requests):
            left = self._send(items, payload, outcome)
            if left is not None:
                outage, unsent = left
                return self._spool_or_fail(unsent + requests[index + 1 :], outcome, outage)
        return outcome

    def requests(self, items: list[Any], outcome: Delivered) -> list[Request]:
        """Encoded requests within the byte budget; items too large alone are dropped."""
        payload = self._encode(items).SerializeToString()
        if len(payload) <= self._budget:
            return [(items, payload)]
        if len(items) == 1:
            outcome.drop(TOO_LARGE, 1)
            report_loss(
                f"too_large:{self._name}:{self._signal}",
                1,
                "dropped %s too large to export to %s (%d bytes encoded, "
                "max_export_batch_bytes %d): %d since the last report",
                self._items,
                self._name,
                len(payload),
                self._budget,
            )
            return []
        half = len(items) // 2
        return self.requests(items[:half], outcome) + self.requests(items[half:], outcome)

    def _send(
        self, items: list[Any], payload: bytes, outcome: Delivered
    ) -> tuple[Answer, list[Request]] | None:
        """Send one request, splitting it when refused for its size. On an outage, the
        answer and the requests not sent: those are neither counted nor lost here (the
        caller spools or fails them); the parts of a split already sent stay counted."""
        answer = self._sender.send_with_retries(payload)
        if answer.kind == RETRYABLE:
            return answer, [(items, payload)]
        if answer.kind == SENT_TOO_LARGE and len(items) > 1:
            half = len(items) // 2
            parts = self.requests(items[:half], outcome) + self.requests(items[half:], outcome)
            for index, (part_items, part_payload) in enumerate(parts):
                left = self._send(part_items, part_payload, outcome)
                if left is not None:
                    outage, unsent = left
                    return outage, unsent + parts[index + 1 :]
            return None
        self._count_answer(answer, len(items), outcome)
        return None

    def _count_answer(self, answer: Answer, items: int, outcome: Delivered) -> None:
        if answer.taken:
            outcome.exported += items - min(answer.rejected, items)
            if answer.kind == SENT_PARTIAL:
                self._report(PARTIAL, answer, min(answer.rejected, items))
                outcome.fail(PARTIAL, min(answer.rejected, items))
            return
        if answer.kind == SENT_TOO_LARGE:
            outcome.drop(TOO_LARGE, items)
        else:
            outcome.fail(REFUSED, items)
        self._report(REFUSED, answer, items)

    def _report(self, reason: str, answer: Answer, items: int) -> None:
        what = {
            PARTIAL: "rejected",
            REFUSED: "refused for good (not retried, not spooled)",
            UNAVAILABLE: "could not take",
        }[reason]
        message = f": {answer.message}" if answer.message else ""
        report_loss(
            f"export:{self._name}:{self._signal}:{reason}",
            items,
            "OTLP endpoint %s %s %s (%s%s): %d since the last report",
            self._name,
            what,
            self._items,
            answer.reason,
            message,
        )

    def _spool_or_fail(
        self, requests: list[Request], outcome: Delivered, outage: Answer | None
    ) -> Delivered:
        """Spool what an outage (or older spooled batches: ``outage`` None) holds back;
        without a spool, count it as failed."""
        items = sum(len(request_items) for request_items, _ in requests)
        if items and not self._queue_or_fail().claim_in_flight("delivery"):
            return outcome  # stop() took this batch at its deadline, and counts it
        if items and self._spool is not None:
            outcome.spooled += self._put(requests)
        lost = items - outcome.spooled
        outcome.fail(UNAVAILABLE, lost)
        if outage is not None:
            verdict = "spooled" if outcome.spooled else "lost"
            count = outcome.spooled or lost
            message = f": {outage.message}" if outage.message else ""
            report_loss(
                f"export:{self._name}:{self._signal}:{UNAVAILABLE}:{verdict}",
                count,
                "OTLP endpoint %s could not take %s past its retries (%s%s): "
                f"%d {verdict} since the last report",
                self._name,
                self._items,
                outage.reason,
                message,
            )
        return outcome

    def _put(self, requests: list[Request]) -> int:
        assert self._spool is not None
        rows = [(len(items), payload) for items, payload in requests]
        return self._spool.put_many(self._name, self._signal, rows)

    def _queue_or_fail(self) -> DeliveryQueue[Any]:
        queue = self._queue
        assert queue is not None, "attach() the queue first"
        return queue

    # -- the spool ---------------------------------------------------------------------------

    def hold(self, queue: DeliveryQueue[Any], items: list[Any], deadline: float = math.inf) -> int:
        """Spool items the queue could not send in time, oldest first, in one transaction;
        how many were stored. Encoding stops at ``deadline`` (what is left then is the
        caller's to drop), so stop() keeps its deadline however much is queued."""
        if self._spool is None:
            return 0
        requests: list[Request] = []
        try:
            for start in range(0, len(items), _SPOOL_CHUNK):
                if time.monotonic() >= deadline:
                    break
                requests += self.requests(items[start : start + _SPOOL_CHUNK], Delivered())
        except Exception as error:
            report_loss(
                f"spool:encode:{self._name}",
                len(items),
                "cannot spool %s for %s (%s): %d lost since the last report",
                self._items,
                self._name,
                type(error).__name__,
            )
        return self._put(requests)

    def replay(self, queue: DeliveryQueue[Any], force: bool = False) -> bool:
        """Send spooled requests oldest first until one fails; True when none is left.

        After an outage it waits (backing off) before trying again, unless ``force``
        (a flush asks for a try now). A row the endpoint refuses for good is removed
        and counted, never replayed again. A row another process is sending (it holds
        its lease) is left to it, and the rows behind it wait.
        """
        spool = self._spool
        if spool is None:
            return True
        self._apply_settlements(queue, spool)
        if not force and time.monotonic() < self._replay_after:
            return not spool.has_rows(self._name, self._signal)
        while (batch := spool.claim_oldest(self._name, self._signal, self._lease_s)) is not None:
            if batch is BUSY:
                return False
            answer = self._replay_one(batch.payload, batch.items)
            if answer.kind == RETRYABLE:
                spool.release(batch)
                self._back_off()
                return False
            self._replay_failures = 0
            self._settle(queue, spool, batch, answer)
        return True

    def _replay_one(self, payload: bytes, items: int) -> Answer:
        """Send a spooled request; one refused for its size is split and its halves sent
        alike. An outage in any part is the row's: it is replayed whole later (the parts
        sent already may arrive twice, as any replayed batch may)."""
        answer = self._sender.send(payload)
        if answer.kind != SENT_TOO_LARGE or items <= 1:
            return answer
        rejected = 0
        for part_items, part in split_request(self._signal, payload):
            part_answer = self._replay_one(part, part_items)
            if part_answer.kind == RETRYABLE:
                return part_answer
            taken = part_answer.taken
            rejected += min(part_answer.rejected, part_items) if taken else part_items
        if not rejected:
            return Answer(ACCEPTED)
        return Answer(SENT_PARTIAL, "too large alone", answer.message, rejected)

    def _back_off(self) -> None:
        wait = min(_MAX_REPLAY_BACKOFF_S, 2.0**self._replay_failures)
        self._replay_after = time.monotonic() + wait * random.uniform(0.8, 1.2)
        self._replay_failures += 1

    def _settle(
        self, queue: DeliveryQueue[Any], spool: Spool, batch: SpooledBatch, answer: Answer
    ) -> None:
        items = batch.items
        rejected = min(answer.rejected, items) if answer.taken else items
        reason = PARTIAL if answer.taken else REFUSED
        if rejected:
            self._report(reason, answer, rejected)
        settlement = Settlement(exported=items - rejected, failed_by={reason: rejected})
        spool.settle(batch, self._name, self._signal, settlement)
        if batch.ours:
            queue.settle_spooled(exported=items - rejected, failed=rejected, reason=reason)
        elif answer.taken:
            queue.count_recovered(items - rejected)

    def _apply_settlements(self, queue: DeliveryQueue[Any], spool: Spool) -> None:
        """Our rows that another process sent or evicted leave our ``spooled`` count."""
        settled = spool.take_settlements(self._name, self._signal)
        if settled.items:
            queue.settle_spooled(exported=settled.exported, dropped=settled.dropped)
            for reason, count in settled.failed_by.items():
                queue.settle_spooled(failed=count, reason=reason)

    def close(self) -> None:
        self._sender.close()


# Each signal's request: its message type, and the fields from the request to its items.
_REQUEST_SHAPES: dict[str, tuple[type[Any], str, str, str]] = {
    "traces": (ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans"),
    "logs": (ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records"),
}


def split_request(signal: str, payload: bytes) -> list[tuple[int, bytes]]:
    """An encoded request cut in two halves by item, each keeping its items' resource
    and scope: ``(items, payload)`` each. For spooled requests, which are kept encoded."""
    message_type, resources, scopes, items = _REQUEST_SHAPES[signal]
    request = message_type()
    request.ParseFromString(payload)
    flat = [
        (resource, scope, item)
        for resource in getattr(request, resources)
        for scope in getattr(resource, scopes)
        for item in getattr(scope, items)
    ]
    half = len(flat) // 2
    return [
        (len(part), _rebuilt(message_type(), part, resources, scopes, items).SerializeToString())
        for part in (flat[:half], flat[half:])
    ]


def _rebuilt(
    out: Any, part: list[tuple[Any, Any, Any]], resources: str, scopes: str, items: str
) -> Any:
    copies: dict[int, Any] = {}  # id of the original resource or scope -> its copy
    for resource, scope, item in part:
        new_resource = copies.get(id(resource))
        if new_resource is None:
            new_resource = copies[id(resource)] = getattr(out, resources).add()
            new_resource.CopyFrom(resource)
            new_resource.ClearField(scopes)
        new_scope = copies.get(id(scope))
        if new_scope is None:
            new_scope = copies[id(scope)] = getattr(new_resource, scopes).add()
            new_scope.CopyFrom(scope)
            new_scope.ClearField(items)
        getattr(new_scope, items).add().CopyFrom(item)
    return out


# -- metrics -----------------------------------------------------------------------------------

# An OTLP metric's data kinds, each a message with ``data_points``.
_METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def metric_points(request: ExportMetricsServiceRequest, skip_scope: str | None = None) -> int:
    """How many data points a metrics request carries, leaving out one scope's."""
    return sum(
        len(_points(metric))
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name != skip_scope
        for metric in scope.metrics
    )


def _points(metric: Any) -> Any:
    """A metric's data points, whatever its kind (none for a kind not known here)."""
    kind = metric.WhichOneof("data")
    return getattr(metric, kind).data_points if kind in _METRIC_KINDS else ()


def split_metrics(
    request: ExportMetricsServiceRequest, skip_scope: str | None = None
) -> list[tuple[int, ExportMetricsServiceRequest]]:
    """A metrics request cut in two halves by data point, each point keeping its
    metric's name, unit, description and temporality, and its resource and scope:
    ``(points, request)`` each, the points counted without ``skip_scope``'s.

    The SDK's exporters send an export whole, however large: a workload of many series
    is refused for its size at every interval (gRPC and the Collector take 4 MiB).
    """
    flat = [
        (resource, scope, metric, point)
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in _points(metric)
    ]
    half = len(flat) // 2
    parts = []
    for part in (flat[:half], flat[half:]):
        rebuilt = _rebuilt_metrics(part)
        parts.append((metric_points(rebuilt, skip_scope), rebuilt))
    return parts


def _rebuilt_metrics(part: list[tuple[Any, Any, Any, Any]]) -> ExportMetricsServiceRequest:
    out = ExportMetricsServiceRequest()
    copies: dict[int, Any] = {}  # id of the original resource, scope or metric -> its copy
    for resource, scope, metric, point in part:
        new_resource = copies.get(id(resource))
        if new_resource is None:
            new_resource = copies[id(resource)] = out.resource_metrics.add()
            new_resource.resource.CopyFrom(resource.resource)
            new_resource.schema_url = resource.schema_url
        new_scope = copies.get(id(scope))
        if new_scope is None:
            new_scope = copies[id(scope)] = new_resource.scope_metrics.add()
            new_scope.scope.CopyFrom(scope.scope)
            new_scope.schema_url = scope.schema_url
        kind = metric.WhichOneof("data")
        new_metric = copies.get(id(metric))
        if new_metric is None:
            new_metric = copies[id(metric)] = new_scope.metrics.add()
            new_metric.name, new_metric.unit = metric.name, metric.unit
            new_metric.description = metric.description
            new_metric.metadata.extend(metric.metadata)
            for field, value in getattr(metric, kind).ListFields():
                if field.name != "data_points":  # temporality, monotonic
                    setattr(getattr(new_metric, kind), field.name, value)
        getattr(new_metric, kind).data_points.add().CopyFrom(point)
    return out
