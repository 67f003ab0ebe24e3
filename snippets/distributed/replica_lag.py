"""Fills from a lagging read replica: a reader that begins after a write has finished
misses, reads a replica that has not applied the write yet, and fills the old value.
Nothing deletes it again until the TTL.

- Every strategy of the comparison page, with its reads sent to the replica: which
  survive the lag, and which survive it only while nothing evicts the new value.
- Five fixes, each counted in the same worlds and costed: fill from the primary;
  Facebook's remote markers; version-checked fills against a tombstone; a delayed
  second delete sized to the lag budget (and what happens beyond it); invalidation
  from the replica's own apply stream.

Run it: ``python -m snippets.distributed.replica_lag``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_int,
    check_name,
    check_ttl,
    make_fake_cache,
    user_key,
)
from snippets.concurrency import production_pattern
from snippets.concurrency.comparison import STRATEGIES
from snippets.concurrency.fixes import current_name, evicted, no_pause, no_wait
from snippets.concurrency.update_vs_invalidate import Read, Write
from snippets.explorer import Actor, Exploration, Returns, Run, explore, replay
from snippets.lease import invalidate, lease_key, read_through
from snippets.replication import ReplicatedDatabase, add_change_stream, read_changes
from snippets.postgres import PrimaryWithStandby  # the same world on real servers
from snippets.scenarios import user_not_cached

# --8<-- [end:imports]

Check = Callable[[Cache, Database, Returns], "str | None"]


# --8<-- [start:world]
def replicated(db: Database) -> ReplicatedDatabase | PrimaryWithStandby:
    """The world these paths run in: a primary that has a replica (the explorer's, or
    a real PostgreSQL primary and its standby)."""
    if not isinstance(db, ReplicatedDatabase | PrimaryWithStandby):
        raise TypeError(f"a primary with a replica (ReplicatedDatabase) is needed, "
                        f"got {type(db).__name__}")
    return db


def on_replica(read: Read) -> Read:
    """A read path of the comparison page, with its database reads sent to the
    replica, as a read-scaling setup sends them."""
    def read_from_replica(cache: Cache, db: Database, user_id: int) -> str | None:
        return read(cache, replicated(db).replica, user_id)
    return read_from_replica


def overlapping(write: Write, read: Read) -> dict[str, Actor]:
    """W renames user 1 to "new" while R reads it; L is one replication step: the
    replica applies the next committed transaction (if it runs before the commit, it
    finds nothing, and the replica stays behind for the rest of the run)."""
    return {"W": lambda cache, db: write(cache, db, 1, "new"),
            "R": lambda cache, db: read(cache, db, 1),
            "L": lambda cache, db: replicated(db).replicate()}


def read_after_write(write: Write, read: Read) -> dict[str, Actor]:
    """The same, but the read begins after the write has returned: one actor does
    both in that order, so every schedule keeps it (the replica race alone)."""
    def writer_then_reader(cache: Cache, db: Database) -> str | None:
        write(cache, db, 1, "new")
        return read(cache, db, 1)  # another request, after the write's reply
    return {"WR": writer_then_reader,
            "L": lambda cache, db: replicated(db).replicate()}


def catch_up(cache: Cache, db: Database) -> None:
    """Let replication (and an apply-stream consumer, if the world has one) finish."""
    world = replicated(db)
    while world.replicate():
        pass
    if isinstance(world, StreamedReplica):
        invalidate_from_replica(cache, world)


def once_caught_up(read: Read) -> Check:
    """The invariant: once the replica has applied every write, the next read returns
    what the primary holds."""
    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        catch_up(cache, db)
        return current_name(read)(cache, db, returns)
    return check
# --8<-- [end:world]


# --8<-- [start:primary]
def get_user_from_primary(cache: Cache, db: Database, user_id: int,
                          ttl: int = DEFAULT_TTL) -> str | None:
    """The production pattern's read, with the fill read from the primary: hits still
    spare the database, misses never read the replica."""
    replicated(db)  # the replica is there, and deliberately not used
    return production_pattern.get_user(cache, db, user_id, ttl, sleep=no_wait)
# --8<-- [end:primary]


# --8<-- [start:marker]
MARKER_MS = 2_000  # must outlive the replica's lag


def marker_key(key: str) -> str:
    """``{user:1}:marker``: the hash tag keeps it in the slot of ``user:1``."""
    return f"{{{key}}}:marker"


def update_user_with_marker(cache: Cache, db: Database, user_id: int, name: str,
                            marker_ms: int = MARKER_MS) -> None:
    """Set a short-lived "recently written" marker, then write and invalidate."""
    key, name = user_key(user_id), check_name(name)
    check_int("marker_ms", marker_ms)
    cache.set(marker_key(key), "1", px=marker_ms)  # (1)!
    production_pattern.update_user(cache, db, user_id, name)  # UPDATE, DEL key + lease


def get_user_with_marker(cache: Cache, db: Database, user_id: int,
                         ttl: int = DEFAULT_TTL) -> str | None:
    """The lease's read; the holder reads the primary if the key was written
    recently, else the replica."""
    world, key = replicated(db), user_key(user_id)

    def load() -> str | None:
        recent = cache.exists(marker_key(key))  # (2)!
        source = world if recent else world.replica
        rows = source.query("SELECT name FROM users WHERE id = ?", (user_id,))
        return rows[0][0] if rows else None

    return read_through(cache, key, load, check_ttl(ttl), sleep=no_wait)
# --8<-- [end:marker]


# --8<-- [start:tombstone]
# One script for fills and tombstones: it runs inside Redis, so nothing can happen
# between the comparison and the SET. Values are "2:new", tombstones "2 deleted".
STORE_IF_NEWER = """
local held = redis.call('GET', KEYS[1])
if held then
  local version, wanted = tonumber(string.match(held, '^%d+')), tonumber(ARGV[1])
  if version > wanted then return 0 end
  if version == wanted and string.find(held, ':', 1, true) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


