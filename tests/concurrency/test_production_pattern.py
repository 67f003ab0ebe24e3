"""The production pattern and the safe uses of update-on-write, on fakeredis and real Redis."""

from __future__ import annotations

import threading

import pytest

from snippets.backends import DEFAULT_TTL
from snippets.concurrency import production_pattern
from snippets.concurrency.production_pattern import (
    LEASE_TTL,
    count_hit,
    count_hit_unsafe,
    create_flags_table,
    fill,
    get_flags,
    get_user,
    lease_key,
    load_session,
    save_session,
    set_flags,
    take_lease,
    update_user,
)
from snippets.faults import Intercept


# --- the read and write paths -------------------------------------------------------------


def test_miss_reads_db_once_fills_and_releases_the_lease(cache, ada):
    assert get_user(cache, ada, 1) == "Ada"
    assert ada.reads == 1
    assert cache.get("user:1") == "Ada"
    assert 0 < cache.ttl("user:1") <= DEFAULT_TTL
    assert cache.exists("{user:1}:lease") == 0


def test_hit_costs_no_db_read(cache, ada):
    get_user(cache, ada, 1)
    ada.reset_counts()
    assert [get_user(cache, ada, 1) for _ in range(3)] == ["Ada"] * 3
    assert ada.reads == 0


def test_write_updates_db_and_deletes_key_and_lease(cache, ada):
    get_user(cache, ada, 1)
    cache.set(lease_key("user:1"), "a reader's token")
    update_user(cache, ada, 1, "Ada Lovelace")
    assert cache.exists("user:1", "{user:1}:lease") == 0
    assert ada.query("SELECT name, version FROM users WHERE id = 1") == [("Ada Lovelace", 2)]
    assert get_user(cache, ada, 1) == "Ada Lovelace"


def test_reader_race_is_refused(cache, db):
    """The race of reader-race.md: the reader reads 'Ada', a write lands, the reader fills.
    Cache-aside puts 'Ada' back; here the write deleted the lease, so the fill is refused."""
    # Reader: GET, SET NX (the lease), SELECT, EVAL (the fill). The write lands before
    # the EVAL: after the reader read the old row.
    racing = Intercept(cache, "eval", before=lambda: update_user(cache, db, 1, "Ada Lovelace"))
    db.add_user(1, "Ada")
    assert get_user(racing, db, 1) == "Ada"  # it answers with what it read...
    assert cache.get("user:1") is None  # ...but does not cache it
    assert get_user(cache, db, 1) == "Ada Lovelace"


def test_the_same_race_breaks_plain_cache_aside(cache, db):
    """The control: without the lease, the same interleaving leaves the old value."""
    from snippets.patterns import cache_aside

    # Reader: GET, SELECT, SET. The write lands before the SET.
    write = lambda: cache_aside.update_user(cache, db, 1, "Ada Lovelace")  # noqa: E731
    db.add_user(1, "Ada")
    cache_aside.get_user(Intercept(cache, "set", before=write), db, 1)
    assert cache.get("user:1") == "Ada"
    assert db.query("SELECT name FROM users WHERE id = 1") == [("Ada Lovelace",)]


def test_a_second_reader_without_the_lease_answers_but_does_not_fill(cache, ada):
    assert take_lease(cache, "user:1") is not None  # a first reader is loading the row
    assert get_user(cache, ada, 1) == "Ada"
    assert ada.reads == 1
    assert cache.exists("user:1") == 0


def test_fill_needs_our_own_token_not_just_a_lease(cache):
    first = take_lease(cache, "user:1")
    cache.delete(lease_key("user:1"))  # a write voids it...
    second = take_lease(cache, "user:1")  # ...and a new reader takes a new lease
    assert first and second and first != second
    assert take_lease(cache, "user:1") is None
    assert fill(cache, "user:1", first, "old", 60) is False
    assert cache.exists("user:1") == 0
    assert fill(cache, "user:1", second, "new", 60) is True
    assert cache.get("user:1") == "new"


def test_the_lease_shares_the_keys_cluster_slot():
    """Redis Cluster runs a script, or a DEL of two keys, only if all its keys share a slot."""
    from redis.crc import key_slot

    assert lease_key("user:1") == "{user:1}:lease"
    assert key_slot(b"{user:1}:lease") == key_slot(b"user:1")
    assert key_slot(b"user:1:lease") != key_slot(b"user:1")  # without the tag: apart


def test_a_lease_expires_so_a_dead_reader_cannot_block_fills_forever(cache):
    take_lease(cache, "user:1")
    assert 0 < cache.ttl("{user:1}:lease") <= LEASE_TTL


