"""A local OTLP receiver (gRPC and HTTP/protobuf, gzip) that prints what arrives.

For developing without a backend: ``telemetry-otel receive``. Lines use the console
exporter's layout; ``jsonl`` also appends each request as an OTLP JSON line.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

from telemetry_otel._otel.console import format_fields, iso_time
from telemetry_otel._otel.otlp_json import RotatingLineFile, to_otlp_json
from telemetry_otel._otel.otlp_sender import GRPC_METHODS

MESSAGES: dict[str, tuple[Any, Any]] = {
    "traces": (trace_pb.ExportTraceServiceRequest, trace_pb.ExportTraceServiceResponse),
    "metrics": (metrics_pb.ExportMetricsServiceRequest, metrics_pb.ExportMetricsServiceResponse),
    "logs": (logs_pb.ExportLogsServiceRequest, logs_pb.ExportLogsServiceResponse),
}
Printer = Callable[[str], None]


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _fields(key_values: Any) -> str:
    return format_fields({kv.key: any_value(kv.value) for kv in key_values})


def request_lines(signal: str, request: Any) -> Iterator[str]:
    """Console lines for one export request."""
    if signal == "traces":
        yield from _span_lines(request)
    elif signal == "logs":
        yield from _log_lines(request)
    else:
        yield from _metric_lines(request)


def _span_lines(request: Any) -> Iterator[str]:
    for resource in request.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000
                status = "ERROR" if span.status.code == 2 else "OK"
                ids = f"trace={span.trace_id.hex()[:8]} span={span.span_id.hex()[:8]}"
                head = f"{iso_time(span.end_time_unix_nano)} TRACE  {status:<9} {span.name}"
                tail = _fields(span.attributes)
                yield f"{head} {duration_ms:.3f}ms {ids} {tail}".rstrip()


def _log_lines(request: Any) -> Iterator[str]:
    for resource in request.resource_logs:
        for scope in resource.scope_logs:
            for record in scope.log_records:
                level = record.severity_text or str(record.severity_number or "-")
                yield (f"{iso_time(record.time_unix_nano or record.observed_time_unix_nano)} "
                       f"EVENT  {level:<9} {record.event_name or '-'}: {any_value(record.body)} "
                       f"{_fields(record.attributes)}").rstrip()  # fmt: skip


def _metric_lines(request: Any) -> Iterator[str]:
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                for point in getattr(metric, kind).data_points:
                    value = _point_value(kind, point)
                    head = f"{iso_time(point.time_unix_nano)} METRIC {kind.upper():<9}"
                    yield f"{head} {metric.name} {value} {_fields(point.attributes)}".rstrip()


def _point_value(kind: str, point: Any) -> str:
    if kind in ("histogram", "exponential_histogram"):
        return f"sum={point.sum:g} count={point.count}"
    return f"{point.as_int if point.WhichOneof('value') == 'as_int' else point.as_double:g}"


class LocalReceiver:
    """gRPC and HTTP OTLP servers on the given ports, handing each request to ``on_request``."""

    def __init__(self, host: str, grpc_port: int, http_port: int, printer: Printer,
                 jsonl: Path | None = None) -> None:  # fmt: skip
        self._printer = printer
        self._lock = threading.Lock()
        self._jsonl = RotatingLineFile(jsonl) if jsonl else None
        self._grpc = self._start_grpc(host, grpc_port)
        self._http = self._start_http(host, http_port)

    def on_request(self, signal: str, request: Any) -> None:
        with self._lock:
            for line in request_lines(signal, request):
                self._printer(line)
            if self._jsonl is not None:
                self._jsonl.write_line(to_otlp_json(request))

    def _start_grpc(self, host: str, port: int) -> grpc.Server:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            method.rsplit("/", 1)[0].lstrip("/"): grpc.method_handlers_generic_handler(
                method.rsplit("/", 1)[0].lstrip("/"),
                {"Export": self._grpc_handler(signal)},
            )
            for signal, method in GRPC_METHODS.items()
        }
        server.add_generic_rpc_handlers(tuple(handlers.values()))
        self.grpc_port = server.add_insecure_port(f"{host}:{port}")
        server.start()
        return server

    def _grpc_handler(self, signal: str) -> grpc.RpcMethodHandler[Any, Any]:
        request_type, response_type = MESSAGES[signal]

        def export(request: Any, context: grpc.ServicerContext) -> Any:
            self.on_request(signal, request)
            return response_type()

        return grpc.unary_unary_rpc_method_handler(
            export,
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )

    def _start_http(self, host: str, port: int) -> ThreadingHTTPServer:
        receiver = self

        class Handler(_HttpHandler):
            owner = receiver

        server = ThreadingHTTPServer((host, port), Handler)
        self.http_port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def stop(self) -> None:
        self._grpc.stop(grace=1)
        self._http.shutdown()
        self._http.server_close()
        if self._jsonl is not None:
            self._jsonl.close()


class _HttpHandler(BaseHTTPRequestHandler):
    owner: LocalReceiver

    def do_POST(self) -> None:
        signal = self.path.rstrip("/").rsplit("/", 1)[-1]
        if signal not in MESSAGES or not self.path.rstrip("/").endswith(f"/v1/{signal}"):
            self.send_error(404, f"no OTLP signal at {self.path}")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request_type, response_type = MESSAGES[signal]
        self.owner.on_request(signal, request_type.FromString(body))
        payload = response_type().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass
