"""What each process of a service publishes for a shared Prometheus page, and the merge.

Every process writes the metric families its own OTel Prometheus reader gives (as
prometheus_client yields them) to a JSON file of its own; whichever process serves
the port merges them. prometheus_client's multiprocess mode does the same for its own
metrics only, from memory-mapped files written on every measurement: here a process
writes once per collection interval, from the SDK's aggregation, and everything the
library exports takes part.

The rules:
- counters, histograms and summaries' counts and sums: summed over every process,
  those that exited included (their last totals stay counted);
- a sample's ``_created`` time: the earliest;
- gauges: from live processes only, by the endpoint's ``gauges`` rule: each process's
  series with a ``process_pid`` label (``per_process``, the default), or one series
  with their ``sum``, ``max``, ``min``, or the ``last`` one set (to a collection
  interval: a process notes when a value changed when it publishes);
- ``target_info``: the serving process's, without ``service_instance_id`` (the page
  speaks for every process).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from telemetry_otel._otel.runtime.log import warn_once

GAUGE_RULES = ("per_process", "sum", "max", "min", "last")
PROCESS_LABEL = "process_pid"
_SUMMED = ("counter", "histogram", "gaugehistogram", "summary")
_PER_PROCESS_INFO_LABELS = ("service_instance_id",)


@dataclass
class Publication:
    """One process's families as it last wrote them."""

    pid: int
    written: float  # time.time() when written
    live: bool
    families: list[dict[str, Any]]


def families_to_json(families: Iterable[Metric]) -> list[dict[str, Any]]:
    """prometheus_client metric families as plain data, for a publication file."""
    return [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "unit": family.unit,
            "samples": [[s.name, dict(s.labels), s.value] for s in family.samples],
        }
        for family in families
    ]


Stamps = dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[float, float]]


def stamp_gauges(families: list[dict[str, Any]], before: Stamps, now: float) -> Stamps:
    """Give each gauge sample the time its value last changed in this process (``now``
    when it differs from ``before``, the stamps of the last call), for the ``last`` rule:
    a family carries no time of its own. Returns the stamps for the next call."""
    after: Stamps = {}
    for family in families:
        if family["type"] != "gauge":
            continue
        for sample in family["samples"]:
            key = (family["name"], sample[0], tuple(sorted(sample[1].items())))
            value, stamp = before.get(key, (None, now))
            if value != sample[2]:
                stamp = now
            after[key] = (sample[2], stamp)
            sample.append(stamp)
    return after


def encode(
    pid: int, written: float, families: list[dict[str, Any]], folded: list[str] | None = None
) -> bytes:
    """A publication file's content; ``folded``: the exited processes' file it stands for."""
    content: dict[str, Any] = {"pid": pid, "written": written, "families": families}
    if folded is not None:
        content["folded"] = folded
    return json.dumps(content).encode()


def folded_tokens(data: bytes) -> set[str]:
    """The exited processes a folded file stands for; ValueError when it is not one."""
    folded = json.loads(data).get("folded", [])
    if not isinstance(folded, list):
        raise ValueError("not a folded publication: bad folded list")
    return {token for token in folded if isinstance(token, str)}


def decode(data: bytes, live: bool) -> Publication:
    """A publication file's content; ValueError when it is not one."""
    try:
        loaded = json.loads(data)
        pid, written, families = loaded["pid"], loaded["written"], loaded["families"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"not a publication: {error}") from None
    if not isinstance(pid, int) or not isinstance(written, (int, float)):
        raise ValueError("not a publication: bad pid or time")
    if not isinstance(families, list) or not all(_is_family(f) for f in families):
        raise ValueError("not a publication: bad families")
    return Publication(pid, float(written), live, families)


def _is_family(family: Any) -> bool:
    return (
        isinstance(family, dict)
        and all(isinstance(family.get(key), str) for key in ("name", "type", "help", "unit"))
        and isinstance(family.get("samples"), list)
        and all(_is_sample(sample) for sample in family["samples"])
    )


