"""The production pattern: update the DB then delete the key; fill a miss under a lease.

Plus the places where update-on-write is safe: sessions, feature flags, atomic counters.

Run it: ``python -m snippets.production_pattern`` (add ``REDIS_URL=redis://127.0.0.1:6379/0``
for a real Redis).
"""

from __future__ import annotations

import json
import secrets

from snippets.backends import DEFAULT_TTL, Cache, Database, check_ttl, make_cache, make_db, user_key

LEASE_TTL = 10  # seconds: a reader that dies holding a lease blocks fills this long
SESSION_TTL = 1800  # seconds of inactivity before a session ends
FLAGS_KEY = "flags"


# --8<-- [start:lease]
def lease_key(key: str) -> str:
    """The key of the lease that guards filling ``key``: ``user:1:lease``."""
    return f"{key}:lease"


def take_lease(cache: Cache, key: str) -> str | None:
    """On a miss, BEFORE reading the DB: claim the fill. None if taken."""
    token = secrets.token_hex(8)
    taken = cache.set(lease_key(key), token, nx=True, ex=LEASE_TTL)
    return token if taken else None


# Runs inside Redis, so nothing can happen between the check and the SET.
FILL_IF_LEASE_HELD = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"""


def fill(cache: Cache, key: str, token: str, value: str, ttl: int) -> bool:
    """Set ``key`` only if our lease still stands; False if a write came."""
    # The TTL stays the backstop for anything this does not foresee.
    lease = lease_key(key)
    return cache.eval(FILL_IF_LEASE_HELD, 2, key, lease, token, value, ttl) == 1


# --8<-- [end:lease]


# --8<-- [start:read]
def get_user(
    cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL
) -> str | None:
    """Hit: return it. Miss: lease, read the DB, fill unless a write came."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    cached = cache.get(key)
    if cached is not None:
        return cached
    token = take_lease(cache, key)  # before the read: a later write voids it
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    if not rows:
        return None  # nothing to cache (an unused lease expires by itself)
    name = rows[0][0]
    if token is not None:  # else another reader holds the lease and fills
        fill(cache, key, token, name, ttl)
    return name
# --8<-- [end:read]


# --8<-- [start:write]
def update_user(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """Write the DB (the source of truth), then delete the key and its lease."""
    key = user_key(user_id)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    # One DEL, two keys: any fill that read the old row is now refused.
    cache.delete(key, lease_key(key))
# --8<-- [end:write]


# --8<-- [start:session]
def session_key(session_id: str) -> str:
    if not isinstance(session_id, str) or not session_id.isalnum():
        raise ValueError(f"session_id must be alphanumeric, got {session_id!r}")
    return f"session:{session_id}"


def save_session(
    cache: Cache, session_id: str, data: dict, ttl: int = SESSION_TTL
) -> None:
    """SET on every write: Redis IS the store, and its owner the one writer."""
    key, ttl = session_key(session_id), check_ttl(ttl)
    if not isinstance(data, dict):
        raise TypeError(f"session data must be a dict, got {data!r}")
    cache.set(key, json.dumps(data, sort_keys=True), ex=ttl)  # renews the TTL


def load_session(cache: Cache, session_id: str) -> dict | None:
    raw = cache.get(session_key(session_id))
    return None if raw is None else json.loads(raw)
# --8<-- [end:session]


# --8<-- [start:flags]
def create_flags_table(db: Database) -> None:
    """One row: the whole flag set, as one JSON document."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS flags"
        " (id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL)"
    )


def set_flags(
    cache: Cache, db: Database, flags: dict[str, bool], ttl: int = DEFAULT_TTL
) -> None:
    """The admin's write: the WHOLE flag set to the DB, then to the cache."""
    ttl = check_ttl(ttl)
    if not isinstance(flags, dict) or not all(
        isinstance(flag, str) and isinstance(on, bool)
        for flag, on in flags.items()
    ):
        raise TypeError(f"flags must be a dict of str to bool, got {flags!r}")
    doc = json.dumps(flags, sort_keys=True)
    db.execute("INSERT OR REPLACE INTO flags (id, doc) VALUES (1, ?)", (doc,))
    cache.set(FLAGS_KEY, doc, ex=ttl)  # read-after-write: no miss, no gap


def get_flags(
    cache: Cache, db: Database, ttl: int = DEFAULT_TTL
) -> dict[str, bool]:
    """Hit: return it. Miss: read the DB and fill with NX, never overwriting."""
    ttl = check_ttl(ttl)
    doc = cache.get(FLAGS_KEY)
    if doc is None:
        rows = db.query("SELECT doc FROM flags WHERE id = 1")
        doc = rows[0][0] if rows else "{}"
        # NX: if the admin's SET landed while we read, it wins; ours is dropped.
        cache.set(FLAGS_KEY, doc, nx=True, ex=ttl)
    return json.loads(doc)
# --8<-- [end:flags]


# --8<-- [start:counter]
def counter_key(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"counter name must be non-empty text, got {name!r}")
    return f"counter:{name}"


def count_hit(cache: Cache, name: str) -> int:
    """One INCR: Redis adds one atomically, so no increment is ever lost."""
    return cache.incr(counter_key(name))


def count_hit_unsafe(cache: Cache, name: str) -> int:
    """GET, then SET: two clients can read the same value and lose one."""
    key = counter_key(name)
    value = int(cache.get(key) or 0) + 1
    cache.set(key, value)
    return value
# --8<-- [end:counter]


def main() -> None:
    """Narrate the production paths, and the reader race they refuse."""
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")
    key = user_key(1)
    print(f"read  user:1  miss, lease, DB read, fill -> {get_user(cache, db, 1)!r}")
    print(f"read  user:1  hit                        -> {get_user(cache, db, 1)!r}")
    update_user(cache, db, 1, "Ada Lovelace")
    print(f"write user:1  UPDATE, DEL key and lease  -> cache holds {cache.get(key)!r}")
    # The reader race, by hand: a reader misses and reads the row; a write lands.
    token = take_lease(cache, key)
    assert token is not None
    (old,) = db.query("SELECT name FROM users WHERE id = 1")[0]
    update_user(cache, db, 1, "Countess of Lovelace")
    refused = not fill(cache, key, token, old, DEFAULT_TTL)
    print(f"race  late fill of {old!r} refused: {refused} -> cache holds {cache.get(key)!r}")
    print(f"read  user:1  miss, lease, DB read, fill -> {get_user(cache, db, 1)!r}")


if __name__ == "__main__":
    main()
