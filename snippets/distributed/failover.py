"""Redis failover and outages: what a cache loses when its Redis fails over, and how
the application keeps serving, and keeps every invalidation, when Redis is down.

- A failover promotes a replica that has not received the last acknowledged writes:
  a lost ``DEL`` brings the stale value back (``explore_failover``).
- ``WAIT 1 0`` tells the writer that the replica has its ``DEL``; a writer whose
  connection broke before that sends it again (``update_user_waiting``).
- A lost lease only refuses a fill; a lost ``DEL`` of a lease brings the lease back
  (``explore_lease``). A lost lock lets a second holder in (``explore_lock``).
- Redis unreachable: reads fall back to the database behind a circuit breaker, writes
  commit and keep their ``DEL`` in the outbox until Redis is back (``outage``).

Run it: ``python -m snippets.distributed.failover``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from snippets.backends import (
    DEFAULT_TTL, Cache, Clock, Database, FakeClock, check_int, check_name,
    check_number, check_ttl, make_db, make_fake_cache, user_key,
)
from snippets.concurrency import production_pattern
from snippets.explorer.footprints import reading, writing
from snippets.explorer.instrument import step
from snippets.lease import invalidate, release
from snippets.patterns import cache_aside
from snippets.replication import ReplicatedCache
from snippets.scaling.mutex import readable, take_as
from snippets.scaling.outbox import create_outbox, relay, unsent
from snippets.scaling.outbox import update_user as update_user_and_outbox
from snippets.scenarios import cache_agrees_with_db, user_not_cached

if TYPE_CHECKING:  # the explorer is loaded only by the functions that explore
    from snippets.explorer import Exploration, Returns, Run
# --8<-- [end:imports]

T = TypeVar("T")
Actor = Callable[[Cache, Database], Any]
Write = Callable[[Cache, Database, int, str], None]  # (cache, db, user_id, name)


# --8<-- [start:lost-delete]
def cached_everywhere(cache: Cache, db: Database) -> None:
    """Setup: user 1 is "old" in the DB, cached, and the replica has the cached copy."""
    db.add_user(1, "old")
    cache.set(user_key(1), "old", ex=DEFAULT_TTL)
    replicated(cache).replicate()  # setup runs outside the explorer: no step


def replicated(cache: Cache) -> ReplicatedCache:
    if not isinstance(cache, ReplicatedCache):
        raise TypeError(f"cache must be a ReplicatedCache, got {type(cache).__name__}")
    return cache


def failover_actors(write: Write) -> dict[str, Actor]:
    """The writer renames user 1; replication sends the replica one acknowledged
    write; Sentinel promotes the replica. Each of the last two is one step."""
    return {"writer": lambda cache, db: write(cache, db, 1, "new"),
            "replication": lambda cache, db: replicated(cache).replicate(),
            "sentinel": lambda cache, db: replicated(cache).failover()}


def explore_failover(write: Write) -> Exploration:
    """Every interleaving of ``write`` with one replication step and one failover."""
    from snippets.explorer import explore  # loaded only by those who explore

    return explore(failover_actors(write), cached_everywhere, cache_agrees_with_db,
                   make_cache=ReplicatedCache, reduce=False)
# --8<-- [end:lost-delete]


def lost_delete() -> Run:
    """The bad schedule: the DEL is acknowledged, then the primary fails over."""
    from snippets.explorer import replay

    return replay(failover_actors(production_pattern.update_user), cached_everywhere,
                  "replication writer writer sentinel", check=cache_agrees_with_db,
                  make_cache=ReplicatedCache)


def lost_delete_diagram() -> str:
    return drawn(lost_delete())


LABELS = {"writer": "Writer", "reader": "Reader", "replication": "Replication",
          "sentinel": "Sentinel", "A": "Holder A", "B": "Holder B"}


def drawn(run: Run) -> str:
    """A replay as a diagram, the kit's scripts named and random tokens as "token":
    the same text on every run."""
    labels = {actor: LABELS[actor] for actor in run.returns if actor in LABELS}
    return re.sub(r"\b[0-9a-f]{16}\b", "token", readable(run.mermaid(labels)))


# --8<-- [start:wait]
def wait_for_replica(cache: Cache, primary: bool) -> int:
    """``WAIT 1 0``, modelled as one step: block until the replica has received every
    write this connection sent, and return 1 (the replicas that have them). If the
    primary this connection wrote to (``primary``: whether it had failed over then)
    is gone, the connection is broken: redis.ConnectionError."""
    world = replicated(cache)

    def wait() -> tuple[str, int]:
        if world.failed_over != primary:  # the writes went to a primary now gone
            raise redis.ConnectionError("the primary this connection wrote to is gone")
        while world.backlog:
            world.replicate()  # the replica catches up while the writer waits
        return "WAIT 1 0", 1

    return step(world.replica_store, reading("cache") | writing(world.replica_store),
                wait)


def update_user_waiting(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """The production pattern's write (UPDATE, then DEL of the key and its lease),
    then WAIT until the replica has the DEL. A broken connection means the DEL may
    be lost with the old primary: send it again, to the new one."""
    key, world = user_key(user_id), replicated(cache)
    changed = db.execute("UPDATE users SET name = ?, version = version + 1"
                         " WHERE id = ?", (check_name(name), user_id))
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    while True:
        primary = world.failed_over  # (1)!
        invalidate(cache, key)
        try:
            wait_for_replica(cache, primary)  # (2)!
            return
        except redis.ConnectionError:
            continue  # the new primary may hold the old value: delete again
# --8<-- [end:wait]


def round_trips(write: Write) -> dict[str, int]:
    """The calls of one write alone, by where they went: "db", "cache" (the Redis
    primary) or "Redis replica" (a WAIT)."""
    from snippets.explorer import explore, replay

    actors = {"writer": failover_actors(write)["writer"]}
    [schedule] = explore(actors, cached_everywhere, make_cache=ReplicatedCache,
                         reduce=False).examples.values()  # one actor: one schedule
    run = replay(actors, cached_everywhere, schedule, make_cache=ReplicatedCache)
    counted: dict[str, int] = {}
    for done in run.steps:
        counted[done.target] = counted.get(done.target, 0) + 1
    return counted


def update_user_waiting_once(cache: Cache, db: Database, user_id: int,
                             name: str) -> None:
    """WAIT without the retry: the writer learns that its DEL may be lost (an
    error), and does nothing about it."""
    production_pattern.update_user(cache, db, user_id, name)
    wait_for_replica(cache, replicated(cache).failed_over)


# --8<-- [start:lease]
def lease_reader(cache: Cache, db: Database) -> str | None:
    """The production pattern's read of user 1 (it never waits: one reader)."""
    return production_pattern.get_user(cache, db, 1, sleep=lambda seconds: None)


