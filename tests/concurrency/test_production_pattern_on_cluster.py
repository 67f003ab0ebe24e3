"""The production pattern, the lease, coalescing, write-behind and the two-level
cache's invalidation on a real Redis Cluster of three masters (started on loopback by
tests/engines.py), through redis-py's ``RedisCluster``.

A script touches several keys only if they share a slot: the lease key is hash-tagged
(``{user:1}:lease``) for that. Write-behind's one log cannot share a slot with every
user's copy: on a cluster its script is refused (CROSSSLOT), as its page says; its
partitioned logs (``{wb:1}:writes`` beside ``{wb:1}:user:1``) run. The L1's
invalidation goes out with SPUBLISH, on the shard that owns its channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, MovedError, RedisClusterException

from snippets.backends import Database, make_db, user_key
from snippets.concurrency import production_pattern
from snippets.explorer.pages import DOCS
from snippets.fleet import two_level
from snippets.lease import lease_key
from snippets.patterns import write_behind
from snippets.patterns.write_behind import LOGS, drain, log_of, mark_key, partitioned
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


# --- write-behind, one log per partition ---------------------------------------------------


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_each_partition_is_one_slot_and_the_partitions_use_every_master(cluster):
    for user_id in range(1, 41):
        log = log_of(user_id)
        copy = log.key(user_id)
        assert {slot(log.stream), slot(log.dead), slot(mark_key(copy))} == {slot(copy)}
    owners = {cluster.get_node_from_key(log.stream).name for log in LOGS}
    assert owners == {node.name for node in cluster.get_primaries()}


def with_history(db: Database) -> Database:
    """Every committed change of a name, in commit order (a rolled-back one is not)."""
    db.execute("CREATE TABLE history (seq INTEGER PRIMARY KEY, user_id INTEGER, name TEXT)")
    db.execute("""CREATE TRIGGER record AFTER UPDATE OF name ON users BEGIN
                  INSERT INTO history (user_id, name) VALUES (new.id, new.name); END""")
    return db


def test_partitioned_write_behind_keeps_each_users_order_on_the_cluster(cache):
    db = with_history(make_db())
    users = [12, 5, 1, 9, 3, 14, 7, 2]  # in partitions owned by all three masters
    assert len({cache.get_node_from_key(log_of(u).stream).name for u in users}) == 3
    for user_id in users:
        db.add_user(user_id, "before")
    write_behind.prepare(cache, db, LOGS)
    acknowledged = []
    for round_ in (1, 2, 3):
        for user_id in users:
            write_behind.write(cache, user_id, f"{user_id}.{round_}", log_of(user_id))
            acknowledged.append((user_id, f"{user_id}.{round_}"))
    assert drain(cache, db, "f1", count=1, logs=LOGS) == 24  # one entry per batch
    history = db.query("SELECT user_id, name FROM history ORDER BY seq")
    for user_id in users:  # each user's writes, all of them, in the order acknowledged
        assert [n for u, n in history if u == user_id] == [
            n for u, n in acknowledged if u == user_id]
    assert history != acknowledged  # but no one order of all writes
    assert write_behind.pending(cache, LOGS) == 0
    for user_id in users:
        assert write_behind.get_user(cache, db, user_id, log=log_of(user_id)) == f"{user_id}.3"
        assert cache.ttl(log_of(user_id).key(user_id)) > 0  # released once in the DB


class Borrowed:
    """The module's cluster client, emptied, for one run of the sweep: ``close`` (which
    the sweep calls after each run) leaves it open."""

    def __init__(self, cluster: RedisCluster) -> None:
        cluster.flushall()
        self._cluster = cluster

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)

    def close(self) -> None:
        pass


def test_partitioned_write_behind_loses_nothing_when_flushers_die_on_the_cluster(cluster):
    """The page's sweep, on two partitions (on two masters): f1 and f2 killed at every
    step, f3 drains. The same runs as on fakeredis: the steps do not depend on where
    the keys live."""
    logs = partitioned(2)
    assert len({cluster.get_node_from_key(log.stream).name for log in logs}) == 2
    totals = write_behind.crash_sweep(lambda: (Borrowed(cluster), make_db()), logs=logs)
    assert totals == {"runs": 541, "crashes": 1040, "lost": 0, "pending": 0,
                      "disagree": 0}


# --- the L1's invalidation: SPUBLISH on a cluster --------------------------------------------


@pytest.fixture
def sharded(cache: RedisCluster) -> Iterator[tuple[Database, two_level.L1,
                                                   two_level.ShardedListener]]:
    """User 1 named "old", an empty L1, and its listener on the channel's shard."""
    db = make_db()
    db.add_user(1, "old")
    l1 = two_level.L1()
    listener = two_level.ShardedListener(cache, l1)
    yield db, l1, listener
    listener.close()