def store_if_newer(cache: Cache, key: str, version: int, entry: str, ttl: int) -> bool:
    """SET ``entry`` unless the cache holds a newer version, or a value of this one."""
    return cache.eval(STORE_IF_NEWER, 1, key, version, entry, check_ttl(ttl)) == 1


def parse_entry(entry: str) -> tuple[int, str | None]:
    """(version, name) of "2:new"; (version, None) of the tombstone "2 deleted"."""
    version, colon, name = entry.partition(":")
    return (int(version), name) if colon else (int(entry.split()[0]), None)


def update_user_tombstone(cache: Cache, db: Database, user_id: int, name: str,
                          ttl: int = DEFAULT_TTL) -> None:
    """Write the DB, then leave {deleted, version} in the cache instead of nothing."""
    key, name, ttl = user_key(user_id), check_name(name), check_ttl(ttl)
    with db.transaction():  # the UPDATE and reading back its version: one step
        changed = db.execute(
            "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
            (name, user_id))
        if changed == 0:
            raise LookupError(f"no user with id {user_id}")
        [(version,)] = db.query("SELECT version FROM users WHERE id = ?", (user_id,))
    store_if_newer(cache, key, version, f"{version} deleted", ttl)


def get_user_tombstoned(cache: Cache, db: Database, user_id: int,
                        ttl: int = DEFAULT_TTL) -> str | None:
    """Hit: the value. Miss or tombstone: read the replica, or the primary if the
    replica is older than the tombstone; fill with the version read."""
    world, key, ttl = replicated(db), user_key(user_id), check_ttl(ttl)
    needed = 0
    held: str | None = cache.get(key)  # type: ignore[assignment]  # decoded: a str
    if held is not None:
        version, name = parse_entry(held)
        if name is not None:
            return name
        needed = version  # the write that left the tombstone committed this version
    sql = "SELECT name, version FROM users WHERE id = ?"
    rows = world.replica.query(sql, (user_id,))
    if needed and (not rows or rows[0][1] < needed):
        rows = world.query(sql, (user_id,))  # (1)!
    if not rows:
        return None
    name, version = rows[0]
    store_if_newer(cache, key, version, f"{version}:{name}", ttl)  # (2)!
    return name
# --8<-- [end:tombstone]


