"""Your own code under the explorer: a read and a write written as in a service, as
functions of a redis-py client and a DB-API connection, run as one writer and one or
two readers through every interleaving of their Redis commands and SQL statements.

    python -m snippets.explorer check my_service:read_user my_service:update_user \\
        --setup my_service:setup --read-args 1 --write-args '1, "new"'

runs ``update_user(r, conn, 1, "new")`` as the writer ``W`` and ``read_user(r, conn,
1)`` as the reader ``R`` (``--readers 2``: ``R1`` and ``R2``), on fakeredis and one
SQLite file in WAL mode, after ``setup(r, conn)`` made the tables and rows. Each actor
has a DB-API connection of its own, as each request of a service has: a write is seen
by the others from its COMMIT. The default check: once every actor is done, a read
through the cache as they left it returns what a read with an empty cache returns;
``--check module:function`` replaces it with ``function(r, conn, returns)``, which
returns None if the final state is fine, else a reason.

Exit status: 0 if no schedule is bad, 1 if some are, 2 if the input is wrong.
"""

from __future__ import annotations

# --8<-- [start:imports]
import argparse
import ast
import importlib
import inspect
import itertools
import os
import re
import sqlite3
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from snippets.backends import Cache, Database, make_fake_cache
from snippets.explorer.footprints import DB_WRITE, sql_footprint
from snippets.explorer.instrument import _step
from snippets.explorer.records import Returns
from snippets.explorer.runtime import Actor
from snippets.explorer.search import Exploration, Run, explore, replay
from snippets.explorer.text import cached_values, returned, rows_text, sql_text
# --8<-- [end:imports]

Function = Callable[..., Any]
Params = Sequence[Any] | Mapping[str, Any]  # ? placeholders, or :name ones

MODEL = """\
These counts hold in a model, and in nothing wider:
- one Redis, which never fails over, evicts or expires a key during the race
- one database, which every read goes to (no replica) and sees every COMMIT before it
- each Redis command (an EVAL, a MULTI ... EXEC) and each SQL statement is one atomic
  step; a SELECT reads all its rows in its step; a write is seen from its COMMIT
- {actors}, each with a connection of its own; only the order of their
  steps varies: no call fails, no process pauses for longer than a TTL
Counts are schedules, not probabilities."""


# --8<-- [start:connection]
class Connection:
    """A DB-API connection whose every statement is one scheduled step: ``execute``,
    ``executemany``, and a ``commit`` or ``rollback`` with a transaction to end. A
    statement's rows are read in its step; fetching them later takes none. Outside an
    explored actor it is a plain sqlite3 connection."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq: Any) -> Cursor:
        return self.cursor().executemany(sql, seq)

    def commit(self) -> None:
        self._end("COMMIT", self.raw.commit)

    def rollback(self) -> None:
        self._end("ROLLBACK", self.raw.rollback)

    def _end(self, word: str, call: Callable[[], None]) -> None:
        if self.raw.in_transaction:  # with nothing to end, sqlite3 does nothing
            _step("db", lambda: word, DB_WRITE, call, shown_as=lambda _: "OK")

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.commit() if kind is None else self.rollback()  # as in sqlite3


class Cursor:
    """The cursor of a ``Connection``: ``execute`` is one step, the fetches are not."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.rows: Iterator[tuple] = iter(())
        self.rowcount, self.lastrowid, self.arraysize = -1, None, 1
        self.description: Any = None

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return self._run(sql_footprint(sql), statement_text(sql, params),
                         lambda raw: raw.execute(sql, params))

    def executemany(self, sql: str, seq: Any) -> Cursor:
        rows = list(seq)
        return self._run(DB_WRITE, f"{' '.join(sql.split())} x {len(rows)}",
                         lambda raw: raw.executemany(sql, rows))

    def _run(self, footprint: Any, text: str,
             call: Callable[[sqlite3.Connection], sqlite3.Cursor]) -> Cursor:
        def statement() -> tuple[list[tuple], int, Any, Any]:
            cursor = call(self.connection.raw)
            rows = cursor.fetchall()  # all in this step: the statement ends here
            return rows, cursor.rowcount, cursor.lastrowid, cursor.description

        rows, self.rowcount, self.lastrowid, self.description = _step(
            "db", lambda: text, footprint, statement, shown_as=shown)
        self.rows = iter(rows)
        return self

    def fetchone(self) -> tuple | None:
        return next(self.rows, None)

    def fetchmany(self, size: int | None = None) -> list[tuple]:
        return list(itertools.islice(self.rows, size or self.arraysize))

    def fetchall(self) -> list[tuple]:
        return list(self.rows)

    def __iter__(self) -> Iterator[tuple]:
        return self.rows

    def close(self) -> None:
        self.rows = iter(())
