"""Live spans, trace context in and out, and the logging bridge, through the public surface."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import sys
import urllib.request

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry_otel import Event, EventSeverity, Trace
from tests.otlp_receiver import attributes_of


@pytest.fixture
def plain_otel():
    """A plain OTel SDK tracer, not the collector's: its spans share the current context."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("plain"), exporter
    provider.shutdown()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def test_live_spans_nest_under_each_other_and_carry_tags(make_collector, recorder):
    collector = make_collector()
    collector.register_exporter(recorder)
    with collector.span("checkout", {"user": "ann"}) as outer, collector.span("charge") as inner:
        assert inner.get_span_context().trace_id == outer.get_span_context().trace_id
    collector.flush()
    traces = {t.operation: t for t in recorder.of("trace")}
    assert traces["charge"].parent_span_id == traces["checkout"].span_id
    assert traces["checkout"].parent_span_id is None
    assert traces["checkout"].tags == {"user": "ann"}
    assert collector.stats()["trace"]["collected"] == 2


def test_a_live_span_nests_under_a_plain_otel_span_and_the_reverse(
    make_collector, recorder, plain_otel
):
    tracer, plain_spans = plain_otel
    collector = make_collector()
    collector.register_exporter(recorder)
    with (
        tracer.start_as_current_span("http.server") as server,
        collector.span("legacy.handler") as handler,
        tracer.start_as_current_span("db.client"),
    ):
        pass
    collector.flush()
    [ours] = recorder.of("trace")
    [db, _] = plain_spans.get_finished_spans()
    server_context = server.get_span_context()
    assert ours.trace_id == _hex(server_context.trace_id, 32)
    assert ours.parent_span_id == _hex(server_context.span_id, 16)
    assert db.parent.span_id == handler.get_span_context().span_id


def test_async_spans_stay_current_across_await(make_collector, recorder):
    collector = make_collector()
    collector.register_exporter(recorder)

    @collector.traced(tags={"kind": "job"})
    async def job():
        await asyncio.sleep(0.01)
        async with collector.span("after-await"):
            await asyncio.sleep(0)
        return "done"

    async def main():
        return await asyncio.gather(job(), job())

    assert asyncio.run(main()) == ["done", "done"]
    collector.flush()
    traces = recorder.of("trace")
    parents = {t.span_id: t for t in traces if t.operation.endswith("job")}
    children = [t for t in traces if t.operation == "after-await"]
    assert len(parents) == 2 and len(children) == 2
    assert {child.parent_span_id for child in children} == set(parents)
    assert all(p.tags == {"kind": "job"} for p in parents.values())


def test_traced_works_with_and_without_arguments_on_sync_functions(make_collector, recorder):
    collector = make_collector()
    collector.register_exporter(recorder)

    @collector.traced
    def plain(x):
        return x + 1

    @collector.traced("named")
    def named():
        return "n"

    assert (plain(1), named()) == (2, "n")
    collector.flush()
    names = sorted(t.operation for t in recorder.of("trace"))
    assert names == ["named", plain.__qualname__]


def test_an_exception_is_recorded_and_sets_the_error_status(
    make_collector, recorder, otlp_receiver
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.register_exporter(recorder)
    with pytest.raises(KeyError), collector.span("lookup"):
        raise KeyError("missing")
    collector.flush()
    [trace] = recorder.of("trace")
    assert trace.error == "KeyError: 'missing'"
    [(_, span)] = otlp_receiver.spans()
    assert span.status.code == 2
    [exception] = span.events
    assert exception.name == "exception"
    assert attributes_of(exception.attributes)["exception.type"] == "KeyError"


def test_live_spans_obey_the_sampler(make_collector, recorder):
    collector = make_collector(sample_rate=0.0)
    collector.register_exporter(recorder)
    with collector.span("dropped") as span:
        assert not span.is_recording()
    collector.flush()
    assert recorder.of("trace") == []


def test_on_a_stopped_collector_a_live_span_is_a_no_op(make_collector):
    collector = make_collector()
    collector.stop()
    with collector.span("nothing") as span:
        assert not span.is_recording()


def test_events_in_a_live_span_carry_its_ids_legacy_traces_keep_their_own(
    make_collector, otlp_receiver
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    with collector.span("request") as span:
        collector.collect_event(Event("inside", "m"))
        collector.collect_trace(Trace("legacy-trace", "s1", "legacy.op", 1.0))
    assert collector.flush(10_000) is True
    context = span.get_span_context()
    [(_, record)] = otlp_receiver.log_records()
    assert (record.trace_id.hex(), record.span_id.hex()) == (
        _hex(context.trace_id, 32),
        _hex(context.span_id, 16),
    )
    legacy = next(s for _, s in otlp_receiver.spans() if s.name == "legacy.op")
    assert legacy.trace_id == hashlib.sha256(b"legacy-trace").digest()[:16]
    assert legacy.parent_span_id == b""


def test_a_legacy_trace_is_sampled_on_its_own_id_not_on_the_current_live_span(
    make_collector, recorder
):
    collector = make_collector()
    collector.register_exporter(recorder)
    # A remote parent that decided not to sample: the live span is not recorded...
    unsampled = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}
    with collector.span("request", parent=collector.extract_context(unsampled)) as span:
        assert not span.is_recording()
        # ...but a legacy trace collected meanwhile is another trace, kept at rate 1.0.
        assert collector.collect_trace(Trace("legacy-trace", "s1", "legacy.op", 1.0)) is True
    assert collector.flush(10_000) is True
    assert [t.operation for t in recorder.of("trace")] == ["legacy.op"]


def test_trace_context_round_trips_through_a_carrier(make_collector, recorder):
    sender, receiver_side = make_collector(), make_collector()
    receiver_side.register_exporter(recorder)
    with sender.span("client") as client:
        headers = sender.inject_context({"content-type": "json"})
    context = client.get_span_context()
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        _hex(context.trace_id, 32),
        _hex(context.span_id, 16),
    )
    assert int(flags, 16) & 1 == 1  # sampled
    with receiver_side.span("server", parent=receiver_side.extract_context(headers)):
        pass
    receiver_side.flush()
    [server] = recorder.of("trace")
    assert (server.trace_id, server.parent_span_id) == (
        _hex(context.trace_id, 32),
        _hex(context.span_id, 16),
    )


