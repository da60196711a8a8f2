"""OTLP requests for traces and logs, with what the endpoint did told exactly.

Why not the SDK's OTLP exporters for these two signals: they answer only success
or failure, so a request the endpoint will never take (HTTP 400, gRPC
INVALID_ARGUMENT, a request over its size limit) cannot be told from an outage,
and a spool would replay it for ever; they ignore partial-success responses;
they count an HTTP 3xx as success; they retry RESOURCE_EXHAUSTED without the
RetryInfo the specification asks for; and their HTTP timeout bounds each socket
read, not the request, so a response trickled a byte at a time holds an export
far past it. The requests themselves are the SDK's own messages (encoding.py,
the SDK's log encoder); only sending and reading the answer are done here.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import random
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.delivery.http import HttpClient, read_ca_file, url_and_headers
from telemetry_otel._otel.mapping.otlp_json import from_otlp_json, to_otlp_json
from telemetry_otel._otel.runtime.log import warn_once
from telemetry_otel._redact import header_secrets, mask_secrets, mask_url

GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
_REQUESTS: dict[str, Any] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
_CONTENT_TYPES = {False: "application/x-protobuf", True: "application/json"}
_RESPONSES: dict[str, Any] = {
    "traces": (ExportTraceServiceResponse, "rejected_spans"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records"),
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points"),
}
# What the specification lets a client retry (OTLP, "Failures"); RESOURCE_EXHAUSTED
# only when the server sends RetryInfo.
_RETRYABLE_GRPC = {
    "CANCELLED",
    "DEADLINE_EXCEEDED",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNAVAILABLE",
    "DATA_LOSS",
}
_RETRYABLE_HTTP = {429, 502, 503, 504}
# How receivers word a refusal for size, lowercased: grpcio and grpc-go ("received
# message larger than max (N vs. M)"), tonic, as rotel answers with OUT_OF_RANGE
# ("decoded message length too large: found N bytes, the limit is: M bytes"), the
# Collector's HTTP receiver behind Go's MaxBytesReader ("http: request body too large"),
# proxies ("request entity too large", "payload too large").
# Only words about size: a rate limiter's RESOURCE_EXHAUSTED ("quota exceeded", "rate
# exceeds the limit") is no reason to split.
_SIZE_WORDS = re.compile(
    r"larger than max|too large|too big"
    r"|(?:message|body|request|payload) (?:size|length) .*(?:limit|max)"
)
# The gRPC codes a receiver refuses a request's size with.
_SIZE_CODES = {"RESOURCE_EXHAUSTED", "OUT_OF_RANGE"}
# How a receiver that cannot read a compressed request says so: grpcio's UNIMPLEMENTED
# "Compression algorithm 'gzip' is disabled", an HTTP 415, or an HTTP 400 such as
# OtelTap's "Failed to decode request body".
_ENCODING_WORDS = re.compile(r"gzip|compress|encoding|decod")
_MAX_BACKOFF_S = 32.0
_STRICT_TLS_HINT = " (Python 3.13+ verifies strictly: reissue the certificates with key ids)"

ACCEPTED, PARTIAL, RETRYABLE, PERMANENT, TOO_LARGE = (
    "accepted",
    "partial",
    "retryable",
    "permanent",
    "too_large",
)


@dataclass(frozen=True)
class Answer:
    """What an endpoint did with one request.

    ``kind`` is one of accepted, partial (some items rejected: ``rejected``),
    retryable (an outage: worth sending again later), permanent (the endpoint will
    never take this request) or too_large (refused for its size: split it).
    ``reason`` is short and fixed (``timeout``, ``HTTP 400``, ``gRPC UNAVAILABLE``…);
    ``message`` is the server's own word, cut to one line.
    """

    kind: str
    reason: str = ""
    message: str = ""
    rejected: int = 0
    retry_after: float | None = None

    @property
    def taken(self) -> bool:
        return self.kind in (ACCEPTED, PARTIAL)


def one_line(text: str, limit: int = 200) -> str:
    """A server's message as one short line: logs and errors never carry a page of it."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class OtlpSender:
    """Sends encoded export requests for one signal to one OTLP target.

    ``send`` makes one attempt; ``send_with_retries`` retries an outage with
    exponential backoff (or the server's Retry-After / RetryInfo) until the
    target's ``timeout_ms`` is spent, as the specification asks. ``close`` ends
    any wait at once.
    """

    def __init__(self, target: OtlpTarget, signal: str, quiet: bool = False) -> None:
        self._target = target
        self._quiet = quiet  # no log line of its own (check reports what it saw)
        self._signal = signal
        self._url, headers = url_and_headers(target)
        self._headers = dict(headers or {})
        # A server may echo the request's credentials (some proxies' 401 pages do).
        self._secrets = header_secrets(self._headers)
        self.name = mask_url(self._url)  # for logs: never credentials
        # gzip until the receiver shows it cannot read it (see send()), and its refusal.
        self._compression = target.compression
        self.gzip_refused: Answer | None = None
        self._closed = threading.Event()
        self._grpc: Any = None
        self._http: HttpClient | None = None

    def send_with_retries(self, payload: bytes) -> Answer:
        deadline = time.monotonic() + self._target.timeout_ms / 1000
        attempt = 0
        while True:
            answer = self.send(payload, deadline)
            if answer.kind != RETRYABLE:
                return answer
            wait = answer.retry_after
            if wait is None:
                wait = min(_MAX_BACKOFF_S, 2**attempt) * random.uniform(0.8, 1.2)
            if time.monotonic() + wait >= deadline or self._closed.wait(wait):
                return answer
            attempt += 1

    def send(self, payload: bytes, deadline: float | None = None) -> Answer:
        """One attempt, over by ``deadline`` (default: the target's timeout from now).

        A compressed request refused as unreadable is sent again uncompressed at once;
        when that is taken, this sender sends uncompressed from then on.
        """
        if deadline is None:
            deadline = time.monotonic() + self._target.timeout_ms / 1000
        answer = self._send_once(payload, deadline)
        if self._compression != "gzip" or not refuses_compression(answer):
            return answer
        self._compression = "none"
        plain = self._send_once(payload, deadline)
        if not plain.taken:
            self._compression = "gzip"  # not the compression, after all
            return plain
        self.gzip_refused = answer
        if self._quiet:
            return plain
        endpoint = self._target.url.rsplit("/v1/", 1)[0]  # one line for all its signals
        warn_once(
            f"gzip-refused:{endpoint}",
            "OTLP endpoint %s cannot read gzip-compressed requests (%s: %s); sending it "
            "uncompressed from now on. Add ?compression=none to the endpoint (or set "
            "OTEL_EXPORTER_OTLP_COMPRESSION=none) to say so for good",
            mask_url(endpoint),
            answer.reason,
            answer.message,
        )
        return plain

    def _send_once(self, payload: bytes, deadline: float) -> Answer:
        """One request; the server's message with the request's credentials masked, as
        every log line and report quotes it."""
        answer = self._answer_once(payload, deadline)
        if self._secrets and answer.message:
            masked = mask_secrets(answer.message, self._secrets)
            if masked != answer.message:
                return replace(answer, message=masked)
        return answer

    def _answer_once(self, payload: bytes, deadline: float) -> Answer:
        try:
            if self._target.protocol == "grpc":
                return self._send_grpc(payload, deadline)
            return self._send_http(payload, deadline)
        except Exception as error:  # a failure of ours or the network's: never the caller's
            self._reset_channel()
            return _network_failure(error)

    # -- gRPC --------------------------------------------------------------------------------

    def _send_grpc(self, payload: bytes, deadline: float) -> Answer:
        import grpc

        if self._grpc is None:
            self._grpc = _grpc_channel(self._target, self._url)
        export = self._grpc.unary_unary(GRPC_METHODS[self._signal])  # bytes in, bytes out
        compression = grpc.Compression.Gzip if self._compression == "gzip" else None
        try:
            response = export(
                payload,
                metadata=tuple(self._headers.items()),
                timeout=max(0.001, deadline - time.monotonic()),
                compression=compression,
            )
        except grpc.RpcError as error:
            answer = _grpc_failure(error)
            if answer.kind == RETRYABLE:
                # A fresh channel next time, as the SDK's exporter does: the old one
                # may wait out gRPC's own reconnect backoff after the endpoint is back.
                self._reset_channel()
            return answer
        return self._read_partial_success(response)

    # -- HTTP --------------------------------------------------------------------------------

    def _send_http(self, payload: bytes, deadline: float) -> Answer:
        json_body = self._target.encoding == "json"
        headers = {"Content-Type": _CONTENT_TYPES[json_body], **self._headers}
        if json_body:
            # Requests are made (and spooled) as protobuf: the JSON is written from it
            # at the last moment, so that splitting and replay work alike for both.
            payload = to_otlp_json(_REQUESTS[self._signal].FromString(payload)).encode()
        if self._compression == "gzip":
            payload = gzip.compress(payload)
            headers["Content-Encoding"] = "gzip"
        if self._http is None:
            target = self._target
            self._http = HttpClient(
                self._url, target.ca_file, target.client_cert, target.client_key
            )
        status, reason, response_headers, body = self._http.post(payload, headers, deadline)
        if 200 <= status < 300:
            return self._read_partial_success(body, json_body)
        message = _status_message(body)
        if status in _RETRYABLE_HTTP:
            after = _retry_after(response_headers.get("retry-after"))
            return Answer(RETRYABLE, f"HTTP {status}", message, retry_after=after)
        if status == 413 or (status == 400 and is_size_refusal(message)):
            return Answer(TOO_LARGE, f"HTTP {status}", message)
        if 300 <= status < 400:
            where = response_headers.get("location", "")
            message = f"redirected to {mask_url(where)}" if where else message
        return Answer(PERMANENT, f"HTTP {status} {reason}".strip(), message)

    def _reset_channel(self) -> None:
        channel, self._grpc = self._grpc, None
        if channel is not None:
            with contextlib.suppress(Exception):
                channel.close()

    def _read_partial_success(self, body: bytes, json_body: bool = False) -> Answer:
        response_type, field = _RESPONSES[self._signal]
        response = response_type()
        try:
            if json_body and body.strip():
                response = from_otlp_json(body, response_type)
            else:
                response.ParseFromString(body)
        except Exception:
            return Answer(ACCEPTED)  # a 2xx without a readable body: taken, as the spec says
        partial = response.partial_success
        # int64 on the wire: a negative count is no count (and would add to "exported").
        rejected = max(0, int(getattr(partial, field)))
        if rejected or partial.error_message:
            return Answer(PARTIAL, "partial success", one_line(partial.error_message), rejected)
        return Answer(ACCEPTED)

    def close(self) -> None:
        self._closed.set()
        if self._grpc is not None:
            self._grpc.close()
        if self._http is not None:
            self._http.close()


