"""The StatsD and DogStatsD listener: real client packages sending UDP on loopback."""

from __future__ import annotations

import logging
import math
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import datadog.dogstatsd.base as dogstatsd_base
import pytest
import statsd.client.base as statsd_base
from datadog.dogstatsd import DogStatsd
from hypothesis import given, settings
from hypothesis import strategies as st
from statsd import StatsClient

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig
from telemetry_otel._otel.bridges import statsd as listener_module
from telemetry_otel._otel.bridges.statsd_parser import (
    CheckLine,
    EventLine,
    Malformed,
    MetricLine,
    parse_line,
    parse_packet,
)
from telemetry_otel._otel.runtime import log, sdk
from tests.otlp_receiver import OtlpReceiver, attributes_of
from tests.prometheus_server import free_port

SCOPE = "telemetry_otel.statsd"


def listen(receiver: OtlpReceiver, make_collector: Any, **config: Any) -> tuple[Any, int]:
    """A started collector with a StatsD listener on loopback, exporting to ``receiver``;
    and the listener's port."""
    port = free_port()
    collector = make_collector(
        export_endpoints=[f"grpc://127.0.0.1:{receiver.grpc_port}"],
        statsd_endpoint=f"statsd://127.0.0.1:{port}",
        **config,
    )
    return collector, port


@pytest.fixture
def listening(otlp_receiver, make_collector):
    """A collector with a StatsD listener on loopback, exporting to the OTLP receiver."""
    return listen(otlp_receiver, make_collector, redact_keys=["api_key"])


@pytest.fixture
def clients_always_send(monkeypatch):
    """The clients sample on their side (random() against the rate): make them send every
    line, so that the rate they write is the listener's to weigh."""
    monkeypatch.setattr(statsd_base.random, "random", lambda: 0.0)
    monkeypatch.setattr(dogstatsd_base, "random", lambda: 0.0)


def send(port: int, *packets: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, ("127.0.0.1", port))


