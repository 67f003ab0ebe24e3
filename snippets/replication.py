"""Replication as steps: the distributed world of the "Distributed timing" pages.

Production caches sit in front of databases that replicate, and are themselves
replicated. Each of those is modelled here as a step the explorer interleaves like any
command, so lag, failover and delivery order become schedules to enumerate:

- ``ReplicatedDatabase``: the primary, which keeps each committed transaction in commit
  order, and a read replica that applies them one ``replicate()`` step at a time.
- ``add_change_stream``: the database's own committed change stream (CDC), a table that
  triggers fill in the same transaction as the write, read in commit order.
- ``ReplicatedCache``: a Redis primary whose writes reach a Redis replica one
  ``replicate()`` step at a time, and a ``failover()`` that promotes the replica.
- ``SharedFile``: one SQLite file in WAL mode and a second connection to it, as a second
  application server has: its transactions read from a snapshot.

The pattern functions stay plain: they take a cache and a database, and the world hands
them the primary, the replica or the other connection.
"""

from __future__ import annotations

# --8<-- [start:imports]
import os
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import fakeredis

from snippets.backends import Cache, Database
from snippets.explorer.footprints import READ_COMMANDS, reading, writing
from snippets.explorer.instrument import step
from snippets.explorer.text import redis_text, sql_text
# --8<-- [end:imports]

Statement = tuple[str, tuple[Any, ...]]


# --8<-- [start:replica]
class ReplicatedDatabase(Database):
    """The primary, and a replica that lags. Every committed write joins ``log`` (one
    entry per transaction, in commit order); ``replicate()`` applies the next one to
    ``replica``, as asynchronous replication does, one step at a time."""

    def __init__(self, replica_store: str = "DB replica") -> None:
        super().__init__()
        self.replica = Database()
        self.replica_store = replica_store  # its name in diagrams and footprints
        self.log: list[list[Statement]] = []
        self.applied = 0  # how many transactions of the log the replica has applied
        self._open: list[Statement] | None = None  # the transaction under way

    def stores(self) -> dict[str, Any]:
        return {self.replica_store: self.replica}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        changed = super().execute(sql, params)
        if self._open is not None:
            self._open.append((sql, tuple(params)))  # shipped at COMMIT
        else:
            self.log.append([(sql, tuple(params))])  # autocommit: shipped now
        return changed

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        self._open = []
        try:
            with super().transaction() as tx:
                yield tx
            self.log.append(self._open)  # committed: nothing ships on ROLLBACK
        finally:
            self._open = None

    def add_user(self, user_id: int, name: str) -> None:
        """Setup: both copies start with the row (replication caught up)."""
        super().add_user(user_id, name)
        self.replica.add_user(user_id, name)

    def replicate(self) -> int:
        """One step: the replica applies the next committed transaction, if any.
        Returns how many statements it applied (0: it had caught up)."""
        # It reads what the primary committed, and writes the replica.
        return step(self.replica_store, reading("db") | writing(self.replica_store),
                    self._apply_next)

    def _apply_next(self) -> tuple[str, int]:
        if self.applied == len(self.log):
            return "apply: nothing new", 0
        statements = self.log[self.applied]
        self.applied += 1
        with self.replica.lock:  # one transaction on the replica too
            self.replica.conn.execute("BEGIN")
            for sql, params in statements:
                self.replica.conn.execute(sql, params)
            self.replica.conn.execute("COMMIT")
        text = ", ".join(sql_text(sql, params) for sql, params in statements)
        return f"apply {text}", len(statements)
# --8<-- [end:replica]


# --8<-- [start:change-stream]
CHANGE_STREAM = """
CREATE TABLE IF NOT EXISTS changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order
    user_id INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS users_inserted AFTER INSERT ON users
    BEGIN INSERT INTO changes (user_id) VALUES (NEW.id); END;
CREATE TRIGGER IF NOT EXISTS users_updated AFTER UPDATE ON users
    BEGIN INSERT INTO changes (user_id) VALUES (NEW.id); END;
CREATE TRIGGER IF NOT EXISTS users_deleted AFTER DELETE ON users
    BEGIN INSERT INTO changes (user_id) VALUES (OLD.id); END;
"""


def add_change_stream(db: Database) -> Database:
    """Record every change to ``users`` in ``changes``, inside the transaction that
    makes it: a row is in the stream if and only if its write committed. Debezium
    (reading the binlog or the WAL) gives production the same stream."""
    with db.lock:
        db.conn.executescript(CHANGE_STREAM)
    return db


def read_changes(db: Database, after: int) -> list[tuple[int, int]]:
    """The changes committed after sequence number ``after``: (seq, user_id), in
    commit order. One query: what a CDC consumer polls."""
    return db.query(
        "SELECT seq, user_id FROM changes WHERE seq > ? ORDER BY seq", (after,))
