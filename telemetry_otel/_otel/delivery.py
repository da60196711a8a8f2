"""Per-destination delivery queues with exact counts.

The SDK's batch processors cannot serve here: they count drops only through
optional self-metrics (and not exactly when producers race a full queue), their
force_flush ignores its timeout, and items still queued when shutdown times out
vanish uncounted. A DeliveryQueue keeps the same batching behaviour (bounded
queue dropping the oldest item, batches of at most ``batch_size``, an export
every ``delay_s`` or as soon as a batch is full) and accounts for every item.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

T = TypeVar("T")
_logger = logging.getLogger("telemetry_otel")
_warned: set[str] = set()


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen, so a failing path never floods the log."""
    if key not in _warned:
        _warned.add(key)
        _logger.warning(message, *args)


@dataclass
class DeliveryCounts:
    """Counts of one destination: every submitted item is in exactly one of the last four."""

    submitted: int = 0
    dropped: int = 0
    exported: int = 0
    export_failures: int = 0

    @property
    def pending(self) -> int:
        """Items queued or being exported right now."""
        return self.submitted - self.dropped - self.exported - self.export_failures


class DeliveryQueue(Generic[T]):
    """A bounded queue and worker thread feeding one destination in batches.

    ``deliver(batch)`` returns how many items of the batch reached the destination;
    the rest count as export failures. It must not raise (a raise fails the batch).
    """

    def __init__(
        self,
        name: str,
        deliver: Callable[[list[T]], int],
        max_size: int,
        batch_size: int,
        delay_s: float,
    ) -> None:
        self.name = name
        self._deliver = deliver
        self._max_size = max_size
        self._batch_size = batch_size
        self._delay_s = delay_s
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._counts = DeliveryCounts()
        self._flushers = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, item: T) -> None:
        """Queue an item; never blocks on the destination. A full queue drops its oldest item."""
        with self._cond:
            counts = self._counts
            counts.submitted += 1
            if self._closed:
                counts.dropped += 1
                return
            items = self._items
            if len(items) >= self._max_size:
                items.popleft()
                counts.dropped += 1
                warn_once(f"full:{self.name}", "telemetry queue %s is full; dropping", self.name)
            items.append(item)
            if self._thread is None:
                self._start_worker()
            elif len(items) == self._batch_size:
                self._cond.notify()

    def counts(self) -> DeliveryCounts:
        """A consistent snapshot of this destination's counts."""
        with self._cond:
            return DeliveryCounts(**vars(self._counts))

    def flush(self, deadline: float) -> bool:
        """Wait until everything submitted so far is processed; False on timeout or failure."""
        with self._cond:
            counts = self._counts
            target, failures = counts.submitted, counts.export_failures
            self._flushers += 1
            self._cond.notify_all()
            try:
                done = self._cond.wait_for(
                    lambda: counts.submitted - counts.pending >= target,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
            finally:
                self._flushers -= 1
            return done and counts.export_failures == failures

    def close(self, deadline: float) -> bool:
        """Refuse new items, deliver what is queued until the deadline, drop (counted) the rest."""
        flushed = self.flush(deadline)
        with self._cond:
            self._closed = True
            self._counts.dropped += len(self._items)
            self._items.clear()
            self._cond.notify_all()
        return flushed

    def _start_worker(self) -> None:
        self._thread = threading.Thread(
            target=self._work, name=f"telemetry-otel-{self.name}", daemon=True
        )
        self._thread.start()

    def _work(self) -> None:
        # Exporters must not trace their own network calls back into the pipeline.
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while (batch := self._next_batch()) is not None:
                self._export(batch)
        finally:
            detach(token)

    def _next_batch(self) -> list[T] | None:
        with self._cond:
            items = self._items
            self._cond.wait_for(
                lambda: (
                    len(items) >= self._batch_size or (items and self._flushers) or self._closed
                ),
                timeout=self._delay_s,
            )
            if self._closed and not items:
                return None
            count = min(len(items), self._batch_size)
            return [items.popleft() for _ in range(count)]

    def _export(self, batch: list[T]) -> None:
        if not batch:
            return
        try:
            delivered = self._deliver(batch)
        except Exception:
            _logger.exception("telemetry export to %s failed", self.name)
            delivered = 0
        with self._cond:
            self._counts.exported += delivered
            self._counts.export_failures += len(batch) - delivered
            self._cond.notify_all()
