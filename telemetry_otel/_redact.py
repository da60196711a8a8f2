"""Masking of credentials wherever configuration is shown (repr, describe, errors, logs)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from itertools import pairwise
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry credentials in exporter URLs.
# "sig" alone (SAS tokens) but not inside "signals", this library's own option.
_SECRET_PARAMETER = re.compile(
    r"pass|secret|token|key|auth|signature|^sig$|session|cookie|credential", re.IGNORECASE
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
            [(k, MASK if _SECRET_PARAMETER.search(k) else v) for k, v in pairs], safe="*/,"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


REDACTED = "[REDACTED]"
# Words (or two adjacent words run together) that mark a key as holding a secret.
# Whole words only, so that short ones stay safe: "pin" would not hit "spinner".
SENSITIVE_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "authorization",
        "auth",
        "cookie",
        "session",
        "creditcard",
        "ssn",
        "privatekey",
        "passphrase",
        "credential",
        "jwt",
        "bearer",
        "signature",
        "dsn",
        "connectionstring",
        "databaseurl",
        "cvv",
        "iban",
    }
)
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def key_words(key: str) -> list[str]:
    """A key split into lowercase words: ``x-api-key`` and ``xApiKey`` give x, api, key."""
    return [word.lower() for word in _WORD.findall(key)]


def is_sensitive(key: str, words: frozenset[str] = SENSITIVE_WORDS) -> bool:
    """True when a word of the key, or two adjacent words joined, is a sensitive word.

    Matching whole words keeps ``author`` and ``classname`` readable while
    ``authToken``, ``x-api-key`` and ``credit_card_number`` are masked.
    """
    parts = key_words(key)
    if any(part in words or (part[-1:] == "s" and part[:-1] in words) for part in parts):
        return True
    return any(a + b in words for a, b in pairwise(parts))


def split_credentials(url: str) -> tuple[str, str | None]:
    """A URL without its ``user:password@`` part, and that part as a Basic authorization value.

    Exporters then never hold credentials in a URL, which their errors and logs print.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(
        (parts.scheme, host, parts.path, parts.query, parts.fragment)
    ), f"Basic {token}"


def mask_pairs(text: str) -> str:
    """``k=v,k2=v2`` as a variable holds it, with the values of sensitive keys masked,
    and any item without ``=`` masked whole: it may be a key and its secret with the
    separator missing."""
    shown = []
    for item in text.split(","):
        key, sep, _ = item.partition("=")
        if not sep:
            shown.append(item if not item.strip() else MASK)
        else:
            shown.append(f"{key}={MASK}" if is_sensitive(unquote(key.strip())) else item)
    return ",".join(shown)


def mask_tags(
    tags: Mapping[str, object], words: frozenset[str] = SENSITIVE_WORDS
) -> dict[str, object]:
    """Tags as repr() and describe() show them: sensitive keys' values masked, as export
    redacts them."""
    return {k: REDACTED if is_sensitive(str(k), words) else v for k, v in tags.items()}


# RFC 9110 token characters: what a header (or gRPC metadata) name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header_problem(name: object, value: object) -> str | None:
    """What is wrong with one header, in words that never quote the value (headers carry
    credentials: an API key read from a file with its newline, say); None when fine."""
    if not isinstance(name, str) or not isinstance(value, str):
        return "names and values must be str"
    if not _HEADER_NAME.fullmatch(name):
        return "its name must be letters, digits and -._~!#$%&'*+^`| only"
    if any(c in value for c in "\r\n\0"):
        return "its value holds a line break or NUL (a value read from a file with its newline?)"
    if value != value.strip():
        return "its value starts or ends with white space"
    return None


# A header value shorter than this is no secret worth masking in a server's message (a
# tenant "a" would mask every "a").
_MIN_SECRET = 4


def header_secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    """What a server's answer may echo of the headers sent: each value, the credential
    after its scheme (``Bearer t0k3n``), and a Basic credential decoded, whole and its
    password; longest first, so that a secret inside another is masked with it."""
    found: set[str] = set()
    for value in headers.values():
        found.add(value)
        scheme, _, credential = value.partition(" ")
        if credential:
            found.add(credential.strip())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential.strip(), validate=True).decode()
            except ValueError:  # not base64, or not UTF-8: nothing more to find
                continue
            found.update((decoded, decoded.partition(":")[2]))
    return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True))


def mask_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret masked, and a secret's start where a cut line ends
    with it (``one_line`` cuts a server's message, perhaps inside a secret)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    if text.endswith("…"):
        for secret in secrets:
            for length in range(len(secret) - 1, _MIN_SECRET - 1, -1):
                if text[:-1].endswith(secret[:length]):
                    return text[: -1 - length] + MASK + "…"
    return text