# --8<-- [end:change-stream]


# --8<-- [start:redis-replica]
def _writes(args: Sequence[Any]) -> bool:
    return str(args[0]).upper() not in READ_COMMANDS


class ReplicatedCache(fakeredis.FakeRedis):
    """A Redis primary (this client) and its replica. Every write the primary
    acknowledges joins ``backlog``; ``replicate()`` sends the next one to the replica,
    and ``failover()`` promotes the replica: whatever it had not received is gone."""

    def __init__(self, replica_store: str = "Redis replica") -> None:
        super().__init__(server=fakeredis.FakeServer(), decode_responses=True)
        self.replica = fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                           decode_responses=True)
        self.replica_store = replica_store
        # Acknowledged, not yet replicated: each entry a write, or the writes of one
        # MULTI/EXEC, which Redis replicates as one unit.
        self.backlog: list[list[tuple[Any, ...]]] = []
        self.failed_over = False

    def stores(self) -> dict[str, Any]:
        return {self.replica_store: self.replica}

    def execute_command(self, *args: Any, **options: Any) -> Any:
        result = super().execute_command(*args, **options)
        if _writes(args):
            self.backlog.append([args])  # acknowledged now, replicated later
        return result

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        """A pipeline whose writes, once executed, join the backlog as one unit."""
        pipe = super().pipeline(transaction, shard_hint)
        real_execute = pipe.execute

        def execute(raise_on_error: bool = True) -> Any:
            queued = [args for args, _ in pipe.command_stack]
            result = real_execute(raise_on_error)
            if written := [args for args in queued if _writes(args)]:
                self.backlog.append(written)
            return result

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe

    def replicate(self) -> int:
        """One step: the replica receives the next acknowledged write, if any."""
        return step(self.replica_store, reading("cache") | writing(self.replica_store),
                    self._replicate_next)

    def _replicate_next(self) -> tuple[str, int]:
        if not self.backlog:
            return "replicate: nothing new", 0
        unit = self.backlog.pop(0)
        with self.replica.pipeline(transaction=len(unit) > 1) as pipe:
            for args in unit:
                pipe.execute_command(*args)
            pipe.execute()
        return "replicate " + ", ".join(redis_text(args) for args in unit), 1

    def failover(self) -> int:
        """One step: the primary is lost and the replica takes its place. Returns how
        many acknowledged writes were lost with it."""
        return step("cache", writing("cache") | reading(self.replica_store),
                    self._failover)

    def _failover(self) -> tuple[str, int]:
        lost = len(self.backlog)
        copy_keyspace(self.replica, self)
        self.backlog.clear()  # lost, and the copy itself is not a write to replicate
        self.failed_over = True
        return f"failover: the replica is promoted, {lost} writes lost", lost
# --8<-- [end:redis-replica]


def copy_keyspace(source: Cache, target: Cache) -> None:
    """Make ``target`` hold exactly what ``source`` holds, TTLs included."""
    raw_source = fakeredis.FakeRedis(server=_server(source))
    raw_target = fakeredis.FakeRedis(server=_server(target))
    raw_target.flushdb()
    for key in raw_source.keys("*"):
        ttl = raw_source.pttl(key)
        dumped = raw_source.dump(key)
        assert dumped is not None  # the key was just listed
        raw_target.restore(key, max(ttl, 0), dumped)


def _server(cache: Cache) -> Any:
    return cache.connection_pool.connection_kwargs["server"]


IN_MEMORY = "/dev/shm"  # Linux: a file system in memory


# --8<-- [start:shared-file]
class SharedFile(Database):
    """One SQLite file in WAL mode and a second connection to it, ``other``: two
    application servers. A transaction opened with ``BEGIN`` reads from the snapshot
    of its first read, as PostgreSQL's REPEATABLE READ does, while the other commits."""

    def __init__(self, folder: str | None = None) -> None:
        # folder: where the file lives. By default a folder in memory (/dev/shm) where
        # there is one: a world is then ~50x faster to set up than on a disk.
        if folder is None and os.path.isdir(IN_MEMORY):
            folder = IN_MEMORY
        handle, path = tempfile.mkstemp(suffix=".sqlite3", dir=folder)
        os.close(handle)
        super().__init__(path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.other = Database(path)
        weakref.finalize(self, _remove, path, [self.conn, self.other.conn])

    def stores(self) -> dict[str, Any]:
        return {"db": self.other}  # the same data: the same store


def _remove(path: str, connections: list[Any]) -> None:
    for connection in connections:
        connection.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
# --8<-- [end:shared-file]


