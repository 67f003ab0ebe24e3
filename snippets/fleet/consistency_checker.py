"""A consistency checker, as production teams run them (Meta's Polaris, Uber's Cache
Inspector): sample reads, compare what the cache served with what the database held,
report consistency in nines and how stale the stale reads were, and keep traces only of
reads in the window after a write.

- ``ConsistencyChecker``: fed with the database's commits (its commit log, as Polaris
  receives invalidation events and the Cache Inspector reads the binlog) and with the
  reads it samples.
- ``grade``: every strategy of the comparison page, under load in the virtual-time
  simulation (many readers, a few writers, one hot key), graded by the checker.

Run it: ``python -m snippets.fleet.consistency_checker`` (the narration) or
``python -m snippets.fleet.consistency_checker --bench`` (the table at 10^6 reads).
"""

from __future__ import annotations

# --8<-- [start:imports]
import bisect
import functools
import math
import random
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import fakeredis

from snippets.backends import (
    Cache, Database, FakeClock, check_int, check_number, make_db, user_key,
)
from snippets.concurrency import production_pattern
from snippets.concurrency.comparison import STRATEGIES  # loads snippets.explorer too
from snippets.concurrency.fixes import update_user_double_delete
from snippets.concurrency.update_vs_invalidate import Read, Write
from snippets.simulation import SimCache, SimPool, Simulation, fakeredis_on, percentile

# --8<-- [end:imports]


# --8<-- [start:checker]
@dataclass(frozen=True)
class Trace:
    """A sampled read in the window after a write: what it got, what the DB held."""

    key: str
    began: float  # seconds
    served: str | None
    in_db: str  # the database's value when the read began
    since_write: float  # seconds from the key's last commit to the read's start
    late: float  # 0 if consistent, else how long the served value had been replaced


@dataclass(frozen=True)
class Report:
    checked: int  # reads sampled and compared
    writes: int  # commits seen, after each key's first value
    late: tuple[float, ...]  # per stale read: how long its value had been replaced
    traces: tuple[Trace, ...]  # only reads that began within the window after a write

    def fraction(self, within: float = 0.0) -> float:
        """The share of reads consistent within ``within`` seconds."""
        if not self.checked:
            raise ValueError("no read was checked")
        return 1 - sum(late > within for late in self.late) / self.checked

    def nines(self, within: float = 0.0) -> float:
        """-log10(1 - consistent share): 99.9 % is 3 nines; all consistent: inf."""
        stale = 1 - self.fraction(within)
        return math.inf if stale <= 0 else -math.log10(stale)

    def late_ms(self, p: float) -> float:
        """The p-th percentile of how late the stale reads were, in ms (0 if none)."""
        return percentile(self.late, p) * 1000 if self.late else 0.0


class ConsistencyChecker:
    """Compares sampled reads with the database's history of each key.

    A read that began at ``began`` and ended at ``ended`` is **consistent** if the
    value it returned was the key's value in the database at some moment in between:
    a read that overlaps a write may return either side of it. Otherwise it is
    **late** by how long before ``began`` its value had been replaced; "consistent
    within 10 ms" counts the reads late by 10 ms or less as consistent.
    """

    def __init__(self, sample: float = 1.0, trace_window: float = 0.01,
                 seed: int = 0) -> None:
        if not 0 < sample <= 1:
            raise ValueError(f"sample must be a fraction in (0, 1], got {sample!r}")
        self.sample = float(sample)
        self.trace_window = check_number("trace_window", trace_window)
        self._rng = random.Random(seed)  # which reads are sampled: reproducible
        self._times: dict[str, list[float]] = {}  # per key: commit times, in order...
        self._values: dict[str, list[str]] = {}  # ...and the value each one committed
        self._checked = 0
        self._late: list[float] = []
        self._traces: list[Trace] = []

    def committed(self, key: str, value: str, at: float) -> None:
        """The database committed ``value`` for ``key`` at time ``at`` (from its
        commit log). The first call for a key gives its value before any read."""
        times = self._times.setdefault(key, [])
        if times and at < times[-1]:
            raise ValueError(f"commits of {key!r} must come in order: "
                             f"{at} < {times[-1]}")
        times.append(at)
        self._values.setdefault(key, []).append(value)

    def observed(self, key: str, served: str | None, began: float,
                 ended: float) -> float | None:
        """Check one read: None if it was not sampled, else how late it was (0.0:
        consistent)."""
        if key not in self._times:
            raise LookupError(f"no commit recorded for {key!r}: call committed() first")
        if ended < began:
            raise ValueError(f"a read cannot end ({ended}) before it begins ({began})")
        if self._rng.random() >= self.sample:
            return None
        times, values = self._times[key], self._values[key]
        current = max(0, bisect.bisect_right(times, began) - 1)  # (1)!
        last = bisect.bisect_right(times, ended) - 1
        late = 0.0
        if served not in values[current:last + 1]:
            late = math.inf  # a value the database never held...
            for index in range(current - 1, -1, -1):  # ...or the newest it held
                if values[index] == served:
                    late = began - times[index + 1]  # replaced this long ago
                    break
            self._late.append(late)
        self._checked += 1
        since = began - times[current]
        if current > 0 and since <= self.trace_window:  # (2)!
            self._traces.append(Trace(key, began, served, values[current], since,
                                      late))
        return late

    def report(self) -> Report:
        writes = sum(len(times) - 1 for times in self._times.values())
        return Report(self._checked, writes, tuple(self._late), tuple(self._traces))
