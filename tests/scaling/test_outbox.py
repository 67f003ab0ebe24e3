"""The outbox pattern: each claim of docs/scaling/outbox.md, on fakeredis and on real Redis
(the stand-in log lives in the same Redis as the cache, under log:*)."""

from __future__ import annotations

import re
import sqlite3
import types
from pathlib import Path

import pytest

from snippets.backends import FakeClock, make_db
from snippets.explorer import reusing
from snippets.faults import Crash, Faults
from snippets.patterns.cache_aside import get_user
from snippets.scaling import outbox
from snippets.scaling.kafka_invalidation import (
    TOPIC,
    StreamConsumer,
    StreamProducer,
    drain,
    invalidation_event,
    make_log,
)
from snippets.scaling.outbox import (
    create_outbox,
    crash_everywhere,
    explore_id_order,
    id_order_world,
    later_id_commits_first,
    nextval,
    relay,
    relay_after_mark,
    relayed_keys,
    run_scenario,
    two_relays_at_once,
    unsent,
    update_then_publish,
    update_user,
    write_with_id,
)

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "scaling" / "outbox.md"
MODULE = ROOT / "snippets" / "scaling" / "outbox.py"


@pytest.fixture
def world(cache):
    db, clock = make_db(), FakeClock(100)
    make_log(cache)
    create_outbox(db)
    for user_id, name in [(1, "Ada"), (2, "Grace")]:
        db.add_user(user_id, name)
        get_user(cache, db, user_id)
    consumer = StreamConsumer(cache, "invalidator")
    consumer.subscribe([TOPIC])
    yield types.SimpleNamespace(cache=cache, db=db, clock=clock, consumer=consumer)
    db.close()


def producer(world) -> StreamProducer:
    return StreamProducer(world.cache, world.clock)


def name_of(db, user_id: int) -> str:
    return db.query("SELECT name FROM users WHERE id = ?", (user_id,))[0][0]


def outbox_rows(db) -> list[tuple]:
    return db.query("SELECT id, topic, key, payload, created_at, sent_at FROM outbox ORDER BY id")


def invalidate_all(world) -> list:
    return drain(world.consumer, world.cache, producer(world))


# --- the write ------------------------------------------------------------------------------


def test_the_write_commits_the_row_and_its_event_together(world):
    world.db.reset_counts()
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    assert world.db.writes == 2  # UPDATE users + INSERT outbox, one transaction
    assert name_of(world.db, 1) == "Ada Lovelace"
    key, payload = invalidation_event(1)
    assert outbox_rows(world.db) == [(1, TOPIC, key, payload, 100.0, None)]
    assert world.cache.get("user:1") == "Ada"  # the writer touches no cache
    assert world.consumer.lag() == 0  # ... and no log


def test_create_outbox_is_idempotent_and_checks_its_argument(world):
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    create_outbox(world.db)
    assert unsent(world.db) == 1
    with pytest.raises(TypeError, match="db must be a Database"):
        create_outbox("sqlite:///x")


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_inside_the_write_leaves_neither_row(world, crash_at):
    dying = Faults(crash_at=[crash_at]).wrap(world.db, "db", ["execute"])
    with pytest.raises(Crash):
        update_user(dying, 1, "Ada Lovelace", world.clock)
    assert name_of(world.db, 1) == "Ada"
    assert outbox_rows(world.db) == []


def test_a_failing_outbox_insert_rolls_back_the_row_change(cache):
    db = make_db()  # no outbox table: the INSERT fails after the UPDATE
    db.add_user(1, "Ada")
    with pytest.raises(sqlite3.OperationalError, match="no such table: outbox"):
        update_user(db, 1, "Ada Lovelace")
    assert name_of(db, 1) == "Ada"


@pytest.mark.parametrize("user_id, name, error, message", [
    (0, "x", ValueError, "user_id must be a positive integer"),
    ("1", "x", ValueError, "user_id must be a positive integer"),
    (1, "", ValueError, "name must be a non-empty string"),
    (1, None, ValueError, "name must be a non-empty string"),
    (99, "Nobody", LookupError, "no user with id 99"),
])
def test_bad_write_is_a_clear_error_and_writes_nothing(world, user_id, name, error, message):
    with pytest.raises(error, match=message):
        update_user(world.db, user_id, name, world.clock)
    assert outbox_rows(world.db) == []
    assert [name_of(world.db, 1), name_of(world.db, 2)] == ["Ada", "Grace"]


