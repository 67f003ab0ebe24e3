"""The runtime: one thread per actor, only one running at a time, handing the turn to
whoever the scheduler picks before each step. A run is therefore deterministic."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from snippets.backends import Cache, Database
from snippets.explorer.footprints import Footprint
from snippets.explorer.instrument import current, instrument_cache, instrument_db
from snippets.explorer.records import Returns, Schedule, Step

Actor = Callable[[Cache, Database], Any]


class _Aborted(BaseException):
    """Raised inside an actor to stop a run early; BaseException so pattern code that
    catches Exception cannot swallow it."""


RUN_TIMEOUT = 30.0  # seconds a single run may take before we call an actor stuck


def _locked() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()  # a closed gate: acquire() waits until someone release()s it
    return lock


class _ActorThread:
    """One actor on a thread of its own, reused run after run. Only the thread holding
    the turn runs; at each step it asks the scheduler who goes next and opens that
    actor's gate."""

    def __init__(self, name: str, fn: Actor) -> None:
        self.name, self.fn = name, fn
        self.run: _Run | None = None
        self.gate = _locked()
        self.pending: Footprint = frozenset()  # the step it waits to take
        self.done = self.aborted = self.in_step = self.retired = False
        self.inner: list[tuple[str, str]] | None = None  # statements inside a DB transaction
        self.thread = threading.Thread(target=self.body, name=f"explorer-{name}", daemon=True)
        self.thread.start()

    def start(self, run: _Run) -> None:
        self.run, self.pending, self.inner = run, frozenset(), None
        self.done = self.aborted = self.in_step = False
        self.gate.release()

    def body(self) -> None:
        current.actor = self
        while True:
            self.gate.acquire()  # wait for the next run (or retirement)
            if self.retired:
                return
            run = self.run
            assert run is not None
            try:
                if not self.aborted:
                    run.returns[self.name] = self.fn(run.cache, run.db)
            except _Aborted:
                pass
            except Exception as error:  # a pattern that raises is an outcome, not a crash
                run.returns[self.name] = error
            finally:
                self.done = True
                run.next_turn(self)

    def retire(self) -> None:
        self.retired = True
        if self.gate.locked():  # else it is stuck in its own code: leave it (a daemon)
            self.gate.release()
        self.thread.join(timeout=RUN_TIMEOUT)

    def wait_turn(self, footprint: Footprint) -> None:
        """Stop before a step until the scheduler chooses this actor."""
        self.pending = footprint
        assert self.run is not None
        if not self.run.next_turn(self):
            self.gate.acquire()
        if self.aborted:
            raise _Aborted

    def record(self, target: str, op: str, shown: str, failed: bool = False,
               inner: Sequence[tuple[str, str]] = ()) -> None:
        assert self.run is not None
        steps = self.run.steps
        self.run.returns.began.setdefault(self.name, len(steps))
        self.run.returns.ended[self.name] = len(steps)
        steps.append(Step(self.name, target, op, shown, failed, tuple(inner)))



Chooser = Callable[[int, list[str], dict[str, Footprint]], "str | None"]


class _Run:
    """The shared state of one run. The turn passes from thread to thread; the main
    thread waits until everyone is done or the scheduler stops the run."""

    def __init__(self, cache: Cache, db: Database, choose: Chooser) -> None:
        self.cache, self.db, self.choose = cache, db, choose
        self.actors: list[_ActorThread] = []
        self.steps: list[Step] = []
        self.returns = Returns()
        self.chosen: list[str] = []
        self.main = _locked()       # opened when the run ends or stops
        self.starting = True        # actors are walking to their first step, one by one
        self.stopped = False        # the run is over, or being stopped
        self.cut_short = False      # the scheduler stopped it before everyone finished
        self.error: BaseException | None = None

    def next_turn(self, holder: _ActorThread | None) -> bool:
        """Called by the thread holding the turn; True if it should simply continue."""
        if self.starting or self.stopped:
            self.main.release()  # the main thread is driving, one actor at a time
            return False
        live = [actor for actor in self.actors if not actor.done]
        if not live:
            self.main.release()
            return False
        try:
            name = self.choose(len(self.chosen), [a.name for a in live],
                               {a.name: a.pending for a in live})
        except BaseException as error:  # e.g. a replay of a schedule that does not fit
            self.error, name = error, None
        if name is None:
            self.stopped = self.cut_short = True
            self.main.release()
            return False
        self.chosen.append(name)
        chosen = next(actor for actor in live if actor.name == name)
        if chosen is holder:
            return True  # no hand-over needed: it runs its next step at once
        chosen.gate.release()
        return False

    def wait_main(self) -> None:
        if not self.main.acquire(timeout=RUN_TIMEOUT):
            raise RuntimeError(
                f"a run took over {RUN_TIMEOUT:.0f} s: an actor is blocked outside the cache "
                "and the database (a lock? a sleep?)")


@contextmanager
def actor_threads(actors: Mapping[str, Actor]) -> Iterator[list[_ActorThread]]:
    """One thread per actor for a whole exploration: starting threads is slow."""
    crew = [_ActorThread(name, fn) for name, fn in actors.items()]
    try:
        yield crew
    finally:
        for actor in crew:
            actor.retire()


def run_once(crew: list[_ActorThread], setup: Actor | None, make_cache: Callable[[], Cache],
             make_db: Callable[[], Database], choose: Chooser,
             max_steps: int) -> tuple[_Run, Schedule] | None:
    """Run the actors once, letting ``choose`` pick who takes each step. Returns None if
    ``choose`` cut the run short."""
    cache, db = make_cache(), make_db()
    if setup is not None:
        setup(cache, db)  # not an actor: runs straight through

    def bounded(position: int, live: list[str], pending: dict[str, Footprint]) -> str | None:
        if position >= max_steps:
            raise RuntimeError(f"a run took more than {max_steps} steps: does an actor loop?")
        return choose(position, live, pending)

    run = _Run(instrument_cache(cache), instrument_db(db), bounded)
    run.actors = crew
    started: list[_ActorThread] = []
    try:
        for actor in crew:
            run.returns[actor.name] = None
            started.append(actor)
            actor.start(run)
            run.wait_main()  # it runs up to its first step (or to its end)
        run.starting = False
        run.next_turn(None)
        run.wait_main()
    finally:
        run.stopped = True
        for actor in started:  # stop whoever still waits at a step
            if not actor.done and actor.gate.locked():  # waiting at a step
                actor.aborted = True
                actor.gate.release()
                run.wait_main()
    if run.error is not None:
        raise run.error
    if run.cut_short:
        return None
    return run, Schedule(run.chosen)


def reusing(cache: Cache) -> Callable[[], Cache]:
    """A ``make_cache`` that hands out this one client, emptied (FLUSHDB) before each run:
    how a test explores on the real Redis of the ``cache`` fixture."""
    def make() -> Cache:
        cache.flushdb()
        return cache
    return make


def check_actors(actors: Any) -> dict[str, Actor]:
    if not isinstance(actors, Mapping):
        raise TypeError(f"actors must be a mapping of name to function, got {type(actors).__name__}")
    if len(actors) < 1:
        raise ValueError("actors is empty: give at least one actor")
    for name, fn in actors.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", name):
            raise ValueError(f"actor names are short identifiers like 'A' or 'reader', got {name!r}")
        if not callable(fn):
            raise TypeError(f"actor {name!r} must be a function of (cache, db), got {fn!r}")
    return dict(actors)
