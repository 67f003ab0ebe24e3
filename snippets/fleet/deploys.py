"""Deploys and schema changes: during a rolling deploy, old and new code run side by
side and read each other's cache entries.

- v1 caches ``{"name": ...}``; v2 expects ``{"name": ..., "email": ...}``: v2 fails on
  v1's entries. A schema version in the key (``user:v2:1``) keeps them apart.
- With versioned keys, a write must delete every live version's key, or the old code
  serves a stale entry: replayed by the explorer with an old-code reader and a
  new-code writer.
- A version bump makes every key cold at once; reading the old key as a fallback (and
  re-filling the new one) moves that cost off the database.

Run it: ``python -m snippets.fleet.deploys``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import re
from collections.abc import Callable, Sequence

from snippets import lease
from snippets.backends import (
    Cache, Database, check_int, check_name, make_fake_cache, make_db, user_key,
)
from snippets.explorer import Actor, Exploration, Run, explore, replay
# --8<-- [end:imports]


# --8<-- [start:shapes]
def _row(db: Database, user_id: int) -> tuple[str, str]:
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    if not rows:
        raise LookupError(f"no user with id {user_id}")
    name = str(rows[0][0])
    return name, f"{name.lower()}@example.com"  # v2's new field, derived for brevity


def get_user_v1(cache: Cache, db: Database, user_id: int) -> str:
    """v1: caches ``{"name": ...}`` under ``user:1``."""
    key = user_key(user_id)
    if (cached := cache.get(key)) is None:
        cached = json.dumps({"name": _row(db, user_id)[0]})
        cache.set(key, cached, ex=300)
    return str(json.loads(cached)["name"])


def get_user_v2(cache: Cache, db: Database, user_id: int) -> tuple[str, str]:
    """v2: caches ``{"name": ..., "email": ...}`` under the same key."""
    key = user_key(user_id)
    if (cached := cache.get(key)) is None:
        name, email = _row(db, user_id)
        cached = json.dumps({"name": name, "email": email})
        cache.set(key, cached, ex=300)
    entry = json.loads(cached)
    return entry["name"], entry["email"]  # (1)!
# --8<-- [end:shapes]


# --8<-- [start:versioned]
LIVE_VERSIONS = (1, 2)  # every schema version some running code still reads


def versioned_key(user_id: int, version: int) -> str:
    """``user:v2:1``: the schema version is part of the name."""
    return f"user:v{check_int('version', version)}:{user_key(user_id).split(':')[1]}"


def _no_wait(seconds: float) -> None:
    """The explorer needs no wait: a waiting reader's next GET is a later step."""


def get_user_versioned(cache: Cache, db: Database, user_id: int, version: int,
                       *, sleep: Callable[[float], object] = _no_wait) -> str | None:
    """Either version's read, through the kit's lease, under its own key."""
    def load() -> str:
        name, email = _row(db, user_id)
        entry = {"name": name} if version == 1 else {"name": name, "email": email}
        return json.dumps(entry)
    cached = lease.read_through(cache, versioned_key(user_id, version), load, 300,
                                sleep=sleep)
    return None if cached is None else str(json.loads(cached)["name"])


def update_user(cache: Cache, db: Database, user_id: int, name: str,
                versions: Sequence[int] = LIVE_VERSIONS) -> int:
    """UPDATE, then delete the key of every live version (and its lease)."""
    check_name(name)
    if not versions:
        raise ValueError("versions must name at least one schema version")
    if db.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id)) == 0:
        raise LookupError(f"no user with id {user_id}")
    for version in versions:
        lease.invalidate(cache, versioned_key(user_id, version))  # (1)!
    return len(versions)
# --8<-- [end:versioned]


# --8<-- [start:race]
def old_code_cached(cache: Cache, db: Database) -> None:
    """User 1 is "old" in the DB, and cached by v1 under its key."""
    db.add_user(1, "old")
    cache.set(versioned_key(1, 1), json.dumps({"name": "old"}), ex=300)


def mixed_fleet(writer_versions: Sequence[int]) -> dict[str, Actor]:
    """R: v1 code reads user 1; W: v2 code renames it, deleting the keys of
    ``writer_versions``."""
    return {"R": lambda cache, db: get_user_versioned(cache, db, 1, 1),
            "W": lambda cache, db: update_user(cache, db, 1, "new", writer_versions)}


def old_code_reads_new_name(cache: Cache, db: Database, returns: object) -> str | None:
    """Once both are done, v1's next read returns what the DB holds."""
    [(in_db,)] = db.query("SELECT name FROM users WHERE id = 1")
    seen = get_user_versioned(cache, db, 1, 1)
    return None if seen == in_db else f"stale: v1 reads {seen!r}, the DB says {in_db!r}"


def rolling_deploy(writer_versions: Sequence[int]) -> Exploration:
    """Every schedule of the old reader and the new writer."""
    return explore(mixed_fleet(writer_versions), old_code_cached,
                   old_code_reads_new_name, reduce=False)
# --8<-- [end:race]


def only_its_own_key() -> Run:
    """v2's writer deletes only ``user:v2:1``: v1 keeps serving its entry."""
    return replay(mixed_fleet((2,)), old_code_cached, "W W R",
                  check=old_code_reads_new_name)


def only_its_own_key_diagram() -> str:
    """The replay as a diagram; a cached JSON entry is drawn as "JSON name=old"."""
    text = only_its_own_key().mermaid({"W": "Writer (v2)", "R": "Reader (v1)"})
    return re.sub(r'""name": "(\w+)""', r'"JSON name=\1"', text)


# --8<-- [start:switch]
def switch_cost(users: int, fallback: bool) -> int:
    """Every user cached under v1; then each is read once by v2 code. Return the
    DB reads that costs. ``fallback``: on a miss, v2 reads v1's key and upgrades the
    entry instead of querying the database."""
    check_int("users", users)
    cache, db = make_fake_cache(), make_db()
    for user_id in range(1, users + 1):
        db.add_user(user_id, f"user{user_id}")
        cache.set(versioned_key(user_id, 1), json.dumps({"name": f"user{user_id}"}))
    for user_id in range(1, users + 1):
        key = versioned_key(user_id, 2)
        if cache.get(key) is not None:
            continue
        old = cache.get(versioned_key(user_id, 1)) if fallback else None
        if old is not None:  # (1)!
            name = json.loads(old)["name"]
            entry = {"name": name, "email": f"{name.lower()}@example.com"}
        else:
            name, email = _row(db, user_id)
            entry = {"name": name, "email": email}
        cache.set(key, json.dumps(entry), ex=300)
    return db.reads
# --8<-- [end:switch]


def main() -> None:
    print("v2 reads v1's entry under one key:", end=" ")
    cache, db = make_fake_cache(), make_db()
    db.add_user(1, "Ada")
    get_user_v1(cache, db, 1)
    try:
        get_user_v2(cache, db, 1)
    except KeyError as error:
        print(f"KeyError {error}")
    for label, versions in (("deletes only v2's key", (2,)),
                            ("deletes both keys", LIVE_VERSIONS)):
        result = rolling_deploy(versions)
        print(f"v2 writer {label}: {len(result.bad)} bad of {result.total}")
    for fallback in (False, True):
        how = "fallback to the v1 key" if fallback else "all keys cold"
        print(f"switching 1000 users, {how}: {switch_cost(1000, fallback)} DB reads")


if __name__ == "__main__":
    main()
