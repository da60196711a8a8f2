"""Configuration from TELEMETRY_* and OTEL_* variables, with the documented precedence."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig, Trace
from telemetry_otel._otel.runtime import log


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith(("TELEMETRY_", "OTEL_")):
            monkeypatch.delenv(name)


def test_from_env_reads_every_telemetry_variable():
    config = TelemetryConfig.from_env(
        {
            "TELEMETRY_ENABLED": "false",
            "TELEMETRY_BUFFER_SIZE": "250",
            "TELEMETRY_FLUSH_INTERVAL_MS": "1500",
            "TELEMETRY_EXPORT_ENDPOINTS": "console, grpc://127.0.0.1:4317 ,",
            "TELEMETRY_SAMPLE_RATE": "0.25",
            "TELEMETRY_TAGS": "environment=prod, team=pay%20ments",
            "TELEMETRY_SERVICE_NAME": "checkout",
        }
    )
    assert config == TelemetryConfig(
        enabled=False,
        buffer_size=250,
        flush_interval_ms=1500,
        export_endpoints=["console", "grpc://127.0.0.1:4317"],
        sample_rate=0.25,
        tags={"environment": "prod", "team": "pay ments"},
        service_name="checkout",
    )


def test_without_variables_from_env_gives_the_defaults():
    assert TelemetryConfig.from_env({}) == TelemetryConfig()


def test_explicit_arguments_beat_telemetry_variables_which_beat_otel_ones():
    environ = {
        "TELEMETRY_ENABLED": "true",
        "OTEL_SDK_DISABLED": "true",
        "TELEMETRY_BUFFER_SIZE": "7",
    }
    assert TelemetryConfig.from_env(environ).enabled is True
    assert TelemetryConfig.from_env({"OTEL_SDK_DISABLED": "true"}).enabled is False
    assert TelemetryConfig.from_env({"OTEL_SDK_DISABLED": "false"}).enabled is True
    explicit = TelemetryConfig(enabled=False, buffer_size=3).with_env(environ)
    assert (explicit.enabled, explicit.buffer_size) == (False, 3)


def test_an_explicit_argument_equal_to_the_default_still_wins():
    config = TelemetryConfig(buffer_size=1000).with_env({"TELEMETRY_BUFFER_SIZE": "5"})
    assert config.buffer_size == 1000


def test_the_collector_fills_unset_fields_from_the_environment(monkeypatch):
    monkeypatch.setenv("TELEMETRY_SAMPLE_RATE", "0")
    monkeypatch.setenv("TELEMETRY_TAGS", "region=eu")
    with TelemetryCollector(TelemetryConfig(tags={"env": "prod"})) as collector:
        assert collector.config.sample_rate == 0.0
        assert collector.config.tags == {"env": "prod"}
        assert collector.collect_event(__import__("telemetry_otel").Event("e", "m")) is False
    with TelemetryCollector() as defaulted:
        assert defaulted.config.tags == {"region": "eu"}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TELEMETRY_ENABLED", "maybe", "true or false"),
        ("TELEMETRY_BUFFER_SIZE", "0", "a whole number of at least 1"),
        ("TELEMETRY_BUFFER_SIZE", "1e3", "a whole number of at least 1"),
        ("TELEMETRY_FLUSH_INTERVAL_MS", "-5", "a whole number of at least 1"),
        ("TELEMETRY_SAMPLE_RATE", "2", "a number between 0 and 1"),
        ("TELEMETRY_SAMPLE_RATE", "half", "a number between 0 and 1"),
        ("TELEMETRY_TAGS", "=eu", "comma-separated key=value pairs"),
        ("TELEMETRY_SERVICE_NAME", " ", "a non-empty service name"),
    ],
)
def test_a_malformed_telemetry_variable_is_a_value_error_naming_it_and_its_value(
    name, value, expected
):
    with pytest.raises(ValueError) as raised:
        TelemetryConfig.from_env({name: value})
    assert str(raised.value) == f"environment variable {name}={value!r}: expected {expected}"


@pytest.fixture
def fresh_warnings(monkeypatch, caplog):
    """Warnings not yet limited by an earlier test, captured."""
    monkeypatch.setattr(log, "_last_warned", {})
    caplog.set_level(logging.WARNING, logger="telemetry_otel")
    return caplog


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "telemetry_otel"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("OTEL_SDK_DISABLED", "yes", "true or false"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd", "gzip or none"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "a whole number of at least 1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml", "grpc, http/protobuf or http/json"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "localhost:4317",
            "a URL such as http://host:4318 (only OTLP/gRPC takes host:port)",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://h:21", "a URL such as http://host:4318"),
        (
            "OTEL_TRACES_SAMPLER",
            "jaeger_remote",
            "one of always_on, always_off, "
            "parentbased_always_on, parentbased_always_off, traceidratio, parentbased_traceidratio",
        ),
        ("OTEL_TRACES_EXPORTER", "zipkin", "a comma-separated list of otlp, console, none"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://h:port", "a URL such as http://host:4318"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "many", "a whole number of at least 1"),
    ],
)
def test_a_malformed_otel_variable_warns_once_naming_it_and_is_ignored(
    name, value, expected, fresh_warnings
):
    config = TelemetryConfig.from_env({name: value})
    assert config == TelemetryConfig.from_env({})
    assert config.endpoints() == []
    assert config._otlp_defaults == TelemetryConfig.from_env({})._otlp_defaults
    TelemetryConfig.from_env({name: value})  # a second collector: no second line
    assert _warnings(fresh_warnings) == [
        f"environment variable {name}={value!r}: expected {expected}; ignored"
    ]


def test_a_malformed_per_signal_otel_variable_leaves_the_generic_one_in_force(fresh_warnings):
    config = TelemetryConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "brotli",
        }
    )
    targets = _targets(config)
    assert targets["traces"].url == "http://collector:4318/v1/traces"
    assert {t.compression for t in targets.values()} == {"none"}
    assert len(_warnings(fresh_warnings)) == 2


def test_malformed_resource_attributes_warn_and_the_readable_pairs_still_apply(
    fresh_warnings, monkeypatch, make_collector, otlp_receiver
):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,api_token sk-9,=x")
    collector = make_collector(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    collector.collect_event(Event("e", "m"))
    assert collector.flush(10_000) is True
    [(resource, _)] = otlp_receiver.log_records()
    assert resource["team"] == "payments"
    ours = _warnings(fresh_warnings)
    assert ours == [
        "environment variable OTEL_RESOURCE_ATTRIBUTES='team=payments,***,=x': "
        "expected comma-separated key=value pairs; pairs that cannot be read are skipped"
    ]


def test_a_malformed_endpoint_variable_names_the_variable_and_the_problem():
    with pytest.raises(
        ValueError,
        match=r"^environment variable TELEMETRY_EXPORT_ENDPOINTS: export_endpoints: unknown endpoint 'ftp",
    ):
        TelemetryConfig.from_env({"TELEMETRY_EXPORT_ENDPOINTS": "console,ftp://h:1"})


def _targets(config):
    [endpoint] = config.endpoints()
    return config.otlp_targets(endpoint)


def test_a_generic_otlp_endpoint_gets_the_signal_paths_a_per_signal_one_is_used_as_given():
    config = TelemetryConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs.example.com/custom/ingest",
        }
    )
    assert {s: t.url for s, t in _targets(config).items()} == {
        "traces": "http://collector:4318/v1/traces",
        "metrics": "http://collector:4318/v1/metrics",
        "logs": "https://logs.example.com/custom/ingest",
    }
    assert {t.protocol for t in _targets(config).values()} == {"http"}


def test_a_per_signal_endpoint_alone_leaves_the_others_on_the_spec_default():
    config = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9999/x"})
    targets = _targets(config)
    assert (targets["traces"].url, targets["metrics"].url) == (
        "http://t:9999/x",
        "http://localhost:4318/v1/metrics",
    )


def test_otlp_protocol_headers_compression_timeout_and_certificate_per_signal():
    config = TelemetryConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_HEADERS": "Api-Key=a%3Db%2Cc,tenant=t1",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=traces-only",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
        }
    )
    traces, metrics, logs = (_targets(config)[s] for s in ("traces", "metrics", "logs"))
    assert (traces.protocol, traces.url) == ("grpc", "https://collector:4317")
    assert (metrics.protocol, metrics.url) == ("http", "https://collector:4317/v1/metrics")
    assert dict(metrics.headers) == {"api-key": "a=b,c", "tenant": "t1"}
    assert dict(traces.headers) == {"api-key": "traces-only"}
    assert (traces.compression, logs.compression) == ("none", "gzip")
    assert (traces.timeout_ms, logs.ca_file) == (2500, "/etc/ca.pem")


def test_otel_endpoints_are_ignored_when_endpoints_are_given_otherwise():
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert TelemetryConfig(export_endpoints=[]).with_env(environ).endpoints() == []
    with_telemetry = TelemetryConfig.from_env({**environ, "TELEMETRY_EXPORT_ENDPOINTS": "console"})
    assert [e.kind for e in with_telemetry.endpoints()] == ["console"]


def test_otel_settings_apply_to_string_endpoints_unless_the_string_or_config_says_otherwise():
    environ = {
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=from-env",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
    }
    plain = TelemetryConfig(export_endpoints=["http://h:4318"]).with_env(environ)
    assert (dict(_targets(plain)["traces"].headers), _targets(plain)["traces"].compression) == (
        {"api-key": "from-env"},
        "none",
    )
    explicit = TelemetryConfig(
        export_endpoints=["http://h:4318?compression=gzip"], headers={"api-key": "mine"}
    ).with_env(environ)
    assert (dict(_targets(explicit)["logs"].headers), _targets(explicit)["logs"].compression) == (
        {"api-key": "mine"},
        "gzip",
    )


def test_describe_says_where_each_value_came_from_and_masks_secrets():
    config = TelemetryConfig(buffer_size=10).with_env(
        {
            "TELEMETRY_SAMPLE_RATE": "0.5",
            "OTEL_SDK_DISABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20topsecret",
        }
    )
    text = config.describe()
    assert "buffer_size                10  (argument)" in text
    assert "sample_rate                0.5  (TELEMETRY_SAMPLE_RATE)" in text
    assert "enabled                    False  (OTEL_SDK_DISABLED)" in text
    assert "flush_interval_ms          5000  (default)" in text
    assert "endpoint OTEL_EXPORTER_OTLP_ENDPOINT" in text
    assert "headers={'authorization': '***'}" in text
    assert "topsecret" not in text


@pytest.mark.parametrize("switch", [{"OTEL_SDK_DISABLED": "TRUE"}, {"TELEMETRY_ENABLED": "false"}])
def test_the_operators_switch_turns_every_signal_off_over_code(switch, monkeypatch, otlp_receiver):
    for name, value in switch.items():
        monkeypatch.setenv(name, value)
    endpoint = f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"
    with TelemetryCollector(TelemetryConfig(enabled=True, export_endpoints=[endpoint])) as c:
        assert c.collect_metric(Metric("m", 1, MetricType.COUNTER)) is False
        assert c.collect_event(Event("e", "m")) is False
        assert c.collect_trace(Trace("t", "s", "op", 1.0)) is False
        with c.span("live") as span:
            assert not span.is_recording()
        assert c.flush(5_000) is True
        assert all(counts["collected"] == 0 for counts in c.stats().values())
        [line] = [x for x in c.config.describe().splitlines() if x.startswith("enabled ")]
        assert line.endswith(f"False  ({next(iter(switch))}, over code)")
    assert otlp_receiver.received == []


def test_otel_sdk_disabled_false_or_empty_leaves_code_in_charge(fresh_warnings):
    for value in ("false", "", "FALSE"):
        assert TelemetryConfig.from_env({"OTEL_SDK_DISABLED": value}).enabled is True
    assert TelemetryConfig(enabled=False).with_env({"TELEMETRY_ENABLED": "true"}).enabled is False
    assert _warnings(fresh_warnings) == []


# -- the SDK-wide variables operators set --------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "argument", "rate"),
    [
        ("always_on", None, 1.0),
        ("ALWAYS_OFF", None, 0.0),
        ("parentbased_always_off", None, 0.0),
        ("traceidratio", "0.25", 0.25),
        ("parentbased_traceidratio", "0.1", 0.1),
        ("traceidratio", None, 1.0),
    ],
)
def test_otel_traces_sampler_sets_the_trace_rate(sampler, argument, rate):
    environ = {"OTEL_TRACES_SAMPLER": sampler}
    if argument is not None:
        environ["OTEL_TRACES_SAMPLER_ARG"] = argument
    assert TelemetryConfig.from_env(environ).trace_sample_rate == rate


def test_telemetry_trace_sample_rate_beats_otel_traces_sampler_and_a_bad_argument_warns(
    fresh_warnings,
):
    environ = {"OTEL_TRACES_SAMPLER": "always_off", "TELEMETRY_TRACE_SAMPLE_RATE": "0.5"}
    assert TelemetryConfig.from_env(environ).trace_sample_rate == 0.5
    bad = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}
    assert TelemetryConfig.from_env(bad).trace_sample_rate == 1.0
    assert _warnings(fresh_warnings) == [
        "environment variable OTEL_TRACES_SAMPLER_ARG='half': expected a number between 0 "
        "and 1; ignored"
    ]


def test_an_always_off_sampler_stops_live_spans_from_recording(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with TelemetryCollector() as collector:
        with collector.span("request") as span:
            assert not span.is_recording()
        assert "(OTEL_TRACES_SAMPLER)" in collector.config.describe()


def test_otel_exporter_variables_choose_each_signal_s_destinations(
    monkeypatch, otlp_receiver, capsys
):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.http_port}")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    with TelemetryCollector() as collector:
        collector.collect_metric(Metric("orders", 1, MetricType.COUNTER))
        collector.collect_event(Event("e", "m"))
        collector.collect_trace(Trace("t", "s", "op", 1.0))
        assert collector.flush(10_000) is True
    assert sorted({r.signal for r in otlp_receiver.received}) == ["logs"]
    printed = [line.split()[1:3] for line in capsys.readouterr().out.splitlines()]
    assert printed == [["METRIC", "COUNTER"]]


def test_an_exporter_variable_alone_sends_to_the_specification_s_default_endpoint():
    config = TelemetryConfig.from_env({"OTEL_LOGS_EXPORTER": "otlp"})
    [endpoint] = config.endpoints()
    assert (endpoint.kind, endpoint.signals) == ("otlp", {"logs"})
    assert config.otlp_targets(endpoint)["logs"].url == "http://localhost:4318/v1/logs"
    # Endpoints the config names win over the variables.
    assert (
        TelemetryConfig(export_endpoints=["console"])
        .with_env({"OTEL_LOGS_EXPORTER": "otlp"})
        .endpoints()[0]
        .kind
        == "console"
    )


@pytest.mark.parametrize(("insecure", "scheme"), [("true", "http"), (None, "https")])
def test_a_grpc_endpoint_without_a_scheme_uses_tls_unless_insecure(insecure, scheme):
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    if insecure is not None:
        environ["OTEL_EXPORTER_OTLP_INSECURE"] = insecure
    config = TelemetryConfig.from_env(environ)
    [endpoint] = config.endpoints()
    assert {t.url for t in config.otlp_targets(endpoint).values()} == {f"{scheme}://collector:4317"}


def test_an_insecure_grpc_endpoint_without_a_scheme_delivers(monkeypatch, otlp_receiver):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"127.0.0.1:{otlp_receiver.grpc_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "TRUE")
    with TelemetryCollector() as collector:
        collector.collect_trace(Trace("t", "s", "op", 1.0))
        assert collector.flush(10_000) is True
    assert [r.transport for r in otlp_receiver.requests("traces")] == ["grpc"]


def test_enum_valued_otlp_protocol_is_read_in_any_case():
    config = TelemetryConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": " GRPC ",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "HTTP/Protobuf",
        }
    )
    targets = _targets(config)
    assert {s: t.protocol for s, t in targets.items()} == {
        "traces": "grpc",
        "metrics": "grpc",
        "logs": "http",
    }


@pytest.mark.parametrize(
    ("value", "exemplars", "warned"),
    [("ALWAYS_ON", 1, False), ("Always_Off", 0, False), ("bogus", 0, True)],
)
def test_the_exemplar_filter_variable_is_read_in_any_case_and_never_fails_start(
    value, exemplars, warned, monkeypatch, otlp_receiver, fresh_warnings
):
    collector = TelemetryCollector(
        TelemetryConfig(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"]).with_env(
            {"OTEL_METRICS_EXEMPLAR_FILTER": value}
        )
    )
    collector.start()  # the SDK alone raised ValueError here for ALWAYS_ON and bogus
    assert collector.collect_metric(Metric("jobs", 1, MetricType.COUNTER)) is True
    collector.stop(5000)
    [point] = [p for _, m in otlp_receiver.metrics() if m.name == "jobs" for p in m.sum.data_points]
    assert len(point.exemplars) == exemplars  # outside any span: only always_on samples
    expected = (
        [
            f"environment variable OTEL_METRICS_EXEMPLAR_FILTER={value!r}: "
            "expected one of trace_based, always_on, always_off; ignored"
        ]
        if warned
        else []
    )
    assert _warnings(fresh_warnings) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "1e309", " "])
def test_malformed_limit_variables_warn_and_never_fail_start(
    value, monkeypatch, otlp_receiver, fresh_warnings
):
    names = (
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
        "OTEL_SPAN_LINK_COUNT_LIMIT",
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
        # Not read by the collector (the generic limits apply), and never by the SDK.
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    )
    for name in names:
        monkeypatch.setenv(name, value)
    collector = TelemetryCollector(
        TelemetryConfig(export_endpoints=[f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"])
    )
    collector.start()  # the SDK alone raised ValueError for each of these
    with collector.span("job") as span:
        for n in range(3):
            span.add_event(f"step {n}")
        collector.collect_event(Event("e", "m", tags={"k": "v"}))
    collector.stop(5000)
    [(_, exported)] = otlp_receiver.spans()
    assert [e.name for e in exported.events] == ["step 0", "step 1", "step 2"]
    assert len(otlp_receiver.log_records()) == 1
    warned = {
        line.split("=", 1)[0].removeprefix("environment variable ")
        for line in _warnings(fresh_warnings)
    }
    assert warned == set(names[:6])


def test_a_start_that_fails_midway_leaves_no_callback_tracebacks(monkeypatch, caplog):
    from telemetry_otel._otel import pipeline

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(pipeline, "EventPipeline", fail)
    collector = TelemetryCollector(TelemetryConfig(export_endpoints=["console"]).with_env({}))
    with caplog.at_level(logging.DEBUG), pytest.raises(OSError, match="disk gone"):
        collector.start()
    assert [r.getMessage() for r in caplog.records if "Callback failed" in r.getMessage()] == []


@pytest.mark.parametrize("value", ["abc", "-1", "1e309"])
def test_a_malformed_span_attribute_limit_never_fails_the_import_or_the_start(value, otlp_receiver):
    # The SDK's tracing module reads this variable when imported, and raises for it.
    script = (
        "import os, sys\n"
        "from telemetry_otel import TelemetryCollector, TelemetryConfig\n"
        "config = TelemetryConfig(export_endpoints=[sys.argv[1]])\n"
        "with TelemetryCollector(config) as collector:\n"
        "    with collector.span('checkout'):\n"
        "        pass\n"
        "print(os.environ['OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, f"grpc://127.0.0.1:{otlp_receiver.grpc_port}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": value},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [value]  # the environment is left as it was
    assert [span.name for _, span in otlp_receiver.spans()] == ["checkout"]


def test_an_unknown_propagator_is_left_out_and_never_fails_the_import():
    # The API's propagation module loads every named propagator when imported, and
    # raises for one that is not installed.
    script = (
        "from telemetry_otel import TelemetryCollector, TelemetryConfig\n"
        "with TelemetryCollector(TelemetryConfig(export_endpoints=[])) as collector:\n"
        "    with collector.span('checkout'):\n"
        "        print(sorted(collector.inject_context({})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OTEL_PROPAGATORS": "tracecontext, b3multi ,baggage"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "['traceparent', 'tracestate']"
    assert (
        "OTEL_PROPAGATORS names propagators that are not installed, left out: b3multi "
        "(installed: baggage, tracecontext)" in result.stderr
    )
