"""Tail rules for legacy traces: each trace decided once, after a window or a rule match."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from telemetry_otel._otel.runtime.forks import follow_forks
from telemetry_otel._otel.sampling.probability import (
    BUFFER_OVERFLOW,
    RATE_LIMIT,
    RATIO,
    Label,
    calculate_threshold,
    keeps,
    label,
)
from telemetry_otel._otel.sampling.rate_limit import RateLimiter
from telemetry_otel.models import Trace


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


def _snapshot(trace: Trace) -> Trace:
    """A copy of a held span that the application's later changes to it cannot reach."""
    return Trace._trusted({**trace.__dict__, "tags": dict(trace.tags)})


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
_Decision = tuple[list[Trace], Label | None]
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
        overflowed: list[_Decision] = []
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
        self, trace: Trace, trace_id: int, now: float, overflowed: list[_Decision]
    ) -> _Decision:
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
    ) -> _Decision:
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

    def _make_room(self, now: float) -> list[_Decision]:
        """Decide the oldest traces by the ratio alone until one more span fits."""
        outcomes = []
        while self._pending >= self._max_pending and self._held:
            outcomes.append(self._decide_held(next(iter(self._held)), now, overflow=True))
        return outcomes

    def _decide_held(self, trace_id: int, now: float, overflow: bool = False) -> _Decision:
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
    ) -> _Decision:
        kept, reason = self._label(trace_id, rule)
        if kept is None and reason == RATIO and overflow:
            reason = BUFFER_OVERFLOW
        if rule is not None and kept is not None:
            self.kept_by_rule += 1
        self._decided[trace_id] = (kept, reason, now + self._wait_s)
        return self._counted(traces, kept, reason)

    def _counted(self, traces: list[Trace], kept: Label | None, reason: str) -> _Decision:
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

    def _deliver(self, outcome: _Decision) -> bool:
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
