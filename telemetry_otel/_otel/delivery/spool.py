"""The durable spool: encoded OTLP requests an endpoint could not take, kept in SQLite
until it answers.

One database per spool directory, shared by the destinations of a collector, by the
processes that use it at the same time (gunicorn workers with one ``spool_dir``, a
forked child) and by those that use it later. Rows are replayed oldest first;
delivery is at-least-once (a row is deleted only after the endpoint answered it).

Shared safely: a replay first claims the oldest row with a lease (an owner and an
expiry), so two processes never send the same row at once, and a process that dies
mid-replay leaves a lease that simply expires. Whoever replays or evicts a row that
another process spooled leaves that process a settlement (what became of its
items), which the owner applies to its own counts: its ``spooled`` and ``pending``
speak of its rows still in the spool, whoever sent them.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from telemetry_otel._otel.runtime.forks import follow_forks
from telemetry_otel._otel.runtime.log import logger, warn_limited

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        destination TEXT NOT NULL,
        signal TEXT NOT NULL,
        items INTEGER NOT NULL,
        size INTEGER NOT NULL,
        owner TEXT NOT NULL,
        payload BLOB NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS settlements (
        owner TEXT NOT NULL,
        destination TEXT NOT NULL,
        signal TEXT NOT NULL,
        exported INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        reason TEXT NOT NULL,
        dropped INTEGER NOT NULL,
        at REAL NOT NULL
    )
    """,
)
# Added to spools written before leases existed.
_LEASE_COLUMNS = {"lease_owner": "TEXT", "lease_until": "REAL"}
# Settlements for an owner that never came back for them are forgotten after this.
_SETTLEMENT_TTL_S = 24 * 3600.0
# How long a writer waits for another process's transaction before giving up.
_BUSY_TIMEOUT_S = 5.0
Evicted = Callable[[int], None]


@dataclass(frozen=True)
class SpooledBatch:
    """One stored request: its row id, how many items it holds, whose they were."""

    id: int
    items: int
    payload: bytes
    ours: bool
    owner: str = ""


@dataclass
class Settlement:
    """What became of this process's spooled items that another process sent or evicted."""

    exported: int = 0
    failed_by: dict[str, int] = field(default_factory=dict)
    dropped: int = 0

    @property
    def items(self) -> int:
        return self.exported + sum(self.failed_by.values()) + self.dropped


BUSY = SpooledBatch(-1, 0, b"", False)  # the oldest row is being replayed by another process


F = TypeVar("F", bound=Callable[..., Any])


