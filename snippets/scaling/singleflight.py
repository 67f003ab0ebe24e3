"""A stampede cure inside one process: one loader per key, the others share its outcome.

``Singleflight.do(key, fn)`` runs ``fn`` once for all the callers that ask for ``key``
while a call is in flight; they all get its result, or all get its error. Nothing is
cached: the next call after the flight lands runs ``fn`` again. ``forget(key)`` detaches
the flight in progress, so a caller that arrives after a write cannot be handed a value
read before it.

The leader's load is the kit's read path (``snippets/lease.py``) with no waiting: it
takes the lease on the key BEFORE its DB read and fills only if the lease still stands,
so a write in between refuses its old row; if another process holds the lease, the
leader loads without filling (singleflight coordinates its own process only).

Run it: ``python -m snippets.scaling.singleflight``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import threading
from collections.abc import Callable
from typing import Any, Protocol

from snippets.backends import (
    DEFAULT_TTL, Cache, Database, check_int, check_name, check_ttl, make_cache,
    make_db, user_key,
)
from snippets.faults import Intercept
from snippets.lease import invalidate, read_through

# --8<-- [end:imports]


class Event(Protocol):
    """What a waiter needs: threading.Event, or the benchmark's simulated event."""

    def wait(self, timeout: float | None = None) -> bool: ...
    def set(self) -> None: ...


# --8<-- [start:group]
class _Flight:
    def __init__(self, done: Event) -> None:
        self.done = done  # set once the loader has finished, either way
        self.value: Any = None
        self.error: BaseException | None = None


class Singleflight:
    """Collapse concurrent calls for the same key into one."""

    def __init__(self, new_event: Callable[[], Event] = threading.Event) -> None:
        if not callable(new_event):
            raise TypeError(f"new_event must make events, got {new_event!r}")
        self._lock = threading.Lock()  # guards _flights only; never held while loading
        self._flights: dict[str, _Flight] = {}
        self._new_event = new_event

    def do(self, key: str, fn: Callable[[], Any]) -> Any:
        """Return ``fn()``, running it only if no call for ``key`` is in flight."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(self._new_event())
        if not leader:  # a call is in flight: wait for it and share its outcome
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = fn()
        except BaseException as error:
            flight.error = error  # the waiters get the same error, not a retry each
            raise
        finally:
            with self._lock:
                if self._flights.get(key) is flight:  # forget() may have detached it
                    del self._flights[key]
            flight.done.set()
        return flight.value

    def forget(self, key: str) -> None:
        """Detach the flight for ``key``: callers from now on start a fresh one."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        with self._lock:
            self._flights.pop(key, None)
# --8<-- [end:group]

    def in_flight(self, key: str) -> bool:
        with self._lock:
            return key in self._flights


# --8<-- [start:read]
def get_user_once(
    cache: Cache,
    db: Database,
    group: Singleflight,
    user_id: int,
    ttl: int = DEFAULT_TTL,
) -> str | None:
    """Cache-aside read in which concurrent misses in this process share one DB read."""
    key, ttl = user_key(user_id), check_ttl(ttl)
    cached = cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]  # replies are decoded: a str

    def load() -> str | None:
        rows = db.query("SELECT name FROM users WHERE id = ?", (user_id,))
        return rows[0][0] if rows else None

    # The leader: look again, take the lease, load, fill with the lease; if another
    # process holds the lease, load without filling (waits=0: no waiting on Redis).
    return group.do(key, lambda: read_through(cache, key, load, ttl, waits=0))


def update_user(
    cache: Cache, db: Database, group: Singleflight, user_id: int, name: str
) -> None:
    """Write the DB, delete the key and its lease, and detach any load that began
    before the write."""
    key = user_key(user_id)
    check_name(name)
    if db.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id)) == 0:
        raise LookupError(f"no user with id {user_id}")
    invalidate(cache, key)  # DEL key and lease: a fill of the old row is refused
    group.forget(key)  # no caller from now on may join a flight of the old row
