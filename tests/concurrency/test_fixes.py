"""Fixes that hold: each claim of docs/concurrency/fixes.md, on fakeredis and on a real Redis
(WATCH/MULTI is where the two could differ)."""

from __future__ import annotations

from itertools import permutations

import pytest

from snippets.backends import DEFAULT_TTL, Cache, Database
from snippets.concurrency import fixes
from snippets.concurrency.fixes import (FIXES, calls_alone, current_name, decode, encode,
                                        explore_fix, get_user_versioned, get_user_with_lease,
                                        lease_key, update_user_double_delete,
                                        update_user_revoking_lease, update_user_versioned)
from snippets.concurrency.reader_race import draw, writer_and_reader
from snippets.explorer import explore, mermaid_problems, replay, reusing
from snippets.scenarios import user_not_cached


@pytest.mark.parametrize("fix", ["leases", "versioned-set"])
@pytest.mark.parametrize("scenario", ["two writers", "writer + reader"])
def test_the_fix_holds_in_every_interleaving(cache, fix, scenario):
    result = explore_fix(fix, scenario, make_cache=reusing(cache))
    assert result.total > 1
    assert result.bad == [], result.summary()


@pytest.mark.parametrize("fix", ["leases", "versioned-set"])
def test_the_fix_holds_with_two_readers(fix):
    result = explore_fix(fix, "writer + 2 readers")
    assert result.total > 100 and result.bad == []


def test_a_check_then_set_without_watch_is_caught():
    """The WATCH is what makes the lease check and the SET one step; without it the
    explorer finds the write that lands in between. (So the tests above can fail.)"""
    def unguarded_read(cache: Cache, db: Database, user_id: int) -> str | None:
        cached = cache.get("user:1")
        if cached is not None:
            return cached
        token = cache.incr(lease_key(1))
        [(name,)] = db.query("SELECT name FROM users WHERE id = 1")
        if cache.get(lease_key(1)) == str(token):
            cache.set("user:1", name, ex=DEFAULT_TTL)
        return name

    result = explore(writer_and_reader(update_user_revoking_lease, unguarded_read),
                     user_not_cached, current_name(unguarded_read), reduce=False)
    # Reader: GET, INCR, SELECT, GET lease, SET. Bad: the UPDATE after the SELECT, and the
    # revoke between the lease check and the SET.
    assert {str(s) for s in result.bad} == {"R R R W R W R", "R R R R W W R"}


def test_lease_refuses_the_late_fill(cache):
    run = replay(writer_and_reader(update_user_revoking_lease, get_user_with_lease),
                 user_not_cached, "R R R W W R R", make_cache=reusing(cache))
    assert run.returns["R"] == "old"
    assert cache.get("user:1") is None and cache.get(lease_key(1)) == "2"
    assert get_user_with_lease(cache, run.db, 1) == "new"


def test_lease_exec_is_refused_when_the_write_lands_after_the_watch(cache):
    # Reader: GET, INCR, SELECT, WATCH, GET lease (still its token), EXEC. The write's
    # revoke (DEL + INCR) lands between the GET and the EXEC: Redis refuses the EXEC.
    run = replay(writer_and_reader(update_user_revoking_lease, get_user_with_lease),
                 user_not_cached, "R R R W R R W R", make_cache=reusing(cache))
    last = run.steps[-1]
    assert last.actor == "R" and last.op.startswith("MULTI, SET user:1")
    assert last.failed and last.result == "refused: a watched key changed"
    assert cache.get("user:1") is None


def test_versioned_writer_retries_when_an_older_fill_got_in_first(cache):
    # The reader stores version 1 between the writer's WATCH and EXEC: the writer's EXEC
    # is refused, it compares again, and stores version 2.
    read, write = FIXES["versioned-set"]
    run = replay(writer_and_reader(write, read), user_not_cached,
                 "R R W W W R R R W W W W", make_cache=reusing(cache))
    assert [step.failed for step in run.steps if step.actor == "W"] == [False] * 3 + [True] + [False] * 3
    assert decode(cache.get("user:1")) == (2, "new")


def test_versioned_set_never_replaces_a_newer_version(cache):
    assert fixes.set_if_newer(cache, "user:1", 2, "new", 60)
    assert not fixes.set_if_newer(cache, "user:1", 1, "old", 60)
    assert not fixes.set_if_newer(cache, "user:1", 2, "same version", 60)
    assert fixes.set_if_newer(cache, "user:1", 3, "newer", 60)
    assert decode(cache.get("user:1")) == (3, "newer") and 0 < cache.ttl("user:1") <= 60


