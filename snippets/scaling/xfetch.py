"""A stampede cure without coordination: probabilistic early expiration (XFetch).

Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache Stampede Prevention",
VLDB 2015. Each cached entry remembers how long it took to compute (``delta``) and when
it expires. Every reader recomputes early, before the expiry, with a probability that
rises as the expiry nears:

    recompute if  now - delta * beta * ln(U) >= expiry,   U uniform in (0, 1]

so, with luck, one reader refreshes the entry while everyone else still gets hits.

The refresh writes with the kit's lease (``snippets/lease.py``): the reader that draws a
refresh takes the lease BEFORE its DB read and fills only if the lease still stands, so
a write in between (which deletes the key and the lease) refuses the old row. A reader
that draws a refresh while another holds the lease keeps serving the entry; a reader
that finds no entry at all takes the kit's read path (one loads, the others wait).

Run it: ``python -m snippets.scaling.xfetch``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snippets.backends import (
    Cache, Clock, Database, FakeClock, check_int, check_number, check_ttl, make_cache,
    make_db, user_key,
)
from snippets.lease import LEASE_MS, fill, read_through, release, take_lease
from snippets.scenarios import agrees_with_db

# --8<-- [end:imports]

Uniform = Callable[[], float]  # random.random: uniform in [0, 1)


# --8<-- [start:rule]
def recompute_early(
    now: float, delta: float, beta: float, expiry: float, u: float
) -> bool:
    """XFetch's test: True if this reader should recompute now, before ``expiry``.

    ``u`` is uniform in (0, 1]; ``-ln(u)`` is then exponential with mean 1, so a reader
    recomputes ``delta * beta * -ln(u)`` seconds early: usually about ``delta * beta``.
    """
    if not 0 < u <= 1:
        raise ValueError(f"u must be in (0, 1], got {u!r}")
    if not 0 <= delta < math.inf:
        raise ValueError(f"delta must be finite seconds, at least 0, got {delta!r}")
    check_number("beta", beta)
    return now - delta * beta * math.log(u) >= expiry
# --8<-- [end:rule]


# --8<-- [start:read]
def entry_of(name: str, delta: float, expiry: float) -> str:
    """What XFetch caches: the value, its compute time and its logical expiry."""
    if not 0 <= delta < math.inf:
        raise ValueError(f"delta must be finite seconds, at least 0, got {delta!r}")
    return json.dumps({"value": name, "delta": delta, "expiry": expiry})


def store_entry(
    cache: Cache, key: str, name: str, delta: float, expiry: float, now: float
) -> None:
    """Cache an entry that expires at ``expiry`` (to set one up; reads fill with the
    lease)."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if not expiry > now:
        raise ValueError(f"need expiry after now, got {expiry=}, {now=}")
    ms = max(1, round((expiry - now) * 1000))
    cache.set(key, entry_of(name, delta, expiry), px=ms)  # Redis drops it at the expiry


