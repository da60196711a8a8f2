"""Masking of credentials wherever configuration is shown (repr, describe, errors, logs)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry credentials in exporter URLs.
_SECRET_PARAMETER = re.compile(
    r"pass|secret|token|key|auth|sig|session|cookie|credential", re.IGNORECASE
)


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names kept, every value masked: OTLP headers are how backends take API keys."""
    return dict.fromkeys(headers, MASK)


def mask_url(text: str) -> str:
    """A URL with its password and credential-like query values masked."""
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if _SECRET_PARAMETER.search(k) else v) for k, v in pairs], safe="*/"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
