"""Subtree reuse: a point of the search reached again is not explored again.

An actor is a deterministic function of what its calls return. So where a run stands
after some steps is decided by the state of the stores and, for each actor, the results
its calls returned so far (``_Run.key``): two runs that get there by different paths (a
reader's GET before or after a writer's UPDATE; two writers that SET the same value in
either order) have the same tree of schedules below, with the same outcomes and
verdicts. With ``reduce=False``, and with sleep sets (where who is asleep is part of
the key), the walk below a point depends on nothing else. So the first time the subtree
below a key is finished, its leaves are kept; when a run reaches that key again, the
same leaves are added once more, behind this run's prefix, in the same order, and the
run stops there. Totals, outcomes, bad schedules and examples are exactly those of the
full walk. (DPOR adds choices to earlier points from later runs: its subtrees are not
self-contained, so it does not reuse them.)

A check or ``describe`` that reads when the actors ran (``returns.began``,
``finished_before``) can tell two runs with the same key apart: from the first such read
on, nothing is reused. The leaves reused before came from checks that did not look, so
they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from snippets.explorer.records import Schedule

Leaf = tuple[Schedule, str, "str | None"]  # schedule, outcome, verdict


@dataclass
class _Open:
    """A point whose subtree is being walked."""

    key: Hashable
    depth: int
    first: int  # index of its first leaf in Subtrees.leaves
    pruned: int  # runs cut short before it


class Subtrees:
    """The leaves of every finished subtree, by the key of its root."""

    def __init__(self) -> None:
        self.on = True
        self.looked = self.reused = 0  # lookups, and those that found a subtree
        self.leaves: list[Leaf] = []  # every leaf so far, in the order found
        self.done: dict[Hashable, tuple[int, int, int, int]] = {}  # key -> depth,
        # first leaf, end, runs cut short
        self.open: list[_Open | None] = []  # one per point of the current path

    def enter(self, key: Hashable | None, depth: int, pruned: int) -> None:
        """The search goes down into a new point (key None: not to be kept)."""
        self.open.append(None if key is None or not self.on
                         else _Open(key, depth, len(self.leaves), pruned))

    def leave(self, pruned: int) -> None:
        """The search is done with the deepest open point: keep its leaves."""
        point = self.open.pop()
        if point is not None and self.on:
            self.done[point.key] = (point.depth, point.first, len(self.leaves),
                                    pruned - point.pruned)

    def reuse(self, key: Hashable | None, prefix: Schedule,
              add: Callable[[str, str | None, Schedule], None]) -> int | None:
        """If the subtree below ``key`` is known: ``add`` each of its leaves behind
        ``prefix`` and return how many runs it cut short; else None."""
        if key is None or not self.on:
            return None
        self.looked += 1
        if key not in self.done:
            if self.looked >= 300 and self.reused * 30 < self.looked:
                self.stop()  # points seldom recur here: keys cost more than they save
            return None
        self.reused += 1
        depth, first, end, pruned = self.done[key]
        for schedule, outcome, verdict in self.leaves[first:end]:
            add(outcome, verdict, Schedule(prefix + schedule[depth:]))
        return pruned

    def found(self, schedule: Schedule, outcome: str, verdict: str | None) -> None:
        if self.on:
            self.leaves.append((schedule, outcome, verdict))

    def stop(self) -> None:
        """Reuse nothing from now on."""
        self.on = False
        self.leaves.clear()
        self.done.clear()
        self.open = [None] * len(self.open)
