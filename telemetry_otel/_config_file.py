"""``OTEL_CONFIG_FILE``: the specification's declarative configuration (YAML), read for
what this library can honour.

The file is translated into the ``OTEL_*`` variables that say the same (an OTLP
exporter's endpoint into ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT``…), so that one reader
(_env.py) judges both, with the same checks and warnings; a few keys set config fields
directly (a batch processor's ``max_queue_size`` is ``buffer_size``). As the
specification says, the file replaces the ``OTEL_*`` variables, but for ``${VAR}``
substitution; ``TELEMETRY_*`` variables and code still come first, as everywhere here.

Every key is accounted for: applied (its variable or field remembers the file's line),
or listed in ``notes`` with why not (unsupported here, or a value that cannot be read).
A file that cannot be read or parsed is a warning naming the line, and the collector
runs on the ``OTEL_*`` variables instead: a malformed ``OTEL_*`` input never stops a
start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

OTEL_CONFIG_FILE = "OTEL_CONFIG_FILE"
# The file formats read (the schema's major version): 1.0 is its first stable release.
SUPPORTED_FORMAT = "1"
_SUBSTITUTION = re.compile(
    r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?"
)


@dataclass
class FileSettings:
    """What a configuration file says, as this library reads it."""

    path: str
    variables: dict[str, str] = field(default_factory=dict)  # OTEL_* it stands for
    fields: dict[str, Any] = field(default_factory=dict)  # config fields it sets
    # Where each variable or field came from: "OTEL_CONFIG_FILE <path>:<line> <key>".
    origins: dict[str, str] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (where, why not applied)


class ConfigFileError(ValueError):
    """A file that cannot be read or parsed at all."""


def read_config_file(path: str, environ: Mapping[str, str]) -> FileSettings:
    """The settings of the file at ``path``, ``${VAR}`` taken from ``environ``.

    Raises:
        ConfigFileError: the file cannot be read, is not YAML (naming the line), or is
            not a mapping of a supported ``file_format``.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"{OTEL_CONFIG_FILE} {path} cannot be read: {_why(error)}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ConfigFileError(
            f"{OTEL_CONFIG_FILE} {where} is not YAML: {error.problem or error}"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{OTEL_CONFIG_FILE} {path} is not YAML: {error}") from None
    settings = FileSettings(path)
    tree = _Tree(settings, environ)
    document = tree.value(root, "") if root is not None else None
    if not isinstance(document, dict):
        raise ConfigFileError(f"{OTEL_CONFIG_FILE} {path} is not a mapping of settings")
    file_format = str(document.get("file_format", ""))
    if file_format.split(".")[0] != SUPPORTED_FORMAT:
        raise ConfigFileError(
            f"{OTEL_CONFIG_FILE} {path}: file_format {file_format or 'is missing'}: this "
            f"library reads file_format {SUPPORTED_FORMAT}.x"
        )
    _Reader(settings, tree).read(document)
    return settings


def _why(error: Exception) -> str:
    return str(getattr(error, "strerror", None) or error)


class _Tree:
    """YAML nodes as plain values, ``${VAR}`` substituted in scalars before their type is
    read (as the specification asks), and the line of every key remembered."""

    def __init__(self, settings: FileSettings, environ: Mapping[str, str]) -> None:
        import yaml

        self._yaml = yaml
        self._settings = settings
        self._environ = environ
        self.lines: dict[str, int] = {}
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver = yaml.resolver.Resolver()

    def value(self, node: Any, path: str) -> Any:
        yaml = self._yaml
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            found: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                self.lines[child] = key_node.start_mark.line + 1
                found[key] = self.value(value_node, child)
            return found
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: Any, path: str) -> Any:
        yaml = self._yaml
        text = _SUBSTITUTION.sub(lambda m: self._substitute(m, path), node.value)
        if node.style is not None:  # quoted: text, whatever it holds
            return text
        tag = self._resolver.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        return self._constructor.construct_object(yaml.ScalarNode(tag, text))

    def _substitute(self, match: re.Match[str], path: str) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name is None:
            self._settings.notes.append(
                (self.where(path), f"{match.group(0)!r} is not ${{VAR}} nor ${{VAR:-default}}")
            )
            return match.group(0)
        value = self._environ.get(name)
        return value if value is not None else (match.group(2) or "")

    def where(self, path: str) -> str:
        """A key as messages name it: the file, the line (the nearest enclosing key's,
        for a value the file leaves to its default), and the key's path."""
        found = path
        while found not in self.lines and found:
            found = found.rpartition(".")[0]
        return f"{OTEL_CONFIG_FILE} {self._settings.path}:{self.lines.get(found, 1)} {path}"


