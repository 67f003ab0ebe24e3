"""Cold start and warming: after a flush, or on a new cluster, every read misses.

Measured in the virtual-time world of ``snippets.simulation`` (every read a greenlet,
fakeredis on a virtual clock behind a round trip, the database behind a pool of
connections): many readers over 1000 keys whose popularity is skewed (seeded, so every
run is the same), first on a warm cache, then on a cold one, and with two fixes:

- a warmer that replays the hottest keys of a recorded access log before the cache
  takes traffic, at a rate the database can take;
- Facebook's cold-cluster warm-up: a miss in the cold cluster reads the warm cluster's
  cache instead of the database. Its race (a fill from the warm cluster that lands
  after a delete) and the fix (a two-second hold-off on deletes) are replayed by the
  explorer.

Run it: ``python -m snippets.fleet.warming``.
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

import fakeredis

from snippets import lease
from snippets.backends import (Cache, Database, FakeClock, check_int, check_name,
                               check_number, make_db)
from snippets.explorer import Exploration, Run, explore, replay
from snippets.explorer.direct import go_direct
from snippets.simulation import SimCache, SimDatabase, Simulation, fakeredis_on
# --8<-- [end:imports]

Load = Callable[[], "str | None"]  # reads one value from the database


# --8<-- [start:traffic]
@dataclass(frozen=True)
class Traffic:
    """What is modelled. Times in seconds of virtual time."""

    keys: int = 1000  # user:1 ... user:1000, user:1 the most popular
    skew: float = 1.0  # Zipf: key k is read in proportion to 1 / k ** skew
    rate: int = 2000  # reads per second, evenly spaced...
    seconds: float = 1.0  # ...for this long after the cache takes traffic
    cache_rtt: float = 0.001  # one Redis round trip (either cluster)
    db_latency: float = 0.02  # one query holds a connection this long...
    db_connections: int = 10  # ...so the database serves at most 500 queries/s
    ttl: int = 3600  # nothing expires during the run
    seed: int = 1  # the keys the reads pick


def popularity(traffic: Traffic) -> list[float]:
    """The weight of each key: a few keys take most of the reads."""
    return [1 / k ** traffic.skew for k in range(1, traffic.keys + 1)]


def draw_reads(traffic: Traffic, count: int, seed: int) -> list[str]:
    """``count`` keys, each picked by popularity: the same list for the same seed."""
    keys = [f"user:{k}" for k in range(1, traffic.keys + 1)]
    return random.Random(seed).choices(keys, popularity(traffic), k=count)
# --8<-- [end:traffic]


# --8<-- [start:warmer]
def hot_keys(log: Sequence[str], top: int) -> list[str]:
    """The ``top`` most read keys of an access log, hottest first."""
    return [key for key, _ in Counter(log).most_common(check_int("top", top))]


def warm(cache: Cache, keys: Sequence[str], load: Callable[[str], str | None],
         ttl: int, *, rate: float, clock: Callable[[], float],
         sleep: Callable[[float], object]) -> int:
    """Fill ``keys`` before the cache takes traffic, at most ``rate`` a second: the
    database serves the warmer beside whatever else it serves. Each fill goes
    through the kit's lease, so a write during the warm-up refuses a stale fill as it
    would any reader's. Returns how many keys were loaded."""
    interval, started = 1 / check_number("rate", rate), clock()
    for done, key in enumerate(keys):
        sleep(max(0.0, started + done * interval - clock()))  # (1)!
        lease.read_through(cache, key, functools.partial(load, key), ttl,
                           sleep=sleep)
    return len(keys)
# --8<-- [end:warmer]


# --8<-- [start:cold-cluster]
HOLDOFF_MS = 2000  # memcache's default: a delete refuses adds for two seconds

