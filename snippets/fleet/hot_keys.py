"""Hot keys: one key read thousands of times a second, by every process of a fleet.

Three ways to take the load, measured under the same traffic in the virtual-time world
of ``snippets.simulation`` (every request a greenlet, fakeredis on a virtual clock, the
database behind a pool of connections), with a write now and then:

- the kit's lease: after a write, one reader reloads and the others wait for it;
- a short in-process L1 (a ``cachetools.TTLCache`` per process) in front of Redis;
- the value split into copies under several keys, each reader picking one.

For each: DB queries and Redis commands per second, the load on the busiest key, and
the stale window each adds. The L1's stale read is also replayed by the explorer.

Run it: ``python -m snippets.fleet.hot_keys``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import functools
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cachetools
import fakeredis

from snippets import lease
from snippets.backends import (
    Cache, Clock, Database, FakeClock, check_int, check_name, check_number, make_db,
    make_fake_cache,
)
from snippets.explorer import Exploration, Run, explore, replay
from snippets.patterns import cache_aside
from snippets.simulation import SimCache, SimDatabase, Simulation, fakeredis_on
# --8<-- [end:imports]

Load = Callable[[], "str | None"]  # reads the value from the database


# --8<-- [start:l1]
def make_l1(ttl: float, clock: Clock, maxsize: int = 10_000) -> cachetools.TTLCache:
    """A process's own cache: entries live ``ttl`` seconds, whatever happens to the
    database meanwhile."""
    return cachetools.TTLCache(maxsize=check_int("maxsize", maxsize),
                               ttl=check_number("ttl", ttl), timer=clock)


def read_with_l1(l1: cachetools.TTLCache, cache: Cache, key: str, load: Load,
                 ttl: int, *, sleep: Callable[[float], object]) -> str | None:
    """The process's copy if it has one; else Redis, through the kit's lease."""
    value: str | None = l1.get(key)
    if value is None:
        value = lease.read_through(cache, key, load, ttl, sleep=sleep)
        if value is not None:
            l1[key] = value  # (1)!
    return value
# --8<-- [end:l1]


# --8<-- [start:copies]
def copy_keys(key: str, copies: int) -> list[str]:
    """``user:1#0`` ... ``user:1#7``: different names, so different hash slots, so (in
    a Redis Cluster) different shards share the load."""
    check_name(key)
    if check_int("copies", copies) == 1:
        return [key]
    return [f"{key}#{copy}" for copy in range(copies)]


def read_a_copy(cache: Cache, key: str, copies: int, pick: Callable[[int], int],
                load: Load, ttl: int, *,
                sleep: Callable[[float], object]) -> str | None:
    """Read one copy, chosen by ``pick(copies)``; each copy fills through its own
    lease, so a write costs one DB read per copy."""
    return lease.read_through(cache, copy_keys(key, copies)[pick(copies)], load, ttl,
                              sleep=sleep)


def invalidate_copies(cache: Cache, key: str, copies: int) -> int:
    """After the commit: delete every copy and its lease. One DEL per copy (the
    copies live in different slots, which one multi-key DEL cannot span); return
    how many DELs were sent."""
    names = copy_keys(key, copies)
    for name in names:
        lease.invalidate(cache, name)  # (1)!
    return len(names)
# --8<-- [end:copies]


# --8<-- [start:load]
@dataclass(frozen=True)
class Traffic:
    """What is modelled. Times in seconds of virtual time."""

    rate: int = 2000  # reads of the hot key per second, all processes together...
    seconds: float = 1.0  # ...evenly spaced over this long
    processes: int = 4  # read number i runs in process i % processes
    write_every: float = 0.25  # a write renames the user this often (first at half)
    cache_rtt: float = 0.001  # one Redis round trip
    db_latency: float = 0.05  # one query, read or write
    db_connections: int = 10  # queries the DB serves at once; the others queue
    ttl: int = 300  # Redis TTL: nothing expires during the run
    seed: int = 1  # for the copy each read picks


@dataclass(frozen=True)
class Option:
    """One way to serve the hot key."""

    name: str
    use_lease: bool = True  # fill through the kit's lease; False: plain cache-aside
    l1_ttl: float = 0.0  # > 0: an L1 per process, entries living this long
    copies: int = 1  # > 1: the value is kept under this many keys

    def __post_init__(self) -> None:
        check_name(self.name)
        check_int("copies", self.copies)
        if self.l1_ttl:
            check_number("l1_ttl", self.l1_ttl)
        if not self.use_lease and (self.l1_ttl or self.copies > 1):
            raise ValueError("the L1 and the copies are modelled with the lease only")


OPTIONS = (
    Option("cache-aside", use_lease=False),
    Option("lease"),
    Option("L1 100 ms + lease", l1_ttl=0.1),
    Option("L1 500 ms + lease", l1_ttl=0.5),
    Option("8 copies + lease", copies=8),
)
# --8<-- [end:load]


def _check(traffic: Traffic) -> Traffic:
    for name in ("rate", "processes", "db_connections", "ttl"):
        check_int(name, getattr(traffic, name))
    for name in ("seconds", "write_every", "cache_rtt", "db_latency"):
        check_number(name, getattr(traffic, name))
    return traffic


@dataclass(frozen=True)
class Outcome:
    option: str
    seconds: float
    db_reads: int
    redis_commands: int
    per_key: dict[str, int]  # Redis commands per copy (a lease counts with its key)
    writes: int
    dels: int  # DEL commands the writes sent
    stale_reads: int  # reads that began after a commit and returned an older value
    stale_for: float  # the longest such: time since the commit they missed
    worst: float  # the slowest read, in seconds

    @property
    def busiest(self) -> int:
        return max(self.per_key.values())


class _Counting:
    """A process's Redis client that counts, on a shared Counter, the commands sent
    for each key (a key's lease counts as the key)."""

    def __init__(self, client: Cache, counts: Counter[str]) -> None:
        self._client, self._counts = client, counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)

        def command(*args: Any, **kwargs: Any) -> Any:
            key = str(args[2] if name == "eval" else args[0])
            self._counts[re.sub(r"^\{(.*)\}:lease$", r"\1", key)] += 1
            return attr(*args, **kwargs)

        return command


