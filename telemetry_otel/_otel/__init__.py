"""The OpenTelemetry side: the only package that imports the SDK, with the CLI's tools.

Layers, each importing only those below it: ``runtime`` (logger, forks, threads),
``mapping`` (legacy models to OTel data), ``sampling``, ``delivery`` (queues, accounting,
OTLP sending, the spool), ``destinations`` (one per endpoint), and ``pipeline``, which
composes them for one collector.
"""

import os as _os
import sys as _sys

_IMPORT_TIME_LIMIT = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"


def _import_the_sdks_tracing_past_a_malformed_limit() -> None:
    """``opentelemetry.sdk.trace`` reads OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT when it is
    imported, and raises ValueError for a malformed value (``abc``, ``-1``): importing
    this library would fail over a variable it does not read (the collector gives the
    SDK every limit whole; the README says which variables it reads). The module is
    imported here, with the malformed value out of the environment for the import's
    duration only."""
    value = _os.environ.get(_IMPORT_TIME_LIMIT)
    if value is None or "opentelemetry.sdk.trace" in _sys.modules:
        return
    text = value.strip().lower()
    if text == "unset" or text.isdigit():
        return
    del _os.environ[_IMPORT_TIME_LIMIT]
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    finally:
        _os.environ[_IMPORT_TIME_LIMIT] = value


_import_the_sdks_tracing_past_a_malformed_limit()
