"""TelemetryCollector: the legacy collector API over an OpenTelemetry pipeline."""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from telemetry_otel._logging import EventLoggingHandler
from telemetry_otel._otel.delivery.accounting import Stats, empty_stats
from telemetry_otel._otel.delivery.callbacks import ExporterCallback
from telemetry_otel._otel.live import Context, LiveSpan, extract_context, inject_context
from telemetry_otel._otel.pipeline import Pipeline
from telemetry_otel._otel.runtime import at_exit
from telemetry_otel._otel.runtime.log import logger, warn_once
from telemetry_otel._otel.runtime.threads import delivering, off_the_loop, start_daemon
from telemetry_otel._redact import mask_url
from telemetry_otel._validation import _check_tags, _check_text
from telemetry_otel.config import TelemetryConfig
from telemetry_otel.instruments import CounterHandle, GaugeHandle, HistogramHandle
from telemetry_otel.models import Event, Metric, TagValue, Trace

__all__ = ["TelemetryCollector", "deliver_on_terminate"]

P = ParamSpec("P")
R = TypeVar("R")


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


_IN_CALLBACK = (
    "%s was called from an exporter callback, which runs on the thread that delivers its "
    "batches: %s, rather than wait for the batch the callback is in"
)


class TelemetryCollector:
    """Collects metrics, events and traces and sends them through the OpenTelemetry SDK.

    Each collector builds its own resource and tracer, meter and logger providers,
    and leaves OpenTelemetry's global providers alone, unless the config asks it to
    join them (``use_global_providers``).

    Args:
        config: How to collect and where to export; ``TelemetryConfig()`` when None.
    """

    def __init__(self, config: TelemetryConfig | None = None) -> None:
        if config is None:
            config = TelemetryConfig()
        elif not isinstance(config, TelemetryConfig):
            raise TypeError(f"config must be a TelemetryConfig or None, got {config!r}")
        # Fields the config left unset come from TELEMETRY_* / OTEL_* variables, unless
        # it was read against an environment already.
        self.config = config._for_collector()
        self._lock = threading.RLock()
        self._state = _State.NEW
        self._callbacks: list[ExporterCallback] = []
        # Set only while running and enabled: the collect path reads it once, without a lock.
        self._pipeline: Pipeline | None = None
        self._last_pipeline: Pipeline | None = None

    def __repr__(self) -> str:
        endpoints = [mask_url(endpoint.text) for endpoint in self.config.endpoints()]
        destinations = ", ".join(endpoints) or "no endpoints"
        callbacks = f", {len(self._callbacks)} callbacks" if self._callbacks else ""
        state = self._state.value if self.config.enabled else f"{self._state.value}, disabled"
        name = f" {self.config.service_name!r}" if self.config.service_name else ""
        return f"<TelemetryCollector{name} {state}: {destinations}{callbacks}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Build the pipeline and start collecting. Idempotent; raises RuntimeError after stop()."""
        with self._lock:
            if self._state is _State.RUNNING:
                return
            if self._state is _State.STOPPED:
                raise RuntimeError("TelemetryCollector cannot be started again after stop()")
            if self.config.enabled:
                pipeline = Pipeline(self.config)
                for callback in self._callbacks:
                    pipeline.add_callback(callback)
                self._pipeline = self._last_pipeline = pipeline
                at_exit.stop_at_exit(pipeline, self, self.config.shutdown_timeout_ms / 1000)
            self._state = _State.RUNNING

    def stop(self, timeout_ms: float | None = None) -> None:
        """Flush everything collected, then shut the pipeline down. Idempotent.

        Returns within one deadline shared by every signal and destination, whatever
        the endpoints do.

        Args:
            timeout_ms: The deadline (default ``config.shutdown_timeout_ms``); what is
                still queued then is dropped and counted in ``stats()``.
        """
        deadline = self._deadline(timeout_ms)
        if delivering():
            # Called by a callback: the stop would wait for the very batch the callback is
            # in. It goes on in a thread of its own, and this call returns at once.
            warn_once("stop-in-callback", _IN_CALLBACK, "stop()", "the stop goes on behind it")
            start_daemon(lambda: self._stop_by(deadline), "telemetry-stop")
            return
        self._stop_by(deadline)

    def _stop_by(self, deadline: float) -> None:
        with self._lock:
            if self._state is _State.STOPPED:
                return
            self._state = _State.STOPPED
            pipeline, self._pipeline = self._pipeline, None
            if pipeline is not None:
                at_exit.forget(pipeline)
                pipeline.shutdown(deadline)
                _report_losses(pipeline)

    def flush(self, timeout_ms: float | None = None) -> bool:
        """Export everything collected so far to every endpoint and callback.

        Args:
            timeout_ms: How long to wait (default ``config.shutdown_timeout_ms``).

        Returns:
            True when everything collected before the call reached every exporter and
            callback; False when the time ran out or an export failed.
        """
        deadline = self._deadline(timeout_ms)
        pipeline = self._pipeline
        if pipeline is not None and delivering():
            # Called by a callback: nothing it waits for can end while the callback runs.
            warn_once("flush-in-callback", _IN_CALLBACK, "flush()", "it returns False at once")
            return False
        return True if pipeline is None else pipeline.flush(deadline)

    async def aflush(self, timeout_ms: float | None = None) -> bool:
        """``flush()`` for asyncio code: the waiting happens in a thread of its own, so
        the event loop runs other tasks meanwhile. Same arguments, result and counts."""
        deadline = self._deadline(timeout_ms)
        pipeline = self._pipeline
        if pipeline is None:
            return True
        return await off_the_loop(functools.partial(pipeline.flush, deadline), "aflush")

    async def astop(self, timeout_ms: float | None = None) -> None:
        """``stop()`` for asyncio code, without blocking the event loop (see aflush).

        Cancelling the awaiting task does not cancel the stop: it goes on in its
        thread within the same deadline.
        """
        await off_the_loop(functools.partial(self._stop_by, self._deadline(timeout_ms)), "astop")

    @property
    def is_running(self) -> bool:
        """True between start() and stop()."""
        return self._state is _State.RUNNING

    def __enter__(self) -> TelemetryCollector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> TelemetryCollector:
        """``async with TelemetryCollector(config) as collector:``: start(), then astop()
        at the end of the block. Starting may open a spool or bind a port: off the loop."""
        await off_the_loop(self.start, "astart")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.astop()

    # -- collecting --------------------------------------------------------------------------

    def collect_metric(self, metric: Metric) -> bool:
        """Record a metric. Returns False when not collecting or on a name/type clash."""
        if type(metric) is not Metric and not isinstance(metric, Metric):
            raise TypeError(f"collect_metric() takes a Metric, got {type(metric).__name__}")
        pipeline = self._pipeline
        return False if pipeline is None else pipeline.collect_metric(metric)

    def collect_event(self, event: Event) -> bool:
        """Emit an event as a log record. Returns False when not collecting or sampled out."""
        if type(event) is not Event and not isinstance(event, Event):
            raise TypeError(f"collect_event() takes an Event, got {type(event).__name__}")
        pipeline = self._pipeline
        return False if pipeline is None else pipeline.collect_event(event)

    def collect_trace(self, trace: Trace) -> bool:
        """Emit a trace as a finished span. Returns False when not collecting or sampled
        out; True also for a span that waits for its trace's decision (tail rules)."""
        if type(trace) is not Trace and not isinstance(trace, Trace):
            raise TypeError(f"collect_trace() takes a Trace, got {type(trace).__name__}")
        pipeline = self._pipeline
        return False if pipeline is None else pipeline.collect_trace(trace)

    # -- metric handles ----------------------------------------------------------------------

    def counter(
        self,
        name: str,
        *,
        unit: str = "",
        description: str = "",
        tags: dict[str, TagValue] | None = None,
    ) -> CounterHandle:
        """A counter handle: ``add(value, tags)``, or ``bind(**tags)`` once and then
        ``add(value)`` at a fraction of the cost (docs/collector.md).

        What it records is exactly what ``collect_metric(Metric(name, value,
        MetricType.COUNTER, tags, unit=unit, description=description))`` would.
        Usable before ``start()`` (records nothing and returns False, as
        ``collect_metric`` does).

        Args:
            name: The metric name, as ``Metric.name``.
            unit: The instrument's unit, e.g. ``"ms"``.
            description: The instrument's description.
            tags: Tags every measurement carries; ``bind`` and ``add`` add to them.
        """
        return CounterHandle(self, name, unit, description, tags)

    def histogram(
        self,
        name: str,
        *,
        unit: str = "",
        description: str = "",
        tags: dict[str, TagValue] | None = None,
    ) -> HistogramHandle:
        """A histogram handle: ``record(value, tags)`` or ``bind(**tags).record(value)``;
        as :meth:`counter`, for ``MetricType.HISTOGRAM``."""
        return HistogramHandle(self, name, unit, description, tags)

    def gauge(
        self,
        name: str,
        *,
        unit: str = "",
        description: str = "",
        tags: dict[str, TagValue] | None = None,
    ) -> GaugeHandle:
        """A gauge handle: ``set(value, tags)`` or ``bind(**tags).set(value)``; as
        :meth:`counter`, for ``MetricType.GAUGE``."""
        return GaugeHandle(self, name, unit, description, tags)

    # -- live spans, context and logging -----------------------------------------------------

    def span(
        self,
        name: str,
        tags: Mapping[str, TagValue] | None = None,
        parent: Context | None = None,
    ) -> LiveSpan:
        """A live span around a block: ``with collector.span("work") as span:`` (or ``async with``).

        A real OTel span, current inside the block, so spans and events collected there
        nest under it; an escaping exception is recorded and sets the ERROR status.

        Args:
            name: The span name.
            tags: Span attributes (redacted and limited like any tags).
            parent: A context from :meth:`extract_context`; by default the current one.
        """
        _check_text("span", "name", name)
        tags = dict(tags or {})
        _check_tags("span", "tags", tags)
        pipeline = self._pipeline
        if pipeline is None:
            return LiveSpan(None)
        return LiveSpan(functools.partial(pipeline.live_span, name, tags, parent))

    @overload
    def traced(
        self, name: Callable[P, R], tags: Mapping[str, TagValue] | None = None
    ) -> Callable[P, R]: ...

    @overload
    def traced(
        self, name: str | None = None, tags: Mapping[str, TagValue] | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def traced(
        self,
        name: str | Callable[P, R] | None = None,
        tags: Mapping[str, TagValue] | None = None,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function, sync or async, to run inside a live span.

        ``@collector.traced`` or ``@collector.traced("name", tags={...})``; the span is
        named after the function's qualified name unless given. The decorated function
        keeps its signature for type checkers. On a generator function (sync or async)
        the span would cover only the call that creates the generator, not its
        iteration: that warns (``UserWarning``) once, at decoration; open
        ``collector.span()`` inside the generator instead.
        """
        if callable(name):  # @collector.traced, without parentheses
            return _traced(self, None, tags, name, stacklevel=3)
        return functools.partial(_traced, self, name, tags)

    def inject_context(
        self, carrier: MutableMapping[str, str] | None = None
    ) -> MutableMapping[str, str]:
        """Write the current trace context (W3C ``traceparent``) into ``carrier`` and return it."""
        return inject_context({} if carrier is None else carrier)

    def extract_context(self, carrier: Mapping[str, str]) -> Context:
        """The trace context in a carrier, for ``span(..., parent=context)``."""
        return extract_context(carrier)

    def logging_handler(self, level: int = logging.INFO) -> logging.Handler:
        """A ``logging.Handler`` that collects each record as an Event (docs/live-spans.md)."""
        return EventLoggingHandler(self, level)

    # -- legacy exporters --------------------------------------------------------------------

    def register_exporter(self, callback: ExporterCallback) -> None:
        """Call ``callback(data_type, model)`` for every item the pipeline exports.

        ``data_type`` is ``"metric"``, ``"event"`` or ``"trace"``; the model is rebuilt
        from OpenTelemetry data (metrics aggregated per export interval). Registering
        the same callback twice has no further effect.
        """
        if not callable(callback):
            raise TypeError(f"register_exporter() takes a callable, got {callback!r}")
        with self._lock:
            if callback in self._callbacks:
                return
            self._callbacks.append(callback)
            if self._pipeline is not None:
                self._pipeline.add_callback(callback)

    def unregister_exporter(self, callback: ExporterCallback) -> None:
        """Stop calling ``callback``; raises ValueError if it is not registered."""
        with self._lock:
            if callback not in self._callbacks:
                raise ValueError(f"unregister_exporter(): {callback!r} is not registered")
            self._callbacks.remove(callback)
            if self._pipeline is not None:
                self._pipeline.remove_callback(callback)

    # -- accounting --------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Counts per signal (``"metric"``, ``"event"``, ``"trace"``).

        Each has ``collected``, ``sampled_out``, ``dropped``, ``exported``,
        ``export_failures`` and ``pending``; docs/collector.md says what each counts. The
        result is a dict that prints as a short table.
        """
        pipeline = self._last_pipeline
        return empty_stats() if pipeline is None else pipeline.stats()

    def _deadline(self, timeout_ms: float | None) -> float:
        if timeout_ms is None:
            timeout_ms = self.config.shutdown_timeout_ms
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)):
            raise TypeError(f"timeout_ms must be a number or None, got {timeout_ms!r}")
        if not timeout_ms >= 0:
            raise ValueError(f"timeout_ms must be non-negative, got {timeout_ms!r}")
        return time.monotonic() + timeout_ms / 1000


