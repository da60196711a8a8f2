"""Endpoint strings, parsed and checked without touching OpenTelemetry.

Config validation calls this so that a bad endpoint fails when the config is
built, not when the collector starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

_OTLP_SCHEMES = {"grpc": "grpc", "http": "http", "https": "http"}


@dataclass(frozen=True)
class Endpoint:
    """One parsed export endpoint.

    Attributes:
        kind: ``"console"``, ``"grpc"`` (OTLP/gRPC) or ``"http"`` (OTLP/HTTP protobuf).
        url: For OTLP, the base URL (``http://host:port`` or ``https://host:port/prefix``).
        text: The string it was parsed from.
    """

    kind: str
    url: str
    text: str


def parse_endpoint(text: object) -> Endpoint:
    """Parse one ``export_endpoints`` entry, raising ValueError naming what is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"export_endpoints entries must be str, got {text!r}")
    if text == "console":
        return Endpoint("console", "", text)
    parts = urlsplit(text)
    kind = _OTLP_SCHEMES.get(parts.scheme)
    if kind is None:
        raise ValueError(
            f"export_endpoints: unknown endpoint {text!r}; expected 'console', "
            "'grpc://host:port', 'http://host:port' or 'https://host:port'"
        )
    _check_host_and_port(text, parts.hostname, parts)
    if parts.query or parts.fragment:
        raise ValueError(f"export_endpoints: {text!r} takes no query or fragment")
    if kind == "grpc" and parts.path not in ("", "/"):
        raise ValueError(f"export_endpoints: {text!r}: a gRPC endpoint takes no path")
    scheme = "https" if parts.scheme == "https" else "http"
    url = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return Endpoint(kind, url, text)


def _check_host_and_port(text: str, host: str | None, parts: object) -> None:
    if not host:
        raise ValueError(f"export_endpoints: {text!r} has no host")
    try:
        port = parts.port  # type: ignore[attr-defined]
    except ValueError:
        raise ValueError(f"export_endpoints: {text!r} has an invalid port") from None
    if port is None:
        raise ValueError(f"export_endpoints: {text!r} needs an explicit port")
    if port == 0:
        raise ValueError(f"export_endpoints: {text!r} has port 0")
