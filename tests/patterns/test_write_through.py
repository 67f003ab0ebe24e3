"""Write-through: each claim of docs/patterns/write-through.md, on fakeredis and real Redis."""

from __future__ import annotations

import os
import re
import sqlite3
from itertools import permutations
from pathlib import Path

import pytest
import redis

from snippets.explorer.pages import words
from snippets.backends import backend_name, make_fake_cache, make_redis_cache
from snippets.explorer import explore
from snippets.scenarios import user_not_cached
from snippets.explorer import pages as docs_tool
from snippets.faults import Intercept
from snippets.patterns import write_through
from snippets.patterns.write_through import (
    cost,
    counting,
    fail,
    get_user,
    hash_agrees_with_db,
    set_if_newer,
    set_if_newer_watch,
    update_user,
    update_user_cache_first,
    update_user_db_first,
    writers,
)

DB_DOWN = sqlite3.OperationalError("injected: database is locked")
REDIS_DOWN = redis.ConnectionError("injected: Redis unreachable")


def row(db, user_id=1):
    return db.query("SELECT name, version FROM users WHERE id = ?", (user_id,))[0]


def cached(cache, user_id=1):
    return cache.hgetall(f"user:{user_id}") or None


# --- the happy path -------------------------------------------------------------------


def test_write_commits_the_row_and_copies_it_with_its_version(cache, ada):
    assert update_user(cache, ada, 1, "Ada Lovelace") == 2
    assert row(ada) == ("Ada Lovelace", 2)
    assert cached(cache) == {"name": "Ada Lovelace", "version": "2"}
    assert 0 < cache.ttl("user:1") <= write_through.DEFAULT_TTL


def test_read_after_write_is_a_hit(cache, ada):
    update_user(cache, ada, 1, "Ada Lovelace")
    ada.reset_counts()
    assert get_user(cache, ada, 1) == "Ada Lovelace"
    assert ada.reads == 0


def test_read_miss_loads_the_row_once_with_its_version(cache, ada):
    assert get_user(cache, ada, 1, ttl=60) == "Ada"
    assert ada.reads == 1
    assert cached(cache) == {"name": "Ada", "version": "1"}
    assert 0 < cache.ttl("user:1") <= 60


def test_unknown_user_reads_none_and_caches_nothing(cache, db):
    assert get_user(cache, db, 42) is None
    assert cache.exists("user:42") == 0


# --- partial failures -----------------------------------------------------------------


def test_cache_first_then_db_failure_serves_a_value_the_db_never_had(cache, ada):
    with pytest.raises(sqlite3.OperationalError):
        update_user_cache_first(cache, Intercept(ada, "execute", fail(DB_DOWN)), 1, "Ghost")
    assert row(ada) == ("Ada", 1)  # the write failed...
    assert get_user(cache, ada, 1) == "Ghost"  # ...and readers see it anyway


def test_cache_first_to_a_missing_user_poisons_the_cache(cache, db):
    with pytest.raises(LookupError, match="no user with id 7"):
        update_user_cache_first(cache, db, 7, "Nobody")
    assert get_user(cache, db, 7) == "Nobody"  # a user the DB does not have


def test_db_first_then_cache_failure_leaves_the_old_copy_until_ttl(cache, ada):
    get_user(cache, ada, 1, ttl=60)
    broken = Intercept(cache, "pipeline", fail(REDIS_DOWN))
    with pytest.raises(redis.ConnectionError):
        update_user_db_first(broken, ada, 1, "Ada Lovelace", ttl=60)
    assert row(ada) == ("Ada Lovelace", 2)
    assert get_user(cache, ada, 1) == "Ada"  # stale: "no stale cache" does not hold
    assert 0 < cache.ttl("user:1") <= 60  # ...but only until the TTL


