"""OTEL_CONFIG_FILE: the declarative configuration file, read for what the library
honours, every other key reported; and `config --explain`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig, cli
from telemetry_otel._otel.runtime import log
from tests.otlp_receiver import OtlpReceiver
from tests.tls import make_tls_files

EVERY_KEY = """\
file_format: "1.0"
disabled: false
resource:
  attributes:
    - name: service.name
      value: checkout
    - name: deployment.environment
      value: prod
  attributes_list: "team=payments,tier=web"
attribute_limits:
  attribute_value_length_limit: 256
  attribute_count_limit: 64
tracer_provider:
  processors:
    - batch:
        schedule_delay: 2000
        max_queue_size: 4096
        exporter:
          otlp_grpc:
            endpoint: https://127.0.0.1:{grpc_port}
            headers:
              - name: api-key
                value: k3y-from-file
            headers_list: "x-tenant=acme"
            compression: none
            timeout: 5000
            tls:
              ca_file: {ca_file}
              cert_file: {cert_file}
              key_file: {key_file}
  limits:
    event_count_limit: 7
    link_count_limit: 8
    event_attribute_count_limit: 9
    link_attribute_count_limit: 10
  sampler:
    parent_based:
      root:
        trace_id_ratio_based:
          ratio: 0.25
meter_provider:
  readers:
    - periodic:
        interval: 2000
        exporter:
          otlp_http:
            endpoint: http://127.0.0.1:{http_port}/v1/metrics
            encoding: json
logger_provider:
  processors:
    - simple:
        exporter:
          console:
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "otel.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def every_key(tmp_path):
    tls = make_tls_files(tmp_path)
    path = _write(
        tmp_path,
        EVERY_KEY.format(
            grpc_port=4317,
            http_port=4318,
            ca_file=tls.ca_file,
            cert_file=tls.client_cert_file,
            key_file=tls.client_key_file,
        ),
    )
    return path, tls


def test_every_supported_key_sets_what_its_variable_would(every_key):
    path, tls = every_key
    config = TelemetryConfig().with_env({"OTEL_CONFIG_FILE": path})
    assert (config.enabled, config.buffer_size, config.flush_interval_ms) == (True, 4096, 2000)
    assert (config.max_attributes, config.max_attribute_length) == (64, 256)
    assert config.trace_sample_rate == 0.25
    [traces_and_metrics, logs] = config.endpoints()
    targets = config.otlp_targets(traces_and_metrics)
    assert sorted(targets) == ["metrics", "traces"]
    traces, metrics = targets["traces"], targets["metrics"]
    assert (traces.protocol, traces.url, traces.compression, traces.timeout_ms) == (
        "grpc",
        "https://127.0.0.1:4317",
        "none",
        5000,
    )
    assert dict(traces.headers) == {"x-tenant": "acme", "api-key": "k3y-from-file"}
    assert (traces.ca_file, traces.client_cert, traces.client_key) == (
        str(tls.ca_file),
        str(tls.client_cert_file),
        str(tls.client_key_file),
    )
    assert (metrics.protocol, metrics.encoding, metrics.url) == (
        "http",
        "json",
        "http://127.0.0.1:4318/v1/metrics",
    )
    assert (logs.kind, logs.signals) == ("console", frozenset({"logs"}))
    shown = config.describe()
    assert f"flush_interval_ms          2000  (OTEL_CONFIG_FILE {path}:16 " in shown
    assert f"resource team                   'payments'  (OTEL_CONFIG_FILE {path}:3 resource)" in (
        shown
    )
    assert f"resource service.name           'checkout'  (OTEL_CONFIG_FILE {path}:6 " in shown
    assert "k3y-from-file" not in shown
    assert config._env_notes == ()  # every key applied


