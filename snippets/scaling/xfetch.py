"""A stampede cure without coordination: probabilistic early expiration (XFetch).

Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache Stampede Prevention",
VLDB 2015. Each cached entry remembers how long it took to compute (``delta``) and when
it expires. Every reader recomputes early, before the expiry, with a probability that
rises as the expiry nears:

    recompute if  now - delta * beta * ln(U) >= expiry,   U uniform in (0, 1]

so, with luck, one reader refreshes the entry while everyone else still gets hits.

Run it: ``python -m snippets.scaling.xfetch``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snippets.backends import (
    Cache, Clock, Database, FakeClock, check_int, check_number, check_ttl, make_cache,
    make_db, user_key,
)

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
def store_entry(
    cache: Cache, key: str, name: str, delta: float, expiry: float, now: float
) -> None:
    """Cache ``name`` with what XFetch needs: its compute time and its expiry."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if not 0 <= delta < math.inf or not expiry > now:
        raise ValueError(
            f"need delta >= 0 and expiry after now, got {delta=}, {expiry=}, {now=}")
    entry = json.dumps({"value": name, "delta": delta, "expiry": expiry})
    ms = max(1, round((expiry - now) * 1000))
    cache.set(key, entry, px=ms)  # Redis drops it at the expiry


def get_user_xfetch(
    cache: Cache,
    db: Database,
    user_id: int,
    *,
    ttl: int,
    clock: Clock,
    beta: float = 1.0,
    uniform: Uniform = random.random,
) -> str | None:
    """Cache-aside read that sometimes recomputes before the entry expires."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    beta = check_number("beta", beta)
    cached = cache.get(key)
    if cached is not None:
        entry = json.loads(cached)
        u = 1.0 - uniform()  # random.random() is in [0, 1); the rule wants (0, 1]
        if not recompute_early(clock(), entry["delta"], beta, entry["expiry"], u):
            return entry["value"]  # a hit, and this reader leaves the refresh to others
    start = clock()
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    name = rows[0][0] if rows else None
    if name is not None:
        now = clock()
        store_entry(cache, key, name, delta=now - start, expiry=now + ttl, now=now)
    return name
# --8<-- [end:read]


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