# --- the relay ------------------------------------------------------------------------------


def test_relay_publishes_in_order_marks_sent_and_the_invalidator_deletes(world):
    for name in ("Ada Lovelace", "Countess of Lovelace"):
        update_user(world.db, 1, name, world.clock)
        world.clock.advance(1)
    update_user(world.db, 2, "Grace Hopper", world.clock)
    world.clock.advance(10)
    assert relay(world.db, producer(world), world.clock) == 3
    assert unsent(world.db) == 0
    assert [row[5] for row in outbox_rows(world.db)] == [112.0] * 3  # marked at t = 112
    assert relay(world.db, producer(world), world.clock) == 0  # nothing left to send
    handled = invalidate_all(world)
    assert sorted(m.key() for m in handled) == [b"user:1", b"user:1", b"user:2"]
    user1 = [m.timestamp()[1] for m in handled if m.key() == b"user:1"]
    assert user1 == [100_000, 101_000]  # commit times, in commit order
    assert (get_user(world.cache, world.db, 1), get_user(world.cache, world.db, 2)) == (
        "Countess of Lovelace", "Grace Hopper")


def test_relay_respects_its_limit_and_keeps_the_order(world):
    for name in ("A", "B", "C"):
        update_user(world.db, 1, name, world.clock)
        world.clock.advance(1)
    assert [relay(world.db, producer(world), world.clock, limit=2) for _ in range(3)] == [2, 1, 0]
    assert [m.timestamp()[1] for m in invalidate_all(world)] == [100_000, 101_000, 102_000]


@pytest.mark.parametrize("bad_limit", [0, -1, 1.5, "10", True, None])
def test_bad_limit_is_a_clear_error_and_publishes_nothing(world, bad_limit):
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    with pytest.raises(ValueError, match=re.escape(f"limit must be a positive integer, got {bad_limit!r}")):
        relay(world.db, producer(world), world.clock, limit=bad_limit)
    assert unsent(world.db) == 1 and world.consumer.lag() == 0


def test_relay_marks_nothing_the_log_did_not_acknowledge(world):
    update_user(world.db, 1, "Ada Lovelace", world.clock)

    class Unacknowledged(StreamProducer):
        def flush(self, timeout: float = -1) -> int:
            return 1  # one record still waiting: delivery not confirmed

    with pytest.raises(RuntimeError, match="none marked"):
        relay(world.db, Unacknowledged(world.cache, world.clock), world.clock)
    assert unsent(world.db) == 1


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4])
def test_a_relay_crash_at_any_step_is_repaired_by_the_next_run(world, crash_at):
    """Steps: 1 query, 2 produce, 3 flush, 4 mark sent."""
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    faults = Faults(crash_at=[crash_at])
    with pytest.raises(Crash):
        relay(faults.wrap(world.db, "db", ["query", "execute"]),
              faults.wrap(producer(world), "producer", ["produce", "flush"]), world.clock)
    assert unsent(world.db) == 1
    published_before_the_crash = 1 if crash_at == 4 else 0  # only the flush delivers
    assert world.consumer.lag() == published_before_the_crash
    assert relay(world.db, producer(world), world.clock) == 1
    assert unsent(world.db) == 0
    assert len(invalidate_all(world)) == 1 + published_before_the_crash  # duplicate, at most
    assert get_user(world.cache, world.db, 1) == "Ada Lovelace"


def test_a_relay_restarted_twice_still_delivers(world):
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    faults = Faults(crash_at=[3, 7])  # run 1 dies before its flush, run 2 before its mark
    for _ in range(2):
        with pytest.raises(Crash):
            relay(faults.wrap(world.db, "db", ["query", "execute"]),
                  faults.wrap(producer(world), "producer", ["produce", "flush"]), world.clock)
    assert relay(world.db, producer(world), world.clock) == 1
    assert [m.key() for m in invalidate_all(world)] == [b"user:1", b"user:1"]
    assert get_user(world.cache, world.db, 1) == "Ada Lovelace"


def test_a_failed_delete_is_retried_not_lost(world):
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    relay(world.db, producer(world), world.clock)
    failing = Faults(crash_at=[1]).wrap(world.cache, "cache", ["delete"])
    with pytest.raises(Crash):
        drain(world.consumer, failing, producer(world))
    assert get_user(world.cache, world.db, 1) == "Ada"
    again = StreamConsumer(world.cache, "invalidator")
    again.subscribe([TOPIC])
    assert [m.key() for m in drain(again, world.cache, producer(world))] == [b"user:1"]
    assert get_user(world.cache, world.db, 1) == "Ada Lovelace"


