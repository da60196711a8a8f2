"""Stop, at interpreter exit, every pipeline whose collector was never stopped.

The hook holds the pipelines themselves: an application that dropped its last
reference to a running collector (one built in ``main()`` and never stopped)
still has what it collected flushed. It stops the collector when it is still
alive, so that its state says stopped, and each pipeline within its own
``shutdown_timeout_ms``. One hook serves every collector of the process.
"""

from __future__ import annotations

import atexit
import time
import weakref
from typing import TYPE_CHECKING, Protocol

from telemetry_otel._otel.runtime.forks import ForkSafeLock

if TYPE_CHECKING:
    from telemetry_otel._otel.pipeline import Pipeline


class Stoppable(Protocol):
    def stop(self) -> None: ...


_open: dict[int, tuple[Pipeline, weakref.ref[Stoppable], float]] = {}
_lock = ForkSafeLock()


def stop_at_exit(pipeline: Pipeline, owner: Stoppable, timeout_s: float) -> None:
    """Have ``pipeline`` stopped at exit unless forget() is called for it first."""
    with _lock:
        _open[id(pipeline)] = (pipeline, weakref.ref(owner), timeout_s)


def forget(pipeline: Pipeline) -> None:
    """The owner stopped the pipeline itself."""
    with _lock:
        _open.pop(id(pipeline), None)


def _stop_all() -> None:
    with _lock:
        left = list(_open.values())
        _open.clear()
    for pipeline, owner, timeout_s in left:
        collector = owner()
        if collector is not None:
            collector.stop()
        else:
            pipeline.shutdown(time.monotonic() + timeout_s)


atexit.register(_stop_all)