# A service in its own process: it joins the trace of each request from a plain dict of
# the headers it received, as many frameworks hand them over (names as the client sent
# them), and says when it is ready and where it listens.
_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from telemetry_otel import TelemetryCollector, TelemetryConfig

collector = TelemetryCollector(TelemetryConfig(export_endpoints=[sys.argv[1]]))
collector.start()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        headers = {name: value for name, value in self.headers.items()}
        with collector.span("server", parent=collector.extract_context(headers)):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(",".join(sorted(headers)).encode())
        collector.flush(10_000)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.handle_request()
collector.stop()
"""


def test_a_service_joins_the_trace_from_headers_sent_by_urllib_whatever_their_case(
    make_collector, otlp_receiver
):
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, endpoint], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        client = make_collector()
        with client.span("client") as span:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/")
            for name, value in client.inject_context({}).items():
                request.add_header(name, value)  # urllib sends "Traceparent"
            with urllib.request.urlopen(request, timeout=10) as response:
                received = response.read().decode().split(",")
        assert server.wait(20) == 0
    finally:
        server.kill()
    assert "Traceparent" in received
    [(_, remote)] = otlp_receiver.spans()
    context = span.get_span_context()
    assert remote.name == "server"
    assert (remote.trace_id.hex(), remote.parent_span_id.hex()) == (
        _hex(context.trace_id, 32),
        _hex(context.span_id, 16),
    )


@pytest.mark.parametrize(
    "carrier",
    [
        {
            "TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "TraceState": "ot=th:8",
        },
        {
            "traceparent": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            "tracestate": ["ot=th:8"],
        },
        {
            b"Traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "Tracestate": b"ot=th:8",
        },
    ],
)
def test_extract_context_reads_any_case_and_value_form(make_collector, carrier):
    collector = make_collector()
    with collector.span("server", parent=collector.extract_context(carrier)) as span:
        context = span.get_span_context()
    assert _hex(context.trace_id, 32) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert context.trace_state.get("ot") == "th:8"


def test_span_names_and_tags_are_validated(make_collector):
    collector = make_collector()
    with pytest.raises(ValueError, match=r"span\.name must be a non-empty string"):
        collector.span("")
    with pytest.raises(TypeError, match=r"span\.tags\['k'\] must be a str, int, float or bool"):
        collector.span("x", {"k": [1]})


# -- the logging bridge --------------------------------------------------------------------------


@pytest.fixture
def app_logger():
    logger = logging.getLogger("shop.checkout")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    logger.handlers.clear()


def test_logging_records_become_events_with_args_extra_and_level(
    make_collector, recorder, app_logger
):
    collector = make_collector()
    collector.register_exporter(recorder)
    app_logger.addHandler(collector.logging_handler(level=logging.INFO))
    app_logger.debug("not collected below the handler's level")
    app_logger.warning("order %s failed after %d tries", "A-1", 3, extra={"order_id": "A-1"})
    collector.flush()
    [event] = recorder.of("event")
    assert (event.name, event.message, event.severity) == (
        "shop.checkout",
        "order A-1 failed after 3 tries",
        EventSeverity.WARNING,
    )
    assert event.metadata["order_id"] == "A-1"
    assert event.metadata["code.function"] == (
        "test_logging_records_become_events_with_args_extra_and_level"
    )


def test_exc_info_becomes_exception_attributes(make_collector, recorder, app_logger):
    collector = make_collector()
    collector.register_exporter(recorder)
    app_logger.addHandler(collector.logging_handler())
    try:
        raise ValueError("bad card")
    except ValueError:
        app_logger.exception("payment failed")
    collector.flush()
    [event] = recorder.of("event")
    assert event.severity is EventSeverity.ERROR
    assert (event.metadata["exception.type"], event.metadata["exception.message"]) == (
        "ValueError",
        "bad card",
    )
    assert 'raise ValueError("bad card")' in event.metadata["exception.stacktrace"]


def test_the_logging_bridge_does_not_collect_the_libraries_own_logs(make_collector, recorder):
    collector = make_collector()
    collector.register_exporter(recorder)
    handler = collector.logging_handler(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("opentelemetry.sdk").warning("would loop")
        logging.getLogger("telemetry_otel").warning("would loop too")
        logging.getLogger("app").warning("kept")
        collector.flush()
    finally:
        root.removeHandler(handler)
    assert [e.name for e in recorder.of("event")] == ["app"]


def test_logged_records_inside_a_live_span_are_correlated(
    make_collector, otlp_receiver, app_logger
):
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    app_logger.addHandler(collector.logging_handler())
    with collector.span("request") as span:
        app_logger.info("inside")
    assert collector.flush(10_000) is True
    [(_, record)] = otlp_receiver.log_records()
    assert record.span_id.hex() == _hex(span.get_span_context().span_id, 16)
