"""TelemetryConfig: the legacy configuration, validated when it is built.

Precedence for every field: an explicit argument (or an assignment), then
``TELEMETRY_*``, then ``OTEL_*``, then the default; except that the operator's switch
(``TELEMETRY_ENABLED=false`` or ``OTEL_SDK_DISABLED=true``) turns collection off over
code's ``enabled=True``. A collector fills the fields its config left unset from the
environment (:meth:`TelemetryConfig.with_env`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from telemetry_otel._endpoints import SIGNALS, Endpoint, OtlpTarget, otlp_targets, parse_endpoint
from telemetry_otel._env import read_env
from telemetry_otel._redact import (
    SENSITIVE_WORDS,
    header_problem,
    mask_headers,
    mask_tags,
    mask_url,
)
from telemetry_otel.models import EventSeverity, _check_tags, enum_error, enum_member

__all__ = ["TelemetryConfig"]


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()
_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "buffer_size": 1000,
    "flush_interval_ms": 5000,
    "export_endpoints": [],
    "sample_rate": 1.0,
    "tags": {},
    "service_name": None,
    "headers": {},
    "shutdown_timeout_ms": 5000,
    "spool_dir": None,
    "spool_max_bytes": 64 * 1024 * 1024,
    "max_export_batch_bytes": 4_000_000,
    "max_attributes": 128,
    "max_attribute_length": 8192,
    "max_metric_series": 2000,
    "redact": True,
    "redact_keys": [],
    "use_global_providers": False,
    "self_metrics": True,
    "trace_sample_rate": None,
    "event_sample_rate": None,
    "event_keep_severity": EventSeverity.ERROR,
    "events_follow_traces": True,
    "keep_error_traces": True,
    "keep_traces_slower_than_ms": None,
    "trace_decision_wait_ms": 5000,
    "max_pending_spans": 10_000,
    "max_traces_per_second": None,
}
FIELDS = tuple(_DEFAULTS)
_NAME_WIDTH = max(len(name) for name in FIELDS)  # describe()'s value column
_BUILT_IN_TARGETS = MappingProxyType(
    {s: OtlpTarget("http", f"http://localhost:4318/v1/{s}") for s in SIGNALS}
)


class TelemetryConfig:
    """How a TelemetryCollector collects and where it exports.

    Args:
        enabled: When False, ``collect_*`` return False and nothing is exported.
        buffer_size: Queue size of each trace and event destination; a full queue
            drops its oldest item (counted in ``stats()``). Export batches hold at
            most ``min(512, buffer_size)`` items.
        flush_interval_ms: How often queued traces and events are exported, and the
            metric export interval.
        export_endpoints: Where telemetry goes; see the README's endpoint table.
        sample_rate: Fraction of traces (decided per trace id) and events kept, 0.0 to
            1.0. Metrics are never sampled.
        tags: Global tags: resource attributes of everything the collector exports.
        service_name: The ``service.name`` resource attribute; when None, a
            ``service.name`` tag, then ``OTEL_SERVICE_NAME``, then the OTel default.
        headers: Headers (gRPC metadata) sent to every OTLP endpoint given as a string;
            when empty, the ``OTEL_EXPORTER_OTLP_HEADERS`` variables apply.
        shutdown_timeout_ms: The one deadline ``stop()`` shares between all signals and
            destinations, and the default timeout of ``flush()``.
        spool_dir: A directory for the durable spool: batches an OTLP endpoint still
            refuses after retries wait there (SQLite) and are sent again, in order, when
            it answers, also by the next process using the same directory. None: off.
        spool_max_bytes: Size bound of the spool; past it the oldest batches are dropped
            (counted).
        max_export_batch_bytes: Largest OTLP trace or log request, encoded; batches are
            cut to fit (the default stays below the 4 MiB that gRPC and the Collector
            receive by default), and an item that cannot fit alone is dropped (counted).
        max_attributes: Most attributes per span and per log record (tags plus
            metadata); the rest are dropped (counted).
        max_attribute_length: Longest string attribute value, event message and span
            name, in characters; longer ones are cut (counted). None: no limit.
        max_metric_series: Most tag sets per metric per export; more fold into one
            overflow series (``otel.metric.overflow=true``), counted.
        redact: Replace the values of sensitive-looking keys (password, token,
            authorization, …) in tags, metadata and attributes by ``[REDACTED]``.
        redact_keys: More key fragments to redact, matched case-insensitively.
        use_global_providers: Send everything through the application's global OTel
            tracer, meter and logger providers (its resource, processors and exporters)
            instead of the collector's own; ``stop()`` then flushes them and leaves them
            running. A signal whose global provider is not an SDK one falls back to the
            collector's own, with a warning.
        self_metrics: Export the counts of ``stats()`` as the collector's own metrics
            (``telemetry_otel.*``), each series once it is not zero.
        trace_sample_rate: Fraction of traces kept, decided per trace id with OTel's
            consistent probability sampling; None: ``sample_rate``.
        event_sample_rate: Fraction of events kept, each decided on its own; None:
            ``sample_rate``.
        event_keep_severity: Events at or above this severity are never sampled out;
            None: every event is sampled.
        events_follow_traces: An event collected inside a live span (the current span
            context) is kept or dropped with that span's trace instead of at the event
            rate; events at or above ``event_keep_severity`` pass anyway.
        keep_error_traces: Keep every legacy trace that has a span with ``error`` set,
            whatever the rate.
        keep_traces_slower_than_ms: Keep every legacy trace that has a span slower than
            this; None: off.
        trace_decision_wait_ms: With a tail rule and a rate below 1, the window from a
            legacy trace's first span in which its spans wait for a rule to match,
            whatever their order, before the rate decides the trace.
        max_pending_spans: Most legacy spans waiting for their trace's decision; past it
            the oldest traces are decided by the rate alone (counted).
        max_traces_per_second: Most legacy traces kept per second, on average; None: no
            limit.
    """

    enabled: bool
    buffer_size: int
    flush_interval_ms: int
    export_endpoints: list[str]
    sample_rate: float
    tags: dict[str, str | int | float | bool]
    service_name: str | None
    headers: dict[str, str]
    shutdown_timeout_ms: int
    spool_dir: str | None
    spool_max_bytes: int
    max_export_batch_bytes: int
    max_attributes: int
    max_attribute_length: int | None
    max_metric_series: int
    redact: bool
    redact_keys: list[str]
    use_global_providers: bool
    self_metrics: bool
    trace_sample_rate: float | None
    event_sample_rate: float | None
    event_keep_severity: EventSeverity | None
    events_follow_traces: bool
    keep_error_traces: bool
    keep_traces_slower_than_ms: float | None
    trace_decision_wait_ms: int
    max_pending_spans: int
    max_traces_per_second: float | None
    _resolved = False  # read against an environment already (with_env)

    def __init__(
        self,
        enabled: bool = _UNSET,
        buffer_size: int = _UNSET,
        flush_interval_ms: int = _UNSET,
        export_endpoints: list[str] = _UNSET,
        sample_rate: float = _UNSET,
        tags: dict[str, str | int | float | bool] = _UNSET,
        service_name: str | None = _UNSET,
        headers: dict[str, str] = _UNSET,
        *,
        shutdown_timeout_ms: int = _UNSET,
        spool_dir: str | None = _UNSET,
        spool_max_bytes: int = _UNSET,
        max_export_batch_bytes: int = _UNSET,
        max_attributes: int = _UNSET,
        max_attribute_length: int | None = _UNSET,
        max_metric_series: int = _UNSET,
        redact: bool = _UNSET,
        redact_keys: list[str] = _UNSET,
        use_global_providers: bool = _UNSET,
        self_metrics: bool = _UNSET,
        trace_sample_rate: float | None = _UNSET,
        event_sample_rate: float | None = _UNSET,
        event_keep_severity: EventSeverity | None = _UNSET,
        events_follow_traces: bool = _UNSET,
        keep_error_traces: bool = _UNSET,
        keep_traces_slower_than_ms: float | None = _UNSET,
        trace_decision_wait_ms: int = _UNSET,
        max_pending_spans: int = _UNSET,
        max_traces_per_second: float | None = _UNSET,
    ) -> None:
        given = {
            "enabled": enabled,
            "buffer_size": buffer_size,
            "flush_interval_ms": flush_interval_ms,
            "export_endpoints": export_endpoints,
            "sample_rate": sample_rate,
            "tags": tags,
            "service_name": service_name,
            "headers": headers,
            "shutdown_timeout_ms": shutdown_timeout_ms,
            "spool_dir": spool_dir,
            "spool_max_bytes": spool_max_bytes,
            "max_export_batch_bytes": max_export_batch_bytes,
            "max_attributes": max_attributes,
            "max_attribute_length": max_attribute_length,
            "max_metric_series": max_metric_series,
            "redact": redact,
            "redact_keys": redact_keys,
            "use_global_providers": use_global_providers,
            "self_metrics": self_metrics,
            "trace_sample_rate": trace_sample_rate,
            "event_sample_rate": event_sample_rate,
            "event_keep_severity": event_keep_severity,
            "events_follow_traces": events_follow_traces,
            "keep_error_traces": keep_error_traces,
            "keep_traces_slower_than_ms": keep_traces_slower_than_ms,
            "trace_decision_wait_ms": trace_decision_wait_ms,
            "max_pending_spans": max_pending_spans,
            "max_traces_per_second": max_traces_per_second,
        }
        self._sources = {name: "argument" for name, value in given.items() if value is not _UNSET}
        for name, value in given.items():
            object.__setattr__(self, name, _copy(_DEFAULTS[name]) if value is _UNSET else value)
        self._env_endpoints: tuple[Endpoint, ...] = ()
        self._otlp_defaults: Mapping[str, OtlpTarget] = _BUILT_IN_TARGETS
        self._validate()

    def __setattr__(self, name: str, value: Any) -> None:
        """Legacy code tweaks its config after building it: a field set later is checked
        at once (the config is left as it was when it fails) and counts as set by code,
        so a collector built from the config afterwards takes it over the environment."""
        if name not in _DEFAULTS:
            object.__setattr__(self, name, value)
            return
        old = getattr(self, name)
        object.__setattr__(self, name, value)
        try:
            self._validate()
        except BaseException:
            object.__setattr__(self, name, old)
            raise
        self._sources[name] = "assignment"

    def _validate(self) -> None:
        for name in (
            "enabled",
            "redact",
            "use_global_providers",
            "keep_error_traces",
            "events_follow_traces",
            "self_metrics",
        ):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"TelemetryConfig.{name} must be a bool, got {getattr(self, name)!r}"
                )
        for name in _POSITIVE_INTS:
            _check_positive_int(name, getattr(self, name))
        if self.max_attribute_length is not None:
            _check_positive_int("max_attribute_length", self.max_attribute_length)
        _check_spool_dir(self.spool_dir)
        _check_redact_keys(self.redact_keys)
        _check_rate("sample_rate", self.sample_rate)
        for name in ("trace_sample_rate", "event_sample_rate"):
            if getattr(self, name) is not None:
                _check_rate(name, getattr(self, name))
        for name in ("keep_traces_slower_than_ms", "max_traces_per_second"):
            if getattr(self, name) is not None:
                _check_positive_number(name, getattr(self, name))
        object.__setattr__(self, "event_keep_severity", _severity_or_none(self.event_keep_severity))
        _check_tags("TelemetryConfig", "tags", self.tags)
        if self.service_name is not None and (
            not isinstance(self.service_name, str) or not self.service_name
        ):
            raise ValueError(
                "TelemetryConfig.service_name must be a non-empty str or None, "
                f"got {self.service_name!r}"
            )
        _check_headers(self.headers)
        self.endpoints()

    # -- the environment ---------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        """A config from ``TELEMETRY_*`` and ``OTEL_*`` variables (``os.environ`` by default)."""
        return cls().with_env(environ)

    def with_env(self, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        """A copy whose unset fields come from the environment; explicit arguments win,
        except over the operator's switch (``TELEMETRY_ENABLED=false`` or
        ``OTEL_SDK_DISABLED=true``), which turns collection off whatever code says.

        Raises:
            ValueError: a variable is malformed; the message names it and its value.
        """
        env = read_env(os.environ if environ is None else environ)
        values, sources = {}, {}
        for name in FIELDS:
            if name in self._sources:
                values[name], sources[name] = _copy(getattr(self, name)), self._sources[name]
            elif getattr(self, name) != _DEFAULTS[name]:  # changed in place by code
                values[name], sources[name] = _copy(getattr(self, name)), "assignment"
            elif name in env.fields:
                values[name], sources[name] = env.fields[name]
            else:
                values[name], sources[name] = _copy(_DEFAULTS[name]), "default"
        switch = env.switched_off_by
        if switch is not None and values["enabled"]:  # the operator's switch wins
            values["enabled"], sources["enabled"] = False, f"{switch}, over code"
        resolved = TelemetryConfig(**values)
        resolved._sources = sources
        resolved._otlp_defaults = MappingProxyType(env.otlp_defaults)
        if sources["export_endpoints"] == "default":
            resolved._env_endpoints = tuple(env.endpoints)
        resolved._resolved = True
        return resolved

    def _for_collector(self) -> TelemetryConfig:
        """What a collector runs with: a copy of a config already read against an
        environment (``from_env``, ``with_env``), which is not read again, so that
        ``with_env({})`` gives a collector that ignores the process's variables; any
        other config is read against ``os.environ`` now."""
        if not self._resolved:
            return self.with_env()
        copy = TelemetryConfig(**{name: _copy(getattr(self, name)) for name in FIELDS})
        copy._sources = dict(self._sources)
        copy._otlp_defaults = self._otlp_defaults
        copy._env_endpoints = self._env_endpoints
        copy._resolved = True
        return copy

    # -- endpoints ---------------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        """Every export endpoint, parsed: the strings, then any from ``OTEL_EXPORTER_OTLP_*``.

        Raises:
            ValueError: an endpoint string has an unknown form or option.
        """
        if not isinstance(self.export_endpoints, (list, tuple)):
            raise TypeError(
                "TelemetryConfig.export_endpoints must be a list of str, "
                f"got {self.export_endpoints!r}"
            )
        return [*(parse_endpoint(text) for text in self.export_endpoints), *self._env_endpoints]

    def otlp_targets(self, endpoint: Endpoint) -> dict[str, OtlpTarget]:
        """Each signal's OTLP target for an endpoint, headers and OTel defaults applied."""
        return otlp_targets(endpoint, self.headers, self._otlp_defaults)

    # -- showing it --------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelemetryConfig):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in FIELDS)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._masked().items())
        return f"TelemetryConfig({shown})"

    def _masked(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in FIELDS}
        values["export_endpoints"] = [mask_url(text) for text in self.export_endpoints]
        values["headers"] = mask_headers(self.headers)
        if self.redact:  # shown as export sends them
            words = SENSITIVE_WORDS | {"".join(k.lower().split()) for k in self.redact_keys}
            values["tags"] = mask_tags(self.tags, frozenset(words))
        return values

    def describe(self) -> str:
        """The effective configuration, one line per field, per resource attribute and
        per endpoint signal, with where each value came from; header values, credentials
        and sensitive values masked."""
        lines = [
            f"{name:<{_NAME_WIDTH}} {value!r}  ({self._sources.get(name, 'default')})"
            for name, value in self._masked().items()
        ]
        from telemetry_otel._otel.mapping.resource import describe_resource  # the SDK, when asked

        lines.extend(describe_resource(self))
        for endpoint in self.endpoints():
            lines.append(f"endpoint {mask_url(endpoint.text)}")
            if endpoint.kind == "otlp":
                lines.extend(_describe_targets(self.otlp_targets(endpoint)))
        return "\n".join(lines)