@functools.cache  # a run is deterministic: each (option, traffic) is computed once
def simulate(option: Option, traffic: Traffic = Traffic()) -> Outcome:
    """Run ``traffic`` against one option and count what it cost."""
    _check(traffic)
    sim, rng = Simulation(FakeClock(0.0)), random.Random(traffic.seed)
    server, db = fakeredis.FakeServer(), make_db()
    db.add_user(1, "v0")
    sim_db = SimDatabase(sim, db, traffic.db_latency, traffic.db_connections)
    counts: Counter[str] = Counter()
    commits = [0.0]  # commits[k]: when "v{k}" was committed
    reads: list[tuple[float, int]] = []  # (when a read began, the version it returned)
    took: list[float] = []
    dels = [0]

    def load() -> str | None:
        rows = sim_db.query("SELECT name FROM users WHERE id = 1")
        return str(rows[0][0]) if rows else None

    with fakeredis_on(sim.clock):
        clients = [fakeredis.FakeRedis(server=server, decode_responses=True)
                   for _ in range(traffic.processes)]
        for key in copy_keys("user:1", option.copies):  # a warm cache at t = 0
            clients[0].set(key, "v0", ex=traffic.ttl)
        subscribers: list = []
        counted: list[Any] = [_Counting(client, counts) for client in clients]
        caches: list[Any] = [SimCache(sim, client, traffic.cache_rtt, subscribers)
                             for client in counted]
        l1s = [make_l1(option.l1_ttl, sim.clock) if option.l1_ttl else None
               for _ in clients]

        def read(process: int) -> str | None:
            cache, l1 = caches[process], l1s[process]
            if not option.use_lease:
                return cache_aside.get_user(cache, sim_db, 1, ttl=traffic.ttl)  # type: ignore[arg-type]
            if l1 is not None:
                return read_with_l1(l1, cache, "user:1", load, traffic.ttl,
                                    sleep=sim.sleep)
            return read_a_copy(cache, "user:1", option.copies, rng.randrange, load,
                               traffic.ttl, sleep=sim.sleep)

        def request(i: int) -> Callable[[], None]:
            def run() -> None:
                began = sim.clock()
                name = read(i % traffic.processes)
                reads.append((began, int(str(name).removeprefix("v"))))
                took.append(sim.clock() - began)
            return run

        def writer() -> None:
            at, version = traffic.write_every / 2, 1
            while at < traffic.seconds:
                sim.sleep(at - sim.clock())
                sim.sleep(traffic.db_latency)  # the UPDATE's query
                db.execute("UPDATE users SET name = ? WHERE id = 1", (f"v{version}",))
                commits.append(sim.clock())
                dels[0] += invalidate_copies(caches[0], "user:1", option.copies)
                at, version = at + traffic.write_every, version + 1

        total = round(traffic.rate * traffic.seconds)
        for i in range(total):
            sim.spawn(request(i), at=i / traffic.rate)
        sim.spawn(writer, at=0.0)
        sim.run()
    stale = [began - commits[version + 1] for began, version in reads
             if version + 1 < len(commits) and commits[version + 1] <= began]
    per_key = {key: counts[key] for key in copy_keys("user:1", option.copies)}
    return Outcome(option.name, traffic.seconds, db.reads, sum(counts.values()),
                   per_key, len(commits) - 1, dels[0], len(stale),
                   round(max(stale, default=0.0), 6), round(max(took), 6))


