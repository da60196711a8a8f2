"""What happened to every item: per-signal tallies, stats(), and the collector's own metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from telemetry_otel._otel.delivery.outcomes import (
    DROP_REASONS,
    FAILURE_REASONS,
    REJECTED,
    DeliveryCounts,
)
from telemetry_otel._otel.delivery.tally import Tally
from telemetry_otel._otel.runtime.forks import follow_forks
from telemetry_otel._otel.sampling.probability import OUT_REASONS, RATIO
from telemetry_otel._signals import LEGACY_NAMES

SIGNALS = LEGACY_NAMES  # "metric", "event", "trace"
# The scope of the collector's own metrics; the callback bridge, the console and the
# counts in stats() leave it out, so they speak only of what the application collected.
SELF_SCOPE = "telemetry_otel.self"


class Stats(dict[str, dict[str, int]]):
    """``stats()``: the documented dict of counts per signal, printed as a short table.

    Only ``str()`` changes; ``repr()``, equality and every key stay those of the dict.
    """

    def __str__(self) -> str:
        rows = [_TABLE_HEADER] + [_table_row(signal, self[signal]) for signal in self]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_HEADER) - 1)]
        return "\n".join(_aligned(row, widths) for row in rows)

    def losses(self) -> str:
        """One line on what was dropped or failed, per signal; empty when nothing was."""
        parts = []
        for signal, counts in self.items():
            lost = counts["dropped"] + counts["export_failures"]
            if lost:
                parts.append(
                    f"{signal}: {counts['collected']} collected, deliveries "
                    f"{counts['exported']} exported, {lost} lost ({_reasons(counts)})"
                )
        bridged = self.get("metric", {})
        for source, losses in BRIDGE_LOSSES.items():
            found = [(loss, bridged.get(f"bridge_{loss}_{source}", 0)) for loss in losses]
            if any(n for _, n in found):
                shown = " ".join(f"{loss}={n}" for loss, n in found if n)
                parts.append(f"{source}: {bridged[f'bridged_{source}']} bridged, lost ({shown})")
        return "; ".join(parts)


_TABLE_HEADER = (
    "signal",
    "collected",
    "sampled_out",
    "exported",
    "dropped",
    "failed",
    "pending",
    "why",
)


def _table_row(signal: str, counts: Mapping[str, int]) -> tuple[str, ...]:
    numbers = (
        counts["collected"],
        counts["sampled_out"],
        counts["exported"],
        counts["dropped"],
        counts["export_failures"],
        counts["pending"],
    )
    return (signal, *map(str, numbers), _reasons(counts))


def _aligned(row: tuple[str, ...], widths: list[int]) -> str:
    name, *numbers, why = row
    cells = [name.ljust(widths[0])]
    cells += [number.rjust(width) for number, width in zip(numbers, widths[1:], strict=True)]
    return "  ".join([*cells, why]).rstrip()


def _reasons(counts: Mapping[str, int]) -> str:
    """The non-zero reasons behind ``dropped`` and ``export_failures``: ``queue_full=2``."""
    reasons = [(f"dropped_{r}", r) for r in DROP_REASONS]
    reasons += [(f"export_failures_{r}", r) for r in FAILURE_REASONS]
    return " ".join(f"{name}={counts[key]}" for key, name in reasons if counts.get(key))


class SignalTally:
    """Counts kept on the collect path, without locks."""

    def __init__(self) -> None:
        self.collected = Tally()
        # Sampled out by the ratio, the rate limit, or a full tail-sampling buffer.
        self.sampled_out = {reason: Tally() for reason in OUT_REASONS}
        self.sampled_out_by_ratio = self.sampled_out[RATIO]  # the collect path's, at hand
        self.rejected = Tally()
        self.limited = Tally()

    def reset(self) -> None:
        for tally in (self.collected, *self.sampled_out.values(), self.rejected, self.limited):
            tally.reset()


# Metric sources bridged in, and what each can lose: stats()["metric"] carries
# ``bridged_<source>`` and ``bridge_<loss>_<source>`` for each pair here.
BRIDGE_LOSSES = {
    "prometheus": ("failed",),  # a registry or a family raised while it was read
    "statsd": ("malformed", "dropped"),  # a line it could not read; a full packet queue
}


class BridgeTally:
    """What one bridged source brought in, and lost before it became a metric."""

    def __init__(self, losses: tuple[str, ...]) -> None:
        self.bridged = Tally()
        self.lost = {loss: Tally() for loss in losses}

    def reset(self) -> None:
        for tally in (self.bridged, *self.lost.values()):
            tally.reset()

    def counts(self, source: str) -> dict[str, int]:
        counts = {f"bridged_{source}": self.bridged.value}
        counts.update({f"bridge_{loss}_{source}": t.value for loss, t in self.lost.items()})
        return counts


class Accounting:
    """The tallies of one pipeline; zeroed in a forked child, which starts its own story."""

    def __init__(self) -> None:
        self.tallies = {signal: SignalTally() for signal in SIGNALS}
        self.bridges = {source: BridgeTally(losses) for source, losses in BRIDGE_LOSSES.items()}
        follow_forks(self)

    def after_fork_in_child(self) -> None:
        # Reset in place: the collect path holds on to these tallies and their methods.
        for tally in self.tallies.values():
            tally.reset()
        for bridge in self.bridges.values():
            bridge.reset()

    def stats(
        self,
        destinations: Mapping[str, Iterable[DeliveryCounts]],
        held: Mapping[str, tuple[int, int, int]] | None = None,
        spool_unavailable: bool = False,
    ) -> Stats:
        """``held``: per signal, spans awaiting their trace's decision, traces kept whole
        by a tail rule, and traces a rule kept the rest of. ``spool_unavailable``: a
        spool was asked for and could not be had (shown on the signals that spool)."""
        held = held or {}
        stats = Stats(
            (signal, self._signal(signal, destinations[signal], *held.get(signal, (0, 0, 0))))
            for signal in SIGNALS
        )
        for signal in SIGNALS:
            stats[signal]["spool_unavailable"] = int(spool_unavailable and signal != "metric")
        for source, bridge in self.bridges.items():
            stats["metric"].update(bridge.counts(source))
        return stats

    def _signal(
        self,
        signal: str,
        destinations: Iterable[DeliveryCounts],
        awaiting_decision: int,
        kept_by_rule: int,
        kept_incomplete: int,
    ) -> dict[str, int]:
        tally = self.tallies[signal]
        sampled_out = {reason: tally.sampled_out[reason].value for reason in OUT_REASONS}
        total = DeliveryCounts.total(destinations)
        pending = total.pending
        # Rejected items never reached a destination's queue: dropped, never pending.
        total.drop(REJECTED, tally.rejected.value)
        result = {
            "collected": tally.collected.value,
            "sampled_out": sum(sampled_out.values()),
            "dropped": total.dropped,
            "exported": total.exported,
            "export_failures": total.export_failures,
            "pending": pending,
            "limited": tally.limited.value,
            "spooled": total.spooled,
            "recovered": total.recovered,
            "awaiting_decision": awaiting_decision,
            "kept_by_rule": kept_by_rule,
            "kept_incomplete": kept_incomplete,
        }
        result.update({f"sampled_out_{r}": n for r, n in sampled_out.items()})
        result.update({f"dropped_{r}": total.dropped_by.get(r, 0) for r in DROP_REASONS})
        result.update({f"export_failures_{r}": total.failed_by.get(r, 0) for r in FAILURE_REASONS})
        return result


def empty_stats() -> Stats:
    """The stats of a collector that never collected."""
    return Accounting().stats({signal: [] for signal in SIGNALS})


def register_self_metrics(meter: Meter, stats: Callable[[], Stats]) -> None:
    """The counts of stats() as observable instruments: ``telemetry_otel.<count>{signal}``.

    A series appears once its count is not zero (21 series of zeros every interval tell
    a backend nothing), and stays from then on, so an up-down count can go back to 0.
    """

    by_reason = {
        "dropped": DROP_REASONS,
        "sampled_out": OUT_REASONS,
        "export_failures": FAILURE_REASONS,
    }

    def observe(count: str) -> Callable[[CallbackOptions], list[Observation]]:
        reasons: tuple[str | None, ...] = tuple(by_reason.get(count, (None,)))
        seen: set[tuple[str, str | None]] = set()

        def callback(options: CallbackOptions) -> list[Observation]:
            snapshot = stats()
            observations = []
            for signal in SIGNALS:
                for reason in reasons:
                    value = snapshot[signal][f"{count}_{reason}" if reason else count]
                    if not value and (signal, reason) not in seen:
                        continue
                    seen.add((signal, reason))
                    attributes = (
                        {"signal": signal, "reason": reason} if reason else {"signal": signal}
                    )
                    observations.append(Observation(value, attributes))
            return observations

        return callback

    counters = ("collected", "sampled_out", "dropped", "exported", "export_failures", "limited")
    for count in (*counters, "kept_by_rule", "kept_incomplete"):
        meter.create_observable_counter(
            f"telemetry_otel.{count}",
            [observe(count)],
            unit="{item}",
            description=f"Items {count.replace('_', ' ')}, as in TelemetryCollector.stats()",
        )
    meter.create_observable_counter(
        "telemetry_otel.bridged",
        [_observe_bridges(stats)],
        unit="{item}",
        description="Samples, lines, events and checks read from bridged metric sources "
        "(source), and those lost before they became telemetry (source, reason)",
    )
    meter.create_observable_up_down_counter(
        "telemetry_otel.pending",
        [observe("pending")],
        unit="{item}",
        description="Deliveries queued, being exported or spooled",
    )
    meter.create_observable_up_down_counter(
        "telemetry_otel.awaiting_decision",
        [observe("awaiting_decision")],
        unit="{item}",
        description="Legacy spans waiting for their trace's sampling decision",
    )


def _observe_bridges(stats: Callable[[], Stats]) -> Callable[[CallbackOptions], list[Observation]]:
    """``telemetry_otel.bridged{source}`` and, for losses, ``{source, reason}``: each
    series once its count is not zero."""
    seen: set[str] = set()

    def callback(options: CallbackOptions) -> list[Observation]:
        metric = stats()["metric"]
        observations = []
        for source, losses in BRIDGE_LOSSES.items():
            keys: list[tuple[str, str | None]] = [(f"bridged_{source}", None)]
            keys += [(f"bridge_{loss}_{source}", loss) for loss in losses]
            for key, reason in keys:
                if metric[key] or key in seen:
                    seen.add(key)
                    attributes = {"source": source}
                    if reason is not None:
                        attributes["reason"] = reason
                    observations.append(Observation(metric[key], attributes))
        return observations

    return callback


@dataclass(frozen=True)
class Component:
    """One exporter (and the queue before it) as the SDK-metric conventions see it.

    ``kind`` is span, log or metric_data_point; ``capacity`` is its queue's, None for
    a metric exporter (the SDK's reader has no queue).
    """

    kind: str
    type: str
    name: str
    counts: DeliveryCounts
    capacity: int | None = None


# The conventions' unit for each kind of item.
_UNITS = {"span": "{span}", "log": "{log_record}", "metric_data_point": "{data_point}"}


def register_convention_metrics(meter: Meter, components: Callable[[], list[Component]]) -> None:
    """The semantic conventions' SDK metrics (``otel.sdk.exporter.*``,
    ``otel.sdk.processor.*``) from each exporter's counts, for dashboards built on them.

    - ``otel.sdk.exporter.<kind>.exported``: items whose export finished, without
      ``error.type`` when exported, with it (this library's failure reason: unavailable,
      refused, partial, callback, exporter) when not;
    - ``otel.sdk.processor.<span|log>.processed``: items the queue handed to its exporter,
      and those it dropped, with ``error.type`` the drop reason (queue_full, shutdown…);
    - ``otel.sdk.processor.<span|log>.queue.size`` and ``.queue.capacity``.

    Attributes ``otel.component.type`` and ``otel.component.name`` name the exporter (the
    processor: ``batching_<kind>_processor``). Each series appears once it is not zero
    (a queue's capacity once the queue took an item).
    """
    seen: set[str] = set()

    def points(select: Callable[[Component], list[tuple[int, dict[str, str]]]], kind: str) -> Any:
        def callback(options: CallbackOptions) -> list[Observation]:
            observations = []
            for found in components():
                if found.kind != kind:
                    continue
                for value, attributes in select(found):
                    key = f"{kind}|{select.__name__}|{sorted(attributes.items())}"
                    if value or key in seen:
                        seen.add(key)
                        observations.append(Observation(value, attributes))
            return observations

        return callback

    for kind in ("span", "log", "metric_data_point"):
        meter.create_observable_counter(
            f"otel.sdk.exporter.{kind}.exported",
            [points(_exported, kind)],
            unit=_UNITS[kind],
            description=f"The number of {_UNITS[kind][1:-1]}s for which the export has finished",
        )
    for kind in ("span", "log"):
        meter.create_observable_counter(
            f"otel.sdk.processor.{kind}.processed",
            [points(_processed, kind)],
            unit=_UNITS[kind],
            description=f"The number of {_UNITS[kind][1:-1]}s for which the processing has "
            "finished",
        )
        meter.create_observable_up_down_counter(
            f"otel.sdk.processor.{kind}.queue.size",
            [points(_queue_size, kind)],
            unit=_UNITS[kind],
            description=f"The number of {_UNITS[kind][1:-1]}s in the processor's queue",
        )
        meter.create_observable_up_down_counter(
            f"otel.sdk.processor.{kind}.queue.capacity",
            [points(_queue_capacity, kind)],
            unit=_UNITS[kind],
            description="The maximum number of items the processor's queue holds",
        )


def _named(component: Component) -> dict[str, str]:
    return {"otel.component.type": component.type, "otel.component.name": component.name}


def _processor(component: Component) -> dict[str, str]:
    kind = f"batching_{component.kind}_processor"
    return {"otel.component.type": kind, "otel.component.name": f"{kind}/{component.name}"}


def _exported(component: Component) -> list[tuple[int, dict[str, str]]]:
    counts = component.counts
    done = [(counts.exported, _named(component))]
    for reason, count in sorted(counts.failed_by.items()):
        done.append((count, {**_named(component), "error.type": reason}))
    return done


def _processed(component: Component) -> list[tuple[int, dict[str, str]]]:
    counts = component.counts
    handed = counts.exported + counts.export_failures + counts.spooled
    done = [(handed, _processor(component))]
    for reason, count in sorted(counts.dropped_by.items()):
        done.append((count, {**_processor(component), "error.type": reason}))
    return done


def _queue_size(component: Component) -> list[tuple[int, dict[str, str]]]:
    return [(max(0, component.counts.pending - component.counts.spooled), _processor(component))]


def _queue_capacity(component: Component) -> list[tuple[int, dict[str, str]]]:
    # Once the queue took an item: a constant series from start would make an idle
    # collector export at every interval (and its stop wait on a dead endpoint).
    used = component.counts.submitted > 0
    return [((component.capacity or 0) if used else 0, _processor(component))]
