"""The durable spool: nothing lost across an outage, a restart of the process, or a full disk."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from telemetry_otel import Event, Trace
from tests.conftest import assert_identity
from tests.otlp_receiver import BlackHole, OtlpReceiver, attributes_of
from tests.prometheus_server import free_port


def _span_ids(receiver):
    return [attributes_of(span.attributes)["legacy.span_id"] for _, span in receiver.spans()]


def _spooled_rows(spool_dir):
    with sqlite3.connect(spool_dir / "spool.sqlite3") as db:
        return db.execute("SELECT signal, items, size FROM batches ORDER BY id").fetchall()


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_an_outage_loses_nothing_and_the_spool_replays_in_order(
    tmp_path, make_collector, transport
):
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{port}?timeout_ms=300"],
        spool_dir=str(tmp_path),
        flush_interval_ms=200,
    )
    for batch in range(3):
        for i in range(2):
            collector.collect_trace(Trace("t", f"s{batch}{i}", "op", 1.0))
        collector.collect_event(Event("e", f"m{batch}"))
        assert collector.flush(5000) is False  # nobody listens: spooled, not delivered
    stats = collector.stats()
    assert (stats["trace"]["pending"], stats["trace"]["export_failures"]) == (6, 0)
    assert (stats["trace"]["spooled"], stats["event"]["spooled"]) == (6, 3)
    assert (stats["event"]["pending"], stats["event"]["dropped"]) == (3, 0)
    assert_identity(stats, "trace")
    assert {signal for signal, _, _ in _spooled_rows(tmp_path)} == {"traces", "logs"}

    ports = {"grpc_port": port} if transport == "grpc" else {"http_port": port}
    receiver = OtlpReceiver(**ports).start()
    try:
        collector.collect_trace(Trace("t", "after", "op", 1.0))
        assert receiver.wait_for(lambda: len(receiver.spans()) == 7, timeout_s=20)
        assert _span_ids(receiver) == ["s00", "s01", "s10", "s11", "s20", "s21", "after"]
        assert receiver.wait_for(lambda: len(receiver.log_records()) == 3, timeout_s=20)
        assert collector.flush(5000) is True
        stats = collector.stats()
        assert (stats["trace"]["exported"], stats["trace"]["pending"]) == (7, 0)
        assert stats["trace"]["spooled"] == 0
        assert (stats["event"]["exported"], stats["event"]["pending"]) == (3, 0)
        assert _spooled_rows(tmp_path) == []
    finally:
        receiver.stop()


def test_stop_spools_what_it_could_not_send_and_the_next_process_sends_it(tmp_path):
    hole = BlackHole()
    endpoint = f"grpc://127.0.0.1:{hole.port}?timeout_ms=60000"
    script = f"""
        import time
        from telemetry_otel import *
        collector = TelemetryCollector(TelemetryConfig(
            export_endpoints=["{endpoint}"], spool_dir="{tmp_path}", flush_interval_ms=60000))
        collector.start()
        for i in range(5):
            collector.collect_trace(Trace("t", f"s{{i}}", "op", 1.0))
            collector.collect_event(Event("e", f"m{{i}}"))
        started = time.monotonic()
        collector.stop(timeout_ms=1000)
        stats = collector.stats()
        print(round(time.monotonic() - started), stats["trace"]["dropped"],
              stats["trace"]["pending"], stats["event"]["pending"])
    """
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        hole.stop()
    assert result.returncode == 0, result.stderr
    seconds, dropped, traces_pending, events_pending = map(int, result.stdout.split())
    assert (seconds <= 2, dropped, traces_pending, events_pending) == (True, 0, 5, 5)
    assert sum(items for _, items, _ in _spooled_rows(tmp_path)) == 10

    # The next process, same spool directory, endpoint back (same string): it sends them.
    from telemetry_otel import TelemetryCollector, TelemetryConfig

    receiver = OtlpReceiver(grpc_port=hole.port).start()
    collector = TelemetryCollector(
        TelemetryConfig(export_endpoints=[endpoint], spool_dir=str(tmp_path), flush_interval_ms=100)
    )
    try:
        collector.start()
        assert receiver.wait_for(lambda: len(receiver.spans()) == 5, timeout_s=20)
        assert receiver.wait_for(lambda: len(receiver.log_records()) == 5, timeout_s=20)
        assert _span_ids(receiver) == ["s0", "s1", "s2", "s3", "s4"]

        def recovered() -> tuple[int, int]:
            stats = collector.stats()
            return stats["trace"]["recovered"], stats["event"]["recovered"]

        # Counted once the export call returns, which is just after the receiver has them.
        assert receiver.wait_for(lambda: recovered() == (5, 5), timeout_s=10), recovered()
        stats = collector.stats()
        assert stats["trace"]["collected"] == 0
    finally:
        collector.stop()
        receiver.stop()


def test_the_spool_stays_within_its_bound_dropping_oldest_counted(tmp_path, make_collector):
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"http://127.0.0.1:{port}?timeout_ms=200"],
        spool_dir=str(tmp_path),
        spool_max_bytes=1500,
        flush_interval_ms=60_000,
    )
    for batch in range(12):
        collector.collect_trace(Trace("t", f"s{batch}", "op" + "x" * 100, 1.0))
        collector.flush(3000)
        assert sum(size for _, _, size in _spooled_rows(tmp_path)) <= 1500
    stats = collector.stats()["trace"]
    assert stats["dropped_spool_full"] > 0
    assert stats["pending"] == sum(items for _, items, _ in _spooled_rows(tmp_path))
    assert_identity(collector.stats(), "trace")

    receiver = OtlpReceiver(http_port=port).start()
    try:
        collector.collect_trace(Trace("t", "last", "op", 1.0))
        collector.flush(10_000)
        assert receiver.wait_for(lambda: "last" in _span_ids(receiver), timeout_s=20)
        survivors = _span_ids(receiver)
        assert survivors[-1] == "last"
        # The oldest went first; the newest spooled ones arrived, in order.
        assert survivors[:-1] == [f"s{i}" for i in range(12 - len(survivors) + 1, 12)]
        assert len(survivors) - 1 == 12 - stats["dropped_spool_full"]
    finally:
        receiver.stop()


def test_the_spool_counts_as_pending_until_sent(tmp_path, make_collector):
    hole = BlackHole()
    try:
        collector = make_collector(
            export_endpoints=[f"grpc://127.0.0.1:{hole.port}?timeout_ms=60000"],
            spool_dir=str(tmp_path),
            flush_interval_ms=60_000,
        )
        for i in range(4):
            collector.collect_event(Event("e", f"m{i}"))
        started = time.monotonic()
        collector.stop(timeout_ms=800)
        assert time.monotonic() - started < 3
        stats = collector.stats()["event"]
        assert (stats["pending"], stats["dropped"], stats["exported"]) == (4, 0, 0)
    finally:
        hole.stop()


SHARING_PROCESS = """
import json, sys, time
from telemetry_otel import *
who, port, spool = sys.argv[1:4]
collector = TelemetryCollector(TelemetryConfig(
    export_endpoints=[f"grpc://127.0.0.1:{port}?timeout_ms=300"], spool_dir=spool,
    flush_interval_ms=200))
