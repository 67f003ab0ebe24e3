"""Negative caching: cache "no such row" for a short time, so a flood of unknown ids
stops reaching the database; and the insert race it brings (a reader caches "not
found" just before the row is inserted), replayed and fixed.

- Cache-aside never caches a missing row: every read of an unknown id reads the DB.
- ``get_user`` caches "not found" as the empty string, for ``NEGATIVE_TTL`` seconds.
- The insert must then clear it, or its own author reads "not found" after creating
  the row (read-your-own-inserts). Clearing it with a ``DEL`` leaves a reader race;
  the kit's lease, or writing the new row through on insert, closes it.
- The DB reads of a flood of unknown ids, counted in virtual time
  (``snippets.simulation``), with and without the negative cache.

Run it: ``python -m snippets.fleet.negative_caching`` (``--bench`` for bigger floods).
"""

from __future__ import annotations

# --8<-- [start:imports]
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fakeredis

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    FakeClock,
    check_int,
    check_name,
    check_number,
    check_ttl,
    make_db,
    user_key,
)
from snippets.concurrency.fixes import current_name, no_wait
from snippets.explorer import Exploration, Run, explore, replay
from snippets.lease import WAIT_MS, WAITS, fill, invalidate, release, take_lease
from snippets.patterns import cache_aside
from snippets.simulation import SimCache, SimDatabase, Simulation, fakeredis_on

# --8<-- [end:imports]


# --8<-- [start:read]
NOT_FOUND = ""  # no name is empty (check_name refuses it): "" means "no such user"
NEGATIVE_TTL = 30  # seconds: how long a row inserted by another path can stay hidden


def get_user(cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL,
             negative_ttl: int = NEGATIVE_TTL) -> str | None:
    """Cache-aside that also caches the absence of a user, for a shorter time."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    check_int("negative_ttl", negative_ttl)
    cached = cache.get(key)
    if cached is not None:
        return str(cached) or None  # (1)!
    rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
    if not rows:
        cache.set(key, NOT_FOUND, ex=negative_ttl, nx=True)  # (2)!
        return None
    cache.set(key, rows[0][0], ex=ttl)
    return rows[0][0]
# --8<-- [end:read]


# --8<-- [start:insert]
def insert_row(db: Database, user_id: int, name: str) -> None:
    """INSERT the user; a clear error if the id is taken."""
    user_key(user_id)  # refuses an id that is not a positive integer
    check_name(name)
    try:
        db.execute("INSERT INTO users (id, name) VALUES (?, ?)", (user_id, name))
    except sqlite3.IntegrityError as error:
        raise ValueError(f"a user with id {user_id} already exists") from error


def create_user_plain(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """Before negative caching, an insert had nothing to invalidate."""
    insert_row(db, user_id, name)


def create_user(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """INSERT, then delete the "not found" a reader may have cached."""
    insert_row(db, user_id, name)
    cache.delete(user_key(user_id))  # after the commit, as for an update
# --8<-- [end:insert]


# --8<-- [start:lease]
def get_user_leased(cache: Cache, db: Database, user_id: int, ttl: int = DEFAULT_TTL,
                    negative_ttl: int = NEGATIVE_TTL, *,
                    sleep: Callable[[float], object] = time.sleep) -> str | None:
    """The kit's lease read (snippets/lease.py), with "not found" cached as well:
    one reader per key loads; a write's DEL of key and lease refuses its fill."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    check_int("negative_ttl", negative_ttl)

    def load() -> str:
        rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
        return rows[0][0] if rows else NOT_FOUND

    for attempt in range(WAITS + 1):
        cached = cache.get(key)
        if cached is not None:
            return str(cached) or None
        token = take_lease(cache, key)
        if token is not None:
            try:
                name = load()
            except BaseException:
                release(cache, key, token)
                raise
            fill(cache, key, token, name, ttl if name else negative_ttl)  # (1)!
            return name or None
        if attempt < WAITS:
            sleep(WAIT_MS / 1000)  # another reader holds the lease: wait for its fill
    return load() or None


