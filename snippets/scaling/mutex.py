"""A stampede cure: one loader per key, chosen by a lock in Redis. The lock is the kit's
lease (``snippets/lease.py``): ``SET {user:1}:lease <random token> NX PX``.

The reader that takes the lease loads the row and fills the cache with the lease's
``fill``, which sets the key only if the lease still holds its token. The others poll
the cache with backoff until the value is there. The token is random, so only its owner
can release the lease (a Lua compare-and-delete); the lease expires, so a holder that
dies cannot block everyone forever; and a write deletes the key and the lease together,
so a fill of a row read before the write is refused.

Run it: ``python -m snippets.scaling.mutex``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from snippets.backends import (
    DEFAULT_TTL, Cache, Database, check_int, check_number, check_ttl, make_cache,
    make_db, user_key,
)
from snippets.faults import Crash, Faults, Intercept
from snippets.lease import (
    FILL, RELEASE, fill, invalidate, lease_key, release, take_lease,
)
from snippets.scenarios import Check, cache_agrees_with_db, user_not_cached

if TYPE_CHECKING:  # the explorer is loaded only by the functions that explore
    from snippets.explorer import Exploration, Returns, Run

# --8<-- [end:imports]

Sleep = Callable[[float], None]  # time.sleep; in the benchmark, a simulated wait


# --8<-- [start:read]
def get_user_locked(
    cache: Cache,
    db: Database,
    user_id: int,
    *,
    ttl: int = DEFAULT_TTL,
    lock_ms: int = 2000,
    sleep: Sleep = time.sleep,
    first_wait: float = 0.005,
    max_wait: float = 0.1,
) -> str | None:
    """Cache-aside read; only the holder of the lease on ``user:<id>`` reads the DB."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    check_int("lock_ms", lock_ms)
    wait = check_number("first_wait", first_wait)  # seconds
    max_wait = check_number("max_wait", max_wait)
    while True:
        cached = cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]  # replies are decoded: a str
        token = take_lease(cache, key, lock_ms)  # the lock, taken BEFORE the DB read
        if token is None:  # someone else is loading: wait, then look again
            sleep(wait)
            wait = min(wait * 2, max_wait)  # exponential backoff, capped
            continue
        filled = False
        try:
            cached = cache.get(key)  # the previous holder may have filled it just now
            if cached is not None:
                return cached  # type: ignore[return-value]  # decoded: a str
            rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
            name = rows[0][0] if rows else None
            if name is not None:
                fill(cache, key, token, name, ttl)  # refused if a write came since
                filled = True  # the fill freed the lease (or the write did)
            return name
        finally:
            if not filled:  # a hit, no row, or an error: free the lease at once
                release(cache, key, token)
# --8<-- [end:read]


# --8<-- [start:write-race]
def cache_aside_write(cache: Cache, db: Database) -> None:
    """The cache-aside write path: UPDATE, then the kit's ``invalidate`` (one DEL of
    the key and its lease)."""
    db.execute("UPDATE users SET name = 'new' WHERE id = 1")
    invalidate(cache, user_key(1))


class PlainSet:
    """A cache on which the lease's fill does what the cures did before the lease: a
    plain ``SET`` of the value, then the release of the lock. Nothing checks that the
    lease still stands. Every other command passes through."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)

    def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        if script != FILL:
            return self.cache.eval(script, numkeys, *args)
        key, lease, token, value, ttl = args
        self.cache.set(key, value, ex=int(ttl))  # lands, whatever happened meanwhile
        self.cache.eval(RELEASE, 1, lease, token)
        return 1


Read = Callable[[Cache, Database], Any]  # a cure's read of user 1, as an actor


def race_with_a_write(read: Read, plain: bool = False, *, expiring: bool = False,
                      setup: Read = user_not_cached,
                      check: Check = cache_agrees_with_db,
                      make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """Every interleaving of ``read`` with a cache-aside write (``reduce=False``).
    ``plain``: ``read`` gets a cache whose fill is a plain SET (``PlainSet``).
    ``expiring``: one more actor deletes the lease, at any moment: its holder paused
    past it, or it was evicted."""
    from snippets.explorer import explore  # loaded only by those who explore

    def reader(cache: Cache, db: Database) -> Any:
        return read(PlainSet(cache) if plain else cache, db)  # type: ignore[arg-type]

    def expiry(cache: Cache, db: Database) -> None:
        cache.delete(lease_key("user:1"))

    actors: dict[str, Read] = {"R": reader, "W": cache_aside_write}
    if expiring:
        actors["X"] = expiry
    return explore(actors, setup, check, make_cache=make_cache, reduce=False)


def mutex_read(cache: Cache, db: Database) -> str | None:
    """The mutex's read of user 1, as an actor (it never waits: nobody else loads)."""
    return get_user_locked(cache, db, 1, sleep=lambda seconds: None)
