"""A local OTLP receiver (gRPC and HTTP, protobuf or JSON, gzip) that prints what arrives.

For developing without a backend: ``telemetry-otel receive``. Each line starts with
the sending service (``service.name``); spans print as trees once their root arrives
(``tree.py``), with a bar for where each sits in its trace on a terminal; events show
their trace and span ids; metrics print one line per series. A collector's own metrics
(its ``telemetry_otel.self`` scope: ``telemetry_otel.*`` and ``otel.sdk.*``) are left out
unless asked for. ``jsonl`` also appends each
request as an OTLP JSON line.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

from telemetry_otel._otel.delivery.accounting import SELF_SCOPE
from telemetry_otel._otel.delivery.sender import GRPC_METHODS
from telemetry_otel._otel.destinations.console import span_node
from telemetry_otel._otel.destinations.files import RotatingLineFile
from telemetry_otel._otel.destinations.layout import (
    BAR_WIDTH,
    EventView,
    MetricView,
    Paint,
    SpanEventView,
    SpanView,
    bar,
    coloured,
    event_lines,
    histogram_value,
    metric_line,
    number_text,
    plain,
    printable,
    shown_attributes,
    span_lines,
)
from telemetry_otel._otel.destinations.tree import Node, Placed, TraceTrees
from telemetry_otel._otel.mapping.otlp_json import from_otlp_json, to_otlp_json

MESSAGES: dict[str, tuple[Any, Any]] = {
    "traces": (trace_pb.ExportTraceServiceRequest, trace_pb.ExportTraceServiceResponse),
    "metrics": (metrics_pb.ExportMetricsServiceRequest, metrics_pb.ExportMetricsServiceResponse),
    "logs": (logs_pb.ExportLogsServiceRequest, logs_pb.ExportLogsServiceResponse),
}
Printer = Callable[[str], None]
# A trace is shown this long after its root arrives: SDKs export spans and log records
# in separate requests, and what they sent apart should still land in the tree.
SETTLE_S = 1.0
# A terminal narrower than this drops the bars (22 columns) and cuts service names to
# NARROW_SERVICE_WIDTH, so that a span's name is not pushed past the edge.
WIDE_TERMINAL = 120
NARROW_SERVICE_WIDTH = 12
# OTLP span flags (proto/trace/v1): whether the parent's remoteness is known, and is so.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_STATUS_ERROR = 2
_CUMULATIVE = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE (proto/metrics/v1)
_SEVERITIES = ((21, "CRITICAL"), (17, "ERROR"), (13, "WARNING"), (9, "INFO"), (1, "DEBUG"))
View = SpanView | EventView
Entry = tuple[str, View]  # the sending service and what it sent
# A trace across services is one tree: a span whose remote parent was sent here too
# nests under it, its service named on its line.
Key = int


class PortUnavailable(OSError):
    """A port the receiver cannot listen on; the message names it."""


class FileUnavailable(OSError):
    """A ``--jsonl`` file the receiver cannot write; the message names it."""


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


# Per item name: where a request keeps them (resource_spans[].scope_spans[].spans, ...).
_LAYOUT = {
    "spans": ("resource_spans", "scope_spans"),
    "log_records": ("resource_logs", "scope_logs"),
    "metrics": ("resource_metrics", "scope_metrics"),
}


def _items(request: Any, items: str, skip_scope: str | None = None) -> Iterator[tuple[str, Any]]:
    """Each item of an export request, with the service that sent it; the items of the
    scope ``skip_scope`` left out."""
    resources, scopes = _LAYOUT[items]
    for resource in getattr(request, resources):
        service = _service(resource)
        for scope in getattr(resource, scopes):
            if scope.scope.name != skip_scope or not skip_scope:
                for item in getattr(scope, items):
                    yield service, item


def _service(resource: Any) -> str:
    for kv in resource.resource.attributes:
        if kv.key == "service.name":
            return str(any_value(kv.value))
    return "unknown_service"


class ReceivedLines:
    """Turns export requests into lines; holds spans until their trace's root arrives."""

    def __init__(
        self,
        bars: bool = False,
        colour: bool = False,
        self_metrics: bool = False,
        max_wait_s: float = 10.0,
        settle_s: float = SETTLE_S,
        columns: int | None = None,
    ) -> None:
        """``bars``: the output is a terminal (bars, tracebacks as lines), ``columns``
        wide: narrower than WIDE_TERMINAL, the bars are left out and the service column
        is cut, so that span names stay on their line."""
        narrow = columns is not None and columns < WIDE_TERMINAL
        self._terminal = bars
        self._bars = bars and not narrow
        self._paint: Paint = coloured if colour else plain
        self._self_metrics = self_metrics
        self._trees: TraceTrees[Entry] = TraceTrees(max_wait_s=max_wait_s, settle_s=settle_s)
        self._service_width = 12
        self._max_service_width = NARROW_SERVICE_WIDTH if narrow else None

    def request(self, signal: str, request: Any) -> list[str]:
        """The lines one export request adds (with those of traces now complete)."""
        if signal == "metrics":
            return list(self._metric_lines(request))
        nodes = self._span_nodes(request) if signal == "traces" else self._event_nodes(request)
        placed = [p for key, node in nodes for p in self._add(key, node)]
        return self._lines(placed + self._trees.expired())

    def expired(self) -> list[str]:
        return self._lines(self._trees.expired())

    def drain(self) -> list[str]:
        return self._lines(self._trees.drain())

    def _add(self, key: Key, node: Node[Entry]) -> list[Placed[Entry]]:
        if key == 0:  # an event outside any trace
            return [Placed(node.payload, 0, node.start_ns, node.end_ns)]
        return self._trees.add(key, node)

    def _span_nodes(self, request: Any) -> Iterator[tuple[Key, Node[Entry]]]:
        for service, span in _items(request, "spans"):
            view = _span_view(span)
            yield view.trace_id, span_node((service, view), view)

    def _event_nodes(self, request: Any) -> Iterator[tuple[Key, Node[Entry]]]:
        for service, record in _items(request, "log_records"):
            view = _event_view(record)
            at = (view.time_ns, view.time_ns)
            node: Node[Entry] = Node((service, view), view.span_id, None, *at, False)
            yield view.trace_id, node

    def _metric_lines(self, request: Any) -> Iterator[str]:
        # A collector's own metrics (telemetry_otel.*, otel.sdk.*) are in a scope of theirs.
        hidden = None if self._self_metrics else SELF_SCOPE
        for service, metric in _items(request, "metrics", hidden):
            for view in _metric_views(metric):
                yield self._with_service(service, metric_line(view, self._paint))

    def _lines(self, placed: list[Placed[Entry]]) -> list[str]:
        return [
            self._with_service(p.payload[0], line) for p in placed for line in self._view_lines(p)
        ]

    def _view_lines(self, placed: Placed[Entry]) -> list[str]:
        """A span or event's lines; on a terminal (with bars) tracebacks as lines too."""
        view, depth, terminal = placed.payload[1], placed.depth, self._terminal
        if isinstance(view, EventView):
            pad = " " * (BAR_WIDTH + 2) if self._bars else ""  # under the span names
            return event_lines(view, depth, self._paint, False, pad, terminal)
        if not self._bars:
            return span_lines(
                view, depth, self._paint, False, terminal=terminal, again=placed.again
            )
        drawn = bar(view.start_ns, view.end_ns, placed.trace_start_ns, placed.trace_end_ns)
        return span_lines(view, depth, self._paint, True, drawn, terminal, placed.again)

    def _with_service(self, service: str, line: str) -> str:
        service = printable(service)
        limit = self._max_service_width
        if limit is not None and len(service) > limit:
            service = service[: limit - 1] + "…"
        self._service_width = max(self._service_width, len(service))
        return f"{service:<{self._service_width}} {line}"


