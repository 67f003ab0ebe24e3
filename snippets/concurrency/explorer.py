"""The explorer's worked example: two writers that update the row, then SET the cache.

Run it: ``python -m snippets.concurrency.explorer``, or ``python -m snippets.explorer``.
"""

# --8<-- [start:imports]
from snippets.backends import Cache, Database
from snippets.explorer import Actor, Run, explore, replay
from snippets.scenarios import cache_agrees_with_db, user_not_cached
# --8<-- [end:imports]


# --8<-- [start:example]
def writer(name: str) -> Actor:
    """Update-on-write, by hand: UPDATE the row, then SET the cache to the new value."""
    def write(cache: Cache, db: Database) -> None:
        db.execute("UPDATE users SET name = ? WHERE id = 1", (name,))
        cache.set("user:1", name)
    return write
# --8<-- [end:example]


def lost_update() -> Run:
    """The first bad schedule the explorer reports for the two writers, replayed."""
    writers = {"A": writer("A"), "B": writer("B")}
    result = explore(writers, user_not_cached, cache_agrees_with_db)
    return replay(writers, user_not_cached, result.bad[0], check=cache_agrees_with_db)


def main() -> None:
    writers = {"A": writer("A"), "B": writer("B")}
    result = explore(writers, user_not_cached, cache_agrees_with_db)
    print(result.summary())
    run = replay(writers, user_not_cached, result.bad[0], check=cache_agrees_with_db)
    print(f"replay of {run.schedule}:")
    for step in run.steps:
        print(f"  {step}")
    print(f"  {run.verdict}")


if __name__ == "__main__":
    main()