class _Reader:
    """The keys this library honours, each into its variable or field."""

    def __init__(self, settings: FileSettings, tree: _Tree) -> None:
        self._settings = settings
        self._tree = tree

    def read(self, document: dict[str, Any]) -> None:
        for key, value in document.items():
            handler = getattr(self, f"_top_{key.replace('/', '_')}", None)
            if key == "file_format":
                continue
            if handler is None:
                self._unsupported(key)
            elif value is not None:
                handler(value, key)
        for provider, variable in _EXPORTER_VARIABLES.items():
            if document.get(provider) is None:  # a provider left out is a no-op one
                self._settings.variables[variable] = "none"
                where = f"{OTEL_CONFIG_FILE} {self._settings.path}: no {provider}"
                self._settings.origins[variable] = where

    # -- where a value goes ------------------------------------------------------------------

    def _set(self, variable: str, value: Any, path: str) -> None:
        if value is None:
            return
        text = str(value).lower() if isinstance(value, bool) else str(value)
        self._settings.variables[variable] = text
        self._settings.origins[variable] = self._tree.where(path)

    def _field(self, name: str, value: Any, path: str) -> None:
        if value is None:
            return
        self._settings.fields[name] = value
        self._settings.origins[name] = self._tree.where(path)

    def _note(self, path: str, why: str) -> None:
        self._settings.notes.append((self._tree.where(path), why))

    def _unsupported(self, path: str, why: str = "not supported by this library") -> None:
        self._note(path, why)

    def _only(self, mapping: Any, path: str, known: tuple[str, ...]) -> dict[str, Any]:
        """The mapping at ``path``, each key it has that is not ``known`` noted."""
        if not isinstance(mapping, dict):
            self._note(path, "expected a mapping")
            return {}
        for key in mapping:
            if key not in known:
                self._unsupported(f"{path}.{key}")
        return mapping

    # -- top-level keys ----------------------------------------------------------------------

    def _top_disabled(self, value: Any, path: str) -> None:
        self._set("OTEL_SDK_DISABLED", value, path)

    def _top_resource(self, value: Any, path: str) -> None:
        resource = self._only(value, path, ("attributes", "attributes_list"))
        pairs = []
        listed = resource.get("attributes_list")
        if listed:
            pairs.append(str(listed))
        for index, item in enumerate(resource.get("attributes") or []):
            where = f"{path}.attributes[{index}]"
            if not isinstance(item, dict) or item.get("name") is None or item.get("value") is None:
                self._note(where, "expected name and value")
                continue
            if item["name"] == "service.name":
                self._set("OTEL_SERVICE_NAME", item["value"], f"{where}.value")
            else:  # entries win over attributes_list: they come last
                pairs.append(f"{quote(str(item['name']))}={quote(_text(item['value']))}")
        if pairs:
            self._set("OTEL_RESOURCE_ATTRIBUTES", ",".join(pairs), path)

    def _top_propagator(self, value: Any, path: str) -> None:
        self._unsupported(
            path, "not applied: propagators come from OTEL_PROPAGATORS, read by the API"
        )

    def _top_log_level(self, value: Any, path: str) -> None:
        self._unsupported(path, "not applied: the library logs through logging's levels")

    def _top_attribute_limits(self, value: Any, path: str) -> None:
        limits = self._only(value, path, ("attribute_value_length_limit", "attribute_count_limit"))
        for key, variable in (
            ("attribute_value_length_limit", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
            ("attribute_count_limit", "OTEL_ATTRIBUTE_COUNT_LIMIT"),
        ):
            self._set(variable, limits.get(key), f"{path}.{key}")

    def _top_tracer_provider(self, value: Any, path: str) -> None:
        provider = self._only(value, path, ("processors", "limits", "sampler"))
        self._processors(provider.get("processors"), f"{path}.processors", "traces")
        limits = provider.get("limits")
        if limits is not None:
            self._span_limits(limits, f"{path}.limits")
        sampler = provider.get("sampler")
        if sampler is not None:
            self._sampler(sampler, f"{path}.sampler")

    def _top_meter_provider(self, value: Any, path: str) -> None:
        provider = self._only(value, path, ("readers",))
        exporters: list[str] = []
        for index, reader in enumerate(provider.get("readers") or []):
            where = f"{path}.readers[{index}]"
            reader = self._only(reader, where, ("periodic", "pull"))
            if "periodic" in reader:
                periodic = self._only(
                    reader["periodic"], f"{where}.periodic", ("interval", "exporter")
                )
                if periodic.get("interval") is not None:
                    self._interval(periodic["interval"], f"{where}.periodic.interval")
                name = self._exporter(
                    periodic.get("exporter"), f"{where}.periodic.exporter", "metrics"
                )
                if name:
                    exporters.append(name)
            if "pull" in reader and self._pull(reader["pull"], f"{where}.pull"):
                exporters.append("prometheus")
        self._set("OTEL_METRICS_EXPORTER", ",".join(exporters) or "none", path)

    def _top_logger_provider(self, value: Any, path: str) -> None:
        provider = self._only(value, path, ("processors",))
        self._processors(provider.get("processors"), f"{path}.processors", "logs")

    # -- providers ---------------------------------------------------------------------------

    def _processors(self, processors: Any, path: str, signal: str) -> None:
        exporters: list[str] = []
        for index, processor in enumerate(processors or []):
            where = f"{path}[{index}]"
            processor = self._only(processor, where, ("batch", "simple"))
            for kind, body in processor.items():
                known = (
                    ("exporter",)
                    if kind == "simple"
                    else (
                        "exporter",
                        "schedule_delay",
                        "max_queue_size",
                        "export_timeout",
                        "max_export_batch_size",
                    )
                )
                body = self._only(body, f"{where}.{kind}", known)
                if kind == "batch":
                    self._batch(body, f"{where}.batch")
                name = self._exporter(body.get("exporter"), f"{where}.{kind}.exporter", signal)
                if name:
                    exporters.append(name)
        variable = {"traces": "OTEL_TRACES_EXPORTER", "logs": "OTEL_LOGS_EXPORTER"}[signal]
        self._set(variable, ",".join(exporters) or "none", path)

    def _batch(self, batch: dict[str, Any], path: str) -> None:
        if batch.get("max_queue_size") is not None:
            self._field("buffer_size", batch["max_queue_size"], f"{path}.max_queue_size")
        if batch.get("schedule_delay") is not None:
            self._interval(batch["schedule_delay"], f"{path}.schedule_delay")
        for key in ("export_timeout", "max_export_batch_size"):
            if batch.get(key) is not None:
                self._unsupported(
                    f"{path}.{key}",
                    "not applied: each exporter's timeout bounds an export, and a batch "
                    "holds min(512, buffer_size) items",
                )

    def _interval(self, value: Any, path: str) -> None:
        """One interval serves every signal here (``flush_interval_ms``): the first given."""
        if "flush_interval_ms" in self._settings.fields:
            if value != self._settings.fields["flush_interval_ms"]:
                self._unsupported(
                    path,
                    "not applied: one interval (flush_interval_ms) serves every signal, "
                    f"set by {self._settings.origins['flush_interval_ms']}",
                )
            return
        self._field("flush_interval_ms", value, path)

    def _exporter(self, exporter: Any, path: str, signal: str) -> str | None:
        """The exporter's variables; its OTEL_<SIGNAL>_EXPORTER name, None if none."""
        exporter = self._only(exporter, path, ("otlp_http", "otlp_grpc", "console"))
        names = [kind for kind in ("otlp_http", "otlp_grpc", "console") if kind in exporter]
        if len(names) != 1:
            if exporter:
                self._note(path, "expected exactly one of otlp_http, otlp_grpc, console")
            return None
        kind = names[0]
        if kind == "console":
            return "console"
        if f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT" in self._settings.variables:
            self._unsupported(path, "not applied: one OTLP exporter per signal here")
            return None
        self._otlp(exporter[kind] or {}, f"{path}.{kind}", signal, kind == "otlp_grpc")
        return "otlp"

    def _otlp(self, otlp: Any, path: str, signal: str, grpc: bool) -> None:
        known = ("endpoint", "tls", "headers", "headers_list", "compression", "timeout")
        otlp = self._only(otlp, path, (*known, "encoding") if not grpc else known)
        prefix = f"OTEL_EXPORTER_OTLP_{signal.upper()}_"
        encoding = otlp.get("encoding") or "protobuf"
        protocol = "grpc" if grpc else f"http/{encoding}"
        self._set(f"{prefix}PROTOCOL", protocol, f"{path}.encoding" if "encoding" in otlp else path)
        default = "http://localhost:4317" if grpc else f"http://localhost:4318/v1/{signal}"
        endpoint = otlp.get("endpoint") or default
        self._set(f"{prefix}ENDPOINT", endpoint, f"{path}.endpoint")
        for key, setting in (("compression", "COMPRESSION"), ("timeout", "TIMEOUT")):
            self._set(f"{prefix}{setting}", otlp.get(key), f"{path}.{key}")
        headers = self._headers(otlp, path)
        if headers:
            self._set(f"{prefix}HEADERS", headers, f"{path}.headers")
        tls_keys = ("ca_file", "key_file", "cert_file", *(("insecure",) if grpc else ()))
        tls = self._only(otlp.get("tls") or {}, f"{path}.tls", tls_keys)
        for key, setting in (
            ("ca_file", "CERTIFICATE"),
            ("key_file", "CLIENT_KEY"),
            ("cert_file", "CLIENT_CERTIFICATE"),
            ("insecure", "INSECURE"),
        ):
            self._set(f"{prefix}{setting}", tls.get(key), f"{path}.tls.{key}")

    def _headers(self, otlp: dict[str, Any], path: str) -> str:
        """``headers_list`` then ``headers`` entries (which win), as a variable holds them."""
        pairs = [str(otlp["headers_list"])] if otlp.get("headers_list") else []
        for index, item in enumerate(otlp.get("headers") or []):
            if not isinstance(item, dict) or item.get("name") is None:
                self._note(f"{path}.headers[{index}]", "expected name and value")
            elif item.get("value") is not None:  # a null value: the entry is ignored
                pairs.append(f"{quote(str(item['name']))}={quote(_text(item['value']))}")
        return ",".join(pairs)

    def _span_limits(self, limits: Any, path: str) -> None:
        counts = {
            "event_count_limit": "OTEL_SPAN_EVENT_COUNT_LIMIT",
            "link_count_limit": "OTEL_SPAN_LINK_COUNT_LIMIT",
            "event_attribute_count_limit": "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
            "link_attribute_count_limit": "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
        }
        shared = ("attribute_value_length_limit", "attribute_count_limit")
        limits = self._only(limits, path, (*counts, *shared))
        for key, variable in counts.items():
            self._set(variable, limits.get(key), f"{path}.{key}")
        for key in shared:
            if key in limits:
                self._unsupported(
                    f"{path}.{key}",
                    "not applied: attribute_limits apply to spans and events alike here",
                )

    def _sampler(self, sampler: Any, path: str) -> None:
        """always_on, always_off, trace_id_ratio_based, and parent_based over one of them
        (its other branches at their defaults)."""
        rate = self._root_sampler(sampler, path, parent=True)
        if rate is not None:
            name, ratio = rate
            self._set("OTEL_TRACES_SAMPLER", name, path)
            if ratio is not None:
                self._set("OTEL_TRACES_SAMPLER_ARG", ratio, path)

    def _root_sampler(
        self, sampler: Any, path: str, parent: bool
    ) -> tuple[str, float | None] | None:
        known = (
            "always_on",
            "always_off",
            "trace_id_ratio_based",
            *(("parent_based",) if parent else ()),
        )
        sampler = self._only(sampler, path, known)
        if len(sampler) != 1:
            self._note(path, "expected exactly one sampler")
            return None
        [(kind, body)] = sampler.items()
        if kind in ("always_on", "always_off"):
            return kind, None
        if kind == "trace_id_ratio_based":
            body = self._only(body or {}, f"{path}.{kind}", ("ratio",))
            return "traceidratio", body.get("ratio", 1.0)
        body = self._only(
            body or {},
            f"{path}.parent_based",
            (
                "root",
                "remote_parent_sampled",
                "remote_parent_not_sampled",
                "local_parent_sampled",
                "local_parent_not_sampled",
            ),
        )
        for branch, usual in _PARENT_DEFAULTS.items():
            if branch in body and set((body[branch] or {"x": 0}).keys()) != {usual}:
                self._unsupported(
                    f"{path}.parent_based.{branch}", f"not applied: only {usual} is supported"
                )
        root = self._root_sampler(
            body.get("root") or {"always_on": None}, f"{path}.parent_based.root", parent=False
        )
        if root is None:
            return None
        name, ratio = root
        return f"parentbased_{name}", ratio

    def _pull(self, pull: Any, path: str) -> bool:
        pull = self._only(pull, path, ("exporter",))
        exporter = self._only(
            pull.get("exporter") or {}, f"{path}.exporter", ("prometheus/development", "prometheus")
        )
        for kind, body in exporter.items():
            body = self._only(body or {}, f"{path}.exporter.{kind}", ("host", "port"))
            self._set(
                "OTEL_EXPORTER_PROMETHEUS_HOST", body.get("host"), f"{path}.exporter.{kind}.host"
            )
            self._set(
                "OTEL_EXPORTER_PROMETHEUS_PORT", body.get("port"), f"{path}.exporter.{kind}.port"
            )
            return True
        return False


# Each provider's exporters, as the variables name them.
_EXPORTER_VARIABLES = {
    "tracer_provider": "OTEL_TRACES_EXPORTER",
    "meter_provider": "OTEL_METRICS_EXPORTER",
    "logger_provider": "OTEL_LOGS_EXPORTER",
}
# parent_based's branches other than root, and the one sampler each may have here.
_PARENT_DEFAULTS = {
    "remote_parent_sampled": "always_on",
    "remote_parent_not_sampled": "always_off",
    "local_parent_sampled": "always_on",
    "local_parent_not_sampled": "always_off",
}


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
