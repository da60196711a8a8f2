"""A TraceDecider on a simulated clock, for the sampling tests."""

from __future__ import annotations

from collections import Counter, defaultdict

from telemetry_otel import Trace
from telemetry_otel._otel.sampling import decider as deciding
from telemetry_otel._otel.sampling import probability as consistent

SLOW_MS = 1000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def decider_on(clock: FakeClock, rate: float, **options):
    """A TraceDecider on a simulated clock, and what it kept and sampled out."""
    kept: dict[str, list[tuple[Trace, consistent.Label]]] = defaultdict(list)
    sampled_out: Counter[str] = Counter()

    def keep(traces, label):
        for trace in traces:
            kept[trace.trace_id].append((trace, label))

    def sample_out(reason, count):
        sampled_out[reason] += count

    options = {"hold": True, "wait_s": 5.0, "max_pending": 10_000, **options}
    decider = deciding.TraceDecider(
        rate,
        deciding.TailRules(True, SLOW_MS),
        options.pop("limiter", None),
        keep=keep,
        sample_out=sample_out,
        clock=clock,
        background=False,
        **options,
    )
    return decider, kept, sampled_out
