"""The durable spool: encoded OTLP requests an endpoint refused, kept in SQLite until it answers.

One database per spool directory, shared by the destinations of a collector and by
the processes that use the same directory after it. Rows are replayed oldest
first; delivery is at-least-once (a row is deleted only after the endpoint took it).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from telemetry_otel._otel.forks import follow_forks
from telemetry_otel._otel.log import warn_limited

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    signal TEXT NOT NULL,
    items INTEGER NOT NULL,
    size INTEGER NOT NULL,
    owner TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""
Evicted = Callable[[int], None]


@dataclass(frozen=True)
class SpooledBatch:
    """One stored request: its row id, how many items it holds, whose they were."""

    id: int
    items: int
    payload: bytes
    ours: bool


class Spool:
    """A size-bounded SQLite store of encoded requests, keyed by destination and signal."""

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.path = Path(directory) / "spool.sqlite3"
        self._max_bytes = max_bytes
        self._on_evict: dict[tuple[str, str], Evicted] = {}
        self._open()
        follow_forks(self)

    def after_fork_in_child(self) -> None:
        # A SQLite connection must not cross a fork: the child opens its own.
        self._open()

    def _open(self) -> None:
        # A fresh owner per process: rows of an earlier (or parent) process are theirs.
        self._owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def on_evict(self, destination: str, signal: str, evicted: Evicted) -> None:
        """Tell ``evicted(items)`` when our rows of that destination and signal are dropped."""
        self._on_evict[(destination, signal)] = evicted

    def put(self, destination: str, signal: str, items: int, payload: bytes) -> bool:
        """Store a request; False (nothing stored) when it alone is larger than the bound."""
        return self.put_many(destination, signal, [(items, payload)]) == items

    def put_many(self, destination: str, signal: str, rows: list[tuple[int, bytes]]) -> int:
        """Store requests ``(items, payload)`` in one transaction; how many items were
        stored (a request alone larger than the bound is not)."""
        kept = [(items, payload) for items, payload in rows if len(payload) <= self._max_bytes]
        if not kept:
            return 0
        with self._lock, self._db:  # one transaction: one fsync for all of them
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO batches (destination, signal, items, size, owner, payload)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (destination, signal, items, len(payload), self._owner, payload)
                    for items, payload in kept
                ],
            )
            evicted = self._evict_past_bound()
        for key, count in evicted:
            self._report_eviction(key, count)
        return sum(items for items, _ in kept)

    def has_rows(self, destination: str, signal: str) -> bool:
        with self._lock:
            if self._closed:
                return False
            row = self._db.execute(
                "SELECT 1 FROM batches WHERE destination = ? AND signal = ? LIMIT 1",
                (destination, signal),
            ).fetchone()
        return row is not None

    def _evict_past_bound(self) -> list[tuple[tuple[str, str], int]]:
        evicted = []
        total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM batches").fetchone()[0]
        while total > self._max_bytes:
            row = self._db.execute(
                "SELECT id, destination, signal, items, size, owner"
                " FROM batches ORDER BY id LIMIT 1"
            ).fetchone()
            self._db.execute("DELETE FROM batches WHERE id = ?", (row[0],))
            total -= row[4]
            if row[5] == self._owner:
                evicted.append(((row[1], row[2]), row[3]))
            else:
                warn_limited("spool:evict-foreign", "spool full: dropped older spooled telemetry")
        return evicted

    def _report_eviction(self, key: tuple[str, str], count: int) -> None:
        evicted = self._on_evict.get(key)
        if evicted is not None:
            evicted(count)
        warn_limited(f"spool:evict:{key}", "telemetry spool is full; dropping its oldest batches")

    def oldest(self, destination: str, signal: str) -> SpooledBatch | None:
        with self._lock:
            if self._closed:  # a replay still running as the pipeline stops
                return None
            row = self._db.execute(
                "SELECT id, items, payload, owner FROM batches"
                " WHERE destination = ? AND signal = ? ORDER BY id LIMIT 1",
                (destination, signal),
            ).fetchone()
        if row is None:
            return None
        return SpooledBatch(row[0], row[1], bytes(row[2]), row[3] == self._owner)

    def remove(self, batch_id: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()
