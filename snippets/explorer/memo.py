"""Prefix replay: a run that shares its first k steps with the last one does not send
them again. Each of those steps returns what it returned last time, and before step k
the cache and the database are restored to the state the last run had there.

Depth-first search changes the last few choices from one run to the next, so most steps
of most runs are in the shared prefix. The actors still run every line of their own
code; only the calls to the cache and the database are skipped. This is safe when the
whole world lives in one fakeredis and one SQLite ``Database`` that can be copied, and
when no step leaves state on a connection (``WATCH``, pub/sub, ``SELECT``): a run that
sends such a command turns prefix replay off for the rest of the exploration.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import fakeredis
from fakeredis._core._database import Item  # the keyspace's entries

from snippets.backends import Cache, Database
from snippets.explorer.footprints import Footprint

# Commands whose effect lives on the connection or outside the keyspace: a replayed
# prefix cannot restore them.
STATEFUL = {
    "WATCH",
    "UNWATCH",
    "MULTI",
    "EXEC",
    "DISCARD",
    "SELECT",
    "SWAPDB",
    "MOVE",
    "CLIENT",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "PUBLISH",
    "SPUBLISH",
    "BLPOP",
    "BRPOP",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BRPOPLPUSH",
    "XREAD",
    "XREADGROUP",
    "WAIT",
    "FLUSHALL",
}


@dataclass
class State:
    """The cache's keyspace, its scripts, and the database's pages and counters."""

    keys: Any
    expiry: list
    scripts: dict
    pages: bytes
    reads: int
    writes: int
    keys_seen: Any = field(default=None, compare=False, repr=False)  # see fingerprint

    def fingerprint(self) -> tuple[Any, ...]:
        """Equal for two states that no command can tell apart: every key, its value
        and its TTL to the second (TTLs count down from when a run set them), the
        scripts, the database's pages and counters."""
        if self.keys_seen is None:
            now = time.time()
            self.keys_seen = tuple(sorted(
                (key, freeze(item.value),
                 None if item.expireat is None else round(item.expireat - now))
                for key, item in self.keys.items()))
        return (self.keys_seen, frozenset(self.scripts), self.pages, self.reads,
                self.writes)


class _Unique:
    """Stands for a value ``freeze`` cannot compare: equal to nothing but itself."""


def freeze(value: Any) -> Any:
    """``value`` as something hashable that is equal only to what is the same value of
    the same type (True is not 1), in the same order; a value it does not know is
    equal to nothing."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, (bytes, int, float)):
        return type(value), value
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value), tuple(freeze(item) for item in value)
    if isinstance(value, dict):
        return dict, tuple((freeze(k), freeze(v)) for k, v in value.items())
    if isinstance(value, BaseException):
        return type(value), repr(value.args)
    return _Unique()


def _copy_keys(keys: dict[bytes, Any]) -> dict[bytes, Any]:
    """A copy of a fakeredis keyspace: strings are shared (immutable), hashes, lists and
    sets copied one level down, anything else deep-copied. Much faster than deepcopy."""
    copied = {}
    for key, item in keys.items():
        value = item.value
        if isinstance(value, (dict, list, set)):
            value = type(value)(value)
        elif not isinstance(value, (bytes, int, float)):
            value = copy.deepcopy(value)
        twin = Item(value)
        twin.expireat = item.expireat
        copied[key] = twin
    return copied


def _server(cache: Cache) -> Any:
    return cache.connection_pool.connection_kwargs["server"]


def can_snapshot(cache: Any, db: Any) -> bool:
    return (
        isinstance(cache, fakeredis.FakeRedis)
        and type(db) is Database
        and "server" in cache.connection_pool.connection_kwargs
    )


def take(
    cache: Cache,
    db: Database,
    last: State | None,
    cache_changed: bool,
    db_changed: bool,
) -> State:
    """The state now; parts that did not change since ``last`` are shared with it."""
    keyspace = _server(cache).dbs[0]
    if last is None or cache_changed:
        keys = _copy_keys(keyspace._dict)
        expiry = list(keyspace._expiry_heap)
        scripts = dict(_server(cache).script_cache)
    else:
        keys, expiry, scripts = last.keys, last.expiry, last.scripts
    pages = db.conn.serialize() if last is None or db_changed else last.pages
    seen = None if last is None or cache_changed else last.keys_seen
    return State(keys, expiry, scripts, pages, db.reads, db.writes, seen)


def restore(cache: Cache, db: Database, state: State, db_is: bytes | None) -> None:
    """Put ``state`` back; ``db_is``: the pages the database holds now, if known."""
    keyspace = _server(cache).dbs[0]
    keyspace._dict = _copy_keys(state.keys)  # the run will change it: a copy
    keyspace._expiry_heap = list(state.expiry)
    _server(cache).script_cache = dict(state.scripts)
    if db_is is not state.pages:  # most runs write nothing to the DB after setup
        db.conn.deserialize(state.pages)
    db.reads, db.writes = state.reads, state.writes


def writes(footprint: Footprint, store: str) -> bool:
    return any(write for where, _, write in footprint if where == store)


class Memo:
    """What the runs so far did at each position of the current path."""

    def __init__(self) -> None:
        self.results: list[tuple[bool, Any]] = []  # (raised, result or exception)
        self.requests: list[Any] = []  # what each step asked (its command), to compare
        self.states: list[State] = []  # the state before each step
        self.upto = 0  # the steps before this one are replayed in the next run
        self.on = True
        self.db_is: bytes | None = None  # the pages the database holds, while known

    def recall(self, position: int) -> Any:
        raised, value = self.results[position]
        if raised:
            raise value
        return copy.deepcopy(value) if isinstance(value, (list, dict, set)) else value


def cached_strings(cache: Cache) -> list[tuple[str, str]]:
    """Every key of a fakeredis and its value (or "a hash", "a list" ... for other
    types), read from the keyspace: what ``describe_state`` asks with KEYS and MGET,
    without two commands per run."""
    keyspace, now = _server(cache).dbs[0], time.time()
    found = []
    for key, item in keyspace._dict.items():
        if item.expireat is not None and item.expireat < now:
            continue  # expired: Redis would not return it
        value = item.value
        shown = (
            repr(value.decode()) if isinstance(value, bytes) else f"a {_kind(value)}"
        )
        found.append((key.decode(), shown))
    return sorted(found)


def _kind(value: Any) -> str:
    """The name TYPE gives: fakeredis keeps a hash as a dict, a sorted set as a ZSet and
    a stream as an XStream."""
    names: dict[type, str] = {dict: "hash", list: "list", set: "set"}
    named = names.get(type(value))
    return named or type(value).__name__.lower().removeprefix("x")
