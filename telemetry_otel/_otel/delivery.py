"""Per-destination delivery queues with exact counts.

The SDK's batch processors cannot serve here: they count drops only through
optional self-metrics (and not exactly when producers race a full queue), their
force_flush ignores its timeout, and items still queued when shutdown times out
vanish uncounted. A DeliveryQueue keeps the same batching behaviour (bounded
queue dropping the oldest item, batches of at most ``batch_size``, an export
every ``delay_s`` or as soon as a batch is full) and accounts for every item.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from telemetry_otel._otel.log import logger, warn_limited

T = TypeVar("T")
QUEUE_FULL, SHUTDOWN, SPOOL_FULL, UNREGISTERED, REJECTED = (
    "queue_full",
    "shutdown",
    "spool_full",
    "unregistered",
    "rejected",
)
DROP_REASONS = (QUEUE_FULL, SHUTDOWN, SPOOL_FULL, UNREGISTERED, REJECTED)


@dataclass
class DeliveryCounts:
    """Counts of one destination. Every submitted item is exported, failed, dropped or pending."""

    submitted: int = 0
    exported: int = 0
    export_failures: int = 0
    dropped_by: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by.values())

    @property
    def pending(self) -> int:
        """Items queued or being exported right now."""
        return self.submitted - self.dropped - self.exported - self.export_failures

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped_by[reason] = self.dropped_by.get(reason, 0) + count

    def copy(self) -> DeliveryCounts:
        return DeliveryCounts(
            self.submitted, self.exported, self.export_failures, dict(self.dropped_by)
        )

    @staticmethod
    def total(many: Iterable[DeliveryCounts]) -> DeliveryCounts:
        result = DeliveryCounts()
        for counts in many:
            result.submitted += counts.submitted
            result.exported += counts.exported
            result.export_failures += counts.export_failures
            for reason, count in counts.dropped_by.items():
                result.drop(reason, count)
        return result


class DeliveryQueue(Generic[T]):
    """A bounded queue and worker thread feeding one destination in batches.

    ``deliver(batch)`` returns how many items of the batch reached the destination;
    the rest count as export failures. A raise fails the whole batch.
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
        self._counts = DeliveryCounts()
        self._flushers = 0
        self._losses_at_last_flush = 0
        self._closed = False
        self._init_thread_state()
        _reset_in_forked_children(self)

    def _init_thread_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def submit(self, item: T) -> None:
        """Queue an item; never blocks on the destination. A full queue drops its oldest item."""
        with self._cond:
            counts = self._counts
            counts.submitted += 1
            if self._closed:
                counts.drop(SHUTDOWN)
                return
            items = self._items
            if len(items) >= self._max_size:
                items.popleft()
                counts.drop(QUEUE_FULL)
                warn_limited(f"full:{self.name}", "telemetry queue %s is full; dropping", self.name)
            items.append(item)
            if self._thread is None:
                self._start_worker()
            elif len(items) == self._batch_size:
                self._cond.notify()

    def counts(self) -> DeliveryCounts:
        """A consistent snapshot of this destination's counts."""
        with self._cond:
            return self._counts.copy()

    def flush(self, deadline: float) -> bool:
        """Wait until everything submitted so far is processed.

        True when it was, and nothing was lost (failed or dropped) since the last
        flush that completed; False on timeout or loss.
        """
        with self._cond:
            counts = self._counts
            target = counts.submitted
            self._flushers += 1
            self._cond.notify_all()
            try:
                done = self._cond.wait_for(
                    lambda: counts.submitted - counts.pending >= target,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
            finally:
                self._flushers -= 1
            if not done:
                return False
            losses = counts.export_failures + counts.dropped
            lost, self._losses_at_last_flush = losses > self._losses_at_last_flush, losses
            return not lost

    def close(self, deadline: float, reason: str = SHUTDOWN) -> bool:
        """Refuse new items, deliver what is queued until the deadline, drop (counted) the rest."""
        flushed = self.flush(deadline)
        with self._cond:
            self._closed = True
            self._counts.drop(reason, len(self._items))
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
            logger.exception("telemetry export to %s failed", self.name)
            delivered = 0
        with self._cond:
            self._counts.exported += delivered
            self._counts.export_failures += len(batch) - delivered
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child: new lock, no thread, no queue, zero counts.

        What was queued at the fork belongs to the parent, which exports it; the
        child would only send it twice.
        """
        self._init_thread_state()
        self._items.clear()
        self._counts = DeliveryCounts()
        self._flushers = 0
        self._losses_at_last_flush = 0


def _reset_in_forked_children(queue: DeliveryQueue[T]) -> None:
    if not hasattr(os, "register_at_fork"):
        return
    reference = weakref.ref(queue)

    def after_in_child() -> None:
        alive = reference()
        if alive is not None:
            alive.after_fork_in_child()

    os.register_at_fork(after_in_child=after_in_child)
