"""Event-driven invalidation: the service that writes the DB publishes an event after
the commit, and a separate cache service, consuming the events, deletes the cached key.

The broker is an in-process queue, and the consumer is stepped explicitly, so every
delay, loss and reordering below is replayed exactly. The reliable version, where no
event can be lost between the commit and the publish, is the outbox pattern
(docs/scaling/outbox.md).

Run it: ``python -m snippets.patterns.event_driven``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Clock,
    Database,
    FakeClock,
    check_int,
    check_name,
    check_ttl,
    make_db,
    user_key,
)
from snippets.patterns.cache_aside import get_user
from snippets.patterns.ttl import ClockedCache

# --8<-- [end:imports]


# --8<-- [start:event]
@dataclass(frozen=True)
class UserUpdated:
    """A committed change to one user. It carries the new name and the row's version,
    so that an update-style consumer can write it and a reader can tell old from new."""

    user_id: int
    name: str
    version: int
    committed_at: float  # by the service's clock

    def __post_init__(self) -> None:
        user_key(self.user_id)  # validates the id
        check_name(self.name)
        check_int("version", self.version)
# --8<-- [end:event]


# --8<-- [start:queue]
class EventQueue:
    """The broker, in process: events wait here until the cache service takes them.

    ``connected = False`` models a fire-and-forget channel (like Redis Pub/Sub) while
    the consumer is away: a published event reaches no one and is gone.
    """

    def __init__(self) -> None:
        self.events: deque[UserUpdated] = deque()
        self.connected = True

    def publish(self, event: UserUpdated) -> int:
        """Hand the event on; return how many consumers will get it (0 means lost)."""
        if not isinstance(event, UserUpdated):
            raise TypeError(f"unknown event type {type(event).__name__}: {event!r}")
        if not self.connected:
            return 0
        self.events.append(event)
        return 1

    def take(self) -> UserUpdated | None:
        return self.events.popleft() if self.events else None

    def __len__(self) -> int:
        return len(self.events)
# --8<-- [end:queue]


# --8<-- [start:write]
def update_user(db: Database, queue: EventQueue, clock: Clock, user_id: int,
                name: str) -> UserUpdated:
    """Commit the change, then publish it. The service never touches the cache."""
    user_key(user_id)  # validates the id before anything is written
    check_name(name)
    with db.transaction():
        changed = db.execute(
            "UPDATE users SET name = ?, version = version + 1 WHERE id = ?",
            (name, user_id),
        )
        if changed == 0:  # rolls back, publishes nothing
            raise LookupError(f"no user with id {user_id}")
        [(version,)] = db.query("SELECT version FROM users WHERE id = ?", (user_id,))
    event = UserUpdated(user_id, name, version, committed_at=clock())
    # Only after the commit: no consumer may act on a change that is not committed.
    queue.publish(event)
    return event
# --8<-- [end:write]


# --8<-- [start:consume]
MODES = ("delete", "update")


def apply_event(cache: Cache | ClockedCache, event: Any, mode: str = "delete",
                ttl: int = DEFAULT_TTL) -> None:
    """Apply one event to the cache: delete the key, or (update-style) write the
    value."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_ttl(ttl)
    if not isinstance(event, UserUpdated):
        raise TypeError(f"unknown event type {type(event).__name__}: {event!r}")
    key = user_key(event.user_id)
    if mode == "delete":
        cache.delete(key)  # the next read loads whatever the DB holds by then
    else:
        cache.set(key, event.name, ex=ttl)  # trusts that this event is the latest


class CacheService:
    """The separate service that owns the cache. It does nothing until it is stepped."""

    def __init__(self, cache: Cache | ClockedCache, queue: EventQueue, clock: Clock,
                 mode: str = "delete") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.cache, self.queue, self.clock, self.mode = cache, queue, clock, mode
        self.lags: list[float] = []  # seconds from each commit to its invalidation

    def step(self) -> UserUpdated | None:
        """Take one event, if any, and apply it."""
        event = self.queue.take()
        if event is not None:
            apply_event(self.cache, event, self.mode)
            self.lags.append(self.clock() - event.committed_at)
        return event

    def drain(self) -> int:
        """Apply every waiting event; return how many there were."""
        applied = 0
        while self.step() is not None:
            applied += 1
        return applied
# --8<-- [end:consume]


# --8<-- [start:measure]
def _world(ttl: int = DEFAULT_TTL) -> tuple[FakeClock, Cache, Database, EventQueue]:
    clock = FakeClock()
    # the model stands in for Redis: it has every command used here
    cache: Cache = ClockedCache(clock)  # type: ignore[assignment]
    db, queue = make_db(), EventQueue()
    db.add_user(1, "Ada")
    get_user(cache, db, 1, ttl)  # t=0: a read fills the cache
    return clock, cache, db, queue


