"""The outbox pattern: the write and its invalidation event commit in one transaction.

A relay copies unsent outbox rows to the log (the partitioned log and consumer of
``snippets.scaling.kafka_invalidation``, imported, not copied) and then marks them sent;
the invalidator deletes the keys. A crash anywhere can delay or repeat an invalidation,
never lose it. ``crash_everywhere`` checks that by crashing before every step, and shows
the "update the DB, then publish" dual write losing events under the same crashes.

An outbox id is allocated at INSERT, not at commit: on a database whose transactions
interleave (PostgreSQL, MySQL) a later id can commit first. ``later_id_commits_first``
replays what that does to a relay that remembers the highest id it sent (it skips the
earlier id for good) and to this relay, which picks every row still unsent.

Run it: ``python -m snippets.scaling.outbox``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snippets.backends import (
    Cache, Clock, Database, FakeClock, check_int, check_name, make_cache, make_db,
    user_key,
)
from snippets.faults import Crash, Faults
from snippets.patterns.cache_aside import get_user
from snippets.scaling.kafka_invalidation import (
    TOPIC, Producer, StreamConsumer, StreamProducer, create_topic, drain,
    invalidation_event, make_log, partitions_of, publish_invalidation, require,
    stream_key,
)

if TYPE_CHECKING:  # the explorer is loaded only by the functions that explore
    from snippets.explorer import Exploration, Returns

# --8<-- [end:imports]

# --8<-- [start:schema]
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- allocated at INSERT, not at commit
    topic      TEXT    NOT NULL,
    key        TEXT    NOT NULL,  -- the entity: its partition on the log
    payload    TEXT    NOT NULL,
    created_at REAL    NOT NULL,  -- read at INSERT, before the commit: the timestamp
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
    """Publish unsent outbox rows (in id order), then mark them sent; return how
    many. A crash after publishing and before marking publishes them again:
    duplicates, never a loss. A row that commits late, with an id below rows
    already sent, is still unsent, so the next run picks it up."""
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


# --8<-- [start:id-order]
SEQUENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_seq (last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS relay_mark (last_sent INTEGER NOT NULL);
"""


def nextval(db: Database) -> int:
    """An outbox id, as PostgreSQL's sequence hands one out at INSERT: at once, in
    its own step, long before the writer's COMMIT. (SQLite serialises transactions,
    so here the sequence is a table of its own.)"""
    with db.transaction():
        db.execute("UPDATE outbox_seq SET last = last + 1")
        return db.query("SELECT last FROM outbox_seq")[0][0]


def write_with_id(db: Database, event_id: int, user_id: int, name: str,
                  clock: Clock = time.time) -> None:
    """``update_user``, its outbox row carrying an id allocated earlier."""
    key, event = invalidation_event(user_id)
    with db.transaction():  # the COMMIT: only now can a relay see the row
        db.execute("UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
                   (check_name(name), user_id))
        db.execute("INSERT INTO outbox (id, topic, key, payload, created_at)"
                   " VALUES (?, ?, ?, ?, ?)", (event_id, TOPIC, key, event, clock()))


def relay_after_mark(db: Database, producer: Producer,
                     clock: Clock = time.time) -> int:
    """The high-water-mark relay: publish the rows above the highest id sent so far,
    in id order, then move the mark. Wrong: a row that commits after a higher id was
    sent is below the mark, and never published."""
    [(mark,)] = db.query("SELECT last_sent FROM relay_mark")
    rows = db.query("SELECT id, topic, key, payload, created_at FROM outbox"
                    " WHERE id > ? ORDER BY id", (mark,))
    for _, topic, key, payload, created_at in rows:
        producer.produce(topic, value=payload, key=key,
                         timestamp=round(created_at * 1000))
    if rows and producer.flush(10) == 0:
        db.execute("UPDATE relay_mark SET last_sent = ?", (rows[-1][0],))
    return len(rows)


Relay = Callable[[Database, Producer, Clock], int]


