"""Cache stampede: a hot key expires and every concurrent reader goes to the database.

This module reproduces it, and compares the cures under the same load: ``simulate``
runs the real code of each cure (the functions the other pages show) in the
virtual-time world of ``snippets.simulation``, where every reader is a greenlet, the
cache is fakeredis on a virtual clock and the database sits behind a pool of a few
connections. So the table is exact and identical on every run and every machine.

Run it: ``python -m snippets.scaling.stampede`` (the narration) or
``python -m snippets.scaling.stampede --bench`` (the table, N = 10, 100, 1000).
"""

from __future__ import annotations

# --8<-- [start:imports]
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fakeredis

from snippets.backends import (
    Cache, FakeClock, check_int, check_number, make_cache, make_db,
)
from snippets.patterns import cache_aside
from snippets.scaling import (
    coalescing, mutex, singleflight, stale_while_revalidate, xfetch,
)
from snippets.simulation import (
    SimCache, SimDatabase, Simulation, fakeredis_on, percentile,
)

# --8<-- [end:imports]


# --- The load: N readers of one hot key that expires ---------------------------------
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
            check_int(name, getattr(self, name))
        for name in ("expiry", "period", "until", "cache_rtt", "db_latency"):
            check_number(name, getattr(self, name))  # seconds
        if not self.until > self.expiry:
            raise ValueError(
                f"until ({self.until}) must come after expiry ({self.expiry})")


Reader = Callable[[], "str | None"]
Strategy = Callable[[Simulation, Any, Any, Load, random.Random], Reader]


def _naive(sim: Simulation, cache: Any, db: Any, load: Load,
           rng: random.Random) -> Reader:
    return lambda: cache_aside.get_user(cache, db, 1, ttl=load.ttl)


def _mutex(sim: Simulation, cache: Any, db: Any, load: Load,
           rng: random.Random) -> Reader:
    return lambda: mutex.get_user_locked(cache, db, 1, ttl=load.ttl, sleep=sim.sleep)


def _singleflight(sim: Simulation, cache: Any, db: Any, load: Load,
                  rng: random.Random) -> Reader:
    group = singleflight.Singleflight(new_event=sim.event)  # one group per process
    return lambda: singleflight.get_user_once(cache, db, group, 1, ttl=load.ttl)


def _coalescing(sim: Simulation, cache: Any, db: Any, load: Load,
                rng: random.Random) -> Reader:
    return lambda: coalescing.get_user_coalesced(cache, db, 1, ttl=load.ttl,
                                                 clock=sim.clock)


def _xfetch(sim: Simulation, cache: Any, db: Any, load: Load,
            rng: random.Random) -> Reader:
    return lambda: xfetch.get_user_xfetch(cache, db, 1, ttl=load.ttl, clock=sim.clock,
                                          uniform=rng.random)


def _swr(sim: Simulation, cache: Any, db: Any, load: Load,
         rng: random.Random) -> Reader:
    return lambda: stale_while_revalidate.get_user_swr(
        cache, db, 1, soft_ttl=load.ttl, hard_ttl=60 * load.ttl, clock=sim.clock,
        spawn=sim.spawn)


def _prime(name: str, cache: Cache, load: Load) -> None:
    """The hot key as each strategy stores it, written at t=0, expiring at
    ``load.expiry``."""
    if name == "XFetch":
        xfetch.store_entry(cache, "user:1", "Ada", load.db_latency, load.expiry,
                           now=0.0)
    elif name == "stale-while-revalidate":  # soft expiry then; the key itself lives on
        stale_while_revalidate.store_entry(cache, "user:1", "Ada", load.expiry,
                                           60 * load.ttl)
    else:
        cache.set("user:1", "Ada", px=round(load.expiry * 1000))


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


def simulate(strategy: str, load: Load = Load()) -> Outcome:
    """Run ``load`` against one strategy; count DB reads and time every read."""
    if strategy not in STRATEGIES:
        raise LookupError(
            f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    sim, rng = Simulation(FakeClock(0.0)), random.Random(load.seed)
    server, db = fakeredis.FakeServer(), make_db()
    db.add_user(1, "Ada")
    timed_db = SimDatabase(sim, db, load.db_latency, load.db_connections)
    first_after: dict[int, float] = {}
    worst = 0.0
    with fakeredis_on(sim.clock):
        clients = [fakeredis.FakeRedis(server=server, decode_responses=True,
                                       max_connections=10**6)
                   for _ in range(load.processes)]
        _prime(strategy, clients[0], load)
        subscribers: list = []  # shared by the clients of the one server
        readers = [STRATEGIES[strategy](sim, SimCache(sim, client, load.cache_rtt,
                                                      subscribers),
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
                    late = math.ceil((sim.clock() - slot) / load.period)
                    slot += load.period * max(1, late)

            return run

        for i in range(load.readers):  # starts spread evenly over the first period
            sim.spawn(reader(i, (i + 0.5) * load.period / load.readers), at=0.0)
        sim.run()
        for client in clients:
            client.close()
    latencies = list(first_after.values())
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    # Virtual times are sums of floats: round to the microsecond, far below any cost.
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
        print(f"{r.strategy:<23} {r.readers:>7} {r.db_reads:>8}"
              f" {r.p50 * 1000:>7.1f} {r.p99 * 1000:>7.1f} {r.worst * 1000:>8.1f}")
# --8<-- [end:table]


# --8<-- [start:stampede]
def naive_stampede(n: int) -> int:
    """``n`` readers miss one expired key before any refills it: count DB reads.

    Each runs the cache-aside read path, in steps: all ``n`` GETs first (the key
    has just expired, so all miss), then their DB reads, then their SETs.
    """
    check_int("n", n)
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
        print("Simulated on virtual time (snippets/simulation.py): see Load in"
              " snippets/scaling/stampede.py for what is modelled.")
        print_table(stampede_table((10, 100, 1000)))
        return
    print("10 readers miss one expired key at once   -> DB reads:",
          naive_stampede(10))
    print("1000 readers miss one expired key at once -> DB reads:",
          naive_stampede(1000))
    for row in stampede_table((100,)):
        print(f"{row.strategy:<23} 100 readers -> DB reads: {row.db_reads}")


if __name__ == "__main__":
    main(sys.argv[1:])
