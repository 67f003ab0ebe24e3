"""The load test: its staleness counter on scripted histories, its workload (rounds whose
writes are all of one key, seeded pauses), its bounds, and what must hold under real
threads. Nothing here asserts that a racy strategy DOES show staleness under threads: that
depends on timing; the explorer proves it instead, and the page reports a sample."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from snippets.explorer.pages import words
from snippets.backends import make_fake_cache
from snippets.concurrency import load_test
from snippets.concurrency.load_test import (Log, Pauses, count_stale_reads, run_load, sample,
                                            strategies)
from snippets.patterns.cache_aside import get_user, update_user

LEASES = "leases"  # the kit's lease: the production pattern's read and write paths


def clients_of(cache):
    """A factory of clients of the fixture's server: one per thread, one shared pool."""
    return lambda: cache.__class__(connection_pool=cache.connection_pool)


# --- the counter, on histories with a known answer ---------------------------------------


COMMITS = {1: ["a0", "a1", "a2"], 2: ["b0", "b1"]}


def test_a_read_before_any_completed_write_is_never_stale():
    writes = [(5, 1, "a1")]
    assert count_stale_reads(COMMITS, writes, [(1, 1, "a0"), (4, 1, "a0")]) == 0


def test_an_old_value_after_a_completed_write_is_stale():
    writes = [(2, 1, "a1")]
    reads = [(3, 1, "a0"), (3, 1, "a1"), (3, 1, "a2")]  # old, current, newer (in flight)
    assert count_stale_reads(COMMITS, writes, reads) == 1


def test_a_read_that_begins_on_the_same_tick_is_impossible_but_strictly_after_counts():
    # Ticks are unique; a read that began at tick 3 started after a write done at tick 2.
    assert count_stale_reads(COMMITS, [(2, 1, "a1")], [(3, 1, "a0")]) == 1
    assert count_stale_reads(COMMITS, [(4, 1, "a1")], [(3, 1, "a0")]) == 0


def test_commit_order_not_completion_order_decides_what_is_newest():
    # a1 was committed before a2, but its write returned later (it was slower to DEL).
    writes = [(2, 1, "a2"), (4, 1, "a1")]
    reads = [
        (3, 1, "a1"),  # stale: a2 had completed and is newer in the DB
        (5, 1, "a1"),  # stale: still older than a2
        (5, 1, "a2"),  # fine: a2 is the newest completed write
    ]
    assert count_stale_reads(COMMITS, writes, reads) == 2


def test_none_or_a_value_the_db_never_held_is_stale():
    reads = [(1, 1, None), (1, 1, "zz"), (1, 2, "a0")]  # a0 is user 1's, not user 2's
    assert count_stale_reads(COMMITS, [], reads) == 3


def test_users_are_independent():
    writes = [(2, 1, "a2")]
    assert count_stale_reads(COMMITS, writes, [(3, 2, "b0"), (3, 1, "a1")]) == 1


def test_a_write_the_db_never_committed_is_an_error():
    with pytest.raises(ValueError, match="write of 'a9' to user 1 not committed"):
        count_stale_reads(COMMITS, [(1, 1, "a9")], [])


def test_ticks_are_unique_across_threads():
    log = Log()
    seen: list[int] = []

    def take() -> None:
        ticks = [log.tick() for _ in range(2000)]
        seen.extend(ticks)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 8001))


# --- the workload: every key's last writes contended, seeded pauses ---------------------------


def test_each_round_writes_one_key_once_per_writer_and_every_key_ends_with_such_a_round(
        monkeypatch):
    """Rounds take the keys in turn; in each, every writer writes the round's key once, all
    released together, so the last writes of every key are concurrent."""
    seen: list[tuple[int, str]] = []

    def recording_write(cache, db, user_id, name):
        seen.append((user_id, threading.current_thread().name))
        update_user(cache, db, user_id, name)

    monkeypatch.setattr(load_test, "strategies", lambda: {"w": (get_user, recording_write)})
    result = run_load("w", threads=5, writers=3, rounds=12, seconds=30, keys=4,
                      cache_factory=load_test.fake_cache_factory())
    assert result["rounds"] == 12 and result["writes"] == 12 * 3
    rounds = [seen[i:i + 3] for i in range(0, len(seen), 3)]  # rounds do not overlap
    assert [{user for user, _ in r} for r in rounds] == [{n % 4 + 1} for n in range(12)]
    assert all(len({thread for _, thread in r}) == 3 for r in rounds)  # each writer once
    last = {user: n for n, r in enumerate(rounds) for user, _ in r}
    assert sorted(last.values()) == [8, 9, 10, 11]  # each key's last round: a full one


