"""The reader race, a stale fill after the delete: invalidate-on-write with a
concurrent reader.

A reader misses and loads the old row; the writer updates the row and deletes the key;
the reader then puts the old value back. Nothing deletes it again: it is stale until
the TTL. Also here: deleting before the update, and a delete that fails after the
commit.

Run it: ``python -m snippets.concurrency.reader_race``.
"""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Callable
from typing import Any

import redis

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_name,
    make_fake_cache,
    user_key,
)
from snippets.concurrency.update_vs_invalidate import Read, Write, user_in_cache
from snippets.explorer import Actor, Exploration, Returns, Run, explore, replay
from snippets.patterns.cache_aside import get_user, update_user
from snippets.scenarios import cache_agrees_with_db, user_not_cached

# --8<-- [end:imports]


# --8<-- [start:delete-first]
def delete_then_update(cache: Cache, db: Database, user_id: int, name: str) -> None:
    """Delete-first: delete the cached copy, then write the DB."""
    key = user_key(user_id)
    check_name(name)
    if not db.query("SELECT 1 FROM users WHERE id = ?", (user_id,)):
        raise LookupError(f"no user with id {user_id}")
    cache.delete(key)  # a reader that misses from here on reads the DB...
    db.execute(  # ...which still has the old row until this commits
        "UPDATE users SET name = ?, version = version + 1 WHERE id = ?", (name, user_id)
    )
# --8<-- [end:delete-first]


# --8<-- [start:scenario]
def writer_and_reader(write: Write, read: Read = get_user) -> dict[str, Actor]:
    """W renames user 1 to "new" while R reads user 1."""
    return {"R": lambda cache, db: read(cache, db, 1),
            "W": lambda cache, db: write(cache, db, 1, "new")}


def writer_and_two_readers(write: Write, read: Read = get_user) -> dict[str, Actor]:
    """The same, and a second reader R2 that may start after the write has finished."""
    return writer_and_reader(write, read) | {"R2": lambda cache, db: read(cache, db, 1)}


def no_stale_read_after_write(cache: Cache, db: Database,
                              returns: Returns) -> str | None:
    """A read that began after the write finished must see the write."""
    for reader in ("R", "R2"):
        if reader in returns and returns.finished_before("W", reader) \
                and returns[reader] != "new":
            return f"{reader} began after W finished, yet read {returns[reader]!r}"
    return cache_agrees_with_db(cache, db, returns)
# --8<-- [end:scenario]


# --8<-- [start:fault]
def loses_deletes(cache: Cache) -> Cache:
    """Make this client's DELs fail, as a timeout or a dropped connection would."""
    send = cache.execute_command

    def execute_command(*args: Any, **options: Any) -> Any:
        if args[0] == "DEL":
            raise redis.ConnectionError("connection lost before DEL reached Redis")
        return send(*args, **options)

    cache.execute_command = execute_command  # type: ignore[method-assign]
    return cache


def cache_that_loses_deletes() -> Cache:
    return loses_deletes(make_fake_cache())
# --8<-- [end:fault]


LABELS = {"R": "Reader", "W": "Writer", "R2": "Reader 2", "E": "Eviction"}
LONE_WRITER: dict[str, Actor] = {  # no reader: the DEL alone decides
    "W": lambda cache, db: update_user(cache, db, 1, "new")}


def draw(run: Run, final_state: bool = False) -> str:
    return run.mermaid({name: LABELS[name] for name in run.returns}, final_state,
                       transactions_as_blocks=True)


def explore_reader(write: Write) -> Exploration:
    """Every interleaving of a writer and a reader (none counted as equivalent)."""
    return explore(writer_and_reader(write), user_not_cached, cache_agrees_with_db,
                   reduce=False)


def explore_two_readers(write: Write) -> Exploration:
    return explore(writer_and_two_readers(write), user_not_cached,
                   no_stale_read_after_write, reduce=False)


def explore_lost_delete(
        make_cache: Callable[[], Cache] = cache_that_loses_deletes) -> Exploration:
    return explore(LONE_WRITER, user_in_cache, cache_agrees_with_db,
                   make_cache=make_cache, reduce=False)


# The runs drawn on the page: each is a schedule the explorer reported as bad.
def reader_race() -> Run:
    return replay(writer_and_reader(update_user), user_not_cached, "R R W W R",
                  check=cache_agrees_with_db)


def reader_race_diagram() -> str:
    return draw(reader_race())


def stale_for_the_next_reader() -> Run:
    return replay(writer_and_two_readers(update_user), user_not_cached, "R R W W R R2",
                  check=no_stale_read_after_write)


def stale_for_the_next_reader_diagram() -> str:
    return draw(stale_for_the_next_reader())


def delete_first_race() -> Run:
    return replay(writer_and_reader(delete_then_update), user_not_cached, "W W R R R W",
                  check=cache_agrees_with_db)


def delete_first_race_diagram() -> str:
    return draw(delete_first_race())


def lost_delete() -> Run:
    return replay(LONE_WRITER, user_in_cache, "W W", check=cache_agrees_with_db,
                  make_cache=cache_that_loses_deletes)


def lost_delete_diagram() -> str:
    return draw(lost_delete())


def main() -> None:
    for title, result in (
        ("invalidate-on-write, writer + reader", explore_reader(update_user)),
        ("delete-first, writer + reader", explore_reader(delete_then_update)),
        ("invalidate-on-write, writer + 2 readers", explore_two_readers(update_user)),
        ("invalidate-on-write, DEL lost", explore_lost_delete()),
    ):
        print(f"{title:<40} {len(result.bad):>2} bad of {result.total:>3}, "
              f"e.g. {result.bad[0] if result.bad else '-'}")
    run = reader_race()
    left = run.cache.ttl(user_key(1))
    print(f"replay of {run.schedule}: {run.verdict}")
    print(f"until the TTL expires: {0 < left <= DEFAULT_TTL} (at most {DEFAULT_TTL} s)")


if __name__ == "__main__":
    main()