def settle(collector: Any, lines: int, timeout_s: float = 10) -> None:
    """Wait until the listener has taken ``lines`` lines (bridged, malformed or dropped)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = collector.stats()["metric"]
        taken = sum(
            stats[f"{k}statsd"] for k in ("bridged_", "bridge_malformed_", "bridge_dropped_")
        )
        if taken >= lines:
            return
        time.sleep(0.01)
    raise AssertionError(f"the listener took {taken} of {lines} lines")


def metrics(receiver: OtlpReceiver) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """The last export of each StatsD metric: (attributes, value or (count, sum, buckets))."""
    found = {}
    for _, metric in receiver.metrics(SCOPE):
        kind = metric.WhichOneof("data")
        data = getattr(metric, kind)
        found[metric.name] = sorted(
            (
                (
                    attributes_of(p.attributes),
                    (p.count, p.sum, list(p.bucket_counts))
                    if kind == "histogram"
                    else (p.as_double if p.HasField("as_double") else p.as_int),
                )
                for p in data.data_points
            ),
            key=repr,
        )
    return found


def test_every_line_type_from_real_clients_with_and_without_sample_rates(
    listening, otlp_receiver, clients_always_send
):
    collector, port = listening
    plain = StatsClient("127.0.0.1", port)
    dog = DogStatsd(host="127.0.0.1", port=port, disable_telemetry=True, disable_buffering=True)
    plain.incr("jobs", 3)
    plain.incr("jobs", 2, rate=0.5)  # stands for 4
    plain.gauge("queue", 10)
    plain.gauge("queue", 5, delta=True)
    plain.gauge("queue", -3, delta=True)
    plain.timing("took", 100, rate=0.1)  # 10 timings of 100 ms, never one of 1000 ms
    plain.timing("took", 7)
    plain.set("users", "ann")
    plain.set("users", "bob")
    plain.set("users", "ann")
    dog.histogram("payload", 300, tags=["route:/a"], sample_rate=0.25)
    dog.distribution("payload.dist", 2.5, tags=["route:/b", "canary"])
    dog.increment("logins", tags=["api_key:s3cret", "region:eu"])
    dog.event("Deploy finished", "v1.2 is live", alert_type="success", tags=["env:prod"])
    dog.service_check("db.up", DogStatsd.CRITICAL, message="no connection", tags=["db:main"])
    settle(collector, 15)
    assert collector.flush(10_000) is True
    got = metrics(otlp_receiver)
    assert got["jobs"] == [({}, 7.0)]
    assert got["queue"] == [({}, 12.0)]
    # Default bounds 0, 5, 10, 25, 50, 75, 100, 250, …: 7 in (5, 10], 100 in (75, 100].
    took = [0, 0, 1, 0, 0, 0, 10] + [0] * 9
    assert got["took"] == [({}, (11, 1007.0, took))]
    assert got["users"] == [({}, 2)]
    payload = [0] * 8 + [4] + [0] * 7  # 300 in (250, 500], 4 times
    assert got["payload"] == [({"route": "/a"}, (4, 1200.0, payload))]
    assert got["payload.dist"] == [({"canary": "", "route": "/b"}, (1, 2.5, [0, 1] + [0] * 14))]
    assert got["logins"] == [({"api_key": "[REDACTED]", "region": "eu"}, 1.0)]
    [deploy, check] = sorted(
        (r for _, r in otlp_receiver.log_records()), key=lambda r: r.event_name
    )
    assert (check.event_name, check.severity_text, check.body.string_value) == (
        "db.up",
        "ERROR",
        "no connection",
    )
    assert attributes_of(check.attributes)["dogstatsd.service_check.status"] == "critical"
    assert (deploy.event_name, deploy.severity_text, deploy.body.string_value) == (
        "Deploy finished",
        "INFO",
        "v1.2 is live",
    )
    assert attributes_of(deploy.attributes)["env"] == "prod"
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["bridge_malformed_statsd"]) == (15, 0)


def test_malformed_lines_are_counted_and_never_stop_the_listener(listening, otlp_receiver, caplog):
    collector, port = listening
    send(
        port,
        b"\xff\xfe not utf-8",
        b"no_type:1\nbad_type:1|x\nnan:nan|c\nrate:1|c|@0\nrate2:1|c|@2\n:1|c|T",
        b"_e{50,1}:short|x\n_sc|check|7\nok:1|c",
    )
    settle(collector, 10)
    assert collector.flush(10_000) is True
    assert metrics(otlp_receiver)["ok"] == [({}, 1.0)]
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["bridge_malformed_statsd"]) == (1, 9)
    assert "Traceback" not in caplog.text
    assert collector.stats().losses() == "statsd: 1 bridged, lost (malformed=9)"


def test_a_flood_is_bounded_by_the_packet_queue_and_counted(listening, monkeypatch):
    collector, port = listening
    [listener] = collector._pipeline._listeners
    monkeypatch.setattr(listener_module, "MAX_QUEUED_PACKETS", 5)
    parsing, release = threading.Event(), threading.Event()
    take = listener.take

    def slow_take(packet: bytes) -> None:
        parsing.set()
        release.wait(10)
        take(packet)

    monkeypatch.setattr(listener, "take", slow_take)
    send(port, b"first:1|c")
    assert parsing.wait(5)
    send(port, *(f"flood:{n}|c".encode() for n in range(20)))
    deadline = time.monotonic() + 5
    while collector.stats()["metric"]["bridge_dropped_statsd"] < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    settle(collector, 21)
    stats = collector.stats()["metric"]
    # One being parsed, five queued, fifteen dropped: every packet accounted for.
    assert (stats["bridged_statsd"], stats["bridge_dropped_statsd"]) == (6, 15)


def test_more_metric_names_than_max_metric_series_are_dropped_and_counted(
    otlp_receiver, make_collector
):
    collector, port = listen(otlp_receiver, make_collector, max_metric_series=2)
    send(port, b"a:1|c\nb:1|c\nc:1|c\na:1|c")
    settle(collector, 4)
    assert collector.flush(10_000) is True
    assert sorted(metrics(otlp_receiver)) == ["a", "b"]
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["bridge_dropped_statsd"]) == (3, 1)


def test_a_listener_beyond_loopback_must_be_allowed():
    with pytest.raises(ValueError, match="listens beyond loopback: set statsd_allow_remote=True"):
        TelemetryConfig(statsd_endpoint="statsd://0.0.0.0:8125")
    config = TelemetryConfig(statsd_endpoint="statsd://0.0.0.0:8125", statsd_allow_remote=True)
    assert config.statsd_endpoint == "statsd://0.0.0.0:8125"
    for bad in ("udp://127.0.0.1:8125", "statsd://127.0.0.1", "statsd://127.0.0.1:99999"):
        with pytest.raises(ValueError, match="must be statsd://host:port"):
            TelemetryConfig(statsd_endpoint=bad)


def test_a_busy_port_is_logged_and_the_collector_still_runs(make_collector, caplog):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="telemetry_otel"):
            collector = make_collector(statsd_endpoint=f"statsd://127.0.0.1:{port}")
        assert collector.is_running
        assert f"the StatsD listener cannot listen on 127.0.0.1:{port}" in caplog.text


# -- the parser --------------------------------------------------------------------------------


def test_the_parser_reads_each_line_type():
    assert parse_line("a.b:1.5|ms|@0.5|#k:v,flag|c:abc|T1700000000") == MetricLine(
        "a.b", "ms", (1.5,), 0.5, {"k": "v", "flag": ""}, origin={"container.id": "abc"}
    )
    assert parse_line("n:-1|c|e:it-false,cn-web,pu-9f1c|card:high") == MetricLine(
        "n", "c", (-1.0,), origin={"container.name": "web", "k8s.pod.uid": "9f1c"}
    )
    assert parse_line("g:-2|g") == MetricLine("g", "g", (-2.0,), relative=True)
    assert parse_line("h:1:2:3|h") == MetricLine("h", "h", (1.0, 2.0, 3.0))
    assert parse_line("s:x|s") == MetricLine("s", "s", members=("x",))
    assert parse_line("_e{3,6}:hé|a\\nb c|t:warning|#e:1") == EventLine(
        "hé", "a\nb c", "warning", {"e": "1"}, None, {"t": "warning"}
    )
    assert parse_line("_sc|disk|1|d:12|h:web1|m:slow") == CheckLine(
        "disk", 1, "slow", {}, 12.0, {"h": "web1"}
    )
    assert parse_line("_sc|disk|0|#a:b|c:abc|card:low") == CheckLine(
        "disk", 0, "", {"a": "b"}, None, {}, {"container.id": "abc"}
    )
    assert parse_line("_e{1,1}:t|x|c:abc|e:pu-1|card:orchestrator") == EventLine(
        "t", "x", "info", {}, None, {}, {"container.id": "abc", "k8s.pod.uid": "1"}
    )


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_no_packet_makes_the_parser_raise(packet):
    lines, malformed = parse_packet(packet)
    assert malformed >= 0 and len(lines) + malformed <= packet.count(b"\n") + 1


names = st.text(
    st.characters(blacklist_characters=":|\n\r#@", min_codepoint=33), min_size=1
).filter(str.strip)  # a name of white space alone (U+0085, U+00A0…) is no name
numbers = st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e12)
# What current DogStatsD clients add after the tags: origin, cardinality, a timestamp.
origins = st.fixed_dictionaries(
    {},
    optional={
        "c": st.text(st.characters(whitelist_categories=("Ll", "Nd")), min_size=1),
        "cn": st.text(st.characters(whitelist_categories=("Ll",)), min_size=1),
        "card": st.sampled_from(["none", "low", "orchestrator", "high"]),
        "T": st.integers(min_value=0, max_value=2**40),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    names,
    numbers,
    st.sampled_from(["c", "ms", "h", "d", "g"]),
    st.floats(min_value=0.001, max_value=1.0),
    st.dictionaries(
        st.text(st.characters(blacklist_characters=":,|\n\r", min_codepoint=33), min_size=1),
        st.text(st.characters(blacklist_characters=",|\n\r", min_codepoint=32)),
        max_size=4,
    ),
    origins,
    st.booleans(),
)
def test_a_metric_line_parses_back_to_what_was_written(
    name, value, kind, rate, tags, origin, negative
):
    value = -value if negative and kind == "c" else value  # decrements
    tag_text = ",".join(f"{k}:{v}" for k, v in tags.items())
    line = f"{name}:{value!r}|{kind}|@{rate!r}" + (f"|#{tag_text}" if tags else "")
    line += f"|c:{origin['c']}" if "c" in origin else ""
    line += f"|e:it-false,cn-{origin['cn']}" if "cn" in origin else ""
    line += f"|card:{origin['card']}" if "card" in origin else ""
    line += f"|T{origin['T']}" if "T" in origin else ""
    parsed = parse_line(line)
    assert isinstance(parsed, MetricLine)
    assert (parsed.name, parsed.kind, parsed.rate, parsed.tags) == (name, kind, rate, tags)
    assert parsed.values == (value,) and all(math.isfinite(v) for v in parsed.values)
    expected = {"container.id": origin["c"]} if "c" in origin else {}
    expected |= {"container.name": origin["cn"]} if "cn" in origin else {}
    assert parsed.origin == expected


@pytest.mark.parametrize(
    "line",
    ["x", "x:1", "x:1|q", "x:abc|c", "x:inf|g", "x:1|c|@0", "x:1|c|@1.5", "x:1|c|zz", "_sc|a|9"],
)
def test_lines_that_are_not_statsd_are_refused(line):
    with pytest.raises(Malformed):
        parse_line(line)


def test_stop_records_every_packet_sent_before_it_on_busy_cores(busy_cores):
    # What the socket holds when stop() begins was sent before it: recorded and exported.
    for attempt in range(3):
        receiver = OtlpReceiver().start()
        port = free_port()
        config = TelemetryConfig(
            export_endpoints=[f"grpc://127.0.0.1:{receiver.grpc_port}"],
            statsd_endpoint=f"statsd://127.0.0.1:{port}",
            flush_interval_ms=60_000,
        )
        collector = TelemetryCollector(config)
        collector.start()
        try:
            send(port, *(b"sent:1|c\nsent:2|c|@0.5" for _ in range(100)))
            collector.stop(timeout_ms=10_000)
            assert metrics(receiver)["sent"] == [({}, 500.0)], attempt
            stats = collector.stats()["metric"]
            assert (stats["bridged_statsd"], stats["bridge_dropped_statsd"]) == (200, 0)
        finally:
            receiver.stop()


def test_datadog_clients_in_containers_are_understood_with_every_origin_field(
    listening, otlp_receiver, monkeypatch, clients_always_send
):
    # As origin detection, the admission controller and a cardinality setting make the
    # real client send: |c:, |e: and |card: on every line, |T on timestamped gauges.
    monkeypatch.setenv("DD_EXTERNAL_ENV", "it-false,cn-checkout,pu-3f2a9c1e")
    collector, port = listening
    dog = DogStatsd(
        host="127.0.0.1",
        port=port,
        disable_telemetry=True,
        disable_buffering=True,
        container_id="c0ffee42",
        cardinality="orchestrator",
    )
    dog.increment("orders", 2, tags=["region:eu"])
    dog.decrement("orders", 1, tags=["region:eu"])
    dog.gauge_with_timestamp("depth", 7, 1_700_000_000, tags=["q:a"])
    dog.histogram("took", 40)
    dog.event("Deploy", "v2", alert_type="warning")
    dog.service_check("db.up", DogStatsd.OK, message="fine")
    settle(collector, 6)
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["bridge_malformed_statsd"]) == (6, 0)
    assert collector.flush(10_000) is True
    origin = {
        "container.id": "c0ffee42",
        "container.name": "checkout",
        "k8s.pod.uid": "3f2a9c1e",
    }
    got = metrics(otlp_receiver)
    assert got["orders"] == [({**origin, "region": "eu"}, 2.0)]  # +2, then -1 owed
    assert got["depth"] == [({**origin, "q": "a"}, 7.0)]
    assert got["took"][0][0] == origin
    # The client sends events and service checks with |c: and |card:, without |e:.
    records = {r.event_name: attributes_of(r.attributes) for _, r in otlp_receiver.log_records()}
    assert set(records) == {"Deploy", "db.up"}
    for attributes in records.values():
        assert {k: attributes.get(k) for k in origin} == {
            "container.id": "c0ffee42",
            "container.name": None,
            "k8s.pod.uid": None,
        }


def test_decrements_are_owed_by_the_counter_and_paid_out_of_its_next_increments(
    listening, otlp_receiver
):
    collector, port = listening
    plain = StatsClient("127.0.0.1", port)
    plain.incr("jobs", 5)
    plain.decr("jobs", 2)  # the running sum 3: the counter stays at 5, 2 owed
    settle(collector, 2)
    assert collector.flush(10_000) is True
    assert metrics(otlp_receiver)["jobs"] == [({}, 5.0)]
    plain.incr("jobs", 1)  # sum 4: still owed 1
    plain.incr("jobs", 4)  # sum 8: the counter 8
    settle(collector, 4)
    assert collector.flush(10_000) is True
    assert metrics(otlp_receiver)["jobs"] == [({}, 8.0)]
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["bridge_malformed_statsd"]) == (4, 0)


def test_tag_sets_folded_into_the_overflow_series_are_counted_limited(
    otlp_receiver, make_collector
):
    collector, port = listen(otlp_receiver, make_collector, max_metric_series=2)
    send(port, b"hits:1|c|#k:0\nhits:1|c|#k:1\nhits:1|c|#k:2\nhits:1|c|#k:3\nhits:2|c|#k:0")
    settle(collector, 5)
    assert collector.flush(10_000) is True
    stats = collector.stats()["metric"]
    # k:2 and k:3 went into the overflow series: two lines changed by the series cap.
    assert (stats["bridged_statsd"], stats["limited"]) == (5, 2)
    points = {
        repr(sorted(attributes_of(p.attributes).items())): p.as_double or p.as_int
        for _, m in otlp_receiver.metrics(SCOPE)
        if m.name == "hits"
        for p in m.sum.data_points
    }
    assert points == {
        "[('k', '0')]": 3,
        "[('k', '1')]": 1,
        "[('otel.metric.overflow', True)]": 2,
    }


def test_one_line_with_a_hostile_sample_rate_never_stops_the_other_metrics(
    listening, otlp_receiver
):
    collector, port = listening
    send(port, b"tiny:1|ms|@1e-300\nhuge:1e308|c|@0.1\nsparse:2|ms|@0.000001\nok:1|c")
    settle(collector, 4)
    for _ in range(2):  # the histogram is cumulative: every later export must go too
        collector.collect_metric(Metric("app_requests", 1, MetricType.COUNTER))
        assert collector.flush(10_000) is True
    got = metrics(otlp_receiver)
    assert sorted(got) == ["ok", "sparse"]
    assert got["sparse"][0][1][0] == 1_000_000  # one line at 1e-6 stands for a million
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["bridge_malformed_statsd"]) == (2, 2)
    app = [m for _, m in otlp_receiver.metrics() if m.name == "app_requests"]
    assert [p.as_double or p.as_int for p in app[-1].sum.data_points] == [2]


def test_a_sampled_timer_records_at_most_a_thousand_times_into_exponential_histograms(
    otlp_receiver, make_collector, monkeypatch, request
):
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "base2_exponential_bucket_histogram",
    )
    sdk.otlp_metric_preferences.cache_clear()
    request.addfinalizer(sdk.otlp_metric_preferences.cache_clear)
    collector, port = listen(otlp_receiver, make_collector)
    send(port, b"slow:3|ms|@0.000001\nslow:3|ms|@0.01")
    settle(collector, 2)
    assert collector.flush(10_000) is True
    [point] = [
        p
        for _, m in otlp_receiver.metrics(SCOPE)
        if m.name == "slow"
        for p in m.exponential_histogram.data_points
    ]
    assert (point.count, point.sum) == (1_100, 3_300.0)
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["limited"]) == (2, 1)


def test_set_members_and_set_tag_sets_are_bounded_per_collection_and_counted(
    listening, otlp_receiver, monkeypatch
):
    collector, port = listening
    monkeypatch.setattr(listener_module, "MAX_SET_SERIES", 2)
    monkeypatch.setattr(listener_module, "MAX_SET_MEMBERS", 3)
    send(
        port,
        b"users:a|s|#k:0\nusers:b|s|#k:1\nusers:c|s|#k:2\n"  # a third tag set: dropped
        b"users:c|s|#k:1\nusers:d|s|#k:1\nusers:a|s|#k:0",  # d is a fourth member: dropped
    )
    settle(collector, 6)
    assert collector.flush(10_000) is True
    assert metrics(otlp_receiver)["users"] == [({"k": "0"}, 1), ({"k": "1"}, 2)]
    stats = collector.stats()["metric"]
    assert (stats["bridged_statsd"], stats["bridge_dropped_statsd"]) == (4, 2)
    send(port, b"users:d|s|#k:2")  # a new collection: room again
    settle(collector, 7)
    assert collector.flush(10_000) is True
    assert ({"k": "2"}, 1) in metrics(otlp_receiver)["users"]
    assert collector.stats()["metric"]["bridge_dropped_statsd"] == 2


_FLOOD = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
packet = b"\\n".join(b"flood:1|c|#k:%d" % i for i in range(300))
for _ in range(10_000_000):
    sock.sendto(packet, ("127.0.0.1", int(sys.argv[1])))
"""


