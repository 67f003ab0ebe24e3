"""How steps read on a page and in a diagram: ``SET user:1 "old" EX 300 -> OK``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from snippets.explorer.footprints import redis_footprint


def cached_values(cache: Cache) -> list[tuple[str, str]]:
    """Every key and its value, shown: a string quoted, another type by its name."""
    keys = sorted(cache.keys("*"))
    values = cache.mget(keys) if keys else []
    shown = []
    for key, value in zip(keys, values, strict=True):
        kind = f"a {as_text(cache.type(key))}"  # not a string: its type
        shown.append((as_text(key), repr(value) if value is not None else kind))
    return shown


if TYPE_CHECKING:
    from snippets.backends import Cache, Database
    from snippets.explorer.records import Returns


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _quote(value: Any) -> str:
    return f'"{as_text(value)}"'


OPTION_WORDS = {"EX", "PX", "EXAT", "PXAT", "NX", "XX", "KEEPTTL", "GET", "GT", "LT"}


def redis_text(args: Sequence[Any]) -> str:
    """``SET user:1 "old" EX 300``: keys and option words bare, values quoted."""
    keys = {key for _, key, _ in redis_footprint(args)}
    shown = [str(args[0]).upper()]
    for arg in args[1:]:
        text = as_text(arg)
        bare = (
            text in keys
            or text in OPTION_WORDS
            or isinstance(arg, int)
            or text.isdigit()
        )
        shown.append(text if bare else _quote(text))
    return " ".join(shown)


def sql_text(sql: str, params: Sequence[Any]) -> str:
    """The statement with its parameters filled in, on one line."""
    values = iter(params)
    filled = re.sub(r"\?", lambda _: _show_value(next(values, "?")), sql)
    return " ".join(filled.split())


def _show_value(value: Any) -> str:
    return _quote(value) if isinstance(value, (str, bytes)) else str(value)


def rows_text(rows: list[tuple]) -> str:
    if not rows:
        return "no rows"
    return " / ".join(", ".join(_show_value(value) for value in row) for row in rows)


def show(result: Any) -> str:
    """A step's result in a few words."""
    if isinstance(result, redis.WatchError):
        return "refused: a watched key changed"
    if isinstance(result, BaseException):
        return f"error {type(result).__name__}"
    if result is None:
        return "nil"
    if result is True:
        return "OK"
    if isinstance(result, list):
        return ", ".join(show(item) for item in result) if result else "empty"
    if isinstance(result, (str, bytes)):
        return _quote(result)
    return str(result)


def describe_state(
    cache: Cache,
    db: Database,
    returns: Returns,
    cached: list[tuple[str, str]] | None = None,
) -> str:
    """The default outcome: every cached string, every user row, every non-None return.
    ``cached`` (key, shown value) saves asking the cache when the caller has it."""
    if cached is None:
        cached = cached_values(cache)
    parts = [f"cache {key}={shown}" for key, shown in cached]
    if not parts:
        parts.append("cache empty")
    for user_id, name in db.conn.execute("SELECT id, name FROM users ORDER BY id"):
        parts.append(f"DB user {user_id}={name!r}")
    return ", ".join(parts + returned(returns))


def returned(returns: Returns) -> list[str]:
    """What each actor returned, or raised; an actor that returned None is left out."""
    parts = []
    for name, value in returns.items():
        if isinstance(value, BaseException):
            parts.append(f"{name} raised {type(value).__name__}")
        elif value is not None:
            parts.append(f"{name} returned {value!r}")
    return parts
