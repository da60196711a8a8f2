"""The only package that imports the OpenTelemetry SDK."""
