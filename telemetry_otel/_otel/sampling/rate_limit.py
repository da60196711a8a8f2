"""The rate limit on kept legacy traces: an adaptive scale and a token bucket."""

from __future__ import annotations

from collections.abc import Callable

from telemetry_otel._otel.sampling.probability import Label, keeps, label


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
