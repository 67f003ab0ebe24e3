"""One lease for every fill: the fill path of the production pattern and of every
stampede cure, after the leases of Facebook's memcache (Nishtala et al., NSDI 2013,
section 3.2.1).

- A miss takes the lease: ``SET {key}:lease <random token> NX PX <lease_ms>``.
- The holder reads the database and fills with a script that sets the key only if its
  token still stands, then frees the lease.
- A write deletes the key and its lease in one ``DEL``: a fill that read the old row
  finds no token and is refused. The braces (a hash tag) keep both keys in one Redis
  Cluster slot, as the script and the two-key ``DEL`` require.
- A miss that does not get the lease waits a little and asks the cache again, a bounded
  number of times, instead of going to the database. If the value still is not there
  (the holder is slow, or died), it reads the database itself, without filling.
"""

from __future__ import annotations

# --8<-- [start:imports]
import secrets
import time
from collections.abc import Callable

from snippets.backends import Cache, check_int, check_ttl
# --8<-- [end:imports]

# --8<-- [start:lease]
LEASE_MS = 10_000  # a holder that dies blocks fills this long, as in memcache (10 s)
WAIT_MS = 50       # how long a miss without the lease waits before asking again
WAITS = 4          # how many times it asks again before reading the DB itself


def lease_key(key: str) -> str:
    """``{user:1}:lease``: the hash tag puts it in the same slot as ``user:1``."""
    return f"{{{key}}}:lease"


def take_lease(cache: Cache, key: str, lease_ms: int = LEASE_MS) -> str | None:
    """On a miss, BEFORE reading the DB: claim the fill. None if someone holds it."""
    token = secrets.token_hex(8)  # random: a late holder cannot free a newer lease
    taken = cache.set(lease_key(key), token, nx=True, px=lease_ms)
    return token if taken else None


# Each runs inside Redis, so nothing can happen between the check and the change.
FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fill(cache: Cache, key: str, token: str, value: str, ttl: int) -> bool:
    """Set ``key`` only if our lease still stands; False if a write came since."""
    return cache.eval(FILL, 2, key, lease_key(key), token, value, check_ttl(ttl)) == 1


def release(cache: Cache, key: str, token: str) -> bool:
    """Free our lease without filling (there was nothing to cache)."""
    return cache.eval(RELEASE, 1, lease_key(key), token) == 1


def invalidate(cache: Cache, key: str) -> int:
    """The write path, after the DB commit: delete the value and any lease on it."""
    return cache.delete(key, lease_key(key))
# --8<-- [end:lease]


# --8<-- [start:read]
def read_through(cache: Cache, key: str, load: Callable[[], str | None], ttl: int, *,
                 sleep: Callable[[float], object] = time.sleep, waits: int = WAITS,
                 wait_ms: int = WAIT_MS, lease_ms: int = LEASE_MS) -> str | None:
    """Hit: the cached value. Miss: one caller (the lease holder) loads and fills;
    the others wait for its fill, and load without filling only if it never comes."""
    check_int("waits", waits, minimum=0)
    check_int("wait_ms", wait_ms)
    for attempt in range(waits + 1):
        cached = cache.get(key)
        if cached is not None:
            return str(cached)
        token = take_lease(cache, key, lease_ms)
        if token is not None:
            try:
                value = load()
            except BaseException:
                release(cache, key, token)  # a failed load must not block fills
                raise
            if value is None:
                release(cache, key, token)  # nothing to cache: let the next one try
            else:
                fill(cache, key, token, value, ttl)  # refused if a write came
            return value
        if attempt < waits:
            sleep(wait_ms / 1000)  # someone else is loading: give them a moment
    return load()  # the holder is slow or gone: serve from the DB, and do not fill
# --8<-- [end:read]
