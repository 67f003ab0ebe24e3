"""Every write strategy, against every interleaving of three scenarios: the comparison
table of the common advice, computed, and an eviction added. Then the same strategies
outside that model: a small stampede, a lagging replica, a snapshot read, a failover.

Run it: ``python -m snippets.concurrency.comparison`` (``--write`` rewrites the whole
table on docs/concurrency/comparison.md).
"""

from __future__ import annotations

# --8<-- [start:imports]
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from snippets.backends import Cache, Database, make_db, make_fake_cache
from snippets.concurrency.fixes import (
    FIXES,
    current_name,
    evicted,
    get_user_versioned,
    update_user_double_delete,
    update_user_versioned,
)
from snippets.concurrency.reader_race import (
    delete_then_update,
    writer_and_reader,
    writer_and_two_readers,
)
from snippets.concurrency.update_vs_invalidate import (
    Read,
    Write,
    cached_by,
    two_writers,
    update_user_and_cache,
)
from snippets.explorer import Actor, Exploration, explore
from snippets.patterns.cache_aside import get_user, update_user
from snippets.replication import ReplicatedCache, ReplicatedDatabase, SharedFile
from snippets.scenarios import user_not_cached

# --8<-- [end:imports]

# --8<-- [start:strategies]
STRATEGIES: dict[str, tuple[Read, Write]] = {
    "update-on-write": (get_user, update_user_and_cache),
    "invalidate-on-write": (get_user, update_user),
    "delete-first": (get_user, delete_then_update),
    "leases": FIXES["leases"],  # the kit's lease: the production pattern's paths
    "versioned-set": (get_user_versioned, update_user_versioned),
    "double-delete": (get_user, update_user_double_delete),
}
# --8<-- [end:strategies]


# --8<-- [start:compute]
SCENARIOS = ("two writers", "writer + reader", "+ eviction")


@dataclass(frozen=True)
class Cell:
    schedules: int
    bad: int

    def __str__(self) -> str:
        return f"{self.bad} bad of {self.schedules}"


def run_scenario(strategy: str, scenario: str,
                 make_cache: Callable[[], Cache] = make_fake_cache) -> Exploration:
    """Every interleaving of one strategy in one scenario, checked against the
    invariant: once everyone is done, the next read returns what the DB holds. With
    three actors, every class of equivalent interleavings."""
    if strategy not in STRATEGIES:
        raise LookupError(f"no strategy named {strategy!r}; "
                          f"strategies: {', '.join(STRATEGIES)}")
    read, write = STRATEGIES[strategy]
    if scenario == "two writers":  # A and B rename user 1 while it is cached
        actors, setup = two_writers(write), cached_by(read)
    elif scenario == "writer + reader":  # W renames user 1 while R reads it (a miss)
        actors, setup = writer_and_reader(write, read), user_not_cached
    elif scenario == "+ eviction":  # the same, and Redis evicts user 1 at any moment
        actors = writer_and_reader(write, read) | {"E": evicted}
        setup = user_not_cached
    else:
        raise LookupError(f"no scenario named {scenario!r}; "
                          f"scenarios: {', '.join(SCENARIOS)}")
    return explore(actors, setup, current_name(read), make_cache=make_cache,
                   reduce=len(actors) > 2)


def table(
    make_cache: Callable[[], Cache] = make_fake_cache,
) -> dict[str, dict[str, Cell]]:
    """Bad schedules out of all, for every strategy and scenario."""
    return {strategy: {scenario: Cell(result.total, len(result.bad))
                       for scenario in SCENARIOS
                       for result in [run_scenario(strategy, scenario, make_cache)]}
            for strategy in STRATEGIES}


def print_table(make_cache: Callable[[], Cache] = make_fake_cache) -> None:
    cells = table(make_cache)
    print(f"{'strategy':<20}" + "".join(f"{scenario:>17}" for scenario in SCENARIOS))
    for strategy, row in cells.items():
        print(f"{strategy:<20}" + "".join(f"{row[s]!s:>17}" for s in SCENARIOS))
# --8<-- [end:compute]


# --8<-- [start:beyond]
BEYOND = ("stampede + write", "replica lag", "snapshot read", "failover")