def _span_view(span: Any) -> SpanView:
    parent = int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None
    remote = span.flags & _HAS_IS_REMOTE and span.flags & _IS_REMOTE
    failed = span.status.code == _STATUS_ERROR
    return SpanView(
        span.name,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        int.from_bytes(span.trace_id, "big"),
        int.from_bytes(span.span_id, "big"),
        None if remote else parent,
        span.status.message if failed else None,
        shown_attributes(_attributes(span.attributes)),
        parent if remote else None,
        [SpanEventView(e.name, e.time_unix_nano, _attributes(e.attributes)) for e in span.events],
    )


def _event_view(record: Any) -> EventView:
    number = record.severity_number
    severity = record.severity_text or next((n for low, n in _SEVERITIES if number >= low), "-")
    return EventView(
        record.time_unix_nano or record.observed_time_unix_nano,
        severity,
        record.event_name or "log",
        any_value(record.body),
        int.from_bytes(record.trace_id, "big") if record.trace_id else 0,
        int.from_bytes(record.span_id, "big") if record.span_id else 0,
        shown_attributes(_attributes(record.attributes)),
    )


def _metric_views(metric: Any) -> Iterator[MetricView]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    data = getattr(metric, kind)
    for point in data.data_points:
        yield MetricView(
            point.time_unix_nano,
            _metric_kind(kind, data),
            metric.name,
            _point_value(kind, data, point),
            metric.unit,
            _attributes(point.attributes),
        )