def test_versioned_write_db_failure_touches_nothing(cache, ada):
    get_user(cache, ada, 1)
    with pytest.raises(sqlite3.OperationalError):
        update_user(cache, Intercept(ada, "execute", fail(DB_DOWN)), 1, "Ghost")
    assert row(ada) == ("Ada", 1)
    assert cached(cache) == {"name": "Ada", "version": "1"}


def test_versioned_write_failing_after_the_update_rolls_it_back(cache, ada):
    """The fault hits the SELECT of the new version, after the UPDATE ran: rollback."""
    with pytest.raises(sqlite3.OperationalError):
        update_user(cache, Intercept(ada, "query", fail(DB_DOWN)), 1, "Half")
    assert row(ada) == ("Ada", 1)
    assert cache.exists("user:1") == 0


def test_versioned_write_cache_failure_drops_the_copy(cache, ada):
    get_user(cache, ada, 1)
    assert update_user(Intercept(cache, "eval", fail(REDIS_DOWN)), ada, 1, "Ada L") == 2
    assert cache.exists("user:1") == 0  # the fallback DEL worked
    assert get_user(cache, ada, 1) == "Ada L"  # so the next read reloads the row


def test_versioned_write_redis_unreachable_is_stale_until_ttl(cache, ada):
    get_user(cache, ada, 1, ttl=60)

    class Unreachable(Intercept):
        def delete(self, *keys):
            raise REDIS_DOWN

    with pytest.raises(redis.ConnectionError):
        update_user(Unreachable(cache, "eval", fail(REDIS_DOWN)), ada, 1, "Ada L", ttl=60)
    assert row(ada) == ("Ada L", 2)  # committed
    assert get_user(cache, ada, 1) == "Ada"  # the copy could not be touched
    assert 0 < cache.ttl("user:1") <= 60


# --- two concurrent writers, one schedule replayed -------------------------------------


def test_db_first_unordered_sets_disagree(cache, ada):
    """A: UPDATE; B: UPDATE, SET; A: SET. The DB says B, the cache says A."""
    paused_a = Intercept(cache, "pipeline", lambda: update_user_db_first(cache, ada, 1, "B"))
    update_user_db_first(paused_a, ada, 1, "A")
    assert row(ada)[0] == "B"
    assert get_user(cache, ada, 1) == "A"


def test_cache_first_unordered_writes_disagree(cache, ada):
    """A: SET; B: SET, UPDATE; A: UPDATE. The cache says B, the DB says A."""
    paused_a = Intercept(ada, "execute", lambda: update_user_cache_first(cache, ada, 1, "B"))
    update_user_cache_first(cache, paused_a, 1, "A")
    assert row(ada)[0] == "A"
    assert get_user(cache, ada, 1) == "B"


def test_versioned_sets_agree_in_the_same_schedule(cache, ada):
    paused_a = Intercept(cache, "eval", lambda: update_user(cache, ada, 1, "B"))
    assert update_user(paused_a, ada, 1, "A") == 2  # A committed first...
    assert row(ada) == ("B", 3)  # ...B last
    assert cached(cache) == {"name": "B", "version": "3"}  # A's late set was refused


def test_versioned_sets_agree_when_the_first_set_arrives_last(cache, ada):
    """A: commit v2; B: commit v3; B: set v3; A: set v2 (refused). Three writers."""
    paused_b = Intercept(cache, "eval", lambda: update_user(cache, ada, 1, "C"))
    paused_a = Intercept(cache, "eval", lambda: update_user(paused_b, ada, 1, "B"))
    assert update_user(paused_a, ada, 1, "A") == 2
    assert row(ada) == ("C", 4)
    assert cached(cache) == {"name": "C", "version": "4"}


def test_a_slow_reader_cannot_put_back_an_older_row(cache, ada):
    """The reader loads version 1, a write commits and copies version 2, then the
    reader's fill arrives: refused."""
    slow_reader = Intercept(cache, "eval", lambda: update_user(cache, ada, 1, "Ada L"))
    assert get_user(slow_reader, ada, 1) == "Ada"  # what it read, before the write
    assert cached(cache) == {"name": "Ada L", "version": "2"}


