"""Background threads that degrade to the calling thread at interpreter exit.

Since Python 3.12 the interpreter refuses new threads once it is shutting down
(``RuntimeError: can't create new thread at interpreter shutdown``), and that
is exactly when the exit hook flushes a collector the application forgot to
stop. Everything the flush and stop paths would start a thread for therefore
runs in the exiting thread instead, bounded by the same deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def start_daemon(target: Callable[[], object], name: str) -> threading.Thread | None:
    """Start a daemon thread; None when the interpreter no longer starts threads."""
    thread = threading.Thread(target=target, name=f"telemetry-otel-{name}", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # interpreter shutdown (3.12+)
        return None
    return thread


def run_until(deadline: float, work: Callable[[], object], name: str) -> bool:
    """Run ``work`` in a daemon thread and wait for it only until the deadline.

    At interpreter exit it runs in the calling thread: ``work`` must then keep
    the deadline itself, as every caller's work does (it takes the deadline).
    """
    thread = start_daemon(work, name)
    if thread is None:
        work()
        return True
    join_until(thread, deadline)
    return not thread.is_alive()


def join_until(thread: threading.Thread | None, deadline: float) -> bool:
    """Wait for a thread from start_daemon until the deadline; True once it ended."""
    if thread is None:
        return True
    thread.join(max(0.0, deadline - time.monotonic()))
    return not thread.is_alive()


def run_all_until(deadline: float, works: dict[str, Callable[[], object]]) -> bool:
    """Run each work in its own daemon thread, side by side, until the deadline.

    True when every one ended in time. At interpreter exit they run one after
    another in the calling thread (see run_until).
    """
    threads = [start_daemon(work, name) for name, work in works.items()]
    for thread, work in zip(threads, works.values(), strict=True):
        if thread is None:
            work()
    return all([join_until(thread, deadline) for thread in threads])


async def off_the_loop(work: Callable[[], T], name: str) -> T:
    """Await ``work()`` run in a daemon thread of its own: the event loop runs on meanwhile.

    Not the loop's default executor: an application may have filled it, and its
    threads are joined at exit, so a flush stuck on a dead endpoint would hold the
    interpreter. Cancelling the awaiting task does not stop ``work``, which keeps the
    deadline it was given.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():
            outcome()

    def run() -> None:
        try:
            result = work()
        except BaseException as error:  # handed to the awaiting task, raised there
            failure = error
            notify = functools.partial(settle, lambda: done.set_exception(failure))
        else:
            notify = functools.partial(settle, lambda: done.set_result(result))
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(notify)

    if start_daemon(run, name) is None:  # interpreter shutdown: no new threads
        return work()
    return await done


# Set on the threads that hand batches to exporters and callbacks (delivery/queue.py):
# a callback that calls flush() or stop() there would wait for the batch it is in.
_delivering = threading.local()


def mark_delivering() -> None:
    _delivering.on = True


def delivering() -> bool:
    """Whether this thread delivers batches (so user code it runs is a callback)."""
    return getattr(_delivering, "on", False)