# Runs inside Redis: the add and the check of the hold-off are one step.
ADD_UNLESS_HELD_OFF = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
return 1
"""


def holdoff_key(key: str) -> str:
    """``{user:1}:holdoff``: in the same Redis Cluster slot as ``user:1``."""
    return f"{{{key}}}:holdoff"


def read_cold(cold: Cache, warm_cache: Cache, key: str, load: Load,
              ttl: int) -> str | None:
    """A read in the cold cluster: on a miss, the warm cluster's copy, added to the
    cold cache; the database only if the warm cluster misses too."""
    cached = cold.get(key)
    if cached is not None:
        return str(cached)
    value = warm_cache.get(key)  # (1)!
    from_warm = value is not None
    if value is None:
        value = load()
        if value is None:
            return None
    added = cold.eval(ADD_UNLESS_HELD_OFF, 2, key, holdoff_key(key), value, ttl)
    if not added and from_warm:
        return load()  # (2)!
    return str(value)


def delete_with_holdoff(cold: Cache, key: str, holdoff_ms: int = HOLDOFF_MS) -> None:
    """The write path in the cold cluster, after the commit: delete the key, and for
    ``holdoff_ms`` refuse any add of it (one MULTI/EXEC)."""
    with cold.pipeline() as pipe:
        pipe.delete(key)
        pipe.set(holdoff_key(key), 1, px=check_int("holdoff_ms", holdoff_ms))
        pipe.execute()
# --8<-- [end:cold-cluster]


# --8<-- [start:options]
@dataclass(frozen=True)
class Option:
    """How the cache starts when it takes traffic."""

    name: str
    start: str  # "warm": every key cached; "cold": nothing; "warm cluster": nothing,
    #             but a miss reads a warm cluster's cache first
    warm_top: int = 0  # > 0: before traffic, warm this many keys of the access log
    warm_rate: float = 250.0  # keys per second the warmer loads: half the DB's capacity
    warm_workers: int = 10  # warmers side by side, each loading one key at a time

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.start not in ("warm", "cold", "warm cluster"):
            raise ValueError(f"start must be 'warm', 'cold' or 'warm cluster', "
                             f"got {self.start!r}")
        check_int("warm_top", self.warm_top, minimum=0)
        check_number("warm_rate", self.warm_rate)
        check_int("warm_workers", self.warm_workers)


OPTIONS = (
    Option("warm (steady state)", "warm"),
    Option("cold, no warming", "cold"),
    Option("warmer, top 100", "cold", warm_top=100),
    Option("warmer, top 400", "cold", warm_top=400),
    Option("from a warm cluster", "warm cluster"),
)
# --8<-- [end:options]


def _check(traffic: Traffic) -> Traffic:
    for name in ("keys", "rate", "db_connections", "ttl"):
        check_int(name, getattr(traffic, name))
    for name in ("seconds", "cache_rtt", "db_latency"):
        check_number(name, getattr(traffic, name))
    check_number("skew", traffic.skew, minimum=-1e-9)
    return traffic


WINDOW = 0.1  # seconds: DB queries are counted per 100 ms


@dataclass(frozen=True)
class Outcome:
    option: str
    warmup: float  # seconds the warmer ran before the cache took traffic
    warmup_reads: int  # DB queries the warmer sent
    per_window: tuple[int, ...]  # DB queries sent in each 100 ms of traffic
    recovered: float  # seconds of traffic until the DB load stays within capacity
    warm_cluster_reads: int  # GETs sent to the warm cluster's cache
    worst: float  # the slowest read, in seconds

    @property
    def db_reads(self) -> int:
        return sum(self.per_window)

    @property
    def peak(self) -> float:
        """The busiest 100 ms, as DB queries per second."""
        return max(self.per_window) / WINDOW


def access_log(traffic: Traffic) -> list[str]:
    """The keys read during the last ten seconds of steady state: the warmer's
    input."""
    return draw_reads(traffic, 10 * traffic.rate, seed=traffic.seed + 1)


def recovery(per_window: Sequence[int], capacity: float) -> float:
    """Seconds until the DB is asked for no more than it serves (``capacity``
    queries a second), for good: the end of the last 100 ms above it."""
    above = [i for i, asked in enumerate(per_window) if asked > capacity * WINDOW]
    return round((above[-1] + 1) * WINDOW, 6) if above else 0.0


@functools.cache  # a run is deterministic: each (option, traffic) is computed once
def simulate(option: Option, traffic: Traffic = Traffic()) -> Outcome:
    """Run ``traffic`` against a cache that starts as ``option`` says."""
    _check(traffic)
    sim, db = Simulation(FakeClock(0.0)), make_db()
    keys = [f"user:{k}" for k in range(1, traffic.keys + 1)]
    with db.lock:
        db.conn.executemany("INSERT INTO users (id, name) VALUES (?, ?)",
                            [(k, f"name {k}") for k in range(1, traffic.keys + 1)])
    sim_db = SimDatabase(sim, db, traffic.db_latency, traffic.db_connections)
    asked: list[float] = []  # when each DB query was sent (it may then wait)
    took: list[float] = []
    warm_gets = [0]
    began: list[float] = []  # when the cache took traffic, and the queries until then

    def load(key: str) -> str | None:
        asked.append(sim.clock())
        rows = sim_db.query("SELECT name FROM users WHERE id = ?",
                            (int(key.removeprefix("user:")),))
        return str(rows[0][0]) if rows else None

    with fakeredis_on(sim.clock):
        raw = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        raw_warm = fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                       decode_responses=True)
        go_direct(raw), go_direct(raw_warm)  # straight to fakeredis: faster
        if option.start != "cold":  # this cache, or the warm cluster's, holds all
            (raw if option.start == "warm" else raw_warm).mset(
                {key: f"name {k}" for k, key in enumerate(keys, 1)})
        subscribers: list = []
        cache: Any = SimCache(sim, raw, traffic.cache_rtt, subscribers)
        counting: Any = _Counting(raw_warm, warm_gets)
        warm_cache: Any = SimCache(sim, counting,
                                   traffic.cache_rtt, subscribers)

        def read(key: str) -> str | None:
            if option.start == "warm cluster":
                return read_cold(cache, warm_cache, key, functools.partial(load, key),
                                 traffic.ttl)
            return lease.read_through(cache, key, functools.partial(load, key),
                                      traffic.ttl, sleep=sim.sleep)

        def request(key: str) -> Callable[[], None]:
            def run() -> None:
                started = sim.clock()
                read(key)
                took.append(sim.clock() - started)
            return run

        def warmer(keys: list[str], finished: Any) -> Callable[[], None]:
            def run() -> None:  # one of warm_workers, each at its share of the rate
                warm(cache, keys, load, traffic.ttl,
                     rate=option.warm_rate / option.warm_workers, clock=sim.clock,
                     sleep=sim.sleep)
                finished.set()
            return run

        def start() -> None:  # the warmers, if any; then the cache takes traffic
            if option.warm_top:
                hot = hot_keys(access_log(traffic), option.warm_top)
                done = [sim.event() for _ in range(option.warm_workers)]
                for worker, finished in enumerate(done):
                    sim.spawn(warmer(hot[worker::option.warm_workers], finished))
                for finished in done:
                    finished.wait()
            began[:] = [sim.clock(), len(asked)]
            reads = draw_reads(traffic, round(traffic.rate * traffic.seconds),
                               traffic.seed)
            for i, key in enumerate(reads):
                sim.spawn(request(key), at=began[0] + i / traffic.rate)

        sim.spawn(start, at=0.0)
        sim.run()
    start_at, warmup_reads = began[0], int(began[1])
    windows = [0] * max(1, round(traffic.seconds / WINDOW))
    for at in asked[warmup_reads:]:  # a read's query is sent before the run ends
        windows[min(len(windows) - 1, int((at - start_at) / WINDOW + 1e-9))] += 1
    capacity = traffic.db_connections / traffic.db_latency
    return Outcome(option.name, round(start_at, 6), warmup_reads, tuple(windows),
                   recovery(windows, capacity), warm_gets[0], round(max(took), 6))


class _Counting:
    """The warm cluster's client, counting the GETs it is sent."""

    def __init__(self, client: Cache, gets: list[int]) -> None:
        self._client, self._gets = client, gets

    def __getattr__(self, name: str) -> Any:
        if name == "get":
            self._gets[0] += 1
        return getattr(self._client, name)


