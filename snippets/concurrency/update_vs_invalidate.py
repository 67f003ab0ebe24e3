"""Update-on-write vs invalidate-on-write, with two concurrent writers.

The seed's scenario: request A renames user 1 to "A", request B renames it to "B",
at the same time. Update-on-write can end with DB = B and cache = A;
invalidate-on-write cannot. The explorer runs both through every interleaving and
counts.

Run it: ``python -m snippets.concurrency.update_vs_invalidate``.
"""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Callable

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_name,
    check_ttl,
    user_key,
)
from snippets.explorer import Actor, Exploration, Run, explore, replay
from snippets.patterns.cache_aside import get_user, update_user
from snippets.scenarios import cache_agrees_with_db, user_not_cached

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


def seed_race() -> Run:
    """The seed's "DB = B, cache = A", replayed: B's SET lands before A's."""
    return replay(two_writers(update_user_and_cache), user_in_cache, "A B B A",
                  check=cache_agrees_with_db)


def seed_race_diagram() -> str:
    return seed_race().mermaid(WRITER_LABELS)


def invalidate_same_order() -> Run:
    """The same order of steps, with invalidate-on-write: both DELs, the cache ends
    empty."""
    return replay(two_writers(update_user), user_in_cache, "A B B A",
                  check=cache_agrees_with_db)


def invalidate_same_order_diagram() -> str:
    return invalidate_same_order().mermaid(WRITER_LABELS, final_state=True)


def main() -> None:
    for title, write in (("update-on-write", update_user_and_cache),
                         ("invalidate-on-write", update_user)):
        result = explore_writers(write)
        bad = ", ".join(map(str, result.bad)) or "none"
        print(f"{title:<20} {result.total} interleavings, {len(result.bad)} bad: {bad}")
    run = seed_race()
    in_db = run.db.query("SELECT name FROM users")[0][0]
    print(f"replay of A B B A:  DB = {in_db!r}, cache = {run.cache.get('user:1')!r}")


if __name__ == "__main__":
    main()