# --8<-- [end:write-race]


def write_race_diagram(plain: bool) -> Run:
    """The one bad order of the plain SET, replayed with either fill (diagrams)."""
    from snippets.explorer import replay

    def reader(cache: Cache, db: Database) -> str | None:
        return mutex_read(PlainSet(cache) if plain else cache, db)  # type: ignore[arg-type]

    schedule = "R R R R W W R R" if plain else "R R R R W W R"
    return replay({"R": reader, "W": cache_aside_write}, user_not_cached, schedule,
                  check=cache_agrees_with_db)


def readable(diagram: str) -> str:
    """A generated diagram with the kit's scripts named, and its random tokens shown
    as "token": the same on every run."""
    import re
    for script, name in ((FILL, "fill-if-lease-held"), (RELEASE, "release-if-ours")):
        text = " ".join(script.split())
        diagram = diagram.replace(f'EVAL " {text} "', f"EVAL {name}")
    return re.sub(r'"[0-9a-f]{16}"', '"token"', diagram)


def plain_set_run() -> Run:
    return write_race_diagram(plain=True)


def lease_run() -> Run:
    return write_race_diagram(plain=False)


def plain_set_race() -> str:
    run = plain_set_run()
    return readable(run.mermaid({"R": "Reader", "W": "Writer"}))


def lease_refuses_the_race() -> str:
    run = lease_run()
    return readable(run.mermaid({"R": "Reader", "W": "Writer"}, final_state=True))


# --8<-- [start:crash]
def crash_while_holding(
    cache: Cache, db: Database, *, sleep: Sleep, lock_ms: int = 2000
) -> tuple[str | None, list[float]]:
    """Process A takes the lease and dies mid-load; then process B reads the same user.

    Return what B got and every wait B made. B gets in only because the lease expires.
    """
    if not callable(sleep):
        raise TypeError(f"sleep must be a function of seconds, got {sleep!r}")
    a = Faults()  # process A: killed just before its query, it sends nothing more
    a_db: Any = Intercept(a.wrap(db, "A"), "query", a.kill)
    try:
        get_user_locked(a.wrap(cache, "A"), a_db, 1, lock_ms=lock_ms)
    except Crash:
        pass  # A is gone, and the release in its `finally` with it; its lease is not
    waits: list[float] = []

    def counted(seconds: float) -> None:
        waits.append(seconds)
        sleep(seconds)

    return get_user_locked(cache, db, 1, lock_ms=lock_ms, sleep=counted), waits
# --8<-- [end:crash]


# --8<-- [start:race]
Release = Callable[[Cache, str, str], bool]  # (cache, key, token): True if it deleted


def plain_delete(cache: Cache, key: str, token: str) -> bool:
    """Wrong: deletes the lease whoever holds it."""
    return cache.delete(lease_key(key)) == 1


def get_then_delete(cache: Cache, key: str, token: str) -> bool:
    """Wrong: checks the owner, then deletes, in two round trips."""
    if cache.get(lease_key(key)) == token:
        return cache.delete(lease_key(key)) == 1  # it may have changed hands since
    return False


def take_as(cache: Cache, holder: str, lease_ms: int = 100) -> bool:
    """Take the lease of user:1 with the token ``holder`` (a name instead of a random
    token, so that a replay can say who holds it)."""
    return bool(cache.set(lease_key("user:1"), holder, nx=True, px=lease_ms))