def lease_actors(write: Write | None) -> dict[str, Actor]:
    """A reader that fills through the kit's lease; replication (one step) and a
    failover; and, if given, a writer that renames user 1 with ``write``."""
    actors: dict[str, Actor] = {"reader": lease_reader}
    if write is not None:
        actors["writer"] = lambda cache, db: write(cache, db, 1, "new")
    actors["replication"] = lambda cache, db: replicated(cache).replicate()
    actors["sentinel"] = lambda cache, db: replicated(cache).failover()
    return actors


def explore_lease(write: Write | None) -> Exploration:
    """Every class of equivalent schedules (DPOR) of the lease's actors."""
    from snippets.explorer import explore

    return explore(lease_actors(write), user_not_cached, cache_agrees_with_db,
                   make_cache=ReplicatedCache, describe=without_tokens)


# --8<-- [end:lease]


def without_tokens(cache: Cache, db: Database, returns: Returns) -> str:
    """The default outcome, with each random lease token shown as "token"."""
    from snippets.explorer import describe_state

    return re.sub(r"'[0-9a-f]{16}'", "'token'", describe_state(cache, db, returns))


def empty_at_end(found: Exploration) -> int:
    """How many schedules ended with nothing cached: the fill refused, or lost."""
    return sum(count for outcome, count in found.outcomes.items()
               if outcome.startswith("cache empty"))