def _describe_targets(targets: Mapping[str, OtlpTarget]) -> list[str]:
    return [
        f"  {signal:<8} {target.protocol} {mask_url(target.url)} "
        f"compression={target.compression} timeout_ms={target.timeout_ms} "
        f"ca_file={target.ca_file} headers={mask_headers(target.headers)}"
        for signal, target in targets.items()
    ]


_POSITIVE_INTS = (
    "buffer_size",
    "flush_interval_ms",
    "shutdown_timeout_ms",
    "spool_max_bytes",
    "max_export_batch_bytes",
    "max_attributes",
    "max_metric_series",
    "trace_decision_wait_ms",
    "max_pending_spans",
)


def _check_spool_dir(value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(
            f"TelemetryConfig.spool_dir must be a non-empty path or None, got {value!r}"
        )


def _check_redact_keys(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        raise TypeError(
            f"TelemetryConfig.redact_keys must be a list of non-empty str, got {value!r}"
        )


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, (list, dict)) else value


def _check_positive_int(name: str, value: object) -> None:
    if type(value) is not int:
        raise TypeError(f"TelemetryConfig.{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"TelemetryConfig.{name} must be at least 1, got {value!r}")


def _check_rate(name: str, value: object) -> None:
    if type(value) not in (int, float):
        raise TypeError(f"TelemetryConfig.{name} must be a number, got {value!r}")
    assert isinstance(value, (int, float))
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"TelemetryConfig.{name} must be between 0 and 1, got {value!r}")


def _check_positive_number(name: str, value: object) -> None:
    if type(value) not in (int, float):
        raise TypeError(f"TelemetryConfig.{name} must be a number or None, got {value!r}")
    assert isinstance(value, (int, float))
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"TelemetryConfig.{name} must be above 0, got {value!r}")


def _severity_or_none(value: object) -> EventSeverity | None:
    """An EventSeverity by the models' rule (the member, or its name in any case)."""
    if value is None:
        return None
    member = enum_member(EventSeverity, value)
    if member is None:
        raise enum_error("TelemetryConfig", "event_keep_severity", EventSeverity, value, True)
    return member


def _check_headers(headers: object) -> None:
    if not isinstance(headers, dict):
        raise TypeError(f"TelemetryConfig.headers must be a dict, got {type(headers).__name__}")
    for key, value in headers.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            # The value is never shown: headers carry credentials.
            raise TypeError(
                f"TelemetryConfig.headers must map non-empty str names to str values; "
                f"bad entry for {key!r}"
            )
        problem = header_problem(key, value)
        if problem is not None:
            shown = repr(key) if header_problem(key, "") is None else "a header"
            raise ValueError(f"TelemetryConfig.headers: {shown} cannot be sent: {problem}")
