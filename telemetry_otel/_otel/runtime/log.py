"""The library's logger, and warnings limited to one per reason per minute."""

from __future__ import annotations

import logging
import time
from typing import Any

from telemetry_otel._otel.runtime.forks import ForkSafeLock

logger = logging.getLogger("telemetry_otel")
WARNING_INTERVAL_S = 60.0
_last_warned: dict[str, float] = {}
_lock = ForkSafeLock()


# Keys remembered, and how much of a key (or of a name a line quotes) is kept: keys and
# lines built from what users and the network send (a 60 KB metric name) stay small.
_MAX_KEYS = 4096
_MAX_KEY = 200
SHOWN_CHARACTERS = 120


def shown(text: str) -> str:
    """A name or value as a log line quotes it: ``repr``, cut past 120 characters, saying
    how long it was."""
    if len(text) <= SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:SHOWN_CHARACTERS]!r}… ({len(text)} characters)"


def _short_key(key: str) -> str:
    return key if len(key) <= _MAX_KEY else f"{key[:_MAX_KEY]}#{hash(key):x}"


def _slot(key: str, now: float) -> str:
    """The key to limit a line by (under _lock): itself while fewer than _MAX_KEYS are
    remembered; past that, keys not logged within the last minute are forgotten (they
    would log again anyway), and a new key shares one overflow key, once a minute."""
    if key in _last_warned or len(_last_warned) < _MAX_KEYS:
        return key
    global _pruned_at
    if now - _pruned_at >= 1.0:
        _pruned_at = now
        for old in [k for k, at in _last_warned.items() if now - at >= WARNING_INTERVAL_S]:
            del _last_warned[old]
            _unreported.pop(old, None)
    return key if len(_last_warned) < _MAX_KEYS else _OVERFLOW_KEY


_pruned_at = -WARNING_INTERVAL_S
_OVERFLOW_KEY = "#overflow"


def warn_limited(key: str, message: str, *args: object, exc_info: Any = False) -> None:
    """Log a warning at most once a minute per ``key``: a failing path never floods the log."""
    key = _short_key(key)
    now = time.monotonic()
    last = _last_warned.get(key)
    if last is not None and now - last < WARNING_INTERVAL_S:
        return  # the usual answer on a failing hot path: no lock taken
    with _lock:
        key = _slot(key, now)
        last = _last_warned.get(key)
        if last is not None and now - last < WARNING_INTERVAL_S:
            return
        _last_warned[key] = now
    logger.warning(message, *args, exc_info=exc_info)


_unreported: dict[str, int] = {}


def report_loss(key: str, count: int, message: str, *args: object) -> None:
    """Log ``message % (*args, n)`` at most once a minute per ``key``, where n is every
    item counted under that key since its last line (this call's included).

    One line per endpoint and reason, however long an outage lasts, and it says how
    much the outage cost since the line before.
    """
    key = _short_key(key)
    with _lock:
        now = time.monotonic()
        key = _slot(key, now)
        total = _unreported.get(key, 0) + count
        last = _last_warned.get(key)
        if last is not None and now - last < WARNING_INTERVAL_S:
            _unreported[key] = total
            return
        _last_warned[key] = now
        _unreported[key] = 0
    logger.warning(message, *args, total)


_warned_once: set[str] = set()
_MAX_WARNED_ONCE = _MAX_KEYS


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning once per ``key`` for the life of the process (a bounded number of
    keys; past it, once a minute per key like warn_limited)."""
    key = _short_key(key)
    if key in _warned_once:
        return
    if len(_warned_once) < _MAX_WARNED_ONCE:
        _warned_once.add(key)
        logger.warning(message, *args)
    else:
        warn_limited(key, message, *args)


class _MaskedResourcePair(logging.Filter):
    """The SDK logs a malformed ``OTEL_RESOURCE_ATTRIBUTES`` pair as it is (``Invalid key
    value resource attribute pair db_password:S3cr3t``), from a ``Resource.create()`` it
    runs when ``opentelemetry.sdk._logs`` is imported: the pair may be a key and its
    secret with the ``=`` missing, so it is masked, as the library's own warning masks it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Invalid key value resource attribute pair") and (
            isinstance(record.args, tuple) and record.args
        ):
            record.args = ("***", *record.args[1:])
        return True


logging.getLogger("opentelemetry.sdk.resources").addFilter(_MaskedResourcePair())
