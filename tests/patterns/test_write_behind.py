"""Write-behind: each claim of docs/patterns/write-behind.md, on fakeredis and real Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from snippets.explorer.pages import words
from snippets.backends import (
    backend_name,
    make_db,
    make_fake_cache,
    make_redis_cache,
    user_key,
)
from snippets.faults import Crash, Faults, Intercept
from snippets.patterns import write_behind
from snippets.patterns.write_behind import (
    DEAD,
    GROUP,
    LOGS,
    ONE_LOG,
    STREAM,
    InMemoryWriteBehind,
    apply,
    crash_sweep,
    drain,
    flush,
    get_user,
    log_of,
    mark_key,
    order,
    partitioned,
    pending,
    prepare,
    write,
)
from snippets.patterns.write_through import cost


@pytest.fixture
def logged(cache, ada):
    prepare(cache, ada)
    ada.reset_counts()
    return ada


def row(db, user_id=1):
    return db.query("SELECT name, version FROM users WHERE id = ?", (user_id,))[0]


def process(cache, db, crash_at=()):
    """One process's view of the cache and the DB, its calls numbered as one sequence."""
    faults = Faults(crash_at=crash_at)
    return faults, faults.wrap(cache, "cache"), faults.wrap(db, "db")


def steps_of_a_clean_flush(cache, db, **options):
    faults, cache, db = process(cache, db)
    flush(cache, db, "probe", **options)
    return faults.steps


# --- the naive version: the queue lives in the process ----------------------------------


def test_in_memory_write_is_acknowledged_before_the_db_has_it(cache, ada):
    wb = InMemoryWriteBehind(cache, ada)
    wb.write(1, "Ada Lovelace")
    assert get_user(cache, ada, 1) == "Ada Lovelace"
    assert row(ada) == ("Ada", 1)
    assert ada.writes == 0
    assert wb.flush() == 1
    assert row(ada) == ("Ada Lovelace", 2)


def test_in_memory_acknowledged_write_is_lost_when_the_process_dies(cache, ada):
    wb = InMemoryWriteBehind(cache, ada)
    wb.write(1, "Ada Lovelace")  # acknowledged
    del wb  # the process dies before its flush
    cache.delete("user:1")  # the entry expires (or Redis restarts without persistence)
    assert get_user(cache, ada, 1) == "Ada"
    assert row(ada) == ("Ada", 1)


def test_in_memory_crash_during_the_flush_loses_the_whole_batch(cache, db):
    for user_id in (1, 2):
        db.add_user(user_id, "before")
    _, dying_cache, dying_db = process(cache, db, crash_at=[4])
    wb = InMemoryWriteBehind(dying_cache, dying_db)  # cache.set, cache.set, db.transaction
    wb.write(1, "one")
    wb.write(2, "two")
    with pytest.raises(Crash, match="step 4: before db.execute UPDATE users"):
        wb.flush()  # dies at its first UPDATE: the transaction rolls back
    assert db.query("SELECT name FROM users ORDER BY id") == [("before",), ("before",)]


def test_in_memory_coalesces_writes_to_one_key(cache, ada):
    wb = InMemoryWriteBehind(cache, ada)
    for i in range(50):
        wb.write(1, f"name {i}")
    assert wb.flush() == 1
    assert ada.writes == 1
    assert row(ada) == ("name 49", 2)


# --- the durable version: the log lives in Redis -----------------------------------------


def test_write_touches_no_db_and_logs_the_write(cache, logged):
    assert cost(cache, logged, lambda: write(cache, 1, "Ada L")) == [0, 1, 1]  # one EVAL
    assert cache.get("user:1") == "Ada L"
    assert cache.ttl("user:1") == -1  # pinned: no TTL until the DB has it
    [(entry_id, fields)] = cache.xrange(STREAM)
    assert fields == {"user_id": "1", "name": "Ada L"}
    assert cache.get(mark_key("user:1")) == entry_id  # the copy is this entry's
    assert row(logged) == ("Ada", 1)


