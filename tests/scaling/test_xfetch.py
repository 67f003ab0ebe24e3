"""XFetch: each claim of docs/scaling/xfetch.md."""

from __future__ import annotations

import json
import math
import re

import pytest

from snippets.backends import FakeClock
from snippets.explorer import reusing
from snippets.lease import lease_key, take_lease
from snippets.scaling import xfetch
from snippets.scaling.mutex import race_with_a_write
from snippets.scaling.stampede import Load, simulate
from snippets.scaling.xfetch import (
    early_expiration_table,
    entry_agrees_with_db,
    entry_cached,
    get_user_xfetch,
    recompute_early,
    store_entry,
    xfetch_read,
)


def test_rule_with_u_equal_1_recomputes_only_at_expiry():
    assert not recompute_early(9.999, delta=1, beta=1, expiry=10, u=1.0)
    assert recompute_early(10, delta=1, beta=1, expiry=10, u=1.0)


def test_rule_recomputes_exactly_delta_beta_ln_u_early():
    u = math.exp(-2)  # -ln(u) = 2: this reader recomputes 2 * delta * beta early
    assert recompute_early(10 - 2 * 0.5 * 3, delta=0.5, beta=3, expiry=10, u=u)
    assert not recompute_early(10 - 2 * 0.5 * 3 - 0.01, delta=0.5, beta=3, expiry=10, u=u)


def test_larger_beta_recomputes_earlier():
    u = 0.1
    assert recompute_early(7, delta=1, beta=4, expiry=10, u=u)  # 4 * 2.30 = 9.2 s early
    assert not recompute_early(7, delta=1, beta=1, expiry=10, u=u)  # 2.30 s early


def test_hit_far_from_expiry_and_injected_random(cache, ada):
    clock = FakeClock(100)
    store_entry(cache, "user:1", "Ada", delta=1.0, expiry=160, now=100)
    draws = iter([0.0, 0.999999])  # u = 1.0, then u ~ 1e-6: -ln(u) ~ 13.8
    assert get_user_xfetch(cache, ada, 1, ttl=60, clock=clock, uniform=lambda: next(draws)) == "Ada"
    assert ada.reads == 0
    clock.now = 150  # 10 s before expiry: only an extreme draw recomputes
    assert get_user_xfetch(cache, ada, 1, ttl=60, clock=clock, uniform=lambda: next(draws)) == "Ada"
    assert ada.reads == 1
    entry = json.loads(cache.get("user:1"))
    assert entry["expiry"] == 150 + 60 and entry["delta"] == 0  # the fake clock did not move


def test_miss_loads_and_stores_delta_and_expiry(cache, ada):
    clock = FakeClock(10)
    slow = xfetch.SlowQueries(ada, clock, seconds=0.25)
    assert get_user_xfetch(cache, slow, 1, ttl=60, clock=clock) == "Ada"
    entry = json.loads(cache.get("user:1"))
    assert entry == {"value": "Ada", "delta": 0.25, "expiry": 10.25 + 60}
    assert 0 < cache.pttl("user:1") <= 60_000


def test_unknown_user_caches_nothing(cache, db):
    assert get_user_xfetch(cache, db, 7, ttl=60, clock=FakeClock()) is None
    assert cache.exists("user:7") == 0


def test_table_shape_and_what_it_shows():
    rows = early_expiration_table()
    assert [r.beta for r in rows] == [0.5, 1.0, 2.0, 4.0]
    per_expiry = [r.recomputes_per_expiry for r in rows]
    early = [r.mean_early for r in rows]
    assert all(p >= 1 for p in per_expiry)  # never fewer than one: someone must recompute
    assert per_expiry == sorted(per_expiry, reverse=True)  # larger beta, fewer duplicates
    assert early == sorted(early)  # ... but earlier, so more recomputation per unit of time
    assert rows[0].missed > rows[1].missed >= rows[2].missed == rows[3].missed == 0
    assert early_expiration_table() == rows  # seeded: the same every time


def test_table_is_deterministic_per_seed_and_changes_with_it():
    a = early_expiration_table((1.0,), seed=1)
    assert a == early_expiration_table((1.0,), seed=1)
    assert a != early_expiration_table((1.0,), seed=2)


