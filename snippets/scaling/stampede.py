"""Cache stampede: a hot key expires and every concurrent reader goes to the database.

This module reproduces it, and compares the cures under the same load with a discrete-event
simulation on virtual time that runs the real code of each cure:

- every reader is a greenlet (a function with its own stack); exactly one runs at a time,
  until it waits: for a cache round trip, a database query, a backoff sleep, an event or a
  pub/sub message;
- fakeredis is the cache, its clock pointed at the virtual clock, so keys and locks expire
  in virtual time; the database is SQLite behind a pool of a few connections;
- so the table is exact and identical on every run and every machine.

Run it: ``python -m snippets.scaling.stampede`` (the narration) or
``python -m snippets.scaling.stampede --bench`` (the table, N = 10, 100, 1000).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fakeredis
import fakeredis._socket._base as fakeredis_base
import greenlet

from snippets.patterns import cache_aside
from snippets.scaling import coalescing
from snippets.scaling import mutex
from snippets.scaling import singleflight
from snippets.scaling import stale_while_revalidate
from snippets.scaling import xfetch
from snippets.backends import Cache, Database, FakeClock, make_cache, make_db


# --- The simulation: actors on virtual time, one at a time ----------------------------------
class _Stopped(BaseException):
    """Unwinds an actor that the simulation abandons (after an error or a deadlock)."""


class _Wake:
    """One pending wake-up of an actor; the first of its heap entries to come due wins."""

    def __init__(self, actor: greenlet.greenlet) -> None:
        self.actor, self.fired, self.by_signal = actor, False, False


class Simulation:
    """A discrete-event simulation whose actors are ordinary blocking Python functions.

    Each actor is a greenlet: a function with its own stack that runs until it waits.
    ``spawn(fn, at)`` starts one at virtual time ``at``. Inside an actor, ``sleep``,
    ``SimEvent.wait`` and ``SimPool.acquire`` hand the turn back to the scheduler, which
    wakes the actor due first (ties: first scheduled) and moves the clock to its time.
    Nothing runs in parallel, so a run is the same on every machine.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.errors: list[BaseException] = []
        self.stopped = False
        self._hub = greenlet.getcurrent()  # the scheduler runs where the simulation was made
        self._heap: list[tuple[float, int, _Wake]] = []
        self._seq = itertools.count()
        self._actors: list[greenlet.greenlet] = []

    def spawn(self, fn: Callable[[], None], at: float | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"an actor must be a function, got {fn!r}")
        if at is not None and not at >= self.clock():
            raise ValueError(f"cannot start an actor in the past: at={at!r}, now={self.clock()}")
        def body() -> None:
            try:
                fn()
            except _Stopped:
                pass
            except BaseException as error:  # reported by run(), which stops everything
                self.errors.append(error)

        actor = greenlet.greenlet(body, parent=self._hub)
        self._actors.append(actor)
        self._push(_Wake(actor), self.clock() if at is None else at)

    def sleep(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"cannot sleep {seconds!r} seconds")
        actor = self._me()
        self._push(_Wake(actor), self.clock() + seconds)
        self._switch()

    def run(self) -> None:
        """Run until no actor can move; re-raise the first error an actor raised."""
        if greenlet.getcurrent() is not self._hub:
            raise RuntimeError("run() must be called where the Simulation was created")
        try:
            while self._heap and not self.errors:
                at, _, wake = heapq.heappop(self._heap)
                if wake.fired or wake.actor.dead:
                    continue
                wake.fired = True
                self.clock.now = max(self.clock.now, at)
                wake.actor.switch()  # runs the actor until it waits or ends
            stuck = sum(bool(actor) for actor in self._actors)  # started and not finished
            if stuck and not self.errors:
                raise RuntimeError(f"deadlock: {stuck} actors wait for something that never comes")
        finally:
            self.stopped = True
            for actor in self._actors:
                if actor:
                    actor.throw(_Stopped)
        if self.errors:
            raise self.errors[0]

    def _me(self) -> greenlet.greenlet:
        actor = greenlet.getcurrent()
        if actor is self._hub or actor.parent is not self._hub:
            raise RuntimeError("only a simulated actor can wait in virtual time")
        return actor

    def _push(self, wake: _Wake, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), wake))

    def _switch(self) -> None:
        if self.stopped:
            raise _Stopped
        self._hub.switch()
        if self.stopped:
            raise _Stopped

    def _wait(self, waiters: list[_Wake], timeout: float | None) -> bool:
        wake = _Wake(self._me())
        waiters.append(wake)
        if timeout is not None:
            self._push(wake, self.clock() + max(0.0, timeout))
        self._switch()
        return wake.by_signal

    def _signal(self, waiters: list[_Wake]) -> None:
        for wake in waiters:
            if not wake.fired:
                wake.by_signal = True
                self._push(wake, self.clock())
        waiters.clear()

    def event(self) -> SimEvent:
        return SimEvent(self)


