"""Live spans around blocks and functions, and W3C trace context in and out of carriers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import INVALID_SPAN, Span

__all__ = ["Context", "LiveSpan", "extract_context", "inject_context"]
StartSpan = Callable[[], AbstractContextManager[Span]]


class LiveSpan:
    """``with collector.span(...) as span`` or ``async with``: a real, current OTel span.

    It nests under whatever span is current (including ones started by
    instrumentation libraries), records an exception that escapes the block and sets
    the ERROR status. On a collector that is not running it is a no-op span.
    """

    def __init__(self, start: StartSpan | None) -> None:
        self._start = start
        self._active: AbstractContextManager[Span] | None = None

    def __enter__(self) -> Span:
        if self._start is None:
            return INVALID_SPAN
        self._active = self._start()
        return self._active.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        active, self._active = self._active, None
        if active is not None:
            active.__exit__(exc_type, exc, traceback)

    # The context is task-local in asyncio, so the same span stays current across awaits.
    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def inject_context(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current trace context (``traceparent``, ``tracestate``, baggage) into a carrier."""
    propagate.inject(carrier)
    return carrier


class _AnyCaseGetter(Getter[Any]):
    """Reads a carrier's keys whatever their case: HTTP header names are case-insensitive,
    and clients send ``Traceparent`` (urllib) as often as ``traceparent``, while a plain
    dict of headers (which the SDK's default getter reads) is not."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            wanted = key.lower()
            value = next((v for k, v in carrier.items() if _text(k).lower() == wanted), None)
        if value is None:
            return None
        if isinstance(value, (str, bytes, bytearray)):
            return [_text(value)]
        return [_text(item) for item in value] if isinstance(value, Iterable) else [str(value)]

    def keys(self, carrier: Any) -> list[str]:
        return [_text(key) for key in carrier]


def _text(value: object) -> str:
    """Header names and values as text: bytes (WSGI and ASGI servers) as Latin-1."""
    return bytes(value).decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


_ANY_CASE = _AnyCaseGetter()


def extract_context(carrier: Any) -> Context:
    """The trace context a carrier (HTTP headers, message attributes) holds; keys are
    read whatever their case."""
    return propagate.extract(carrier, getter=_ANY_CASE)