def get_user_xfetch(
    cache: Cache,
    db: Database,
    user_id: int,
    *,
    ttl: int,
    clock: Clock,
    beta: float = 1.0,
    uniform: Uniform = random.random,
    sleep: Callable[[float], object] = time.sleep,
    lease_ms: int = LEASE_MS,
) -> str | None:
    """Cache-aside read that sometimes recomputes before the entry expires."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    beta = check_number("beta", beta)

    def compute() -> str | None:  # the row, timed: its entry, or None if no row
        start = clock()
        rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
        now = clock()
        return entry_of(rows[0][0], now - start, now + ttl) if rows else None

    cached = cache.get(key)
    if cached is None:  # expired or never cached: the kit's read path
        loaded = read_through(cache, key, compute, ttl, sleep=sleep, lease_ms=lease_ms)
        return None if loaded is None else json.loads(loaded)["value"]
    entry = json.loads(cached)
    u = 1.0 - uniform()  # random.random() is in [0, 1); the rule wants (0, 1]
    if not recompute_early(clock(), entry["delta"], beta, entry["expiry"], u):
        return entry["value"]  # a hit, and this reader leaves the refresh to others
    token = take_lease(cache, key, lease_ms)  # BEFORE the DB read
    if token is None:
        return entry["value"]  # someone is refreshing it already: serve this one
    try:
        again = cache.get(key)  # a refresh may have landed since our GET
        fresh = compute() if again in (None, cached) else None
    except BaseException:
        release(cache, key, token)
        raise
    if fresh is None:  # refreshed by someone else, or the row is gone
        release(cache, key, token)
        return None if again in (None, cached) else json.loads(again)["value"]
    fill(cache, key, token, fresh, ttl)  # refused if a write came since the lease
    return json.loads(fresh)["value"]
# --8<-- [end:read]


# --8<-- [start:write-race]
def entry_cached(cache: Cache, db: Database) -> None:
    """Before the race: user 1 is "old" in the DB, and cached as an entry of a
    1-second computation that expires at t = 61 s."""
    db.add_user(1, "old")
    store_entry(cache, "user:1", "old", delta=1.0, expiry=61.0, now=0.0)


def cached_value(cache: Cache) -> str | None:
    cached = cache.get("user:1")
    return None if cached is None else json.loads(cached)["value"]


entry_agrees_with_db = agrees_with_db(cached_value)


def xfetch_read(cache: Cache, db: Database) -> str | None:
    """A read of user 1 at t = 60.5 s that draws U = 0.1, so it refreshes early (a
    2.3 s head start), as an actor."""
    return get_user_xfetch(cache, db, 1, ttl=60, clock=FakeClock(60.5),
                           uniform=lambda: 0.9, sleep=lambda seconds: None)
# --8<-- [end:write-race]


# --8<-- [start:table]
@dataclass(frozen=True)
class EarlyRow:
    beta: float
    expiries: int
    recomputes_per_expiry: float  # recomputations started per entry: 1 is ideal
    most_in_one_expiry: int
    missed: int  # expiries whose refresh landed too late: readers found the key gone
    mean_early: float  # seconds before the expiry that the first recomputation started


def early_expiration_table(
    betas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0),
    *,
    rate: float = 200.0,
    delta: float = 0.05,
    ttl: float = 2.0,
    expiries: int = 100,
    seed: int = 2015,
) -> list[EarlyRow]:
    """Recomputations per expiry under a steady stream of reads, for each ``beta``.

    Reads arrive every ``1 / rate`` seconds; each applies ``recompute_early`` with
    its own U from a seeded generator. A recomputation takes ``delta`` seconds, in
    which the old entry is still served (and other readers may decide to recompute
    too); once the entry has expired, every read recomputes until a new one lands.
    """
    rate, delta = check_number("rate", rate), check_number("delta", delta)
    ttl = check_number("ttl", ttl, minimum=delta)  # it outlives one recomputation
    check_int("expiries", expiries)
    rows = []
    for beta in [check_number("beta", b) for b in betas]:  # all checked first
        rng, now, step = random.Random(seed), 0.0, 1.0 / rate
        counts: list[int] = []
        early: list[float] = []
        missed = 0
        for _ in range(expiries):
            expiry = now + ttl  # a fresh entry, written at `now`
            started: list[float] = []
            while not started or now < started[0] + delta:  # until the first lands
                u = 1.0 - rng.random()
                if now >= expiry or recompute_early(now, delta, beta, expiry, u):
                    started.append(now)
                now += step
            counts.append(len(started))
            missed += started[0] + delta > expiry  # the key was gone for a while
            early.append(max(0.0, expiry - started[0]))
            now = started[0] + delta  # the first recomputation's entry is the next one
        mean, mean_early = sum(counts) / expiries, sum(early) / expiries
        rows.append(EarlyRow(beta, expiries, mean, max(counts), missed, mean_early))
    return rows
# --8<-- [end:table]


def print_early_table(rows: list[EarlyRow]) -> None:
    print("beta  recomputes per expiry  most  key gone before refresh"
          "  first recompute, s early")
    for r in rows:
        print(f"{r.beta:>4}  {r.recomputes_per_expiry:>22.2f}"
              f"  {r.most_in_one_expiry:>4}  {r.missed:>12} of {r.expiries:<10}"
              f" {r.mean_early:>10.3f}")


class SlowQueries:
    """The database, each query taking ``seconds`` on a fake clock (for ``main``)."""

    def __init__(self, db: Database, clock: FakeClock, seconds: float) -> None:
        self.db, self.clock, self.seconds = db, clock, seconds

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.clock.advance(self.seconds)
        return self.db.query(sql, params)


def main() -> None:
    """Narrate: reads far from the expiry hit; close to it, one recomputes early."""
    cache, db, clock = make_cache(), make_db(), FakeClock()
    db.add_user(1, "Ada")
    slow: Any = SlowQueries(db, clock, seconds=1.0)  # a 1-second query: delta = 1
    rng = random.Random(5)
    get_user_xfetch(cache, slow, 1, ttl=60, clock=clock, uniform=rng.random)
    print(f"t=0s    miss, 1 s query, expiry at t=61s  (DB reads: {db.reads})")
    for t in (30.0, 55.0, 58.0, 59.0, 60.0, 60.5):
        clock.now = t
        reads = db.reads
        get_user_xfetch(cache, slow, 1, ttl=60, clock=clock, uniform=rng.random)
        what = "recomputed early" if db.reads > reads else "hit"
        print(f"t={t:g}s".ljust(8) + f"{what:<34} (DB reads: {db.reads})")


if __name__ == "__main__":
    main()