def test_a_write_that_fails_is_neither_cached_nor_logged(cache, logged):
    _, dying_cache, _ = process(cache, logged, crash_at=[1])
    with pytest.raises(Crash):
        write(dying_cache, 1, "never")
    assert cache.exists("user:1") == 0
    assert cache.xlen(STREAM) == 0


def test_flush_applies_acks_and_lets_the_copy_expire(cache, logged):
    write(cache, 1, "Ada L")
    assert flush(cache, logged, "f1", ttl=60) == 1
    assert row(logged) == ("Ada L", 2)
    assert pending(cache) == 0
    assert 0 < cache.ttl("user:1") <= 60


def test_a_newer_unflushed_write_keeps_its_copy_pinned(cache, logged):
    write(cache, 1, "first")
    # A second write lands between the flusher's read of the log and its commit.
    racing = Intercept(logged, "transaction", lambda: write(cache, 1, "second"))
    flush(cache, racing, "f1", count=1, ttl=60)
    assert row(logged)[0] == "first"
    assert cache.get("user:1") == "second"
    assert cache.ttl("user:1") == -1  # not in the DB yet: must not expire
    drain(cache, logged, "f1")
    assert row(logged)[0] == "second"
    assert cache.ttl("user:1") > 0


def test_a_clean_flush_of_one_entry_takes_seven_steps(cache, logged):
    write(cache, 1, "Ada L")
    assert steps_of_a_clean_flush(cache, logged) == [
        # mine, claimed, new
        "cache.xreadgroup flushers", "cache.xautoclaim users:writes", "cache.xreadgroup flushers",
        "db.transaction", "db.execute UPDATE users", "db.execute INSERT applied",
        "cache.eval users:writes",  # the ACK script: dead letters, copies, XACK
    ]


def test_why_copies_are_pinned_a_copy_gone_before_its_flush_is_stale_until_it(
        cache, logged):
    write(cache, 1, "Ada L")
    cache.delete("user:1")  # as if it had expired (or been evicted) before the flush
    assert get_user(cache, logged, 1, ttl=60) == "Ada"  # the DB's older row, cached
    drain(cache, logged, "f1")
    assert row(logged)[0] == "Ada L"
    assert get_user(cache, logged, 1) == "Ada L"  # the flush rewrote the copy
    assert 0 < cache.ttl("user:1") <= 300


def test_crash_after_commit_before_xack_replays_harmlessly(cache, logged):
    write(cache, 1, "Ada L")
    _, dying_cache, dying_db = process(cache, logged, crash_at=[7])
    with pytest.raises(Crash, match="step 7: before cache.eval users:writes"):
        flush(dying_cache, dying_db, "f1")
    assert row(logged) == ("Ada L", 2)  # committed...
    assert pending(cache) == 1  # ...but not acknowledged
    assert drain(cache, logged, "f2", claim_idle_ms=0) == 1  # claimed, re-applied
    assert row(logged) == ("Ada L", 2)  # version unchanged: the replay was a no-op
    assert pending(cache) == 0


def test_crash_before_commit_leaves_the_entries_pending(cache, logged):
    write(cache, 1, "Ada L")
    _, dying_cache, dying_db = process(cache, logged, crash_at=[6])  # in the transaction
    with pytest.raises(Crash, match="step 6: before db.execute INSERT applied"):
        flush(dying_cache, dying_db, "f1")
    assert row(logged) == ("Ada", 1)  # rolled back: nothing half-written
    assert logged.query("SELECT COUNT(*) FROM applied") == [(0,)]
    assert pending(cache) == 1
    drain(cache, logged, "f2", claim_idle_ms=0)
    assert row(logged) == ("Ada L", 2)


def test_a_restarted_flusher_first_takes_back_its_own_entries(cache, logged):
    write(cache, 1, "Ada L")
    _, dying_cache, dying_db = process(cache, logged, crash_at=[4])  # before the transaction
    with pytest.raises(Crash, match="step 4: before db.transaction"):
        flush(dying_cache, dying_db, "f1")
    # Same name, no claiming of others (the default idle time is a minute):
    assert flush(cache, logged, "f1") == 1
    assert row(logged) == ("Ada L", 2)


