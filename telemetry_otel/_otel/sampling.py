"""Sampling: consistent-probability decisions, tail rules for legacy traces, a rate limit.

Every decision follows the OpenTelemetry specification's consistent probability
sampling (https://opentelemetry.io/docs/specs/otel/trace/tracestate-probability-sampling/):
a trace is kept at probability ``p`` when the low 56 bits of its trace id (its
randomness) are at least the threshold ``2**56 - round(p * 2**56)``, and a kept span
carries that threshold as ``th`` in the ``ot`` entry of its W3C tracestate, so any
process, collector or backend can reproduce the decision and scale counts back up.
Live spans use the SDK's composite samplers, which SDK 1.45 keeps in a private,
experimental package: if a release moves it, live spans fall back to the SDK's
ParentBased(TraceIdRatioBased) sampler, with a warning, and the library still imports.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache
from types import ModuleType
from typing import Any

from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    TraceState,
    get_current_span,
)
from opentelemetry.util.types import Attributes

from telemetry_otel._otel.forks import follow_forks
from telemetry_otel._otel.log import warn_limited
from telemetry_otel.models import Trace

_SPAN_KEY: str | None
try:
    from opentelemetry.trace.propagation import _SPAN_KEY
except ImportError:  # pragma: no cover - depends on the installed API
    _SPAN_KEY = None


def _context_getter() -> Callable[[], Context]:
    """The fastest way to the current Context: the ContextVar behind the API's default
    runtime context (private, checked on API 1.45) when that is the one in use, a
    third of ``get_current()``'s cost on the event path; else ``get_current``."""
    from opentelemetry import context as api

    runtime = getattr(api, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and variable is not None:
        get: Callable[[], Context] = variable.get
        return get
    return get_current  # pragma: no cover - another runtime context configured


_current_context = _context_getter()

composable: ModuleType | None
try:
    from opentelemetry.sdk.trace import _sampling_experimental as composable
except ImportError:  # pragma: no cover - depends on the installed SDK
    composable = None

PROBABILITY = "sampling.probability"
KEPT_BY = "sampling.kept_by"
# On the spans a rule kept after the rest of their trace had been dropped.
INCOMPLETE = "sampling.incomplete"
SAMPLING_KEYS = frozenset((PROBABILITY, KEPT_BY, INCOMPLETE))
# The specification's 56-bit randomness and threshold (the same formulas as the SDK's
# composable samplers, whose helpers are private; a test checks they agree).
MAX_THRESHOLD = 1 << 56  # rejects everything: probability 0
RANDOMNESS = MAX_THRESHOLD - 1  # the low 56 bits of a trace id


def calculate_threshold(probability: float) -> int:
    """The rejection threshold for keeping a trace at ``probability``."""
    return MAX_THRESHOLD - round(probability * MAX_THRESHOLD)


def serialize_th(threshold: int) -> str:
    """``th`` as the tracestate carries it: 14 hex digits without trailing zeros."""
    return f"{threshold:014x}".rstrip("0") or "0"


# Why an item was sampled out, as stats() names it; WITH_TRACE: an event in a live span
# whose trace was sampled out.
RATIO, RATE_LIMIT, BUFFER_OVERFLOW = "ratio", "rate_limit", "buffer_overflow"
WITH_TRACE = "with_trace"
OUT_REASONS = (RATIO, RATE_LIMIT, BUFFER_OVERFLOW, WITH_TRACE)


class Label:
    """What every kept span of a trace carries: the probability it was kept with, as
    the ``ot=th:`` tracestate and as attributes (with the tail rule that kept it)."""

    __slots__ = ("attributes", "probability", "threshold", "trace_state")

    def __init__(
        self, probability: float, kept_by: str | None = None, incomplete: bool = False
    ) -> None:
        self.probability = probability
        self.threshold = calculate_threshold(probability)
        self.trace_state = TraceState([("ot", f"th:{serialize_th(self.threshold)}")])
        self.attributes: dict[str, Any] = {PROBABILITY: probability}
        if kept_by is not None:
            self.attributes[KEPT_BY] = kept_by
        if incomplete:
            self.attributes[INCOMPLETE] = True


# A handful of probabilities come back all the time (the configured rates, and the
# limiter's scaled ones); each label is built once.
label = lru_cache(maxsize=256)(Label)


def keeps(threshold: int, trace_id: int) -> bool:
    """The consistent-probability decision: randomness at or above the threshold."""
    return trace_id & RANDOMNESS >= threshold


def current_span_context() -> SpanContext | None:
    """The context of the current span (live, or remote from an attached context), or
    None outside any: ``get_current_span()``, a third of its cost on the event path.
    Reads the key the API stores the span under; if a release moves it, the public
    function is used."""
    if _SPAN_KEY is None:  # pragma: no cover - depends on the installed API
        span_context = get_current_span().get_span_context()
        return span_context if span_context.is_valid else None
    span = _current_context().get(_SPAN_KEY)
    if span is None or not isinstance(span, Span):  # None first: Span is an ABC, slow
        return None
    span_context = span.get_span_context()
    return span_context if span_context.is_valid else None


def kept_probability(span_context: SpanContext) -> float | None:
    """The probability a sampled span's trace was kept with, from the ``th`` of its
    tracestate; None when it does not say (a parent that sampled without ``th``)."""
    ot = span_context.trace_state.get("ot")
    return None if ot is None else _probability_in(ot)


@lru_cache(maxsize=256)
def _probability_in(ot: str) -> float | None:
    for entry in ot.split(";"):
        key, _, value = entry.partition(":")
        if key == "th":
            if not 0 < len(value) <= 14 or value.strip("0123456789abcdef"):
                return None
            threshold = int(value.ljust(14, "0"), 16)
            return (MAX_THRESHOLD - threshold) / MAX_THRESHOLD
    return None


class TailRules:
    """Which legacy spans make their whole trace worth keeping: an error, or slowness."""

    def __init__(self, keep_errors: bool, slower_than_ms: float | None) -> None:
        self.keep_errors = keep_errors
        self.slower_than_ms = slower_than_ms

    @property
    def active(self) -> bool:
        return self.keep_errors or self.slower_than_ms is not None

    def match(self, trace: Trace) -> str | None:
        """ "error" or "slow" when this span alone makes its trace kept; else None."""
        if self.keep_errors and trace.error:
            return "error"
        slower_than = self.slower_than_ms
        if slower_than is not None and trace.duration_ms > slower_than:
            return "slow"
        return None


class RateLimiter:
    """At most ``per_second`` traces kept per second, without breaking consistency.

    Two parts. An adaptive probability: every quarter of a second, the traces the
    ratio and the rules offered in the quarter before set a scale (``per_second / 4 /
    offered``, at most 1) that multiplies every trace's probability, so what is kept
    stays a consistent sample whose ``th`` tells how to scale it back up. While the
    limit is biting, what a quarter fell short of its share (the offered rate dropped
    after its scale was set) is owed to the next ones, up to one second's worth: over
    a run the limit keeps its average whether the application's pace is steady or
    not, and a short window leaves little for the last quarter to fall short by. And a
    token bucket behind it, the hard cap for bursts the scale has not caught up with
    yet: it holds one second's worth of tokens (at least one) and starts with one, so a
    run of any length starting now keeps at most ``per_second * seconds + 1`` traces.
    Not thread-safe: the caller holds a lock.
    """

    WINDOW_S = 0.25

    def __init__(self, per_second: float, clock: Callable[[], float]) -> None:
        self._rate = per_second
        # One second of tokens, and at least one whole token for slow limits.
        self._capacity = max(1.0, per_second)
        self._clock = clock
        now = clock()
        self._tokens = 1.0
        self._refilled = now
        self._window_end = now + self.WINDOW_S
        self._offered = 0
        self._kept = 0
        self._owed = 0.0
        self._scale = 1.0

    def admit(
        self, trace_id: int, probability: float, kept_by: str | None, incomplete: bool = False
    ) -> Label | None:
        """The label of a trace the ratio or a rule kept at ``probability``, or None when
        the limit drops it."""
        now = self._clock()
        self._roll_window(now)
        self._offered += 1
        kept = label(probability * self._scale, kept_by, incomplete)
        if not keeps(kept.threshold, trace_id):
            return None
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            return None
        self._tokens -= 1.0
        self._kept += 1
        return kept

    def _roll_window(self, now: float) -> None:
        if now < self._window_end:
            return
        # Only the window just past counts: after a quiet spell the scale returns to 1.
        offered = self._offered if now < self._window_end + self.WINDOW_S else 0
        share = self._rate * self.WINDOW_S
        if offered > share:  # the limit was biting: owe what it fell short by
            self._owed = min(self._rate, max(0.0, self._owed + share - self._kept))
        else:
            self._owed = 0.0
        self._scale = min(1.0, (share + self._owed) / offered) if offered else 1.0
        self._offered = 0
        self._kept = 0
        self._window_end = now + self.WINDOW_S


def _snapshot(trace: Trace) -> Trace:
    """A copy of a held span that the application's later changes to it cannot reach."""
    copy = Trace.__new__(Trace)  # no __init__: the original passed its checks
    copy.__dict__ = {**trace.__dict__, "tags": dict(trace.tags)}
    return copy


class _Held:
    """The spans of one undecided trace, and what is known of it so far."""

    __slots__ = ("deadline", "rule", "traces")

    def __init__(self, deadline: float) -> None:
        self.traces: list[Trace] = []
        self.deadline = deadline
        self.rule: str | None = None


Keep = Callable[[Sequence[Trace], Label], None]
# The spans of a trace (none while it is held) and its label (None: sampled out, and
# counted as such under the lock).
_Outcome = tuple[list[Trace], Label | None]
SampleOut = Callable[[str, int], None]


class TraceDecider:
    """Decides legacy traces as a whole, with tail rules and a rate limit.

    The SDK's samplers decide a span when it starts, from its trace id and parent;
    legacy spans arrive finished, one by one, in any order (a root finishes before
    children that outlive the request), so a rule about a trace's errors or
    durations needs spans held back. With rules (``hold``), a trace's window is
    ``wait_s`` from its first span, and its spans wait until one matches a rule (the
    trace is then kept at once, at probability 1) or the window closes (then the
    ratio decides), so every trace whose spans all arrive within its window is decided
    as if they had arrived together, in any order. The rate limit comes last.

    The root does not end the wait, though it often arrives last: a trace the ratio
    kept at its root would say probability ``ratio`` even when a later span matches a
    rule, and every rule trace whose match came after its root would then count
    ``1 + ratio * (1 / ratio - 1)`` times on average instead of once, biasing every
    scaled count. Deciding once per window keeps them unbiased: a trace a rule keeps
    counts once, every other kept one ``1 / ratio`` times.

    At most ``max_pending`` spans are held; past that the oldest traces are decided by
    the ratio alone. Decisions are remembered for ``wait_s`` (at most five times
    ``max_pending`` of them): a later span follows its trace's decision, except that
    one matching a rule keeps what is left of a dropped trace, marked incomplete and
    counted in ``kept_incomplete``. ``keep`` receives the kept spans with their label,
    called without the lock held. ``sample_out`` counts sampled-out spans by reason,
    called with it, so that spans leave ``pending`` and enter the count at once for
    anyone reading both. ``background=False`` leaves closing windows to ``decide_expired`` calls
    (tests on a simulated clock).
    """

    def __init__(
        self,
        ratio: float,
        rules: TailRules,
        limiter: RateLimiter | None,
        *,
        hold: bool,
        wait_s: float,
        max_pending: int,
        keep: Keep,
        sample_out: SampleOut,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self._ratio = ratio
        self._threshold = calculate_threshold(ratio)
        self._rules = rules
        self._limiter = limiter
        self._hold = hold
        self._wait_s = wait_s
        self._max_pending = max_pending
        self._max_decisions = 5 * max_pending
        self._keep = keep
        self._sample_out = sample_out
        self._clock = clock
        self._lock = threading.Lock()
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._pending = 0
        # trace id -> (label or None when dropped, the reason it was dropped, expiry)
        self._decided: OrderedDict[int, tuple[Label | None, str, float]] = OrderedDict()
        self.kept_by_rule = 0
        self.kept_incomplete = 0
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None
        self._background = background
        if hold and background:
            self._start_timer()
        follow_forks(self)

    @property
    def pending(self) -> int:
        """Spans waiting for their trace's decision."""
        return self._pending

    def offer(self, trace: Trace, trace_id: int) -> bool:
        """Take one legacy span: False when its trace is (or was) sampled out."""
        now = self._clock()
        overflowed: list[_Outcome] = []
        with self._lock:
            outcome = self._offer(trace, trace_id, now, overflowed)
        for other in overflowed:
            self._deliver(other)
        return self._deliver(outcome)

    def decide_all(self) -> None:
        """Decide every held trace now, with what is known of it (flush and stop)."""
        with self._lock:
            now = self._clock()
            outcomes = [self._decide_held(trace_id, now) for trace_id in list(self._held)]
        for outcome in outcomes:
            self._deliver(outcome)

    def decide_expired(self) -> None:
        """Decide the traces whose window has closed."""
        now = self._clock()
        with self._lock:
            outcomes = []
            # Held in arrival order, and every window is as long: the expired come first.
            while self._held and next(iter(self._held.values())).deadline <= now:
                outcomes.append(self._decide_held(next(iter(self._held)), now))
        for outcome in outcomes:
            self._deliver(outcome)

    def close(self) -> None:
        """Decide what is held and stop the timer."""
        self._stopped.set()
        self.decide_all()

    def after_fork_in_child(self) -> None:
        # The parent still holds these spans and decides them; the child starts empty,
        # with a lock and an event no thread of the parent can be holding.
        self._lock = threading.Lock()
        if not self._stopped.is_set():
            self._stopped = threading.Event()
        self._held.clear()
        self._pending = 0
        self._timer = None
        if self._hold and self._background and not self._stopped.is_set():
            self._start_timer()

    # -- under the lock ----------------------------------------------------------------------

    def _offer(
        self, trace: Trace, trace_id: int, now: float, overflowed: list[_Outcome]
    ) -> _Outcome:
        self._forget_old_decisions(now)
        if self._hold:  # room first: the oldest trace to go may be this span's own
            overflowed.extend(self._make_room(now))
        held = self._held.get(trace_id)
        if held is None:
            decided = self._decided.get(trace_id)
            if decided is not None:
                return self._follow(trace, trace_id, decided, now)
            if not self._hold:
                return self._decide(trace_id, [trace], None, now)
            held = self._held[trace_id] = _Held(now + self._wait_s)
        held.traces.append(_snapshot(trace))
        self._pending += 1
        held.rule = held.rule or self._rules.match(trace)
        # After close() (stop() has begun) no timer or flush would decide it later.
        if held.rule is not None or self._stopped.is_set():
            return self._decide_held(trace_id, now)
        return [], None

    def _follow(
        self, trace: Trace, trace_id: int, decided: tuple[Label | None, str, float], now: float
    ) -> _Outcome:
        """A span of a trace decided and released: it follows the decision, unless it
        matches a rule and the trace was dropped; then what is left of it is kept."""
        kept, reason, _ = decided
        rule = self._rules.match(trace) if kept is None and self._hold else None
        if rule is None:
            return self._counted([trace], kept, reason)
        kept, reason = self._label(trace_id, rule, incomplete=True)
        if kept is not None:
            self.kept_incomplete += 1
            self._decided[trace_id] = (kept, reason, now + self._wait_s)
        return self._counted([trace], kept, reason)

    def _make_room(self, now: float) -> list[_Outcome]:
        """Decide the oldest traces by the ratio alone until one more span fits."""
        outcomes = []
        while self._pending >= self._max_pending and self._held:
            outcomes.append(self._decide_held(next(iter(self._held)), now, overflow=True))
        return outcomes

    def _decide_held(self, trace_id: int, now: float, overflow: bool = False) -> _Outcome:
        held = self._held.pop(trace_id)
        self._pending -= len(held.traces)
        return self._decide(trace_id, held.traces, None if overflow else held.rule, now, overflow)

    def _decide(
        self,
        trace_id: int,
        traces: list[Trace],
        rule: str | None,
        now: float,
        overflow: bool = False,
    ) -> _Outcome:
        kept, reason = self._label(trace_id, rule)
        if kept is None and reason == RATIO and overflow:
            reason = BUFFER_OVERFLOW
        if rule is not None and kept is not None:
            self.kept_by_rule += 1
        self._decided[trace_id] = (kept, reason, now + self._wait_s)
        return self._counted(traces, kept, reason)

    def _counted(self, traces: list[Trace], kept: Label | None, reason: str) -> _Outcome:
        """The outcome, its sampled-out spans counted by reason."""
        if kept is None:
            self._sample_out(reason, len(traces))
        return traces, kept

    def _label(
        self, trace_id: int, rule: str | None, incomplete: bool = False
    ) -> tuple[Label | None, str]:
        if rule is not None:
            probability, kept_by = 1.0, rule
        elif keeps(self._threshold, trace_id):
            probability, kept_by = self._ratio, None
        else:
            return None, RATIO
        if self._limiter is None:
            return label(probability, kept_by, incomplete), ""
        kept = self._limiter.admit(trace_id, probability, kept_by, incomplete)
        return (kept, "") if kept is not None else (None, RATE_LIMIT)

    def _forget_old_decisions(self, now: float) -> None:
        decided = self._decided
        while decided:
            trace_id, (_, _, expiry) = next(iter(decided.items()))
            if expiry > now and len(decided) <= self._max_decisions:
                return
            del decided[trace_id]

    # -- outside the lock --------------------------------------------------------------------

    def _deliver(self, outcome: _Outcome) -> bool:
        traces, kept = outcome
        if not traces:  # held
            return True
        if kept is None:  # counted under the lock
            return False
        self._keep(traces, kept)
        return True

    def _start_timer(self) -> None:
        self._timer = threading.Thread(
            target=self._close_windows, name="telemetry-otel-sampling", daemon=True
        )
        self._timer.start()

    def _close_windows(self) -> None:
        """Decide traces whose window is over. A trace held later has a deadline after the
        next wake-up (windows are never longer than ``wait_s``), so nothing wakes this."""
        while not self._stopped.wait(self._next_wait()):
            self.decide_expired()

    def _next_wait(self) -> float:
        with self._lock:
            first = next(iter(self._held.values()), None)
        if first is None:
            return self._wait_s
        return max(0.0, first.deadline - self._clock()) + 0.001


# -- live spans ------------------------------------------------------------------------------


def live_span_sampler(rate: float) -> Sampler:
    """Parent-based consistent sampling for live spans: a parent's decision (and its
    ``th``) is respected, a root is kept at ``rate``; kept spans carry the probability."""
    if composable is None:
        warn_limited(
            "sampling:composable",
            "this OpenTelemetry SDK has no composite samplers: live spans are sampled "
            "by ParentBased(TraceIdRatioBased) and carry no sampling threshold",
        )
        return ParentBased(TraceIdRatioBased(rate))
    root = composable.composable_traceid_ratio_based(rate)
    with_probability = _WithProbability(composable.composable_parent_threshold(root), rate)
    return _CompositeSamplerFixes(composable.composite_sampler(with_probability))


class _WithProbability:
    """A composable sampler that adds ``sampling.probability`` where the threshold is
    reliable (the composite sampler then also writes ``th``)."""

    def __init__(self, delegate: Any, rate: float) -> None:
        self._delegate = delegate
        # The root threshold's probability is the configured rate, as given.
        self._probabilities = {calculate_threshold(rate): rate}

    def sampling_intent(
        self,
        parent_ctx: Context | None,
        name: str,
        span_kind: SpanKind | None,
        attributes: Attributes,
        links: Sequence[Link] | None,
        trace_state: TraceState | None,
    ) -> Any:
        intent = self._delegate.sampling_intent(
            parent_ctx, name, span_kind, attributes, links, trace_state
        )
        threshold = intent.threshold
        if not (intent.threshold_reliable and 0 <= threshold <= MAX_THRESHOLD):
            return intent
        probability = self._probabilities.get(threshold)
        if probability is None:
            probability = (MAX_THRESHOLD - threshold) / MAX_THRESHOLD
        assert composable is not None  # only built when it is there
        return composable.SamplingIntent(
            threshold, True, {PROBABILITY: probability}, intent.update_trace_state
        )

    def get_description(self) -> str:
        return f"WithProbability{{{self._delegate.get_description()}}}"


class _CompositeSamplerFixes(Sampler):
    """The SDK's composite sampler, given what SDK 1.45 leaves out.

    ``Tracer.start_span`` never passes ``trace_state`` to its sampler
    (opentelemetry-python#5578), so the composite sampler could not see a parent's
    ``th`` and would drop it from every child: this hands it the parent's. And the
    Tracer gives a span only the attributes its sampler returns, while the composite
    sampler returns only its own: this adds back the ones the span started with.
    """

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if trace_state is None:
            parent = get_current_span(parent_context).get_span_context()
            if parent.is_valid:
                trace_state = parent.trace_state
        result = self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if not attributes:
            return result
        return SamplingResult(
            result.decision, {**attributes, **result.attributes}, result.trace_state
        )

    def get_description(self) -> str:
        return self._delegate.get_description()