# -- answers ---------------------------------------------------------------------------------


def _grpc_failure(error: Any) -> Answer:
    code = error.code()
    name = getattr(code, "name", str(code))
    message = one_line(error.details() or "")
    if name in _SIZE_CODES and is_size_refusal(message):
        # Before the retryable codes: OUT_OF_RANGE is one, but sent again as it is,
        # the same request is refused again, for ever.
        return Answer(TOO_LARGE, f"gRPC {name}", message)
    delay = _grpc_retry_delay(error)
    if name in _RETRYABLE_GRPC or (name == "RESOURCE_EXHAUSTED" and delay is not None):
        reason = {"DEADLINE_EXCEEDED": "timeout"}.get(name, f"gRPC {name}")
        lowered = message.lower()
        if name == "UNAVAILABLE" and "refused" in lowered:
            reason = "refused"
        elif "handshake" in lowered or "certificate" in lowered or "ssl" in lowered:
            reason = "TLS"
        return Answer(RETRYABLE, reason, message, retry_after=delay)
    return Answer(PERMANENT, f"gRPC {name}", message)


def refuses_compression(answer: Answer) -> bool:
    """Whether an answer says the receiver could not read the request's encoding."""
    if answer.kind != PERMANENT:
        return False
    if answer.reason.startswith("HTTP 415"):
        return True
    if not answer.reason.startswith(("HTTP 400", "gRPC UNIMPLEMENTED", "gRPC INTERNAL")):
        return False
    return _ENCODING_WORDS.search(answer.message.lower()) is not None