def test_a_live_flusher_does_not_steal_entries_still_in_progress(cache, logged):
    write(cache, 1, "Ada L")
    cache.xreadgroup(GROUP, "busy", {STREAM: ">"})  # delivered to a live flusher
    assert flush(cache, logged, "other") == 0  # idle for less than a minute: left alone
    assert pending(cache) == 1


def test_a_replayed_older_entry_cannot_overwrite_a_newer_one(cache, logged):
    write(cache, 1, "old")
    _, dying_cache, dying_db = process(cache, logged, crash_at=[4])  # f1 took "old", died
    with pytest.raises(Crash, match="step 4: before db.transaction"):
        flush(dying_cache, dying_db, "f1", count=1)
    write(cache, 1, "new")
    assert flush(cache, logged, "f2") == 1  # f1 presumed alive: f2 applies "new"
    assert row(logged)[0] == "new"
    assert drain(cache, logged, "f3", claim_idle_ms=0) == 1  # now "old" is replayed
    assert row(logged) == ("new", 2)  # refused: the row already has a newer entry
    assert cache.get("user:1") == "new"


def test_a_paused_flusher_whose_entries_were_claimed_changes_nothing_when_it_wakes(
        cache, logged):
    write(cache, 1, "old")

    def while_f1_is_paused():  # after f1 took "old", before its transaction
        assert drain(cache, logged, "f2", claim_idle_ms=0) == 1  # claims and applies it
        write(cache, 1, "new")
        assert drain(cache, logged, "f2") == 1

    paused = Intercept(logged, "transaction", while_f1_is_paused)
    assert flush(cache, paused, "f1") == 1  # wakes, applies "old": refused as older
    assert row(logged) == ("new", 3)
    assert cache.get("user:1") == "new"
    assert pending(cache) == 0


def test_apply_outcomes(cache, logged):
    write_behind.apply(logged, 1, "x", "5-0")
    assert write_behind.apply(logged, 1, "y", "5-0") == "already applied"
    assert write_behind.apply(logged, 1, "y", "4-9") == "already applied"
    assert write_behind.apply(logged, 1, "z", "5-1") == "applied"
    assert write_behind.apply(logged, 9, "z", "6-0") == "no such user"
    assert row(logged) == ("z", 3)


def test_a_write_the_db_refuses_is_found_after_its_ack_and_dead_lettered(cache, logged):
    entry_id = write(cache, 7, "Nobody")  # acknowledged: the DB was never asked
    assert drain(cache, logged, "f1") == 1
    assert cache.xrange(DEAD)[0][1] == {"entry": entry_id, "user_id": "7", "name": "Nobody"}
    assert pending(cache) == 0  # acknowledged: it will not block the log
    assert cache.exists("user:7", mark_key("user:7")) == 0  # its copy is dropped
    assert logged.query("SELECT COUNT(*) FROM users") == [(1,)]
    assert logged.query("SELECT COUNT(*) FROM applied") == [(0,)]


def test_kill_the_flusher_at_every_step(cache):
    """No acknowledged write lost, nothing left pending, cache and DB agreeing, for a
    crash of f1 at every step k and of f2 at every step j. (The sweep over two
    partitions runs on the page, and on a Redis Cluster in
    tests/concurrency/test_production_pattern_on_cluster.py.)"""
    if backend_name(cache) == "redis":
        url = os.environ["REDIS_URL"]  # the fixture's database, emptied per run
        make_cache = lambda: make_redis_cache(url)  # noqa: E731
    else:
        make_cache = make_fake_cache
    totals = crash_sweep(lambda: (make_cache(), make_db()))
    assert totals["lost"] == 0
    assert totals["pending"] == 0
    assert totals["disagree"] == 0
    # Every crash point was tried: at least one run per step of a clean flush, and
    # every run but the last of each k had a crash.
    probe_cache, probe_db = make_cache(), make_db()
    prepare(probe_cache, probe_db)
    probe_db.add_user(1, "x")
    write(probe_cache, 1, "y")
    assert totals["runs"] > len(steps_of_a_clean_flush(probe_cache, probe_db))
    assert totals["crashes"] > totals["runs"]