def test_a_flood_during_stop_leaves_the_deadline_to_export_what_was_recorded(
    otlp_receiver, tmp_path
):
    for attempt in range(3):
        port = free_port()
        directory = tmp_path / str(attempt)
        collector = TelemetryCollector(
            TelemetryConfig(
                export_endpoints=[
                    f"grpc://127.0.0.1:{otlp_receiver.grpc_port}",
                    f"file://{directory}",
                ],
                statsd_endpoint=f"statsd://127.0.0.1:{port}",
                flush_interval_ms=60_000,
            )
        )
        collector.start()
        send(port, b"before_stop:%d|c" % attempt)
        settle(collector, 1)
        collector.collect_event(Event("deploy.done", str(attempt)))
        flood = subprocess.Popen([sys.executable, "-c", _FLOOD, str(port)])
        try:
            settle(collector, 1_000)  # the flood is on
            collector.stop(timeout_ms=1000)
        finally:
            flood.kill()
            flood.wait(10)
        assert ("before_stop", attempt) in [
            (m.name, p.as_double or p.as_int)
            for _, m in otlp_receiver.metrics(SCOPE)
            for p in m.sum.data_points
            if m.name == "before_stop"
        ], attempt
        written = (directory / "metrics.jsonl").read_text()
        assert '"before_stop"' in written, attempt
        assert '"deploy.done"' in (directory / "logs.jsonl").read_text(), attempt
        assert collector.stats()["event"]["exported"] == 2, attempt  # both destinations


