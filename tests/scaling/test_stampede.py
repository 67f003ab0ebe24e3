"""Cache stampede and the benchmark: each claim of docs/scaling/stampede.md, and the
virtual-time world it is measured in (snippets/simulation.py)."""

from __future__ import annotations

import re
import time

import fakeredis
import pytest

from pathlib import Path

from snippets.backends import FakeClock, make_fake_cache
from snippets.scaling.stampede import (
    STRATEGIES,
    Load,
    dead_holder,
    naive_stampede,
    overlapping_misses,
    run_load,
    simulate,
    stampede_table,
    write_races,
)
from snippets.simulation import SimPool, Simulation, fakeredis_on, percentile

PAGE = Path(__file__).resolve().parents[2] / "docs" / "scaling" / "stampede.md"
CURES = ("lease", "mutex", "singleflight", "coalescing", "XFetch", "stale-while-revalidate")


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_naive_readers_all_miss_and_all_read_the_db(n, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert naive_stampede(n) == n


def test_naive_stampede_on_the_real_server_too(cache, db):
    """The same steps as naive_stampede, on `cache`: 20 GETs miss, 20 SELECTs follow."""
    db.add_user(1, "Ada")
    misses = [cache.get("user:1") is None for _ in range(20)]
    for _ in filter(None, misses):
        db.query("SELECT name FROM users WHERE id = 1")
    assert db.reads == 20


@pytest.mark.parametrize("n", [10, 100])
def test_bounds_per_strategy(n):
    rows = {row.strategy: row for row in stampede_table((n,))}
    assert (rows["naive"].db_reads, rows["naive"].fills) == (n, n)  # every reader misses
    for cure in CURES:  # the physical limit: one read per expiry, and one fill
        assert (rows[cure].db_reads, rows[cure].fills) == (1, 1), cure
    load = Load(readers=n)
    assert rows["stale-while-revalidate"].p99 <= 2 * load.cache_rtt  # nobody waits
    assert rows["XFetch"].p99 <= load.cache_rtt  # refreshed before expiry
    for name in ("lease", "mutex", "singleflight", "coalescing"):  # they wait for one load
        assert load.db_latency <= rows[name].p99 <= 2 * load.db_latency
    assert rows["naive"].p99 >= (n / load.db_connections) * load.db_latency * 0.9  # queued


def test_at_a_thousand_readers_every_cure_still_makes_one_read_and_one_fill():
    rows = {row.strategy: row for row in stampede_table((1000,))}
    assert rows["naive"].db_reads == 1000
    assert rows["naive"].worst > 4.9  # 1000 queries, 10 at a time, 50 ms each: 5 s
    assert {s: (rows[s].db_reads, rows[s].fills) for s in CURES} == {s: (1, 1) for s in CURES}


def test_singleflight_is_per_process_coalescing_is_not():
    rows = {row.strategy: row for row in stampede_table((100,), processes=4)}
    assert (rows["singleflight"].db_reads, rows["singleflight"].fills) == (4, 1)
    assert rows["coalescing"].db_reads == rows["mutex"].db_reads == 1
    assert rows["naive"].db_reads == 100


def test_ten_overlapping_misses_of_a_cold_key_make_one_db_read_and_one_fill():
    rows = {row.strategy: row for row in overlapping_misses(10)}
    assert (rows["naive"].db_reads, rows["naive"].fills) == (10, 10)
    for cure in CURES:
        assert (rows[cure].db_reads, rows[cure].fills) == (1, 1), cure


def test_each_cures_read_racing_a_write_is_0_bad_with_the_lease_1_bad_with_a_plain_set():
    races = {name: (plain, lease) for name, plain, lease in write_races()}
    assert set(races) == {"mutex", "singleflight", "coalescing", "XFetch",
                          "stale-while-revalidate"}
    for name, (plain, lease) in races.items():
        assert len(plain.bad) == 1 and lease.bad == [] and lease.total > 10, name


def test_a_dead_holder_costs_the_lease_read_path_at_most_one_lease_ttl_of_db_reads():
    row = dead_holder("lease", readers=10, lease_ms=500)
    assert (row.db_reads, row.during, row.after, row.fills) == (20, 20, 0, 1)
    assert 1.0 <= row.refilled < 1.1  # a new holder fills once the dead lease expired


def test_a_dead_holder_costs_the_waiting_cures_time_not_reads():
    rows = {name: dead_holder(name, readers=10, lease_ms=500) for name in CURES}
    assert rows["mutex"].db_reads == 1 and 0.5 < rows["mutex"].worst < 0.6
    assert rows["coalescing"].db_reads == 1 and rows["coalescing"].worst > 2.0  # its own 2 s
    assert (rows["singleflight"].during, rows["singleflight"].fills) == (10, 1)
    assert rows["stale-while-revalidate"].db_reads == 1
    assert rows["stale-while-revalidate"].worst <= 2 * Load().cache_rtt  # nobody waits


def test_when_the_db_queues_the_bound_needs_the_waiters_to_outlast_the_load():
    row = dead_holder("lease", readers=100, lease_ms=500)
    assert (row.db_reads, row.during, row.after, row.fills) == (160, 150, 10, 1)


def test_a_slow_load_sends_the_lease_read_paths_waiters_to_the_db():
    rows = {name: simulate(name, Load(readers=100, db_latency=0.25)) for name in STRATEGIES}
    assert rows["lease"].db_reads == 88  # 4 waits of 50 ms < a 250 ms load
    assert all(rows[name].db_reads == 1 for name in CURES if name != "lease")


@pytest.mark.parametrize("phrase", [
    # Unsupported: the ranking depends on the modelled costs; with a 250 ms query the
    # lease's read path makes 88 reads where the others make 1.
    "the ordering will not change",
    # False: XFetch made 3 reads at 1000 readers and 5 at 100; every row is now computed.
    "every other row is what it is at 100 readers",
    # False since the lease: XFetch's readers no longer each read the DB.
    "so a few of them recompute (3 and 5 here)",
    # The common advice is quoted, not described as "bonus".
    "bonus topic",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase not in PAGE.read_text(encoding="utf-8")


def test_the_xfetch_row_at_a_thousand_readers_is_computed():
    assert "XFetch                     1000        1     1" in PAGE.read_text(encoding="utf-8")
    assert simulate("XFetch", Load(readers=1000)).db_reads == 1


def test_simulation_is_deterministic():
    load = Load(readers=100)
    for name in STRATEGIES:  # run_load is not cached: two real runs
        assert run_load(name, load).outcome == run_load(name, load).outcome


def test_table_rows_cover_every_strategy_in_order():
    rows = stampede_table((10, 20))
    assert [(r.strategy, r.readers) for r in rows] == [
        (s, n) for n in (10, 20) for s in STRATEGIES
    ]


def test_table_is_fast_enough_for_a_notebook():
    simulate.cache_clear()  # time real runs, not the cache
    started = time.process_time()
    stampede_table((10, 100))
    assert time.process_time() - started < 10  # CPU seconds, generous for a shared machine


# --- the virtual-time world (snippets/simulation.py) -------------------------------------


def test_simulation_orders_by_time_then_arrival():
    sim, log = Simulation(), []

    def actor(name, delays):
        def run():
            for d in delays:
                sim.sleep(d)
                log.append((sim.clock(), name))
        return run

    sim.spawn(actor("a", [2, 1]))
    sim.spawn(actor("b", [1, 2]))
    sim.run()
    # at t=3 both are due: b asked first (at t=1, a at t=2), so b goes first
    assert log == [(1, "b"), (2, "a"), (3, "b"), (3, "a")]


def test_simulated_event_timeout_and_signal():
    sim, got = Simulation(), []
    event = sim.event()
    sim.spawn(lambda: got.append(("timed out", event.wait(1.0), sim.clock())))
    sim.spawn(lambda: got.append(("woken", event.wait(10.0), sim.clock())), at=1.5)
    sim.spawn(lambda: (sim.sleep(2.0), event.set()))
    sim.run()
    assert got == [("timed out", False, 1.0), ("woken", True, 2.0)]


def test_pool_serves_first_come_first_served():
    sim, pool, done = Simulation(), None, []
    pool = SimPool(sim, 2)

    def user(name):
        def run():
            pool.acquire()
            sim.sleep(1.0)
            pool.release()
            done.append((name, sim.clock()))
        return run

    for name in "abcde":
        sim.spawn(user(name))
    sim.run()
    assert done == [("a", 1), ("b", 1), ("c", 2), ("d", 2), ("e", 3)]


def test_deadlock_is_reported_not_hung():
    sim = Simulation()
    sim.spawn(lambda: sim.event().wait())
    with pytest.raises(RuntimeError, match="deadlock: 1 actors wait"):
        sim.run()


def test_an_actors_error_stops_the_run_and_is_raised():
    sim = Simulation()
    sim.spawn(lambda: (sim.sleep(1), 1 / 0))
    sim.spawn(lambda: sim.sleep(100))
    with pytest.raises(ZeroDivisionError):
        sim.run()
    assert sim.clock() == 1


def test_waiting_outside_an_actor_is_an_error():
    with pytest.raises(RuntimeError, match="only a simulated actor"):
        Simulation().sleep(1)


def test_fakeredis_expires_keys_in_virtual_time_and_the_patch_is_undone():
    clock = FakeClock(0)
    with fakeredis_on(clock):
        cache = make_fake_cache()
        cache.set("k", "v", px=500)
        clock.advance(0.499)
        assert cache.get("k") == "v"
        clock.advance(0.002)
        assert cache.get("k") is None
    real = fakeredis.FakeRedis(decode_responses=True)
    real.set("k", "v", px=60_000)
    assert 59_000 < real.pttl("k") <= 60_000  # back on wall-clock time


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile([7], 99) == 7
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="p must be in"):
        percentile([1], 0)


def test_bad_actor():
    sim = Simulation(FakeClock(5))
    with pytest.raises(TypeError, match="an actor must be a function"):
        sim.spawn(42)
    with pytest.raises(ValueError, match="cannot start an actor in the past"):
        sim.spawn(lambda: None, at=1.0)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_bad_reader_count(bad, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ValueError, match=re.escape(f"readers must be a positive integer, got {bad!r}")):
        stampede_table((10, bad))
    with pytest.raises(ValueError, match=re.escape(f"n must be a positive integer, got {bad!r}")):
        naive_stampede(bad)


@pytest.mark.parametrize("kw, message", [
    ({"db_latency": 0}, "db_latency must be a number > 0, got 0"),
    ({"period": -1}, "period must be a number > 0, got -1"),
    ({"cache_rtt": float("nan")}, "cache_rtt must be a number > 0, got nan"),
    ({"processes": 0}, "processes must be a positive integer, got 0"),
    ({"ttl": 2.5}, "ttl must be a positive integer, got 2.5"),
    ({"until": 0.4}, r"until \(0.4\) must come after expiry \(0.5\)"),
])
def test_bad_load(kw, message):
    with pytest.raises(ValueError, match=message):
        Load(**kw)


def test_unknown_strategy_and_empty_table():
    with pytest.raises(LookupError, match="unknown strategy 'lru'"):
        simulate("lru")
    with pytest.raises(ValueError, match="ns must name at least one"):
        stampede_table(())
