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
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fakeredis
import greenlet

from snippets import lease
from snippets.backends import (
    Cache, Clock, FakeClock, check_int, check_number, make_cache, make_db,
)
from snippets.patterns import cache_aside
from snippets.scaling import (
    coalescing, mutex, singleflight, stale_while_revalidate, xfetch,
)
from snippets.scenarios import cache_agrees_with_db, user_not_cached
from snippets.simulation import (
    SimCache, SimDatabase, Simulation, fakeredis_on, percentile,
)

if TYPE_CHECKING:  # the explorer is loaded only by write_races, when it runs
    from snippets.explorer import Exploration

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
    dead_holder_ms: int = 0  # if > 0: at the expiry, a process takes the lease on the
    #                          key for this long, and dies without filling
# --8<-- [end:load]

    def __post_init__(self) -> None:
        for name in ("readers", "processes", "db_connections", "ttl"):
            check_int(name, getattr(self, name))
        for name in ("expiry", "period", "until", "cache_rtt", "db_latency"):
            check_number(name, getattr(self, name))  # seconds
        check_int("dead_holder_ms", self.dead_holder_ms, minimum=0)
        if not self.until > self.expiry:
            raise ValueError(
                f"until ({self.until}) must come after expiry ({self.expiry})")


Reader = Callable[[], "str | None"]
Strategy = Callable[[Simulation, Any, Any, Load, random.Random], Reader]


def _naive(sim: Simulation, cache: Any, db: Any, load: Load,
           rng: random.Random) -> Reader:
    return lambda: cache_aside.get_user(cache, db, 1, ttl=load.ttl)


def _lease(sim: Simulation, cache: Any, db: Any, load: Load,
           rng: random.Random) -> Reader:
    def row() -> str | None:
        rows = db.query("SELECT name FROM users WHERE id = 1")
        return rows[0][0] if rows else None

    return lambda: lease.read_through(cache, "user:1", row, load.ttl, sleep=sim.sleep)


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
                                          uniform=rng.random, sleep=sim.sleep)


def _swr(sim: Simulation, cache: Any, db: Any, load: Load,
         rng: random.Random) -> Reader:
    return lambda: stale_while_revalidate.get_user_swr(
        cache, db, 1, soft_ttl=load.ttl, hard_ttl=60 * load.ttl, clock=sim.clock,
        spawn=sim.spawn, sleep=sim.sleep)


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
    "lease": _lease,
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
    fills: int  # values written into the hot key: plain SETs, lease fills that landed
    p50: float  # latency of each reader's first read after the expiry, in seconds
    p99: float
    worst: float  # the slowest read of the whole run, before or after the expiry


class _Counted:
    """A process's Redis client that counts, on the shared ``tally``, the values it
    writes into the hot key: a plain SET of ``user:1``, or a lease fill that landed."""

    def __init__(self, cache: Any, tally: dict[str, list[float]], clock: Clock) -> None:
        self._cache, self._tally, self._clock = cache, tally, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    def set(self, key: str, *args: Any, **kwargs: Any) -> Any:
        if key == "user:1":
            self._tally["fills"].append(self._clock())
        return self._cache.set(key, *args, **kwargs)

    def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        sent = self._clock()
        result = self._cache.eval(script, numkeys, *args)
        if script == lease.FILL and result == 1:
            self._tally["fills"].append(sent)
        return result


class _QueriesOf:
    """The database, counting the queries each actor (greenlet) sends."""

    def __init__(self, db: SimDatabase) -> None:
        self.db, self.sent = db, Counter[Any]()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.sent[greenlet.getcurrent()] += 1
        return self.db.query(sql, params)

    def mine(self) -> int:
        return self.sent[greenlet.getcurrent()]


@dataclass(frozen=True)
class _Run:
    outcome: Outcome
    reads_by_start: list[tuple[float, int]]  # (when a read began, its DB queries)
    fill_times: list[float]  # when each fill was sent


