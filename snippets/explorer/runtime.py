"""The runtime: each actor runs in a greenlet of its own, and only the scheduler decides
who runs next. An actor stops before each step and switches back to the scheduler; the
scheduler picks an actor and switches to it. One OS thread, no locks: a run is
deterministic, and a hand-over costs about a microsecond."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import greenlet

from snippets.backends import Cache, Database
from snippets.explorer.footprints import Footprint
from snippets.explorer.instrument import instrument_world
from snippets.explorer.memo import Memo, freeze, restore, take, writes
from snippets.explorer.records import Returns, Schedule, Step

Actor = Callable[[Cache, Database], Any]
Chooser = Callable[[int, list[str], "_Run"], "str | None"]  # (position, live, run)

RUN_TIMEOUT = 30.0  # seconds a single run may take before we call an actor stuck


class _Aborted(BaseException):
    """Thrown into an actor to stop a run early; a BaseException, so pattern code that
    catches Exception cannot swallow it."""


class _Stuck(BaseException):
    """Raised by the watchdog in an actor blocked outside the cache and the database."""


class _Actor:
    """One actor during one run: where it stands, and what its next step touches."""

    def __init__(self, name: str, fn: Actor, run: _Run) -> None:
        self.name, self.fn, self.run = name, fn, run
        self.pending: Footprint = frozenset()  # the step it waits to take
        self.done = self.aborted = self.in_step = False
        self.inner: list[tuple[str, str]] | None = None  # statements of a transaction
        # Everything its calls returned so far (frozen), when the run keeps it: with the
        # stores, what decides everything the actor does next.
        self.seen: list[Any] | None = [] if run.keyed else None
        self.greenlet = greenlet.greenlet(self.body)
        self.greenlet.actor = self  # how a step finds the actor that takes it

    def body(self) -> None:
        run = self.run
        try:
            run.returns[self.name] = self.fn(run.cache, run.db)
        except _Aborted:
            pass
        except Exception as error:  # a pattern that raises is an outcome, not a crash
            run.returns[self.name] = error
        finally:
            self.done = True

    def saw(self, call: Callable[[], Any]) -> Any:
        """``call()``, noting what it returned (or raised) if the run keeps that."""
        if self.seen is None:
            return call()
        try:
            result = call()
        except Exception as error:
            self.seen.append(freeze(error))
            raise
        self.seen.append(freeze(result))
        return result

    def wait_turn(self, footprint: Footprint) -> None:
        """Stop before a step: back to the scheduler until it picks this actor."""
        if self.aborted:
            raise _Aborted
        self.pending = footprint
        self.run.scheduler.switch()
        if self.aborted:
            raise _Aborted

    def record(
        self,
        target: str,
        op: Callable[[], str],
        shown: Callable[[], str],
        failed: bool = False,
        inner: list[tuple[str, str]] | None = None,
    ) -> None:
        """Note that this actor took the current step; its text only when recording."""
        run = self.run
        index = len(run.chosen) - 1
        run.returns._began.setdefault(self.name, index)
        run.returns._ended[self.name] = index
        if run.recording:
            run.steps.append(
                Step(self.name, target, op(), shown(), failed, tuple(inner or ()))
            )


class _Run:
    """The shared state of one run."""

    def __init__(
        self, cache: Cache, db: Database, recording: bool, memo: Memo | None,
        keyed: bool = False,
    ) -> None:
        self.cache, self.db, self.recording, self.memo = cache, db, recording, memo
        self.keyed = keyed and memo is not None
        self.crew: list[_Actor] = []
        self.steps: list[Step] = []
        self.returns = Returns()
        self.chosen: list[str] = []
        self.footprints: list[Footprint] = []
        self.stateful = False  # a step left state that prefix replay cannot restore
        self.cut_short = False
        self.scheduler = greenlet.getcurrent()

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.chosen)

    def pending(self) -> dict[str, Footprint]:
        """What the next step of each actor still running touches."""
        return {actor.name: actor.pending for actor in self.crew if not actor.done}

    def call(self, call: Callable[[], Any], request: Any = None) -> Any:
        """Make the current step's call, or, in a prefix shared with the last run,
        return (or raise) what it did then: if this run asks the same. A different
        request (a random lease token, say) ends the shared prefix here."""
        memo, position = self.memo, len(self.chosen) - 1
        if memo is None:
            return call()
        if position < memo.upto:
            if memo.requests[position] == request:
                return memo.recall(position)
            self.diverge(position)
        memo.requests.append(request)
        try:
            result = call()
        except Exception as error:
            memo.results.append((True, error))
            raise
        memo.results.append((False, result))
        return result

    def diverge(self, position: int) -> None:
        """This run asks something else at ``position`` than the last one did: restore
        the stores as they were before that step, and take it, and every step after
        it, for real."""
        memo = self.memo
        assert memo is not None
        del memo.states[position + 1 :], memo.results[position:]
        del memo.requests[position:]
        memo.upto = position
        state = memo.states[position]
        restore(self.cache, self.db, state, memo.db_is)
        memo.db_is = None if writes(self.footprints[position], "db") else state.pages

    def key(self, position: int) -> Any:
        """What decides everything below this point of the run (None if unknown): the
        state of the stores, and what each actor's calls have returned so far."""
        memo = self.memo
        if not self.keyed or memo is None or position >= len(memo.states):
            return None
        return (memo.states[position].fingerprint(),
                tuple(tuple(actor.seen or ()) for actor in self.crew))

    def arrive(self, position: int) -> None:
        """With prefix replay, before choosing who takes the step at ``position``:
        restore the state where the replayed prefix ends, and keep the state before
        every step taken for real, for the runs to come."""
        memo = self.memo
        if memo is None or position < memo.upto:
            return  # a replayed step: it will not touch the stores
        if position == memo.upto and position < len(memo.states):
            del memo.states[position + 1 :], memo.results[position:]
            del memo.requests[position:]
            state = memo.states[position]
            restore(self.cache, self.db, state, memo.db_is)
            memo.db_is = state.pages
        else:  # a new step: keep the state before it
            last = self.footprints[position - 1] if position else frozenset()
            previous = memo.states[-1] if memo.states else None
            state = take(self.cache, self.db, previous, writes(last, "cache"),
                         writes(last, "db"))
            memo.states.append(state)
            memo.db_is = state.pages

    def before_step(self, position: int, footprint: Footprint) -> None:
        memo = self.memo
        if memo is not None and position >= memo.upto and writes(footprint, "db"):
            memo.db_is = None  # this step changes the database: its pages are unknown


