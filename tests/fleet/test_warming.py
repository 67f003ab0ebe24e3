"""Cold start and warming: the load a cold cache sends to the database, a rate-limited
warmer and a warm cluster, measured in virtual time; the cold cluster's race and its
hold-off, counted by the explorer. The paths that touch Redis run on fakeredis and on a
real Redis (REDIS_URL)."""

from __future__ import annotations

from collections import Counter

import pytest

from snippets.backends import make_fake_cache
from snippets.explorer import mermaid_problems
from snippets.fleet import warming
from snippets.fleet.warming import (
    OPTIONS,
    WINDOW,
    Option,
    Traffic,
    access_log,
    cold_race,
    delete_with_holdoff,
    draw_reads,
    holdoff_key,
    hot_keys,
    read_cold,
    recovery,
    simulate,
    warm,
)

ROWS = {option.name: option for option in OPTIONS}
CAPACITY = Traffic().db_connections / Traffic().db_latency  # 500 queries a second


def row(name: str):
    return simulate(ROWS[name])


# --- the traffic ------------------------------------------------------------------------


def test_the_reads_are_the_same_every_run_and_skewed_to_a_few_keys():
    traffic = Traffic()
    assert draw_reads(traffic, 100, 1) == draw_reads(traffic, 100, 1)
    log = Counter(access_log(traffic))
    assert (len(log), sum(log.values())) == (985, 20_000)
    top = [n for _, n in log.most_common(400)]
    assert round(sum(top[:100]) / 20_000, 2) == 0.70
    assert round(sum(top) / 20_000, 2) == 0.89
    assert round(log["user:1"] / 20_000, 2) == 0.13


# --- the figures ------------------------------------------------------------------------


def test_a_warm_cache_sends_nothing_to_the_database():
    steady = row("warm (steady state)")
    assert steady.db_reads == 0 and steady.worst == pytest.approx(Traffic().cache_rtt)


def test_a_cold_cache_asks_the_database_for_twice_its_capacity_and_reads_queue():
    cold = row("cold, no warming")
    assert cold.per_window[0] == 105 and cold.peak > 2 * CAPACITY
    assert cold.recovered == 0.5 and cold.db_reads == 519
    assert cold.worst > 10 * Traffic().db_latency  # 379 ms for a 20 ms query


def test_the_tail_keeps_missing_after_the_overload_ends():
    cold = row("cold, no warming")
    assert all(n <= CAPACITY * WINDOW for n in cold.per_window[5:])
    assert cold.per_window[-1] == 29 and cold.per_window[-1] > 0.1 * 200


def test_a_warmer_flattens_the_peak_and_does_not_save_queries():
    cold = row("cold, no warming")
    top100, top400 = row("warmer, top 100"), row("warmer, top 400")
    assert cold.peak > top100.peak > CAPACITY > top400.peak
    assert top400.recovered == 0.0 < top100.recovered
    assert (top100.warmup_reads, top400.warmup_reads) == (100, 400)
    assert top100.warmup_reads + top100.db_reads == 514  # about the cold start's 519
    assert top400.warmup_reads + top400.db_reads > cold.db_reads  # more than cold


def test_the_warmer_keeps_to_its_rate():
    for name in ("warmer, top 100", "warmer, top 400"):
        warmed = row(name)
        assert warmed.warmup == pytest.approx(warmed.warmup_reads / 250, abs=0.05)


def test_a_warm_cluster_takes_every_miss_and_the_database_none():
    cluster = row("from a warm cluster")
    assert cluster.db_reads == 0 and cluster.peak == 0
    assert cluster.warm_cluster_reads == 514
    assert cluster.worst == pytest.approx(3 * Traffic().cache_rtt)


def test_with_the_lease_a_cold_start_costs_about_one_query_per_distinct_key():
    reads = draw_reads(Traffic(), Traffic().rate, Traffic().seed)
    distinct, queries = len(set(reads)), row("cold, no warming").db_reads
    assert (distinct, queries) == (511, 519)
    assert queries < 1.02 * distinct < len(reads) / 3


