"""``telemetry-otel check``: one request per signal to an OTLP endpoint, and what it answered.

A failure is cut to one line and, for the usual mistakes, says what to write instead:
the port is probed once to learn what it speaks (TLS, gRPC's HTTP/2, HTTP/1.1).
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry_otel._endpoints import Endpoint, OtlpTarget
from telemetry_otel._otel.delivery.sender import (
    ACCEPTED,
    GRPC_METHODS,
    Answer,
    OtlpSender,
    one_line,
)
from telemetry_otel._otel.runtime.sdk import detected_resource, log_encoder
from telemetry_otel._redact import mask_url
from telemetry_otel.config import TelemetryConfig

_SPAN_LIMIT_ARGUMENTS = (
    "max_attributes",
    "max_events",
    "max_links",
    "max_span_attributes",
    "max_event_attributes",
    "max_link_attributes",
)
_RESOURCE = detected_resource().merge(Resource({"service.name": "telemetry-otel-check"}))
# Given whole, so that the SDK reads no limit variable: a malformed one would raise
# (the collector warns about those and goes on; check must not fail on them either).
_SPAN_LIMITS = SpanLimits(
    **dict.fromkeys(_SPAN_LIMIT_ARGUMENTS, 128),
    max_attribute_length=SpanLimits.UNSET,
    max_span_attribute_length=SpanLimits.UNSET,
)
_LOG_LIMITS = LogRecordLimits(128, LogRecordLimits.UNSET, 128, LogRecordLimits.UNSET)
_NAME = "telemetry-otel check"


_PROBE_TIMEOUT_S = 1.0
_REASON_LIMIT = 120
# What a port speaks, as the probe tells it.
TLS_H2, TLS, H2, HTTP1 = "gRPC over TLS", "HTTPS", "plaintext gRPC", "plain HTTP"
_AUTH_FAILURES = ("HTTP 401", "HTTP 403", "gRPC UNAUTHENTICATED", "gRPC PERMISSION_DENIED")


@dataclass
class CheckResult:
    """What one signal's request got, where it went, and what to change when it failed."""

    signal: str
    accepted: bool
    reason: str  # one line: "accepted", or why not
    seconds: float
    url: str = ""  # what was tried, credentials masked
    advice: str = ""  # what to write or check instead, for a mistake recognised


@dataclass
class _Probes:
    """What each host:port speaks, probed at most once per check."""

    spoken: dict[tuple[str, int], str | None] = field(default_factory=dict)

    def of(self, host: str, port: int, signal: str, payload: bytes) -> str | None:
        if (host, port) not in self.spoken:
            spoken = probe(host, port)
            if spoken == H2 and not _takes_grpc(host, port, signal, payload):
                # HTTP/2 without TLS is gRPC's, but an OTLP/HTTP server may speak it too
                # (h2c): only a real gRPC export taken says gRPC.
                spoken = None
            self.spoken[(host, port)] = spoken
        return self.spoken[(host, port)]


def _takes_grpc(host: str, port: int, signal: str, payload: bytes) -> bool:
    target = OtlpTarget("grpc", f"http://{host}:{port}", compression="none", timeout_ms=3000)
    sender = OtlpSender(target, signal, quiet=True)
    try:
        return sender.send(payload).taken
    finally:
        sender.close()


def check_endpoint(config: TelemetryConfig, endpoint: Endpoint | None = None) -> list[CheckResult]:
    """Send one trace, one metric and one log request to an OTLP endpoint of the config
    (by default its only endpoint, which must be OTLP)."""
    if endpoint is None:
        endpoints = config.endpoints()
        if len(endpoints) != 1 or endpoints[0].kind != "otlp":
            raise ValueError("check needs exactly one OTLP endpoint: grpc[s]://… or http[s]://…")
        endpoint = endpoints[0]
    targets = config.otlp_targets(endpoint)
    payloads = {"traces": _one_span(), "metrics": _one_metric(), "logs": _one_log()}
    probes = _Probes()
    return [
        _send(signal, targets[signal], payload, probes)
        for signal, payload in payloads.items()
        if signal in targets
    ]


def _send(signal: str, target: OtlpTarget, payload: bytes, probes: _Probes) -> CheckResult:
    sender = OtlpSender(target, signal, quiet=True)
    started = time.monotonic()
    try:
        answer = sender.send(payload)
    finally:
        sender.close()
    seconds = time.monotonic() - started
    url = tried_url(target, signal)
    refused = sender.gzip_refused
    if answer.kind == ACCEPTED and refused is not None:
        said = one_line(printable(f"{refused.reason}: {refused.message}"), 80)
        advice = (
            f"the server does not accept gzip ({said}): add ?compression=none to the "
            "endpoint (the collector falls back by itself, after one refused request)"
        )
        return CheckResult(signal, True, "accepted uncompressed", seconds, url, advice)
    if answer.kind == ACCEPTED:
        return CheckResult(signal, True, "accepted", seconds, url)
    reason = f"{answer.reason}: {answer.message}" if answer.message else answer.reason
    reason = one_line(printable(reason), _REASON_LIMIT)
    advice = advise(target, answer, probes, signal, payload)
    return CheckResult(signal, False, reason, seconds, url, advice)


def tried_url(target: OtlpTarget, signal: str) -> str:
    """The URL as the user would write it: ``grpc[s]://host:port`` for gRPC."""
    shown = f" (client certificate {target.client_cert})" if target.client_cert else ""
    if target.protocol == "http":
        return mask_url(target.url) + shown
    scheme = "grpcs" if target.tls else "grpc"
    service = GRPC_METHODS[signal].rsplit(".", 1)[-1]  # TraceService/Export
    return f"{scheme}://{mask_url(target.url).split('://', 1)[-1]} {service}{shown}"


