"""The outbox pattern: the write and its invalidation event commit in one transaction.

A relay copies unsent outbox rows to the log (the partitioned log and consumer of
``snippets.scaling.kafka_invalidation``, imported, not copied) and then marks them sent;
the invalidator deletes the keys. A crash anywhere can delay or repeat an invalidation,
never lose it. ``crash_everywhere`` checks that by crashing before every step, and shows
the "update the DB, then publish" dual write losing events under the same crashes.

Run it: ``python -m snippets.scaling.outbox``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import itertools
import time
from dataclasses import dataclass

from snippets.backends import (
    Cache, Clock, Database, FakeClock, check_int, check_name, make_cache, make_db,
    user_key,
)
from snippets.faults import Crash, Faults
from snippets.patterns.cache_aside import get_user
from snippets.scaling.kafka_invalidation import (
    TOPIC, Producer, StreamConsumer, StreamProducer, drain, invalidation_event,
    make_log, publish_invalidation, require,
)

# --8<-- [end:imports]

# --8<-- [start:schema]
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- publishing order
    topic      TEXT    NOT NULL,
    key        TEXT    NOT NULL,  -- the entity: its partition on the log
    payload    TEXT    NOT NULL,
    created_at REAL    NOT NULL,  -- commit time: the event's timestamp
    sent_at    REAL               -- NULL until the log has the event
)
"""


def create_outbox(db: Database) -> None:
    """The outbox lives in the same database as the rows it describes, so
    one transaction can commit both."""
    if not isinstance(db, Database):
        raise TypeError(f"db must be a Database, got {db!r}")
    db.execute(OUTBOX_SCHEMA)
# --8<-- [end:schema]


# --8<-- [start:write]
def update_user(db: Database, user_id: int, name: str,
                clock: Clock = time.time) -> None:
    """Update the row and record its invalidation event in ONE transaction:
    both commit, or neither does."""
    key, event = invalidation_event(user_id)  # validates user_id
    check_name(name)
    require((db, "transaction", "execute"), (clock, "__call__"))
    with db.transaction():  # an exception in here rolls back both
        changed = db.execute(
            "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
            (name, user_id),
        )
        if changed == 0:
            raise LookupError(f"no user with id {user_id}")
        db.execute(
            "INSERT INTO outbox (topic, key, payload, created_at)"
            " VALUES (?, ?, ?, ?)",
            (TOPIC, key, event, clock()),
        )
    # No cache call: once the transaction commits, the invalidation is owed.
# --8<-- [end:write]


# --8<-- [start:relay]
def relay(db: Database, producer: Producer, clock: Clock = time.time,
          limit: int = 100) -> int:
    """Publish unsent outbox rows in order, then mark them sent; return how
    many. A crash after publishing and before marking publishes them again:
    duplicates, never a loss."""
    check_int("limit", limit)
    require((db, "query", "execute"), (producer, "produce", "flush"),
            (clock, "__call__"))
    rows = db.query(
        "SELECT id, topic, key, payload, created_at FROM outbox"
        " WHERE sent_at IS NULL ORDER BY id LIMIT ?", (limit,)
    )
    if not rows:
        return 0
    for _, topic, key, payload, created_at in rows:
        producer.produce(topic, value=payload, key=key,
                         timestamp=round(created_at * 1000))
    if producer.flush(10) != 0:  # mark only what the log acknowledged
        raise RuntimeError("the log did not take every event: none marked")
    ids = [row[0] for row in rows]
    db.execute(
        "UPDATE outbox SET sent_at = ?"
        f" WHERE id IN ({', '.join('?' * len(ids))})",
        (clock(), *ids),
    )
    return len(rows)
# --8<-- [end:relay]


def unsent(db: Database) -> int:
    """How many outbox rows are not on the log yet."""
    return db.query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")[0][0]


# --8<-- [start:dual-write]
def update_then_publish(db: Database, producer: Producer, user_id: int,
                        name: str) -> None:
    """The dual write the outbox replaces: commit, then publish. A crash in
    between loses the event: the cached value stays stale until its TTL."""
    user_key(user_id)  # validates user_id
    check_name(name)
    require((db, "execute"), (producer, "produce", "flush"))
    changed = db.execute(  # committed at once (autocommit)
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id),
    )
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    publish_invalidation(producer, user_id)
# --8<-- [end:dual-write]


# --8<-- [start:scenario]
USERS = [(1, "Ada", "Ada Lovelace"), (2, "Grace", "Grace Hopper")]
WRITERS = ("outbox", "dual-write")


@dataclass
class Outcome:
    steps: list[str]  # every step reached, in order
    stale: int  # users whose cached name is not the DB's, once all is done
    deletes: int  # DELs that ran: more than the writes means duplicates


