"""Write-through: every write updates the database and the cache, so reads after it
hit.

The cache entry of a user is a Redis hash, ``user:1 -> {name, version}``: the version
is the row's ``users.version`` and lets a late writer see that its value is already old.

Run it: ``python -m snippets.patterns.write_through`` (``--bench`` counts the cost of a
write; add ``REDIS_URL=redis://127.0.0.1:6379/0`` for a real Redis).
"""

from __future__ import annotations

# --8<-- [start:imports]
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import redis

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_int,
    check_name,
    check_ttl,
    make_cache,
    make_db,
    user_key,
)
from snippets.explorer import Actor, Returns, Run, replay
from snippets.faults import Intercept
from snippets.patterns import cache_aside
from snippets.scenarios import agrees_with_db, user_not_cached

# --8<-- [end:imports]


# --8<-- [start:fail]
def fail(error: BaseException) -> Callable[[], None]:
    """A hook for ``Intercept`` that raises ``error``: an injected fault."""

    def hook() -> None:
        raise error

    return hook
# --8<-- [end:fail]


# --8<-- [start:read]
def get_user(
    cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL
) -> str | None:
    """The user's name: from the cache, or from the DB (then cached)."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    cached = cache.hget(key, "name")
    if cached is not None:
        return cached  # type: ignore[return-value]  # replies are decoded: a str
    rows = db.query("SELECT name, version FROM users WHERE id = ?", (user_id,))
    if not rows:
        return None
    name, version = rows[0]
    # Versioned: a slow reader cannot put back a row older than a write.
    set_if_newer(cache, user_id, name, version, ttl)
    return name
# --8<-- [end:read]


# --8<-- [start:naive]
def update_user_cache_first(
    cache: Cache, db: Database, user_id: int, name: str, ttl: int = DEFAULT_TTL
) -> None:
    """The order the common advice gives: the cache, then the database."""
    key, ttl, name = user_key(user_id), check_ttl(ttl), check_name(name)
    put(cache, key, name, ttl)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")


def update_user_db_first(
    cache: Cache, db: Database, user_id: int, name: str, ttl: int = DEFAULT_TTL
) -> None:
    """The database, then the cache: better, but the sets are not ordered."""
    key, ttl, name = user_key(user_id), check_ttl(ttl), check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    put(cache, key, name, ttl)


def put(cache: Cache, key: str, name: str, ttl: int) -> None:
    """HSET, then EXPIRE, in one MULTI/EXEC: nothing runs between them. (Not
    all-or-nothing: a failed HSET does not stop the EXPIRE, nor roll anything back.)"""
    with cache.pipeline() as pipe:
        pipe.hset(key, mapping={"name": name})
        pipe.expire(key, ttl)
        pipe.execute()
# --8<-- [end:naive]


# --8<-- [start:write]
def update_user(
    cache: Cache, db: Database, user_id: int, name: str, ttl: int = DEFAULT_TTL
) -> int:
    """Commit the row, then copy it to the cache unless a newer copy is there.

    Returns the row's new version.
    """
    key, ttl, name = user_key(user_id), check_ttl(ttl), check_name(name)
    with db.transaction():  # the UPDATE and the version we read are one unit
        changed = db.execute(
            "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
            (name, user_id),
        )
        if changed == 0:
            raise LookupError(f"no user with id {user_id}")
        [(version,)] = db.query(
            "SELECT version FROM users WHERE id = ?", (user_id,)
        )
    try:
        set_if_newer(cache, user_id, name, version, ttl)
    except redis.RedisError:
        # Committed, but the copy was not replaced: drop it so the next read
        # reloads the row. If Redis cannot do even that, this raises too,
        # and the old copy lives until its TTL.
        cache.delete(key)
    return version


# Atomic on the server: no other command runs between the check and the write.
SET_IF_NEWER = """
local held = redis.call('HGET', KEYS[1], 'version')
if held and tonumber(held) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'version', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def set_if_newer(
    cache: Cache, user_id: int, name: str, version: int, ttl: int = DEFAULT_TTL
) -> bool:
    """Store (name, version) unless the cache holds this version or newer."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    name, version = check_name(name), check_int("version", version)
    return cache.eval(SET_IF_NEWER, 1, key, name, version, ttl) == 1
# --8<-- [end:write]


# --8<-- [start:watch]
def set_if_newer_watch(
    cache: Cache, user_id: int, name: str, version: int, ttl: int = DEFAULT_TTL
) -> bool:
    """The same check without Lua: WATCH, read, then MULTI/EXEC.

    If another client changes the key between our read and EXEC, EXEC fails
    and we compare again.
    """
    key, ttl = user_key(user_id), check_ttl(ttl)
    name, version = check_name(name), check_int("version", version)
    with cache.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                held = pipe.hget(key, "version")
                if held is not None and int(held) >= version:
                    return False  # a newer write got there first: keep it
                pipe.multi()
                pipe.hset(key, mapping={"name": name, "version": version})
                pipe.expire(key, ttl)
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # the key changed under us: compare again
# --8<-- [end:watch]


# --8<-- [start:explore]
Writer = Callable[[Cache, Database, int, str], object]


def writers(write: Writer, *names: str) -> dict[str, Actor]:
    """One actor per name, each writing its own name to user 1."""
    if not names:
        raise ValueError("give at least one writer name")
    return {name: writer(write, name) for name in names}


def writer(write: Writer, name: str) -> Actor:
    """One actor that writes ``name`` to user 1 with ``write``."""
    return lambda cache, db: write(cache, db, 1, name)


# The invariant, on the hash: once everyone is done, the cache holds nothing for
# user 1, or the name the DB holds.
hash_agrees_with_db = agrees_with_db(lambda cache: cache.hget(user_key(1), "name"))


def outcome(cache: Cache, db: Database, returns: Returns) -> str:
    [(name,)] = db.query("SELECT name FROM users WHERE id = 1")
    return f"cache {cache.hget(user_key(1), 'name')!r}, DB {name!r}"


def race_unordered_run() -> Run:
    """A commits first but sets last."""
    return replay(writers(update_user_db_first, "A", "B"), user_not_cached, "A B B A",
                  check=hash_agrees_with_db)


def race_versioned_run() -> Run:
    """The same schedule with versioned sets."""
    return replay(writers(update_user, "A", "B"), user_not_cached, "A B B A",
                  check=hash_agrees_with_db)


def race_unordered() -> str:
    """A commits first but sets last: drawn from a real run."""
    run = race_unordered_run()
    return run.mermaid({"A": "Writer A", "B": "Writer B"}, transactions_as_blocks=True)


def race_versioned() -> str:
    """The same schedule with versioned sets: A's late set is refused."""
    run = race_versioned_run()
    return _named_script(run.mermaid({"A": "Writer A", "B": "Writer B"},
                                     transactions_as_blocks=True))


