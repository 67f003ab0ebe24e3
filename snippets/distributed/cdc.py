"""CDC-driven invalidation: the database's own committed change stream drives the
deletes.

The writer writes the database and nothing else. A trigger records each change in a
``changes`` table inside the same transaction (the kit's ``add_change_stream``), and a
consumer tails that table in commit order, deletes the keys, and then saves its offset.
In production the stream is the binlog or the WAL, read by Debezium (or Facebook's
mcsqueal, Uber's Flux); the shape is the same.

Compared here, each through every interleaving of a writer, a reader and the consumer:
the application publishing an event after its commit (``snippets.patterns.
event_driven``), the outbox (``snippets.scaling.outbox``), CDC, and CDC with the kit's
lease. Also: a migration that updates rows behind the application's back, and a
consumer that crashes between its DEL and saving its offset.

Run it: ``python -m snippets.distributed.cdc``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fakeredis

from snippets.backends import (Cache, Database, FakeClock, check_name, make_cache,
                               make_db, make_fake_cache, user_key)
from snippets.concurrency import production_pattern
from snippets.explorer import (Actor, Exploration, Returns, Run, describe_state,
                               explore, replay)
from snippets.explorer.footprints import writing
from snippets.explorer.instrument import step
from snippets.faults import Crash, Faults
from snippets.lease import lease_key
from snippets.patterns import event_driven
from snippets.patterns.cache_aside import get_user
from snippets.replication import add_change_stream, read_changes
from snippets.scaling import outbox
from snippets.scaling.kafka_invalidation import (TOPIC, StreamConsumer,
                                                 StreamProducer, drain, make_log)
from snippets.scenarios import cache_agrees_with_db, user_not_cached
# --8<-- [end:imports]


# --8<-- [start:write]
def update_user(db: Database, user_id: int, name: str) -> None:
    """Write the database, and only the database: the change stream, filled by a
    trigger in this same statement, carries the invalidation."""
    user_key(user_id)  # validates the id before anything is written
    check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
# --8<-- [end:write]


# --8<-- [start:consume]
def offset_key(consumer: str) -> str:
    """Where a consumer keeps its offset: in the Redis it invalidates."""
    if not isinstance(consumer, str) or not consumer.isidentifier():
        raise ValueError(f"consumer must be a name like 'cache_eu', got {consumer!r}")
    return f"cdc:offset:{consumer}"


def poll_changes(cache: Cache, db: Database, consumer: str = "cache_invalidator", *,
                 leases: bool = False) -> int:
    """One poll: read the changes committed after our offset, delete their keys,
    then save the new offset. Returns how many changes it handled (0: caught up)."""
    key = offset_key(consumer)
    offset = int(cache.get(key) or 0)  # (1)!
    changes = read_changes(db, offset)  # (2)!
    if not changes:
        return 0
    keys = sorted({user_key(user_id) for _, user_id in changes})
    if leases:
        keys += [lease_key(k) for k in keys]  # (3)!
    cache.delete(*keys)  # (4)!
    cache.set(key, changes[-1][0])  # (5)!
    return len(changes)


def catch_up(cache: Cache, db: Database, consumer: str = "cache_invalidator", *,
             leases: bool = False) -> int:
    """Poll until nothing is left; return how many changes were handled."""
    handled = 0
    while polled := poll_changes(cache, db, consumer, leases=leases):
        handled += polled
    return handled
# --8<-- [end:consume]


# --8<-- [start:offset-first]
def poll_saving_offset_first(cache: Cache, db: Database,
                             consumer: str = "cache_invalidator") -> int:
    """The wrong order: save the offset, then delete. A crash in between skips
    the delete for good (at most once)."""
    key = offset_key(consumer)
    changes = read_changes(db, int(cache.get(key) or 0))
    if not changes:
        return 0
    cache.set(key, changes[-1][0])
    cache.delete(*sorted({user_key(user_id) for _, user_id in changes}))
    return len(changes)
# --8<-- [end:offset-first]


# --8<-- [start:migration]
def migrate(db: Database) -> int:
    """A data migration, run with a SQL client: a plain UPDATE, no cache code, no
    event. Returns how many rows it changed."""
    return db.execute("UPDATE users SET name = 'new', version = version + 1"
                      " WHERE name = 'old'")
# --8<-- [end:migration]


# --8<-- [start:worlds]
class Broker(event_driven.EventQueue):
    """The event-driven page's queue, each publish and each take one step of its
    own: the broker is a participant of the race, like Redis and the database."""

    def publish(self, event: event_driven.UserUpdated) -> int:
        def send() -> tuple[str, int]:
            return (f"publish user {event.user_id}",
                    event_driven.EventQueue.publish(self, event))
        return step("broker", writing("broker"), send)

    def take(self) -> event_driven.UserUpdated | None:
        def receive() -> tuple[str, event_driven.UserUpdated | None]:
            event = event_driven.EventQueue.take(self)
            return ("take" if event is None else f"take user {event.user_id}"), event
        return step("broker", writing("broker"), receive)


class EventWorld(Database):
    """The database, and the broker the application publishes to."""

    def __init__(self) -> None:
        super().__init__()
        self.broker = Broker()
        self.clock = FakeClock()


class OutboxWorld(Database):
    """The database with its outbox table, and a log (its own Redis) that the relay
    writes and the invalidator reads with its consumer group."""

    def __init__(self) -> None:
        super().__init__()
        outbox.create_outbox(self)
        self.log = make_log(fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                                decode_responses=True), partitions=1)
        self.invalidator = StreamConsumer(self.log, "invalidator")
        self.invalidator.subscribe([TOPIC])
        self.reset_counts()

    def stores(self) -> dict[str, Any]:
        return {"log": self.log}  # drawn, and interleaved, as a store of its own


def world_of(db: Database, kind: type[Database]) -> Any:
    """``db`` as the world it must be; a clear error if the strategy got another."""
    if not isinstance(db, kind):
        raise TypeError(f"this strategy needs its world, an {kind.__name__}, "
                        f"got {db!r}")
    return db
# --8<-- [end:worlds]


# --8<-- [start:strategies]
@dataclass(frozen=True)
class Strategy:
    """How a write reaches the cache: the writer, one pass of whatever carries the
    invalidation (the consumer), a reader, and the world they share."""

    write: Callable[[Database, str], Any]
    consume: Actor  # one pass: what it does between two polls
    catch_up: Actor  # every pass until nothing is left
    read: Actor
    make_db: Callable[[], Database]
    setup: Actor


def _publish_write(db: Database, name: str) -> Any:
    world = world_of(db, EventWorld)
    return event_driven.update_user(db, world.broker, world.clock, 1, name)


def _publish_consume(cache: Cache, db: Database) -> Any:
    world = world_of(db, EventWorld)
    return event_driven.CacheService(cache, world.broker, world.clock).step()


def _publish_catch_up(cache: Cache, db: Database) -> Any:
    world = world_of(db, EventWorld)
    return event_driven.CacheService(cache, world.broker, world.clock).drain()


def _outbox_consume(cache: Cache, db: Database) -> Any:
    world = world_of(db, OutboxWorld)
    sent = outbox.relay(db, StreamProducer(world.log))  # outbox -> log
    return sent, len(drain(world.invalidator, cache, StreamProducer(world.log)))


def _outbox_catch_up(cache: Cache, db: Database) -> Any:
    while _outbox_consume(cache, db) != (0, 0):
        pass


def read_user_1(cache: Cache, db: Database) -> str | None:
    return get_user(cache, db, 1)  # plain cache-aside: GET, SELECT on a miss, SET


def cdc_setup(cache: Cache, db: Database) -> None:
    """User 1 is "old" and not cached; the change stream starts after it."""
    user_not_cached(cache, db)
    add_change_stream(db)


STRATEGIES: dict[str, Strategy] = {
    "app publish": Strategy(
        _publish_write, _publish_consume, _publish_catch_up, read_user_1,
        EventWorld, user_not_cached),
    "outbox": Strategy(
        lambda db, name: outbox.update_user(db, 1, name), _outbox_consume,
        _outbox_catch_up, read_user_1, OutboxWorld, user_not_cached),
    "CDC": Strategy(
        lambda db, name: update_user(db, 1, name), poll_changes, catch_up,
        read_user_1, make_db, cdc_setup),
    "CDC + lease": Strategy(
        lambda db, name: update_user(db, 1, name),
        lambda cache, db: poll_changes(cache, db, leases=True),
        lambda cache, db: catch_up(cache, db, leases=True),
        lambda cache, db: production_pattern.get_user(cache, db, 1), make_db,
        cdc_setup),
}


def strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise LookupError(f"no strategy named {name!r}; strategies: "
                          f"{', '.join(STRATEGIES)}")
    return STRATEGIES[name]
# --8<-- [end:strategies]


# --8<-- [start:explore]
Check = Callable[[Cache, Database, Returns], "str | None"]


def eventually_agrees(how: Strategy) -> Check:
    """The check: let the consumer catch up (later polls), then the cache must hold
    nothing for user 1 or what the database holds."""
    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        how.catch_up(cache, db)
        return cache_agrees_with_db(cache, db, returns)
    return check


def race(name: str) -> dict[str, Actor]:
    """Writer, Reader and Consumer (one pass), for the strategy ``name``."""
    how = strategy(name)
    return {"Writer": lambda cache, db: how.write(db, "new"),
            "Reader": how.read, "Consumer": how.consume}


def explore_strategy(name: str,
                     make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """Every class of equivalent interleavings of a writer, a reader and one pass of
    the consumer (DPOR); the check runs the consumer to the end first."""
    how = strategy(name)
    return explore(race(name), how.setup, eventually_agrees(how),
                   make_cache=make_cache, make_db=how.make_db, describe=without_tokens)
# --8<-- [end:explore]


def without_tokens(cache: Cache, db: Database, returns: Returns) -> str:
    """The default outcome, each random lease token shown as 'token'."""
    return re.sub(r"'[0-9a-f]{16}'", "'token'", describe_state(cache, db, returns))


def drawn(run: Run) -> str:
    """``run`` as a diagram: the lease token as t1, the fill script as FILL, and the
    '>' that diagrams drop shown as a full-width one."""
    text = run.mermaid()
    text = re.sub(r'EVAL ".*?" 2', "EVAL FILL 2", text)
    for number, token in enumerate(dict.fromkeys(re.findall(r'"([0-9a-f]{16})"',
                                                            text)), 1):
        text = text.replace(token, f"t{number}")
    return re.sub(r"WHERE seq (\d+)", "WHERE seq \uff1e \\1", text)


def cdc_reader_race() -> Run:
    """The reader reads "old"; the write commits; the consumer deletes the key; the
    reader's fill lands after the only delete."""
    how = strategy("CDC")
    return replay(race("CDC"), how.setup,
                  "Reader Reader Writer Consumer Consumer Consumer Consumer Reader",
                  check=eventually_agrees(how))


