"""The OpenTelemetry side: the only package that imports the SDK, with the CLI's tools.

Layers, each importing only those below it: ``runtime`` (logger, forks, threads),
``mapping`` (legacy models to OTel data), ``sampling``, ``delivery`` (queues, accounting,
OTLP sending, the spool), ``destinations`` (one per endpoint), and ``pipeline``, which
composes them for one collector.
"""
