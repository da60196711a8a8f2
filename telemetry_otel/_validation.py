"""How the models check what they are given: every failure a TypeError or ValueError that
names the model, the field and the (shortened) value, whatever the user objects do."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from telemetry_otel._redact import is_sensitive

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Timestamps travel as unsigned 64-bit nanoseconds but several encoders treat
# them as signed, so the project keeps them below 2**63 ns.
_MAX_EPOCH_SECONDS = (2**63 - 1) / 1e9
# https://opentelemetry.io/docs/specs/otel/metrics/api/#instrument-name-syntax


def _fail_type(owner: str, name: str, expected: str, value: object) -> TypeError:
    return TypeError(f"{owner}.{name} must be {expected}, got {_shown(value)}")


def _fail_value(owner: str, name: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{owner}.{name} must be {expected}, got {_shown(value)}")


def _shown(value: object, limit: int = 200) -> str:
    """A value's repr for an error message: cut short, and never the error itself
    (a user object's __repr__ may raise)."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object whose repr() failed>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unreadable(owner: str, error: Exception) -> TypeError:
    """A user object raised something else while a model read it: only TypeError and
    ValueError ever leave a model's constructor."""
    return TypeError(f"{owner}: a field could not be read: {type(error).__name__}"[:300])


M = TypeVar("M", bound="_Checked")


class _Fresh:
    """The default of a model's dict and timestamp fields: a new dict, or now."""

    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses show a default_factory


FRESH: Any = _Fresh()


class _Checked:
    """A model checked when built, from which only TypeError and ValueError escape,
    whatever the user objects it is given do when read.

    The models write their ``__init__`` out, checks included. A dataclass that
    subclasses one gets a generated ``__init__``; its ``__post_init__`` runs the
    model's own ``__init__`` again on the fields it set, so it is checked the same.
    """

    @classmethod
    def _trusted(cls: type[M], fields: dict[str, Any]) -> M:
        """A model from fields that passed these checks already (a copy of a checked
        model, or one read back from what was built from it): no ``__init__``, which
        costs more than the rest of the callback path. The one place that skips them."""
        model = cls.__new__(cls)
        model.__dict__ = fields
        return model

    def __post_init__(self) -> None:
        model = next(
            c for c in type(self).__mro__ if "__init__" in c.__dict__ and _Checked in c.__bases__
        )
        names = model.__dataclass_fields__  # type: ignore[attr-defined]
        model.__init__(self, **{name: getattr(self, name) for name in names})  # type: ignore[misc]


def _plain(owner: str, name: str, mapping: object) -> dict[str, Any]:
    """A dict subclass as a plain dict, read without its own (possibly hostile) methods."""
    if not isinstance(mapping, dict):
        raise _fail_type(owner, name, "a dict", mapping)
    return dict(dict.items(mapping))


def _check_text(owner: str, name: str, value: object) -> None:
    if type(value) is not str and not isinstance(value, str):
        raise _fail_type(owner, name, "a str", value)
    if not value:
        raise _fail_value(owner, name, "a non-empty string", value)


def _check_number(owner: str, name: str, value: object) -> None:
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _fail_value(owner, name, "a finite number", value)
    elif kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise _fail_value(owner, name, "an integer within signed 64 bits", value)
    elif kind is bool or not isinstance(value, (int, float)):
        raise _fail_type(owner, name, "an int or float (not bool)", value)
    else:  # int and float subclasses, numpy scalars that subclass them
        _check_number(owner, name, float(value) if isinstance(value, float) else int(value))


def _check_timestamp(owner: str, name: str, value: object) -> None:
    _check_number(owner, name, value)
    if not 0 <= value <= _MAX_EPOCH_SECONDS:  # type: ignore[operator]
        raise _fail_value(owner, name, "epoch seconds between 0 and 2**63 ns", value)


def _checked_tags(owner: str, tags: object) -> dict[str, Any]:
    """A model's tags argument as a plain dict, checked.

    The common case (a dict of non-empty str keys and str, bool, float or int64
    values) is checked here in one loop; anything else takes the full check, which
    names the problem.
    """
    if type(tags) is dict:
        for key, value in tags.items():
            kind = type(value)
            if not (
                type(key) is str
                and key
                and (
                    kind is str
                    or kind is float
                    or kind is bool
                    or (kind is int and _INT64_MIN <= value <= _INT64_MAX)
                )
            ):
                _check_tags(owner, "tags", tags)
                break
        return tags
    plain = _plain(owner, "tags", tags)
    _check_tags(owner, "tags", plain)
    return plain


def _check_tags(owner: str, name: str, tags: object) -> None:
    if not isinstance(tags, dict):
        raise _fail_type(owner, name, "a dict", tags)
    for key, value in dict.items(tags):
        if type(key) is not str:
            raise _fail_type(owner, f"{name} key", "a str", key)
        if not key:
            raise _fail_value(owner, f"{name} key", "a non-empty string", key)
        kind = type(value)
        if kind is str or kind is bool or kind is float:
            continue
        shown = _Withheld(value) if is_sensitive(key) else value
        if kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _fail_value(owner, f"{name}[{key!r}]", "within signed 64 bits", shown)
            continue
        raise _fail_type(owner, f"{name}[{key!r}]", "a str, int, float or bool", shown)


class _Withheld:
    """A sensitive tag's value in an error message: its type, never the value (a
    traceback reaches logs that the redaction of exported tags does not cover)."""

    def __init__(self, value: object) -> None:
        self._kind = type(value).__name__

    def __repr__(self) -> str:
        article = "an" if self._kind[:1].lower() in "aeiou" else "a"
        return f"{article} {self._kind} (its value is not shown: the key is sensitive)"


def _check_histogram_fields(
    count: object, low: object, high: object, buckets: object, bounds: object
) -> None:
    """The fields the callback bridge fills on a rebuilt histogram."""
    if count is not None and (type(count) is not int or count < 0):
        raise _fail_value("Metric", "count", "a non-negative int or None", count)
    for name, value in (("min", low), ("max", high)):
        if value is not None:
            _check_number("Metric", name, value)
    for name, values in (("bucket_counts", buckets), ("explicit_bounds", bounds)):
        if values is not None and not isinstance(values, list):
            raise _fail_type("Metric", name, "a list or None", values)
        for value in values or ():
            _check_number("Metric", name, value)


def _check_metadata(owner: str, metadata: object) -> None:
    if not isinstance(metadata, dict):
        raise _fail_type(owner, "metadata", "a dict", metadata)
    for key in dict.keys(metadata):
        if type(key) is not str:
            raise _fail_type(owner, "metadata key", "a str", key)
        if not key:
            raise _fail_value(owner, "metadata key", "a non-empty string", key)


# Metric names that passed the check, so that repeated names skip it.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 4096


def _check_metric_name(name: object, owner: str = "Metric") -> None:
    """Any non-empty text, as the legacy API took: where OpenTelemetry's instrument name
    rule refuses it, the mapping renames the instrument (see the README)."""
    _check_text(owner, "name", name)
    if type(name) is str and len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)