def deliver_on_terminate(initializer: Callable[..., object] | None = None, *args: Any) -> None:
    """A ``multiprocessing.Pool`` initializer that loses nothing to ``Pool.terminate()``.

    ``terminate()``, which the end of a ``with Pool() as pool:`` block calls, ends each
    worker with SIGTERM, which kills it where it stands: what it collected since its
    last export would be lost. With this initializer a worker leaves through its
    ordinary exit path instead, which stops its collectors (each within its
    ``shutdown_timeout_ms``) and so delivers what they hold::

        Pool(4, initializer=deliver_on_terminate)
        Pool(4, initializer=deliver_on_terminate, initargs=(your_initializer, arg))

    Args:
        initializer: Your own initializer, called with ``args`` afterwards.
    """
    at_exit.exit_on_sigterm()
    if initializer is not None:
        initializer(*args)


def _traced(
    collector: TelemetryCollector,
    name: str | None,
    tags: Mapping[str, TagValue] | None,
    function: Callable[P, R],
    stacklevel: int = 2,
) -> Callable[P, R]:
    span_name = name or function.__qualname__
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        warnings.warn(
            f"traced(): {function.__qualname__} is a generator function: its span covers "
            "only the call that creates the generator, not the iteration; open "
            "collector.span() inside it instead",
            UserWarning,
            stacklevel=stacklevel,  # the decorated function's line
        )
    if inspect.iscoroutinefunction(function):
        coroutine_function: Callable[P, Awaitable[Any]] = function

        @functools.wraps(function)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            async with collector.span(span_name, tags):
                return await coroutine_function(*args, **kwargs)

        return run_async  # type: ignore[return-value]

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with collector.span(span_name, tags):
            return function(*args, **kwargs)

    return run


def _report_losses(pipeline: Pipeline) -> None:
    """One line at stop() when anything collected was dropped or failed, and why."""
    losses = pipeline.stats().losses()
    if losses:
        logger.warning("telemetry stopped with losses: %s", losses)
