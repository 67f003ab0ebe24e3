"""Check your own code: the explorer runs a reader's own redis-py + DB-API functions, finds
the price cache's race with exact counts, finds none in the fix, runs from the command
line with an exit status that says which, refuses bad input clearly, and makes each SQL
statement one step."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from snippets.concurrency import check_your_code as shop
from snippets.explorer import mermaid_problems, replay
from snippets.explorer.check import (CheckError, SharedSQLite, check_code, connected,
                                     main, setup_with)

ROOT = Path(__file__).resolve().parents[2]
MODULE = "snippets.concurrency.check_your_code"
ARGS = ["--setup", f"{MODULE}:one_product", "--read-args", "1", "--write-args", "1, 450"]


# The racy price cache, counted by hand. R is GET, SELECT, SET (it always misses: only R
# fills the cache); W is UPDATE, DEL, COMMIT (DEL inside the block) or UPDATE, COMMIT, DEL.
# 3 + 3 steps interleave in C(6, 3) = 20 orders. Say a_i W steps run before R's i-th step,
# 0 <= a1 <= a2 <= a3 <= 3. Only steps on the same store conflict (the GET and the SET
# with the DEL, the SELECT with the UPDATE and the COMMIT), so a class of equivalent
# orders is fixed by which side of those steps each R step falls on.

def test_del_inside_the_transaction_is_stale_in_3_of_7_classes_and_12_of_20_orders():
    # Stale iff the SELECT precedes the COMMIT (a2 <= 2) and the SET follows the DEL
    # (a3 >= 2): for a2 = 0, 1, 2 that is 1*2 + 2*1 + 3*2 = 12 of the 20 orders. Classes:
    # (GET before/after DEL) x (SELECT before UPDATE / between / after COMMIT) x (SET
    # before/after DEL), 7 of them possible, 3 stale.
    assert (shop.checked("DEL inside the transaction").bad,
            shop.checked("DEL inside the transaction").exploration.total) == (3, 7)
    full = check_code(shop.get_price, shop.set_price, shop.one_product, read_args=(1,),
                      write_args=(1, 450), reduce=False)
    assert (full.bad, full.exploration.total) == (12, 20)


def test_del_after_the_commit_is_still_stale_in_2_of_7_classes_and_3_of_20_orders():
    # Stale iff the SELECT precedes the COMMIT (a2 <= 1) and the SET follows the DEL,
    # now last (a3 = 3): 1 + 2 = 3 orders; classes (GET after DEL: 1) + 2 x 3 = 7, 2 stale.
    report = shop.checked("DEL after the commit")
    assert (report.bad, report.exploration.total) == (2, 7)
    full = check_code(shop.get_price, shop.set_price_after_commit, shop.one_product,
                      read_args=(1,), write_args=(1, 450), reduce=False)
    assert (full.bad, full.exploration.total) == (3, 20)


def test_the_bad_schedule_is_the_stale_refill_and_its_diagram_shows_it():
    run = shop.checked("DEL inside the transaction").replays[0]
    assert [step.op.split()[0] for step in run.steps] == [
        "UPDATE", "DEL", "GET", "SELECT", "COMMIT", "SET"]
    assert run.verdict == ("stale: get_price(r, conn, 1) returns 300 through the cache, "
                           "450 with the cache empty")
    assert "participant a0 as W set_price" in shop.stale_refill()
    assert mermaid_problems(shop.stale_refill()) == []


@pytest.mark.parametrize("readers", [1, 2])
def test_versioned_sets_are_never_stale(readers):
    report = shop.checked("versioned sets", readers)
    assert report.bad == 0 and report.exploration.total > 1
    assert report.replays == []


def test_the_readers_own_check_replaces_the_default():
    report = check_code(shop.get_price, shop.set_price_after_commit, shop.one_product,
                        read_args=(1,), write_args=(1, 450), check=shop.cache_matches_db)
    assert report.bad == 2
    assert report.replays[0].verdict == "the cache says 300, the DB 450"


# The command line: exit status 1 if a schedule is bad, 0 if none is, 2 for bad input.

def run_command(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snippets.explorer", "check", *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_command_exits_1_and_draws_the_race_when_a_schedule_is_bad():
    done = run_command(f"{MODULE}:get_price", f"{MODULE}:set_price", *ARGS)
    assert done.returncode == 1, done.stderr
    assert "3 bad of 7 distinct schedules" in done.stdout
    assert "~~~mermaid\nsequenceDiagram\n" in done.stdout
    assert "one writer and one reader" in done.stdout and done.stderr == ""


def test_the_command_exits_0_and_names_its_model_when_none_is():
    done = run_command(f"{MODULE}:get_price_versioned", f"{MODULE}:set_price_versioned",
                       *ARGS, "--readers", "2")
    assert done.returncode == 0, done.stderr
    assert "0 bad of " in done.stdout and "mermaid" not in done.stdout
    assert "These counts hold in a model" in done.stdout
    assert "one writer and two readers" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["nomodule:read", f"{MODULE}:set_price"], "the read nomodule:read: no module named "
                                               "'nomodule'"),
    ([f"{MODULE}:nope", f"{MODULE}:set_price"], f"{MODULE} has no function 'nope' (it has"),
    (["get_price", f"{MODULE}:set_price"], "the read must be module:function"),
    ([f"{MODULE}:TTL", f"{MODULE}:set_price"], f"the read {MODULE}:TTL is not a function"),
    ([f"{MODULE}:get_price", f"{MODULE}:set_price", "--read-args", "1",
      "--write-args", "1"], "the write set_price(r, conn, product_id, price) cannot take 3 "
                            "arguments (r, conn and 1 from --write-args)"),
    ([f"{MODULE}:get_price", f"{MODULE}:set_price", "--read-args", "1",
      "--write-args", "1, ("], "--write-args takes Python literals separated by commas"),
    ([f"{MODULE}:get_price", f"{MODULE}:set_price", *ARGS[2:], "--setup",
      f"{MODULE}:get_price"],
     "the setup get_price(r, conn, product_id) cannot take 2 arguments"),
    ([f"{MODULE}:get_price", f"{MODULE}:set_price", "--read-args", "1",
      "--write-args", "1, 2"], "W: set_price(r, conn, 1, 2), run alone after the setup, "
                               "raised OperationalError: no such table: products "
                               "(no --setup"),
    ([f"{MODULE}:get_price", f"{MODULE}:set_price", "--readers", "3"],
     "argument --readers: invalid choice: 3"),
])
def test_bad_input_exits_2_with_a_message_that_names_it(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_setup_that_raises_is_named():
    def setup(r, conn):
        raise ValueError("no fixtures")

    with pytest.raises(CheckError, match="the setup raised ValueError: no fixtures"):
        check_code(shop.get_price, shop.set_price, setup, read_args=(1,),
                   write_args=(1, 450))


def test_a_check_that_raises_or_returns_no_reason_is_named():
    def raises(r, conn, returns):
        raise KeyError("price")

    def says_yes(r, conn, returns):
        return True

    for check, message in [(raises, "the check raises raised KeyError"),
                           (says_yes, "must return None or a reason")]:
        with pytest.raises(CheckError, match=message):
            check_code(shop.get_price, shop.set_price, shop.one_product,
                       read_args=(1,), write_args=(1, 450), check=check)


# The DB-API connection: each statement is one step, fetching is none.

def table(r, conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (x INTEGER)")


def insert_and_read(r, conn) -> list[tuple]:
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    cursor = conn.cursor()
    cursor.execute("SELECT x FROM t WHERE x >= :low ORDER BY x", {"low": 2})
    first = cursor.fetchone()
    rest = cursor.fetchall()
    conn.commit()
    conn.commit()  # nothing left to commit: no step
    return [first, *rest]


def test_each_statement_and_each_commit_is_one_step_and_fetching_is_none():
    run = replay({"W": connected(insert_and_read, ())}, setup_with(table), "W W W",
                 make_db=SharedSQLite)
    assert [str(step) for step in run.steps] == [
        "W: INSERT INTO t VALUES (?) x 3 -> 3",
        "W: SELECT x FROM t WHERE x >= 2 ORDER BY x -> 2 / 3",
        "W: COMMIT -> OK",
    ]
    assert run.returns["W"] == [(2,), (3,)]


def test_a_write_is_seen_by_the_other_connections_from_its_commit():
    def write(r, conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()

    def read(r, conn):
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]

    actors = {"W": connected(write, ()), "R": connected(read, ())}
    for schedule, seen in [("W R W", 0), ("W W R", 1)]:
        run = replay(actors, setup_with(table), schedule, make_db=SharedSQLite)
        assert run.returns["R"] == seen


def test_a_with_block_that_raises_rolls_back_as_one_step():
    def write(r, conn):
        with conn:
            conn.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("payment declined")

    run = replay({"W": connected(write, ())}, setup_with(table), "W W",
                 make_db=SharedSQLite)
    assert [step.op for step in run.steps] == ["INSERT INTO t VALUES (1)", "ROLLBACK"]
    assert isinstance(run.returns["W"], RuntimeError)
    assert run.db.plain.execute("SELECT count(*) FROM t").fetchone() == (0,)
