"""Configuration from environment variables: ``TELEMETRY_*`` and the standard ``OTEL_*``.

A malformed ``TELEMETRY_*`` variable raises ValueError naming the variable and its
value: it is this library's own, and a typo should stop a deploy. A malformed ``OTEL_*``
variable logs one warning saying the same and is ignored, as the OpenTelemetry
specification asks (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):
operators set those for every SDK of a fleet at once. OTLP variables follow
https://opentelemetry.io/docs/specs/otel/protocol/exporter/
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from telemetry_otel import _env_sdk as env_sdk
from telemetry_otel._config_file import OTEL_CONFIG_FILE, ConfigFileError, read_config_file
from telemetry_otel._endpoints import (
    COMPRESSIONS,
    HTTP_ENCODINGS,
    SIGNALS,
    Endpoint,
    OtlpTarget,
    parse_endpoint,
)
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._redact import header_problem, mask_pairs, mask_url
from telemetry_otel._tls import client_identity_problem
from telemetry_otel.models import EventSeverity

Parser = Callable[[str, str], Any]
TELEMETRY_ENABLED = "TELEMETRY_ENABLED"
TELEMETRY_BUFFER_SIZE = "TELEMETRY_BUFFER_SIZE"
TELEMETRY_FLUSH_INTERVAL_MS = "TELEMETRY_FLUSH_INTERVAL_MS"
TELEMETRY_EXPORT_ENDPOINTS = "TELEMETRY_EXPORT_ENDPOINTS"
TELEMETRY_SAMPLE_RATE = "TELEMETRY_SAMPLE_RATE"
TELEMETRY_TAGS = "TELEMETRY_TAGS"
TELEMETRY_SERVICE_NAME = "TELEMETRY_SERVICE_NAME"
TELEMETRY_SHUTDOWN_TIMEOUT_MS = "TELEMETRY_SHUTDOWN_TIMEOUT_MS"
TELEMETRY_SPOOL_DIR = "TELEMETRY_SPOOL_DIR"
TELEMETRY_PROMETHEUS_DIR = "TELEMETRY_PROMETHEUS_DIR"
TELEMETRY_SPOOL_MAX_BYTES = "TELEMETRY_SPOOL_MAX_BYTES"
TELEMETRY_MAX_EXPORT_BATCH_BYTES = "TELEMETRY_MAX_EXPORT_BATCH_BYTES"
TELEMETRY_MAX_ATTRIBUTES = "TELEMETRY_MAX_ATTRIBUTES"
TELEMETRY_MAX_ATTRIBUTE_LENGTH = "TELEMETRY_MAX_ATTRIBUTE_LENGTH"
TELEMETRY_MAX_METRIC_SERIES = "TELEMETRY_MAX_METRIC_SERIES"
TELEMETRY_REDACT = "TELEMETRY_REDACT"
TELEMETRY_REDACT_KEYS = "TELEMETRY_REDACT_KEYS"
TELEMETRY_USE_GLOBAL_PROVIDERS = "TELEMETRY_USE_GLOBAL_PROVIDERS"
TELEMETRY_SELF_METRICS = "TELEMETRY_SELF_METRICS"
TELEMETRY_TRACE_SAMPLE_RATE = "TELEMETRY_TRACE_SAMPLE_RATE"
TELEMETRY_EVENT_SAMPLE_RATE = "TELEMETRY_EVENT_SAMPLE_RATE"
TELEMETRY_EVENT_KEEP_SEVERITY = "TELEMETRY_EVENT_KEEP_SEVERITY"
TELEMETRY_KEEP_ERROR_TRACES = "TELEMETRY_KEEP_ERROR_TRACES"
TELEMETRY_EVENTS_FOLLOW_TRACES = "TELEMETRY_EVENTS_FOLLOW_TRACES"
TELEMETRY_KEEP_TRACES_SLOWER_THAN_MS = "TELEMETRY_KEEP_TRACES_SLOWER_THAN_MS"
TELEMETRY_TRACE_DECISION_WAIT_MS = "TELEMETRY_TRACE_DECISION_WAIT_MS"
TELEMETRY_MAX_PENDING_SPANS = "TELEMETRY_MAX_PENDING_SPANS"
TELEMETRY_MAX_TRACES_PER_SECOND = "TELEMETRY_MAX_TRACES_PER_SECOND"
TELEMETRY_PROMETHEUS_REGISTRIES = "TELEMETRY_PROMETHEUS_REGISTRIES"
TELEMETRY_STATSD_ENDPOINT = "TELEMETRY_STATSD_ENDPOINT"
TELEMETRY_STATSD_ALLOW_REMOTE = "TELEMETRY_STATSD_ALLOW_REMOTE"
OTEL_ATTRIBUTE_COUNT_LIMIT = "OTEL_ATTRIBUTE_COUNT_LIMIT"
OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
OTLP_PREFIX = "OTEL_EXPORTER_OTLP_"
OTLP_SETTINGS = (
    "ENDPOINT",
    "PROTOCOL",
    "HEADERS",
    "COMPRESSION",
    "TIMEOUT",
    "CERTIFICATE",
    "CLIENT_CERTIFICATE",
    "CLIENT_KEY",
    "INSECURE",
)
_PROTOCOLS = ("grpc", "http/protobuf", "http/json")
_DEFAULT_URLS = {"grpc": "http://localhost:4317", "http": "http://localhost:4318"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def otlp_variable(setting: str, signal: str | None = None) -> str:
    """``OTEL_EXPORTER_OTLP_<SETTING>`` or its ``_<SIGNAL>_`` variant."""
    return f"{OTLP_PREFIX}{signal.upper()}_{setting}" if signal else f"{OTLP_PREFIX}{setting}"


@dataclass
class EnvSettings:
    """What the environment says, with the variable each value came from."""

    fields: dict[str, tuple[Any, str]] = field(default_factory=dict)
    otlp_defaults: dict[str, OtlpTarget] = field(default_factory=dict)
    # What was read and not applied, and why: (the variable or file key, the reason).
    notes: list[tuple[str, str]] = field(default_factory=list)
    # The variables read: the environment's, or with OTEL_CONFIG_FILE those the file
    # stands for (the resource and limits are read from them later).
    environ: Mapping[str, str] = field(default_factory=dict)
    # A configuration file's variables and fields: the file's line each came from.
    origins: Mapping[str, str] = field(default_factory=dict)
    # From OTLP endpoint and OTEL_<SIGNAL>_EXPORTER variables: used when the config names
    # no endpoint.
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def switched_off_by(self) -> str | None:
        """The variable that turns collection off, if one does: the operator's switch,
        which wins over code that passes ``enabled=True``."""
        enabled = self.fields.get("enabled")
        return enabled[1] if enabled is not None and enabled[0] is False else None


def _bad(name: str, value: str, expected: str) -> ValueError:
    return ValueError(
        f"{env_sdk.variable_name(name)}={shown_value(name, value)}: expected {expected}"
    )


def shown_value(name: str, value: str) -> str:
    """A variable's value as errors and logs may show it: never a header value, a URL's
    password or a sensitive tag's value."""
    if name.endswith("_HEADERS"):
        return "<not shown: headers carry credentials>"
    if name.endswith("ENDPOINT") or name.endswith("ENDPOINTS"):
        return repr(", ".join(mask_url(part) for part in value.split(",")))
    if name.endswith("_TAGS") or name.endswith("RESOURCE_ATTRIBUTES"):
        return repr(mask_pairs(value))
    return repr(value)


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad(name, value, "true or false")


