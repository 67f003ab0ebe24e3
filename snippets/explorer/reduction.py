"""Reduction: which schedules need not run, because one already run ends the same way.

Two schedules that differ only in the order of commuting steps (different keys, or two
reads) are equivalent: same final state, same returns. Three ways to walk the tree:

- ``"none"``: every interleaving.
- ``"sleep"``: sleep sets (Godefroid): every choice is tried, but an actor whose step
  was already tried here stays asleep while only independent steps run. One schedule per
  class of equivalent schedules completes; the others are cut short ("pruned").
- ``"dpor"``: source-set dynamic partial-order reduction (Abdulla, Aronis, Jonsson
  and Sagonas, POPL 2014) with sleep sets: a choice is tried only where a finished run
  showed a race, two dependent steps of different actors that could have run the other
  way round. The same classes complete, with far fewer runs cut short.
"""

from __future__ import annotations

from collections.abc import Callable

# --8<-- [start:imports]
from dataclasses import dataclass, field

from snippets.explorer.footprints import Footprint, dependent
# --8<-- [end:imports]

MODES = ("none", "sleep", "dpor")


# --8<-- [start:sleep]
@dataclass
class Node:
    """One decision point: who could run, who is asleep, who runs, who is to try."""

    live: list[str]
    pending: dict[str, Footprint]  # each live actor's next step
    asleep: dict[str, Footprint]
    chosen: str
    backtrack: set[str]  # the actors to try here
    done: list[str] = field(default_factory=list)

    def asleep_after_choice(self) -> dict[str, Footprint]:
        # Sleep sets: an actor whose next step was already tried here (or was asleep
        # here) stays asleep while the steps taken are independent of it: running it now
        # would only reorder commuting steps.
        step = self.pending[self.chosen]
        candidates = {**self.asleep, **{name: self.pending[name] for name in self.done}}
        return {name: fp for name, fp in candidates.items() if not dependent(fp, step)}
# --8<-- [end:sleep]


def new_node(path: list[Node], live: list[str], pending: dict[str, Footprint],
             mode: str) -> Node | None:
    """The decision point after ``path``; None if every actor that could run is asleep
    (the run is cut short: it could only reorder commuting steps)."""
    asleep = path[-1].asleep_after_choice() if path and mode != "none" else {}
    awake = [name for name in live if name not in asleep]
    if not awake:
        return None
    first = awake[0]
    backtrack = {first} if mode == "dpor" else set(awake)
    return Node(live, pending, asleep, first, backtrack)


def next_branch(path: list[Node],
                finished: Callable[[Node], None] | None = None) -> bool:
    """Move to the next choice still to try, deepest first; False when all are done.
    ``finished`` hears of each decision point whose every choice has been tried."""
    while path:
        node = path[-1]
        node.done.append(node.chosen)
        rest = [name for name in node.live if name in node.backtrack
                and name not in node.done and name not in node.asleep]
        if rest:
            node.chosen = rest[0]
            return True
        path.pop()
        if finished is not None:
            finished(node)
    return False


# --8<-- [start:races]
def add_races(path: list[Node], start: int = 0) -> None:
    """After a run: for each race (a step, and a later dependent step of another actor
    that it directly happens before), make sure the tree also tries, at the first of
    the two, an actor that can start the other order. Races whose later step is before
    ``start`` were seen in an earlier run that shared those steps."""
    steps = [(node.chosen, node.pending[node.chosen]) for node in path]
    before: list[int] = []  # before[j]: bit i set if step i happens before step j
    for j, (actor, footprint) in enumerate(steps):
        mask = 0
        for i in range(j - 1, -1, -1):
            if mask >> i & 1:
                continue  # already known to happen before j
            other, earlier = steps[i]
            if other == actor or dependent(earlier, footprint):
                mask |= 1 << i | before[i]
        before.append(mask)
    for j in range(start, len(steps)):
        actor, footprint = steps[j]
        for i in range(j):
            other, earlier = steps[i]
            if other == actor or not dependent(earlier, footprint):
                continue
            if any(before[k] >> i & 1 and before[j] >> k & 1 for k in range(i + 1, j)):
                continue  # not a race: i reaches j through a step in between
            # The steps after i that do not depend on it, then j: the other order.
            rest = [k for k in range(i + 1, j) if not before[k] >> i & 1] + [j]
            starters = {steps[k][0] for k in rest
                        if not any(before[k] >> m & 1 for m in rest if m < k)}
            node = path[i]
            if not starters & node.backtrack:
                node.backtrack.add(actor if actor in starters else min(starters))
# --8<-- [end:races]