class SimEvent:
    """threading.Event on virtual time."""

    def __init__(self, sim: Simulation) -> None:
        self.sim, self.flag, self.waiters = sim, False, []

    def set(self) -> None:
        self.flag = True
        self.sim._signal(self.waiters)

    def clear(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        return True if self.flag else self.sim._wait(self.waiters, timeout)


class SimPool:
    """A pool of ``size`` connections on virtual time; waiters are served first come first."""

    def __init__(self, sim: Simulation, size: int) -> None:
        self.sim, self.free, self.queue = sim, size, deque()

    def acquire(self) -> None:
        if self.free > 0 and not self.queue:
            self.free -= 1
            return
        waiters: list[_Wake] = []
        self.queue.append(waiters)
        self.sim._wait(waiters, None)  # the releaser hands its connection over

    def release(self) -> None:
        if self.queue:
            self.sim._signal(self.queue.popleft())
        else:
            self.free += 1


@contextmanager
def fakeredis_on(clock: Callable[[], float]) -> Iterator[None]:
    """Make fakeredis read the time from ``clock``: its keys then expire in virtual time.

    fakeredis stamps every command with ``time.time()`` from one module; inside this block
    that module sees a ``time`` whose ``time()`` is the virtual clock.
    """

    class VirtualTime:
        def __getattr__(self, name: str) -> Any:
            return clock if name == "time" else getattr(time, name)

    real = fakeredis_base.time
    fakeredis_base.time = VirtualTime()  # type: ignore[assignment]
    try:
        yield
    finally:
        fakeredis_base.time = real


class SimCache:
    """A Redis client whose every command costs one round trip of virtual time.

    A command takes effect when it is sent; the caller resumes one ``rtt`` later.
    """

    def __init__(self, sim: Simulation, client: Cache, rtt: float, subscribers: list) -> None:
        self._sim, self._client, self._rtt, self._subscribers = sim, client, rtt, subscribers

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def command(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if name == "publish":
                for pubsub in self._subscribers:
                    pubsub.mail.set()  # wake listeners; each delivery costs half a round trip
            self._sim.sleep(self._rtt)
            return result

        return command

    def pubsub(self, ignore_subscribe_messages: bool = False) -> SimPubSub:
        return SimPubSub(self, ignore_subscribe_messages)


class SimPubSub:
    """redis-py's PubSub, with ``get_message(timeout)`` waiting in virtual time."""

    def __init__(self, cache: SimCache, ignore_subscribe_messages: bool) -> None:
        self.cache, self.ignore = cache, ignore_subscribe_messages
        self.real = cache._client.pubsub()
        self.mail = cache._sim.event()
        cache._subscribers.append(self)

    def subscribe(self, *channels: str) -> None:
        self.real.subscribe(*channels)
        self.cache._sim.sleep(self.cache._rtt)

    def get_message(self, timeout: float = 0.0) -> dict | None:
        sim = self.cache._sim
        deadline = sim.clock() + timeout
        while True:
            self.mail.clear()
            message = self.real.get_message(timeout=0)  # only what has already arrived
            if message is not None:
                if self.ignore and message["type"] in ("subscribe", "unsubscribe"):
                    continue
                sim.sleep(self.cache._rtt / 2)  # the message's trip to us
                return message
            if not self.mail.wait(deadline - sim.clock()) or sim.clock() >= deadline:
                return None

    def close(self) -> None:
        self.cache._subscribers.remove(self)
        self.real.close()


class SimDatabase:
    """The Database behind a pool of ``connections``: each query holds one for ``latency``."""

    def __init__(self, sim: Simulation, db: Database, latency: float, connections: int) -> None:
        self.sim, self.db, self.latency = sim, db, latency
        self.pool = SimPool(sim, connections)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.pool.acquire()
        try:
            self.sim.sleep(self.latency)
            return self.db.query(sql, params)
        finally:
            self.pool.release()


# --- The load: N readers of one hot key that expires ---------------------------------------
# --8<-- [start:load]
@dataclass(frozen=True)
class Load:
    """What is modelled. Times in seconds of virtual time."""

    readers: int = 100
    processes: int = 1  # readers spread round-robin over this many processes
    expiry: float = 0.5  # the hot key expires at this time
    period: float = 0.05  # each reader reads the key every `period` seconds...
    until: float = 0.75  # ...from a start spread over the first period, until this time
    cache_rtt: float = 0.001  # one round trip to Redis
    db_latency: float = 0.05  # one query
    db_connections: int = 10  # queries the DB serves at once; the others queue
    ttl: int = 10  # TTL of a reloaded value: it does not expire again during the run
    seed: int = 1  # for XFetch's random draws
# --8<-- [end:load]

    def __post_init__(self) -> None:
        for name in ("readers", "processes", "db_connections", "ttl"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number, at least 1, got {value!r}")
        for name in ("expiry", "period", "until", "cache_rtt", "db_latency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not self.until > self.expiry:
            raise ValueError(f"until ({self.until}) must come after expiry ({self.expiry})")


Reader = Callable[[], "str | None"]
Strategy = Callable[[Simulation, Any, Any, Load, random.Random], Reader]


def _naive(sim: Simulation, cache: Any, db: Any, load: Load, rng: random.Random) -> Reader:
    return lambda: cache_aside.get_user(cache, db, 1, ttl=load.ttl)


def _mutex(sim: Simulation, cache: Any, db: Any, load: Load, rng: random.Random) -> Reader:
    return lambda: mutex.get_user_locked(cache, db, 1, ttl=load.ttl, sleep=sim.sleep)


def _singleflight(sim: Simulation, cache: Any, db: Any, load: Load, rng: random.Random) -> Reader:
    group = singleflight.Singleflight(new_event=sim.event)  # one group per process
    return lambda: singleflight.get_user_once(cache, db, group, 1, ttl=load.ttl)


def _coalescing(sim: Simulation, cache: Any, db: Any, load: Load, rng: random.Random) -> Reader:
    return lambda: coalescing.get_user_coalesced(cache, db, 1, ttl=load.ttl, clock=sim.clock)


def _xfetch(sim: Simulation, cache: Any, db: Any, load: Load, rng: random.Random) -> Reader:
    return lambda: xfetch.get_user_xfetch(cache, db, 1, ttl=load.ttl, clock=sim.clock,
                                          uniform=rng.random)


def _swr(sim: Simulation, cache: Any, db: Any, load: Load, rng: random.Random) -> Reader:
    return lambda: stale_while_revalidate.get_user_swr(
        cache, db, 1, soft_ttl=load.ttl, hard_ttl=60 * load.ttl, clock=sim.clock, spawn=sim.spawn)


def _prime(name: str, cache: Cache, load: Load) -> None:
    """The hot key as each strategy stores it, written at t=0, expiring at ``load.expiry``."""
    px = round(load.expiry * 1000)
    if name == "XFetch":
        xfetch.store_entry(cache, "user:1", "Ada", load.db_latency, load.expiry, now=0.0)
    elif name == "stale-while-revalidate":  # soft expiry then; the key itself lives on
        stale_while_revalidate.store_entry(cache, "user:1", "Ada", load.expiry, 60 * load.ttl)
    else:
        cache.set("user:1", "Ada", px=px)


STRATEGIES: dict[str, Strategy] = {
    "naive": _naive,
    "mutex": _mutex,
    "singleflight": _singleflight,
    "coalescing": _coalescing,
    "XFetch": _xfetch,
    "stale-while-revalidate": _swr,
}


@dataclass(frozen=True)
class Outcome:
    strategy: str
    readers: int
    processes: int
    db_reads: int
    p50: float  # latency of each reader's first read after the expiry, in seconds
    p99: float
    worst: float  # the slowest read of the whole run, before or after the expiry


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below."""
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p!r}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def simulate(strategy: str, load: Load = Load()) -> Outcome:
    """Run ``load`` against one strategy; count DB reads and time every read."""
    if strategy not in STRATEGIES:
        raise LookupError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    sim, rng, server = Simulation(FakeClock(0.0)), random.Random(load.seed), fakeredis.FakeServer()
    db = make_db()
    db.add_user(1, "Ada")
    timed_db = SimDatabase(sim, db, load.db_latency, load.db_connections)
    first_after: dict[int, float] = {}
    worst = 0.0
    with fakeredis_on(sim.clock):
        clients = [fakeredis.FakeRedis(server=server, decode_responses=True, max_connections=10**6)
                   for _ in range(load.processes)]
        _prime(strategy, clients[0], load)
        subscribers: list = []
        readers = [STRATEGIES[strategy](sim, SimCache(sim, client, load.cache_rtt, subscribers),
                                        timed_db, load, rng) for client in clients]

        def reader(i: int, start: float) -> Callable[[], None]:
            read = readers[i % load.processes]

            def run() -> None:
                nonlocal worst
                slot = start
                while slot < load.until:
                    sim.sleep(max(0.0, slot - sim.clock()))
                    began = sim.clock()
                    if read() != "Ada":
                        raise AssertionError(f"reader {i} got a wrong value")
                    took = sim.clock() - began
                    worst = max(worst, took)
                    if began >= load.expiry and i not in first_after:
                        first_after[i] = took
                    slot += load.period * max(1, math.ceil((sim.clock() - slot) / load.period))

            return run

        for i in range(load.readers):  # starts spread evenly over the first period
            sim.spawn(reader(i, (i + 0.5) * load.period / load.readers), at=0.0)
        sim.run()
        for client in clients:
            client.close()
    latencies = list(first_after.values())
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    # Virtual times are sums of floats: round to the microsecond, far below any modelled cost.
    return Outcome(strategy, load.readers, load.processes, db.reads,
                   round(p50, 6), round(p99, 6), round(worst, 6))


# --8<-- [start:table]
def stampede_table(
    ns: Sequence[int] = (10, 100, 1000), processes: int = 1
) -> list[Outcome]:
    """DB reads and reader latency per strategy, for each number of readers."""
    if not ns:
        raise ValueError("ns must name at least one number of readers")
    loads = [Load(readers=n, processes=processes) for n in ns]  # checks every n
    return [simulate(name, load) for load in loads for name in STRATEGIES]


def print_table(rows: Sequence[Outcome]) -> None:
    print(f"{'strategy':<23} {'readers':>7} {'DB reads':>8}"
          f" {'p50 ms':>7} {'p99 ms':>7} {'worst ms':>8}")
    for r in rows:
        print(f"{r.strategy:<23} {r.readers:>7} {r.db_reads:>8} {r.p50 * 1000:>7.1f}"
              f" {r.p99 * 1000:>7.1f} {r.worst * 1000:>8.1f}")
# --8<-- [end:table]


# --8<-- [start:stampede]
def naive_stampede(n: int) -> int:
    """``n`` readers miss one expired key before any refills it: count DB reads.

    Each runs the cache-aside read path, in steps: all ``n`` GETs first (the key
    has just expired, so all miss), then their DB reads, then their SETs.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of readers, at least 1, got {n!r}")

    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")
    misses = [cache.get("user:1") is None for _ in range(n)]  # step 1: all GET
    sql = "SELECT name FROM users WHERE id = 1"
    names = [db.query(sql)[0][0] for missed in misses if missed]  # step 2: all read
    for name in names:  # step 3: every reader SETs the same value
        cache.set("user:1", name, ex=300)
    return db.reads
# --8<-- [end:stampede]


def main(argv: Sequence[str] = ()) -> None:
    if "--bench" in argv:
        print("Simulated on virtual time: see Load in snippets/scaling/stampede.py for what is modelled.")
        print_table(stampede_table((10, 100, 1000)))
        return
    print(f"10 readers miss one expired key at once   -> DB reads: {naive_stampede(10)}")
    print(f"1000 readers miss one expired key at once -> DB reads: {naive_stampede(1000)}")
    for row in stampede_table((100,)):
        print(f"{row.strategy:<23} 100 readers -> DB reads: {row.db_reads}")


if __name__ == "__main__":
    main(sys.argv[1:])