# --- every crash point ------------------------------------------------------------------------


def test_a_clean_run_has_the_documented_steps(cache):
    clean = run_scenario(cache, "outbox", set())
    assert len(clean.steps) == 18
    assert (clean.stale, clean.deletes) == (0, 2)
    assert clean.steps[:2] == ["db.execute UPDATE users", "db.execute INSERT outbox"]
    assert clean.steps[8] == "db.execute UPDATE outbox"  # step 9: the mark


def test_the_outbox_loses_nothing_with_a_crash_before_any_step_or_pair_of_steps(cache):
    assert crash_everywhere(cache, "outbox", crashes=1) == (18, 18, 0)
    assert crash_everywhere(cache, "outbox", crashes=2) == (18, 153, 0)


def test_the_dual_write_loses_an_event_when_the_crash_falls_after_an_update(cache):
    # Per user: UPDATE, produce, flush. A crash before the produce or the flush (2 steps
    # of 3) loses that user's event: 2 users x 2 steps = 4 of the 14 single crashes.
    assert crash_everywhere(cache, "dual-write", crashes=1) == (14, 14, 4)
    steps, runs, stale = crash_everywhere(cache, "dual-write", crashes=2)
    assert (steps, runs) == (14, 91) and stale > 0


def test_duplicates_are_harmless(cache):
    duplicated = run_scenario(cache, "outbox", {9})  # crash before the mark
    assert (duplicated.stale, duplicated.deletes) == (0, 4)


def test_the_check_can_fail_a_relay_that_marks_before_publishing(cache, monkeypatch):
    def marks_first(db, producer, clock=None, limit=100):
        rows = db.query("SELECT id, topic, key, payload FROM outbox WHERE sent_at IS NULL")
        for row_id, *_ in rows:
            db.execute("UPDATE outbox SET sent_at = 0 WHERE id = ?", (row_id,))
        for _, topic, key, payload in rows:
            producer.produce(topic, value=payload, key=key)
        producer.flush()
        return len(rows)

    monkeypatch.setattr(outbox, "relay", marks_first)
    assert crash_everywhere(cache, "outbox")[2] > 0


def test_the_check_can_fail_an_invalidator_that_commits_before_deleting(cache, monkeypatch):
    def commits_first(consumer, cache, dead_letters):
        handled = []
        while (message := consumer.poll(1.0)) is not None:
            consumer.commit(message=message)
            cache.delete(message.key().decode())
            handled.append(message)
        return handled

    monkeypatch.setattr(outbox, "drain", commits_first)
    assert crash_everywhere(cache, "outbox")[2] > 0


@pytest.mark.parametrize("call, message", [
    (lambda c: run_scenario(c, "kafka", set()), "writer must be one of"),
    (lambda c: crash_everywhere(c, "outbox", crashes=3), "crashes must be 1 or 2"),
    (lambda c: crash_everywhere(c, "outbox", crashes=True), "crashes must be 1 or 2"),
    (lambda c: run_scenario(c, "outbox", {0}), "crash_at holds steps"),
])
def test_bad_scenario_input_is_a_clear_error(cache, call, message):
    cache.set("keep", "me")
    with pytest.raises(ValueError, match=message):
        call(cache)
    assert cache.get("keep") == "me"  # refused before emptying anything


# --- the dual write, and what the outbox does not fix --------------------------------------------


def test_the_dual_write_crash_leaves_the_key_stale_until_its_ttl(world):
    dying = Faults(crash_at=[1]).wrap(producer(world), "producer", ["produce"])
    with pytest.raises(Crash):
        update_then_publish(world.db, dying, 1, "Ada Lovelace")
    assert name_of(world.db, 1) == "Ada Lovelace"  # committed
    assert world.consumer.lag() == 0  # but no event
    assert invalidate_all(world) == []
    assert get_user(world.cache, world.db, 1) == "Ada"
    assert 0 < world.cache.ttl("user:1") <= 300


def test_the_dual_write_without_a_crash_works(world):
    update_then_publish(world.db, producer(world), 1, "Ada Lovelace")
    invalidate_all(world)
    assert get_user(world.cache, world.db, 1) == "Ada Lovelace"


