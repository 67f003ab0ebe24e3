"""Derived and aggregate keys: the keys an order write changes, listed keys, tag sets
and generation keys; the race of a list fill against an order write, and its fixes; the
cost of each scheme. The schemes and the cost figures run on fakeredis and on a real
Redis (REDIS_URL): sets, INCRBY, multi-key DEL and the lease's script are where the two
could differ."""

from __future__ import annotations

import pytest

from snippets.backends import make_db
from snippets.explorer import mermaid_problems
from snippets.fleet import derived_keys
from snippets.fleet.derived_keys import (
    SCHEMES,
    Order,
    counting,
    create_orders,
    explore_race,
    insert_order,
    keys_for,
    load,
    measure,
    order_count,
    orders_page,
    read_now,
    top_orders,
)

FIXES = ["listed keys + lease", "tag sets, SADD first + lease", "generation keys"]
STALE = "stale: the list reads '1', the DB says '2,1'"


@pytest.fixture
def six_orders():
    db = make_db()
    create_orders(db)
    for n in range(1, 7):
        insert_order(db, Order(n, 1, 1000 * n))
    yield db
    db.close()


def test_an_order_write_names_its_key_the_list_the_count_and_the_top_ten():
    assert keys_for(Order(7, 1, 4500)) == [
        "order:7", orders_page(1).key, order_count(1).key, top_orders().key]


def test_the_views_read_what_the_database_says(six_orders):
    assert load(six_orders, orders_page(1)) == "6,5,4,3,2"
    assert load(six_orders, orders_page(1, page=2)) == "1"
    assert load(six_orders, order_count(1)) == "6"
    assert load(six_orders, top_orders()) == "6,5,4,3,2,1"


@pytest.mark.parametrize("name", list(SCHEMES))
def test_each_scheme_serves_hits_from_the_cache(cache, six_orders, name):
    read = read_now(name)
    assert read(cache, six_orders, orders_page(1)) == "6,5,4,3,2"
    before = six_orders.reads
    assert read(cache, six_orders, orders_page(1)) == "6,5,4,3,2"
    assert six_orders.reads == before


@pytest.mark.parametrize("name", list(SCHEMES))
def test_only_listed_keys_leave_page_2_stale_after_a_write(cache, six_orders, name):
    chosen, read = SCHEMES[name], read_now(name)
    for page in (1, 2):
        read(cache, six_orders, orders_page(1, page))
    chosen.write(cache, six_orders, Order(7, 1, 500))
    assert read(cache, six_orders, orders_page(1)) == "7,6,5,4,3"
    page_2 = read(cache, six_orders, orders_page(1, page=2))
    assert (page_2 == "1") == name.startswith("listed keys")  # else "2,1"


def test_a_fill_adds_its_key_to_its_tag(cache, six_orders):
    read = read_now("tag sets")
    read(cache, six_orders, orders_page(1, page=2))
    read(cache, six_orders, top_orders())
    assert cache.smembers("tag:user:1") == {"user:1:orders:p2"}
    assert cache.smembers("tag:orders") == {"orders:top10"}


def test_a_generation_write_leaves_old_keys_and_an_evicted_counter_brings_them_back(
        cache, six_orders):
    read, write = read_now("generation keys"), SCHEMES["generation keys"].write
    assert read(cache, six_orders, orders_page(1, page=2)) == "1"
    write(cache, six_orders, Order(7, 1, 500))
    assert cache.get("gen:user:1") == "1" and cache.get("gen:orders") == "1"
    assert read(cache, six_orders, orders_page(1, page=2)) == "2,1"
    assert cache.get("user:1:orders:p2:g0") == "1"  # dead, until its TTL
    cache.delete("gen:user:1")  # evicted
    assert read(cache, six_orders, orders_page(1, page=2)) == "1"  # stale again


# --- the race --------------------------------------------------------------------------


def test_listed_keys_fail_only_the_late_set():
    assert [str(s) for s in explore_race("listed keys").bad] == ["L L W W L"]


def test_tag_sets_fail_the_reader_race_and_the_late_sadd():
    bad = {str(s) for s in explore_race("tag sets").bad}
    assert "L L W W W W L L" in bad  # SELECT before INSERT, SET after DEL
    assert "L L L W W W W L" in bad  # SET before, SADD after the write read the tag
    assert len(bad) == 12


@pytest.mark.parametrize("name", FIXES)
def test_each_fix_leaves_no_stale_list(name):
    result = explore_race(name)
    assert result.total >= 15 and result.bad == [], result.summary()


@pytest.mark.parametrize(("race", "verdict"), [
    (derived_keys.stale_list, STALE),
    (derived_keys.late_sadd, STALE),
    (derived_keys.old_generation, None),
])
def test_the_drawn_replays_end_as_the_page_says(race, verdict):
    run = race()
    assert run.verdict == verdict
    assert mermaid_problems(run.mermaid()) == []
    if verdict is None:  # the late fill wrote generation 0, which nobody reads
        assert "user:1:orders:p1:g0='1'" in run.final
        assert "gen:user:1='1'" in run.final


# --- the cost --------------------------------------------------------------------------


def test_counting_counts_commands_and_the_keys_del_names(cache):
    with counting(cache) as counts:
        cache.set("a", "1")
        cache.delete("a", "b", "c")
    assert counts == {"commands": 2, "keys": 3}
    cache.set("a", "1")  # no longer counted: the wrapper is gone
    assert counts["commands"] == 2


@pytest.mark.parametrize(("name", "write", "hit", "miss", "stale", "keys"), [
    ("listed keys", 1, 1, 2, True, 5),
    ("listed keys + lease", 1, 1, 3, True, 5),
    ("tag sets", 3, 1, 3, False, 7),
    ("tag sets, SADD first + lease", 3, 1, 4, False, 7),
    ("generation keys", 3, 2, 3, False, 10 * 5 + 2),
])
def test_commands_per_write_and_read_and_keys_left(cache, name, write, hit, miss,
                                                   stale, keys):
    cost = measure(name, writes=10, cache=cache)
    assert (cost.per_write, cost.per_hit, cost.per_miss) == (write, hit, miss)
    assert (cost.stale_reads > 0, cost.keys_left) == (stale, keys)


def test_the_tag_fan_out_grows_with_the_views_cached_and_generations_do_not():
    for name in ("tag sets", "generation keys"):
        few, many = measure(name, 50, pages=3), measure(name, 50, pages=10)
        grows = many.deleted_per_write > few.deleted_per_write
        assert grows == (name == "tag sets")
    assert measure("tag sets", 50, pages=10).deleted_per_write == 12.76


# --- inputs ----------------------------------------------------------------------------


def test_unknown_names_and_bad_inputs_are_clear_errors():
    with pytest.raises(LookupError, match="no scheme named 'x'; schemes: listed keys"):
        explore_race("x")
    with pytest.raises(ValueError, match="page must be a positive integer, got 0"):
        orders_page(1, 0)
    with pytest.raises(ValueError, match="writes must be a positive integer"):
        measure("listed keys", writes=0)