def fake_world():
    return make_fake_cache(), make_db()


def test_the_sweep_catches_a_flusher_that_acks_before_its_commit(monkeypatch):
    def acks_first(cache, db, consumer, count=100, claim_idle_ms=60_000, ttl=300,
                   log=write_behind.ONE_LOG):
        entries = write_behind.take_batch(cache, consumer, count, claim_idle_ms, log.stream)
        if not entries:
            return 0
        cache.xack(log.stream, GROUP, *(entry_id for entry_id, _ in entries))  # the bug
        with db.transaction():
            for entry_id, fields in sorted(entries, key=lambda e: order(e[0])):
                write_behind.apply(db, int(fields["user_id"]), fields["name"], entry_id)
        return len(entries)

    monkeypatch.setattr(write_behind, "flush", acks_first)
    assert crash_sweep(fake_world, count=5)["lost"] > 0


def test_the_sweep_catches_an_apply_without_the_applied_check(monkeypatch):
    def unguarded(db, user_id, name, entry_id):
        db.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id))
        return "applied"

    monkeypatch.setattr(write_behind, "apply", unguarded)
    assert crash_sweep(fake_world, count=5)["lost"] > 0


def test_the_sweep_catches_a_flusher_that_never_claims(monkeypatch):
    take_batch = write_behind.take_batch

    def never_claims(cache, consumer, count, claim_idle_ms, stream=STREAM):
        return take_batch(cache, consumer, count, 10**12, stream)  # nobody presumed dead

    monkeypatch.setattr(write_behind, "take_batch", never_claims)
    totals = crash_sweep(fake_world, count=5)
    assert totals["lost"] > 0 and totals["pending"] > 0


def test_coalescing_many_writes_to_one_key_is_one_db_write(cache, logged):
    for i in range(100):
        write(cache, 1, f"name {i}")
    assert flush(cache, logged, "f1", count=100) == 100
    assert logged.writes == 2  # the UPDATE and its applied-entry mark
    assert row(logged) == ("name 99", 2)  # one version step for 100 writes


def test_bench_figures(printed):
    """20 writes in batches of 5: one user -> 4 batches x 2 statements; ten users and
    twenty users -> each batch holds 5 different users -> 4 x 5 x 2."""
    lines = printed(write_behind.bench, writes=20, batch=5)
    assert lines[0] == "one write: 0 DB statements, 1 Redis command, 1 round trip"
    figures = [line.split()[-3:] for line in lines[3:]]
    assert figures == [["8", "4", "2.5x"], ["40", "4", "0.5x"], ["40", "4", "0.5x"]]


# --- MULTI/EXEC is not all-or-nothing; the scripts put what can fail first ------------------


def test_multi_exec_keeps_the_other_commands_after_a_run_time_error(cache):
    """Redis does not roll back: a WRONGTYPE inside EXEC fails that command only."""
    cache.set(STREAM, "not a stream")
    with cache.pipeline() as pipe:  # MULTI
        pipe.set("user:1", "Ada L")
        pipe.xadd(STREAM, {"user_id": 1, "name": "Ada L"})
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            pipe.execute()  # EXEC
    assert cache.get("user:1") == "Ada L"  # applied: a copy of a write never logged
    assert cache.ttl("user:1") == -1  # and pinned: it would never expire