# --8<-- [end:connection]


def statement_text(sql: str, params: Params) -> str:
    """The statement on one line, with its parameters (``?`` or ``:name``) filled in."""
    if isinstance(params, Mapping):
        return " ".join(re.sub(r":(\w+)", lambda m: repr(params.get(m[1], m[0])),
                               sql).split())
    return sql_text(sql, params)


def shown(result: tuple[list[tuple], int, Any, Any]) -> str:
    """A statement's result as a diagram shows it: its rows, or the rows it changed."""
    rows, rowcount, _, description = result
    return rows_text(rows) if description is not None else str(rowcount)


# --8<-- [start:world]
class SharedSQLite(Database):
    """One SQLite file in WAL mode: ``plain``, a sqlite3 connection for the setup and
    the check, and ``connect()`` for each actor, as each request has its own."""

    def __init__(self) -> None:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None  # a file in memory
        handle, self.path = tempfile.mkstemp(suffix=".sqlite3", dir=folder)
        os.close(handle)
        super().__init__(self.path)
        self.conn.execute("DROP TABLE users")  # the site's own table: not the reader's
        self.conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        # The explorer describes the site's users (in ``conn``): an empty table of
        # this connection's own, which no other connection sees, keeps it quiet.
        self.conn.execute("CREATE TEMP TABLE users (id INTEGER, name TEXT)")
        self.plain = sqlite3.connect(self.path)
        self.opened = [self.conn, self.plain]
        self.close = weakref.finalize(self, _remove, self.path, self.opened)  # type: ignore[method-assign]

    def connect(self) -> Connection:
        # timeout=0: a second writer fails at once ("database is locked") instead of
        # blocking the one thread every actor runs on.
        raw = sqlite3.connect(self.path, timeout=0)
        self.opened.append(raw)
        return Connection(raw)


def _remove(path: str, opened: list[sqlite3.Connection]) -> None:
    for connection in opened:
        connection.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


class Worlds:
    """A ``make_db`` that closes the last world when it makes the next one."""

    def __init__(self) -> None:
        self.last: SharedSQLite | None = None

    def __call__(self) -> SharedSQLite:
        self.close()
        self.last = SharedSQLite()
        return self.last

    def close(self) -> None:
        if self.last is not None:
            self.last.close()
# --8<-- [end:world]


# --8<-- [start:check]
class CheckError(Exception):
    """Bad input: a reference, an argument, or a function that fails on its own."""


def call_text(fn: Function, args: tuple[Any, ...]) -> str:
    return f"{fn.__name__}({', '.join(['r', 'conn', *map(repr, args)])})"


def read_agrees(read: Function, args: tuple[Any, ...]) -> Callable[..., str | None]:
    """The default check: no actor raised, and once all are done, a read through the
    cache as they left it returns what the same read returns with an empty cache."""
    empty = make_fake_cache()

    def check(cache: Cache, db: Database, returns: Returns) -> str | None:
        assert isinstance(db, SharedSQLite)
        for name, value in returns.items():
            if isinstance(value, Exception):
                return f"{name} raised {type(value).__name__}: {value}"
        try:
            through = read(cache, db.plain, *args)
            empty.flushdb()
            fresh = read(empty, db.plain, *args)
        except Exception as error:
            return f"the read after the race raised {type(error).__name__}: {error}"
        if through != fresh:
            return (f"stale: {call_text(read, args)} returns {through!r} through the "
                    f"cache, {fresh!r} with the cache empty")
        return None
    return check


def describe(cache: Cache, db: Database, returns: Returns) -> str:
    """An outcome: what the cache holds, and what each actor returned."""
    parts = [f"cache {key}={value}" for key, value in cached_values(cache)]
    return ", ".join((parts or ["cache empty"]) + returned(returns))
# --8<-- [end:check]


