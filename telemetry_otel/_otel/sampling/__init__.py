"""Sampling: consistent-probability decisions, tail rules for legacy traces, a rate limit.

Every decision follows the OpenTelemetry specification's consistent probability
sampling (https://opentelemetry.io/docs/specs/otel/trace/tracestate-probability-sampling/):
a trace is kept at probability ``p`` when the low 56 bits of its trace id (its
randomness) are at least the threshold ``2**56 - round(p * 2**56)``, and a kept span
carries that threshold as ``th`` in the ``ot`` entry of its W3C tracestate, so any
process, collector or backend can reproduce the decision and scale counts back up.
Live spans use the SDK's composite samplers, which SDK 1.45 keeps in a private,
experimental package: if a release moves it, live spans fall back to the SDK's
ParentBased(TraceIdRatioBased) sampler, with a warning, and the library still imports.
"""
