"""Two-level caches: each process keeps a small local cache (L1, cachetools' TTLCache)
in front of Redis (L2), and every write must reach every process's L1.

- Invalidation by Redis pub/sub: the writer publishes the key, each process's listener
  removes it from its L1. Two races, replayed by the explorer: a fill that lands after
  the message that should have removed it (fixed with a placeholder, as Redis's
  client-side caching reference does), and a message lost while the listener's
  connection was down (fixed by flushing the L1 on every reconnect).
- Invalidation by Redis itself (CLIENT TRACKING, redirected to an invalidation
  connection; BCAST with prefixes, or OPTIN): runs on a real Redis only.
- The L1's TTL bounds what is left: its stale window, on a fake clock; and what the L1
  saves, counted over a workload.

Run it: ``python -m snippets.fleet.two_level``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import functools
import itertools
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fakeredis
import redis
from cachetools import TTLCache

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Clock,
    Database,
    FakeClock,
    check_int,
    check_number,
    user_key,
)
from snippets.concurrency import production_pattern
from snippets.explorer.direct import go_direct
from snippets.explorer import Exploration, Returns, Run, explore, replay, reusing
from snippets.explorer.footprints import reading, writing
from snippets.explorer.instrument import step
from snippets.explorer.text import describe_state

# --8<-- [end:imports]


# --8<-- [start:l1]
L1_SIZE = 1_000  # entries per process: the hot keys, not the data set
L1_TTL = 5.0  # seconds: the longest an L1 keeps a value that no message removed


class Placeholder:
    """What a fill reserves in the L1 before it reads Redis; ``is`` tells one fill's
    placeholder from another's."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "placeholder"


class L1:
    """One process's local cache: cachetools' TTLCache (not thread-safe) behind a lock,
    because the listener thread invalidates while request threads read and fill."""

    def __init__(self, maxsize: int = L1_SIZE, ttl: float = L1_TTL,
                 timer: Clock = time.monotonic) -> None:
        self._entries: TTLCache[str, str | Placeholder] = TTLCache(
            check_int("maxsize", maxsize), check_number("ttl", ttl), timer=timer)
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """The value, or None: a miss (a placeholder is a miss too)."""
        with self._lock:
            value = self._entries.get(key)
        return value if isinstance(value, str) else None

    def put(self, key: str, value: str) -> None:
        """Store ``value``, whatever happened since it was read."""
        with self._lock:
            self._entries[key] = value

    def reserve(self, key: str) -> Placeholder:
        """Before reading Redis: hold the key's place for this fill."""
        placeholder = Placeholder()
        with self._lock:
            self._entries[key] = placeholder
        return placeholder

    def fill(self, key: str, placeholder: Placeholder, value: str | None) -> bool:
        """Replace our own placeholder with ``value`` (None: just remove it). False if
        an invalidation (or another fill) took the place since: the value may be old."""
        with self._lock:
            if self._entries.get(key) is not placeholder:
                return False
            if value is None:
                del self._entries[key]
            else:
                self._entries[key] = value
            return True

    def invalidate(self, key: str) -> None:
        """Remove the key: its value, or a fill's placeholder."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
# --8<-- [end:l1]


# --8<-- [start:read]
def get_user_unguarded(l1: L1, cache: Cache, db: Database, user_id: int,
                       ttl: int = DEFAULT_TTL, *,
                       sleep: Callable[[float], object] = time.sleep) -> str | None:
    """L1, then Redis and the database (the production pattern), then fill the L1."""
    key = user_key(user_id)
    if (value := l1.get(key)) is not None:
        return value  # an L1 hit: no Redis, no database
    value = production_pattern.get_user(cache, db, user_id, ttl, sleep=sleep)
    if value is not None:
        l1.put(key, value)  # (1)!
    return value


def get_user(l1: L1, cache: Cache, db: Database, user_id: int,
             ttl: int = DEFAULT_TTL, *,
             sleep: Callable[[float], object] = time.sleep) -> str | None:
    """The same, with the placeholder fix of Redis's client-side caching reference."""
    key = user_key(user_id)
    if (value := l1.get(key)) is not None:
        return value
    placeholder = l1.reserve(key)  # (2)!
    value = production_pattern.get_user(cache, db, user_id, ttl, sleep=sleep)
    l1.fill(key, placeholder, value)  # (3)!
    return value
