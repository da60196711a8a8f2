"""Task functions for the multiprocessing tests: importable, so that spawn and forkserver
children find them. Each task runs a live span with an event and a metric inside."""

from __future__ import annotations

import os

from telemetry_otel import Event, Metric, MetricType, TelemetryCollector, TelemetryConfig

collector: TelemetryCollector | None = None


def start_collector(endpoints: list[str]) -> None:
    """Start this process's collector, unless it has one already (inherited by a fork)."""
    global collector
    if collector is None:
        collector = TelemetryCollector(
            TelemetryConfig(
                export_endpoints=endpoints,
                service_name="workers",
                flush_interval_ms=60_000,  # nothing leaves before the process does
            )
        )
        collector.start()


def task(number: int) -> int:
    assert collector is not None
    with collector.span(f"task-{number}"):
        collector.collect_event(Event("task_done", f"task {number}"))
        collector.collect_metric(Metric("tasks", 1, MetricType.COUNTER))
    return os.getpid()


def run_tasks(endpoints: list[str], numbers: list[int]) -> None:
    """A Process target: its own collector (unless inherited), then the tasks."""
    start_collector(endpoints)
    for number in numbers:
        task(number)


def drive(method: str, shape: str, endpoints: list[str], tasks: int) -> None:
    """Run ``tasks`` tasks in two worker processes of one shape, started one way.

    With fork, the parent's running collector is what the workers inherit; spawn and
    forkserver workers start their own. The shapes: ``process`` (two Process objects),
    ``pool`` (close() then join()), ``executor`` (a ProcessPoolExecutor), ``with-pool``
    (a ``with Pool()`` block, which ends in terminate(), with the documented initializer).
    """
    import multiprocessing

    from telemetry_otel import deliver_on_terminate

    context = multiprocessing.get_context(method)
    if method == "fork":
        start_collector(endpoints)
    numbers = list(range(tasks))
    if shape == "process":
        workers = [
            context.Process(target=run_tasks, args=(endpoints, numbers[i::2])) for i in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
            assert worker.exitcode == 0, worker.exitcode
    elif shape == "pool":
        pool = context.Pool(2, initializer=start_collector, initargs=(endpoints,))
        pool.map(task, numbers, chunksize=1)
        pool.close()
        pool.join()
    elif shape == "executor":
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            2, mp_context=context, initializer=start_collector, initargs=(endpoints,)
        ) as executor:
            list(executor.map(task, numbers))
    else:
        initargs = (start_collector, endpoints)
        with context.Pool(2, initializer=deliver_on_terminate, initargs=initargs) as pool:
            pool.map(task, numbers, chunksize=1)
    if collector is not None:
        collector.stop()


if __name__ == "__main__":
    import sys

    drive(sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]))
