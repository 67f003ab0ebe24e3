"""Stale-while-revalidate: each claim of docs/scaling/stale-while-revalidate.md."""

from __future__ import annotations

import json

import pytest

from snippets.backends import FakeClock
from snippets.explorer import reusing
from snippets.lease import invalidate, lease_key, take_lease
from snippets.scaling import stale_while_revalidate
from snippets.scaling.mutex import race_with_a_write
from snippets.scaling.stale_while_revalidate import (
    entry_agrees_with_db,
    get_user_swr,
    stale_entry_cached,
    store_entry,
    swr_read,
)
from snippets.scaling.stampede import Load, simulate

LEASE = lease_key("user:1")


@pytest.fixture
def world(cache, ada):
    clock, tasks = FakeClock(), []
    opts = dict(soft_ttl=60, hard_ttl=3600, clock=clock, spawn=tasks.append)
    return cache, ada, clock, tasks, opts


def test_hard_miss_waits_for_the_db_and_stores_soft_expiry(world):
    cache, db, clock, tasks, opts = world
    assert get_user_swr(cache, db, 1, **opts) == "Ada"
    assert db.reads == 1 and tasks == []
    assert json.loads(cache.get("user:1")) == {"value": "Ada", "fresh_until": 60}
    assert 3590 < cache.ttl("user:1") <= 3600  # the hard TTL is on the key


def test_fresh_hit_touches_nothing(world):
    cache, db, clock, tasks, opts = world
    get_user_swr(cache, db, 1, **opts)
    clock.now = 59.9
    assert get_user_swr(cache, db, 1, **opts) == "Ada"
    assert db.reads == 1 and tasks == [] and cache.exists(LEASE) == 0


def test_stale_readers_get_the_old_value_at_once_and_one_refresh_is_queued(world):
    cache, db, clock, tasks, opts = world
    get_user_swr(cache, db, 1, **opts)
    db.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")
    clock.now = 61
    assert [get_user_swr(cache, db, 1, **opts) for _ in range(5)] == ["Ada"] * 5
    assert len(tasks) == 1 and db.reads == 1  # five stale readers, one refresh, no waiting
    assert tasks.pop()() is True  # the fill landed
    assert db.reads == 2 and cache.exists(LEASE) == 0
    assert get_user_swr(cache, db, 1, **opts) == "Ada Lovelace"
    assert json.loads(cache.get("user:1"))["fresh_until"] == 61 + 60


def test_a_failed_refresh_releases_its_lock_so_the_next_reader_retries(world):
    cache, db, clock, tasks, opts = world
    get_user_swr(cache, db, 1, **opts)
    clock.now = 61
    get_user_swr(cache, db, 1, **opts)

    def broken(sql, params=()):
        raise RuntimeError("DB down")

    real, db.query = db.query, broken
    with pytest.raises(RuntimeError):
        tasks.pop()()
    db.query = real
    assert cache.exists(LEASE) == 0
    assert get_user_swr(cache, db, 1, **opts) == "Ada" and len(tasks) == 1  # retried


def test_hard_expiry_means_a_miss_again(cache, ada):
    """After the hard TTL the key is gone; the reader waits for the DB (not protected)."""
    clock = FakeClock(100)
    store_entry(cache, "user:1", "old", fresh_until=50, hard_ttl=1)
    cache.delete("user:1")  # what Redis does when the hard TTL runs out
    assert get_user_swr(cache, ada, 1, soft_ttl=60, hard_ttl=3600, clock=clock, spawn=list.append) == "Ada"
    assert ada.reads == 1


def test_a_write_during_the_refresh_refuses_its_fill(world):
    cache, db, clock, tasks, opts = world
    get_user_swr(cache, db, 1, **opts)
    clock.now = 61
    get_user_swr(cache, db, 1, **opts)  # stale: the refresh is queued, the lease taken
    real = db.query

    def write_during_the_read(sql, params=()):
        rows = real(sql, params)  # the refresh reads "Ada" ...
        db.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")  # ... a write
        invalidate(cache, "user:1")  # ... deletes the key and the lease
        return rows

    db.query = write_during_the_read
    assert tasks.pop()() is False  # refused
    assert cache.get("user:1") is None  # the next read is a hard miss, of the new row


def test_a_refresh_that_finds_the_entry_fresh_reads_nothing(world):
    """The second look: another refresh landed between this reader's GET and its lease."""
    cache, db, clock, tasks, opts = world
    clock.now = 61
    store_entry(cache, "user:1", "Ada", fresh_until=121, hard_ttl=3600)
    token = take_lease(cache, "user:1")
    landed = stale_while_revalidate.refresh(cache, db, 1, token, soft_ttl=60,
                                            hard_ttl=3600, clock=clock)
    assert landed is False and db.reads == 0 and cache.exists(LEASE) == 0


def test_a_hard_miss_waits_for_the_lease_holder_instead_of_reading(world):
    cache, db, clock, tasks, opts = world
    take_lease(cache, "user:1")  # someone else is loading the cold key
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        store_entry(cache, "user:1", "Ada (theirs)", fresh_until=60, hard_ttl=3600)

    assert get_user_swr(cache, db, 1, **opts, sleep=sleep) == "Ada (theirs)"
    assert waits == [0.05] and db.reads == 0


def test_a_write_during_the_refresh_never_leaves_a_stale_value_every_interleaving(cache):
    found = race_with_a_write(swr_read, setup=stale_entry_cached, check=entry_agrees_with_db,
                              make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 21)


def test_with_a_plain_set_as_its_fill_the_same_race_ends_stale():
    found = race_with_a_write(swr_read, plain=True, setup=stale_entry_cached,
                              check=entry_agrees_with_db)
    assert (len(found.bad), found.total) == (1, 28)


def test_under_stampede_load_one_read_and_nobody_waits():
    for n in (10, 100):
        outcome = simulate("stale-while-revalidate", Load(readers=n))
        assert (outcome.db_reads, outcome.fills) == (1, 1)
        assert outcome.worst <= 2 * Load().cache_rtt  # at most GET and the lease


@pytest.mark.parametrize("kw, message", [
    ({"soft_ttl": 0}, "ttl must be a positive"),
    ({"hard_ttl": -1}, "ttl must be a positive"),
    ({"soft_ttl": 60, "hard_ttl": 60}, r"hard_ttl \(60\) must exceed soft_ttl \(60\)"),
    ({"lock_ms": 0}, "lock_ms must be a positive integer, got 0"),
    ({"lock_ms": "10"}, "lock_ms must be a positive integer, got '10'"),
])
def test_bad_options(world, kw, message):
    cache, db, clock, tasks, opts = world
    with pytest.raises(ValueError, match=message):
        get_user_swr(cache, db, 1, **{**opts, **kw})
    assert db.reads == 0 and cache.keys("*") == []


def test_bad_entry_and_refresh_options(cache, ada):
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        store_entry(cache, "", "Ada", 1.0, 10)
    with pytest.raises(ValueError, match="ttl must be a positive"):
        store_entry(cache, "user:1", "Ada", 1.0, 0)
    with pytest.raises(ValueError, match="ttl must be a positive"):
        stale_while_revalidate.refresh(cache, ada, 1, "token", soft_ttl=0, hard_ttl=10,
                                       clock=FakeClock())
    assert cache.keys("*") == [] and ada.reads == 0