# --8<-- [start:table]
def warming_table(traffic: Traffic = Traffic(),
                  options: Sequence[Option] = OPTIONS) -> list[Outcome]:
    """Every option under the same traffic."""
    if not options:
        raise ValueError("options must name at least one option")
    return [simulate(option, traffic) for option in options]


def print_table(rows: Sequence[Outcome]) -> None:
    print(f"{'option':<20} {'warm-up':>7} {'its DB reads':>12} {'DB peak/s':>9}"
          f" {'DB reads':>8} {'over capacity':>13} {'worst read':>10}")
    for r in rows:
        print(f"{r.option:<20} {r.warmup:>6.1f}s {r.warmup_reads:>12}"
              f" {r.peak:>9.0f} {r.db_reads:>8} {r.recovered:>12.1f}s"
              f" {r.worst * 1000:>7.0f} ms")


def print_timeline(rows: Sequence[Outcome]) -> None:
    """DB queries sent in each 100 ms after the cache took traffic, per option."""
    print("after " + "".join(f"{r.option.split(', ')[-1]:>20}" for r in rows))
    for i in range(len(rows[0].per_window)):
        print(f"{i * WINDOW:>3.1f} s "
              + "".join(f"{r.per_window[i]:>20}" for r in rows))
# --8<-- [end:table]


