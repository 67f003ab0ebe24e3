"""CDC-driven invalidation: each claim of docs/distributed/cdc.md, checked. The
explorations run on fakeredis and on a real Redis (the ``cache`` fixture)."""

from __future__ import annotations

import pytest

from snippets.backends import make_db, make_fake_cache
from snippets.distributed import cdc
from snippets.distributed.cdc import (STRATEGIES, after_a_migration, catch_up,
                                      crash_before_each_step, explore_strategy,
                                      offset_key, poll_changes,
                                      poll_saving_offset_first, update_user)
from snippets.explorer import mermaid_problems, reusing
from snippets.patterns.cache_aside import get_user
from snippets.replication import add_change_stream, read_changes

STALE = "stale: the cache holds 'old' but the DB says 'new'"


@pytest.fixture
def streamed(cache):
    """User 1 is "old", cached, and the change stream runs from here on."""
    db = make_db()
    db.add_user(1, "old")
    add_change_stream(db)
    get_user(cache, db, 1)
    return cache, db


@pytest.mark.parametrize("name", ["app publish", "outbox", "CDC"])
def test_every_carrier_alone_leaves_the_reader_race(cache, name):
    found = explore_strategy(name, make_cache=reusing(cache))
    assert len(found.bad) == 1, found.summary()
    [bad] = [outcome for outcome, verdict in found.verdicts.items() if verdict]
    # The reader race: the reader read "old" before the write and cached it after.
    assert found.verdicts[bad] == STALE and "Reader returned 'old'" in bad


def test_cdc_with_the_lease_leaves_no_stale_schedule(cache):
    found = explore_strategy("CDC + lease", make_cache=reusing(cache))
    assert found.total > 1 and found.bad == [], found.summary()


def test_the_page_counts():
    counts = {name: (len(f.bad), f.total)
              for name, f in ((n, explore_strategy(n)) for n in STRATEGIES)}
    assert counts == {"app publish": (1, 7), "outbox": (1, 9), "CDC": (1, 7),
                      "CDC + lease": (0, 8)}


def test_the_drawn_races_end_as_the_page_says():
    race, refused = cdc.cdc_reader_race(), cdc.cdc_lease_refusal()
    assert race.verdict == STALE and race.cache.get("user:1") == "old"
    assert refused.verdict is None and refused.steps[-1].result == "0"
    for text in (cdc.cdc_reader_race_diagram(), cdc.cdc_lease_refusal_diagram()):
        assert mermaid_problems(text) == []


def test_a_migration_is_invalidated_by_cdc_and_by_nothing_else():
    assert {name: after_a_migration(name) for name in STRATEGIES} == {
        "app publish": "old", "outbox": "old", "CDC": "new", "CDC + lease": "new"}


def test_the_stream_holds_committed_changes_in_commit_order_and_no_rollback(cache):
    db = make_db()
    for user_id, name in [(1, "Ada"), (2, "Grace")]:
        db.add_user(user_id, name)
    add_change_stream(db)
    update_user(db, 2, "Grace Hopper")
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("UPDATE users SET name = 'never' WHERE id = 1")
        raise RuntimeError("rolled back")
    update_user(db, 1, "Ada Lovelace")
    assert read_changes(db, 0) == [(1, 2), (2, 1)]  # no row for the rollback
    assert read_changes(db, 1) == [(2, 1)]


def test_one_poll_deletes_every_changed_key_once_and_saves_the_offset(streamed):
    cache, db = streamed
    update_user(db, 1, "new")
    update_user(db, 1, "newer")
    assert cache.get("user:1") == "old"  # the writer never touches the cache
    assert poll_changes(cache, db) == 2
    assert cache.get("user:1") is None and cache.get(offset_key("cache_invalidator")) == "2"
    assert poll_changes(cache, db) == 0 and get_user(cache, db, 1) == "newer"


def test_a_lost_offset_only_repeats_deletes(streamed):
    cache, db = streamed
    update_user(db, 1, "new")
    assert catch_up(cache, db) == 1
    cache.delete(offset_key("cache_invalidator"))  # say Redis lost its data
    assert catch_up(cache, db) == 1  # from the start again: the same DEL, once more
    assert get_user(cache, db, 1) == "new"


def test_deleting_before_saving_the_offset_survives_a_crash_at_every_step():
    outcomes = crash_before_each_step(poll_changes)
    assert [read for _, _, read in outcomes] == ["new"] * 4
    assert outcomes[-1][:2] == ("cache.set cdc:offset:cache_invalidator", 2)


def test_saving_the_offset_first_loses_the_delete_on_a_crash():
    outcomes = crash_before_each_step(poll_saving_offset_first)
    assert outcomes[-1] == ("cache.delete user:1", 0, "old")


def test_costs_per_update_and_per_poll():
    cost = cdc.costs("CDC")
    assert (cost["update"].db_reads, cost["update"].db_writes) == (0, 1)
    assert cost["update"].trips["cache"] == 0  # no cache call in the write path
    assert (cost["pass, 1 change"].db_reads, cost["pass, 1 change"].trips["cache"]) == (1, 3)
    assert (cost["pass, idle"].db_reads, cost["pass, idle"].trips["cache"]) == (1, 1)
    assert cdc.costs("outbox")["update"].db_writes == 2  # UPDATE + INSERT outbox
    assert cdc.costs("app publish")["update"].trips["broker"] == 1


# The change stream of this page is a SQLite trigger (snippets/replication.py); PostgreSQL's
# own, logical decoding, has its tests in test_cdc_on_postgres.py.
SQLITE_TRIGGERS = pytest.mark.sqlite_only("the change stream is a SQLite trigger")


@SQLITE_TRIGGERS
def test_the_trigger_writes_one_change_row_per_update_in_the_same_statement(db):
    db.add_user(1, "old")
    add_change_stream(db)
    update_user(db, 1, "new")
    assert db.writes == 1
    assert db.query("SELECT COUNT(*) FROM changes") == [(1,)]


@SQLITE_TRIGGERS
@pytest.mark.parametrize(("args", "error", "message"), [
    ((0, "x"), ValueError, "user_id must be a positive integer, got 0"),
    ((1, ""), ValueError, "name must be a non-empty string, got ''"),
    ((9, "x"), LookupError, "no user with id 9"),
])
def test_the_write_refuses_bad_input_and_streams_nothing(db, args, error, message):
    db.add_user(1, "old")
    add_change_stream(db)
    with pytest.raises(error, match=message):
        update_user(db, *args)
    assert read_changes(db, 0) == []


def test_bad_names_are_clear_errors():
    with pytest.raises(ValueError, match="consumer must be a name"):
        offset_key("cache-eu")
    with pytest.raises(LookupError, match="no strategy named 'x'; strategies: app publish"):
        explore_strategy("x")
    with pytest.raises(TypeError, match="this strategy needs its world, an EventWorld"):
        cdc.STRATEGIES["app publish"].consume(make_fake_cache(), make_db())
