"""The package's shape: layers that import downward only, and no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "telemetry_otel"
# telemetry_otel/_otel's layers, lowest first: each may import only those before it.
LAYERS = ("runtime", "sampling", "mapping", "delivery", "destinations", "signals", "bridges")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports when it runs (not for type checking only)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found |= submodules or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & modules
    return found - {_module(path)}


def _graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module(path) for path in paths}
    return {_module(path): _runtime_imports(path, modules) for path in paths}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "_otel" else None


def test_each_layer_of_the_otel_package_imports_only_the_layers_below_it():
    upward = []
    for module, imports in _graph().items():
        layer = _layer(module)
        if layer not in LAYERS:
            continue
        for imported in imports:
            above = _layer(imported)
            if above is not None and (
                above not in LAYERS or LAYERS.index(above) > LAYERS.index(layer)
            ):
                upward.append(f"{module} -> {imported}")
    assert upward == []


def test_no_module_imports_itself_through_others():
    graph = _graph()
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join([*path[path.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def _private_otel_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
            "opentelemetry"
        ):
            continue
        # The logs SDK lives in ``_logs`` packages: that is its public home for now.
        parts = [p for p in (node.module or "").split(".") if p != "_logs"]
        names = [alias.name for alias in node.names if alias.name != "_logs"]
        if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
            found.append(f"{path.name}: from {node.module} import {', '.join(names)}")
    return found


def test_private_opentelemetry_names_are_imported_only_by_the_sdk_seam():
    seam = PACKAGE / "_otel" / "runtime" / "sdk.py"
    outside = [
        found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != seam
        for found in _private_otel_imports(path)
    ]
    assert outside == []
    assert _private_otel_imports(seam)  # the seam does read them


def test_locks_are_taken_by_with_statements_only():
    # A signal handler that raises (Ctrl-C, or the SIGTERM deliver_on_terminate turns into
    # an exit) between acquire() and the try that releases would leave the lock held, and
    # the stop that follows would wait on it; a with statement leaves no such gap.
    calls = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "acquire"
    ]
    assert calls == []
