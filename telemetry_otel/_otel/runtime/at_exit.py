"""Stop, at interpreter exit, every pipeline whose collector was never stopped.

The hook holds the pipelines themselves: an application that dropped its last
reference to a running collector (one built in ``main()`` and never stopped)
still has what it collected flushed. It stops the collector when it is still
alive, so that its state says stopped, and each pipeline within its own
``shutdown_timeout_ms``. One hook serves every collector of the process.

``multiprocessing`` children never run ``atexit`` hooks: ``Process`` (and so every
``Pool`` worker) leaves through ``os._exit`` after running its own exit function.
That function runs ``multiprocessing.util.Finalize`` callbacks, so a process that
starts a collector, or is forked by ``multiprocessing`` from one that has some,
registers the same hook there too (the registry a forked child inherits is cleared
by ``multiprocessing`` before its after-fork callbacks run, hence one of those).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import threading
import time
import weakref
from multiprocessing import util as multiprocessing_util
from types import FrameType
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
    _stop_at_multiprocessing_exit()


def forget(pipeline: Pipeline) -> None:
    """The owner stopped the pipeline itself."""
    with _lock:
        _open.pop(id(pipeline), None)


_stopping = False  # the exit hook runs: a SIGTERM now must not cut it short


def _stop_all() -> None:
    global _stopping
    _stopping = True
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

# multiprocessing's exit function runs the finalizers of priority 0 and above first,
# highest first, and only then ends the process's own daemonic children: a worker that
# is itself a parent delivers before its children are gone.
_EXIT_PRIORITY = 10
_finalized_in: int | None = None  # the process whose multiprocessing exit stops all


def _stop_at_multiprocessing_exit() -> None:
    """Have this process's ``multiprocessing`` exit path stop every open pipeline."""
    global _finalized_in
    if _finalized_in == os.getpid():
        return
    _finalized_in = os.getpid()
    multiprocessing_util.Finalize(None, _stop_all, exitpriority=_EXIT_PRIORITY)


def _in_a_multiprocessing_child(_: object) -> None:
    """A child that ``multiprocessing`` forked from a process with open pipelines."""
    if _open:
        _stop_at_multiprocessing_exit()


class _ForkToken:
    """What multiprocessing's after-fork registry holds weakly for this module."""


_FORK_TOKEN = _ForkToken()
multiprocessing_util.register_after_fork(_FORK_TOKEN, _in_a_multiprocessing_child)


def exit_on_sigterm() -> None:
    """Make SIGTERM end this process through its ordinary exit path (SystemExit), which
    stops every open pipeline, instead of killing it where it stands.

    ``Pool.terminate()`` (and so the end of a ``with Pool()`` block) sends SIGTERM to
    every worker: by default, what the workers collected since their last export
    would be lost.
    """
    signal.signal(signal.SIGTERM, _exit_for_sigterm)
    _watch_wakeups()


def _exit_for_sigterm(signum: int, frame: FrameType | None) -> None:
    # A second SIGTERM (a supervisor's) must not cut the stop short: it keeps its deadline.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not _stopping and not _leaving_already(frame):
        # Raised where the main thread stands, Python may swallow it: in a weakref
        # callback or a __del__ it prints "Exception ignored" and goes on, and a pool
        # worker then waits for tasks for ever, its telemetry never sent. A thread of
        # its own stops everything and ends the process if no exit has begun by then.
        _fall_back_in_time(signum)
        raise SystemExit(128 + signum)


def _fall_back_in_time(signum: int) -> None:
    """Have _exit_if_still_running run once: the wakeup watcher's, or a thread's."""
    watcher = _watcher
    if watcher is not None and watcher.pid == os.getpid():
        watcher.nudge(signum)  # it may not have heard: the wakeup fd may be another's now
    else:
        threading.Thread(target=_exit_if_still_running, args=(signum,), daemon=True).start()


class _WakeupWatcher:
    """Reads the signals Python's C handler writes to the wakeup fd, in a thread.

    Python runs a signal's handler in the main thread only, between two bytecodes.
    The kernel gives a process signal to any thread that does not block it: when it
    gives SIGTERM to another one while the main thread waits in C for ever (a Pool
    worker waits for the task queue's lock, which ``Pool.terminate()`` keeps), the
    handler never runs and the worker never ends. The C handler also writes the
    signal's number to the wakeup fd, from whichever thread got it: this reads it.
    """

    def __init__(self, reader: socket.socket, writer: socket.socket) -> None:
        self.pid = os.getpid()
        self._reader, self._writer = reader, writer
        threading.Thread(target=self._watch, daemon=True, name="telemetry-otel-sigterm").start()

    def nudge(self, signum: int) -> None:
        with contextlib.suppress(OSError):  # full: a signal number waits there already
            self._writer.send(bytes([signum]))

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    def _watch(self) -> None:
        while True:
            try:
                numbers = self._reader.recv(64)
            except OSError:
                return
            if not numbers:
                return
            if signal.SIGTERM in numbers:
                _exit_if_still_running(signal.SIGTERM)
                return


_watcher: _WakeupWatcher | None = None


def _watch_wakeups() -> None:
    """Start this process's wakeup watcher, where the wakeup fd is free (an event loop
    in the main thread sets its own, and handles signals itself)."""
    global _watcher
    if _watcher is not None and _watcher.pid == os.getpid():
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        previous = None
    if previous != -1:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return
    _watcher = _WakeupWatcher(reader, writer)


def _forget_wakeups_in_child() -> None:
    """A forked child shares the parent's socket pair: its signals must not reach the
    parent's watcher (which would end the parent)."""
    global _watcher
    watcher, _watcher = _watcher, None
    if watcher is None:
        return
    # Python makes the forking thread the child's main thread, where this is allowed.
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    watcher.close()


os.register_at_fork(after_in_child=_forget_wakeups_in_child)


def _leaving_already(frame: FrameType | None) -> bool:
    """multiprocessing's exit function runs: its finalizers stop every open pipeline.
    ``Pool.terminate()`` signals a worker that got its sentinel and is leaving; a
    SystemExit raised among those finalizers would skip the rest of them, the stop
    among them, and the worker would end without it. The function sets
    ``util._exiting`` first; before that, it is on the main thread's stack."""
    if getattr(multiprocessing_util, "_exiting", False) is True:
        return True
    exit_function = getattr(multiprocessing_util, "_exit_function", None)
    code = getattr(exit_function, "__code__", None)
    for _ in range(_STACK_DEPTH_READ):
        if frame is None:
            return False
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


# Frames read up the main thread's stack: multiprocessing's exit function calls the
# finalizers, which call the collectors' stops.
_STACK_DEPTH_READ = 64


# How long the SystemExit of a SIGTERM has to start the exit before the fallback does.
_FALLBACK_AFTER_S = 2.0


def _exit_if_still_running(signum: int) -> None:
    time.sleep(_FALLBACK_AFTER_S)
    if _stopping:  # the ordinary exit path is stopping everything: it keeps its deadline
        return
    _stop_all()
    os._exit(128 + signum)
