"""StatsD and DogStatsD lines, parsed: metrics, events and service checks.

Packets come from the network: every line is checked, nothing in one can raise anything
but Malformed, and a malformed line never costs the packet's other lines. The formats:

- metric: ``name:value[:value...]|type[|@rate][|#tag:value,tag][|c:container]
  [|e:external][|card:cardinality][|Tts]``, type ``c`` (counter; a negative value is a
  decrement), ``g`` (gauge; a ``+`` or ``-`` sign makes the value a change), ``ms``,
  ``h``, ``d`` (timer, histogram, distribution) or ``s`` (set);
- event: ``_e{title_length,text_length}:title|text[|d:ts][|h:host][|k:key][|p:priority]
  [|s:source][|t:alert_type][|#tags][|c:container][|e:external][|card:cardinality]``,
  lengths in UTF-8 bytes;
- service check: ``_sc|name|status[|d:ts][|h:host][|#tags][|m:message][|c:container]
  [|e:external][|card:cardinality]``, status 0 to 3.

The origin fields current DogStatsD clients add (``c:`` when origin detection finds a
container, ``e:`` when the Datadog admission controller sets ``DD_EXTERNAL_ENV``,
``card:`` when a cardinality is set) become the OpenTelemetry attributes that name
the same things: ``container.id``; from the external data, ``container.name``
(``cn-``) and ``k8s.pod.uid`` (``pu-``). ``card:`` (a hint for the Datadog Agent's
tagger) and a metric's ``T`` timestamp (OpenTelemetry instruments take none: the
value counts when it arrives) are read and not carried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

METRIC_TYPES = frozenset(("c", "g", "ms", "h", "d", "s"))
# A sampled line stands for 1/rate measurements: below this rate one packet could
# set a histogram's count past what OTLP carries, or cost a core to record.
MIN_SAMPLE_RATE = 1e-6
# DogStatsD's alert types and service check statuses, as event severities.
ALERT_SEVERITIES = {"error": "error", "warning": "warning", "info": "info", "success": "info"}
CHECK_SEVERITIES = {0: "info", 1: "warning", 2: "error", 3: "warning"}
CHECK_STATUSES = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}


class Malformed(ValueError):
    """A line that is not StatsD or DogStatsD; says why, never echoing much of it."""


@dataclass(frozen=True)
class MetricLine:
    name: str
    kind: str
    values: tuple[float, ...] = ()
    rate: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    # Gauges: the values change the last one (a leading + or -).
    relative: bool = False
    # Sets: the members, as sent.
    members: tuple[str, ...] = ()
    # Where it came from (container.id, container.name, k8s.pod.uid), as attributes.
    origin: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventLine:
    title: str
    text: str
    severity: str
    tags: dict[str, str]
    timestamp: float | None
    fields: dict[str, str]
    origin: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckLine:
    name: str
    status: int
    message: str
    tags: dict[str, str]
    timestamp: float | None
    fields: dict[str, str]
    origin: dict[str, str] = field(default_factory=dict)


Line = MetricLine | EventLine | CheckLine


def parse_packet(packet: bytes) -> tuple[list[Line], int]:
    """The lines of one UDP packet that parse, and how many did not."""
    try:
        text = packet.decode("utf-8")
    except UnicodeDecodeError:
        return [], 1
    lines: list[Line] = []
    malformed = 0
    for raw in text.split("\n"):
        raw = raw.strip("\r")
        if not raw.strip():
            continue
        try:
            lines.append(parse_line(raw))
        except Malformed:
            malformed += 1
    return lines, malformed


def parse_line(line: str) -> Line:
    if line.startswith("_e{"):
        return _event(line)
    if line.startswith("_sc|"):
        return _check(line)
    return _metric(line)


def _metric(line: str) -> MetricLine:
    head, sep, rest = line.partition("|")
    name, colon, packed = head.partition(":")
    if not sep or not colon or not name.strip() or not packed:
        raise Malformed("not name:value|type")
    kind, *sections = rest.split("|")
    if kind not in METRIC_TYPES:
        raise Malformed(f"unknown metric type {kind[:10]!r}")
    rate, tags = 1.0, {}
    origin: dict[str, str] = {}
    for section in sections:
        if section.startswith("@"):
            rate = _number(section[1:], "sample rate")
            if not MIN_SAMPLE_RATE <= rate <= 1.0:
                raise Malformed(f"sample rate outside [{MIN_SAMPLE_RATE:g}, 1]")
        elif section.startswith("#"):
            tags = _tags(section[1:])
        elif section.startswith(_ORIGIN_PREFIXES):
            _add_origin(origin, section)
        elif section.startswith("T"):
            _number(section[1:], "timestamp")  # checked, not carried
        elif section:
            raise Malformed("unknown section")
    raw_values = packed.split(":")
    if kind == "s":
        return MetricLine(
            name, kind, rate=rate, tags=tags, members=tuple(raw_values), origin=origin
        )
    relative = kind == "g" and raw_values[0][:1] in ("+", "-")
    values = tuple(_number(v, "value") for v in raw_values)
    if not math.isfinite(sum(values) / rate):
        raise Malformed("the values over the sample rate are not finite")
    return MetricLine(name, kind, values, rate, tags, relative, origin=origin)


def _event(line: str) -> EventLine:
    lengths, colon, rest = line[3:].partition("}:")
    title_length, comma, text_length = lengths.partition(",")
    if not colon or not comma:
        raise Malformed("not _e{title,text}:")
    title_bytes, text_bytes = (
        int(_number(title_length, "title length")),
        int(_number(text_length, "text length")),
    )
    body = rest.encode("utf-8")
    if title_bytes < 1 or text_bytes < 0 or len(body) < title_bytes + 1 + text_bytes:
        raise Malformed("event lengths do not match")
    title = _utf8(body[:title_bytes])
    if body[title_bytes : title_bytes + 1] != b"|":
        raise Malformed("event lengths do not match")
    text = _utf8(body[title_bytes + 1 : title_bytes + 1 + text_bytes]).replace("\\n", "\n")
    fields, tags, timestamp, origin = _trailer(_utf8(body[title_bytes + 1 + text_bytes :]))
    severity = ALERT_SEVERITIES.get(fields.get("t", "info"))
    if severity is None:
        raise Malformed("unknown alert type")
    return EventLine(title, text, severity, tags, timestamp, fields, origin)


def _check(line: str) -> CheckLine:
    _, name, status_text, *sections = line.split("|")
    if not name.strip():
        raise Malformed("a service check needs a name")
    if status_text not in ("0", "1", "2", "3"):
        raise Malformed("service check status is not 0 to 3")
    fields, tags, timestamp, origin = _trailer("|" + "|".join(sections) if sections else "")
    message = fields.pop("m", "").replace("\\n", "\n")
    return CheckLine(name, int(status_text), message, tags, timestamp, fields, origin)


def _trailer(
    text: str,
) -> tuple[dict[str, str], dict[str, str], float | None, dict[str, str]]:
    """An event's or check's ``|x:value`` fields, tags, timestamp and origin."""
    fields: dict[str, str] = {}
    tags: dict[str, str] = {}
    origin: dict[str, str] = {}
    if text and not text.startswith("|"):
        raise Malformed("event lengths do not match")
    for section in text.split("|")[1:]:
        if section.startswith("#"):
            tags = _tags(section[1:])
        elif section.startswith(_ORIGIN_PREFIXES):
            _add_origin(origin, section)
        elif section[1:2] == ":" and section[:1] in "dhkpstm":
            fields[section[0]] = section[2:]
        elif section:
            raise Malformed("unknown section")
    timestamp = None
    if "d" in fields:
        timestamp = _number(fields.pop("d"), "timestamp")
        if not 0 <= timestamp <= 2**63 / 1e9:
            raise Malformed("timestamp out of range")
    return fields, tags, timestamp, origin


_ORIGIN_PREFIXES = ("c:", "e:", "card:")
# The parts of DogStatsD's external data (``e:it-false,cn-nginx,pu-<uid>``) that
# OpenTelemetry has a name for; ``it-`` (an init container or not) has none.
_EXTERNAL_DATA = {"cn-": "container.name", "pu-": "k8s.pod.uid"}


def _add_origin(origin: dict[str, str], section: str) -> None:
    """A ``c:``, ``e:`` or ``card:`` section, as the attributes it names."""
    if section.startswith("card:"):
        return  # the Datadog Agent's tagger cardinality: nothing to carry
    value = section[2:]
    if section.startswith("c:"):
        if value:
            origin["container.id"] = value
        return
    for part in value.split(","):
        for prefix, attribute in _EXTERNAL_DATA.items():
            if part.startswith(prefix) and len(part) > len(prefix):
                origin[attribute] = part[len(prefix) :]


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in text.split(","):
        key, _, value = tag.partition(":")
        if key:
            tags[key] = value
    return tags


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Malformed(f"{what} is not a number") from None
    if not math.isfinite(value):
        raise Malformed(f"{what} is not finite")
    return value


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("lengths cut a character in two") from None
