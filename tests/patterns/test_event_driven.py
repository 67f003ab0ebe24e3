"""Event-driven invalidation: each claim of docs/patterns/event-driven.md.

Everything that needs no time to pass runs on the ``cache`` fixture (fakeredis, and a real
Redis when REDIS_URL is set); the lost-event window, which ends at the TTL, runs on the
clocked model from snippets.patterns.ttl.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import redis
from psycopg.pq import TransactionStatus

from snippets.explorer.pages import words
from snippets.patterns.cache_aside import get_user
from snippets.patterns.event_driven import (
    CacheService, EventQueue, UserUpdated, apply_event, event_delay_window, lost_event_window,
    orders_ending_right, update_user,
)
from snippets.patterns.ttl import ClockedCache, DeletesLost
from snippets.postgres import PostgresDatabase


@pytest.fixture
def queue():
    return EventQueue()


def name_in_db(db):
    return db.query("SELECT name FROM users WHERE id = 1")[0][0]


# --- the happy path ----------------------------------------------------------------------


def test_a_write_commits_then_publishes_one_event_and_leaves_the_cache_alone(cache, ada, clock,
                                                                             queue):
    get_user(cache, ada, 1)
    clock.advance(5)
    event = update_user(ada, queue, clock, 1, "Ada Lovelace")
    assert event == UserUpdated(1, "Ada Lovelace", version=2, committed_at=5.0)
    assert list(queue.events) == [event]
    assert ada.query("SELECT name, version FROM users WHERE id = 1") == [("Ada Lovelace", 2)]
    assert cache.get("user:1") == "Ada"  # untouched until the cache service acts


def test_the_user_service_has_no_cache_to_touch():
    assert "cache" not in inspect.signature(update_user).parameters


def in_transaction(db):
    """Whether the database's connection has a transaction open (sqlite3 and psycopg
    each say it their own way)."""
    if isinstance(db, PostgresDatabase):
        return db.conn.info.transaction_status != TransactionStatus.IDLE
    return db.conn.in_transaction


def test_the_event_is_published_only_after_the_commit(ada, clock):
    seen = []

    class Watching(EventQueue):
        def publish(self, event):
            seen.append((in_transaction(ada), name_in_db(ada)))
            return super().publish(event)

    update_user(ada, Watching(), clock, 1, "Ada Lovelace")
    assert seen == [(False, "Ada Lovelace")]


def test_the_cache_service_deletes_the_key_and_the_next_read_loads_the_new_row(cache, ada,
                                                                              clock, queue):
    service = CacheService(cache, queue, clock)
    get_user(cache, ada, 1)
    update_user(ada, queue, clock, 1, "Ada Lovelace")
    assert service.drain() == 1
    assert cache.exists("user:1") == 0
    ada.reset_counts()
    assert get_user(cache, ada, 1) == "Ada Lovelace"
    assert ada.reads == 1
    assert service.step() is None  # nothing left


# --- bad input -------------------------------------------------------------------------------


def test_a_write_to_a_missing_user_raises_and_publishes_nothing(db, clock, queue):
    with pytest.raises(LookupError, match="no user with id 9"):
        update_user(db, queue, clock, 9, "Nobody")
    assert len(queue) == 0


@pytest.mark.parametrize("bad_id, bad_name", [(0, "x"), ("1", "x"), (1, ""), (1, None)])
def test_bad_input_to_the_write_changes_and_publishes_nothing(ada, clock, queue, bad_id,
                                                              bad_name):
    with pytest.raises(ValueError, match="user_id|name"):
        update_user(ada, queue, clock, bad_id, bad_name)
    assert ada.writes == 0
    assert len(queue) == 0
    assert ada.query("SELECT name, version FROM users WHERE id = 1") == [("Ada", 1)]


@pytest.mark.parametrize(
    "fields, message",
    [((0, "x", 2, 0.0), "user_id must be a positive integer, got 0"),
     ((1, "", 2, 0.0), "name must be a non-empty string, got ''"),
     ((1, "x", 0, 0.0), "version must be a positive integer, got 0"),
     ((1, "x", True, 0.0), "version must be a positive integer, got True"),
     ((1, "x", "2", 0.0), "version must be a positive integer, got '2'")],
)
def test_a_malformed_event_cannot_be_made(fields, message):
    with pytest.raises(ValueError, match=message):
        UserUpdated(*fields)


def test_the_broker_refuses_an_unknown_event_type(queue):
    with pytest.raises(TypeError, match="unknown event type dict"):
        queue.publish({"user_id": 1})
    assert len(queue) == 0


def test_the_consumer_refuses_an_unknown_event_type_and_touches_nothing(cache):
    cache.set("user:1", "Ada")
    with pytest.raises(TypeError, match="unknown event type str"):
        apply_event(cache, "UserUpdated 1")
    assert cache.get("user:1") == "Ada"


def test_an_unknown_mode_or_a_bad_ttl_is_a_clear_error(cache, queue, clock):
    event = UserUpdated(1, "x", 2, 0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        apply_event(cache, event, mode="refresh")
    with pytest.raises(ValueError, match="ttl must be a positive"):
        apply_event(cache, event, mode="update", ttl=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        CacheService(cache, queue, clock, mode="refresh")
    assert cache.exists("user:1") == 0


# --- event delay: a stale window ---------------------------------------------------------------


def test_every_read_between_the_commit_and_the_consume_is_stale(cache, ada, clock, queue):
    service = CacheService(cache, queue, clock)
    get_user(cache, ada, 1)
    update_user(ada, queue, clock, 1, "Ada Lovelace")
    for _ in range(3):
        assert get_user(cache, ada, 1) == "Ada"
        clock.advance(1)
    service.step()
    assert service.lags == [3.0]
    assert get_user(cache, ada, 1) == "Ada Lovelace"


@pytest.mark.parametrize(
    "backlog, per_second",
    [(0, 1), (0, 10), (9, 10), (10, 10), (25, 10), (1000, 10), (1000, 100), (5, 1)],
)
def test_the_stale_window_is_the_backlog_over_the_consumer_rate(backlog, per_second):
    # our event sits behind `backlog` others and is applied in the second that reaches it
    window = event_delay_window(backlog, per_second)
    assert window.lag == window.stale_reads == backlog // per_second


@pytest.mark.parametrize(
    "args, message",
    [((-1, 10), "backlog must be an integer >= 0, got -1"),
     ((1.5, 10), "backlog must be an integer >= 0, got 1.5"),
     ((10, 0), "per_second must be a positive integer, got 0")],
)
def test_bad_input_to_the_delay_measurement_is_a_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        event_delay_window(*args)


# --- event loss: stale until the TTL ---------------------------------------------------------


def test_a_disconnected_channel_drops_the_event(queue):
    queue.connected = False
    assert queue.publish(UserUpdated(1, "x", 2, 0.0)) == 0
    assert len(queue) == 0


def test_redis_pubsub_keeps_no_message_for_an_absent_subscriber(cache):
    assert cache.publish("user-events", "lost") == 0
    pubsub = cache.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("user-events")
    # the subscribe confirmation (skipped), then nothing: "lost" was not kept for later
    assert [pubsub.get_message(timeout=0.2) for _ in range(2)] == [None, None]
    assert cache.publish("user-events", "delivered") == 1
    message = pubsub.get_message(timeout=1.0)
    assert message is not None and message["data"] == "delivered"
    pubsub.close()


def test_a_lost_event_is_stale_exactly_until_the_ttl(ada, clock, queue):
    model = ClockedCache(clock)
    service = CacheService(model, queue, clock)
    get_user(model, ada, 1, ttl=60)
    clock.advance(10)
    queue.connected = False
    update_user(ada, queue, clock, 1, "Ada Lovelace")
    queue.connected = True
    assert service.drain() == 0
    clock.advance(49.999)
    assert get_user(model, ada, 1, ttl=60) == "Ada"
    clock.advance(0.001)
    assert get_user(model, ada, 1, ttl=60) == "Ada Lovelace"


def test_a_consumer_that_fails_after_taking_the_event_loses_it(cache, ada, clock, queue):
    get_user(cache, ada, 1, ttl=60)
    update_user(ada, queue, clock, 1, "Ada Lovelace")
    with pytest.raises(redis.ConnectionError, match="injected fault"):
        CacheService(DeletesLost(cache), queue, clock).step()
    assert len(queue) == 0  # taken, not applied: nothing left to retry
    assert get_user(cache, ada, 1, ttl=60) == "Ada"
    assert 0 < cache.ttl("user:1") <= 60  # stale until the TTL


@pytest.mark.parametrize("write_at, window", [(0, 60), (10, 50), (30, 30), (59, 1)])
def test_the_lost_event_window_always_ends_when_the_ttl_does(write_at, window):
    assert lost_event_window(60, write_at) == window
    assert write_at + window == 60


def test_on_redis_the_key_left_by_a_lost_event_is_due_to_expire(cache, ada, clock, queue):
    get_user(cache, ada, 1, ttl=60)
    queue.connected = False
    update_user(ada, queue, clock, 1, "Ada Lovelace")
    assert cache.get("user:1") == "Ada"
    assert 0 < cache.ttl("user:1") <= 60


@pytest.mark.parametrize(
    "args, message",
    [((0, 0), "ttl must be a positive number of seconds, got 0"),
     ((60, -1), "write_at must be an integer >= 0, got -1"),
     ((60, 60), r"write_at must be before the TTL ends \(60\), got 60"),
     ((60, 1.5), "write_at must be an integer >= 0, got 1.5")],
)
def test_bad_input_to_the_loss_measurement_is_a_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        lost_event_window(*args)


# --- out-of-order events -------------------------------------------------------------------


@pytest.fixture
def two_renames(ada, clock, queue):
    first = update_user(ada, queue, clock, 1, "Ada Lovelace")
    second = update_user(ada, queue, clock, 1, "Countess of Lovelace")
    return first, second


def test_update_style_applied_out_of_order_leaves_the_cache_wrong(cache, ada, two_renames):
    first, second = two_renames
    for event in (second, first):
        apply_event(cache, event, mode="update")
    assert get_user(cache, ada, 1) == "Ada Lovelace"
    assert name_in_db(ada) == "Countess of Lovelace"


def test_an_update_style_set_keeps_the_ttl_safety_net(cache):
    apply_event(cache, UserUpdated(1, "Ada Lovelace", 2, 0.0), mode="update", ttl=60)
    assert cache.get("user:1") == "Ada Lovelace"
    assert 0 < cache.ttl("user:1") <= 60


def test_update_style_in_order_is_right(cache, ada, two_renames):
    for event in two_renames:
        apply_event(cache, event, mode="update")
    assert get_user(cache, ada, 1) == name_in_db(ada)


def test_delete_style_is_right_in_either_order(cache, ada, two_renames):
    first, second = two_renames
    for order in ((first, second), (second, first)):
        cache.set("user:1", "whatever was cached")
        for event in order:
            apply_event(cache, event, mode="delete")
        assert get_user(cache, ada, 1) == "Countess of Lovelace"


def test_a_redelivered_old_event_regresses_update_style_not_delete_style(cache, ada, two_renames):
    first, second = two_renames
    for mode, expected in (("update", "Ada Lovelace"), ("delete", "Countess of Lovelace")):
        cache.delete("user:1")
        for event in (first, second, first):  # at-least-once: `first` arrives again
            apply_event(cache, event, mode=mode)
        assert get_user(cache, ada, 1) == expected


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_across_every_delivery_order_delete_is_right_update_only_if_the_newest_is_last(n):
    orders = math.factorial(n)
    assert orders_ending_right(n, "delete") == (orders, orders)
    # update-style is right exactly when the newest event is applied last: (n-1)! orders
    assert orders_ending_right(n, "update") == (math.factorial(n - 1), orders)


@pytest.mark.parametrize(
    "args, message",
    [((0, "delete"), "n_updates must be a positive integer, got 0"),
     ((2, "set"), "mode must be one of .*, got 'set'")],
)
def test_bad_input_to_the_order_count_is_a_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        orders_ending_right(*args)


# --- the page no longer states what was wrong ----------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "patterns" / "event-driven.md"




@pytest.mark.parametrize("phrase", [
    # the outbox removes the loss between the commit and the publish; it still needs a
    # broker, a relay and a Redis that keep what they have
    "makes the loss impossible instead of bounded",
    # "cannot" without its model: a lost DEL, or a reader filling meanwhile, breaks it
    "the order in which deletes arrive cannot matter",
    # "always": only while every store of the key sets a TTL and a fill stores at once
    "the window always ends when the TTL does",
    # the source is quoted as the common advice; table headers say "Common claim"
    "Claim (from the common advice)",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase not in words(PAGE)


def test_the_page_states_each_guarantee_with_its_model():
    assert words(PAGE).count('!!! info "Holds when"') >= 2