E = TypeVar("E", bound=Enum)


def enum_member(enum: type[E], value: object) -> E | None:
    """The one rule for enum fields in models and config: the member itself, or a str
    naming it in any case (``"ERROR"``, ``"error"``, ``"Error"``); None otherwise."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        # str.upper on the instance: a str subclass's own methods are never called.
        return enum.__members__.get(str.upper(value))
    return None


def enum_error(
    owner: str, name: str, enum: type[Enum], value: object, or_none: bool = False
) -> Exception:
    """The error for a value the enum rule refuses: TypeError when it is not even a str."""
    names = ", ".join(enum.__members__)
    expected = f"{enum.__name__}.<NAME> or its name in any case ({names})"
    if or_none:
        expected += ", or None"
    if isinstance(value, str):
        return _fail_value(owner, name, expected, value)
    return _fail_type(owner, name, expected, value)


def _enum_member(owner: str, name: str, enum: type[E], value: object) -> E:
    member = enum_member(enum, value)
    if member is None:
        raise enum_error(owner, name, enum, value)
    return member


def _jsonable(value: object) -> Any:
    """Copy a metadata value into plain JSON types; anything else becomes str(value)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _read_fields(owner: type, data: object, required: tuple[str, ...]) -> dict[str, Any]:
    """Check a from_dict() argument: a dict with the required keys and no unknown ones."""
    name = owner.__name__
    if not isinstance(data, dict):
        raise TypeError(f"{name}.from_dict() needs a dict, got {data!r}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{name}.from_dict(): missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(owner.__dataclass_fields__))  # type: ignore[attr-defined]
    if unknown:
        raise ValueError(f"{name}.from_dict(): unknown field(s) {', '.join(map(repr, unknown))}")
    return dict(data)
