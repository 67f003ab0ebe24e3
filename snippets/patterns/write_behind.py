"""Write-behind: a write is acknowledged from the cache; the database is updated later.

Two versions. The naive one keeps the writes still to flush in process memory, and loses
them when the process dies. The durable one logs every write in a Redis stream, in the
same Lua script as the cache update (the log first: a script stops at its first
error), and a flusher applies the log to the database and acknowledges an entry (XACK)
only after the database commit. On a Redis Cluster, where a script may only touch keys
of one slot, the log is split into a fixed number of partitions (``partitioned``), each
under a hash tag shared with its users' copies: each user's order is kept, not one
order of all writes.

Run it: ``python -m snippets.patterns.write_behind`` (``--bench`` counts the DB writes
that coalescing saves; add ``REDIS_URL=redis://127.0.0.1:6379/0`` for a real Redis).
"""

from __future__ import annotations

# --8<-- [start:imports]
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_int,
    check_name,
    check_ttl,
    make_cache,
    make_db,
    user_key,
)
from snippets.faults import Crash, Faults

# --8<-- [end:imports]


# --8<-- [start:read]
def get_user(
    cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL,
    log: Log | None = None,
) -> str | None:
    """The user's name: the cache holds the latest write; the DB may lag."""
    key, ttl = (log or ONE_LOG).key(user_id), check_ttl(ttl)
    cached = cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]  # replies are decoded: a str
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    if not rows:
        return None
    # NX: never overwrite a write that landed while we read the DB.
    cache.set(key, rows[0][0], ex=ttl, nx=True)
    return rows[0][0]
# --8<-- [end:read]


# --8<-- [start:naive]
class InMemoryWriteBehind:
    """Writes go to the cache; the ones to flush wait in this process."""

    def __init__(self, cache: Cache, db: Database, ttl: int = DEFAULT_TTL):
        self.cache, self.db, self.ttl = cache, db, check_ttl(ttl)
        self.pending: dict[int, str] = {}  # user id -> latest name

    def write(self, user_id: int, name: str) -> None:
        """Returning is the acknowledgement: the caller is told it is saved."""
        key, name = user_key(user_id), check_name(name)
        self.cache.set(key, name, ex=self.ttl)
        self.pending[user_id] = name  # replaces an older pending write

    def flush(self) -> int:
        """Write the pending names to the DB, in one transaction."""
        with self.db.transaction():
            for user_id, name in self.pending.items():
                self.db.execute(
                    "UPDATE users SET name = ?, version = version + 1"
                    " WHERE id = ?",
                    (name, user_id),
                )
        flushed, self.pending = len(self.pending), {}
        return flushed
# --8<-- [end:naive]


# --8<-- [start:durable-write]
STREAM = "users:writes"  # the log of acknowledged writes
GROUP = "flushers"  # the consumer group the flushers share
DEAD = "users:writes:dead"  # entries the database refused, kept for a human

APPLIED_SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    user_id   INTEGER PRIMARY KEY,
    entry_ms  BIGINT  NOT NULL,  -- the stream ID of the last entry applied (ms since
    entry_seq BIGINT  NOT NULL   -- 1970) to this row, as two numbers to compare
)
"""


@dataclass(frozen=True)
class Log:
    """A log of writes, its dead letters, and the copies of the users it logs."""

    stream: str = STREAM
    dead: str = DEAD
    tag: str = ""  # a hash tag, such as "{wb:1}", puts all of them in one slot

    def key(self, user_id: int) -> str:
        """The user's copy: ``user:1``, or ``{wb:1}:user:1`` under a tag."""
        return f"{self.tag}:{user_key(user_id)}" if self.tag else user_key(user_id)


ONE_LOG = Log()  # one log for every user: one order of all writes


def prepare(cache: Cache, db: Database, logs: Sequence[Log] = (ONE_LOG,)) -> None:
    """Create the consumer groups and the applied table (idempotent)."""
    for log in logs:
        try:
            cache.xgroup_create(log.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):  # BUSYGROUP: it already exists
                raise
    db.execute(APPLIED_SCHEMA)


def mark_key(key: str) -> str:
    """``{user:1}:entry``: the log entry whose value the copy holds, in the copy's
    Redis Cluster slot (``{wb:1}:user:1:entry`` for a copy that has a tag already)."""
    return f"{key}:entry" if "{" in key else f"{{{key}}}:entry"


