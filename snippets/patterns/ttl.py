"""TTL expiry: every cached entry deletes itself after a while, whatever else goes
wrong.

Redis expires keys on its own wall clock, which an example cannot move. So the
measurements here run on ``ClockedCache``, a small *model* of Redis's expiry driven by
an injected clock; ``tests/patterns/test_ttl.py`` checks the model against Redis itself
wherever both can be compared without waiting. The read path and the jitter are the
production code: they run unchanged on fakeredis and on a real Redis.

Run it: ``python -m snippets.patterns.ttl``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import random
from collections.abc import Callable
from typing import Any, NamedTuple

import redis

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Clock,
    Database,
    FakeClock,
    check_int,
    check_name,
    check_ttl,
    make_db,
    user_key,
)
from snippets.faults import Intercept
from snippets.patterns import cache_aside

# --8<-- [end:imports]


# --8<-- [start:model]
class ClockedCache:
    """A model of Redis key expiry on an injected clock: GET, SET (EX, PX, KEEPTTL),
    DEL, EXISTS, TTL, EXPIRE and PERSIST, with the same results as Redis (see the
    tests)."""

    def __init__(self, clock: Clock) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self.clock = clock
        # key -> (value, the time it expires at, or None: never)
        self._entries: dict[str, tuple[str, float | None]] = {}

    def _live(self, key: str) -> tuple[str, float | None] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= self.clock():
            del self._entries[key]  # expired: gone, as Redis deletes it on access
            return None
        return entry

    def get(self, key: str) -> str | None:
        entry = self._live(key)
        return None if entry is None else entry[0]

    def set(self, key: str, value: Any, ex: int | None = None,
            px: int | None = None, keepttl: bool = False) -> bool:
        if (ex is not None) + (px is not None) + bool(keepttl) > 1:
            raise ValueError("give at most one of ex, px, keepttl")
        for name, amount in (("ex", ex), ("px", px)):
            if amount is not None:
                check_int(name, amount)
        old = self._live(key)
        if ex is not None:
            expires_at: float | None = self.clock() + ex
        elif px is not None:
            expires_at = self.clock() + px / 1000
        else:  # a plain SET clears any TTL; KEEPTTL keeps the old one
            expires_at = old[1] if keepttl and old is not None else None
        self._entries[key] = (str(value), expires_at)
        return True

    def delete(self, *keys: str) -> int:
        deleted = 0
        for key in keys:
            if self._live(key) is not None:
                del self._entries[key]
                deleted += 1
        return deleted

    def exists(self, *keys: str) -> int:
        return sum(self._live(key) is not None for key in keys)

    def ttl(self, key: str) -> int:
        entry = self._live(key)
        if entry is None:
            return -2  # no such key
        if entry[1] is None:
            return -1  # a key with no expiry
        remaining_ms = round((entry[1] - self.clock()) * 1000)
        return (remaining_ms + 500) // 1000  # Redis rounds to the nearest second

    def expire(self, key: str, seconds: int) -> bool:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise ValueError(f"seconds must be an integer, got {seconds!r}")
        entry = self._live(key)
        if entry is None:
            return False
        # seconds <= 0: expired already
        self._entries[key] = (entry[0], self.clock() + seconds)
        return True

    def persist(self, key: str) -> bool:
        entry = self._live(key)
        if entry is None or entry[1] is None:
            return False
        self._entries[key] = (entry[0], None)
        return True
# --8<-- [end:model]


# --8<-- [start:replace]
Command = Callable[[Any], object]  # it takes the cache (fakeredis or a real Redis)

# Each gives "k" a whole new value. "src" holds a value without a TTL.
REPLACES_THE_VALUE: dict[str, Command] = {
    "SET k w": lambda cache: cache.set("k", "w"),
    "SET k w GET": lambda cache: cache.set("k", "w", get=True),
    "GETSET k w": lambda cache: cache.getset("k", "w"),
    "MSET k w": lambda cache: cache.mset({"k": "w"}),
    "RENAME src k": lambda cache: cache.rename("src", "k"),
    "COPY src k REPLACE": lambda cache: cache.copy("src", "k", replace=True),
    "RESTORE k 0 (DUMP src) REPLACE":
        lambda cache: cache.restore("k", 0, cache.dump("src"), replace=True),
}
# Each changes the value of "k" and keeps the key.
CHANGES_IN_PLACE: dict[str, Command] = {
    "SET k w KEEPTTL": lambda cache: cache.set("k", "w", keepttl=True),
    "APPEND k w": lambda cache: cache.append("k", "w"),
    "SETRANGE k 0 w": lambda cache: cache.setrange("k", 0, "w"),
}


def ttl_after(cache: Cache, command: Command) -> int:
    """The TTL of "k", set with EX 60 just before ``command`` ran (-1: none)."""
    cache.set("k", "v", ex=60)
    cache.set("src", "w")
    command(cache)
    return int(cache.ttl("k"))
# --8<-- [end:replace]


# --8<-- [start:jitter]
def check_jitter(jitter: float) -> float:
    """Return ``jitter`` if it is a fraction in [0, 1), else raise ValueError."""
    if (isinstance(jitter, bool) or not isinstance(jitter, int | float)
            or not 0 <= jitter < 1):
        raise ValueError(f"jitter must be a fraction in [0, 1), got {jitter!r}")
    return jitter


def jittered_ttl(ttl: int, jitter: float, rng: random.Random | None = None) -> int:
    """A TTL drawn uniformly from ``ttl - jitter * ttl`` up to ``ttl``, in whole
    seconds.

    Jitter only ever shortens: the TTL stays the upper bound on how stale an entry
    can be.
    """
    check_ttl(ttl)
    check_jitter(jitter)
    if rng is not None and not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {rng!r}")
    shave = int(ttl * jitter)  # whole seconds that may come off
    return ttl - (rng or random).randint(0, shave) if shave else ttl
# --8<-- [end:jitter]


# --8<-- [start:read]
def get_user(cache: Cache | ClockedCache, db: Database, user_id: int,
             ttl: int = DEFAULT_TTL, jitter: float = 0.0,
             rng: random.Random | None = None) -> str | None:
    """Cache-aside's read path, each entry stored with its own jittered TTL."""
    ttl = jittered_ttl(ttl, jitter, rng)
    # the model has the GET and SET that cache-aside uses
    return cache_aside.get_user(cache, db, user_id, ttl)  # type: ignore[arg-type]