# --8<-- [end:read]


# --8<-- [start:write]
CHANNEL = "invalidate:users"


def update_user(cache: Cache, db: Database, user_id: int, name: str) -> int:
    """The production write (UPDATE, then DEL the key and its lease), then tell every
    process to drop the key from its L1. Returns how many listeners Redis reached."""
    production_pattern.update_user(cache, db, user_id, name)
    return int(cache.publish(CHANNEL, user_key(user_id)))  # (1)!
# --8<-- [end:write]


# --8<-- [start:listen]
class Listener:
    """A process's subscription to CHANNEL: each message removes a key from its L1.
    Pub/sub delivers a message to the connections subscribed when it is published,
    and keeps nothing for one that is down."""

    def __init__(self, cache: Cache, l1: L1, *, flush_on_connect: bool = True) -> None:
        self.l1, self.flush_on_connect = l1, flush_on_connect
        self.pubsub = cache.pubsub()
        self.pubsub.subscribe(CHANNEL)
        if self.pubsub.get_message(timeout=5.0) is None:  # the confirmation
            raise RuntimeError(f"Redis did not confirm the subscription to {CHANNEL}")
        self.pubsub.connection.register_connect_callback(self._connected)  # (1)!

    def _connected(self, connection: Any) -> None:
        if self.flush_on_connect:
            self.l1.clear()  # (2)!

    def poll(self, timeout: float = 0.0) -> dict[str, Any] | None:
        """Handle what has arrived (reconnecting first if the connection dropped):
        a message removes its key. None if nothing had arrived."""
        message = self.pubsub.get_message(timeout=timeout)
        if message is not None and message["type"] == "message":
            self.l1.invalidate(message["data"])
        return message

    def drain(self) -> int:
        """Handle everything that has arrived; how many messages and confirmations."""
        return sum(1 for _ in iter(self.poll, None))

    def close(self) -> None:
        self.pubsub.close()
# --8<-- [end:listen]


# --8<-- [start:sharded]
SHARDED_CHANNEL = "invalidate:{users}"  # (1)!


def update_user_sharded(cache: Cache, db: Database, user_id: int, name: str) -> int:
    """The same write, its message sent with SPUBLISH: on a Redis Cluster, only the
    shard that owns the channel's slot carries it. Returns how many listeners the
    node that took it reached."""
    production_pattern.update_user(cache, db, user_id, name)
    return int(cache.spublish(SHARDED_CHANNEL, user_key(user_id)))


class ShardedListener(Listener):
    """The same listener, subscribed with SSUBSCRIBE. On a cluster, redis-py's
    ``RedisCluster.pubsub()`` connects it to the shard that owns the channel."""

    def __init__(self, cache: Cache, l1: L1, *, flush_on_connect: bool = True) -> None:
        self.l1, self.flush_on_connect = l1, flush_on_connect
        self.pubsub = cache.pubsub()
        self.pubsub.ssubscribe(SHARDED_CHANNEL)
        if self.pubsub.get_sharded_message(timeout=5.0) is None:  # the confirmation
            raise RuntimeError(
                f"Redis did not confirm the subscription to {SHARDED_CHANNEL}")
        shards = getattr(self.pubsub, "node_pubsub_mapping", None)  # (2)!
        for pubsub in shards.values() if shards else [self.pubsub]:
            pubsub.connection.register_connect_callback(self._connected)

    def poll(self, timeout: float = 0.0) -> dict[str, Any] | None:
        message = self.pubsub.get_sharded_message(timeout=timeout)
        if message is not None and message["type"] == "smessage":
            self.l1.invalidate(message["data"])
        return message
# --8<-- [end:sharded]


# --8<-- [start:tracking]
INVALIDATIONS = "__redis__:invalidate"  # where Redis sends a tracking client's news