def test_a_collector_from_the_file_exports_with_its_settings(tmp_path, caplog):
    receiver = OtlpReceiver().start()
    try:
        path = _write(
            tmp_path,
            f"""\
file_format: "1.0"
resource:
  attributes:
    - name: service.name
      value: from-file
tracer_provider:
  processors:
    - batch:
        exporter:
          otlp_grpc:
            endpoint: http://127.0.0.1:{receiver.grpc_port}
  limits:
    event_count_limit: 1
meter_provider:
  readers:
    - periodic:
        exporter:
          otlp_http:
            endpoint: http://127.0.0.1:{receiver.http_port}/v1/metrics
            encoding: json
""",
        )
        config = TelemetryConfig(flush_interval_ms=60_000).with_env({"OTEL_CONFIG_FILE": path})
        with TelemetryCollector(config) as collector:
            with collector.span("checkout") as span:
                span.add_event("first")
                span.add_event("second")  # past the file's event_count_limit
            collector.collect_metric(Metric("orders", 2, MetricType.COUNTER))
            assert collector.collect_event(Event("e", "m"))  # no logger_provider: no-op
            assert collector.flush(10_000) is True
    finally:
        receiver.stop()
    [(resource, span)] = receiver.spans()
    assert resource["service.name"] == "from-file"
    assert len(span.events) == 1  # the file's event_count_limit
    assert {m.name for _, m in receiver.metrics()} == {"orders"}
    metric_requests = receiver.requests("metrics")
    assert {r.headers["content-type"] for r in metric_requests} == {"application/json"}
    assert receiver.log_records() == []
    assert collector.stats()["event"]["no_destination"] == 1


def test_keys_the_library_cannot_honour_are_each_reported_with_their_line(tmp_path):
    path = _write(
        tmp_path,
        """\
file_format: "1.0"
log_level: debug
propagator:
  composite_list: tracecontext
tracer_provider:
  processors:
    - batch:
        export_timeout: 1000
        max_export_batch_size: 10
        exporter:
          otlp_http:
            endpoint: http://127.0.0.1:4318/v1/traces
    - batch:
        exporter:
          otlp_grpc:
            endpoint: http://127.0.0.1:4317
  limits:
    attribute_count_limit: 5
  sampler:
    parent_based:
      root:
        always_off:
      remote_parent_sampled:
        always_off:
meter_provider:
  readers:
    - periodic:
        exporter:
          otlp_http:
            temporality_preference: delta
  exemplar_filter: always_on
instrumentation/development:
  general: {}
""",
    )
    config = TelemetryConfig().with_env({"OTEL_CONFIG_FILE": path})
    assert config.trace_sample_rate == 0.0  # parentbased_always_off: applied
    where = f"OTEL_CONFIG_FILE {path}"
    assert sorted(config._env_notes) == sorted(
        [
            (f"{where}:2 log_level", "not applied: the library logs through logging's levels"),
            (
                f"{where}:3 propagator",
                "not applied: propagators come from OTEL_PROPAGATORS, read by the API",
            ),
            (
                f"{where}:8 tracer_provider.processors[0].batch.export_timeout",
                "not applied: each exporter's timeout bounds an export, and a batch holds "
                "min(512, buffer_size) items",
            ),
            (
                f"{where}:9 tracer_provider.processors[0].batch.max_export_batch_size",
                "not applied: each exporter's timeout bounds an export, and a batch holds "
                "min(512, buffer_size) items",
            ),
            (
                f"{where}:14 tracer_provider.processors[1].batch.exporter",
                "not applied: one OTLP exporter per signal here",
            ),
            (
                f"{where}:18 tracer_provider.limits.attribute_count_limit",
                "not applied: attribute_limits apply to spans and events alike here",
            ),
            (
                f"{where}:23 tracer_provider.sampler.parent_based.remote_parent_sampled",
                "not applied: only always_on is supported",
            ),
            (
                f"{where}:30 meter_provider.readers[0].periodic.exporter.otlp_http."
                "temporality_preference",
                "not supported by this library",
            ),
            (f"{where}:31 meter_provider.exemplar_filter", "not supported by this library"),
            (f"{where}:32 instrumentation/development", "not supported by this library"),
        ]
    )


