"""The production pattern: update the DB then delete the key and its lease; fill a miss
under the kit's lease (snippets/lease.py).

Plus where it breaks (a lagging read replica, a snapshot read), and the places where
update-on-write is safe: sessions, feature flags, atomic counters.

Run it: ``python -m snippets.concurrency.production_pattern`` (add
``REDIS_URL=redis://127.0.0.1:6379/0`` for a real Redis).
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
from snippets.lease import fill, invalidate, read_through, take_lease
from snippets.scenarios import Check, cache_agrees_with_db, user_not_cached

# --8<-- [end:imports]

if TYPE_CHECKING:
    from snippets.explorer import Run


# --8<-- [start:read]
def get_user(cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL, *,
             sleep: Callable[[float], object] = time.sleep) -> str | None:
    """Hit: return it. Miss: the lease holder reads the DB and fills, unless a write
    came; a miss without the lease waits for that fill (``sleep``: the clock)."""
    key, ttl = user_key(user_id), check_ttl(ttl)

    def load() -> str | None:
        rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
        return rows[0][0] if rows else None  # no row: nothing to cache

    return read_through(cache, key, load, ttl, sleep=sleep)
# --8<-- [end:read]


# --8<-- [start:write]
def update_user(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """Write the DB (the source of truth), then delete the key and its lease."""
    key = user_key(user_id)
    check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    invalidate(cache, key)  # DEL of key and lease: a fill that read the old row fails
# --8<-- [end:write]


# --8<-- [start:replica]
class Replica(Database):
    """A read replica that lags: it holds the primary's users as of its last
    ``catch_up()``, as asynchronous replication does until it applies a change."""

    def __init__(self, primary: Database) -> None:
        super().__init__()
        self.primary = primary
        self.catch_up()

    def catch_up(self) -> None:
        """Apply everything the primary has committed (replication, not a query)."""
        with self.primary.lock:
            rows = self.primary.conn.execute(
                "SELECT id, name, version FROM users").fetchall()
        with self.lock:
            self.conn.execute("DELETE FROM users")
            self.conn.executemany(
                "INSERT INTO users (id, name, version) VALUES (?, ?, ?)", rows)
# --8<-- [end:replica]


# --8<-- [start:snapshot]
def two_connections(path: str) -> tuple[Database, Database]:
    """Two connections to one SQLite file in WAL mode, as two application servers
    would have. A transaction on one keeps reading the snapshot of its first read
    while the other commits."""
    first = Database(path)
    first.conn.execute("PRAGMA journal_mode=WAL")
    return first, Database(path)
# --8<-- [end:snapshot]


# --8<-- [start:session]
SESSION_TTL = 1800  # seconds of inactivity before a session ends


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
FLAGS_KEY = "flags"


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
    db.execute(
        "INSERT INTO flags (id, doc) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",  # SQLite and PostgreSQL
        (doc,),
    )
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


# Every claim above, checked against every interleaving by the explorer. Not part of
# the pattern: copy the sections above, not this.

Actor = Callable[[Cache, Database], Any]  # as in the explorer: a setup, or one actor
Claim = tuple[dict[str, Actor], Actor | None, Check]  # actors, setup, invariant


def _user_claims() -> dict[str, Claim]:
    from snippets.patterns import cache_aside

    def warm(cache: Cache, db: Database) -> None:  # "old" in the DB and in the cache
        user_not_cached(cache, db)
        get_user(cache, db, 1)

    def fresh(cache: Cache, db: Database, returns: Any) -> str | None:
        """Nothing or the DB's value in the cache at the end, and no reader that
        began after the write finished got the old value."""
        if stale := cache_agrees_with_db(cache, db, returns):
            return stale
        [(row,)] = db.query("SELECT name FROM users WHERE id = 1")
        late = "R" in returns and returns.finished_before("W", "R")
        if late and returns["R"] != row:
            return f"R began after the write and returned {returns['R']!r}"
        return None

    def renames(write: Callable[..., None], name: str) -> Actor:
        return lambda cache, db: write(cache, db, 1, name)

    def reads(read: Callable[..., str | None]) -> Actor:
        return lambda cache, db: read(cache, db, 1)

    claims: dict[str, Claim] = {}
    for label, (read, write) in {
        "cache-aside": (cache_aside.get_user, cache_aside.update_user),
        "production pattern": (get_user, update_user),
    }.items():
        claims[f"two writers, {label}"] = (
            {"A": renames(write, "A"), "B": renames(write, "B")}, warm, fresh)
        claims[f"writer + reader, {label}"] = (
            {"W": renames(write, "new"), "R": reads(read)}, user_not_cached, fresh)
    return claims


def _safe_use_claims() -> dict[str, Claim]:
    def old_flags(cache: Cache, db: Database) -> None:
        create_flags_table(db)
        db.execute("INSERT INTO flags (id, doc) VALUES (1, ?)", ('{"beta": false}',))

    def flags_match(cache: Cache, db: Database, returns: Any) -> str | None:
        cached = cache.get(FLAGS_KEY)
        [(doc,)] = db.query("SELECT doc FROM flags WHERE id = 1")
        if cached is not None and cached != doc:
            return f"the cache holds {cached!r} but the DB says {doc!r}"
        return None

    def counted_two(cache: Cache, db: Database, returns: Any) -> str | None:
        value = cache.get("counter:home")
        return None if value == "2" else f"two increments, counter = {value!r}"

    on, off = {"beta": True}, {"beta": False}
    return {
        "flags, one admin + a reader": (
            {"W": lambda c, d: set_flags(c, d, on), "R": lambda c, d: get_flags(c, d)},
            old_flags, flags_match),
        "flags, two admins": (
            {"A": lambda c, d: set_flags(c, d, on),
             "B": lambda c, d: set_flags(c, d, off)},
            old_flags, flags_match),
        "counter, INCR twice": (
            {"A": lambda c, d: count_hit(c, "home"),
             "B": lambda c, d: count_hit(c, "home")},
            None, counted_two),
        "counter, GET then SET twice": (
            {"A": lambda c, d: count_hit_unsafe(c, "home"),
             "B": lambda c, d: count_hit_unsafe(c, "home")},
            None, counted_two),
    }


def explore_claims(group: str) -> list[tuple[str, int, int]]:
    """(claim, schedules, bad ones) for ``group`` "user" or "safe uses": every
    interleaving of the actors' steps, on make_cache() (Redis if REDIS_URL is set)."""
    from snippets.explorer import explore  # the proof tool, not part of the pattern

    groups = {"user": _user_claims, "safe uses": _safe_use_claims}
    if group not in groups:
        raise LookupError(f"unknown group {group!r}; known: {', '.join(groups)}")
    rows = []
    for claim, (actors, setup, check) in groups[group]().items():
        result = explore(actors, setup, check, reduce=False, make_cache=make_cache)
        rows.append((claim, result.total, len(result.bad)))
    return rows