def run_scenario(cache: Cache, writer: str, crash_at: set[int]) -> Outcome:
    """Cache two users; rename both with ``writer``; then run relay and
    invalidator until nothing is left, restarting them after each crash.
    Empties ``cache`` first (FLUSHDB): give it a scratch database."""
    if writer not in WRITERS:
        raise ValueError(f"writer must be one of {WRITERS}, got {writer!r}")
    faults = Faults(crash_at)  # validates crash_at before anything is emptied
    cache.flushdb()
    db, clock = make_db(), FakeClock()
    log = make_log(cache)
    create_outbox(db)
    for user_id, old, _ in USERS:
        db.add_user(user_id, old)
        get_user(cache, db, user_id)  # cached, so a lost DEL leaves it stale
    fdb = faults.wrap(db, "db", ["query", "execute"])
    fcache = faults.wrap(cache, "cache", ["delete"])

    def producer() -> Producer:  # a new process: an empty send queue
        return faults.wrap(StreamProducer(log, clock), "producer",
                           ["produce", "flush"])

    for user_id, _, new in USERS:
        try:
            if writer == "outbox":
                update_user(fdb, user_id, new, clock)
            else:
                update_then_publish(fdb, producer(), user_id, new)
        except Crash:
            pass  # what the writer committed stays; its memory is gone
    while True:  # a supervisor: restart what crashed until all is done
        consumer = faults.wrap(StreamConsumer(log, "invalidator"),
                               "consumer", ["poll", "commit"])
        consumer.subscribe([TOPIC])
        try:
            sent = relay(fdb, producer(), clock) if writer == "outbox" else 0
            if not drain(consumer, fcache, producer()) and sent == 0:
                break
        except Crash:
            continue  # fresh relay, fresh consumer: in-memory state is lost
    names = dict(db.query("SELECT id, name FROM users"))
    stale = sum(cache.get(user_key(u)) not in (None, names[u])
                for u, _, _ in USERS)
    deletes = sum(step.startswith("cache.delete") for step in faults.steps)
    deletes -= sum(step.startswith("cache.delete") for step in faults.crashed)
    return Outcome(faults.steps, stale, deletes)


def crash_everywhere(cache: Cache, writer: str,
                     crashes: int = 1) -> tuple[int, int, int]:
    """Replay the scenario with a crash before each step of a clean run
    (``crashes=2``: before each pair of steps). Return (steps of a clean
    run, runs replayed, runs that left a key stale)."""
    if isinstance(crashes, bool) or crashes not in (1, 2):
        raise ValueError(f"crashes must be 1 or 2, got {crashes!r}")
    steps = len(run_scenario(cache, writer, set()).steps)
    plans = list(itertools.combinations(range(1, steps + 1), crashes))
    stale_runs = sum(run_scenario(cache, writer, set(plan)).stale > 0
                     for plan in plans)
    return steps, len(plans), stale_runs
# --8<-- [end:scenario]


def main() -> None:
    """Narrate: one atomic write, a relay crash, duplicates, every crash."""
    cache, db, clock = make_cache(), make_db(), FakeClock()
    log = make_log(cache)
    create_outbox(db)
    db.add_user(1, "Ada")
    get_user(cache, db, 1)
    update_user(db, 1, "Ada Lovelace", clock)
    print(f"write:       users row + outbox row, one transaction; unsent "
          f"{unsent(db)}, cache holds {cache.get('user:1')!r}")

    faults = Faults(crash_at=[4])  # 1 query, 2 produce, 3 flush, 4 mark sent
    try:
        relay(faults.wrap(db, "db", ["query", "execute"]),
              faults.wrap(StreamProducer(log, clock), "producer",
                          ["produce", "flush"]), clock)
    except Crash as crash:
        print(f"relay:       {crash} (published, unsent {unsent(db)})")
    sent = relay(db, StreamProducer(log, clock), clock)
    print(f"relay again: published {sent} again and marked it; "
          f"unsent {unsent(db)}")
    consumer = StreamConsumer(log, "invalidator")
    consumer.subscribe([TOPIC])
    handled = drain(consumer, cache, StreamProducer(log, clock))
    print(f"invalidator: {len(handled)} events for user:1, DEL twice "
          f"(harmless); read -> {get_user(cache, db, 1)!r}")

    for writer in ("dual-write", "outbox"):
        steps, runs, stale = crash_everywhere(cache, writer)
        print(f"{writer + ':':<12} a crash before each of {steps} steps: "
              f"{stale} of {runs} runs leave a key stale")


if __name__ == "__main__":
    main()