def test_versions_break_when_the_newer_value_is_evicted():
    total, bad = fixes.counts("versioned-set", "writer + reader + eviction")
    assert bad and "R R W W W W E R R R" in {str(s) for s in bad}
    assert fixes.versioned_after_eviction().verdict == "stale: a read returns 'old', the DB says 'new'"
    assert fixes.counts("leases", "writer + reader + eviction")[1] == ()


def test_double_delete_is_bad_exactly_when_the_fill_lands_after_both_deletes(cache):
    result = explore_fix("double-delete", "writer + reader", make_cache=reusing(cache))
    everything = {" ".join(p) for p in set(permutations("RRRWWW"))}
    assert result.total == len(everything) == 20

    def late(schedule: str) -> bool:  # reader GET, SELECT, SET; writer UPDATE, DEL, DEL
        names = schedule.split()
        reader = [i for i, n in enumerate(names) if n == "R"]
        writer = [i for i, n in enumerate(names) if n == "W"]
        return reader[1] < writer[0] and reader[2] > writer[2]

    assert {str(s) for s in result.bad} == {s for s in everything if late(s)} == {"R R W W W R"}


def test_the_ttl_bounds_what_slips_through(cache):
    replay(writer_and_reader(update_user_double_delete), user_not_cached, "R R W W W R",
           make_cache=reusing(cache))
    assert cache.get("user:1") == "old" and 0 < cache.ttl("user:1") <= DEFAULT_TTL


def test_calls_per_operation():
    # Misses: cache-aside GET, SELECT, SET. Leases add INCR, WATCH, GET of the lease.
    # Versions add WATCH, GET. Writes: UPDATE, DEL; leases UPDATE, MULTI/EXEC; versions
    # one transaction, WATCH, GET, EXEC; double delete UPDATE, DEL, DEL.
    assert {fix: calls_alone(fix) for fix in ("none", *FIXES)} == {
        "none": (3, 2), "leases": (6, 2), "versioned-set": (5, 4), "double-delete": (3, 3)}


def test_each_path_alone_reads_and_writes_correctly(cache, db):
    db.add_user(1, "old")
    for read, write in FIXES.values():
        cache.flushdb()
        assert read(cache, db, 1) == read(cache, db, 1)  # a miss, then a hit
        write(cache, db, 1, "new")
        assert read(cache, db, 1) == "new"
        write(cache, db, 1, "old")
    assert encode(3, "a:b") == "3:a:b" and decode("3:a:b") == (3, "a:b")


@pytest.mark.parametrize("write", [update_user_revoking_lease, update_user_versioned,
                                   update_user_double_delete])
@pytest.mark.parametrize(("args", "error", "message"), [
    ((0, "x"), ValueError, "user_id must be a positive integer, got 0"),
    ((1, ""), ValueError, "name must be a non-empty string, got ''"),
    ((9, "x"), LookupError, "no user with id 9"),
])
def test_writes_refuse_bad_input_and_change_nothing(cache, db, write, args, error, message):
    db.add_user(1, "old")
    cache.set("user:9", "someone else's")
    with pytest.raises(error, match=message):
        write(cache, db, *args)
    assert db.query("SELECT name, version FROM users") == [("old", 1)]
    assert cache.keys("*") == ["user:9"]


@pytest.mark.parametrize("read", [get_user_with_lease, get_user_versioned])
def test_reads_refuse_bad_input(cache, db, read):
    with pytest.raises(ValueError, match="user_id must be a positive integer, got -1"):
        read(cache, db, -1)
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds, got 0"):
        read(cache, db, 1, ttl=0)
    assert db.reads == 0 and cache.keys("*") == []


def test_unknown_fix_or_scenario_is_a_clear_error():
    with pytest.raises(LookupError, match="no fix named 'magic'; fixes: leases, versioned-set"):
        explore_fix("magic", "two writers")
    with pytest.raises(LookupError, match="no scenario named 'x'; scenarios: two writers"):
        explore_fix("leases", "x")


def test_a_missing_user_is_not_cached(cache, db):
    for read, _ in FIXES.values():
        assert read(cache, db, 5) is None
        assert cache.exists("user:5") == 0


@pytest.mark.parametrize(("race", "verdict"), [
    (fixes.lease_refusal, None),
    (fixes.versioned_refusal, None),
    (fixes.versioned_after_eviction, "stale: a read returns 'old', the DB says 'new'"),
    (fixes.double_delete_race, "stale: a read returns 'old', the DB says 'new'"),
])
def test_the_drawn_replays_end_as_the_page_says(race, verdict):
    """The two fixes refuse the late fill; eviction and double delete let it through."""
    run = race()
    assert run.verdict == verdict
    assert mermaid_problems(draw(run)) == []
