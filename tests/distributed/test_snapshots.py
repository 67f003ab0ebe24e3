"""Snapshots and transaction boundaries: each claim of docs/distributed/snapshots.md, the
two-actor explorations on fakeredis and on a real Redis (the lease's script and WATCH are
where the two could differ)."""

from __future__ import annotations

from pathlib import Path

import pytest

from snippets.backends import make_db, user_key
from snippets.distributed import snapshots
from snippets.distributed.snapshots import (
    Cost,
    RequestFailed,
    control,
    counts,
    explore_strategy,
    get_user,
    request_in_snapshot,
    save_deleting_after_commit,
    save_deleting_inside,
    save_name,
    transaction,
    write_calls,
)
from snippets.explorer import explore, mermaid_problems, reusing
from snippets.explorer.pages import words
from snippets.scenarios import user_not_cached
from snippets.replication import SharedFile


# --- the world: a snapshot starts at its first read -----------------------------------------


def test_the_snapshot_starts_at_the_first_read_not_at_begin():
    db = SharedFile()
    db.add_user(1, "old")
    control(db.other, "BEGIN")
    db.execute("UPDATE users SET name = 'new' WHERE id = 1")  # after BEGIN: still seen
    assert db.other.query("SELECT name FROM users WHERE id = 1") == [("new",)]
    db.execute("UPDATE users SET name = 'newer' WHERE id = 1")  # after the first read
    assert db.other.query("SELECT name FROM users WHERE id = 1") == [("new",)]
    control(db.other, "COMMIT")
    assert db.other.query("SELECT name FROM users WHERE id = 1") == [("newer",)]


def test_the_reduction_misses_no_bad_outcome_with_snapshots():
    """BEGIN, COMMIT and a snapshot's reads are steps like any other: DPOR reaches the
    same outcomes, and the same bad ones, as every interleaving."""
    writer, reader, check = snapshots.strategy("snapshot reader", "lease")
    actors = {"W": writer, "R": reader}
    full = explore(actors, user_not_cached, check, reduce=False, make_db=SharedFile)
    reduced = explore(actors, user_not_cached, check, make_db=SharedFile)
    assert set(reduced.outcomes) == set(full.outcomes)
    assert {o for o, v in reduced.verdicts.items() if v} == {
        o for o, v in full.verdicts.items() if v}
    assert reduced.total < full.total


# --- a snapshot reader ----------------------------------------------------------------------


def test_a_snapshot_breaks_the_lease_that_holds_without_a_transaction():
    assert counts("snapshot reader", "lease, no transaction") == (0, 21)
    assert counts("snapshot reader", "lease") == (3, 36)
    assert counts("snapshot reader", "cache-aside, no transaction") == (1, 15)
    assert counts("snapshot reader", "cache-aside") == (6, 28)


def test_the_snapshot_reader_fills_the_old_name_after_the_write_finished():
    run = snapshots.snapshot_race()
    assert run.verdict == "stale: the cache holds 'old' but the DB says 'new'"
    writer_done = max(i for i, s in enumerate(run.steps) if s.actor == "W")
    first_get = next(i for i, s in enumerate(run.steps) if s.op == "GET user:1")
    assert writer_done < first_get  # the write had committed and deleted before it
    assert run.returns["R"] == "old"


@pytest.mark.parametrize("name", ["lease, fill outside"])
def test_fill_outside_the_transaction_with_the_lease_leaves_no_stale_schedule(cache, name):
    result = explore_strategy("snapshot reader", name, make_cache=reusing(cache))
    assert (len(result.bad), result.total) == (0, 36)


def test_a_versioned_fill_from_a_snapshot_leaves_no_stale_schedule():
    assert counts("snapshot reader", "versioned set") == (0, 728)
    assert snapshots.versioned_snapshot().verdict is None


def test_filling_outside_alone_keeps_only_the_reader_race():
    assert counts("snapshot reader", "cache-aside, fill outside") == (1, 28)


def test_filling_outside_mixes_two_moments_in_one_request(cache):
    """The request's snapshot says "old"; its cache read, filled outside, says "new"."""
    db = SharedFile()
    db.add_user(1, "old")
    control(db.other, "BEGIN")
    db.other.query("SELECT count(*) FROM users")
    db.execute("UPDATE users SET name = 'new' WHERE id = 1")
    assert get_user(cache, db, 1) == "new"  # outside: a fresh read
    assert db.other.query("SELECT name FROM users WHERE id = 1") == [("old",)]
    control(db.other, "COMMIT")


def test_what_a_miss_costs():
    assert snapshots.miss_costs() == {
        "cache-aside": Cost(1, 0, 2),
        "lease": Cost(1, 0, 3),
        "lease, fill outside": Cost(0, 1, 3),
        "versioned set": Cost(1, 0, 4),
    }


# --- DEL before COMMIT ------------------------------------------------------------------------


