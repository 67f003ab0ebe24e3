"""The search: ``explore`` walks every schedule depth first (with DPOR, by default);
``replay`` runs one schedule again and records it."""

from __future__ import annotations

# --8<-- [start:imports]
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snippets import backends
from snippets.backends import Cache, Database, make_db, make_fake_cache
from snippets.explorer.diagrams import draw
from snippets.explorer.memo import Memo, cached_strings
from snippets.explorer.records import Returns, Scenario, Schedule, Step
from snippets.explorer.reduction import MODES, Node, add_races, new_node, next_branch
from snippets.explorer.runtime import (Actor, _Run, check_actors, reusing, run_once,
                                       watchdog)
from snippets.explorer.subtrees import Subtrees
from snippets.explorer.text import describe_state

Check = Callable[[Cache, Database, Returns], "str | None"]
# --8<-- [end:imports]

REUSE = True  # reuse the subtree below a point reached again (a test turns it off)


# --8<-- [start:run]
@dataclass
class Run:
    """One schedule, replayed: every step as it ran, what each actor returned, the
    final cache and database (still open, to inspect), and the check's verdict."""

    schedule: Schedule
    steps: list[Step]
    returns: Returns
    cache: Cache
    db: Database
    verdict: str | None = None  # None: the invariant holds (or there was no check)
    final: str = ""  # the cache and DB when the actors were done, before the check
    scenario: Scenario | None = field(default=None, repr=False)  # what was replayed

    def mermaid(self, labels: Mapping[str, str] | None = None,
                final_state: bool = False, transactions_as_blocks: bool = False) -> str:
        """This run as a Mermaid sequence diagram, drawn from the recorded steps; it
        ends with the check's verdict if it failed, else (if asked) with the final
        state. A transaction is one message, or (if asked) a block of statements."""
        return draw(self, dict(labels or {}), final_state, transactions_as_blocks)


def replay(actors: Mapping[str, Actor], setup: Actor | None,
           schedule: Schedule | str, *, check: Check | None = None,
           make_cache: Callable[[], Cache] = make_fake_cache,
           make_db: Callable[[], Database] = make_db) -> Run:
    """Run exactly ``schedule`` again: the same steps, in the same order, every time."""
    actors, wanted = check_actors(actors), Schedule.parse(schedule)
    said = f"schedule {str(wanted)!r}"
    for position, name in enumerate(wanted):
        if name not in actors:
            raise ValueError(f"{said}: step {position + 1} names {name!r}, which is "
                             f"not an actor ({', '.join(actors)})")

    def choose(position: int, live: list[str], run: object) -> str:
        if position >= len(wanted):
            raise ValueError(f"{said} ends after {len(wanted)} steps, but "
                             f"{', '.join(live)} still had steps to take")
        if wanted[position] not in live:
            raise ValueError(f"{said}: step {position + 1} names "
                             f"{wanted[position]!r}, which had already finished")
        return wanted[position]

    run = run_once(actors, setup, make_cache(), make_db(), choose, max_steps=10_000,
                   recording=True)
    if len(run.chosen) != len(wanted):
        raise ValueError(f"{said} has {len(wanted)} steps, but every actor finished "
                         f"after {len(run.chosen)}")
    final = describe_state(run.cache, run.db, Returns())  # a check may read (and fill)
    verdict = check(run.cache, run.db, run.returns) if check else None
    return Run(run.schedule, run.steps, run.returns, run.cache, run.db, verdict, final,
               Scenario(actors, setup, check, make_cache, make_db))
# --8<-- [end:run]


@dataclass
class Exploration:
    """Everything ``explore`` found."""

    total: int = 0  # distinct schedules explored
    bad: list[Schedule] = field(default_factory=list)  # those the check refused
    outcomes: Counter[str] = field(default_factory=Counter)  # outcome -> schedules
    examples: dict[str, Schedule] = field(default_factory=dict)  # the first of each
    verdicts: dict[str, str | None] = field(default_factory=dict)  # outcome -> verdict
    pruned: int = 0  # runs cut short: equivalent to a schedule already explored
    seconds: float = 0.0
    reduction: str = "dpor"  # "dpor", "sleep" or "none"

    @property
    def reduced(self) -> bool:
        return self.reduction != "none"

    def add(self, outcome: str, verdict: str | None, schedule: Schedule) -> None:
        self.total += 1
        self.outcomes[outcome] += 1
        self.examples.setdefault(outcome, schedule)
        self.verdicts.setdefault(outcome, verdict)
        if verdict is not None:
            self.bad.append(schedule)

    def summary(self) -> str:
        noun = "schedule" if self.total == 1 else "schedules"
        kind = f"distinct {noun}" if self.reduced else f"{noun} (every interleaving)"
        lines = [f"{self.total} {kind}, {len(self.bad)} bad"]
        for outcome in sorted(self.outcomes, key=self._rank):
            verdict = self.verdicts[outcome]
            mark = f"BAD ({verdict})" if verdict else "ok"
            lines.append(f"{self.outcomes[outcome]:>5} {mark}: {outcome}")
            lines.append(f"{'':>5}   e.g. {self.examples[outcome]}")
        return "\n".join(lines)

    def _rank(self, outcome: str) -> tuple[bool, int, str]:
        """Bad outcomes first, then the most frequent."""
        return self.verdicts[outcome] is None, -self.outcomes[outcome], outcome


