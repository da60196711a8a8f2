"""The ``prometheus://host:port`` endpoint: one /metrics page for every process of a service.

Imported only for that endpoint: the reader comes with the optional ``prometheus`` extra.

Pre-fork servers (gunicorn, uwsgi) and worker pools run one service in many processes
that all name the same port. Each process's OTel Prometheus reader collects into a
registry of its own; every collection interval, and at ``flush()`` and ``stop()``, the
process publishes what it gives to a file of its own in the page's directory
(``prometheus_page.py`` says what is in it and how the files merge). Whichever process
holds the directory's serve lock binds the port and serves the merge: its own
families as they are at the scrape, the others' as last published. When it exits,
the lock is free and another process takes the port at its next interval.

Liveness is an ``flock`` each process holds on a lock file of its own: the kernel
releases it however the process ends, and it is told apart from a reused pid.
A process that finds no living publisher when it joins starts the page afresh: the
service was restarted as a whole.

Written here because neither the OTel Prometheus exporter nor prometheus_client's
multiprocess mode (which covers prometheus_client's own metrics only) merges what
several processes collected through the OTel SDK.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric

from telemetry_otel._endpoints import Endpoint
from telemetry_otel._otel.destinations.destination import Destination
from telemetry_otel._otel.destinations.prometheus_page import (
    Publication,
    Stamps,
    decode,
    encode,
    families_to_json,
    folded_tokens,
    merge,
    stamp_gauges,
)
from telemetry_otel._otel.runtime.forks import ForkSafeLock, follow_forks
from telemetry_otel._otel.runtime.log import logger, warn_limited
from telemetry_otel._otel.runtime.threads import start_daemon
from telemetry_otel.config import TelemetryConfig

_MEMBERS_LOCK = ".members.lock"  # shared to read the files, exclusive to join or fold
_SERVE_LOCK = ".serve.lock"  # held by the process that serves the port
_EXITED = ".exited.json"  # the folded totals of processes that exited
_MEMBER = re.compile(r"^(\d+-[0-9a-f]{8})\.(json|lock)$")
_FOLD_AFTER = 8  # exited processes' files kept apart before they are folded into one
_JOIN_WAIT_S = 5.0  # how long a publication waits for a forked child to join the page


def prometheus_destination(
    name: str, endpoint: Endpoint, config: TelemetryConfig, cardinality_limits: dict[type, int]
) -> Destination:
    """A reader whose collections this process publishes to, and may serve, the page."""
    host, _, port = endpoint.url.rpartition(":")
    page = SharedPage(
        name,
        host.strip("[]"),
        int(port),
        page_directory(config, endpoint),
        str(endpoint.options.get("gauges", "per_process")),
        config.flush_interval_ms / 1000,
        # In the shared temporary directory, a folder someone else made is not ours.
        private=not (config.prometheus_dir or config.spool_dir),
    )
    reader = SharedPageReader(page, cardinality_limits)
    page.start()
    return Destination(name, metric_reader=reader, closers=[page.close])


def page_directory(config: TelemetryConfig, endpoint: Endpoint) -> Path:
    """Where the processes serving this endpoint publish: one folder per host and port."""
    if config.prometheus_dir:
        base = Path(config.prometheus_dir)
    elif config.spool_dir:
        base = Path(config.spool_dir) / "prometheus"
    else:
        base = Path(tempfile.gettempdir()) / f"telemetry_otel-{os.getuid()}" / "prometheus"
    return base / re.sub(r"[^0-9A-Za-z.-]", "_", endpoint.url.replace("[", "").replace("]", ""))


class SharedPageReader(PrometheusMetricReader):
    """The OTel Prometheus reader on a registry of its page's; a flush publishes."""

    # Flushed with the push readers (metrics.py): a flush makes this process's
    # numbers visible on the page, wherever it is served.
    publishes = True

    def __init__(self, page: SharedPage, cardinality_limits: dict[type, int]) -> None:
        super().__init__(registry=page.own_registry, cardinality_limits=cardinality_limits)
        self.page = page

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.page.publish()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.page.close()
        super().shutdown(timeout_millis=timeout_millis, **kwargs)


