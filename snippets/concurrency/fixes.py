"""Fixes for the reader race: leases, version-checked sets, and (not quite) double
delete.

- Leases, after "Scaling Memcache at Facebook": the kit's lease (snippets/lease.py), as
  the production pattern uses it. A miss takes ``SET NX PX`` with a random token; the
  fill lands only if the token still stands; a write deletes the key and its lease.
  Also here: why a lease built on an ``INCR`` counter is not one (it starves fills of a
  hot key, never expires, and leaves the key's cluster slot).
- Version-checked sets: the cache holds "version:name"; a set never replaces a newer
  version with an older one. Writers set the new version themselves. Under eviction
  they break.
- Delayed double delete: delete again a little later. It narrows the window; it does
  not close it.

Run it: ``python -m snippets.concurrency.fixes``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import functools
from collections.abc import Callable
from typing import Any

import redis

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_name,
    check_ttl,
    make_fake_cache,
    user_key,
)
from snippets.concurrency import production_pattern
from snippets.concurrency.reader_race import (
    draw,
    explore_reader,
    writer_and_reader,
    writer_and_two_readers,
)
from snippets.concurrency.update_vs_invalidate import (
    Misses,
    Read,
    Write,
    cached_by,
    overlapping_misses,
    two_writers,
)
from snippets.explorer import Actor, Exploration, Run, Schedule, explore, replay
from snippets.patterns.cache_aside import get_user, update_user
from snippets.scenarios import user_not_cached

# --8<-- [end:imports]


# --8<-- [start:counter-lease]
def counter_key(user_id: int) -> str:
    return f"{user_key(user_id)}:lease"  # no hash tag: not the key's cluster slot


def get_user_with_counter(cache: Cache, db: Database, user_id: int,
                          ttl: int = DEFAULT_TTL) -> str | None:
    """Cache-aside read, but a miss takes a token from a counter, and the fill needs
    the counter to still hold it."""
    key, counter, ttl = user_key(user_id), counter_key(user_id), check_ttl(ttl)
    cached = cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]  # decoded: a str
    token = cache.incr(counter)  # revokes every earlier token, a reader's too
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    if not rows:
        return None
    set_if_counter_holds(cache, key, counter, token, rows[0][0], ttl)
    return rows[0][0]


def set_if_counter_holds(cache: Cache, key: str, counter: str, token: int, value: str,
                         ttl: int) -> bool:
    """SET key, only if nobody has touched the counter since ``token`` was taken."""
    with cache.pipeline() as pipe:
        pipe.watch(counter)  # EXEC is refused if the counter changes after this point
        if pipe.get(counter) != str(token):
            return False  # revoked by a write, or by a newer reader: do not fill
        pipe.multi()
        pipe.set(key, value, ex=ttl)
        try:
            pipe.execute()
        except redis.WatchError:
            return False  # revoked between the check and the SET
    return True


def update_user_revoking_counter(cache: Cache, db: Database, user_id: int,
                                 name: str) -> None:
    """Write the DB, then delete the key and move the counter on."""
    key, counter, name = user_key(user_id), counter_key(user_id), check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?", (name, user_id)
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    with cache.pipeline() as pipe:  # MULTI ... EXEC: no other client runs in between,
        pipe.delete(key)  # but nothing is rolled back if one of them fails
        pipe.incr(counter)  # every token handed out before now is revoked
        pipe.execute()
# --8<-- [end:counter-lease]


# --8<-- [start:multi]
def multi_after_a_failure(cache: Cache) -> list[Any]:
    """MULTI, a command that fails when it runs, a command after it, EXEC. Redis runs
    both: the failure is one reply among the others, and nothing is rolled back."""
    cache.set(user_key(1), "old")
    cache.rpush(counter_key(1), "not a counter")  # a list: INCR on it is WRONGTYPE
    with cache.pipeline() as pipe:  # transaction=True: MULTI ... EXEC
        pipe.incr(counter_key(1))  # fails inside EXEC
        pipe.delete(user_key(1))  # runs anyway
        return pipe.execute(raise_on_error=False)
# --8<-- [end:multi]


# --8<-- [start:versioned]
def encode(version: int, name: str) -> str:
    return f"{version}:{name}"


def decode(cached: str) -> tuple[int, str]:
    version, _, name = cached.partition(":")
    return int(version), name


def set_if_newer(cache: Cache, key: str, version: int, name: str, ttl: int) -> bool:
    """SET key to this version unless the cache already holds this version or a
    newer one."""
    with cache.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                cached: str | None = pipe.get(key)  # type: ignore[assignment]  # a str
                if cached is not None and decode(cached)[0] >= version:
                    return False  # never replace a newer value with an older one
                pipe.multi()
                pipe.set(key, encode(version, name), ex=ttl)
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # someone set the key meanwhile: compare again


def get_user_versioned(cache: Cache, db: Database, user_id: int,
                       ttl: int = DEFAULT_TTL) -> str | None:
    key, ttl = user_key(user_id), check_ttl(ttl)
    cached: str | None = cache.get(key)  # type: ignore[assignment]  # decoded: a str
    if cached is not None:
        return decode(cached)[1]
    rows = db.query("SELECT name, version FROM users WHERE id = ?", (user_id,))
    if not rows:
        return None
    name, version = rows[0]
    set_if_newer(cache, key, version, name, ttl)  # refused if a writer got there first
    return name


def update_user_versioned(cache: Cache, db: Database, user_id: int, name: str,
                          ttl: int = DEFAULT_TTL) -> None:
    """Write the DB (bumping the version), then set the cache to that version."""
    key, name, ttl = user_key(user_id), check_name(name), check_ttl(ttl)
    with db.transaction():  # the UPDATE and reading back its version: one step
        changed = db.execute(
            "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
            (name, user_id),
        )
        if changed == 0:
            raise LookupError(f"no user with id {user_id}")
        [(version,)] = db.query("SELECT version FROM users WHERE id = ?", (user_id,))
    set_if_newer(cache, key, version, name, ttl)
# --8<-- [end:versioned]


# --8<-- [start:double-delete]
def no_pause() -> None:
    """The explorer needs no real pause: it already tries every amount of delay."""


def update_user_double_delete(cache: Cache, db: Database, user_id: int, name: str,
                              pause: Callable[[], None] = no_pause) -> None:
    """Invalidate-on-write, then delete once more after a pause (in production, a
    sleep as long as a slow read, or a delayed job)."""
    update_user(cache, db, user_id, name)  # UPDATE, then DEL
    pause()
    cache.delete(user_key(user_id))  # removes an old value a slow reader put back
# --8<-- [end:double-delete]


def no_wait(seconds: float) -> None:
    """Nor a real wait for the lease: a waiting reader's next GET is just a later step,
    and the explorer tries it before and after every other step."""


FIXES: dict[str, tuple[Read, Write]] = {
    "leases": (functools.partial(production_pattern.get_user, sleep=no_wait),
               production_pattern.update_user),
    "versioned-set": (get_user_versioned, update_user_versioned),
    "double-delete": (get_user, update_user_double_delete),
}
COUNTER_LEASE: tuple[Read, Write] = (get_user_with_counter,
                                     update_user_revoking_counter)


def current_name(read: Read) -> Callable[[Cache, Database, object], str | None]:
    """The invariant, seen as a user sees it: once everyone is done, the next read
    returns the DB's current value (a read returns what the cache holds, if it holds
    anything)."""
    def check(cache: Cache, db: Database, returns: object) -> str | None:
        [(in_db,)] = db.query("SELECT name FROM users WHERE id = 1")
        seen = read(cache, db, 1)
        if seen == in_db:
            return None
        return f"stale: a read returns {seen!r}, the DB says {in_db!r}"
    return check


def evicted(cache: Cache, db: Database) -> None:
    """Redis dropping the value under memory pressure (or its TTL running out)."""
    cache.delete(user_key(1))


SCENARIOS = ("two writers", "writer + reader", "writer + 2 readers",
             "writer + reader + eviction")


def explore_fix(fix: str, scenario: str,
                make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """One fix in one scenario, against the invariant: once everyone is done, the next
    read returns what the DB holds. Two actors: every interleaving. Three: every class
    of equivalent interleavings (the invariant looks only at the final state, which
    equivalent interleavings share)."""
    if fix not in FIXES:
        raise LookupError(f"no fix named {fix!r}; fixes: {', '.join(FIXES)}")
    read, write = FIXES[fix]
    scenarios = {
        "two writers": (two_writers(write), cached_by(read)),
        "writer + reader": (writer_and_reader(write, read), user_not_cached),
        "writer + 2 readers": (writer_and_two_readers(write, read), user_not_cached),
        "writer + reader + eviction": (writer_and_reader(write, read) | {"E": evicted},
                                       user_not_cached),
    }
    if scenario not in scenarios:
        raise LookupError(
            f"no scenario named {scenario!r}; scenarios: {', '.join(SCENARIOS)}")
    actors, setup = scenarios[scenario]
    return explore(actors, setup, current_name(read), reduce=len(actors) > 2,
                   make_cache=make_cache or make_fake_cache)


def explore_counter_lease(scenario: str) -> Exploration:
    """The counter lease, in "two writers" or "writer + reader": every interleaving."""
    read, write = COUNTER_LEASE
    actors, setup = {
        "two writers": (two_writers(write), cached_by(read)),
        "writer + reader": (writer_and_reader(write, read), user_not_cached),
    }[scenario]
    return explore(actors, setup, current_name(read), reduce=False,
                   make_cache=make_fake_cache)


def hot_key(readers: int = 100, gap: float = 0.01) -> dict[str, Misses]:
    """``readers`` requests for user 1, one every ``gap`` seconds, and no writer: DB
    reads and fills that landed, with the counter lease and with the kit's lease (each
    DB read takes 50 ms, in virtual time)."""
    counter = lambda cache, db, sleep: get_user_with_counter(cache, db, 1)  # noqa: E731

    def lease(cache: Any, db: Any, sleep: Callable[[float], object]) -> object:
        return production_pattern.get_user(cache, db, 1, sleep=sleep)

    return {"counter lease": overlapping_misses(counter, readers, gap),
            "lease": overlapping_misses(lease, readers, gap)}


def print_fixes() -> None:
    """Bad schedules out of all explored, for every fix and scenario."""
    headers = ("two writers", "writer+reader", "writer+2 readers", "+ eviction")
    print(f"{'fix':<14}" + "".join(f"{header:>17}" for header in headers))
    for fix in FIXES:
        cells = [counts(fix, scenario) for scenario in SCENARIOS]
        print(f"{fix:<14}"
              + "".join(f"{len(bad)} bad of {total}".rjust(17) for total, bad in cells))


@functools.cache
def counts(fix: str, scenario: str) -> tuple[int, tuple[Schedule, ...]]:
    """(schedules, bad ones) of explore_fix on fakeredis, computed once per process."""
    result = explore_fix(fix, scenario)
    return result.total, tuple(result.bad)


def calls_alone(fix: str) -> tuple[int, int]:
    """Cache and DB calls made by one read that misses, and by one write, each run
    alone (plain cache-aside for comparison: "none")."""
    read, write = (get_user, update_user) if fix == "none" else FIXES[fix]

    def steps(actor: Actor, setup: Actor) -> int:
        [schedule] = explore({"A": actor}, setup, reduce=False).examples.values()
        return len(schedule)

    return (steps(lambda cache, db: read(cache, db, 1), user_not_cached),
            steps(lambda cache, db: write(cache, db, 1, "new"), cached_by(read)))


def double_delete_race() -> Run:
    """The schedule the explorer finds: the reader's SET lands after both deletes."""
    return replay(writer_and_reader(update_user_double_delete), user_not_cached,
                  "R R W W W R", check=current_name(get_user))