def test_an_l1_invalidation_sent_with_spublish_reaches_its_listener_on_the_cluster(
        cache, sharded):
    db, l1, listener = sharded
    owner = cache.get_node_from_key(two_level.SHARDED_CHANNEL).name
    assert set(listener.pubsub.node_pubsub_mapping) == {owner}  # that shard only
    assert two_level.get_user(l1, cache, db, 1) == "old"
    assert l1.get(user_key(1)) == "old"
    assert two_level.update_user_sharded(cache, db, 1, "new") == 1
    message = listener.poll(timeout=5.0)
    assert message is not None and message["type"] == "smessage"
    assert message["data"] == user_key(1)
    assert l1.get(user_key(1)) is None  # dropped
    assert two_level.get_user(l1, cache, db, 1) == "new"


def test_a_sharded_listener_flushes_its_l1_when_its_shard_connection_comes_back(
        cache, sharded):
    db, l1, listener = sharded
    two_level.get_user(l1, cache, db, 1)
    [shard] = listener.pubsub.node_pubsub_mapping.values()
    shard.connection.disconnect()
    assert two_level.update_user_sharded(cache, db, 1, "new") == 0  # lost
    for _ in range(3):  # the next polls reconnect and subscribe again
        listener.poll(timeout=0.2)
    assert l1.get(user_key(1)) is None  # flushed
    assert two_level.update_user_sharded(cache, db, 1, "newer") == 1


def test_publish_goes_to_every_node_spublish_to_the_owning_shard_only(cluster):
    """PUBLISH sent to one master reaches a subscriber on another (the cluster bus
    carries it everywhere); SPUBLISH is refused by a master that does not own the
    channel's slot, and SSUBSCRIBE there too."""
    channel = two_level.SHARDED_CHANNEL
    owner = cluster.get_node_from_key(channel)
    other = next(node for node in cluster.get_primaries() if node.name != owner.name)
    subscriber = redis.Redis(host=other.host, port=other.port, decode_responses=True)
    publisher = redis.Redis(host=owner.host, port=owner.port, decode_responses=True)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(two_level.CHANNEL)
        assert pubsub.get_message(timeout=5.0) is None  # the confirmation, ignored
        publisher.publish(two_level.CHANNEL, user_key(1))
        message = pubsub.get_message(timeout=5.0)
        assert message is not None and message["data"] == user_key(1)
        with pytest.raises(MovedError):  # redis-py's name for the MOVED reply
            subscriber.spublish(channel, user_key(1))
        with pytest.raises(MovedError):
            subscriber.execute_command("SSUBSCRIBE", channel)
        assert publisher.spublish(channel, user_key(1)) == 0  # nobody on that shard
    finally:
        pubsub.close()
        subscriber.close()
        publisher.close()


def test_one_ssubscribe_takes_channels_of_one_slot_only(cluster):
    """Why the channel is hash-tagged: channels sharing its tag can be taken together."""
    channel = two_level.SHARDED_CHANNEL
    owner = cluster.get_node_from_key(channel)
    client = redis.Redis(host=owner.host, port=owner.port, decode_responses=True)
    together, apart = client.pubsub(), client.pubsub()
    try:
        together.ssubscribe(channel, f"{channel}:names")  # one command, one slot
        confirmed = [together.get_message(timeout=5.0) for _ in range(2)]
        assert [m["channel"] for m in confirmed if m] == [channel, f"{channel}:names"]
        apart.ssubscribe(channel, "invalidate:{orders}")  # two slots
        with pytest.raises(ClusterCrossSlotError):
            apart.get_message(timeout=5.0)
    finally:
        together.close()
        apart.close()
        client.close()