def create_user_leased(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """INSERT, then delete the key and its lease: a fill that read "no row" fails."""
    insert_row(db, user_id, name)
    invalidate(cache, user_key(user_id))  # (2)!
# --8<-- [end:lease]


# --8<-- [start:write-through]
def create_user_write_through(cache: Cache, db: Database, user_id: int, name: str,
                              ttl: int = DEFAULT_TTL) -> None:
    """INSERT, then SET the new row: it replaces a cached "not found", and a
    reader's later "not found" (sent with NX) cannot replace it."""
    ttl = check_ttl(ttl)
    insert_row(db, user_id, name)
    cache.set(user_key(user_id), name, ex=ttl)  # (1)!
# --8<-- [end:write-through]


# --- The insert race, in the explorer ------------------------------------------------
Read = Callable[[Cache, Database, int], "str | None"]
Write = Callable[[Cache, Database, int, str], None]


def get_user_leased_now(cache: Cache, db: Database, user_id: int) -> str | None:
    """The lease read in the explorer, which tries every delay: no real wait."""
    return get_user_leased(cache, db, user_id, sleep=no_wait)


# --8<-- [start:scenarios]
def nobody(cache: Cache, db: Database) -> None:
    """Before the race: no user 1 in the DB, nothing cached."""


def not_found_cached(cache: Cache, db: Database) -> None:
    """Before the race: user 1 was asked for before it existed: "not found" cached."""
    cache.set(user_key(1), NOT_FOUND, ex=NEGATIVE_TTL)


def evicted(cache: Cache, db: Database) -> None:
    """Redis drops user 1 under memory pressure (or its TTL runs out), once."""
    cache.delete(user_key(1))


def insert_and_read(write: Write, read: Read,
                    readers: int = 1) -> dict[str, Callable[[Cache, Database], Any]]:
    """W inserts user 1 as "new" while each reader R reads it."""
    actors: dict[str, Callable[[Cache, Database], Any]] = {
        "W": lambda cache, db: write(cache, db, 1, "new")}
    for n in range(1, readers + 1):
        actors[f"R{n}" if readers > 1 else "R"] = lambda cache, db: read(cache, db, 1)
    return actors
# --8<-- [end:scenarios]


@dataclass(frozen=True)
class Paths:
    read: Read
    write: Write


PATHS: dict[str, Paths] = {
    "insert, nothing deleted": Paths(get_user, create_user_plain),
    "insert, then DEL": Paths(get_user, create_user),
    "insert, DEL key + lease": Paths(get_user_leased_now, create_user_leased),
    "insert writes through": Paths(get_user, create_user_write_through),
}
SCENARIOS = ("first read", "'not found' cached", "+ eviction")  # and "two readers"


def explore_insert(name: str, scenario: str,
                   make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """One pair of paths against the invariant: once everyone is done, the next read
    returns what the DB holds. Two actors: every interleaving; three: every class of
    equivalent ones (the check judges the final state only)."""
    if name not in PATHS:
        raise LookupError(f"no paths named {name!r}; paths: {', '.join(PATHS)}")
    paths = PATHS[name]
    if scenario == "first read":
        actors, setup = insert_and_read(paths.write, paths.read), nobody
    elif scenario == "'not found' cached":
        actors, setup = insert_and_read(paths.write, paths.read), not_found_cached
    elif scenario == "two readers":
        actors, setup = insert_and_read(paths.write, paths.read, readers=2), nobody
    elif scenario == "+ eviction":
        actors = insert_and_read(paths.write, paths.read) | {"E": evicted}
        setup = nobody
    else:
        raise LookupError(f"no scenario named {scenario!r}; scenarios: "
                          f"{', '.join(SCENARIOS)}, two readers")
    return explore(actors, setup, current_name(paths.read), make_cache=make_cache,
                   reduce=len(actors) > 2)


def print_races() -> None:
    """Bad schedules of each pair of paths, in each scenario."""
    print(f"{'':<26}" + "".join(f"{scenario:>20}" for scenario in SCENARIOS))
    for name in PATHS:
        cells = [explore_insert(name, scenario) for scenario in SCENARIOS]
        print(f"{name:<26}" + "".join(
            f"{f'{len(c.bad)} bad of {c.total}':>20}" for c in cells))


def stale_not_found() -> Run:
    """The reader reads "no row", the insert commits and deletes, the reader's
    "not found" lands after the DEL."""
    paths = PATHS["insert, then DEL"]
    return replay(insert_and_read(paths.write, paths.read), nobody, "R R W W R",
                  check=current_name(paths.read))


def stale_not_found_diagram() -> str:
    return stale_not_found().mermaid({"W": "Writer", "R": "Reader"})


def refused_by_the_lease() -> Run:
    """The same order under the lease: the DEL took the lease, the fill is refused."""
    paths = PATHS["insert, DEL key + lease"]
    return replay(insert_and_read(paths.write, paths.read), nobody, "R R R W W R",
                  check=current_name(paths.read))


def refused_by_the_lease_diagram() -> str:
    text = refused_by_the_lease().mermaid({"W": "Writer", "R": "Reader"},
                                          final_state=True)
    return _named_scripts(text)


def _named_scripts(text: str) -> str:
    """The lease's script as FILL, its random token as t1."""
    text = re.sub(r'EVAL ".*?" 2', "EVAL FILL 2", text)
    for number, token in enumerate(dict.fromkeys(re.findall(r'"([0-9a-f]{16})"', text)),
                                   1):
        text = text.replace(token, f"t{number}")
    return text


# --- A flood of unknown ids, in virtual time -----------------------------------------
# --8<-- [start:flood]
@dataclass(frozen=True)
class Flood:
    """``requests`` reads of ids that do not exist, cycling through ``unknown_ids``
    of them, evenly spread over ``seconds`` of virtual time."""

    requests: int = 1000
    unknown_ids: int = 50
    seconds: float = 1.0
    negative_ttl: int = NEGATIVE_TTL
    cache_rtt: float = 0.0005  # one Redis round trip
    db_latency: float = 0.005  # one query
    db_connections: int = 10  # queries served at once; the others queue
# --8<-- [end:flood]

    def __post_init__(self) -> None:
        for name in ("requests", "unknown_ids", "negative_ttl", "db_connections"):
            check_int(name, getattr(self, name))
        for name in ("seconds", "cache_rtt", "db_latency"):
            check_number(name, getattr(self, name))


FIRST_UNKNOWN = 1001  # the DB holds users 1..10; the flood asks for 1001, 1002, ...


def _plain(cache: Any, db: Any, user_id: int, flood: Flood, sim: Simulation) -> Any:
    return cache_aside.get_user(cache, db, user_id)


def _negative(cache: Any, db: Any, user_id: int, flood: Flood, sim: Simulation) -> Any:
    return get_user(cache, db, user_id, negative_ttl=flood.negative_ttl)


def _leased(cache: Any, db: Any, user_id: int, flood: Flood, sim: Simulation) -> Any:
    return get_user_leased(cache, db, user_id, negative_ttl=flood.negative_ttl,
                           sleep=sim.sleep)


READS: dict[str, Callable[[Any, Any, int, Flood, Simulation], Any]] = {
    "no negative cache": _plain,
    "negative cache": _negative,
    "negative cache + lease": _leased,
}


@dataclass(frozen=True)
class FloodOutcome:
    read: str
    db_reads: int  # queries the flood sent to the database
    keys: int  # "not found" entries the cache holds when the flood ends


def simulate_flood(read: str, flood: Flood = Flood()) -> FloodOutcome:
    """Run the flood against one read path; count DB reads and cached "not found"."""
    if read not in READS:
        raise LookupError(f"no read named {read!r}; reads: {', '.join(READS)}")
    sim, db = Simulation(FakeClock(0.0)), make_db()
    for user_id in range(1, 11):
        db.add_user(user_id, f"user {user_id}")
    timed_db = SimDatabase(sim, db, flood.db_latency, flood.db_connections)
    with fakeredis_on(sim.clock):
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                     decode_responses=True)
        cache = SimCache(sim, client, flood.cache_rtt, [])
        gap = flood.seconds / flood.requests

        def request(n: int) -> Callable[[], None]:
            user_id = FIRST_UNKNOWN + n % flood.unknown_ids
            return lambda: _expect_none(
                READS[read](cache, timed_db, user_id, flood, sim))

        for n in range(flood.requests):
            sim.spawn(request(n), at=n * gap)
        sim.run()
        keys = sum(client.get(key) == NOT_FOUND for key in client.scan_iter("user:*"))
        client.close()
    return FloodOutcome(read, db.reads, keys)


def _expect_none(found: object) -> None:
    if found is not None:
        raise AssertionError(f"an unknown id was found: {found!r}")


FLOODS = {"over 1 s": Flood(), "in a 10 ms burst": Flood(seconds=0.01),
          "over 120 s": Flood(seconds=120)}


def print_floods(floods: dict[str, Flood] = FLOODS) -> None:
    """DB reads of each read path, one column per flood."""
    print(f"{'DB reads':<24}" + "".join(f"{label:>18}" for label in floods))
    for read in READS:
        print(f"{read:<24}" + "".join(f"{simulate_flood(read, flood).db_reads:>18}"
                                      for flood in floods.values()))


def bench(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> None:
    """Bigger floods, over 1 s: without the negative cache the DB reads grow with the
    requests; with it they stay at one per unknown id."""
    print_floods({f"{n} requests": Flood(requests=check_int("requests", n))
                  for n in sizes})


def main() -> None:
    print("A reader caches 'not found' just before the insert (writer + reader):")
    for name in PATHS:
        result = explore_insert(name, "first read")
        print(f"  {name:<26} {len(result.bad)} bad of {result.total}")
    flood = Flood()
    print(f"{flood.requests} requests for {flood.unknown_ids} unknown ids over "
          f"{flood.seconds:g} s, DB reads:")
    for read in READS:
        print(f"  {read:<26} {simulate_flood(read, flood).db_reads}")


if __name__ == "__main__":
    bench() if "--bench" in sys.argv[1:] else main()
