"""The three signals, in the two vocabularies that name them."""

from __future__ import annotations

from enum import Enum


class Signal(str, Enum):
    """A signal as the legacy API names it (``stats()`` keys, callback data types), with
    its OTLP name (endpoint ``signals=``, URL paths, ``OTEL_*_<SIGNAL>_*`` variables)."""

    METRIC = "metric"
    EVENT = "event"
    TRACE = "trace"

    @property
    def otlp(self) -> str:
        return _OTLP_NAMES[self]


_OTLP_NAMES = {Signal.METRIC: "metrics", Signal.EVENT: "logs", Signal.TRACE: "traces"}
# stats() order, and the OTLP order endpoints are described in.
LEGACY_NAMES = tuple(signal.value for signal in Signal)
OTLP_NAMES = tuple(Signal(name).otlp for name in ("trace", "metric", "event"))
