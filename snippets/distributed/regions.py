"""Regions: the primary database in one region (US), a replica and a Redis in the other
(EU). A write in the US deletes the EU key across regions; when that DEL arrives before
the EU replica has applied the write, an EU reader refills the old row, and nothing
deletes it again.

Two fixes, each counted by the explorer: invalidate the EU cache from the EU replica's
own change stream (Facebook's mcsqueal runs in every region), and Facebook's remote
markers (the writer marks the key in the EU cache; an EU reader that finds the marker
reads the primary, across regions).

Run it: ``python -m snippets.distributed.regions``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fakeredis

from snippets.backends import (DEFAULT_TTL, Cache, Database, check_name, check_ttl,
                               user_key)
from snippets.distributed.cdc import poll_changes
from snippets.explorer import (Actor, Exploration, Returns, Run, describe_state,
                               explore, replay)
from snippets.lease import invalidate, read_through
from snippets.replication import ReplicatedDatabase, add_change_stream
from snippets.scenarios import user_not_cached
# --8<-- [end:imports]


# --8<-- [start:world]
class TwoRegions(ReplicatedDatabase):
    """The primary (US), the EU replica that lags behind it, and the EU's own Redis.
    The ``cache`` the actors get is the US Redis."""

    def __init__(self) -> None:
        super().__init__(replica_store="EU replica")
        self.eu_cache = fakeredis.FakeRedis(server=fakeredis.FakeServer(),
                                            decode_responses=True)

    def stores(self) -> dict[str, Any]:
        return {**super().stores(), "EU Redis": self.eu_cache}


def regions_of(db: Database) -> TwoRegions:
    """``db`` as the two-region world; a clear error for any other database."""
    if not isinstance(db, TwoRegions):
        raise TypeError(f"this needs the two-region world (TwoRegions), got {db!r}")
    return db
# --8<-- [end:world]


# --8<-- [start:cross-region-delete]
def update_user(cache: Cache, db: Database, user_id: int, name: str, *,
                leases: bool = False) -> None:
    """US: write the primary, delete the US key, and send the DEL to the EU."""
    key, world = user_key(user_id), regions_of(db)
    check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id))
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    for region in (cache, world.eu_cache):  # (1)!
        if leases:
            invalidate(region, key)
        else:
            region.delete(key)


def get_user_eu(db: Database, user_id: int, ttl: int = DEFAULT_TTL, *,
                leases: bool = False) -> str | None:
    """EU: read through the EU Redis, from the EU replica."""
    key, world, ttl = user_key(user_id), regions_of(db), check_ttl(ttl)

    def load() -> str | None:
        rows = world.replica.query("SELECT name FROM users WHERE id = ?", (user_id,))
        return rows[0][0] if rows else None

    return read_eu(world.eu_cache, key, load, ttl, leases)


def read_eu(eu_cache: Cache, key: str, load: Callable[[], str | None], ttl: int,
            leases: bool) -> str | None:
    """Cache-aside (GET, load, SET), or the kit's lease (GET, SET NX, load, FILL)."""
    if leases:
        return read_through(eu_cache, key, load, ttl)
    cached = eu_cache.get(key)
    if cached is not None:
        return str(cached)
    value = load()
    if value is not None:
        eu_cache.set(key, value, ex=ttl)
    return value
# --8<-- [end:cross-region-delete]


# --8<-- [start:eu-stream]
def update_user_home_only(cache: Cache, db: Database, user_id: int, name: str, *,
                          leases: bool = False) -> None:
    """US: write the primary and delete the US key. The EU is left to its own
    change stream: no DEL crosses regions."""
    key = user_key(user_id)
    check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id))
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")
    if leases:
        invalidate(cache, key)
    else:
        cache.delete(key)


def poll_eu(db: Database, *, leases: bool = False) -> int:
    """EU: one poll of the EU replica's change stream, deleting in the EU Redis. The
    replica's changes are the ones it has applied, so the DEL cannot come early."""
    world = regions_of(db)
    return poll_changes(world.eu_cache, world.replica, "eu", leases=leases)