def test_variables_are_substituted_in_values_before_their_type_is_read(tmp_path):
    path = _write(
        tmp_path,
        """\
file_format: "1.0"
resource:
  attributes:
    - name: service.name
      value: ${env:SERVICE}
    - name: cost
      value: "$$5 ${UNSET_VARIABLE:-each}"
    - name: ${UNSET_VARIABLE}
      value: dropped
attribute_limits:
  attribute_count_limit: ${COUNT}
  attribute_value_length_limit: ${UNSET_VARIABLE}
tracer_provider:
  processors:
    - batch:
        max_queue_size: ${QUEUE:-2048}
        exporter:
          otlp_grpc:
            endpoint: ${ENDPOINT:-http://127.0.0.1:4317}
            timeout: "${COUNT}"
${COUNT}: keys are never substituted
""",
    )
    environ = {"OTEL_CONFIG_FILE": path, "SERVICE": "billing", "COUNT": "32"}
    config = TelemetryConfig().with_env(environ)
    assert (config.max_attributes, config.buffer_size) == (32, 2048)  # numbers, as read
    # An unset variable: as if the key were not set.
    assert config.max_attribute_length == TelemetryConfig().max_attribute_length
    shown = config.describe()
    assert "resource service.name           'billing'" in shown
    assert "resource cost                   '$5 each'" in shown
    assert "dropped" not in shown
    where = f"OTEL_CONFIG_FILE {path}"
    assert sorted(config._env_notes) == [
        (f"{where}:21 ${{COUNT}}", "not supported by this library"),  # keys: as written
        (f"{where}:8 resource.attributes[2]", "expected name and value"),
    ]
    [endpoint] = config.endpoints()
    assert config.otlp_targets(endpoint)["traces"].timeout_ms == 32  # quoted, still read


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("file_format: '1.0'\ntracer_provider: [\n", "{path}:3 is not YAML: "),
        ("- just\n- a list\n", "{path} is not a mapping of settings"),
        ("file_format: '0.3'\n", "{path}: file_format 0.3: this library reads file_format 1.x"),
        ("disabled: true\n", "{path}: file_format is missing: this library reads file_format 1.x"),
    ],
)
def test_a_file_that_cannot_be_read_warns_naming_it_and_the_variables_apply(
    tmp_path, text, problem, caplog, monkeypatch
):
    monkeypatch.setattr(log, "_last_warned", {})
    path = _write(tmp_path, text)
    environ = {"OTEL_CONFIG_FILE": path, "OTEL_ATTRIBUTE_COUNT_LIMIT": "12"}
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        config = TelemetryConfig().with_env(environ)
        collector = TelemetryCollector(config)
        collector.start()  # never fails because of the file
        collector.stop()
    assert config.max_attributes == 12  # the OTEL_* variables instead
    [line] = [r.getMessage() for r in caplog.records if "OTEL_CONFIG_FILE" in r.getMessage()]
    assert line.startswith(f"OTEL_CONFIG_FILE {problem.format(path=path)}")
    assert line.endswith("; reading the OTEL_* variables instead")


def test_a_missing_file_is_named_in_the_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(log, "_last_warned", {})
    missing = tmp_path / "nope.yaml"
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        TelemetryConfig().with_env({"OTEL_CONFIG_FILE": str(missing)})
    assert f"OTEL_CONFIG_FILE {missing} cannot be read: No such file or directory" in caplog.text


