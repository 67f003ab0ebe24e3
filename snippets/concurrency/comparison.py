"""Every write strategy, against every interleaving of three scenarios: the comparison
table of the common advice, computed, and an eviction added.

Run it: ``python -m snippets.concurrency.comparison``.
"""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Callable
from dataclasses import dataclass

from snippets.backends import Cache, make_fake_cache
from snippets.concurrency.fixes import (
    FIXES,
    current_name,
    evicted,
    get_user_versioned,
    update_user_double_delete,
    update_user_versioned,
)
from snippets.concurrency.reader_race import delete_then_update, writer_and_reader
from snippets.concurrency.update_vs_invalidate import (
    Read,
    Write,
    cached_by,
    two_writers,
    update_user_and_cache,
)
from snippets.explorer import Exploration, explore
from snippets.patterns.cache_aside import get_user, update_user
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


def main() -> None:
    print("Bad schedules (the next read disagrees with the DB), out of every "
          "interleaving (+ eviction: every distinct one):")
    print_table()


if __name__ == "__main__":
    main()
