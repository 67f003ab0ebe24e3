"""A Redis outage, for real: a redis-server of the test's own is paused (SIGSTOP: it
accepts connections and never answers, the nastier case) or stopped mid-run. The
failover page's degraded mode (outbox + circuit breaker) keeps serving reads from the
database, commits writes, owes the DELs Redis did not take, and delivers them once
Redis is back: 0 stale reads, 0 lost writes. The breaker's clock is a FakeClock, so
its cool-down passes when the test says, not after a sleep.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from snippets.backends import FakeClock, make_db, user_key
from snippets.distributed.failover import (
    OPEN,
    CircuitBreaker,
    get_user_degraded,
    update_user_degraded,
)
from snippets.scaling.outbox import create_outbox, unsent
from tests.engines import Server, needs_redis_server, start_redis

TIMEOUT_S = 0.2  # redis-py's socket_timeout: how long a read waits for a silent Redis


@pytest.fixture
def server() -> Iterator[Server]:
    needs_redis_server()
    started = start_redis()
    yield started
    if started.process.poll() is None:
        os.kill(started.process.pid, signal.SIGCONT)  # in case a test left it paused
        started.stop()


@pytest.mark.parametrize("how", ["paused", "stopped"])
def test_reads_writes_and_owed_deletes_through_an_outage_end_with_nothing_stale(server, how):
    cache = redis.Redis.from_url(server.url, decode_responses=True,
                                 socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    clock = FakeClock()
    breaker = CircuitBreaker(clock, failures=1, cooldown=5.0)
    db = make_db()
    create_outbox(db)
    db.add_user(1, "old")
    assert get_user_degraded(cache, db, 1, breaker, clock) == "old"  # cached
    assert cache.get(user_key(1)) == "old"

    if how == "paused":
        os.kill(server.process.pid, signal.SIGSTOP)
    else:
        server.stop()
    update_user_degraded(cache, db, 1, "new", breaker, clock)  # commits; the DEL fails
    assert db.query("SELECT name FROM users WHERE id = 1") == [("new",)]  # not lost
    assert unsent(db) == 1 and breaker.state == OPEN  # the DEL is owed
    started = time.monotonic()
    reads = [get_user_degraded(cache, db, 1, breaker, clock) for _ in range(20)]
    assert reads == ["new"] * 20  # the database serves them
    assert time.monotonic() - started < TIMEOUT_S  # at once: the open breaker sends nothing

    if how == "paused":
        os.kill(server.process.pid, signal.SIGCONT)  # Redis is back, "old" still cached
    else:
        server = start_redis(port=int(server.url.rsplit(":", 1)[1].split("/")[0]))
        # A restarted Redis without persistence is empty: make it hold the old copy, as
        # a persistent one would after the restart.
        cache.set(user_key(1), "old")
    clock.advance(5.0)  # the cool-down is over: the next read is a trial
    assert get_user_degraded(cache, db, 1, breaker, clock) == "new"  # owed DEL first
    assert unsent(db) == 0
    assert cache.get(user_key(1)) == "new"  # refilled from the database
    if how == "stopped":
        server.stop()
    cache.close()
