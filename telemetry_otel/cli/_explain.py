"""``telemetry-otel config --explain``: every setting with its value and source, then
every variable or configuration-file key that was read and not applied, and why."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from telemetry_otel import _env, _env_sdk
from telemetry_otel._config_file import OTEL_CONFIG_FILE
from telemetry_otel._endpoints import SIGNALS
from telemetry_otel.config import ENV_VARIABLES, TelemetryConfig

# Read for the library by the SDK's own code (the metric exporters' preferences).
_READ_BY_THE_SDK = (
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
)


def explain(config: TelemetryConfig, environ: Mapping[str, str]) -> str:
    """``describe()``, then a ``not applied`` line for each variable or file key read and
    not applied: overridden (by what), invalid (expecting what) or not supported."""
    lines = [config.describe()]
    notes = sorted(set(_not_applied(config, environ)))
    lines.append(f"not applied ({len(notes)})" + (":" if notes else ""))
    lines.extend(f"  {where}  {why}" for where, why in notes)
    return "\n".join(lines)


def _not_applied(config: TelemetryConfig, environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    origins = config._env_origins
    for where, why in config._env_notes:
        yield _shown(where, environ), why
    effective = config.environ
    for name, variables in ENV_VARIABLES.items():
        source = config._sources.get(name, "default")
        for variable, _ in variables:
            if variable not in effective or source in (variable, origins.get(variable)):
                continue
            if any(why.startswith("invalid") for w, why in config._env_notes if variable in w):
                continue
            where = origins.get(variable, variable)
            yield _shown(where, effective), f"overridden by {source}"
    for name, origin in origins.items():  # config fields a file set
        winner = config._sources.get(name)
        if name.startswith("OTEL_") or winner is None or winner == origin:
            continue
        yield origin, f"overridden by {winner}"
    if OTEL_CONFIG_FILE in environ and origins:
        return  # the OTEL_* variables were each noted as replaced by the file
    read = _read_variables()
    for variable in sorted(environ):
        if variable.startswith(("OTEL_", "TELEMETRY_")) and variable not in read:
            yield _shown(variable, environ), "not read by this library"


def _shown(where: str, environ: Mapping[str, str]) -> str:
    """A variable with its value masked as errors show it; a file key as it is."""
    if where in environ:
        return f"{where}={_env.shown_value(where, environ[where])}"
    return where


def _read_variables() -> set[str]:
    """Every variable the library reads, or has the SDK read for it."""
    read = {variable for variables in ENV_VARIABLES.values() for variable, _ in variables}
    for setting in _env.OTLP_SETTINGS:
        read |= {_env.otlp_variable(setting, signal) for signal in (None, *SIGNALS)}
    for module in (_env, _env_sdk):
        read |= {
            value
            for name, value in vars(module).items()
            if name.startswith(("OTEL_", "TELEMETRY_")) and isinstance(value, str)
        }
    return read | {OTEL_CONFIG_FILE, *_READ_BY_THE_SDK}
