"""The virtual-time world: ordinary blocking code run as many actors on a virtual clock.

A discrete-event simulation whose actors are plain Python functions, so the stampede
pages can measure the real code of each cure under load, exactly and the same on every
machine:

- every actor is a greenlet (a function with its own stack); exactly one runs at a time,
  until it waits: for a cache round trip, a database query, a sleep, an event or a
  pub/sub message. The scheduler then wakes the actor due first and moves the clock;
- ``fakeredis_on(clock)`` points fakeredis at the virtual clock, so keys and locks
  expire in virtual time; ``SimCache`` makes every Redis command cost one round trip,
  and ``SimPubSub`` delivers messages in virtual time;
- ``SimDatabase`` puts the database behind a pool of a few connections, each query
  holding one for a fixed latency.

What it leaves out: CPU time (code runs in zero virtual time), network jitter, Redis's
own queueing. It imports nothing from the pages: the pages use it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import fakeredis._socket._base as fakeredis_base
import greenlet

from snippets.backends import Cache, Database, FakeClock


class _Stopped(BaseException):
    """Unwinds an actor that the simulation abandons (after an error or a deadlock)."""


class _Wake:
    """One pending wake-up of an actor; the first of its heap entries to come due
    wins."""

    def __init__(self, actor: greenlet.greenlet) -> None:
        self.actor, self.fired, self.by_signal = actor, False, False


class Simulation:
    """A discrete-event simulation whose actors are ordinary blocking Python functions.

    Each actor is a greenlet: a function with its own stack that runs until it waits.
    ``spawn(fn, at)`` starts one at virtual time ``at``. Inside an actor, ``sleep``,
    ``SimEvent.wait`` and ``SimPool.acquire`` hand the turn back to the scheduler, which
    wakes the actor due first (ties: first scheduled) and moves the clock to its time.
    Nothing runs in parallel, so a run is the same on every machine.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.errors: list[BaseException] = []
        self.stopped = False
        self._hub = greenlet.getcurrent()  # the scheduler runs where it was made
        self._heap: list[tuple[float, int, _Wake]] = []
        self._seq = itertools.count()
        self._actors: list[greenlet.greenlet] = []

    def spawn(self, fn: Callable[[], object], at: float | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"an actor must be a function, got {fn!r}")
        if at is not None and not at >= self.clock():
            raise ValueError(
                f"cannot start an actor in the past: at={at!r}, now={self.clock()}")

        def body() -> None:
            try:
                fn()
            except _Stopped:
                pass
            except BaseException as error:  # reported by run(), which stops everything
                self.errors.append(error)

        actor = greenlet.greenlet(body, parent=self._hub)
        self._actors.append(actor)
        self._push(_Wake(actor), self.clock() if at is None else at)

    def sleep(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"cannot sleep {seconds!r} seconds")
        actor = self._me()
        self._push(_Wake(actor), self.clock() + seconds)
        self._switch()

    def run(self) -> None:
        """Run until no actor can move; re-raise the first error an actor raised."""
        if greenlet.getcurrent() is not self._hub:
            raise RuntimeError("run() must be called where the Simulation was created")
        try:
            while self._heap and not self.errors:
                at, _, wake = heapq.heappop(self._heap)
                if wake.fired or wake.actor.dead:
                    continue
                wake.fired = True
                self.clock.now = max(self.clock.now, at)
                wake.actor.switch()  # runs the actor until it waits or ends
            stuck = sum(bool(actor) for actor in self._actors)  # started, not finished
            if stuck and not self.errors:
                raise RuntimeError(
                    f"deadlock: {stuck} actors wait for something that never comes")
        finally:
            self.stopped = True
            for actor in self._actors:
                if actor:
                    actor.throw(_Stopped)
        if self.errors:
            raise self.errors[0]

    def event(self) -> SimEvent:
        return SimEvent(self)

    def _me(self) -> greenlet.greenlet:
        actor = greenlet.getcurrent()
        if actor is self._hub or actor.parent is not self._hub:
            raise RuntimeError("only a simulated actor can wait in virtual time")
        return actor

    def _push(self, wake: _Wake, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), wake))

    def _switch(self) -> None:
        if self.stopped:
            raise _Stopped
        self._hub.switch()
        if self.stopped:
            raise _Stopped

    def _wait(self, waiters: list[_Wake], timeout: float | None) -> bool:
        wake = _Wake(self._me())
        waiters.append(wake)
        if timeout is not None:
            self._push(wake, self.clock() + max(0.0, timeout))
        self._switch()
        return wake.by_signal

    def _signal(self, waiters: list[_Wake]) -> None:
        for wake in waiters:
            if not wake.fired:
                wake.by_signal = True
                self._push(wake, self.clock())
        waiters.clear()


