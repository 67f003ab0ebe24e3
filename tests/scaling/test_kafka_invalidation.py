"""Kafka-based invalidation: each claim of docs/scaling/kafka-invalidation.md, on fakeredis
and on real Redis (the stand-in log lives in the same Redis as the cache, under log:*)."""

from __future__ import annotations

import binascii
import json
import sys
import types
from pathlib import Path

import pytest
import redis

from snippets.backends import FakeClock, make_db, make_fake_cache
from snippets.explorer import reusing
from snippets.faults import Crash, Faults
from snippets.patterns.cache_aside import get_user
from snippets.scaling import kafka_invalidation
from snippets.scaling.kafka_invalidation import (
    DEAD_LETTER_TOPIC,
    TOPIC,
    StreamConsumer,
    StreamProducer,
    cache_key_of,
    create_topic,
    drain,
    apply_all,
    apply_delete,
    apply_if_newer,
    apply_update,
    invalidate_next,
    kafka_clients,
    make_log,
    murmur2,
    partition_for,
    publish_invalidation,
    rename_and_publish,
    stale_for,
    two_instances,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "scaling" / "kafka-invalidation.md"

USERS = {1: "Ada", 2: "Grace", 3: "Edsger", 4: "Barbara", 5: "Donald"}


@pytest.fixture
def world(cache):
    """A cache (which also holds the log), five cached users, a producer, a consumer."""
    db, clock = make_db(), FakeClock()
    make_log(cache)
    for user_id, name in USERS.items():
        db.add_user(user_id, name)
        get_user(cache, db, user_id)
    producer = StreamProducer(cache, clock)
    consumer = StreamConsumer(cache, "invalidator")
    consumer.subscribe([TOPIC])
    yield types.SimpleNamespace(cache=cache, db=db, clock=clock, producer=producer,
                                consumer=consumer)
    db.close()


def rename(world, user_id: int, name: str) -> None:
    """The writer: commit, then publish (the outbox page makes this pair atomic)."""
    world.db.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id))
    publish_invalidation(world.producer, user_id)


def restarted(world, group: str = "invalidator") -> StreamConsumer:
    consumer = StreamConsumer(world.cache, group)
    consumer.subscribe([TOPIC])
    return consumer


def cached(world) -> dict[int, str | None]:
    return {user_id: world.cache.get(f"user:{user_id}") for user_id in USERS}


def log_keys(cache) -> dict[str, int]:
    """Every key of the stand-in log with its size: to check that nothing was written."""
    return {key: (cache.xlen(key) if cache.type(key) == "stream" else cache.hlen(key))
            for key in cache.scan_iter("log:*")}


# --- the partitioner ----------------------------------------------------------------------


def test_partition_is_crc32_of_the_key_modulo_the_count():
    for n in range(1, 50):
        key = f"user:{n}"
        # binascii.crc32 is an independent implementation of the same CRC-32
        assert partition_for(key, 7) == binascii.crc32(key.encode()) % 7
        assert partition_for(key, 7) == partition_for(key.encode(), 7)


