"""Fork safety: objects that own threads, locks or handles start afresh in a forked child.

Pre-fork servers (gunicorn, uwsgi, multiprocessing) fork after the collector
started: a child inherits locks possibly held by threads that do not exist in
it, and no threads at all. The SDK re-creates its own; this does the same for
what this library adds.
"""

from __future__ import annotations

import os
import threading
import weakref
from types import TracebackType
from typing import Protocol


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None: ...


# Live owners, in the order they asked: one process-wide hook calls them in a forked
# child. (One os.register_at_fork per owner could never be removed: every collector
# ever created would leave its closures behind.)
_owners: dict[int, weakref.ref[ForkAware]] = {}


def follow_forks(owner: ForkAware) -> None:
    """Call ``owner.after_fork_in_child()`` in every forked child, while owner is alive."""
    key = id(owner)

    def forget(_: object, key: int = key) -> None:
        _owners.pop(key, None)

    # Dict operations are atomic under the GIL, and a fork happens with the GIL held:
    # no lock, so no lock a child could inherit held.
    _owners[key] = weakref.ref(owner, forget)


def _after_fork_in_child() -> None:
    for reference in list(_owners.values()):
        alive = reference()
        if alive is not None:
            alive.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ForkSafeLock:
    """A lock that a forked child replaces by a new, released one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        follow_forks(self)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._lock.__exit__(exc_type, exc, traceback)
