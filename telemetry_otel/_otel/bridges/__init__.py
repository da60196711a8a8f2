"""Other metric sources bridged in: prometheus_client registries and StatsD packets."""