# --8<-- [start:report]
@dataclass
class Report:
    """What ``check_code`` found: the exploration, and a replay of the first bad
    schedule of each bad outcome."""

    exploration: Exploration
    replays: list[Run]
    calls: dict[str, str]  # actor -> the call it makes
    labels: dict[str, str]  # actor -> its name in a diagram: "W set_price"

    @property
    def bad(self) -> int:
        return len(self.exploration.bad)

    def text(self) -> str:
        found = self.exploration
        lines = [f"{name}: {call}" for name, call in self.calls.items()]
        kind = "distinct schedules" if found.reduced else "schedules"
        lines += ["", f"{self.bad} bad of {found.total} {kind}",
                  *found.summary().split("\n")[1:]]
        for run in self.replays:
            lines += ["", f"{run.schedule}: {run.verdict}", "~~~mermaid",
                      run.mermaid(self.labels),
                      "~~~"]
        readers = len(self.calls) - 1
        actors = f"one writer and {'one reader' if readers == 1 else 'two readers'}"
        return "\n".join([*lines, "", MODEL.format(actors=actors)])


def check_code(read: Function, write: Function, setup: Function | None = None, *,
               read_args: Sequence[Any] = (), write_args: Sequence[Any] = (),
               readers: int = 1, check: Function | None = None,
               reduce: bool = True) -> Report:
    """Explore ``write(r, conn, *write_args)`` as W against ``readers`` readers
    ``read(r, conn, *read_args)``, after ``setup(r, conn)``."""
    if readers not in (1, 2):
        raise CheckError(f"readers must be 1 or 2, got {readers!r}")
    read_args, write_args = tuple(read_args), tuple(write_args)
    fits(read, 2 + len(read_args), "the read", "--read-args")
    fits(write, 2 + len(write_args), "the write", "--write-args")
    if setup is not None:
        fits(setup, 2, "the setup", "")
    if check is not None:
        fits(check, 3, "the check", "")
    names = ["R"] if readers == 1 else ["R1", "R2"]
    calls = {"W": (write, write_args), **{name: (read, read_args) for name in names}}
    actors = {name: connected(fn, args) for name, (fn, args) in calls.items()}
    first = setup_with(setup)
    alone(first, calls, setup is not None)  # a clear error now, not N bad runs later
    judge = guarded(check) if check else read_agrees(read, read_args)
    worlds = Worlds()
    try:
        found = explore(actors, first, judge, make_db=worlds, describe=describe,
                        reduce=reduce)
    finally:
        worlds.close()
    replays = [replay(actors, first, schedule, check=judge, make_db=SharedSQLite)
               for outcome, schedule in found.examples.items()
               if found.verdicts[outcome] is not None]
    return Report(found, replays,
                  {name: call_text(fn, args) for name, (fn, args) in calls.items()},
                  {name: f"{name} {fn.__name__}" for name, (fn, _) in calls.items()})
# --8<-- [end:report]


def connected(fn: Function, args: tuple[Any, ...]) -> Actor:
    """An actor: ``fn`` with the cache and a DB-API connection of its own."""
    def actor(cache: Cache, db: Database) -> Any:
        assert isinstance(db, SharedSQLite)
        return fn(cache, db.connect(), *args)
    return actor


def setup_with(setup: Function | None) -> Actor:
    def first(cache: Cache, db: Database) -> None:
        assert isinstance(db, SharedSQLite)
        if setup is not None:
            setup(cache, db.plain)
            db.plain.commit()
    return first


def fits(fn: Function, count: int, role: str, option: str) -> None:
    """Refuse a function that cannot be called with ``count`` positional arguments."""
    try:
        inspect.signature(fn).bind(*range(count))
    except TypeError as error:
        given = f" (r, conn and {count - 2} from {option})" if option else ""
        shape = ", ".join(inspect.signature(fn).parameters)
        raise CheckError(f"{role} {fn.__name__}({shape}) cannot take {count} "
                         f"arguments{given}: {error}") from None
    except ValueError:  # a builtin without a signature: let the call decide
        pass


