"""Sampling: tail rules keep error and slow traces whole, the rate limit holds, every kept
item says the probability it was kept with, and what is dropped is counted by reason."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from opentelemetry import context

from telemetry_otel import Event, EventSeverity, TelemetryConfig, Trace
from telemetry_otel._otel.mapping.ids import otel_trace_id
from telemetry_otel._otel.sampling import live as live_sampling
from telemetry_otel._otel.sampling import probability as consistent
from telemetry_otel._otel.sampling.rate_limit import RateLimiter
from tests.otlp_receiver import attributes_of
from tests.sampling_helpers import SLOW_MS, FakeClock, decider_on


def threshold(probability: float) -> int:
    """The specification's rejection threshold for a probability (56-bit randomness)."""
    return 2**56 - round(probability * 2**56)


def th_value(probability: float) -> str:
    """``th`` as the tracestate carries it: 14 hex digits, trailing zeros dropped."""
    value = threshold(probability)
    return "0" if value == 0 else f"{value:014x}".rstrip("0")


def ratio_keeps(legacy_trace_id: str, probability: float) -> bool:
    return otel_trace_id(legacy_trace_id) & (2**56 - 1) >= threshold(probability)


@dataclass
class Plan:
    """One legacy trace of a seeded stream: its spans in the order they arrive."""

    trace_id: str
    spans: list[Trace]
    rule: str | None = None  # "error" or "slow": the rule one of its spans matches
    rule_before_root: bool = False  # that span arrives no later than the root
    late: list[Trace] = field(default_factory=list)


def seeded_plans(seed: int, count: int) -> list[Plan]:
    """Traces of 2 to 6 spans; 3% with an error on one span, 3% with one slow span;
    half arrive root first, half children first (root last), the children shuffled."""
    rng = random.Random(seed)
    plans = []
    for number in range(count):
        trace_id = f"order-{seed}-{number}"
        size = rng.randint(2, 6)
        fields = [
            {
                "span_id": f"s{i}",
                "parent": None if i == 0 else f"s{rng.randrange(i)}",
                "duration": rng.uniform(1.0, 50.0),
                "error": None,
            }
            for i in range(size)
        ]
        kind = rng.random()
        rule = "error" if kind < 0.03 else "slow" if kind < 0.06 else None
        if rule == "error":
            rng.choice(fields)["error"] = "payment declined"
        elif rule == "slow":
            rng.choice(fields)["duration"] = SLOW_MS + rng.uniform(1.0, 5000.0)
        children = rng.sample(fields[1:], size - 1)
        order = fields[:1] + children if rng.random() < 0.5 else children + fields[:1]
        spans = [
            Trace(
                trace_id,
                f["span_id"],
                "op",
                f["duration"],
                parent_span_id=f["parent"],
                error=f["error"],
                timestamp=1_700_000_000.0,
            )
            for f in order
        ]
        root_at = next(i for i, span in enumerate(spans) if span.parent_span_id is None)
        matched_at = next(
            (i for i, s in enumerate(spans) if s.error or s.duration_ms > SLOW_MS), None
        )
        plans.append(Plan(trace_id, spans, rule, matched_at is not None and matched_at <= root_at))
    return plans


def interleaved(plans: list[Plan], seed: int, concurrent: int) -> list[Trace]:
    """The spans of all plans as one stream, ``concurrent`` traces in flight at a time."""
    rng = random.Random(seed)
    waiting = iter(plans)
    active = [list(p.spans) for p in (next(waiting, None) for _ in range(concurrent)) if p]
    stream = []
    while active:
        index = rng.randrange(len(active))
        stream.append(active[index].pop(0))
        if not active[index]:
            upcoming = next(waiting, None)
            if upcoming is None:
                active.pop(index)
            else:
                active[index] = list(upcoming.spans)
    return stream


def received_spans(otlp_receiver):
    """Spans on the wire, by legacy trace id: (attributes, tracestate) each."""
    by_trace = defaultdict(list)
    for _, span in otlp_receiver.spans():
        attributes = attributes_of(span.attributes)
        by_trace[attributes["legacy.trace_id"]].append((attributes, span.trace_state))
    return by_trace


