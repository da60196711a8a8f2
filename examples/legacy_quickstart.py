"""The legacy bootstrap README's quick start, verbatim but for the two import lines."""

from telemetry_otel import TelemetryCollector, Metric, Event, Trace, TelemetryConfig
from telemetry_otel.models import MetricType, EventSeverity

# Configure telemetry
config = TelemetryConfig(
    enabled=True,
    buffer_size=1000,
    flush_interval_ms=5000,
    sample_rate=1.0,
    tags={"environment": "production", "version": "1.0.0"}
)

# Create and start collector
collector = TelemetryCollector(config)
collector.start()

# Register an exporter (e.g., send to monitoring service)
def my_exporter(data_type, data):
    print(f"Exporting {data_type}: {data.to_dict()}")

collector.register_exporter(my_exporter)

# Collect metrics
metric = Metric(
    name="api_response_time",
    value=125.5,
    metric_type=MetricType.HISTOGRAM,
    tags={"endpoint": "/api/users", "method": "GET"}
)
collector.collect_metric(metric)

# Collect events
event = Event(
    name="user_action",
    message="User completed checkout",
    severity=EventSeverity.INFO,
    metadata={"user_id": "12345", "amount": 99.99}
)
collector.collect_event(event)

# Collect traces
trace = Trace(
    trace_id="trace-abc-123",
    span_id="span-001",
    operation="process_payment",
    duration_ms=234.5,
    tags={"payment_method": "credit_card"}
)
collector.collect_trace(trace)

# Stop collector when done
collector.stop()
