"""The metric pipeline: Metric items on SDK instruments, read by each destination's reader."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

from telemetry_otel._env_sdk import exemplar_filter
from telemetry_otel._otel.delivery.accounting import (
    SELF_SCOPE,
    Component,
    Stats,
    register_convention_metrics,
    register_self_metrics,
)
from telemetry_otel._otel.delivery.callbacks import CallbackMetricExporter
from telemetry_otel._otel.delivery.outcomes import DeliveryCounts
from telemetry_otel._otel.delivery.queue import DeliveryQueue, close_all, flush_all
from telemetry_otel._otel.destinations.destination import cardinality_limits
from telemetry_otel._otel.mapping.metrics import InstrumentCache, instrument_name
from telemetry_otel._otel.mapping.series import RecorderClosed
from telemetry_otel._otel.runtime.log import warn_limited
from telemetry_otel._otel.runtime.sdk import (
    collect_after,
    forget_aggregations,
    remove_metric_reader,
)
from telemetry_otel._otel.signals.common import SCOPE_NAME, Shared, enabled_by_the_collector
from telemetry_otel._version import __version__
from telemetry_otel.models import Metric, MetricType

Works = dict[str, Callable[[], object]]
_EXEMPLAR_FILTERS: dict[str, Callable[[], ExemplarFilter]] = {
    "trace_based": TraceBasedExemplarFilter,
    "always_on": AlwaysOnExemplarFilter,
    "always_off": AlwaysOffExemplarFilter,
}
# An Enum member read off its class costs a Python-level lookup per measurement.
_HISTOGRAM = MetricType.HISTOGRAM


class MetricPipeline:
    """The meter provider (the collector's own, or the application's when joined), one
    reader per destination that takes metrics, and the callbacks' reader while a
    callback is registered."""

    def __init__(
        self,
        shared: Shared,
        joined: MeterProvider | None,
        stats: Callable[[], Stats],
        components: Callable[[], list[Component]] = list,
    ) -> None:
        config = shared.config
        self._shared = shared
        self._joined = joined
        self._tally = shared.accounting.tallies["metric"]
        destinations = shared.destinations
        self._exporters = [d.metric_counts for d in destinations if d.metric_counts]
        self._failures_seen = 0
        self.callback_exporter = CallbackMetricExporter(shared.global_tags)
        # The callback bridge's reader, attached only while a callback is registered:
        # each reader costs every measurement an aggregation of its own.
        self._bridge_reader: MetricReader | None = None
        self.readers: list[MetricReader] = []
        if joined is not None:
            # An existing MeterProvider takes no more readers: no metrics for callbacks.
            self.provider = joined
        else:
            self.readers = [d.metric_reader for d in destinations if d.metric_reader]
            self.provider = enabled_by_the_collector(
                MeterProvider(
                    metric_readers=self.readers,
                    resource=shared.resource,
                    exemplar_filter=_EXEMPLAR_FILTERS[exemplar_filter(config.environ)](),
                    shutdown_on_exit=False,
                )
            )
        meter = self.provider.get_meter(SCOPE_NAME, __version__)
        self.instruments = InstrumentCache(
            self.provider,
            meter,
            shared.shaper,
            config.max_metric_series,
            self._tally.collected.increment,
        )
        self._recorders = self.instruments.recorders
        # Bound once: the collecting path (and bound handles, signals/bound.py) count
        # with a single call.
        self.count_collected = self._tally.collected.increment
        self.count_limited = self._tally.limited.increment
        self._tally.collected.include(self.instruments.counted)
        # Measurements add up between collections only on the collector's own
        # provider, where every reader's collection drains them first: an application's
        # provider may get readers no drain would reach.
        # Called before every collection, then the collector's own metrics are drained.
        self.sources: list[Callable[[], None]] = []
        self.collects_after_sources = joined is None and collect_after(
            self.provider, self.readers, self._before_collection
        )
        if self.collects_after_sources:
            self.instruments.combine_between_collections()
        if config.self_metrics:
            own = self.provider.get_meter(SELF_SCOPE, __version__)
            register_self_metrics(own, stats)
            register_convention_metrics(own, components)

    # -- the collecting path: never raises for a valid model --------------------------------

    def collect(self, metric: Metric) -> bool:
        """Record a measurement on its instrument; False on a name/type clash or a
        negative histogram value (which OpenTelemetry histograms do not take)."""
        try:
            # The instrument cache's lookup written out: this runs for every measurement.
            known = self._recorders.get(metric.name)
            metric_type, value = metric.metric_type, metric.value
            recorder = (
                known[1]
                if known is not None and known[0] is metric_type
                else self.instruments.recorder(metric)
            )
            if recorder is None:
                return self.reject_clash(metric.name, metric_type)
            if value < 0 and metric_type is _HISTOGRAM:
                return self.reject_negative(metric.name, value)
            if recorder.collect(value, metric.tags):  # counted there
                self.count_limited()
            return True
        except RecorderClosed:  # stop() began its last collection meanwhile
            return False
        except Exception:
            return self.internal_error()

    def reject_clash(self, name: str, metric_type: MetricType) -> bool:
        return self._reject(
            f"clash:{name.lower()}",
            "metric %r (instrument %r) is already registered as another type; dropping %s values",
            name,
            instrument_name(name),
            metric_type.value,
        )

    def reject_negative(self, name: str, value: float) -> bool:
        return self._reject(
            f"negative:{name.lower()}",
            "histogram %r takes no negative values; dropping %r",
            name,
            value,
        )

    def internal_error(self) -> bool:
        self._tally.rejected.increment()
        warn_limited("internal:metric", "telemetry_otel could not process a %s", "metric")
        return False

    def _reject(self, reason: str, message: str, *args: object) -> bool:
        self._tally.rejected.increment()
        warn_limited(reason, message, *args)
        return False

    def _before_collection(self) -> None:
        """Read the bridged sources, then hand what the metrics added up to every reader."""
        for read in self.sources:
            read()
        self.instruments.drain()

    # -- the callbacks' reader ---------------------------------------------------------------

    def attach_bridge_reader(self) -> None:
        if self._bridge_reader is None and self._joined is None:
            self.callback_exporter.resume()
            # What the instruments added up so far was measured before the callback.
            self._before_collection()
            config = self._shared.config
            self._bridge_reader = PeriodicExportingMetricReader(
                self.callback_exporter,
                config.flush_interval_ms,
                cardinality_limits=cardinality_limits(config),
            )
            self.provider.add_metric_reader(self._bridge_reader)

    def detach_bridge_reader(self, timeout_millis: float = 30_000) -> None:
        """Shut the reader down, which exports what it holds to the callbacks' queues,
        then stop feeding it.

        Not MeterProvider.remove_metric_reader alone: it drops the reader's storage
        before shutting the reader down, and the reader's last collection then fails
        (SDK 1.45); called after shutdown, it would warn of a second shutdown.
        """
        reader, self._bridge_reader = self._bridge_reader, None
        if reader is None:
            return
        reader.shutdown(timeout_millis=timeout_millis)
        remove_metric_reader(self.provider, reader)

    # -- flush, stop and counts --------------------------------------------------------------

    def works(
        self,
        deadline: float,
        failed: list[str],
        callback_queues: list[DeliveryQueue[Any]],
        *,
        shutdown: bool,
    ) -> Works:
        """Each metric reader's flush (or last collection and shutdown), side by side.

        Not MeterProvider.force_flush/shutdown: they take their readers one after
        another, so a reader stuck on a dead endpoint would cost the others their
        collection; and they reach only the readers the provider was built with,
        not the callbacks' reader.
        """
        if shutdown:  # from now on a measurement is refused, or it could come too late
            self.instruments.close()
        works: Works = {
            "callbacks": self._callback_work(deadline, failed, callback_queues, shutdown=shutdown)
        }
        if self._joined is not None:
            works["joined"] = _timed(deadline, self.provider.force_flush, failed)
            return works
        readers = self.readers if shutdown else self._push_readers()
        for i, reader in enumerate(readers):
            step = reader.shutdown if shutdown else reader.force_flush
            works[f"metrics-{i}"] = _timed(deadline, step, failed)
        return works

    def _callback_work(
        self,
        deadline: float,
        failed: list[str],
        queues: list[DeliveryQueue[Any]],
        *,
        shutdown: bool,
    ) -> Callable[[], None]:
        """The callbacks' reader pushes its collection into their metric queues: flush (or
        close) those only once it is done, or its last values would miss them."""

        def run() -> None:
            bridge = self._bridge_reader
            if shutdown:
                _timed(deadline, self.detach_bridge_reader, failed)()
            elif bridge is not None:
                _timed(deadline, bridge.force_flush, failed)()
            done = close_all(queues, deadline) if shutdown else flush_all(queues, deadline)
            if not done:
                failed.append("callbacks")

        return run

    def _push_readers(self) -> list[MetricReader]:
        """The readers a flush reaches: those that export on their own, and a shared
        Prometheus page's, which publishes this process's numbers. The OTel pull
        reader alone is never flushed: each flush would queue another copy of every
        series for the next scrape."""
        return [
            r
            for r in self.readers
            if isinstance(r, PeriodicExportingMetricReader) or getattr(r, "publishes", False)
        ]

    def nothing_failed_since_last_flush(self) -> bool:
        failures = sum(e.counts().export_failures for e in self._exporters)
        unchanged = failures == self._failures_seen
        self._failures_seen = failures
        return unchanged

    def counts(self) -> list[DeliveryCounts]:
        """The counts of each destination's metric exporter."""
        return [e.counts() for e in self._exporters]

    def components(self) -> list[Component]:
        """Each destination's metric exporter, as the SDK-metric conventions name it."""
        return [
            Component("metric_data_point", *e.component, e.counts())
            for e in self._exporters
            if e.component is not None
        ]

    def after_fork_in_child(self) -> None:
        """A forked child's metrics start from zero: the parent exports its own. An
        application's provider (joined) is the application's to look after."""
        if self._joined is None:
            forget_aggregations(self.provider)

    def abandon(self) -> None:
        for reader in self.readers:  # a half-built pipeline: undo what can be undone
            with contextlib.suppress(Exception):
                reader.shutdown(timeout_millis=100)


def _timed(deadline: float, call: Callable[..., object], failed: list[str]) -> Callable[[], None]:
    """``call(timeout_millis=<what is left>)``, raising nothing: the SDK raises when a
    reader timed out (noted in ``failed``), and run_all_until tells a late one by
    its thread."""

    def run() -> None:
        try:
            if call(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000) is False:
                raise TimeoutError
        except Exception:
            failed.append(getattr(call, "__qualname__", "metrics"))
            warn_limited("metrics:timeout", "a metric reader did not finish in time")

    return run
