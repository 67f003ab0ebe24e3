"""Kafka-based invalidation: keyed events on a partitioned log, deleted by a consumer
group.

The pattern code (``publish_invalidation``, ``invalidate_next``) uses only calls that
the confluent-kafka client has: ``produce``/``flush`` on a producer, ``poll``/``commit``
on a consumer, ``key()``/``value()``/``partition()``/``offset()``/``timestamp()`` on a
message. With no broker installed it runs on a stand-in of the same shape: Redis Streams
consumer groups, one stream per partition (fakeredis by default, a real Redis with
``REDIS_URL``). ``kafka_clients()`` builds the real clients instead.

Run it: ``python -m snippets.scaling.kafka_invalidation``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import json
import time
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import redis

from snippets.backends import (
    DEFAULT_TTL, Cache, Clock, Database, check_name, make_cache, make_db, user_key,
)
from snippets.faults import Crash, Faults
from snippets.patterns.cache_aside import get_user
from snippets.scenarios import cache_agrees_with_db

if TYPE_CHECKING:  # the explorer is loaded only by two_instances, when it runs
    from snippets.explorer import Exploration, Returns

# --8<-- [end:imports]


class Message(Protocol):
    """What the pattern reads from a record; confluent_kafka.Message has all of it."""

    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def error(self) -> Any: ...


class Producer(Protocol):
    def produce(self, topic: str, value: str | bytes | None = None,
                key: str | bytes | None = None, timestamp: int = 0) -> None: ...
    def flush(self, timeout: float = ...) -> int: ...


class Consumer(Protocol):
    def poll(self, timeout: float = ...) -> Message | None: ...
    def commit(self, message: Message | None = None,
               asynchronous: bool = ...) -> Any: ...


# --8<-- [start:partitioner]
def partition_for(key: str | bytes, partitions: int, hash: str = "crc32") -> int:
    """The partition of a key: a hash of the key modulo the partition count.

    ``"crc32"``: librdkafka's default partitioner for keyed records
    (``consistent_random``), so that of confluent-kafka in Python, Go and .NET
    out of the box. ``"murmur2"``: the Java client's default, and librdkafka's
    ``murmur2_random``. One key, one partition, for one hash: a key's events stay
    in the order they were produced.
    """
    data = key.encode() if isinstance(key, str) else key
    if not isinstance(data, bytes) or not data:
        raise ValueError(f"key must be a non-empty str or bytes, got {key!r}")
    if (isinstance(partitions, bool) or not isinstance(partitions, int)
            or partitions <= 0):
        raise ValueError(
            f"partitions must be a positive integer, got {partitions!r}")
    if hash == "crc32":
        return zlib.crc32(data) % partitions
    if hash == "murmur2":
        return (murmur2(data) & 0x7FFFFFFF) % partitions  # Java's toPositive
    raise ValueError(f"hash must be 'crc32' or 'murmur2', got {hash!r}")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's ``Utils.murmur2``): a signed 32-bit int."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little") * m & mask
        k = (k ^ k >> 24) * m & mask
        h = (h * m & mask) ^ k
    rest = data[whole:]
    for shift, byte in reversed(list(enumerate(rest))):
        h ^= byte << (8 * shift)
    if rest:
        h = h * m & mask
    h = (h ^ h >> 13) * m & mask
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h
# --8<-- [end:partitioner]


# --8<-- [start:real]
def kafka_clients(bootstrap_servers: str, group_id: str = "cache-invalidator",
                  partitioner: str = "consistent_random") -> tuple[Any, Any]:
    """A producer and a subscribed consumer on a real Kafka cluster: the
    pattern functions below take them unchanged. If any producer of the topic
    is a Java client, pass ``partitioner="murmur2_random"``: the same key must
    hash to the same partition in every producer."""
    try:
        from confluent_kafka import Consumer, Producer
    except ImportError as error:
        raise RuntimeError("pip install confluent-kafka to use a real "
                           "cluster") from error
    if not isinstance(bootstrap_servers, str) or not bootstrap_servers:
        raise ValueError("bootstrap_servers must be 'host:port,...', got "
                         f"{bootstrap_servers!r}")
    if partitioner not in ("consistent_random", "murmur2_random"):
        raise ValueError("partitioner must be 'consistent_random' (CRC32) or "
                         f"'murmur2_random' (Java's), got {partitioner!r}")
    producer = Producer({
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,  # retries cannot duplicate or reorder
        "acks": "all",  # stored by every in-sync replica (idempotence needs it)
        "partitioner": partitioner,  # consistent_random: CRC32 of the key, as above
    })
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,  # we commit, after the DEL
        "auto.offset.reset": "earliest",  # a new group starts at the start
    })
    consumer.subscribe([TOPIC])
    return producer, consumer
# --8<-- [end:real]


# --8<-- [start:stand-in]
TOPICS_KEY = "log:topics"  # hash: topic name -> partition count
TIMESTAMP_CREATE_TIME = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME: set by the producer


def stream_key(topic: str, partition: int) -> str:
    """The Redis stream holding one partition: ``log:<topic>:<partition>``."""
    return f"log:{_check_name('topic', topic)}:{partition}"


def create_topic(log: Cache, topic: str, partitions: int) -> None:
    """Create a topic with a fixed partition count (an admin client's job)."""
    _check_name("topic", topic)
    partition_for(b"x", partitions)  # validates the count
    existing = log.hget(TOPICS_KEY, topic)
    if existing is not None and int(existing) != partitions:
        raise ValueError(f"topic {topic!r} has {int(existing)} partitions, "
                         f"not {partitions}")
    log.hset(TOPICS_KEY, topic, partitions)


def partitions_of(log: Cache, topic: str) -> int:
    count = log.hget(TOPICS_KEY, _check_name("topic", topic))
    if count is None:
        raise LookupError(f"no topic {topic!r}: topics are not auto-created")
    return int(count)


class StreamProducer:
    """confluent_kafka.Producer's produce/flush, writing to Redis streams.

    As in a real producer, produce() only queues the record in this process
    and flush() delivers the queue: a crash in between loses the queue (a real
    producer may have sent part of it already; this is its worst case)."""

    def __init__(self, log: Cache, clock: Clock = time.time) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self.log, self.clock = log, clock
        self._queue: list[tuple[str, dict]] = []

    def produce(self, topic: str, value: str | bytes | None = None,
                key: str | bytes | None = None, timestamp: int = 0) -> None:
        """Queue a keyed record for its key's partition. ``timestamp`` is in
        milliseconds, as in confluent-kafka; 0 means now, by the clock."""
        if not isinstance(value, (str, bytes)):
            raise ValueError(f"value must be str or bytes, got {value!r}")
        if (isinstance(timestamp, bool) or not isinstance(timestamp, int)
                or timestamp < 0):
            raise ValueError("timestamp must be milliseconds (an int >= 0), "
                             f"got {timestamp!r}")
        count = partitions_of(self.log, topic)
        partition = partition_for(key, count)  # type: ignore[arg-type]  # refuses None
        ts = timestamp or round(self.clock() * 1000)
        fields = {"key": key, "value": value, "ts": ts}
        self._queue.append((stream_key(topic, partition), fields))

    def flush(self, timeout: float = -1) -> int:
        """Deliver every queued record; return how many still wait (0)."""
        while self._queue:
            stream, fields = self._queue[0]
            # "0-*": Redis numbers the entries 0-1, 0-2, ...: gap-free offsets
            self.log.xadd(stream, fields, id="0-*")
            self._queue.pop(0)
        return 0


class StreamMessage:
    """A record of the stand-in log, read with confluent_kafka.Message's
    methods: topic(), partition(), offset(), key(), value(), timestamp()."""

    def __init__(self, topic: str, partition: int, stream_id: str,
                 fields: dict) -> None:
        self._topic, self._partition = topic, partition
        self.stream_id = stream_id
        self._offset = int(stream_id.split("-")[1]) - 1  # 0-1 is offset 0
        self._key, self._value = _bytes(fields["key"]), _bytes(fields["value"])
        self._timestamp_ms = int(fields["ts"])

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_CREATE_TIME, self._timestamp_ms)

    def error(self) -> None:
        return None  # no broker, no broker errors

    def __repr__(self) -> str:
        return (f"<{self._topic}[{self._partition}]@{self._offset} "
                f"key={self._key!r}>")


