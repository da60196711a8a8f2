"""TraceDecider on its own, on a simulated clock: one decision per legacy trace."""

from __future__ import annotations

from telemetry_otel import Trace
from telemetry_otel._otel.sampling.probability import INCOMPLETE, KEPT_BY, PROBABILITY
from telemetry_otel._otel.sampling.rate_limit import RateLimiter
from tests.sampling_helpers import SLOW_MS, FakeClock, decider_on

KEPT_AT_HALF = (1 << 56) - 1  # randomness above every threshold: kept at any rate > 0
DROPPED_AT_HALF = 1  # below the threshold of any rate < 1


def span(trace_id: str, span_id: str, error: str | None = None, ms: float = 1.0) -> Trace:
    parent = None if span_id == "root" else "root"
    return Trace(trace_id, span_id, "op", ms, parent, timestamp=1_700_000_000.0, error=error)


def labels(kept, trace_id):
    return [(trace.span_id, label.attributes) for trace, label in kept[trace_id]]


def test_a_span_matching_a_rule_keeps_its_whole_trace_at_once_at_probability_one():
    clock = FakeClock()
    decider, kept, sampled_out = decider_on(clock, 0.5)
    assert decider.offer(span("t", "a"), DROPPED_AT_HALF) is True  # held: not decided yet
    assert kept == {} and decider.pending == 1
    assert decider.offer(span("t", "b", error="boom"), DROPPED_AT_HALF) is True
    assert decider.offer(span("t", "root"), DROPPED_AT_HALF) is True  # after: kept at once
    rule = {PROBABILITY: 1.0, KEPT_BY: "error"}
    assert labels(kept, "t") == [("a", rule), ("b", rule), ("root", rule)]
    assert (decider.pending, decider.kept_by_rule, sampled_out) == (0, 1, {})


def test_without_a_rule_the_rate_decides_when_the_window_closes_not_at_the_root():
    clock = FakeClock()
    decider, kept, sampled_out = decider_on(clock, 0.5, wait_s=5.0)
    decider.offer(span("kept", "root"), KEPT_AT_HALF)
    decider.offer(span("dropped", "root"), DROPPED_AT_HALF)
    clock.now = 4.999
    decider.decide_expired()
    assert kept == {} and decider.pending == 2
    clock.now = 5.0
    decider.decide_expired()
    assert labels(kept, "kept") == [("root", {PROBABILITY: 0.5})]
    assert "dropped" not in kept and sampled_out == {"ratio": 1}
    assert decider.pending == 0


def test_a_late_span_follows_its_trace_and_a_late_rule_keeps_the_rest_marked_incomplete():
    clock = FakeClock()
    decider, kept, sampled_out = decider_on(clock, 0.5, wait_s=1.0)
    decider.offer(span("t", "root"), DROPPED_AT_HALF)
    clock.now = 1.0
    decider.decide_expired()
    assert decider.offer(span("t", "late"), DROPPED_AT_HALF) is False
    assert decider.offer(span("t", "slow", ms=SLOW_MS + 1), DROPPED_AT_HALF) is True
    assert labels(kept, "t") == [
        ("slow", {PROBABILITY: 1.0, KEPT_BY: "slow", INCOMPLETE: True}),
    ]
    assert sampled_out == {"ratio": 2} and decider.kept_incomplete == 1


def test_a_full_buffer_decides_its_oldest_trace_by_the_rate_and_counts_it():
    clock = FakeClock()
    decider, kept, sampled_out = decider_on(clock, 0.5, max_pending=2)
    decider.offer(span("old", "a"), DROPPED_AT_HALF)
    decider.offer(span("old", "b"), DROPPED_AT_HALF)
    decider.offer(span("new", "a"), KEPT_AT_HALF)
    assert sampled_out == {"buffer_overflow": 2}
    assert decider.pending == 1 and kept == {}


def test_decide_all_and_close_decide_what_is_held_and_close_holds_nothing_more():
    clock = FakeClock()
    decider, kept, sampled_out = decider_on(clock, 0.5)
    decider.offer(span("t", "root"), KEPT_AT_HALF)
    decider.decide_all()
    assert labels(kept, "t") == [("root", {PROBABILITY: 0.5})]
    decider.close()
    assert decider.offer(span("u", "root"), DROPPED_AT_HALF) is False  # decided at once
    assert decider.pending == 0 and sampled_out == {"ratio": 1}


def test_under_a_rate_limit_a_trace_is_kept_or_dropped_whole():
    clock = FakeClock()
    limiter = RateLimiter(1.0, clock)
    decider, kept, sampled_out = decider_on(clock, 1.0, hold=False, limiter=limiter)
    for number in range(10):
        trace_id = KEPT_AT_HALF - number  # ten traces: the decider tells them by their id
        decider.offer(span(f"t{number}", "root"), trace_id)
        decider.offer(span(f"t{number}", "child"), trace_id)
    assert all(len(spans) == 2 for spans in kept.values())
    assert len(kept) + sampled_out["rate_limit"] // 2 == 10
    assert len(kept) <= 2  # at most 1 per second, plus the first token, in no time at all