def alone(setup: Actor, calls: Mapping[str, tuple[Function, tuple[Any, ...]]],
          given: bool) -> None:
    """The setup, then each call alone on a fresh world after it, unscheduled."""
    for name, (fn, args) in calls.items():
        world, cache = SharedSQLite(), make_fake_cache()
        try:
            try:
                setup(cache, world)
            except Exception as error:
                raise CheckError(f"the setup raised {type(error).__name__}: "
                                 f"{error}") from None
            try:
                fn(cache, world.connect(), *args)
            except Exception as error:
                hint = "" if given else " (no --setup: name a function of (r, conn) " \
                    "that creates the tables and rows)"
                raise CheckError(f"{name}: {call_text(fn, args)}, run alone after the "
                                 f"setup, raised {type(error).__name__}: {error}{hint}"
                                 ) from None
        finally:
            world.close()


def guarded(check: Function) -> Callable[..., str | None]:
    """The reader's own check, given the raw connection; an error in it is bad input."""
    def judge(cache: Cache, db: Database, returns: Returns) -> str | None:
        assert isinstance(db, SharedSQLite)
        try:
            verdict = check(cache, db.plain, dict(returns))
        except Exception as error:
            raise CheckError(f"the check {check.__name__} raised "
                             f"{type(error).__name__}: {error}") from None
        if verdict is not None and not isinstance(verdict, str):
            raise CheckError(f"the check {check.__name__} must return None or a "
                             f"reason (a str), got {verdict!r}")
        return verdict
    return judge


# --8<-- [start:cli]
def resolve(ref: str, what: str) -> Function:
    """``module:function`` -> the function, or a CheckError that says what is wrong."""
    module_name, colon, name = ref.partition(":")
    if not colon or not module_name or not name.isidentifier():
        raise CheckError(f"{what} must be module:function, like my_service:read_user; "
                         f"got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise CheckError(f"{what} {ref}: no module named {error.name!r} (run from the "
                         "folder that holds it)") from None
    except Exception as error:
        raise CheckError(f"{what} {ref}: importing {module_name} raised "
                         f"{type(error).__name__}: {error}") from None
    fn = getattr(module, name, None)
    if fn is None:
        public = sorted(n for n, v in vars(module).items()
                        if callable(v) and not n.startswith("_")
                        and getattr(v, "__module__", None) == module.__name__)
        raise CheckError(f"{what} {ref}: {module_name} has no function {name!r}"
                         + (f" (it has {', '.join(public)})" if public else ""))
    if not callable(fn):
        raise CheckError(f"{what} {ref} is not a function: {fn!r}")
    return fn


def literals(text: str, option: str) -> tuple[Any, ...]:
    """``'1, "new"'`` -> ``(1, 'new')``: Python literals separated by commas."""
    if not text.strip():
        return ()
    try:
        return ast.literal_eval(f"({text},)")
    except (SyntaxError, ValueError):
        raise CheckError(f"{option} takes Python literals separated by commas, like "
                         f"1 or '1, \"new\"'; got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="python -m snippets.explorer check",
        description="Run a read and a write of your own, as one writer and one or "
                    "two readers, through every interleaving of their Redis commands "
                    "and SQL statements (fakeredis and SQLite). Exit status: 0 if no "
                    "schedule is bad, 1 if some are, 2 if the input is wrong.")
    made.add_argument("read", help="module:function of (r, conn, *read-args)")
    made.add_argument("write", help="module:function of (r, conn, *write-args)")
    made.add_argument("--setup", help="module:function of (r, conn): tables and rows")
    made.add_argument("--read-args", default="", metavar="ARGS",
                      help="the read's arguments after (r, conn), e.g. 1")
    made.add_argument("--write-args", default="", metavar="ARGS",
                      help="the write's arguments after (r, conn), e.g. '1, \"new\"'")
    made.add_argument("--readers", type=int, choices=(1, 2), default=1)
    made.add_argument("--check", help="module:function of (r, conn, returns): None if "
                                      "the final state is fine, else a reason")
    return made


def main(argv: Sequence[str] | None = None) -> int:
    """The ``check`` subcommand: print the report; return the exit status."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # the reader's module, where they run it
    try:
        report = check_code(
            resolve(args.read, "the read"), resolve(args.write, "the write"),
            resolve(args.setup, "the setup") if args.setup else None,
            read_args=literals(args.read_args, "--read-args"),
            write_args=literals(args.write_args, "--write-args"),
            readers=args.readers,
            check=resolve(args.check, "the check") if args.check else None)
    except CheckError as error:
        parser().error(str(error))  # usage, the message, exit status 2
    print(report.text())
    return 1 if report.bad else 0
# --8<-- [end:cli]
