"""The benchmark runs and prints every row; its timings are not asserted (shared machines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_collect.py"


def test_benchmark_prints_facade_raw_and_ratio_for_every_path():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    for path in ("counter", "histogram", "gauge", "trace", "event"):
        facade, raw, ratio = (float(value) for value in rows[path])
        assert facade > 0 and raw > 0
        assert abs(ratio - facade / raw) < 0.01 + 0.01 * ratio
    assert {"disabled", "sampled-out"} <= set(rows)


def test_outage_benchmark_prints_every_scenario():
    result = subprocess.run(
        [sys.executable, str(BENCH.with_name("bench_outage.py")), "--seconds", "0.5"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"healthy", "outage", "outage+spool"}
    for values in rows.values():
        calls, p50, p99, _, rss, *_ = map(float, values)
        assert calls > 0 and p50 <= p99 and rss > 0
    assert float(rows["outage"][6]) == 0  # nothing exported into a black hole