class SharedPage:
    """This process's part in the page of one ``prometheus://`` endpoint."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        directory: Path,
        gauges: str,
        interval_s: float,
        private: bool = False,
    ) -> None:
        self._name = name
        self._private = private
        # The directory could not be used: this process serves its own series alone.
        self._solo = False
        self._host, self._port = host, port
        self._directory = directory
        self._gauges = gauges
        self._interval_s = interval_s
        self.own_registry = CollectorRegistry(auto_describe=True)
        self._page_registry = CollectorRegistry(auto_describe=False)
        self._page_registry.register(_MergedCollector(self))
        # The reader's collector hands each collection to one caller only: the
        # publishing thread and a scrape take turns.
        self._collect_lock = ForkSafeLock()
        self._publish_lock = ForkSafeLock()
        self._stamps: Stamps = {}  # when each gauge value was set, for the "last" rule
        self._closed = False
        self._told_served_elsewhere = False
        self._init_process_state()
        follow_forks(self)

    def _init_process_state(self) -> None:
        self._token: str | None = None
        self._member_fd: int | None = None
        self._serve_fd: int | None = None
        self._server: tuple[Any, threading.Thread] | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._joined = threading.Event()  # a forked child joins in its thread

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Join the page and serve it if no other process of the service does."""
        try:
            if self._private:  # Path.mkdir gives missing parents the default mode
                base = self._directory.parent.parent
                base.mkdir(mode=0o700, exist_ok=True)
                _check_private(base)
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._join()
        except Exception as error:  # a directory that will not do: never start()'s failure
            self._go_solo(error)
        self._try_to_serve()
        self._thread = start_daemon(self._publish_every_interval, "prometheus-page")

    def close(self) -> None:
        """Publish a last time, stop serving, and leave: this process's totals stay
        counted on the page."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.publish()
        server, self._server = self._server, None
        if server is not None:
            httpd, thread = server
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
        for fd in (self._serve_fd, self._member_fd):
            if fd is not None:
                _close_lock(fd)
        self._serve_fd = self._member_fd = None

    def after_fork_in_child(self) -> None:
        """The parent's server, locks and thread stay the parent's: a forked child closes
        its copies (never unlocking them) and joins the page as a process of its own."""
        if self._server is not None:
            self._server[0].socket.close()
        self._init_process_state()  # its lock descriptors: closed by _ForkedLocks
        if not self._closed:
            # Joining takes the members lock: in a thread, never in the fork handler.
            self._thread = start_daemon(self._join_then_publish, "prometheus-page")

    # -- publishing --------------------------------------------------------------------------

    def _go_solo(self, error: Exception) -> None:
        self._solo = True
        self._joined.set()
        logger.warning(
            "%s: cannot share the page through %s (%s); this process serves its own metrics alone",
            self._name,
            self._directory,
            error,
        )

    def publish(self) -> bool:
        """Write this process's families to its file; False when that failed."""
        if self._solo:
            return True  # its page is what a scrape collects
        if not self._joined.wait(_JOIN_WAIT_S):
            return False
        token = self._token
        if token is None:
            return False
        try:
            # One at a time (the interval's, a flush's, the last): each writes the
            # same temporary file, and the newest collection must be the one left.
            with self._publish_lock:
                data = encode(os.getpid(), time.time(), self._own_families())
                _write_private(self._directory / f"{token}.json", data)
        except (OSError, ValueError) as error:
            warn_limited(
                f"prometheus:publish:{self._name}",
                "%s: could not publish this process's metrics to %s: %s",
                self._name,
                self._directory,
                error,
            )
            return False
        return True

    def _own_families(self) -> list[dict[str, Any]]:
        with self._collect_lock:
            families = families_to_json(self.own_registry.collect())
            self._stamps = stamp_gauges(families, self._stamps, time.time())
        return families

    def _join_then_publish(self) -> None:
        if self._solo:
            self._joined.set()
        else:
            try:
                self._join()
            except Exception as error:
                self._go_solo(error)
        self._publish_every_interval()

    def _publish_every_interval(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.publish()
                self._try_to_serve()
                if self._server is not None and not self._solo:
                    self._fold_exited()
            except Exception:
                warn_limited(f"prometheus:page:{self._name}", "%s: page upkeep failed", self._name)

    # -- membership --------------------------------------------------------------------------

    def _join(self) -> None:
        """Take a token and hold its lock; the first process of a page starts it afresh."""
        with _locked(self._directory / _MEMBERS_LOCK, exclusive=True):
            members = [path for path, _ in self._member_locks()]
            if not any(_alive(path) for path in members):
                self._start_afresh()
            token = f"{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(self._directory / f"{token}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _track(fd)
            self._member_fd, self._token = fd, token
        self._joined.set()

    def _start_afresh(self) -> None:
        for path in self._directory.iterdir():
            if _MEMBER.match(path.name) or path.name == _EXITED:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _member_locks(self) -> Iterator[tuple[Path, str]]:
        for path in self._directory.iterdir():
            match = _MEMBER.match(path.name)
            if match and match.group(2) == "lock":
                yield path, match.group(1)

    def _try_to_serve(self) -> None:
        """Serve the port if no other process of the service does; retried every interval."""
        if self._server is not None or self._closed:
            return
        if self._serve_fd is None and not self._solo and not self._take_serve_lock():
            return
        try:
            self._server = start_http_server(
                self._port, addr=self._host, registry=self._page_registry
            )
        except OSError as error:
            warn_limited(
                f"prometheus:bind:{self._name}",
                "%s: cannot serve %s:%s (%s); retrying every %.1f s. This process's "
                "metrics are kept in %s meanwhile",
                self._name,
                self._host,
                self._port,
                error.strerror or error,
                self._interval_s,
                self._directory,
            )
            return
        if self._told_served_elsewhere:
            logger.info("%s: this process (pid %d) serves the page now", self._name, os.getpid())

    def _take_serve_lock(self) -> bool:
        """Whether this process may serve: it holds the directory's serve lock now."""
        try:
            fd = os.open(self._directory / _SERVE_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as error:  # the directory went away under it: retried next time
            warn_limited(f"prometheus:lock:{self._name}", "%s: %s", self._name, error)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by the process that serves
            os.close(fd)
            self._tell_served_elsewhere()
            return False
        _track(fd)
        self._serve_fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return True

    def _tell_served_elsewhere(self) -> None:
        if self._told_served_elsewhere:
            return
        self._told_served_elsewhere = True
        server = "unknown"
        with contextlib.suppress(OSError, ValueError):
            server = str(int((self._directory / _SERVE_LOCK).read_text()))
        logger.info(
            "%s: %s:%s is served by another process of this service (pid %s); this "
            "process's metrics reach it through %s",
            self._name,
            self._host,
            self._port,
            server,
            self._directory,
        )

    # -- the merged page ---------------------------------------------------------------------

    def merged(self) -> list[Metric]:
        """The page: this process's families now, every other process's as published."""
        own = Publication(os.getpid(), time.time(), True, self._own_families())
        if self._solo:
            return merge([own], self._gauges)
        with _locked(self._directory / _MEMBERS_LOCK, exclusive=False):
            others, _, _ = self._read_others()
        return merge([own, *others], self._gauges)

    def _read_others(self) -> tuple[list[Publication], list[str], set[str]]:
        """Every other publication (the folded one first), the exited members' tokens,
        and the tokens folded already. Called with the members lock held."""
        exited, folded = self._read_exited()
        publications = [exited] if exited is not None else []
        dead: list[str] = []
        for path, token in self._member_locks():
            if token == self._token or token in folded:
                continue
            live = _alive(path)
            if not live:
                dead.append(token)
            publication = self._read(self._directory / f"{token}.json", live)
            if publication is not None:
                publications.append(publication)
        return publications, dead, folded

    def _read(self, path: Path, live: bool) -> Publication | None:
        try:
            return decode(path.read_bytes(), live)
        except FileNotFoundError:
            return None  # joined, not published yet
        except (OSError, ValueError) as error:
            warn_limited(f"prometheus:read:{path}", "%s: skipping %s: %s", self._name, path, error)
            return None

    def _read_exited(self) -> tuple[Publication | None, set[str]]:
        path = self._directory / _EXITED
        try:
            data = path.read_bytes()
            return decode(data, live=False), folded_tokens(data)
        except FileNotFoundError:
            return None, set()
        except (OSError, ValueError) as error:
            warn_limited(f"prometheus:read:{path}", "%s: skipping %s: %s", self._name, path, error)
            return None, set()

    def _fold_exited(self) -> None:
        """Fold the files of exited processes into one, so that a service whose workers
        are replaced for months keeps a bounded directory."""
        with _locked(self._directory / _MEMBERS_LOCK, exclusive=True):
            others, dead, folded = self._read_others()
            if len(dead) < _FOLD_AFTER:
                return
            exited = [p for p in others if not p.live]
            families = families_to_json(merge(exited, self._gauges))
            # Folded before, still on disk (a fold cut short): still not to be read.
            stale = [t for t in folded if any(self._directory.glob(f"{t}.*"))]
            data = encode(0, time.time(), families, folded=dead + stale)
            _write_private(self._directory / _EXITED, data)
            for token in dead + stale:
                for suffix in (".json", ".lock"):
                    with contextlib.suppress(FileNotFoundError):
                        (self._directory / f"{token}{suffix}").unlink()


class _MergedCollector:
    """What the served registry collects: the merged page."""

    def __init__(self, page: SharedPage) -> None:
        self._page = page

    def collect(self) -> Iterable[Metric]:
        return self._page.merged()


# -- flock, and forks -------------------------------------------------------------------------

# Every lock descriptor this process has open. A forked child closes its copies at
# once: a copy it kept would hold the parent's lock for as long as the child lives.
_lock_fds: set[int] = set()


def _track(fd: int) -> None:
    _lock_fds.add(fd)


def _close_lock(fd: int, release: bool = True) -> None:
    """Close a lock descriptor; ``release=False`` in a forked child, where the lock is
    the parent's (closing a copy never releases it; LOCK_UN would)."""
    _lock_fds.discard(fd)
    with contextlib.suppress(OSError):
        if release:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class _ForkedLocks:
    def after_fork_in_child(self) -> None:
        for fd in list(_lock_fds):
            _close_lock(fd, release=False)


_FORKED_LOCKS = _ForkedLocks()
follow_forks(_FORKED_LOCKS)


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[None]:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    _track(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        _close_lock(fd)


def _write_private(path: Path, data: bytes) -> None:
    """Replace a file at once (a reader sees the old content or the new), readable by
    its owner only."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def _check_private(base: Path) -> None:
    """The folder made in the shared temporary directory is this user's, and only theirs:
    another user could otherwise read the series, or plant files on the page."""
    status = base.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        raise PermissionError(
            f"{base} belongs to uid {status.st_uid} with mode {status.st_mode & 0o777:o}"
        )


def _alive(lock_path: Path) -> bool:
    """Whether the process that holds this member lock is still running."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