# --- The cold cluster's race, replayed ------------------------------------------------
# --8<-- [start:race]
class TwoClusters(Database):
    """The database, and beside it the warm cluster's Redis (a store of its own in
    the explorer's diagrams). The ``cache`` the actors get is the cold cluster's."""

    def __init__(self) -> None:
        super().__init__()
        self.warm = fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                        decode_responses=True)

    def stores(self) -> dict[str, Any]:
        return {"warm Redis": self.warm}


def clusters_of(db: Database) -> TwoClusters:
    if not isinstance(db, TwoClusters):
        raise TypeError(f"this needs the two-cluster world (TwoClusters), got {db!r}")
    return db


def update_user(cache: Cache, db: Database, *, holdoff: bool) -> None:
    """A write: commit, delete the key in the cold cluster (with or without the
    hold-off), then in the warm one."""
    db.execute("UPDATE users SET name = 'new' WHERE id = 1")
    if holdoff:
        delete_with_holdoff(cache, "user:1")
    else:
        cache.delete("user:1")
    clusters_of(db).warm.delete("user:1")  # (1)!


def read_user(cache: Cache, db: Database) -> str | None:
    """A read in the cold cluster, through the warm one."""
    def load() -> str | None:
        rows = db.query("SELECT name FROM users WHERE id = 1")
        return str(rows[0][0]) if rows else None
    return read_cold(cache, clusters_of(db).warm, "user:1", load, 300)


def expire_holdoff(cache: Cache, db: Database) -> int:
    """Two seconds pass: the hold-off, if it was set, is gone."""
    return cache.delete(holdoff_key("user:1"))


def setup(cache: Cache, db: Database) -> None:
    """The warm cluster holds "old"; the cold cluster holds nothing yet."""
    db.add_user(1, "old")
    clusters_of(db).warm.set("user:1", "old", ex=300)


def cold_agrees(cache: Cache, db: Database, returns: object) -> str | None:
    """Bad: the cold cluster keeps a value the database no longer has."""
    cached = cache.get("user:1")
    name = db.query("SELECT name FROM users WHERE id = 1")[0][0]
    if cached is None or cached == name:
        return None
    return f"stale: the cold cluster keeps {cached!r}, the DB has {name!r}"


def actors(holdoff: bool, expiry: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {
        "Writer": functools.partial(update_user, holdoff=holdoff),
        "Reader": read_user}
    if expiry:
        found["Clock"] = expire_holdoff  # (2)!
    return found


def cold_race(holdoff: bool, expiry: bool = False) -> Exploration:
    """Every distinct interleaving of the write and a cold-cluster read."""
    return explore(actors(holdoff, expiry), setup, cold_agrees, make_db=TwoClusters)
# --8<-- [end:race]


def stale_add() -> Run:
    """The reader gets "old" from the warm cluster, the write commits and deletes
    in the cold cluster, then the reader's add lands: nothing deletes it again."""
    return replay(actors(holdoff=False), setup, "Reader Reader Writer Writer Reader"
                  " Writer", check=cold_agrees, make_db=TwoClusters)


def held_off_add() -> Run:
    """The same schedule with the hold-off: the add is refused, the reader asks
    the database."""
    return replay(actors(holdoff=True), setup, "Reader Reader Writer Writer Reader"
                  " Reader Writer", check=cold_agrees, make_db=TwoClusters)


def _drawn(run: Run) -> str:
    text = run.mermaid({"Reader": "Cold reader"})
    text = text.replace("participant R as Redis", "participant R as cold Redis")
    return re.sub(r'EVAL ".*?" 2', "EVAL ADD_UNLESS_HELD_OFF 2", text, flags=re.S)


def stale_add_diagram() -> str:
    return _drawn(stale_add())


def held_off_add_diagram() -> str:
    return _drawn(held_off_add())


def main() -> None:
    traffic = Traffic()
    print(f"{traffic.rate} reads/s over {traffic.keys} keys for {traffic.seconds} s,"
          f" the DB serving at most"
          f" {traffic.db_connections / traffic.db_latency:.0f} queries/s:")
    for row in warming_table(traffic):
        print(f"  {row.option:<20} DB reads {row.db_reads:>3}"
              f" (+{row.warmup_reads:>3} warming), peak {row.peak:>5.0f}/s,"
              f" over capacity for {row.recovered:.1f} s")
    for holdoff in (False, True):
        found = cold_race(holdoff)
        print(f"cold cluster, {'2 s hold-off' if holdoff else 'plain DEL':<12}:"
              f" {len(found.bad)} stale of {found.total} schedules")


if __name__ == "__main__":
    main()