def run_once(
    actors: Mapping[str, Actor],
    setup: Actor | None,
    cache: Cache,
    db: Database,
    choose: Chooser,
    max_steps: int,
    recording: bool = False,
    memo: Memo | None = None,
    keyed: bool = False,
    watch: Callable[[_Run], None] | None = None,
) -> _Run:
    """Run the actors once from ``setup``, letting ``choose`` pick who takes each step
    (``run.cut_short`` if it stopped the run). With a ``memo`` whose states are known,
    the replayed prefix replaces ``setup``; ``keyed``: keep what each actor's calls
    return, so that ``run.key()`` can tell where the run stands; ``watch(run)`` is
    called before the first step and after every step (the stepper's snapshots)."""
    if setup is not None and not (memo and memo.states):
        setup(cache, db)  # not an actor: runs straight through
    run = _Run(*instrument_world(cache, db), recording, memo, keyed)
    crew = run.crew = [_Actor(name, fn, run) for name, fn in actors.items()]
    by_name = {actor.name: actor for actor in crew}
    with watchdog():
        try:
            for actor in crew:
                run.returns[actor.name] = None
                actor.greenlet.switch()  # it runs up to its first step, or to its end
            if watch is not None:
                watch(run)
            live = [actor.name for actor in crew if not actor.done]
            while live:
                position = len(run.chosen)
                if position >= max_steps:
                    raise RuntimeError(
                        f"a run took more than {max_steps} steps: does an actor loop?"
                    )
                run.arrive(position)
                name = choose(position, live, run)
                if name is None:
                    run.cut_short = True  # equivalent to a schedule already explored
                    break
                chosen = by_name[name]
                run.before_step(position, chosen.pending)
                run.chosen.append(name)
                run.footprints.append(chosen.pending)
                chosen.greenlet.switch()
                if watch is not None:
                    watch(run)
                if chosen.done:  # a new list: the search keeps the old one
                    live = [name for name in live if not by_name[name].done]
        finally:
            for actor in crew:  # stop whoever still waits at a step
                if not actor.done:
                    actor.aborted = True
                    actor.greenlet.throw(_Aborted)
    return run


_watching = False  # a watchdog is on: an inner one only winds its timer up again


def _stuck(signum: int, frame: Any) -> None:
    raise _Stuck


@contextmanager
def watchdog() -> Iterator[None]:
    """An actor that blocks outside the cache and the database (a lock, a sleep) blocks
    the only thread; a timer signal interrupts it after RUN_TIMEOUT seconds. Each run
    winds the timer up again; ``explore`` keeps one watchdog on for all its runs."""
    global _watching
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread: no watchdog here
        return
    if _watching:
        signal.setitimer(signal.ITIMER_REAL, RUN_TIMEOUT)
        yield
        return
    previous = signal.signal(signal.SIGALRM, _stuck)
    signal.setitimer(signal.ITIMER_REAL, RUN_TIMEOUT)
    _watching = True
    try:
        yield
    except _Stuck:
        raise RuntimeError(
            f"a run took over {RUN_TIMEOUT:.0f} s: an actor is blocked outside the "
            "cache and the database (a lock? a sleep?)"
        ) from None
    finally:
        _watching = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class reusing:  # noqa: N801 - used like a function: make_cache=reusing(client)
    """A ``make_cache`` that hands out this one client, emptied (FLUSHDB, SCRIPT FLUSH)
    before each run: how a test explores on the real Redis of the ``cache`` fixture, and
    how ``explore`` reuses one fakeredis from run to run."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def __call__(self) -> Cache:
        self.cache.flushdb()
        self.cache.script_flush()  # else a script one run loaded is there in the next
        return self.cache


def check_actors(actors: Any) -> dict[str, Actor]:
    if not isinstance(actors, Mapping):
        raise TypeError(
            f"actors must be a mapping of name to function, got {type(actors).__name__}"
        )
    if len(actors) < 1:
        raise ValueError("actors is empty: give at least one actor")
    for name, fn in actors.items():
        if not isinstance(name, str) or not re.fullmatch(
            r"[A-Za-z][A-Za-z0-9_]{0,15}", name
        ):
            raise ValueError(
                f"actor names are short identifiers like 'A' or 'reader', got {name!r}"
            )
        if not callable(fn):
            raise TypeError(
                f"actor {name!r} must be a function of (cache, db), got {fn!r}"
            )
    return dict(actors)
