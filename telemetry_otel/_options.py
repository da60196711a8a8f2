"""How TelemetryConfig's options are declared (``option``) and how values are checked.

Each check takes the field's name and a value, raises TypeError or ValueError naming
``TelemetryConfig.<field>`` and the value (never a header's value), and returns the
value as the config keeps it.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from telemetry_otel._redact import header_problem, mask_url
from telemetry_otel._validation import _check_tags, enum_error, enum_member
from telemetry_otel.models import EventSeverity


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()
Parser = Callable[[str, str], Any]
Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Option:
    """Everything about one config field but its name and type: its default, what it
    does, how a value is checked (and normalised), and the variables that set it,
    highest precedence first."""

    default: Any
    doc: str
    check: Check
    variables: tuple[tuple[str, Parser], ...] = ()


def option(default: Any, doc: str, check: Check, *variables: tuple[str, Parser]) -> Any:
    """A config field, declared once: see Option."""
    declared = Option(default, doc, check, variables)
    return dataclass_field(default=_UNSET, metadata={"option": declared})


# -- how values are checked: each returns the value as the config keeps it --------------------


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"TelemetryConfig.{name} must be a bool, got {value!r}")
    return value


def positive_int(name: str, value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"TelemetryConfig.{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"TelemetryConfig.{name} must be at least 1, got {value!r}")
    return value


def positive_int_or_none(name: str, value: object) -> int | None:
    return None if value is None else positive_int(name, value)


def rate(name: str, value: object) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"TelemetryConfig.{name} must be a number, got {value!r}")
    assert isinstance(value, (int, float))
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"TelemetryConfig.{name} must be between 0 and 1, got {value!r}")
    return value


def rate_or_none(name: str, value: object) -> float | None:
    return None if value is None else rate(name, value)


def positive_number_or_none(name: str, value: object) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float):
        raise TypeError(f"TelemetryConfig.{name} must be a number or None, got {value!r}")
    assert isinstance(value, (int, float))
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"TelemetryConfig.{name} must be above 0, got {value!r}")
    return value


def severity_or_none(name: str, value: object) -> EventSeverity | None:
    """An EventSeverity by the models' rule (the member, or its name in any case)."""
    if value is None:
        return None
    member = enum_member(EventSeverity, value)
    if member is None:
        raise enum_error("TelemetryConfig", name, EventSeverity, value, True)
    return member


def optional_path(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"TelemetryConfig.{name} must be a non-empty path or None, got {value!r}")
    return value


def key_list(name: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        raise TypeError(f"TelemetryConfig.{name} must be a list of non-empty str, got {value!r}")
    return value


def tags(name: str, value: Any) -> Any:
    _check_tags("TelemetryConfig", name, value)
    return value


def service_name(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"TelemetryConfig.{name} must be a non-empty str or None, got {value!r}")
    return value


def endpoint_list(name: str, value: object) -> Any:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"TelemetryConfig.{name} must be a list of str, got {value!r}")
    return value  # each string is parsed by endpoints(), with the environment's


def headers(name: str, headers: object) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise TypeError(f"TelemetryConfig.{name} must be a dict, got {type(headers).__name__}")
    for key, value in headers.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            # The value is never shown: headers carry credentials.
            raise TypeError(
                f"TelemetryConfig.{name} must map non-empty str names to str values; "
                f"bad entry for {key!r}"
            )
        problem = header_problem(key, value)
        if problem is not None:
            shown = repr(key) if header_problem(key, "") is None else "a header"
            raise ValueError(f"TelemetryConfig.{name}: {shown} cannot be sent: {problem}")
    return headers


def registry_list(name: str, value: object) -> list[Any]:
    """prometheus_client registries (anything with a ``collect()``), or ``"default"`` for
    the global one; the string ``"default"`` alone stands for ``["default"]``."""
    if value == "default" and isinstance(value, str):
        return ["default"]
    if not isinstance(value, list):
        raise TypeError(
            f"TelemetryConfig.{name} must be a list of prometheus_client registries "
            f'or "default", got {value!r}'
        )
    for item in value:
        if isinstance(item, str):
            if item != "default":
                raise ValueError(
                    f'TelemetryConfig.{name}: a registry named by a str must be "default" '
                    f"(the global prometheus_client registry), got {item!r}"
                )
            if importlib.util.find_spec("prometheus_client") is None:
                raise ValueError(
                    f'TelemetryConfig.{name}: "default" is prometheus_client\'s registry, and '
                    "prometheus_client is not installed (the prometheus extra installs it)"
                )
        elif not callable(getattr(item, "collect", None)):
            raise TypeError(
                f"TelemetryConfig.{name}: {item!r} is not a prometheus_client registry "
                "(it has no collect())"
            )
    return list(value)


def statsd_endpoint(name: str, value: object) -> str | None:
    """``statsd://host:port``: where the StatsD listener takes UDP packets; None: off."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"TelemetryConfig.{name} must be a str or None, got {value!r}")
    if "@" in value.partition("://")[2]:
        # A listener takes no credentials: a user:password@ here is a mistake to point
        # out, and the password is never repeated.
        raise ValueError(
            f"TelemetryConfig.{name} takes no credentials (a StatsD listener has none), "
            f"got {mask_url(value)!r}"
        )
    host, port = statsd_host_port(value)
    if not host or port is None:
        raise ValueError(
            f"TelemetryConfig.{name} must be statsd://host:port (port 0 to 65535), "
            f"got {mask_url(value)!r}"
        )
    return value


def statsd_host_port(url: str) -> tuple[str, int | None]:
    """The host (brackets taken off an IPv6 address) and port of a statsd:// URL."""
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme.lower() != "statsd" or not port.isdigit() or int(port) > 65535:
        return "", None
    return host.strip("[]"), int(port)


def statsd_reachable(endpoint: str | None, allow_remote: bool) -> None:
    """A listener on anything but loopback takes packets from the network: only when
    the config says so."""
    if endpoint is None or allow_remote:
        return
    host, _ = statsd_host_port(endpoint)
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"TelemetryConfig.statsd_endpoint {endpoint!r} listens beyond loopback: "
                "set statsd_allow_remote=True (TELEMETRY_STATSD_ALLOW_REMOTE=true) to allow it"
            )
