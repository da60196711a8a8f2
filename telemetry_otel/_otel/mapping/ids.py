"""Legacy string ids to OpenTelemetry trace and span ids, and back.

Ids that already are W3C ids (32 / 16 lowercase hex digits, not all zero) are
used as they are. Any other string is hashed with SHA-256, which every process
and every language reproduces (Python's hash() differs between processes), so a
child span links to a parent that another process collects later.
"""

from __future__ import annotations

import re
from functools import lru_cache
from hashlib import sha256

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
# A trace's spans, and a parent's children, arrive close together: hashing their
# shared id costs more than a cache hit.
_CACHE_SIZE = 8192


def _sha256(text: str) -> bytes:
    # surrogatepass: a lone surrogate cannot be UTF-8, but it must never make
    # collect_trace raise; no other language can produce such a string anyway.
    return sha256(text.encode("utf-8", "surrogatepass")).digest()


@lru_cache(maxsize=_CACHE_SIZE)
def otel_trace_id(legacy_trace_id: str) -> int:
    """Return the 128-bit trace id for a legacy trace id."""
    if len(legacy_trace_id) == 32 and _HEX32.fullmatch(legacy_trace_id):
        value = int(legacy_trace_id, 16)
        if value:
            return value
    return int.from_bytes(_sha256(legacy_trace_id)[:16], "big") or 1


def otel_span_id(legacy_trace_id: str, legacy_span_id: str) -> int:
    """Return the 64-bit span id for a legacy span id within its legacy trace.

    Not cached: a span's own id is seen once (a parent's context is cached where
    spans are built).
    """
    if len(legacy_span_id) == 16 and _HEX16.fullmatch(legacy_span_id):
        value = int(legacy_span_id, 16)
        if value:
            return value
    # UTF-8 of trace_id, a zero byte, UTF-8 of span_id: one encoding of the joined text.
    text = f"{legacy_trace_id}\0{legacy_span_id}".encode("utf-8", "surrogatepass")
    return int.from_bytes(sha256(text).digest()[:8], "big") or 1
