"""The interleaving explorer: run ordinary pattern functions "concurrently", one cache or
database call at a time, through every interleaving, and replay any interleaving exactly.

How it works, in the spirit of Loom and CHESS:

- Each actor (a plain function of a cache and a database) runs in a thread of its own,
  but only one thread runs at a time, so every run is deterministic.
- The cache and the database are instrumented: every call (a Redis command, an EVAL, a
  MULTI/EXEC, one SQL statement, a whole DB transaction) is one atomic *step*, and before
  each step the actor waits until the scheduler lets it go.
- ``explore`` re-runs the actors from ``setup`` once per schedule and walks every choice
  depth first. Two steps that cannot affect each other (different keys, or two reads)
  commute, so by default schedules that differ only in the order of such steps are
  counted once (sleep sets, as in Godefroid's partial-order reduction).
- ``replay`` runs one schedule again, records every step, and draws it as a Mermaid
  sequence diagram.

Run it: ``python -m snippets.explorer`` (a worked example), ``--bench`` (speed),
``--diagrams`` (rewrite the generated diagrams in docs/, ``--check`` to only compare).
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from snippets.backends import Cache, Database, make_db, make_fake_cache

Actor = Callable[[Cache, Database], Any]
Footprint = frozenset[tuple[str, str, bool]]  # (store, key or "*", is_write)

# --8<-- [start:footprints]
# Which Redis commands only read, and where their keys are. Any command not listed here
# is treated as touching every key: slower to explore, never wrong.
READ_COMMANDS = {"GET", "MGET", "EXISTS", "TTL", "PTTL", "TYPE", "STRLEN", "HGET", "HMGET",
                 "HGETALL", "HEXISTS", "HLEN", "LRANGE", "LLEN", "SMEMBERS", "SISMEMBER",
                 "SCARD", "ZRANGE", "ZSCORE", "ZCARD", "XRANGE", "XLEN", "WATCH"}
ONE_KEY = READ_COMMANDS - {"MGET", "EXISTS", "WATCH"} | {
    "SET", "SETEX", "PSETEX", "SETNX", "GETSET", "GETDEL", "GETEX", "INCR", "INCRBY", "DECR",
    "DECRBY", "APPEND", "EXPIRE", "PEXPIRE", "EXPIREAT", "PERSIST", "HSET", "HDEL", "HINCRBY",
    "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "SREM", "ZADD", "ZREM", "ZINCRBY", "XADD", "XTRIM"}
ALL_ARGS_ARE_KEYS = {"DEL", "UNLINK", "EXISTS", "MGET", "WATCH", "TOUCH"}
NO_KEYS = {"MULTI", "UNWATCH", "PING", "ECHO"}  # local to one connection
SCRIPTS = "(script cache)"  # EVAL and SCRIPT LOAD fill it; EVALSHA needs it


def redis_footprint(args: Sequence[Any]) -> Footprint:
    """The keys one Redis command touches, and whether it writes them."""
    command = str(args[0]).upper()
    write = command not in READ_COMMANDS
    if command in NO_KEYS:
        keys: list[Any] = []
    elif command in ALL_ARGS_ARE_KEYS:
        keys = list(args[1:])
    elif command in ONE_KEY and len(args) > 1:
        keys = [args[1]]
    elif command in ("EVAL", "EVALSHA", "FCALL"):
        keys = list(args[3:3 + int(args[2])])  # EVAL script numkeys key... arg...
    elif command == "SCRIPT":
        keys = []
    else:
        keys = ["*"]  # unknown: assume it touches everything
    touched = {("cache", _text(key), write) for key in keys}
    if command in ("EVAL", "EVALSHA", "SCRIPT"):
        touched.add(("cache", SCRIPTS, command != "EVALSHA"))
    return frozenset(touched)


DB_READ: Footprint = frozenset({("db", "*", False)})   # a SELECT
DB_WRITE: Footprint = frozenset({("db", "*", True)})   # any other statement, a transaction


def sql_footprint(sql: str) -> Footprint:
    """A SELECT reads the database; anything else may write it."""
    return DB_READ if sql.lstrip().upper().startswith("SELECT") else DB_WRITE


def dependent(first: Footprint, second: Footprint) -> bool:
    """Two steps conflict if they touch the same key (or table) and one of them writes."""
    return any(
        store == store2 and (write or write2) and (key == key2 or "*" in (key, key2))
        for store, key, write in first
        for store2, key2, write2 in second
    )
# --8<-- [end:footprints]


class Schedule(tuple[str, ...]):
    """Who ran each step, in order: printed as ``A A B B A``."""

    def __str__(self) -> str:
        return " ".join(self)

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> Schedule:
        if isinstance(text, str):
            return cls(text.split())
        if isinstance(text, Sequence) and all(isinstance(name, str) for name in text):
            return cls(text)
        raise TypeError(f"a schedule is a string like 'A A B' or a sequence of names, got {text!r}")


@dataclass(frozen=True)
class Step:
    """One atomic call, as it ran: who, on what, the command and what came back."""

    actor: str
    target: str  # "cache" or "db"
    op: str      # e.g. 'GET user:1' or 'UPDATE users SET name = "B" WHERE id = 1'
    result: str  # e.g. 'nil', '"old"', '1 row', 'error ConnectionError'
    failed: bool = False
    inner: tuple[tuple[str, str], ...] = ()  # a transaction's statements and their results

    def __str__(self) -> str:
        return f"{self.actor}: {self.op} -> {self.result}"


class Returns(dict[str, Any]):
    """What each actor returned (or the exception it raised), plus when it ran: the index
    of its first and last step, so a check can ask whether one finished before another
    began."""

    def __init__(self) -> None:
        super().__init__()
        self.began: dict[str, int] = {}
        self.ended: dict[str, int] = {}

    def finished_before(self, first: str, second: str) -> bool:
        """True if every step of ``first`` ran before the first step of ``second``."""
        for name in (first, second):
            if name not in self:
                raise LookupError(f"no actor named {name!r}; actors: {', '.join(self)}")
        ended, began = self.ended.get(first, -1), self.began.get(second)
        return began is not None and ended < began


class _Aborted(BaseException):
    """Raised inside an actor to stop a run early; BaseException so pattern code that
    catches Exception cannot swallow it."""


_local = threading.local()  # .actor: the _ActorThread running on this thread, if any
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
        _local.actor = self
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


# --8<-- [start:step]
def _step(target: str, op: Callable[[], str], footprint: Callable[[], Footprint],
          call: Callable[[], Any], show: Callable[[Any], str] | None = None) -> Any:
    """Run ``call`` as one scheduled step of the actor on this thread."""
    actor: _ActorThread | None = getattr(_local, "actor", None)
    if actor is None or actor.in_step:  # setup, a check, or a call inside a transaction
        if actor is None or actor.inner is None:
            return call()
        text, result = op(), call()
        actor.inner.append((text, (show or _show)(result)))  # drawn inside the transaction
        return result
    text = op()
    actor.wait_turn(footprint())  # pause here until the scheduler picks this actor
    actor.in_step = True
    try:
        result = call()
    except Exception as error:
        actor.record(target, text, _show(error), failed=True)
        raise
    finally:
        actor.in_step = False
    actor.record(target, text, (show or _show)(result))
    return result
# --8<-- [end:step]


def instrument_cache(cache: Cache) -> Cache:
    """Make every command of ``cache`` (and of its pipelines) a scheduled step. Idempotent;
    outside an explored actor the client behaves exactly as before."""
    if getattr(cache, "_explorer_instrumented", False):
        return cache
    real_command, real_pipeline = cache.execute_command, cache.pipeline

    def execute_command(*args: Any, **options: Any) -> Any:
        return _step("cache", lambda: _redis_text(args), lambda: redis_footprint(args),
                     lambda: real_command(*args, **options))

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        return _instrument_pipeline(real_pipeline(*args, **kwargs))

    cache.execute_command = execute_command  # type: ignore[method-assign]
    cache.pipeline = pipeline  # type: ignore[method-assign]
    cache._explorer_instrumented = True  # type: ignore[attr-defined]
    return cache


def _instrument_pipeline(pipe: Any) -> Any:
    """WATCH and the commands after it run at once: one step each. Commands queued after
    MULTI run at EXEC: all of them, atomically, as one step."""
    real_immediate, real_execute = pipe.immediate_execute_command, pipe.execute
    watched: list[str] = []

    def immediate_execute_command(*args: Any, **options: Any) -> Any:
        if str(args[0]).upper() == "WATCH":
            watched.extend(_text(key) for key in args[1:])
        return _step("cache", lambda: _redis_text(args), lambda: redis_footprint(args),
                     lambda: real_immediate(*args, **options))

    def execute(*args: Any, **kwargs: Any) -> Any:
        queued = [command for command, _ in pipe.command_stack]
        transaction = pipe.transaction or pipe.explicit_transaction
        parts = [_redis_text(command) for command in queued]
        text = ", ".join(["MULTI", *parts, "EXEC"] if transaction else parts)
        footprint = frozenset().union(
            *(redis_footprint(command) for command in queued),
            {("cache", key, False) for key in watched})
        try:
            return _step("cache", lambda: text, lambda: footprint,
                         lambda: real_execute(*args, **kwargs))
        finally:
            watched.clear()

    pipe.immediate_execute_command = immediate_execute_command
    pipe.execute = execute
    return pipe


def instrument_db(db: Database) -> Database:
    """Make every SQL statement, and every transaction as a whole, a scheduled step."""
    if getattr(db, "_explorer_instrumented", False):
        return db
    real_query, real_execute, real_transaction = db.query, db.execute, db.transaction

    def query(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return _step("db", lambda: _sql_text(sql, params), lambda: sql_footprint(sql),
                     lambda: real_query(sql, params), show=_rows)

    def execute(sql: str, params: Sequence[Any] = ()) -> int:
        return _step("db", lambda: _sql_text(sql, params), lambda: DB_WRITE,
                     lambda: real_execute(sql, params))  # shown as the rows changed

    @contextmanager
    def transaction() -> Iterator[Database]:
        actor: _ActorThread | None = getattr(_local, "actor", None)
        if actor is None or actor.in_step:
            with real_transaction() as tx:
                yield tx
            return
        actor.wait_turn(DB_WRITE)  # the whole transaction is one step
        actor.in_step, actor.inner = True, []
        inner = actor.inner
        try:
            with real_transaction() as tx:
                yield tx
        except Exception as error:
            statements = ", ".join(["BEGIN", *(text for text, _ in inner), "ROLLBACK"])
            actor.record("db", statements, _show(error), failed=True, inner=inner)
            raise
        finally:
            actor.in_step, actor.inner = False, None
        statements = ", ".join(["BEGIN", *(text for text, _ in inner), "COMMIT"])
        actor.record("db", statements, "committed", inner=inner)

    db.query, db.execute = query, execute  # type: ignore[method-assign]
    db.transaction = transaction  # type: ignore[method-assign]
    db._explorer_instrumented = True  # type: ignore[attr-defined]
    return db


# How steps read on a page and in a diagram.

def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _quote(value: Any) -> str:
    return f'"{_text(value)}"'


OPTION_WORDS = {"EX", "PX", "EXAT", "PXAT", "NX", "XX", "KEEPTTL", "GET", "GT", "LT"}


def _redis_text(args: Sequence[Any]) -> str:
    """``SET user:1 "old" EX 300``: keys and option words bare, values quoted."""
    keys = {key for _, key, _ in redis_footprint(args)}
    shown = [str(args[0]).upper()]
    for arg in args[1:]:
        text = _text(arg)
        bare = text in keys or text in OPTION_WORDS or isinstance(arg, int) or text.isdigit()
        shown.append(text if bare else _quote(text))
    return " ".join(shown)


def _sql_text(sql: str, params: Sequence[Any]) -> str:
    """The statement with its parameters filled in, on one line."""
    values = iter(params)
    filled = re.sub(r"\?", lambda _: _show_value(next(values, "?")), sql)
    return " ".join(filled.split())


def _show_value(value: Any) -> str:
    return _quote(value) if isinstance(value, (str, bytes)) else str(value)


def _rows(rows: list[tuple]) -> str:
    if not rows:
        return "no rows"
    return " / ".join(", ".join(_show_value(value) for value in row) for row in rows)


def _show(result: Any) -> str:
    """A step's result in a few words."""
    if isinstance(result, redis.WatchError):
        return "refused: a watched key changed"
    if isinstance(result, BaseException):
        return f"error {type(result).__name__}"
    if result is None:
        return "nil"
    if result is True:
        return "OK"
    if isinstance(result, list):
        return ", ".join(_show(item) for item in result) if result else "empty"
    if isinstance(result, (str, bytes)):
        return _quote(result)
    return str(result)