# --8<-- [end:checker]


# --8<-- [start:load]
@dataclass(frozen=True)
class Load:
    """What is modelled. Times in seconds of virtual time."""

    readers: int = 20
    writers: int = 2
    keys: int = 10  # users 1..keys; each read and write picks one at random
    read_every: float = 0.01  # each reader: one read every 10 ms
    write_every: float = 0.01  # each writer: one write every 10 ms on average
    seconds: float = 0.5  # reads = readers * seconds / read_every
    cache_rtt: float = 0.0005  # one Redis round trip
    db_latency: float = 0.005  # a query's mean; each one draws 0.5x to 1.5x of it
    db_connections: int = 20
    second_delete_after: float = 0.05  # double delete's pause
    seed: int = 1
# --8<-- [end:load]

    def __post_init__(self) -> None:
        for name in ("readers", "writers", "keys", "db_connections"):
            check_int(name, getattr(self, name))
        for name in ("read_every", "write_every", "seconds", "cache_rtt",
                     "db_latency", "second_delete_after"):
            check_number(name, getattr(self, name))

    @property
    def reads(self) -> int:
        return self.readers * round(self.seconds / self.read_every)


# --8<-- [start:database]
class CommitLog:
    """The database in virtual time, and its commit log, fed to the checker.

    A statement takes effect halfway through its latency: the reply still has the
    other half to travel, as a real reply does, and that is when a write can land
    between a reader's query and its fill. Each commit is published with its time.
    """

    def __init__(self, sim: Simulation, db: Database, load: Load,
                 checker: ConsistencyChecker, rng: random.Random) -> None:
        self.sim, self.db, self.load = sim, db, load
        self.checker, self.rng = checker, rng
        self.pool = SimPool(sim, load.db_connections)
        self._inside = False  # statements of a transaction run in its one step
        self._names = dict(self._rows())
        for user_id, name in self._names.items():
            checker.committed(user_key(user_id), name, sim.clock())

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        if self._inside:
            return self.db.query(sql, params)
        with self._round_trip():
            return self.db.query(sql, params)

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        if self._inside:
            return self.db.execute(sql, params)
        with self._round_trip():
            changed = self.db.execute(sql, params)
            self._publish()  # autocommit: committed now
        return changed

    @contextmanager
    def transaction(self) -> Iterator[CommitLog]:
        with self._round_trip():
            self._inside = True
            try:
                with self.db.transaction():
                    yield self
            finally:
                self._inside = False
            self._publish()  # committed (a rolled-back one raised past this)

    @contextmanager
    def _round_trip(self) -> Iterator[None]:
        latency = self.load.db_latency * self.rng.uniform(0.5, 1.5)
        self.pool.acquire()
        try:
            self.sim.sleep(latency / 2)  # the statement's way there
            yield
            self.sim.sleep(latency / 2)  # the reply's way back
        finally:
            self.pool.release()

    def _rows(self) -> list[tuple]:
        return self.db.conn.execute("SELECT id, name FROM users").fetchall()

    def _publish(self) -> None:
        """Send every changed row to the checker: the commit log, after the fact."""
        for user_id, name in self._rows():
            if self._names.get(user_id) != name:
                self._names[user_id] = name
                self.checker.committed(user_key(user_id), name, self.sim.clock())
# --8<-- [end:database]