# The log first: a script that fails stops there and keeps what already ran, so
# the XADD, the one command here that can fail (the log key of another type, or
# memory full under noeviction), must come before anything it would leave behind.
LOG_THEN_SET = """
local entry_id = redis.call('XADD', KEYS[1], '*', 'user_id', ARGV[1], 'name', ARGV[2])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], entry_id)
return entry_id
"""


def write(cache: Cache, user_id: int, name: str, log: Log = ONE_LOG) -> str:
    """Log the write, then update the cache, in one script; then acknowledge.

    Returns the log entry's ID: its position in the order of the log's writes. The
    copy gets no TTL while the DB lacks it (see flush), and its mark names the entry.
    """
    key, name = log.key(user_id), check_name(name)
    return str(cache.eval(LOG_THEN_SET, 3, log.stream, key, mark_key(key),
                          user_id, name))
# --8<-- [end:durable-write]


# --8<-- [start:flush]
Entry = tuple[str, dict[str, str]]  # (stream ID, fields)


def flush(
    cache: Cache,
    db: Database,
    consumer: str,
    count: int = 100,
    claim_idle_ms: int = 60_000,
    ttl: int = DEFAULT_TTL,
    log: Log = ONE_LOG,
) -> int:
    """Apply one batch of the log's writes; XACK them only after the commit.

    Returns how many entries it acknowledged (0: nothing to do).
    """
    ttl = check_ttl(ttl)
    entries = take_batch(cache, consumer, count, claim_idle_ms, log.stream)
    if not entries:
        return 0
    newest: dict[int, tuple[str, str]] = {}  # coalesce: the latest per user
    for entry_id, fields in sorted(entries, key=lambda e: order(e[0])):
        newest[int(fields["user_id"])] = (entry_id, fields["name"])
    refused = []
    with db.transaction():
        for user_id, (entry_id, name) in newest.items():
            if apply(db, user_id, name, entry_id) == "no such user":
                refused.append((entry_id, user_id, name))
    refused_ids = {entry_id for entry_id, _, _ in refused}
    copies = [(log.key(u), entry_id, "" if entry_id in refused_ids else name)
              for u, (entry_id, name) in newest.items()]
    keys = [log.stream, log.dead,
            *(k for key, _, _ in copies for k in (key, mark_key(key)))]
    cache.eval(ACK, len(keys), *keys, GROUP, ttl, len(refused),  # after the commit
               *(field for entry in refused for field in entry),
               *(field for _, entry_id, name in copies for field in (entry_id, name)),
               *(entry_id for entry_id, _ in entries))
    return len(entries)


# One script: nothing runs in between, and an error (a key of another type, memory
# full) stops it before the XACK, so the entries stay pending and are retried.
ACK = """
local group, ttl, a = ARGV[1], ARGV[2], 4
for _ = 1, tonumber(ARGV[3]) do  -- dead-letter what the DB refused
    redis.call('XADD', KEYS[2], '*', 'entry', ARGV[a], 'user_id', ARGV[a + 1],
               'name', ARGV[a + 2])
    a = a + 3
end
for k = 3, #KEYS, 2 do  -- each user's copy, unless a newer write (not in the
    if redis.call('GET', KEYS[k + 1]) == ARGV[a] then  -- DB yet) replaced it:
        if ARGV[a + 1] == '' then redis.call('DEL', KEYS[k])  -- refused
        else redis.call('SET', KEYS[k], ARGV[a + 1], 'EX', ttl) end  -- in the DB
        redis.call('DEL', KEYS[k + 1])
    end
    a = a + 2
end
return redis.call('XACK', KEYS[1], group, unpack(ARGV, a))
"""


def take_batch(
    cache: Cache, consumer: str, count: int, claim_idle_ms: int, stream: str = STREAM
) -> list[Entry]:
    """Entries to apply, oldest obligations first."""
    consumer, count = check_consumer(consumer), check_int("count", count)
    claim_idle_ms = check_int("claim_idle_ms", claim_idle_ms, minimum=0)
    # 1. Mine, delivered before I crashed and never acknowledged.
    mine = entries_of(cache.xreadgroup(GROUP, consumer, {stream: "0"}, count=count))
    if mine:
        return mine
    # 2. Another flusher's, idle so long that it is presumed dead.
    _, claimed, *_ = cache.xautoclaim(
        stream, GROUP, consumer, claim_idle_ms, start_id="0-0", count=count
    )
    if claimed:
        return claimed
    # 3. New writes.
    return entries_of(cache.xreadgroup(GROUP, consumer, {stream: ">"}, count=count))