class StreamConsumer:
    """confluent_kafka.Consumer's subscribe/poll/commit, with
    enable.auto.commit=False and auto.offset.reset=earliest, on Redis
    Streams consumer groups.

    One consumer owns the partitions it is given: no coordinator, no
    rebalancing. Records delivered but not committed stay pending under one
    reader name per group, so the next owner of the partitions gets them
    again first: Kafka's restart from the committed offset."""

    READER = "owner"

    def __init__(self, log: Cache, group_id: str) -> None:
        self.log, self.group_id = log, _check_name("group_id", group_id)
        self._assigned: list[tuple[str, int]] = []
        self._position: dict[tuple[str, int], str] = {}  # lost on a crash
        self._turn = 0

    def subscribe(self, topics: Iterable[str]) -> None:
        """Take every partition of the topics (nobody else in the group can
        share them: the stand-in never rebalances)."""
        if isinstance(topics, str):
            raise TypeError(f"topics must be a list, got {topics!r}")
        for topic in topics:
            self.assign(topic, range(partitions_of(self.log, topic)))

    def assign(self, topic: str, partitions: Iterable[int]) -> None:
        """Take some partitions of a topic, as Kafka's assign() does."""
        count = partitions_of(self.log, topic)
        for p in partitions:
            if isinstance(p, bool) or not isinstance(p, int) or (
                    not 0 <= p < count):
                raise ValueError(f"{topic!r} has partitions 0..{count - 1}, "
                                 f"got {p!r}")
            try:  # id "0": a new group starts from the earliest record
                self.log.xgroup_create(stream_key(topic, p), self.group_id,
                                       id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):  # "group exists" is fine
                    raise
            self._assigned.append((topic, p))
            self._position[(topic, p)] = "0-0"

    def poll(self, timeout: float = 0) -> StreamMessage | None:
        """The next record, taking the partitions in turn; None when caught
        up. It never blocks: ``timeout`` is accepted and ignored."""
        for i in range(len(self._assigned)):
            index = (self._turn + i) % len(self._assigned)
            message = self._next_in(*self._assigned[index])
            if message is not None:
                self._turn = index + 1
                return message
        return None

    def _next_in(self, topic: str, partition: int) -> StreamMessage | None:
        stream, tp = stream_key(topic, partition), (topic, partition)
        # First what a previous owner got but never committed, then new ones.
        for start in (self._position[tp], ">"):
            reply: Any = self.log.xreadgroup(self.group_id, self.READER,
                                             {stream: start}, count=1)
            entries = reply[0][1] if reply else []  # [[stream, [(id, fields)]]]
            if entries:
                stream_id, fields = entries[0]
                self._position[tp] = _text(stream_id)
                return StreamMessage(topic, partition, self._position[tp],
                                     fields)
        return None

    def commit(self, message: Message | None = None,
               asynchronous: bool = True) -> None:
        """Commit ``message`` and all before it in its partition (committed
        offset = offset + 1). Always synchronous here."""
        if not isinstance(message, StreamMessage) or (
                (message.topic(), message.partition()) not in self._assigned):
            raise ValueError("commit needs a message from an assigned "
                             f"partition, got {message!r}")
        stream = stream_key(message.topic(), message.partition())
        pending = self.log.xpending_range(stream, self.group_id, min="-",
                                          max=message.stream_id, count=10_000)
        if pending:
            self.log.xack(stream, self.group_id,
                          *[entry["message_id"] for entry in pending])

    def lag(self) -> int:
        """Records not committed yet, over the assigned partitions: the log
        end offset minus the committed offset, summed."""
        total = 0
        for topic, partition in self._assigned:
            stream = stream_key(topic, partition)
            group = next(g for g in self.log.xinfo_groups(stream)
                         if _text(g["name"]) == self.group_id)
            after = f"({_text(group['last-delivered-id'])}"
            unread = self.log.xrange(stream, min=after, max="+") or []
            total += int(group["pending"]) + len(unread)
        return total

    def close(self) -> None:
        self._assigned.clear()


