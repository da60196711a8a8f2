"""How the console and the receiver order a trace for reading (tree.py), on a fake clock."""

from __future__ import annotations

from telemetry_otel._otel.destinations.tree import Node, TraceTrees


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def span(name: str, span_id: int, parent: int | None, start: int, end: int) -> Node[str]:
    return Node(name, span_id, parent, start, end, True)


def event(name: str, in_span: int, at: int) -> Node[str]:
    return Node(name, in_span, None, at, at, False)


def shown(placed) -> list[tuple[str, int]]:
    return [(p.payload, p.depth) for p in placed]


def test_a_trace_is_given_out_whole_when_its_root_arrives_siblings_by_start_time():
    trees: TraceTrees[str] = TraceTrees()
    assert trees.add(1, span("second", 3, 1, 50, 60)) == []
    assert trees.add(1, event("in first", 2, 15)) == []
    assert trees.add(1, span("first", 2, 1, 10, 40)) == []
    assert trees.add(1, span("grandchild", 4, 2, 12, 20)) == []
    assert trees.held == 4
    placed = trees.add(1, span("root", 1, None, 0, 100))
    assert shown(placed) == [
        ("root", 0),
        ("first", 1),
        ("grandchild", 2),
        ("in first", 2),
        ("second", 1),
    ]
    assert {(p.trace_start_ns, p.trace_end_ns) for p in placed} == {(0, 100)}
    assert trees.held == 0


def test_what_arrives_after_its_root_is_placed_under_the_parent_already_shown():
    trees: TraceTrees[str] = TraceTrees()
    trees.add(1, span("child", 2, 1, 10, 20))
    trees.add(1, span("root", 1, None, 0, 100))
    assert shown(trees.add(1, span("late grandchild", 3, 2, 30, 150))) == [("late grandchild", 2)]
    assert shown(trees.add(1, event("late event", 3, 140))) == [("late event", 3)]
    assert shown(trees.add(1, span("unknown parent", 9, 8, 1, 2))) == [("unknown parent", 1)]
    assert shown(trees.add(1, span("second root", 7, None, 1, 2))) == [("second root", 0)]


def test_a_trace_whose_root_does_not_come_is_given_out_after_the_wait():
    clock = Clock()
    trees: TraceTrees[str] = TraceTrees(max_wait_s=10.0, clock=clock)
    trees.add(1, span("orphan", 2, 1, 0, 5))
    trees.add(1, span("its child", 3, 2, 1, 2))
    clock.now = 9.9
    assert trees.expired() == []
    clock.now = 10.0
    assert shown(trees.expired()) == [("orphan", 0), ("its child", 1)]
    assert trees.held == 0


def test_the_held_bound_gives_out_the_oldest_traces_first():
    trees: TraceTrees[str] = TraceTrees(max_held=3)
    for trace_id in range(3):
        assert trees.add(trace_id, span(f"t{trace_id}", 10, 99, 0, 1)) == []
    assert shown(trees.add(3, span("t3", 10, 99, 0, 1))) == [("t0", 0)]
    assert trees.held == 3


def test_parents_in_a_cycle_and_deep_nesting_lose_nothing():
    trees: TraceTrees[str] = TraceTrees()
    trees.add(1, span("a", 2, 3, 0, 1))
    trees.add(1, span("b", 3, 2, 0, 1))
    deep = 5_000  # far past Python's recursion limit
    for level in range(1, deep):
        trees.add(2, span(f"level {level}", level + 1, level, level, level + 1))
    assert sorted(shown(trees.drain())) == sorted(
        [("a", 0), ("b", 0)] + [(f"level {n}", 0 if n == 1 else n - 1) for n in range(1, deep)]
    )
    placed = trees.add(2, span("root", 1, None, 0, deep))
    assert [p.depth for p in placed] == [0]  # the rest went out before, at drain


def test_with_settle_time_a_trace_waits_after_its_root_for_what_was_sent_apart():
    clock = Clock()
    trees: TraceTrees[str] = TraceTrees(settle_s=1.0, clock=clock)
    assert trees.add(1, span("root", 1, None, 0, 100)) == []
    clock.now = 0.5
    assert trees.add(1, event("sent apart", 1, 50)) == []
    clock.now = 1.0
    assert shown(trees.expired()) == [("root", 0), ("sent apart", 1)]


def test_a_trace_whose_root_is_late_is_given_out_one_level_down_then_follows_as_it_comes():
    clock = Clock()
    trees: TraceTrees[str] = TraceTrees(clock=clock, running_after_s=1.0, settle_s=0.1)
    trees.add(1, span("step 1", 2, 1, 10, 20))
    trees.add(1, event("in step 1", 2, 15))
    clock.now = 0.5
    trees.add(2, span("other root", 9, None, 0, 5))  # rooted: settles, never "running"
    assert trees.running() == []
    assert trees.next_due() == 0.6  # the other trace settles first
    assert shown(trees.expired()) == []
    clock.now = 0.6
    assert shown(trees.expired()) == [("other root", 0)]
    assert trees.next_due() == 1.0
    clock.now = 1.0
    [(trace_id, placed)] = trees.running()
    assert trace_id == 1
    assert shown(placed) == [("step 1", 1), ("in step 1", 2)]
    assert trees.held == 0 and trees.next_due() is None
    assert shown(trees.add(1, span("step 2", 3, 1, 30, 40))) == [("step 2", 1)]
    assert shown(trees.add(1, span("root", 1, None, 0, 50))) == [("root", 0)]