def print_claims(group: str) -> None:
    print(f"{'scenario':<38}{'schedules':>10}{'bad':>5}")
    for claim, total, bad in explore_claims(group):
        print(f"{claim:<38}{total:>10}{bad:>5}")


def race_refused_run() -> Run:
    """The reader race replayed on the production paths."""
    from snippets.explorer import replay

    actors, setup, check = _user_claims()["writer + reader, production pattern"]
    return replay(actors, setup, "R R R W W R", check=check)


def race_refused() -> str:
    """The reader race replayed on the production paths, as a Mermaid diagram. The lease
    token is random: the diagram calls it t1, and the Lua script by its name."""
    run = race_refused_run()
    text = run.mermaid({"W": "Writer", "R": "Reader"})
    text = re.sub(r'EVAL ".*?" 2', "EVAL FILL 2", text)
    tokens = dict.fromkeys(re.findall(r'"([0-9a-f]{16})"', text))
    for number, token in enumerate(tokens, 1):
        text = text.replace(token, f"t{number}")
    return text + "\n    Note over R: user:1 stays empty, the next read loads new"


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
    held = cache.get(key)
    print(f"race  late fill of {old!r} refused: {refused} -> cache holds {held!r}")
    print(f"read  user:1  miss, lease, DB read, fill -> {get_user(cache, db, 1)!r}")


if __name__ == "__main__":
    main()