def is_size_refusal(message: str) -> bool:
    """Whether a receiver's message says the request was too large for it."""
    return _SIZE_WORDS.search(message.lower()) is not None


def _grpc_retry_delay(error: Any) -> float | None:
    from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]

    try:
        trailing = dict(error.trailing_metadata() or ())
        raw = trailing.get("google.rpc.retryinfo-bin")
        if raw is None:
            return None
        info = RetryInfo()
        info.ParseFromString(raw)
        return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    except Exception:
        return None


def _network_failure(error: Exception) -> Answer:
    """Refused, reset, TLS, timeout, or a failure on this side: all retryable."""
    text = one_line(str(error))
    if isinstance(error, ssl.SSLError) or "CERTIFICATE" in text.upper():
        # Retryable like gRPC's UNAVAILABLE for the same failure: spooled, it can still
        # be sent once the certificate or the CA file is put right.
        if "Key Identifier" in text:
            text += _STRICT_TLS_HINT
        return Answer(RETRYABLE, "TLS", text)
    if isinstance(error, (TimeoutError, socket.timeout)):
        return Answer(RETRYABLE, "timeout", text)
    if isinstance(error, ConnectionRefusedError):
        return Answer(RETRYABLE, "refused", text)
    if isinstance(error, (ConnectionError, http.client.HTTPException, OSError)):
        return Answer(RETRYABLE, "connection", text or type(error).__name__)
    # Anything else went wrong on this side (a closed gRPC channel, say), not at the
    # endpoint: worth another try, never a reason to drop the data for good.
    return Answer(RETRYABLE, type(error).__name__, text)


def _status_message(body: bytes) -> str:
    """The message of an OTLP error body: a google.rpc.Status in protobuf or in JSON (as
    OTLP/JSON servers answer), or text some servers send."""
    status = Status()
    try:
        status.ParseFromString(body)
        if status.message:
            return one_line(status.message)
    except Exception:
        pass
    if body.lstrip().startswith(b"{"):
        try:
            message = json.loads(body).get("message")
            if isinstance(message, str) and message:
                return one_line(message)
        except (ValueError, AttributeError):
            pass
    return one_line(body.decode("utf-8", "replace"))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_BACKOFF_S) if seconds == seconds else None


def _grpc_channel(target: OtlpTarget, url: str) -> Any:
    import grpc

    address = url.split("://", 1)[-1]
    if not target.tls:
        return grpc.insecure_channel(address)
    roots = read_ca_file(target.ca_file)
    key = read_ca_file(target.client_key) if target.client_cert else None
    chain = read_ca_file(target.client_cert)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )
    return grpc.secure_channel(address, credentials)