def cdc_reader_race_diagram() -> str:
    return drawn(cdc_reader_race())


def cdc_lease_refusal() -> Run:
    """The same order with the lease: the consumer's DEL takes the lease with the
    key, so the reader's fill is refused."""
    how = strategy("CDC + lease")
    return replay(race("CDC + lease"), how.setup,
                  "Reader Reader Reader Writer Consumer Consumer Consumer Consumer"
                  " Reader", check=eventually_agrees(how))


def cdc_lease_refusal_diagram() -> str:
    return drawn(cdc_lease_refusal())


# --8<-- [start:behind-the-back]
def after_a_migration(name: str) -> str | None:
    """User 1 is cached as "old"; a migration renames it; whatever carries the
    invalidations catches up; what does a read return?"""
    how = strategy(name)
    cache, db = make_fake_cache(), how.make_db()
    how.setup(cache, db)
    how.read(cache, db)  # cached: "old"
    migrate(db)  # no application code runs
    how.catch_up(cache, db)
    return how.read(cache, db)
# --8<-- [end:behind-the-back]


# --8<-- [start:costs]
@dataclass(frozen=True)
class Cost:
    """Round trips of one step each, per store, and the database's statements."""

    trips: Counter[str]
    db_reads: int
    db_writes: int

    def __str__(self) -> str:
        other = ", ".join(f"{n} {store}" for store, n in sorted(self.trips.items())
                          if store not in ("db", "cache"))
        return (f"{self.db_reads} DB reads, {self.db_writes} DB writes, "
                f"{self.trips['cache']} Redis" + (f", {other}" if other else ""))


