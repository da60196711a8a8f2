"""Every OTLP transport against endpoints that misbehave: what reaches whom, and what is counted.

For each failure docs/reliability.md says where the data goes: delivered,
spooled, or counted under a reason key; these tests hold it to that, at every destination.
"""

from __future__ import annotations

import json
import logging
import time

import grpc
import pytest

from telemetry_otel import Event, Metric, MetricType, Trace
from tests.conftest import assert_identity
from tests.misbehaving import Flooder, Resetter, Trickler, refusing_port
from tests.otlp_receiver import BlackHole, GrpcFailure, OtlpReceiver, Partial, attributes_of
from tests.prometheus_server import free_port

TRANSPORTS = ["grpc", "http"]
FOUR_MIB = 4 * 1024 * 1024


def _port(receiver: OtlpReceiver, transport: str) -> int:
    return receiver.grpc_port if transport == "grpc" else receiver.http_port


def _collect(collector, count: int, prefix: str = "") -> None:
    for i in range(count):
        assert collector.collect_trace(Trace("t", f"{prefix}s{i}", "op", 1.0))
        assert collector.collect_event(Event("e", f"{prefix}m{i}"))


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _file_counts(directory) -> tuple[int, int]:
    spans = sum(
        len(scope["spans"])
        for line in _lines(directory / "traces.jsonl")
        for resource in line["resourceSpans"]
        for scope in resource["scopeSpans"]
    )
    records = sum(
        len(scope["logRecords"])
        for line in _lines(directory / "logs.jsonl")
        for resource in line["resourceLogs"]
        for scope in resource["scopeLogs"]
    )
    return spans, records


@pytest.fixture(params=["black_hole", "refused", "reset"])
def dead_port(request):
    """An endpoint that is down, three ways."""
    if request.param == "refused":
        yield refusing_port()
        return
    server = BlackHole() if request.param == "black_hole" else Resetter()
    yield server.port
    server.stop()


# -- outages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("spool", [False, True], ids=["no_spool", "spool"])
def test_an_outage_is_spooled_or_counted_unavailable_and_costs_the_file_nothing(
    dead_port, transport, spool, tmp_path, make_collector
):
    files, spool_dir = tmp_path / "files", tmp_path / "spool"
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{dead_port}?timeout_ms=500", f"file://{files}"],
        spool_dir=str(spool_dir) if spool else None,
        flush_interval_ms=60_000,
    )
    _collect(collector, 10)
    assert collector.flush(5000) is False
    assert _file_counts(files) == (10, 10)
    stats = collector.stats()
    for signal in ("trace", "event"):
        counts = stats[signal]
        assert counts["exported"] == 10, counts  # the file's
        if spool:
            assert (counts["spooled"], counts["export_failures"]) == (10, 0), counts
        else:
            assert (counts["export_failures_unavailable"], counts["spooled"]) == (10, 0), counts
        assert_identity(stats, signal, destinations=2)


def test_a_response_trickled_a_byte_at_a_time_is_cut_at_the_endpoint_timeout(make_collector):
    trickler = Trickler(interval_s=0.1)
    try:
        collector = make_collector(
            export_endpoints=[f"http://127.0.0.1:{trickler.port}?timeout_ms=1000"],
            flush_interval_ms=60_000,
        )
        collector.collect_event(Event("e", "m"))
        started = time.monotonic()
        assert collector.flush(10_000) is False
        assert time.monotonic() - started < 4  # not the minutes the trickle would take
        counts = collector.stats()["event"]
        assert (counts["export_failures_unavailable"], counts["exported"]) == (1, 0)
    finally:
        trickler.stop()


# -- permanent refusals never block the spool --------------------------------------------------