# --8<-- [start:table]
def hot_key_table(traffic: Traffic = Traffic(),
                  options: Sequence[Option] = OPTIONS) -> list[Outcome]:
    """Every option under the same traffic."""
    if not options:
        raise ValueError("options must name at least one option")
    return [simulate(option, traffic) for option in options]


def print_table(rows: Sequence[Outcome]) -> None:
    print(f"{'option':<18} {'DB reads/s':>10} {'Redis/s':>7} {'busiest key/s':>13}"
          f" {'DELs/write':>10} {'stale reads':>11} {'stale for':>9}"
          f" {'worst read':>10}")
    for r in rows:
        per_s = 1 / r.seconds
        print(f"{r.option:<18} {r.db_reads * per_s:>10.0f}"
              f" {r.redis_commands * per_s:>7.0f} {r.busiest * per_s:>13.0f}"
              f" {r.dels / r.writes:>10.0f} {r.stale_reads:>11}"
              f" {r.stale_for * 1000:>6.0f} ms {r.worst * 1000:>7.0f} ms")
# --8<-- [end:table]


# --- The L1's stale read, replayed ----------------------------------------------------
# --8<-- [start:race]
class L1Process:
    """One process with an L1 of ``l1_ttl`` seconds, on a clock of its own that the
    explorer never moves (so every step happens at the same instant)."""

    def __init__(self, l1_ttl: float = 1.0) -> None:
        self.clock = FakeClock()
        self.l1 = make_l1(l1_ttl, self.clock)

    def read(self, cache: Cache, db: Database) -> str | None:
        def load() -> str:
            return str(db.query("SELECT name FROM users WHERE id = 1")[0][0])
        return read_with_l1(self.l1, cache, "user:1", load, 300, sleep=_no_wait)


def update_user(cache: Cache, db: Database) -> None:
    """The write path: UPDATE, then delete the key and its lease. No process's L1
    hears of it."""
    db.execute("UPDATE users SET name = 'new' WHERE id = 1")
    lease.invalidate(cache, "user:1")


def _no_wait(seconds: float) -> None:
    """The explorer needs no wait: a waiting reader's next GET is a later step."""


def l1_scenario(wait: float) -> tuple[dict[str, Any], Any, Any]:
    """A writer and a process that reads once, Redis holding "old"; the check moves
    the process's clock ``wait`` seconds, then reads again in that process."""
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
        raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
    process = L1Process()

    def setup(cache: Cache, db: Database) -> None:  # every schedule starts afresh
        db.add_user(1, "old")
        cache.set("user:1", "old", ex=300)
        process.l1.clear()
        process.clock.now = 0.0

    def check(cache: Cache, db: Database, returns: object) -> str | None:
        process.clock.advance(wait)
        seen = process.read(cache, db)
        return None if seen == "new" else f"stale: the process still serves {seen!r}"

    return {"W": update_user, "R": process.read}, setup, check


def l1_race(wait: float) -> Exploration:
    """Every schedule; bad if a read ``wait`` seconds later returns the old name."""
    actors, setup, check = l1_scenario(wait)
    # A world made afresh for each schedule: the L1 is state the explorer cannot
    # rewind, so it must not replay a shared prefix of steps.
    return explore(actors, setup, check, make_cache=make_fake_cache, reduce=False)


def l1_stale_read() -> Run:
    """The process refreshes its L1 from Redis after the commit, before the DEL."""
    actors, setup, check = l1_scenario(wait=0.0)
    return replay(actors, setup, "W R W", check=check)


def l1_stale_read_diagram() -> str:
    return l1_stale_read().mermaid({"W": "Writer", "R": "Process"})
# --8<-- [end:race]


def main() -> None:
    traffic = Traffic()
    print(f"{traffic.rate} reads/s of one key, a write every {traffic.write_every} s,"
          f" {traffic.seconds} s of virtual time:")
    for row in hot_key_table(traffic):
        print(f"  {row.option:<18} DB reads {row.db_reads:>4},"
              f" busiest key {row.busiest:>5} commands,"
              f" stale up to {row.stale_for * 1000:.0f} ms")


if __name__ == "__main__":
    main()