def test_under_stampede_load_one_read_one_fill_and_fast_readers():
    for n in (10, 100):
        outcome = simulate("XFetch", Load(readers=n))
        assert (outcome.db_reads, outcome.fills) == (1, 1)  # the lease keeps it to one
        assert outcome.p99 < Load().db_latency  # no reader waited for the DB after expiry


def test_a_reader_that_draws_a_refresh_while_the_lease_is_held_serves_the_entry(cache, ada):
    store_entry(cache, "user:1", "Ada (cached)", delta=1.0, expiry=61, now=0)
    take_lease(cache, "user:1")  # another reader is refreshing
    got = get_user_xfetch(cache, ada, 1, ttl=60, clock=FakeClock(60.5), uniform=lambda: 0.9)
    assert got == "Ada (cached)" and ada.reads == 0


def test_a_refresh_that_landed_meanwhile_is_served_not_recomputed(cache, ada):
    """The second look: between this reader's GET and its SET NX, another refresh
    landed (and freed the lease); it serves that one and reads no DB."""
    store_entry(cache, "user:1", "Ada (old)", delta=1.0, expiry=61, now=0)
    landed = iter([True])

    class Landing:
        def __getattr__(self, name):
            return getattr(cache, name)

        def set(self, *args, **kwargs):  # the SET NX of the lease: first, a refresh lands
            if next(landed, False):
                store_entry(cache, "user:1", "Ada (new)", delta=1.0, expiry=121, now=60.5)
            return cache.set(*args, **kwargs)

    got = get_user_xfetch(Landing(), ada, 1, ttl=60, clock=FakeClock(60.5),
                          uniform=lambda: 0.9)
    assert got == "Ada (new)" and ada.reads == 0
    assert cache.exists(lease_key("user:1")) == 0  # released


def test_a_write_during_the_refresh_never_leaves_a_stale_value(cache):
    found = race_with_a_write(xfetch_read, setup=entry_cached, check=entry_agrees_with_db,
                              make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 21)


def test_with_a_plain_set_as_its_fill_the_same_race_ends_stale():
    found = race_with_a_write(xfetch_read, plain=True, setup=entry_cached,
                              check=entry_agrees_with_db)
    assert (len(found.bad), found.total) == (1, 28)


@pytest.mark.parametrize("bad", [0, -1, 0.0, "1", None, True, float("inf")])
def test_bad_beta(cache, ada, bad):
    message = re.escape(f"beta must be a number > 0, got {bad!r}")
    with pytest.raises(ValueError, match=message):
        get_user_xfetch(cache, ada, 1, ttl=60, clock=FakeClock(), beta=bad)
    with pytest.raises(ValueError, match=message):
        early_expiration_table((1.0, bad))  # refused before any row is computed
    assert ada.reads == 0 and cache.keys("*") == []


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_bad_u(bad):
    with pytest.raises(ValueError, match=r"u must be in \(0, 1\]"):
        recompute_early(1, 1, 1, 2, bad)


def test_bad_ttl(cache, ada):
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds, got 0"):
        get_user_xfetch(cache, ada, 1, ttl=0, clock=FakeClock())
    assert ada.reads == 0


@pytest.mark.parametrize("kw, message", [
    ({"rate": 0}, "rate must be a number > 0, got 0"),
    ({"delta": -0.05}, "delta must be a number > 0, got -0.05"),
    ({"ttl": 0.05}, "ttl must be a number > 0.05, got 0.05"),  # must outlive a recompute
    ({"expiries": 0}, "expiries must be a positive integer, got 0"),
    ({"expiries": 1.5}, "expiries must be a positive integer, got 1.5"),
])
def test_bad_table_options(kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        early_expiration_table(**kw)


def test_bad_delta_beta_and_entry(cache):
    with pytest.raises(ValueError, match="delta must be finite seconds, at least 0"):
        recompute_early(1, -1, 1, 2, 0.5)
    with pytest.raises(ValueError, match="beta must be a number > 0, got 0"):
        recompute_early(1, 1, 0, 2, 0.5)
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        store_entry(cache, "", "Ada", 1.0, 10.0, 0.0)
    with pytest.raises(ValueError, match="need expiry after now"):
        store_entry(cache, "user:1", "Ada", 1.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="delta must be finite seconds, at least 0"):
        store_entry(cache, "user:1", "Ada", -1.0, 6.0, 5.0)
    assert cache.keys("*") == []