def run_beyond(strategy: str, scenario: str,
               make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """One strategy outside the basic model: every distinct schedule."""
    if strategy not in STRATEGIES:
        raise LookupError(f"no strategy named {strategy!r}; "
                          f"strategies: {', '.join(STRATEGIES)}")
    read, write = STRATEGIES[strategy]
    make_world: Callable[[], Database] = make_db
    setup: Actor = user_not_cached
    actors: dict[str, Callable[..., object]]  # of the world's own types
    if scenario == "stampede + write":  # two readers miss at once while W writes
        actors = dict(writer_and_two_readers(write, read))
    elif scenario == "replica lag":  # R reads a replica that applies W's commit late
        actors = {"R": lambda cache, db: read(cache, db.replica, 1),
                  "W": lambda cache, db: write(cache, db, 1, "new"),
                  "P": lambda cache, db: db.replicate()}
        make_world = ReplicatedDatabase
    elif scenario == "snapshot read":  # R's transaction began before W's commit
        actors = {"R": in_snapshot(read),
                  "W": lambda cache, db: write(cache, db, 1, "new")}
        make_world = SharedFile
    elif scenario == "failover":  # user 1 cached and replicated; W's write may be lost
        actors = {"W": lambda cache, db: write(cache, db, 1, "new"),
                  "P": lambda cache, db: cache.replicate(),
                  "F": lambda cache, db: cache.failover()}
        setup, make_cache = cached_and_replicated(read), ReplicatedCache
    else:
        raise LookupError(f"no scenario named {scenario!r}; "
                          f"scenarios: {', '.join(BEYOND)}")
    return explore(actors, setup, current_name(read), make_cache=make_cache,
                   make_db=make_world)


def in_snapshot(read: Read) -> Actor:
    """A reader whose request began a transaction, and read something, before the
    write: its snapshot starts there, on its own connection (``db.other``)."""
    def reader(cache: Cache, db: Database) -> object:
        assert isinstance(db, SharedFile), "a snapshot read needs a SharedFile world"
        connection = db.other
        connection.execute("BEGIN")
        connection.query("SELECT count(*) FROM users")  # the snapshot starts here
        value = read(cache, connection, 1)
        connection.execute("COMMIT")
        return value
    return reader


def cached_and_replicated(read: Read) -> Actor:
    """A setup: user 1 is "old", cached as ``read`` caches it, and the Redis replica
    has received everything."""
    def setup(cache: Cache, db: Database) -> None:
        assert isinstance(cache, ReplicatedCache), "needs a ReplicatedCache world"
        cached_by(read)(cache, db)
        while cache.replicate():
            pass
    return setup
# --8<-- [end:beyond]


START = "<!-- comparison: rendered from snippets.concurrency.comparison, --write -->"
END = "<!-- end of comparison -->"
PAGE = Path(__file__).resolve().parents[2] / "docs" / "concurrency" / "comparison.md"


def markdown_table() -> str:
    """Every strategy in every scenario, bad of all: the page's whole table."""
    scenarios = SCENARIOS + BEYOND
    lines = ["| Strategy | " + " | ".join(scenarios) + " |",
             "|---|" + "---:|" * len(scenarios)]
    for strategy in STRATEGIES:
        cells = []
        for scenario in scenarios:
            run = run_beyond if scenario in BEYOND else run_scenario
            found = run(strategy, scenario)
            bad = f"**{len(found.bad)}**" if found.bad else "0"
            cells.append(f"{bad} of {found.total}")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page_table(page: Path = PAGE) -> str:
    """The table the page shows now, between its markers."""
    text = page.read_text(encoding="utf-8")
    return text[text.index(START) + len(START):text.index(END)].strip("\n")


def write_table(page: Path = PAGE) -> bool:
    """Rewrite the page's table from a fresh computation; True if it changed."""
    text = page.read_text(encoding="utf-8")
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    new = f"{before}{START}\n{markdown_table()}\n{END}{after}"
    page.write_text(new, encoding="utf-8")
    return new != text


def main() -> None:
    if "--write" in sys.argv[1:]:
        changed = write_table()
        print(f"{PAGE.name}: {'rewritten' if changed else 'already up to date'}")
        return
    print("Bad schedules (the next read disagrees with the DB), out of every "
          "interleaving (+ eviction: every distinct one):")
    print_table()


if __name__ == "__main__":
    main()