def cost_alone(how: Strategy, actor: Actor, before: Callable[[Cache, Database], Any]
               ) -> Cost:
    """Replay ``actor`` alone after ``before`` (run as setup, not counted)."""
    def setup(cache: Cache, db: Database) -> None:
        how.setup(cache, db)
        before(cache, db)
        db.reset_counts()

    [schedule] = explore({"A": actor}, setup, make_db=how.make_db).examples.values()
    run = replay({"A": actor}, setup, schedule, make_db=how.make_db)
    return Cost(Counter(s.target for s in run.steps), run.db.reads, run.db.writes)


def costs(name: str) -> dict[str, Cost]:
    """What one update costs the writer, and what a pass of the consumer costs with
    one change to handle, and with none."""
    how = strategy(name)

    def write(cache: Cache, db: Database) -> None:
        how.write(db, "new")

    def write_and_consume(cache: Cache, db: Database) -> None:
        write(cache, db)
        how.catch_up(cache, db)

    return {"update": cost_alone(how, write, lambda cache, db: None),
            "pass, 1 change": cost_alone(how, how.consume, write),
            "pass, idle": cost_alone(how, how.consume, write_and_consume)}


def print_costs() -> None:
    """One row per strategy and phase: DB statements, and round trips per store."""
    print(f"{'strategy':<12} {'phase':<15} {'DB reads':>8} {'DB writes':>9} "
          f"{'Redis':>5} {'broker':>6} {'log':>4}")
    for name in STRATEGIES:
        for phase, cost in costs(name).items():
            print(f"{name:<12} {phase:<15} {cost.db_reads:>8} {cost.db_writes:>9} "
                  f"{cost.trips['cache']:>5} {cost.trips['broker']:>6} "
                  f"{cost.trips['log']:>4}")