def _metric_kind(kind: str, data: Any) -> str:
    if kind == "sum":
        return "COUNTER" if data.is_monotonic else "UPDOWNCOUNTER"
    return {"gauge": "GAUGE", "summary": "SUMMARY"}.get(kind, "HISTOGRAM")


def _point_value(kind: str, data: Any, point: Any) -> str:
    """The point's value; a cumulative one (sums and histograms since the start, sent
    again at every export) is marked ``total``, so that two exports do not read as
    two increments."""
    if kind in ("histogram", "exponential_histogram"):
        low = point.min if point.HasField("min") else None
        high = point.max if point.HasField("max") else None
        value = histogram_value(point.count, point.sum, low, high)
    elif kind == "summary":
        return f"count={point.count} sum={number_text(point.sum)}"
    else:
        value = number_text(
            point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
        )
    cumulative = getattr(data, "aggregation_temporality", 0) == _CUMULATIVE
    return f"total {value}" if cumulative else value


class LocalReceiver:
    """gRPC and HTTP OTLP servers on the given ports, handing each request to ``on_request``."""

    def __init__(
        self,
        host: str,
        grpc_port: int,
        http_port: int,
        printer: Printer,
        jsonl: Path | None = None,
        lines: ReceivedLines | None = None,
    ) -> None:
        """Raises PortUnavailable, naming the port, when either cannot be listened on,
        and FileUnavailable, naming the file, when ``jsonl`` cannot be opened to append."""
        self._printer = printer
        self._lines = lines or ReceivedLines()
        self._lock = threading.Lock()
        self._jsonl = _opened(jsonl) if jsonl else None
        self._grpc = self._start_grpc(host, grpc_port)
        try:
            self._http = self._start_http(host, http_port)
        except PortUnavailable:
            self._grpc.stop(grace=None)
            raise

    def on_request(self, signal: str, request: Any) -> None:
        """Print a request and append it to the ``--jsonl`` file; raises FileUnavailable
        (after one line on stderr) when that write fails, so the sender is told."""
        with self._lock:
            self._print(self._lines.request(signal, request))
            if self._jsonl is not None:
                try:
                    self._jsonl.write_line(to_otlp_json(request))
                except OSError as error:
                    # Closed (its flush fails again, and the file is closed anyway), so
                    # that the unwritten line is not retried with the next one.
                    with contextlib.suppress(OSError):
                        self._jsonl.close()
                    message = str(error.strerror)  # names the file (RotatingLineFile)
                    print(f"receive: {message}", file=sys.stderr)
                    raise FileUnavailable(message) from None

    def print_expired(self) -> None:
        """Print the traces whose root has not come in time (called now and then)."""
        with self._lock:
            self._print(self._lines.expired())

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            self._printer(line)

    def _start_grpc(self, host: str, port: int) -> grpc.Server:
        # Without SO_REUSEPORT a second receiver on the port fails instead of sharing it.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)]
        )
        handlers = {
            method.rsplit("/", 1)[0].lstrip("/"): grpc.method_handlers_generic_handler(
                method.rsplit("/", 1)[0].lstrip("/"),
                {"Export": self._grpc_handler(signal)},
            )
            for signal, method in GRPC_METHODS.items()
        }
        server.add_generic_rpc_handlers(tuple(handlers.values()))
        try:
            self.grpc_port = server.add_insecure_port(_address(host, port))
        except RuntimeError:  # grpcio raises where older releases returned 0
            self.grpc_port = 0
        if not self.grpc_port:
            why = _bind_error(host, port)
            raise PortUnavailable(f"cannot listen for OTLP/gRPC on {host}:{port}: {why}")
        server.start()
        return server

    def _grpc_handler(self, signal: str) -> grpc.RpcMethodHandler[Any, Any]:
        request_type, response_type = MESSAGES[signal]

        def export(body: bytes, context: grpc.ServicerContext) -> Any:
            # Decoded here, not by grpcio: an undecodable request gets one stderr line,
            # as over HTTP, where grpcio would answer it and say nothing.
            try:
                request = request_type.FromString(body)
            except DecodeError:
                message = f"the body is not an OTLP {signal} request"
                print(f"receive: refused a gRPC {signal} request: {message}", file=sys.stderr)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
            try:
                self.on_request(signal, request)
            except FileUnavailable as error:
                context.abort(grpc.StatusCode.INTERNAL, str(error))
            return response_type()

        return grpc.unary_unary_rpc_method_handler(
            export, response_serializer=response_type.SerializeToString
        )

    def _start_http(self, host: str, port: int) -> _BoundedHttpServer:
        receiver = self

        class Handler(_HttpHandler):
            owner = receiver

        try:
            server = _BoundedHttpServer((host, port), Handler)
        except OSError as error:
            why = _why(error)
            raise PortUnavailable(f"cannot listen for OTLP/HTTP on {host}:{port}: {why}") from None
        self.http_port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def stop(self) -> None:
        self._grpc.stop(grace=1)
        with self._lock:
            self._print(self._lines.drain())
        self._http.shutdown()
        self._http.server_close()
        if self._jsonl is not None:
            self._jsonl.close()


