"""OTLP/JSON: export requests and responses as the OTLP specification writes them in
JSON (proto3 JSON, with trace and span ids in hex, enums as integers, 64-bit integers as
strings). The ``file://`` endpoint, ``receive --jsonl`` and OTLP/HTTP with ``http/json``
all write it from here."""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToJson, Parse
from google.protobuf.message import Message

_ID_KEYS = frozenset(("traceId", "spanId", "parentSpanId"))
M = TypeVar("M", bound=Message)


def to_otlp_json(request: Message) -> str:
    """One message as a single line of OTLP JSON."""
    data = json.loads(MessageToJson(request, use_integers_for_enums=True, indent=None))
    # ASCII only: raw U+2028 or U+0085 inside a string would split the line for readers
    # that split on every Unicode line break.
    return json.dumps(_ids(data, _to_hex), separators=(",", ":"))


def from_otlp_json(text: str | bytes, message_type: type[M]) -> M:
    """A message from OTLP JSON (unknown fields skipped, as the specification asks of
    receivers); ValueError when it is not one."""
    try:
        data = json.loads(text)
        return Parse(json.dumps(_ids(data, _to_base64)), message_type(), ignore_unknown_fields=True)
    except (ValueError, TypeError) as error:  # json_format.ParseError is a ValueError
        raise ValueError(f"not OTLP JSON: {error}") from None


def _to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _to_base64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def _ids(value: Any, convert: Any) -> Any:
    """Every trace and span id in ``value`` converted, in place (proto3 JSON writes
    bytes in base64, OTLP JSON ids in hex)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str):
                value[key] = convert(item)
            else:
                _ids(item, convert)
    elif isinstance(value, list):
        for item in value:
            _ids(item, convert)
    return value