def set_is_lost(cache: Cache, db: Database) -> int:
    """A writer whose versioned set is lost: it falls back to DEL."""
    lost = Intercept(cache, "eval", fail(redis.ConnectionError("lost")))
    return update_user(lost, db, 1, "new")  # type: ignore[arg-type]  # a proxy


def race_copy_gone() -> str:
    """The reader loads the old row, the writer's set is lost and it deletes
    the copy, then the reader's fill finds no version to compare with."""
    actors = {"W": set_is_lost, "R": lambda cache, db: get_user(cache, db, 1)}
    run = replay(actors, user_not_cached, "R R W W R", check=hash_agrees_with_db)
    return _named_script(run.mermaid({"W": "Writer", "R": "Reader"},
                                     transactions_as_blocks=True))


def _named_script(diagram: str) -> str:
    # Name the script instead of printing it.
    return re.sub(r'EVAL "[^"]*"', "EVAL set-if-newer", diagram)
# --8<-- [end:explore]


# --8<-- [start:bench]
@contextmanager
def counting(cache: Cache) -> Iterator[dict[str, int]]:
    """Count the Redis commands, and the round trips, this client sends.

    Every command gets one reply (MULTI and each queued command too), so
    replies count commands; a pipeline sends its commands in one round trip.
    """
    counts = {"commands": 0, "round_trips": 0}
    pool, patched = cache.connection_pool, {}
    checkout = pool.get_connection

    def get_connection(*args: Any, **kwargs: Any) -> Any:
        conn = checkout(*args, **kwargs)
        if id(conn) not in patched:
            patched[id(conn)] = conn
            read, send = conn.read_response, conn.send_packed_command

            def read_response(*a: Any, **k: Any) -> Any:
                counts["commands"] += 1
                return read(*a, **k)

            def send_packed_command(*a: Any, **k: Any) -> Any:
                counts["round_trips"] += 1
                return send(*a, **k)

            # counted on this connection until the block ends
            conn.read_response = read_response  # type: ignore[method-assign]
            conn.send_packed_command = send_packed_command  # type: ignore[method-assign]
        return conn

    pool.get_connection = get_connection  # type: ignore[method-assign]  # undone below
    try:
        yield counts
    finally:  # back to the class's own methods
        del pool.get_connection
        for conn in patched.values():
            del conn.read_response, conn.send_packed_command