def test_huge_invalid_metric_names_make_short_log_lines_in_bounded_number(
    listening, otlp_receiver, caplog, monkeypatch
):
    collector, port = listening
    monkeypatch.setattr(log, "_warned_once", set())
    names = [f"bad name {i} " + "x" * 60_000 for i in range(40)]
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        for taken, name in enumerate(names, 1):  # one at a time: the socket buffer is small
            send(port, f"{name}:1|c".encode())
            settle(collector, taken)
    renames = [
        r.getMessage() for r in caplog.records if "is not a valid OpenTelemetry" in r.getMessage()
    ]
    assert len(renames) == len(names)
    assert max(len(line) for line in renames) < 500
    assert "… (60011 characters)" in renames[0]
    assert len(caplog.text) < 40 * 1000
    assert collector.stats()["metric"]["bridged_statsd"] == len(names)


def test_warnings_under_a_flood_of_distinct_keys_stay_bounded(monkeypatch, caplog):
    monkeypatch.setattr(log, "_last_warned", {})
    monkeypatch.setattr(log, "_unreported", {})
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        for i in range(10_000):
            log.warn_limited(f"flood:{i}:" + "k" * 10_000, "flood %d", i)
    assert len(log._last_warned) == 4097  # 4096 keys, then one shared by the rest
    assert max(len(key) for key in log._last_warned) < 250
    assert len(caplog.records) == 4097
