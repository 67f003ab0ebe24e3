"""Snapshots and transaction boundaries: where a cache write sits relative to a
database transaction, statement by statement.

- A request inside a REPEATABLE READ (snapshot) transaction fills the cache from its
  snapshot: a value older than a write that committed, and deleted the key, before the
  request even read the cache. Fixes: fill outside the transaction (with the lease),
  or fill with the row's version (version-checked sets).
- A write that deletes the key inside its transaction, before COMMIT (an ORM's save
  callback), lets a reader refill the old committed row. Fix: an after-commit hook.
- A write that sets the cache inside its transaction, which then rolls back, caches a
  value that never existed. Fix: the same hook, which a rollback drops.

The world is one SQLite file in WAL mode with two connections (``SharedFile``): each
statement, BEGIN and COMMIT included, is one step, as in PostgreSQL or MySQL, and a
transaction's reads come from the snapshot of its first read.

Run it: ``python -m snippets.distributed.snapshots``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from snippets.backends import DEFAULT_TTL, Cache, Database, check_name, user_key
from snippets.concurrency import production_pattern
from snippets.concurrency.fixes import (
    decode,
    get_user_versioned,
    no_wait,
    update_user_versioned,
)
from snippets.explorer import Exploration, Returns, Run, explore, replay
from snippets.explorer.footprints import writing
from snippets.explorer.instrument import step
from snippets.lease import invalidate
from snippets.patterns.cache_aside import get_user, update_user
from snippets.replication import SharedFile
from snippets.scenarios import agrees_with_db, cache_agrees_with_db, user_not_cached

Read = Callable[[Cache, Database, int], "str | None"]  # get_user and its variants
Write = Callable[[Cache, Database, int, str], None]  # update_user and its variants
Actor = Callable[[Cache, Database], Any]  # one request, as the explorer runs it
# --8<-- [end:imports]


# --8<-- [start:statements]
CONTROL = ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")


def control(db: Database, statement: str) -> None:
    """BEGIN, COMMIT or ROLLBACK on this connection, as a step of its own: between
    them, other connections run their statements, as in PostgreSQL or MySQL."""
    if statement not in CONTROL:
        raise ValueError(f"statement must be one of {', '.join(CONTROL)}, "
                         f"got {statement!r}")

    def run() -> tuple[str, bool]:
        with db.lock:
            db.conn.execute(statement)
        return statement, True  # drawn as "OK"

    step("db", writing("db"), run)  # one scheduled step; outside the explorer, a call
# --8<-- [end:statements]


# --8<-- [start:snapshot-request]
def check_shared(db: Database) -> SharedFile:
    """``db`` if it is a SharedFile (two connections to one file), else TypeError."""
    if not isinstance(db, SharedFile):
        raise TypeError(f"db must be a SharedFile (two connections to one file), "
                        f"got {type(db).__name__}")
    return db


def request_in_snapshot(cache: Cache, db: Database, read: Read, *,
                        fill_outside: bool = False) -> str | None:
    """A request that runs in one REPEATABLE READ transaction on ``db.other`` (as a
    framework's per-request transaction does) and reads user 1 through the cache."""
    shared = check_shared(db)
    connection = shared.other
    control(connection, "BEGIN")
    connection.query("SELECT count(*) FROM users")  # (1)!
    name = read(cache, shared if fill_outside else connection, 1)  # (2)!
    control(connection, "COMMIT")
    return name
# --8<-- [end:snapshot-request]


# --8<-- [start:transaction]
class Transaction:
    """An open transaction, as an ORM holds one, and what to run once it commits."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.callbacks: list[Callable[[], object]] = []

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after COMMIT, never after ROLLBACK: Django's
        ``transaction.on_commit``, Rails' ``after_commit``."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self.callbacks.append(callback)


@contextmanager
def transaction(db: Database) -> Iterator[Transaction]:
    """BEGIN IMMEDIATE ... COMMIT, each statement a step; ROLLBACK if the block
    raises. The after-commit callbacks run after COMMIT, in the order given."""
    control(db, "BEGIN IMMEDIATE")  # SQLite: take the write lock now
    tx = Transaction(db)
    try:
        yield tx
    except BaseException:
        control(db, "ROLLBACK")  # the callbacks are dropped with it
        raise
    control(db, "COMMIT")
    for callback in tx.callbacks:
        callback()  # other connections now read the new row
# --8<-- [end:transaction]


# --8<-- [start:save]
Save = Callable[[Cache, Transaction, int, str], None]


def save_name(tx: Transaction, user_id: int, name: str) -> None:
    """The UPDATE, inside the transaction: no other connection sees it yet."""
    user_key(user_id)  # checks the id
    changed = tx.db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (check_name(name), user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")


def save_deleting_inside(cache: Cache, tx: Transaction, user_id: int,
                         name: str) -> None:
    """Invalidate from a save callback: before COMMIT."""
    save_name(tx, user_id, name)
    invalidate(cache, user_key(user_id))  # (1)!


def save_setting_inside(cache: Cache, tx: Transaction, user_id: int,
                        name: str) -> None:
    """Write-through from a save callback: the new value, before COMMIT."""
    save_name(tx, user_id, name)
    cache.set(user_key(user_id), name, ex=DEFAULT_TTL)  # (2)!


def save_deleting_after_commit(cache: Cache, tx: Transaction, user_id: int,
                               name: str) -> None:
    """Invalidate once the transaction has committed, and only then."""
    save_name(tx, user_id, name)
    key = user_key(user_id)
    tx.after_commit(lambda: invalidate(cache, key))  # (3)!
# --8<-- [end:save]


# --8<-- [start:requests]
class RequestFailed(Exception):
    """A later step of the request failed (a validation, a constraint, a timeout)."""


def write_request(save: Save, *, fail: bool = False) -> Actor:
    """A request that renames user 1 to "new" in one transaction on the world's own
    connection; with ``fail``, a later step of the request fails before COMMIT."""
    def request(cache: Cache, db: Database) -> None:
        with transaction(db) as tx:
            save(cache, tx, 1, "new")
            if fail:
                raise RequestFailed("a later step failed: the transaction rolls back")
    return request
# --8<-- [end:requests]


def read_request(read: Read) -> Actor:
    """A request that reads user 1 through the cache, on ``db.other``, with no
    transaction around it: each statement sees what committed before it."""
    return lambda cache, db: read(cache, check_shared(db).other, 1)


def lease_read(cache: Cache, db: Database, user_id: int) -> str | None:
    """The production pattern's read, through the kit's lease (a waiting reader's
    next GET is just a later step: no real sleep)."""
    return production_pattern.get_user(cache, db, user_id, sleep=no_wait)


def served_only_committed(cache: Cache, db: Database, returns: Returns) -> str | None:
    """After a rolled-back write: the cache agrees with the DB, and the reader was
    not served the value that never committed (the DB's value is the only one)."""
    stale = cache_agrees_with_db(cache, db, returns)
    if stale:
        return stale
    [(in_db,)] = db.query("SELECT name FROM users WHERE id = 1")
    served = returns.get("R")
    if isinstance(served, str) and served != in_db:
        return f"the reader was served {served!r}, which never committed"
    return None


# Scenario -> strategy -> (the writer, the reader, the check).
Strategy = tuple[Actor, Actor, Callable[[Cache, Database, Returns], "str | None"]]


def cached_version_name(cache: Cache) -> str | None:
    """The name a versioned set cached for user 1 ("2:new" holds "new")."""
    cached: str | None = cache.get(user_key(1))  # type: ignore[assignment]  # a str
    return None if cached is None else decode(cached)[1]


def _snapshot(read: Read, write: Write, fill_outside: bool) -> Strategy:
    def reader(cache: Cache, db: Database) -> str | None:
        return request_in_snapshot(cache, db, read, fill_outside=fill_outside)

    def writer(cache: Cache, db: Database) -> None:
        write(cache, db, 1, "new")

    versioned = read is get_user_versioned
    return writer, reader, (agrees_with_db(cached_version_name) if versioned
                            else cache_agrees_with_db)


def _no_transaction(read: Read, write: Write) -> Strategy:
    def reader(cache: Cache, db: Database) -> str | None:
        shared = check_shared(db)
        shared.other.query("SELECT count(*) FROM users")  # the same first read
        return read(cache, shared.other, 1)

    def writer(cache: Cache, db: Database) -> None:
        write(cache, db, 1, "new")

    return writer, reader, cache_agrees_with_db


STRATEGIES: dict[str, dict[str, Strategy]] = {
    "snapshot reader": {
        "cache-aside, no transaction": _no_transaction(get_user, update_user),
        "cache-aside": _snapshot(get_user, update_user, False),
        "cache-aside, fill outside": _snapshot(get_user, update_user, True),
        "lease, no transaction": _no_transaction(lease_read,
                                                 production_pattern.update_user),
        "lease": _snapshot(lease_read, production_pattern.update_user, False),
        "lease, fill outside": _snapshot(lease_read, production_pattern.update_user,
                                         True),
        "versioned set": _snapshot(get_user_versioned, update_user_versioned, False),
    },
    "DEL before COMMIT": {
        "cache-aside, DEL inside": (write_request(save_deleting_inside),
                                    read_request(get_user), cache_agrees_with_db),
        "cache-aside, after commit": (write_request(save_deleting_after_commit),
                                      read_request(get_user), cache_agrees_with_db),
        "lease, DEL inside": (write_request(save_deleting_inside),
                              read_request(lease_read), cache_agrees_with_db),
        "lease, after commit": (write_request(save_deleting_after_commit),
                                read_request(lease_read), cache_agrees_with_db),
    },
    "rollback": {
        "SET inside": (write_request(save_setting_inside, fail=True),
                       read_request(get_user), served_only_committed),
        "DEL inside": (write_request(save_deleting_inside, fail=True),
                       read_request(get_user), served_only_committed),
        "after commit": (write_request(save_deleting_after_commit, fail=True),
                         read_request(get_user), served_only_committed),
    },
}


def strategy(scenario: str, name: str) -> Strategy:
    if scenario not in STRATEGIES:
        raise LookupError(f"no scenario named {scenario!r}; scenarios: "
                          f"{', '.join(STRATEGIES)}")
    if name not in STRATEGIES[scenario]:
        raise LookupError(f"no strategy named {name!r} in {scenario!r}; strategies: "
                          f"{', '.join(STRATEGIES[scenario])}")
    return STRATEGIES[scenario][name]


def explore_strategy(scenario: str, name: str,
                     make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """Every interleaving of the writer W and the reader R of one strategy."""
    writer, reader, check = strategy(scenario, name)
    return explore({"W": writer, "R": reader}, user_not_cached, check, reduce=False,
                   make_cache=make_cache, make_db=SharedFile)


@functools.cache
def counts(scenario: str, name: str) -> tuple[int, int]:
    """(bad, all) schedules of one strategy on fakeredis, computed once a process."""
    found = explore_strategy(scenario, name)
    return len(found.bad), found.total


def print_counts(scenario: str) -> None:
    """Bad schedules of every strategy of ``scenario``, out of all interleavings."""
    for name in STRATEGIES[scenario]:
        bad, total = counts(scenario, name)
        print(f"{name:<28} {bad:>2} bad of {total}")


# --- costs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """What reading user 1 costs a request that misses: DB reads in its transaction
    (from its snapshot), DB reads on another connection, and Redis commands."""

    snapshot_reads: int
    outside_reads: int
    redis_calls: int


def miss_cost(request: Actor) -> Cost:
    """Run a snapshot ``request`` alone, user 1 not cached, and count what it sent
    to read user 1 (its own first read aside)."""
    [schedule] = explore({"R": request}, user_not_cached, reduce=False,
                         make_db=SharedFile).examples.values()
    run = replay({"R": request}, user_not_cached, schedule, make_db=SharedFile)
    shared = check_shared(run.db)
    return Cost(snapshot_reads=shared.other.reads - 1,
                outside_reads=shared.reads,
                redis_calls=sum(s.target == "cache" for s in run.steps))


def miss_costs() -> dict[str, Cost]:
    """A snapshot request that misses: where each strategy reads, and how much."""
    table = STRATEGIES["snapshot reader"]
    return {name: miss_cost(table[name][1])
            for name in ("cache-aside", "lease", "lease, fill outside",
                         "versioned set")}


def write_calls(save: Save) -> list[str]:
    """The steps of a write request alone (user 1 cached): what it sends, in order."""
    def cached(cache: Cache, db: Database) -> None:
        user_not_cached(cache, db)
        cache.set(user_key(1), "old", ex=DEFAULT_TTL)

    run = replay({"W": write_request(save)}, cached, "W " * 4,
                 make_db=SharedFile)
    return [s.op.split()[0] for s in run.steps]


# --- replayed schedules, drawn ------------------------------------------------------

LABELS = {"W": "Writer", "R": "Reader"}


def replay_strategy(scenario: str, name: str, schedule: str) -> Run:
    writer, reader, check = strategy(scenario, name)
    return replay({"W": writer, "R": reader}, user_not_cached, schedule, check=check,
                  make_db=SharedFile)


def draw(run: Run) -> str:
    """The run as a diagram; the lease's script is called FILL, its random tokens
    t1, t2 ... (so the text is the same every run)."""
    text = run.mermaid({name: LABELS[name] for name in run.returns},
                       final_state=run.verdict is None)
    text = re.sub(r'EVAL ".*?" 2', "EVAL FILL 2", text)
    for number, token in enumerate(dict.fromkeys(re.findall(TOKEN, text)), 1):
        text = text.replace(token, f"t{number}")
    return text


TOKEN = r'"([0-9a-f]{16})"'  # a lease token, as take_lease makes them


# The writer commits and deletes before the reader reads the cache.
SNAPSHOT_RACE = "R R W W R R R R R"


def snapshot_race() -> Run:
    """The lease, in a snapshot: the write is done before the reader's GET, and the
    reader still fills the old name from its snapshot."""
    return replay_strategy("snapshot reader", "lease", SNAPSHOT_RACE)


def snapshot_race_diagram() -> str:
    return draw(snapshot_race())


def fill_outside() -> Run:
    """The same order, the fill read outside the transaction: it reads the new row."""
    return replay_strategy("snapshot reader", "lease, fill outside", SNAPSHOT_RACE)


def fill_outside_diagram() -> str:
    return draw(fill_outside())


def versioned_snapshot() -> Run:
    """The reader reads version 1 from its snapshot; the writer has set version 2."""
    return replay_strategy("snapshot reader", "versioned set",
                           "R R R R W W W W R R R")


def versioned_snapshot_diagram() -> str:
    return draw(versioned_snapshot())


# The writer deletes, the reader refills from the old committed row, then COMMIT.
DELETE_INSIDE_RACE = "W W W R R R R W"


def delete_inside_race() -> Run:
    return replay_strategy("DEL before COMMIT", "lease, DEL inside", DELETE_INSIDE_RACE)


def delete_inside_race_diagram() -> str:
    return draw(delete_inside_race())


def after_commit() -> Run:
    """The reader reads the old row before COMMIT; the DEL after COMMIT revokes its
    lease, and its fill is refused."""
    return replay_strategy("DEL before COMMIT", "lease, after commit",
                           "W W R R R W W R")


def after_commit_diagram() -> str:
    return draw(after_commit())


def rollback_race() -> Run:
    """The writer sets "new", a reader is served it, the transaction rolls back."""
    return replay_strategy("rollback", "SET inside", "W W W R W")


def rollback_race_diagram() -> str:
    return draw(rollback_race())


def main() -> None:
    """Each race, and its fix, through every interleaving of a writer and a reader."""
    for scenario, name in [("snapshot reader", "lease"),
                           ("snapshot reader", "lease, fill outside"),
                           ("snapshot reader", "versioned set"),
                           ("DEL before COMMIT", "lease, DEL inside"),
                           ("DEL before COMMIT", "lease, after commit"),
                           ("rollback", "SET inside"),
                           ("rollback", "after commit")]:
        bad, total = counts(scenario, name)
        print(f"{scenario:<18} {name:<20} {bad:>2} bad of {total}")
    run = snapshot_race()
    print(f"write done before the reader's GET, its fill from the snapshot: "
          f"{run.cache.get(user_key(1))!r} cached")


if __name__ == "__main__":
    main()