def describe_state(cache: Cache, db: Database, returns: Returns) -> str:
    """The default outcome: every cached string, every user row, every non-None return."""
    parts = []
    keys = sorted(cache.keys("*"))
    for key, value in zip(keys, cache.mget(keys) if keys else []):
        shown = repr(value) if value is not None else f"a {cache.type(key)}"  # not a string
        parts.append(f"cache {key}={shown}")
    if not parts:
        parts.append("cache empty")
    for user_id, name in db.conn.execute("SELECT id, name FROM users ORDER BY id"):
        parts.append(f"DB user {user_id}={name!r}")
    for name, value in returns.items():
        if isinstance(value, BaseException):
            parts.append(f"{name} raised {type(value).__name__}")
        elif value is not None:
            parts.append(f"{name} returned {value!r}")
    return ", ".join(parts)


# The runs.

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

    def next_turn(self, current: _ActorThread | None) -> bool:
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
        if chosen is current:
            return True  # no hand-over needed: it runs its next step at once
        chosen.gate.release()
        return False

    def wait_main(self) -> None:
        if not self.main.acquire(timeout=RUN_TIMEOUT):
            raise RuntimeError(
                f"a run took over {RUN_TIMEOUT:.0f} s: an actor is blocked outside the cache "
                "and the database (a lock? a sleep?)")


