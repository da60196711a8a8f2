"""Per-destination delivery queues with exact counts.

The SDK's batch processors cannot serve here: they count drops only through
optional self-metrics (and not exactly when producers race a full queue), their
force_flush ignores its timeout, and items still queued when shutdown times out
vanish uncounted. A DeliveryQueue keeps the same batching behaviour (bounded
queue dropping the oldest item, batches of at most ``batch_size``, an export
every ``delay_s`` or as soon as a batch is full) and accounts for every item.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry.context import attach, detach, set_value

from telemetry_otel._otel.delivery.outcomes import (
    EXPORTER,
    QUEUE_FULL,
    REFUSED,
    SHUTDOWN,
    SPOOL_FULL,
    Delivered,
    DeliveryCounts,
    Outcome,
)
from telemetry_otel._otel.runtime.forks import follow_forks
from telemetry_otel._otel.runtime.log import logger, warn_limited
from telemetry_otel._otel.runtime.sdk import suppress_instrumentation_key
from telemetry_otel._otel.runtime.threads import mark_delivering, start_daemon

T = TypeVar("T")
_SUPPRESS_INSTRUMENTATION = suppress_instrumentation_key()


@dataclass(frozen=True)
class FlushTicket:
    """What a flush waits for: the items submitted, and the idle passes done, when it began."""

    submitted: int
    idle_passes: int


def begin_flush_all(queues: Sequence[DeliveryQueue[Any]]) -> Callable[[float], bool]:
    """Ask every queue to send at once; the call returned waits for them all until a
    deadline. Side by side, each queue waits only for itself."""
    tickets = [queue.begin_flush() for queue in queues]

    def await_all(deadline: float) -> bool:
        pairs = zip(queues, tickets, strict=True)
        return all([queue.await_flush(ticket, deadline) for queue, ticket in pairs])

    return await_all


def flush_all(queues: Sequence[DeliveryQueue[Any]], deadline: float) -> bool:
    """Flush queues side by side against one deadline."""
    return begin_flush_all(queues)(deadline)


def close_all(
    queues: Sequence[DeliveryQueue[Any]], deadline: float, reason: str = SHUTDOWN
) -> bool:
    """Close queues side by side against one deadline (see DeliveryQueue.close)."""
    flushed = flush_all(queues, deadline)
    for queue in queues:
        queue.finish_close(reason)
    return flushed


class Spooler(Protocol[T]):
    """What a destination with a spool adds to its queue (see SpoolingDelivery)."""

    def replay(self, queue: DeliveryQueue[T], force: bool = False) -> bool:
        """Send what waits in the spool, oldest first; True when nothing waits any more.
        ``force``: try now, even while backing off after a failed replay."""

    def hold(self, queue: DeliveryQueue[T], items: list[T], deadline: float = math.inf) -> int:
        """Spool items the queue could not send in time, oldest first, until ``deadline``;
        how many it stored (the first ones)."""


class DeliveryQueue(Generic[T]):
    """A bounded queue and worker thread feeding one destination in batches.

    ``deliver(batch)`` returns how many items of the batch reached the destination,
    or a Delivered; the rest count as export failures (``failure_reason``). A raise fails the
    whole batch. With a ``spooler``, the worker replays the spool when it is idle,
    and what ``close()`` cannot send in time is spooled instead of dropped.
    """

    def __init__(
        self,
        name: str,
        deliver: Callable[[list[T]], Outcome],
        max_size: int,
        batch_size: int,
        delay_s: float,
        spooler: Spooler[T] | None = None,
        failure_reason: str = EXPORTER,
        immediate: bool = False,
    ) -> None:
        self.name = name
        # The OTel component this queue stands for, as the SDK-metric conventions name
        # it: ``(otel.component.type, otel.component.name)`` of its exporter.
        self.component: tuple[str, str] | None = None
        self._failure_reason = failure_reason
        self._full_key = f"full:{name}"
        self._deliver = deliver
        self._spooler = spooler
        self._idle_passes = 0
        self._max_size = self._configured_size = max_size
        self._batch_size = batch_size
        # How many waiting items wake the worker: a batch, or one for an immediate queue.
        self._wake_at = 1 if immediate else batch_size
        self._delay_s = delay_s
        self._items: deque[T] = deque()
        self._counts = DeliveryCounts()
        self._flushers = 0
        self._losses_at_last_flush = 0
        self._closed = False
        # The batch the worker is exporting; once spooled at close, its outcome no
        # longer counts (the spooled copy does).
        self._in_flight: list[T] = []
        self._in_flight_claim: str | None = None
        self._init_thread_state()
        follow_forks(self)
        if spooler is not None:
            # A spool may hold what an earlier process could not send: replay it now,
            # not only once something new is collected.
            with self._cond:
                self._start_worker()

    def _init_thread_state(self) -> None:
        # submit() takes the bare lock, where the Condition's own __enter__ and
        # __exit__ are Python calls on the hot path.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def submit(self, item: T) -> None:
        """Queue an item; never blocks on the destination. A full queue drops its oldest item."""
        # `with`, never acquire()/release(): a signal handler that raises (Ctrl-C, or
        # SIGTERM made SystemExit by deliver_on_terminate) between acquire() and the
        # try would leave the lock held, and the stop that follows would wait on it.
        with self._lock:
            counts = self._counts
            counts.submitted += 1
            if self._closed:
                counts.drop(SHUTDOWN)
                return
            items = self._items
            if len(items) >= self._max_size:
                # Under overload this runs for every item: kept to plain operations.
                items.popleft()
                dropped_by = counts.dropped_by
                dropped_by[QUEUE_FULL] = dropped_by.get(QUEUE_FULL, 0) + 1
                warn_limited(self._full_key, "telemetry queue %s is full; dropping", self.name)
            items.append(item)
            if self._thread is None:
                self._start_worker()
            elif len(items) == self._wake_at:
                self._cond.notify()

    @property
    def capacity(self) -> int:
        """How many items it holds before dropping the oldest (``buffer_size``)."""
        return self._configured_size

    def hold_at_least(self, items: int) -> None:
        """Hold ``items`` at once, past ``max_size`` if need be (never less than it): a
        callback's metric queue takes each interval's points whole, however many tag
        sets it has, while older intervals' points still give way."""
        with self._lock:
            self._max_size = max(self._configured_size, items)

    @property
    def spools(self) -> bool:
        """What this queue cannot send goes to a spool."""
        return self._spooler is not None

    @property
    def flushing(self) -> bool:
        """A flush() waits on this queue right now."""
        return self._flushers > 0

    def counts(self) -> DeliveryCounts:
        """A consistent snapshot of this destination's counts."""
        with self._cond:
            return self._counts.copy()

    def flush(self, deadline: float) -> bool:
        """Wait until everything submitted so far is processed (sent, failed, dropped or
        spooled) and, with a spool, one replay of it was tried.

        True when that happened, nothing waits in the spool, and nothing was lost
        (failed or dropped) since the last flush that completed; False otherwise.
        """
        return self.await_flush(self.begin_flush(), deadline)

    def begin_flush(self) -> FlushTicket:
        """Ask the worker to send everything submitted so far now, not at its next interval.

        Every begin_flush() must be followed by one await_flush() with its ticket.
        Beginning on every queue before awaiting any lets one slow destination cost
        only its own queue, never the others' share of a deadline.
        """
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            return FlushTicket(self._counts.submitted, self._idle_passes)

    def await_flush(self, ticket: FlushTicket, deadline: float) -> bool:
        """The second half of flush(): wait until the deadline for what ``ticket`` covers."""
        try:
            if self._thread is None:
                self._export_inline(deadline)
            with self._cond:
                counts = self._counts
                done = self._cond.wait_for(
                    lambda: (
                        counts.submitted - counts.pending + counts.spooled >= ticket.submitted
                        and (not counts.spooled or self._idle_passes > ticket.idle_passes)
                    ),
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                if not done:
                    return False
                losses = counts.export_failures + counts.dropped
                lost, self._losses_at_last_flush = losses > self._losses_at_last_flush, losses
                return not lost and not counts.spooled
        finally:
            with self._cond:
                self._flushers -= 1

    def _export_inline(self, deadline: float) -> None:
        """Send what is queued from the calling thread: no worker could be started
        (the interpreter is exiting). A spool is replayed by the next process."""
        while time.monotonic() < deadline:
            with self._cond:
                count = min(len(self._items), self._batch_size)
                if not count or self._thread is not None:
                    return
                batch = [self._items.popleft() for _ in range(count)]
            self._export(batch)

    def close(self, deadline: float, reason: str = SHUTDOWN) -> bool:
        """Refuse new items, deliver what is queued until the deadline, then spool (with a
        spool) or drop (counted) the rest (see finish_close)."""
        return close_all([self], deadline, reason)

    def finish_close(self, reason: str, deadline: float = math.inf) -> None:
        """Refuse new items; spool (with a spool, until ``deadline``) or drop (counted)
        what is still queued.

        At shutdown the batch an exporter is still busy with counts too: spooled as a
        copy (at-least-once: should that export still succeed, it is sent twice) or
        dropped, so a stopped collector has nothing pending; should that export still
        end, it is not counted again.
        """
        with self._cond:
            self._closed = True
            remaining = list(self._items)
            self._items.clear()
            in_flight = list(self._in_flight)
            self._cond.notify_all()
        if in_flight and reason == SHUTDOWN and self.claim_in_flight("close"):
            remaining = in_flight + remaining
        spooler = self._spooler
        held = spooler.hold(self, remaining, deadline) if spooler and remaining else 0
        with self._cond:
            self._counts.spooled += held
            self._counts.drop(reason, len(remaining) - held)

    def claim_in_flight(self, by: str) -> bool:
        """Take the in-flight batch for spooling; False when someone else already did.

        The exporter's own fallback (SpoolingDelivery) and close() both call this, so
        a batch is spooled, and counted, once.
        """
        with self._cond:
            if self._in_flight_claim is not None or not self._in_flight:
                return False
            self._in_flight_claim = by
            return True

    def settle_spooled(
        self, exported: int = 0, dropped: int = 0, failed: int = 0, reason: str = REFUSED
    ) -> None:
        """Items that left the spool: sent at last, evicted to keep it in bounds, or
        refused by the endpoint on replay (``failed``, counted under ``reason``)."""
        with self._cond:
            self._counts.spooled -= exported + dropped + failed
            self._counts.exported += exported
            self._counts.drop(SPOOL_FULL, dropped)
            self._counts.fail(reason, failed)
            self._cond.notify_all()

    def drop_unsent(self, reason: str, items: int) -> None:
        """Items meant for this destination that could not even be queued: counted as
        submitted and dropped, so the next flush() reports the loss."""
        with self._cond:
            self._counts.submitted += items
            self._counts.drop(reason, items)

    def count_recovered(self, items: int) -> None:
        """Items an earlier process spooled, sent by this one."""
        with self._cond:
            self._counts.recovered += items

    def _start_worker(self) -> None:
        # None at interpreter exit: await_flush() then sends from the calling thread.
        self._thread = start_daemon(self._work, self.name)

    def _work(self) -> None:
        mark_delivering()
        # Exporters must not trace their own network calls back into the pipeline.
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION, True))
        try:
            while (batch := self._next_batch()) is not None:
                if batch:
                    self._export(batch)
                else:
                    self._idle()
        finally:
            detach(token)

    def _idle(self) -> None:
        """Nothing new to send: a chance to replay the spool."""
        if self._spooler is not None:
            try:
                self._spooler.replay(self, force=self.flushing)
            except Exception:
                logger.exception("telemetry spool replay for %s failed", self.name)
        with self._cond:
            self._idle_passes += 1
            self._cond.notify_all()

    def _next_batch(self) -> list[T] | None:
        with self._cond:
            items = self._items
            self._cond.wait_for(
                lambda: (
                    len(items) >= self._wake_at
                    or (self._flushers and (items or self._counts.spooled))
                    or self._closed
                ),
                timeout=self._delay_s,
            )
            if self._closed and not items:
                return None
            count = min(len(items), self._batch_size)
            return [items.popleft() for _ in range(count)]

    def _export(self, batch: list[T]) -> None:
        with self._cond:
            self._in_flight, self._in_flight_claim = batch, None
        try:
            outcome = self._deliver(batch)
        except Exception:
            logger.exception("telemetry export to %s failed", self.name)
            outcome = 0
        if isinstance(outcome, int):
            outcome = Delivered(exported=outcome)
        with self._cond:
            claimed_by_close = self._in_flight_claim == "close"
            self._in_flight, self._in_flight_claim = [], None
            if not claimed_by_close:  # else close() spooled or dropped it, and counted it
                self._counts.record(outcome, len(batch), self._failure_reason)
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
        self._in_flight, self._in_flight_claim = [], None
        if self._spooler is not None:
            with self._cond:
                self._start_worker()
        self._losses_at_last_flush = 0