POISON = {
    "http": (400, {}, b"unknown field 17 in span"),
    "grpc": GrpcFailure(grpc.StatusCode.INVALID_ARGUMENT, "unknown field 17 in span"),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_request_refused_for_good_is_counted_once_never_spooled_and_blocks_nothing(
    otlp_receiver, transport, tmp_path, make_collector, caplog
):
    otlp_receiver.fail_next(transport, "logs", POISON[transport])
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{_port(otlp_receiver, transport)}"],
        spool_dir=str(tmp_path),
        flush_interval_ms=60_000,
    )
    collector.collect_event(Event("poison", "refused"))
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        assert collector.flush(5000) is False
    for i in range(100):
        collector.collect_event(Event("later", f"m{i}"))
    assert collector.flush(5000) is True
    assert len(otlp_receiver.log_records()) == 100
    counts = collector.stats()["event"]
    assert (counts["exported"], counts["export_failures_refused"], counts["spooled"]) == (100, 1, 0)
    assert len(otlp_receiver.attempt_times("logs")) == 2  # the poison once, then the 100
    [line] = [r.getMessage() for r in caplog.records if "refused for good" in r.getMessage()]
    assert f"127.0.0.1:{_port(otlp_receiver, transport)}" in line
    assert "unknown field 17 in span" in line


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_spooled_batch_refused_for_good_on_replay_is_removed_and_counted(
    transport, tmp_path, make_collector
):
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{port}?timeout_ms=300"],
        spool_dir=str(tmp_path),
        flush_interval_ms=60_000,
    )
    collector.collect_event(Event("spooled", "during the outage"))
    assert collector.flush(5000) is False
    assert collector.stats()["event"]["spooled"] == 1
    receiver = OtlpReceiver(**{f"{transport}_port": port})
    receiver.fail_next(transport, "logs", POISON[transport])  # before anything can arrive
    receiver.start()
    try:
        collector.collect_event(Event("later", "after the outage"))
        assert collector.flush(5000) is False  # the spooled one was refused: a loss
        assert [r.body.string_value for _, r in receiver.log_records()] == ["after the outage"]
        counts = collector.stats()["event"]
        assert (counts["spooled"], counts["export_failures_refused"], counts["exported"]) == (
            0,
            1,
            1,
        )
        assert collector.flush(5000) is True
    finally:
        receiver.stop()


def test_a_failing_replay_backs_off_instead_of_retrying_every_pass(tmp_path, make_collector):
    resetter = Resetter()
    try:
        collector = make_collector(
            export_endpoints=[f"http://127.0.0.1:{resetter.port}?timeout_ms=300"],
            spool_dir=str(tmp_path),
            flush_interval_ms=100,
        )
        collector.collect_event(Event("e", "m"))
        time.sleep(3.5)
        # Live export, then replays after about 1 s and 3 s (each may reconnect once):
        # every 100 ms, it would be 35 or more.
        assert resetter.paths.count("/v1/logs") <= 8
        assert collector.stats()["event"]["spooled"] == 1
    finally:
        resetter.stop()


# -- honest success ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("rejected", [2, 5])
def test_a_partial_success_counts_the_rejected_items_as_failures_with_the_servers_message(
    otlp_receiver, transport, rejected, make_collector, caplog
):
    otlp_receiver.fail_next(transport, "traces", Partial(rejected, "spans too old"))
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{_port(otlp_receiver, transport)}"],
        flush_interval_ms=60_000,
    )
    for i in range(5):
        collector.collect_trace(Trace("t", f"s{i}", "op", 1.0))
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        assert collector.flush(5000) is False
    counts = collector.stats()["trace"]
    assert (counts["exported"], counts["export_failures_partial"]) == (5 - rejected, rejected)
    [line] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert "partial success: spans too old" in line
    assert line.endswith(f": {rejected} since the last report")


def test_an_http_redirect_is_a_failure_not_a_success(otlp_receiver, make_collector, caplog):
    otlp_receiver.fail_next("http", "logs", (302, {"Location": "http://login.example/"}, b""))
    collector = make_collector(
        export_endpoints=[f"http://127.0.0.1:{otlp_receiver.http_port}"], flush_interval_ms=60_000
    )
    collector.collect_event(Event("e", "m"))
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        assert collector.flush(5000) is False
    counts = collector.stats()["event"]
    assert (counts["exported"], counts["export_failures_refused"]) == (0, 1)
    assert any("redirected to http://login.example/" in r.getMessage() for r in caplog.records)