def test_readers_read_during_the_writes_and_once_after_them(cache):
    result = run_load("invalidate-on-write", threads=4, writers=2, rounds=20, seconds=30,
                      cache_factory=clients_of(cache))
    assert result["reads"] >= 2 * 20  # at least the read after each round's writes


def test_pauses_are_drawn_from_the_seed_and_come_only_before_cache_writes():
    def pauses_of(seed: int) -> list[str]:
        slept: list[str] = []
        pauses = Pauses(random.Random(seed), 0.5, 0.002, sleep=lambda s: slept.append(now[0]))
        cache = pauses.wrap(make_fake_cache())
        now = [""]
        for _ in range(40):
            for label, call in (("GET", lambda: cache.get("k")),
                                ("SET", lambda: cache.set("k", "v")),
                                ("DEL", lambda: cache.delete("k")),
                                ("EXEC", lambda: cache.pipeline().set("k", "v").execute())):
                now[0] = label
                call()
        assert pauses.taken == len(slept)
        return slept

    assert pauses_of(1) == pauses_of(1)  # the same points, run after run
    assert pauses_of(1) != pauses_of(2)
    assert "GET" not in pauses_of(1) and {"SET", "DEL", "EXEC"} <= set(pauses_of(1))


def test_a_writer_staggers_by_a_seeded_delay_of_at_most_one_pause():
    slept: list[float] = []
    pauses = Pauses(random.Random(7), 0.0, 0.002, sleep=slept.append)
    for _ in range(50):
        pauses.stagger()
    assert all(0 <= s < 0.002 for s in slept) and len(set(slept)) == 50
    again: list[float] = []
    Pauses(random.Random(7), 0.0, 0.002, sleep=again.append).stagger()
    assert again == slept[:1]


def test_the_pauses_are_injected_and_counted(cache):
    slept: list[float] = []
    result = run_load("update-on-write", threads=2, rounds=30, seconds=30, pause=1.0,
                      pause_ms=1.0, cache_factory=clients_of(cache), sleep=slept.append)
    # update-on-write: a pause before each SET (the writer's, and each reader's fill),
    # and a stagger before each write; no real sleep at all
    assert result["pauses"] >= result["writes"] == 30
    assert len(slept) == result["pauses"] + 30


# --- bounded, validated ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threads": 1}, "threads must be an integer >= 2, got 1"),
        ({"threads": 65}, "threads must be at most 64, got 65"),
        ({"threads": "4"}, "threads must be an integer >= 2, got '4'"),
        ({"threads": True}, "threads must be an integer >= 2, got True"),
        ({"threads": 4, "writers": 0}, "writers must be a positive integer, got 0"),
        ({"threads": 4, "writers": 4}, "writers must be at most 3, got 4"),
        ({"rounds": 0}, "rounds must be a positive integer, got 0"),
        ({"rounds": 1_000_001}, "rounds must be at most 1000000, got 1000001"),
        ({"rounds": 2.5}, "rounds must be a positive integer, got 2.5"),
        ({"keys": 0}, "keys must be a positive integer, got 0"),
        ({"keys": 10_001}, "keys must be at most 10000, got 10001"),
        ({"seconds": 0}, "seconds must be a number > 0, got 0"),
        ({"seconds": 61}, "seconds must be at most 60, got 61"),
        ({"seconds": float("nan")}, "seconds must be a number > 0, got nan"),
        ({"seconds": "1"}, "seconds must be a number > 0, got '1'"),
        ({"pause": 1.5}, "pause must be a chance from 0 to 1, got 1.5"),
        ({"pause": "0.1"}, "pause must be a chance from 0 to 1, got '0.1'"),
        ({"pause_ms": 0}, "pause_ms must be a number > 0, got 0"),
        ({"pause_ms": 500}, "pause_ms must be at most 100, got 500"),
    ],
)
def test_bad_sizes_are_clear_errors_and_nothing_runs(kwargs, message):
    made = []
    with pytest.raises(ValueError, match=message):
        run_load(LEASES, cache_factory=lambda: made.append(1), **kwargs)
    assert made == []  # refused before a single client was made