@pytest.mark.parametrize("data, expected", [  # the vectors of Kafka's own Utils tests
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_is_the_java_clients_hash(data, expected):
    assert murmur2(data) == expected


def test_the_same_key_lands_in_different_partitions_under_crc32_and_murmur2():
    keys = [f"user:{n}" for n in range(1, 7)]
    crc32 = [partition_for(key, 3) for key in keys]
    java = [partition_for(key, 3, "murmur2") for key in keys]
    assert (crc32, java) == ([0, 1, 0, 0, 2, 2], [2, 2, 1, 1, 0, 1])
    assert all(a != b for a, b in zip(crc32, java, strict=True))  # six keys, six disagreements
    with pytest.raises(ValueError, match="hash must be 'crc32' or 'murmur2'"):
        partition_for("user:1", 3, "md5")


def test_every_partition_gets_keys_and_one_key_keeps_its_partition():
    partitions = {partition_for(f"user:{n}", 3) for n in range(1, 100)}
    assert partitions == {0, 1, 2}
    assert len({partition_for("user:42", 3) for _ in range(10)}) == 1


@pytest.mark.parametrize("bad_key", ["", b"", None, 1])
def test_bad_key_is_a_clear_error(bad_key):
    with pytest.raises(ValueError, match="key must be a non-empty str or bytes"):
        partition_for(bad_key, 3)


@pytest.mark.parametrize("bad_count", [0, -1, 1.5, "3", True, None])
def test_bad_partition_count_is_a_clear_error(bad_count):
    with pytest.raises(ValueError, match="partitions must be a positive integer"):
        partition_for("user:1", bad_count)


# --- ordering and groups ------------------------------------------------------------------


def test_events_of_one_key_stay_in_one_partition_in_produce_order(world):
    sequence = [1, 2, 1, 3, 4, 1, 5, 2, 3, 1, 4, 5, 1]
    for seq, user_id in enumerate(sequence):
        world.producer.produce(TOPIC, key=f"user:{user_id}",
                               value=json.dumps({"user_id": user_id, "seq": seq}))
    world.producer.flush()
    handled = drain(world.consumer, world.cache, world.producer)
    assert len(handled) == len(sequence)
    by_key: dict[bytes, list[tuple[int, int, int]]] = {}
    for message in handled:
        seq = json.loads(message.value())["seq"]
        by_key.setdefault(message.key(), []).append((message.partition(), message.offset(), seq))
    for key, events in by_key.items():
        assert {partition for partition, _, _ in events} == {partition_for(key, 3)}
        assert [seq for _, _, seq in events] == sorted(seq for _, _, seq in events)
        assert [offset for _, offset, _ in events] == sorted(offset for _, offset, _ in events)


def test_offsets_are_numbered_from_zero_without_gaps(world):
    for _ in range(4):
        publish_invalidation(world.producer, 1)
    offsets = [m.offset() for m in drain(world.consumer, world.cache, world.producer)]
    assert offsets == [0, 1, 2, 3]


def test_a_group_split_between_consumers_gives_each_key_one_reader(world):
    for user_id in USERS:
        publish_invalidation(world.producer, user_id)
        publish_invalidation(world.producer, user_id)
    first, second = StreamConsumer(world.cache, "split"), StreamConsumer(world.cache, "split")
    first.assign(TOPIC, [0])
    second.assign(TOPIC, [1, 2])
    keys_first = [m.key() for m in drain(first, world.cache, world.producer)]
    keys_second = [m.key() for m in drain(second, world.cache, world.producer)]
    assert len(keys_first) + len(keys_second) == 2 * len(USERS)
    assert not set(keys_first) & set(keys_second)
    assert set(keys_first) == {f"user:{u}".encode() for u in USERS if partition_for(f"user:{u}", 3) == 0}


def test_each_group_reads_the_whole_log_for_itself(world):
    for user_id in USERS:
        publish_invalidation(world.producer, user_id)
    assert len(drain(world.consumer, world.cache, world.producer)) == len(USERS)
    other = restarted(world, group="region-b")
    assert other.lag() == len(USERS)
    assert len(drain(other, world.cache, world.producer)) == len(USERS)
    assert world.consumer.lag() == other.lag() == 0


# --- delete, then commit ------------------------------------------------------------------


def test_an_event_deletes_its_key_then_commits(world):
    rename(world, 1, "Ada Lovelace")
    assert get_user(world.cache, world.db, 1) == "Ada"  # stale until the event is handled
    assert world.consumer.lag() == 1
    message = invalidate_next(world.consumer, world.cache, world.producer)
    assert message.key() == b"user:1"
    assert world.consumer.lag() == 0
    assert world.cache.get("user:1") is None
    assert get_user(world.cache, world.db, 1) == "Ada Lovelace"
    assert cached(world) == {**USERS, 1: "Ada Lovelace"}  # the other keys are untouched


def test_nothing_to_read_returns_none_and_commits_nothing(world):
    assert invalidate_next(world.consumer, world.cache, world.producer) is None
    assert world.consumer.lag() == 0


def test_commit_is_cumulative_like_a_kafka_offset(world):
    for _ in range(3):
        publish_invalidation(world.producer, 1)
    messages = [world.consumer.poll() for _ in range(3)]
    assert world.consumer.lag() == 3
    world.consumer.commit(message=messages[1])  # commits offsets 0 and 1
    assert world.consumer.lag() == 1
    again = restarted(world)
    assert [m.offset() for m in drain(again, world.cache, world.producer)] == [2]


def test_crash_after_the_delete_before_the_commit_redelivers(world):
    rename(world, 2, "Grace Hopper")
    crashing = Faults(crash_at=[1]).wrap(world.consumer, "consumer", ["commit"])
    with pytest.raises(Crash, match="before consumer.commit"):
        invalidate_next(crashing, world.cache, world.producer)
    assert world.cache.get("user:2") is None and world.consumer.lag() == 1
    again = restarted(world)
    message = invalidate_next(again, world.cache, world.producer)
    assert (message.key(), message.offset()) == (b"user:2", 0)  # the same event, again
    assert again.lag() == 0
    assert get_user(world.cache, world.db, 2) == "Grace Hopper"


def test_crash_before_the_delete_leaves_the_key_stale_until_the_restart(world):
    rename(world, 3, "Edsger Dijkstra")
    failing = Faults(crash_at=[1]).wrap(world.cache, "cache", ["delete"])
    with pytest.raises(Crash, match="before cache.delete user:3"):
        invalidate_next(world.consumer, failing, world.producer)
    assert get_user(world.cache, world.db, 3) == "Edsger"
    assert world.consumer.lag() == 1
    assert [m.key() for m in drain(restarted(world), world.cache, world.producer)] == [b"user:3"]
    assert get_user(world.cache, world.db, 3) == "Edsger Dijkstra"


def test_redis_down_during_the_delete_propagates_and_commits_nothing(world):
    rename(world, 1, "Ada Lovelace")

    class Down:
        def delete(self, *keys):
            raise redis.ConnectionError("Redis is down")

    with pytest.raises(redis.ConnectionError):
        invalidate_next(world.consumer, Down(), world.producer)
    assert world.consumer.lag() == 1
    drain(restarted(world), world.cache, world.producer)
    assert get_user(world.cache, world.db, 1) == "Ada Lovelace"


def test_a_crash_at_any_step_loses_no_invalidation(cache):
    """Five writes; the invalidator crashes before step k (poll, delete or commit), for
    every k of a clean run, and is restarted: every key ends up deleted."""
    def run(crash_at: set[int]) -> tuple[int, int, dict]:
        cache.flushdb()
        world = types.SimpleNamespace(cache=cache, db=make_db(), clock=FakeClock())
        make_log(cache)
        for user_id, name in USERS.items():
            world.db.add_user(user_id, name)
            get_user(cache, world.db, user_id)
        world.producer = StreamProducer(cache, world.clock)
        for user_id in USERS:
            rename(world, user_id, USERS[user_id] + "!")
        faults = Faults(crash_at)
        fcache = faults.wrap(cache, "cache", ["delete"])
        restarts = 0
        while True:
            consumer = faults.wrap(restarted(world), "consumer", ["poll", "commit"])
            try:
                drain(consumer, fcache, world.producer)
                break
            except Crash:
                restarts += 1
        return len(faults.steps), restarts, {u: get_user(cache, world.db, u) for u in USERS}

    steps, restarts, names = run(set())
    assert steps == 3 * len(USERS) + 1 and restarts == 0  # poll, delete, commit each; last poll
    expected = {u: name + "!" for u, name in USERS.items()}
    assert names == expected
    for k in range(1, steps + 1):
        _, restarts, names = run({k})
        assert restarts == 1
        assert names == expected, f"crash before step {k} lost an invalidation"
    for plan in [{1, 2}, {2, 5}, {3, 4}, {6, 9, 12}]:  # restarted two and three times
        assert run(plan)[2] == expected


def test_committing_before_deleting_loses_the_event(world):
    """The wrong order, for contrast: the group moves past the event, the key stays stale."""
    rename(world, 1, "Ada Lovelace")
    message = world.consumer.poll()
    world.consumer.commit(message=message)
    # the process dies here, before its DEL
    again = restarted(world)
    assert again.poll() is None and again.lag() == 0
    assert get_user(world.cache, world.db, 1) == "Ada"
    assert 0 < world.cache.ttl("user:1") <= 300  # stale until the TTL


# --- lag -----------------------------------------------------------------------------------


def test_stale_keys_equal_the_lag_and_stale_time_equals_the_time_behind(world):
    for user_id in USERS:  # one write per second at t = 0..4
        rename(world, user_id, USERS[user_id] + " (new)")
        world.clock.advance(1)
    world.clock.advance(5)  # t = 10: the consumer is 10 s behind the first event
    for _ in range(len(USERS)):
        lag = world.consumer.lag()
        stale = [u for u in USERS if get_user(world.cache, world.db, u) == USERS[u]]
        assert len(stale) == lag
        message = invalidate_next(world.consumer, world.cache, world.producer)
        written_at = json.loads(message.value())["user_id"] - 1  # user N was written at t = N-1
        assert stale_for(message, world.clock) == pytest.approx(10 - written_at)
        assert world.consumer.lag() == lag - 1
    assert world.consumer.lag() == 0
    assert all(get_user(world.cache, world.db, u) == USERS[u] + " (new)" for u in USERS)


def test_the_stale_window_grows_with_the_lag(world):
    rename(world, 1, "Ada Lovelace")
    for seconds in (0, 5, 60):
        world.clock.advance(seconds)
        assert get_user(world.cache, world.db, 1) == "Ada"
    message = invalidate_next(world.consumer, world.cache, world.producer)
    assert stale_for(message, world.clock) == pytest.approx(65)


# --- poison messages ------------------------------------------------------------------------


@pytest.mark.parametrize("poison", [
    "{not json", "", "[]", json.dumps({"type": "user.changed"}),
    json.dumps({"user_id": 0}), json.dumps({"user_id": "1"}), json.dumps({"user_id": None}),
])
def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(world, poison):
    world.producer.produce(TOPIC, key="user:1", value=poison)
    rename(world, 1, "Ada Lovelace")  # right behind it, in the same partition
    handled = drain(world.consumer, world.cache, world.producer)
    assert [m.key() for m in handled] == [b"user:1", b"user:1"]
    assert world.consumer.lag() == 0
    assert get_user(world.cache, world.db, 1) == "Ada Lovelace"
    parked = StreamConsumer(world.cache, "dead-letter-reader")
    parked.subscribe([DEAD_LETTER_TOPIC])
    letter = parked.poll()
    assert letter.key() == b"user:1"
    body = json.loads(letter.value())
    assert body["value"] == poison
    assert body["error"].startswith(f"poison message {TOPIC}[{partition_for('user:1', 3)}]@0: ")
    assert parked.poll() is None


def test_a_crash_before_parking_the_poison_redelivers_it(world):
    world.producer.produce(TOPIC, key="user:1", value="{not json")
    world.producer.flush()
    crashing = Faults(crash_at=[1]).wrap(world.producer, "dead-letters", ["produce"])
    with pytest.raises(Crash):
        invalidate_next(world.consumer, world.cache, crashing)
    assert world.consumer.lag() == 1
    drain(restarted(world), world.cache, world.producer)
    parked = StreamConsumer(world.cache, "dead-letter-reader")
    parked.subscribe([DEAD_LETTER_TOPIC])
    assert parked.lag() == 1


def test_cache_key_of_names_the_poison_message(world):
    world.producer.produce(TOPIC, key="user:2", value='{"user_id": -3}')
    world.producer.flush()
    message = world.consumer.poll()
    with pytest.raises(ValueError, match=r"poison message cache-invalidation\[1\]@0: .*got -3"):
        cache_key_of(message)


# --- the stand-in's producer and bad input ---------------------------------------------------


def test_produce_queues_and_flush_delivers(world):
    world.producer.produce(TOPIC, key="user:1", value=json.dumps({"user_id": 1}))
    assert world.consumer.lag() == 0  # queued in the process: a crash now would lose it
    assert world.producer.flush() == 0
    assert world.consumer.lag() == 1


def test_a_given_timestamp_is_kept(world):
    world.producer.produce(TOPIC, key="user:1", value="{}", timestamp=1234)
    world.producer.flush()
    assert world.consumer.poll().timestamp() == (kafka_invalidation.TIMESTAMP_CREATE_TIME, 1234)


@pytest.mark.parametrize("call, error, message", [
    (lambda w: w.producer.produce("nope", key="user:1", value="{}"), LookupError, "no topic 'nope'"),
    (lambda w: w.producer.produce(TOPIC, key=None, value="{}"), ValueError, "key must be"),
    (lambda w: w.producer.produce(TOPIC, key="user:1", value=None), ValueError, "value must be"),
    (lambda w: w.producer.produce(TOPIC, key="user:1", value="{}", timestamp=-1), ValueError,
     "timestamp must be"),
    (lambda w: w.producer.produce(TOPIC, key="user:1", value="{}", timestamp=1.5), ValueError,
     "timestamp must be"),
    (lambda w: publish_invalidation(w.producer, 0), ValueError, "user_id must be"),
    (lambda w: publish_invalidation(w.producer, "1"), ValueError, "user_id must be"),
    (lambda w: create_topic(w.cache, "", 3), ValueError, "topic must be"),
    (lambda w: create_topic(w.cache, "a:b", 3), ValueError, "topic must be"),
    (lambda w: create_topic(w.cache, "other", 0), ValueError, "partitions must be"),
    (lambda w: create_topic(w.cache, TOPIC, 4), ValueError, "has 3 partitions, not 4"),
    (lambda w: StreamConsumer(w.cache, ""), ValueError, "group_id must be"),
    (lambda w: StreamConsumer(w.cache, None), ValueError, "group_id must be"),
    (lambda w: StreamConsumer(w.cache, "g").subscribe(TOPIC), TypeError, "topics must be a list"),
    (lambda w: StreamConsumer(w.cache, "g").subscribe(["nope"]), LookupError, "no topic 'nope'"),
    (lambda w: StreamConsumer(w.cache, "g").assign(TOPIC, [3]), ValueError, "partitions 0..2"),
    (lambda w: StreamConsumer(w.cache, "g").assign(TOPIC, [True]), ValueError, "partitions 0..2"),
    (lambda w: w.consumer.commit(message=None), ValueError, "commit needs a message"),
    (lambda w: StreamProducer(w.cache, clock=5), TypeError, "clock must be callable"),
    (lambda w: Faults(crash_at=[0]), ValueError, "crash_at holds steps"),
    (lambda w: Faults().wrap(w.cache, "cache", ["remove"]), ValueError, "has no method 'remove'"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(world, call, error, message):
    before = log_keys(world.cache)
    with pytest.raises(error, match=message):
        call(world)
    world.producer.flush()  # nothing was queued either
    assert log_keys(world.cache) == before


def test_commit_of_a_message_from_an_unassigned_partition_is_refused(world):
    for user_id in USERS:
        publish_invalidation(world.producer, user_id)
    message = world.consumer.poll()
    other = StreamConsumer(world.cache, "invalidator")
    other.assign(TOPIC, [p for p in range(3) if p != message.partition()])
    with pytest.raises(ValueError, match="commit needs a message from an assigned partition"):
        other.commit(message=message)
    assert world.consumer.lag() == len(USERS)


# --- the real client --------------------------------------------------------------------------


def test_kafka_clients_configures_manual_commit_and_key_hashing(monkeypatch):
    made = {}

    class Fake:
        def __init__(self, config):
            made[type(self).__name__] = config

        def subscribe(self, topics):
            made["subscribed"] = topics

    fake = types.ModuleType("confluent_kafka")
    fake.Producer = type("Producer", (Fake,), {})
    fake.Consumer = type("Consumer", (Fake,), {})
    monkeypatch.setitem(sys.modules, "confluent_kafka", fake)
    producer, consumer = kafka_clients("kafka-1:9092,kafka-2:9092")
    assert made["Consumer"]["enable.auto.commit"] is False
    assert made["Consumer"]["group.id"] == "cache-invalidator"
    assert made["Consumer"]["auto.offset.reset"] == "earliest"
    assert made["Producer"]["partitioner"] == "consistent_random"
    assert made["Producer"]["enable.idempotence"] is True
    assert made["Producer"]["acks"] == "all"  # every in-sync replica has it
    assert made["subscribed"] == [TOPIC]
    kafka_clients("kafka:9092", partitioner="murmur2_random")  # Java's hash
    assert made["Producer"]["partitioner"] == "murmur2_random"
    with pytest.raises(ValueError, match="bootstrap_servers must be"):
        kafka_clients("")
    with pytest.raises(ValueError, match="partitioner must be 'consistent_random'"):
        kafka_clients("kafka:9092", partitioner="random")


def test_kafka_clients_without_the_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails
    with pytest.raises(RuntimeError, match="pip install confluent-kafka"):
        kafka_clients("kafka:9092")


# --- wrong arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda w: invalidate_next(None, w.cache, w.producer), "poll"),
    (lambda w: invalidate_next(w.consumer, None, w.producer), "delete"),
    (lambda w: invalidate_next(w.consumer, w.cache, "producer"), "produce"),
    (lambda w: drain(w.consumer, {}, w.producer), "delete"),
    (lambda w: stale_for(None, w.clock), "timestamp"),
    (lambda w: stale_for(w.consumer.poll(), 5), "expected a callable, got 5"),
    (lambda w: Faults().wrap(w.cache, "cache", "delete"), "methods must be a list"),
])
def test_a_wrong_argument_is_a_clear_type_error_and_consumes_nothing(world, call, message):
    publish_invalidation(world.producer, 1)
    with pytest.raises(TypeError, match=message):
        call(world)
    assert world.consumer.lag() == 1  # nothing committed
    assert world.cache.get("user:1") == "Ada"  # nothing deleted


def test_stream_key_names_a_bad_topic():
    assert kafka_invalidation.stream_key(TOPIC, 2) == "log:cache-invalidation:2"
    with pytest.raises(ValueError, match="topic must be a non-empty string"):
        kafka_invalidation.stream_key("", 0)


# --- produce order is not commit order --------------------------------------------------------


def test_two_instances_that_commit_then_produce_can_reorder_an_update_consumer_ends_stale(cache):
    found = two_instances(apply_update, make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (8, 20)
    assert "A B B B A A" in [str(schedule) for schedule in found.bad]  # the one drawn


def test_versions_in_the_events_restore_commit_order(cache):
    found = two_instances(apply_if_newer, make_cache=reusing(cache))
    assert (len(found.bad), found.total) == (0, 20)


def test_a_delete_consumer_does_not_care_about_the_order():
    found = two_instances(apply_delete)
    assert (len(found.bad), found.total) == (0, 20)


def test_an_older_version_is_refused_a_newer_one_lands(cache):
    make_log(cache)
    db = make_db()
    db.add_user(1, "old")
    rename_and_publish(db, StreamProducer(cache), 1, "A")  # version 2
    rename_and_publish(db, StreamProducer(cache), 1, "B")  # version 3
    consumer = StreamConsumer(cache, "updater")
    consumer.subscribe([TOPIC])
    messages = [consumer.poll() for _ in range(2)]
    assert apply_if_newer(cache, messages[1]) is True  # B, version 3, first
    assert apply_if_newer(cache, messages[0]) is False  # A, version 2, refused
    assert cache.get("user:1") == "B" and cache.get("{user:1}:version") == "3"
    assert apply_all(consumer, cache, apply_if_newer) == []


def test_a_second_regions_group_deletes_before_its_replica_has_the_row(cache):
    """Region B: `cache` is its cache; its replica is one write behind the primary."""
    log = make_log(make_fake_cache())
    primary, replica = make_db(), make_db()
    for database in (primary, replica):
        database.add_user(1, "Ada")
    get_user(cache, replica, 1)
    primary.execute("UPDATE users SET name = 'Ada King' WHERE id = 1")
    publish_invalidation(StreamProducer(log), 1)
    region_b = StreamConsumer(log, "region-b-cache")
    region_b.subscribe([TOPIC])
    assert [m.key() for m in drain(region_b, cache, StreamProducer(log))] == [b"user:1"]
    assert get_user(cache, replica, 1) == "Ada"  # refilled from the lagging replica
    replica.execute("UPDATE users SET name = 'Ada King' WHERE id = 1")
    assert get_user(cache, replica, 1) == "Ada"  # stale until the TTL
    assert 0 < cache.ttl("user:1") <= 300


def test_the_topic_commands_on_the_page_name_the_durability_settings():
    page = PAGE.read_text(encoding="utf-8")
    commands = page.split("```bash", 2)[1].split("```", 1)[0]
    assert commands.count("--replication-factor 3") == 2
    assert commands.count("--config min.insync.replicas=2") == 2
    assert commands.count("--config unclean.leader.election.enable=false") == 2


@pytest.mark.parametrize("phrase", [
    # False: a partition keeps produce order; two instances can commit T1, T2 and
    # produce E2, E1 (8 of the 20 orders end stale with an update-style consumer).
    "so the events about one user are handled in the order they\n  were written",
    "per-key order is what guarantees it",
    # Needs replication factor, min.insync.replicas, acks=all, no unclean election.
    "| Event loss possible | not once the log has it |",
    # The common advice is quoted, not described as "bonus"; the reader race has a name.
    "as a bonus topic",
    "race the common advice misses",
    # The header of a table that quotes the common advice.
    "| Claim | Holds? | Evidence |",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase not in PAGE.read_text(encoding="utf-8")