class AfterFirstCommand:
    """A client that runs ``then()`` right after its first command: a schedule."""

    def __init__(self, cache: Cache, then: Callable[[], None]) -> None:
        self.cache, self.then, self.sent = cache, then, False

    def __getattr__(self, name: str) -> Any:
        command = getattr(self.cache, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            result = command(*args, **kwargs)
            if not self.sent:
                self.sent = True
                self.then()
            return result

        return step


def slow_holder(cache: Cache, expire: Callable[[], None], how: Release) -> str | None:
    """A's load outlasts its lease: the lease expires (``expire``), B takes it, then A
    releases with ``how``. Return who holds the lease at the end: B, if ``how`` is safe.
    """
    take_as(cache, "A")
    expire()
    take_as(cache, "B")
    how(cache, "user:1", "A")
    return cache.get(lease_key("user:1"))  # type: ignore[return-value]  # decoded: a str


def release_while_expiring(
    cache: Cache, expire: Callable[[], None], how: Release
) -> str | None:
    """A releases its lease with ``how``; right after A's first command, A's lease
    expires (``expire``) and B takes it. Return who holds the lease at the end: B,
    if ``how`` is safe.
    """
    take_as(cache, "A")

    def expire_and_b_takes() -> None:
        expire()
        take_as(cache, "B")

    scheduled: Any = AfterFirstCommand(cache, expire_and_b_takes)
    how(scheduled, "user:1", "A")
    return cache.get(lease_key("user:1"))  # type: ignore[return-value]  # decoded: a str
# --8<-- [end:race]


# --8<-- [start:explore]
def explore_release(how: Release) -> Exploration:
    """Every interleaving of three actors around the lease that A holds:

    - A releases it with ``how``;
    - the server expires it: deletes the key if it still holds A's token (B's key, set
      later, has a TTL of its own), which is what the kit's ``release`` does;
    - B tries to take it.

    Bad: B took the lease, and at the end it is no longer there for B.
    """
    from snippets.explorer import explore  # loaded only by those who explore

    def setup(cache: Cache, db: Database) -> None:
        cache.set(lease_key("user:1"), "A", px=60_000)

    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        if returns["B"] and cache.get(lease_key("user:1")) != "B":
            return "B believes it holds the lease, but it is gone"
        return None

    actors = {
        "A": lambda cache, db: how(cache, "user:1", "A"),
        "expiry": lambda cache, db: release(cache, "user:1", "A"),
        "B": lambda cache, db: take_as(cache, "B", 60_000),
    }
    return explore(actors, setup, check)
# --8<-- [end:explore]


def main() -> None:
    """Narrate a lease's life: taken, refused, released by its owner only, used, and a
    fill refused after a write."""
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")
    lease = lease_key("user:1")
    a = take_lease(cache, "user:1", 30_000)
    b = take_lease(cache, "user:1", 30_000)
    for who, token in (("A", a), ("B", b)):
        print(f"{who}: SET {lease} <random> NX PX 30000 -> "
              f"{'taken' if token else 'refused'}")
    released = release(cache, "user:1", "not-A's-token")
    print(f"B: release with a token of its own       -> {released}"
          f" (A's lease stands: {cache.get(lease) == a})")
    released = release(cache, "user:1", a or "")
    print(f"A: release with its token                -> {released}"
          f" (lease now {cache.get(lease)!s})")
    name = get_user_locked(cache, db, 1)
    print(f"read user:1 under the lease              -> {name!r}"
          f" (DB reads: {db.reads})")
    invalidate(cache, "user:1")
    token = take_lease(cache, "user:1", 30_000) or ""
    old = db.query("SELECT name FROM users WHERE id = 1")[0][0]  # a reader loads ...
    db.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")  # ... a write
    invalidate(cache, "user:1")  # ... deletes the key and the lease
    filled = fill(cache, "user:1", token, old, 300)
    print(f"fill of {old!r}, read before the write     -> {filled}"
          f" (cache holds {cache.get('user:1')!s})")


if __name__ == "__main__":
    main()
