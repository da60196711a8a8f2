"""The logging bridge: standard ``logging`` records collected as Events."""

from __future__ import annotations

import logging
import threading
import traceback
from typing import TYPE_CHECKING, Any

from telemetry_otel.models import Event, EventSeverity

if TYPE_CHECKING:
    from telemetry_otel.collector import TelemetryCollector

# Loggers whose records would feed back into the pipeline that produced them.
_OWN_LOGGERS = ("opentelemetry", "telemetry_otel", "grpc", "urllib3")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def severity_of(levelno: int) -> EventSeverity:
    """The EventSeverity of a logging level (custom levels fall to the one below)."""
    if levelno >= logging.CRITICAL:
        return EventSeverity.CRITICAL
    if levelno >= logging.ERROR:
        return EventSeverity.ERROR
    if levelno >= logging.WARNING:
        return EventSeverity.WARNING
    if levelno >= logging.INFO:
        return EventSeverity.INFO
    return EventSeverity.DEBUG


class EventLoggingHandler(logging.Handler):
    """Turns each ``logging`` record into an Event on a collector.

    Event name: the logger's name; message: the record's message with its args
    applied; severity: from the level; metadata: the record's ``extra`` fields, its
    code location and, with ``exc_info``, ``exception.type``, ``exception.message`` and
    ``exception.stacktrace``. The event carries the trace and span id of the span
    current when the record was made. Records of OpenTelemetry's and this library's
    own loggers are left out, so an export failure cannot log itself forever.
    """

    def __init__(self, collector: TelemetryCollector, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._collector = collector
        self._inside = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_OWN_LOGGERS) or getattr(self._inside, "active", False):
            return
        self._inside.active = True
        try:
            self._collector.collect_event(self.to_event(record))
        except Exception:
            self.handleError(record)
        finally:
            self._inside.active = False

    @staticmethod
    def to_event(record: logging.LogRecord) -> Event:
        """The Event for one record."""
        metadata: dict[str, Any] = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and key and not key.startswith("_")
        }
        metadata["code.function"] = record.funcName
        metadata["code.lineno"] = record.lineno
        metadata["code.filepath"] = record.pathname
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            metadata["exception.type"] = type(error).__qualname__
            metadata["exception.message"] = str(error)
            metadata["exception.stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
        return Event(
            name=record.name or "root",
            message=record.getMessage(),
            severity=severity_of(record.levelno),
            metadata=metadata,
            timestamp=record.created,
        )
