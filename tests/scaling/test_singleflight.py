"""Singleflight: each claim of docs/scaling/singleflight.md."""

from __future__ import annotations

import re
import threading

import pytest

from snippets.explorer import reusing
from snippets.lease import lease_key, take_lease
from snippets.scaling.mutex import race_with_a_write
from snippets.scaling.singleflight import (
    Joins,
    Singleflight,
    concurrent_misses,
    get_user_once,
    late_caller,
    singleflight_read,
    update_user,
)
from snippets.scaling.stampede import Load, simulate
from snippets.simulation import Simulation


@pytest.mark.parametrize("n", [1, 2, 10, 100])
def test_n_threads_missing_at_once_cause_exactly_one_db_read(n, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert concurrent_misses(n) == 1


def test_real_threads_on_the_real_server_too(cache, ada, monkeypatch):
    """concurrent_misses builds its own cache; run the same shape against `cache` here."""
    joins = Joins()
    group = Singleflight(new_event=joins.new_event)
    real_query = ada.query

    def held(sql, params=()):
        joins.wait_for(19)
        return real_query(sql, params)

    ada.query = held
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_user_once(cache, ada, group, 1)))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["Ada"] * 20 and ada.reads == 1


def test_waiters_share_the_error_and_the_load_runs_once():
    joins = Joins()
    group = Singleflight(new_event=joins.new_event)
    calls = 0

    def failing():
        nonlocal calls
        calls += 1
        joins.wait_for(4)
        raise RuntimeError("DB down")

    errors = []

    def call():
        try:
            group.do("k", failing)
        except RuntimeError as error:
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert len(errors) == 5 and all(e is errors[0] for e in errors)  # one error, shared


def test_result_is_not_cached_after_the_flight():
    group, calls = Singleflight(), []
    assert group.do("k", lambda: calls.append(1) or len(calls)) == 1
    assert group.do("k", lambda: calls.append(1) or len(calls)) == 2
    assert not group.in_flight("k")


def test_different_keys_do_not_share():
    group = Singleflight()
    assert group.do("a", lambda: "A") == "A" and group.do("b", lambda: "B") == "B"


def test_without_forget_a_caller_after_the_write_gets_the_value_read_before_it():
    got, in_db = late_caller(forget=False)
    assert (got, in_db) == ("Ada", "Ada Lovelace")


def test_with_forget_the_caller_after_the_write_gets_the_new_value():
    got, in_db = late_caller(forget=True)
    assert (got, in_db) == ("Ada Lovelace", "Ada Lovelace")


def test_update_deletes_key_and_forgets_flight(cache, ada):
    group = Singleflight()
    get_user_once(cache, ada, group, 1)
    group._flights["user:1"] = object()  # pretend a load is in flight
    update_user(cache, ada, group, 1, "Ada Lovelace")
    assert cache.exists("user:1") == 0 and not group.in_flight("user:1")
    assert get_user_once(cache, ada, group, 1) == "Ada Lovelace"


def test_one_db_read_per_process_under_load_and_one_fill_in_all():
    for n in (10, 100):
        outcome = simulate("singleflight", Load(readers=n))
        assert (outcome.db_reads, outcome.fills) == (1, 1)
    outcome = simulate("singleflight", Load(readers=100, processes=4))
    assert (outcome.db_reads, outcome.fills) == (4, 1)  # three leaders found the lease held


def test_a_leader_that_finds_the_lease_held_loads_without_filling(cache, ada):
    take_lease(cache, "user:1")  # another process's leader is loading
    assert get_user_once(cache, ada, Singleflight(), 1) == "Ada"
    assert ada.reads == 1 and cache.get("user:1") is None  # it did not wait, nor fill


def test_update_deletes_the_lease_with_the_key(cache, ada):
    token = take_lease(cache, "user:1")
    update_user(cache, ada, Singleflight(), 1, "Ada Lovelace")
    assert token and cache.exists(lease_key("user:1")) == 0


def test_a_write_during_the_leaders_load_never_leaves_a_stale_value(cache):
    found = race_with_a_write(singleflight_read, make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 21)


def test_with_a_plain_set_as_its_fill_the_same_race_ends_stale():
    found = race_with_a_write(singleflight_read, plain=True)
    assert (len(found.bad), found.total) == (1, 28)


def test_simulated_events_work_with_the_real_group():
    sim = Simulation()
    group = Singleflight(new_event=sim.event)
    got = []

    def slow():
        sim.sleep(1.0)
        return "v"

    for _ in range(3):
        sim.spawn(lambda: got.append((group.do("k", slow), sim.clock())))
    sim.run()
    assert got == [("v", 1.0)] * 3


@pytest.mark.parametrize("bad", ["", None, 5])
def test_bad_key(bad):
    group = Singleflight()
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        group.do(bad, lambda: 1)
    assert not group._flights


def test_bad_fn():
    with pytest.raises(TypeError, match="fn must be callable"):
        Singleflight().do("k", 42)


@pytest.mark.parametrize("bad", [0, -3, 1.0, True, "5"])
def test_bad_reader_count(bad):
    with pytest.raises(ValueError, match=re.escape(f"n must be a positive integer, got {bad!r}")):
        concurrent_misses(bad)


def test_bad_user_name_and_missing_user(cache, ada):
    group = Singleflight()
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        update_user(cache, ada, group, 1, "")
    with pytest.raises(LookupError, match="no user with id 9"):
        update_user(cache, ada, group, 9, "Nobody")
    with pytest.raises(ValueError, match="ttl must be a positive"):
        get_user_once(cache, ada, group, 1, ttl=0)
    assert ada.writes == 1 and ada.reads == 0  # only the failed UPDATE of user 9 ran


def test_bad_forget_key_and_event_factory():
    group = Singleflight()
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        group.forget("")
    with pytest.raises(TypeError, match="new_event must make events"):
        Singleflight(new_event=None)
    with pytest.raises(TypeError, match="forget must be True or False"):
        late_caller("yes")
