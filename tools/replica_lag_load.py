"""Replica lag under load, on real engines: processes read and write users through each
read path of the replica page, on a PostgreSQL primary, a hot standby that applies each
commit ``--lag-ms`` late, and a real Redis, all started here on loopback.

    .venv/bin/python tools/replica_lag_load.py [--seconds 10] [--lag-ms 50] [path ...]

Prints, per read path: reads made, stale reads per million (a read that returned a name
older than the one the primary held when the read began, by the primary's own record of
the order of writes), and stale keys at the end
(after the standby caught up, users whose next read disagrees with the primary). Needs
`apt-get install postgresql redis-server`. Its figures are a sample: they can show a race
happening, never prove its absence (the explorer's counts do that, in their model).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's root

PATHS = ("invalidate-on-write", "leases", "versioned-set", "fill from the primary",
         "remote markers", "tombstones")
USERS = 20
# The primary's own record of the order in which names were written, per user.
HISTORY = """
CREATE TABLE IF NOT EXISTS name_history (seq BIGSERIAL PRIMARY KEY, name TEXT UNIQUE);
CREATE OR REPLACE FUNCTION record_name() RETURNS trigger AS $$
BEGIN
    INSERT INTO name_history (name) VALUES (NEW.name) ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER record_name AFTER INSERT OR UPDATE OF name ON users
FOR EACH ROW EXECUTE FUNCTION record_name();
"""


def paths(name: str):  # noqa: ANN201 - a Fix of snippets.distributed.replica_lag
    from snippets.distributed import replica_lag
    if name in replica_lag.FIXES:
        return replica_lag.fix(name)
    return replica_lag.strategy(name)


def primary_names(world, user_id: int) -> str:  # noqa: ANN001
    """What the primary holds now: the check's own read, not the service's."""
    row = world.conn.execute("SELECT name FROM users WHERE id = %s", (user_id,)).fetchone()
    return row[0]


def worker(role: str, name: str, urls: tuple[str, str, str], seconds: float,
           seed: int) -> tuple[int, list[tuple[str, str | None]]]:
    """One process: a writer renames random users (each name new), a reader reads
    them. Returns (operations, for each read: what the primary held as it began, and
    what the read returned)."""
    import redis

    from snippets.postgres import PrimaryWithStandby
    primary_url, standby_url, redis_url = urls
    world = PrimaryWithStandby(primary_url, standby_url)
    cache = redis.Redis.from_url(redis_url, decode_responses=True)
    fix, rng = paths(name), random.Random(seed)
    done, reads = 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        user_id = rng.randint(1, USERS)
        if role == "writer":
            fix.write(cache, world, user_id, f"{user_id}:{seed}-{done}")
        else:
            before = primary_names(world, user_id)
            reads.append((before, fix.read(cache, world, user_id)))
        done += 1
    cache.close()
    world.close()
    return done, reads


def run(name: str, urls: tuple[str, str, str], seconds: float, readers: int,
        writers: int) -> tuple[int, int, int]:
    """(reads, stale reads, stale keys at the end) for one read path."""
    import redis

    from snippets.postgres import PrimaryWithStandby
    world = PrimaryWithStandby(urls[0], urls[1])
    cache = redis.Redis.from_url(urls[2], decode_responses=True)
    cache.flushdb()
    world.conn.execute("DROP TABLE IF EXISTS name_history")
    world.conn.execute(HISTORY)
    world.execute("DELETE FROM users")
    for user_id in range(1, USERS + 1):
        world.add_user(user_id, f"{user_id}:start")
    world.replicate()
    roles = ["writer"] * writers + ["reader"] * readers
    with multiprocessing.get_context("spawn").Pool(len(roles)) as pool:
        results = pool.starmap(worker, [(role, name, urls, seconds, seed)
                                        for seed, role in enumerate(roles)])
    world.replicate()  # the standby catches up: what is stale now stays stale
    fix = paths(name)
    stale_keys = sum(fix.read(cache, world, user_id) != primary_names(world, user_id)
                     for user_id in range(1, USERS + 1))
    order = dict(world.conn.execute("SELECT name, seq FROM name_history").fetchall())
    reads = [read for _, made in results for read in made]
    stale = sum(seen is None or order[seen] < order[before] for before, seen in reads)
    cache.close()
    world.close()
    return len(reads), stale, stale_keys


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=list(PATHS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lag-ms", type=int, default=50)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args(argv)
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown read paths {sorted(unknown)}; choose from {list(PATHS)}")
    from tests.engines import start_postgres, start_redis, start_standby
    primary = start_postgres()
    servers = [primary]
    try:
        servers.append(start_standby(primary, args.lag_ms))
        servers.append(start_redis())
        urls = (primary.url, servers[1].url, servers[2].url)
        print(f"PostgreSQL primary + standby ({args.lag_ms} ms behind), Redis; "
              f"{args.writers} writers, {args.readers} readers, {args.seconds:g} s each, "
              f"{USERS} users")
        print("| Read path | reads | stale reads per million | stale keys at the end |")
        print("|---|---:|---:|---:|")
        for name in args.paths:
            reads, stale, keys = run(name, urls, args.seconds, args.readers, args.writers)
            per_million = round(stale * 1_000_000 / reads) if reads else 0
            print(f"| {name} | {reads} | {per_million} | {keys} |", flush=True)
    finally:
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