def grpc(otlp_receiver) -> list[str]:
    return [f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"]


# -- tail rules --------------------------------------------------------------------------------


def test_error_and_slow_traces_are_kept_whole_whatever_order_their_spans_arrive_in(
    otlp_receiver, make_collector
):
    plans = seeded_plans(seed=7, count=10_000)
    collector = make_collector(
        export_endpoints=grpc(otlp_receiver),
        buffer_size=100_000,
        trace_sample_rate=0.01,
        keep_traces_slower_than_ms=SLOW_MS,
        trace_decision_wait_ms=120_000,
    )
    stream = interleaved(plans, seed=8, concurrent=40)
    highest = 0
    for number, span in enumerate(stream):
        collector.collect_trace(span)
        if number % 50 == 0:
            highest = max(highest, collector.stats()["trace"]["awaiting_decision"])
    # Traces dropped at their root wait out their window: the default bound is reached,
    # and holds; what it forces out is long complete.
    assert 9_000 < highest <= 10_000
    assert collector.flush(30_000) is True
    # Spans after flush() released the traces: one matching a rule keeps what is left of
    # a dropped trace (counted), a plain one follows the decision.
    for plan in plans[:500]:
        late = Trace(plan.trace_id, "late", "op", 1.0, parent_span_id="s0", error="late failure")
        plan.late.append(late)
        assert collector.collect_trace(late) is True
    plain = Trace(plans[500].trace_id, "late", "op", 1.0, parent_span_id="s0")
    plans[500].late.append(plain)
    follows = plans[500].rule is not None or ratio_keeps(plain.trace_id, 0.01)
    assert collector.collect_trace(plain) is follows
    assert collector.flush(30_000) is True

    received = received_spans(otlp_receiver)
    kept_by_rule = {p.trace_id for p in plans if p.rule}
    kept_by_ratio = {p.trace_id for p in plans if not p.rule and ratio_keeps(p.trace_id, 0.01)}
    rescued_late = {p.trace_id for p in plans[:500]} - kept_by_rule - kept_by_ratio
    assert set(received) == kept_by_rule | kept_by_ratio | rescued_late
    # Both orders, and rules matched after the root, are in the stream.
    late_rule = {p.trace_id for p in plans if p.rule and not p.rule_before_root}
    assert len(kept_by_rule) > 500 and len(late_rule) > 200
    # The ratio part: 1% of the other traces, within 4 standard deviations of the
    # binomial (the stream is seeded; this checks the trace-id hash spreads evenly).
    others = len(plans) - len(kept_by_rule)
    sd = (others * 0.01 * 0.99) ** 0.5
    assert abs(len(kept_by_ratio) - others * 0.01) <= 4 * sd
    for plan in plans:  # never split: a kept trace arrives with every span, late ones too
        if plan.trace_id in kept_by_rule | kept_by_ratio:
            assert sorted(a["legacy.span_id"] for a, _ in received[plan.trace_id]) == sorted(
                s.span_id for s in plan.spans + plan.late
            )
    for trace_id in rescued_late:  # what was left: the late span alone, said so
        [(attributes, trace_state)] = received[trace_id]
        assert (attributes["legacy.span_id"], attributes["sampling.kept_by"]) == ("late", "error")
        assert attributes["sampling.incomplete"] is True
        assert trace_state == "ot=th:0"
    for trace_id, spans in received.items():
        for attributes, trace_state in spans:
            if trace_id in kept_by_rule:
                rule = next(p.rule for p in plans if p.trace_id == trace_id)
                assert attributes["sampling.kept_by"] == rule
                assert (attributes["sampling.probability"], trace_state) == (1.0, "ot=th:0")
            elif trace_id in kept_by_ratio:
                assert "sampling.kept_by" not in attributes
                assert attributes["sampling.probability"] == 0.01
                assert trace_state == f"ot=th:{th_value(0.01)}"

    stats = collector.stats()["trace"]
    spans_kept = sum(len(spans) for spans in received.values())
    total = len(stream) + 501
    assert stats["collected"] == total
    assert stats["exported"] == spans_kept
    assert stats["sampled_out"] == total - spans_kept
    assert stats["sampled_out"] == stats["sampled_out_ratio"] + stats["sampled_out_buffer_overflow"]
    assert stats["sampled_out_buffer_overflow"] > 0
    assert stats["sampled_out_rate_limit"] == 0
    assert (stats["kept_by_rule"], stats["kept_incomplete"]) == (
        len(kept_by_rule),
        len(rescued_late),
    )
    assert stats["awaiting_decision"] == 0
    # Counts scale back: each trace kept whole stands for 1 / probability traces.
    estimate = len(kept_by_rule) + len(kept_by_ratio) / 0.01
    assert abs(estimate - len(plans)) <= 4 * sd / 0.01


def test_the_buffer_stays_within_max_pending_spans_and_overflow_is_decided_by_the_ratio(
    otlp_receiver, make_collector
):
    plans = seeded_plans(seed=11, count=2000)
    collector = make_collector(
        export_endpoints=grpc(otlp_receiver),
        buffer_size=100_000,
        trace_sample_rate=0.1,
        keep_traces_slower_than_ms=SLOW_MS,
        max_pending_spans=50,
    )
    highest = 0
    for span in interleaved(plans, seed=12, concurrent=40):
        collector.collect_trace(span)
        highest = max(highest, collector.stats()["trace"]["awaiting_decision"])
    assert highest == 50
    assert collector.flush(30_000) is True

    received = received_spans(otlp_receiver)
    stats = collector.stats()["trace"]
    # 40 traces in flight hold more than 50 spans: the oldest were decided early.
    assert stats["sampled_out_buffer_overflow"] > 0
    assert stats["sampled_out"] == (
        stats["sampled_out_ratio"] + stats["sampled_out_buffer_overflow"]
    )
    assert stats["collected"] == stats["exported"] + stats["sampled_out"]
    ratio_kept = {p.trace_id for p in plans if ratio_keeps(p.trace_id, 0.1)}
    rule_kept = set(received) - ratio_kept
    # Overflow decides by the ratio, so no trace the ratio keeps is lost or split; what
    # else is kept was kept by a rule: whole, or what was left after overflow released
    # its first spans, counted apart.
    assert ratio_kept <= set(received)
    assert all(p.rule for p in plans if p.trace_id in rule_kept)
    whole = {p.trace_id for p in plans if len(received.get(p.trace_id, ())) == len(p.spans)}
    assert ratio_kept <= whole
    incomplete = rule_kept - whole
    assert incomplete and all(a["sampling.kept_by"] for t in incomplete for a, _ in received[t])
    assert stats["kept_incomplete"] == len(incomplete)
    assert stats["kept_by_rule"] >= len(rule_kept - incomplete)


def test_a_trace_whose_root_never_comes_is_decided_after_the_wait(otlp_receiver, make_collector):
    ids = [f"orphan-{n}" for n in range(40)]
    kept = next(t for t in ids if ratio_keeps(t, 0.5))
    dropped = next(t for t in ids if not ratio_keeps(t, 0.5))
    collector = make_collector(
        export_endpoints=grpc(otlp_receiver), trace_sample_rate=0.5, trace_decision_wait_ms=200
    )
    for trace_id in (kept, dropped):
        for span_id in ("a", "b"):
            assert collector.collect_trace(
                Trace(trace_id, span_id, "op", 1.0, parent_span_id="gone")
            )
    assert collector.stats()["trace"]["awaiting_decision"] == 4
    for _ in range(100):  # bounded: 5 s at most
        if collector.stats()["trace"]["awaiting_decision"] == 0:
            break
        time.sleep(0.05)
    stats = collector.stats()["trace"]
    assert (stats["awaiting_decision"], stats["sampled_out_ratio"]) == (0, 2)
    assert collector.flush(10_000) is True
    received = received_spans(otlp_receiver)
    assert set(received) == {kept}
    assert {a["sampling.probability"] for a, _ in received[kept]} == {0.5}


def test_an_error_after_the_root_keeps_the_trace_whole_within_its_window(make_collector, recorder):
    collector = make_collector(trace_sample_rate=0.0)
    collector.register_exporter(recorder)
    # Dropped by the rate at its root, the trace waits out its window: True, waiting.
    assert collector.collect_trace(Trace("t", "root", "op", 9.0)) is True
    assert collector.collect_trace(Trace("t", "a", "op", 1.0, parent_span_id="root")) is True
    assert collector.stats()["trace"]["awaiting_decision"] == 2
    assert (
        collector.collect_trace(Trace("t", "b", "op", 1.0, parent_span_id="a", error="timeout"))
        is True
    )
    assert collector.collect_trace(Trace("t", "c", "op", 1.0, parent_span_id="a")) is True
    assert collector.flush() is True
    assert sorted(t.span_id for t in recorder.of("trace")) == ["a", "b", "c", "root"]
    stats = collector.stats()["trace"]
    assert (stats["kept_by_rule"], stats["kept_incomplete"], stats["sampled_out"]) == (1, 0, 0)
    assert stats["awaiting_decision"] == 0


def test_spans_spread_over_most_of_their_window_are_decided_as_if_they_came_together():
    plans = seeded_plans(seed=21, count=10_000)
    clock = FakeClock()
    decider, kept, sampled_out = decider_on(clock, 0.01, wait_s=5.0)
    # A trace starts every 10 ms; its spans arrive spread over 4 s, 80% of its window.
    arrivals = sorted(
        (number * 0.01 + 4.0 * index / (len(plan.spans) - 1), number, index)
        for number, plan in enumerate(plans)
        for index in range(len(plan.spans))
    )
    highest = 0
    for at, number, index in arrivals:
        clock.now = at
        decider.decide_expired()  # what the timer thread does
        span = plans[number].spans[index]
        decider.offer(span, otel_trace_id(span.trace_id))
        highest = max(highest, decider.pending)
    clock.now += 5.0
    decider.decide_expired()
    assert decider.pending == 0
    assert 1_000 < highest <= 10_000  # 500 traces in flight, none forced out
    rule_traces = {p.trace_id for p in plans if p.rule}
    ratio_traces = {p.trace_id for p in plans if not p.rule and ratio_keeps(p.trace_id, 0.01)}
    assert set(kept) == rule_traces | ratio_traces
    for plan in plans:
        if plan.trace_id in kept:
            spans = kept[plan.trace_id]
            assert sorted(t.span_id for t, _ in spans) == sorted(s.span_id for s in plan.spans)
            expected = (1.0, plan.rule) if plan.rule else (0.01, None)
            assert {
                (lbl.probability, lbl.attributes.get("sampling.kept_by")) for _, lbl in spans
            } == {expected}
    dropped = sum(len(p.spans) for p in plans if p.trace_id not in kept)
    assert sampled_out == {"ratio": dropped}
    assert (decider.kept_by_rule, decider.kept_incomplete) == (len(rule_traces), 0)

    # After its window, while its decision is remembered, an error keeps only what is
    # left of a dropped trace, marked and counted.
    late = [p for p in plans if p.trace_id not in kept][-50:]
    clock.now += 1.0
    for plan in late:
        error = Trace(plan.trace_id, "late", "op", 1.0, parent_span_id="s0", error="boom")
        assert decider.offer(error, otel_trace_id(plan.trace_id)) is True
    assert decider.kept_incomplete == 50
    for plan in late:
        [(span, lbl)] = kept[plan.trace_id]
        assert (span.span_id, lbl.probability) == ("late", 1.0)
        assert lbl.attributes == {
            "sampling.probability": 1.0,
            "sampling.kept_by": "error",
            "sampling.incomplete": True,
        }


def test_flush_decides_held_traces_with_what_it_knows(make_collector, recorder):
    collector = make_collector(trace_sample_rate=0.0, keep_traces_slower_than_ms=SLOW_MS)
    collector.register_exporter(recorder)
    assert collector.collect_trace(Trace("t", "child", "op", 5.0, parent_span_id="root"))
    assert collector.stats()["trace"]["awaiting_decision"] == 1
    assert collector.flush() is True
    stats = collector.stats()["trace"]
    assert (stats["awaiting_decision"], stats["sampled_out_ratio"]) == (0, 1)
    # A slow span decides its trace at once: kept, its earlier spans with it.
    assert collector.collect_trace(Trace("u", "child", "op", 5.0, parent_span_id="root"))
    assert collector.collect_trace(Trace("u", "slow", "op", SLOW_MS + 1, parent_span_id="root"))
    assert collector.flush() is True
    assert sorted(t.span_id for t in recorder.of("trace")) == ["child", "slow"]
    assert collector.stats()["trace"]["kept_by_rule"] == 1


def test_a_span_arriving_while_stop_runs_is_decided_not_left_waiting(make_collector):
    collector = make_collector(trace_sample_rate=0.0)
    decider = collector._pipeline.traces.decider
    decider.close()  # as stop() does first, before the collector stops accepting spans
    assert not collector.collect_trace(Trace("t", "child", "op", 5.0, parent_span_id="root"))
    stats = collector.stats()["trace"]
    assert (stats["awaiting_decision"], stats["sampled_out_ratio"]) == (0, 1)


def test_no_span_is_held_when_the_rate_keeps_everything(make_collector, recorder):
    collector = make_collector(keep_traces_slower_than_ms=1.0)  # sample_rate 1.0
    collector.register_exporter(recorder)
    assert collector.collect_trace(Trace("t", "child", "op", 5.0, parent_span_id="root"))
    assert collector.stats()["trace"]["awaiting_decision"] == 0
    assert collector.flush() is True
    assert [t.span_id for t in recorder.of("trace")] == ["child"]


def test_a_held_span_is_exported_as_it_was_collected(make_collector, recorder):
    collector = make_collector(trace_sample_rate=0.0)
    collector.register_exporter(recorder)
    span = Trace("t", "child", "op", 5.0, parent_span_id="root", tags={"step": 1})
    collector.collect_trace(span)
    span.tags["step"] = 2
    span.operation = "changed"
    collector.collect_trace(Trace("t", "root", "op", 9.0, error="failed"))
    assert collector.flush() is True
    child = next(t for t in recorder.of("trace") if t.span_id == "child")
    assert (child.operation, child.tags) == ("op", {"step": 1})


# -- the rate limit ----------------------------------------------------------------------------


def test_the_rate_limit_holds_within_two_percent_and_never_splits_a_trace():
    clock = FakeClock()
    limiter = RateLimiter(200, clock)
    decider, kept, sampled_out = decider_on(clock, 1.0, hold=False, limiter=limiter)
    offered = 0
    for step in range(5 * 20_000):  # 5 s of 20,000 two-span traces a second
        clock.now = step / 20_000
        trace_id = f"burst-{step}"
        decider.offer(
            Trace(trace_id, "child", "op", 1.0, parent_span_id="root"), otel_trace_id(trace_id)
        )
        decider.offer(Trace(trace_id, "root", "op", 2.0), otel_trace_id(trace_id))
        offered += 1
    assert abs(len(kept) - 200 * 5) <= 0.02 * 200 * 5
    assert all(sorted(t.span_id for t, _ in spans) == ["child", "root"] for spans in kept.values())
    assert sampled_out == {"rate_limit": 2 * (offered - len(kept))}
    # Each kept trace says the probability the limit left it, and the ratio agrees.
    for trace_id, spans in kept.items():
        [probability] = {lbl.probability for _, lbl in spans}
        assert otel_trace_id(trace_id) & (2**56 - 1) >= threshold(probability)
    assert min(lbl.probability for spans in kept.values() for _, lbl in spans) < 0.02


def test_a_rate_limited_collector_sends_whole_traces_labelled_and_counted(
    otlp_receiver, make_collector
):
    per_second = 100
    start = time.monotonic()  # before the collector: its limiter's bucket fills from then
    collector = make_collector(
        export_endpoints=grpc(otlp_receiver),
        buffer_size=100_000,
        max_traces_per_second=per_second,
    )
    offered = 0
    while offered < 5_000:
        trace_id = f"burst-{offered}"
        collector.collect_trace(Trace(trace_id, "child", "op", 1.0, parent_span_id="root"))
        collector.collect_trace(Trace(trace_id, "root", "op", 2.0))
        offered += 1
    elapsed = time.monotonic() - start
    assert collector.flush(30_000) is True

    received = received_spans(otlp_receiver)
    # The hard cap: one token to start with, then per_second a second, whatever the pace.
    assert 1 <= len(received) <= per_second * elapsed + 1
    assert all(len(spans) == 2 for spans in received.values())
    stats = collector.stats()["trace"]
    assert stats["sampled_out_rate_limit"] == 2 * (offered - len(received))
    assert stats["exported"] == 2 * len(received)
    for trace_id, spans in received.items():
        for attributes, trace_state in spans:
            probability = attributes["sampling.probability"]
            assert trace_state == f"ot=th:{th_value(probability)}"
            assert otel_trace_id(trace_id) & (2**56 - 1) >= threshold(probability)


@pytest.mark.parametrize(
    "pace",
    [[20_000, 10_000] * 3, [10_000, 20_000] * 3, [20_000, 20_000, 5_000, 5_000, 20_000, 20_000]],
)
def test_the_rate_limit_keeps_its_average_when_the_application_pace_changes(pace):
    now = 0.0
    limiter = RateLimiter(200, lambda: now)
    kept = offered = 0
    for second, per_second in enumerate(pace):  # a simulated clock
        for step in range(per_second):
            now = second + step / per_second
            kept += limiter.admit(otel_trace_id(f"paced-{offered}"), 1.0, None) is not None
            offered += 1
    assert abs(kept - 200 * len(pace)) <= 0.02 * 200 * len(pace)


def test_a_limit_below_one_trace_per_second_keeps_a_trace_now_and_then_never_more():
    now = 0.0
    limiter = RateLimiter(0.5, lambda: now)
    kept = 0
    for step in range(2000):  # 20 s of a simulated clock, 100 traces a second
        now = step / 100
        kept += limiter.admit(otel_trace_id(f"slow-{step}"), 1.0, None) is not None
    assert 1 <= kept <= 0.5 * 20 + 1


# -- events ------------------------------------------------------------------------------------


def test_events_at_and_above_the_keep_severity_all_pass_at_rate_zero(make_collector, recorder):
    collector = make_collector(event_sample_rate=0.0)
    collector.register_exporter(recorder)
    for severity in EventSeverity:
        for n in range(100):
            kept = collector.collect_event(Event("e", f"{n}", severity))
            assert kept is (severity in (EventSeverity.ERROR, EventSeverity.CRITICAL))
    assert collector.flush() is True
    assert Counter(e.severity for e in recorder.of("event")) == {
        EventSeverity.ERROR: 100,
        EventSeverity.CRITICAL: 100,
    }
    stats = collector.stats()["event"]
    assert (stats["sampled_out"], stats["sampled_out_ratio"]) == (300, 300)


def test_without_a_keep_severity_every_event_is_sampled(make_collector):
    collector = make_collector(event_sample_rate=0.0, event_keep_severity=None)
    assert collector.collect_event(Event("e", "m", EventSeverity.CRITICAL)) is False


def test_kept_events_carry_the_probability_they_were_kept_with(otlp_receiver, make_collector):
    collector = make_collector(
        export_endpoints=grpc(otlp_receiver),
        event_sample_rate=0.5,
        event_keep_severity=EventSeverity.WARNING,
    )
    for n in range(200):
        collector.collect_event(Event("info", str(n), EventSeverity.INFO))
    collector.collect_event(Event("warn", "w", EventSeverity.WARNING))
    assert collector.flush(10_000) is True
    probabilities = Counter(
        (r.event_name, attributes_of(r.attributes)["sampling.probability"])
        for _, r in otlp_receiver.log_records()
    )
    assert probabilities[("warn", 1.0)] == 1
    assert 60 <= probabilities[("info", 0.5)] <= 140  # Binomial(200, 0.5), beyond 5 sd
    assert set(probabilities) == {("warn", 1.0), ("info", 0.5)}


def test_events_in_live_spans_follow_their_trace_and_the_rest_the_event_rate(
    otlp_receiver, make_collector
):
    collector = make_collector(
        export_endpoints=grpc(otlp_receiver), trace_sample_rate=0.5, event_sample_rate=0.0
    )
    inside: dict[str, bool] = {}  # event name -> whether its live span was sampled
    for n in range(40):
        with collector.span(f"request-{n}") as span:
            sampled = span.get_span_context().trace_flags.sampled
            inside[f"in-{n}"] = sampled
            assert collector.collect_event(Event(f"in-{n}", "m")) is sampled
            # At or above event_keep_severity: kept even in a dropped trace.
            assert collector.collect_event(Event(f"error-{n}", "m", EventSeverity.ERROR))
    assert collector.collect_event(Event("outside", "m")) is False  # the event rate: 0
    assert collector.flush(10_000) is True

    assert 0 < sum(inside.values()) < 40  # both kinds of trace in the run
    spans = {s.span_id: s for _, s in otlp_receiver.spans()}
    records = {r.event_name: r for _, r in otlp_receiver.log_records()}
    kept_inside = {name for name, sampled in inside.items() if sampled}
    assert set(records) == kept_inside | {f"error-{n}" for n in range(40)}
    for name in kept_inside:  # in the trace it followed, saying the trace's probability
        record = records[name]
        assert record.span_id in spans and spans[record.span_id].trace_id == record.trace_id
        assert attributes_of(record.attributes)["sampling.probability"] == 0.5
    for n in range(40):
        assert attributes_of(records[f"error-{n}"].attributes)["sampling.probability"] == 1.0
    stats = collector.stats()["event"]
    dropped_inside = 40 - len(kept_inside)
    assert (stats["sampled_out_with_trace"], stats["sampled_out_ratio"]) == (dropped_inside, 1)
    assert stats["sampled_out"] == dropped_inside + 1
    assert stats["exported"] == len(records)


def test_events_follow_a_remote_parent_and_say_its_probability_when_it_gives_one(
    otlp_receiver, make_collector
):
    collector = make_collector(export_endpoints=grpc(otlp_receiver), event_sample_rate=0.1)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}"
    carriers = {
        "quarter": {"traceparent": parent.format(flags="01"), "tracestate": "ot=th:c"},
        "unsaid": {"traceparent": parent.format(flags="01")},
        "dropped": {"traceparent": parent.format(flags="00"), "tracestate": "ot=th:c"},
    }
    for name, carrier in carriers.items():
        token = context.attach(collector.extract_context(carrier))
        try:
            for n in range(20):
                collector.collect_event(Event(name, str(n)))
        finally:
            context.detach(token)
    assert collector.flush(10_000) is True
    counts = Counter(
        (r.event_name, attributes_of(r.attributes).get("sampling.probability"))
        for _, r in otlp_receiver.log_records()
    )
    assert counts == {("quarter", 0.25): 20, ("unsaid", None): 20}
    assert collector.stats()["event"]["sampled_out_with_trace"] == 20


