"""A stampede cure that makes no reader wait: serve the stale value, refresh behind it.

Each entry carries a soft expiry inside its value (``fresh_until``) and a hard TTL on
the key. Past the soft expiry, readers still get the old value at once; the first of
them to take the kit's lease on the key (``snippets/lease.py``) starts one background
refresh, which fills with the lease's ``fill``: a write in between deletes the key and
the lease, and the refresh's old row is refused. Only a hard miss (no entry at all)
waits for the database, through the kit's read path: one loads, the others wait.

Run it: ``python -m snippets.scaling.stale_while_revalidate``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import threading
import time
from collections.abc import Callable

from snippets.backends import (
    Cache, Clock, Database, FakeClock, check_int, check_ttl, make_cache, make_db,
    user_key,
)
from snippets.lease import fill, read_through, release, take_lease
from snippets.scenarios import agrees_with_db

# --8<-- [end:imports]


# --8<-- [start:read]
Spawn = Callable[[Callable[[], object]], object]  # runs a task in the background


def in_a_thread(task: Callable[[], object]) -> None:
    """The production ``spawn``: a daemon thread per refresh."""
    threading.Thread(target=task, daemon=True).start()


def entry_of(name: str, fresh_until: float) -> str:
    """What is cached: the value and its soft expiry."""
    return json.dumps({"value": name, "fresh_until": fresh_until})


def store_entry(
    cache: Cache, key: str, name: str, fresh_until: float, hard_ttl: int
) -> None:
    """Cache ``name``: fresh until ``fresh_until``, gone after ``hard_ttl`` s (to set
    one up; reads fill with the lease)."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    cache.set(key, entry_of(name, fresh_until), ex=check_ttl(hard_ttl))


def load_entry(db: Database, user_id: int, soft_ttl: int, clock: Clock) -> str | None:
    """The row as an entry, fresh for ``soft_ttl`` s; None if there is no row."""
    check_ttl(soft_ttl)
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    return entry_of(rows[0][0], clock() + soft_ttl) if rows else None


def refresh(cache: Cache, db: Database, user_id: int, token: str, *, soft_ttl: int,
            hard_ttl: int, clock: Clock) -> bool:
    """The background task: load the row, fill it with the lease taken for it.
    True if it landed; False if a write came since the lease (or the row is gone)."""
    key, hard_ttl = user_key(user_id), check_ttl(hard_ttl)
    check_ttl(soft_ttl)
    try:
        cached = cache.get(key)  # a refresh before ours may have landed a moment ago
        fresh = cached is not None and clock() < json.loads(cached)["fresh_until"]
        entry = None if fresh else load_entry(db, user_id, soft_ttl, clock)
    except BaseException:
        release(cache, key, token)  # the next stale reader may try again
        raise
    if entry is None:  # fresh already, or the row is gone
        release(cache, key, token)
        return False
    return fill(cache, key, token, entry, hard_ttl)  # refused if a write came


def get_user_swr(
    cache: Cache,
    db: Database,
    user_id: int,
    *,
    soft_ttl: int,
    hard_ttl: int,
    clock: Clock,
    spawn: Spawn = in_a_thread,
    lock_ms: int = 10_000,
    sleep: Callable[[float], object] = time.sleep,
) -> str | None:
    """Return the cached name even if stale; if stale, have one caller refresh it."""
    key = user_key(user_id)
    soft_ttl, hard_ttl = check_ttl(soft_ttl), check_ttl(hard_ttl)
    if hard_ttl <= soft_ttl:
        raise ValueError(f"hard_ttl ({hard_ttl}) must exceed soft_ttl ({soft_ttl})")
    check_int("lock_ms", lock_ms)
    cached = cache.get(key)
    if cached is None:  # a hard miss: nothing to serve; the kit's read path waits
        loaded = read_through(cache, key,
                              lambda: load_entry(db, user_id, soft_ttl, clock),
                              hard_ttl, sleep=sleep, lease_ms=lock_ms)
        return None if loaded is None else json.loads(loaded)["value"]
    entry = json.loads(cached)
    if clock() >= entry["fresh_until"]:
        token = take_lease(cache, key, lock_ms)  # one refresher, BEFORE its DB read
        if token is not None:
            spawn(lambda: refresh(cache, db, user_id, token, soft_ttl=soft_ttl,
                                  hard_ttl=hard_ttl, clock=clock))
    return entry["value"]  # stale or not, the reader does not wait
# --8<-- [end:read]


# --8<-- [start:write-race]
def stale_entry_cached(cache: Cache, db: Database) -> None:
    """Before the race: user 1 is "old" in the DB and in the cache, stale since t=0."""
    db.add_user(1, "old")
    store_entry(cache, "user:1", "old", fresh_until=0.0, hard_ttl=3600)


def cached_value(cache: Cache) -> str | None:
    cached = cache.get("user:1")
    return None if cached is None else json.loads(cached)["value"]


entry_agrees_with_db = agrees_with_db(cached_value)


def swr_read(cache: Cache, db: Database) -> str | None:
    """A stale read at t = 1 s, and the refresh it starts, run to the end by the same
    actor (the background thread is one more step sequence), as an actor."""
    tasks: list[Callable[[], object]] = []
    name = get_user_swr(cache, db, 1, soft_ttl=60, hard_ttl=3600, clock=FakeClock(1),
                        spawn=tasks.append, sleep=lambda seconds: None)
    for task in tasks:
        task()
    return name
# --8<-- [end:write-race]


def main() -> None:
    """Narrate: fresh hits, then stale hits while one background refresh runs."""
    cache, db, clock = make_cache(), make_db(), FakeClock()
    db.add_user(1, "Ada")
    tasks: list[Callable[[], object]] = []  # background tasks, run when we say so

    def read(label: str) -> None:
        name = get_user_swr(cache, db, 1, soft_ttl=60, hard_ttl=3600, clock=clock,
                            spawn=tasks.append)
        print(f"{label:<36} -> {name!r:<14} (DB reads: {db.reads},"
              f" refreshes queued: {len(tasks)})")

    read("t=0    hard miss: waits for the DB")
    read("t=0    fresh hit")
    db.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")
    clock.now = 61
    read("t=61   stale: served, refresh queued")
    read("t=61   stale: served, lease is taken")
    tasks.pop()()
    read("t=61   after the refresh ran")


if __name__ == "__main__":
    main()
