"""Event models to OpenTelemetry log records, and log records back to Event models."""

from __future__ import annotations

from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.trace import INVALID_SPAN_CONTEXT, Span, get_current_span

from telemetry_otel._otel.mapping.spans import ns_to_seconds, seconds_to_ns
from telemetry_otel._otel.runtime.sdk import current_context_getter, span_key
from telemetry_otel._otel.sampling.probability import PROBABILITY
from telemetry_otel._shaping import Shaper
from telemetry_otel.models import Event, EventSeverity

# By identity: an enum's own hash is a Python-level call on every event.
_SEVERITIES = {id(s): (SeverityNumber(s.severity_number), s.name) for s in EventSeverity}


class LegacyLogRecord(LogRecord):
    """A log record that remembers which attributes came from ``Event.tags``.

    On the wire, tags and metadata are plain log attributes of the same name; the
    callback bridge needs to give them back apart, and this Python-side field
    (``tag_keys``, set after construction) lets it do so without adding anything
    to the exported record.
    """

    # None: every attribute but the sampling probability is a tag (an event without
    # metadata, the common case), so the hot path builds no set.
    tag_keys: frozenset[str] | None = frozenset()
    # The event's own severity: the callback bridge gives it back as it was.
    severity: EventSeverity | None = None


_record_new = LegacyLogRecord.__new__
_current_context = current_context_getter()
# Where the current span sits in a Context; None if the API moved it.
_SPAN_KEY = span_key()


def event_to_log_record(
    event: Event, shaper: Shaper, probability: float | None
) -> tuple[LegacyLogRecord, bool]:
    """The log record for an event, and whether redaction or limits cut something.

    Tags and metadata become attributes of the same names (metadata wins a clash);
    metadata values the OTLP AnyValue cannot hold become text (see Shaper). The
    probability the event was kept with becomes ``sampling.probability`` (none when it
    is not known).
    """
    metadata = event.metadata
    tag_keys: frozenset[str] | None
    if metadata:
        merged = {key: value for key, value in event.tags.items() if key not in metadata}
        tag_keys = frozenset(merged)
        merged.update(metadata)
    else:
        merged = event.tags
        # A tag named like the probability attribute must be told apart from it.
        tag_keys = None if PROBABILITY not in merged else frozenset(merged)
    shaped, limited = shaper.attributes(merged, reserved=1)
    attributes = {**shaped, PROBABILITY: probability} if probability is not None else dict(shaped)
    body, name, body_cut, name_cut = event.message, event.name, False, False
    if not shaper.is_short_ascii(body + name):  # neither needs shaping (the common case)
        body, body_cut = shaper.text(body)
        name, name_cut = shaper.text(name)
    number, text = _SEVERITIES[id(event.severity)]
    record = _new_record(seconds_to_ns(event.timestamp), number, text, body, attributes, name)
    record.tag_keys = tag_keys
    record.severity = event.severity
    return record, limited or body_cut or name_cut


def _new_record(
    timestamp: int,
    number: SeverityNumber,
    text: str,
    body: str,
    attributes: dict[str, Any],
    name: str,
) -> LegacyLogRecord:
    """The record ``LegacyLogRecord(timestamp=..., ...)`` would build, in the current
    context, for a third of the cost: LogRecord.__init__ looks the current span up
    through two API calls and stores every field one by one, on every event."""
    context = _current_context()
    # None first: Span is an ABC, and isinstance on one is slow.
    span = context.get(_SPAN_KEY) if _SPAN_KEY is not None else get_current_span(context)
    if span is None or not isinstance(span, Span):
        span_context = INVALID_SPAN_CONTEXT
    else:
        span_context = span.get_span_context()
    record = _record_new(LegacyLogRecord)
    record.__dict__.update(
        timestamp=timestamp,
        observed_timestamp=time_ns(),
        context=context,
        trace_id=span_context.trace_id,
        span_id=span_context.span_id,
        trace_flags=span_context.trace_flags,
        severity_text=text,
        severity_number=number,
        body=body,
        attributes=attributes,
        event_name=name,
        exception=None,
    )
    return record


def log_record_to_event(record: ReadWriteLogRecord, global_tags: Mapping[str, Any]) -> Event:
    """The Event a log record came from, metadata and tags apart."""
    log = record.log_record
    if type(log) is LegacyLogRecord and type(log.attributes) is dict:
        return _shaped_event(log, log.attributes, global_tags)
    attributes = dict(log.attributes or {})
    tag_keys: frozenset[str] | None = getattr(log, "tag_keys", frozenset())
    if tag_keys is None:  # every attribute but the sampling probability
        tag_keys = frozenset(attributes) - {PROBABILITY}
    tags = dict(global_tags)
    tags.update((key, attributes.pop(key)) for key in tag_keys if key in attributes)
    attributes.pop(PROBABILITY, None)
    return Event(
        name=log.event_name or "log",
        message=log.body if isinstance(log.body, str) else str(log.body),
        severity=severity_from_number(log.severity_number),
        metadata=_plain(attributes),
        timestamp=ns_to_seconds(log.timestamp or log.observed_timestamp or 0),
        tags=tags,
    )


def _shaped_event(
    log: LegacyLogRecord, attributes: dict[str, Any], global_tags: Mapping[str, Any]
) -> Event:
    """The Event as shaped for export, from the record built of it: every field passed
    the Event's checks and was then redacted and limited, so it is not checked again.
    Nested metadata is copied: the exported record keeps its own."""
    tag_keys = log.tag_keys
    metadata: dict[str, Any] = {}
    if tag_keys is None:  # tags only: copied at once, the probability left out
        tags = {**global_tags, **attributes}
        if PROBABILITY in attributes:
            if PROBABILITY in global_tags:
                tags[PROBABILITY] = global_tags[PROBABILITY]
            else:
                del tags[PROBABILITY]
        return _trusted_event(log, metadata, tags)
    tags = dict(global_tags)
    for key, value in attributes.items():
        if key in tag_keys:
            tags[key] = value
        elif key != PROBABILITY:
            kind = type(value)
            scalar = kind is str or kind is int or kind is float or kind is bool
            metadata[key] = value if scalar else _plain(value)
    return _trusted_event(log, metadata, tags)


def _trusted_event(log: LegacyLogRecord, metadata: dict[str, Any], tags: dict[str, Any]) -> Event:
    return Event._trusted(
        {
            "name": log.event_name,
            "message": log.body,
            "severity": log.severity,
            "metadata": metadata,
            "timestamp": log.timestamp / 1_000_000_000,  # type: ignore[operator]  # ns_to_seconds
            "tags": tags,
        }
    )


def severity_from_number(number: SeverityNumber | None) -> EventSeverity:
    """The EventSeverity whose OTel severity range holds ``number`` (TRACE counts as DEBUG)."""
    value = number.value if number is not None else 9
    if value >= 21:
        return EventSeverity.CRITICAL
    if value >= 17:
        return EventSeverity.ERROR
    if value >= 13:
        return EventSeverity.WARNING
    if value >= 9:
        return EventSeverity.INFO
    return EventSeverity.DEBUG


def _plain(value: Any) -> Any:
    """Attribute containers (tuples, mapping proxies) as plain lists and dicts."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
