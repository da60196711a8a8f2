"""A counter that many threads increment without a lock."""

from __future__ import annotations

import itertools
from collections.abc import Callable


class Tally:
    """Counts calls to :attr:`increment`; exact under concurrent use.

    ``next()`` on an ``itertools.count`` is a single C call, atomic under the GIL,
    so the hot collect path counts without taking a lock.
    """

    __slots__ = ("_counter", "_included", "_zero", "increment")

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._zero = 0
        self.increment = self._counter.__next__
        self._included: list[Callable[[], int]] = []

    @property
    def value(self) -> int:
        """How many times :attr:`increment` was called since the last reset, plus what
        the included counts add."""
        # repr is "count(N)", N being the next value: the number of increments so far.
        counted = int(repr(self._counter)[6:-1])
        return counted + sum(read() for read in self._included) - self._zero

    def include(self, read: Callable[[], int]) -> None:
        """Add a count kept elsewhere (it only grows): a path that already holds a lock
        counts there for a fraction of an increment's cost."""
        self._included.append(read)

    def reset(self) -> None:
        """Count from zero again. ``increment`` stays the same callable, so the
        references the collect path keeps to it keep counting here."""
        self._zero += self.value
