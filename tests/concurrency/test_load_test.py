"""The load test: its staleness counter on scripted histories, its bounds, and what must hold
under real threads. Nothing here asserts that a racy strategy DOES show staleness under
threads: that depends on timing; the explorer proves it instead."""

from __future__ import annotations

import threading

import pytest

from snippets.concurrency import load_test
from snippets.concurrency.load_test import PRODUCTION, Log, count_stale_reads, run_load, strategies


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
        ({"ops": 0}, "ops must be a positive integer, got 0"),
        ({"ops": 1_000_001}, "ops must be at most 1000000, got 1000001"),
        ({"ops": 2.5}, "ops must be a positive integer, got 2.5"),
        ({"keys": 0}, "keys must be a positive integer, got 0"),
        ({"keys": 10_001}, "keys must be at most 10000, got 10001"),
        ({"seconds": 0}, "seconds must be a number > 0, got 0"),
        ({"seconds": 61}, "seconds must be at most 60, got 61"),
        ({"seconds": float("nan")}, "seconds must be a number > 0, got nan"),
        ({"seconds": "1"}, "seconds must be a number > 0, got '1'"),
    ],
)
def test_bad_sizes_are_clear_errors_and_nothing_runs(kwargs, message):
    made = []
    with pytest.raises(ValueError, match=message):
        run_load(PRODUCTION, cache_factory=lambda: made.append(1), **kwargs)
    assert made == []  # refused before a single client was made


def test_unknown_strategy_is_a_lookup_error_naming_the_known_ones():
    with pytest.raises(LookupError, match="unknown strategy 'magic'; known: .*production"):
        run_load("magic")


def test_cache_factory_must_be_callable():
    with pytest.raises(TypeError, match="cache_factory must be callable"):
        run_load(PRODUCTION, cache_factory="redis://localhost")


def test_the_count_bound_stops_every_thread(cache):
    result = run_load(
        PRODUCTION, threads=4, writers=1, ops=50, seconds=30, cache_factory=clients_of(cache)
    )
    assert (result["reads"], result["writes"]) == (3 * 50, 1 * 50)


def test_the_time_bound_stops_every_thread(cache):
    result = run_load(
        PRODUCTION, threads=2, ops=1_000_000, seconds=0.2, cache_factory=clients_of(cache)
    )
    assert result["reads"] + result["writes"] < 2 * 1_000_000
    assert result["seconds"] < 30  # generous: it stops by itself, not at the op count


def test_a_failing_strategy_stops_the_run_with_its_error(cache, monkeypatch):
    def broken_read(cache, db, user_id):
        raise RuntimeError("boom")

    table = {"broken": (broken_read, lambda *args: None)}
    monkeypatch.setattr(load_test, "strategies", lambda: table)
    with pytest.raises(RuntimeError, match="broken: a thread failed: RuntimeError"):
        run_load("broken", ops=10, seconds=30, cache_factory=clients_of(cache))


# --- what must hold under real threads --------------------------------------------------------


def test_production_pattern_is_never_stale_under_threads(cache):
    """Proven for every interleaving by the explorer; here, confirmed on real threads."""
    result = run_load(
        PRODUCTION, threads=4, ops=400, seconds=20, cache_factory=clients_of(cache)
    )
    assert result["reads"] > 0 and result["writes"] > 0
    assert result["stale_reads"] == 0
    assert result["stale_keys"] == 0


def test_every_strategy_runs_and_reports_every_figure(cache):
    assert list(strategies()) == [
        "update-on-write", "invalidate-on-write", "delete-first", "leases",
        "versioned-set", "double-delete", PRODUCTION,
    ]
    for name in strategies():
        result = run_load(name, threads=2, ops=20, seconds=30, cache_factory=clients_of(cache))
        assert result["strategy"] == name
        assert result["reads"] == result["writes"] == 20
        assert 0 <= result["stale_keys"] <= 4
        assert result["stale_per_million"] == round(result["stale_reads"] * 1e6 / 20)


SAFE = [name for name in strategies() if name in ("leases", "versioned-set", PRODUCTION)]


def test_the_safe_strategies_are_the_ones_the_explorer_clears():
    cleared = [
        name for name in strategies()
        if all(bad == 0 for bad, _ in load_test.predict(name).values())
    ]
    assert cleared == SAFE


@pytest.mark.parametrize("name", SAFE)
def test_safe_strategies_end_with_no_stale_key_under_threads(cache, name):
    result = run_load(name, threads=4, ops=300, seconds=20, cache_factory=clients_of(cache))
    assert result["reads"] > 0 and result["writes"] > 0
    assert result["stale_keys"] == 0


def test_main_prints_the_table(capsys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    rows = load_test.main(["--ops", "20", "--seconds", "30", "--strategy", PRODUCTION])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("4 threads (2 writing), 4 keys, at most 20 ops per thread")
    assert out[1].split()[:3] == ["strategy", "reads", "writes"]
    assert out[2].split()[:4] == ["production", "pattern", "40", "40"]
    assert rows[0]["stale_keys"] == 0


# --- the explorer's prediction, next to the measurement ---------------------------------------


def test_prediction_for_the_production_pattern_and_cache_aside():
    assert load_test.predict(PRODUCTION) == {"two writers": (0, 6), "writer + reader": (0, 15)}
    # Invalidate-on-write: only R R W W R (read old, then the write, then the late SET).
    assert load_test.predict("invalidate-on-write")["writer + reader"] == (1, 10)
    # Update-on-write: the seed's race, two SETs in the opposite order of their UPDATEs.
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
        run_load(PRODUCTION, seed="x")
    with pytest.raises(ValueError, match="seed must be at most 4294967296, got 4294967297"):
        run_load(PRODUCTION, seed=2**32 + 1)
