"""Mutex lock: each claim of docs/scaling/mutex.md, on fakeredis and on real Redis."""

from __future__ import annotations

import re
import time

import pytest

from snippets.backends import FakeClock, backend_name, make_fake_cache
from snippets.explorer import reusing
from snippets.faults import Crash, Faults, Intercept
from snippets.lease import fill, invalidate, lease_key, take_lease
from snippets.scaling import mutex
from snippets.scaling.mutex import (
    PlainSet,
    crash_while_holding,
    get_then_delete,
    get_user_locked,
    mutex_read,
    plain_delete,
    race_with_a_write,
    release,
    release_while_expiring,
    slow_holder,
    take_as,
)
from snippets.scaling.stampede import Load, simulate
from snippets.simulation import fakeredis_on

LEASE = lease_key("user:1")


def test_the_lock_is_the_kits_lease_on_the_key(cache, ada):
    """The holder's lock is `{user:1}:lease`: the one lease a write deletes with the key."""
    take_as(cache, "someone", 10_000)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        invalidate(cache, "user:1")  # a write frees the lock with the key

    assert get_user_locked(cache, ada, 1, sleep=sleep) == "Ada"
    assert len(waits) == 1 and ada.reads == 1 and cache.get("user:1") == "Ada"


def test_only_one_holder_at_a_time(cache):
    assert take_lease(cache, "user:1", 10_000) is not None
    assert take_lease(cache, "user:1", 10_000) is None
    assert 0 < cache.pttl(LEASE) <= 10_000  # the lease always carries its expiry


def test_release_deletes_only_your_own_token(cache):
    take_as(cache, "A", 10_000)
    assert release(cache, "user:1", "B") is False
    assert cache.get(LEASE) == "A"
    assert release(cache, "user:1", "A") is True
    assert cache.exists(LEASE) == 0
    assert release(cache, "user:1", "A") is False  # releasing twice is harmless


def test_a_fresh_token_per_holder(cache):
    first = take_lease(cache, "user:1", 10_000)
    release(cache, "user:1", first)
    second = take_lease(cache, "user:1", 10_000)
    assert first and second and first != second


def expire_on(cache):
    """Make a lease expire now: virtual time on fakeredis; on a real Redis, the server's
    own expiry is a delete, so a DEL stands in for it."""
    if backend_name(cache) == "fakeredis":
        pytest.skip("covered by the virtual-time tests below")
    return lambda: cache.delete(LEASE)


@pytest.mark.parametrize(
    "how, survivor", [(plain_delete, None), (get_then_delete, "B"), (release, "B")]
)
def test_slow_holder_release(cache, how, survivor):
    assert slow_holder(cache, expire_on(cache), how) == survivor


@pytest.mark.parametrize(
    "how, survivor", [(plain_delete, "B"), (get_then_delete, None), (release, "B")]
)
def test_release_while_expiring(cache, how, survivor):
    assert release_while_expiring(cache, expire_on(cache), how) == survivor


@pytest.mark.parametrize(
    "scenario, how, survivor",
    [
        (slow_holder, plain_delete, None),  # A deletes B's lock
        (slow_holder, get_then_delete, "B"),
        (slow_holder, release, "B"),
        (release_while_expiring, plain_delete, "B"),
        (release_while_expiring, get_then_delete, None),  # A's DEL lands on B's lock
        (release_while_expiring, release, "B"),
    ],
)
def test_only_compare_and_delete_is_safe_in_both_schedules_virtual_time(scenario, how, survivor):
    clock = FakeClock()
    with fakeredis_on(clock):
        cache = make_fake_cache()
        assert scenario(cache, lambda: clock.advance(0.2), how) == survivor


def test_waiters_get_the_holders_value_without_a_db_read(cache, ada):
    """While A holds the lock, B polls; once A has filled the cache, B reads it."""
    take_as(cache, "A", 10_000)
    waits = []

    def sleep(seconds):  # A finishes during B's second wait
        waits.append(seconds)
        if len(waits) == 2:
            assert fill(cache, "user:1", "A", "Ada (from A)", 300)

    assert get_user_locked(cache, ada, 1, sleep=sleep) == "Ada (from A)"
    assert ada.reads == 0
    assert waits == [0.005, 0.01]  # exponential backoff


def test_backoff_is_capped(cache, ada):
    take_as(cache, "A", 10_000)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 8:
            release(cache, "user:1", "A")

    assert get_user_locked(cache, ada, 1, sleep=sleep, max_wait=0.04) == "Ada"
    assert waits == [0.005, 0.01, 0.02, 0.04, 0.04, 0.04, 0.04, 0.04]
    assert ada.reads == 1


def test_holder_fills_cache_and_releases(cache, ada):
    assert get_user_locked(cache, ada, 1, ttl=60) == "Ada"
    assert ada.reads == 1
    assert cache.get("user:1") == "Ada" and 0 < cache.ttl("user:1") <= 60
    assert cache.exists(LEASE) == 0  # the fill freed it


def test_loader_error_releases_the_lock_at_once(cache, ada):
    def broken(sql, params=()):
        raise RuntimeError("DB down")

    ada.query = broken
    with pytest.raises(RuntimeError, match="DB down"):
        get_user_locked(cache, ada, 1)
    assert cache.exists(LEASE) == 0  # waiters need not wait for the expiry


def test_a_missing_row_frees_the_lease_and_caches_nothing(cache, db):
    assert get_user_locked(cache, db, 1) is None
    assert cache.keys("*") == []