def test_a_write_the_log_refuses_leaves_nothing_behind(cache, logged):
    cache.delete(STREAM)
    cache.set(STREAM, "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        write(cache, 1, "Ada L")  # the XADD runs first and stops the script
    assert cache.exists("user:1", mark_key("user:1")) == 0


def test_an_ack_whose_dead_letter_fails_leaves_the_entries_pending(cache, logged):
    entry = write(cache, 7, "Nobody")  # the DB will refuse it
    cache.set(DEAD, "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        flush(cache, logged, "f1")
    assert pending(cache) == 1  # not acknowledged without its dead letter
    cache.delete(DEAD)
    assert drain(cache, logged, "f1") == 1
    assert cache.xrange(DEAD)[0][1]["entry"] == entry


# --- the copy is released by its entry, not by its value (no ABA) -------------------------


def test_flushing_an_older_entry_of_the_same_value_keeps_the_newer_copy_pinned(
        cache, logged):
    for name in ("A", "B", "A"):
        write(cache, 1, name)
    flush(cache, logged, "f1", count=1)  # only the first "A": "B" and "A" wait
    assert row(logged)[0] == "A"
    assert cache.ttl("user:1") == -1  # still pinned: the DB lacks the last "A"


def test_a_backlog_that_outlives_the_ttl_still_ends_in_agreement(cache, logged):
    """A, B, A. Comparing values, the first flush let the last "A" expire; a reader
    then filled "B", and the last flush left it there until its TTL."""
    for name in ("A", "B", "A"):
        write(cache, 1, name)
    flush(cache, logged, "f1", count=1)
    if cache.ttl("user:1") > 0:
        cache.delete("user:1")  # its TTL ran out while the backlog waited
    flush(cache, logged, "f1", count=1)  # "B" reaches the DB
    get_user(cache, logged, 1)  # a reader: a hit, or a miss that fills from the DB
    drain(cache, logged, "f1")  # the last "A" reaches the DB
    assert row(logged)[0] == "A"
    assert get_user(cache, logged, 1) == "A"


# --- on a Redis Cluster: a log per partition ----------------------------------------------
# (the same, on a real three-master cluster: tests/concurrency/test_production_pattern_on_cluster.py)


def test_a_partitions_log_copies_marks_and_dead_letters_share_its_hash_tag():
    assert len(LOGS) == 16
    assert [log_of(user_id).tag for user_id in (1, 16, 17)] == ["{wb:1}", "{wb:0}", "{wb:1}"]
    log = log_of(3)
    assert (log.stream, log.dead, log.key(3), mark_key(log.key(3))) == (
        "{wb:3}:writes", "{wb:3}:dead", "{wb:3}:user:3", "{wb:3}:user:3:entry")
    assert (ONE_LOG.key(3), mark_key(ONE_LOG.key(3))) == ("user:3", "{user:3}:entry")


def with_history(db):
    """Every committed change of a name, in commit order (a rolled-back one is not)."""
    db.execute("CREATE TABLE history (seq INTEGER PRIMARY KEY, user_id INTEGER, name TEXT)")
    db.execute("""CREATE TRIGGER record AFTER UPDATE OF name ON users BEGIN
                  INSERT INTO history (user_id, name) VALUES (new.id, new.name); END""")
    return db


def users_in_per_user_order(cache, users):
    """Three rounds of writes to ``users``, in that order, each to its partition's log;
    drained one entry per batch (nothing coalesced). What was acknowledged, in order,
    and what the database committed, in order."""
    db = with_history(make_db())
    for user_id in users:
        db.add_user(user_id, "before")
    prepare(cache, db, LOGS)
    acknowledged = []
    for round_ in (1, 2, 3):
        for user_id in users:
            write(cache, user_id, f"{user_id}.{round_}", log_of(user_id))
            acknowledged.append((user_id, f"{user_id}.{round_}"))
    assert drain(cache, db, "f1", count=1, logs=LOGS) == len(acknowledged)
    assert pending(cache, LOGS) == 0
    for user_id in users:
        assert get_user(cache, db, user_id, log=log_of(user_id)) == f"{user_id}.3"
        assert cache.ttl(log_of(user_id).key(user_id)) > 0  # released: in the DB
    return acknowledged, db.query("SELECT user_id, name FROM history ORDER BY seq")


def test_partitions_keep_each_users_order_but_not_one_order_of_all_writes(cache):
    acknowledged, committed = users_in_per_user_order(cache, [12, 5, 1, 9, 3, 14, 7, 2])
    for user_id in (12, 5, 1, 9, 3, 14, 7, 2):
        assert [name for u, name in committed if u == user_id] == [
            name for u, name in acknowledged if u == user_id]
    assert committed != acknowledged


def test_a_write_acknowledged_later_can_reach_the_db_first_across_partitions(cache, db):
    for user_id in (1, 2):
        db.add_user(user_id, "before")
    prepare(cache, db, LOGS)
    write(cache, 1, "first", log_of(1))
    write(cache, 2, "second", log_of(2))
    assert flush(cache, db, "f1", log=log_of(2)) == 1
    assert db.query("SELECT name FROM users ORDER BY id") == [("before",), ("second",)]


def test_a_partitions_refused_write_goes_to_its_own_dead_letters(cache, logged):
    prepare(cache, logged, LOGS)
    entry = write(cache, 7, "Nobody", log_of(7))
    assert drain(cache, logged, "f1", logs=LOGS) == 1
    assert cache.xrange(log_of(7).dead)[0][1] == {
        "entry": entry, "user_id": "7", "name": "Nobody"}
    assert cache.exists(DEAD, log_of(7).key(7)) == 0


def test_a_registry_the_flusher_prunes_misses_a_logged_write(cache):
    """Why not one log per user: the flusher must find the logs with writes. A registry
    of them is a key of its own slot, so registering is a command apart from the write's
    script. Registered first, replayed: the flusher prunes the user between the two."""
    registry, log = "wb:dirty", "{user:1}:log"
    cache.sadd(registry, 1)  # the writer registers user 1
    assert cache.xlen(log) == 0  # the flusher finds user 1's log drained...
    cache.srem(registry, 1)  # ...and removes the user
    cache.xadd(log, {"user_id": 1, "name": "Ada L"})  # the writer's script; acknowledged
    assert cache.smembers(registry) == set()  # no flusher will look at this log
    assert cache.xlen(log) == 1


def test_a_registry_written_after_the_script_misses_a_write_whose_writer_died(cache):
    registry, log = "wb:dirty", "{user:1}:log"
    cache.xadd(log, {"user_id": 1, "name": "Ada L"})  # the script: logged, copy pinned
    # the process dies here, before it registers user 1
    assert cache.smembers(registry) == set() and cache.xlen(log) == 1


def test_bad_partitions():
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        partitioned(0)
    with pytest.raises(ValueError, match="user_id must be a positive integer, got 0"):
        log_of(0)
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        log_of(1).key(True)


# --- the limit of ordering by stream ID: a failover can reorder --------------------------


def test_a_failover_to_a_replica_with_a_slower_clock_drops_an_acknowledged_write(
        cache, logged):
    """Replayed: the old primary's clock ran a minute ahead, and its last entry was
    applied, then lost in the failover (replication is asynchronous). The promoted
    replica numbers the next write from its own clock: lower, so refused as old."""
    seconds, micros = cache.time()
    old_primary_entry = f"{seconds * 1000 + micros // 1000 + 60_000}-0"
    with logged.transaction():  # a flusher applied it before the failover
        assert apply(logged, 1, "Countess", old_primary_entry) == "applied"
    entry = write(cache, 1, "Ada King")  # on the promoted replica: acknowledged
    assert order(entry) < order(old_primary_entry)
    assert drain(cache, logged, "f2") == 1
    assert row(logged)[0] == "Countess"  # the acknowledged write never reaches the DB
    with logged.transaction():
        assert apply(logged, 1, "Ada King", entry) == "already applied"


# --- eviction: the log is a key (a Redis of the test's own, with a small maxmemory) -------

IN_CI = os.environ.get("CI", "").lower() == "true"


@contextmanager
def small_redis(policy: str, directory: Path) -> Iterator[redis.Redis]:
    """A throwaway redis-server on a free loopback port: 2 MB of memory, ``policy``
    when it is full, nothing persisted; stopped by its pid."""
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("CI=true but redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH; the eviction tests start their own")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--maxmemory", "2mb",
         "--maxmemory-policy", policy],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait for it to start listening
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


def twenty_acknowledged_writes(cache):
    db = make_db()
    prepare(cache, db)
    for user_id in range(1, 101):  # room for the writes a full Redis still takes
        db.add_user(user_id, "before")
    acked = {}
    for user_id in range(1, 21):
        write(cache, user_id, f"name {user_id}")
        acked[user_id] = f"name {user_id}"  # write() returned: acknowledged
    return db, acked


def lost(db, acked):
    rows = dict(db.query("SELECT id, name FROM users"))
    return sum(rows[user_id] != name for user_id, name in acked.items())


def test_under_allkeys_eviction_the_log_and_its_group_are_evicted(tmp_path):
    with small_redis("allkeys-lru", tmp_path) as cache:
        db, acked = twenty_acknowledged_writes(cache)
        for i in range(20_000):  # other data: 1 KB each, 10 times the memory at most
            if not cache.exists(STREAM):
                break
            cache.set(f"page:{i}", "x" * 1000)
        assert cache.exists(STREAM) == 0  # evicted, like any other key
        with pytest.raises(redis.ResponseError, match="NOGROUP"):
            flush(cache, db, "f1")  # the consumer group went with it
        prepare(cache, db)  # a restarted flusher makes a new group, on an empty log
        assert drain(cache, db, "f1") == 0
        assert lost(db, acked) == 20  # every acknowledged write


def test_under_volatile_eviction_the_log_without_a_ttl_is_kept(tmp_path):
    with small_redis("volatile-lru", tmp_path) as cache:
        db, acked = twenty_acknowledged_writes(cache)
        for i in range(4_000):  # cache entries with a TTL: about twice the memory
            cache.set(f"page:{i}", "x" * 1000, ex=300)
        assert cache.info("stats")["evicted_keys"] > 0  # eviction did happen
        assert cache.xlen(STREAM) == 20
        assert drain(cache, db, "f1") == 20
        assert lost(db, acked) == 0


def test_under_noeviction_a_write_is_refused_not_lost(tmp_path):
    with small_redis("noeviction", tmp_path) as cache:
        db, acked = twenty_acknowledged_writes(cache)
        refused, fillers = None, 0
        while refused is None and fillers < 20_000:
            try:
                cache.set(f"page:{fillers}", "x" * 1000)  # other data, until full
                fillers += 1
                continue
            except redis.OutOfMemoryError:
                pass
            user_id = len(acked) + 1
            try:  # memory is full: the next write
                write(cache, user_id, f"name {user_id}")
                acked[user_id] = f"name {user_id}"
            except redis.OutOfMemoryError:
                refused = user_id  # the XADD is refused: never acknowledged
        assert refused is not None
        assert cache.exists(user_key(refused), mark_key(user_key(refused))) == 0
        assert cache.xlen(STREAM) == len(acked)  # every acknowledged write is logged
        cache.delete(*(f"page:{i}" for i in range(fillers)))  # memory is freed
        assert drain(cache, db, "f1") == len(acked)
        assert lost(db, acked) == 0


# --- the Redis stream commands the durable version relies on, on both backends ----------


def test_stream_commands_behave_as_relied_on(cache):
    prepare(cache, make_db())
    prepare(cache, make_db())  # BUSYGROUP is swallowed: prepare is idempotent
    first = cache.xadd(STREAM, {"n": "1"})
    cache.xadd(STREAM, {"n": "2"})
    assert order(first) < order(cache.xadd(STREAM, {"n": "3"}))
    [[_, delivered]] = cache.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=2)
    assert [fields["n"] for _, fields in delivered] == ["1", "2"]
    assert cache.xpending(STREAM, GROUP)["pending"] == 2
    [[_, again]] = cache.xreadgroup(GROUP, "c1", {STREAM: "0"})  # own pending entries
    assert again == delivered
    _, claimed, *_ = cache.xautoclaim(STREAM, GROUP, "c2", 0, start_id="0-0", count=1)
    assert [entry_id for entry_id, _ in claimed] == [first]
    owners = cache.xpending_range(STREAM, GROUP, "-", "+", 10)
    assert [o["consumer"] for o in owners] == ["c2", "c1"]
    assert cache.xack(STREAM, GROUP, first, first) == 1  # counts acknowledged entries


