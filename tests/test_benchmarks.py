"""The benchmark runs and prints every row; its timings are not asserted (shared machines)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_collect.py"


def run(script: str, *args: str, timeout: float) -> str:
    """A benchmark's output; it must exit cleanly."""
    command = [sys.executable, str(BENCH.with_name(script)), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows_by_first_word(lines: list[str]) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in lines}


def table(output: str) -> dict[str, tuple[list[float], list[str]]]:
    """The benchmark's rows: a label in the first 40 columns, numbers, then the target
    and whether it was met, where the row has one."""
    rows = {}
    for line in output.splitlines()[2:]:
        values = line[40:].split()
        numbers = [float(v) for v in values if not v.startswith("<=") and v not in ("yes", "no")]
        rows[line[:40].strip()] = (numbers, values[len(numbers) :])
    return rows


def test_benchmark_prints_facade_raw_ratio_and_target_for_every_path():
    rows = table(run("bench_collect.py", "--quick", timeout=120))
    paths = ("counter", "histogram", "gauge", "trace", "trace, new trace id", "event")
    for path in (*paths, *(f"{path}, with a callback" for path in paths)):
        (facade, raw, ratio), target = rows[path]
        assert facade > 0 and raw > 0
        assert abs(ratio - facade / raw) < 0.01 + 0.01 * ratio
        if path != "trace, with a callback":  # the one path the targets leave out
            [bound, met] = target
            assert met == ("yes" if ratio <= float(bound[2:]) else "no")
    for label, target in (
        ("collect_metric / labels(a, b).inc()", "<=1.00"),
        ("bound .add(1) / bound child .inc()", "<=1.30"),
        ("collect_metric / raw Counter.add", None),
        ("bound .add(1) / raw Counter.add, kept", None),
    ):
        (ours, theirs, ratio), verdict = rows[label]
        assert ours > 0 and theirs > 0 and abs(ratio - ours / theirs) < 0.02
        if target is None:
            assert verdict == []
        else:
            assert verdict == [target, "yes" if ratio <= float(target[2:]) else "no"]
    single = (
        "disabled collect_metric",
        "sampled-out collect_trace",
        "sampled-out collect_event",
        "trace at 1%, no tail rule",
        "trace at 1%, tail rules on",
        "trace, max_traces_per_second",
    )
    bridged = (
        "prometheus_client, 1,000 series, a read",
        "of which registry.collect() alone",
        "StatsD packet of 5 lines",
    )
    for name in (*single, "Metric(...)", "Trace(...)", "Event(...)", *bridged):
        [ns], [] = rows[name]
        assert ns > 0


def test_end_to_end_benchmark_delivers_every_span_on_both_sides():
    output = run("bench_e2e.py", "--spans", "2000", timeout=300).splitlines()
    rows = rows_by_first_word(output[2:5])
    assert set(rows) == {"raw", "facade", "facade+gzip"}
    for received, seconds, per_second, _ in (map(float, values) for values in rows.values()):
        assert received == 2000 and abs(received / per_second - seconds) <= 0.006  # printed .2f
    assert output[-2].startswith("facade / raw items per second: ")
    assert output[-1].startswith("facade+gzip / raw items per second: ")


def test_outage_benchmark_prints_every_scenario_and_stop_with_a_spool():
    output = run("bench_outage.py", "--seconds", "0.5", timeout=400).splitlines()
    rows = rows_by_first_word(output[2:5])
    assert set(rows) == {"healthy", "outage", "outage+spool"}
    for values in rows.values():
        calls, p50, p99, _, rss, *_ = map(float, values)
        assert calls > 0 and p50 <= p99 and rss > 0
    assert float(rows["outage"][6]) == 0  # nothing exported into a black hole
    assert output[5].startswith("stop(timeout_ms=1000), spool, 3 black-holed endpoints")
    spooled, dropped = (int(n) for n in re.findall(r"(?:spooled|dropped) (\d+)", output[6]))
    assert spooled + dropped == 150_000
    assert output[7].startswith("churn: 1000 collectors started and stopped: RSS ")
    idle = dict(re.findall(r"(\w+) ([\d.]+) s,?", output[8].split(": ", 1)[1].split(" (")[0]))
    assert output[8].startswith("start()+stop(), nothing collected, median of 20: ")
    assert set(idle) == {"healthy", "refused", "black_hole"}


def test_asyncio_benchmark_prints_the_loop_lag_of_aflush_and_of_a_blocking_flush():
    output = run("bench_asyncio.py", "--flushes", "3", timeout=120).splitlines()
    rows = {line[:24].strip(): line[24:].split() for line in output[2:4]}
    assert set(rows) == {"await aflush()", "flush() on the loop"}
    p50, p99, most, ticks, exported, bound, met = rows["await aflush()"]
    assert float(p50) <= float(p99) <= float(most) and float(ticks) > 0
    assert int(exported) == 3 and bound == "<1.0"
    assert met == ("yes" if float(p99) < 1.0 else "no")
    # A flush called on the loop holds it for the receiver's 200 ms answer at least.
    assert float(rows["flush() on the loop"][2]) >= 200 and rows["flush() on the loop"][4] == "3"
