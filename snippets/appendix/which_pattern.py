"""Which pattern do I need? The data of the decision guide: what each write strategy of
the comparison table costs, counted on one uncontended miss, write and read after it,
and what it holds against, read off the comparison table.

Run it: ``python -m snippets.appendix.which_pattern`` (``--table`` prints the page's
summary table, ``--write`` rewrites it on docs/appendix/which-pattern.md).
"""

from __future__ import annotations

# --8<-- [start:imports]
import functools
from dataclasses import dataclass

from snippets.backends import Cache, Database, make_db, make_fake_cache
from snippets.concurrency.comparison import (
    BEYOND,
    SCENARIOS,
    STRATEGIES,
    run_beyond,
    run_scenario,
)
from snippets.explorer import Exploration
from snippets.patterns.write_through import cost
from snippets.scenarios import user_not_cached

# --8<-- [end:imports]
import sys  # for the docs machinery at the end, not shown
from pathlib import Path


# --8<-- [start:cost]
@dataclass(frozen=True)
class Cost:
    db: int  # database statements
    commands: int  # Redis commands
    trips: int  # Redis round trips: a pipeline sends several commands in one

    def __str__(self) -> str:
        extra = f" ({self.commands} commands)" if self.commands != self.trips else ""
        return f"{self.db} DB + {self.trips} Redis{extra}"


def costs(strategy: str, cache: Cache, db: Database) -> dict[str, Cost]:
    """One strategy, uncontended: a read that misses, a read that hits, a write, and
    the read after the write, each counted on its own (``cache`` and ``db`` empty)."""
    if strategy not in STRATEGIES:
        raise LookupError(f"no strategy named {strategy!r}; "
                          f"strategies: {', '.join(STRATEGIES)}")
    read, write = STRATEGIES[strategy]
    user_not_cached(cache, db)  # user 1 is "old" in the DB, not in the cache
    steps = {
        "miss": lambda: read(cache, db, 1),
        "hit": lambda: read(cache, db, 1),
        "write": lambda: write(cache, db, 1, "new"),
        "next read": lambda: read(cache, db, 1),  # a hit if the write left the value
    }
    return {step: Cost(*cost(cache, db, run)) for step, run in steps.items()}
# --8<-- [end:cost]


# --8<-- [start:holds]
THREATS = {  # each column of the comparison table, as what it throws at a strategy
    "two writers": "racing writers",
    "writer + reader": "a reader's late fill",
    "+ eviction": "an eviction mid-race",
    "stampede + write": "two readers and a writer",
    "replica lag": "a lagging replica",
    "snapshot read": "an old snapshot",
    "failover": "a Redis failover",
}


@functools.cache  # every exploration runs once per process, however often it is asked
def exploration(strategy: str, scenario: str) -> Exploration:
    run = run_beyond if scenario in BEYOND else run_scenario
    return run(strategy, scenario)


def holds_against(strategy: str) -> list[str]:
    """The scenarios in which no order of the strategy's steps ends stale."""
    return [THREATS[scenario] for scenario in SCENARIOS + BEYOND
            if not exploration(strategy, scenario).bad]


def stale_under(strategy: str) -> list[str]:
    """The scenarios with at least one order that leaves a wrong value cached."""
    return [THREATS[scenario] for scenario in SCENARIOS + BEYOND
            if exploration(strategy, scenario).bad]
# --8<-- [end:holds]


STEPS = {"miss": 28, "write": 28, "next read": 16}  # and the width of each column


def main() -> None:
    print("What one uncontended read and write cost, counted on fakeredis and SQLite:")
    print(f"{'strategy':<19}" + "".join(f"{step:>{w}}" for step, w in STEPS.items()))
    for strategy in STRATEGIES:
        found = costs(strategy, make_fake_cache(), make_db())
        cells = "".join(f"{found[step]!s:>{w}}" for step, w in STEPS.items())
        print(f"{strategy:<19}{cells}")


# --- docs machinery, not shown: the page's summary table, rendered ------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "appendix" / "which-pattern.md"
START = "<!-- summary: rendered from snippets.appendix.which_pattern, --write -->"
END = "<!-- end of summary -->"
EXPLAINED = {  # where each strategy is explained
    "update-on-write": "../concurrency/update-vs-invalidate.md",
    "invalidate-on-write": "../patterns/cache-aside.md",
    "delete-first": "../concurrency/reader-race.md#deleting-first-makes-it-worse",
    "leases": "../concurrency/production-pattern.md",
    "versioned-set": "../concurrency/fixes.md#version-checked-sets",
    "double-delete": "../concurrency/fixes.md#delayed-double-delete",
}


def summary_table() -> str:
    """A row per strategy: its costs on fakeredis, and the comparison's verdicts."""
    lines = ["| Strategy | Miss | Write | Read after a write | Holds against | "
             "Can end stale after |",
             "|---|---|---|---|---|---|"]
    for strategy in STRATEGIES:
        found = costs(strategy, make_fake_cache(), make_db())
        lines.append(" | ".join([
            f"| [{strategy}]({EXPLAINED[strategy]})",
            str(found["miss"]), str(found["write"]),
            "a hit" if found["next read"] == found["hit"] else "a miss",
            ", ".join(holds_against(strategy)) or "nothing",
            ", ".join(stale_under(strategy)) or "nothing",
        ]) + " |")
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
    new = f"{before}{START}\n{summary_table()}\n{END}{after}"
    page.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        print(f"{PAGE.name}: {'rewritten' if write_table() else 'already up to date'}")
    elif "--table" in sys.argv[1:]:
        print(summary_table())
    else:
        main()
