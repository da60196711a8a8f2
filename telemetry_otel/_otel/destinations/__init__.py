"""One destination per endpoint: OTLP, console, files, Prometheus."""
