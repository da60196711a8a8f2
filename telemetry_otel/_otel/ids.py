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
# Most services reuse a working set of trace and span ids for a while (a trace's
# spans arrive together); hashing costs more than a cache hit.
_CACHE_SIZE = 8192


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate cannot be UTF-8, but it must never make
    # collect_trace raise; no other language can produce such a string anyway.
    return text.encode("utf-8", "surrogatepass")


@lru_cache(maxsize=_CACHE_SIZE)
def otel_trace_id(legacy_trace_id: str) -> int:
    """Return the 128-bit trace id for a legacy trace id."""
    if len(legacy_trace_id) == 32 and _HEX32.fullmatch(legacy_trace_id):
        value = int(legacy_trace_id, 16)
        if value:
            return value
    return int.from_bytes(sha256(_utf8(legacy_trace_id)).digest()[:16], "big") or 1


@lru_cache(maxsize=_CACHE_SIZE)
def otel_span_id(legacy_trace_id: str, legacy_span_id: str) -> int:
    """Return the 64-bit span id for a legacy span id within its legacy trace."""
    if len(legacy_span_id) == 16 and _HEX16.fullmatch(legacy_span_id):
        value = int(legacy_span_id, 16)
        if value:
            return value
    digest = sha256(_utf8(legacy_trace_id) + b"\0" + _utf8(legacy_span_id)).digest()
    return int.from_bytes(digest[:8], "big") or 1
