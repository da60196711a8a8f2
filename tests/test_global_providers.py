"""use_global_providers: legacy telemetry joins the application's own OpenTelemetry setup.

OTel's global providers can be set once per process, so each scenario runs in a
fresh interpreter.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

from telemetry_otel import Event, Metric, MetricType, Trace

APP_SETUP = """
import json, sys
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from telemetry_otel import *

resource = Resource.create({"service.name": "the-app"})
spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(tracer_provider)
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
_logs.set_logger_provider(logger_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource))
"""


def _run(body: str) -> dict:
    script = APP_SETUP + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_legacy_items_go_through_the_applications_providers_and_stay_running():
    result = _run(
        """
        collector = TelemetryCollector(TelemetryConfig(use_global_providers=True))
        received = []
        collector.register_exporter(lambda kind, data: received.append(kind))
        collector.start()
        with trace.get_tracer("app").start_as_current_span("app-request"):
            with collector.span("legacy-handler"):
                collector.collect_event(Event("legacy_event", "hello"))
        collector.collect_trace(Trace("t", "s", "legacy-op", 1.0))
        collector.collect_metric(Metric("legacy.count", 2, MetricType.COUNTER))
        collector.stop()
        # still the application's, still running after stop()
        trace.get_tracer("app").start_span("after-stop").end()
        finished = {s.name: s for s in spans.get_finished_spans()}
        names = sorted(finished)
        handler, request = finished["legacy-handler"], finished["app-request"]
        records = [r.log_record for r in logs.get_finished_logs()]
        metric_names = [m.name for rm in reader.get_metrics_data().resource_metrics
                        for sm in rm.scope_metrics for m in sm.metrics]
        print(json.dumps({
            "spans": names,
            "parent_is_app_span": handler.parent.span_id == request.context.span_id,
            "resource": finished["legacy-op"].resource.attributes["service.name"],
            "events": [r.event_name for r in records],
            "event_in_span": records[0].span_id == handler.context.span_id,
            "metrics": metric_names,
            "callbacks": sorted(set(received)),
            "stats": collector.stats()["trace"]["collected"],
        }))
        """
    )
    assert result["spans"] == ["after-stop", "app-request", "legacy-handler", "legacy-op"]
    assert result["parent_is_app_span"] is True
    assert result["resource"] == "the-app"
    assert result["events"] == ["legacy_event"]
    assert result["event_in_span"] is True
    assert "legacy.count" in result["metrics"]
    # Callbacks get what the collector produced (not the app's spans); metrics need
    # a reader of the collector's own, so they are not bridged here.
    assert result["callbacks"] == ["event", "trace"]
    assert result["stats"] == 2


def test_the_environment_variable_turns_it_on():
    result = _run(
        """
        import os
        os.environ["TELEMETRY_USE_GLOBAL_PROVIDERS"] = "true"
        with TelemetryCollector() as collector:
            collector.collect_trace(Trace("t", "s", "via-env", 1.0))
        print(json.dumps({"spans": [s.name for s in spans.get_finished_spans()]}))
        """
    )
    assert result["spans"] == ["via-env"]


def test_without_global_providers_it_says_so_and_uses_its_own(make_collector, recorder, caplog):
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        collector = make_collector(use_global_providers=True)
    collector.register_exporter(recorder)
    collector.collect_trace(Trace("t", "s", "op", 1.0))
    collector.collect_event(Event("e", "m"))
    collector.collect_metric(Metric("m", 1, MetricType.COUNTER))
    collector.flush()
    assert sorted(kind for kind, _ in recorder.items) == ["event", "metric", "trace"]
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "no global SDK TracerProvider is set" in warnings
    assert "no global SDK MeterProvider is set" in warnings
    assert "no global SDK LoggerProvider is set" in warnings


TRACER_ONLY = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from telemetry_otel import *

spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(tracer_provider)
config = TelemetryConfig(use_global_providers=True, export_endpoints=[sys.argv[1]])
with TelemetryCollector(config) as collector:
    collector.collect_trace(Trace("t", "s", "legacy-op", 1.0))
    collector.collect_event(Event("legacy-event", "m"))
    collector.collect_metric(Metric("legacy_metric", 1, MetricType.COUNTER))
    flushed = collector.flush(10_000)
print(json.dumps({"flushed": flushed, "spans": [s.name for s in spans.get_finished_spans()]}))
"""


def test_joining_half_an_otel_setup_sends_the_rest_to_the_endpoints(otlp_receiver):
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"
    result = subprocess.run(
        [sys.executable, "-c", TRACER_ONLY, endpoint], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"flushed": True, "spans": ["legacy-op"]}
    assert otlp_receiver.spans() == []  # the application's exporter sent them
    assert [r.event_name for _, r in otlp_receiver.log_records()] == ["legacy-event"]
    assert {m.name for _, m in otlp_receiver.metrics()} == {"legacy_metric"}
    lines = [line for line in result.stderr.splitlines() if "use_global_providers" in line]
    assert any(
        "metrics, events go through the collector's own providers to export_endpoints" in line
        for line in lines
    ), result.stderr
    assert "Cannot call collect" not in result.stderr


METER_ONLY = """
import json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from telemetry_otel import *

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
config = TelemetryConfig(use_global_providers=True, export_endpoints=[sys.argv[1]],
                         flush_interval_ms=100)
with TelemetryCollector(config) as collector:
    collector.collect_metric(Metric("legacy_metric", 1, MetricType.COUNTER))
    collector.collect_event(Event("legacy-event", "m"))
    import time; time.sleep(0.5)  # intervals pass: no reader of the collector's runs
    flushed = collector.flush(10_000)
names = [m.name for rm in reader.get_metrics_data().resource_metrics
         for sm in rm.scope_metrics for m in sm.metrics]
print(json.dumps({"flushed": flushed, "names": names}))
"""


def test_joining_a_meter_provider_alone_leaves_metrics_to_it(otlp_receiver):
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"
    result = subprocess.run(
        [sys.executable, "-c", METER_ONLY, endpoint], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.splitlines()[-1])
    assert output["flushed"] is True and "legacy_metric" in output["names"]
    assert otlp_receiver.metrics() == []
    assert [r.event_name for _, r in otlp_receiver.log_records()] == ["legacy-event"]
    assert "Cannot call collect" not in result.stderr and "Traceback" not in result.stderr
