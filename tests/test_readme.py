"""The README keeps its promises: the two commands first, every config field documented."""

from __future__ import annotations

import re
from pathlib import Path

from telemetry_otel import TelemetryConfig
from telemetry_otel.config import FIELDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PAGES = {path: path.read_text() for path in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]}


def test_readme_opens_with_the_two_commands():
    opening = "\n".join(README.splitlines()[:6])
    assert "make demo" in opening and "make test" in opening


def test_config_table_lists_every_field_with_its_default():
    section = README.split("## Configuration", 1)[1].split("\n### ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \|[^|]*\| `?([^|`]*)`? \|", section, re.M))
    defaults = {name: getattr(TelemetryConfig(), name) for name in FIELDS}
    assert set(rows) == set(defaults)
    for name, default in defaults.items():
        assert rows[name].replace(",", "") == repr(default).replace("'", ""), name


def test_environment_table_lists_every_variable_the_library_reads():
    from telemetry_otel import _env, _env_sdk

    section = README.split("### Configuration from the environment", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_\[\]<>]+)` \|", section, re.M))
    read = {
        value
        for module in (_env, _env_sdk)
        for name, value in vars(module).items()
        if name.startswith(("TELEMETRY_", "OTEL_"))
    }
    read -= {_env.OTLP_PREFIX}
    read |= {f"OTEL_EXPORTER_OTLP[_<SIGNAL>]_{s}" for s in _env.OTLP_SETTINGS if s != "ENDPOINT"}
    read |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT",
        "OTEL_SERVICE_NAME",
    }
    assert documented == read


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    outside_code = re.sub(r"```.*?```", "", text, flags=re.S)
    return {_anchor(title) for title in re.findall(r"^#+ (.*)$", outside_code, re.M)}


def test_every_link_between_the_readme_and_docs_reaches_a_heading():
    links = 0
    for page, text in PAGES.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), (page.name, target)
            if anchor:
                assert anchor in _anchors(linked.read_text()), (page.name, target)
            links += 1
    assert links >= 20


def test_every_python_snippet_in_the_readme_and_docs_runs(tmp_path):
    import subprocess
    import sys

    snippets = [
        snippet
        for text in PAGES.values()
        for snippet in re.findall(r"```python\n(.*?)```", text, re.S)
    ]
    assert len(snippets) >= 5
    for number, snippet in enumerate(snippets):
        path = tmp_path / f"snippet_{number}.py"
        path.write_text(snippet)
        # Snippets that define tests run under pytest; the others as scripts.
        command = ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
        runner = command if "def test_" in snippet else [str(path)]
        result = subprocess.run(
            [sys.executable, *runner], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert result.returncode == 0, (
            f"snippet {number}:\n{snippet}\n{result.stdout}{result.stderr}"
        )


def test_the_package_description_is_written_for_an_installed_package():
    # (tomllib is 3.11's: the line is read as it is written.)
    [readme] = re.findall(r'^readme = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert readme == "PACKAGE.md"
    description = (ROOT / readme).read_text()
    assert description.startswith("# telemetry-otel\n")
    assert "make demo" not in description and "make test" not in description
    # No link into this checkout: on an index page a relative link leads nowhere.
    assert re.findall(r"\]\((?!https?://)[^)]*\)", description) == []
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "recursive-include docs *.md" in manifest  # the docs it points to ship


def test_the_package_description_s_quick_start_runs(tmp_path):
    import subprocess
    import sys

    [quick_start] = re.findall(r"```python\n(.*?)```", (ROOT / "PACKAGE.md").read_text(), re.S)
    path = tmp_path / "quick_start.py"
    path.write_text(quick_start)
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "metric" in result.stdout and "collected" in result.stdout