collector.start()
for batch in range(5):
    for i in range(20):
        collector.collect_event(Event("e", f"{who}-{batch}-{i}"))
    collector.flush(3000)
# On a loaded machine a flush's deadline may pass while the sender still waits out its
# retries: wait (bounded) until all 100 are in the spool, as the outage would have it.
deadline = time.monotonic() + 20
while collector.stats()["event"]["spooled"] < 100 and time.monotonic() < deadline:
    collector.flush(300)
print("spooled", collector.stats()["event"]["spooled"], flush=True)
sys.stdin.readline()  # the endpoint is up
flushed, deadline = False, time.monotonic() + 20  # bounded
while not flushed and time.monotonic() < deadline:
    flushed = collector.flush(300)
    time.sleep(0.05)
stats = collector.stats()["event"]
keys = ("exported", "recovered", "spooled", "pending", "export_failures")
print(json.dumps({"flushed": flushed, **{key: stats[key] for key in keys}}), flush=True)
collector.stop()
"""


def test_two_processes_sharing_a_spool_send_each_row_once_and_each_settles_its_own(
    tmp_path, busy_cores
):
    for run in range(3):
        _share_a_spool(tmp_path / f"run{run}")


def _share_a_spool(spool_dir):
    spool_dir.mkdir()
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SHARING_PROCESS, who, str(port), str(spool_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    receiver = OtlpReceiver(grpc_port=port)
    try:
        assert [p.stdout.readline().split() for p in processes] == [["spooled", "100"]] * 2
        receiver.start()
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [p.communicate(timeout=60) for p in processes]
        results = [json.loads(out) for out, _ in outputs]
    finally:
        receiver.stop()
        for process in processes:
            process.kill()
    bodies = [r.body.string_value for _, r in receiver.log_records()]
    errors = [err for _, err in outputs]
    assert len(bodies) == 200 and len(set(bodies)) == 200, (results, errors)  # each row once
    for result in results:
        # Each process's own 100 were sent, by itself or by the other, and settled.
        assert result["flushed"] is True, results
        assert (result["exported"], result["spooled"], result["pending"]) == (100, 0, 0), results
        assert result["export_failures"] == 0
    sent_for_the_other = sum(result["recovered"] for result in results)
    assert 0 <= sent_for_the_other <= 200


def test_a_spool_written_before_leases_existed_is_opened_and_replayed(tmp_path):
    from telemetry_otel._otel.delivery.spool import Spool

    with sqlite3.connect(tmp_path / "spool.sqlite3") as db:
        db.execute(
            "CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT"
            " NULL, signal TEXT NOT NULL, items INTEGER NOT NULL, size INTEGER NOT NULL,"
            " owner TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        db.execute(
            "INSERT INTO batches (destination, signal, items, size, owner, payload)"
            " VALUES ('d', 'logs', 3, 4, 'an earlier process', x'00010203')"
        )
    spool = Spool(str(tmp_path), 1 << 20)
    try:
        batch = spool.claim_oldest("d", "logs", lease_s=10)
        assert batch is not None
        assert (batch.items, batch.payload, batch.ours) == (3, bytes([0, 1, 2, 3]), False)
    finally:
        spool.close()


# -- a spool that cannot be opened never stops the service ---------------------------------------


def _outage_collector(make_collector, spool_dir):
    return make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{free_port()}?timeout_ms=200"],
        spool_dir=str(spool_dir),
        flush_interval_ms=60_000,
    )


def _truncated_spool(directory) -> None:
    """A real spool with rows, cut in half as a crash might leave it."""
    from telemetry_otel._otel.delivery.spool import Spool

    spool = Spool(str(directory), 1 << 24)
    spool.put_many("d", "logs", [(1, bytes(range(256)) * 64) for _ in range(50)])
    spool.close()
    path = directory / "spool.sqlite3"
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["random_bytes", "truncated"])
def test_a_corrupt_spool_file_is_moved_aside_and_a_fresh_one_started(
    tmp_path, make_collector, caplog, damage
):
    if damage == "random_bytes":
        (tmp_path / "spool.sqlite3").write_bytes(bytes(range(256)) * 40)
    else:
        _truncated_spool(tmp_path)
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = _outage_collector(make_collector, tmp_path)
    [line] = [r.getMessage() for r in caplog.records if "spool" in r.getMessage()]
    assert line.startswith(f"telemetry spool {tmp_path} is unreadable (")
    assert "moved aside to" in line and "starting a fresh one" in line
    assert len(list(tmp_path.glob("spool.sqlite3.corrupt-*"))) == 1
    collector.collect_event(Event("e", "during the outage"))
    assert collector.flush(5000) is False
    stats = collector.stats()["event"]
    assert (stats["spooled"], stats["spool_unavailable"]) == (1, 0)


def test_a_spool_directory_that_cannot_be_made_means_running_without_a_spool(
    tmp_path, make_collector, caplog
):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("a file where the directory should be")
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = _outage_collector(make_collector, not_a_directory)
    [line] = [r.getMessage() for r in caplog.records if "spool" in r.getMessage()]
    assert line.startswith(f"telemetry spool {not_a_directory} cannot be used (")
    assert "running without a spool" in line
    collector.collect_event(Event("e", "during the outage"))
    assert collector.flush(5000) is False
    stats = collector.stats()["event"]
    assert (stats["spool_unavailable"], stats["export_failures_unavailable"]) == (1, 1)


def test_a_failed_start_leaves_no_thread_or_file_descriptor_behind(tmp_path, monkeypatch):
    from telemetry_otel import TelemetryCollector, TelemetryConfig
    from telemetry_otel._otel.signals import events

    def fail(*args, **kwargs):
        raise RuntimeError("the logs provider could not be built")

    # After the event pipeline has built its queues (one spooling): they must not leak.
    monkeypatch.setattr(events, "LoggerProvider", fail)
    config = TelemetryConfig(
        export_endpoints=[f"grpc://127.0.0.1:{free_port()}", f"file://{tmp_path / 'files'}"],
        spool_dir=str(tmp_path / "spool"),
    )

    def failed_starts(count: int) -> tuple[int, int]:
        for _ in range(count):
            with pytest.raises(RuntimeError, match="could not be built"):
                TelemetryCollector(config).start()
        time.sleep(0.5)  # readers' threads end after their last (empty) collection
        return threading.active_count(), len(os.listdir("/proc/self/fd"))

    threads, fds = failed_starts(1)  # also warms up: imports, the SDK probe
    after_threads, after_fds = failed_starts(20)
    # At most as many: threads and files of earlier tests may still be ending.
    assert after_threads <= threads and after_fds <= fds, (threads, fds, after_threads, after_fds)


_OPEN_AT_ONCE = """
import os, sys, time
from telemetry_otel._otel.delivery.spool import open_spool
directory, go = sys.argv[1:3]
for _ in range(2000):  # bounded: 20 s at most
    if os.path.exists(go):
        break
    time.sleep(0.01)
