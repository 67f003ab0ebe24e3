"""A stampede cure that makes no reader wait: serve the stale value, refresh behind it.

Each entry carries a soft expiry inside its value (``fresh_until``) and a hard TTL on
the key. Past the soft expiry, readers still get the old value at once; the first of
them to win a Redis lock starts one background refresh. Only a hard miss (no entry at
all) waits for the database.

Run it: ``python -m snippets.scaling.stale_while_revalidate``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import threading
from collections.abc import Callable

from snippets.backends import (
    Cache, Clock, Database, FakeClock, check_int, check_ttl, make_cache, make_db,
    user_key,
)
from snippets.scaling.mutex import acquire, release

# --8<-- [end:imports]


# --8<-- [start:read]
Spawn = Callable[[Callable[[], None]], None]  # runs a task in the background


def in_a_thread(task: Callable[[], None]) -> None:
    """The production ``spawn``: a daemon thread per refresh."""
    threading.Thread(target=task, daemon=True).start()


def store_entry(
    cache: Cache, key: str, name: str, fresh_until: float, hard_ttl: int
) -> None:
    """Cache ``name``: fresh until ``fresh_until``, gone after ``hard_ttl`` s."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    check_ttl(hard_ttl)
    cache.set(key, json.dumps({"value": name, "fresh_until": fresh_until}), ex=hard_ttl)


def refresh(cache: Cache, db: Database, user_id: int, *, soft_ttl: int, hard_ttl: int,
            clock: Clock) -> str | None:
    """Load the row and store it with a new soft expiry: the background task."""
    check_ttl(soft_ttl), check_ttl(hard_ttl)
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    name = rows[0][0] if rows else None
    if name is not None:
        store_entry(cache, user_key(user_id), name, clock() + soft_ttl, hard_ttl)
    return name


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
) -> str | None:
    """Return the cached name even if stale; if stale, have one caller refresh it."""
    key = user_key(user_id)
    soft_ttl, hard_ttl = check_ttl(soft_ttl), check_ttl(hard_ttl)
    if hard_ttl <= soft_ttl:
        raise ValueError(f"hard_ttl ({hard_ttl}) must exceed soft_ttl ({soft_ttl})")
    check_int("lock_ms", lock_ms)
    cached = cache.get(key)
    if cached is None:  # a hard miss: nothing to serve, so this reader waits for the DB
        return refresh(cache, db, user_id, soft_ttl=soft_ttl, hard_ttl=hard_ttl,
                       clock=clock)
    entry = json.loads(cached)
    if clock() >= entry["fresh_until"]:
        token = acquire(cache, f"refresh:{key}", lock_ms)  # one refresher per entry
        if token is not None:

            def task() -> None:
                try:
                    refresh(cache, db, user_id, soft_ttl=soft_ttl,
                            hard_ttl=hard_ttl, clock=clock)
                finally:
                    release(cache, f"refresh:{key}", token)

            spawn(task)
    return entry["value"]  # stale or not, the reader does not wait
# --8<-- [end:read]


def main() -> None:
    """Narrate: fresh hits, then stale hits while one background refresh runs."""
    cache, db, clock = make_cache(), make_db(), FakeClock()
    db.add_user(1, "Ada")
    tasks: list[Callable[[], None]] = []  # background tasks, run when we say so

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
    read("t=61   stale: served, lock is taken")
    tasks.pop()()
    read("t=61   after the refresh ran")


if __name__ == "__main__":
    main()