def test_with_events_follow_traces_off_the_event_rate_applies_inside_spans(make_collector):
    collector = make_collector(
        trace_sample_rate=1.0, event_sample_rate=0.0, events_follow_traces=False
    )
    with collector.span("request"):
        assert collector.collect_event(Event("in", "m")) is False
    stats = collector.stats()["event"]
    assert (stats["sampled_out_ratio"], stats["sampled_out_with_trace"]) == (1, 0)


def test_callbacks_see_no_sampling_attributes(make_collector, recorder):
    collector = make_collector(trace_sample_rate=0.0)
    collector.register_exporter(recorder)
    collector.collect_trace(Trace("t", "root", "op", 5.0, error="failed", tags={"k": "v"}))
    collector.collect_event(Event("e", "m", EventSeverity.ERROR, metadata={"a": 1}))
    assert collector.flush() is True
    [trace] = recorder.of("trace")
    [event] = recorder.of("event")
    assert (trace.tags, event.metadata) == ({"k": "v"}, {"a": 1})


# -- per-signal rates and live spans -----------------------------------------------------------


def test_per_signal_rates_default_to_sample_rate_and_override_it(make_collector):
    both = make_collector(sample_rate=0.0, keep_error_traces=False)  # no rule: nothing waits
    assert both.collect_trace(Trace("t", "s", "op", 1.0)) is False
    assert both.collect_event(Event("e", "m")) is False
    split = make_collector(sample_rate=0.0, trace_sample_rate=1.0, event_sample_rate=1.0)
    assert split.collect_trace(Trace("t", "s", "op", 1.0)) is True
    assert split.collect_event(Event("e", "m")) is True


