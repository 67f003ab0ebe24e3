"""Under real threads: readers and writers hammer one cache and one SQLite, per
strategy, with the last writes of every key contended and workers paused at random.

The explorer proves, schedule by schedule, which strategies can leave a stale value.
This load test looks for the same outcomes on real threads, against a real Redis when
asked: bounded (by a number of rounds AND by time), loopback only, and it stops by
itself. Its figures are a sample: they can show a race happening, never its absence.

Run it: ``python -m snippets.concurrency.load_test`` (fakeredis), or with a real Redis
(its database is emptied): ``REDIS_URL=redis://127.0.0.1:6379/0 python -m
snippets.concurrency.load_test --runs 10``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import argparse
import bisect
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import fakeredis
import redis

from snippets.backends import Cache, Database, check_int, check_number, make_db
from snippets.concurrency.comparison import STRATEGIES
from snippets.concurrency.update_vs_invalidate import Read, Write
from snippets.scenarios import user_not_cached

# --8<-- [end:imports]


# --8<-- [start:history]
# The DB's own record of the order in which values were committed, per user.
HISTORY_SQL = """
CREATE TABLE IF NOT EXISTS name_history (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    id   INTEGER NOT NULL,
    name TEXT    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS record_name AFTER UPDATE OF name ON users
WHEN NEW.name IS NOT OLD.name
BEGIN
    INSERT INTO name_history (id, name) VALUES (NEW.id, NEW.name);
END;
"""


class Log:
    """Reads and completed writes, stamped from one shared monotonic counter."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1)
        self._lock = threading.Lock()
        self.writes: list[tuple[int, int, str]] = []  # (done at, user, value)
        self.reads: list[tuple[int, int, str | None]] = []  # (began at, ...)

    def tick(self) -> int:
        with self._lock:
            return next(self._ticks)

    def write_done(self, user_id: int, value: str) -> None:
        done = self.tick()  # after write() returned: the write has completed
        with self._lock:
            self.writes.append((done, user_id, value))

    def read(self, user_id: int, began: int, value: str | None) -> None:
        with self._lock:
            self.reads.append((began, user_id, value))


# --8<-- [end:history]


# --8<-- [start:stale]
def count_stale_reads(
    commits: dict[int, list[str]],
    writes: Iterable[tuple[int, int, str]],
    reads: Iterable[tuple[int, int, str | None]],
) -> int:
    """Reads that returned a value OLDER than the newest write (in DB commit
    order) that had completed before the read began. A value the DB never
    held for that user counts as stale too: it is simply wrong."""
    position: dict[int, dict[str | None, int]] = {  # user -> value -> commit order
        user: {value: i for i, value in enumerate(values)}
        for user, values in commits.items()
    }
    done: dict[int, list[tuple[int, int]]] = {}  # user -> [(done at, position)]
    for at, user, value in sorted(writes):
        if value not in position.get(user, {}):
            raise ValueError(f"write of {value!r} to user {user} not committed")
        done.setdefault(user, []).append((at, position[user][value]))
    newest: dict[int, list[int]] = {  # running max: newest completed so far
        user: list(itertools.accumulate((p for _, p in events), max))
        for user, events in done.items()
    }
    stale = 0
    for began, user, answer in reads:
        seen = position.get(user, {}).get(answer, -1)  # -1: never held, or None
        events = done.get(user, [])
        n = bisect.bisect_left(events, (began, -1))  # writes done before began
        required = newest[user][n - 1] if n else 0
        stale += seen < required
    return stale
# --8<-- [end:stale]


# --8<-- [start:inputs]
Strategy = tuple[Read, Write]
CacheFactory = Callable[[], Cache]  # one client per thread, all of one server


def strategies() -> dict[str, Strategy]:
    """Every strategy of the comparison table ("leases": the production pattern's)."""
    return dict(STRATEGIES)


def check_strategy(name: str) -> str:
    known = strategies()
    if name not in known:
        raise LookupError(f"unknown strategy {name!r}; known: {', '.join(known)}")
    return name


def fake_cache_factory() -> CacheFactory:
    """Clients of ONE in-process fakeredis server: each thread gets its own."""
    server = fakeredis.FakeServer()
    return lambda: fakeredis.FakeRedis(server=server, decode_responses=True)


def redis_cache_factory(url: str) -> CacheFactory:
    """Clients of the real Redis at ``url``: each thread gets its own."""
    return lambda: redis.Redis.from_url(url, decode_responses=True)


def default_cache_factory() -> CacheFactory:
    url = os.environ.get("REDIS_URL")
    return redis_cache_factory(url) if url else fake_cache_factory()


def size(name: str, value: object, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``: every run stays small."""
    number = check_int(name, value, minimum=low)
    if number > high:
        raise ValueError(f"{name} must be at most {high}, got {number!r}")
    return number


def check_sizes(
    threads: int, writers: int | None, rounds: int, seconds: float, keys: int
) -> tuple[int, int, int, float, int]:
    """Refuse, before anything runs, a size that would not stop soon."""
    threads = size("threads", threads, 2, 64)
    writers = threads // 2 if writers is None else writers
    writers = size("writers", writers, 1, threads - 1)
    rounds = size("rounds", rounds, 1, 1_000_000)
    keys = size("keys", keys, 1, 10_000)
    if check_number("seconds", seconds) > 60:
        raise ValueError(f"seconds must be at most 60, got {seconds!r}")
    return threads, writers, rounds, float(seconds), keys


def check_pauses(pause: float, pause_ms: float) -> tuple[float, float]:
    """A chance from 0 to 1, and a pause from 0 to 100 ms."""
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) \
            or not 0 <= pause <= 1:
        raise ValueError(f"pause must be a chance from 0 to 1, got {pause!r}")
    if check_number("pause_ms", pause_ms) > 100:
        raise ValueError(f"pause_ms must be at most 100, got {pause_ms!r}")
    return float(pause), float(pause_ms)
# --8<-- [end:inputs]


# --8<-- [start:pauses]
PAUSED = frozenset({"SET", "DEL", "EVAL", "EVALSHA", "INCRBY"})  # writes to the cache


class Pauses:
    """Pause a worker, now and then, just before it writes to the cache: a garbage
    collection or a slow network at the worst moment. Which writes pause is drawn
    from a seeded ``rng``, so a worker pauses at the same points in every run; what
    varies is only how the other threads move meanwhile."""

    def __init__(self, rng: random.Random, chance: float, seconds: float,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.rng, self.chance, self.seconds, self.sleep = rng, chance, seconds, sleep
        self.taken = 0

    def maybe(self) -> None:
        if self.rng.random() < self.chance:
            self.taken += 1
            self.sleep(self.seconds)

    def stagger(self) -> None:
        """Before a writer's write: a seeded delay of up to one pause, so the writes
        of a round land one after another, with readers in between."""
        self.sleep(self.rng.random() * self.seconds)

    def wrap(self, cache: Cache) -> Cache:
        """This worker's client, pausing before its cache writes (and EXECs)."""
        send, pipeline = cache.execute_command, cache.pipeline

        def execute_command(*args: Any, **options: Any) -> Any:
            if str(args[0]).upper() in PAUSED:
                self.maybe()
            return send(*args, **options)

        def paused_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            def run(*a: Any, **k: Any) -> Any:
                self.maybe()
                return execute(*a, **k)

            pipe.execute = run  # type: ignore[method-assign]
            return pipe

        cache.execute_command = execute_command  # type: ignore[method-assign]
        cache.pipeline = paused_pipeline  # type: ignore[method-assign]
        return cache
# --8<-- [end:pauses]


# --8<-- [start:run]
def run_load(
    strategy: str,
    *,
    threads: int = 4,
    writers: int | None = None,
    rounds: int = 2000,
    seconds: float = 0.3,
    keys: int = 8,
    pause: float = 0.3,
    pause_ms: float = 2.0,
    cache_factory: CacheFactory | None = None,
    seed: int = 0,
    sleep: Callable[[float], object] = time.sleep,
) -> dict[str, Any]:
    """Run ``threads`` threads (``writers`` of them writing, the rest reading) in
    rounds, for ``rounds`` rounds or ``seconds``, whichever ends first. Each round is
    about one key (in turn), not cached at its start, as in the explorer's writer +
    reader: every writer writes it once, at the same time, and every reader reads it
    until the writes are done, then once more. So the last writes of every key are
    concurrent, and readers crowd them. Before each cache write a worker pauses
    ``pause_ms`` with chance ``pause`` (seeded). Returns the counts and the staleness
    found."""
    read, write = strategies()[check_strategy(strategy)]
    threads, writers, rounds, seconds, keys = check_sizes(
        threads, writers, rounds, seconds, keys
    )
    chance, pause_ms = check_pauses(pause, pause_ms)
    seed = size("seed", seed, 0, 2**32)
    factory = cache_factory or default_cache_factory()
    if not callable(factory):
        raise TypeError(f"cache_factory must be callable, got {factory!r}")

    db, log = make_db(), Log()
    db.conn.executescript(HISTORY_SQL)
    for user in range(1, keys + 1):
        db.add_user(user, f"u{user}-w0")
    main_cache = factory()
    main_cache.flushdb()  # every run starts from an empty cache
    names = itertools.count(1)  # unique values: each one names its write
    errors: list[BaseException] = []
    pauses = [Pauses(random.Random(seed * 1000 + i), chance, pause_ms / 1000, sleep)
              for i in range(threads)]

    # One round at a time: the last thread to reach the barrier opens the next one.
    now = {"round": -1, "user": 1, "stop": False, "writing": writers}
    deadline: list[float] = []
    written, lock = threading.Event(), threading.Lock()

    def next_round() -> None:
        if not deadline:
            deadline.append(time.monotonic() + seconds)
        now["round"] += 1
        now["user"] = now["round"] % keys + 1
        now["stop"] = now["round"] >= rounds or time.monotonic() >= deadline[0]
        now["writing"] = writers
        written.clear()
        main_cache.delete(f"user:{now['user']}")  # the round's key starts uncached

    barrier = threading.Barrier(threads, action=next_round, timeout=60)

    def work(index: int) -> None:
        cache = pauses[index].wrap(factory())
        try:
            while True:
                barrier.wait()
                if now["stop"]:
                    break
                user = int(now["user"])
                if index < writers:
                    pauses[index].stagger()
                    value = f"u{user}-w{next(names)}"
                    write(cache, db, user, value)
                    log.write_done(user, value)
                    with lock:
                        now["writing"] -= 1
                        if now["writing"] == 0:
                            written.set()
                else:
                    for _ in range(10_000):  # bounded, even if a writer never ends
                        done = written.is_set()  # then this read began after them
                        began = log.tick()
                        log.read(user, began, read(cache, db, user))
                        if done:
                            break
                        written.wait(pause_ms / 4000)  # read again soon, or once done
        except threading.BrokenBarrierError:
            pass  # another thread failed: reported by it
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            written.set()  # readers waiting for this round's writes: stop waiting
            barrier.abort()
        finally:
            cache.close()

    began_at = time.monotonic()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - began_at
    if errors:
        error = errors[0]
        raise RuntimeError(f"{strategy}: a thread failed: {error!r}") from error

    commits = {user: [f"u{user}-w0"] for user in range(1, keys + 1)}
    history = "SELECT id, name FROM name_history ORDER BY seq"
    for user, name in db.query(history):
        commits[user].append(name)
    stale_reads = count_stale_reads(commits, log.writes, log.reads)
    # Stale at the end: once every thread is done, what the next reader gets.
    stale_keys = sum(
        read(main_cache, db, user) != commits[user][-1] for user in commits
    )
    main_cache.close()
    db.close()
    reads = len(log.reads)
    return {
        "strategy": strategy,
        "rounds": int(now["round"]),
        "reads": reads,
        "writes": len(log.writes),
        "pauses": sum(p.taken for p in pauses),
        "stale_reads": stale_reads,
        "stale_per_million": round(stale_reads * 1_000_000 / reads) if reads else 0,
        "stale_keys": stale_keys,
        "seconds": round(elapsed, 2),
    }
# --8<-- [end:run]


# --8<-- [start:predict]
def predict(strategy: str) -> dict[str, tuple[int, int]]:
    """The explorer's verdict on the same strategy: (bad, schedules) for two
    writers and for a writer + a reader, over every interleaving. Bad: a read
    after everyone is done disagrees with the DB, or a read that began after
    the write finished returned the old value."""
    from snippets.explorer import Actor, explore

    read, write = strategies()[check_strategy(strategy)]

    def setup(cache: Cache, db: Database) -> None:
        user_not_cached(cache, db)
        read(cache, db, 1)  # start warm: "old" is cached

    def check(cache: Cache, db: Database, returns: Any) -> str | None:
        [(row,)] = db.query("SELECT name FROM users WHERE id = 1")
        if read(cache, db, 1) != row:
            return f"after everyone, a read disagrees with the DB's {row!r}"
        late = "R" in returns and returns.finished_before("W", "R")
        if late and returns["R"] != row:
            return f"R began after the write and returned {returns['R']!r}"
        return None

    scenarios: dict[str, dict[str, Actor]] = {
        "two writers": {"A": lambda c, d: write(c, d, 1, "A"),
                        "B": lambda c, d: write(c, d, 1, "B")},
        "writer + reader": {"W": lambda c, d: write(c, d, 1, "new"),
                            "R": lambda c, d: read(c, d, 1)},
    }
    starts = {  # two writers start warm; the reader race needs a miss: cold
        "two writers": setup,
        "writer + reader": user_not_cached,
    }
    verdicts = {}
    for scenario, actors in scenarios.items():
        result = explore(actors, starts[scenario], check, reduce=False)
        verdicts[scenario] = (len(result.bad), result.total)
    return verdicts
# --8<-- [end:predict]


def print_predictions(names: Iterable[str] | None = None) -> None:
    print(f"{'strategy':<22}{'two writers':>16}{'writer + reader':>18}")
    for name in names or strategies():
        cells = [f"{bad} bad of {total}" for bad, total in predict(name).values()]
        print(f"{name:<22}{cells[0]:>16}{cells[1]:>18}")


# --8<-- [start:sample]
def sample(names: Iterable[str], runs: int, **options: Any) -> list[dict[str, Any]]:
    """``runs`` runs of each strategy (seeds ``seed``, ``seed`` + 1, ...): in how
    many of them a stale read was served, and a key ended stale."""
    runs = size("runs", runs, 1, 1000)
    first = size("seed", options.pop("seed", 0), 0, 2**32)
    rows = []
    for name in names:
        results = [run_load(name, seed=first + i, **options) for i in range(runs)]
        rows.append({
            "strategy": name,
            "runs": runs,
            "reads": sum(r["reads"] for r in results),
            "stale_per_million": [r["stale_per_million"] for r in results],
            "runs_with_stale_reads": sum(r["stale_reads"] > 0 for r in results),
            "runs_ending_stale": sum(r["stale_keys"] > 0 for r in results),
        })
    return rows
# --8<-- [end:sample]


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'strategy':<20}{'runs':>5}{'reads':>9}{'stale reads/M':>20}"
        f"{'runs with a':>13}{'runs ending':>13}",
        f"{'':<20}{'':>5}{'':>9}{'(min to max)':>20}{'stale read':>13}{'stale':>13}",
    ]
    for row in rows:
        low, high = min(row["stale_per_million"]), max(row["stale_per_million"])
        spread = f"{low:,}" if low == high else f"{low:,} to {high:,}"
        lines.append(
            f"{row['strategy']:<20}{row['runs']:>5}{row['reads']:>9}{spread:>20}"
            f"{row['runs_with_stale_reads']:>13}{row['runs_ending_stale']:>13}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m snippets.concurrency.load_test",
        description="Readers and writers on real threads, per strategy, the last "
        "writes of every key contended, workers paused at random. Set REDIS_URL to "
        "use a real Redis (its database is emptied).",
    )
    option = parser.add_argument
    option("--threads", type=int, default=4, help="threads in all (default 4)")
    option("--writers", type=int, default=None, help="of which writers (half)")
    option("--rounds", type=int, default=2000, help="max rounds per run (2000)")
    option("--seconds", type=float, default=0.3, help="max seconds per run (0.3)")
    option("--keys", type=int, default=8, help="users, written in turn (8)")
    option("--pause", type=float, default=0.3,
           help="chance that a worker pauses before a cache write (0.3)")
    option("--pause-ms", type=float, default=2.0, help="how long it pauses (2 ms)")
    option("--runs", type=int, default=1, help="runs per strategy (1)")
    option("--seed", type=int, default=0, help="seed of the first run's pauses")
    option("--strategy", action="append", help="run only these (repeatable)")
    args = parser.parse_args(argv)
    names = args.strategy or list(strategies())
    try:  # refuse bad input with a usage message, before anything runs
        for name in names:
            check_strategy(name)
        check_sizes(args.threads, args.writers, args.rounds, args.seconds, args.keys)
        check_pauses(args.pause, args.pause_ms)
        size("runs", args.runs, 1, 1000)
        size("seed", args.seed, 0, 2**32)
    except (ValueError, LookupError) as error:
        parser.error(str(error))
    url = os.environ.get("REDIS_URL")
    backend = "a real Redis" if url else "fakeredis"
    writers = args.writers or args.threads // 2
    print(
        f"{args.threads} threads ({writers} writing), {args.keys} keys, "
        f"{args.runs} runs of at most {args.rounds} rounds or {args.seconds:g} s "
        f"per strategy, pauses of {args.pause_ms:g} ms at chance {args.pause:g}, "
        f"on {backend}"
    )
    rows = sample(
        names, args.runs, threads=args.threads, writers=args.writers,
        rounds=args.rounds, seconds=args.seconds, keys=args.keys, pause=args.pause,
        pause_ms=args.pause_ms, seed=args.seed,
    )
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