def test_unknown_strategy_is_a_lookup_error_naming_the_known_ones():
    with pytest.raises(LookupError, match="unknown strategy 'magic'; known: .*leases"):
        run_load("magic")


def test_cache_factory_must_be_callable():
    with pytest.raises(TypeError, match="cache_factory must be callable"):
        run_load(LEASES, cache_factory="redis://localhost")


def test_the_round_bound_stops_every_thread(cache):
    result = run_load(
        LEASES, threads=4, writers=1, rounds=50, seconds=30, cache_factory=clients_of(cache)
    )
    assert (result["rounds"], result["writes"]) == (50, 1 * 50)
    assert result["reads"] >= 3 * 50


def test_the_time_bound_stops_every_thread(cache):
    result = run_load(
        LEASES, threads=2, rounds=1_000_000, seconds=0.2, cache_factory=clients_of(cache)
    )
    assert result["rounds"] < 1_000_000
    assert result["seconds"] < 30  # generous: it stops by itself, not at the round count


def test_a_failing_strategy_stops_the_run_with_its_error(cache, monkeypatch):
    def broken_read(cache, db, user_id):
        raise RuntimeError("boom")

    table = {"broken": (broken_read, lambda *args: None)}
    monkeypatch.setattr(load_test, "strategies", lambda: table)
    with pytest.raises(RuntimeError, match="broken: a thread failed: RuntimeError"):
        run_load("broken", rounds=10, seconds=30, cache_factory=clients_of(cache))


def test_a_failing_writer_stops_the_run_too(cache, monkeypatch):
    def broken_write(cache, db, user_id, name):
        raise RuntimeError("boom")

    monkeypatch.setattr(load_test, "strategies", lambda: {"broken": (get_user, broken_write)})
    with pytest.raises(RuntimeError, match="broken: a thread failed: RuntimeError"):
        run_load("broken", rounds=10, seconds=30, cache_factory=clients_of(cache))


# --- what must hold under real threads --------------------------------------------------------


def test_the_lease_is_never_stale_under_threads(cache):
    """Proven for every interleaving by the explorer; here, confirmed on real threads."""
    result = run_load(LEASES, threads=4, rounds=50, seconds=20,
                      cache_factory=clients_of(cache))
    assert result["reads"] > 0 and result["writes"] > 0 and result["pauses"] > 0
    assert result["stale_reads"] == 0
    assert result["stale_keys"] == 0


def test_every_strategy_runs_and_reports_every_figure(cache):
    assert list(strategies()) == [
        "update-on-write", "invalidate-on-write", "delete-first", "leases",
        "versioned-set", "double-delete",
    ]
    for name in strategies():
        result = run_load(name, threads=2, rounds=20, seconds=30, cache_factory=clients_of(cache))
        assert result["strategy"] == name and result["rounds"] == 20
        assert result["writes"] == 20 and result["reads"] >= 20
        assert 0 <= result["stale_keys"] <= 8
        assert result["stale_per_million"] == round(result["stale_reads"] * 1e6 / result["reads"])


SAFE = [name for name in strategies() if name in ("leases", "versioned-set")]


def test_the_safe_strategies_are_the_ones_the_explorer_clears():
    cleared = [
        name for name in strategies()
        if all(bad == 0 for bad, _ in load_test.predict(name).values())
    ]
    assert cleared == SAFE


