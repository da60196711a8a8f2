"""Every example script runs, and prints what it promises."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_every_example_has_a_test():
    tested = {"quickstart.py", "legacy_quickstart.py", "asgi_app.py"}  # asgi: test_asyncio
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_quickstart_prints_each_signal_on_the_console():
    lines = _run("quickstart.py")
    blank = lines.index("")
    kinds = [line.split()[1] for line in lines[:blank]]
    assert sorted(kinds) == ["EVENT"] * 2 + ["METRIC"] * 3 + ["TRACE"] * 2
    header, *rows = (line.split() for line in lines[blank + 1 :])
    stats = {row[0]: dict(zip(header[1:], map(int, row[1:7]), strict=False)) for row in rows}
    assert stats["trace"]["exported"] == 2
    assert stats["event"]["exported"] == 2
    assert stats["metric"]["collected"] == 5


@pytest.mark.parametrize("signal", ["metric", "event", "trace"])
def test_the_legacy_quick_start_runs_with_only_the_import_changed(signal):
    lines = [line for line in _run("legacy_quickstart.py") if line.startswith("Exporting")]
    assert len(lines) == 3
    [line] = [line for line in lines if line.startswith(f"Exporting {signal}: ")]
    data = ast.literal_eval(line.split(": ", 1)[1])
    expected_names = {"metric": "api_response_time", "event": "user_action"}
    if signal == "trace":
        assert (data["trace_id"], data["span_id"], data["operation"]) == (
            "trace-abc-123",
            "span-001",
            "process_payment",
        )
    else:
        assert data["name"] == expected_names[signal]
    assert data["tags"]["environment"] == "production"


# The legacy bootstrap's README, the contract, kept with the tests so that a fresh clone
# runs this test; where the original sits beside the checkout, the copy must equal it.
LEGACY_README = Path(__file__).resolve().parent / "fixtures" / "legacy_README.md"


def test_the_kept_legacy_readme_is_the_original_where_the_original_is_at_hand():
    original = EXAMPLES.parent.parent / "shared" / "legacy" / "README.md"
    assert LEGACY_README.read_text().startswith("# ")
    if original.exists():
        assert LEGACY_README.read_text() == original.read_text()


def test_the_legacy_example_differs_from_the_legacy_readme_only_in_the_import():
    legacy_readme = LEGACY_README
    [quick_start] = re.findall(
        r"## Quick Start\n\n```python\n(.*?)```", legacy_readme.read_text(), re.S
    )
    example = (EXAMPLES / "legacy_quickstart.py").read_text()
    body = example.split('"""\n\n', 1)[1]
    assert body == quick_start.replace("from telemetry", "from telemetry_otel")
