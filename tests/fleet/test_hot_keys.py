"""Hot keys: the lease, an L1 and split copies, measured under the same traffic in
virtual time; the L1's stale read replayed by the explorer. The paths that touch Redis
run on fakeredis and on a real Redis (REDIS_URL)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from snippets.backends import FakeClock
from snippets.explorer import mermaid_problems
from snippets.fleet import hot_keys
from snippets.fleet.hot_keys import (
    OPTIONS,
    Option,
    Traffic,
    copy_keys,
    invalidate_copies,
    l1_race,
    make_l1,
    read_a_copy,
    read_with_l1,
    simulate,
)
from snippets.lease import lease_key

ROWS = {option.name: option for option in OPTIONS}


def row(name: str, traffic: Traffic | None = None):
    return simulate(ROWS[name], traffic or Traffic())


# --- the figures ------------------------------------------------------------------------


def test_without_the_lease_one_write_sends_every_read_of_the_refill_window_to_the_db():
    first = row("cache-aside", Traffic(seconds=0.3))  # one write, at 0.125 s
    assert first.writes == 1 and first.db_reads == 102  # 51 ms at 2000 reads/s
    assert first.worst == pytest.approx(0.502)  # queued 10 at a time behind 50 ms queries


def test_the_lease_costs_two_db_reads_per_write_and_more_redis_commands():
    plain, leased = row("cache-aside"), row("lease")
    assert (leased.db_reads, leased.writes) == (8, 4)
    assert leased.redis_commands > plain.redis_commands  # the waiters poll
    assert leased.worst < 0.06 < plain.worst


def test_the_second_db_read_per_write_starts_one_round_trip_after_the_first_ends(
        monkeypatch):
    from snippets import simulation

    spans: list[tuple[float, float]] = []
    query = simulation.SimDatabase.query

    def timed(self, sql, params=()):
        began = self.sim.clock()
        rows = query(self, sql, params)
        spans.append((began, self.sim.clock()))
        return rows

    monkeypatch.setattr(simulation.SimDatabase, "query", timed)
    hot_keys.simulate.__wrapped__(ROWS["lease"], Traffic(seconds=0.3))
    (_, first_ends), (second_begins, _) = spans
    assert second_begins - first_ends == pytest.approx(Traffic().cache_rtt)


def test_an_l1_cuts_redis_load_and_is_stale_for_up_to_its_ttl():
    lease = row("lease")
    for name, ttl in (("L1 100 ms + lease", 0.1), ("L1 500 ms + lease", 0.5)):
        l1 = row(name)
        assert l1.redis_commands < lease.redis_commands / 2
        assert l1.db_reads <= lease.db_reads
        assert 0 < l1.stale_for <= ttl + Traffic().cache_rtt
    assert row("L1 500 ms + lease").stale_reads > row("L1 100 ms + lease").stale_reads


def test_copies_spread_the_load_and_pay_one_del_and_one_refill_per_copy():
    split, lease = row("8 copies + lease"), row("lease")
    assert split.dels == 8 * split.writes
    assert len(split.per_key) == 8 and sum(split.per_key.values()) == split.redis_commands
    assert split.busiest < lease.busiest / 6
    assert 8 * split.writes <= split.db_reads <= 16 * split.writes
    assert 6 * Traffic().cache_rtt < split.stale_for <= 7 * Traffic().cache_rtt


def test_without_an_l1_or_copies_no_read_is_stale_after_the_del():
    for name in ("cache-aside", "lease"):
        assert row(name).stale_for == 0.0 and row(name).stale_reads == row(name).writes


def test_the_copies_land_on_every_shard_of_a_three_shard_cluster_with_their_leases():
    shards = {key_slot(key.encode()) * 3 // 16384 for key in copy_keys("user:1", 8)}
    assert shards == {0, 1, 2}
    for key in copy_keys("user:1", 8):
        assert key_slot(lease_key(key).encode()) == key_slot(key.encode())


# --- the L1's race, in the explorer -------------------------------------------------------


def test_an_l1_serves_the_old_value_until_its_ttl_and_not_after():
    assert (len(l1_race(0.0).bad), l1_race(0.0).total) == (2, 3)
    assert (len(l1_race(0.5).bad), l1_race(0.5).total) == (2, 3)
    assert l1_race(1.0).bad == [] and l1_race(1.0).total == 3


def test_the_drawn_replay_ends_stale():
    run = hot_keys.l1_stale_read()
    assert run.verdict == "stale: the process still serves 'old'"
    assert mermaid_problems(hot_keys.l1_stale_read_diagram()) == []


# --- the paths, on both backends ---------------------------------------------------------


def test_the_l1_answers_without_redis_until_its_ttl(cache):
    clock, loads = FakeClock(), []
    l1 = make_l1(0.1, clock)

    def load() -> str:
        loads.append(1)
        return "Ada"

    assert read_with_l1(l1, cache, "user:1", load, 60, sleep=lambda s: None) == "Ada"
    cache.set("user:1", "changed")
    assert read_with_l1(l1, cache, "user:1", load, 60, sleep=lambda s: None) == "Ada"
    clock.advance(0.1)
    assert read_with_l1(l1, cache, "user:1", load, 60, sleep=lambda s: None) == "changed"
    assert len(loads) == 1


def test_a_write_deletes_every_copy_and_its_lease(cache):
    keys = copy_keys("user:1", 4)
    for key in keys:
        cache.set(key, "old")
        cache.set(lease_key(key), "token")
    assert invalidate_copies(cache, "user:1", 4) == 4
    assert cache.exists(*keys, *map(lease_key, keys)) == 0
    assert read_a_copy(cache, "user:1", 4, lambda n: 2, lambda: "new", 60,
                       sleep=lambda s: None) == "new"
    assert cache.get("user:1#2") == "new" and cache.get("user:1#1") is None


# --- inputs ------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="copies must be a positive integer, got 0"):
        copy_keys("user:1", 0)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        copy_keys("", 2)
    with pytest.raises(ValueError, match="ttl must be a number > 0, got 0"):
        make_l1(0, FakeClock())
    with pytest.raises(ValueError, match="modelled with the lease only"):
        Option("x", use_lease=False, copies=2)
    with pytest.raises(ValueError, match="rate must be a positive integer"):
        simulate(ROWS["lease"], Traffic(rate=0))
    with pytest.raises(ValueError, match="wait must be a number of seconds >= 0"):
        l1_race(-1)
    assert copy_keys("user:1", 1) == ["user:1"]