# The largest request body read, compressed or not: the OTLP default receive limit.
MAX_BODY_BYTES = 4 * 1024 * 1024
# HTTP connections served at once (a thread each), and how long one may sit idle or
# half-open: 500 senders that connect and never send hold none of them for good.
MAX_HTTP_CONNECTIONS = 64
IDLE_TIMEOUT_S = 10.0


class _BoundedHttpServer(ThreadingHTTPServer):
    """A thread per connection, MAX_HTTP_CONNECTIONS at most: a connection past them is
    closed at once (one line on stderr a minute), as a receiver at its limit does."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 makes a burst of senders wait seconds

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open = 0  # connections being served
        self._open_lock = threading.Lock()
        self._refused_at = 0.0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = self._open >= MAX_HTTP_CONNECTIONS
            if not full:
                self._open += 1
        if full:
            self.shutdown_request(request)
            if time.monotonic() - self._refused_at >= 60:
                self._refused_at = time.monotonic()
                print(
                    f"receive: {MAX_HTTP_CONNECTIONS} HTTP connections open: closing new ones",
                    file=sys.stderr,
                )
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread took it: its place is free again
            self._close_one()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._close_one()

    def _close_one(self) -> None:
        with self._open_lock:
            self._open -= 1


class _Refused(Exception):
    """A request this receiver cannot read: answered with ``status``, said on stderr."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HttpHandler(BaseHTTPRequestHandler):
    owner: LocalReceiver
    timeout = IDLE_TIMEOUT_S  # per read: a half-open connection ends, and its thread

    def do_POST(self) -> None:
        # The Collector's paths exactly: a prefix or a trailing slash is a wrong address.
        signal = self.path.removeprefix("/v1/")
        if signal not in MESSAGES or self.path != f"/v1/{signal}":
            self.send_error(404, f"no OTLP signal at {self.path}")
            return
        request_type, response_type = MESSAGES[signal]
        try:
            request = self._request(signal, request_type)
        except _Refused as refused:
            # One line, never a traceback: whatever a sender posts, receive keeps going.
            print(f"receive: refused a request to {self.path}: {refused}", file=sys.stderr)
            self.send_error(refused.status, str(refused))
            return
        try:
            self.owner.on_request(signal, request)
        except FileUnavailable as error:
            self.send_error(500, str(error))
            return
        if self._json:
            payload, kind = to_otlp_json(response_type()).encode(), "application/json"
        else:
            payload, kind = response_type().SerializeToString(), "application/x-protobuf"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _request(self, signal: str, request_type: Any) -> Any:
        try:
            length = int(self.headers.get("Content-Length", 0))
        except ValueError:
            raise _Refused(400, "the Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise _Refused(413, f"the body is over {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            body = _gunzip(body)
        try:
            if self._json:
                return from_otlp_json(body, request_type)
            return request_type.FromString(body)
        except (DecodeError, ValueError):
            raise _Refused(400, f"the body is not an OTLP {signal} request") from None

    @property
    def _json(self) -> bool:
        """OTLP/JSON (``http/json``): read as such, and answered in kind."""
        return "json" in self.headers.get("Content-Type", "")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _opened(path: Path) -> RotatingLineFile:
    """The ``--jsonl`` file, opened to append now: a path that cannot be written is
    refused at start, not at the first request."""
    file = RotatingLineFile(path)
    try:
        file.open()
    except OSError as error:
        raise FileUnavailable(str(error.strerror)) from None
    return file


def _gunzip(body: bytes) -> bytes:
    """The body, gunzipped to at most MAX_BODY_BYTES: a small bomb cannot fill memory."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise _Refused(400, "the body is not valid gzip") from None
    if len(data) > MAX_BODY_BYTES:
        raise _Refused(413, f"the body is over {MAX_BODY_BYTES} bytes once gunzipped")
    return data


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(error: OSError) -> str:
    return "port in use" if error.errno == errno.EADDRINUSE else str(error.strerror or error)


def _bind_error(host: str, port: int) -> str:
    """Why gRPC could not bind (it tells only its log): the same bind, tried once more."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as error:
        return _why(error)
    return "port in use"  # free again by now, or taken by a process sharing it
