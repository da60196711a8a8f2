"""Makes items safe to export: secrets redacted, sizes limited, text encodable.

Runs on every collected item before any exporter or callback sees it. The
common case (short values, few keys, nothing sensitive) returns the caller's
dict untouched; only an item that needs a change is copied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from telemetry_otel._redact import REDACTED, SENSITIVE_WORDS, is_sensitive

# Metadata nested deeper than this is replaced: each level costs three protobuf
# message levels, and decoders refuse messages nested past 100 (upb) levels.
MAX_DEPTH = 16
TOO_DEEP = "[TOO DEEP]"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` with lone surrogates replaced: protobuf refuses them, and would drop the batch."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


class Shaper:
    """Applies one config's redaction and limits; ``limited`` says whether the last call cut."""

    def __init__(
        self,
        redact: bool,
        extra_keys: list[str],
        max_attributes: int,
        max_length: int | None,
    ) -> None:
        words = SENSITIVE_WORDS | {"".join(key.lower().split()) for key in extra_keys}
        self._sensitive = lru_cache(maxsize=4096)(
            (lambda key: is_sensitive(key, words)) if redact else (lambda key: False)
        )
        # Keys that need no change (ASCII, not sensitive): one cached call per key.
        self._plain_key = lru_cache(maxsize=4096)(
            lambda key: key.isascii() and not self._sensitive(key)
        )
        self.max_attributes = max_attributes
        self.max_length = max_length
        self._max_length = max_length if max_length is not None else 2**62

    def text(self, value: str) -> tuple[str, bool]:
        """A name or message: cut to the length limit and made encodable."""
        if len(value) > self._max_length:
            return encodable(value[: self._max_length]), True
        return encodable(value), False

    def is_short_ascii(self, value: str) -> bool:
        """Whether ``text(value)`` would return ``value`` as it is, for most text:
        the cheap test before the full one."""
        return len(value) <= self._max_length and value.isascii()

    def attributes(
        self, attributes: Mapping[str, Any], reserved: int = 0
    ) -> tuple[Mapping[str, Any], bool]:
        """Attributes (tags, or tags and metadata together) redacted and limited.

        ``reserved`` attribute places are kept for attributes the caller adds after.
        """
        room = self.max_attributes - reserved
        if self._is_clean(attributes, room):
            return attributes, False
        limited = len(attributes) > room
        shaped: dict[str, Any] = {}
        for key, value in attributes.items():
            if len(shaped) >= room:
                break
            key = encodable(key)
            if self._sensitive(key):
                shaped[key] = REDACTED
                continue
            shaped[key], cut = self._value(value, 0)
            limited = limited or cut
        return shaped, limited

    def _is_clean(self, attributes: Mapping[str, Any], room: int) -> bool:
        if len(attributes) > room:
            return False
        plain_key, max_length = self._plain_key, self._max_length
        for key, value in attributes.items():
            if not plain_key(key):
                return False
            kind = type(value)
            if kind is str:
                if len(value) > max_length or not value.isascii():
                    return False
            elif kind is not int and kind is not float and kind is not bool:
                return False
        return True

    def _value(self, value: Any, depth: int) -> tuple[Any, bool]:
        """Any value as one OTLP can carry (AnyValue): nesting kept, anything else as text."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            # Cut like text, counted in bytes: one 6 MB value would fill a request alone.
            limit = self._max_length
            return (value[:limit], True) if len(value) > limit else (value, False)
        if value is None or isinstance(value, (bool, float)):
            return value, False
        if isinstance(value, int):
            return (value, False) if _INT64_MIN <= value <= _INT64_MAX else self.text(str(value))
        if not isinstance(value, (Mapping, list, tuple)):
            return self.text(str(value))
        if depth >= MAX_DEPTH:
            return TOO_DEEP, True
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        # A list keeps its first max_attributes entries, as a nested map does.
        items = [self._value(item, depth + 1) for item in value[: self.max_attributes]]
        cut = len(value) > self.max_attributes or any(cut for _, cut in items)
        return [item for item, _ in items], cut

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> tuple[dict[str, Any], bool]:
        shaped: dict[str, Any] = {}
        limited = False
        # Bounded by the entries read, not the keys kept: a mapping whose items() yields
        # one key for ever would keep this loop going with nothing new to keep.
        for read, (key, item) in enumerate(value.items()):
            if read >= self.max_attributes:
                return shaped, True
            key = encodable(str(key))
            if self._sensitive(key):
                shaped[key] = REDACTED
                continue
            shaped[key], cut = self._value(item, depth + 1)
            limited = limited or cut
        return shaped, limited