class SimEvent:
    """threading.Event on virtual time."""

    def __init__(self, sim: Simulation) -> None:
        self.sim, self.flag = sim, False
        self.waiters: list[_Wake] = []

    def set(self) -> None:
        self.flag = True
        self.sim._signal(self.waiters)

    def clear(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        return True if self.flag else self.sim._wait(self.waiters, timeout)


class SimPool:
    """A pool of ``size`` connections on virtual time; waiters are served first come
    first served."""

    def __init__(self, sim: Simulation, size: int) -> None:
        self.sim, self.free = sim, size
        self.queue: deque[list[_Wake]] = deque()

    def acquire(self) -> None:
        if self.free > 0 and not self.queue:
            self.free -= 1
            return
        waiters: list[_Wake] = []
        self.queue.append(waiters)
        self.sim._wait(waiters, None)  # the releaser hands its connection over

    def release(self) -> None:
        if self.queue:
            self.sim._signal(self.queue.popleft())
        else:
            self.free += 1


@contextmanager
def fakeredis_on(clock: Callable[[], float]) -> Iterator[None]:
    """Make fakeredis read the time from ``clock``: keys then expire in virtual time.

    fakeredis stamps every command with ``time.time()`` from one module; inside this
    block that module sees a ``time`` whose ``time()`` is the virtual clock.
    """

    class VirtualTime:
        def __getattr__(self, name: str) -> Any:
            return clock if name == "time" else getattr(time, name)

    real = fakeredis_base.time
    fakeredis_base.time = VirtualTime()  # type: ignore[assignment]  # a stand-in module
    try:
        yield
    finally:
        fakeredis_base.time = real


class SimCache:
    """A Redis client whose every command costs one round trip of virtual time.

    A command takes effect when it is sent; the caller resumes one ``rtt`` later.
    ``subscribers`` is shared by every client of one server: a PUBLISH wakes them.
    """

    def __init__(self, sim: Simulation, client: Cache, rtt: float,
                 subscribers: list[SimPubSub]) -> None:
        self._sim, self._client, self._rtt = sim, client, rtt
        self._subscribers = subscribers

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def command(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if name == "publish":
                for pubsub in self._subscribers:
                    pubsub.mail.set()  # wake listeners; delivery: half a round trip
            self._sim.sleep(self._rtt)
            return result

        return command

    def pubsub(self, ignore_subscribe_messages: bool = False) -> SimPubSub:
        return SimPubSub(self, ignore_subscribe_messages)


class SimPubSub:
    """redis-py's PubSub, with ``get_message(timeout)`` waiting in virtual time."""

    def __init__(self, cache: SimCache, ignore_subscribe_messages: bool) -> None:
        self.cache, self.ignore = cache, ignore_subscribe_messages
        self.real = cache._client.pubsub()
        self.mail = cache._sim.event()
        cache._subscribers.append(self)

    def subscribe(self, *channels: str) -> None:
        self.real.subscribe(*channels)
        self.cache._sim.sleep(self.cache._rtt)

    def get_message(self, timeout: float = 0.0) -> dict | None:
        sim = self.cache._sim
        deadline = sim.clock() + timeout
        while True:
            self.mail.clear()
            message = self.real.get_message(timeout=0)  # only what has arrived
            if message is not None:
                if self.ignore and message["type"] in ("subscribe", "unsubscribe"):
                    continue
                sim.sleep(self.cache._rtt / 2)  # the message's trip to us
                return message
            if not self.mail.wait(deadline - sim.clock()) or sim.clock() >= deadline:
                return None

    def close(self) -> None:
        self.cache._subscribers.remove(self)
        self.real.close()


class SimDatabase:
    """The Database behind a pool of ``connections``: each query holds one for
    ``latency`` seconds of virtual time."""

    def __init__(self, sim: Simulation, db: Database, latency: float,
                 connections: int) -> None:
        self.sim, self.db, self.latency = sim, db, latency
        self.pool = SimPool(sim, connections)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.pool.acquire()
        try:
            self.sim.sleep(self.latency)
            return self.db.query(sql, params)
        finally:
            self.pool.release()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or
    below it."""
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p!r}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