def test_live_roots_use_the_trace_rate_and_children_inherit_its_threshold(
    otlp_receiver, make_collector
):
    collector = make_collector(
        export_endpoints=grpc(otlp_receiver), sample_rate=0.0, trace_sample_rate=0.5
    )
    for n in range(100):
        with collector.span(f"root-{n}"), collector.span("child", tags={"n": n}):
            pass
    remote = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "ot=th:8",
    }
    with collector.span("served", parent=collector.extract_context(remote)):
        pass
    assert collector.flush(10_000) is True
    spans = [span for _, span in otlp_receiver.spans()]
    roots = [s for s in spans if s.name.startswith("root-")]
    assert 25 <= len(roots) <= 75  # Binomial(100, 0.5), beyond 5 sd
    for span in spans:
        attributes = attributes_of(span.attributes)
        if span.name == "served":  # the remote parent's threshold, probability 1/2
            assert (span.trace_state, attributes) == ("ot=th:8", {"sampling.probability": 0.5})
        else:
            assert span.trace_state == "ot=th:8"
            assert attributes["sampling.probability"] == 0.5
            assert int.from_bytes(span.trace_id, "big") & (2**56 - 1) >= threshold(0.5)
    children = [s for s in spans if s.name == "child"]
    assert len(children) == len(roots)
    assert all("n" in attributes_of(c.attributes) for c in children)  # start attributes kept


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"trace_sample_rate": 2}, ValueError, "trace_sample_rate must be between 0 and 1, got 2"),
        ({"event_sample_rate": "1"}, TypeError, "event_sample_rate must be a number, got '1'"),
        (
            {"event_keep_severity": "fatal"},
            ValueError,
            "event_keep_severity must be EventSeverity.<NAME> or its name in any case "
            r"\(DEBUG, INFO, WARNING, ERROR, CRITICAL\), or None, got 'fatal'",
        ),
        (
            {"event_keep_severity": 3},
            TypeError,
            "event_keep_severity must be EventSeverity.<NAME> or its name in any case "
            r"\(DEBUG, INFO, WARNING, ERROR, CRITICAL\), or None, got 3",
        ),
        ({"keep_error_traces": 1}, TypeError, "keep_error_traces must be a bool, got 1"),
        (
            {"events_follow_traces": "no"},
            TypeError,
            "events_follow_traces must be a bool, got 'no'",
        ),
        (
            {"keep_traces_slower_than_ms": 0},
            ValueError,
            "keep_traces_slower_than_ms must be above 0, got 0",
        ),
        (
            {"max_traces_per_second": float("inf")},
            ValueError,
            "max_traces_per_second must be above 0, got inf",
        ),
        (
            {"trace_decision_wait_ms": 0},
            ValueError,
            "trace_decision_wait_ms must be at least 1, got 0",
        ),
        ({"max_pending_spans": 1.5}, TypeError, "max_pending_spans must be an int, got 1.5"),
    ],
)
def test_sampling_fields_fail_fast_naming_the_field_and_value(fields, error, message):
    with pytest.raises(error, match=f"^TelemetryConfig.{message}$"):
        TelemetryConfig(**fields)


