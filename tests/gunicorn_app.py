"""A WSGI app for the gunicorn tests: each request adds 1 to the counter "requests".

Its collector takes its destinations from the environment. With ``APP_START=master``
(run with ``--preload``) it starts when the master imports this module, before the
fork; otherwise each worker starts it after the fork (``tests/gunicorn_conf.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from telemetry_otel import Metric, MetricType, TelemetryCollector, TelemetryConfig

collector = TelemetryCollector(TelemetryConfig(service_name="wsgi"))
if os.environ.get("APP_START") == "master":
    collector.start()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    collector.collect_metric(Metric("requests", 1, MetricType.COUNTER))
    collector.collect_metric(Metric("worker_pid", os.getpid(), MetricType.GAUGE))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
