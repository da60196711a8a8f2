"""The OpenTelemetry pipeline behind one collector: the parts every signal shares, and the
three signal pipelines and the callback hub composed over them (``signals/``)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from telemetry_otel._otel.bridges.prometheus_registry import SCOPE as PROMETHEUS_SCOPE
from telemetry_otel._otel.bridges.prometheus_registry import RegistryBridge
from telemetry_otel._otel.bridges.statsd import StatsdListener
from telemetry_otel._otel.delivery.accounting import (
    SIGNALS,
    Accounting,
    Component,
    Stats,
    empty_stats,
)
from telemetry_otel._otel.delivery.callbacks import ExporterCallback, QueueSettings
from telemetry_otel._otel.delivery.outcomes import SHUTDOWN
from telemetry_otel._otel.delivery.queue import DeliveryQueue, begin_flush_all
from telemetry_otel._otel.delivery.spool import open_spool
from telemetry_otel._otel.destinations.build import build_destination
from telemetry_otel._otel.destinations.destination import Destination
from telemetry_otel._otel.mapping.resource import build_resource
from telemetry_otel._otel.mapping.summaries import SummaryBoard
from telemetry_otel._otel.providers import global_sdk_provider
from telemetry_otel._otel.runtime.forks import follow_forks
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._otel.runtime.threads import run_all_until, run_until
from telemetry_otel._otel.signals.callbacks import CallbackHub
from telemetry_otel._otel.signals.common import Shared
from telemetry_otel._otel.signals.events import EventPipeline
from telemetry_otel._otel.signals.metrics import MetricPipeline
from telemetry_otel._otel.signals.traces import TracePipeline
from telemetry_otel._shaping import Shaper
from telemetry_otel._signals import Signal
from telemetry_otel.config import TelemetryConfig

__all__ = ["SIGNALS", "Pipeline"]

# Largest batch an export carries, as the SDK's batch processors default to.
_MAX_BATCH = 512
_MAX_SPOOL_RESERVE_S = 1.0
_NOWHERE_CHECK_S = 1.0
_PLURAL = {"trace": "traces", "event": "events", "metric": "metrics"}


class Pipeline:
    """Everything one running collector needs, built from its config.

    ``collect_metric``, ``collect_event`` and ``collect_trace`` are the signal
    pipelines' own methods, bound once: the facade calls them without a hop.
    """

    def __init__(self, config: TelemetryConfig) -> None:
        self._config = config
        shaper = Shaper(
            config.redact, config.redact_keys, config.max_attributes, config.max_attribute_length
        )
        self.accounting = Accounting()
        self._global = {
            signal: global_sdk_provider(signal) if config.use_global_providers else None
            for signal in SIGNALS
        }
        destinations = self._destinations_for_own_signals(config)
        self._destinations = destinations
        self._shared: Shared | None = None
        self._listeners: list[StatsdListener] = []
        # Until the build is done, the collector's own metrics (whose readers an abandoned
        # build shuts down, collecting once more) read empty counts, not a half pipeline.
        self._built = False
        try:
            self._shared = shared = Shared(
                config,
                QueueSettings(
                    config.buffer_size,
                    min(_MAX_BATCH, config.buffer_size),
                    config.flush_interval_ms / 1000,
                ),
                shaper,
                self.accounting,
                build_resource(config, shaper),
                destinations,
                dict(shaper.attributes(config.tags)[0]),
            )
            self.metrics = MetricPipeline(
                shared, self._global["metric"], self.stats, self.components
            )
            if config.spool_dir:
                shared.spool = open_spool(config.spool_dir, config.spool_max_bytes)
            self._spool_unavailable = bool(config.spool_dir) and shared.spool is None
            self.traces = TracePipeline(shared, self._global["trace"])
            self.events = EventPipeline(shared, self._global["event"], self.metrics.provider)
            self._bridge_sources(config, shared)
        except BaseException:
            self._abandon()
            raise
        self.callbacks = CallbackHub(shared, self.traces, self.events, self.metrics)
        self.collect_metric = self.metrics.collect
        self.collect_event = self.events.collect
        self.collect_trace = self.traces.collect
        self.live_span = self.traces.live_span
        self._nowhere_timer = self._start_nowhere_check(config)
        self._built = True
        follow_forks(self)

    def _bridge_sources(self, config: TelemetryConfig, shared: Shared) -> None:
        """Read other metric sources in: prometheus_client registries before each metric
        collection (only where every collection is drained: the collector's own
        provider), and StatsD packets as they come."""
        if config.prometheus_registries:
            if not self.metrics.collects_after_sources:
                warn_limited(
                    "bridge:joined",
                    "prometheus_registries are read only by the collector's own "
                    "MeterProvider, not with use_global_providers: not bridged",
                )
            else:
                self._bridge_registries(config, shared)
        if config.statsd_endpoint:
            listener = StatsdListener(
                config.statsd_endpoint,
                self.metrics.provider,
                shared.shaper,
                config.max_metric_series,
                self.accounting.bridges["statsd"],
                self.events.collect,
                self.metrics.count_limited,
            )
            if self.metrics.collects_after_sources:
                listener.combine_between_collections()
            self.metrics.sources.append(listener.before_collection)
            self._listeners.append(listener)
            listener.start()

    def _bridge_registries(self, config: TelemetryConfig, shared: Shared) -> None:
        summaries = SummaryBoard(PROMETHEUS_SCOPE)
        bridge = RegistryBridge(
            config.prometheus_registries,
            self.metrics.provider,
            shared.shaper,
            config.max_metric_series,
            self.accounting.bridges["prometheus"],
            self.accounting.tallies["metric"].limited,
            summaries,
        )
        self.metrics.sources.append(bridge.read)
        for destination in shared.destinations:
            if destination.metric_counts is not None:
                destination.metric_counts.carry_summaries(summaries)

    def _destinations_for_own_signals(self, config: TelemetryConfig) -> list[Destination]:
        """One destination per endpoint, for the signals it takes that go through the
        collector's own providers (with use_global_providers, the application's
        exporters send the others)."""
        own = [signal for signal in SIGNALS if self._global[signal] is None]
        if config.use_global_providers and config.endpoints():
            if own:
                # Half an OTel setup (often a TracerProvider alone): what it does not
                # cover goes through the collector's own providers, to the endpoints.
                warn_limited(
                    "global:endpoints",
                    "use_global_providers: %ss go through the "
                    "collector's own providers to export_endpoints; everything else "
                    "through the application's",
                    "s, ".join(own),
                )
            else:
                warn_limited(
                    "global:endpoints",
                    "use_global_providers: export_endpoints are "
                    "ignored; the application's exporters send everything",
                )
        if not own:
            return []
        joined = {Signal(s).otlp for s in SIGNALS if self._global[s] is not None}
        destinations: list[Destination] = []
        try:
            for endpoint in config.endpoints():
                if endpoint.signals - joined:
                    endpoint = replace(endpoint, signals=endpoint.signals - joined)
                    destinations.append(build_destination(endpoint, config))
        except Exception:
            _close(destinations)
            raise
        return destinations

    def _start_nowhere_check(self, config: TelemetryConfig) -> threading.Timer | None:
        """Without an endpoint for every signal, check a second from now that a callback
        was registered.

        Not at start() itself: the legacy quick start registers its callback just after.
        """
        if (self._destinations and not self._going_nowhere()) or config.use_global_providers:
            return None
        timer = threading.Timer(_NOWHERE_CHECK_S, self._warn_if_exported_nowhere)
        timer.daemon = True
        with contextlib.suppress(RuntimeError):  # interpreter shutdown (3.12+)
            timer.start()
        return timer

    def _going_nowhere(self) -> list[str]:
        """The signals no destination and no callback takes, where some destination takes
        others (``signals=`` left them out)."""
        if not self._destinations or self.callbacks.any_ever:
            return []
        own = [signal for signal in SIGNALS if self._global[signal] is None]
        return [s for s in own if not any(d.takes(s) for d in self._destinations)]

    def _warn_if_exported_nowhere(self) -> None:
        for signal in self._going_nowhere():
            warn_limited(
                f"nowhere:{signal}",
                "telemetry_otel: no export endpoint takes %s (the signals= options leave "
                "them out) and no callback is registered: they are counted as collected, "
                "then discarded (stats() shows no_destination); add %s to an endpoint's "
                "signals= or call register_exporter()",
                _PLURAL[signal],
                Signal(signal).otlp,
            )
        if self._destinations or self.callbacks.any_ever:
            return
        warn_limited(
            "nowhere",
            "telemetry_otel: nothing is exported: no export_endpoints, no "
            "OTEL_EXPORTER_OTLP_ENDPOINT and no callback, so everything collected is "
            "discarded; set export_endpoints (or TELEMETRY_EXPORT_ENDPOINTS, e.g. "
            "'console') or call register_exporter()",
        )

    def _abandon(self) -> None:
        """Undo a half-built pipeline: a failed start leaves no thread, file or reader
        running. Each step covers only what the build got to."""
        metrics: MetricPipeline | None = getattr(self, "metrics", None)
        traces: TracePipeline | None = getattr(self, "traces", None)
        if metrics is not None:
            metrics.abandon()
        shared = self._shared
        for queue in shared.queues if shared is not None else ():
            with contextlib.suppress(Exception):
                queue.close(time.monotonic())
        for delivery in shared.deliveries if shared is not None else ():
            with contextlib.suppress(Exception):
                delivery.close()
        _close(self._destinations)
        closers = (
            shared.spool.close if shared is not None and shared.spool else None,
            traces.abandon if traces is not None else None,
        )
        for closer in closers:
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()

    # -- callbacks ---------------------------------------------------------------------------

    def add_callback(self, callback: ExporterCallback) -> None:
        self.callbacks.add(callback)

    def remove_callback(self, callback: ExporterCallback) -> None:
        self.callbacks.remove(callback)

    # -- flush and shutdown ------------------------------------------------------------------

    def _item_queues(self) -> list[DeliveryQueue[Any]]:
        """Every trace and event queue, the callbacks' included."""
        hub = self.callbacks
        return [*self.traces.queues, *self.events.queues, *hub.trace_queues(), *hub.event_queues()]

    def flush(self, deadline: float) -> bool:
        """Export everything collected so far, to every destination side by side.

        False if the deadline passed, or anything was lost since the last flush.
        """
        self.traces.before_flush()
        items_flushed = begin_flush_all(self._item_queues())
        failed: list[str] = []
        works = self.metrics.works(deadline, failed, self.callbacks.metric_queues(), shutdown=False)
        readers_ok = run_all_until(deadline, works) and not failed
        queues_ok = items_flushed(deadline)
        metrics_ok = self.metrics.nothing_failed_since_last_flush() and readers_ok
        held_shown = self._show_held()
        return metrics_ok and queues_ok and held_shown

    def _show_held(self) -> bool:
        """What destinations hold back for people (the console's trees) is shown now: a
        worker that flushes, then exits, loses none of it."""
        shown = [d.flush_held() for d in self._destinations if d.flush_held is not None]
        return all(shown)

    def shutdown(self, deadline: float) -> bool:
        """Export what is left within the deadline, whatever the endpoints do.

        Every destination drains side by side, so a dead one costs only its own
        queue. What is still queued at the deadline is spooled or dropped
        (counted), and exporters still busy then are left to finish in their
        daemon threads. Joined global providers are flushed, not shut down: they
        belong to the application.
        """
        if self._shared is not None and self._shared.spool is not None:
            # A spool another process holds locked waits no longer than stop() may; a
            # flush() leaves its writes to wait in the background, lost to nobody.
            self._shared.spool.wait_until(deadline)
        for listener in self._listeners:  # what they received is collected, then exported
            listener.stop(deadline)
        if self._nowhere_timer is not None:
            self._nowhere_timer.cancel()
            if any(t.collected.value for t in self.accounting.tallies.values()):
                self._warn_if_exported_nowhere()
        self.traces.before_close()
        queues = self._item_queues()
        items_drained = begin_flush_all(queues)
        failed: list[str] = []
        send_until = deadline - self._spool_reserve(deadline)
        metric_works = self.metrics.works(
            send_until, failed, self.callbacks.metric_queues(), shutdown=True
        )
        metrics_done = run_all_until(send_until, metric_works)
        drained = items_drained(send_until)
        _close_queues(queues, deadline)
        self.traces.processor.detach_queues()
        self.events.processor.detach_queues()
        # Before the release closes the senders: an export cut short by that is one
        # stop() could not finish, not an endpoint's failure.
        for destination in self._destinations:
            if destination.metric_counts is not None:
                destination.metric_counts.count_unreturned_as_shutdown()
        released = run_until(deadline, self._release(deadline), "release")
        return drained and metrics_done and not failed and released

    def _spool_reserve(self, deadline: float) -> float:
        """The end of stop()'s deadline kept for spooling what could not be sent: a
        quarter of what is left, at most a second (none without a spool)."""
        if self._shared is None or self._shared.spool is None:
            return 0.0
        return min(_MAX_SPOOL_RESERVE_S, max(0.0, deadline - time.monotonic()) / 4)

    def _release(self, deadline: float) -> Callable[[], None]:
        def release() -> None:
            _close(self._destinations)
            assert self._shared is not None  # built, or __init__ raised
            for delivery in self._shared.deliveries:
                delivery.close()
            if self._shared.spool is not None:
                self._shared.spool.close()
            self.traces.release(deadline)
            self.events.release(deadline)

        return release

    # -- accounting --------------------------------------------------------------------------

    def resource_attributes(self) -> dict[str, Any]:
        """The attributes of the resource everything is exported with."""
        return {} if self._shared is None else dict(self._shared.resource.attributes)

    def stats(self) -> Stats:
        """Per-signal counts, summed over destinations (see TelemetryCollector.stats)."""
        if not self._built:
            return empty_stats()
        hub = self.callbacks
        queues = {
            "trace": [*self.traces.queues, *hub.trace_queues()],
            "event": [*self.events.queues, *hub.event_queues()],
            "metric": hub.metric_queues(),
        }
        counts = {signal: [q.counts() for q in of_signal] for signal, of_signal in queues.items()}
        counts["metric"] += self.metrics.counts()
        held = {"trace": self.traces.held()} if self.traces.decider is not None else None
        stats = self.accounting.stats(counts, held, self._spool_unavailable)
        nowhere = self._going_nowhere()
        for signal in SIGNALS:
            stats[signal]["no_destination"] = int(signal in nowhere)
        return stats

    def components(self) -> list[Component]:
        """Every exporter with its counts, as the SDK-metric conventions name them."""
        if not self._built:
            return []
        found = [
            Component(kind, *queue.component, queue.counts(), queue.capacity)
            for kind, queues in (("span", self._span_queues()), ("log", self._log_queues()))
            for queue in queues
            if queue.component is not None
        ]
        return found + self.metrics.components()

    def _span_queues(self) -> list[DeliveryQueue[Any]]:
        return [*self.traces.queues, *self.callbacks.trace_queues()]

    def _log_queues(self) -> list[DeliveryQueue[Any]]:
        return [*self.events.queues, *self.callbacks.event_queues()]

    def after_fork_in_child(self) -> None:
        self.traces.after_fork_in_child()
        self.metrics.after_fork_in_child()


def _close_queues(queues: list[DeliveryQueue[Any]], deadline: float) -> None:
    """Close every queue; those that spool share what is left of the deadline fairly,
    each spooling (oldest first) until its share runs out."""
    spooling = [queue for queue in queues if queue.spools]
    for queue in queues:
        if not queue.spools:
            queue.finish_close(SHUTDOWN)
    for index, queue in enumerate(spooling):
        share = max(0.0, deadline - time.monotonic()) / (len(spooling) - index)
        queue.finish_close(SHUTDOWN, time.monotonic() + share)


def _close(destinations: list[Destination]) -> None:
    for destination in destinations:
        try:
            destination.close()
        except Exception:
            warn_limited(f"close:{destination.name}", "could not close %s", destination.name)
