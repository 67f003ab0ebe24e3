"""The search: ``explore`` walks every schedule depth first (with sleep sets, by default);
``replay`` runs one schedule again and records it."""

from __future__ import annotations

# --8<-- [start:imports]
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from snippets.backends import Cache, Database, make_db, make_fake_cache
from snippets.explorer.diagrams import draw
from snippets.explorer.footprints import Footprint, dependent
from snippets.explorer.records import Returns, Schedule, Step
from snippets.explorer.runtime import Actor, check_actors, actor_threads, run_once
from snippets.explorer.text import describe_state
# --8<-- [end:imports]


# --8<-- [start:run]
@dataclass
class Run:
    """One schedule, replayed: every step as it ran, what each actor returned, the final
    cache and database (still open, to inspect), and the check's verdict."""

    schedule: Schedule
    steps: list[Step]
    returns: Returns
    cache: Cache
    db: Database
    verdict: str | None = None  # None: the invariant holds (or there was no check)
    final: str = ""  # the cache and DB when the actors were done, before the check ran

    def mermaid(self, labels: Mapping[str, str] | None = None, final_state: bool = False,
                transactions_as_blocks: bool = False) -> str:
        """This run as a Mermaid sequence diagram, drawn from the recorded steps; it ends
        with the check's verdict if it failed, else (if asked) with the final state. A
        transaction is one message, or (if asked) a block of its statements."""
        return draw(self, dict(labels or {}), final_state, transactions_as_blocks)


def replay(actors: Mapping[str, Actor], setup: Actor | None, schedule: Schedule | str, *,
           check: Callable[[Cache, Database, Returns], str | None] | None = None,
           make_cache: Callable[[], Cache] = make_fake_cache,
           make_db: Callable[[], Database] = make_db) -> Run:
    """Run exactly ``schedule`` again: the same steps, in the same order, every time."""
    actors, wanted = check_actors(actors), Schedule.parse(schedule)
    for position, name in enumerate(wanted):
        if name not in actors:
            raise ValueError(f"schedule {str(wanted)!r}: step {position + 1} names {name!r}, "
                             f"which is not an actor ({', '.join(actors)})")

    def choose(position: int, live: list[str], pending: dict[str, Footprint]) -> str:
        if position >= len(wanted):
            raise ValueError(f"schedule {str(wanted)!r} ends after {len(wanted)} steps, but "
                             f"{', '.join(live)} still had steps to take")
        if wanted[position] not in live:
            raise ValueError(f"schedule {str(wanted)!r}: step {position + 1} names "
                             f"{wanted[position]!r}, which had already finished")
        return wanted[position]

    with actor_threads(actors) as crew:
        outcome = run_once(crew, setup, make_cache, make_db, choose, max_steps=10_000)
    assert outcome is not None  # choose never cuts a replay short
    run, ran = outcome
    if len(ran) != len(wanted):
        raise ValueError(f"schedule {str(wanted)!r} has {len(wanted)} steps, but every "
                         f"actor finished after {len(ran)}")
    final = describe_state(run.cache, run.db, Returns())  # a check may read (and fill)
    verdict = check(run.cache, run.db, run.returns) if check else None
    return Run(ran, run.steps, run.returns, run.cache, run.db, verdict, final)
# --8<-- [end:run]


@dataclass
class Exploration:
    """Everything ``explore`` found."""

    total: int                       # distinct schedules explored
    bad: list[Schedule]              # those whose final state fails the check
    outcomes: Counter[str]           # outcome description -> number of schedules
    examples: dict[str, Schedule]    # outcome description -> the first schedule reaching it
    verdicts: dict[str, str | None]  # outcome description -> the check's verdict
    pruned: int                      # runs stopped early: equivalent to one explored
    seconds: float
    reduced: bool

    def summary(self) -> str:
        noun = "schedule" if self.total == 1 else "schedules"
        kind = f"distinct {noun}" if self.reduced else f"{noun} (every interleaving)"
        lines = [f"{self.total} {kind}, {len(self.bad)} bad"]
        ranked = sorted(self.outcomes, key=lambda o: (self.verdicts[o] is None, -self.outcomes[o], o))
        for outcome in ranked:
            verdict = self.verdicts[outcome]
            mark = f"BAD ({verdict})" if verdict else "ok"
            lines.append(f"{self.outcomes[outcome]:>5} {mark}: {outcome}")
            lines.append(f"{'':>5}   e.g. {self.examples[outcome]}")
        return "\n".join(lines)



