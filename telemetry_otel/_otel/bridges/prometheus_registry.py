"""prometheus_client registries, read at every metric collection, as OTel instruments.

The OpenTelemetry Python SDK has no metric producer hook, so the bridge reads the
registries right before each reader collects (the same hook that drains the collector's
own metrics) and hands what it read to instruments of its own scope:

- counters and gauges (and Info, Enum, untyped) to observable instruments, whose
  callbacks the SDK calls during that collection: cumulative values pass exactly, and the
  SDK derives each reader's temporality from them;
- histograms and summaries, which OTel cannot observe, to a histogram with the family's
  bucket bounds: the buckets, count and sum added since the last read are merged into
  every reader's aggregation (a summary as one bucket: its count and sum).
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider

from telemetry_otel._otel.delivery.accounting import BridgeTally
from telemetry_otel._otel.delivery.tally import Tally
from telemetry_otel._otel.mapping.metrics import instrument_name
from telemetry_otel._otel.mapping.series import OVERFLOW_ATTRIBUTES
from telemetry_otel._otel.mapping.summaries import (
    AttributesKey,
    SummaryBoard,
    SummaryPoint,
    attributes_key,
)
from telemetry_otel._otel.runtime.forks import ForkSafeLock, follow_forks
from telemetry_otel._otel.runtime.log import warn_limited, warn_once
from telemetry_otel._otel.runtime.sdk import (
    hash_attributes,
    measurement_consumer,
    merge_histogram,
    shared_bucket_bounds,
)
from telemetry_otel._otel.runtime.threads import run_until
from telemetry_otel._shaping import Shaper
from telemetry_otel._version import __version__

SCOPE = "telemetry_otel.prometheus"
# How long a collection waits for one registry's collect().
READ_TIMEOUT_S = 5.0
# Bucket counts past it are not whole in a float (see _is_count).
_MAX_COUNT = 2**53
LabelsKey = tuple[tuple[str, str], ...]
# Families whose samples are gauges: their value, as it is.
_GAUGE_TYPES = frozenset(("gauge", "untyped", "unknown", "info", "stateset"))


class RegistryBridge:
    """Reads prometheus_client registries (``read()``, before each collection) into
    instruments of the ``telemetry_otel.prometheus`` scope."""

    def __init__(
        self,
        registries: Sequence[Any],
        provider: MeterProvider,
        shaper: Shaper,
        max_series: int,
        counts: BridgeTally,
        limited: Tally,
        summaries: SummaryBoard,
    ) -> None:
        self._registries = [_registry(r) for r in registries]
        self._meter = provider.get_meter(SCOPE, __version__)
        self._consumer = measurement_consumer(provider)
        self._shaper = shaper
        self._max_series = max_series
        self._bridged, self._failed = counts.bridged, counts.lost["failed"]
        self._limited = limited
        self._summaries = summaries
        # What the last read saw of each observed family: its observations by name.
        self._observed: dict[str, list[Observation]] = {}
        self._instruments: dict[str, Any] = {}
        # Registries whose collect() has not returned yet (see _families).
        self._reading: set[int] = set()
        # Histogram series -> what its buckets, count and sum were at the last read.
        self._last: dict[tuple[str, LabelsKey], tuple[list[float], float]] = {}
        # The read under way, that a collection starting meanwhile waits for (see read()).
        self._ongoing: threading.Event | None = None
        self._ongoing_lock = ForkSafeLock()
        follow_forks(self)

    def after_fork_in_child(self) -> None:
        """A read under way in the parent has no thread in a forked child."""
        self._ongoing = None
        self._reading = set()

    def read(self) -> None:
        """Read every registry once, for the collection about to happen.

        Destinations collect side by side: a collection that starts while another's read
        is under way waits for that read and takes what it saw (its observations, and
        the histogram counts it merged into every reader), rather than reading the
        registries again at once and finding them busy."""
        with self._ongoing_lock:
            ongoing, mine = self._ongoing, self._ongoing is None
            if mine:
                ongoing = self._ongoing = threading.Event()
        assert ongoing is not None
        if not mine:
            ongoing.wait(READ_TIMEOUT_S * len(self._registries) + 1.0)
            return
        try:
            self._read_all()
        finally:
            with self._ongoing_lock:
                self._ongoing = None
            ongoing.set()

    def _read_all(self) -> None:
        observed: dict[str, list[Observation]] = {}
        for registry in self._registries:
            families = self._families(registry)
            if families is None:
                self._failed.increment()
                continue
            for family in families:
                try:
                    self._family(family, observed)
                except Exception:
                    self._failed.increment()
                    warn_limited(
                        f"prometheus-family:{getattr(family, 'name', '?')}",
                        "prometheus_client metric %r could not be bridged",
                        getattr(family, "name", "?"),
                        exc_info=True,
                    )
        self._observed = observed

    def _families(self, registry: Any) -> list[Any] | None:
        """The registry's metric families; None when it raised, or did not answer within
        READ_TIMEOUT_S. Read in a thread of its own: a registry whose collect() never
        returns holds that one thread, never the collection, and is not read again
        until it returns."""
        key = id(registry)
        if key in self._reading:
            warn_limited(
                f"prometheus:{key}",
                "a prometheus_client registry has not returned from an earlier read; "
                "its metrics miss this collection",
            )
            return None
        self._reading.add(key)
        read: dict[str, Any] = {}

        def collect() -> None:
            try:
                read["families"] = list(registry.collect())
            except Exception:
                read["error"] = sys.exc_info()
            finally:
                self._reading.discard(key)

        run_until(time.monotonic() + READ_TIMEOUT_S, collect, "prometheus-read")
        if "families" in read:
            families: list[Any] = read["families"]
            return families
        warn_limited(
            f"prometheus:{key}",
            "a prometheus_client registry %s; its metrics miss this collection",
            "raised while it was read" if "error" in read else "did not answer in time",
            exc_info=read.get("error"),
        )
        return None

    def _family(self, family: Any, observed: dict[str, list[Observation]]) -> None:
        kind = family.type
        if kind == "counter":
            samples = [s for s in family.samples if s.name == f"{family.name}_total"]
            self._observe(family, family.name, samples, observed, counter=True)
        elif kind in _GAUGE_TYPES:
            for name, samples in _by_sample_name(family.samples).items():
                self._observe(family, name, samples, observed, counter=False)
        elif kind in ("histogram", "summary"):
            self._histogram(family, kind == "summary")
        else:  # gaugehistogram: no OTel instrument carries it
            warn_once(
                f"prometheus-type:{family.name}",
                "prometheus_client metric %r of type %s is not bridged",
                family.name,
                kind,
            )

    # -- counters and gauges: observable instruments -----------------------------------------

    def _observe(
        self,
        family: Any,
        name: str,
        samples: list[Any],
        observed: dict[str, list[Observation]],
        *,
        counter: bool,
    ) -> None:
        otel_name = instrument_name(name)
        if otel_name not in self._instruments:
            create = (
                self._meter.create_observable_counter
                if counter
                else self._meter.create_observable_gauge
            )
            self._instruments[otel_name] = create(
                otel_name,
                [self._callback(otel_name)],
                unit=family.unit or "",
                description=family.documentation or "",
            )
        observations: dict[LabelsKey, Observation] = {}
        # Label sets past max_series fold into one overflow series, as the SDK folds them:
        # a counter's values add up there, a gauge keeps the last.
        folded, overflow = 0, 0.0
        samples = self._finite(family, samples)
        for sample in samples:
            attributes = self._attributes(sample.labels)
            key = tuple(sorted(attributes.items()))
            if key not in observations and len(observations) >= self._max_series:
                self._limited.increment()
                folded += 1
                overflow = overflow + sample.value if counter else sample.value
                continue
            observations[key] = Observation(sample.value, attributes)
        if folded:
            observations[()] = Observation(overflow, dict(OVERFLOW_ATTRIBUTES))
        for _ in samples:
            self._bridged.increment()
        observed[otel_name] = list(observations.values())

    def _finite(self, family: Any, samples: list[Any]) -> list[Any]:
        """The samples an OTel observation takes: the SDK ignores a NaN or infinite one
        with a warning at every collection, so they are left out here, counted failed and
        logged once per family."""
        finite = [sample for sample in samples if math.isfinite(sample.value)]
        if len(finite) < len(samples):
            for _ in range(len(samples) - len(finite)):
                self._failed.increment()
            warn_once(
                f"prometheus-nan:{family.name}",
                "prometheus_client metric %r has NaN or infinite samples: they are not "
                "bridged (OpenTelemetry measurements are finite), counted "
                "bridge_failed_prometheus",
                family.name,
            )
        return finite

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return self._observed.get(name, [])

        return observe

    # -- histograms and summaries: merged into every reader's aggregation --------------------

    def _histogram(self, family: Any, summary: bool) -> None:
        series: dict[LabelsKey, dict[str, Any]] = {}
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("le", "quantile")}
            key = tuple(sorted(labels.items()))
            entry = series.setdefault(key, {"labels": labels, "buckets": {}, "quantiles": []})
            suffix = sample.name[len(family.name) :]
            if suffix == "_bucket" and not summary:
                entry["buckets"][float(sample.labels["le"])] = sample.value
            elif suffix in ("_count", "_sum", "_created"):
                entry[suffix] = sample.value
            elif suffix == "" and "quantile" in sample.labels:
                entry["quantiles"].append((float(sample.labels["quantile"]), sample.value))
        otel_name = instrument_name(family.name)
        points: dict[AttributesKey, SummaryPoint] = {}
        for key, entry in list(series.items())[: self._max_series]:
            bounds = tuple(b for b in sorted(entry["buckets"]) if math.isfinite(b))
            cumulative = [entry["buckets"][b] for b in bounds] + [entry.get("_count", 0.0)]
            counts = [cumulative[0]] + [b - a for a, b in itertools.pairwise(cumulative)]
            attributes = self._attributes(entry["labels"])
            self._merge(family, otel_name, key, attributes, bounds, counts, entry)
            if summary:
                points[attributes_key(attributes)] = _summary_point(entry)
        if summary:
            self._summaries.put(otel_name, points)
        if len(series) > self._max_series:
            for _ in range(len(series) - self._max_series):
                self._limited.increment()

    def _merge(
        self,
        family: Any,
        name: str,
        key: LabelsKey,
        attributes: dict[str, Any],
        bounds: tuple[float, ...],
        counts: list[float],
        entry: Mapping[str, Any],
    ) -> None:
        instrument = self._instruments.get(name)
        if instrument is None:
            instrument = self._instruments[name] = self._meter.create_histogram(
                name,
                unit=family.unit or "",
                description=family.documentation or "",
                explicit_bucket_boundaries_advisory=list(bounds),
            )
        if not all(_is_count(n) for n in counts):
            self._failed.increment()
            warn_limited(
                f"prometheus-counts:{name}",
                "prometheus_client histogram %r is not bridged: a bucket count is not a "
                "whole number from 0 to 2**53",
                family.name,
            )
            return
        total = entry.get("_sum", 0.0)
        last_counts, last_total = self._last.get((name, key), ([0.0] * len(counts), 0.0))
        added = [now - before for now, before in zip(counts, last_counts, strict=False)]
        if len(last_counts) != len(counts) or any(n < 0 for n in added):
            added, last_total = list(counts), 0.0  # a new or reset series: all of it is new
        self._last[(name, key)] = (counts, total)
        for _ in range(len(counts) + 1 + len(entry["quantiles"])):  # buckets, sum, quantiles
            self._bridged.increment()
        if not any(added):
            return
        if shared_bucket_bounds(self._consumer, instrument) != bounds:
            self._failed.increment()
            warn_once(
                f"prometheus-buckets:{name}",
                "prometheus_client histogram %r is not bridged: a metric reader wants it "
                "in other buckets (exponential histograms, or a view)",
                family.name,
            )
            return
        merge_histogram(
            self._consumer,
            instrument,
            hash_attributes(attributes),
            attributes,
            bounds,
            (total - last_total, math.inf, -math.inf, [int(n) for n in added]),
        )

    def _attributes(self, labels: Mapping[str, str]) -> dict[str, Any]:
        shaped, cut = self._shaper.attributes(labels)
        if cut:
            self._limited.increment()
        return dict(shaped)


def _is_count(value: float) -> bool:
    """A bucket count the aggregation can add exactly: past 2**53 a float is no longer a
    whole count, and a point's counts past 2**64 would stop every export (OTLP uint64)."""
    return math.isfinite(value) and 0 <= value <= _MAX_COUNT and value == int(value)


def _summary_point(entry: Mapping[str, Any]) -> SummaryPoint:
    created = entry.get("_created")
    return SummaryPoint(
        entry.get("_count", 0.0),
        entry.get("_sum", 0.0),
        tuple(sorted(entry["quantiles"])),
        None if created is None else round(created * 1e9),
    )


def _registry(registry: Any) -> Any:
    if registry == "default":
        from prometheus_client import REGISTRY

        return REGISTRY
    return registry


def _by_sample_name(samples: Iterable[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for sample in samples:
        grouped.setdefault(sample.name, []).append(sample)
    return grouped