def test_recovery_is_the_end_of_the_last_window_over_capacity():
    assert recovery([60, 10, 51, 0], 500) == pytest.approx(0.3)
    assert recovery([50, 50], 500) == 0.0


# --- the cold cluster's race, in the explorer --------------------------------------------


def test_a_plain_delete_lets_a_warm_fill_land_stale_and_the_holdoff_refuses_it():
    plain, held = cold_race(holdoff=False), cold_race(holdoff=True)
    assert (len(plain.bad), plain.total) == (2, 5)
    assert (held.bad, held.total) == ([], 5)


def test_the_holdoff_holds_only_while_it_lasts():
    found = cold_race(holdoff=True, expiry=True)
    assert (len(found.bad), found.total) == (2, 15)
    for schedule in found.bad:
        steps = list(schedule)
        writer, reader = ([i for i, a in enumerate(steps) if a == name]
                          for name in ("Writer", "Reader"))
        clock = steps.index("Clock")
        assert writer[1] < clock < reader[2]  # ends after the cold DEL, before the add
        assert reader[1] < writer[2]  # the warm copy was read before the warm DEL


def test_the_drawn_replays_end_stale_and_fresh():
    assert str(warming.stale_add().verdict).startswith(
        "stale: the cold cluster keeps 'old'")
    fixed = warming.held_off_add()
    assert fixed.verdict is None and fixed.returns["Reader"] == "new"
    for diagram in (warming.stale_add_diagram(), warming.held_off_add_diagram()):
        assert mermaid_problems(diagram) == []


# --- the paths, on both backends ---------------------------------------------------------


def test_a_cold_read_fills_from_the_warm_cluster_without_the_database(cache):
    warm_cache, loads = make_fake_cache(), []
    warm_cache.set("user:1", "Ada")

    def load() -> str:
        loads.append(1)
        return "from the DB"

    assert read_cold(cache, warm_cache, "user:1", load, 60) == "Ada"
    assert cache.get("user:1") == "Ada" and loads == []


def test_within_the_holdoff_a_cold_read_asks_the_database_and_fills_nothing(cache):
    warm_cache = make_fake_cache()
    warm_cache.set("user:1", "old")
    cache.set("user:1", "old")
    delete_with_holdoff(cache, "user:1")
    assert cache.get("user:1") is None and 0 < cache.pttl(holdoff_key("user:1")) <= 2000
    assert read_cold(cache, warm_cache, "user:1", lambda: "new", 60) == "new"
    assert cache.get("user:1") is None


def test_the_warmer_fills_the_hottest_keys_at_its_rate(cache, clock):
    log = ["user:2", "user:1", "user:2", "user:3", "user:2", "user:1"]
    hot = hot_keys(log, 2)
    assert hot == ["user:2", "user:1"]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    assert warm(cache, hot, lambda key: f"name of {key}", 60, rate=4, clock=clock,
                sleep=sleep) == 2
    assert cache.get("user:2") == "name of user:2" and cache.get("user:3") is None
    assert clock() == pytest.approx(0.25)  # the second key waits 1 / rate


def test_a_write_during_the_warm_up_refuses_the_warmers_stale_fill(cache, clock):
    from snippets.lease import invalidate

    def load_then_a_write_commits(key: str) -> str:
        invalidate(cache, key)  # the write's DEL lands while the warmer loads
        return "old"

    warm(cache, ["user:1"], load_then_a_write_commits, 60, rate=10, clock=clock,
         sleep=clock.advance)
    assert cache.get("user:1") is None


# --- inputs ------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="top must be a positive integer, got 0"):
        hot_keys(["user:1"], 0)
    with pytest.raises(ValueError, match="start must be 'warm', 'cold'"):
        Option("x", "lukewarm")
    with pytest.raises(ValueError, match="rate must be a number > 0"):
        warm(make_fake_cache(), [], lambda key: None, 60, rate=0, clock=lambda: 0.0,
             sleep=lambda s: None)
    with pytest.raises(ValueError, match="keys must be a positive integer"):
        simulate(ROWS["cold, no warming"], Traffic(keys=0))
    with pytest.raises(TypeError, match="two-cluster world"):
        warming.read_user(make_fake_cache(), warming.make_db())