def printable(text: str) -> str:
    """Bytes a wrong server sent back, made safe for a terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


def advise(target: OtlpTarget, answer: Answer, probes: _Probes, signal: str, payload: bytes) -> str:
    """What to write instead, for the mistakes users make most; empty when unknown."""
    parts = urlsplit(target.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{host}:{port}"
    if answer.reason == "refused":
        return f"nothing listens on {where}: is the receiver running, and on this port?"
    if answer.reason == "timeout":
        return f"no answer within {target.timeout_ms} ms: a firewall, or the wrong host?"
    said = f"{answer.reason}: {printable(answer.message)}" if answer.message else answer.reason
    if answer.reason.startswith(_AUTH_FAILURES):
        return f"{one_line(said, 80)}; check your headers (OTEL_EXPORTER_OTLP_HEADERS)"
    if answer.reason.startswith("HTTP 404"):
        return (
            f"HTTP 404 at {parts.path}: give the receiver's base URL (this library adds "
            "/v1/<signal>) or the signal's full path"
        )
    if answer.reason == "gRPC UNIMPLEMENTED":
        return "the server does not offer this OTLP service over gRPC: is it an OTLP receiver?"
    spoken = probes.of(host, port, signal, payload)
    wanted = {("grpc", True): TLS_H2, ("grpc", False): H2, ("http", True): TLS}
    expected = wanted.get((target.protocol, target.tls), HTTP1)
    if spoken is None or spoken == expected or {spoken, expected} == {TLS, TLS_H2}:
        # gRPC says TLS, or only UNAVAILABLE for a name the certificate lacks.
        if spoken in (TLS, TLS_H2) and answer.reason in ("TLS", "gRPC UNAVAILABLE"):
            return certificate_problem(host, port, target.ca_file)
        return ""
    return _write_instead(spoken, expected, where)


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH and _CERT_HAS_EXPIRED.
_NAME_MISMATCH, _EXPIRED = (62, 64), 10


def certificate_problem(host: str, port: int, ca_file: str | None) -> str:
    """Why the server's certificate is refused, found by a handshake of our own as the
    exporter makes it (the same CAs, the same host name): gRPC's own error comes cut
    short, and HTTPS's and gRPC's differ. Empty when this handshake succeeds."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except OSError as error:
        return f"the ca_file {ca_file} cannot be read: {error.strerror or error}"
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with (
            socket.create_connection((host, port), _PROBE_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return ""
    except ssl.SSLCertVerificationError as error:
        said = printable(str(error.verify_message))
        if error.verify_code in _NAME_MISMATCH:
            return (
                f"the server's certificate is not valid for {host} ({said}): connect by a "
                "name the certificate has, or give the server a certificate for this one"
            )
        if error.verify_code == _EXPIRED:
            return f"the server's certificate has expired ({said})"
        refused = f"the server's certificate was not trusted ({said})"
        if ca_file is None:
            return f"{refused}: set ca_file= to the CA that signed it"
        return f"{refused}: {ca_file} is not the CA that signed it"
    except (OSError, ssl.SSLError):
        return ""


def _write_instead(spoken: str, expected: str, where: str) -> str:
    scheme = {TLS_H2: "grpcs", TLS: "https", H2: "grpc", HTTP1: "http"}[spoken]
    return f"{where} speaks {spoken}, not {expected}: write {scheme}://{where}"


def probe(host: str, port: int) -> str | None:
    """What the port speaks: TLS (with HTTP/2 when it says so), HTTP/2 (gRPC without TLS),
    HTTP/1.1, or None when it answers none of these in time."""
    try:
        return _tls_probe(host, port) or _plaintext_probe(host, port)
    except OSError:
        return None


def _tls_probe(host: str, port: int) -> str | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asks whether TLS is spoken; nothing is sent
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with (
            socket.create_connection((host, port), _PROBE_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return TLS_H2 if tls.selected_alpn_protocol() == "h2" else TLS
    except (ssl.SSLError, ConnectionError, TimeoutError):
        return None


def _plaintext_probe(host: str, port: int) -> str | None:
    # The HTTP/2 preface and an empty SETTINGS frame: an HTTP/2 server answers with its
    # SETTINGS frame (type 4); an HTTP/1.1 server with an error in text (a status line,
    # or for some, only an HTML page).
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
    with socket.create_connection((host, port), _PROBE_TIMEOUT_S) as sock:
        sock.sendall(preface)
        head = sock.recv(64)
    if len(head) >= 9 and head[3] == 4:
        return H2
    if head and all(32 <= byte < 127 or byte in b"\r\n\t" for byte in head):
        return HTTP1
    return None


def _one_span() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=_RESOURCE, shutdown_on_exit=False, span_limits=_SPAN_LIMITS)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer(_NAME).start_span("check").end()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _one_metric() -> bytes:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=_RESOURCE,
        exemplar_filter=AlwaysOffExemplarFilter(),  # not read from a variable that may be bad
        shutdown_on_exit=False,
    )
    provider.get_meter(_NAME).create_counter("telemetry_otel.check").add(1)
    data = reader.get_metrics_data()
    assert data is not None
    return encode_metrics(data).SerializeToString()


def _one_log() -> bytes:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(
        resource=_RESOURCE, shutdown_on_exit=False, log_record_limits=_LOG_LIMITS
    )
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger(_NAME).emit(
        event_name="check",
        body="telemetry-otel check",
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
    )
    request = log_encoder()(exporter.get_finished_logs())
    payload: bytes = request.SerializeToString()
    return payload
