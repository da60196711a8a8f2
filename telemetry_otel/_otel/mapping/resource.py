"""The resource every signal of a collector carries, and where each attribute came from."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from opentelemetry.sdk.resources import Resource

from telemetry_otel._env import OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
from telemetry_otel._otel.runtime.sdk import detected_resource
from telemetry_otel._redact import REDACTED, SENSITIVE_WORDS, is_sensitive
from telemetry_otel._shaping import Shaper

if TYPE_CHECKING:  # the config imports this module when asked to describe itself
    from telemetry_otel.config import TelemetryConfig

SERVICE_NAME = "service.name"


def build_resource(
    config: TelemetryConfig, shaper: Shaper | None = None, environ: Mapping[str, str] | None = None
) -> Resource:
    """The resource, as ``Resource.create`` builds it: what the SDK detects, then
    ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``, then the global tags, and
    ``service_name`` over a ``service.name`` tag.

    With a shaper, the attributes users give (the variable's and the tags) are redacted
    and limited as tags are, wherever they came from; the SDK's own and the service name
    are not cut (the specification exempts resources from the limits: only what a user
    may fill with anything is bounded here)."""
    environ = config.environ if environ is None else environ
    detected = detected_resource()
    given: dict[str, Any] = {**env_pairs(environ.get(OTEL_RESOURCE_ATTRIBUTES, "")), **config.tags}
    if shaper is not None:
        given = dict(shaper.attributes(given)[0])
    attributes: dict[str, Any] = {**detected.attributes, **given}
    if environ.get(OTEL_SERVICE_NAME) and SERVICE_NAME not in config.tags:
        attributes[SERVICE_NAME] = environ[OTEL_SERVICE_NAME]
    if config.service_name is not None:
        attributes[SERVICE_NAME] = config.service_name
    if not attributes.get(SERVICE_NAME):
        attributes[SERVICE_NAME] = f"unknown_service:{os.path.basename(sys.executable)}"
    return Resource(attributes, detected.schema_url)


def describe_resource(
    config: TelemetryConfig, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The resource a collector built from ``config`` sends, one attribute a line, with
    where each value came from; the values of sensitive keys masked."""
    environ = config.environ if environ is None else environ
    attributes = build_resource(config, environ=environ).attributes
    from_env = env_pairs(environ.get(OTEL_RESOURCE_ATTRIBUTES, ""))
    width = max((len(key) for key in attributes), default=0)
    lines = []
    for key, value in sorted(attributes.items()):
        source = _source(key, config, environ, from_env)
        source = config._env_origins.get(source, source)  # a configuration file's line
        shown = REDACTED if is_sensitive(key, _words(config)) else value
        lines.append(f"resource {key:<{width}} {shown!r}  ({source})")
    return lines


def _source(
    key: str, config: TelemetryConfig, environ: Mapping[str, str], from_env: Mapping[str, str]
) -> str:
    if key == SERVICE_NAME and config.service_name is not None:
        return "service_name"
    if key in config.tags:
        return "tags"
    if key == SERVICE_NAME and environ.get(OTEL_SERVICE_NAME):
        return OTEL_SERVICE_NAME
    if key in from_env:
        return OTEL_RESOURCE_ATTRIBUTES
    if key == SERVICE_NAME:
        return "OpenTelemetry default"
    return "OpenTelemetry SDK"


def env_pairs(text: str) -> dict[str, str]:
    """The pairs of OTEL_RESOURCE_ATTRIBUTES, read as the SDK reads them (a malformed
    pair is skipped: the environment check warns of it, without its text)."""
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = unquote(value.strip())
    return pairs


def _words(config: TelemetryConfig) -> frozenset[str]:
    return SENSITIVE_WORDS | {"".join(k.lower().split()) for k in config.redact_keys}