# --8<-- [end:read]


# --8<-- [start:write]
def update_user(db: Database, user_id: int, name: str) -> None:
    """TTL-only invalidation: update the DB and leave the cache alone; it expires by
    itself."""
    user_key(user_id)  # validates the id
    check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
# --8<-- [end:write]


# --8<-- [start:fault]
class DeletesLost:
    """Fault injection: a cache whose every DEL fails, as when Redis is unreachable just
    then. Everything else passes through to the wrapped cache."""

    def __init__(self, cache: Cache | ClockedCache) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)

    def delete(self, *keys: str) -> int:
        raise redis.ConnectionError(f"injected fault: DEL {' '.join(keys)} lost")
# --8<-- [end:fault]


# --8<-- [start:measure]
def stale_window(ttl: int, write_at: int) -> int:
    """Seconds from a TTL-only write until a reader, reading once a second, sees it.

    The entry is filled by a read at t=0; the write commits at ``write_at``, just after
    that second's read.
    """
    check_ttl(ttl)
    check_int("write_at", write_at, minimum=0)
    clock = FakeClock()
    cache, db = ClockedCache(clock), make_db()
    db.add_user(1, "old")
    get_user(cache, db, 1, ttl)
    for _ in range(write_at):  # steady traffic up to the write
        clock.advance(1)
        get_user(cache, db, 1, ttl)
    update_user(db, 1, "new")
    for _ in range(ttl):  # the stale copy was stored at most one TTL ago
        clock.advance(1)
        if get_user(cache, db, 1, ttl) == "new":
            return int(clock()) - write_at
    raise AssertionError(
        f"still stale {ttl} s after the write: the TTL bound is broken")


class StaleWindow(NamedTuple):
    ttl: int
    worst: int  # seconds: the longest stale window over every write time
    mean: float  # seconds: averaged over a write at each second of the TTL


def stale_window_table(ttls: list[int]) -> list[StaleWindow]:
    """For each TTL, the stale window of a write landing at each second of the TTL."""
    if not ttls:
        raise ValueError("ttls must list at least one TTL")
    for ttl in ttls:
        check_ttl(ttl)  # all of them, before any work
    rows = []
    for ttl in ttls:
        windows = [stale_window(ttl, write_at) for write_at in range(ttl)]
        rows.append(StaleWindow(ttl, max(windows), sum(windows) / len(windows)))
    return rows
