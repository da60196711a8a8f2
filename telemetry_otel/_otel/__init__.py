"""The OpenTelemetry side: the only package that imports the SDK, with the CLI's tools.

Layers, each importing only those below it: ``runtime`` (logger, forks, threads),
``mapping`` (legacy models to OTel data), ``sampling``, ``delivery`` (queues, accounting,
OTLP sending, the spool), ``destinations`` (one per endpoint), and ``pipeline``, which
composes them for one collector.
"""

import os as _os
import sys as _sys


def _imported_with(module: str, variable: str, value: str | None) -> None:
    """Import ``module`` with ``variable`` set to ``value`` (None: unset) for the import's
    duration only, then put the environment back as it was."""
    given = _os.environ.get(variable)
    if value is None:
        del _os.environ[variable]
    else:
        _os.environ[variable] = value
    try:
        __import__(module)
    finally:
        if given is not None:
            _os.environ[variable] = given


def _import_the_sdks_tracing_past_a_malformed_limit() -> None:
    """``opentelemetry.sdk.trace`` reads OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT when it is
    imported, and raises ValueError for a malformed value (``abc``, ``-1``): importing
    this library would fail over a variable it does not read (the collector gives the
    SDK every limit whole; the README says which variables it reads)."""
    value = _os.environ.get("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT")
    if value is None or "opentelemetry.sdk.trace" in _sys.modules:
        return
    text = value.strip().lower()
    if text != "unset" and not text.isdigit():
        _imported_with("opentelemetry.sdk.trace", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", None)


def _import_propagation_past_an_unknown_propagator() -> None:
    """``opentelemetry.propagate`` loads the propagators OTEL_PROPAGATORS names when it is
    imported, and raises ValueError for one that is not installed (a typo, or ``b3``
    without its package): importing this library would fail. Those are left out, with
    one warning; the others are loaded as the API loads them."""
    value = _os.environ.get("OTEL_PROPAGATORS")
    if not value or "opentelemetry.propagate" in _sys.modules:
        return
    from importlib.metadata import entry_points

    installed = {point.name for point in entry_points(group="opentelemetry_propagator")}
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [n for n in names if n not in installed and n.lower() != "none"]
    if not unknown:
        return
    import logging

    logging.getLogger("telemetry_otel").warning(
        "OTEL_PROPAGATORS names propagators that are not installed, left out: %s (installed: %s)",
        ", ".join(unknown),
        ", ".join(sorted(installed)),
    )
    kept = ",".join(n for n in names if n not in unknown) or "none"
    _imported_with("opentelemetry.propagate", "OTEL_PROPAGATORS", kept)


_import_the_sdks_tracing_past_a_malformed_limit()
_import_propagation_past_an_unknown_propagator()