def test_prepare_reraises_other_errors(cache, db):
    cache.set(STREAM, "not a stream")
    with pytest.raises(redis.ResponseError, match="(?i)wrongtype|key"):
        prepare(cache, db)


# --- reads ---------------------------------------------------------------------------------


def test_read_fill_never_overwrites_a_write_that_landed_meanwhile(cache, logged):
    slow_reader = Intercept(cache, "set", lambda: write(cache, 1, "new"))
    assert get_user(slow_reader, logged, 1) == "Ada"  # it read the DB before the write
    assert cache.get("user:1") == "new"


def test_read_miss_fills_with_a_ttl(cache, ada):
    assert get_user(cache, ada, 1, ttl=60) == "Ada"
    assert 0 < cache.ttl("user:1") <= 60
    assert get_user(cache, ada, 42) is None


# --- bad input: a clear error, nothing written ----------------------------------------------


@pytest.mark.parametrize("bad_id", [0, -1, "1", 1.0, True, None])
def test_bad_user_id(cache, logged, bad_id):
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        write(cache, bad_id, "x")
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        InMemoryWriteBehind(cache, logged).write(bad_id, "x")
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        get_user(cache, logged, bad_id)
    assert cache.xlen(STREAM) == 0 and cache.dbsize() == 1  # only the stream's group


