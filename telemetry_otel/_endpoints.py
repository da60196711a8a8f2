"""Endpoint strings, parsed and checked without touching OpenTelemetry.

Config validation calls this so that a bad endpoint fails when the config is
built, not when the collector starts.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from types import MappingProxyType
from urllib.parse import SplitResult, parse_qsl, urlsplit

from telemetry_otel._redact import mask_url
from telemetry_otel._signals import OTLP_NAMES

SIGNALS = OTLP_NAMES  # "traces", "metrics", "logs"
COMPRESSIONS = ("gzip", "none")
_EMPTY: Mapping[str, str] = MappingProxyType({})
_OTLP_SCHEMES = {
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
    "http": ("http", False),
    "https": ("http", True),
}
# A port left out: HTTP's own, and OTLP/gRPC's registered 4317 (443 with TLS, as the
# vendors that serve gRPC behind TLS do).
_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 4317, "grpcs": 443}
_OPTIONS = {
    "otlp": (
        "protocol",
        "compression",
        "timeout_ms",
        "ca_file",
        "client_cert",
        "client_key",
        "signals",
    ),
    "console": ("format", "signals"),
    "file": ("max_bytes", "backups", "signals"),
    "prometheus": ("gauges",),
}
# How a shared Prometheus page shows a gauge that several processes set (see
# _otel/destinations/prometheus_page.py).
GAUGE_RULES = ("per_process", "sum", "max", "min", "last")
_FORMS = (
    "'console[?format=text|json]', 'grpc[s]://host[:port]', 'http[s]://host[:port][/prefix]', "
    "'file:///directory', 'prometheus://host:port[?gauges=rule]'"
)
DEFAULT_BACKUPS = 5
PROMETHEUS_INSTALL = "pip install 'telemetry-otel[prometheus]'"


@dataclass(frozen=True)
class OtlpTarget:
    """Where and how one signal goes to an OTLP receiver.

    Attributes:
        protocol: ``"grpc"`` or ``"http"`` (protobuf).
        url: gRPC: ``http(s)://host:port``; HTTP: the full URL, ``/v1/<signal>`` included.
        headers: Request headers (gRPC metadata).
        compression: ``"gzip"`` or ``"none"``.
        timeout_ms: Time allowed for one export request.
        ca_file: PEM file of the CAs to trust for TLS, or None for the system's.
        client_cert: PEM file of the client certificate (chain) shown for mutual TLS.
        client_key: PEM file of its private key (never read into a message).
        encoding: HTTP only: ``"protobuf"`` or ``"json"`` (OTLP/JSON, ``http/json``).
    """

    protocol: str
    url: str
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    compression: str = "gzip"
    timeout_ms: int = 10_000
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    encoding: str = "protobuf"

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")


@dataclass(frozen=True)
class Endpoint:
    """One parsed export endpoint.

    Attributes:
        kind: ``"console"``, ``"otlp"``, ``"file"`` or ``"prometheus"``.
        text: The string it was parsed from (or a description, for one from the environment).
        url: OTLP: ``http(s)://host:port[/prefix]``; file: the directory; prometheus:
            ``host:port`` to serve on.
        protocol: OTLP only: ``"grpc"`` or ``"http"``.
        options: The query options given in the string, checked.
        targets: OTLP endpoints from ``OTEL_EXPORTER_OTLP_*``: one target per signal.
        signals: The OTLP signals it takes (``signals=`` option, or the one whose path
            an HTTP URL ends in); Prometheus takes metrics only.
    """

    kind: str
    text: str
    url: str = ""
    protocol: str = ""
    options: Mapping[str, str | int] = field(default_factory=dict)
    targets: Mapping[str, OtlpTarget] | None = None
    signals: frozenset[str] = frozenset(SIGNALS)

    def takes(self, signal: str) -> bool:
        """Whether this endpoint receives ``signal`` (``"traces"``, ``"metrics"``, ``"logs"``)."""
        return signal in self.signals


def _error(text: str, problem: str) -> ValueError:
    return ValueError(f"export_endpoints: {mask_url(text)!r} {problem}")


def parse_endpoint(text: object) -> Endpoint:
    """Parse one ``export_endpoints`` entry, raising ValueError naming what is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"export_endpoints entries must be str, got {text!r}")
    parts = urlsplit(text)
    if text == "console" or text.startswith("console?"):
        options = _options(text, "console", text[8:])
        return Endpoint("console", text, options=options, signals=_signals(options))
    if parts.scheme == "file":
        return _parse_file(text, parts)
    if parts.scheme == "prometheus":
        host, port = _host_and_port(text, parts, default_port=None)
        if parts.path not in ("", "/") or parts.fragment:
            raise _error(text, "takes no path")
        options = _options(text, "prometheus", parts.query)
        if find_spec("opentelemetry.exporter.prometheus") is None:
            raise _error(text, f"needs the prometheus extra: {PROMETHEUS_INSTALL}")
        return Endpoint(
            "prometheus",
            text,
            url=f"{host}:{port}",
            options=options,
            signals=frozenset({"metrics"}),
        )
    if parts.scheme in _OTLP_SCHEMES:
        return _parse_otlp(text, parts)
    guess = _did_you_mean(text)
    raise ValueError(
        f"export_endpoints: unknown endpoint {mask_url(text)!r}{guess}; expected one of {_FORMS}"
    )