def _check_name(what: str, value: object) -> str:
    """A topic or group name: it becomes part of a Redis key, so no ':' in it."""
    if not isinstance(value, str) or not value or ":" in value:
        raise ValueError(
            f"{what} must be a non-empty string without ':', got {value!r}")
    return value


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
# --8<-- [end:stand-in]


def require(*specs: tuple) -> None:
    """``require((a, "m1", "m2"), (b, "m3"))``: TypeError unless ``a`` has
    methods m1 and m2 and ``b`` has m3 ("__call__": is callable). A clear
    error for a wrong argument, before anything is done."""
    for target, *methods in specs:
        for method in methods:
            if not callable(getattr(target, method, None)):
                wanted = ("a callable" if method == "__call__"
                          else f"an object with a {method}() method")
                raise TypeError(f"expected {wanted}, got {target!r}")


# --8<-- [start:publish]
TOPIC = "cache-invalidation"
DEAD_LETTER_TOPIC = "cache-invalidation.dead-letter"


def invalidation_event(user_id: int) -> tuple[str, str]:
    """The event "user N changed": its key (the entity) and its value."""
    key = user_key(user_id)  # validates user_id
    return key, json.dumps({"type": "user.changed", "user_id": user_id})


def publish_invalidation(producer: Producer, user_id: int) -> None:
    """Put the event on the log, keyed by the entity: one partition, in order.
    """
    key, value = invalidation_event(user_id)
    producer.produce(TOPIC, value=value, key=key)
    if producer.flush(10) != 0:  # a real producer sends in the background
        raise RuntimeError(f"the event for {key} was not delivered")
