"""Every write strategy, against every interleaving of three scenarios: the comparison
table of the common advice, computed, and an eviction added. Then the same strategies
outside that model: a small stampede, a lagging replica, a snapshot read, a failover.

Run it: ``python -m snippets.concurrency.comparison`` (``--write`` rewrites the whole
table on docs/concurrency/comparison.md).
"""

from __future__ import annotations

# --8<-- [start:imports]
import functools
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
from snippets.explorer import Actor, Exploration, Run, explore, replay
from snippets.patterns.cache_aside import get_user, update_user
from snippets.replication import ReplicatedCache, ReplicatedDatabase, SharedFile
from snippets.scenarios import Check, user_not_cached

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
    actors, setup, check = scenario_world(strategy, scenario)
    return explore(actors, setup, check, make_cache=make_cache, reduce=len(actors) > 2)


def scenario_world(strategy: str,
                   scenario: str) -> tuple[dict[str, Actor], Actor, Check]:
    """The actors, the setup and the check of one strategy in one scenario."""
    read, write = strategy_paths(strategy)
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
    return actors, setup, current_name(read)


def strategy_paths(strategy: str) -> tuple[Read, Write]:
    if strategy not in STRATEGIES:
        raise LookupError(f"no strategy named {strategy!r}; "
                          f"strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy]


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
    world = beyond_world(strategy, scenario)
    return explore(world.actors, world.setup, world.check,
                   make_cache=world.make_cache or make_cache, make_db=world.make_db)


@dataclass(frozen=True)
class World:
    """Who runs, from which state, judged by which check, in which world."""
    actors: dict[str, Callable[..., object]]  # of the world's own types
    setup: Actor
    check: Check
    make_db: Callable[[], Database] = make_db
    make_cache: Callable[[], Cache] | None = None  # None: the caller's, or fakeredis


def beyond_world(strategy: str, scenario: str) -> World:
    read, write = strategy_paths(strategy)
    check = current_name(read)
    if scenario == "stampede + write":  # two readers miss at once while W writes
        return World(dict(writer_and_two_readers(write, read)), user_not_cached, check)
    if scenario == "replica lag":  # R reads a replica that applies W's commit late
        return World({"R": lambda cache, db: read(cache, db.replica, 1),
                      "W": lambda cache, db: write(cache, db, 1, "new"),
                      "P": lambda cache, db: db.replicate()},
                     user_not_cached, check, make_db=ReplicatedDatabase)
    if scenario == "snapshot read":  # R's transaction began before W's commit
        return World({"R": in_snapshot(read),
                      "W": lambda cache, db: write(cache, db, 1, "new")},
                     user_not_cached, check, make_db=SharedFile)
    if scenario == "failover":  # user 1 cached and replicated; W's write may be lost
        return World({"W": lambda cache, db: write(cache, db, 1, "new"),
                      "P": lambda cache, db: cache.replicate(),
                      "F": lambda cache, db: cache.failover()},
                     cached_and_replicated(read), check, make_cache=ReplicatedCache)
    raise LookupError(f"no scenario named {scenario!r}; "
                      f"scenarios: {', '.join(BEYOND)}")


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


# --- docs machinery, not shown: a stepper for each cell, and the page's table ------

LABELS = {"A": "Writer A", "B": "Writer B", "W": "Writer", "R": "Reader",
          "R2": "Reader 2", "E": "Eviction", "P": "Replication", "F": "Failover"}


def slug(name: str) -> str:
    """``writer + reader`` -> ``writer-reader``: a cell's name in an address."""
    return "-".join(name.replace("+", " ").split())


STEPPER_LIMIT = 800  # interleavings: a bigger tree is too heavy to send to a page


def cell_world(strategy: str, scenario: str) -> World:
    if scenario in BEYOND:
        return beyond_world(strategy, scenario)
    return World(*scenario_world(strategy, scenario))


@functools.cache  # an exploration is deterministic: each cell's is made once
def cell_found(strategy: str, scenario: str) -> Exploration:
    run = run_beyond if scenario in BEYOND else run_scenario
    return run(strategy, scenario)


def cell_run(cell: str) -> Run:
    """``leases/replica-lag``: that cell's first bad schedule replayed (or, with none
    bad, its first schedule), for the stepper that lets a reader walk all of them."""
    strategy, _, scenario_slug = cell.partition("/")
    scenarios = {slug(name): name for name in SCENARIOS + BEYOND}
    if scenario_slug not in scenarios:
        raise LookupError(f"no scenario {scenario_slug!r}; "
                          f"scenarios: {', '.join(scenarios)}")
    scenario = scenarios[scenario_slug]
    world, found = cell_world(strategy, scenario), cell_found(strategy, scenario)
    schedule = found.bad[0] if found.bad else next(iter(found.examples.values()))
    return replay(world.actors, world.setup, schedule, check=world.check,
                  make_cache=world.make_cache or make_fake_cache, make_db=world.make_db)


@functools.cache
def steppable(strategy: str, scenario: str) -> bool:
    """True if the cell has at most STEPPER_LIMIT interleavings: a stepper can hold
    them all."""
    world = cell_world(strategy, scenario)
    try:
        explore(world.actors, world.setup, world.check, make_db=world.make_db,
                make_cache=world.make_cache, reduce=False, max_schedules=STEPPER_LIMIT)
    except RuntimeError:  # more than the limit
        return False
    return True


def stepper_id(strategy: str, scenario: str) -> str:
    return f"concurrency.comparison.cell_run-{strategy}-{slug(scenario)}"


def cell_link(strategy: str, scenario: str) -> str:
    """Where a cell of the table leads: its stepper, at its first bad schedule (or at
    the start), or, for a cell too big to step through, how the table is computed."""
    if not steppable(strategy, scenario):
        return f"#step-{slug(scenario)}"  # its section says why there is no stepper
    found = cell_found(strategy, scenario)
    schedule = "-".join(found.bad[0]) if found.bad else ""
    return f"#schedule={schedule}&stepper={stepper_id(strategy, scenario)}"


STEPPERS_START = ("<!-- steppers: rendered from snippets.concurrency.comparison, "
                  "--write -->")
STEPPERS_END = "<!-- end of steppers -->"


def steppers_section() -> str:
    """A stepper per cell, a section per scenario, a content tab per strategy."""
    lines = []
    for scenario in SCENARIOS + BEYOND:
        title = "writer + reader + eviction" if scenario == "+ eviction" else scenario
        lines += [f"### {title.capitalize()} {{#step-{slug(scenario)}}}", ""]
        for strategy in STRATEGIES:
            lines += [f'=== "{strategy}"', ""]
            if steppable(strategy, scenario):
                lines.append("    <!-- stepper: snippets.concurrency.comparison:"
                             f"cell_run {strategy}/{slug(scenario)} -->")
            else:
                found = cell_found(strategy, scenario)
                lines.append(f"    More than {STEPPER_LIMIT} interleavings, too many "
                             f"to send to a page. The table's {len(found.bad)} bad "
                             f"of {found.total} counts the distinct ones.")
            lines.append("")
    return "\n".join(lines).rstrip("\n")


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
            cells.append(f"[{bad} of {found.total}]({cell_link(strategy, scenario)})")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page_table(page: Path = PAGE, start: str = START, end: str = END) -> str:
    """What the page shows now between two markers (by default: the table)."""
    text = page.read_text(encoding="utf-8")
    return text[text.index(start) + len(start):text.index(end)].strip("\n")


def write_table(page: Path = PAGE) -> bool:
    """Rewrite the page's table and its steppers from a fresh computation; True if
    either changed."""
    text = new = page.read_text(encoding="utf-8")
    for start, end, fresh in ((START, END, markdown_table()),
                              (STEPPERS_START, STEPPERS_END, steppers_section())):
        before, _, rest = new.partition(start)
        _, _, after = rest.partition(end)
        new = f"{before}{start}\n{fresh}\n{end}{after}"
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
