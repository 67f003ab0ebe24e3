"""The explorer's speed on a few workloads: ``python -m snippets.explorer --bench``."""

from __future__ import annotations

from collections.abc import Callable

from snippets.backends import Cache, Database, make_fake_cache
from snippets.explorer.runtime import Actor, reusing
from snippets.explorer.search import explore
from snippets.scenarios import user_not_cached


def _writer_actors(count: int, steps: int) -> dict[str, Actor]:
    """One writer (UPDATE, DEL, UPDATE, DEL ...) and cache-aside readers."""
    from snippets.patterns.cache_aside import get_user

    def write(cache: Cache, db: Database) -> None:
        for i in range(steps // 2):
            db.execute("UPDATE users SET name = ? WHERE id = 1", (f"v{i + 1}",))
            cache.delete("user:1")

    def read(cache: Cache, db: Database) -> str | None:
        for _ in range(steps // 3):  # a miss is GET, SELECT, SET; a hit just GET
            last = get_user(cache, db, 1)
        if steps % 3:
            last = cache.get("user:1")
        return last

    actors: dict[str, Actor] = {"W": write}
    actors.update({f"R{i + 1}": read for i in range(count - 1)})
    return actors


def _counter_actors(count: int, steps: int, keys: int) -> dict[str, Actor]:
    """``count`` actors of ``steps`` INCRs each, spread over ``keys`` keys."""
    def actor(offset: int) -> Actor:
        def body(cache: Cache, db: Database) -> None:
            for i in range(steps):
                cache.incr(f"k{(offset + i) % keys}")
        return body
    return {chr(ord("A") + i): actor(i) for i in range(count)}


def bench() -> None:
    """Schedules per second on a few workloads (a few seconds in all)."""
    one_cache = reusing(make_fake_cache())
    workloads: list[tuple[str, dict[str, Actor], bool, Callable[[], Cache]]] = [
        ("2 actors x 6 steps, one key: nothing commutes", _counter_actors(2, 6, 1), True,
         make_fake_cache),
        ("  the same, one fakeredis emptied between runs", _counter_actors(2, 6, 1), True,
         one_cache),
        ("2 actors x 6 steps, cache-aside writer + reader", _writer_actors(2, 6), True,
         make_fake_cache),
        ("  the same, every interleaving (no reduction)", _writer_actors(2, 6), False,
         make_fake_cache),
        ("3 actors x 4 steps, cache-aside writer + 2 readers", _writer_actors(3, 4), True,
         make_fake_cache),
        ("3 actors x 4 steps, 3 keys (INCR)", _counter_actors(3, 4, 3), True, make_fake_cache),
    ]
    print(f"{'workload':<52} {'schedules':>9} {'pruned':>6} {'seconds':>7} "
          f"{'sched/s':>7} {'runs/s':>6}")
    for title, actors, reduce, make_cache in workloads:
        result = explore(actors, user_not_cached, reduce=reduce, make_cache=make_cache)
        runs = result.total + result.pruned
        print(f"{title:<52} {result.total:>9} {result.pruned:>6} {result.seconds:>7.2f} "
              f"{result.total / result.seconds:>7.0f} {runs / result.seconds:>6.0f}")
