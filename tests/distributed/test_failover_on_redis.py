"""Redis failover, for real: a primary, a replica fed through a link the test cuts at a
chosen moment, and a promotion done as an operator or Sentinel does it
(``REPLICAOF NO ONE``). The acknowledged ``DEL`` is lost with the old primary, the old
value is back on the new one, and ``WAIT`` told the write path so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from snippets.backends import make_db, user_key
from snippets.concurrency import production_pattern
from snippets.lease import invalidate
from tests.engines import Link, Server, needs_redis_server, start_redis



@pytest.fixture
def pair() -> Iterator[tuple[redis.Redis, redis.Redis, Link]]:
    """A primary and its replica, in sync, the replica's link through ``Link``."""
    needs_redis_server()
    servers: list[Server] = []
    primary_server = start_redis()
    servers.append(primary_server)
    port = int(primary_server.url.rsplit(":", 1)[1].split("/")[0])
    link = Link(port)
    servers.append(start_redis("--replicaof", "127.0.0.1", str(link.port)))
    primary, replica = (redis.Redis.from_url(server.url, decode_responses=True)
                        for server in servers)
    deadline = time.monotonic() + 10
    while replica.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica never synced"
        time.sleep(0.05)
    yield primary, replica, link
    primary.close(), replica.close(), link.close()
    notes = [server.stop() for server in servers]
    assert notes == [None, None], notes


def test_an_acknowledged_del_is_lost_in_a_failover_and_wait_said_so(pair):
    primary, replica, link = pair
    db = make_db()
    db.add_user(1, "old")
    assert production_pattern.get_user(primary, db, 1) == "old"  # a miss fills the cache
    assert primary.wait(1, 1000) == 1  # the replica has the cached copy
    assert replica.get(user_key(1)) == "old"

    link.cut()  # the network between them breaks; neither knows yet
    production_pattern.update_user(primary, db, 1, "new")  # UPDATE, then DEL: acknowledged
    assert primary.get(user_key(1)) is None
    assert primary.wait(1, 300) == 0  # no replica acknowledged the DEL

    replica.replicaof("NO", "ONE")  # failover: the replica is the primary now
    assert replica.get(user_key(1)) == "old"  # the deleted value is back
    assert production_pattern.get_user(replica, db, 1) == "old"  # and served: stale


def test_a_write_path_that_deletes_again_after_a_failed_wait_ends_fresh(pair):
    """The failover page's fix: WAIT after the DEL; fewer replicas than asked for means
    the DEL may be lost, so it is sent again to whichever server is primary after the
    failover."""
    primary, replica, link = pair
    db = make_db()
    db.add_user(1, "old")
    production_pattern.get_user(primary, db, 1)
    assert primary.wait(1, 1000) == 1

    link.cut()
    production_pattern.update_user(primary, db, 1, "new")
    replicated = primary.wait(1, 300)
    replica.replicaof("NO", "ONE")
    if replicated < 1:  # the DEL may be lost: delete again on the new primary
        invalidate(replica, user_key(1))  # the key and its lease
    assert replicated == 0
    assert production_pattern.get_user(replica, db, 1) == "new"
