"""DeliveryQueue on its own: every item ends exported, failed, dropped (by reason) or spooled."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from telemetry_otel._otel.delivery.outcomes import QUEUE_FULL, SHUTDOWN, UNREGISTERED, Delivered
from telemetry_otel._otel.delivery.queue import DeliveryQueue


def soon() -> float:
    return time.monotonic() + 5.0


class Gate:
    """A delivery that blocks inside the export until released: an export in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[int]] = []

    def __call__(self, batch: list[int]) -> int:
        self.batches.append(batch)
        self.entered.set()
        self.release.wait(10)
        return len(batch)


class Spooler:
    """Keeps what the queue hands it; replays nothing."""

    def __init__(self) -> None:
        self.held: list[int] = []

    def replay(self, queue: DeliveryQueue[Any], force: bool = False) -> bool:
        return not self.held

    def hold(self, queue: DeliveryQueue[Any], items: list[int], deadline: float = math.inf) -> int:
        self.held += items
        return len(items)


def counts_of(queue: DeliveryQueue[Any]) -> tuple[int, int, dict[str, int], dict[str, int], int]:
    counts = queue.counts()
    return (counts.submitted, counts.exported, counts.failed_by, counts.dropped_by, counts.pending)


def test_a_full_queue_drops_its_oldest_items_and_counts_them():
    delivered: list[int] = []
    queue = DeliveryQueue("q", lambda batch: delivered.extend(batch) or len(batch), 3, 10, 60.0)
    for item in range(5):  # fewer than a batch: the worker waits for its 60 s interval
        queue.submit(item)
    assert queue.flush(soon()) is False  # two were lost since the last flush
    assert delivered == [2, 3, 4]
    assert counts_of(queue) == (5, 3, {}, {QUEUE_FULL: 2}, 0)
    assert queue.flush(soon()) is True  # nothing lost since


def test_a_batch_the_destination_partly_refuses_counts_the_rest_as_failed_by_its_reason():
    def deliver(batch: list[int]) -> Delivered:
        outcome = Delivered(exported=len(batch) - 2)
        outcome.fail("partial", 1)
        return outcome  # one item unaccounted for: the queue's failure reason

    queue = DeliveryQueue("q", deliver, 100, 10, 60.0, failure_reason="exporter")
    for item in range(10):
        queue.submit(item)
    assert queue.flush(soon()) is False
    assert counts_of(queue) == (10, 8, {"partial": 1, "exporter": 1}, {}, 0)


def test_an_exporter_that_raises_fails_the_whole_batch():
    def deliver(batch: list[int]) -> int:
        raise RuntimeError("exporter bug")

    queue = DeliveryQueue("q", deliver, 100, 10, 60.0, failure_reason="callback")
    for item in range(4):
        queue.submit(item)
    assert queue.flush(soon()) is False
    assert counts_of(queue) == (4, 0, {"callback": 4}, {}, 0)


def test_items_submitted_after_close_are_dropped_as_shutdown():
    queue: DeliveryQueue[int] = DeliveryQueue("q", len, 100, 10, 60.0)
    queue.submit(1)
    assert queue.close(soon()) is True
    queue.submit(2)
    assert counts_of(queue) == (2, 1, {}, {SHUTDOWN: 1}, 0)


def test_closing_for_an_unregistered_callback_drops_what_waits_under_that_reason():
    gate = Gate()
    queue: DeliveryQueue[int] = DeliveryQueue("q", gate, 100, 1, 60.0)
    queue.submit(1)
    assert gate.entered.wait(5)
    queue.submit(2)
    queue.submit(3)
    queue.close(time.monotonic(), reason=UNREGISTERED)
    gate.release.set()
    deadline = time.monotonic() + 5
    while queue.counts().pending and time.monotonic() < deadline:
        time.sleep(0.01)
    # The batch in flight finishes and counts; the queued ones are dropped.
    assert counts_of(queue) == (3, 1, {}, {UNREGISTERED: 2}, 0)


def test_close_during_an_export_drops_the_batch_in_flight_once_and_never_counts_it_again():
    gate = Gate()
    queue: DeliveryQueue[int] = DeliveryQueue("q", gate, 100, 2, 60.0)
    queue.submit(1)
    queue.submit(2)
    assert gate.entered.wait(5)
    queue.submit(3)
    queue.finish_close(SHUTDOWN)  # stop()'s deadline has passed: nothing pending after it
    assert counts_of(queue) == (3, 0, {}, {SHUTDOWN: 3}, 0)
    gate.release.set()  # the export ends after all, successfully
    time.sleep(0.1)
    assert counts_of(queue) == (3, 0, {}, {SHUTDOWN: 3}, 0)


def test_close_during_an_export_spools_the_batch_in_flight_with_what_was_queued():
    gate = Gate()
    spooler = Spooler()
    queue: DeliveryQueue[int] = DeliveryQueue("q", gate, 100, 2, 60.0, spooler=spooler)
    queue.submit(1)
    queue.submit(2)
    assert gate.entered.wait(5)
    queue.submit(3)
    queue.finish_close(SHUTDOWN)
    assert spooler.held == [1, 2, 3]  # in order: the batch in flight first
    assert queue.counts().spooled == 3
    gate.release.set()
    time.sleep(0.1)
    assert (queue.counts().exported, queue.counts().spooled) == (0, 3)


def test_the_in_flight_batch_is_claimed_once_whoever_asks_first():
    gate = Gate()
    queue: DeliveryQueue[int] = DeliveryQueue("q", gate, 100, 1, 60.0)
    queue.submit(1)
    assert gate.entered.wait(5)
    claims = []
    threads = [
        threading.Thread(target=lambda by=by: claims.append(queue.claim_in_flight(by)))
        for by in ("spool", "close") * 4
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claims) == [False] * 7 + [True]
    gate.release.set()


def test_a_flush_after_a_loss_reports_it_once():
    results = iter([0, 1, 1])  # the first batch fails, the next two arrive
    queue: DeliveryQueue[int] = DeliveryQueue("q", lambda batch: next(results), 100, 1, 60.0)
    queue.submit(1)
    assert queue.flush(soon()) is False
    queue.submit(2)
    assert queue.flush(soon()) is True
    queue.submit(3)
    assert queue.flush(soon()) is True


def test_settling_the_spool_moves_items_from_spooled_to_their_outcome():
    spooler = Spooler()
    queue: DeliveryQueue[int] = DeliveryQueue("q", len, 100, 10, 60.0, spooler=spooler)
    for item in range(6):
        queue.submit(item)
    queue.finish_close(SHUTDOWN)
    assert queue.counts().spooled == 6
    queue.settle_spooled(exported=3, dropped=2, failed=1, reason="refused")
    assert counts_of(queue) == (6, 3, {"refused": 1}, {"spool_full": 2}, 0)
    assert queue.counts().spooled == 0