print("spool" if open_spool(directory, 1 << 20) is not None else "none", flush=True)
"""


def test_workers_that_open_one_fresh_spool_at_the_same_moment_all_get_it(tmp_path, busy_cores):
    # SQLite answers "database is locked" at once, busy timeout or not, to a connection
    # that opens a new file while another switches it to WAL: a pool's workers starting
    # together ran without a spool, one in a few hundred.
    for round_number in range(8):
        directory, go = tmp_path / f"spool{round_number}", tmp_path / f"go{round_number}"
        openers = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT_ONCE, str(directory), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(8)
        ]
        time.sleep(0.5)  # every opener waiting for the signal
        go.write_text("")
        results = [opener.communicate(timeout=60) for opener in openers]
        assert [out for out, _ in results] == ["spool\n"] * 8, [err for _, err in results]


_READ_ONLY_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
from telemetry_otel import Event, TelemetryCollector, TelemetryConfig
collector = TelemetryCollector(TelemetryConfig(export_endpoints=[sys.argv[1]], spool_dir=sys.argv[2]))
collector.start()
collector.collect_event(Event("deploy.done", "after a remount"))
print(collector.flush(5000), collector.stats()["event"]["spool_unavailable"])
collector.stop()
"""


def test_a_corrupt_spool_on_a_read_only_filesystem_means_running_without_a_spool(
    tmp_path, otlp_receiver
):
    # A disk remounted read-only after I/O errors, holding a damaged spool: a real
    # read-only tmpfs, mounted in a mount namespace of this test's own.
    mount = tmp_path / "disk"
    mount.mkdir()
    script = tmp_path / "start.py"
    script.write_text(_READ_ONLY_SCRIPT)
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"
    shell = (
        f"mount -t tmpfs none {mount} && head -c 10240 /dev/urandom > {mount}/spool.sqlite3"
        f" && mount -o remount,ro {mount} && exec {sys.executable} {script} {endpoint} {mount}"
    )
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "1"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("telemetry_otel ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"telemetry_otel telemetry spool {mount} cannot be used (")
    assert "cannot be moved aside: Read-only file system" in lines[0]
    assert "Traceback" not in result.stderr
    assert [r.event_name for _, r in otlp_receiver.log_records()] == ["deploy.done"]


_HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.rollback()
"""


def test_a_spool_another_process_holds_locked_never_holds_stop_past_its_deadline(
    tmp_path, make_collector, caplog, busy_cores
):
    collector = _outage_collector(make_collector, tmp_path)
    for i in range(5):
        collector.collect_event(Event("before", str(i)))
    assert collector.flush(5000) is False  # the outage: spooled
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path / "spool.sqlite3")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        for i in range(5):
            collector.collect_event(Event("while locked", str(i)))
        started = time.monotonic()
        collector.stop(timeout_ms=1000)
        took = time.monotonic() - started
    finally:
        holder.communicate("\n", timeout=10)
    # SQLite's busy timeout is 5 s, and each spool write waited it out.
    assert took < 3.0, took
    stats = collector.stats()["event"]
    assert (stats["collected"], stats["spooled"]) == (10, 5)
    assert (stats["dropped_shutdown"], stats["pending"]) == (5, 5)  # pending: the spooled five
    assert "telemetry spool" in caplog.text and "database is locked" in caplog.text
