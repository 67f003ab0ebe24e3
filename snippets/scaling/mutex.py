"""A stampede cure: one loader per key, chosen by a Redis lock (SET key token NX PX).

The reader that wins the lock loads the row and fills the cache; the others poll the
cache with backoff until the value is there. The lock carries a random token, so only
its owner can release it (a Lua compare-and-delete), and an expiry, so a holder that
dies cannot block everyone forever.

Run it: ``python -m snippets.scaling.mutex``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from snippets.backends import (
    DEFAULT_TTL, Cache, Database, check_int, check_number, check_ttl, make_cache,
    make_db, user_key,
)
from snippets.faults import Crash, Faults, Intercept

if TYPE_CHECKING:  # the explorer is loaded only by explore_release, when it runs
    from snippets.explorer import Exploration, Returns

# --8<-- [end:imports]

Sleep = Callable[[float], None]  # time.sleep; in the benchmark, a simulated wait


# --8<-- [start:lock]
# Delete the lock only if it still holds our token: GET and DEL in one atomic step.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def acquire(
    cache: Cache, lock: str, lock_ms: int, token: str | None = None
) -> str | None:
    """Take ``lock`` for ``lock_ms`` ms: return our token, or None if it is held."""
    check_key(lock, "lock"), check_int("lock_ms", lock_ms)
    # A token unique to this holder: it proves, later, who owns the lock.
    token = uuid.uuid4().hex if token is None else check_key(token, "token")
    return token if cache.set(lock, token, nx=True, px=lock_ms) else None


def release(cache: Cache, lock: str, token: str) -> bool:
    """Release ``lock`` if it is still ours; False if it expired meanwhile."""
    check_key(lock, "lock"), check_key(token, "token")
    return cache.eval(RELEASE, 1, lock, token) == 1


def check_key(key: str, name: str = "key") -> str:
    """A lock name or a token: a non-empty string."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"{name} must be a non-empty string, got {key!r}")
    return key
# --8<-- [end:lock]


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
    """Cache-aside read; only the holder of ``lock:user:<id>`` reads the DB."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    check_int("lock_ms", lock_ms)
    wait = check_number("first_wait", first_wait)  # seconds
    max_wait = check_number("max_wait", max_wait)
    while True:
        cached = cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]  # replies are decoded: a str
        token = acquire(cache, f"lock:{key}", lock_ms)
        if token is None:  # someone else is loading: wait, then look again
            sleep(wait)
            wait = min(wait * 2, max_wait)  # exponential backoff, capped
            continue
        try:
            cached = cache.get(key)  # the previous holder may have filled it just now
            if cached is not None:
                return cached  # type: ignore[return-value]  # decoded: a str
            rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
            name = rows[0][0] if rows else None
            if name is not None:
                cache.set(key, name, ex=ttl)
            return name
        finally:
            release(cache, f"lock:{key}", token)  # no-op if it expired meanwhile
# --8<-- [end:read]


# --8<-- [start:crash]
def crash_while_holding(
    cache: Cache, db: Database, *, sleep: Sleep, lock_ms: int = 2000
) -> tuple[str | None, list[float]]:
    """Process A takes the lock and dies mid-load; then process B reads the same user.

    Return what B got and every wait B made. B gets in only because the lock expires.
    """
    if not callable(sleep):
        raise TypeError(f"sleep must be a function of seconds, got {sleep!r}")
    a = Faults()  # process A: killed just before its query, it sends nothing more
    a_db: Any = Intercept(a.wrap(db, "A"), "query", a.kill)
    try:
        get_user_locked(a.wrap(cache, "A"), a_db, 1, lock_ms=lock_ms)
    except Crash:
        pass  # A is gone, and the release in its `finally` with it; its lock is not
    waits: list[float] = []

    def counted(seconds: float) -> None:
        waits.append(seconds)
        sleep(seconds)

    return get_user_locked(cache, db, 1, lock_ms=lock_ms, sleep=counted), waits
# --8<-- [end:crash]


# --8<-- [start:race]
Release = Callable[[Cache, str, str], bool]


def plain_delete(cache: Cache, lock: str, token: str) -> bool:
    """Wrong: deletes the lock whoever holds it."""
    return cache.delete(lock) == 1


def get_then_delete(cache: Cache, lock: str, token: str) -> bool:
    """Wrong: checks the owner, then deletes, in two round trips."""
    if cache.get(lock) == token:
        return cache.delete(lock) == 1  # the lock may have changed hands since the GET
    return False


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
    """A's load outlasts its lock: the lock expires (``expire``), B takes it, then A
    releases with ``how``. Return who holds the lock at the end: B, if ``how`` is safe.
    """
    acquire(cache, "lock:user:1", 100, token="A")
    expire()
    acquire(cache, "lock:user:1", 100, token="B")
    how(cache, "lock:user:1", "A")
    return cache.get("lock:user:1")  # type: ignore[return-value]  # decoded: a str


def release_while_expiring(
    cache: Cache, expire: Callable[[], None], how: Release
) -> str | None:
    """A releases its lock with ``how``; right after A's first command, A's lock
    expires (``expire``) and B takes it. Return who holds the lock at the end: B,
    if ``how`` is safe.
    """
    acquire(cache, "lock:user:1", 100, token="A")

    def expire_and_b_acquires() -> None:
        expire()
        acquire(cache, "lock:user:1", 100, token="B")

    scheduled: Any = AfterFirstCommand(cache, expire_and_b_acquires)
    how(scheduled, "lock:user:1", "A")
    return cache.get("lock:user:1")  # type: ignore[return-value]  # decoded: a str
# --8<-- [end:race]


# --8<-- [start:explore]
def explore_release(how: Release) -> Exploration:
    """Every interleaving of three actors around one lock that A holds:

    - A releases it with ``how``;
    - the server expires it: deletes the key if it still holds A's token (B's key, set
      later, has a TTL of its own);
    - B tries to take it.

    Bad: B took the lock, and at the end it is no longer there for B.
    """
    from snippets.explorer import explore  # loaded only by those who explore

    lock = "lock:user:1"

    def setup(cache: Cache, db: Database) -> None:
        cache.set(lock, "A", px=60_000)

    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        if returns["B"] == "B" and cache.get(lock) != "B":
            return "B believes it holds the lock, but it is gone"
        return None

    actors = {
        "A": lambda cache, db: how(cache, lock, "A"),
        "expiry": lambda cache, db: cache.eval(RELEASE, 1, lock, "A"),
        "B": lambda cache, db: acquire(cache, lock, 60_000, token="B"),
    }
    return explore(actors, setup, check)
# --8<-- [end:explore]


def main() -> None:
    """Narrate a lock's life: taken, refused, released by its owner only, used."""
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")
    a = acquire(cache, "lock:user:1", 30_000, token="token-A")
    b = acquire(cache, "lock:user:1", 30_000, token="token-B")
    print(f"A: SET lock:user:1 token-A NX PX 30000 -> {'acquired' if a else 'refused'}")
    print(f"B: SET lock:user:1 token-B NX PX 30000 -> {'acquired' if b else 'refused'}")
    released = release(cache, "lock:user:1", "token-B")
    print(f"B: release with token-B               -> {released}"
          f" (lock still {cache.get('lock:user:1')!s})")
    released = release(cache, "lock:user:1", "token-A")
    print(f"A: release with token-A               -> {released}"
          f" (lock now {cache.get('lock:user:1')!s})")
    name = get_user_locked(cache, db, 1)
    print(f"read user:1 under the lock            -> {name!r} (DB reads: {db.reads})")


if __name__ == "__main__":
    main()
