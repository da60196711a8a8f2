"""What became of delivered items: the reasons they were dropped or failed, a batch's
outcome, and one destination's counts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

QUEUE_FULL, SHUTDOWN, SPOOL_FULL, UNREGISTERED, REJECTED, TOO_LARGE = (
    "queue_full",
    "shutdown",
    "spool_full",
    "unregistered",
    "rejected",
    "too_large",
)
DROP_REASONS = (QUEUE_FULL, SHUTDOWN, SPOOL_FULL, UNREGISTERED, REJECTED, TOO_LARGE)
# Why an export failed: the endpoint stayed unreachable or unavailable past its retries
# (without a spool), refused the request for good, rejected items in a partial success;
# a callback raised; any other exporter (console, file, metrics) failed.
UNAVAILABLE, REFUSED, PARTIAL, CALLBACK, EXPORTER = (
    "unavailable",
    "refused",
    "partial",
    "callback",
    "exporter",
)
FAILURE_REASONS = (UNAVAILABLE, REFUSED, PARTIAL, CALLBACK, EXPORTER)


def _add(counts: dict[str, int], reason: str, count: int) -> None:
    if count:
        counts[reason] = counts.get(reason, 0) + count


@dataclass
class DeliveryCounts:
    """Counts of one destination. Every submitted item is exported, failed, dropped or pending.

    ``spooled`` items are pending in the spool; ``recovered`` ones came from an earlier
    process's spool and were exported now (they were never submitted here).
    """

    submitted: int = 0
    exported: int = 0
    failed_by: dict[str, int] = field(default_factory=dict)
    dropped_by: dict[str, int] = field(default_factory=dict)
    spooled: int = 0
    recovered: int = 0

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by.values())

    @property
    def export_failures(self) -> int:
        return sum(self.failed_by.values())

    @property
    def pending(self) -> int:
        """Items queued or being exported right now."""
        return self.submitted - self.dropped - self.exported - self.export_failures

    def drop(self, reason: str, count: int = 1) -> None:
        _add(self.dropped_by, reason, count)

    def fail(self, reason: str, count: int = 1) -> None:
        _add(self.failed_by, reason, count)

    def record(self, outcome: Delivered, items: int, unaccounted: str) -> None:
        """Count what became of ``items`` submitted ones; those ``outcome`` does not
        account for failed, under ``unaccounted``."""
        self.exported += outcome.exported
        self.spooled += outcome.spooled
        for reason, count in outcome.failed.items():
            self.fail(reason, count)
        for reason, count in outcome.dropped.items():
            self.drop(reason, count)
        self.fail(unaccounted, items - outcome.accounted)

    def copy(self) -> DeliveryCounts:
        return DeliveryCounts(
            self.submitted,
            self.exported,
            dict(self.failed_by),
            dict(self.dropped_by),
            self.spooled,
            self.recovered,
        )

    @staticmethod
    def total(many: Iterable[DeliveryCounts]) -> DeliveryCounts:
        result = DeliveryCounts()
        for counts in many:
            result.submitted += counts.submitted
            result.exported += counts.exported
            result.spooled += counts.spooled
            result.recovered += counts.recovered
            for reason, count in counts.failed_by.items():
                result.fail(reason, count)
            for reason, count in counts.dropped_by.items():
                result.drop(reason, count)
        return result


@dataclass
class Delivered:
    """What became of one batch: exported, spooled, failed or dropped, by reason.

    Items it does not account for count as failed with the queue's failure reason.
    """

    exported: int = 0
    spooled: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str, count: int) -> None:
        _add(self.failed, reason, count)

    def drop(self, reason: str, count: int) -> None:
        _add(self.dropped, reason, count)

    @property
    def accounted(self) -> int:
        return self.exported + self.spooled + sum(self.failed.values()) + sum(self.dropped.values())


# How many items of a batch reached the destination (the rest failed), or the detail.
Outcome = int | Delivered
