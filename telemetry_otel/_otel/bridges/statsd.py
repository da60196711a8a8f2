"""A StatsD and DogStatsD listener: UDP packets on loopback, as the collector's telemetry.

One thread receives packets into a bounded queue (a flood drops the oldest, counted);
another parses them (statsd_parser) and records each line:

- counters add ``value / rate``; a decrement (a negative value) is owed by the
  series and paid out of its next increments, so the exported sum, monotonic as an
  OpenTelemetry counter must be, is the highest the running sum has reached (StatsD
  itself has no monotonic counters: a value that goes up and down is a gauge);
- gauges take the value, or change the last one by it (``+``/``-``);
- timers, histograms and distributions record the value ``1 / rate`` times, so a
  sampled timer weighs in the count, never by a scaled value (a fractional weight is
  carried to the series' next line);
- sets count their distinct members per collection, as a gauge;
- events and service checks become Events;
- the origin fields of DogStatsD lines (``container.id``, ``container.name``,
  ``k8s.pod.uid``) join the line's tags.

Metrics go to instruments of the ``telemetry_otel.statsd`` scope, which add up between
collections like the collector's own (see mapping/series.py).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider

from telemetry_otel._options import statsd_host_port
from telemetry_otel._otel.bridges.statsd_parser import (
    CHECK_SEVERITIES,
    CHECK_STATUSES,
    CheckLine,
    EventLine,
    MetricLine,
    parse_packet,
)
from telemetry_otel._otel.delivery.accounting import BridgeTally
from telemetry_otel._otel.mapping.metrics import InstrumentCache
from telemetry_otel._otel.mapping.series import RecorderClosed
from telemetry_otel._otel.runtime.forks import ForkSafeLock, follow_forks
from telemetry_otel._otel.runtime.log import logger, warn_limited
from telemetry_otel._otel.runtime.threads import join_until, start_daemon
from telemetry_otel._shaping import Shaper
from telemetry_otel._version import __version__
from telemetry_otel.models import Event, EventSeverity, Metric, MetricType

SCOPE = "telemetry_otel.statsd"
# Packets waiting to be parsed; past it the oldest are dropped (counted).
MAX_QUEUED_PACKETS = 10_000
# Distinct members a set remembers per collection, and gauges whose last value a
# relative change can start from: bounds against a flood of new names.
MAX_SET_MEMBERS = 100_000
# Distinct (name, tags) sets per collection: each costs a Python set, so a flood of
# tag sets is bounded here, before it reaches the series cap of the gauge it becomes.
MAX_SET_SERIES = 10_000
MAX_REMEMBERED_GAUGES = 100_000
# The part of stop()'s deadline the listener may take to receive and parse its last
# packets; the collection and export of what it recorded take the rest.
STOP_SHARE = 0.25
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
# What became of a line: telemetry, not StatsD (or refused by the models), or over a bound.
BRIDGED, MALFORMED, DROPPED = "bridged", "malformed", "dropped"


def _outcome(recorded: bool) -> str:
    return BRIDGED if recorded else MALFORMED


class StatsdListener:
    """Listens on ``statsd://host:port`` from start() to stop()."""

    def __init__(
        self,
        endpoint: str,
        provider: MeterProvider,
        shaper: Shaper,
        max_series: int,
        counts: BridgeTally,
        collect_event: Callable[[Event], bool],
        count_limited: Callable[[], object] = lambda: None,
    ) -> None:
        """``count_limited``: the metric signal's ``limited`` count, for a line whose tags
        the size limits cut or that the series cap folded into the overflow series."""
        self.host, port = statsd_host_port(endpoint)
        self.port = port or 0
        self._instruments = InstrumentCache(
            provider, provider.get_meter(SCOPE, __version__), shaper, max_series
        )
        self._max_names = max_series
        self._names: set[str] = set()
        self._bridged = counts.bridged
        self._malformed, self._dropped = counts.lost["malformed"], counts.lost["dropped"]
        self._collect_event = collect_event
        self._count_limited = count_limited
        self._packets: deque[bytes] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._lock = ForkSafeLock()  # the gauges, sets and weights below
        self._gauges: dict[SeriesKey, float] = {}
        self._sets: dict[SeriesKey, set[str]] = {}
        self._set_members = 0  # in all of them
        self._carried: dict[SeriesKey, float] = {}
        self._owed: dict[SeriesKey, float] = {}  # decrements not yet paid by increments
        self._socket: socket.socket | None = None
        self._threads: list[threading.Thread | None] = []
        self._stopping = False
        self._received_all = False
        follow_forks(self)

    def combine_between_collections(self) -> None:
        self._instruments.combine_between_collections()

    # -- lifetime ----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and start listening; a port that cannot be had is logged, not raised: the
        application goes on, without the listener."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as error:
            sock.close()
            logger.error(
                "telemetry_otel: the StatsD listener cannot listen on %s:%d (%s); StatsD "
                "packets sent there are not collected",
                self.host,
                self.port,
                error.strerror or error,
            )
            return
        sock.settimeout(0.2)  # how soon the receiving thread sees stop()
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._threads = [
            start_daemon(self._receive, "statsd-receive"),
            start_daemon(self._parse, "statsd-parse"),
        ]

    def stop(self, deadline: float) -> None:
        """Stop receiving, parse what was received (the socket's last packets too), and
        close the socket: within a share of stop()'s deadline, so that a flood still
        leaves the rest to collect and export what was recorded. What is still queued
        then is counted dropped."""
        own = time.monotonic() + max(0.0, deadline - time.monotonic()) * STOP_SHARE
        self._stopping = True
        receiving, parsing = self._threads or (None, None)
        join_until(receiving, own)
        with self._ready:
            self._received_all = True
            self._ready.notify_all()
        if not join_until(parsing, own):
            with self._ready:
                left, self._packets = len(self._packets), deque()
            for _ in range(left):
                self._dropped.increment()
            if left:
                warn_limited("statsd:stop", "stop(): %d StatsD packets not parsed in time", left)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def after_fork_in_child(self) -> None:
        """The parent listens; a forked child has none of its threads, nor its queue."""
        self._ready = threading.Condition(threading.Lock())
        self._packets = deque()
        self._threads = []
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None

    # -- the threads -------------------------------------------------------------------------

    def _receive(self) -> None:
        sock = self._socket
        if sock is None:
            return
        while not self._stopping:
            try:
                self._queue(sock.recv(65_535))
            except TimeoutError:
                continue
            except OSError:
                return
        # Stopping: what the socket holds was sent before stop(); take it too, and no
        # more than its buffer holds: under a flood it would never be empty.
        sock.setblocking(False)
        left = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        with contextlib.suppress(OSError):  # BlockingIOError once it is empty
            while left > 0:
                packet = sock.recv(65_535)
                self._queue(packet)
                left -= len(packet)

    def _queue(self, packet: bytes) -> None:
        with self._ready:
            if len(self._packets) >= MAX_QUEUED_PACKETS:
                self._packets.popleft()
                self._dropped.increment()
                warn_limited("statsd:full", "the StatsD packet queue is full; dropping")
            self._packets.append(packet)
            self._ready.notify()

    def _parse(self) -> None:
        while True:
            with self._ready:
                while not self._packets and not self._received_all:
                    self._ready.wait()
                if not self._packets:
                    return  # stopped, and everything received was parsed
                packet = self._packets.popleft()
            self.take(packet)

    def take(self, packet: bytes) -> None:
        """Record every line of one packet; count those that are not StatsD."""
        lines, malformed = parse_packet(packet)
        for _ in range(malformed):
            self._malformed.increment()
        for line in lines:
            try:
                outcome = self._record(line)
            except Exception:  # a line the models refuse (a name, a tag): never the thread
                outcome = MALFORMED
            {BRIDGED: self._bridged, MALFORMED: self._malformed, DROPPED: self._dropped}[
                outcome
            ].increment()

    # -- recording ---------------------------------------------------------------------------

    def _record(self, line: MetricLine | EventLine | CheckLine) -> str:
        if isinstance(line, EventLine):
            return _outcome(self._event(line))
        if isinstance(line, CheckLine):
            return _outcome(self._check(line))
        if line.name not in self._names:
            if len(self._names) >= self._max_names:
                warn_limited("statsd:names", "more StatsD metric names than max_metric_series")
                return DROPPED
            self._names.add(line.name)
        if line.origin:
            line = replace(line, tags={**line.tags, **line.origin})
        key: SeriesKey = (line.name, tuple(sorted(line.tags.items())))
        if line.kind == "c":
            return _outcome(self._counter(line, key))
        if line.kind == "g":
            return _outcome(self._gauge(line, key))
        if line.kind == "s":
            return self._set(line, key)
        return _outcome(self._timer(line, key))

    def _set(self, line: MetricLine, key: SeriesKey) -> str:
        """Remember the line's members till the next collection; a line with members
        past the bounds (all sets' members, or set series) is counted dropped."""
        if self._remember_members(line, key):
            return BRIDGED
        warn_limited(
            "statsd:sets",
            "more StatsD set members than %d, or set tag sets than %d, since the last "
            "collection; dropping",
            MAX_SET_MEMBERS,
            MAX_SET_SERIES,
        )
        return DROPPED

    def _remember_members(self, line: MetricLine, key: SeriesKey) -> bool:
        with self._lock:
            members = self._sets.get(key)
            if members is None:
                if len(self._sets) >= MAX_SET_SERIES:
                    return False
                members = self._sets[key] = set()
            before = len(members)
            room = max(0, MAX_SET_MEMBERS - self._set_members)
            members.update(line.members[:room])
            self._set_members += len(members) - before
            return room >= len(line.members) or members.issuperset(line.members)

    def _metric(self, line: MetricLine, kind: MetricType, value: float) -> bool:
        metric = Metric(line.name, value, kind, dict(line.tags))
        recorder = self._instruments.recorder(metric)
        if recorder is None:
            return False  # the name is already another type
        try:
            limited = recorder.record(metric.value, metric.tags)
        except RecorderClosed:  # a packet taken while stop() collects for the last time
            return False
        if limited:
            self._count_limited()
        return True

    def _counter(self, line: MetricLine, key: SeriesKey) -> bool:
        """Add the line's increments, less what earlier decrements still owe."""
        change = sum(line.values) / line.rate
        with self._lock:
            balance = self._owed.pop(key, 0.0) + change
            if balance < 0 and (len(self._owed) < MAX_REMEMBERED_GAUGES):
                self._owed[key] = balance
        return self._metric(line, MetricType.COUNTER, max(0.0, balance))

    def _gauge(self, line: MetricLine, key: SeriesKey) -> bool:
        with self._lock:
            value = self._gauges.get(key, 0.0) if line.relative else 0.0
            for change in line.values:
                value = value + change if line.relative else change
            if len(self._gauges) < MAX_REMEMBERED_GAUGES or key in self._gauges:
                self._gauges[key] = value
        return self._metric(line, MetricType.GAUGE, value)

    def _timer(self, line: MetricLine, key: SeriesKey) -> bool:
        metric = Metric(line.name, line.values[0], MetricType.HISTOGRAM, dict(line.tags))
        recorder = self._instruments.recorder(metric)
        if recorder is None or any(v < 0 for v in line.values):
            return False  # another type already, or a value no OTel histogram takes
        try:
            limited = [
                recorder.record_many(value, metric.tags, self._weight(key, line.rate))
                for value in line.values
            ]
        except RecorderClosed:
            return False
        if any(limited):
            self._count_limited()
        return True

    def _weight(self, key: SeriesKey, rate: float) -> int:
        """How many measurements one line at ``rate`` stands for: 1/rate, its fraction
        carried to the series' next line so that the counts add up."""
        if rate == 1.0:
            return 1
        with self._lock:
            owed = self._carried.pop(key, 0.0) + 1.0 / rate
            whole = int(owed + 1e-9)
            if owed - whole > 1e-9 and len(self._carried) < MAX_REMEMBERED_GAUGES:
                self._carried[key] = owed - whole
        return whole

    def before_collection(self) -> None:
        """Each set's distinct members since the last collection, as a gauge; then what
        the instruments added up goes to every reader."""
        with self._lock:
            sets, self._sets, self._set_members = self._sets, {}, 0
        for (name, tags), members in sets.items():
            line = MetricLine(name, "s", tags=dict(tags))
            self._metric(line, MetricType.GAUGE, len(members))
        self._instruments.drain()

    def _event(self, line: EventLine) -> bool:
        tags = {**line.tags, **{f"dogstatsd.{_FIELDS[k]}": v for k, v in line.fields.items()}}
        tags.update(line.origin)
        return self._emit(line.title, line.text, line.severity, tags, line.timestamp)

    def _check(self, line: CheckLine) -> bool:
        tags = {**line.tags, **{f"dogstatsd.{_FIELDS[k]}": v for k, v in line.fields.items()}}
        tags.update(line.origin)
        tags["dogstatsd.service_check.status"] = CHECK_STATUSES[line.status]
        severity = CHECK_SEVERITIES[line.status]
        return self._emit(line.name, line.message, severity, tags, line.timestamp)

    def _emit(
        self, name: str, message: str, severity: str, tags: dict[str, Any], at: float | None
    ) -> bool:
        event = Event(
            name,
            message,
            EventSeverity(severity),
            tags=tags,
            timestamp=time.time() if at is None else float(at),
        )
        self._collect_event(event)
        return True


# DogStatsD's one-letter fields, as the tags they become (``dogstatsd.<name>``).
_FIELDS = {
    "h": "hostname",
    "k": "aggregation_key",
    "p": "priority",
    "s": "source_type",
    "t": "alert_type",
}