def parse_positive_int(name: str, value: str) -> int:
    text = value.strip()
    # isascii: str.isdigit() also takes "²" and other digits int() refuses.
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise _bad(name, value, "a whole number of at least 1")
    return int(text)


def parse_rate(name: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise _bad(name, value, "a number between 0 and 1") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise _bad(name, value, "a number between 0 and 1")
    return rate


def parse_positive_number_or_none(name: str, value: str) -> float | None:
    """A number above 0, or ``none`` (off)."""
    if value.strip().lower() == "none":
        return None
    try:
        number = float(value)
    except ValueError:
        raise _bad(name, value, "a number above 0, or none") from None
    if not (math.isfinite(number) and number > 0):
        raise _bad(name, value, "a number above 0, or none")
    return number


def parse_severity_or_none(name: str, value: str) -> EventSeverity | None:
    """An EventSeverity by its value (``error``), or ``none``."""
    text = value.strip().lower()
    if text == "none":
        return None
    try:
        return EventSeverity(text)
    except ValueError:
        names = ", ".join(s.value for s in EventSeverity)
        raise _bad(name, value, f"one of {names}, or none") from None


def parse_pairs(name: str, value: str) -> dict[str, str]:
    """``k=v,k2=v2`` with URL-encoded keys and values (the W3C baggage form OTel uses)."""
    pairs = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, item_value = item.partition("=")
        if not sep or not key.strip():
            raise _bad(name, value, "comma-separated key=value pairs")
        pairs[unquote(key.strip())] = unquote(item_value.strip())
    return pairs


def parse_headers(name: str, value: str) -> dict[str, str]:
    """OTLP headers (``k=v`` pairs), each checked as a header; the value never shown."""
    headers = {key.lower(): item for key, item in parse_pairs(name, value).items()}
    for key, item in headers.items():
        problem = header_problem(key, item)
        if problem is not None:
            raise _bad(name, value, f"headers that can be sent, but {problem}")
    return headers


def parse_endpoints(name: str, value: str) -> list[str]:
    endpoints = [item.strip() for item in value.split(",") if item.strip()]
    for text in endpoints:
        try:
            parse_endpoint(text)
        except ValueError as error:
            raise ValueError(f"environment variable {name}: {error}") from None
    return endpoints


def parse_service_name(name: str, value: str) -> str:
    if not value.strip():
        raise _bad(name, value, "a non-empty service name")
    return value.strip()


def parse_otel_bool(name: str, value: str) -> bool:
    """A boolean as the specification defines it: ``true`` (any case) or ``false``;
    empty is false, anything else is invalid."""
    text = value.strip().lower()
    if text == "true":
        return True
    if text in ("false", ""):
        return False
    raise _bad(name, value, "true or false")


def parse_disabled(name: str, value: str) -> bool:
    return not parse_otel_bool(name, value)


_IGNORED: Any = object()


def _parsed(name: str, value: str, parse: Callable[[str, str], Any]) -> Any:
    """A variable's value; a malformed ``OTEL_*`` one is _IGNORED, with one warning."""
    try:
        return parse(name, value)
    except ValueError as error:
        if not name.startswith("OTEL_"):
            raise
        warn_limited(f"env:{name}", "%s; ignored", error)
        env_sdk.note(name, f"invalid: {str(error).rpartition(': ')[2]}")
        return _IGNORED


def parse_path(name: str, value: str) -> str:
    if not value.strip():
        raise _bad(name, value, "a directory path")
    return value.strip()


def parse_registries(name: str, value: str) -> list[str]:
    """Only the global registry can be named in a variable: ``default``."""
    if value.strip().lower() != "default":
        raise _bad(name, value, "default (the global prometheus_client registry)")
    return ["default"]


def parse_statsd_endpoint(name: str, value: str) -> str:
    from telemetry_otel._options import statsd_endpoint

    try:
        statsd_endpoint("statsd_endpoint", value.strip())
    except ValueError:
        raise _bad(name, value, "statsd://host:port, without credentials") from None
    return value.strip()


def parse_key_list(name: str, value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def read_env(
    environ: Mapping[str, str], fields: Mapping[str, Sequence[tuple[str, Parser]]]
) -> EnvSettings:
    """Parse every variable this library reads: ``fields`` maps each config field to the
    variables that set it, highest precedence first (the config declares them).
    ValueError on the first malformed ``TELEMETRY_*`` one; a malformed ``OTEL_*`` one is
    ignored, with a warning.

    With ``OTEL_CONFIG_FILE``, the file stands for the ``OTEL_*`` variables, as the
    specification says (see _config_file.py); ``TELEMETRY_*`` ones still come first."""
    reading = env_sdk.Reading(origins={}, notes=[])
    file_fields: dict[str, Any] = {}
    path = environ.get(OTEL_CONFIG_FILE)
    if path:
        environ, file_fields = _with_config_file(environ, path, reading)
    token = env_sdk.READING.set(reading)
    try:
        settings = _read_env(environ, fields)
    finally:
        env_sdk.READING.reset(token)
    for name, value in file_fields.items():
        if name not in settings.fields:
            settings.fields[name] = (value, reading.origins[name])
    settings.fields = {
        name: (value, reading.origins.get(source.partition("=")[0], source))
        for name, (value, source) in settings.fields.items()
    }
    settings.notes = reading.notes
    settings.environ = MappingProxyType(dict(environ))
    settings.origins = MappingProxyType(dict(reading.origins))
    return settings


def _with_config_file(
    environ: Mapping[str, str], path: str, reading: env_sdk.Reading
) -> tuple[Mapping[str, str], dict[str, Any]]:
    """The environment a configuration file stands for: ``TELEMETRY_*`` variables kept,
    the ``OTEL_*`` ones replaced by the file's; and the config fields it sets. A file
    that cannot be read is one warning, and the ``OTEL_*`` variables are read instead."""
    try:
        found = read_config_file(path, environ)
    except ConfigFileError as error:
        warn_limited("env:config-file", "%s; reading the OTEL_* variables instead", error)
        reading.notes.append((OTEL_CONFIG_FILE, f"invalid: {error}"))
        return environ, {}
    replaced = "not applied: OTEL_CONFIG_FILE replaces the OTEL_* variables"
    reading.notes.extend(
        (name, replaced)
        for name in sorted(environ)
        if name.startswith("OTEL_") and name != OTEL_CONFIG_FILE
    )
    reading.notes.extend(found.notes)
    reading.origins.update(found.origins)
    kept = {name: value for name, value in environ.items() if not name.startswith("OTEL_")}
    fields = {}
    for name, value in found.fields.items():
        if type(value) is int and value >= 1:
            fields[name] = value
        else:
            reading.notes.append((found.origins[name], "invalid: expected a whole number >= 1"))
            del reading.origins[name]
    return {**kept, **found.variables}, fields


def _read_env(
    environ: Mapping[str, str], fields: Mapping[str, Sequence[tuple[str, Parser]]]
) -> EnvSettings:
    settings = EnvSettings()
    for config_field, variables in fields.items():
        for name, parse in variables:
            if name in environ:
                value = _parsed(name, environ[name], parse)
                if value is not _IGNORED:
                    settings.fields[config_field] = (value, name)
                    break
    if OTEL_RESOURCE_ATTRIBUTES in environ:  # the SDK reads it, and skips bad pairs
        try:
            parse_pairs(OTEL_RESOURCE_ATTRIBUTES, environ[OTEL_RESOURCE_ATTRIBUTES])
        except ValueError as error:
            warn_limited(
                f"env:{OTEL_RESOURCE_ATTRIBUTES}",
                "%s; pairs that cannot be read are skipped",
                error,
            )
    if "trace_sample_rate" not in settings.fields:
        sampled = env_sdk.sampler_rate(environ)
        if sampled is not None:
            settings.fields["trace_sample_rate"] = sampled
    urls = _valid_urls(environ)
    settings.otlp_defaults = {s: _otlp_target(environ, s, urls) for s in SIGNALS}
    endpoint_variables = [otlp_variable("ENDPOINT", s) for s in (None, *SIGNALS)]
    set_variables = [name for name in endpoint_variables if name in urls]
    settings.endpoints = env_sdk.endpoints(
        environ, settings.otlp_defaults, set_variables, env_sdk.exporters(environ)
    )
    return settings


def _setting(
    environ: Mapping[str, str], setting: str, signal: str, parse: Callable[[str, str], Any]
) -> Any:
    """The per-signal variable's value if set and valid, else the generic one's; None."""
    for name in (otlp_variable(setting, signal), otlp_variable(setting)):
        if name in environ:
            value = _parsed(name, environ[name], parse)
            if value is not _IGNORED:
                return value
    return None


def _otlp_target(environ: Mapping[str, str], signal: str, urls: Mapping[str, str]) -> OtlpTarget:
    spoken = _setting(environ, "PROTOCOL", signal, _parse_protocol) or "http/protobuf"
    protocol = "grpc" if spoken == "grpc" else "http"
    headers = _setting(environ, "HEADERS", signal, parse_headers)
    insecure = bool(_setting(environ, "INSECURE", signal, parse_otel_bool))
    return OtlpTarget(
        protocol=protocol,
        url=_otlp_url(urls, signal, protocol, insecure),
        headers=MappingProxyType(headers or {}),
        compression=_setting(environ, "COMPRESSION", signal, _parse_compression) or "gzip",
        timeout_ms=_setting(environ, "TIMEOUT", signal, parse_positive_int) or 10_000,
        ca_file=_setting(environ, "CERTIFICATE", signal, _parse_certificate),
        encoding=HTTP_ENCODINGS.get(spoken, "protobuf"),
        **_client_identity(environ, signal),
    )


def _client_identity(environ: Mapping[str, str], signal: str) -> dict[str, Any]:
    """The client certificate and key for mutual TLS, when both are set and usable; a
    pair that is not (one of the two, unreadable, not each other's) is ignored, with one
    warning, as any malformed ``OTEL_*`` variable is."""
    cert = _setting(environ, "CLIENT_CERTIFICATE", signal, _parse_certificate)
    key = _setting(environ, "CLIENT_KEY", signal, _parse_certificate)
    if cert is None and key is None:
        return {}
    names = f"OTEL_EXPORTER_OTLP[_{signal.upper()}]_CLIENT_CERTIFICATE and _CLIENT_KEY"
    problem = (
        "only one of the two is set; mutual TLS takes both"
        if cert is None or key is None
        else client_identity_problem(cert, key)
    )
    if problem is not None:
        warn_limited(f"env:client-identity:{signal}", "%s: %s; ignored", names, problem)
        return {}
    return {"client_cert": cert, "client_key": key}


def _parse_protocol(name: str, value: str) -> str:
    # Case-insensitive, as the specification asks of every enum-valued variable.
    protocol = value.strip().lower()
    if protocol not in _PROTOCOLS:
        raise _bad(name, value, "grpc, http/protobuf or http/json")
    return protocol


def _parse_compression(name: str, value: str) -> str:
    if value.strip().lower() not in COMPRESSIONS:
        raise _bad(name, value, "gzip or none")
    return value.strip().lower()


def _parse_certificate(name: str, value: str) -> str:
    if not value.strip():
        raise _bad(name, value, "a path to a PEM file")
    return value.strip()


def _valid_urls(environ: Mapping[str, str]) -> dict[str, str]:
    """The OTLP endpoint variables that are set and valid, by name. One without a scheme
    (``collector:4317``) is valid only over gRPC."""
    urls = {}
    for signal in (None, *SIGNALS):
        name = otlp_variable("ENDPOINT", signal)
        if name not in environ:
            continue
        url = _parsed(name, environ[name], _check_url)
        if url is _IGNORED:
            continue
        protocol = _setting(environ, "PROTOCOL", signal or "", _parse_protocol) or "http"
        if "://" not in url and protocol != "grpc":
            _parsed(name, url, _needs_scheme)
            continue
        urls[name] = url
    return urls


def _needs_scheme(name: str, value: str) -> str:
    raise _bad(name, value, "a URL such as http://host:4318 (only OTLP/gRPC takes host:port)")


def _otlp_url(urls: Mapping[str, str], signal: str, protocol: str, insecure: bool) -> str:
    """A per-signal endpoint is used as given; a generic one gets /v1/<signal> on HTTP,
    before any query string. Over gRPC a URL without a port gets OTLP's (4317, or 443
    with TLS), since gRPC's own default is 443 either way; one without a scheme
    (``collector:4317``) uses TLS unless ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_INSECURE`` is
    true, as the specification says."""
    names = (otlp_variable("ENDPOINT", signal), otlp_variable("ENDPOINT"))
    name = next((n for n in names if n in urls), None)
    url = urls[name] if name else _DEFAULT_URLS[protocol]
    if "://" not in url:  # gRPC only (see _valid_urls)
        url = f"{'http' if insecure else 'https'}://{url}"
    if protocol == "grpc":
        return _with_grpc_port(url)
    per_signal = urls.get(names[0])
    if per_signal is not None:
        return per_signal
    parts = urlsplit(url)
    path = f"{parts.path.rstrip('/')}/v1/{signal}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _port_problem(parts: SplitResult) -> bool:
    """Whether a URL's port is malformed (``parts.port`` raises on it)."""
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return True
    return False


def _with_grpc_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port is not None:
        return url
    port = 443 if parts.scheme == "https" else 4317
    return urlunsplit((parts.scheme, f"{parts.netloc}:{port}", parts.path, parts.query, ""))


def _check_url(name: str, value: str) -> str:
    text = value.strip()
    if "://" not in text:  # host:port, for gRPC (see _otlp_url)
        parts = urlsplit(f"//{text}")
        if not parts.hostname or parts.path or _port_problem(parts):
            raise _bad(name, value, "a URL such as http://host:4318")
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or _port_problem(parts):
        raise _bad(name, value, "a URL such as http://host:4318")
    if name == otlp_variable("ENDPOINT"):
        return _without_signal_path(name, text)
    return text


def _without_signal_path(name: str, url: str) -> str:
    """The generic endpoint is a base the signal paths are added to: one that already
    ends in a signal's path (pasted from a per-signal setting) is taken as its base."""
    parts = urlsplit(url)
    prefix, _, last = parts.path.rstrip("/").rpartition("/")
    if not prefix.endswith("/v1") or last not in SIGNALS:
        return url
    base = urlunsplit((parts.scheme, parts.netloc, prefix[: -len("/v1")], parts.query, ""))
    warn_limited(
        f"env:{name}:path",
        "environment variable %s=%s ends in /v1/%s, which is added for each signal: "
        "using %s; set that signal's own URL as %s",
        name,
        shown_value(name, url),
        last,
        mask_url(base),
        otlp_variable("ENDPOINT", last),
    )
    return base
