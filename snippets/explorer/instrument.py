"""Instrumentation: every cache command and SQL statement becomes one scheduled step.

The actor running now (if any) is the ``actor`` of the current greenlet; outside an
explored actor an instrumented client behaves exactly as before."""

from __future__ import annotations

# --8<-- [start:imports]
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import greenlet

from snippets.backends import Cache, Database
from snippets.explorer.direct import go_direct
from snippets.explorer.footprints import (Footprint, redis_footprint, sql_footprint,
                                          writing)
from snippets.explorer.memo import STATEFUL
from snippets.explorer.text import as_text, redis_text, rows_text, show, sql_text
# --8<-- [end:imports]


def current_actor() -> Any:
    """The explored actor making this call, or None (setup, a check, plain use)."""
    return getattr(greenlet.getcurrent(), "actor", None)


# --8<-- [start:step]
def _step(target: str, op: Callable[[], str], footprint: Footprint,
          call: Callable[[], Any], shown_as: Callable[[Any], str] = show,
          request: Any = None) -> Any:
    """Run ``call`` as one scheduled step of the actor making it. ``request`` (the
    command and its arguments) tells prefix replay whether this run asks what the
    last one asked at this point."""
    actor = current_actor()
    if actor is None or actor.in_step:  # setup, a check, or a call inside a transaction
        if actor is None or actor.inner is None:
            return call()
        result = actor.saw(call)  # noted: what the actor acts on
        if actor.run.recording:  # drawn inside the transaction
            actor.inner.append((op(), shown_as(result)))
        return result
    actor.wait_turn(footprint)  # pause here until the scheduler picks this actor
    actor.in_step = True
    try:  # the call, or what it returned last time (prefix replay)
        result = actor.saw(lambda: actor.run.call(call, request))
    except Exception as error:
        actor.record(target, op, lambda error=error: show(error), failed=True)
        raise
    finally:
        actor.in_step = False
    actor.record(target, op, lambda: shown_as(result))
    return result
# --8<-- [end:step]


# --8<-- [start:own-step]
def step(store: str, footprint: Footprint, call: Callable[[], tuple[str, Any]]) -> Any:
    """One atomic step of a world's own: ``call()`` runs with nothing in between and
    returns (what it did, its result); the text is drawn as a message to ``store``.
    Replication, a failover, a message delivered: the explorer interleaves them like
    any command. Outside the explorer it just calls."""
    done: list[str] = []

    def run() -> Any:
        text, result = call()
        done.append(text)
        return result

    return _step(store, lambda: done[-1] if done else "(failed)", footprint,
                 run)
# --8<-- [end:own-step]


def instrument_world(cache: Cache, db: Database) -> tuple[Cache, Database]:
    """Instrument the cache and the database, and every store they hold beside
    themselves (a replica, a second region's Redis): ``stores()`` names them."""
    for owner in (cache, db):
        for store, part in getattr(owner, "stores", dict)().items():
            if isinstance(part, Database):
                instrument_db(part, store)
            else:
                instrument_cache(part, store)
    return instrument_cache(cache), instrument_db(db)


def instrument_cache(cache: Cache, store: str = "cache") -> Cache:
    """Make every command of ``cache`` (and of its pipelines) a scheduled step on
    ``store``. Idempotent; outside an explored actor the client behaves as before."""
    if getattr(cache, "_explorer_instrumented", False):
        return cache
    go_direct(cache)  # a fakeredis: straight to its handlers, no RESP in between
    real_command, real_pipeline = cache.execute_command, cache.pipeline

    def execute_command(*args: Any, **options: Any) -> Any:
        return _step(store, lambda: redis_text(args), _command(args, store),
                     lambda: real_command(*args, **options), request=args)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        return _instrument_pipeline(real_pipeline(*args, **kwargs), store)

    cache.execute_command = execute_command  # type: ignore[method-assign]
    cache.pipeline = pipeline  # type: ignore[method-assign]
    cache._explorer_instrumented = True  # type: ignore[attr-defined]
    return cache


