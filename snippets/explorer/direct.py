"""A shortcut to fakeredis: a command goes straight to fakeredis's own handler.

Through redis-py, one fakeredis command is packed into RESP, parsed back by fakeredis,
answered, queued, read and decoded: about 300 Python calls. Here it is handed to the
handler of a connection kept for the purpose (``_process_command``, which runs it as a
server would: arity, expiry, transactions, the server lock), and its reply is read by
redis-py's own ``parse_response`` on that connection, so every reply comes back exactly
as redis-py returns it (decoded, through the same response callbacks). Only the wire
format is skipped.

A command that keeps state on a connection (``WATCH``, pub/sub, ``CLIENT``, blocking
pops), a disconnected fake server, or a client that is not a plain fakeredis goes the
ordinary way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
import redis
from fakeredis._clients._base import FakeBaseConnectionMixin

from snippets.explorer.memo import STATEFUL

# Commands left to the ordinary path: connection state, or no single reply.
ORDINARY = STATEFUL | {"AUTH", "HELLO", "QUIT", "RESET", "MONITOR", "READONLY",
                       "READWRITE", "HIMPORT", "SHUTDOWN", "DEBUG", "SYNC", "PSYNC"}


def go_direct(cache: Any) -> bool:
    """Send ``cache``'s commands straight to fakeredis from now on (True), or leave it
    as it is (False: not a plain fakeredis client). Idempotent."""
    if getattr(cache, "_explorer_direct", False):
        return True
    if not isinstance(cache, fakeredis.FakeRedis) or cache.connection is not None:
        return False
    if "_execute_command" in vars(cache):
        return False  # someone else replaced it already
    pool = cache.connection_pool
    if getattr(pool, "cache", None) is not None:
        return False  # client-side caching answers some commands itself
    connection = pool.get_connection()  # kept for these commands alone, never released
    if not isinstance(connection, FakeBaseConnectionMixin):
        pool.release(connection)
        return False
    cache._execute_command = _direct(  # type: ignore[method-assign]
        cache, connection, cache._execute_command)
    cache._explorer_direct = True  # type: ignore[attr-defined]
    return True


def _direct(cache: redis.Redis, connection: Any,
            ordinary: Callable[..., Any]) -> Callable[..., Any]:
    encode, parse = connection.encoder.encode, cache.parse_response

    def execute(*args: Any, **options: Any) -> Any:
        name, sock = args[0], connection._sock
        # What pack_command sends: a command name of several words as several fields.
        if isinstance(name, str):
            fields = name.encode().split()
        elif isinstance(name, bytes):
            fields = name.split() if b" " in name else [name]
        else:
            return ordinary(*args, **options)
        if (sock is None or not fields or not connection._server.connected
                or fields[0].decode().upper() in ORDINARY):
            return ordinary(*args, **options)
        fields += [encode(arg) for arg in args[1:]]
        sock._process_command(fields)
        if sock.responses.empty():  # never for the commands let through here
            raise RuntimeError(f"fakeredis gave no reply to {name}")
        return parse(connection, name, **options)

    return execute
