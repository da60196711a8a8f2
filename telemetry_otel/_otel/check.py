"""``telemetry-otel check``: one request per signal to an OTLP endpoint, and what it answered."""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._otel.otlp_sender import ACCEPTED, OtlpSender
from telemetry_otel.config import TelemetryConfig

_RESOURCE = Resource.create({"service.name": "telemetry-otel-check"})
_NAME = "telemetry-otel check"


@dataclass
class CheckResult:
    """What one signal's request got: accepted or the exact reason, and the round trip."""

    signal: str
    accepted: bool
    reason: str
    seconds: float


def check_endpoint(config: TelemetryConfig) -> list[CheckResult]:
    """Send one trace, one metric and one log request to the config's only OTLP endpoint."""
    endpoints = config.endpoints()
    if len(endpoints) != 1 or endpoints[0].kind != "otlp":
        raise ValueError("check needs exactly one OTLP endpoint: grpc[s]://… or http[s]://…")
    targets = config.otlp_targets(endpoints[0])
    payloads = {"traces": _one_span(), "metrics": _one_metric(), "logs": _one_log()}
    return [_send(signal, targets[signal], payload) for signal, payload in payloads.items()]


def _send(signal: str, target: OtlpTarget, payload: bytes) -> CheckResult:
    sender = OtlpSender(target, signal)
    started = time.monotonic()
    try:
        answer = sender.send(payload)
    finally:
        sender.close()
    accepted = answer.kind == ACCEPTED
    if accepted:
        reason = "accepted"
    else:
        reason = f"{answer.reason}: {answer.message}" if answer.message else answer.reason
    return CheckResult(signal, accepted, reason, time.monotonic() - started)


def _one_span() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=_RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer(_NAME).start_span("check").end()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _one_metric() -> bytes:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=_RESOURCE, shutdown_on_exit=False)
    provider.get_meter(_NAME).create_counter("telemetry_otel.check").add(1)
    data = reader.get_metrics_data()
    assert data is not None
    return encode_metrics(data).SerializeToString()


def _one_log() -> bytes:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=_RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger(_NAME).emit(
        event_name="check", body="telemetry-otel check", severity_number=SeverityNumber.INFO,
        severity_text="INFO",
    )  # fmt: skip
    return encode_logs(exporter.get_finished_logs()).SerializeToString()