class DelayWindow(NamedTuple):
    backlog: int  # events already waiting ahead of ours
    per_second: int  # events the consumer applies each second
    lag: float  # seconds from our commit to our DEL, as the consumer measured it
    stale_reads: int  # reads of the old name meanwhile, one read per second


def event_delay_window(backlog: int, per_second: int) -> DelayWindow:
    """Commit at t=0 behind ``backlog`` waiting events; each second the consumer
    applies ``per_second`` events, then a reader reads, until it sees the new name."""
    check_int("backlog", backlog, minimum=0)
    check_int("per_second", per_second)
    clock, cache, db, queue = _world()
    service = CacheService(cache, queue, clock)
    for other_id in range(2, backlog + 2):  # other users' changes, not yet consumed
        queue.publish(UserUpdated(other_id, "someone", 2, committed_at=clock()))
    update_user(db, queue, clock, 1, "Ada Lovelace")
    for stale_reads in range(backlog // per_second + 1):
        for _ in range(per_second):
            service.step()
        if get_user(cache, db, 1) == "Ada Lovelace":
            lag = service.lags[backlog]
            return DelayWindow(backlog, per_second, lag, stale_reads)
        clock.advance(1)
    raise AssertionError("still stale after the consumer reached our event")


def lost_event_window(ttl: int, write_at: int) -> int:
    """Seconds a reader (one read per second) sees the old name when the event is
    lost.

    The entry is filled at t=0 with ``ttl``; the write commits at ``write_at``, after
    that second's read, while the consumer is disconnected.
    """
    check_ttl(ttl)
    if check_int("write_at", write_at, minimum=0) >= ttl:
        raise ValueError(
            f"write_at must be before the TTL ends ({ttl}), got {write_at!r}")
    clock, cache, db, queue = _world(ttl)
    service = CacheService(cache, queue, clock)
    clock.advance(write_at)
    queue.connected = False
    update_user(db, queue, clock, 1, "Ada Lovelace")
    queue.connected = True
    for _ in range(ttl):
        clock.advance(1)
        service.drain()  # nothing arrives: the event is gone
        if get_user(cache, db, 1, ttl) == "Ada Lovelace":
            return int(clock()) - write_at
    raise AssertionError(
        f"still stale {ttl} s after the write: the TTL bound is broken")
# --8<-- [end:measure]


# --8<-- [start:orders]
def orders_ending_right(n_updates: int, mode: str) -> tuple[int, int]:
    """Deliver ``n_updates`` events of one user in every possible order; return how
    many orders leave a reader seeing the DB's final name, out of how many orders."""
    check_int("n_updates", n_updates)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    right = total = 0
    for order in itertools.permutations(range(1, n_updates + 1)):
        clock, cache, db, queue = _world()
        events = [update_user(db, queue, clock, 1, f"name {i}")
                  for i in range(1, n_updates + 1)]
        for i in order:  # the broker hands them over in this order, not the queue's
            apply_event(cache, events[i - 1], mode)
        right += get_user(cache, db, 1) == f"name {n_updates}"
        total += 1
    return right, total
# --8<-- [end:orders]


def print_delay_table(cases: list[tuple[int, int]]) -> None:
    """One row per (backlog, events applied per second)."""
    print("backlog (events)  consumer (events/s)  lag (s)  stale reads")
    for row in (event_delay_window(backlog, rate) for backlog, rate in cases):
        print(f"{row.backlog:>16}  {row.per_second:>19}  {row.lag:>7.0f}  "
              f"{row.stale_reads:>11}")


def main() -> None:
    """Narrate: a delayed event, a lost one, and two events delivered out of order."""
    clock = FakeClock()
    cache: Cache = ClockedCache(clock)  # type: ignore[assignment]  # a model of Redis
    db, queue = make_db(), EventQueue()
    service = CacheService(cache, queue, clock)
    db.add_user(1, "Ada")

    def read(truth: str) -> None:
        name = get_user(cache, db, 1, ttl=60)
        stale = f"  (stale: the DB says {truth!r})" if name != truth else ""
        print(f"t={clock():>2.0f}s  read  user:1 -> {name!r}{stale}")

    read("Ada")
    event = update_user(db, queue, clock, 1, "Ada Lovelace")
    print(f"t={clock():>2.0f}s  write user:1: UPDATE committed "
          f"(version {event.version}), UserUpdated published")
    read("Ada Lovelace")
    clock.advance(2)
    service.step()
    print(f"t={clock():>2.0f}s  cache service: DEL user:1, "
          f"{service.lags[-1]:.0f} s after the commit")
    read("Ada Lovelace")
    print(f"lost event: a write at t=10 stays stale for {lost_event_window(60, 10)} "
          "s, until the TTL ends at t=60")
    for mode in MODES:
        right, total = orders_ending_right(3, mode)
        print(f"{mode}-style consumer: {right} of {total} delivery orders of 3 events "
              "end right")


if __name__ == "__main__":
    main()
