"""The explorer's speed: ``python -m snippets.explorer --bench [--old] [--full]``.

For each workload: schedules explored, runs (schedules plus runs cut short), seconds and
schedules per second, with no reduction, with sleep sets and with DPOR; then the same by
CPU time (the process's, every thread included), which other work on a busy machine
disturbs far less than the wall clock. ``--old`` also
runs the explorer as it was at BASELINE (one OS thread per actor, a fresh fakeredis per
run, sleep sets), loaded from git history, on the same workloads in the same run;
``--full`` adds the two largest workloads with no reduction (about two minutes more, and
far more with ``--old``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from snippets.backends import Cache, Database
from snippets.explorer.runtime import Actor
from snippets.explorer.search import explore
from snippets.scenarios import user_not_cached

BASELINE = "cbff034"  # the last commit of the one-module, thread-per-actor explorer
ROOT = Path(__file__).resolve().parents[2]


def writer_and_readers(readers: int, steps: int) -> dict[str, Actor]:
    """One writer (UPDATE, DEL, UPDATE, DEL ...) and cache-aside readers."""
    from snippets.patterns.cache_aside import get_user  # a page module: only when run

    def write(cache: Cache, db: Database) -> None:
        for i in range(steps // 2):
            db.execute("UPDATE users SET name = ? WHERE id = 1", (f"v{i + 1}",))
            cache.delete("user:1")

    def read(cache: Cache, db: Database) -> str | None:
        last = None
        for _ in range(steps // 3):  # a miss is GET, SELECT, SET; a hit just GET
            last = get_user(cache, db, 1)
        if steps % 3:
            cached = cache.get("user:1")
            last = None if cached is None else str(cached)
        return last

    actors: dict[str, Actor] = {"W": write}
    actors.update({f"R{i + 1}": read for i in range(readers)})
    return actors


def counters(count: int, steps: int, keys: int) -> dict[str, Actor]:
    """``count`` actors of ``steps`` INCRs each, spread over ``keys`` keys."""

    def actor(offset: int) -> Actor:
        def body(cache: Cache, db: Database) -> None:
            for i in range(steps):
                cache.incr(f"k{(offset + i) % keys}")

        return body

    return {chr(ord("A") + i): actor(i) for i in range(count)}


def two_writers_two_readers() -> dict[str, Actor]:
    """Cache-aside: two writers and two readers of one user."""
    from snippets.patterns.cache_aside import get_user, update_user

    return {
        "W1": lambda cache, db: update_user(cache, db, 1, "a"),
        "W2": lambda cache, db: update_user(cache, db, 1, "b"),
        "R1": lambda cache, db: get_user(cache, db, 1),
        "R2": lambda cache, db: get_user(cache, db, 1),
    }


Workload = tuple[str, Callable[[], dict[str, Actor]], tuple[str, ...]]
WORKLOADS: list[Workload] = [
    (
        "2 actors x 6 steps, one key: nothing commutes",
        lambda: counters(2, 6, 1),
        ("none", "sleep", "dpor"),
    ),
    (
        "2 actors x 6 steps, cache-aside writer + reader",
        lambda: writer_and_readers(1, 6),
        ("none", "sleep", "dpor"),
    ),
    (
        "3 actors x 4 steps, cache-aside writer + 2 readers",
        lambda: writer_and_readers(2, 4),
        ("sleep", "dpor"),
    ),
    ("3 actors x 4 steps, 3 keys (INCR)", lambda: counters(3, 4, 3), ("sleep", "dpor")),
    (
        "4 actors: 2 cache-aside writers + 2 readers",
        two_writers_two_readers,
        ("sleep", "dpor"),
    ),
]
FULL: list[Workload] = [
    ("3 actors x 4 steps, 3 keys (INCR)", lambda: counters(3, 4, 3), ("none",)),
    ("4 actors: 2 cache-aside writers + 2 readers", two_writers_two_readers, ("none",)),
]


def old_explorer() -> ModuleType | None:
    """The explorer as it was at BASELINE, from git history; None without git."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE}:snippets/explorer.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "explorer_at_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("explorer_at_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


REPEAT = 3


def measure(run: Callable[[], Any]) -> tuple[int, int, float, float]:
    """The best of REPEAT runs, as timeit takes it: a run is only ever slowed down by
    what else the machine does, and the small workloads take hundredths of a second."""
    best: tuple[int, int, float, float] | None = None
    for _ in range(REPEAT):
        started, cpu = time.perf_counter(), time.process_time()
        result = run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if best is None or seconds < best[2]:
            best = (result.total, result.total + result.pruned, seconds, cpu)
    assert best is not None
    return best


def row(title: str, mode: str, total: int, runs: int, seconds: float,
        cpu: float) -> str:
    return (f"{title:<52} {mode:<9} {total:>9} {runs:>6} {seconds:>7.2f} "
            f"{total / seconds:>7.0f} {cpu:>7.2f} {total / cpu:>7.0f}")


def bench(argv: list[str] | None = None) -> None:
    argv = argv or []
    old = old_explorer() if "--old" in argv else None
    if "--old" in argv and old is None:
        print(f"(no git history: the explorer at {BASELINE} cannot be loaded)")
    print(
        f"{'workload':<52} {'reduction':<9} {'schedules':>9} {'runs':>6} "
        f"{'seconds':>7} {'sched/s':>7} {'cpu s':>7} {'per cpu':>7}"
    )
    for title, make, modes in WORKLOADS + (FULL if "--full" in argv else []):
        for mode in modes:
            reduce: bool | str = {"none": False, "dpor": True}.get(mode, mode)
            actors = make()
            new = measure(lambda: explore(actors, user_not_cached, reduce=reduce))  # noqa: B023
            print(row(title, mode, *new))
            if old is not None and mode != "dpor":  # it had sleep sets or nothing
                sleep = mode == "sleep"
                then = measure(
                    lambda: old.explore(actors, user_not_cached, reduce=sleep)  # noqa: B023
                )
                print(row("  the same, explorer at " + BASELINE, mode, *then)
                      + f"  {then[2] / new[2]:5.1f}x faster now")



def runs_per_reduction() -> None:
    """How many runs each reduction needs, on the small workloads: counts, the same on
    every machine (the explorer page shows them)."""
    print(f"{'workload':<52} {'none':>6} {'sleep':>11} {'dpor':>11}")
    for title, make, _ in WORKLOADS[:4]:
        cells = []
        for reduce in (False, "sleep", True):
            if reduce is False and len(make()) > 2:
                cells.append(f"{'-':>6}")  # every interleaving: tens of thousands
                continue
            found = explore(make(), user_not_cached, reduce=reduce)
            runs = f"{found.total}/{found.total + found.pruned}"  # schedules/runs
            cells.append(f"{found.total:>6}" if reduce is False else f"{runs:>11}")
        print(f"{title:<52} " + " ".join(cells))
