"""From the SDK's processors to each destination: queues, accounting, OTLP sending, the spool."""