# --8<-- [end:eu-stream]


# --8<-- [start:remote-marker]
MARKER_TTL = 10  # seconds: longer than the replica is ever behind (an assumption)


def marker_key(key: str) -> str:
    """``{user:1}:remote``: in the same Redis Cluster slot as ``user:1``."""
    return f"{{{key}}}:remote"


def update_user_with_marker(cache: Cache, db: Database, user_id: int, name: str, *,
                            leases: bool = True) -> None:
    """US: mark the key in the EU first, then write the primary and delete the key
    in both regions."""
    key, world = user_key(user_id), regions_of(db)
    check_name(name)
    world.eu_cache.set(marker_key(key), 1, ex=MARKER_TTL)  # (1)!
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id))
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")  # the marker just expires
    for region in (cache, world.eu_cache):
        if leases:
            invalidate(region, key)
        else:
            region.delete(key)


def get_user_eu_marked(db: Database, user_id: int, ttl: int = DEFAULT_TTL, *,
                       leases: bool = True) -> str | None:
    """EU: on a miss, a marked key is read from the primary (across regions), any
    other from the EU replica."""
    key, world, ttl = user_key(user_id), regions_of(db), check_ttl(ttl)

    def load() -> str | None:
        marked = world.eu_cache.exists(marker_key(key))  # (2)!
        source = world if marked else world.replica
        rows = source.query("SELECT name FROM users WHERE id = ?", (user_id,))
        return rows[0][0] if rows else None

    return read_eu(world.eu_cache, key, load, ttl, leases)
# --8<-- [end:remote-marker]


# --8<-- [start:explore]
@dataclass(frozen=True)
class Fix:
    """The US writer, the EU reader, and the EU's change-stream consumer (if any)."""

    write: Callable[[Cache, Database], Any]
    read: Actor
    consume: Actor | None = None


def fix(leases: bool, stream: bool = False, marker: bool = False) -> Fix:
    if marker:
        return Fix(lambda c, d: update_user_with_marker(c, d, 1, "new", leases=leases),
                   lambda c, d: get_user_eu_marked(d, 1, leases=leases))
    if stream:
        return Fix(lambda c, d: update_user_home_only(c, d, 1, "new", leases=leases),
                   lambda c, d: get_user_eu(d, 1, leases=leases),
                   lambda c, d: poll_eu(d, leases=leases))
    return Fix(lambda c, d: update_user(c, d, 1, "new", leases=leases),
               lambda c, d: get_user_eu(d, 1, leases=leases))


FIXES = {
    "cross-region DEL": fix(leases=False),
    "cross-region DEL + lease": fix(leases=True),
    "EU change stream": fix(leases=False, stream=True),
    "EU change stream + lease": fix(leases=True, stream=True),
    "remote marker": fix(leases=False, marker=True),
    "remote marker + lease": fix(leases=True, marker=True),
}


def setup(cache: Cache, db: Database) -> None:
    """User 1 is "old" in the primary and the replica, cached nowhere; the EU
    replica records what it applies in its own change stream."""
    user_not_cached(cache, db)
    add_change_stream(regions_of(db).replica)


def eu_agrees(name: str) -> Callable[[Cache, Database, Returns], str | None]:
    """Once everyone is done, replication catches up and so does the EU consumer;
    then the EU Redis holds nothing for user 1, or what the primary holds."""
    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        world = regions_of(db)
        while world.replicate():
            pass
        consume = FIXES[name].consume
        while consume is not None and consume(cache, db):
            pass  # later polls of the EU consumer
        cached = world.eu_cache.get(user_key(1))
        [(in_db,)] = db.query("SELECT name FROM users WHERE id = 1")
        if cached is not None and cached != in_db:
            return f"stale in the EU: it caches {cached!r}, the primary says {in_db!r}"
        return None
    return check


