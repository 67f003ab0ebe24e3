"""Negative caching: "not found" cached for a short time, the insert race it brings, the
two fixes, and the DB reads of a flood of unknown ids. The race and its fixes run on
fakeredis and on a real Redis (REDIS_URL): SET NX EX of an empty string, the lease's
script and a two-key DEL are where the two could differ."""

from __future__ import annotations

import math

import pytest

from snippets.backends import make_db
from snippets.explorer import mermaid_problems, replay, reusing
from snippets.fleet import negative_caching
from snippets.fleet.negative_caching import (
    NEGATIVE_TTL,
    NOT_FOUND,
    PATHS,
    Flood,
    create_user,
    create_user_leased,
    create_user_plain,
    create_user_write_through,
    explore_insert,
    get_user,
    get_user_leased,
    get_user_leased_now,
    insert_and_read,
    nobody,
    simulate_flood,
)
from snippets.lease import WAITS, lease_key

STALE = "stale: a read returns None, the DB says 'new'"
FIXES = ["insert, DEL key + lease", "insert writes through"]


# --- caching "not found" ---------------------------------------------------------------


def test_a_missing_row_costs_one_db_read_while_its_not_found_lives(cache, db):
    for _ in range(100):
        assert get_user(cache, db, 42) is None
    assert db.reads == 1
    assert cache.get("user:42") == NOT_FOUND and 0 < cache.ttl("user:42") <= NEGATIVE_TTL
    cache.delete("user:42")  # what the TTL does when it runs out
    assert get_user(cache, db, 42) is None and db.reads == 2


def test_a_present_row_keeps_the_long_ttl(cache, db):
    db.add_user(1, "Ada")
    assert get_user(cache, db, 1, ttl=300) == "Ada"
    assert NEGATIVE_TTL < cache.ttl("user:1") <= 300


def test_an_insert_that_deletes_nothing_hides_the_row_from_its_own_author(cache, db):
    assert get_user(cache, db, 42) is None
    create_user_plain(cache, db, 42, "Ada")
    assert get_user(cache, db, 42) is None  # for up to NEGATIVE_TTL seconds
    assert db.query("SELECT name FROM users WHERE id = 42") == [("Ada",)]


@pytest.mark.parametrize(("read", "write"), [
    (get_user, create_user), (get_user_leased_now, create_user_leased),
    (get_user, create_user_write_through)])
def test_each_insert_that_clears_lets_its_author_read_it(cache, db, read, write):
    assert read(cache, db, 42) is None
    write(cache, db, 42, "Ada")
    assert read(cache, db, 42) == "Ada"


# --- the insert race and its fixes -----------------------------------------------------


def test_the_race_a_delete_leaves_is_the_late_not_found(cache):
    result = explore_insert("insert, then DEL", "first read", make_cache=reusing(cache))
    assert [str(schedule) for schedule in result.bad] == ["R R W W R"]


@pytest.mark.parametrize("name", FIXES)
@pytest.mark.parametrize("scenario", ["first read", "'not found' cached"])
def test_each_fix_leaves_no_hidden_row(cache, name, scenario):
    result = explore_insert(name, scenario, make_cache=reusing(cache))
    assert result.total >= 3 and result.bad == [], result.summary()


def test_with_two_readers_the_delete_fails_and_both_fixes_hold():
    assert explore_insert("insert, then DEL", "two readers").bad != []
    for name in FIXES:
        result = explore_insert(name, "two readers")
        assert result.total > 10 and result.bad == [], result.summary()


def test_eviction_breaks_write_through_and_not_the_lease():
    bad = explore_insert("insert writes through", "+ eviction").bad
    assert [str(schedule) for schedule in bad] == ["R R W W E R"]  # evicted, then NX
    assert explore_insert("insert, DEL key + lease", "+ eviction").bad == []


def test_the_lease_frees_a_reader_that_missed_before_a_fill_to_load_again(cache):
    """The burst's extra reads: R2 misses, R1 loads and fills (freeing the lease), and
    R2 takes the lease and reads the database once more."""
    actors = {"R1": lambda c, d: get_user_leased_now(c, d, 1),
              "R2": lambda c, d: get_user_leased_now(c, d, 1)}
    run = replay(actors, nobody, "R2 R1 R1 R1 R1 R2 R2 R2", make_cache=reusing(cache))
    assert run.db.reads == 2 and run.returns == {"R1": None, "R2": None}


