"""Delivery through an OTLP exporter with the spool behind it, and the raw sender for replays.

The SDK's OTLP exporters take SDK objects, not encoded requests, so replaying a
request from the spool needs a sender of its own: gRPC with pass-through
(bytes) serializers, or one HTTP POST; same URL, headers, compression and TLS.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.delivery import DeliveryQueue
from telemetry_otel._otel.encoding import encode_spans
from telemetry_otel._otel.exporters import ca_file_session, url_and_headers
from telemetry_otel._otel.log import warn_limited
from telemetry_otel._otel.spool import Spool

GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
ENCODERS: dict[str, Callable[[Sequence[Any]], Any]] = {"traces": encode_spans, "logs": encode_logs}


def describe_failure(error: Exception) -> str:
    """A short, exact reason for a failed send: refused, TLS, timeout, or the status."""
    import grpc

    if isinstance(error, grpc.RpcError):
        code, details = error.code(), error.details() or ""
        lowered = details.lower()
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered:
            return f"TLS: {details}"
        if code is grpc.StatusCode.UNAVAILABLE and "refused" in lowered:
            return f"refused: {details}"
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return "timeout"
        return f"gRPC {code.name}: {details}"
    name = type(error).__name__
    text = str(error)
    if "SSL" in name or "SSL" in text or "certificate" in text:
        return f"TLS: {text}"
    if "Timeout" in name:
        return "timeout"
    if "refused" in text.lower() or "ConnectionError" in name:
        return f"refused: {text}"
    return f"{name}: {text}"


class RawOtlpSender:
    """Sends one already-encoded export request to an OTLP target; True when it was taken."""

    def __init__(self, target: OtlpTarget, signal: str) -> None:
        self._target = target
        self._signal = signal
        self._url, self._headers = url_and_headers(target)
        self._channel: Any = None
        self._session: Any = None

    def send(self, payload: bytes) -> bool:
        """True when the endpoint took the request; a failure is logged (once a minute)."""
        accepted, reason = self.send_with_reason(payload)
        if not accepted:
            warn_limited(f"replay:{self._url}", "spool replay to %s failed: %s", self._url, reason)
        return accepted

    def send_with_reason(self, payload: bytes) -> tuple[bool, str]:
        """Whether the endpoint took the request, and why not: refused, TLS, timeout, status."""
        try:
            if self._target.protocol == "grpc":
                return self._send_grpc(payload), "accepted"
            return self._send_http(payload)
        except Exception as error:
            return False, describe_failure(error)

    def _send_grpc(self, payload: bytes) -> bool:
        import grpc

        if self._channel is None:
            self._channel = self._open_channel()
        export = self._channel.unary_unary(GRPC_METHODS[self._signal])  # bytes in, bytes out
        compression = grpc.Compression.Gzip if self._target.compression == "gzip" else None
        export(
            payload,
            metadata=tuple((self._headers or {}).items()),
            timeout=self._target.timeout_ms / 1000,
            compression=compression,
        )
        return True

    def _open_channel(self) -> Any:
        import grpc

        address = self._url.split("://", 1)[-1]
        if not self._target.tls:
            return grpc.insecure_channel(address)
        ca = Path(self._target.ca_file).read_bytes() if self._target.ca_file else None
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))

    def _send_http(self, payload: bytes) -> tuple[bool, str]:
        import requests

        if self._session is None:
            self._session = ca_file_session() if self._target.ca_file else requests.Session()
        headers = {"Content-Type": "application/x-protobuf", **(self._headers or {})}
        if self._target.compression == "gzip":
            payload = gzip.compress(payload)
            headers["Content-Encoding"] = "gzip"
        response = self._session.post(
            self._url,
            data=payload,
            headers=headers,
            timeout=self._target.timeout_ms / 1000,
            verify=self._target.ca_file or True,
        )
        if 200 <= response.status_code < 300:
            return True, "accepted"
        return False, f"HTTP {response.status_code} {response.reason}"

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._session is not None:
            self._session.close()


class SpoolingDelivery:
    """Exports batches; one the exporter still refuses after its retries goes to the spool.

    While the spool holds older batches for this destination, new ones queue behind
    them there, so the endpoint gets everything in order once it answers again.
    """

    def __init__(
        self,
        name: str,
        signal: str,
        export: Callable[[list[Any]], bool],
        sender: RawOtlpSender,
        spool: Spool,
    ) -> None:
        self._name = name
        self._signal = signal
        self._export = export
        self._sender = sender
        self._spool = spool
        self._queue: DeliveryQueue[Any] | None = None

    def attach(self, queue: DeliveryQueue[Any]) -> None:
        self._queue = queue
        self._spool.on_evict(
            self._name, self._signal, lambda items: queue.settle_spooled(dropped=items)
        )

    def deliver(self, batch: list[Any]) -> tuple[int, int]:
        """(exported, spooled) for one batch."""
        queue = self._queue
        assert queue is not None
        if self.replay(queue) and self._export(batch):
            return len(batch), 0
        if not queue.claim_in_flight("delivery"):
            return 0, 0  # close() spooled this batch already, and counts it
        return 0, self.hold(queue, batch)

    def replay(self, queue: DeliveryQueue[Any]) -> bool:
        """Send spooled batches oldest first until one fails; True when none is left."""
        while (batch := self._spool.oldest(self._name, self._signal)) is not None:
            if not self._sender.send(batch.payload):
                return False
            self._spool.remove(batch.id)
            if batch.ours:
                queue.settle_spooled(exported=batch.items)
            else:
                queue.count_recovered(batch.items)
        return True

    def hold(self, queue: DeliveryQueue[Any], items: list[Any]) -> int:
        """Encode and spool items; how many were stored (0 when they cannot be)."""
        try:
            payload = ENCODERS[self._signal](items).SerializeToString()
        except Exception as error:
            warn_limited(f"spool:encode:{self._name}", "cannot spool a batch: %s", error)
            return 0
        return len(items) if self._spool.put(self._name, self._signal, len(items), payload) else 0

    def close(self) -> None:
        self._sender.close()
