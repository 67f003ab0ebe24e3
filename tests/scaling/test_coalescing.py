"""Request coalescing: each claim of docs/scaling/coalescing.md."""

from __future__ import annotations

import re

import pytest

from snippets.explorer import reusing
from snippets.lease import lease_key
from snippets.scaling.coalescing import (
    another_process,
    coalesced_read,
    get_user_coalesced,
    miss_together,
    simulate_processes,
)
from snippets.scaling.mutex import race_with_a_write
from snippets.scaling.stampede import Load, simulate


@pytest.mark.parametrize("n", [1, 3, 8])
def test_processes_missing_at_once_cause_one_db_read(cache, ada, n):
    assert miss_together(cache, ada, n) == ["Ada"] * n
    assert ada.reads == 1
    assert cache.get("user:1") == "Ada" and cache.exists(lease_key("user:1")) == 0


def test_another_process_shares_the_server_not_the_connection(cache):
    other = another_process(cache)
    cache.set("k", "v")
    assert other.get("k") == "v" and other is not cache
    other.close()


def test_a_hit_needs_no_lock_and_no_channel(cache, ada):
    cache.set("user:1", "Ada (cached)")
    assert get_user_coalesced(cache, ada, 1) == "Ada (cached)"
    assert ada.reads == 0 and cache.keys("*lease*") == []


def test_followers_are_told_without_polling():
    outcomes, reads = simulate_processes(5)
    assert reads == 1
    assert [value for value, _ in outcomes] == ["Ada"] * 5
    # leader: GET, SUBSCRIBE, SET NX, GET, SELECT (50 ms), EVAL (the fill), PUBLISH
    assert outcomes[0][1] == pytest.approx(0.056)
    # a follower hears the PUBLISH (sent at 0.055) half a round trip later
    assert all(done == pytest.approx(0.0555) for _, done in outcomes[1:])


def test_followers_share_the_leaders_error():
    outcomes, reads = simulate_processes(4, leader="fails")
    assert [value for value, _ in outcomes] == ["ConnectionError"] + ["LoadFailed"] * 3
    assert reads == 0  # nobody retried on their own
    assert all(done < 0.06 for _, done in outcomes)  # told at once, not at the lock's expiry


def test_a_dead_leader_costs_its_lock_time_then_a_follower_takes_over():
    outcomes, reads = simulate_processes(4, leader="dies", lock_ms=500)
    assert outcomes[0][0] == "Crash"
    assert [value for value, _ in outcomes[1:]] == ["Ada"] * 3
    assert reads == 1  # the dead leader's query never ran; the new leader's did
    assert all(0.5 <= done < 0.6 for _, done in outcomes[1:])  # waited for the lock to expire


def test_bad_leader_mode():
    with pytest.raises(ValueError, match="leader must be 'healthy', 'fails' or 'dies'"):
        simulate_processes(2, leader="slow")


def test_one_db_read_and_one_fill_per_expiry_under_load():
    for n in (10, 100):
        outcome = simulate("coalescing", Load(readers=n))
        assert (outcome.db_reads, outcome.fills) == (1, 1)
    assert simulate("coalescing", Load(readers=100, processes=4)).db_reads == 1


def test_a_write_during_the_leaders_load_never_leaves_a_stale_value(cache):
    found = race_with_a_write(coalesced_read, make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 28)


def test_with_a_plain_set_as_its_fill_the_same_race_ends_stale():
    found = race_with_a_write(coalesced_read, plain=True)
    assert (len(found.bad), found.total) == (1, 36)


@pytest.mark.parametrize("kw, message", [
    ({"ttl": 0}, "ttl must be a positive"),
    ({"lock_ms": -5}, "lock_ms must be a positive integer, got -5"),
    ({"lock_ms": 2.5}, "lock_ms must be a positive integer, got 2.5"),
])
def test_bad_options(cache, ada, kw, message):
    with pytest.raises(ValueError, match=message):
        get_user_coalesced(cache, ada, 1, **kw)
    assert ada.reads == 0 and cache.keys("*") == []


@pytest.mark.parametrize("bad", [0, -2, "3", True])
def test_bad_process_count(cache, ada, bad):
    message = re.escape(f"n must be a positive integer, got {bad!r}")
    with pytest.raises(ValueError, match=message):
        miss_together(cache, ada, bad)
    with pytest.raises(ValueError, match=message):
        simulate_processes(bad)
    assert ada.reads == 0 and cache.keys("*") == []


def test_bad_client():
    with pytest.raises(TypeError, match="cache must be a Redis client"):
        another_process("redis://localhost")
