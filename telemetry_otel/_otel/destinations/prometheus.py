"""The ``prometheus://host:port`` endpoint: a /metrics page through the OTel Prometheus reader.

Imported only for that endpoint: the reader comes with the optional ``prometheus`` extra.
"""

from __future__ import annotations

from telemetry_otel._endpoints import Endpoint
from telemetry_otel._otel.destinations.destination import Destination


def prometheus_destination(
    name: str, endpoint: Endpoint, cardinality_limits: dict[type, int]
) -> Destination:
    """A reader on its own registry, served on the endpoint's host and port."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    host, _, port = endpoint.url.rpartition(":")
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry, cardinality_limits=cardinality_limits)
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)

    def stop_serving() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return Destination(name, metric_reader=reader, closers=[stop_serving])
