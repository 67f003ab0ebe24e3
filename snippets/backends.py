"""The world every example runs in: a cache, a database, and a count of DB queries.

Pattern functions never create these themselves; they receive them as arguments. So the
same function runs on fakeredis, on a real Redis server, and under the interleaving
explorer, which wraps both to schedule every call.

- ``make_cache()``: an empty in-process fakeredis by default; when ``REDIS_URL`` is set,
  that real Redis database, emptied with FLUSHDB (so point it at a scratch database).
  ``make_fake_cache()`` and ``make_redis_cache(url)`` pick one explicitly.
- ``Database``: SQLite (in memory by default, a file when given a path) that counts the
  reads and writes it serves, so an example can say exactly how often the DB was hit.
  ``make_db()`` is always SQLite (the explorer and the simulations need it);
  ``make_db_from_env()`` is PostgreSQL when ``DATABASE_URL`` is set
  (``snippets/postgres.py``: same interface, same counters), as ``make_cache()`` is
  Redis when ``REDIS_URL`` is.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import fakeredis
import redis

Cache = redis.Redis  # fakeredis.FakeRedis is a subclass: one type for both
Clock = Callable[[], float]  # seconds; time.time in production, a FakeClock in tests

DEFAULT_TTL = 300  # seconds: the safety net if an invalidation is ever missed


def user_key(user_id: int) -> str:
    """The cache key of one user, e.g. ``user:123``."""
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise ValueError(f"user_id must be a positive integer, got {user_id!r}")
    return f"user:{user_id}"


# Input checks: every public function refuses bad input with an error that names it.

def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is a whole number >= ``minimum`` (not a bool), else raise
    ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_number(name: str, value: object, minimum: float = 0.0) -> float:
    """Return ``value`` as a float if it is a finite number > ``minimum`` (not a bool),
    else raise ValueError naming ``name``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= minimum):
        raise ValueError(f"{name} must be a number > {minimum:g}, got {value!r}")
    return float(value)


def check_ttl(ttl: int) -> int:
    """Return ``ttl`` if it is a positive whole number of seconds, else raise
    ValueError."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return ttl


def check_name(name: object) -> str:
    """Return ``name`` if it is a non-empty string, else raise ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    return name


class FakeClock:
    """A clock that moves only when told to: code that depends on time takes a clock,
    and a test or an example advances this one, so nothing ever sleeps."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        self.now += seconds
        return self.now


def make_cache() -> Cache:
    """Return an empty cache: a real Redis if ``REDIS_URL`` is set, else fakeredis."""
    url = os.environ.get("REDIS_URL")
    return make_redis_cache(url) if url else make_fake_cache()


def make_fake_cache() -> Cache:
    # A server of its own, so two caches in one process never share keys.
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def make_redis_cache(url: str) -> Cache:
    """The Redis database at ``url``, emptied: examples expect to start from nothing."""
    cache = redis.Redis.from_url(url, decode_responses=True)
    try:
        cache.flushdb()
    except redis.ConnectionError as error:
        raise RuntimeError(f"no Redis answers at {url}: {error}") from error
    return cache


def backend_name(cache: Cache) -> str:
    """'fakeredis' or 'redis': the tests label their parameters with it."""
    return "fakeredis" if isinstance(cache, fakeredis.FakeRedis) else "redis"


USERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id      INTEGER PRIMARY KEY,
    name    TEXT    NOT NULL,
    version INTEGER NOT NULL DEFAULT 1  -- bumped by every update; versioned sets use it
)
"""


class Database:
    """SQLite with a query counter.

    ``query()`` counts one read and ``execute()`` one write, per statement.
    Statements run in autocommit mode unless grouped with ``transaction()``.
    """

    def __init__(self, path: str = ":memory:") -> None:
        # check_same_thread=False plus our own lock: the load tests share one
        # connection between threads, one statement at a time.
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.lock = threading.RLock()
        self.reads = 0
        self.writes = 0
        self.conn.execute(USERS_SCHEMA)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a SELECT and return all its rows."""
        with self.lock:
            self.reads += 1
            return self.conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write (INSERT, UPDATE, DELETE, DDL): the number of rows changed."""
        with self.lock:
            self.writes += 1
            return self.conn.execute(sql, params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Group statements: all of them commit, or none do if the block raises."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def reset_counts(self) -> None:
        self.reads = 0
        self.writes = 0

    def add_user(self, user_id: int, name: str) -> None:
        """Insert one user (setup for examples; not counted as a query)."""
        with self.lock:
            self.conn.execute(
                "INSERT INTO users (id, name) VALUES (?, ?)", (user_id, name)
            )

    def close(self) -> None:
        self.conn.close()


def make_db(path: str = ":memory:") -> Database:
    """An empty ``users`` table in SQLite: in memory by default, or in the file at
    ``path``."""
    return Database(path)


def make_db_from_env() -> Database:
    """An empty ``users`` table: in the PostgreSQL at ``DATABASE_URL`` if it is set
    (in a schema of its own, dropped by ``close()``), else in SQLite's memory."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return make_db()
    from snippets.postgres import make_postgres_db  # it builds on this module

    return make_postgres_db(url)
