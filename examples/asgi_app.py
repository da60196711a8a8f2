"""An ASGI service whose lifespan starts and stops the collector without blocking the loop.

Run it under any ASGI server, for example ``uvicorn examples.asgi_app:app``, with the
destinations in the environment (``TELEMETRY_EXPORT_ENDPOINTS=console``). Every request
is a live span with a counter inside; ``/flush`` waits for the export off the event
loop (``aflush``), so the other requests are served meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telemetry_otel import Metric, MetricType, TelemetryCollector, TelemetryConfig

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

collector = TelemetryCollector(TelemetryConfig(service_name="asgi-demo"))


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await handle(scope, send)


async def lifespan(receive: Receive, send: Send) -> None:
    await receive()  # lifespan.startup
    async with collector:  # start(), and astop() when the server shuts down
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
    await send({"type": "lifespan.shutdown.complete"})


async def handle(scope: dict[str, Any], send: Send) -> None:
    path = scope["path"]
    with collector.span(f"{scope['method']} {path}", tags={"http.route": path}):
        collector.collect_metric(Metric("requests", 1, MetricType.COUNTER, tags={"path": path}))
        body = b"ok\n"
        if path == "/flush":
            body = f"{await collector.aflush()}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})