def test_watching_the_missing_key_would_not_be_enough(cache):
    """Why a lease KEY: after the write's DEL there is nothing left to watch or compare.
    Redis does not count a DEL of a missing key as a change, so a WATCH on it still EXECs."""
    other = cache.__class__(connection_pool=cache.connection_pool)  # a second connection
    with cache.pipeline() as pipe:
        pipe.watch("user:1")  # the reader missed: user:1 does not exist
        other.delete("user:1")  # the writer's DEL: a no-op
        pipe.multi()
        pipe.set("user:1", "old")
        assert pipe.execute() == [True]  # the stale fill went through


def test_unknown_user_returns_none_and_caches_nothing(cache, db):
    assert get_user(cache, db, 7) is None
    assert cache.exists("user:7") == 0


def test_updating_a_missing_user_raises_and_touches_no_key(cache, db):
    cache.set("user:7", "someone else's value")
    with pytest.raises(LookupError, match="no user with id 7"):
        update_user(cache, db, 7, "Nobody")
    assert cache.get("user:7") == "someone else's value"


@pytest.mark.parametrize("bad_id", [0, -1, "1", 1.5, True, None])
def test_bad_user_id_is_a_clear_error(cache, ada, bad_id):
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        get_user(cache, ada, bad_id)
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        update_user(cache, ada, bad_id, "x")
    assert ada.reads == ada.writes == 0
    assert cache.dbsize() == 0


@pytest.mark.parametrize("bad_ttl", [0, -1, 1.5, "60"])
def test_bad_ttl_is_a_clear_error_and_takes_no_lease(cache, ada, bad_ttl):
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        get_user(cache, ada, 1, ttl=bad_ttl)
    assert cache.dbsize() == 0 and ada.reads == 0


@pytest.mark.parametrize("bad_name", ["", None, 3])
def test_bad_name_is_a_clear_error_and_writes_nothing(cache, ada, bad_name):
    get_user(cache, ada, 1)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        update_user(cache, ada, 1, bad_name)
    assert ada.writes == 0 and cache.get("user:1") == "Ada"


# --- sessions ---------------------------------------------------------------------------------


def test_session_round_trip_and_each_save_renews_the_ttl(cache):
    save_session(cache, "abc123", {"user": 1, "cart": []}, ttl=60)
    assert load_session(cache, "abc123") == {"user": 1, "cart": []}
    cache.expire("session:abc123", 5)  # time passes
    save_session(cache, "abc123", {"user": 1, "cart": [42]}, ttl=60)
    assert load_session(cache, "abc123") == {"user": 1, "cart": [42]}  # read-after-write
    assert cache.ttl("session:abc123") > 5


def test_sessions_of_different_owners_never_meet(cache):
    save_session(cache, "alice", {"user": 1})
    save_session(cache, "bob", {"user": 2})
    assert load_session(cache, "alice") == {"user": 1}
    assert load_session(cache, "nobody") is None


@pytest.mark.parametrize("bad_id", ["", "a:b", "../x", None, 7])
def test_bad_session_id_is_a_clear_error(cache, bad_id):
    with pytest.raises(ValueError, match="session_id must be alphanumeric"):
        save_session(cache, bad_id, {})
    assert cache.dbsize() == 0


def test_session_data_must_be_a_dict(cache):
    with pytest.raises(TypeError, match="session data must be a dict"):
        save_session(cache, "abc", ["not", "a", "dict"])
    assert cache.dbsize() == 0


# --- feature flags ------------------------------------------------------------------------------


@pytest.fixture
def flags_db(db):
    create_flags_table(db)
    db.reset_counts()
    return db


def test_flags_read_after_write_without_a_db_read(cache, flags_db):
    set_flags(cache, flags_db, {"new_checkout": True})
    flags_db.reset_counts()
    assert get_flags(cache, flags_db) == {"new_checkout": True}
    assert flags_db.reads == 0


def test_flags_miss_reads_the_db_once(cache, flags_db):
    set_flags(cache, flags_db, {"dark_mode": False})
    cache.delete("flags")
    flags_db.reset_counts()
    assert get_flags(cache, flags_db) == {"dark_mode": False}
    assert get_flags(cache, flags_db) == {"dark_mode": False}
    assert flags_db.reads == 1


def test_a_late_flags_fill_never_overwrites_the_admins_set(cache, db):
    """The reader misses and reads the old set; the admin writes; the reader fills late.
    Its SET NX is refused because the admin's SET is already there."""
    # Reader: GET, SELECT, SET NX. The admin's write lands before the SET NX.
    racing = Intercept(cache, "set", before=lambda: set_flags(cache, db, {"new_checkout": True}))
    create_flags_table(db)
    db.execute("INSERT INTO flags (id, doc) VALUES (1, ?)", ('{"new_checkout": false}',))
    assert get_flags(racing, db) == {"new_checkout": False}  # what it read
    assert get_flags(cache, db) == {"new_checkout": True}  # what is cached


