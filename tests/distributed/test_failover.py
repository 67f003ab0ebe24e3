"""The claims of docs/distributed/failover.md: a failover loses an acknowledged DEL,
WAIT plus a second DEL keeps it, a lost lease is harmless and a lost lock is not, and
an outage of Redis loses no request and no invalidation."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from snippets.backends import FakeClock, make_db, make_fake_cache
from snippets.concurrency.production_pattern import update_user
from snippets.distributed import failover
from snippets.distributed.failover import (
    CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen, Unreachable,
    empty_at_end, explore_failover, explore_lease, explore_lock, get_user_degraded,
    outage, round_trips, update_user_degraded, update_user_waiting,
    update_user_waiting_once,
)
from snippets.explorer import mermaid_problems
from snippets.replication import ReplicatedCache
from snippets.scaling.outbox import create_outbox, unsent

STALE = "stale: the cache holds 'old' but the DB says 'new'"


# --- the lost DEL ---------------------------------------------------------------------


def test_a_failover_after_the_del_and_before_replication_brings_the_old_value_back():
    found = explore_failover(update_user)
    assert (len(found.bad), found.total) == (3, 12)
    for schedule in found.bad:  # exactly: the failover after the DEL, nothing sent
        names = str(schedule).split()
        assert names.index("sentinel") > 1 + names.index("writer")
    run = failover.lost_delete()
    assert run.verdict == STALE and run.cache.get("user:1") == "old"


def test_wait_alone_leaves_the_stale_value_and_the_second_delete_removes_it():
    assert len(explore_failover(update_user_waiting_once).bad) == 4
    found = explore_failover(update_user_waiting)
    assert (found.bad, found.total) == ([], 24)


def test_wait_costs_one_more_round_trip_per_write():
    assert round_trips(update_user) == {"db": 1, "cache": 1}
    assert round_trips(update_user_waiting) == {"db": 1, "cache": 1, "Redis replica": 1}


def test_wait_fails_on_a_connection_to_a_primary_that_is_gone():
    cache = ReplicatedCache()
    cache.set("user:1", "old")
    cache.failover()  # the backlog (the SET) is lost
    with pytest.raises(redis.ConnectionError):
        failover.wait_for_replica(cache, primary=False)
    cache.delete("user:1")
    assert failover.wait_for_replica(cache, primary=True) == 1
    assert cache.backlog == [] and cache.replica.exists("user:1") == 0


# --- leases and locks -------------------------------------------------------------------


def test_a_lost_lease_only_refuses_or_loses_the_fill():
    found = explore_lease(None)
    assert (len(found.bad), found.total, empty_at_end(found)) == (0, 16, 5)


def test_a_lost_delete_of_the_lease_lets_the_old_fill_in():
    found = explore_lease(update_user)
    assert (len(found.bad), found.total) == (2, 150)
    run = failover.resurrected_lease()
    assert run.verdict == STALE
    assert run.steps[-1].actor == "reader" and run.steps[-1].result == "1"  # accepted


def test_waiting_and_deleting_again_also_protects_the_lease():
    found = explore_lease(update_user_waiting)
    assert found.bad == [] and found.total > 150


def test_a_lock_holds_without_a_failover_and_breaks_with_one():
    assert explore_lock(failover=False).bad == []
    found = explore_lock(failover=True)
    assert (len(found.bad), found.total) == (80, 212)
    assert failover.two_holders().verdict == "both A and B held the lock"


@pytest.mark.parametrize("diagram", [failover.lost_delete_diagram,
                                     failover.resurrected_lease_diagram,
                                     failover.two_holders_diagram])
def test_the_diagrams_are_valid_and_the_same_every_time(diagram):
    text = diagram()
    assert mermaid_problems(text) == [] and text == diagram()


# --- the outage ---------------------------------------------------------------------------


def test_every_request_is_served_and_no_delete_is_lost_with_the_outbox():
    swallowed, kept, broken = (outage(strategy) for strategy in failover.STRATEGIES)
    assert swallowed.served == kept.served == broken.served == 6000
    assert swallowed.stale == 1950 and swallowed.kept == 0  # lost: stale until the TTL
    assert (kept.kept, kept.owed_at_end, kept.stale) == (1, 0, 50)
    assert (broken.kept, broken.owed_at_end, broken.stale) == (1, 0, 0)


def test_the_breaker_pays_few_timeouts_and_some_database_reads():
    kept, broken = outage("outbox"), outage("outbox + breaker")
    assert (kept.timeouts, broken.timeouts) == (3072, 10)
    assert broken.db_reads - kept.db_reads == 440
    assert broken.redis_commands < kept.redis_commands / 2


def test_the_outbox_adds_three_statements_to_a_write_and_no_redis_command():
    assert failover.calls_per_write() == {"cache-aside": (1, 1), "outbox + DEL now": (4, 1)}


def test_the_breaker_opens_fails_fast_then_tries_once(cache):
    clock = FakeClock()
    breaker = CircuitBreaker(clock, failures=3, cooldown=5.0)
    link = Unreachable(cache, clock, timeout=0.05)
    link.down = True
    for _ in range(3):
        with pytest.raises(redis.TimeoutError):
            breaker.call(lambda: link.get("user:1"))
    assert breaker.state == OPEN and link.timeouts == 3
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: link.get("user:1"))
    assert link.commands == 3  # refused at once: not sent
    clock.advance(5.0)
    assert breaker.state == HALF_OPEN
    with pytest.raises(redis.TimeoutError):  # the trial fails: open again
        breaker.call(lambda: link.get("user:1"))
    assert breaker.state == OPEN
    clock.advance(5.0)
    link.down = False
    assert breaker.call(lambda: link.get("user:1")) is None
    assert breaker.state == CLOSED


def test_a_write_during_an_outage_commits_and_keeps_its_delete(cache):
    clock, db = FakeClock(), make_db()
    create_outbox(db)
    db.add_user(1, "old")
    breaker, link = CircuitBreaker(clock), Unreachable(cache, clock)
    client: Any = link  # used as a Redis client
    assert get_user_degraded(client, db, 1, breaker, clock) == "old"  # cached
    link.down = True
    update_user_degraded(client, db, 1, "new", breaker, clock)
    assert db.query("SELECT name FROM users") == [("new",)] and unsent(db) == 1
    assert breaker.state == OPEN  # the cache is not read while a DEL is owed
    link.down = False
    assert get_user_degraded(client, db, 1, breaker, clock) == "new"  # from the DB
    assert cache.get("user:1") == "old" and unsent(db) == 1
    clock.advance(5.0)
    assert get_user_degraded(client, db, 1, breaker, clock) == "new"  # DEL, then a miss
    assert unsent(db) == 0 and cache.get("user:1") == "new"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: CircuitBreaker(FakeClock(), failures=0), "failures must be a positive"),
    (lambda: CircuitBreaker(FakeClock(), cooldown=-1), "cooldown must be a number > 0"),
    (lambda: outage("retry harder"), "strategy must be one of"),
    (lambda: outage("outbox", per_second=0), "per_second must be a positive"),
    (lambda: Unreachable(make_fake_cache(), FakeClock(), timeout=0), "timeout must be a number > 0"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_waiting_write_needs_a_replicated_cache_and_changes_nothing(cache, db):
    db.add_user(1, "old")
    with pytest.raises(TypeError, match="cache must be a ReplicatedCache"):
        update_user_waiting(cache, db, 1, "new")
    assert db.query("SELECT name FROM users") == [("old",)]