def run_load(strategy: str, load: Load, reads_each: int | None = None,
         cold: bool = False) -> _Run:
    """Run ``load`` against one strategy; count DB reads and fills, time every read.
    ``cold``: the key is not cached at all, and every reader starts at t = 0;
    ``reads_each``: each reader reads that many times (else: until ``load.until``)."""
    if strategy not in STRATEGIES:
        raise LookupError(
            f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    sim, rng = Simulation(FakeClock(0.0)), random.Random(load.seed)
    server, db = fakeredis.FakeServer(), make_db()
    db.add_user(1, "Ada")
    timed_db = _QueriesOf(SimDatabase(sim, db, load.db_latency, load.db_connections))
    tally: dict[str, list[float]] = {"fills": []}
    reads_by_start: list[tuple[float, int]] = []
    first_after: dict[int, float] = {}
    worst = 0.0
    with fakeredis_on(sim.clock):
        clients = [fakeredis.FakeRedis(server=server, decode_responses=True,
                                       max_connections=10**6)
                   for _ in range(load.processes)]
        from snippets.explorer.direct import go_direct
        for client in clients:
            go_direct(client)  # the same replies, without RESP in between: faster
        if not cold:
            _prime(strategy, clients[0], load)
        if load.dead_holder_ms:
            sim.spawn(lambda: lease.take_lease(clients[0], "user:1",
                                               load.dead_holder_ms), at=load.expiry)
        subscribers: list = []  # shared by the clients of the one server
        readers = [STRATEGIES[strategy](
            sim, _Counted(SimCache(sim, client, load.cache_rtt, subscribers), tally,
                          sim.clock),
            timed_db, load, rng) for client in clients]

        def reader(i: int, start: float) -> Callable[[], None]:
            read = readers[i % load.processes]

            def run() -> None:
                nonlocal worst
                slot, done = start, 0
                while (slot < load.until if reads_each is None
                       else done < reads_each):
                    sim.sleep(max(0.0, slot - sim.clock()))
                    began, queries = sim.clock(), timed_db.mine()
                    if read() != "Ada":
                        raise AssertionError(f"reader {i} got a wrong value")
                    reads_by_start.append((began, timed_db.mine() - queries))
                    took = sim.clock() - began
                    worst, done = max(worst, took), done + 1
                    if (cold or began >= load.expiry) and i not in first_after:
                        first_after[i] = took
                    late = math.ceil((sim.clock() - slot) / load.period)
                    slot += load.period * max(1, late)

            return run

        for i in range(load.readers):  # starts spread evenly over the first period
            start = 0.0 if cold else (i + 0.5) * load.period / load.readers
            sim.spawn(reader(i, start), at=0.0)
        sim.run()
        for client in clients:
            client.close()
    latencies = list(first_after.values())
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    # Virtual times are sums of floats: round to the microsecond, far below any cost.
    outcome = Outcome(strategy, load.readers, load.processes, db.reads,
                      len(tally["fills"]), round(p50, 6), round(p99, 6),
                      round(worst, 6))
    return _Run(outcome, reads_by_start, tally["fills"])


@functools.cache  # a run is deterministic: each (strategy, load) is computed once
def simulate(strategy: str, load: Load = Load()) -> Outcome:
    """Run ``load`` against one strategy; count DB reads and fills, time every read."""
    return run_load(strategy, load).outcome


# --8<-- [start:cold]
def overlapping_misses(readers: int = 10) -> list[Outcome]:
    """``readers`` miss one cold key at once (all at t = 0, one read each, no
    writer), against each strategy: DB reads and fills."""
    load = Load(readers=check_int("readers", readers))
    return [run_load(name, load, reads_each=1, cold=True).outcome
            for name in STRATEGIES]
# --8<-- [end:cold]


# --8<-- [start:dead]
@dataclass(frozen=True)
class DeadHolder:
    strategy: str
    readers: int
    db_reads: int  # in the whole run, before the expiry too
    during: int  # made by reads that began while the dead holder's lease stood
    after: int  # made after it expired (by reads, or a background refresh)
    fills: int
    refilled: float | None  # when the first fill after the expiry landed, if any
    worst: float  # the slowest read, in seconds


def dead_holder(strategy: str, readers: int = 10, lease_ms: int = 500) -> DeadHolder:
    """The stampede load, and at the expiry a process takes the lease on the key for
    ``lease_ms`` and dies: count the DB reads, by when the read that made them began.
    """
    expiry = Load().expiry
    lease_ends = expiry + check_int("lease_ms", lease_ms) / 1000
    load = Load(readers=readers, dead_holder_ms=lease_ms, until=lease_ends + 0.5)
    run = run_load(strategy, load)
    before = sum(n for began, n in run.reads_by_start if began < expiry)
    during = sum(n for began, n in run.reads_by_start if expiry <= began < lease_ends)
    refilled = min((t for t in run.fill_times if t >= expiry), default=None)
    return DeadHolder(strategy, readers, run.outcome.db_reads, during,
                      run.outcome.db_reads - before - during, run.outcome.fills,
                      None if refilled is None else round(refilled, 6),
                      run.outcome.worst)


def print_dead(rows: Sequence[DeadHolder]) -> None:
    print(f"{'strategy':<23} {'DB reads':>8} {'during':>6} {'after':>5} {'fills':>5}"
          f" {'refilled at s':>13} {'worst ms':>8}")
    for r in rows:
        refilled = "-" if r.refilled is None else f"{r.refilled:.3f}"
        print(f"{r.strategy:<23} {r.db_reads:>8} {r.during:>6} {r.after:>5}"
              f" {r.fills:>5} {refilled:>13} {r.worst * 1000:>8.1f}")
# --8<-- [end:dead]


# --8<-- [start:races]
def write_races() -> list[tuple[str, Exploration, Exploration]]:
    """Each cure's read racing a cache-aside write, in every interleaving: with a
    plain SET as its fill, and with the lease's fill."""
    reads: list[tuple[str, Any, Any, Any]] = [
        ("mutex", mutex.mutex_read, user_not_cached, cache_agrees_with_db),
        ("singleflight", singleflight.singleflight_read, user_not_cached,
         cache_agrees_with_db),
        ("coalescing", coalescing.coalesced_read, user_not_cached,
         cache_agrees_with_db),
        ("XFetch", xfetch.xfetch_read, xfetch.entry_cached,
         xfetch.entry_agrees_with_db),
        ("stale-while-revalidate", stale_while_revalidate.swr_read,
         stale_while_revalidate.stale_entry_cached,
         stale_while_revalidate.entry_agrees_with_db),
    ]
    return [(name,
             mutex.race_with_a_write(read, True, setup=setup, check=check),
             mutex.race_with_a_write(read, False, setup=setup, check=check))
            for name, read, setup, check in reads]
# --8<-- [end:races]


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
    print(f"{'strategy':<23} {'readers':>7} {'DB reads':>8} {'fills':>5}"
          f" {'p50 ms':>7} {'p99 ms':>7} {'worst ms':>8}")
    for r in rows:
        print(f"{r.strategy:<23} {r.readers:>7} {r.db_reads:>8} {r.fills:>5}"
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
