"""Footprints: which keys a step touches and whether it writes them. Two steps that
touch different keys, or only read, commute: the explorer need not try both orders."""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Sequence
from typing import Any
# --8<-- [end:imports]


# --8<-- [start:footprints]
Footprint = frozenset[tuple[str, str, bool]]  # (store, key or "*", is_write)

# Which Redis commands only read, and where their keys are. Any command not listed here
# is treated as touching every key: slower to explore, never wrong.
READ_COMMANDS = {"GET", "MGET", "EXISTS", "TTL", "PTTL", "TYPE", "STRLEN", "HGET",
                 "HMGET", "HGETALL", "HEXISTS", "HLEN", "LRANGE", "LLEN", "SMEMBERS",
                 "SISMEMBER",
                 "SCARD", "ZRANGE", "ZSCORE", "ZCARD", "XRANGE", "XLEN", "WATCH"}
ONE_KEY = READ_COMMANDS - {"MGET", "EXISTS", "WATCH"} | {
    "SET", "SETEX", "PSETEX", "SETNX", "GETSET", "GETDEL", "GETEX", "INCR", "INCRBY",
    "DECR", "DECRBY", "APPEND", "EXPIRE", "PEXPIRE", "EXPIREAT", "PERSIST", "HSET",
    "HDEL", "HINCRBY", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "SREM", "ZADD", "ZREM",
    "ZINCRBY", "XADD", "XTRIM"}
ALL_ARGS_ARE_KEYS = {"DEL", "UNLINK", "EXISTS", "MGET", "WATCH", "TOUCH"}
NO_KEYS = {"MULTI", "UNWATCH", "PING", "ECHO"}  # local to one connection
SCRIPTS = "(script cache)"  # EVAL and SCRIPT LOAD fill it; EVALSHA needs it


def redis_footprint(args: Sequence[Any], store: str = "cache") -> Footprint:
    """The keys one Redis command touches, and whether it writes them."""
    command = str(args[0]).upper()
    write = command not in READ_COMMANDS
    if command in NO_KEYS:
        keys: list[Any] = []
    elif command in ALL_ARGS_ARE_KEYS:
        keys = list(args[1:])
    elif command in ONE_KEY and len(args) > 1:
        keys = [args[1]]
    elif command in ("EVAL", "EVALSHA", "FCALL"):
        keys = list(args[3:3 + int(args[2])])  # EVAL script numkeys key... arg...
    elif command == "SCRIPT":
        keys = []
    else:
        keys = ["*"]  # unknown: assume it touches everything
    touched = {(store, key.decode() if isinstance(key, bytes) else str(key), write)
               for key in keys}
    if command in ("EVAL", "EVALSHA", "SCRIPT"):
        touched.add((store, SCRIPTS, command != "EVALSHA"))
    return frozenset(touched)


def reading(store: str, key: str = "*") -> Footprint:
    """A step that reads ``key`` (every key: "*") of ``store``."""
    return frozenset({(store, key, False)})


def writing(store: str, key: str = "*") -> Footprint:
    """A step that may change ``key`` (every key: "*") of ``store``."""
    return frozenset({(store, key, True)})


DB_READ = reading("db")   # a SELECT
DB_WRITE = writing("db")  # any other statement, or a transaction


def sql_footprint(sql: str, store: str = "db") -> Footprint:
    """A SELECT reads the database; anything else may write it."""
    select = sql.lstrip().upper().startswith("SELECT")
    return reading(store) if select else writing(store)


def dependent(first: Footprint, second: Footprint) -> bool:
    """Two steps conflict if they touch the same key (or table) and either writes."""
    return any(
        store == store2 and (write or write2) and (key == key2 or "*" in (key, key2))
        for store, key, write in first
        for store2, key2, write2 in second
    )
# --8<-- [end:footprints]
