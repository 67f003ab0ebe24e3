"""Update-on-write vs invalidate-on-write, with two concurrent writers.

The common advice's scenario: request A renames user 1 to "A", request B renames it to
"B", at the same time. Update-on-write can end with DB = B and cache = A;
invalidate-on-write cannot, in the explorer's model. The explorer runs both through
every interleaving and counts. Also here: what one DEL of a hot key costs, counted in
virtual time.

Run it: ``python -m snippets.concurrency.update_vs_invalidate``.
"""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_int,
    check_name,
    check_ttl,
    make_db,
    make_fake_cache,
    user_key,
)
from snippets.explorer import Actor, Exploration, Run, explore, replay
from snippets.lease import FILL
from snippets.patterns.cache_aside import get_user, update_user
from snippets.scenarios import cache_agrees_with_db, user_not_cached
from snippets.simulation import SimCache, SimDatabase, Simulation, fakeredis_on

# --8<-- [end:imports]


# --8<-- [start:update]
def update_user_and_cache(cache: Cache, db: Database, user_id: int, name: str,
                          ttl: int = DEFAULT_TTL) -> None:
    """Update-on-write: write the DB, then SET the cache to the new value."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?", (name, user_id)
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    cache.set(key, name, ex=ttl)  # the cache gets whatever this request wrote
# --8<-- [end:update]


# --8<-- [start:scenario]
Read = Callable[[Cache, Database, int], "str | None"]  # a read path, like get_user
Write = Callable[[Cache, Database, int, str], None]  # a write path, like update_user


def cached_by(read: Read) -> Actor:
    """A setup: user 1 is "old" in the DB, and in the cache, as ``read`` caches it."""
    def setup(cache: Cache, db: Database) -> None:
        user_not_cached(cache, db)
        read(cache, db, 1)
    return setup


user_in_cache = cached_by(get_user)


def two_writers(write: Write) -> dict[str, Actor]:
    """Request A renames user 1 to "A"; request B renames it to "B"."""
    return {"A": lambda cache, db: write(cache, db, 1, "A"),
            "B": lambda cache, db: write(cache, db, 1, "B")}
# --8<-- [end:scenario]


WRITER_LABELS = {"A": "Request A", "B": "Request B"}


def explore_writers(write: Write) -> Exploration:
    """Every interleaving of the two writers' steps (none counted as equivalent)."""
    return explore(two_writers(write), user_in_cache, cache_agrees_with_db,
                   reduce=False)


def two_writers_race() -> Run:
    """"DB = B, cache = A", replayed: B's SET lands before A's."""
    return replay(two_writers(update_user_and_cache), user_in_cache, "A B B A",
                  check=cache_agrees_with_db)


def two_writers_race_diagram() -> str:
    return two_writers_race().mermaid(WRITER_LABELS)


def invalidate_same_order() -> Run:
    """The same order of steps, with invalidate-on-write: both DELs, the cache ends
    empty."""
    return replay(two_writers(update_user), user_in_cache, "A B B A",
                  check=cache_agrees_with_db)


def invalidate_same_order_diagram() -> str:
    return invalidate_same_order().mermaid(WRITER_LABELS, final_state=True)


# What one DEL of a hot key costs: readers that miss together, in virtual time.
SimRead = Callable[[Any, Any, Callable[[float], object]], object]  # cache, db, sleep


@dataclass(frozen=True)
class Misses:
    db_reads: int  # reads that reached the database
    fills: int  # writes of the key that took effect


def overlapping_misses(read: SimRead, readers: int = 10, gap: float = 0.0,
                       latency: float = 0.05, rtt: float = 0.001) -> Misses:
    """A write has just deleted a hot key (user 1 is "Ada" in the DB, not cached), and
    ``readers`` requests for it arrive, one every ``gap`` seconds (together, by
    default). In virtual time: each Redis call takes ``rtt`` seconds, each DB read
    ``latency``. ``read(cache, db, sleep)`` is one request's read path (``sleep`` waits
    in virtual time)."""
    check_int("readers", readers)
    sim, db = Simulation(), make_db()
    db.add_user(1, "Ada")
    with fakeredis_on(sim.clock):
        client = SimCache(sim, make_fake_cache(), rtt, subscribers=[])
        cache = _CountsFills(client, user_key(1))
        timed = SimDatabase(sim, db, latency, connections=readers)
        for index in range(readers):
            sim.spawn(lambda: read(cache, timed, sim.sleep), at=index * gap)
        sim.run()
    return Misses(db.reads, cache.fills)


class _CountsFills:
    """A cache client that counts the writes of ``key`` that took effect: a SET that
    answered OK, the lease's fill script that answered 1, an EXEC not refused."""

    def __init__(self, inner: Any, key: str) -> None:
        self.inner, self.key, self.fills = inner, key, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("set", "eval", "pipeline"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if name == "pipeline":
                return _CountedPipeline(result, self)
            if name == "set" and args[0] == self.key and result:
                self.fills += 1
            elif name == "eval" and args[0] == FILL and result == 1:
                self.fills += 1
            return result
        return call


class _CountedPipeline:
    def __init__(self, pipe: Any, counter: _CountsFills) -> None:
        self.pipe, self.counter = pipe, counter

    def __enter__(self) -> _CountedPipeline:
        self.pipe.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pipe.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        sets = any(command[:2] == ("SET", self.counter.key)
                   for command, _ in self.pipe.command_stack)
        result = self.pipe.execute(*args, **kwargs)  # raises WatchError if refused
        self.counter.fills += sets
        return result


def main() -> None:
    for title, write in (("update-on-write", update_user_and_cache),
                         ("invalidate-on-write", update_user)):
        result = explore_writers(write)
        bad = ", ".join(map(str, result.bad)) or "none"
        print(f"{title:<20} {result.total} interleavings, {len(result.bad)} bad: {bad}")
    run = two_writers_race()
    in_db = run.db.query("SELECT name FROM users")[0][0]
    print(f"replay of A B B A:  DB = {in_db!r}, cache = {run.cache.get('user:1')!r}")
    hot = overlapping_misses(lambda cache, db, sleep: get_user(cache, db, 1))
    print(f"one DEL, then 10 readers together: {hot.db_reads} DB reads, "
          f"{hot.fills} fills")


if __name__ == "__main__":
    main()
