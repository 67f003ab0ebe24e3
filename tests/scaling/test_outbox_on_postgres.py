"""The outbox on a real PostgreSQL, two relays at once. Relay A locks a batch and is held
while it publishes (a producer that waits for the test's signal: a condition, not a
sleep); relay B runs meanwhile. With ``FOR UPDATE SKIP LOCKED`` B takes the next rows,
and every event is published once. The plain relay (no lock) publishes A's rows a
second time: duplicates, which the invalidations tolerate, but nothing is lost either.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


from snippets.scaling.outbox import relay, unsent, update_user
from tests.engines import Server

EVENTS = 100


class Log:
    """A producer that records what it was given; ``hold`` makes its first produce
    wait until the test releases it."""

    def __init__(self, published: Counter[str], hold: bool = False) -> None:
        self.published = published
        self.inside, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def produce(self, topic: str, value: Any = None, key: Any = None,
                timestamp: int = 0) -> None:
        self.inside.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the relay")
        self.published[value] += 1

    def flush(self, timeout: float = -1) -> int:
        return 0


def two_relays(primary: Server, relay_function: Any) -> Counter[str]:
    from snippets.postgres import OUTBOX_SCHEMA, PostgresDatabase
    setup = PostgresDatabase(primary.url)
    setup.execute("DROP TABLE IF EXISTS outbox")
    setup.execute(OUTBOX_SCHEMA)
    setup.execute("DELETE FROM users")
    for user_id in range(1, EVENTS + 1):
        setup.add_user(user_id, "old")
        update_user(setup, user_id, "new")  # the row and its event, one transaction
    published: Counter[str] = Counter()
    held, free = Log(published, hold=True), Log(published)
    db_a, db_b = PostgresDatabase(primary.url), PostgresDatabase(primary.url)
    a = threading.Thread(target=relay_function, args=(db_a, held), kwargs={"limit": 50})
    a.start()
    assert held.inside.wait(30), "relay A never started publishing"
    relay_function(db_b, free, limit=EVENTS)  # B, while A holds its batch
    held.release.set()
    a.join(30)
    assert unsent(setup) == 0  # every event is on the log
    for db in (setup, db_a, db_b):
        db.close()
    return published


def test_two_relays_with_skip_locked_publish_every_event_once(postgres_primary):
    from snippets.postgres import relay_skip_locked
    published = two_relays(postgres_primary, relay_skip_locked)
    assert len(published) == EVENTS and set(published.values()) == {1}


def test_two_plain_relays_publish_every_event_and_half_of_them_twice(postgres_primary):
    published = two_relays(postgres_primary, relay)
    assert len(published) == EVENTS  # nothing lost
    assert Counter(published.values()) == {2: 50, 1: 50}  # A's batch, twice