def resurrected_lease() -> Run:
    """The reader's lease reaches the replica; the write's DEL of it does not."""
    from snippets.explorer import replay

    return replay(lease_actors(production_pattern.update_user), user_not_cached,
                  "reader reader replication reader writer writer sentinel reader",
                  check=cache_agrees_with_db, make_cache=ReplicatedCache)


def resurrected_lease_diagram() -> str:
    return drawn(resurrected_lease())


# --8<-- [start:lock]
CRITICAL = """
CREATE TABLE IF NOT EXISTS critical (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    holder TEXT NOT NULL,
    event  TEXT NOT NULL  -- 'enter' or 'leave'
)
"""


def lock_setup(cache: Cache, db: Database) -> None:
    db.execute(CRITICAL)


def holder(name: str) -> Actor:
    """Take the lock (the kit's lease on user:1, with ``name`` as its token), work
    inside it (two rows in ``critical``), release it."""
    def run(cache: Cache, db: Database) -> str:
        if not take_as(cache, name, lease_ms=10_000):
            return "busy"
        db.execute("INSERT INTO critical (holder, event) VALUES (?, 'enter')", (name,))
        db.execute("INSERT INTO critical (holder, event) VALUES (?, 'leave')", (name,))
        release(cache, "user:1", name)  # only if the lock still holds our token
        return "done"
    return run


def mutual_exclusion(cache: Cache, db: Database, returns: Returns) -> str | None:
    """Bad: someone entered while another was inside."""
    inside: str | None = None
    for who, event in db.query("SELECT holder, event FROM critical ORDER BY seq"):
        if event == "enter" and inside is not None:
            return f"both {inside} and {who} held the lock"
        inside = who if event == "enter" else None
    return None


def lock_actors(failover: bool) -> dict[str, Actor]:
    """Holders A and B, one replication step, and (if asked) a failover."""
    actors = {"A": holder("A"), "B": holder("B"),
              "replication": lambda cache, db: replicated(cache).replicate()}
    if failover:
        actors["sentinel"] = lambda cache, db: replicated(cache).failover()
    return actors


def explore_lock(failover: bool = True) -> Exploration:
    """Every class of equivalent schedules (DPOR) of the lock's actors."""
    from snippets.explorer import explore

    return explore(lock_actors(failover), lock_setup, mutual_exclusion,
                   make_cache=ReplicatedCache, describe=who_was_inside)


def who_was_inside(cache: Cache, db: Database, returns: Returns) -> str:
    """The outcome: the order in which the holders entered and left."""
    events = db.query("SELECT holder, event FROM critical ORDER BY seq")
    return ", ".join(f"{who} {event}s" for who, event in events) or "nobody entered"
# --8<-- [end:lock]


def two_holders() -> Run:
    """A takes the lock; the primary fails over before replicating it; B takes it."""
    from snippets.explorer import replay

    return replay(lock_actors(failover=True), lock_setup,
                  "A A sentinel B B A A B B replication", check=mutual_exclusion,
                  make_cache=ReplicatedCache)


def two_holders_diagram() -> str:
    return drawn(two_holders())


# --8<-- [start:unreachable]
class Unreachable:
    """A Redis client behind a link that can go down. While ``down``, every command
    waits ``timeout`` seconds (on the clock) and raises redis.TimeoutError, as
    redis-py does with ``socket_timeout``; up, it passes through. It counts both."""

    def __init__(self, cache: Cache, clock: FakeClock, timeout: float = 0.05) -> None:
        self.cache, self.clock = cache, clock
        self.timeout = check_number("timeout", timeout)
        self.down = False
        self.commands = 0  # commands sent, answered or not
        self.timeouts = 0  # commands that waited the whole timeout

    def __getattr__(self, name: str) -> Any:
        command = getattr(self.cache, name)

        def send(*args: Any, **kwargs: Any) -> Any:
            self.commands += 1
            if self.down:
                self.timeouts += 1
                self.clock.advance(self.timeout)  # the caller waited this long
                raise redis.TimeoutError("Timeout reading from socket")
            return command(*args, **kwargs)
        return send
# --8<-- [end:unreachable]


# --8<-- [start:breaker]
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitOpen(redis.ConnectionError):
    """Refused at once: the breaker is open, so the command was not sent."""