# --8<-- [end:publish]


# --8<-- [start:consume]
def cache_key_of(message: Message) -> str:
    """The key an event invalidates; ValueError if it can never be read."""
    try:
        event = json.loads(message.value() or b"")
        return user_key(event["user_id"])
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"poison message {message.topic()}"
                         f"[{message.partition()}]@{message.offset()}: "
                         f"{error!r}") from error


def invalidate_next(consumer: Consumer, cache: Cache,
                    dead_letters: Producer) -> Message | None:
    """Handle one event: delete its key, then commit. None if caught up."""
    require((consumer, "poll", "commit"), (cache, "delete"),
            (dead_letters, "produce", "flush"))
    message = consumer.poll(1.0)
    if message is None:
        return None
    if message.error():
        raise RuntimeError(f"consumer error: {message.error()}")
    try:
        key = cache_key_of(message)
    except ValueError as error:  # poison: park it, or the partition stalls
        value = (message.value() or b"").decode(errors="replace")
        dead_letters.produce(DEAD_LETTER_TOPIC, key=message.key(),
                             value=json.dumps({"error": str(error),
                                               "value": value}))
        if dead_letters.flush(10) != 0:
            raise RuntimeError("the dead letter was not delivered") from error
    else:
        cache.delete(key)  # idempotent: a redelivery deletes nothing new
    # Only now. A crash before this line redelivers the event: at-least-once.
    consumer.commit(message=message, asynchronous=False)
    return message
# --8<-- [end:consume]


# --8<-- [start:drain]
def drain(consumer: Consumer, cache: Cache,
          dead_letters: Producer) -> list[Message]:
    """Handle events until caught up; return them in the order handled.
    An exception (say Redis is down for the DEL) ends the run before the
    commit: restart the consumer, and the event comes back."""
    handled: list[Message] = []
    while True:
        message = invalidate_next(consumer, cache, dead_letters)
        if message is None:
            return handled
        handled.append(message)


def stale_for(message: Message, clock: Clock) -> float:
    """How long the event's key has been stale: since the event's timestamp
    (the write), until now (the DEL)."""
    require((message, "timestamp"), (clock, "__call__"))
    _, produced_ms = message.timestamp()
    return clock() - produced_ms / 1000
# --8<-- [end:drain]


# --8<-- [start:order]
def update_event(user_id: int, name: str, version: int) -> tuple[str, str]:
    """The event "user N is now <name>", which carries the value, and the version
    of the row that the write committed."""
    key = user_key(user_id)  # validates user_id
    event = {"type": "user.updated", "user_id": user_id, "name": check_name(name),
             "version": version}
    return key, json.dumps(event)


def rename_and_publish(db: Database, producer: Producer, user_id: int,
                       name: str) -> None:
    """One app instance: commit the rename, reading the version it wrote in the same
    transaction; then produce the event. Nothing orders this produce against the
    produce of another instance that committed a moment later."""
    with db.transaction():
        db.execute("UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
                   (name, user_id))
        [(version,)] = db.query("SELECT version FROM users WHERE id = ?", (user_id,))
    key, event = update_event(user_id, name, version)
    producer.produce(TOPIC, value=event, key=key)
    if producer.flush(10) != 0:
        raise RuntimeError(f"the event for {key} was not delivered")


def apply_update(cache: Cache, message: Message) -> bool:
    """An update-style consumer: the event's value goes into the cache, in log order."""
    event = json.loads(message.value() or b"")
    return bool(cache.set(user_key(event["user_id"]), event["name"], ex=DEFAULT_TTL))