# --- every interleaving, by the explorer --------------------------------------------------


def explorer_cache(cache):
    """The explorer makes a fresh cache per schedule, on the backend under test."""
    if backend_name(cache) == "redis":
        url = os.environ["REDIS_URL"]
        return lambda: make_redis_cache(url)
    return make_fake_cache


def two_step_model(writers_count):
    """The expected counts, from a model of the two-step writers rather than from the
    code: each writer takes a first and a second step (one on the DB, one on the cache,
    in either order). The DB ends with whoever took the last DB step and the cache with
    whoever took the last cache step; they disagree when those are different writers."""
    schedules = set(permutations([w for w in range(writers_count) for _ in (0, 1)]))
    bad = 0
    for schedule in schedules:
        firsts, seconds, started = [], [], set()
        for who in schedule:
            (seconds if who in started else firsts).append(who)
            started.add(who)
        bad += firsts[-1] != seconds[-1]
    return len(schedules), bad


def test_the_model_counts():
    assert two_step_model(2) == (6, 2)  # A B B A and B A A B
    assert two_step_model(3)[0] == 90  # 6! / (2! 2! 2!)


@pytest.mark.parametrize(
    "write, unordered",
    [(update_user_cache_first, True), (update_user_db_first, True), (update_user, False)],
)
def test_every_interleaving_of_concurrent_writers(cache, write, unordered):
    """Unordered designs fail exactly where the model says; the versioned one never."""
    (_, bad_of_two), (_, bad_of_three) = two_step_model(2), two_step_model(3)
    if not unordered:
        bad_of_two = bad_of_three = 0
    two = explore(writers(write, "A", "B"), user_not_cached, hash_agrees_with_db,
                  make_cache=explorer_cache(cache), reduce=False)
    assert (two.total, len(two.bad)) == (6, bad_of_two)
    if bad_of_two:
        assert sorted(map(str, two.bad)) == ["A B B A", "B A A B"]
    three = explore(writers(write, "A", "B", "C"), user_not_cached, hash_agrees_with_db,
                    make_cache=explorer_cache(cache), reduce=False)
    assert (three.total, len(three.bad)) == (90, bad_of_three)


def test_versioned_writers_and_a_filling_reader_always_agree(cache):
    actors = {**writers(update_user, "A", "B"), "R": lambda c, d: get_user(c, d, 1)}
    found = explore(actors, user_not_cached, hash_agrees_with_db, make_cache=explorer_cache(cache),
                    reduce=False)
    assert found.total > 90 and found.bad == []


def test_a_lost_set_reopens_the_reader_race(cache):
    """Writer: commit, DEL (2 steps); reader: HGET, SELECT, fill (3): C(5, 2) = 10
    schedules. Stale only if the reader reads the row before the commit and fills
    after the DEL: R R W W R, and no other."""
    actors = {"W": write_through.set_is_lost, "R": lambda c, d: get_user(c, d, 1)}
    found = explore(actors, user_not_cached, hash_agrees_with_db, make_cache=explorer_cache(cache),
                    reduce=False)
    assert found.total == 10
    assert list(map(str, found.bad)) == ["R R W W R"]


def test_the_generated_diagrams_on_the_page_are_current():
    page = Path(__file__).parents[2] / "docs" / "patterns" / "write-through.md"
    assert [ref for ref, _ in docs_tool.page_diagrams(page)] == [
        "snippets.patterns.write_through:race_unordered",
        "snippets.patterns.write_through:race_versioned",
        "snippets.patterns.write_through:race_copy_gone",
    ]
    assert docs_tool.update_diagrams([page], write=False) == []