def entries_of(reply: Any) -> list[Entry]:
    """The entries in an XREADGROUP reply for one stream: [[stream, entries]]."""
    return reply[0][1] if reply else []


def check_consumer(consumer: object) -> str:
    if not isinstance(consumer, str) or not consumer:
        raise ValueError(f"consumer must be a non-empty string, got {consumer!r}")
    return consumer


def apply(db: Database, user_id: int, name: str, entry_id: str) -> str:
    """Apply one entry unless this row already has it or a newer one.

    Idempotent: a replayed entry changes nothing. Call inside a transaction.
    """
    ms, seq = order(entry_id)
    changed = db.execute(
        """UPDATE users SET name = ?, version = version + 1
           WHERE id = ? AND NOT EXISTS (
               SELECT 1 FROM applied WHERE user_id = ?
               AND (entry_ms, entry_seq) >= (?, ?))""",
        (name, user_id, user_id, ms, seq),
    )
    if changed:
        db.execute(
            """INSERT INTO applied (user_id, entry_ms, entry_seq)
               VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE
               SET entry_ms = excluded.entry_ms,
                   entry_seq = excluded.entry_seq""",
            (user_id, ms, seq),
        )
        return "applied"
    if db.query("SELECT 1 FROM users WHERE id = ?", (user_id,)):
        return "already applied"  # a replay, or older than what the row has
    return "no such user"


def order(entry_id: str) -> tuple[int, int]:
    """A stream ID such as '1700000000000-3' as (milliseconds, sequence)."""
    ms, sep, seq = str(entry_id).partition("-")
    if not (sep and ms.isdigit() and seq.isdigit()):
        raise ValueError(f"not a stream entry ID: {entry_id!r}")
    return int(ms), int(seq)
# --8<-- [end:flush]


# --8<-- [start:cluster]
def partitioned(n: int = 16) -> tuple[Log, ...]:
    """``n`` logs, each with its users' copies under a hash tag of its own
    (``{wb:0}``, ``{wb:1}``, ...): everything a script touches is in one slot."""
    return tuple(Log(f"{{wb:{p}}}:writes", f"{{wb:{p}}}:dead", f"{{wb:{p}}}")
                 for p in range(check_int("n", n)))


LOGS = partitioned()  # fixed: a user's writes must always go to the same log


def log_of(user_id: int, logs: Sequence[Log] = LOGS) -> Log:
    """The log of user ``user_id``, and of its copy: log number user_id mod n."""
    return logs[check_int("user_id", user_id) % len(logs)]
# --8<-- [end:cluster]


def drain(
    cache: Cache, db: Database, consumer: str, count: int = 100,
    claim_idle_ms: int = 60_000, logs: Sequence[Log] = (ONE_LOG,),
) -> int:
    """Flush every log until a pass over them all finds nothing; return the entries
    acknowledged."""
    total = 0
    while acked := sum(flush(cache, db, consumer, count, claim_idle_ms, log=log)
                       for log in logs):
        total += acked
    return total


def pending(cache: Cache, logs: Sequence[Log] = (ONE_LOG,)) -> int:
    """Entries delivered to a flusher and not yet acknowledged."""
    return sum(int(cache.xpending(log.stream, GROUP)["pending"]) for log in logs)


# --8<-- [start:sweep]
def crash_sweep(
    make_world: Callable[[], tuple[Cache, Database]], count: int = 3,
    logs: Sequence[Log] = (ONE_LOG,),
) -> dict[str, int]:
    """Kill a flusher at every step k, then the next one at every step j.

    One run: 5 acknowledged writes to 2 users; flusher f1 dies at step k;
    2 more writes; f2 (which thinks f1 alive, so leaves its entries alone)
    dies at step j; f3 claims whatever is left and drains the logs. Then
    every user's row must hold its last acknowledged write. User u's writes
    go to log u mod len(logs).
    """
    count = check_int("count", count)
    totals = {"runs": 0, "crashes": 0, "lost": 0, "pending": 0, "disagree": 0}
    for k in range(1, 1000):
        for j in range(1, 1000):
            cache, db = make_world()
            prepare(cache, db, logs)
            for user_id in (1, 2):
                db.add_user(user_id, "before")
            acked: dict[int, str] = {}
            for user_id, name in [(1, "a1"), (2, "b1"), (1, "a2"),
                                  (2, "b2"), (1, "a3")]:
                write(cache, user_id, name, logs[user_id % len(logs)])
                acked[user_id] = name  # write() returned: acknowledged
            f1_died = _dies(cache, db, "f1", k, count, 0, logs)
            for user_id, name in [(1, "a4"), (2, "b3")]:
                write(cache, user_id, name, logs[user_id % len(logs)])
                acked[user_id] = name
            f2_died = _dies(cache, db, "f2", j, count, 60_000, logs)
            drain(cache, db, "f3", count, claim_idle_ms=0, logs=logs)
            rows = dict(db.query("SELECT id, name FROM users"))
            totals["runs"] += 1
            totals["crashes"] += f1_died + f2_died
            totals["lost"] += sum(rows[u] != name for u, name in acked.items())
            totals["pending"] += pending(cache, logs)
            totals["disagree"] += sum(
                cache.get(logs[u % len(logs)].key(u)) != rows[u] for u in acked)
            cache.close()
            db.close()
            if not f2_died:
                break
        if not f1_died:
            break
    return totals