class Tracked:
    """Server-assisted client-side caching, on the protocol level (RESP2, Redis 6+):
    Redis remembers what this client read and sends invalidations for it to a second
    connection. BCAST: every key under ``prefixes``; OPTIN: only keys read right
    after CLIENT CACHING YES. Its own writes (the fill) invalidate it too: a value
    stays in the L1 from the second read on."""

    def __init__(self, url: str, l1: L1, *, prefixes: tuple[str, ...] = ("user:",),
                 optin: bool = False) -> None:
        if optin == bool(prefixes):
            raise ValueError("give prefixes (BCAST) or optin=True, not both or neither")
        self.l1, self.prefixes, self.optin = l1, prefixes, optin
        self.data = redis.Redis.from_url(url, decode_responses=True, protocol=2,
                                         single_connection_client=True)  # (1)!
        self.pool = redis.ConnectionPool.from_url(url, decode_responses=True,
                                                  protocol=2)  # (2)!
        self.connect()

    def connect(self) -> None:
        """(Re)open the invalidation connection, redirect tracking to it, and flush
        the L1: whatever was invalidated while it was down is unknown."""
        self.invalidations = self.pool.make_connection()
        self.invalidations.send_command("CLIENT", "ID")
        redirect = self.invalidations.read_response()
        self.invalidations.send_command("SUBSCRIBE", INVALIDATIONS)
        self.invalidations.read_response()  # the subscription is live from here
        mode = (["OPTIN"] if self.optin else
                ["BCAST", *itertools.chain(*(("PREFIX", p) for p in self.prefixes))])
        self.data.execute_command("CLIENT", "TRACKING", "OFF")
        self.data.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", redirect,
                                  *mode)
        self.l1.clear()  # (3)!

    def read(self, user_id: int, db: Database) -> str | None:
        """L1, then Redis (tracked) and the database; a placeholder guards the fill."""
        key = user_key(user_id)
        if (value := self.l1.get(key)) is not None:
            return value
        placeholder = self.l1.reserve(key)
        if self.optin:
            self.data.execute_command("CLIENT", "CACHING", "YES")  # (4)!
        value = production_pattern.get_user(self.data, db, user_id)
        self.l1.fill(key, placeholder, value)
        return value

    def write(self, user_id: int, name: str, db: Database) -> None:
        """Write; drop our own L1 entry now rather than when our invalidation comes."""
        production_pattern.update_user(self.data, db, user_id, name)
        self.l1.invalidate(user_key(user_id))

    def poll(self, timeout: float = 0.0) -> int:
        """Apply the invalidations that have arrived; if the invalidation connection
        broke, reconnect (which flushes). Returns how many keys were invalidated."""
        done = 0
        try:
            while self.invalidations.can_read(timeout):
                kind, _, keys = self.invalidations.read_response()
                if kind == "message" and keys is None:
                    self.l1.clear()  # FLUSHALL, FLUSHDB: everything
                elif kind == "message":
                    for key in keys:
                        self.l1.invalidate(key)
                    done += len(keys)
                timeout = 0.0
        except redis.ConnectionError:
            self.connect()  # (5)!
        return done

    def close(self) -> None:
        self.invalidations.disconnect()
        self.data.close()
        self.pool.disconnect()
# --8<-- [end:tracking]


# --8<-- [start:world]
PROCESS = "L1 of A"  # process A's local cache, as a store of the explorer's world


class ScheduledL1(L1):
    """Process A's L1 in the explorer: each operation (atomic, under the L1's lock)
    is one step, which the explorer interleaves with every other."""

    def _step(self, key: str, write: bool, text: str, call: Callable[[], Any]) -> Any:
        footprint = writing(PROCESS, key) if write else reading(PROCESS, key)
        return step(PROCESS, footprint, lambda: (text, call()))

    def get(self, key: str) -> str | None:
        return self._step(key, False, f"L1 get {key}", lambda: L1.get(self, key))

    def put(self, key: str, value: str) -> None:
        self._step(key, True, f'L1 put {key} "{value}"',
                   lambda: L1.put(self, key, value))

    def reserve(self, key: str) -> Placeholder:
        return self._step(key, True, f"L1 reserve {key}", lambda: L1.reserve(self, key))

    def fill(self, key: str, placeholder: Placeholder, value: str | None) -> bool:
        return self._step(key, True, f'L1 fill {key} "{value}" if placeholder',
                          lambda: L1.fill(self, key, placeholder, value))


