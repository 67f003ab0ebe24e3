"""Cache-aside: the application reads through the cache and deletes the key after
each write.

Run it: ``python -m snippets.patterns.cache_aside`` (add
``REDIS_URL=redis://127.0.0.1:6379/0`` for a real Redis).
"""

from __future__ import annotations

# --8<-- [start:imports]
from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_name,
    check_ttl,
    make_cache,
    make_db,
    user_key,
)

# --8<-- [end:imports]


# --8<-- [start:read]
def get_user(
    cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL
) -> str | None:
    """The user's name: from the cache, or from the DB (then cached)."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    cached = cache.get(key)
    if cached is not None:  # hit: the DB is not touched
        return cached  # type: ignore[return-value]  # replies are decoded: a str
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    if not rows:
        return None  # no such user: nothing to cache
    name = rows[0][0]
    cache.set(key, name, ex=ttl)  # the TTL bounds how long a wrong value lives
    return name
# --8<-- [end:read]


# --8<-- [start:write]
def update_user(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """Write the DB (the source of truth), then delete the cached copy."""
    key = user_key(user_id)
    check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    cache.delete(key)  # the next read misses and loads the new row
# --8<-- [end:write]


def main() -> None:
    """Narrate one user's life in the cache: miss, hit, write, miss again."""
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")

    def read() -> None:
        reads_before = db.reads
        name = get_user(cache, db, 1)
        hit = db.reads == reads_before
        how = "hit: DB not touched" if hit else "miss: DB read, SET"
        print(f"read  user:1  {how:<22} -> {name!r:<15} "
              f"(DB reads so far: {db.reads})")

    read()
    read()
    update_user(cache, db, 1, "Ada Lovelace")
    held = cache.get(user_key(1))
    print(f"write user:1  UPDATE, then DEL       -> cache holds {held!r}")
    read()
    read()


if __name__ == "__main__":
    main()