class CircuitBreaker:
    """Closed: commands go to Redis; ``failures`` failures in a row open it. Open:
    commands fail at once, for ``cooldown`` seconds. Then half-open: the next
    command is a trial; if it succeeds the breaker closes, if not it opens again."""

    def __init__(self, clock: Clock, failures: int = 3, cooldown: float = 5.0) -> None:
        self.clock = clock
        self.failures = check_int("failures", failures)
        self.cooldown = check_number("cooldown", cooldown)
        self.failed = 0  # failures in a row
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if self.clock() >= self.opened_at + self.cooldown else OPEN

    def call(self, command: Callable[[], T]) -> T:
        if self.state == OPEN:
            raise CircuitOpen("Redis is marked down: not sent")
        try:
            result = command()
        except redis.RedisError:
            self.failed += 1
            if self.state == HALF_OPEN or self.failed >= self.failures:
                self.trip()
            raise
        self.failed, self.opened_at = 0, None  # it answered: close
        return result

    def trip(self) -> None:
        """Open now (a failure, or a DEL the cache still owes)."""
        self.opened_at = self.clock()


class NoBreaker(CircuitBreaker):
    """Every command goes to Redis: a client without a breaker."""

    @property
    def state(self) -> str:
        return CLOSED

    def trip(self) -> None:
        pass
# --8<-- [end:breaker]


# --8<-- [start:degraded]
class DeleteNow:
    """A producer for the outbox's ``relay`` that delivers each event straight to
    Redis, as a DEL of the key and its lease, instead of to a log."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def produce(self, topic: str, value: str | bytes | None = None,
                key: str | bytes | None = None, timestamp: int = 0) -> None:
        if not isinstance(key, str):
            raise ValueError(f"an invalidation names its key, got {key!r}")
        invalidate(self.cache, key)  # raises if Redis does not answer

    def flush(self, timeout: float = -1) -> int:
        return 0  # every DEL was sent and answered


def deliver_deletes(cache: Cache, db: Database, breaker: CircuitBreaker,
                    clock: Clock) -> int:
    """Send every DEL the outbox still owes (duplicates are harmless); return how
    many. If Redis does not answer, they stay owed and the breaker opens: the cache
    is not read again until they are delivered."""
    try:
        return breaker.call(lambda: relay(db, DeleteNow(cache), clock))
    except redis.RedisError:
        breaker.trip()
        return 0


def update_user_degraded(cache: Cache, db: Database, user_id: int, name: str,
                         breaker: CircuitBreaker, clock: Clock) -> None:
    """Commit the row and its DEL in the outbox (one transaction), then deliver."""
    update_user_and_outbox(db, user_id, name, clock)  # commits, Redis or not
    deliver_deletes(cache, db, breaker, clock)


def get_user_degraded(cache: Cache, db: Database, user_id: int,
                      breaker: CircuitBreaker, clock: Clock,
                      ttl: int = DEFAULT_TTL) -> str | None:
    """Cache-aside's read; if Redis does not answer, or the breaker is open, the
    database serves it (not cached). Back from open, owed DELs go first."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    if breaker.state == HALF_OPEN:
        deliver_deletes(cache, db, breaker, clock)  # (1)!
    try:
        cached = breaker.call(lambda: cache.get(key))
    except redis.RedisError:
        return load(db, user_id)  # degraded: the DB serves, nothing is filled
    if cached is not None:
        return str(cached)
    name = load(db, user_id)
    if name is not None:
        try:
            breaker.call(lambda: cache.set(key, name, ex=ttl))
        except redis.RedisError:
            pass  # serving the reader matters more than filling
    return name


def load(db: Database, user_id: int) -> str | None:
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    return rows[0][0] if rows else None
# --8<-- [end:degraded]


def update_user_swallowing(cache: Cache, db: Database, user_id: int,
                           name: str) -> None:
    """Cache-aside's write whose failed DEL is logged and forgotten."""
    try:
        cache_aside.update_user(cache, db, user_id, name)
    except redis.RedisError:
        pass  # the row committed; the DEL is lost


# --8<-- [start:outage]
STRATEGIES = ("DEL swallowed", "outbox", "outbox + breaker")