def test_crashed_holder_blocks_readers_until_the_lock_expires_virtual_time(ada):
    clock = FakeClock()
    with fakeredis_on(clock):
        cache = make_fake_cache()
        name, waits = crash_while_holding(cache, ada, sleep=clock.advance, lock_ms=2000)
    assert name == "Ada"
    assert ada.reads == 1  # A's query never ran; B's did
    assert sum(waits[:-1]) < 2.0 <= sum(waits)  # B got in on the first poll after expiry
    assert waits[:5] == [0.005, 0.01, 0.02, 0.04, 0.08] and set(waits[5:]) == {0.1}


def test_crashed_holder_on_a_real_server(cache, ada):
    """The same crash with real time: the lock is 50 ms, so B waits at least that long."""
    started = time.monotonic()
    name, waits = crash_while_holding(cache, ada, sleep=time.sleep, lock_ms=50)
    assert name == "Ada" and ada.reads == 1
    assert time.monotonic() - started >= 0.045  # the lock's 50 ms, give or take the clock
    assert len(waits) >= 1


def test_crash_is_not_swallowed_by_the_holder(cache, ada):
    process = Faults()  # killed just before its query, as in crash_while_holding
    with pytest.raises(Crash):
        get_user_locked(process.wrap(cache, "A"),
                        Intercept(process.wrap(ada, "A"), "query", process.kill), 1)
    query, release_ = process.crashed  # the query never ran; the release was never sent
    assert query == "A.query SELECT users" and release_.startswith("A.eval")
    assert cache.exists(LEASE) == 1  # ... so the lease stays, until it expires
    assert 0 < cache.pttl(LEASE) <= 2000
    assert ada.reads == 0


def test_one_db_read_and_one_fill_per_expiry_under_load():
    for n in (10, 100):
        outcome = simulate("mutex", Load(readers=n))
        assert (outcome.db_reads, outcome.fills) == (1, 1)


# --- a write during the load (the reader race), every interleaving ---------------------


def test_a_write_during_the_load_never_leaves_a_stale_value(cache):
    found = race_with_a_write(mutex_read, make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 21)


def test_with_a_plain_set_as_its_fill_the_same_race_ends_stale(cache):
    """The fill the mutex had before the lease: SET, then release the lock."""
    found = race_with_a_write(mutex_read, plain=True, make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (1, 28)
    assert [str(schedule) for schedule in found.bad] == ["R R R R W W R R"]


def test_a_lease_that_vanishes_at_any_moment_never_leaves_a_stale_value():
    """A holder that pauses past its lease (or an evicted lease) may let a second loader
    in, but never a stale fill; with a plain SET it does."""
    found = race_with_a_write(mutex_read, expiring=True)
    assert (len(found.bad), found.total) == (0, 168)
    found = race_with_a_write(mutex_read, plain=True, expiring=True)
    assert (len(found.bad), found.total) == (9, 252)


def test_plain_set_changes_only_the_fill(cache):
    plain = PlainSet(cache)
    token = take_lease(plain, "user:1")
    invalidate(cache, "user:1")  # a write: the lease is gone
    assert fill(plain, "user:1", token, "old", 300) is True  # ... and it lands anyway
    assert cache.get("user:1") == "old"
    assert plain.get("user:1") == "old"  # everything else passes through


def test_a_fill_after_a_write_is_refused_as_main_narrates(cache, ada):
    token = take_lease(cache, "user:1", 30_000)
    old = ada.query("SELECT name FROM users WHERE id = 1")[0][0]
    ada.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")
    invalidate(cache, "user:1")
    assert fill(cache, "user:1", token, old, 300) is False
    assert cache.get("user:1") is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "100", None, True])
def test_bad_lock_ms(cache, ada, bad):
    message = re.escape(f"lock_ms must be a positive integer, got {bad!r}")
    with pytest.raises(ValueError, match=message):
        get_user_locked(cache, ada, 1, lock_ms=bad)
    assert cache.keys("*") == [] and ada.reads == 0


@pytest.mark.parametrize("kw, message", [
    ({"ttl": 0}, "ttl must be a positive number of seconds, got 0"),
    ({"first_wait": 0}, "first_wait must be a number > 0, got 0"),
    ({"max_wait": -1}, "max_wait must be a number > 0, got -1"),
    ({"first_wait": "x"}, "first_wait must be a number > 0, got 'x'"),
])
def test_bad_read_options(cache, ada, kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_user_locked(cache, ada, 1, **kw)
    assert cache.keys("*") == [] and ada.reads == 0


@pytest.mark.parametrize(
    "how, bad",
    [(plain_delete, ["expiry B A"]), (get_then_delete, ["A expiry B A"]), (release, [])],
)
def test_every_interleaving_of_release_expiry_and_a_new_holder(how, bad):
    found = mutex.explore_release(how)
    assert [str(schedule) for schedule in found.bad] == bad
    assert found.total >= 6  # A, expiry and B each ran in every relative order


def test_the_diagrams_name_the_scripts_and_hide_the_random_tokens():
    assert "EVAL release-if-ours 1 user:1:lease \"token\"" in mutex.plain_set_race()
    assert "EVAL fill-if-lease-held 2 user:1" in mutex.lease_refuses_the_race()
    assert mutex.plain_set_race() == mutex.plain_set_race()  # the same on every run


def test_bad_sleep(cache, ada):
    with pytest.raises(TypeError, match="sleep must be a function of seconds"):
        crash_while_holding(cache, ada, sleep=0.1)
    assert cache.keys("*") == []
