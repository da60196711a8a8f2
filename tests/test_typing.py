"""The public API is typed for its users: mypy --strict passes on a module that uses
all of it, and a decorated function keeps its signature."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from telemetry_otel import TelemetryCollector, TelemetryConfig
from tests import typed_user_code

USER_CODE = Path(typed_user_code.__file__)


def test_mypy_strict_passes_on_user_code_using_the_whole_public_api(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path),
            "--config-file",
            "/dev/null",
            str(USER_CODE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The one ignore in the file must be needed (--strict warns of unused ignores): a
    # traced function that lost its signature would accept add("two").
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found in 1 source file")


def test_the_typed_user_code_runs():
    assert typed_user_code.main() == {
        "total": 5,
        "body": 19,
        "recorded": 1,
        "flushed": 1,
        "events": 1,
        "metrics": 5,
    }


def test_traced_on_a_generator_function_warns_at_the_decorated_line():
    collector = TelemetryCollector(TelemetryConfig(enabled=False))
    with pytest.warns(UserWarning) as caught:

        @collector.traced
        def numbers() -> object:
            yield 1

        @collector.traced("stream")
        async def chunks() -> object:
            yield b""

    assert [str(w.message) for w in caught] == [
        f"traced(): {name} is a generator function: its span covers only the call that "
        "creates the generator, not the iteration; open collector.span() inside it instead"
        for name in (numbers.__qualname__, chunks.__qualname__)
    ]
    assert {Path(w.filename).name for w in caught} == {"test_typing.py"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @collector.traced
        def plain() -> int:
            return 1

    assert plain() == 1