class Fleet(Database):
    """The database, and process A beside it: its L1 and its listener. The listener
    subscribes in the setup; ``deliver`` and ``drop`` are steps of their own."""

    def __init__(self, flush_on_connect: bool = True) -> None:
        super().__init__()
        self.l1 = ScheduledL1(ttl=3600)  # no expiry during a run: the TTL is apart
        self.flush_on_connect = flush_on_connect
        self._listener: Listener | None = None

    @property
    def listener(self) -> Listener:
        if self._listener is None:
            raise RuntimeError("process A is not subscribed: run the setup first")
        return self._listener

    def subscribe(self, cache: Cache) -> None:
        self._listener = Listener(cache, self.l1,
                                  flush_on_connect=self.flush_on_connect)

    def deliver(self) -> str:
        """One step: A's listener handles the next thing that has arrived."""
        def poll() -> tuple[str, str]:
            message = self.listener.poll()
            if message is None:
                return "poll: nothing has arrived", "nothing"
            if message["type"] == "message":
                return f"message {message['data']}: L1 invalidate", "removed"
            flushed = ", L1 flushed" if self.flush_on_connect else ""
            return f"poll: reconnected and subscribed{flushed}", "subscribed"
        return step(PROCESS, writing("cache", "subscriber A") | writing(PROCESS), poll)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        super().close()

    def drop(self) -> None:
        """One step: A's subscriber connection breaks; what was on its way is lost."""
        def disconnect() -> tuple[str, None]:
            self.listener.pubsub.connection.disconnect()
            return "A's subscriber connection drops", None
        step("cache", writing("cache", "subscriber A"), disconnect)


def fleet(db: Database) -> Fleet:
    if not isinstance(db, Fleet):
        raise TypeError(f"a Fleet (a database and process A) is needed, "
                        f"got {type(db).__name__}")
    return db


def no_wait(seconds: float) -> None:
    """A lease wait is just a later step in the explorer."""


def cold(cache: Cache, db: Database) -> None:
    """User 1 is "old" in the DB, cached nowhere; A's listener is subscribed."""
    db.add_user(1, "old")
    fleet(db).subscribe(cache)


def warm(cache: Cache, db: Database) -> None:
    """The same, with "old" in Redis and in A's L1."""
    cold(cache, db)
    get_user(fleet(db).l1, cache, db, 1)


def next_read_in_a(read: Read) -> Check:
    """The invariant: once A's listener has handled what has arrived (reconnecting if
    it must), A's next read returns what the DB holds."""
    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        world = fleet(db)
        world.listener.drain()
        got = read(world.l1, cache, db, 1, sleep=no_wait)
        [(in_db,)] = db.query("SELECT name FROM users WHERE id = 1")
        if got == in_db:
            return None
        return f"stale: A reads {got!r}, the DB says {in_db!r}"
    return check


def describe(cache: Cache, db: Database, returns: Returns) -> str:
    held = fleet(db).l1.get(user_key(1))
    return f"L1 of A user:1={held!r}, " + describe_state(cache, db, returns)
# --8<-- [end:world]


Read = Callable[..., "str | None"]
Check = Callable[[Cache, Database, Returns], "str | None"]


# --8<-- [start:count]
SCENARIOS = ("fill vs message", "connection drops", "both")
READS: dict[str, Read] = {"unguarded fill": get_user_unguarded,
                          "placeholder": get_user}


def actors(scenario: str, read: Read) -> dict[str, Callable[[Cache, Database], Any]]:
    """W writes user 1 (and publishes); A reads it in process A; M is A's listener
    handling one delivery; X drops A's subscriber connection."""
    def reader(cache: Cache, db: Database) -> str | None:
        return read(fleet(db).l1, cache, db, 1, sleep=no_wait)
    writer = functools.partial(update_user, user_id=1, name="new")
    deliver = lambda cache, db: fleet(db).deliver()  # noqa: E731
    drop = lambda cache, db: fleet(db).drop()  # noqa: E731
    if scenario == "fill vs message":
        return {"W": writer, "A": reader, "M": deliver}
    if scenario == "connection drops":
        return {"W": writer, "X": drop, "M": deliver}
    if scenario == "both":
        return {"W": writer, "A": reader, "X": drop, "M": deliver}
    raise LookupError(f"no scenario named {scenario!r}; scenarios: "
                      f"{', '.join(SCENARIOS)}")


