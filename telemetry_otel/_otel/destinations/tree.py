"""Spans and events of one trace, ordered as a tree for people to read.

The console and ``telemetry-otel receive`` see spans as they end, children before their
root. A trace is held until its root ends and then given out whole: each span under its
parent, each event under the span it happened in, siblings by start time. What arrives
after its root is given out at once, placed under the parent already shown. A trace
whose root does not come within ``max_wait_s`` (or that the ``max_held`` bound pushes
out) is given out as it is, its orphans at the top. With ``settle_s``, a trace is given
out that long after its root arrived, for what was sent apart from it (events, spans
in another export request) to find its place. With ``running_after_s``, a trace whose root
has not ended that long after its first span or event came is given out as it stands,
one level down (under a line saying it still runs); the rest follows as it arrives,
the root last.

Written here because the SDK's console exporters print each item alone, as it ends.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")
_REMEMBERED_TRACES = 1000  # traces given out, for placing what comes after their root


@dataclass
class Node(Generic[P]):
    """One span (``span_id`` its own) or event (``span_id`` the span it happened in)."""

    payload: P
    span_id: int
    parent_id: int | None  # a span's local parent; None for a root (or an event)
    start_ns: int
    end_ns: int
    is_span: bool
    # ``parent_id`` is a span of another process (a remote parent): the span nests
    # under it when that span is in the trace too (another service sending to the
    # same receiver), and otherwise stands as a root of its own.
    remote_parent: bool = False

    @property
    def is_root(self) -> bool:
        """A span whose arrival lets its trace be given out: no local parent."""
        return self.is_span and (self.parent_id is None or self.remote_parent)


@dataclass
class Placed(Generic[P]):
    """A node given out: how deep it sits, the extent of its trace (for bars), and
    whether its span id was given out before (the same span sent again)."""

    payload: P
    depth: int
    trace_start_ns: int
    trace_end_ns: int
    again: bool = False


@dataclass
class _Held(Generic[P]):
    since: float
    nodes: list[Node[P]] = field(default_factory=list)


class TraceTrees(Generic[P]):
    """Holds each trace until its root ends; not thread-safe (its caller locks)."""

    def __init__(
        self,
        max_held: int = 10_000,
        max_wait_s: float = 10.0,
        settle_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        running_after_s: float | None = None,
    ) -> None:
        self._max_held = max_held
        self._max_wait_s = max_wait_s
        self._settle_s = settle_s
        self._running_after_s = running_after_s
        self._rooted: deque[tuple[float, Hashable]] = deque()  # (when the root came, trace)
        self._clock = clock
        self._held: OrderedDict[Hashable, _Held[P]] = OrderedDict()
        self._held_count = 0
        # For each trace given out: its span ids' depths, and its extent.
        self._shown: OrderedDict[Hashable, tuple[dict[int, int], int, int]] = OrderedDict()

    def add(self, trace_id: Hashable, node: Node[P]) -> list[Placed[P]]:
        """What can be shown now that ``node`` arrived (it included, or nothing)."""
        shown = self._shown.get(trace_id)
        if shown is not None:
            return [self._place_late(shown, node)]
        held = self._held.get(trace_id)
        if held is None:
            held = self._held[trace_id] = _Held(self._clock())
        held.nodes.append(node)
        self._held_count += 1
        placed: list[Placed[P]] = []
        if node.is_root:
            if self._settle_s:
                self._rooted.append((self._clock(), trace_id))
            else:
                placed = self._give_out(trace_id)
        return placed + self.expired()

    def expired(self) -> list[Placed[P]]:
        """Traces settled since their root came, held past ``max_wait_s``, and the oldest
        while over ``max_held``."""
        placed: list[Placed[P]] = []
        settled = self._clock() - self._settle_s
        while self._rooted and self._rooted[0][0] <= settled:
            trace_id = self._rooted.popleft()[1]
            if trace_id in self._held:
                placed += self._give_out(trace_id)
        deadline = self._clock() - self._max_wait_s
        while self._held:
            trace_id, oldest = next(iter(self._held.items()))
            if oldest.since > deadline and self._held_count <= self._max_held:
                break
            placed += self._give_out(trace_id)
        return placed

    def running(self) -> list[tuple[Hashable, list[Placed[P]]]]:
        """Each trace held past ``running_after_s`` whose root has not come, given out
        one level down, with its id (for the line above it)."""
        if self._running_after_s is None:
            return []
        cutoff = self._clock() - self._running_after_s
        rooted = {trace_id for _, trace_id in self._rooted}
        due = [
            trace_id
            for trace_id, held in self._held.items()
            if held.since <= cutoff and trace_id not in rooted
        ]
        return [(trace_id, self._give_out(trace_id, base=1)) for trace_id in due]

    def drain(self) -> list[Placed[P]]:
        """Everything held, root or not (at shutdown)."""
        placed: list[Placed[P]] = []
        while self._held:
            placed += self._give_out(next(iter(self._held)))
        return placed

    def next_due(self) -> float | None:
        """When (on the clock) ``expired()`` or ``running()`` will next give something
        out; None: nothing held."""
        due = [held.since + self._max_wait_s for held in list(self._held.values())[:1]]
        if self._running_after_s is not None:
            rooted = {trace_id for _, trace_id in self._rooted}
            waiting = [h for t, h in self._held.items() if t not in rooted][:1]
            due += [held.since + self._running_after_s for held in waiting]
        due += [rooted + self._settle_s for rooted, _ in list(self._rooted)[:1]]
        return min(due) if due else None

    @property
    def held(self) -> int:
        return self._held_count

    def _give_out(self, trace_id: Hashable, base: int = 0) -> list[Placed[P]]:
        """The trace's nodes in tree order, its top level at depth ``base``."""
        nodes = self._held.pop(trace_id).nodes
        self._held_count -= len(nodes)
        start = min(node.start_ns for node in nodes)
        end = max(node.end_ns for node in nodes)
        span_ids = {node.span_id for node in nodes if node.is_span}
        children: dict[int | None, list[Node[P]]] = {}
        for node in nodes:
            parent = node.parent_id if node.is_span else node.span_id
            children.setdefault(parent if parent in span_ids else None, []).append(node)
        depths: dict[int, int] = {}
        placed: list[Placed[P]] = []
        # Depth first without recursion: a hostile trace may nest thousands deep.
        top = sorted(children.get(None, ()), key=_start, reverse=True)
        stack = [(node, base) for node in top]
        while stack:
            node, depth = stack.pop()
            again = node.is_span and node.span_id in depths
            placed.append(Placed(node.payload, depth, start, end, again))
            if node.is_span and not again:
                depths[node.span_id] = depth
                below = sorted(children.pop(node.span_id, ()), key=_start, reverse=True)
                stack += [(child, depth + 1) for child in below]
        # Spans whose parents form a cycle hang from no root: shown at the top, not lost.
        children.pop(None, None)
        placed += [Placed(n.payload, base, start, end) for rest in children.values() for n in rest]
        self._remember(trace_id, (depths, start, end))
        return placed

    def _place_late(self, shown: tuple[dict[int, int], int, int], node: Node[P]) -> Placed[P]:
        depths, start, end = shown
        above = node.parent_id if node.is_span else node.span_id
        if above in depths:
            depth = depths[above] + 1
        elif node.is_root:  # another root of the trace
            depth = 0
        else:
            depth = 1
        again = node.is_span and node.span_id in depths
        if node.is_span and not again:
            depths[node.span_id] = depth
        return Placed(node.payload, depth, start, end, again)

    def _remember(self, trace_id: Hashable, shown: tuple[dict[int, int], int, int]) -> None:
        self._shown[trace_id] = shown
        if len(self._shown) > _REMEMBERED_TRACES:
            self._shown.popitem(last=False)


def _start(node: Node[P]) -> int:
    return node.start_ns