# --8<-- [start:explore]
def explore(actors: Mapping[str, Actor], setup: Actor | None = None,
            check: Check | None = None, *,
            make_cache: Callable[[], Cache] | None = None,
            make_db: Callable[[], Database] = make_db,
            describe: Callable[[Cache, Database, Returns], str] = describe_state,
            reduce: bool | str = True, max_schedules: int = 200_000,
            max_steps: int = 200) -> Exploration:
    """Run the actors through every interleaving of their steps, depth first.

    With ``reduce`` (the default, DPOR) two schedules that differ only in the order
    of independent steps (different keys, or two reads) count once: they end in the
    same state. ``reduce="sleep"`` finds the same ones with sleep sets alone (more
    runs cut short). ``reduce=False`` counts every interleaving, e.g. for a check that
    compares real-time order with ``returns.finished_before``.
    """
    actors = check_actors(actors)
    mode = "dpor" if reduce is True else "none" if reduce is False else reduce
    if mode not in MODES:
        raise ValueError(f"reduce is True, False, 'sleep' or 'dpor', not {reduce!r}")
    if check is not None and not callable(check):
        raise TypeError(f"check must be a function of (cache, db, returns): {check!r}")
    # The default world (a fakeredis, a SQLite database) is made once: making a client
    # costs more than a run. Each run replays the prefix it shares with the last one,
    # and (but with DPOR) a point of the search reached again reuses its subtree.
    memo = Memo() if make_cache is None and make_db is backends.make_db else None
    subtrees = Subtrees() if REUSE and memo is not None and mode != "dpor" else None
    make_cache = make_cache or reusing(make_fake_cache())
    world = (make_cache(), make_db()) if memo else None
    started, found = time.perf_counter(), Exploration(reduction=mode)
    path: list[Node] = []  # the choices of the current run, and what is left to try
    reused = False  # the current run stopped where a known subtree begins

    def add(outcome: str, verdict: str | None, schedule: Schedule) -> None:
        if found.total == max_schedules:
            raise RuntimeError(f"more than {max_schedules} schedules: give fewer or "
                               "shorter actors, or raise max_schedules")
        found.add(outcome, verdict, schedule)
        if subtrees is not None:
            subtrees.found(schedule, outcome, verdict)

    def choose(position: int, live: list[str], run: _Run) -> str | None:
        nonlocal reused
        if position < len(path):  # the prefix this run shares with the last one
            if path[position].live != live:
                raise RuntimeError("the actors are not deterministic: one schedule "
                                   f"led elsewhere at step {position + 1}")
            return path[position].chosen
        key = subtree_key(run, position, path, mode) if subtrees and subtrees.on \
            else None
        if subtrees is not None and (pruned := subtrees.reuse(key, run.schedule, add)) \
                is not None:
            found.pruned += pruned
            reused = True
            return None  # its leaves are added: no need to walk it again
        node = new_node(path, live, run.pending(), mode)
        if node is None:
            return None  # every order from here was covered by a schedule explored
        path.append(node)
        if subtrees is not None:
            subtrees.enter(key, position, found.pruned)
        return node.chosen

    def finished(node: Node) -> None:
        if subtrees is not None:
            subtrees.leave(found.pruned)

    replayed = 0  # how many choices this run shares with the last one
    with watchdog():  # one for all the runs: each run winds its timer up again
        while True:
            fast = world is not None and memo is not None and memo.on
            cache, db = world if world and fast else (make_cache(), make_db())
            run = run_once(actors, setup, cache, db, choose, max_steps,
                           memo=memo if fast else None,
                           keyed=subtrees is not None and subtrees.on)
            if memo is not None and run.stateful:
                memo.on = False  # prefix replay cannot restore it: all from scratch
            if reused:
                reused = False
            elif run.cut_short:
                found.pruned += 1
            elif found.total == max_schedules:
                add("", None, run.schedule)  # raises
            else:
                if fast and describe is describe_state:  # the same, without commands
                    outcome = describe_state(cache, db, run.returns,
                                             cached_strings(cache))
                else:
                    outcome = describe(cache, db, run.returns)  # before the check
                verdict = check(cache, db, run.returns) if check else None
                if subtrees is not None and run.returns.timing_read:
                    subtrees.stop()  # two runs with one key may differ in timing
                add(outcome, verdict, run.schedule)
            if mode == "dpor":
                add_races(path, start=replayed)  # earlier races: seen in earlier runs
            if not next_branch(path, finished):
                break
            replayed = len(path) - 1  # the choices before it are the same next run
            if memo is not None:
                memo.upto = replayed
    found.seconds = time.perf_counter() - started
    return found
# --8<-- [end:explore]


def subtree_key(run: _Run, position: int, path: list[Node], mode: str) -> Any:
    """Where the run stands (see ``subtrees``), and with sleep sets who is asleep."""
    key = run.key(position)
    if key is None or mode == "none":
        return key
    asleep = path[-1].asleep_after_choice() if path else {}
    return key, frozenset(asleep)
