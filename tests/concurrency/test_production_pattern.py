"""The production pattern, where it breaks, and the safe uses of update-on-write, on fakeredis
and real Redis."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path

import pytest

from snippets.explorer.pages import words
from snippets.backends import DEFAULT_TTL, make_db
from snippets.concurrency import production_pattern
from snippets.concurrency.production_pattern import (
    Replica,
    count_hit,
    count_hit_unsafe,
    create_flags_table,
    get_flags,
    get_user,
    load_session,
    save_session,
    set_flags,
    two_connections,
    update_user,
)
from snippets.faults import Intercept
from snippets.lease import LEASE_MS, WAIT_MS, WAITS, fill, lease_key, take_lease


def no_wait(seconds: float) -> None:
    """The injected clock of a reader that waits for the lease: no real sleep."""


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


def test_a_reader_without_the_lease_waits_then_answers_without_filling(cache, ada):
    assert take_lease(cache, "user:1") is not None  # a first reader is loading the row
    waited: list[float] = []
    assert get_user(cache, ada, 1, sleep=waited.append) == "Ada"  # it never filled
    assert waited == [WAIT_MS / 1000] * WAITS  # asked the cache again after each wait
    assert ada.reads == 1
    assert cache.exists("user:1") == 0


def test_a_reader_without_the_lease_gets_the_holders_fill(cache, ada):
    token = take_lease(cache, "user:1")  # a first reader is loading the row...

    def holder_fills(seconds: float) -> None:  # ...and fills while the second one waits
        fill(cache, "user:1", token, "Ada", DEFAULT_TTL)

    assert get_user(cache, ada, 1, sleep=holder_fills) == "Ada"
    assert ada.reads == 0  # served from the holder's fill


def test_the_read_and_write_paths_are_the_kits_lease_not_a_copy():
    source = inspect.getsource(production_pattern)
    assert "read_through(cache, key, load, ttl" in source
    assert "invalidate(cache, key)" in source
    assert "redis.call" not in source and "secrets" not in source  # no second lease
    page = PAGE.read_text(encoding="utf-8")
    assert '--8<-- "snippets/lease.py:lease"' in page and '--8<-- "snippets/lease.py:read"' in page


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
    assert 0 < cache.pttl("{user:1}:lease") <= LEASE_MS


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
        "R1": lambda c, d: get_user(c, d, 1, sleep=no_wait),
        "R2": lambda c, d: get_user(c, d, 1, sleep=no_wait),
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


# --- where it breaks: reads that do not see the last commit -------------------------------------


def test_a_lagging_replica_fills_the_old_value_after_the_write(cache):
    primary = make_db()
    primary.add_user(1, "old")
    replica = Replica(primary)
    update_user(cache, primary, 1, "new")  # commits on the primary; DEL key and lease
    assert get_user(cache, replica, 1) == "old"  # a fresh lease, a lagging replica
    replica.catch_up()
    assert replica.query("SELECT name FROM users WHERE id = 1") == [("new",)]
    assert cache.get("user:1") == "old" and 0 < cache.ttl("user:1") <= DEFAULT_TTL
    assert get_user(cache, primary, 1) == "old"  # served from the cache, even to the primary


def test_a_replica_that_caught_up_fills_the_new_value(cache):
    """The control: the same reads, with the replica caught up before the miss."""
    primary = make_db()
    primary.add_user(1, "old")
    replica = Replica(primary)
    update_user(cache, primary, 1, "new")
    replica.catch_up()
    assert get_user(cache, replica, 1) == "new" and cache.get("user:1") == "new"


def test_a_snapshot_read_fills_the_old_value_after_the_write(cache, tmp_path):
    server1, server2 = two_connections(str(tmp_path / "users.db"))
    try:
        server1.add_user(1, "old")
        server2.conn.execute("BEGIN")
        assert server2.query("SELECT count(*) FROM users") == [(1,)]  # the snapshot starts
        update_user(cache, server1, 1, "new")  # commits; DEL key and lease
        assert get_user(cache, server2, 1) == "old"  # its snapshot, and a fresh lease
        server2.conn.execute("COMMIT")
        assert server2.query("SELECT name FROM users WHERE id = 1") == [("new",)]
        assert cache.get("user:1") == "old" and 0 < cache.ttl("user:1") <= DEFAULT_TTL
    finally:
        server1.close()
        server2.close()


def test_without_the_snapshot_the_same_reader_fills_the_new_value(cache, tmp_path):
    """The control: no transaction open across the write, so the miss reads the commit."""
    server1, server2 = two_connections(str(tmp_path / "users.db"))
    try:
        server1.add_user(1, "old")
        assert server2.query("SELECT count(*) FROM users") == [(1,)]  # autocommit: no snapshot
        update_user(cache, server1, 1, "new")
        assert get_user(cache, server2, 1) == "new"
    finally:
        server1.close()
        server2.close()


# --- the wording of the page ------------------------------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concurrency" / "production-pattern.md"


# The source note's old nickname on these pages, spelled apart so that `grep -w` for it
# finds only random seeds.
NICKNAME = "se" "ed"




@pytest.mark.parametrize("phrase", [
    # False with a lagging replica or a snapshot read: the cache keeps the old value.
    "cache never ends wrong",
    # The reader race is one of several: a lost DEL, a replica, a snapshot.
    "the one way cache-aside can keep a wrong value",
    # On a hot key, one DEL costs a read per reader that misses before the refill.
    "the only cost is one database read",
    # The kit's lease makes the other missers wait; they no longer read the database.
    "readers that find the lease taken still read the database",
    # A frequency no count or measurement here supports.
    "rare races happen every day",
    # The old title of the reader-race page, and a word readers cannot know.
    f"The race the {NICKNAME} misses",
    NICKNAME,
    "1 bad schedule in 10",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase.lower() not in words(PAGE).lower()


def test_the_page_states_its_model_and_where_it_breaks():
    text = words(PAGE)
    assert '!!! info "Holds when"' in text
    for heading in ("## Where it breaks", "### A lagging read replica", "### A snapshot read"):
        assert heading in text
    for page in ("replica-lag", "snapshots", "failover"):  # each break, replayed and fixed
        assert f"(../distributed/{page}.md)" in text