def double_delete_race_diagram() -> str:
    return draw(double_delete_race())


def versioned_refusal() -> Run:
    """The same race with version-checked sets: the reader's older version is
    refused."""
    read, write = FIXES["versioned-set"]
    return replay(writer_and_reader(write, read), user_not_cached, "R R W W W W R R",
                  check=current_name(read))


def versioned_refusal_diagram() -> str:
    return draw(versioned_refusal(), final_state=True)


def versioned_after_eviction() -> Run:
    """What versions cannot see: the newer value is evicted before the older one
    lands."""
    read, write = FIXES["versioned-set"]
    return replay(writer_and_reader(write, read) | {"E": evicted}, user_not_cached,
                  "R R W W W W E R R R", check=current_name(read))


def versioned_after_eviction_diagram() -> str:
    return draw(versioned_after_eviction())


def main() -> None:
    rows = [(fix, explore_fix(fix, "writer + reader")) for fix in FIXES]
    rows.append(("(cache-aside)", explore_reader(update_user)))
    for fix, result in rows:
        miss, write = calls_alone("none" if fix == "(cache-aside)" else fix)
        print(f"{fix:<14} writer + reader: {len(result.bad)} bad of {result.total:>3}"
              f"   calls: {miss} for a read that misses, {write} for a write")


if __name__ == "__main__":
    main()