def test_the_diagrams_show_the_disagreement_and_the_refusal():
    assert "stale: the cache holds 'A' but the DB says 'B'" in write_through.race_unordered()
    versioned = write_through.race_versioned()
    assert 'EVAL set-if-newer 1 user:1 "A" 2 300\n    R-->>a0: 0' in versioned
    assert "Note over R,D" not in versioned  # no verdict: the check passed


def test_writers_needs_a_name():
    with pytest.raises(ValueError, match="give at least one writer name"):
        writers(update_user)


# --- the versioned set itself, both implementations ------------------------------------


@pytest.mark.parametrize("setter", [set_if_newer, set_if_newer_watch])
def test_set_if_newer_refuses_older_and_equal_versions(cache, setter):
    assert setter(cache, 1, "v5", 5, ttl=60) is True
    assert setter(cache, 1, "v4", 4) is False
    assert setter(cache, 1, "v5 again", 5) is False
    assert cached(cache) == {"name": "v5", "version": "5"}
    assert setter(cache, 1, "v6", 6) is True
    assert cached(cache) == {"name": "v6", "version": "6"}
    assert 0 < cache.ttl("user:1") <= write_through.DEFAULT_TTL


@pytest.mark.parametrize("setter", [set_if_newer, set_if_newer_watch])
def test_set_if_newer_overwrites_a_copy_without_version(cache, setter):
    cache.hset("user:1", mapping={"name": "naive"})
    assert setter(cache, 1, "v1", 1) is True
    assert cached(cache) == {"name": "v1", "version": "1"}


class RacingPipeline:
    """A cache whose pipelines run ``race()`` once, just before MULTI."""

    def __init__(self, cache, race):
        self.cache, self.race, self.fired = cache, race, False

    def pipeline(self):
        pipe = self.cache.pipeline()
        multi = pipe.multi

        def racing_multi():
            if not self.fired:
                self.fired = True
                self.race()
            return multi()

        pipe.multi = racing_multi
        return pipe


def test_watch_retries_and_keeps_a_newer_write_that_slipped_in(cache):
    racer = RacingPipeline(cache, lambda: cache.hset("user:1", mapping={"name": "v9", "version": 9}))
    assert set_if_newer_watch(racer, 1, "v5", 5) is False  # EXEC failed, the retry saw v9
    assert cached(cache) == {"name": "v9", "version": "9"}


def test_watch_retries_and_wins_over_an_older_write(cache):
    racer = RacingPipeline(cache, lambda: cache.hset("user:1", mapping={"name": "v2", "version": 2}))
    assert set_if_newer_watch(racer, 1, "v5", 5) is True
    assert cached(cache) == {"name": "v5", "version": "5"}


# --- cost, counted ---------------------------------------------------------------------


def test_counting_counts_commands_and_round_trips_then_stops(cache):
    with counting(cache) as counts:
        cache.get("x")
        set_if_newer_watch(cache, 1, "v1", 1)  # WATCH, HGET, MULTI, HSET, EXPIRE, EXEC
    assert counts == {"commands": 7, "round_trips": 4}
    cache.get("x")
    assert counts == {"commands": 7, "round_trips": 4}


def test_write_cost_against_cache_aside(cache, ada):
    from snippets.patterns.cache_aside import update_user as aside_update

    get_user(cache, ada, 1)  # warm: the script and the key
    assert cost(cache, ada, lambda: aside_update(cache, ada, 1, "x")) == [1, 1, 1]
    assert cost(cache, ada, lambda: update_user(cache, ada, 1, "y")) == [2, 1, 1]
    assert cost(cache, ada, lambda: get_user(cache, ada, 1)) == [0, 1, 1]


def test_bench_prints_the_ratios(printed):
    lines = printed(write_through.bench, writes=3)
    ratios = {line.rsplit(None, 3)[0]: line.split()[-3:] for line in lines[-2:]}
    assert ratios == {
        "ratio, one write": ["2.0x", "1.0x", "1.0x"],
        "ratio, write + read": ["1.0x", "0.7x", "0.7x"],
    }