def _is_sample(sample: Any) -> bool:
    return (
        isinstance(sample, list)
        and len(sample) in (3, 4)  # a gauge's: the time its value was set
        and all(_is_number(n) for n in sample[2:])
        and isinstance(sample[0], str)
        and isinstance(sample[1], dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in sample[1].items())
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Family:
    """One merged family: its first publisher's metadata and its samples by key."""

    def __init__(self, family: dict[str, Any]) -> None:
        self.name: str = family["name"]
        self.type: str = family["type"]
        self.help: str = family["help"]
        self.unit: str = family["unit"]
        # (sample name, labels) -> [labels, value, time written] in first-seen order.
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] = {}
        self.source: Publication | None = None  # info families: the one they come from

    def add(self, name: str, labels: dict[str, str], value: float, combine: str, at: float) -> None:
        key = (name, tuple(sorted(labels.items())))
        held = self.samples.get(key)
        if held is None:
            self.samples[key] = [labels, value, at]
        elif combine == "sum":
            held[1] += value
        elif combine == "min":
            held[1] = min(held[1], value)
        elif combine == "max":
            held[1] = max(held[1], value)
        elif at > held[2]:  # last
            held[1], held[2] = value, at

    def metric(self) -> Metric:
        metric = Metric(self.name, self.help, self.type, self.unit)
        for (name, _), (labels, value, _) in self.samples.items():
            metric.add_sample(name, labels, value)
        return metric


def merge(publications: list[Publication], gauges: str) -> list[Metric]:
    """One page from every process's publication, the serving process's first.

    Each name the page writes belongs to one family: a family whose name or samples
    another family of another type already writes (a collected gauge ``jobs_total`` and
    a counter ``jobs``, a bridged family and a collected metric of one name) is left
    out, with one warning, rather than written with a second ``# TYPE`` line that
    Prometheus and ``promtool`` refuse the page for.
    """
    families: dict[str, _Family] = {}
    written: dict[str, str] = {}  # every name the page writes -> its family's name
    for publication in publications:
        for family in publication.families:
            merged = families.get(family["name"])
            names = _written_names(family)
            clash = next(
                (written[n] for n in names if written.get(n, family["name"]) != family["name"]),
                None,
            )
            if merged is not None and merged.type != family["type"]:
                clash = merged.name
            if clash is not None:
                _warn_clash(family, clash)
                continue
            if merged is None:
                merged = families[family["name"]] = _Family(family)
            written.update(dict.fromkeys(names, family["name"]))
            _add_family(merged, family, publication, gauges)
    return [family.metric() for family in families.values() if family.samples]


def _written_names(family: dict[str, Any]) -> set[str]:
    """The names a family's lines carry: its ``# TYPE`` name and its samples'."""
    name = family["name"]
    typed = f"{name}_total" if family["type"] == "counter" else name
    return {typed, *(sample[0] for sample in family["samples"])}


def _warn_clash(family: dict[str, Any], other: str) -> None:
    warn_once(
        f"prometheus-clash:{family['name']}:{family['type']}",
        "metric %r (%s) is left off the Prometheus page: its name is taken by metric %r "
        "of another type (a page with two # TYPE lines for one name is refused)",
        family["name"],
        family["type"],
        other,
    )


def _add_family(
    merged: _Family, family: dict[str, Any], publication: Publication, rule: str
) -> None:
    kind, at = family["type"], publication.written
    if kind == "info":
        if merged.source is not None and merged.source is not publication:
            return
        merged.source = publication
    for name, labels, value, *stamp in family["samples"]:
        if stamp:
            at = stamp[0]
        if kind == "info":
            labels = {k: v for k, v in labels.items() if k not in _PER_PROCESS_INFO_LABELS}
            merged.add(name, labels, value, "last", at)
        elif kind in _SUMMED and "quantile" not in labels:
            combine = "min" if name.endswith("_created") else "sum"
            merged.add(name, labels, value, combine, at)
        elif publication.live:  # gauges, quantiles, anything else: the living state
            if rule == "per_process" or "quantile" in labels:
                merged.add(name, {**labels, PROCESS_LABEL: str(publication.pid)}, value, "last", at)
            else:
                merged.add(name, labels, value, rule, at)