# -- requests fit the receiver -----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_batch_over_the_4_mib_receive_limit_is_cut_to_fit(transport, make_collector):
    receiver = OtlpReceiver(max_http_body=FOUR_MIB).start()  # gRPC's own limit is 4 MiB
    try:
        collector = make_collector(
            export_endpoints=[f"{transport}://127.0.0.1:{_port(receiver, transport)}"],
            flush_interval_ms=60_000,
        )
        for i in range(512):
            collector.collect_event(Event("big", f"{i:04d}" + "x" * 8188))
        assert collector.flush(10_000) is True
        bodies = sorted(r.body.string_value[:4] for _, r in receiver.log_records())
        assert bodies == [f"{i:04d}" for i in range(512)]
        assert len(receiver.requests("logs")) >= 2
        counts = collector.stats()["event"]
        assert (counts["exported"], counts["dropped"], counts["export_failures"]) == (512, 0, 0)
    finally:
        receiver.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_request_refused_for_its_size_is_split_and_sent_again(transport, make_collector):
    receiver = OtlpReceiver(max_http_body=FOUR_MIB).start()
    try:
        collector = make_collector(
            export_endpoints=[f"{transport}://127.0.0.1:{_port(receiver, transport)}"],
            max_export_batch_bytes=16_000_000,  # larger than the receiver takes
            flush_interval_ms=60_000,
        )
        for i in range(512):
            collector.collect_event(Event("big", f"{i:04d}" + "x" * 8188))
        assert collector.flush(10_000) is True
        assert len(receiver.log_records()) == 512
        assert collector.stats()["event"]["exported"] == 512
    finally:
        receiver.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_item_too_large_alone_is_dropped_without_taking_its_batch_down(
    otlp_receiver, transport, make_collector
):
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{_port(otlp_receiver, transport)}"],
        max_export_batch_bytes=20_000,
        flush_interval_ms=60_000,
    )
    for i in range(25):
        collector.collect_event(Event("normal", f"before {i}"))
    huge = {f"k{n}": "v" * 8000 for n in range(10)}
    collector.collect_event(Event("huge", "too large alone", metadata=huge))
    for i in range(25):
        collector.collect_event(Event("normal", f"after {i}"))
    assert collector.flush(10_000) is False  # one item was lost
    names = [r.event_name for _, r in otlp_receiver.log_records()]
    assert names == ["normal"] * 50
    counts = collector.stats()["event"]
    assert (counts["exported"], counts["dropped_too_large"]) == (50, 1)
    assert_identity(collector.stats(), "event")


def test_an_outage_logs_one_line_per_signal_saying_what_it_cost(make_collector, caplog):
    port = refusing_port()
    with caplog.at_level(logging.DEBUG):
        collector = make_collector(
            export_endpoints=[f"grpc://127.0.0.1:{port}?timeout_ms=200"], flush_interval_ms=100
        )
        for i in range(30):
            _collect(collector, 1, prefix=f"{i}-")
            collector.collect_metric(Metric("ticks", 1, MetricType.COUNTER))
            time.sleep(0.1)
    lines = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert [line.split(" could not take ")[1].split(" (")[0] for line in lines] == [
        "log records past its retries",
        "metric data points past its retries",
        "spans past its retries",
    ], lines
    for line in lines:
        assert line.startswith(f"OTLP endpoint grpc://127.0.0.1:{port}?timeout_ms=200 ")
        assert "(refused: " in line
        assert line.endswith(" since the last report")


def test_an_outage_in_the_middle_of_a_split_counts_each_part_once(make_collector):
    receiver = OtlpReceiver(max_http_body=FOUR_MIB)
    receiver.fail_next("http", "logs", Partial(0, ""))  # the first half: taken
    receiver.fail_next("http", "logs", (503, {}, b"busy"))  # the second: an outage
    receiver.start()
    try:
        collector = make_collector(
            export_endpoints=[f"http://127.0.0.1:{receiver.http_port}?timeout_ms=500"],
            max_export_batch_bytes=16_000_000,
            flush_interval_ms=60_000,
        )
        for i in range(512):
            collector.collect_event(Event("big", f"{i:04d}" + "x" * 8188))
        assert collector.flush(10_000) is False
        assert len(receiver.log_records()) == 256
        stats = collector.stats()
        counts = stats["event"]
        assert (counts["exported"], counts["export_failures_unavailable"]) == (256, 256)
        assert_identity(stats, "event")
    finally:
        receiver.stop()