def _dies(cache: Cache, db: Database, name: str, crash_at: int,
          count: int, claim_idle_ms: int, logs: Sequence[Log]) -> bool:
    """Drain as flusher ``name``, dying at step ``crash_at``: did it die?"""
    faults = Faults(crash_at=[crash_at])
    try:
        drain(faults.wrap(cache, "cache"), faults.wrap(db, "db"), name, count,
              claim_idle_ms, logs)
    except Crash:
        return True
    return False
# --8<-- [end:sweep]


# --8<-- [start:bench]
def bench(writes: int = 1000, batch: int = 100) -> None:
    """Count the cost of a write, and the DB statements behind ``writes``."""
    from snippets.patterns.write_through import cost  # it loads the explorer: only here

    writes, batch = check_int("writes", writes), check_int("batch", batch)
    cache, db = make_cache(), make_db()
    prepare(cache, db)
    db.add_user(1, "x")
    statements, commands, trips = cost(cache, db, lambda: write(cache, 1, "y"))
    print(f"one write: {statements} DB statements, {commands} Redis "
          f"command{'s' * (commands != 1)}, {trips} round trip")
    head = f"{writes} writes, batches of {batch}"
    print(f"{head:<35}{'statements':>11}{'commits':>9}{'reduction':>11}")
    print(f"{'synchronous, one UPDATE per write':<35}{writes:>11}{writes:>9}")
    for users, label in ((1, "1 user (a hot key)"), (10, "10 users"),
                         (writes, f"{writes} users (no repeats)")):
        cache, db = make_cache(), make_db()
        prepare(cache, db)
        for user_id in range(1, users + 1):
            db.add_user(user_id, "x")
        for i in range(writes):
            write(cache, 1 + i % users, f"name {i}")
        db.reset_counts()
        commits = 0
        while flush(cache, db, "bench", count=batch):
            commits += 1
        statements = db.reads + db.writes
        print(f"{'write-behind, ' + label:<35}{statements:>11}{commits:>9}"
              f"{writes / statements:>10.1f}x")
        cache.close()
        db.close()
# --8<-- [end:bench]


def main() -> None:
    """Narrate: a write lost from memory, then one that survives two crashes."""
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")

    def state(label: str) -> None:
        name = db.query("SELECT name FROM users WHERE id = 1")[0][0]
        print(f"{label:<42} cache {cache.get(user_key(1))!r}, DB {name!r}")

    naive = InMemoryWriteBehind(cache, db)
    naive.write(1, "Ada Lovelace")
    state("in memory: write acknowledged ->")
    del naive  # the process dies before its flush: its pending dict is gone
    cache.delete(user_key(1))  # later, the cache entry expires
    print(f"{'died before the flush, entry expired ->':<42} readers get "
          f"{get_user(cache, db, 1)!r}: the write is lost")

    prepare(cache, db)
    write(cache, 1, "Ada Lovelace")
    state("logged: write acknowledged ->")
    faults = Faults(crash_at=[7])  # step 7: the XACK, after the commit
    try:
        flush(faults.wrap(cache, "cache"), faults.wrap(db, "db"), "f1")
    except Crash:
        state("f1 commits, dies before its XACK ->")
    drain(cache, db, "f2", claim_idle_ms=0)
    version = db.query("SELECT version FROM users WHERE id = 1")[0][0]
    print(f"{'f2 claims the entry, re-applies it ->':<42} "
          f"version {version} (unchanged), {pending(cache)} pending")


if __name__ == "__main__":
    if sys.argv[1:] == ["--bench"]:
        bench()
    elif sys.argv[1:]:
        sys.exit("usage: python -m snippets.patterns.write_behind [--bench], "
                 f"got {sys.argv[1:]}")
    else:
        main()