# --8<-- [start:grade]
def paths(strategy: str, sim: Simulation, load: Load) -> tuple[Read, Write]:
    """A strategy's read and write paths, with their waits in virtual time."""
    if strategy not in STRATEGIES:
        raise LookupError(f"no strategy named {strategy!r}; "
                          f"strategies: {', '.join(STRATEGIES)}")
    read, write = STRATEGIES[strategy]
    if strategy == "leases":  # a miss without the lease waits for the holder's fill
        read = functools.partial(production_pattern.get_user, sleep=sim.sleep)
    elif strategy == "double-delete":  # the second DEL, a pause after the first
        write = functools.partial(
            update_user_double_delete,
            pause=lambda: sim.sleep(load.second_delete_after))
    return read, write


@functools.cache  # a run is deterministic: each (strategy, load, sample) runs once
def grade(strategy: str, load: Load = Load(), sample: float = 1.0) -> Report:
    """Run ``load`` against one strategy, every read checked (or a ``sample``)."""
    return run_graded(strategy, load, sample)


def run_graded(strategy: str, load: Load, sample: float = 1.0,
               client: Cache | None = None) -> Report:
    """``grade``, on ``client`` if given (emptied first), else on fakeredis."""
    sim, rng = Simulation(FakeClock(0.0)), random.Random(load.seed)
    checker = ConsistencyChecker(sample, seed=load.seed)
    db = make_db()
    for user_id in range(1, load.keys + 1):
        db.add_user(user_id, f"u{user_id}-w0")
    with fakeredis_on(sim.clock):
        if client is None:
            client = fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                         decode_responses=True, max_connections=10**6)
        client.flushdb()
        cache = SimCache(sim, client, load.cache_rtt, subscribers=[])
        timed = CommitLog(sim, db, load, checker, rng)
        read, write = paths(strategy, sim, load)
        written = [0]

        def reader(start: float) -> None:
            sim.sleep(start)
            for _ in range(round(load.seconds / load.read_every)):
                slot, user_id = sim.clock(), rng.randint(1, load.keys)
                served = read(cache, timed, user_id)  # type: ignore[arg-type]
                checker.observed(user_key(user_id), served, slot, sim.clock())
                sim.sleep(max(0.0, slot + load.read_every - sim.clock()))

        def writer() -> None:
            while True:
                sim.sleep(rng.expovariate(1 / load.write_every))
                if sim.clock() >= load.seconds:
                    return
                user_id, written[0] = rng.randint(1, load.keys), written[0] + 1
                write(cache, timed, user_id, f"u{user_id}-w{written[0]}")  # type: ignore[arg-type]

        for i in range(load.readers):  # starts spread over the first period
            sim.spawn(functools.partial(reader, i * load.read_every / load.readers))
        for _ in range(load.writers):
            sim.spawn(writer)
        sim.run()
    return checker.report()
# --8<-- [end:grade]


# --8<-- [start:table]
WITHIN = (0.0, 0.01, 0.1)  # consistent at once, within 10 ms, within 100 ms


def percent(report: Report, within: float = 0.0) -> str:
    """The consistent share, with enough decimals to show its first stale digit."""
    nines = report.nines(within)
    if nines == math.inf:
        return "100 %"
    digits = max(1, math.ceil(nines) - 1)
    share = math.floor(report.fraction(within) * 10**(digits + 2)) / 10**digits
    return f"{share:.{digits}f} %"


def print_grades(load: Load = Load(),
                 strategies: Sequence[str] = tuple(STRATEGIES)) -> None:
    """Each strategy: the share of consistent reads, at once and within 10 ms and
    100 ms; how late the stale ones were; how many reads the trace window kept."""
    print(f"{'strategy':<20} {'reads':>6} {'writes':>6} {'at once':>9} {'10 ms':>9}"
          f" {'100 ms':>9} {'late p50':>8} {'p99':>6} {'max':>6} {'traced':>6}")
    for name in strategies:
        report = grade(name, load)
        shares = "".join(f" {percent(report, w):>9}" for w in WITHIN)
        print(f"{name:<20} {report.checked:>6} {report.writes:>6}{shares}"
              f" {report.late_ms(50):>8.1f} {report.late_ms(99):>6.1f}"
              f" {report.late_ms(100):>6.1f} {len(report.traces):>6}")
# --8<-- [end:table]


BENCH = Load(readers=100, seconds=10.0)  # 10^5 reads per strategy


def main(argv: Sequence[str] = ()) -> None:
    load = BENCH if "--bench" in argv else Load()
    print(f"{load.readers} readers and {load.writers} writers of {load.keys} key(s),"
          f" {load.reads} reads per strategy, in virtual time:")
    print_grades(load)


if __name__ == "__main__":
    main(sys.argv[1:])
