"""The production pattern, the lease and coalescing on a real Redis Cluster of three
masters (started on loopback by tests/engines.py), through redis-py's ``RedisCluster``.
A script touches several keys only if they share a slot: the lease key is hash-tagged
(``{user:1}:lease``) for that. Write-behind's one log cannot share a slot with every
user's copy: on a cluster its script is refused (CROSSSLOT), as its page says.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from snippets.backends import make_db, user_key
from snippets.concurrency import production_pattern
from snippets.explorer.pages import DOCS
from snippets.lease import lease_key
from snippets.patterns import write_behind
from snippets.scaling.coalescing import get_user_coalesced
from tests.engines import needs_redis_server, start_cluster



@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    needs_redis_server()
    servers = start_cluster(3)
    client = RedisCluster.from_url(servers[0].url, decode_responses=True)
    yield client
    client.close()
    notes = [server.stop() for server in servers]
    assert notes == [None, None, None], notes


@pytest.fixture
def cache(cluster: RedisCluster) -> RedisCluster:
    cluster.flushall()  # every master
    return cluster


def test_the_cluster_has_three_masters_that_share_the_slots(cluster):
    masters = {node.name for node in cluster.get_primaries()}
    assert len(masters) == 3
    slots = {cluster.keyslot(f"user:{n}") for n in range(50)}
    owners = {cluster.get_node_from_key(f"user:{n}").name for n in range(50)}
    assert len(slots) > 1 and owners == masters  # the users are spread over all three


def test_a_key_and_its_lease_share_a_slot():
    from redis.crc import key_slot
    assert key_slot(user_key(1).encode()) == key_slot(lease_key(user_key(1)).encode())


def test_the_production_pattern_reads_writes_and_reads_again(cache):
    db = make_db()
    db.add_user(1, "old")
    assert production_pattern.get_user(cache, db, 1) == "old"  # miss: lease, load, fill
    assert production_pattern.get_user(cache, db, 1) == "old"  # hit
    production_pattern.update_user(cache, db, 1, "new")  # UPDATE, then DEL key + lease
    assert cache.get(user_key(1)) is None and cache.get(lease_key(user_key(1))) is None
    assert production_pattern.get_user(cache, db, 1) == "new"
    assert db.reads == 2  # one load per miss


def test_a_fill_after_the_write_deleted_the_lease_is_refused_on_the_cluster(cache):
    """The reader race, in the lease's own terms: the reader took the lease and read
    "old"; the write's DEL removes the lease; the fill (one script, two keys in one
    slot) is refused."""
    from snippets.lease import fill, invalidate, take_lease
    db = make_db()
    db.add_user(1, "old")
    key = user_key(1)
    token = take_lease(cache, key, 10_000)
    assert token is not None
    [(name,)] = db.query("SELECT name FROM users WHERE id = 1")
    db.execute("UPDATE users SET name = 'new' WHERE id = 1")
    invalidate(cache, key)
    assert fill(cache, key, token, name, 300) is False
    assert cache.get(key) is None


def test_coalescing_on_the_cluster(cache):
    db = make_db()
    db.add_user(1, "old")
    assert get_user_coalesced(cache, db, 1) == "old"
    assert get_user_coalesced(cache, db, 1) == "old"
    assert db.reads == 1


def test_write_behinds_log_and_copies_cannot_share_a_slot_on_a_cluster(cache):
    db = make_db()
    db.add_user(1, "old")
    write_behind.prepare(cache, db)
    with pytest.raises(RedisClusterException, match="same key slot"):
        write_behind.write(cache, 1, "new")
    page = " ".join((DOCS / "patterns" / "write-behind.md").read_text().split())
    assert "CROSSSLOT" in page and "Redis Cluster" in page