# --8<-- [end:costs]


# --8<-- [start:crash]
Poll = Callable[[Cache, Database], int]


def crash_before_each_step(poll: Poll) -> list[tuple[str, int, str | None]]:
    """User 1 is cached; an update commits; the consumer crashes just before each
    of its steps in turn, then a fresh one polls until caught up. For each crash:
    (the step it never took, DELs of user:1 that ran, what a read then returns)."""
    outcomes = []
    for crash_at in range(1, 5):  # GET offset, SELECT changes, and the two writes
        cache, db = make_fake_cache(), make_db()
        cdc_setup(cache, db)
        get_user(cache, db, 1)  # cached: "old"
        update_user(db, 1, "new")
        faults = Faults([crash_at])
        try:
            poll(faults.wrap(cache, "cache", ["get", "set", "delete"]),
                 faults.wrap(db, "db", ["query"]))
        except Crash:
            pass  # the process is gone; its offset is what it last saved
        crashed = faults.crashed[0] if faults.crashed else "(no crash)"
        restarted = Faults()
        while poll(restarted.wrap(cache, "cache", ["get", "set", "delete"]), db):
            pass
        deletes = sum(s.startswith("cache.delete") for s in faults.steps
                      if s not in faults.crashed)
        deletes += sum(s.startswith("cache.delete") for s in restarted.steps)
        outcomes.append((crashed, deletes, get_user(cache, db, 1)))
    return outcomes
# --8<-- [end:crash]


def main() -> None:
    """Narrate: a write and its invalidation from the change stream, a migration,
    a crash between DEL and offset, and the comparison."""
    cache, db = make_cache(), make_db()
    db.add_user(1, "old")
    add_change_stream(db)
    get_user(cache, db, 1)
    update_user(db, 1, "new")
    print(f"write:    UPDATE only; changes after offset 0: {read_changes(db, 0)}; "
          f"cache holds {cache.get('user:1')!r}")
    handled = poll_changes(cache, db)
    print(f"consumer: {handled} change, DEL user:1, offset saved "
          f"{cache.get(offset_key('cache_invalidator'))!s}; "
          f"read -> {get_user(cache, db, 1)!r}")
    for name in STRATEGIES:
        found = explore_strategy(name)
        print(f"{name:<12} writer + reader + consumer: {len(found.bad)} bad of "
              f"{found.total:>3}; after a migration a read returns "
              f"{after_a_migration(name)!r}")
    crashed, deletes, read = crash_before_each_step(poll_changes)[-1]
    print(f"crash before {crashed}: {deletes} DELs of user:1 (at least once), "
          f"read -> {read!r}")


if __name__ == "__main__":
    main()
