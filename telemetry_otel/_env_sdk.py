"""The SDK-wide ``OTEL_*`` variables operators set for a whole fleet: which sampler, and
which exporters each signal goes to.

They follow https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/
onto this library's fields and endpoints. An invalid value logs one warning naming the
variable and is ignored, as that specification asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.util import find_spec
from types import MappingProxyType

from telemetry_otel._endpoints import SIGNALS, Endpoint, OtlpTarget
from telemetry_otel._otel.runtime.log import warn_limited

OTEL_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER"
OTEL_TRACES_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
OTEL_LOGS_EXPORTER = "OTEL_LOGS_EXPORTER"
OTEL_METRICS_EXEMPLAR_FILTER = "OTEL_METRICS_EXEMPLAR_FILTER"
OTEL_SPAN_EVENT_COUNT_LIMIT = "OTEL_SPAN_EVENT_COUNT_LIMIT"
OTEL_SPAN_LINK_COUNT_LIMIT = "OTEL_SPAN_LINK_COUNT_LIMIT"
OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT = "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT"
OTEL_LINK_ATTRIBUTE_COUNT_LIMIT = "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"
# Read by the OpenTelemetry API when imported; _otel/__init__.py imports it past a
# propagator that is not installed.
OTEL_PROPAGATORS = "OTEL_PROPAGATORS"
# SpanLimits argument each is read into; the specification's default for each is 128.
_SPAN_COUNT_LIMITS = {
    "max_events": OTEL_SPAN_EVENT_COUNT_LIMIT,
    "max_links": OTEL_SPAN_LINK_COUNT_LIMIT,
    "max_event_attributes": OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
    "max_link_attributes": OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
}
OTEL_EXPORTER_PROMETHEUS_HOST = "OTEL_EXPORTER_PROMETHEUS_HOST"
OTEL_EXPORTER_PROMETHEUS_PORT = "OTEL_EXPORTER_PROMETHEUS_PORT"
EXPORTER_VARIABLES = {
    "traces": OTEL_TRACES_EXPORTER,
    "metrics": OTEL_METRICS_EXPORTER,
    "logs": OTEL_LOGS_EXPORTER,
}
# Live spans here always respect their parent (a sampler that did not would split a
# trace between services), so the parent-based samplers and the others read the same.
_RATE_SAMPLERS = {
    "always_on": 1.0,
    "always_off": 0.0,
    "parentbased_always_on": 1.0,
    "parentbased_always_off": 0.0,
}
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_EXPORTERS = {
    "traces": ("otlp", "console", "none"),
    "logs": ("otlp", "console", "none"),
    "metrics": ("otlp", "console", "prometheus", "none"),
}


@dataclass
class Reading:
    """One reading of the environment: where each variable came from (a configuration
    file's line, for the variables a file stands for), and what was not applied."""

    origins: dict[str, str] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)


READING: ContextVar[Reading | None] = ContextVar("telemetry_otel_env_reading", default=None)


def variable_name(name: str) -> str:
    """How messages name a variable: its file line, when a configuration file set it."""
    reading = READING.get()
    if reading is not None and name in reading.origins:
        return reading.origins[name]
    return f"environment variable {name}"


def note(name: str, why: str) -> None:
    """Remember that ``name`` was read and not applied, and why (for ``config --explain``)."""
    reading = READING.get()
    if reading is not None:
        shown = reading.origins.get(name, name)
        reading.notes.append((shown, why))


def _ignored(name: str, value: str, expected: str) -> None:
    warn_limited(f"env:{name}", "%s=%r: expected %s; ignored", variable_name(name), value, expected)
    note(name, f"invalid: expected {expected}")


def sampler_rate(environ: Mapping[str, str]) -> tuple[float, str] | None:
    """The trace rate ``OTEL_TRACES_SAMPLER`` (and its argument) asks for, with the
    variable it came from; None when unset or ignored."""
    value = environ.get(OTEL_TRACES_SAMPLER)
    if value is None:
        return None
    sampler = value.strip().lower()
    if sampler in _RATE_SAMPLERS:
        return _RATE_SAMPLERS[sampler], OTEL_TRACES_SAMPLER
    if sampler not in _RATIO_SAMPLERS:
        choices = ", ".join((*_RATE_SAMPLERS, *_RATIO_SAMPLERS))
        _ignored(OTEL_TRACES_SAMPLER, value, f"one of {choices}")
        return None
    return _sampler_ratio(environ), f"{OTEL_TRACES_SAMPLER}={sampler}"


def _sampler_ratio(environ: Mapping[str, str]) -> float:
    """The ratio argument; 1.0, as the specification says, when unset or invalid."""
    argument = environ.get(OTEL_TRACES_SAMPLER_ARG)
    if argument is None:
        return 1.0
    try:
        ratio = float(argument)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        _ignored(OTEL_TRACES_SAMPLER_ARG, argument, "a number between 0 and 1")
        return 1.0
    return ratio


EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")


def exemplar_filter(environ: Mapping[str, str]) -> str:
    """The exemplar filter ``OTEL_METRICS_EXEMPLAR_FILTER`` names, in any case;
    ``trace_based`` (the default) when unset or invalid.

    Read here, not by the SDK: its MeterProvider compares the value as written and
    raises on anything else (``ALWAYS_ON`` included), which would fail start().
    """
    value = environ.get(OTEL_METRICS_EXEMPLAR_FILTER)
    if value is None:
        return "trace_based"
    name = value.strip().lower()
    if name not in EXEMPLAR_FILTERS:
        _ignored(OTEL_METRICS_EXEMPLAR_FILTER, value, f"one of {', '.join(EXEMPLAR_FILTERS)}")
        return "trace_based"
    return name


def span_count_limits(environ: Mapping[str, str]) -> dict[str, int]:
    """Span event and link limits from their variables; 128 when unset or malformed.

    Read here, not by the SDK: its SpanLimits raises on a malformed value (``abc``,
    ``-1``), which would fail start() over a limit the collector can do without.
    """
    limits = {}
    for argument, name in _SPAN_COUNT_LIMITS.items():
        value = environ.get(name)
        limits[argument] = 128
        if value is None:
            continue
        if value.strip().isdigit():
            limits[argument] = int(value.strip())
        else:
            _ignored(name, value, "a whole number of at least 0")
    return limits


def exporters(environ: Mapping[str, str]) -> dict[str, frozenset[str] | None]:
    """Per signal, the exporters its variable names (None: unset, the default applies)."""
    chosen: dict[str, frozenset[str] | None] = {}
    for signal, name in EXPORTER_VARIABLES.items():
        value = environ.get(name)
        if value is None:
            chosen[signal] = None
            continue
        names = {item.strip().lower() for item in value.split(",") if item.strip()}
        unknown = names - set(_EXPORTERS[signal])
        if unknown or not names:
            _ignored(name, value, f"a comma-separated list of {', '.join(_EXPORTERS[signal])}")
            names -= unknown
        chosen[signal] = frozenset(names) if names else None
    return chosen


def endpoints(
    environ: Mapping[str, str],
    targets: Mapping[str, OtlpTarget],
    endpoint_variables: Sequence[str],
    chosen: Mapping[str, frozenset[str] | None],
) -> list[Endpoint]:
    """The endpoints the environment names: OTLP for the signals whose exporter says
    ``otlp`` (by default, those of an OTLP endpoint variable), a console for those whose
    exporter says ``console``, and a Prometheus server for metrics."""
    found = []

    def goes_to(signal: str, exporter: str) -> bool:
        names = chosen[signal]
        if names is None:  # unset: OTLP when an endpoint variable is set
            return exporter == "otlp" and bool(endpoint_variables)
        return exporter in names

    otlp = frozenset(s for s in SIGNALS if goes_to(s, "otlp"))
    if otlp:
        text = " + ".join(endpoint_variables) or _named(otlp, "otlp")
        found.append(Endpoint("otlp", text, targets=MappingProxyType(dict(targets)), signals=otlp))
    console = frozenset(s for s in SIGNALS if goes_to(s, "console"))
    if console:
        found.append(Endpoint("console", _named(console, "console"), signals=console))
    if goes_to("metrics", "prometheus"):
        prometheus = _prometheus(environ)
        if prometheus is not None:
            found.append(prometheus)
    return found


def _named(signals: frozenset[str], exporter: str) -> str:
    """How describe() names an endpoint an exporter variable made."""
    return " + ".join(f"{EXPORTER_VARIABLES[s]}={exporter}" for s in SIGNALS if s in signals)


def _prometheus(environ: Mapping[str, str]) -> Endpoint | None:
    host = environ.get(OTEL_EXPORTER_PROMETHEUS_HOST, "localhost").strip() or "localhost"
    port_text = environ.get(OTEL_EXPORTER_PROMETHEUS_PORT, "9464").strip()
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        _ignored(OTEL_EXPORTER_PROMETHEUS_PORT, port_text, "a port number")
        port_text = "9464"
    if find_spec("opentelemetry.exporter.prometheus") is None:
        _ignored(
            OTEL_METRICS_EXPORTER,
            "prometheus",
            "an installed exporter: pip install 'telemetry-otel[prometheus]'",
        )
        return None
    return Endpoint(
        "prometheus",
        f"{OTEL_METRICS_EXPORTER}=prometheus",
        url=f"{host}:{port_text}",
        signals=frozenset({"metrics"}),
    )