@contextmanager
def _crew(actors: Mapping[str, Actor]) -> Iterator[list[_ActorThread]]:
    """One thread per actor for a whole exploration: starting threads is slow."""
    crew = [_ActorThread(name, fn) for name, fn in actors.items()]
    try:
        yield crew
    finally:
        for actor in crew:
            actor.retire()


def _execute(crew: list[_ActorThread], setup: Actor | None, make_cache: Callable[[], Cache],
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


def _check_actors(actors: Any) -> dict[str, Actor]:
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
        return _mermaid(self, dict(labels or {}), final_state, transactions_as_blocks)


def replay(actors: Mapping[str, Actor], setup: Actor | None, schedule: Schedule | str, *,
           check: Callable[[Cache, Database, Returns], str | None] | None = None,
           make_cache: Callable[[], Cache] = make_fake_cache,
           make_db: Callable[[], Database] = make_db) -> Run:
    """Run exactly ``schedule`` again: the same steps, in the same order, every time."""
    actors, wanted = _check_actors(actors), Schedule.parse(schedule)
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

    with _crew(actors) as crew:
        outcome = _execute(crew, setup, make_cache, make_db, choose, max_steps=10_000)
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
    actors = _check_actors(actors)
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

    with _crew(actors) as crew:
        while True:
            outcome = _execute(crew, setup, make_cache, make_db, choose, max_steps)
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


# Diagrams.

def _mermaid_text(text: str) -> str:
    """Message text Mermaid accepts: no semicolons, hashes, braces or angle brackets."""
    text = text.replace(";", ",").replace("->", "to")
    return " ".join(re.sub(r"[#{}<>]", "", text).split())


def _mermaid(run: Run, labels: dict[str, str], final_state: bool, blocks: bool) -> str:
    names = list(run.returns)
    unknown = set(labels) - set(names)
    if unknown:
        raise ValueError(f"labels name no actor: {', '.join(sorted(unknown))}")
    ids = {name: f"a{i}" for i, name in enumerate(names)}
    lines = ["sequenceDiagram"]
    lines += [f"    participant {ids[n]} as {_mermaid_text(labels.get(n, n))}" for n in names]
    lines += ["    participant R as Redis", "    participant D as Database"]
    finishing: dict[int, list[str]] = {}
    for name in names:
        finishing.setdefault(run.returns.ended.get(name, -1), []).append(name)
    for name in finishing.get(-1, []):
        lines.append(f"    Note over {ids[name]}: {_mermaid_text(_returned(run.returns[name]))}")
    for index, step in enumerate(run.steps):
        who, where = ids[step.actor], "R" if step.target == "cache" else "D"
        reply = "--x" if step.failed else "-->>"
        if blocks and step.inner:
            end = "ROLLBACK" if step.failed else "COMMIT"
            lines.append("    critical BEGIN, one transaction: one step")
            for text, result in [*step.inner, (end, step.result)]:
                lines.append(f"    {who}->>{where}: {_mermaid_text(text)}")
                arrow = reply if text == end else "-->>"
                lines.append(f"    {where}{arrow}{who}: {_mermaid_text(result)}")
            lines.append("    end")
        else:
            lines.append(f"    {who}->>{where}: {_mermaid_text(step.op)}")
            lines.append(f"    {where}{reply}{who}: {_mermaid_text(step.result)}")
        for name in finishing.get(index, []):
            lines.append(f"    Note over {ids[name]}: {_mermaid_text(_returned(run.returns[name]))}")
    if run.verdict is not None:
        lines.append(f"    Note over R,D: {_mermaid_text(run.verdict)}")
    elif final_state:
        lines.append(f"    Note over R,D: end: {_mermaid_text(run.final)}")
    return "\n".join(lines)


MESSAGE = re.compile(r"    (\w+)(->>|-->>|--x)(\w+): ([^;#{}<>]+)")
NOTE = re.compile(r"    Note over (\w+)(?:,(\w+))?: ([^;#{}<>]+)")
BLOCK = re.compile(r"    critical [^;#{}<>]+")
PARTICIPANT = re.compile(r"    participant (\w+) as ([^;#{}<>]+)")


def mermaid_problems(text: str) -> list[str]:
    """What is wrong with a diagram this module generated, checked line by line: the
    header, participants declared before use, and no character that breaks Mermaid."""
    lines = text.split("\n")
    problems = [] if lines[0] == "sequenceDiagram" else ["the first line is not sequenceDiagram"]
    declared: set[str] = set()
    messages = depth = 0
    for number, line in enumerate(lines[1:], start=2):
        if match := PARTICIPANT.fullmatch(line):
            if messages:
                problems.append(f"line {number}: a participant declared after a message")
            declared.add(match[1])
            continue
        if line == "    end" or BLOCK.fullmatch(line):
            depth += 1 if line != "    end" else -1
            if depth < 0:
                problems.append(f"line {number}: an end without a block")
            continue
        match = MESSAGE.fullmatch(line) or NOTE.fullmatch(line)
        if match is None:
            problems.append(f"line {number}: not a participant, message or note: {line!r}")
            continue
        messages += 1
        used = {match[1], match[3]} if match.re is MESSAGE else {match[1], match[2] or match[1]}
        if not used <= declared:
            problems.append(f"line {number}: undeclared participant in {line!r}")
    if depth:
        problems.append("a block is not closed with end")
    return problems


def _returned(value: Any) -> str:
    if isinstance(value, BaseException):
        return f"raised {type(value).__name__}"
    return "done" if value is None else f"returns {_show(value)}"


# Diagrams on the pages are generated: a fence right after
#     <!-- diagram: snippets.module:function -->
# holds exactly function().mermaid() (or function() if it returns text).
FENCE = re.compile(r"<!-- diagram: (?P<ref>[\w.]+:\w+) -->\n```mermaid\n(?P<body>.*?)\n```", re.S)
DOCS = Path(__file__).resolve().parent.parent / "docs"


def render(ref: str) -> str:
    """The diagram text for ``module:function``."""
    module, _, function = ref.partition(":")
    made = getattr(importlib.import_module(module), function)()
    return made if isinstance(made, str) else made.mermaid()


def page_diagrams(page: Path) -> list[tuple[str, str]]:
    """Each generated diagram on a page: (reference, text in the page)."""
    return [(m["ref"], m["body"]) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def update_diagrams(pages: Sequence[Path], write: bool) -> list[str]:
    """Regenerate every marked diagram; return the references whose text changed."""
    changed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")

        def fresh(match: re.Match[str]) -> str:
            body = render(match["ref"])
            if body != match["body"]:
                changed.append(f"{page.name}: {match['ref']}")
            return f"<!-- diagram: {match['ref']} -->\n```mermaid\n{body}\n```"

        new = FENCE.sub(fresh, text)
        if write and new != text:
            page.write_text(new, encoding="utf-8")
    return changed


# A worked example and the benchmark.

# --8<-- [start:example]
def writer(name: str) -> Actor:
    """Update-on-write, by hand: UPDATE the row, then SET the cache to the same value."""
    def write(cache: Cache, db: Database) -> None:
        db.execute("UPDATE users SET name = ? WHERE id = 1", (name,))
        cache.set("user:1", name)
    return write


def old_user(cache: Cache, db: Database) -> None:
    db.add_user(1, "old")


def cache_matches_db(cache: Cache, db: Database, returns: Returns) -> str | None:
    """The invariant: once everyone is done, the cache holds nothing or the DB's value."""
    cached, [(row,)] = cache.get("user:1"), db.query("SELECT name FROM users WHERE id = 1")
    if cached is not None and cached != row:
        return f"the cache holds {cached!r} but the DB says {row!r}"
    return None
# --8<-- [end:example]


def lost_update() -> Run:
    """The first bad schedule the explorer reports for the two writers, replayed."""
    writers = {"A": writer("A"), "B": writer("B")}
    result = explore(writers, old_user, cache_matches_db)
    return replay(writers, old_user, result.bad[0], check=cache_matches_db)


def _writer_actors(count: int, steps: int) -> dict[str, Actor]:
    """One writer (UPDATE, DEL, UPDATE, DEL ...) and cache-aside readers."""
    from snippets.cache_aside import get_user

    def write(cache: Cache, db: Database) -> None:
        for i in range(steps // 2):
            db.execute("UPDATE users SET name = ? WHERE id = 1", (f"v{i + 1}",))
            cache.delete("user:1")

    def read(cache: Cache, db: Database) -> str | None:
        for _ in range(steps // 3):  # a miss is GET, SELECT, SET; a hit just GET
            last = get_user(cache, db, 1)
        if steps % 3:
            last = cache.get("user:1")
        return last

    actors: dict[str, Actor] = {"W": write}
    actors.update({f"R{i + 1}": read for i in range(count - 1)})
    return actors


def _counter_actors(count: int, steps: int, keys: int) -> dict[str, Actor]:
    """``count`` actors of ``steps`` INCRs each, spread over ``keys`` keys."""
    def actor(offset: int) -> Actor:
        def body(cache: Cache, db: Database) -> None:
            for i in range(steps):
                cache.incr(f"k{(offset + i) % keys}")
        return body
    return {chr(ord("A") + i): actor(i) for i in range(count)}


def bench() -> None:
    """Schedules per second on a few workloads (a few seconds in all)."""
    one_cache = reusing(make_fake_cache())
    workloads: list[tuple[str, dict[str, Actor], bool, Callable[[], Cache]]] = [
        ("2 actors x 6 steps, one key: nothing commutes", _counter_actors(2, 6, 1), True,
         make_fake_cache),
        ("  the same, one fakeredis emptied between runs", _counter_actors(2, 6, 1), True,
         one_cache),
        ("2 actors x 6 steps, cache-aside writer + reader", _writer_actors(2, 6), True,
         make_fake_cache),
        ("  the same, every interleaving (no reduction)", _writer_actors(2, 6), False,
         make_fake_cache),
        ("3 actors x 4 steps, cache-aside writer + 2 readers", _writer_actors(3, 4), True,
         make_fake_cache),
        ("3 actors x 4 steps, 3 keys (INCR)", _counter_actors(3, 4, 3), True, make_fake_cache),
    ]
    print(f"{'workload':<52} {'schedules':>9} {'pruned':>6} {'seconds':>7} "
          f"{'sched/s':>7} {'runs/s':>6}")
    for title, actors, reduce, make_cache in workloads:
        result = explore(actors, old_user, reduce=reduce, make_cache=make_cache)
        runs = result.total + result.pruned
        print(f"{title:<52} {result.total:>9} {result.pruned:>6} {result.seconds:>7.2f} "
              f"{result.total / result.seconds:>7.0f} {runs / result.seconds:>6.0f}")


def main(argv: Sequence[str] = ()) -> None:
    if "--bench" in argv:
        bench()
    elif "--diagrams" in argv:
        named = [Path(arg) for arg in argv if not arg.startswith("--")]
        pages = named or sorted(DOCS.rglob("*.md"))
        changed = update_diagrams(pages, write="--check" not in argv)
        verb = "differs" if "--check" in argv else "rewritten"
        print("\n".join(f"{verb}: {c}" for c in changed) or "every generated diagram is up to date")
        if changed and "--check" in argv:
            raise SystemExit(1)
    else:
        writers = {"A": writer("A"), "B": writer("B")}
        result = explore(writers, old_user, cache_matches_db)
        print(result.summary())
        run = replay(writers, old_user, result.bad[0], check=cache_matches_db)
        print(f"replay of {run.schedule}:")
        for step in run.steps:
            print(f"  {step}")
        print(f"  {run.verdict}")


if __name__ == "__main__":
    main(sys.argv[1:])