# --- bad input -------------------------------------------------------------------------

WRITERS = [update_user, update_user_cache_first, update_user_db_first]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("bad_id", [0, -1, "1", 1.0, True, None])
def test_bad_user_id_is_refused_before_anything_is_touched(cache, ada, writer, bad_id):
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        writer(cache, ada, bad_id, "x")
    assert ada.writes == 0 and cache.dbsize() == 0


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("bad_name", ["", None, 3])
def test_bad_name_is_refused_before_anything_is_touched(cache, ada, writer, bad_name):
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        writer(cache, ada, 1, bad_name)
    assert ada.writes == 0 and cache.dbsize() == 0
    assert row(ada) == ("Ada", 1)


@pytest.mark.parametrize("writer", WRITERS)
def test_bad_ttl_is_refused_before_anything_is_touched(cache, ada, writer):
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        writer(cache, ada, 1, "x", ttl=0)
    assert ada.writes == 0 and cache.dbsize() == 0


def test_versioned_write_to_a_missing_user_touches_nothing(cache, db):
    with pytest.raises(LookupError, match="no user with id 7"):
        update_user(cache, db, 7, "Nobody")
    assert cache.dbsize() == 0
    assert db.query("SELECT COUNT(*) FROM users") == [(0,)]


def test_get_user_bad_input(cache, ada):
    with pytest.raises(ValueError, match="user_id must be a positive integer, got 0"):
        get_user(cache, ada, 0)
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        get_user(cache, ada, 1, ttl=-1)
    assert ada.reads == 0


@pytest.mark.parametrize("setter", [set_if_newer, set_if_newer_watch])
@pytest.mark.parametrize("bad_version", [0, -3, "2", 2.0, True, None])
def test_set_if_newer_bad_version(cache, setter, bad_version):
    message = f"version must be a positive integer, got {bad_version!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        setter(cache, 1, "x", bad_version)
    assert cache.dbsize() == 0


def test_intercept_refuses_a_method_that_does_not_exist(db):
    with pytest.raises(ValueError, match="Database has no method 'exectue'"):
        Intercept(db, "exectue", fail(DB_DOWN))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bench_bad_writes(bad):
    with pytest.raises(ValueError, match=re.escape(f"writes must be a positive integer, got {bad!r}")):
        write_through.bench(writes=bad)


def test_cost_needs_a_callable(cache, db):
    with pytest.raises(TypeError, match="op must be callable"):
        cost(cache, db, "update")



# --- the page no longer states what was wrong ----------------------------------------------

WRITE_THROUGH_PAGE = Path(__file__).resolve().parents[2] / "docs" / "patterns" / "write-through.md"




@pytest.mark.parametrize("phrase", [
    # "always" without its model: a lost set or an eviction lets an old row back in,
    # and the count assumes one Redis, a primary database and a transaction as one step
    "two writers always leave the cache holding the database's latest value or nothing",
    # over a copy that is gone (evicted, deleted after a failed set) it can
    "old row cannot put it back over a newer write",
    # the source is quoted as the common advice; table headers say "Common claim"
    "Claim (from the common advice)",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase not in words(WRITE_THROUGH_PAGE)


def test_the_page_states_the_model_of_its_zero_bad_counts():
    text = words(WRITE_THROUGH_PAGE)
    box = text.index('!!! info "Holds when"')
    assert text.index("versioned 3 writers: 90 schedules, 0 bad") < box
    assert "no key is evicted" in text[box:]


def test_put_is_one_step_but_not_all_or_nothing(cache):
    """MULTI/EXEC does not roll back: a failed HSET leaves the EXPIRE applied."""
    cache.set("user:1", "a string, not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        write_through.put(cache, "user:1", "Ada", 60)
    assert cache.get("user:1") == "a string, not a hash"
    assert 0 < cache.ttl("user:1") <= 60  # the EXPIRE still ran
