"""The shared setups and invariants of the race pages: "user 1 is 'old'", "the cache
agrees with the database". A setup and a check take ``(cache, db)`` like every actor,
so the explorer, the tests and a reader's own code all use the same ones."""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Callable
from typing import Any

from snippets.backends import Cache, Database, user_key
# --8<-- [end:imports]

Check = Callable[[Cache, Database, Any], "str | None"]


# --8<-- [start:setup]
def user_not_cached(cache: Cache, db: Database) -> None:
    """Before the race: user 1 is "old" in the DB, and not in the cache."""
    db.add_user(1, "old")
# --8<-- [end:setup]


# --8<-- [start:invariant]
def agrees_with_db(cached_name: Callable[[Cache], Any]) -> Check:
    """The invariant, for a cache read by ``cached_name``: once everyone is done, the
    cache holds nothing for user 1, or the name the DB holds."""
    def check(cache: Cache, db: Database, returns: Any) -> str | None:
        cached = cached_name(cache)
        [(in_db,)] = db.query("SELECT name FROM users WHERE id = 1")
        if cached is not None and cached != in_db:
            return f"stale: the cache holds {cached!r} but the DB says {in_db!r}"
        return None
    return check


cache_agrees_with_db = agrees_with_db(lambda cache: cache.get(user_key(1)))
# --8<-- [end:invariant]