@pytest.mark.parametrize("user_id, name, error, message", [
    (0, "x", ValueError, "user_id must be a positive integer"),
    (1, "", ValueError, "name must be a non-empty string"),
    (99, "Nobody", LookupError, "no user with id 99"),
])
def test_bad_dual_write_is_a_clear_error_and_publishes_nothing(world, user_id, name, error,
                                                                message):
    with pytest.raises(error, match=message):
        update_then_publish(world.db, producer(world), user_id, name)
    assert world.consumer.lag() == 0
    assert [name_of(world.db, 1), name_of(world.db, 2)] == ["Ada", "Grace"]


def test_the_outbox_does_not_stop_a_racing_reader(world):
    """Documented limitation: the DEL is delivered, but a reader that read the old row
    before the write can fill the cache after it."""
    world.cache.delete("user:1")
    old = name_of(world.db, 1)  # a reader misses and reads the row
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    relay(world.db, producer(world), world.clock)
    invalidate_all(world)
    world.cache.set("user:1", old, ex=300)  # ... then fills the cache
    assert get_user(world.cache, world.db, 1) == "Ada" != name_of(world.db, 1)


# --- wrong arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda w: update_user("sqlite://", 1, "Ada Lovelace", w.clock), "transaction"),
    (lambda w: update_user(w.db, 1, "Ada Lovelace", clock=100), "expected a callable"),
    (lambda w: relay(w.db, None, w.clock), "produce"),
    (lambda w: relay(w.db, producer(w), clock="now"), "expected a callable"),
    (lambda w: relay(None, producer(w), w.clock), "query"),
    (lambda w: update_then_publish(w.db, None, 1, "Ada Lovelace"), "produce"),
])
def test_a_wrong_argument_is_a_clear_type_error_and_writes_nothing(world, call, message):
    update_user(world.db, 2, "Grace Hopper", world.clock)  # one row waiting to be relayed
    world.db.reset_counts()
    with pytest.raises(TypeError, match=message):
        call(world)
    assert world.db.writes == 0
    assert name_of(world.db, 1) == "Ada" and unsent(world.db) == 1
    assert world.consumer.lag() == 0


# --- ids are allocated at INSERT, not at commit ------------------------------------------------


def test_a_later_id_can_commit_first(cache):
    db, clock = id_order_world(cache)
    a, b = nextval(db), nextval(db)
    write_with_id(db, b, 2, "Grace Hopper", clock)
    assert [row[0] for row in outbox_rows(db)] == [2]  # id 1 is taken, not committed
    write_with_id(db, a, 1, "Ada Lovelace", clock)
    assert [row[0] for row in outbox_rows(db)] == [1, 2]


def test_a_high_water_mark_relay_loses_the_event_whose_earlier_id_commits_later(cache):
    assert later_id_commits_first(relay_after_mark, cache) == ["user:2"]


def test_the_sent_at_is_null_relay_loses_nothing_when_a_later_id_commits_first(cache):
    assert later_id_commits_first(relay, cache) == ["user:1", "user:2"]


def test_every_interleaving_of_two_writers_and_a_relay(cache):
    found = explore_id_order(relay_after_mark)
    assert (len(found.bad), found.total) == (32, 216)
    found = explore_id_order(relay, make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 66)


def test_two_relays_at_once_lose_nothing_and_publish_duplicates(cache):
    found = two_relays_at_once(make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 70)
    assert found.outcomes == {"user:1": 2, "user:1 user:1": 68}


def test_relayed_keys_reads_the_log_without_consuming_it(world):
    update_user(world.db, 1, "Ada Lovelace", world.clock)
    relay(world.db, producer(world), world.clock)
    assert relayed_keys(world.cache) == relayed_keys(world.cache) == ["user:1"]
    assert world.consumer.lag() == 1


@pytest.mark.parametrize("phrase, where", [
    # Wrong: an id is allocated at INSERT, not at commit (a later id can commit first).
    ("-- publishing order", MODULE),
    # Wrong: created_at is read at INSERT, before the commit.
    ("commit time: the event's timestamp", MODULE),
    # Contradicts the mutex page: a lock holder can outlive its lock; duplicates are
    # what makes several relays safe (0 of 70 orders lose the event).
    ("Run one relay at a time (a lease or a lock)", PAGE),
    # The common advice is quoted, not described as "bonus".
    ("as a bonus topic", PAGE),
    # "always" without its model: a high-water-mark relay loses events.
    ("but it always happens", PAGE),
])
def test_the_page_no_longer_claims(phrase, where):
    assert phrase not in where.read_text(encoding="utf-8")