def actors(name: str) -> dict[str, Actor]:
    if name not in FIXES:
        raise LookupError(f"no fix named {name!r}; fixes: {', '.join(FIXES)}")
    chosen = FIXES[name]
    found: dict[str, Actor] = {"Writer": chosen.write, "Reader": chosen.read,
                               "Replication": lambda c, d: regions_of(d).replicate()}
    if chosen.consume is not None:
        found["Consumer"] = chosen.consume
    return found


def explore_fix(name: str) -> Exploration:
    """Every class of equivalent interleavings (DPOR) of the US writer, the EU reader,
    one replication step (and one poll of the EU consumer)."""
    return explore(actors(name), setup, eu_agrees(name), make_db=TwoRegions,
                   describe=without_tokens)
# --8<-- [end:explore]


def without_tokens(cache: Cache, db: Database, returns: Returns) -> str:
    """The outcome, with the EU Redis, each random lease token shown as 'token'."""
    eu = sorted((k, v) for k in regions_of(db).eu_cache.keys("*")
                if (v := regions_of(db).eu_cache.get(k)) is not None)
    text = describe_state(cache, db, returns) + f", EU Redis {eu}"
    return re.sub(r"'[0-9a-f]{16}'", "'token'", text)


def stale_refill() -> Run:
    """The DEL reaches the EU before the replica has the row; the EU reader refills
    the old row; the replica catches up, and nothing deletes it."""
    name = "cross-region DEL"
    return replay(actors(name), setup,
                  "Writer Writer Writer Reader Reader Reader Replication",
                  check=eu_agrees(name), make_db=TwoRegions)


def marker_read_run() -> Run:
    """The remote marker: the EU reader finds it and reads the primary."""
    name = "remote marker + lease"
    return replay(actors(name), setup,
                  "Writer Writer Writer Writer Reader Reader Reader Reader Reader"
                  " Replication", check=eu_agrees(name), make_db=TwoRegions)


def marker_read() -> str:
    """The remote marker: the EU reader finds it and reads the primary."""
    run = marker_read_run()
    text = run.mermaid()
    text = re.sub(r'EVAL ".*?" 2', "EVAL FILL 2", text)
    for number, token in enumerate(dict.fromkeys(re.findall(r'"([0-9a-f]{16})"',
                                                            text)), 1):
        text = text.replace(token, f"t{number}")
    return text


# --8<-- [start:costs]
def eu_miss_reads(name: str, marked: bool) -> tuple[int, int]:
    """(EU replica reads, primary reads) of one EU miss, with or without a marker
    left by a recent write."""
    chosen, world = FIXES[name], TwoRegions()
    cache = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    setup(cache, world)
    if marked:
        chosen.write(cache, world)
        while world.replicate():
            pass
    world.reset_counts()
    world.replica.reset_counts()
    chosen.read(cache, world)
    return world.replica.reads, world.reads


def write_trips(name: str) -> Counter[str]:
    """Round trips of one US write, per store (one explorer step each): those to the
    EU Redis cross regions."""
    write: dict[str, Actor] = {"Writer": FIXES[name].write}
    [schedule] = explore(write, setup, make_db=TwoRegions).examples.values()
    run = replay(write, setup, schedule, make_db=TwoRegions)
    return Counter(step.target for step in run.steps)


# --8<-- [end:costs]


def print_costs() -> None:
    """Per fix: what a US write sends to the EU, and where an EU miss reads."""
    print(f"{'fix':<25} {'write: EU Redis':>15} {'EU miss: replica, primary':>26}"
          f" {'after a write':>14}")
    for name in FIXES:
        quiet, marked = eu_miss_reads(name, False), eu_miss_reads(name, True)
        print(f"{name:<25} {write_trips(name)['EU Redis']:>15} "
              f"{quiet[0]:>17}, {quiet[1]:>7} {marked[0]:>6}, {marked[1]:>7}")


def main() -> None:
    """Narrate: the stale refill in the EU, and the two fixes, counted."""
    run = stale_refill()
    print(f"cross-region DEL before the EU replica has the row: {run.verdict}")
    for name in FIXES:
        found = explore_fix(name)
        print(f"{name:<25} {len(found.bad)} bad of {found.total:>3}")


if __name__ == "__main__":
    main()