@pytest.mark.parametrize("bad", [{"x": 1}, {1: True}, [("x", True)], None])
def test_bad_flags_are_a_clear_error_and_write_nothing(cache, flags_db, bad):
    with pytest.raises(TypeError, match="flags must be a dict of str to bool"):
        set_flags(cache, flags_db, bad)
    assert flags_db.writes == 0 and cache.exists("flags") == 0


# --- counters -----------------------------------------------------------------------------------


def test_incr_from_many_threads_is_exact(cache):
    """Real threads, real Redis: INCR never loses one (an atomic command, not a race)."""
    clients = [cache.__class__(connection_pool=cache.connection_pool) for _ in range(4)]
    threads = [
        threading.Thread(target=lambda c=c: [count_hit(c, "home") for _ in range(250)])
        for c in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("counter:home") == "1000"


def test_get_then_set_loses_an_increment(cache):
    # Both GETs before either SET: the other client's whole increment lands before ours.
    racing = Intercept(cache, "set", before=lambda: count_hit_unsafe(cache, "home"))
    assert count_hit_unsafe(racing, "home") == 1  # both read 0 and wrote 1
    assert racing.fired  # so two increments ran
    assert cache.get("counter:home") == "1"  # two increments, one counted


@pytest.mark.parametrize("bad", ["", None, 5])
def test_bad_counter_name_is_a_clear_error(cache, bad):
    with pytest.raises(ValueError, match="counter name must be non-empty text"):
        count_hit(cache, bad)
    with pytest.raises(ValueError, match="counter name must be non-empty text"):
        count_hit_unsafe(cache, bad)
    assert cache.dbsize() == 0


# --- every interleaving, by the explorer ------------------------------------------------------


def test_explorer_finds_the_reader_race_in_cache_aside_and_none_in_the_production_pattern():
    rows = {claim: (total, bad) for claim, total, bad in production_pattern.explore_claims("user")}
    # Writers: UPDATE, DEL each -> 4!/(2!2!) = 6 orders; deletes commute, so none is bad.
    assert rows["two writers, cache-aside"] == (6, 0)
    assert rows["two writers, production pattern"] == (6, 0)
    # Cache-aside reader: GET, SELECT, SET (3 steps) vs UPDATE, DEL: 5!/(3!2!) = 10 orders;
    # only R R W W R (read old before the write, set after its DEL) is bad.
    assert rows["writer + reader, cache-aside"] == (10, 1)
    # The lease adds a step (GET, SET NX, SELECT, EVAL): 6!/(4!2!) = 15 orders, none bad.
    assert rows["writer + reader, production pattern"] == (15, 0)


def test_production_pattern_holds_for_a_writer_and_two_readers():
    from snippets.explorer import explore
    from snippets.scenarios import cache_agrees_with_db, user_not_cached

    actors = {
        "W": lambda c, d: update_user(c, d, 1, "new"),
        "R1": lambda c, d: get_user(c, d, 1),
        "R2": lambda c, d: get_user(c, d, 1),
    }
    result = explore(actors, user_not_cached, cache_agrees_with_db)
    assert result.total > 50 and result.bad == []


def test_explorer_proves_each_safe_use_and_what_breaks_it():
    rows = {c: (t, b) for c, t, b in production_pattern.explore_claims("safe uses")}
    assert rows["flags, one admin + a reader"] == (10, 0)
    # Two admins: bad when their SETs land in the opposite order of their DB writes.
    assert rows["flags, two admins"] == (6, 2)
    assert rows["counter, INCR twice"] == (2, 0)
    # GET, SET each: bad whenever both GETs come before the second SET: 4 of 6.
    assert rows["counter, GET then SET twice"] == (6, 4)


def test_explore_claims_rejects_an_unknown_group():
    with pytest.raises(LookupError, match="unknown group 'sessions'; known: user, safe uses"):
        production_pattern.explore_claims("sessions")


def test_the_generated_diagram_is_deterministic_and_shows_the_refusal():
    from snippets.explorer import mermaid_problems

    diagram = production_pattern.race_refused()
    assert mermaid_problems(diagram) == []
    assert diagram == production_pattern.race_refused()  # random tokens are renamed
    assert "a0->>R: DEL user:1 user:1:lease" in diagram
    assert "R-->>a1: 0" in diagram  # the late fill is refused