@pytest.mark.parametrize("bad_name", ["", None, 3])
def test_bad_name(cache, logged, bad_name):
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        write(cache, 1, bad_name)
    wb = InMemoryWriteBehind(cache, logged)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        wb.write(1, bad_name)
    assert wb.pending == {} and cache.xlen(STREAM) == 0 and cache.exists("user:1") == 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"consumer": ""}, "consumer must be a non-empty string"),
        ({"consumer": 5}, "consumer must be a non-empty string"),
        ({"count": 0}, "count must be a positive integer, got 0"),
        ({"count": 2.5}, "count must be a positive integer, got 2.5"),
        ({"claim_idle_ms": -1}, "claim_idle_ms must be an integer >= 0, got -1"),
        ({"claim_idle_ms": 1.5}, "claim_idle_ms must be an integer >= 0, got 1.5"),
        ({"ttl": 0}, "ttl must be a positive number of seconds"),
    ],
)
def test_bad_flush_options_touch_nothing(cache, logged, options, message):
    write(cache, 1, "Ada L")
    arguments = {"consumer": "f1", **options}
    with pytest.raises(ValueError, match=message):
        flush(cache, logged, **arguments)
    assert pending(cache) == 0  # nothing was even read from the log
    assert row(logged) == ("Ada", 1)