# --8<-- [end:read]


# --8<-- [start:write-race]
def singleflight_read(cache: Cache, db: Database) -> str | None:
    """A read of user 1 through a fresh group (alone, it leads), as an actor."""
    return get_user_once(cache, db, Singleflight(), 1)
# --8<-- [end:write-race]


class Joins:
    """Counts the callers waiting on a flight, so a demo can act once they all have.

    Pass ``joins.new_event`` to ``Singleflight``: every waiter's ``wait()`` is counted.
    """

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.count = 0

    def new_event(self) -> Event:
        joins = self

        class CountedEvent(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                with joins.changed:
                    joins.count += 1
                    joins.changed.notify_all()
                return super().wait(timeout)

        return CountedEvent()

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.count >= n, timeout=timeout):
                raise RuntimeError(
                    f"only {self.count} of {n} callers joined the flight")


def concurrent_misses(n: int) -> int:
    """Let ``n`` threads miss on one key at once; return how many DB reads they caused.

    The one load is held until the other ``n - 1`` callers are all waiting on its
    flight, so the outcome does not depend on thread timing: no sleeps, just events.
    """
    check_int("n", n)  # readers
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")
    joins = Joins()
    group = Singleflight(new_event=joins.new_event)
    # The one load waits until every other reader has missed and joined its flight.
    held: Any = Intercept(db, "query", lambda: joins.wait_for(n - 1))
    results: list[str | None] = []

    def reader() -> None:
        results.append(get_user_once(cache, held, group, 1))

    threads = [threading.Thread(target=reader) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if results != ["Ada"] * n:
        raise RuntimeError(f"readers got {results!r}")
    return db.reads


# --8<-- [start:hazard]
def late_caller(forget: bool) -> tuple[str, str]:
    """Replay: a load reads the row; a write commits; a new caller asks; the load lands.

    Return (what the new caller got, what the DB holds). Without ``forget``, the
    new caller joins the old flight and gets the row as it was before the write.
    """
    if not isinstance(forget, bool):
        raise TypeError(f"forget must be True or False, got {forget!r}")
    db = make_db()
    db.add_user(1, "Ada")
    joins = Joins()
    group = Singleflight(new_event=joins.new_event)
    selected, resume = threading.Event(), threading.Event()

    def load() -> str:
        name = db.query("SELECT name FROM users WHERE id = 1")[0][0]
        if not selected.is_set():  # the first load stalls after its SELECT
            selected.set()
            resume.wait(10)
        return name

    first = threading.Thread(target=group.do, args=("user:1", load))
    first.start()
    selected.wait(10)  # step 1: the first load has read "Ada"
    db.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")  # step 2
    if forget:
        group.forget("user:1")
    got: list[str] = []
    late = threading.Thread(target=lambda: got.append(group.do("user:1", load)))
    late.start()  # step 3: a caller that arrives after the write committed
    if forget:
        late.join()  # it starts its own flight and does not wait for the stalled one
    else:
        joins.wait_for(1)  # it has joined the stalled flight
    resume.set()  # step 4: the first load lands
    first.join()
    late.join()
    return got[0], db.query("SELECT name FROM users WHERE id = 1")[0][0]
# --8<-- [end:hazard]


def main() -> None:
    """Narrate: 50 threads miss at once and share one load; a write forgets it."""
    print(f"50 threads miss user:1 at once -> DB reads: {concurrent_misses(50)}")
    cache, db = make_cache(), make_db()
    db.add_user(1, "Ada")
    group = Singleflight()

    def read() -> None:
        name = get_user_once(cache, db, group, 1)
        print(f"read  user:1 -> {name!r} (DB reads: {db.reads})")

    read()
    update_user(cache, db, group, 1, "Ada Lovelace")
    print("write user:1 -> UPDATE, DEL key and lease, forget"
          f" (in flight: {group.in_flight('user:1')})")
    read()


if __name__ == "__main__":
    main()
