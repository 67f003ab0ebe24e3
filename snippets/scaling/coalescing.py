"""A stampede cure across processes: one process loads, the others are told the result.

A reader that misses subscribes to ``loaded:<key>``, then tries to become the leader by
taking the kit's lease on the key (``snippets/lease.py``: ``SET {<key>}:lease <token>
NX PX``). The leader loads the row, fills the cache with the lease's ``fill`` (refused
if a write came since the lease was taken) and publishes the outcome (the value, or the
error) on the channel; the followers wait for that message instead of polling. A
follower that hears nothing before the leader's lease would have expired starts over,
so a dead leader costs a wait, not a hang.

Run it: ``python -m snippets.scaling.coalescing``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import threading
import time
from typing import Any

import fakeredis
import redis

from snippets.backends import (
    DEFAULT_TTL, Cache, Clock, Database, check_int, check_ttl, make_cache, make_db,
    user_key,
)
from snippets.faults import Crash, Faults, Intercept
from snippets.lease import fill, release, take_lease
from snippets.simulation import SimCache, SimDatabase, Simulation, fakeredis_on

# --8<-- [end:imports]


def another_process(cache: Cache) -> Cache:
    """A second client of the same server: how this page models a second process."""
    if not isinstance(cache, redis.Redis):
        raise TypeError(f"cache must be a Redis client, got {cache!r}")
    kwargs = cache.connection_pool.connection_kwargs
    if isinstance(cache, fakeredis.FakeRedis):
        return fakeredis.FakeRedis(server=kwargs["server"], decode_responses=True)
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0),
                       password=kwargs.get("password"), decode_responses=True)


# --8<-- [start:read]
class LoadFailed(RuntimeError):
    """The leader's load failed; the followers get this, with the leader's message."""


def get_user_coalesced(
    cache: Cache,
    db: Database,
    user_id: int,
    *,
    ttl: int = DEFAULT_TTL,
    lock_ms: int = 2000,
    clock: Clock = time.monotonic,
) -> str | None:
    """Cache-aside read where one process loads and the others receive its result."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    check_int("lock_ms", lock_ms)
    while True:
        cached = cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]  # replies are decoded: a str
        pubsub = cache.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(f"loaded:{key}")  # first: then no message is missed
            token = take_lease(cache, key, lock_ms)  # BEFORE any DB read
            if token is not None:
                return _lead(cache, db, user_id, key, ttl, token)
            cached = cache.get(key)  # the leader may have finished before we subscribed
            if cached is not None:
                return cached  # type: ignore[return-value]  # decoded: a str
            deadline = clock() + lock_ms / 1000  # by then the leader's lease is gone
            while (left := deadline - clock()) > 0:
                message = pubsub.get_message(timeout=left)
                if message is not None and message["type"] == "message":
                    outcome = json.loads(message["data"])
                    if "error" in outcome:
                        raise LoadFailed(f"leader failed on {key}: {outcome['error']}")
                    return outcome["value"]
        finally:
            pubsub.close()
        # No word from the leader in time (it died?): start over, maybe as the leader.


def _lead(
    cache: Cache, db: Database, user_id: int, key: str, ttl: int, token: str
) -> str | None:
    filled = False
    try:
        name = cache.get(key)  # a leader before us may have filled it a moment ago
        if name is None:
            rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
            name = rows[0][0] if rows else None
            if name is not None:
                fill(cache, key, token, name, ttl)  # refused if a write came since
                filled = True  # the fill freed the lease (or the write did)
    except Exception as error:  # tell the followers: they fail now, not at a timeout
        failure = f"{type(error).__name__}: {error}"
        cache.publish(f"loaded:{key}", json.dumps({"error": failure}))
        raise
    finally:
        if not filled:  # a hit, no row, or an error: free the lease at once
            release(cache, key, token)
    cache.publish(f"loaded:{key}", json.dumps({"value": name}))
    return name  # type: ignore[return-value]  # decoded: a str
# --8<-- [end:read]


