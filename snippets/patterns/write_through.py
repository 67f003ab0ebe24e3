"""Write-through: every write updates the database and the cache, so reads after it hit.

The cache entry of a user is a Redis hash, ``user:1 -> {name, version}``: the version is
the row's ``users.version`` and lets a late writer see that its value is already old.

Run it: ``python -m snippets.patterns.write_through`` (``--bench`` counts the cost of a write;
add ``REDIS_URL=redis://127.0.0.1:6379/0`` for a real Redis).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from snippets.backends import (
    DEFAULT_TTL, Cache, Database, check_name, check_ttl, make_cache, make_db, user_key,
)
from snippets.explorer import Actor, Returns, replay
from snippets.patterns.cache_aside import get_user as cache_aside_get_user
from snippets.patterns.cache_aside import update_user as cache_aside_update_user


def check_version(version: object) -> int:
    """Return ``version`` if it is a positive whole number, else raise ValueError."""
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    return version


# --8<-- [start:intercept]
class Intercept:
    """A cache or DB whose next call to ``method`` first runs ``before()``.

    A hook that raises injects a failure; a hook that runs another writer
    injects an interleaving. Every other call passes straight through.
    """

    def __init__(self, inner: Any, method: str, before: Callable[[], object]):
        if not callable(getattr(inner, method, None)):
            kind = type(inner).__name__
            raise ValueError(f"{kind} has no method {method!r} to intercept")
        self.inner, self.method, self.before = inner, method, before
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method or self.fired:
            return attr

        def intercepted(*args: Any, **kwargs: Any) -> Any:
            self.fired = True  # once: the hook may itself call this method
            self.before()
            return attr(*args, **kwargs)

        return intercepted


def fail(error: BaseException) -> Callable[[], None]:
    """A hook that raises ``error``: an injected fault."""

    def hook() -> None:
        raise error

    return hook
# --8<-- [end:intercept]


# --8<-- [start:read]
def get_user(
    cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL
) -> str | None:
    """The user's name: from the cache, or from the DB (then cached)."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    cached = cache.hget(key, "name")
    if cached is not None:
        return cached
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
    """The seed's order: the cache, then the database."""
    key, ttl, name = user_key(user_id), check_ttl(ttl), check_name(name)
    put(cache, key, {"name": name}, ttl)
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
    put(cache, key, {"name": name}, ttl)


def put(cache: Cache, key: str, fields: dict[str, Any], ttl: int) -> None:
    """HSET and EXPIRE in one MULTI/EXEC: never a value without its TTL."""
    with cache.pipeline() as pipe:
        pipe.hset(key, mapping=fields)
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
    name, version = check_name(name), check_version(version)
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
    name, version = check_name(name), check_version(version)
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
    return {name: lambda cache, db, name=name: write(cache, db, 1, name)
            for name in names}


def old_user(cache: Cache, db: Database) -> None:
    db.add_user(1, "old")


def cache_matches_db(
    cache: Cache, db: Database, returns: Returns
) -> str | None:
    """Once everyone is done, the cache holds nothing or the DB's name."""
    cached = cache.hget(user_key(1), "name")
    [(name,)] = db.query("SELECT name FROM users WHERE id = 1")
    if cached is not None and cached != name:
        return f"the cache holds {cached!r} but the DB says {name!r}"
    return None


def outcome(cache: Cache, db: Database, returns: Returns) -> str:
    [(name,)] = db.query("SELECT name FROM users WHERE id = 1")
    return f"cache {cache.hget(user_key(1), 'name')!r}, DB {name!r}"


def race_unordered() -> str:
    """A commits first but sets last: drawn from a real run."""
    run = replay(writers(update_user_db_first, "A", "B"), old_user, "A B B A",
                 check=cache_matches_db)
    return run.mermaid({"A": "Writer A", "B": "Writer B"}, transactions_as_blocks=True)


def race_versioned() -> str:
    """The same schedule with versioned sets: A's late set is refused."""
    run = replay(writers(update_user, "A", "B"), old_user, "A B B A",
                 check=cache_matches_db)
    return _named_script(run.mermaid({"A": "Writer A", "B": "Writer B"},
                                     transactions_as_blocks=True))


def set_is_lost(cache: Cache, db: Database) -> int:
    """A writer whose versioned set is lost: it falls back to DEL."""
    lost = Intercept(cache, "eval", fail(redis.ConnectionError("lost")))
    return update_user(lost, db, 1, "new")


def race_copy_gone() -> str:
    """The reader loads the old row, the writer's set is lost and it deletes
    the copy, then the reader's fill finds no version to compare with."""
    actors = {"W": set_is_lost, "R": lambda cache, db: get_user(cache, db, 1)}
    run = replay(actors, old_user, "R R W W R", check=cache_matches_db)
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

            conn.read_response = read_response
            conn.send_packed_command = send_packed_command
        return conn

    pool.get_connection = get_connection
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
    if isinstance(writes, bool) or not isinstance(writes, int) or writes <= 0:
        raise ValueError(f"writes must be a positive integer, got {writes!r}")
    patterns = {
        "cache-aside": (cache_aside_update_user, cache_aside_get_user),
        "write-through": (update_user, get_user),
    }
    per: dict[str, list[float]] = {}
    for label, (update, read) in patterns.items():
        cache, db = make_cache(), make_db()
        db.add_user(1, "Ada")
        read(cache, db, 1)  # start warm
        w, r = [0, 0, 0], [0, 0, 0]
        for i in range(writes):  # each write is followed by one read
            wrote = cost(cache, db, lambda: update(cache, db, 1, f"v{i}"))
            w = [a + b for a, b in zip(w, wrote)]
            then = cost(cache, db, lambda: read(cache, db, 1))
            r = [a + b for a, b in zip(r, then)]
        per[f"{label}: one write"] = [n / writes for n in w]
        per[f"{label}: the read after it"] = [n / writes for n in r]
        per[f"{label}: write + read"] = [(a + b) / writes for a, b in zip(w, r)]
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
        line(f"ratio, {what}", [f"{t / b:.1f}x" for t, b in zip(top, bottom)])
# --8<-- [end:bench]


def main() -> None:
    """Narrate write-through: a write, a hit, then what the seed leaves out."""
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

    broken_db = Intercept(db, "execute", fail(RuntimeError("injected: DB down")))
    try:
        update_user_cache_first(cache, broken_db, 1, "Ghost")
    except RuntimeError:
        state("cache first, the DB write fails ->")

    update_user(cache, db, 1, "Ada")  # back in agreement
    def writer_b() -> None:
        update_user_db_first(cache, db, 1, "B")
    paused = Intercept(cache, "pipeline", writer_b)  # A pauses before its set
    update_user_db_first(paused, db, 1, "A")
    state("A: UPDATE, B: UPDATE + SET, A: SET ->")

    update_user(cache, db, 1, "Ada")
    def versioned_b() -> None:
        update_user(cache, db, 1, "B")
    update_user(Intercept(cache, "eval", versioned_b), db, 1, "A")
    state("same schedule, versioned sets ->")


if __name__ == "__main__":
    if sys.argv[1:] == ["--bench"]:
        bench()
    elif sys.argv[1:]:
        sys.exit(f"usage: python -m snippets.patterns.write_through [--bench], got {sys.argv[1:]}")
    else:
        main()
