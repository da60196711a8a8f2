"""Legacy models to OpenTelemetry data and back.

Spans, log records, measurements, ids, the resource, and spans as OTLP messages.
"""