def explore_l1(scenario: str, read: Read, flush_on_connect: bool) -> Exploration:
    """Every distinct schedule of the scenario (on fakeredis: its pub/sub delivers
    as soon as PUBLISH runs, so a delivery is exactly the step M)."""
    with worlds(flush_on_connect) as (make_cache, make_db):
        return explore(actors(scenario, read),
                       warm if scenario == "connection drops" else cold,
                       next_read_in_a(read), make_cache=make_cache, make_db=make_db,
                       describe=describe)


def print_rows(scenarios: tuple[str, ...] = SCENARIOS[:2],
               rows: tuple[tuple[str, bool], ...] = (
                   ("unguarded fill", False), ("unguarded fill", True),
                   ("placeholder", False), ("placeholder", True))) -> None:
    """Bad schedules of each read (with or without flush on connect), per scenario."""
    print(f"{'':<32}" + "".join(f"{s:>19}" for s in scenarios))
    for name, flush in rows:
        label = f"{name}{', flush on connect' if flush else ''}"
        cells = [explore_l1(s, READS[name], flush) for s in scenarios]
        print(f"{label:<32}" + "".join(
            f"{f'{len(c.bad)} bad of {c.total}':>19}" for c in cells))
# --8<-- [end:count]


def fakeredis_client() -> Cache:
    """A fakeredis of its own."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@contextmanager
def worlds(flush_on_connect: bool) -> Iterator[tuple[Callable[[], Cache],
                                                      Callable[[], Fleet]]]:
    """``make_cache`` and ``make_db`` for the explorer: one fakeredis for every run
    (emptied before each), and a new Fleet per run, the last one's listener closed
    first, so that a PUBLISH reaches only this run's process A."""
    client, made = fakeredis_client(), list[Fleet]()

    def make_db() -> Fleet:
        while made:
            made.pop().close()
        made.append(Fleet(flush_on_connect))
        return made[-1]

    try:
        yield reusing(client), make_db
    finally:
        for world in made:
            world.close()
        client.close()


# --8<-- [start:ttl]
def stale_window(ttl: float, fill_at: float, write_at: float,
                 read_at: list[float]) -> list[tuple[float, str | None]]:
    """Process B fills its L1 with "old" at ``fill_at``; a write at ``write_at`` never
    reaches it (no listener, or the message lost). What B reads at each time."""
    clock = FakeClock()
    l1 = L1(ttl=ttl, timer=clock)
    cache, db = fakeredis_client(), Database()
    db.add_user(1, "old")
    clock.advance(check_number("fill_at", fill_at, minimum=-1e-9))
    get_user(l1, cache, db, 1)
    clock.advance(write_at - fill_at)
    production_pattern.update_user(cache, db, 1, "new")  # Redis is right; B's L1 is not
    seen = []
    for at in read_at:
        clock.advance(at - clock())
        seen.append((at, get_user(l1, cache, db, 1)))
    return seen
# --8<-- [end:ttl]


# --8<-- [start:workload]
@dataclass(frozen=True)
class Tally:
    redis: int  # commands the reads sent to Redis
    db: int  # queries the reads sent to the database
    stale: int  # reads that returned a name the DB had already replaced

    def __str__(self) -> str:
        return f"{self.redis:>6} {self.db:>6} {self.stale:>6}"


class CountingRedis(fakeredis.FakeRedis):
    """A fakeredis client that counts the commands it sends."""

    commands = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands += 1
        return super().execute_command(*args, **options)


def zipf_keys(count: int, keys: int, seed: int) -> Iterator[int]:
    """``count`` user ids in 1..keys, id k drawn with weight 1/k: a few hot keys."""
    weights = [1 / k for k in range(1, keys + 1)]
    yield from random.Random(seed).choices(range(1, keys + 1), weights, k=count)