def _instrument_pipeline(pipe: Any, store: str) -> Any:
    """WATCH and the commands after it run at once: one step each. Commands queued after
    MULTI run at EXEC: all of them, atomically, as one step."""
    real_immediate, real_execute = pipe.immediate_execute_command, pipe.execute
    watched: list[str] = []

    def immediate_execute_command(*args: Any, **options: Any) -> Any:
        if str(args[0]).upper() == "WATCH":
            watched.extend(as_text(key) for key in args[1:])
        return _step(store, lambda: redis_text(args), _command(args, store),
                     lambda: real_immediate(*args, **options), request=args)

    def execute(*args: Any, **kwargs: Any) -> Any:
        queued = [command for command, _ in pipe.command_stack]
        transaction = pipe.transaction or pipe.explicit_transaction
        parts = [redis_text(command) for command in queued]
        text = ", ".join(["MULTI", *parts, "EXEC"] if transaction else parts)
        footprint = frozenset().union(
            *(redis_footprint(command, store) for command in queued),
            {(store, key, False) for key in watched})
        try:
            return _step(store, lambda: text, footprint,
                         lambda: real_execute(*args, **kwargs),
                         request=tuple(tuple(command) for command in queued))
        finally:
            watched.clear()

    pipe.immediate_execute_command = immediate_execute_command
    pipe.execute = execute
    return pipe


def instrument_db(db: Database, store: str = "db") -> Database:
    """Make every SQL statement, and every transaction as a whole, a scheduled step on
    ``store``."""
    if getattr(db, "_explorer_instrumented", False):
        return db
    real_query, real_execute, real_transaction = db.query, db.execute, db.transaction

    def query(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return _step(store, lambda: sql_text(sql, params), _sql(sql, store),
                     lambda: real_query(sql, params), shown_as=rows_text,
                     request=(sql, tuple(params)))

    def execute(sql: str, params: Sequence[Any] = ()) -> int:
        return _step(store, lambda: sql_text(sql, params), writing(store),
                     lambda: real_execute(sql, params),  # shown as the rows changed
                     request=(sql, tuple(params)))

    @contextmanager
    def transaction() -> Iterator[Database]:
        actor = current_actor()
        if actor is None or actor.in_step:
            with real_transaction() as tx:
                yield tx
            return
        actor.run.stateful = True  # its statements run inside: prefix replay cannot
        actor.wait_turn(writing(store))  # the whole transaction is one step
        actor.in_step, actor.inner = True, []
        inner = actor.inner
        try:
            with real_transaction() as tx:
                yield tx
        except Exception as error:
            actor.record(store, lambda: _block(inner, "ROLLBACK"),
                         lambda error=error: show(error), failed=True, inner=inner)
            raise
        finally:
            actor.in_step, actor.inner = False, None
        actor.record(store, lambda: _block(inner, "COMMIT"), lambda: "committed",
                     inner=inner)

    db.query, db.execute = query, execute  # type: ignore[method-assign]
    db.transaction = transaction  # type: ignore[method-assign]
    db._explorer_instrumented = True  # type: ignore[attr-defined]
    return db


def _block(inner: list[tuple[str, str]], end: str) -> str:
    return ", ".join(["BEGIN", *(text for text, _ in inner), end])


def _command(args: tuple[Any, ...], store: str) -> Footprint:
    """The footprint of a Redis command; a command that leaves state on a connection
    turns prefix replay off."""
    try:
        footprint, stateful = _known_command(args, store)
    except TypeError:  # an argument that cannot be a dictionary key
        footprint, stateful = _known_command.__wrapped__(args, store)
    if stateful and (actor := current_actor()) is not None:
        actor.run.stateful = True
    return footprint


@functools.lru_cache(maxsize=4096)
def _known_command(args: tuple[Any, ...], store: str) -> tuple[Footprint, bool]:
    return redis_footprint(args, store), str(args[0]).upper() in STATEFUL


@functools.lru_cache(maxsize=1024)
def _sql(sql: str, store: str) -> Footprint:
    return sql_footprint(sql, store)