def later_id_commits_first(how: Relay, cache: Cache) -> list[str]:
    """Writer A takes id 1, writer B takes id 2; B commits; the relay runs; then A
    commits; then the relay runs until it finds nothing. Return the keys whose
    events reached the log. Empties ``cache`` first (FLUSHDB): a scratch one."""
    cache.flushdb()
    db, clock = id_order_world(cache)
    a, b = nextval(db), nextval(db)  # A: id 1, B: id 2, both before any COMMIT
    write_with_id(db, b, 2, "Grace Hopper", clock)  # B commits first
    how(db, StreamProducer(cache, clock), clock)  # the relay sees id 2 only
    write_with_id(db, a, 1, "Ada Lovelace", clock)  # A commits, with id 1
    while how(db, StreamProducer(cache, clock), clock):
        pass
    return relayed_keys(cache)


def id_order_world(cache: Cache) -> tuple[Database, FakeClock]:
    """The outbox, the modelled sequence, the mark, two users, the topics."""
    db = make_db()
    id_order_tables(db)
    make_log(cache)
    return db, FakeClock()


def id_order_tables(db: Database) -> None:
    """The outbox, the modelled sequence and the relay's mark, and two users."""
    create_outbox(db)
    db.conn.executescript(SEQUENCE_SCHEMA)
    db.conn.execute("INSERT INTO outbox_seq VALUES (0)")
    db.conn.execute("INSERT INTO relay_mark VALUES (0)")
    db.add_user(1, "Ada")
    db.add_user(2, "Grace")


def relayed_keys(cache: Cache) -> list[str]:
    """The keys of the events on the log, sorted (read without a consumer group)."""
    keys: list[str] = []
    for partition in range(partitions_of(cache, TOPIC)):
        entries: Any = cache.xrange(stream_key(TOPIC, partition))
        keys.extend(str(fields["key"]) for _, fields in entries)
    return sorted(keys)
# --8<-- [end:id-order]


# --8<-- [start:id-order-explored]
def explore_id_order(how: Relay,
                     make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """Every interleaving of writer A (take an id, commit), writer B (the same) and
    one relay run; then the relay runs until it finds nothing. Bad: an event that
    never reached the log."""
    from snippets.explorer import explore  # loaded only by those who explore

    def setup(cache: Cache, db: Database) -> None:
        id_order_tables(db)
        create_topic(cache, TOPIC, 3)

    def writer(user_id: int, name: str) -> Callable[[Cache, Database], None]:
        return lambda cache, db: write_with_id(db, nextval(db), user_id, name)

    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        while how(db, StreamProducer(cache), time.time):  # the relay, to the end
            pass
        lost = {"user:1", "user:2"} - set(relayed_keys(cache))
        return f"never relayed: {', '.join(sorted(lost))}" if lost else None

    actors = {"A": writer(1, "Ada Lovelace"), "B": writer(2, "Grace Hopper"),
              "R": lambda cache, db: how(db, StreamProducer(cache), time.time)}
    return explore(actors, setup, check, make_cache=make_cache, reduce=False)


def two_relays_at_once(make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """Two relays (``relay``: sent_at IS NULL) run at once over one unsent row, in
    every interleaving. Bad: the event never relayed. Each outcome is the list of
    keys on the log, so the duplicates show."""
    from snippets.explorer import explore

    def setup(cache: Cache, db: Database) -> None:
        create_outbox(db)
        db.add_user(1, "Ada")
        update_user(db, 1, "Ada Lovelace")
        create_topic(cache, TOPIC, 3)

    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        return None if "user:1" in relayed_keys(cache) else "never relayed: user:1"

    def one_relay(cache: Cache, db: Database) -> int:
        return relay(db, StreamProducer(cache))

    return explore({"R1": one_relay, "R2": one_relay}, setup, check,
                   make_cache=make_cache, reduce=False,
                   describe=lambda cache, db, returns: " ".join(relayed_keys(cache)))
# --8<-- [end:id-order-explored]


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
