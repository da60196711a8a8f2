"""TelemetryConfig: the legacy configuration, validated when it is built.

Precedence for every field: an explicit argument (or an assignment), then
``TELEMETRY_*``, then ``OTEL_*``, then the default; except that the operator's switch
(``TELEMETRY_ENABLED=false`` or ``OTEL_SDK_DISABLED=true``) turns collection off over
code's ``enabled=True``. A collector fills the fields its config left unset from the
environment (:meth:`TelemetryConfig.with_env`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from dataclasses import fields as dataclass_fields
from types import MappingProxyType
from typing import Any

from telemetry_otel import _env as env
from telemetry_otel import _options as check
from telemetry_otel._endpoints import SIGNALS, Endpoint, OtlpTarget, otlp_targets, parse_endpoint
from telemetry_otel._env import read_env
from telemetry_otel._options import _UNSET, Option, option
from telemetry_otel._redact import (
    SENSITIVE_WORDS,
    mask_headers,
    mask_tags,
    mask_url,
)
from telemetry_otel._tls import client_identity_problem
from telemetry_otel.models import EventSeverity

__all__ = ["TelemetryConfig"]


_BUILT_IN_TARGETS = MappingProxyType(
    {s: OtlpTarget("http", f"http://localhost:4318/v1/{s}") for s in SIGNALS}
)


@dataclass(eq=False, repr=False)
class TelemetryConfig:
    """How a TelemetryCollector collects and where it exports.

    Each field is declared once below: its default, what it does, how a value is
    checked, and the variables that set it. The Args section is built from them.
    """

    enabled: bool = option(
        True,
        "When False, ``collect_*`` return False and nothing is exported.",
        check.boolean,
        (env.TELEMETRY_ENABLED, env.parse_bool),
        (env.OTEL_SDK_DISABLED, env.parse_disabled),
    )
    buffer_size: int = option(
        1000,
        "Queue size of each trace and event destination (and of each callback's metric "
        "queue, which also holds at least one whole interval's data points); a full queue "
        "drops its oldest item (counted in ``stats()``). Export batches hold at most "
        "``min(512, buffer_size)`` items.",
        check.positive_int,
        (env.TELEMETRY_BUFFER_SIZE, env.parse_positive_int),
    )
    flush_interval_ms: int = option(
        5000,
        "How often queued traces and events are exported, and the metric export interval.",
        check.positive_int,
        (env.TELEMETRY_FLUSH_INTERVAL_MS, env.parse_positive_int),
    )
    export_endpoints: list[str] = option(
        [],
        "Where telemetry goes; see the README's endpoint table.",
        check.endpoint_list,
        (env.TELEMETRY_EXPORT_ENDPOINTS, env.parse_endpoints),
    )
    sample_rate: float = option(
        1.0,
        "Fraction of traces (decided per trace id) and events kept, 0.0 to 1.0. Metrics "
        "are never sampled.",
        check.rate,
        (env.TELEMETRY_SAMPLE_RATE, env.parse_rate),
    )
    tags: dict[str, str | int | float | bool] = option(
        {},
        "Global tags: resource attributes of everything the collector exports.",
        check.tags,
        (env.TELEMETRY_TAGS, env.parse_pairs),
    )
    service_name: str | None = option(
        None,
        "The ``service.name`` resource attribute; when None, a ``service.name`` tag, then "
        "``OTEL_SERVICE_NAME``, then the OTel default.",
        check.service_name,
        (env.TELEMETRY_SERVICE_NAME, env.parse_service_name),
    )
    headers: dict[str, str] = option(
        {},
        "Headers (gRPC metadata) sent to every OTLP endpoint given as a string; when "
        "empty, the ``OTEL_EXPORTER_OTLP_HEADERS`` variables apply.",
        check.headers,
    )
    _: KW_ONLY
    shutdown_timeout_ms: int = option(
        5000,
        "The one deadline ``stop()`` shares between all signals and destinations, and "
        "the default timeout of ``flush()``.",
        check.positive_int,
        (env.TELEMETRY_SHUTDOWN_TIMEOUT_MS, env.parse_positive_int),
    )
    spool_dir: str | None = option(
        None,
        "A directory for the durable spool: batches an OTLP endpoint still refuses after "
        "retries wait there (SQLite) and are sent again, in order, when it answers, also "
        "by the next process using the same directory. None: off.",
        check.optional_path,
        (env.TELEMETRY_SPOOL_DIR, env.parse_path),
    )
    spool_max_bytes: int = option(
        64 * 1024 * 1024,
        "Size bound of the spool; past it the oldest batches are dropped (counted).",
        check.positive_int,
        (env.TELEMETRY_SPOOL_MAX_BYTES, env.parse_positive_int),
    )
    max_export_batch_bytes: int = option(
        4_000_000,
        "Largest OTLP request, encoded; trace and log batches and metric exports are cut "
        "to fit (the default stays below the 4 MiB that gRPC and the Collector receive by "
        "default), and a span or log record that cannot fit alone is dropped (counted).",
        check.positive_int,
        (env.TELEMETRY_MAX_EXPORT_BATCH_BYTES, env.parse_positive_int),
    )
    max_attributes: int = option(
        128,
        "Most attributes per span and per log record (tags plus metadata); the rest are "
        "dropped (counted).",
        check.positive_int,
        (env.TELEMETRY_MAX_ATTRIBUTES, env.parse_positive_int),
        (env.OTEL_ATTRIBUTE_COUNT_LIMIT, env.parse_positive_int),
    )
    max_attribute_length: int | None = option(
        8192,
        "Longest string attribute value, event message and span name, in characters; "
        "longer ones are cut (counted). None: no limit.",
        check.positive_int_or_none,
        (env.TELEMETRY_MAX_ATTRIBUTE_LENGTH, env.parse_positive_int),
        (env.OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, env.parse_positive_int),
    )
    max_metric_series: int = option(
        2000,
        "Most tag sets per metric per export; more fold into one overflow series "
        "(``otel.metric.overflow=true``), counted.",
        check.positive_int,
        (env.TELEMETRY_MAX_METRIC_SERIES, env.parse_positive_int),
    )
    redact: bool = option(
        True,
        "Replace the values of sensitive-looking keys (password, token, authorization, …) "
        "in tags, metadata and attributes by ``[REDACTED]``.",
        check.boolean,
        (env.TELEMETRY_REDACT, env.parse_bool),
    )
    redact_keys: list[str] = option(
        [],
        "More key fragments to redact, matched case-insensitively.",
        check.key_list,
        (env.TELEMETRY_REDACT_KEYS, env.parse_key_list),
    )
    use_global_providers: bool = option(
        False,
        "Send everything through the application's global OTel tracer, meter and logger "
        "providers (its resource, processors and exporters) instead of the collector's "
        "own; ``stop()`` then flushes them and leaves them running. A signal whose global "
        "provider is not an SDK one falls back to the collector's own, with a warning.",
        check.boolean,
        (env.TELEMETRY_USE_GLOBAL_PROVIDERS, env.parse_bool),
    )
    self_metrics: bool = option(
        True,
        "Export the counts of ``stats()`` as the collector's own metrics "
        "(``telemetry_otel.*``, and per exporter under the semantic conventions' "
        "``otel.sdk.*`` names), each series once it is not zero.",
        check.boolean,
        (env.TELEMETRY_SELF_METRICS, env.parse_bool),
    )
    trace_sample_rate: float | None = option(
        None,
        "Fraction of traces kept, decided per trace id with OTel's consistent probability "
        "sampling; None: ``sample_rate``.",
        check.rate_or_none,
        (env.TELEMETRY_TRACE_SAMPLE_RATE, env.parse_rate),
    )
    event_sample_rate: float | None = option(
        None,
        "Fraction of events kept, each decided on its own; None: ``sample_rate``.",
        check.rate_or_none,
        (env.TELEMETRY_EVENT_SAMPLE_RATE, env.parse_rate),
    )
    event_keep_severity: EventSeverity | None = option(
        EventSeverity.ERROR,
        "Events at or above this severity are never sampled out; None: every event is sampled.",
        check.severity_or_none,
        (env.TELEMETRY_EVENT_KEEP_SEVERITY, env.parse_severity_or_none),
    )
    events_follow_traces: bool = option(
        True,
        "An event collected inside a live span (the current span context) is kept or "
        "dropped with that span's trace instead of at the event rate; events at or above "
        "``event_keep_severity`` pass anyway.",
        check.boolean,
        (env.TELEMETRY_EVENTS_FOLLOW_TRACES, env.parse_bool),
    )
    keep_error_traces: bool = option(
        True,
        "Keep every legacy trace that has a span with ``error`` set, whatever the rate.",
        check.boolean,
        (env.TELEMETRY_KEEP_ERROR_TRACES, env.parse_bool),
    )
    keep_traces_slower_than_ms: float | None = option(
        None,
        "Keep every legacy trace that has a span slower than this; None: off.",
        check.positive_number_or_none,
        (env.TELEMETRY_KEEP_TRACES_SLOWER_THAN_MS, env.parse_positive_number_or_none),
    )
    trace_decision_wait_ms: int = option(
        5000,
        "With a tail rule and a rate below 1, the window from a legacy trace's first span "
        "in which its spans wait for a rule to match, whatever their order, before the "
        "rate decides the trace.",
        check.positive_int,
        (env.TELEMETRY_TRACE_DECISION_WAIT_MS, env.parse_positive_int),
    )
    max_pending_spans: int = option(
        10_000,
        "Most legacy spans waiting for their trace's decision; past it the oldest traces "
        "are decided by the rate alone (counted).",
        check.positive_int,
        (env.TELEMETRY_MAX_PENDING_SPANS, env.parse_positive_int),
    )
    max_traces_per_second: float | None = option(
        None,
        "Most legacy traces kept per second, on average; None: no limit.",
        check.positive_number_or_none,
        (env.TELEMETRY_MAX_TRACES_PER_SECOND, env.parse_positive_number_or_none),
    )

    prometheus_registries: list[Any] = option(
        [],
        "prometheus_client registries whose metrics are read at every metric collection "
        'and exported like the collector\'s own; ``"default"`` names the global '
        "``REGISTRY``. See docs/bridges.md.",
        check.registry_list,
        (env.TELEMETRY_PROMETHEUS_REGISTRIES, env.parse_registries),
    )
    prometheus_dir: str | None = option(
        None,
        "The directory where each process publishes its metrics for a prometheus:// "
        "endpoint that the processes of a service share (one folder per host and port "
        "inside). None: ``<spool_dir>/prometheus`` with a spool, else a folder of the "
        "user's in the system's temporary directory. See docs/deploying.md.",
        check.optional_path,
        (env.TELEMETRY_PROMETHEUS_DIR, env.parse_path),
    )
    statsd_endpoint: str | None = option(
        None,
        "``statsd://host:port``: a StatsD and DogStatsD listener (UDP) whose metrics, "
        "events and service checks are exported like the collector's own. None: off.",
        check.statsd_endpoint,
        (env.TELEMETRY_STATSD_ENDPOINT, env.parse_statsd_endpoint),
    )
    statsd_allow_remote: bool = option(
        False,
        "Let the StatsD listener take packets on an address other than loopback.",
        check.boolean,
        (env.TELEMETRY_STATSD_ALLOW_REMOTE, env.parse_bool),
    )

    _resolved = False  # read against an environment already (with_env)

    def __post_init__(self) -> None:
        given = {name: getattr(self, name) for name in FIELDS}
        sources = {name: "argument" for name, value in given.items() if value is not _UNSET}
        for name, value in given.items():
            default = OPTIONS[name].default
            object.__setattr__(self, name, _copy(default) if value is _UNSET else value)
        self._env_endpoints: tuple[Endpoint, ...] = ()
        self._otlp_defaults: Mapping[str, OtlpTarget] = _BUILT_IN_TARGETS
        # The variables it was read against (with_env), and what of them was not applied.
        self._environ: Mapping[str, str] = os.environ
        self._env_notes: tuple[tuple[str, str], ...] = ()
        self._env_origins: Mapping[str, str] = {}
        self._validate()
        self._sources = sources  # last: from here on, an assignment is checked (__setattr__)

    def __setattr__(self, name: str, value: Any) -> None:
        """Legacy code tweaks its config after building it: a field set later is checked
        at once (the config is left as it was when it fails) and counts as set by code,
        so a collector built from the config afterwards takes it over the environment."""
        if name not in OPTIONS or "_sources" not in self.__dict__:  # not a field, or building
            if not name.startswith("_") and "_sources" in self.__dict__:
                raise _unknown_field(name)
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
        for name, declared in OPTIONS.items():
            value = _plain_text(getattr(self, name))
            object.__setattr__(self, name, declared.check(name, value))
        check.statsd_reachable(self.statsd_endpoint, self.statsd_allow_remote)
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
        env = read_env(os.environ if environ is None else environ, ENV_VARIABLES)
        values, sources = {}, {}
        for name in FIELDS:
            if name in self._sources:
                values[name], sources[name] = _copy(getattr(self, name)), self._sources[name]
            elif getattr(self, name) != OPTIONS[name].default:  # changed in place by code
                values[name], sources[name] = _copy(getattr(self, name)), "assignment"
            elif name in env.fields:
                values[name], sources[name] = env.fields[name]
            else:
                values[name], sources[name] = _copy(OPTIONS[name].default), "default"
        switch = env.switched_off_by
        if switch is not None and values["enabled"]:  # the operator's switch wins
            values["enabled"], sources["enabled"] = False, f"{switch}, over code"
        resolved = TelemetryConfig(**values)
        resolved._sources = sources
        resolved._otlp_defaults = MappingProxyType(env.otlp_defaults)
        resolved._environ = env.environ
        resolved._env_notes = tuple(env.notes)
        resolved._env_origins = env.origins
        if sources["export_endpoints"] == "default":
            resolved._env_endpoints = tuple(env.endpoints)
        resolved._resolved = True
        return resolved

    def _origin_of(self, text: str) -> str:
        """An endpoint's text, each variable a configuration file stands for named by
        the file's line instead."""
        for variable, origin in self._env_origins.items():
            text = text.replace(variable, origin)
        return text

    @property
    def environ(self) -> Mapping[str, str]:
        """The variables this config was read against: the environment's, or those an
        ``OTEL_CONFIG_FILE`` stands for (read for the resource and limits)."""
        return self._environ

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
        copy._environ = self._environ
        copy._env_notes = self._env_notes
        copy._env_origins = self._env_origins
        copy._resolved = True
        return copy

    # -- endpoints ---------------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        """Every export endpoint, parsed: the strings, then any from ``OTEL_EXPORTER_OTLP_*``.

        Raises:
            ValueError: an endpoint string has an unknown form or option.
        """
        check.endpoint_list("export_endpoints", self.export_endpoints)
        parsed = [parse_endpoint(text) for text in self.export_endpoints]
        for endpoint in parsed:
            _check_client_identity(endpoint)
        return [*parsed, *self._env_endpoints]

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
        values["prometheus_registries"] = [_Shown(r) for r in self.prometheus_registries]
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
            lines.append(f"endpoint {self._origin_of(mask_url(endpoint.text))}")
            if endpoint.kind == "otlp":
                lines.extend(_describe_targets(self.otlp_targets(endpoint)))
        return "\n".join(lines)


def _check_client_identity(endpoint: Endpoint) -> None:
    """An endpoint's client certificate and key, usable: readable, and one the other's."""
    cert, key = endpoint.options.get("client_cert"), endpoint.options.get("client_key")
    if cert is None or key is None:
        return
    problem = client_identity_problem(str(cert), str(key))
    if problem is not None:
        raise ValueError(f"export_endpoints: {mask_url(endpoint.text)!r}: {problem}")


def _spoken(target: OtlpTarget) -> str:
    """The protocol as OTEL_EXPORTER_OTLP_PROTOCOL names it."""
    return "grpc" if target.protocol == "grpc" else f"http/{target.encoding}"


def _describe_targets(targets: Mapping[str, OtlpTarget]) -> list[str]:
    return [
        f"  {signal:<8} {_spoken(target)} {mask_url(target.url)} "
        f"compression={target.compression} timeout_ms={target.timeout_ms} "
        f"ca_file={target.ca_file} headers={mask_headers(target.headers)}"
        + (f" client_cert={target.client_cert}" if target.client_cert else "")
        for signal, target in targets.items()
    ]


class _Shown:
    """A registry as repr() and describe() show it: "default", or its type alone (the
    default repr's address says nothing)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def __repr__(self) -> str:
        registry = self._registry
        return repr(registry) if isinstance(registry, str) else f"<{type(registry).__name__}>"


def _unknown_field(name: str) -> AttributeError:
    """A typo such as ``config.smaple_rate = 0.5`` would otherwise be kept and ignored."""
    close = difflib.get_close_matches(name, FIELDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return AttributeError(f"TelemetryConfig has no field {name!r}{hint}")


def _plain_text(value: Any) -> Any:
    """A str subclass as the str it holds, in the lists, tuples and dicts of a field too:
    the checks hash, compare and print strings, and a subclass's ``__hash__``, ``__eq__``
    or ``__str__`` may raise anything or never return."""
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)
    if type(value) in (list, tuple):
        return type(value)(_plain_text(item) for item in value)
    if type(value) is dict:
        return {_plain_text(key): _plain_text(item) for key, item in value.items()}
    return value


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, (list, dict)) else value


OPTIONS: dict[str, Option] = {
    f.name: f.metadata["option"]
    for f in dataclass_fields(TelemetryConfig)
    if "option" in f.metadata
}
FIELDS = tuple(OPTIONS)
# config field -> the variables that set it, highest precedence first, with their parser.
ENV_VARIABLES = {
    name: declared.variables for name, declared in OPTIONS.items() if declared.variables
}
_NAME_WIDTH = max(len(name) for name in FIELDS)  # describe()'s value column


def _args_section() -> str:
    """The docstring's Args, from each field's declaration."""
    lines = ["", "    Args:"]
    for name, declared in OPTIONS.items():
        line = "        "
        for word in f"{name}: {declared.doc}".split():
            if len(line) + len(word) + 1 > 92:
                lines.append(line.rstrip())
                line = "            "
            line += word + " "
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


TelemetryConfig.__doc__ = (TelemetryConfig.__doc__ or "").rstrip() + "\n" + _args_section()