# --8<-- [start:write-race]
def coalesced_read(cache: Cache, db: Database) -> str | None:
    """A read of user 1 through coalescing, as an actor (alone, it leads)."""
    return get_user_coalesced(cache, db, 1)
# --8<-- [end:write-race]


def miss_together(first: Cache, db: Database, n: int) -> list[str | None]:
    """``n`` processes (clients) miss user 1 at once, on real threads; return what
    each got.

    The leader's query is held until all ``n`` readers are subscribed to the channel
    (the server counts them), so the outcome does not depend on thread timing.
    """
    check_int("n", n)  # processes
    processes = [first] + [another_process(first) for _ in range(n - 1)]
    listening = threading.Event()

    def until_all_listen() -> None:
        if not listening.wait(10):
            raise RuntimeError("the other readers never subscribed")

    held: Any = Intercept(db, "query", until_all_listen)  # the leader's query waits
    results: list[str | None] = [None] * n

    def reader(i: int) -> None:
        results[i] = get_user_coalesced(processes[i], held, 1)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while (first.pubsub_numsub("loaded:user:1")[0][1] < n
           and time.monotonic() < deadline):
        time.sleep(0.001)  # waiting for a condition, not for a race: the count is exact
    listening.set()
    for thread in threads:
        thread.join()
    for process in processes[1:]:
        process.close()
    return results


# --8<-- [start:simulated]
def simulate_processes(
    n: int, leader: str = "healthy", lock_ms: int = 2000
) -> tuple[list[tuple[str | None, float]], int]:
    """``n`` processes miss user:1 at t=0, in virtual time; the first one leads.

    ``leader`` is "healthy", "fails" (its query raises) or "dies" (it crashes in
    its query, and never publishes nor releases). Return, per process, (what it
    got, when, in seconds), and the number of DB reads. Costs as in the stampede
    benchmark: 1 ms per round trip, 50 ms per query.
    """
    check_int("n", n)  # processes
    if leader not in ("healthy", "fails", "dies"):
        raise ValueError(f"leader must be 'healthy', 'fails' or 'dies', got {leader!r}")
    sim, server, db = Simulation(), fakeredis.FakeServer(), make_db()
    db.add_user(1, "Ada")
    timed = SimDatabase(sim, db, latency=0.05, connections=10)

    class FailingDatabase:
        def query(self, sql: str, params: tuple = ()) -> list[tuple]:
            sim.sleep(0.05)
            raise ConnectionError("database unreachable")

    outcomes: dict[int, tuple[str | None, float]] = {}
    subscribers: list = []
    with fakeredis_on(sim.clock):
        for i in range(n):
            own = fakeredis.FakeRedis(server=server, decode_responses=True)
            client: Any = SimCache(sim, own, 0.001, subscribers)
            source: Any = timed
            if i == 0 and leader == "dies":  # killed just before its query
                process = Faults()  # once dead, its client sends nothing
                client = process.wrap(client, "leader")
                source = Intercept(process.wrap(timed, "leader"), "query", process.kill)
            elif i == 0 and leader == "fails":
                source = FailingDatabase()

            def reader(i: int = i, client: Any = client, source: Any = source) -> None:
                try:
                    value = get_user_coalesced(
                        client, source, 1, lock_ms=lock_ms, clock=sim.clock)
                except (Crash, LoadFailed, ConnectionError) as error:
                    value = type(error).__name__
                outcomes[i] = (value, round(sim.clock(), 6))

            sim.spawn(reader, at=0.0)
        sim.run()
    return [outcomes[i] for i in range(n)], db.reads
# --8<-- [end:simulated]


def main() -> None:
    """Narrate: three processes miss at once; one loads, two receive its result."""
    db = make_db()
    db.add_user(1, "Ada")
    results = miss_together(make_cache(), db, 3)
    print(f"3 processes missed user:1 at once -> {results}")
    print(f"DB reads: {db.reads} (one process loaded;"
          " the other two waited for its result)")


if __name__ == "__main__":
    main()
