"""The shared lease (snippets/lease.py): a fill that read before a write is refused, one
miss loads while the others wait, and a holder that dies costs at most one lease of
database reads."""

from __future__ import annotations

import pytest

from snippets.backends import Cache, Database, make_fake_cache, user_key
from snippets.explorer import explore, reusing
from snippets.lease import (LEASE_MS, fill, invalidate, lease_key, read_through, release,
                            take_lease)
from snippets.scenarios import cache_agrees_with_db, user_not_cached
from snippets.simulation import SimCache, SimDatabase, Simulation, fakeredis_on

KEY = user_key(1)


def load_user(db: Database):
    def load() -> str | None:
        rows = db.query("SELECT name FROM users WHERE id = 1")
        return rows[0][0] if rows else None
    return load


def get(cache: Cache, db: Database) -> str | None:
    return read_through(cache, KEY, load_user(db), 300, sleep=lambda seconds: None)


def update(cache: Cache, db: Database) -> None:
    db.execute("UPDATE users SET name = 'new' WHERE id = 1")
    invalidate(cache, KEY)


def test_the_lease_key_shares_the_keys_cluster_slot():
    assert lease_key("user:1") == "{user:1}:lease"


def test_a_fill_after_a_write_is_refused(cache):
    token = take_lease(cache, KEY)
    assert token is not None and take_lease(cache, KEY) is None  # one holder at a time
    invalidate(cache, KEY)  # a write came while the holder read the DB
    assert fill(cache, KEY, token, "old", 300) is False
    assert cache.get(KEY) is None


def test_a_fill_with_the_lease_lands_and_frees_it(cache):
    token = take_lease(cache, KEY)
    assert fill(cache, KEY, token, "old", 300) is True
    assert cache.get(KEY) == "old" and cache.get(lease_key(KEY)) is None
    assert 0 < cache.ttl(KEY) <= 300


def test_release_frees_only_our_own_lease(cache):
    token = take_lease(cache, KEY)
    assert release(cache, KEY, "someone-else") is False
    assert release(cache, KEY, token) is True
    assert take_lease(cache, KEY) is not None


def test_a_lease_expires_so_a_dead_holder_blocks_fills_for_one_lease_at_most(cache):
    take_lease(cache, KEY, lease_ms=LEASE_MS)
    assert 0 < cache.pttl(lease_key(KEY)) <= LEASE_MS


def test_a_reader_racing_a_write_never_leaves_a_stale_value(cache):
    """The reader race of the reader-race page, every interleaving: 0 bad."""
    result = explore({"R": get, "W": update}, user_not_cached, cache_agrees_with_db,
                     make_cache=reusing(cache), reduce=False)
    assert result.total > 10 and result.bad == []


def test_a_missing_row_frees_the_lease_and_caches_nothing(cache, db):
    assert get(cache, db) is None
    assert cache.get(KEY) is None and cache.get(lease_key(KEY)) is None


def test_ten_overlapping_misses_make_one_db_read_and_one_fill(ada):
    """Ten readers miss at once, in virtual time: the DB takes 50 ms, the waiters ask
    again every 50 ms (four times at most), so all of them get the holder's fill."""
    sim = Simulation()
    with fakeredis_on(sim.clock):
        client = make_fake_cache()
        cache = SimCache(sim, client, rtt=0.001, subscribers=[])
        db = SimDatabase(sim, ada, latency=0.05, connections=10)
        got: list[str | None] = []
        for _ in range(10):
            sim.spawn(lambda: got.append(read_through(cache, KEY, load_user(db), 300,
                                                      sleep=sim.sleep)), at=0.0)
        ada.reset_counts()
        sim.run()
        filled = client.get(KEY), client.get(lease_key(KEY))  # in virtual time
    assert got == ["Ada"] * 10
    assert ada.reads == 1  # the holder's; nine waited and hit
    assert filled == ("Ada", None)


def test_a_dead_holder_costs_the_waiters_one_db_read_each_and_no_fill(cache, ada):
    take_lease(cache, KEY)  # taken by a process that dies: it never fills
    ada.reset_counts()
    got = [read_through(cache, KEY, load_user(ada), 300, sleep=lambda s: None, waits=2)
           for _ in range(3)]
    assert got == ["Ada"] * 3 and ada.reads == 3  # each waited, then read the DB
    assert cache.get(KEY) is None  # nobody filled while the lease stood


@pytest.mark.parametrize(("waits", "wait_ms", "message"), [
    (-1, 50, "waits must be an integer >= 0, got -1"),
    (2, 0, "wait_ms must be a positive integer, got 0"),
])
def test_bad_waits_are_clear_errors(cache, ada, waits, wait_ms, message):
    with pytest.raises(ValueError, match=message):
        read_through(cache, KEY, load_user(ada), 300, waits=waits, wait_ms=wait_ms)


def test_a_load_that_fails_frees_the_lease_so_the_next_miss_can_fill(cache, ada):
    def failing() -> str | None:
        raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError):
        read_through(cache, KEY, failing, 300)
    assert cache.get(lease_key(KEY)) is None
    assert get(cache, ada) == "Ada" and cache.get(KEY) == "Ada"
