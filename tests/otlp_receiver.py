"""A loopback OTLP receiver for tests: gRPC and HTTP/protobuf, from the official protos.

It records every export request it receives (decoded into the official request
messages) with the transport, headers and content encoding it arrived with.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.tls import TlsFiles

_REQUESTS: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
_RESPONSES: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}


_REJECTED_FIELD = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}


@dataclass(frozen=True)
class GrpcFailure:
    """A scripted gRPC error: a status code, its details, and RetryInfo when given."""

    code: grpc.StatusCode
    details: str = ""
    retry_delay_s: float | None = None


@dataclass(frozen=True)
class Partial:
    """A scripted partial success: the request is recorded, ``rejected`` items refused."""

    rejected: int
    message: str


def _base64_ids(value: Any) -> Any:
    """OTLP/JSON writes trace and span ids in hex; protobuf's JSON reads bytes in base64.
    Written here on its own, not taken from the library: the receiver checks its JSON."""
    if isinstance(value, dict):
        return {
            key: base64.b64encode(bytes.fromhex(item)).decode()
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str)
            else _base64_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_base64_ids(item) for item in value]
    return value


def _response(signal: str, failure: Any) -> Message:
    response = _RESPONSES[signal]()
    if isinstance(failure, Partial):
        partial = response.partial_success  # type: ignore[attr-defined]
        setattr(partial, _REJECTED_FIELD[signal], failure.rejected)
        partial.error_message = failure.message
    return response


@dataclass
class Received:
    """One export request as it arrived."""

    signal: str
    transport: str
    request: Any
    headers: dict[str, str] = field(default_factory=dict)


class OtlpReceiver:
    """Records OTLP export requests arriving over gRPC and HTTP on 127.0.0.1."""

    def __init__(
        self,
        tls: TlsFiles | None = None,
        accept_gzip: bool = True,
        grpc_port: int = 0,
        http_port: int = 0,
        keep_requests: bool = True,
        max_http_body: int | None = None,
        answer_delay_s: float = 0.0,
        max_grpc_receive_bytes: int | None = None,
        require_client_cert: bool = False,
    ) -> None:
        # Mutual TLS: a client must show a certificate the test CA issued.
        self.require_client_cert = require_client_cert
        # gRPC's receive limit (grpcio's default: 4 MiB), refused as RESOURCE_EXHAUSTED.
        self.max_grpc_receive_bytes = max_grpc_receive_bytes
        self.tls = tls
        # A slow backend: every request is answered this long after it arrived.
        self.answer_delay_s = answer_delay_s
        # Like a Collector's receive limit: a larger HTTP body is answered 413.
        self.max_http_body = max_http_body
        # Off for long benchmark runs: count requests, do not keep them in memory.
        self.keep_requests = keep_requests
        self.request_count = 0
        self.span_count = 0
        self.accept_gzip = accept_gzip
        self.received: list[Received] = []
        # Scripted answers per (transport, signal), used up one per request: an HTTP
        # (status, headers, body), a gRPC status code or GrpcFailure, or a Partial
        # success. An empty script answers success.
        self.failures: dict[tuple[str, str], list[Any]] = {}
        self.attempts: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()
        self._grpc_server: grpc.Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self.grpc_port = grpc_port
        self.http_port = http_port

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        self._start_grpc()
        self._start_http()
        return self

    def stop(self) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()

    def _start_grpc(self) -> None:
        # Bit 0 alone enables only the identity algorithm: gzip requests are refused.
        options: list[tuple[str, int]] = []
        if not self.accept_gzip:
            options.append(("grpc.compression_enabled_algorithms_bitset", 1))
        if self.max_grpc_receive_bytes is not None:
            options.append(("grpc.max_receive_message_length", self.max_grpc_receive_bytes))
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
        add = (
            (trace_service_pb2_grpc.add_TraceServiceServicer_to_server, "traces"),
            (metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server, "metrics"),
            (logs_service_pb2_grpc.add_LogsServiceServicer_to_server, "logs"),
        )
        for add_servicer, signal in add:
            add_servicer(_Servicer(self, signal), server)
        address = f"127.0.0.1:{self.grpc_port}"
        if self.tls is None:
            self.grpc_port = server.add_insecure_port(address)
        else:
            key, cert = self.tls.key_file.read_bytes(), self.tls.cert_file.read_bytes()
            credentials = grpc.ssl_server_credentials(
                [(key, cert)],
                root_certificates=self.tls.ca_file.read_bytes(),
                require_client_auth=self.require_client_cert,
            )
            self.grpc_port = server.add_secure_port(address, credentials)
        server.start()
        self._grpc_server = server

    def _start_http(self) -> None:
        receiver = self

        class Handler(_OtlpHttpHandler):
            owner = receiver

        server = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            if self.require_client_cert:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(self.tls.ca_file)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.http_port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._http_server = server

    # -- recording and reading ---------------------------------------------------------------

    def fail_next(self, transport: str, signal: str, failure: Any) -> None:
        """Answer the next request of that transport and signal with ``failure``."""
        with self._lock:
            self.failures.setdefault((transport, signal), []).append(failure)

    def next_failure(self, transport: str, signal: str) -> Any:
        """Note an attempt; return the next scripted failure for it, if any."""
        if self.answer_delay_s:
            time.sleep(self.answer_delay_s)
        with self._lock:
            self.attempts.append((transport, signal, time.monotonic()))
            script = self.failures.get((transport, signal))
            return script.pop(0) if script else None

    def attempt_times(self, signal: str) -> list[float]:
        with self._lock:
            return [at for _, kind, at in self.attempts if kind == signal]

    def record(self, signal: str, transport: str, request: Any, headers: dict[str, str]) -> None:
        with self._lock:
            self.request_count += 1
            if signal == "traces":
                self.span_count += sum(
                    len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
                )
            if self.keep_requests:
                self.received.append(Received(signal, transport, request, headers))

    def requests(self, signal: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.signal == signal]

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every span received, with its resource attributes."""
        return [
            (attributes_of(rs.resource.attributes), span)
            for r in self.requests("traces")
            for rs in r.request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def log_records(self) -> list[tuple[dict[str, Any], Any]]:
        """Every log record received, with its resource attributes."""
        return [
            (attributes_of(rl.resource.attributes), record)
            for r in self.requests("logs")
            for rl in r.request.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]

    def metrics(self, scope: str = "telemetry_otel") -> list[tuple[dict[str, Any], Any]]:
        """Every metric of one instrumentation scope received, with its resource attributes.

        The default scope is the application's metrics; the collector's own are in
        ``telemetry_otel.self``.
        """
        return [
            (attributes_of(rm.resource.attributes), metric)
            for r in self.requests("metrics")
            for rm in r.request.resource_metrics
            for sm in rm.scope_metrics
            if sm.scope.name == scope
            for metric in sm.metrics
        ]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return condition()


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes_of(key_values: Any) -> dict[str, Any]:
    """OTLP KeyValue list as a dict."""
    return {kv.key: any_value(kv.value) for kv in key_values}


class _Servicer:
    """The Export method of any of the three OTLP gRPC services: record, answer empty."""

    def __init__(self, owner: OtlpReceiver, signal: str) -> None:
        self.owner = owner
        self.signal = signal

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        failure = self.owner.next_failure("grpc", self.signal)
        if isinstance(failure, grpc.StatusCode):
            failure = GrpcFailure(failure, f"scripted {failure.name}")
        if isinstance(failure, GrpcFailure):
            if failure.retry_delay_s is not None:
                context.set_trailing_metadata(
                    [("google.rpc.retryinfo-bin", _retry_info(failure.retry_delay_s))]
                )
            context.abort(failure.code, failure.details)
        self.owner.record(self.signal, "grpc", request, dict(context.invocation_metadata()))
        return _response(self.signal, failure)


def _retry_info(delay_s: float) -> bytes:
    from google.rpc.error_details_pb2 import RetryInfo

    info = RetryInfo()
    info.retry_delay.seconds = int(delay_s)
    info.retry_delay.nanos = int((delay_s - int(delay_s)) * 1e9)
    return info.SerializeToString()


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    owner: OtlpReceiver

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]  # routed on the path, as collectors do
        signal = path.rsplit("/", 1)[-1]
        if not path.endswith(f"/v1/{signal}") or signal not in _REQUESTS:
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            if not self.owner.accept_gzip:  # as OtelTap answers a compressed request
                self.owner.next_failure("http", signal)  # an attempt, all the same
                message = b"Failed to decode request body"
                self.send_response(400)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)
                return
            body = gzip.decompress(body)
        limit = self.owner.max_http_body
        if limit is not None and len(body) > limit:  # scripted answers stay for the next
            failure: Any = (413, {}, b"request body larger than the receiver takes")
        else:
            failure = self.owner.next_failure("http", signal)
        if failure is not None and not isinstance(failure, Partial):
            status, headers, message = failure
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(message))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(message)
            return
        as_json = self.headers.get("Content-Type", "").startswith("application/json")
        request = _REQUESTS[signal]()
        if as_json:
            json_format.Parse(json.dumps(_base64_ids(json.loads(body))), request)
        else:
            request.ParseFromString(body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers[":path"] = self.path
        self.owner.record(signal, "http", request, headers)
        response = _response(signal, failure)
        if as_json:  # answered in kind, as OTLP/JSON receivers do
            payload = json_format.MessageToJson(response, indent=None).encode()
        else:
            payload = response.SerializeToString()
        self.send_response(200)
        self.send_header(
            "Content-Type", "application/json" if as_json else "application/x-protobuf"
        )
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port = int(self._socket.getsockname()[1])
        self._connections: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._socket.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self._connections.append(connection)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)  # the port is free again only once accept() has returned
        for connection in self._connections:
            connection.close()
        self._socket.close()