# Set the value only if the event's version is newer than the last one applied; the
# version key shares the value's Redis Cluster slot (hash tag), as the script needs.
SET_IF_NEWER = """
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) <= seen then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""


def apply_if_newer(cache: Cache, message: Message) -> bool:
    """The same, keeping only the newest version: False if the event is older."""
    event = json.loads(message.value() or b"")
    key = user_key(event["user_id"])
    return cache.eval(SET_IF_NEWER, 2, key, f"{{{key}}}:version", event["name"],
                      event["version"], DEFAULT_TTL) == 1


def apply_delete(cache: Cache, message: Message) -> bool:
    """This page's invalidator, as an ``apply``: delete the key, whatever the order."""
    cache.delete(cache_key_of(message))
    return True


def apply_all(consumer: Consumer, cache: Cache,
              apply: Callable[[Cache, Message], bool]) -> list[bool]:
    """Apply every event on the log, in order, committing each after it."""
    applied = []
    while (message := consumer.poll(1.0)) is not None:
        applied.append(apply(cache, message))
        consumer.commit(message=message, asynchronous=False)
    return applied
# --8<-- [end:order]


# --8<-- [start:order-race]
def two_instances(apply: Callable[[Cache, Message], bool],
                  make_cache: Callable[[], Cache] | None = None) -> Exploration:
    """Two app instances rename user 1 ("A" and "B"), each committing, then
    producing; every interleaving of their steps. Then a consumer applies the whole
    log with ``apply``. Bad: the cache ends with a name the DB no longer holds."""
    from snippets.explorer import explore  # loaded only by those who explore

    def setup(cache: Cache, db: Database) -> None:
        create_topic(cache, TOPIC, 3)
        db.add_user(1, "old")

    def instance(name: str) -> Callable[[Cache, Database], None]:
        return lambda cache, db: rename_and_publish(db, StreamProducer(cache), 1, name)

    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        consumer = StreamConsumer(cache, "cache-updater")  # caught up, at the end
        consumer.subscribe([TOPIC])
        apply_all(consumer, cache, apply)
        return cache_agrees_with_db(cache, db, returns)

    return explore({"A": instance("A"), "B": instance("B")}, setup, check,
                   make_cache=make_cache, reduce=False)
# --8<-- [end:order-race]


def make_log(log: Cache, partitions: int = 3) -> Cache:
    """Create the invalidation topic and its dead-letter topic on a log."""
    create_topic(log, TOPIC, partitions)
    create_topic(log, DEAD_LETTER_TOPIC, 1)
    return log


def main() -> None:
    """Narrate: partitioning, DEL then commit, a crash, a poison message."""
    cache, db = make_cache(), make_db()
    log = make_log(cache)  # the stand-in log lives in Redis too, under log:*
    producer, consumer = StreamProducer(log), StreamConsumer(log, "invalidator")
    consumer.subscribe([TOPIC])
    for user_id, name in [(1, "Ada"), (2, "Grace"), (3, "Edsger")]:
        db.add_user(user_id, name)
        get_user(cache, db, user_id)
    print("partitions:  " + ", ".join(
        f"user:{u} -> {partition_for(f'user:{u}', 3)}" for u in (1, 2, 3)))

    db.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")
    publish_invalidation(producer, 1)
    print(f"write user:1, event on the log: cache holds "
          f"{cache.get('user:1')!r}, lag {consumer.lag()}")
    message: Any = invalidate_next(consumer, cache, producer)
    print(f"consumer:    DEL {message.key().decode()}, commit offset "
          f"{message.offset() + 1}: cache holds {cache.get('user:1')!r}, "
          f"lag {consumer.lag()}")

    db.execute("UPDATE users SET name = 'Grace Hopper' WHERE id = 2")
    publish_invalidation(producer, 2)
    crashing = Faults(crash_at=[1]).wrap(consumer, "consumer", ["commit"])
    try:
        invalidate_next(crashing, cache, producer)
    except Crash as crash:
        print(f"consumer:    DEL user:2, then {crash}; lag {consumer.lag()}")
    restarted = StreamConsumer(log, "invalidator")
    restarted.subscribe([TOPIC])
    again: Any = invalidate_next(restarted, cache, producer)
    print(f"restarted:   {again.key().decode()} redelivered, DEL again "
          f"(harmless), lag {restarted.lag()}")

    producer.produce(TOPIC, key="user:3", value="{not json")
    publish_invalidation(producer, 3)
    drain(restarted, cache, producer)
    parked = StreamConsumer(log, "dead-letter-reader")
    parked.subscribe([DEAD_LETTER_TOPIC])
    print(f"poison:      dead-lettered ({parked.lag()} parked), the next "
          f"event handled: user:3 cached {cache.get('user:3')!r}")


if __name__ == "__main__":
    main()