def test_deleting_before_commit_lets_a_reader_refill_the_old_row():
    assert counts("DEL before COMMIT", "cache-aside, DEL inside") == (20, 35)
    assert counts("DEL before COMMIT", "lease, DEL inside") == (8, 70)
    run = snapshots.delete_inside_race()
    assert run.verdict == "stale: the cache holds 'old' but the DB says 'new'"
    assert run.steps[-1].op == "COMMIT" and run.steps[-1].actor == "W"


def test_after_commit_alone_keeps_only_the_reader_race():
    assert counts("DEL before COMMIT", "cache-aside, after commit") == (6, 35)


def test_after_commit_with_the_lease_leaves_no_stale_schedule(cache):
    result = explore_strategy("DEL before COMMIT", "lease, after commit",
                              make_cache=reusing(cache))
    assert (len(result.bad), result.total) == (0, 70)
    assert snapshots.after_commit().steps[-1].result == "0"  # the late fill: refused


def test_after_commit_sends_the_same_calls_with_the_del_after_commit():
    assert write_calls(save_deleting_inside) == ["BEGIN", "UPDATE", "DEL", "COMMIT"]
    assert write_calls(save_deleting_after_commit) == ["BEGIN", "UPDATE", "COMMIT", "DEL"]


def test_callbacks_run_after_commit_and_never_after_rollback():
    db = SharedFile()
    db.add_user(1, "old")
    seen: list[object] = []
    with transaction(db) as tx:
        db.execute("UPDATE users SET name = 'new' WHERE id = 1")
        tx.after_commit(lambda: seen.append(db.other.query("SELECT name FROM users")))
        assert seen == []
    assert seen == [[("new",)]]  # run after COMMIT: another connection reads the row
    with pytest.raises(RequestFailed):
        with transaction(db) as tx:
            db.execute("UPDATE users SET name = 'newer' WHERE id = 1")
            tx.after_commit(lambda: seen.append("ran"))
            raise RequestFailed("late")
    assert seen == [[("new",)]]
    assert db.query("SELECT name FROM users") == [("new",)]


# --- rollback ---------------------------------------------------------------------------------


def test_a_set_inside_a_rolled_back_transaction_caches_a_value_that_never_existed():
    assert counts("rollback", "SET inside") == (12, 33)
    run = snapshots.rollback_race()
    assert run.returns["R"] == "new" and isinstance(run.returns["W"], RequestFailed)
    assert run.cache.get(user_key(1)) == "new"
    assert run.db.query("SELECT name FROM users WHERE id = 1") == [("old",)]


def test_after_a_rollback_a_del_is_harmless_and_after_commit_sends_nothing():
    assert counts("rollback", "DEL inside") == (0, 35)
    assert counts("rollback", "after commit") == (0, 20)


# --- inputs -----------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error(cache):
    db = SharedFile()
    db.add_user(1, "old")
    with pytest.raises(ValueError, match="statement must be one of BEGIN"):
        control(db, "DROP TABLE users")
    with pytest.raises(TypeError, match="db must be a SharedFile"):
        request_in_snapshot(cache, make_db(), get_user)
    with transaction(db) as tx:
        with pytest.raises(TypeError, match="callback must be callable"):
            tx.after_commit("DEL user:1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="user_id must be a positive integer"):
            save_name(tx, 0, "x")
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            save_name(tx, 1, "")
        with pytest.raises(LookupError, match="no user with id 9"):
            save_name(tx, 9, "x")
    assert db.query("SELECT name, version FROM users") == [("old", 1)]
    with pytest.raises(LookupError, match="no scenario named 'x'; scenarios: snapshot"):
        explore_strategy("x", "lease")
    with pytest.raises(LookupError, match="no strategy named 'x' in 'rollback'"):
        explore_strategy("rollback", "x")


def test_a_failed_save_rolls_the_transaction_back(cache):
    db = SharedFile()
    db.add_user(1, "old")
    cache.set("user:1", "old")
    with pytest.raises(LookupError):
        with transaction(db) as tx:
            save_deleting_after_commit(cache, tx, 1, "new")
            save_deleting_after_commit(cache, tx, 9, "x")
    assert db.query("SELECT name FROM users") == [("old",)]
    assert cache.get("user:1") == "old"  # the callback was dropped


@pytest.mark.parametrize("diagram", [
    snapshots.snapshot_race_diagram, snapshots.fill_outside_diagram,
    snapshots.versioned_snapshot_diagram, snapshots.delete_inside_race_diagram,
    snapshots.after_commit_diagram, snapshots.rollback_race_diagram,
])
def test_the_diagrams_are_valid_mermaid_and_the_same_every_run(diagram):
    text = diagram()
    assert mermaid_problems(text) == [] and text == diagram()


# --- the page -----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_names_its_model_and_links_the_older_treatment():
    text = words(ROOT / "docs" / "distributed" / "snapshots.md",
                 ROOT / "snippets" / "distributed" / "snapshots.py")
    assert text.count('!!! info "Holds when"') == 1
    assert "production-pattern.md#a-snapshot-read" in text
    assert "probab" not in text.lower() and "likel" not in text.lower()