def test_other_bad_input():
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        InMemoryWriteBehind(make_fake_cache(), make_db(), ttl=-1)
    with pytest.raises(ValueError, match="not a stream entry ID: 'abc'"):
        order("abc")
    with pytest.raises(ValueError, match="writes must be a positive integer, got 0"):
        write_behind.bench(writes=0)
    with pytest.raises(ValueError, match="batch must be a positive integer, got -1"):
        write_behind.bench(batch=-1)
    with pytest.raises(ValueError, match="count must be a positive integer, got 0"):
        crash_sweep(lambda: (make_fake_cache(), make_db()), count=0)



# --- the page no longer states what was wrong ------------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "patterns" / "write-behind.md"


@pytest.mark.parametrize("phrase", [
    # MULTI/EXEC does not roll back after a run-time error: the SET stays without the XADD
    "Both happen, or neither",
    "in the same `MULTI`/`EXEC` as the cache update",
    "in the same `MULTI` as the `XACK`",
    # under allkeys-* eviction the log is evicted too, with the acknowledged writes
    "The write itself stays safe in the log",
    # the flusher compares log entries now, not values (A, B, A)
    "one only once the database holds that value",
    # version chatter is not for readers
    "fakeredis 2.40 (the pinned version)",
])
def test_the_page_no_longer_claims(phrase):
    page = words(PAGE)
    assert phrase not in page


def test_the_module_no_longer_calls_multi_exec_all_or_nothing():
    source = Path(write_behind.__file__).read_text(encoding="utf-8")
    assert "both happen, or neither" not in source.lower()
    assert "both, or neither" not in source.lower()
    assert "EXPIRE_IF_SAME" not in source  # compared values: ABA
