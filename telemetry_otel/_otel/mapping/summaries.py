"""Bridged Prometheus summaries, for the destinations whose format carries OTLP summaries.

The SDK's metric data has no summary point: a bridged summary travels through it as a
histogram with one bucket (its count and sum), which every destination can take. An
encoder of OTLP (the OTLP endpoints, the JSON files) then writes it as what it is, a
summary with its quantiles, from what the bridge last read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AttributesKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SummaryPoint:
    count: float
    total: float
    quantiles: tuple[tuple[float, float], ...]
    start_ns: int | None


class SummaryBoard:
    """The last read of each bridged summary series, by metric name and attributes."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._points: dict[str, dict[AttributesKey, SummaryPoint]] = {}

    def put(self, name: str, series: Mapping[AttributesKey, SummaryPoint]) -> None:
        """One read of a summary family: its series replace those of the read before."""
        self._points[name] = dict(series)

    def get(self, name: str) -> Mapping[AttributesKey, SummaryPoint] | None:
        return self._points.get(name)


def attributes_key(attributes: Mapping[str, Any]) -> AttributesKey:
    return tuple(sorted((key, str(value)) for key, value in attributes.items()))


def as_summaries(request: Any, board: SummaryBoard) -> None:
    """Rewrite, in an ExportMetricsServiceRequest, each bridged summary the SDK carried as
    a one-bucket histogram into an OTLP summary: count and sum as the registry keeps
    them (cumulative, as OTLP summaries are), quantiles, and its creation time."""
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != board.scope:
                continue
            for metric in scope_metrics.metrics:
                series = board.get(metric.name)
                if series is not None and metric.WhichOneof("data") == "histogram":
                    _rewrite(metric, series)


def _rewrite(metric: Any, series: Mapping[AttributesKey, SummaryPoint]) -> None:
    histogram_points: Sequence[Any] = list(metric.histogram.data_points)
    metric.ClearField("histogram")
    summary = metric.summary
    summary.SetInParent()
    for histogram_point in histogram_points:
        attributes = histogram_point.attributes
        point = series.get(tuple(sorted((kv.key, kv.value.string_value) for kv in attributes)))
        if point is None:
            continue
        data_point = summary.data_points.add()
        data_point.attributes.extend(attributes)
        data_point.start_time_unix_nano = point.start_ns or histogram_point.start_time_unix_nano
        data_point.time_unix_nano = histogram_point.time_unix_nano
        data_point.count = int(point.count)
        data_point.sum = point.total
        for quantile, value in point.quantiles:
            quantile_value = data_point.quantile_values.add()
            quantile_value.quantile = quantile
            quantile_value.value = value