# How peers word a refusal for size: each is split like a 413, never retried as an outage.
SIZE_REFUSALS = {
    "tonic OUT_OF_RANGE": (
        "grpc",
        GrpcFailure(
            grpc.StatusCode.OUT_OF_RANGE,
            "decoded message length too large: found 1346801 bytes, the limit is: 1048576 bytes",
        ),
    ),
    "Collector RESOURCE_EXHAUSTED": (
        "grpc",
        GrpcFailure(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "grpc: received message larger than max (5242880 vs. 4194304)",
        ),
    ),
    "Collector HTTP 400": ("http", (400, {}, b"failed to read body: http: request body too large")),
    "proxy HTTP 413": ("http", (413, {}, b"<html>413 Request Entity Too Large</html>")),
}


@pytest.mark.parametrize("refusal", SIZE_REFUSALS.values(), ids=SIZE_REFUSALS.keys())
def test_a_size_refusal_however_worded_is_split_and_sent_again(
    refusal, otlp_receiver, make_collector
):
    transport, failure = refusal
    otlp_receiver.fail_next(transport, "logs", failure)
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{_port(otlp_receiver, transport)}"],
        flush_interval_ms=60_000,
    )
    for i in range(10):
        collector.collect_event(Event("e", f"m{i}"))
    assert collector.flush(10_000) is True
    assert len(otlp_receiver.attempt_times("logs")) == 3  # refused whole, then two halves
    assert sorted(r.body.string_value for _, r in otlp_receiver.log_records()) == sorted(
        f"m{i}" for i in range(10)
    )
    counts = collector.stats()["event"]
    assert (counts["exported"], counts["export_failures"], counts["dropped"]) == (10, 0, 0)


@pytest.mark.parametrize("refusal", SIZE_REFUSALS.values(), ids=SIZE_REFUSALS.keys())
def test_a_spooled_batch_refused_for_its_size_on_replay_is_split_and_delivered(
    refusal, tmp_path, make_collector
):
    transport, failure = refusal
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{port}?timeout_ms=300"],
        spool_dir=str(tmp_path),
        flush_interval_ms=60_000,
    )
    for i in range(40):
        collector.collect_event(Event("spooled", f"during the outage {i}"))
    assert collector.flush(5000) is False
    assert collector.stats()["event"]["spooled"] == 40
    receiver = OtlpReceiver(**{f"{transport}_port": port})
    receiver.fail_next(transport, "logs", failure)  # the replay of the 40, whole
    receiver.start()
    try:
        collector.collect_event(Event("later", "after the outage"))
        assert collector.flush(10_000) is True
        bodies = [r.body.string_value for _, r in receiver.log_records()]
        assert sorted(bodies) == sorted(
            [f"during the outage {i}" for i in range(40)] + ["after the outage"]
        )
        assert bodies[-1] == "after the outage"  # behind the spooled ones, in order
        counts = collector.stats()["event"]
        assert (counts["spooled"], counts["exported"], counts["export_failures"]) == (0, 41, 0)
    finally:
        receiver.stop()


def test_a_spooled_item_too_large_alone_is_counted_refused_and_blocks_nothing(
    tmp_path, make_collector, caplog
):
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{port}?timeout_ms=300"],
        spool_dir=str(tmp_path),
        flush_interval_ms=60_000,
    )
    collector.collect_event(Event("spooled", "too large for the receiver"))
    assert collector.flush(5000) is False
    receiver = OtlpReceiver(grpc_port=port)
    receiver.fail_next("grpc", "logs", SIZE_REFUSALS["tonic OUT_OF_RANGE"][1])
    receiver.start()
    try:
        collector.collect_event(Event("later", "after it"))
        with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
            assert collector.flush(10_000) is False  # the refused one is a loss
            assert collector.flush(10_000) is True
        assert [r.body.string_value for _, r in receiver.log_records()] == ["after it"]
        counts = collector.stats()["event"]
        assert (counts["spooled"], counts["export_failures_refused"], counts["exported"]) == (
            0,
            1,
            1,
        )
        [line] = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
        assert line.startswith(
            f"OTLP endpoint grpc://127.0.0.1:{port}?timeout_ms=300 refused for good "
            "(not retried, not spooled) log records (gRPC OUT_OF_RANGE: decoded message "
            "length too large"
        )
    finally:
        receiver.stop()