@dataclass
class Tally:
    served: int = 0  # reads answered
    db_reads: int = 0  # SELECTs the database served (the outbox's included)
    redis_commands: int = 0  # commands sent to Redis, answered or not
    timeouts: int = 0  # commands that waited out the timeout
    stale: int = 0  # reads that returned another name than the DB's
    kept: int = 0  # DELs kept in the outbox when the write could not send them
    owed_at_end: int = 0  # DELs still kept at the end


def outage(strategy: str, *, seconds: int = 60, per_second: int = 100,
           down: tuple[float, float] = (10, 40.5), write_at: float = 20,
           retry_every: int = 1) -> Tally:
    """One user, read ``per_second`` times a second for ``seconds``; Redis does not
    answer during ``down`` (from, to); the user is renamed at ``write_at``. The
    outbox's retry job runs every ``retry_every`` seconds. Virtual time."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    check_int("per_second", per_second)
    check_int("retry_every", retry_every)
    clock = FakeClock()
    cache: Any = Unreachable(make_fake_cache(), clock)  # used as a Redis client
    db = make_db()
    create_outbox(db)
    db.add_user(1, "old")
    breaker = (CircuitBreaker(clock) if strategy == "outbox + breaker"
               else NoBreaker(clock))
    uses_outbox = strategy != "DEL swallowed"
    tally = Tally()
    for tick in range(check_int("seconds", seconds) * per_second):
        now = tick / per_second
        clock.now = max(clock.now, now)  # time lost in timeouts is not given back
        cache.down = down[0] <= now < down[1]
        if now == write_at and uses_outbox:
            update_user_degraded(cache, db, 1, "new", breaker, clock)
            tally.kept = unsent(db)
        elif now == write_at:
            update_user_swallowing(cache, db, 1, "new")
        if uses_outbox and tick % (retry_every * per_second) == 0:
            if breaker.state != OPEN:  # the retry job: deliver what is owed
                deliver_deletes(cache, db, breaker, clock)
        name = get_user_degraded(cache, db, 1, breaker, clock)
        tally.served += 1
        tally.stale += name != load_quietly(db, 1)
    tally.db_reads = db.reads
    tally.redis_commands, tally.timeouts = cache.commands, cache.timeouts
    tally.owed_at_end = unsent(db) if uses_outbox else 0
    return tally


def load_quietly(db: Database, user_id: int) -> str | None:
    """What the DB holds now, not counted as a read (the check, not the service)."""
    found = db.conn.execute("SELECT name FROM users WHERE id = ?", (user_id,))
    row = found.fetchone()
    return row[0] if row else None
# --8<-- [end:outage]


def calls_per_write() -> Mapping[str, tuple[int, int]]:
    """(DB statements, Redis commands) of one write while Redis answers."""
    result: dict[str, tuple[int, int]] = {}
    for label, writer in (("cache-aside", "plain"), ("outbox + DEL now", "outbox")):
        clock = FakeClock()
        cache: Any = Unreachable(make_fake_cache(), clock)
        db = make_db()
        create_outbox(db)
        db.add_user(1, "old")
        db.reset_counts()
        if writer == "plain":
            cache_aside.update_user(cache, db, 1, "new")
        else:
            update_user_degraded(cache, db, 1, "new", CircuitBreaker(clock), clock)
        result[label] = (db.reads + db.writes, cache.commands)
    return result


def main() -> None:
    """Narrate: the lost DEL, WAIT, the lease, the lock, the outage."""
    for label, write in (("DEL", production_pattern.update_user),
                         ("DEL + WAIT, resent", update_user_waiting)):
        found = explore_failover(write)
        print(f"failover, {label + ':':<20} {len(found.bad)} stale of "
              f"{found.total} schedules")
    found = explore_lock()
    print(f"lock over a failover:          {len(found.bad)} of {found.total} "
          "schedules with two holders")
    for strategy in STRATEGIES:
        tally = outage(strategy)
        print(f"outage, {strategy + ':':<17} {tally.served} served, "
              f"{tally.timeouts} timeouts, {tally.stale} stale")


if __name__ == "__main__":
    main()