def cost(cache: Cache, db: Database, op: Callable[[], object]) -> list[int]:
    """Run ``op`` once: [DB statements, Redis commands, Redis round trips]."""
    if not callable(op):
        raise TypeError(f"op must be callable, got {op!r}")
    db.reset_counts()
    with counting(cache) as counts:
        op()
    return [db.reads + db.writes, counts["commands"], counts["round_trips"]]


def bench(writes: int = 100) -> None:
    """Count what one write costs, and what the read after it costs."""
    check_int("writes", writes)
    patterns: dict[str, tuple[Callable[..., object], Callable[..., object]]] = {
        "cache-aside": (cache_aside.update_user, cache_aside.get_user),
        "write-through": (update_user, get_user),
    }
    per: dict[str, list[float]] = {}
    for label, (update, read) in patterns.items():
        cache, db = make_cache(), make_db()
        db.add_user(1, "Ada")
        read(cache, db, 1)  # start warm
        w, r = [0, 0, 0], [0, 0, 0]
        for i in range(writes):  # each write is followed by one read
            wrote = cost(cache, db, partial(update, cache, db, 1, f"v{i}"))
            w = [a + b for a, b in zip(w, wrote, strict=True)]
            then = cost(cache, db, partial(read, cache, db, 1))
            r = [a + b for a, b in zip(r, then, strict=True)]
        per[f"{label}: one write"] = [n / writes for n in w]
        per[f"{label}: the read after it"] = [n / writes for n in r]
        per[f"{label}: write + read"] = [
            (a + b) / writes for a, b in zip(w, r, strict=True)]
        cache.close()
        db.close()

    def line(label: str, cells: list[str]) -> None:
        print(f"{label:<33}" + "".join(f"{cell:>15}" for cell in cells))

    print(f"per operation, averaged over {writes} writes each followed by a read")
    line("", ["DB statements", "Redis commands", "round trips"])
    for label, figures in per.items():
        line(label, [f"{n:.1f}" for n in figures])
    for what in ("one write", "write + read"):
        top, bottom = per[f"write-through: {what}"], per[f"cache-aside: {what}"]
        ratios = [f"{t / b:.1f}x" for t, b in zip(top, bottom, strict=True)]
        line(f"ratio, {what}", ratios)
# --8<-- [end:bench]


def main() -> None:
    """Narrate write-through: a write, a hit, then what the common advice leaves
    out."""
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")

    def state(label: str) -> None:
        name = db.query("SELECT name FROM users WHERE id = 1")[0][0]
        print(f"{label:<40} cache {cache.hget(user_key(1), 'name')!r}, DB {name!r}")

    update_user(cache, db, 1, "Ada Lovelace")
    state("write: DB commit, then versioned set ->")
    reads = db.reads
    get_user(cache, db, 1)
    print(f"{'read: a hit ->':<40} DB reads: {db.reads - reads}")

    # Intercept stands in for the cache or the DB it wraps: hence the ignores.
    broken_db = Intercept(db, "execute", fail(RuntimeError("injected: DB down")))
    try:
        update_user_cache_first(cache, broken_db, 1, "Ghost")  # type: ignore[arg-type]
    except RuntimeError:
        state("cache first, the DB write fails ->")

    update_user(cache, db, 1, "Ada")  # back in agreement

    def writer_b() -> None:
        update_user_db_first(cache, db, 1, "B")

    paused = Intercept(cache, "pipeline", writer_b)  # A pauses before its set
    update_user_db_first(paused, db, 1, "A")  # type: ignore[arg-type]
    state("A: UPDATE, B: UPDATE + SET, A: SET ->")

    update_user(cache, db, 1, "Ada")

    def versioned_b() -> None:
        update_user(cache, db, 1, "B")

    paused = Intercept(cache, "eval", versioned_b)
    update_user(paused, db, 1, "A")  # type: ignore[arg-type]
    state("same schedule, versioned sets ->")


if __name__ == "__main__":
    if sys.argv[1:] == ["--bench"]:
        bench()
    elif sys.argv[1:]:
        sys.exit("usage: python -m snippets.patterns.write_through [--bench], "
                 f"got {sys.argv[1:]}")
    else:
        main()