@pytest.mark.parametrize(("race", "verdict"), [
    (negative_caching.stale_not_found, STALE),
    (negative_caching.refused_by_the_lease, None),
])
def test_the_drawn_replays_end_as_the_page_says(race, verdict):
    run = race()
    assert run.verdict == verdict
    assert mermaid_problems(run.mermaid()) == []
    if verdict is None:  # the late fill was refused: nothing cached
        assert run.final == "cache empty, DB user 1='new'"


# --- the lease read, alone -------------------------------------------------------------


class Failing:
    def query(self, sql, params=()):
        raise ConnectionError("the database is down")


def test_the_lease_read_frees_its_lease_when_the_load_fails(cache):
    with pytest.raises(ConnectionError):
        get_user_leased(cache, Failing(), 1)
    assert cache.get(lease_key("user:1")) is None


def test_a_reader_without_the_lease_waits_then_reads_without_filling(cache, db):
    cache.set(lease_key("user:1"), "someone else", px=10_000)
    waits: list[float] = []
    assert get_user_leased(cache, db, 1, sleep=waits.append) is None
    assert len(waits) == WAITS and db.reads == 1 and cache.get("user:1") is None


# --- the flood -------------------------------------------------------------------------


def test_without_a_negative_cache_every_request_reads_the_db():
    for seconds in (1.0, 0.01):
        flood = Flood(requests=200, unknown_ids=10, seconds=seconds)
        assert simulate_flood("no negative cache", flood).db_reads == 200


def test_with_it_one_read_per_unknown_id_per_negative_ttl():
    flood = Flood(requests=200, unknown_ids=10)
    for read in ("negative cache", "negative cache + lease"):
        assert simulate_flood(read, flood).db_reads == 10
    long = Flood(requests=200, unknown_ids=10, seconds=120)
    assert simulate_flood("negative cache", long).db_reads == 10 * math.ceil(120 / 30)


def test_in_a_burst_only_the_lease_keeps_the_reads_near_one_per_id():
    burst = Flood(requests=200, unknown_ids=10, seconds=0.002)
    assert simulate_flood("negative cache", burst).db_reads > 100
    assert simulate_flood("negative cache + lease", burst).db_reads < 20


def test_a_scan_of_distinct_ids_gains_nothing_and_leaves_a_key_per_id():
    scan = Flood(requests=100, unknown_ids=100)
    outcome = simulate_flood("negative cache", scan)
    assert (outcome.db_reads, outcome.keys) == (100, 100)


# --- inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("read", [get_user, get_user_leased])
def test_reads_refuse_bad_input(cache, db, read):
    with pytest.raises(ValueError, match="user_id must be a positive integer, got 0"):
        read(cache, db, 0)
    with pytest.raises(ValueError, match="negative_ttl must be a positive integer"):
        read(cache, db, 1, negative_ttl=0)
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        read(cache, db, 1, ttl=-1)


@pytest.mark.parametrize("write", [create_user_plain, create_user, create_user_leased,
                                   create_user_write_through])
def test_inserts_refuse_bad_input_and_taken_ids(cache, write):
    db = make_db()
    with pytest.raises(ValueError, match="name must be a non-empty string, got ''"):
        write(cache, db, 1, "")
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        write(cache, db, -1, "x")
    write(cache, db, 1, "Ada")
    with pytest.raises(ValueError, match="a user with id 1 already exists"):
        write(cache, db, 1, "Grace")
    assert db.query("SELECT name FROM users") == [("Ada",)]


def test_unknown_names_and_bad_floods_are_clear_errors():
    with pytest.raises(LookupError, match="no paths named 'x'; paths: insert, nothing"):
        explore_insert("x", "first read")
    with pytest.raises(LookupError, match="no scenario named 'x'; scenarios: first read"):
        explore_insert("insert, then DEL", "x")
    with pytest.raises(LookupError, match="no read named 'x'; reads: no negative cache"):
        simulate_flood("x")
    with pytest.raises(ValueError, match="unknown_ids must be a positive integer"):
        Flood(unknown_ids=0)
    with pytest.raises(ValueError, match="seconds must be a number > 0"):
        Flood(seconds=0)
    assert set(PATHS) == {"insert, nothing deleted", "insert, then DEL", *FIXES}
    assert len(insert_and_read(create_user, get_user, readers=2)) == 3
