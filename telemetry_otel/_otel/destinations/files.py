"""OTLP JSON: export requests as one JSON line each, for files and the console.

Encoding reuses the SDK's OTLP protobuf encoders, then protobuf's JSON mapping;
the OTLP JSON rules differ from plain proto3 JSON in two ways handled here: ids
are hex, not base64, and enums are integers.
https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
https://opentelemetry.io/docs/specs/otel/protocol/file-exporter/

The official JSON file exporter package cannot be installed beside the OTLP
exporters of the same SDK release, and has no size-based rotation; hence this.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf.message import Message
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry_otel._otel.mapping.encoding import encode_spans
from telemetry_otel._otel.mapping.metrics import metrics_request
from telemetry_otel._otel.mapping.otlp_json import to_otlp_json
from telemetry_otel._otel.mapping.summaries import SummaryBoard
from telemetry_otel._otel.runtime.forks import ForkSafeLock
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._otel.runtime.sdk import log_encoder

_encode_logs = log_encoder()


class RotatingLineFile:
    """Appends whole lines to a file; past ``max_bytes`` it rotates to ``.1`` … ``.<backups>``.

    A line is never split across files; with no ``max_bytes`` the file only grows.
    """

    def __init__(self, path: Path, max_bytes: int | None = None, backups: int = 0) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._lock = ForkSafeLock()
        self._file: BinaryIO | None = None
        self._size = 0

    def write_line(self, line: str) -> None:
        """Append a line; an OSError says which file could not be written, and why."""
        data = (line + "\n").encode("utf-8", "surrogatepass")
        with self._lock, self._naming_the_path():
            file = self._open()
            if self._is_full_for(len(data)):
                file = self._rotate()
            file.write(data)
            file.flush()
            self._size += len(data)

    def open(self) -> None:
        """Open the file now (it opens at the first line otherwise)."""
        with self._lock, self._naming_the_path():
            self._open()

    @contextlib.contextmanager
    def _naming_the_path(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            why = error.strerror or str(error)
            raise OSError(error.errno, f"cannot write {self.path}: {why}") from None

    def _is_full_for(self, size: int) -> bool:
        return (
            self._max_bytes is not None and self._size > 0 and (self._size + size > self._max_bytes)
        )

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open between writes
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> BinaryIO:
        self.close_file()
        for index in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self._backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        return self._open()

    def close_file(self) -> None:
        file, self._file = self._file, None  # forgotten even when its last flush fails
        if file is not None:
            file.close()

    def close(self) -> None:
        with self._lock:
            self.close_file()


Writer = Callable[[str], None]


def _write_request(write: Writer, what: str, encode: Callable[[], Message]) -> bool:
    try:
        write(to_otlp_json(encode()))
        return True
    except OSError as error:  # its message names the file (RotatingLineFile)
        warn_limited(f"jsonl:{what}", "could not write OTLP JSON %s: %s", what, error.strerror)
        return False
    except Exception as error:
        warn_limited(f"jsonl:{what}", "could not write OTLP JSON %s: %r", what, error)
        return False


class JsonSpanExporter(SpanExporter):
    """Writes each batch of spans as one ExportTraceServiceRequest JSON line."""

    def __init__(self, write: Writer, close: Callable[[], None] = lambda: None) -> None:
        self._write, self._close = write, close

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = _write_request(self._write, "spans", lambda: encode_spans(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._close()


class JsonLogRecordExporter(LogRecordExporter):
    """Writes each batch of log records as one ExportLogsServiceRequest JSON line."""

    def __init__(self, write: Writer, close: Callable[[], None] = lambda: None) -> None:
        self._write, self._close = write, close

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = _write_request(self._write, "logs", lambda: _encode_logs(batch))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._close()


class JsonMetricExporter(MetricExporter):
    """Writes each collection as one ExportMetricsServiceRequest JSON line (cumulative)."""

    def __init__(self, write: Writer, close: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self._write, self._close = write, close
        self.summaries: SummaryBoard | None = None  # see CountingMetricExporter

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if not metrics_data.resource_metrics:
            return MetricExportResult.SUCCESS
        request = lambda: metrics_request(metrics_data, self.summaries)  # noqa: E731
        ok = _write_request(self._write, "metrics", request)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._close()