# --8<-- [start:double-delete]
def update_user_delete_twice(cache: Cache, db: Database, user_id: int, name: str,
                             pause: Callable[[], None] = no_pause) -> None:
    """The production write, then the key and its lease deleted once more, after a
    pause as long as the replica's lag budget (in production: a delayed job)."""
    production_pattern.update_user(cache, db, user_id, name)  # UPDATE, DEL key + lease
    pause()
    invalidate(cache, user_key(user_id))  # (1)!
# --8<-- [end:double-delete]


# --8<-- [start:apply-stream]
class StreamedReplica(ReplicatedDatabase):
    """A primary and a replica whose own applied changes fill a change stream: a row
    appears in it when the replica has applied the write, not before."""

    def __init__(self) -> None:
        super().__init__()
        add_change_stream(self.replica)  # triggers on the replica's users table
        self.consumed = 0  # the consumer's position in the replica's stream

    def add_user(self, user_id: int, name: str) -> None:
        """Setup: both copies hold the row, and the consumer has read past it."""
        super().add_user(user_id, name)
        with self.replica.lock:
            [(last,)] = self.replica.conn.execute("SELECT max(seq) FROM changes")
        self.consumed = last


def update_user_only(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """Write the primary, and nothing else: the replica's stream invalidates."""
    name = check_name(name)
    changed = db.execute(
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
        (name, user_id))
    if changed == 0:
        raise LookupError(f"no user with id {user_id}")


def invalidate_from_replica(cache: Cache, db: Database) -> int:
    """One poll of the replica's stream: delete every key (and lease) it has changed
    since the last poll. Returns how many keys Redis deleted."""
    if not isinstance(db, StreamedReplica):
        raise TypeError(f"a replica with a change stream is needed, "
                        f"got {type(db).__name__}")
    changes = read_changes(db.replica, db.consumed)  # (1)!
    if not changes:
        return 0
    db.consumed = changes[-1][0]
    keys = sorted({user_key(user_id) for _, user_id in changes})
    return cache.delete(*keys, *(lease_key(key) for key in keys))  # (2)!
# --8<-- [end:apply-stream]


LEASE_ON_REPLICA = on_replica(STRATEGIES["leases"][0])


@dataclass(frozen=True)
class Fix:
    """A read path, a write path, the world they need, and any actor of its own."""

    read: Read
    write: Write
    make_db: Callable[[], Database] = ReplicatedDatabase
    extra: tuple[tuple[str, Actor], ...] = ()


FIXES: dict[str, Fix] = {
    "fill from the primary": Fix(get_user_from_primary, production_pattern.update_user),
    "remote markers": Fix(get_user_with_marker, update_user_with_marker),
    "tombstones": Fix(get_user_tombstoned, update_user_tombstone),
    "replica's apply stream": Fix(LEASE_ON_REPLICA, update_user_only, StreamedReplica,
                                  (("C", invalidate_from_replica),)),
}


def strategy(name: str) -> Fix:
    """A strategy of the comparison page, its reads sent to the replica."""
    if name not in STRATEGIES:
        raise LookupError(f"no strategy named {name!r}; "
                          f"strategies: {', '.join(STRATEGIES)}")
    read, write = STRATEGIES[name]
    return Fix(on_replica(read), write)


def fix(name: str) -> Fix:
    if name not in FIXES:
        raise LookupError(f"no fix named {name!r}; fixes: {', '.join(FIXES)}")
    return FIXES[name]


# --8<-- [start:count]
SCENARIOS = ("overlapping", "read after write", "+ eviction")


@dataclass(frozen=True)
class Cell:
    schedules: int
    bad: int

    def __str__(self) -> str:
        return f"{self.bad} bad of {self.schedules}"


def explore_lag(paths: Fix, scenario: str,
                make_cache: Callable[[], Cache] = make_fake_cache) -> Exploration:
    """One strategy or fix against the replica's lag. "overlapping": W, R and L;
    "read after write": the read begins after the write returned; "+ eviction":
    that, and Redis evicts user 1 once. Two actors: every interleaving; more:
    every class of equivalent ones (the check judges only the final state)."""
    extra = dict(paths.extra)
    if scenario == "overlapping":
        actors = overlapping(paths.write, paths.read) | extra
    elif scenario == "read after write":
        actors = read_after_write(paths.write, paths.read) | extra
    elif scenario == "+ eviction":
        actors = read_after_write(paths.write, paths.read) | extra | {"E": evicted}
    else:
        raise LookupError(f"no scenario named {scenario!r}; "
                          f"scenarios: {', '.join(SCENARIOS)}")
    return explore(actors, user_not_cached, once_caught_up(paths.read),
                   make_db=paths.make_db, make_cache=make_cache,
                   reduce=len(actors) > 2)


def row(paths: Fix) -> dict[str, Cell]:
    return {scenario: Cell(result.total, len(result.bad))
            for scenario in SCENARIOS
            for result in [explore_lag(paths, scenario)]}


def print_rows(rows: dict[str, Fix]) -> None:
    print(f"{'':<28}" + "".join(f"{scenario:>18}" for scenario in SCENARIOS))
    for name, paths in rows.items():
        cells = row(paths)
        print(f"{name:<28}" + "".join(f"{cells[s]!s:>18}" for s in SCENARIOS))
# --8<-- [end:count]


# --8<-- [start:budget]
BUDGET = ("within the budget", "beyond the budget")


def within_budget(returns: Returns) -> bool:
    """The replica applied the write after its commit and before the second DEL: L's
    one step falls between W's first step (the UPDATE) and its last (the DEL)."""
    return returns.began["W"] < returns.began["L"] < returns.ended["W"]


def delete_twice_by_budget(
        make_cache: Callable[[], Cache] = make_fake_cache) -> dict[str, Cell]:
    """Every interleaving of W (update, DEL, DEL later), a lease reader on the
    replica, and L; bad ones counted apart by whether the lag fit the budget."""
    schedules: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    stale = once_caught_up(LEASE_ON_REPLICA)

    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        label = BUDGET[0] if within_budget(returns) else BUDGET[1]
        verdict = stale(cache, db, returns)
        schedules[label] += 1
        bad[label] += verdict is not None
        return verdict

    explore(overlapping(update_user_delete_twice, LEASE_ON_REPLICA), user_not_cached,
            check, make_db=ReplicatedDatabase, make_cache=make_cache, reduce=False)
    return {label: Cell(schedules[label], bad[label]) for label in BUDGET}
# --8<-- [end:budget]


def marker_expires(cache: Cache, db: Database) -> None:
    """The marker's TTL running out (or Redis evicting it)."""
    cache.delete(marker_key(user_key(1)))


def explore_marker_expiry() -> Exploration:
    """Remote markers, a read after the write, and the marker gone at any moment."""
    paths = FIXES["remote markers"]
    actors = read_after_write(paths.write, paths.read) | {"X": marker_expires}
    return explore(actors, user_not_cached, once_caught_up(paths.read),
                   make_db=ReplicatedDatabase, make_cache=make_fake_cache)


# --8<-- [start:cost]
@dataclass(frozen=True)
class Cost:
    """What one call sends where: Redis commands (a script or a MULTI ... EXEC is
    one), statements run by the primary, and reads served by the replica."""

    redis: int
    primary: int
    replica: int

    def __str__(self) -> str:
        return f"{self.redis} / {self.primary} / {self.replica}"


def cost_alone(actor: Actor, setup: Actor,
               make_db: Callable[[], Database] = ReplicatedDatabase) -> Cost:
    """Run ``actor`` alone after ``setup``, and count its calls."""
    [schedule] = explore({"A": actor}, setup, reduce=False, make_db=make_db,
                         make_cache=make_fake_cache).examples.values()
    run = replay({"A": actor}, setup, schedule, make_db=make_db)
    world = replicated(run.db)
    return Cost(sum(step.target == "cache" for step in run.steps),
                world.reads + world.writes, world.replica.reads)


def costs(paths: Fix) -> dict[str, Cost]:
    """A read that misses; one that misses right after a write (the replica has
    not applied it); a write."""
    def read(cache: Cache, db: Database) -> object:
        return paths.read(cache, db, 1)

    def after_a_write(cache: Cache, db: Database) -> None:
        user_not_cached(cache, db)
        paths.write(cache, db, 1, "new")  # committed; the replica has not applied it
        replicated(db).reset_counts()
        replicated(db).replica.reset_counts()

    return {"a miss": cost_alone(read, user_not_cached, paths.make_db),
            "a miss after a write": cost_alone(read, after_a_write, paths.make_db),
            "a write": cost_alone(lambda cache, db: paths.write(cache, db, 1, "new"),
                                  user_not_cached, paths.make_db)}


def print_costs(rows: dict[str, Fix]) -> None:
    columns = ("a miss", "a miss after a write", "a write")
    print("Redis commands / primary statements / replica reads")
    print(f"{'':<28}" + "".join(f"{column:>22}" for column in columns))
    for name, paths in rows.items():
        cells = costs(paths)
        print(f"{name:<28}" + "".join(f"{cells[c]!s:>22}" for c in columns))
# --8<-- [end:cost]


def consumer_poll_cost() -> Cost:
    """One poll of the replica's stream that finds one change."""
    def written_and_applied(cache: Cache, db: Database) -> None:
        user_not_cached(cache, db)
        update_user_only(cache, db, 1, "new")
        replicated(db).replicate()
        replicated(db).reset_counts()
        replicated(db).replica.reset_counts()

    return cost_alone(invalidate_from_replica, written_and_applied, StreamedReplica)


# The runs drawn on the page.
LABELS = {"W": "Writer", "R": "Reader", "L": "Replication", "WR": "Writer, then reader",
          "C": "Consumer", "E": "Eviction"}


def draw(run: Run) -> str:
    """The run as a Mermaid diagram; the lease's script is called FILL, its random
    token t1, and the tombstone's script STORE."""
    text = run.mermaid({name: LABELS[name] for name in run.returns})
    text = re.sub(r'EVAL ".*?" 1', "EVAL STORE 1", text)
    text = re.sub(r'EVAL ".*?" 2', "EVAL FILL 2", text)
    tokens = dict.fromkeys(re.findall(r'"([0-9a-f]{16})"', text))
    for number, token in enumerate(tokens, 1):
        text = text.replace(token, f"t{number}")
    return text


def stale_fill() -> Run:
    """The lease on the replica: the write is done, the read that follows takes a
    fresh lease, reads the replica before it applies the write, and fills "old"."""
    paths = strategy("leases")
    return replay(overlapping(paths.write, paths.read), user_not_cached,
                  "W W R R R L R", check=once_caught_up(paths.read),
                  make_db=ReplicatedDatabase)


def stale_fill_diagram() -> str:
    return draw(stale_fill())


def beyond_the_budget() -> Run:
    """The delayed second DEL comes before the replica applies the write."""
    return replay(overlapping(update_user_delete_twice, LEASE_ON_REPLICA),
                  user_not_cached, "W W W R R R L R",
                  check=once_caught_up(LEASE_ON_REPLICA), make_db=ReplicatedDatabase)


def beyond_the_budget_diagram() -> str:
    return draw(beyond_the_budget())


COSTED: dict[str, Fix] = {
    "lease, reads on the replica": strategy("leases"),
    **FIXES,
    "delete twice": Fix(LEASE_ON_REPLICA, update_user_delete_twice),
}


def tombstone_read() -> Run:
    """A read after a write finds the tombstone, the replica behind it, and reads the
    primary."""
    paths = FIXES["tombstones"]
    return replay(overlapping(paths.write, paths.read), user_not_cached,
                  "W W R R R R L", check=once_caught_up(paths.read),
                  make_db=ReplicatedDatabase)


def tombstone_read_diagram() -> str:
    return draw(tombstone_read())


def main() -> None:
    print("A read that begins after the write has returned, against a lagging "
          "replica:")
    for name, paths in {"lease, reads on the replica": strategy("leases"),
                        **FIXES}.items():
        result = explore_lag(paths, "read after write")
        print(f"  {name:<36} {Cell(result.total, len(result.bad))}")
    for label, cell in delete_twice_by_budget().items():
        print(f"  {'delete twice, lag ' + label:<36} {cell}")


if __name__ == "__main__":
    main()