# --8<-- [end:measure]


# --8<-- [start:stale-fill]
def stale_fill_window(ttl: int, pause: int) -> int:
    """Seconds from a TTL-only write until a reader, reading once a second, sees it,
    when a reader that missed read the row just before the write and stores it
    ``pause`` seconds later (a slow request, a paused process): its SET starts a
    whole new TTL for the old value."""
    check_ttl(ttl)
    check_int("pause", pause, minimum=0)
    clock = FakeClock()
    cache, db = ClockedCache(clock), make_db()
    db.add_user(1, "old")

    def write_then_pause() -> None:  # between the slow reader's SELECT and its SET
        update_user(db, 1, "new")
        clock.advance(pause)

    written_at = clock()
    slow_reader = Intercept(cache, "set", write_then_pause)
    get_user(slow_reader, db, 1, ttl)  # type: ignore[arg-type]  # stores "old"
    for _ in range(ttl + pause):
        clock.advance(1)
        if get_user(cache, db, 1, ttl) == "new":
            return int(clock() - written_at)
    raise AssertionError(f"still stale {ttl + pause} s after the write")
# --8<-- [end:stale-fill]


# --8<-- [start:spread]
def expiry_spread(n_keys: int, ttl: int, jitter: float, seed: int) -> dict[int, int]:
    """Misses in each second after ``n_keys`` keys are all filled at t=0 (a deploy, a
    cache restart, a batch warm-up) and then each read once a second, for one TTL."""
    check_int("n_keys", n_keys)
    check_ttl(ttl)
    check_jitter(jitter)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    rng, clock = random.Random(seed), FakeClock()
    cache, db = ClockedCache(clock), make_db()
    for user_id in range(1, n_keys + 1):
        db.add_user(user_id, f"user {user_id}")
        get_user(cache, db, user_id, ttl, jitter, rng)
    misses = {}
    for second in range(1, ttl + 1):
        clock.advance(1)
        db.reset_counts()
        for user_id in range(1, n_keys + 1):
            get_user(cache, db, user_id, ttl, jitter, rng)
        misses[second] = db.reads  # one DB read per miss
    return misses
# --8<-- [end:spread]


def print_stale_window_table(ttls: list[int]) -> None:
    print("TTL (s)  worst stale window (s)  mean stale window (s)")
    for row in stale_window_table(ttls):
        print(f"{row.ttl:>7}  {row.worst:>22}  {row.mean:>21.1f}")


def print_expiry_spread(n_keys: int, ttl: int, jitters: list[float],
                        seed: int = 0) -> None:
    """One row per jitter: the misses, the seconds they fell in, and the worst
    second."""
    print("jitter  misses  seconds  when        peak misses in one second")
    for jitter in jitters:
        spread = expiry_spread(n_keys, ttl, jitter, seed)
        misses = {second: n for second, n in spread.items() if n}
        first, last = min(misses), max(misses)
        when = f"t={first}..{last} s" if first != last else f"t={last} s"
        print(f"{jitter:>6.0%}  {sum(misses.values()):>6}  {len(misses):>7}  "
              f"{when:<10}  {max(misses.values()):>25}")


def main() -> None:
    """Narrate a TTL-only write: the stale window, bounded by the TTL; then jitter."""
    clock = FakeClock()
    cache, db = ClockedCache(clock), make_db()
    db.add_user(1, "Ada")

    def read(truth: str) -> None:
        reads_before = db.reads
        name = get_user(cache, db, 1, ttl=60)
        how = "miss, SET EX 60" if db.reads > reads_before else "hit"
        stale = f"  stale, the DB has {truth!r}" if name != truth else ""
        print(f"t={clock():>3.0f}s  read: {how:<15} -> {name!r}{stale}")

    read("Ada")
    clock.advance(10)
    update_user(db, 1, "Ada Lovelace")
    print(f"t={clock():>3.0f}s  write: UPDATE only, the cache is not told")
    read("Ada Lovelace")
    clock.advance(49)
    read("Ada Lovelace")
    clock.advance(1)
    read("Ada Lovelace")
    print("stale for 50 s: from the write at t=10 until the entry expired at t=60")
    print("1000 keys stored at t=0 with a TTL of 60 s, each read once a second:")
    print_expiry_spread(1000, 60, [0.0, 0.1])


if __name__ == "__main__":
    main()