def test_sampling_fields_come_from_telemetry_variables():
    config = TelemetryConfig.from_env(
        {
            "TELEMETRY_TRACE_SAMPLE_RATE": "0.1",
            "TELEMETRY_EVENT_SAMPLE_RATE": "0",
            "TELEMETRY_EVENT_KEEP_SEVERITY": "warning",
            "TELEMETRY_KEEP_ERROR_TRACES": "false",
            "TELEMETRY_KEEP_TRACES_SLOWER_THAN_MS": "2500",
            "TELEMETRY_TRACE_DECISION_WAIT_MS": "100",
            "TELEMETRY_MAX_PENDING_SPANS": "500",
            "TELEMETRY_MAX_TRACES_PER_SECOND": "none",
            "TELEMETRY_EVENTS_FOLLOW_TRACES": "false",
        }
    )
    assert (config.trace_sample_rate, config.event_sample_rate) == (0.1, 0.0)
    assert config.event_keep_severity is EventSeverity.WARNING
    assert (config.keep_error_traces, config.keep_traces_slower_than_ms) == (False, 2500.0)
    assert (config.trace_decision_wait_ms, config.max_pending_spans) == (100, 500)
    assert config.max_traces_per_second is None
    assert config.events_follow_traces is False


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "TELEMETRY_EVENT_KEEP_SEVERITY",
            "fatal",
            "one of debug, info, warning, error, critical, or none",
        ),
        ("TELEMETRY_MAX_TRACES_PER_SECOND", "-5", "a number above 0, or none"),
        ("TELEMETRY_TRACE_SAMPLE_RATE", "half", "a number between 0 and 1"),
    ],
)
def test_malformed_sampling_variables_name_the_variable_and_value(variable, value, expected):
    with pytest.raises(ValueError) as raised:
        TelemetryConfig.from_env({variable: value})
    assert str(raised.value) == f"environment variable {variable}={value!r}: expected {expected}"