@pytest.mark.parametrize("name", SAFE)
def test_safe_strategies_end_with_no_stale_key_under_threads(cache, name):
    result = run_load(name, threads=4, rounds=50, seconds=20, cache_factory=clients_of(cache))
    assert result["reads"] > 0 and result["writes"] > 0
    assert result["stale_keys"] == 0


def test_a_sample_counts_runs_with_a_stale_read_and_runs_ending_stale(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    [row] = sample([LEASES], 2, rounds=10, seconds=30)
    assert row["strategy"] == LEASES and row["runs"] == 2 and len(row["stale_per_million"]) == 2
    assert row["runs_with_stale_reads"] == row["runs_ending_stale"] == 0


def test_main_prints_the_table(capsys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    rows = load_test.main(["--rounds", "20", "--seconds", "30", "--runs", "2",
                           "--strategy", LEASES])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("4 threads (2 writing), 8 keys, 2 runs of at most 20 rounds")
    assert out[1].split()[:3] == ["strategy", "runs", "reads"]
    assert out[3].split()[:2] == ["leases", "2"] and out[3].split()[-3:] == ["0", "0", "0"]
    assert rows[0]["runs_ending_stale"] == 0


# --- the explorer's prediction, next to the measurement ---------------------------------------


def test_prediction_for_the_lease_and_cache_aside():
    assert load_test.predict(LEASES) == {"two writers": (0, 6), "writer + reader": (0, 15)}
    # Invalidate-on-write: only R R W W R (read old, then the write, then the late SET).
    assert load_test.predict("invalidate-on-write")["writer + reader"] == (1, 10)
    # Update-on-write: two SETs in the opposite order of their UPDATEs.
    assert load_test.predict("update-on-write")["two writers"] == (2, 6)


def test_prediction_of_an_unknown_strategy_is_a_lookup_error():
    with pytest.raises(LookupError, match="unknown strategy 'magic'"):
        load_test.predict("magic")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "1"], "threads must be an integer >= 2, got 1"),
        (["--seconds", "0"], "seconds must be a number > 0, got 0.0"),
        (["--strategy", "magic"], "unknown strategy 'magic'"),
        (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
        (["--runs", "0"], "runs must be a positive integer, got 0"),
        (["--pause", "2"], "pause must be a chance from 0 to 1, got 2.0"),
    ],
)
def test_main_refuses_bad_options_with_a_usage_message(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        load_test.main(argv)
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""  # nothing ran


def test_bad_seed_is_a_clear_error():
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got 'x'"):
        run_load(LEASES, seed="x")
    with pytest.raises(ValueError, match="seed must be at most 4294967296, got 4294967297"):
        run_load(LEASES, seed=2**32 + 1)


# --- the wording of the page ------------------------------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concurrency" / "load-test.md"




@pytest.mark.parametrize("phrase", [
    # Artefacts of a workload whose last write of a key was rarely contended: with the
    # last writes contended and workers paused, racy strategies end stale in many runs.
    "Stale keys at the end are rare",
    "0 every run | bad",
    "looks almost safe",
    # Machine details of one run are not part of a claim.
    "Measured on 2026",
    "port 6390",
    "2 CPU cores",
    "Redis 7.0.15",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase.lower() not in words(PAGE).lower()


def test_the_page_says_what_the_figures_can_and_cannot_show():
    text = words(PAGE)
    assert "a sample, not a proof" in text
    assert "runs ending stale" in text


NOTEBOOK = PAGE.parents[1] / "notebooks" / "staleness-under-load.ipynb"


def notebook_prose() -> str:
    import json

    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return " ".join(" ".join("".join(c["source"]).split()) for c in cells
                    if c["cell_type"] == "markdown")


def test_the_notebook_says_completed_writes_as_the_counter_counts():
    """count_stale_reads compares with writes that had COMPLETED (returned: DB and cache
    done), not with commits: a write whose UPDATE committed but whose DEL had not run yet
    does not make a read stale."""
    prose = notebook_prose()
    assert "had already committed when the read began" not in prose
    assert "write that had *completed* before the read began" in prose
    assert "Reads and completed writes" in load_test.Log.__doc__