def test_a_value_in_the_wrong_form_is_ignored_naming_its_line_and_the_rest_applies(
    tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(log, "_last_warned", {})
    path = _write(
        tmp_path,
        """\
file_format: "1.0"
attribute_limits:
  attribute_count_limit: many
tracer_provider:
  processors:
    - batch:
        max_queue_size: -5
        exporter:
          otlp_http:
            timeout: soon
            compression: gzip
""",
    )
    with caplog.at_level(logging.WARNING, logger="telemetry_otel"):
        config = TelemetryConfig().with_env({"OTEL_CONFIG_FILE": path})
    assert (config.max_attributes, config.buffer_size) == (128, 1000)
    [endpoint] = config.endpoints()
    traces = config.otlp_targets(endpoint)["traces"]
    assert (traces.timeout_ms, traces.compression) == (10_000, "gzip")
    where = f"OTEL_CONFIG_FILE {path}"
    assert (
        f"{where}:10 tracer_provider.processors[0].batch.exporter.otlp_http.timeout='soon': "
        "expected a whole number of at least 1; ignored"
    ) in caplog.text
    assert (
        f"{where}:3 attribute_limits.attribute_count_limit='many': "
        "expected a whole number of at least 1; ignored"
    ) in caplog.text
    assert (
        f"{where}:7 tracer_provider.processors[0].batch.max_queue_size",
        "invalid: expected a whole number >= 1",
    ) in config._env_notes


def test_code_and_telemetry_variables_come_before_the_file_and_the_file_replaces_otel_ones(
    tmp_path,
):
    path = _write(
        tmp_path,
        """\
file_format: "1.0"
attribute_limits:
  attribute_count_limit: 64
  attribute_value_length_limit: 256
tracer_provider:
  processors:
    - batch:
        max_queue_size: 4096
        exporter:
          console:
""",
    )
    environ = {
        "OTEL_CONFIG_FILE": path,
        "TELEMETRY_BUFFER_SIZE": "99",
        "OTEL_ATTRIBUTE_COUNT_LIMIT": "5",  # replaced by the file
        "OTEL_SERVICE_NAME": "ignored",
    }
    config = TelemetryConfig(max_attribute_length=10).with_env(environ)
    assert (config.buffer_size, config.max_attributes, config.max_attribute_length) == (
        99,
        64,
        10,
    )
    assert "OTEL_SERVICE_NAME" not in config.environ
    assert (
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        "not applied: OTEL_CONFIG_FILE replaces the OTEL_* variables",
    ) in config._env_notes


def test_config_explain_lists_every_setting_and_every_key_not_applied(
    tmp_path, monkeypatch, capsys
):
    path = _write(
        tmp_path,
        """\
file_format: "1.0"
log_level: info
tracer_provider:
  processors:
    - batch:
        max_queue_size: 4096
        exporter:
          otlp_grpc:
            endpoint: http://127.0.0.1:4317
            headers:
              - name: api-key
                value: ${API_KEY}
            timeout: soon
""",
    )
    for name in [n for n in __import__("os").environ if n.startswith(("OTEL_", "TELEMETRY_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_CONFIG_FILE", path)
    monkeypatch.setenv("API_KEY", "s3cr3t-k3y")
    monkeypatch.setenv("TELEMETRY_BUFFER_SIZE", "99")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2048")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0k3n")
    assert cli.main(["config", "--explain"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    where = f"OTEL_CONFIG_FILE {path}"
    assert "buffer_size                99  (TELEMETRY_BUFFER_SIZE)" in lines
    assert (
        f"endpoint {where}:9 tracer_provider.processors[0].batch.exporter.otlp_grpc.endpoint"
        in lines
    )
    assert (
        "  traces   grpc http://127.0.0.1:4317 compression=gzip timeout_ms=10000 ca_file=None "
        "headers={'api-key': '***'}"
    ) in lines
    not_applied = lines[lines.index("not applied (5):") + 1 :]
    assert not_applied == [
        "  OTEL_BSP_MAX_QUEUE_SIZE='2048'  not applied: OTEL_CONFIG_FILE replaces the OTEL_* "
        "variables",
        f"  {where}:13 tracer_provider.processors[0].batch.exporter.otlp_grpc.timeout  "
        "invalid: expected a whole number of at least 1",
        f"  {where}:2 log_level  not applied: the library logs through logging's levels",
        f"  {where}:6 tracer_provider.processors[0].batch.max_queue_size  overridden by "
        "TELEMETRY_BUFFER_SIZE",
        "  OTEL_EXPORTER_OTLP_HEADERS=<not shown: headers carry credentials>  not applied: "
        "OTEL_CONFIG_FILE replaces the OTEL_* variables",
    ]
    for secret in ("s3cr3t-k3y", "t0k3n"):
        assert secret not in out


def test_config_explain_without_a_file_names_overridden_invalid_and_unread_variables(
    monkeypatch, capsys
):
    for name in [n for n in __import__("os").environ if n.startswith(("OTEL_", "TELEMETRY_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TELEMETRY_MAX_ATTRIBUTES", "50")
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "40")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2048")
    assert cli.main(["config", "--explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[lines.index("not applied (3):") + 1 :] == [
        "  OTEL_ATTRIBUTE_COUNT_LIMIT='40'  overridden by TELEMETRY_MAX_ATTRIBUTES",
        "  OTEL_BSP_MAX_QUEUE_SIZE='2048'  not read by this library",
        "  OTEL_EXPORTER_OTLP_TIMEOUT='soon'  invalid: expected a whole number of at least 1",
    ]


def test_the_switch_a_sampler_alone_and_a_prometheus_pull_reader_are_read(tmp_path):
    path = _write(
        tmp_path,
        """\
file_format: "1.1"
disabled: true
tracer_provider:
  sampler:
    always_off:
meter_provider:
  readers:
    - pull:
        exporter:
          prometheus/development:
            host: 127.0.0.1
            port: 9999
""",
    )
    config = TelemetryConfig(enabled=True).with_env({"OTEL_CONFIG_FILE": path})
    # The operator's switch wins over code, from the file as from OTEL_SDK_DISABLED.
    assert (config.enabled, config.trace_sample_rate) == (False, 0.0)
    assert config._sources["enabled"] == f"OTEL_CONFIG_FILE {path}:2 disabled, over code"
    [endpoint] = config.endpoints()  # no tracer or logger exporter: those export nothing
    assert (endpoint.kind, endpoint.url) == ("prometheus", "127.0.0.1:9999")
    assert config._env_notes == ()