# -- the threshold arithmetic ------------------------------------------------------------------


def test_thresholds_and_th_values_agree_with_the_sdks_composable_samplers():
    sdk_util = pytest.importorskip("opentelemetry.sdk.trace._sampling_experimental._util")
    sdk_state = pytest.importorskip("opentelemetry.sdk.trace._sampling_experimental._trace_state")
    rng = random.Random(3)
    probabilities = [0.0, 1.0, 0.5, 0.25, 0.01, 0.001, 2**-56, 1 - 2**-53]
    probabilities += [rng.random() for _ in range(1000)]
    for probability in probabilities:
        ours = consistent.calculate_threshold(probability)
        assert ours == sdk_util.calculate_threshold(probability) == threshold(probability)
        assert consistent.serialize_th(ours) == sdk_state.serialize_th(ours)


def test_without_the_sdks_composite_samplers_live_spans_fall_back_to_parent_based(
    monkeypatch, make_collector, recorder, caplog
):
    monkeypatch.setattr(live_sampling, "composable", None)
    collector = make_collector(trace_sample_rate=1.0)
    collector.register_exporter(recorder)
    with collector.span("request"):
        pass
    assert collector.flush() is True
    assert [t.operation for t in recorder.of("trace")] == ["request"]
    assert "no composite samplers" in caplog.text