_SCHEMES = ("grpc", "grpcs", "http", "https", "file", "prometheus")
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})")


def _did_you_mean(text: str) -> str:
    """The endpoint meant, for a misspelt scheme (``htp://``) or a bare ``host:port``."""
    scheme, separator, rest = text.partition("://")
    if separator:
        close = difflib.get_close_matches(scheme.lower(), _SCHEMES, n=1, cutoff=0.6)
        return f" (did you mean {mask_url(f'{close[0]}://{rest}')!r}?)" if close else ""
    address = _HOST_PORT.fullmatch(text)
    if address is None:
        return ""
    if address.group(1) == "4318":
        return f" (did you mean {f'http://{text}'!r}, OTLP/HTTP's port?)"
    grpc = f" (did you mean {f'grpc://{text}'!r}"
    if address.group(1) == "4317":
        return f"{grpc}, OTLP/gRPC's port?)"
    return f"{grpc} or {f'http://{text}'!r}?)"


def _parse_otlp(text: str, parts: SplitResult) -> Endpoint:
    protocol, tls = _OTLP_SCHEMES[parts.scheme]
    host, port = _host_and_port(text, parts, default_port=_DEFAULT_PORTS[parts.scheme])
    if parts.fragment:
        raise _error(text, "takes no fragment")
    if protocol == "grpc" and parts.path not in ("", "/"):
        raise _error(text, "has a path; a gRPC endpoint takes none")
    options = _options(text, "otlp", parts.query)
    for name in ("ca_file", "client_cert", "client_key"):
        if name in options and not tls:
            raise _error(text, f"sets {name} without TLS; use grpcs:// or https://")
    given = options.get("protocol")
    if given is not None and (given == "grpc") != (protocol == "grpc"):
        spoken = "grpc" if protocol == "grpc" else "http/protobuf or http/json"
        raise _error(
            text, f"has protocol={given}, which {parts.scheme}:// does not speak ({spoken})"
        )
    if ("client_cert" in options) != ("client_key" in options):
        raise _error(text, "sets one of client_cert and client_key; mutual TLS takes both")
    path, signals = _signal_path(text, parts.path.rstrip("/"), _signals(options))
    scheme = "https" if tls else "http"
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    url = f"{scheme}://{netloc}{path}"
    return Endpoint("otlp", text, url=url, protocol=protocol, options=options, signals=signals)


def _signal_path(text: str, path: str, signals: frozenset[str]) -> tuple[str, frozenset[str]]:
    """A pasted signal URL (``…/v1/traces``) is that signal's URL: the prefix before it,
    taking that signal only, since the library adds ``/v1/<signal>`` itself."""
    prefix, _, last = path.rpartition("/")
    if not prefix.endswith("/v1") or last not in SIGNALS:
        return path, signals
    if "signals" in text.partition("?")[2] and signals != {last}:
        raise _error(text, f"ends in /v1/{last} but says signals={','.join(sorted(signals))}")
    return prefix[: -len("/v1")], frozenset({last})


def _signals(options: Mapping[str, str | int]) -> frozenset[str]:
    given = options.get("signals")
    return frozenset(str(given).split(",")) if given is not None else frozenset(SIGNALS)