def workload(l1s: bool, listen: bool, reads: int = 2_000, keys: int = 100,
             write_every: int = 50, processes: int = 4, l1_ttl: float = 1.0,
             tick: float = 0.001, seed: int = 1) -> Tally:
    """``reads`` reads, one every ``tick`` seconds, by ``processes`` processes in
    turn; a write every ``write_every`` reads. ``l1s``: each process has an L1;
    ``listen``: its listener handles every message before the next read."""
    for name, value in (("reads", reads), ("keys", keys), ("write_every", write_every),
                        ("processes", processes), ("seed", seed)):
        check_int(name, value)
    clock, server, db = FakeClock(), fakeredis.FakeServer(), Database()
    for user_id in range(1, keys + 1):
        db.add_user(user_id, "v0")
    clients = [CountingRedis(server=server, decode_responses=True)
               for _ in range(processes)]
    writer = fakeredis.FakeRedis(server=server, decode_responses=True)
    for client in clients:
        go_direct(client)  # the same replies, without RESP in between: faster
    caches = [L1(ttl=l1_ttl, timer=clock) for _ in range(processes)]
    listeners = ([Listener(c, l1) for c, l1 in zip(clients, caches, strict=True)]
                 if listen else [])
    db.reset_counts()
    written, stale = zipf_keys(reads // write_every + 1, keys, seed + 1), 0
    for n, user_id in enumerate(zipf_keys(reads, keys, seed)):
        if n and n % write_every == 0:
            update_user(writer, db, next(written), f"v{n}")  # UPDATE, DEL, PUBLISH
            for listener in listeners:
                listener.drain()  # (1)!
        clock.advance(tick)
        me = n % processes
        if l1s:
            got = get_user(caches[me], clients[me], db, user_id)
        else:
            got = production_pattern.get_user(clients[me], db, user_id)
        stale += got != db.conn.execute("SELECT name FROM users WHERE id = ?",
                                        (user_id,)).fetchone()[0]
    for listener in listeners:
        listener.close()
    return Tally(sum(c.commands for c in clients), db.reads, stale)
# --8<-- [end:workload]


def print_workload(**load: Any) -> None:
    """The workload three ways: Redis commands and DB queries the reads sent, and
    how many reads returned a replaced name."""
    print(f"{'':<26}{'Redis':>6} {'DB':>6} {'stale':>6}")
    for label, l1s, listen in (("Redis only", False, False),
                               ("L1 + pub/sub", True, True),
                               ("L1, TTL only", True, False)):
        print(f"{label:<26}{workload(l1s, listen, **load)}")


# The runs drawn on the page.
LABELS = {"W": "Writer", "A": "Reader in A", "M": "A's listener", "X": "Network"}


def draw(run: Run) -> str:
    """The run as a Mermaid diagram; the lease's script is called FILL, its token t1."""
    text = run.mermaid({name: LABELS[name] for name in run.returns})
    text = re.sub(r'EVAL ".*?" 2', "EVAL FILL 2", text)
    for number, token in enumerate(dict.fromkeys(re.findall(r'"([0-9a-f]{16})"',
                                                             text)), 1):
        text = text.replace(token, f"t{number}")
    return text


def replayed(scenario: str, read: Read, flush_on_connect: bool, schedule: str) -> Run:
    with worlds(flush_on_connect) as (make_cache, make_db):
        return replay(actors(scenario, read),
                      warm if scenario == "connection drops" else cold, schedule,
                      check=next_read_in_a(read), make_cache=make_cache,
                      make_db=make_db)


def late_fill() -> Run:
    """A reads "old" from Redis; the write and its message pass; A fills its L1."""
    return replayed("fill vs message", get_user_unguarded, False,
                    "A A A A A W W W M A")


def late_fill_diagram() -> str:
    return draw(late_fill())


def refused_fill() -> Run:
    """The same order with the placeholder: the message removes it, the fill fails."""
    return replayed("fill vs message", get_user, False, "A A A A A A W W W M A")


def refused_fill_diagram() -> str:
    return draw(refused_fill())


def lost_message() -> Run:
    """The connection drops before the PUBLISH: the message never reaches A."""
    return replayed("connection drops", get_user, False, "X W W W M")


def lost_message_diagram() -> str:
    return draw(lost_message())


def main() -> None:
    print("Every distinct schedule of a write, a read in process A and A's listener:")
    for label, read, flush in (("unguarded fill", get_user_unguarded, False),
                               ("placeholder + flush on connect", get_user, True)):
        for scenario in ("fill vs message", "connection drops"):
            result = explore_l1(scenario, read, flush)
            print(f"  {label:<31} {scenario:<17} "
                  f"{len(result.bad)} bad of {result.total}")
    print("Process B's L1 (TTL 5 s) after a write at t = 4 s that never reaches it:")
    for at, name in stale_window(5.0, 0.0, 4.0, [4.0, 4.999, 5.0]):
        print(f"  t = {at:g} s: {name}")


if __name__ == "__main__":
    main()