def _survives(default: Any) -> Callable[[F], F]:
    """A spool operation that a failing disk or file (full, read-only, corrupted while
    running) turns into ``default`` and one warning a minute, never an exception on an
    export thread: the caller then counts what could not be stored."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(self: Spool, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as error:
                warn_limited(
                    f"spool:error:{self.path}", "telemetry spool %s failed: %s", self.path, error
                )
                return default

        return guarded  # type: ignore[return-value]

    return decorate


def open_spool(directory: str, max_bytes: int) -> Spool | None:
    """The spool in ``directory``, or None (with one log line) where none can be had.

    A spool must never stop a service from starting: a corrupt or truncated file is
    moved aside (``spool.sqlite3.corrupt-<time>``, its WAL with it) and a fresh one
    started; a directory that cannot be written means running without a spool.
    """
    try:
        return _spool_once_free(directory, max_bytes)
    except sqlite3.DatabaseError as error:
        if not _is_corrupt(error):
            return _unavailable(directory, error)
        try:
            moved = _move_aside(Path(directory) / "spool.sqlite3")
        except OSError as cannot_move:  # a read-only filesystem, as after I/O errors
            return _unavailable(
                directory, f"{error}, and it cannot be moved aside: {cannot_move.strerror}"
            )
        logger.warning(
            "telemetry spool %s is unreadable (%s): moved aside to %s, starting a fresh one",
            directory,
            error,
            moved,
        )
    except OSError as error:
        return _unavailable(directory, error)
    try:
        return _spool_once_free(directory, max_bytes)
    except (sqlite3.Error, OSError) as error:
        return _unavailable(directory, error)


def _spool_once_free(directory: str, max_bytes: int) -> Spool:
    """Open the spool, trying again while another process holds the file: processes
    that start together (a pool's workers) open one fresh spool at the same moment,
    and SQLite answers "database is locked" at once, busy timeout or not, while
    another connection switches the new file to WAL. Bounded by _OPEN_RETRY_S."""
    deadline = time.monotonic() + _OPEN_RETRY_S
    wait = 0.02
    while True:
        try:
            return Spool(directory, max_bytes)
        except sqlite3.OperationalError as error:
            text = str(error).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(wait)
        wait = min(0.25, wait * 2)


def _is_corrupt(error: sqlite3.DatabaseError) -> bool:
    text = str(error).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def _move_aside(path: Path) -> Path:
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    return target


def _unavailable(directory: str, error: Exception | str) -> Spool | None:
    logger.warning(
        "telemetry spool %s cannot be used (%s): running without a spool; what "
        "an outage holds back is counted as failed",
        directory,
        error,
    )
    return None


_OPEN_RETRY_S = 3.0


class Spool:
    """A size-bounded SQLite store of encoded requests, keyed by destination and signal.

    Build it with open_spool(), which never raises for a bad directory or file.
    """

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
        self._deadline: float | None = None
        self._wait_cut = False  # the busy timeout is not SQLite's own now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path,
            check_same_thread=False,
            isolation_level=None,
            timeout=_BUSY_TIMEOUT_S,
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A file cut short by a crash may open and fail only later: look now.
            [(verdict,)] = self._db.execute("PRAGMA quick_check(1)").fetchall()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")
        except BaseException:
            self._db.close()
            raise
        with self._transaction():
            for statement in _SCHEMA:
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(batches)")}
            for name, kind in _LEASE_COLUMNS.items():
                if name not in columns:
                    self._db.execute(f"ALTER TABLE batches ADD COLUMN {name} {kind}")
            self._db.execute(
                "DELETE FROM settlements WHERE at < ?", (time.time() - _SETTLEMENT_TTL_S,)
            )

    def _transaction(self) -> sqlite3.Connection:
        """``with self._transaction():`` — one write transaction, taken at once (IMMEDIATE),
        so two processes never interleave a read and the write that depends on it."""
        self._bound_wait()
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def wait_until(self, deadline: float | None) -> None:
        """Wait for another process's lock on the file (a sibling worker, ``sqlite3`` in
        a shell) until ``deadline`` at most, from now on: ``stop()`` owns its deadline.
        None: SQLite's busy timeout again."""
        self._deadline = deadline

    def _bound_wait(self) -> None:
        """Before a write (under the lock): the busy timeout cut to the deadline."""
        if self._deadline is None and not self._wait_cut:
            return
        left = _BUSY_TIMEOUT_S
        if self._deadline is not None:
            left = max(0.0, min(left, self._deadline - time.monotonic()))
        self._db.execute(f"PRAGMA busy_timeout = {int(left * 1000)}")
        self._wait_cut = self._deadline is not None

    def on_evict(self, destination: str, signal: str, evicted: Evicted) -> None:
        """Tell ``evicted(items)`` when our rows of that destination and signal are dropped."""
        self._on_evict[(destination, signal)] = evicted

    # -- storing -----------------------------------------------------------------------------

    def put(self, destination: str, signal: str, items: int, payload: bytes) -> bool:
        """Store a request; False (nothing stored) when it alone is larger than the bound."""
        return self.put_many(destination, signal, [(items, payload)]) == items

    @_survives(0)
    def put_many(self, destination: str, signal: str, rows: list[tuple[int, bytes]]) -> int:
        """Store requests ``(items, payload)`` in one transaction; how many items were
        stored (a request alone larger than the bound is not)."""
        kept = [(items, payload) for items, payload in rows if len(payload) <= self._max_bytes]
        if not kept:
            return 0
        with self._lock:
            if self._closed:
                return 0
            with self._transaction():
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
                self._leave_settlement(row[5], row[1], row[2], Settlement(dropped=row[3]))
                warn_limited("spool:evict-foreign", "spool full: dropped older spooled telemetry")
        return evicted

    def _report_eviction(self, key: tuple[str, str], count: int) -> None:
        evicted = self._on_evict.get(key)
        if evicted is not None:
            evicted(count)
        warn_limited(f"spool:evict:{key}", "telemetry spool is full; dropping its oldest batches")

    # -- replaying ---------------------------------------------------------------------------

    @_survives(False)
    def has_rows(self, destination: str, signal: str) -> bool:
        with self._lock:
            if self._closed:
                return False
            row = self._db.execute(
                "SELECT 1 FROM batches WHERE destination = ? AND signal = ? LIMIT 1",
                (destination, signal),
            ).fetchone()
        return row is not None

    @_survives(None)
    def claim_oldest(self, destination: str, signal: str, lease_s: float) -> SpooledBatch | None:
        """The oldest row, leased to this process for ``lease_s``; None when there is none,
        BUSY while another process holds its lease (it is being sent: not ours to send)."""
        with self._lock:
            if self._closed:  # a replay still running as the pipeline stops
                return None
            now = time.time()
            with self._transaction():
                row = self._db.execute(
                    "SELECT id, items, payload, owner, lease_owner, lease_until FROM batches"
                    " WHERE destination = ? AND signal = ? ORDER BY id LIMIT 1",
                    (destination, signal),
                ).fetchone()
                if row is None:
                    return None
                if row[4] not in (None, self._owner) and (row[5] or 0) > now:
                    return BUSY
                self._db.execute(
                    "UPDATE batches SET lease_owner = ?, lease_until = ? WHERE id = ?",
                    (self._owner, now + lease_s, row[0]),
                )
        return SpooledBatch(row[0], row[1], bytes(row[2]), row[3] == self._owner, row[3])

    @_survives(None)
    def release(self, batch: SpooledBatch) -> None:
        """Give a claimed row back: sending it failed, and it waits for the next replay."""
        with self._lock:
            if self._closed:
                return
            self._bound_wait()
            self._db.execute(
                "UPDATE batches SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (batch.id, self._owner),
            )

    @_survives(None)
    def settle(
        self, batch: SpooledBatch, destination: str, signal: str, settlement: Settlement
    ) -> None:
        """Remove a row the endpoint answered; its owner, if another process, is told how."""
        with self._lock:
            if self._closed:
                return
            with self._transaction():
                self._db.execute("DELETE FROM batches WHERE id = ?", (batch.id,))
                if not batch.ours:
                    self._leave_settlement(batch.owner, destination, signal, settlement)

    def _leave_settlement(
        self, owner: str, destination: str, signal: str, settlement: Settlement
    ) -> None:
        failed = settlement.failed_by or {"refused": 0}
        for index, (reason, count) in enumerate(failed.items()):
            first = index == 0  # exported and dropped go with the first row only
            self._db.execute(
                "INSERT INTO settlements VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    owner,
                    destination,
                    signal,
                    settlement.exported if first else 0,
                    count,
                    reason,
                    settlement.dropped if first else 0,
                    time.time(),
                ),
            )

    @_survives(Settlement())
    def take_settlements(self, destination: str, signal: str) -> Settlement:
        """What other processes did with this process's rows since the last call."""
        result = Settlement()
        with self._lock:
            if self._closed:
                return result
            with self._transaction():
                rows = self._db.execute(
                    "SELECT exported, failed, reason, dropped FROM settlements"
                    " WHERE owner = ? AND destination = ? AND signal = ?",
                    (self._owner, destination, signal),
                ).fetchall()
                if rows:
                    self._db.execute(
                        "DELETE FROM settlements WHERE owner = ? AND destination = ?"
                        " AND signal = ?",
                        (self._owner, destination, signal),
                    )
        for exported, failed, reason, dropped in rows:
            result.exported += exported
            result.dropped += dropped
            if failed:
                result.failed_by[reason] = result.failed_by.get(reason, 0) + failed
        return result

    def close(self) -> None:
        """Give back the leases this process holds (a replay cut short by stop()), so
        another process need not wait them out, and close."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._bound_wait()
                self._db.execute(
                    "UPDATE batches SET lease_owner = NULL, lease_until = NULL"
                    " WHERE lease_owner = ?",
                    (self._owner,),
                )
            self._db.close()