def test_a_rate_limit_worded_like_a_limit_is_not_taken_for_a_size_refusal():
    from telemetry_otel._otel.delivery.sender import is_size_refusal

    for message in (
        "Quota exceeded for quota metric 'Export requests' and limit 'per minute'",
        "request rate exceeds the limit of 100 per second",
        "too many requests",
    ):
        assert not is_size_refusal(message), message
    for message in (
        "grpc: received message larger than max (5242880 vs. 4194304)",
        "decoded message length too large: found 1346801 bytes, the limit is: 1048576 bytes",
        "http: request body too large",
        "413 Request Entity Too Large",
        "request size 5000000 is over the max of 4194304",
    ):
        assert is_size_refusal(message), message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_partial_success_with_a_negative_count_counts_nothing_rejected(
    otlp_receiver, transport, make_collector
):
    otlp_receiver.fail_next(transport, "traces", Partial(-1000, "quota warning"))
    collector = make_collector(
        export_endpoints=[f"{transport}://127.0.0.1:{_port(otlp_receiver, transport)}"],
        flush_interval_ms=60_000,
    )
    for i in range(10):
        collector.collect_trace(Trace("t", f"s{i}", "op", 1.0))
    collector.flush(5000)
    counts = collector.stats()["trace"]
    # Never "exported 1010 for 10 items, export_failures -1000".
    assert (counts["exported"], counts["export_failures"], counts["pending"]) == (10, 0, 0)
    assert len(otlp_receiver.spans()) == 10


ONE_MIB = 1024 * 1024


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("receives", "budget"),
    [(ONE_MIB, 16_000_000), (FOUR_MIB, 4_000_000)],
    ids=["refused-then-split", "cut-to-the-budget"],
)
def test_a_metric_export_larger_than_a_request_is_split_and_every_point_arrives(
    transport, receives, budget, make_collector
):
    receiver = OtlpReceiver(max_http_body=receives, max_grpc_receive_bytes=receives).start()
    try:
        collector = make_collector(
            export_endpoints=[f"{transport}://127.0.0.1:{_port(receiver, transport)}"],
            max_export_batch_bytes=budget,
            flush_interval_ms=60_000,
        )
        names = [f"queue_depth_{n}" for n in range(20)]
        series = 600 if receives == ONE_MIB else 2_000
        for name in names:
            for tag in range(series):
                tags = {"queue": f"{tag:05d}" + "q" * 250, "region": "eu-west-" + "r" * 40}
                collector.collect_metric(Metric(name, tag, MetricType.GAUGE, tags))
        assert collector.flush(30_000) is True
        got: dict[tuple[str, str], int] = {}
        for _, metric in receiver.metrics():
            for point in metric.gauge.data_points:
                key = (metric.name, attributes_of(point.attributes)["queue"][:5])
                assert key not in got, key  # every point once
                got[key] = point.as_int
        assert len(got) == len(names) * series
        assert got[("queue_depth_19", f"{series - 1:05d}")] == series - 1
        sizes = [len(r.request.SerializeToString()) for r in receiver.requests("metrics")]
        assert len(sizes) > 1 and max(sizes) <= min(receives, budget)
        counts = collector.stats()["metric"]
        assert (counts["exported"], counts["export_failures"]) == (len(names) * series, 0)
        collector.stop()
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "exported"), (400, "export_failures_refused")]
)
def test_a_response_body_of_a_gigabyte_is_read_no_further_than_its_start(
    status, outcome, make_collector, caplog
):
    flooder = Flooder(status)
    try:
        collector = make_collector(
            export_endpoints=[f"http://127.0.0.1:{flooder.port}?timeout_ms=5000"],
            flush_interval_ms=60_000,
        )
        for _ in range(2):
            collector.collect_event(Event("order.paid", "m"))
            collector.flush(10_000)
        assert collector.stats()["event"][outcome] == 2
        assert flooder.paths.count("/v1/logs") == 2
        # The client hung up after the start of each body: the socket buffers, no more.
        assert flooder.sent < len(flooder.paths) * 16 * ONE_MIB
        if status == 400:
            assert "HTTP 400 Flood: the server says no; the server says no;" in caplog.text
    finally:
        flooder.stop()