def _parse_file(text: str, parts: SplitResult) -> Endpoint:
    if parts.netloc or not parts.path.startswith("/"):
        raise _error(text, "must be file:///absolute/directory")
    options = _options(text, "file", parts.query)
    if "backups" in options and "max_bytes" not in options:
        raise _error(text, "sets backups without max_bytes")
    return Endpoint("file", text, url=parts.path, options=options, signals=_signals(options))


def _host_and_port(text: str, parts: SplitResult, default_port: int | None) -> tuple[str, int]:
    if not parts.hostname:
        raise _error(text, "has no host")
    try:
        port = parts.port
    except ValueError:
        raise _error(text, "has an invalid port") from None
    if port is None:
        if default_port is None:
            raise _error(text, "needs an explicit port")
        port = default_port
    if port == 0:
        raise _error(text, "has port 0")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host, port


def _options(text: str, kind: str, query: str) -> dict[str, str | int]:
    options: dict[str, str | int] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in _OPTIONS[kind]:
            allowed = ", ".join(_OPTIONS[kind]) or "none"
            raise _error(text, f"has an unknown option {name!r} (allowed: {allowed})")
        options[name] = _option_value(text, name, value)
    return options


def _option_value(text: str, name: str, value: str) -> str | int:
    if name == "compression" and value not in COMPRESSIONS:
        raise _error(text, f"has compression={value!r}; expected gzip or none")
    if name == "format" and value not in ("text", "json"):
        raise _error(text, f"has format={value!r}; expected text or json")
    if name == "gauges" and value not in GAUGE_RULES:
        raise _error(text, f"has gauges={value!r}; expected one of {', '.join(GAUGE_RULES)}")
    if name == "protocol" and value not in HTTP_ENCODINGS and value != "grpc":
        raise _error(text, f"has protocol={value!r}; expected http/protobuf, http/json or grpc")
    if name in ("ca_file", "client_cert", "client_key") and not value:
        raise _error(text, f"has an empty {name}")
    if name == "signals":
        given = value.split(",")
        if not value or any(signal not in SIGNALS for signal in given):
            raise _error(
                text,
                f"has signals={value!r}; expected a comma-separated subset "
                "of traces, metrics, logs",
            )
    if name in ("timeout_ms", "max_bytes", "backups"):
        least = 0 if name == "backups" else 1
        if not value.isdigit() or int(value) < least:
            raise _error(text, f"has {name}={value!r}; expected a whole number >= {least}")
        return int(value)
    return value


# The OTLP/HTTP protocol values, by the body encoding each names.
HTTP_ENCODINGS = {"http/protobuf": "protobuf", "http/json": "json"}


def _encoding(endpoint: Endpoint, options: Mapping[str, str | int], base: OtlpTarget) -> str:
    """The body encoding: the ``protocol`` option's, else the variable's (HTTP only)."""
    if endpoint.protocol != "http":
        return "protobuf"
    if "protocol" in options:
        return HTTP_ENCODINGS[str(options["protocol"])]
    return base.encoding


def otlp_targets(
    endpoint: Endpoint, headers: Mapping[str, str], defaults: Mapping[str, OtlpTarget]
) -> dict[str, OtlpTarget]:
    """Each signal's target for an OTLP endpoint string.

    Options in the string win; then ``headers`` (the config field) when not empty;
    then the per-signal ``defaults`` (from the OTel variables).
    """
    if endpoint.targets is not None:
        return {s: t for s, t in endpoint.targets.items() if endpoint.takes(s)}
    options = endpoint.options
    targets = {}
    for signal in sorted(endpoint.signals, key=SIGNALS.index):
        base = defaults[signal]
        url = endpoint.url if endpoint.protocol == "grpc" else f"{endpoint.url}/v1/{signal}"
        targets[signal] = OtlpTarget(
            protocol=endpoint.protocol,
            url=url,
            headers=MappingProxyType(dict(headers)) if headers else base.headers,
            compression=str(options.get("compression", base.compression)),
            timeout_ms=int(options.get("timeout_ms", base.timeout_ms)),
            ca_file=str(options["ca_file"]) if "ca_file" in options else base.ca_file,
            client_cert=str(options.get("client_cert", base.client_cert) or "") or None,
            client_key=str(options.get("client_key", base.client_key) or "") or None,
            encoding=_encoding(endpoint, options, base),
        )
    return targets