# --8<-- [start:explore]
def explore(actors: Mapping[str, Actor], setup: Actor | None = None,
            check: Callable[[Cache, Database, Returns], str | None] | None = None, *,
            make_cache: Callable[[], Cache] = make_fake_cache,
            make_db: Callable[[], Database] = make_db,
            describe: Callable[[Cache, Database, Returns], str] = describe_state,
            reduce: bool = True, max_schedules: int = 200_000,
            max_steps: int = 200) -> Exploration:
    """Run the actors through every interleaving of their steps, depth first.

    With ``reduce`` (the default) two schedules that differ only in the order of
    independent steps (different keys, or two reads) count once: they end in the same
    state. Turn it off to count every interleaving, e.g. for a check that compares
    real-time order with ``returns.finished_before``.
    """
    actors = check_actors(actors)
    if check is not None and not callable(check):
        raise TypeError(f"check must be a function of (cache, db, returns), got {check!r}")
    started = time.perf_counter()
    path: list[_Choice] = []  # the choices of the current run, and what is left to try
    total, pruned, bad = 0, 0, []
    outcomes: Counter[str] = Counter()
    examples: dict[str, Schedule] = {}
    verdicts: dict[str, str | None] = {}

    def choose(position: int, live: list[str], pending: dict[str, Footprint]) -> str | None:
        if position < len(path):  # replaying the prefix we are backtracking into
            if path[position].live != live:
                raise RuntimeError("the actors are not deterministic: the same schedule "
                                   f"led to different steps at step {position + 1}")
            return path[position].chosen
        asleep = path[-1].asleep_after_choice() if path and reduce else {}
        options = [name for name in live if name not in asleep]
        if not options:
            return None  # every order from here was covered by a schedule already explored
        path.append(_Choice(live, pending, asleep, options[0]))
        return options[0]

    with actor_threads(actors) as crew:
        while True:
            outcome = run_once(crew, setup, make_cache, make_db, choose, max_steps)
            if outcome is None:
                pruned += 1
            else:
                run, schedule = outcome
                total += 1
                if total > max_schedules:
                    raise RuntimeError(f"more than {max_schedules} schedules: give fewer or "
                                       "shorter actors, or raise max_schedules")
                described = describe(run.cache, run.db, run.returns)  # before check reads
                verdict = check(run.cache, run.db, run.returns) if check else None
                outcomes[described] += 1
                examples.setdefault(described, schedule)
                verdicts.setdefault(described, verdict)
                if verdict is not None:
                    bad.append(schedule)
            if not _backtrack(path):
                break
    return Exploration(total, bad, outcomes, examples, verdicts, pruned,
                       time.perf_counter() - started, reduce)
# --8<-- [end:explore]


# --8<-- [start:sleep]
@dataclass
class _Choice:
    """One decision point: who could run, who is asleep, who runs, who has been tried."""

    live: list[str]
    pending: dict[str, Footprint]
    asleep: dict[str, Footprint]
    chosen: str
    tried: list[str] = field(default_factory=list)

    def asleep_after_choice(self) -> dict[str, Footprint]:
        # Sleep sets: an actor whose next step was already tried here (or was asleep
        # here) stays asleep while the steps taken are independent of it: running it now
        # would only reorder commuting steps.
        step = self.pending[self.chosen]
        candidates = {**self.asleep, **{name: self.pending[name] for name in self.tried}}
        return {name: fp for name, fp in candidates.items() if not dependent(fp, step)}
# --8<-- [end:sleep]


def _backtrack(path: list[_Choice]) -> bool:
    """Move to the next untried choice, deepest first; False when all are done."""
    while path:
        last = path[-1]
        last.tried.append(last.chosen)
        rest = [n for n in last.live if n not in last.asleep and n not in last.tried]
        if rest:
            last.chosen = rest[0]
            return True
        path.pop()
    return False
