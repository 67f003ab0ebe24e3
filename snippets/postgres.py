"""PostgreSQL behind the interface of the SQLite ``Database``: the pattern functions
run on it unchanged (``?`` placeholders, ``query``, ``execute``, ``transaction``, the
read and write counters); ``make_postgres_db(url)`` gives each caller an empty
``users`` table of its own on a shared server. ``PrimaryWithStandby`` is a primary whose
``replica`` is a hot standby, ``poll_slot`` invalidates from PostgreSQL's own change
stream (logical decoding), and ``relay_skip_locked`` lets several outbox relays run at
once, for the real-engine tests of the distributed-timing and outbox pages.

The tests start the servers themselves (tests/engines.py); nothing here starts one.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from snippets.backends import Cache, Database, user_key
from snippets.lease import lease_key

USERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id      INTEGER PRIMARY KEY,
    name    TEXT    NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
)
"""


def _placeholders(sql: str) -> str:
    """SQLite's ``?`` as psycopg's ``%s`` (a literal ``%`` doubled first)."""
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


class PostgresDatabase(Database):
    """One autocommit connection; ``query()`` counts a read, ``execute()`` a write."""

    def __init__(self, url: str, create: bool = True,
                 schema: str | None = None) -> None:  # not SQLite's
        self.url, self.schema = url, schema
        self.conn = psycopg.connect(url, autocommit=True)  # type: ignore[assignment]
        self.lock = threading.RLock()
        self.reads = 0
        self.writes = 0
        if schema:  # from now on, "users" on this connection is the schema's own table
            self.conn.execute(f'CREATE SCHEMA "{schema}"')
            self.conn.execute(f'SET search_path TO "{schema}"')
        if create:
            self.conn.execute(USERS_SCHEMA)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.lock:
            self.reads += 1
            return self.conn.execute(_placeholders(sql), params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.lock:
            self.writes += 1
            return self.conn.execute(_placeholders(sql), params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self.lock, self.conn.transaction():  # type: ignore[attr-defined]
            yield self

    def reset_counts(self) -> None:
        self.reads = 0
        self.writes = 0

    def add_user(self, user_id: int, name: str) -> None:
        with self.lock:
            self.conn.execute("INSERT INTO users (id, name) VALUES (%s, %s)",
                              (user_id, name))

    def close(self) -> None:
        if self.schema:  # leave the server as we found it
            self.conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
            self.schema = None
        self.conn.close()


def make_postgres_db(url: str) -> PostgresDatabase:
    """An empty ``users`` table in the PostgreSQL at ``url``, in a schema of its own
    that ``close()`` drops: many databases share one server (every test, on every
    pytest-xdist worker, of a reader's own PostgreSQL) and never see each other's
    rows."""
    return PostgresDatabase(url, schema=f"db_{uuid.uuid4().hex}")


class PrimaryWithStandby(PostgresDatabase):
    """The primary; ``replica`` reads a hot standby that applies each commit late
    (``recovery_min_apply_delay``), as a read replica under load does."""

    def __init__(self, primary_url: str, standby_url: str,
                 catch_up_timeout_s: float = 30.0) -> None:
        super().__init__(primary_url)
        self.replica = PostgresDatabase(standby_url, create=False)  # read-only
        self.catch_up_timeout_s = catch_up_timeout_s

    def replicate(self) -> bool:
        """Wait until the standby has applied everything the primary committed so far;
        False: nothing is left to apply (the explorer's replicas step one at a time)."""
        [(target,)] = self.conn.execute("SELECT pg_current_wal_insert_lsn()").fetchall()
        deadline = time.monotonic() + self.catch_up_timeout_s
        while True:
            [(done,)] = self.replica.conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchall()
            if done:
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby did not reach {target} in "
                                   f"{self.catch_up_timeout_s} s")
            time.sleep(0.02)

    def close(self) -> None:
        self.replica.close()
        super().close()


# --- CDC: invalidate from the database's own log (logical decoding) ------------------

SLOT = "cache_invalidation"
# test_decoding's line for a row of users: "table public.users: UPDATE: id[integer]:1"
USERS_ROW = re.compile(
    r"^table public\.users: (?:INSERT|UPDATE|DELETE): id\[integer\]:(\d+)")


def create_slot(db: PostgresDatabase, slot: str = SLOT) -> None:
    """A logical replication slot: from now on the server keeps every committed change
    until the slot's consumer has taken it (needs ``wal_level = logical``)."""
    db.conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')",
                    (slot,))


def poll_slot(cache: Cache, db: PostgresDatabase, slot: str = SLOT,
              leases: bool = False, upto: str | None = None) -> list[int]:
    """One poll: the users changed by transactions committed since the last poll, in
    commit order, whoever wrote them (the application, a migration, psql). Their keys
    are deleted first, and only then are the changes consumed: a poll that fails half
    way hands them out again (at least once). With ``upto`` (an LSN), only the
    transactions that committed before it."""
    rows = db.conn.execute(
        "SELECT lsn, data FROM pg_logical_slot_peek_changes(%s, %s::pg_lsn, NULL)",
        (slot, upto)).fetchall()
    changed = [int(match[1]) for _, data in rows if (match := USERS_ROW.match(data))]
    commits = [lsn for lsn, data in rows if data.startswith("COMMIT")]
    if not commits:
        return []
    keys = sorted({user_key(user_id) for user_id in changed})
    if leases:
        keys += [lease_key(key) for key in keys]
    if keys:
        cache.delete(*keys)
    db.conn.execute("SELECT count(*) FROM pg_logical_slot_get_changes(%s, %s, NULL)",
                    (slot, commits[-1]))  # consume what was handled, and no more
    return changed


def poll_applied(cache: Cache, db: PrimaryWithStandby, slot: str = SLOT) -> list[int]:
    """The standby's apply stream (the replica page's last fix), on PostgreSQL 15, which
    decodes changes on a primary only: the primary's slot, read up to what the standby
    has replayed. A key (and its lease) goes once a read from the standby can no longer
    return the old row, never before."""
    [(replayed,)] = db.replica.query("SELECT pg_last_wal_replay_lsn()")
    return poll_slot(cache, db, slot, leases=True, upto=str(replayed))


# --- The outbox, with relays that run side by side ------------------------------------

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id         BIGSERIAL PRIMARY KEY,
    topic      TEXT             NOT NULL,
    key        TEXT             NOT NULL,
    payload    TEXT             NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at    DOUBLE PRECISION
)
"""


def relay_skip_locked(db: PostgresDatabase, producer: Any,
                      clock: Callable[[], float] = time.time, limit: int = 100) -> int:
    """The outbox's relay, for several relays at once: in one transaction, lock a batch
    of unsent rows that no other relay holds (``FOR UPDATE SKIP LOCKED``), publish
    them, mark them sent. Another relay takes the next rows instead of the same ones;
    a relay that dies before COMMIT releases its rows, and another publishes them
    (a duplicate, never a loss)."""
    with db.transaction():
        rows = db.query(
            "SELECT id, topic, key, payload, created_at FROM outbox"
            " WHERE sent_at IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
            (limit,))
        for _, topic, key, payload, created_at in rows:
            producer.produce(topic, value=payload, key=key,
                             timestamp=round(created_at * 1000))
        if rows and producer.flush(10) != 0:
            raise RuntimeError("the log did not take every event: none marked")
        for row in rows:
            db.execute("UPDATE outbox SET sent_at = ? WHERE id = ?", (clock(), row[0]))
    return len(rows)
