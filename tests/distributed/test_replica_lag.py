"""Fills from a lagging read replica: the strategies of the comparison page on a replica,
and five fixes, each counted and costed. The explorations that matter run on fakeredis
and on a real Redis (REDIS_URL): the lease's script, the tombstone's script and DEL of
several keys are where the two could differ."""

from __future__ import annotations

import pytest

from snippets.concurrency.comparison import STRATEGIES
from snippets.distributed import replica_lag
from snippets.distributed.replica_lag import (
    FIXES,
    COSTED,
    Cell,
    Cost,
    ReplicatedDatabase,
    StreamedReplica,
    consumer_poll_cost,
    costs,
    delete_twice_by_budget,
    explore_lag,
    explore_marker_expiry,
    get_user_tombstoned,
    get_user_with_marker,
    invalidate_from_replica,
    marker_key,
    once_caught_up,
    overlapping,
    parse_entry,
    store_if_newer,
    strategy,
    update_user_only,
    update_user_tombstone,
    update_user_with_marker,
)
from snippets.explorer import explore, mermaid_problems, reusing
from snippets.patterns.cache_aside import get_user
from snippets.scenarios import user_not_cached

STALE = "stale: a read returns 'old', the DB says 'new'"


def cell(result) -> Cell:
    return Cell(result.total, len(result.bad))


# --- the race, for every strategy --------------------------------------------------------


def test_a_read_after_the_write_fills_the_old_value_from_the_replica(cache):
    """The production pattern's lease does not help: the write is done before the read."""
    result = explore_lag(strategy("leases"), "read after write", make_cache=reusing(cache))
    assert cell(result) == Cell(7, 3)


@pytest.mark.parametrize(("name", "after", "evicted"), [
    ("update-on-write", Cell(4, 0), Cell(7, 2)),
    ("versioned-set", Cell(6, 0), Cell(11, 2)),
    ("invalidate-on-write", Cell(6, 3), Cell(12, 6)),
    ("delete-first", Cell(7, 5), Cell(12, 6)),
    ("double-delete", Cell(7, 3), Cell(15, 8)),
])
def test_a_write_that_leaves_its_version_refuses_the_fill_until_it_is_evicted(
        name, after, evicted):
    paths = strategy(name)
    assert cell(explore_lag(paths, "read after write")) == after
    assert cell(explore_lag(paths, "+ eviction")) == evicted


def test_the_combined_actor_counts_exactly_the_schedules_where_the_read_began_later():
    """"Read after write" runs the write and the read in one actor; the same count comes
    from separate actors, every interleaving, keeping those where W finished before R
    began."""
    for name in ("invalidate-on-write", "leases"):
        paths = strategy(name)
        stale = once_caught_up(paths.read)
        later, bad = [0], [0]

        def check(cache, db, returns, stale=stale, later=later, bad=bad):
            verdict = stale(cache, db, returns)
            if returns.finished_before("W", "R"):
                later[0] += 1
                bad[0] += verdict is not None
            return verdict

        explore(overlapping(paths.write, paths.read), user_not_cached, check,
                make_db=ReplicatedDatabase, reduce=False)
        assert Cell(later[0], bad[0]) == cell(explore_lag(paths, "read after write"))


def test_the_reduction_misses_no_outcome_in_the_replicated_world():
    """DPOR in a world of its own (a replica, a change stream) reaches the same outcomes,
    and the same bad ones, as every interleaving."""
    for paths in (strategy("leases"), FIXES["replica's apply stream"]):
        actors = overlapping(paths.write, paths.read) | dict(paths.extra)
        runs = [explore(actors, user_not_cached, once_caught_up(paths.read),
                        make_db=paths.make_db, reduce=reduce) for reduce in (True, False)]
        reduced, full = runs
        assert set(reduced.outcomes) == set(full.outcomes)
        assert ({o for o, v in reduced.verdicts.items() if v}
                == {o for o, v in full.verdicts.items() if v})
        assert reduced.total < full.total


# --- the fixes -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FIXES))
@pytest.mark.parametrize("scenario", ["overlapping", "read after write"])
def test_each_fix_leaves_no_stale_schedule(cache, name, scenario):
    result = explore_lag(FIXES[name], scenario, make_cache=reusing(cache))
    assert result.total > 5 and result.bad == [], result.summary()


@pytest.mark.parametrize("name", ["fill from the primary", "remote markers",
                                  "replica's apply stream"])
def test_the_fixes_that_delete_survive_eviction(name):
    result = explore_lag(FIXES[name], "+ eviction")
    assert result.total > 5 and result.bad == []


def test_an_evicted_tombstone_lets_the_old_fill_in():
    assert cell(explore_lag(FIXES["tombstones"], "+ eviction")) == Cell(12, 2)


def test_markers_break_when_the_marker_is_gone_before_the_replica_applies():
    result = explore_marker_expiry()
    assert (len(result.bad), result.total) == (2, 7)
    for schedule in result.bad:  # the marker went, then the reader looked for it
        names = list(schedule)
        assert names.index("X") < len(names) - 1 - names[::-1].index("WR")


def test_the_apply_stream_needs_the_lease():
    """With a plain cache-aside read, the consumer's DEL can land between the reader's
    read of the replica and its fill."""
    paths = replica_lag.Fix(replica_lag.on_replica(get_user), update_user_only,
                            StreamedReplica, (("C", invalidate_from_replica),))
    assert explore_lag(paths, "overlapping").bad != []


def test_delete_twice_holds_within_the_lag_budget_and_not_beyond(cache):
    assert delete_twice_by_budget(make_cache=reusing(cache)) == {
        "within the budget": Cell(140, 0), "beyond the budget": Cell(140, 13)}


# --- the paths, alone ------------------------------------------------------------------


def test_the_tombstone_refuses_older_fills_and_yields_to_its_own_version(cache):
    store_if_newer(cache, "user:1", 2, "2 deleted", 60)
    assert not store_if_newer(cache, "user:1", 1, "1:old", 60)
    assert store_if_newer(cache, "user:1", 2, "2:new", 60)
    assert not store_if_newer(cache, "user:1", 2, "2 deleted", 60)  # a value of 2 stays
    assert store_if_newer(cache, "user:1", 3, "3 deleted", 60)
    assert parse_entry(cache.get("user:1")) == (3, None)
    assert parse_entry("2:a:b") == (2, "a:b") and 0 < cache.ttl("user:1") <= 60


def test_a_read_after_a_tombstone_reads_the_primary_only_while_the_replica_is_behind(cache):
    world = ReplicatedDatabase()
    world.add_user(1, "old")
    update_user_tombstone(cache, world, 1, "new")
    assert cache.get("user:1") == "2 deleted"
    assert get_user_tombstoned(cache, world, 1) == "new"
    assert (world.reads, world.replica.reads) == (2, 1)  # the write's SELECT, the read's
    assert cache.get("user:1") == "2:new"


def test_a_marker_sends_the_miss_to_the_primary_until_it_expires(cache):
    world = ReplicatedDatabase()
    world.add_user(1, "old")
    update_user_with_marker(cache, world, 1, "new", marker_ms=500)
    assert 0 < cache.pttl(marker_key("user:1")) <= 500
    assert get_user_with_marker(cache, world, 1) == "new"
    assert (world.reads, world.replica.reads) == (1, 0)


def test_the_consumer_deletes_only_what_the_replica_has_applied(cache):
    world = StreamedReplica()
    world.add_user(1, "old")
    cache.set("user:1", "old")
    update_user_only(cache, world, 1, "new")
    assert invalidate_from_replica(cache, world) == 0  # not applied yet: nothing to do
    assert cache.get("user:1") == "old"
    world.replicate()
    assert invalidate_from_replica(cache, world) == 1 and cache.get("user:1") is None
    assert invalidate_from_replica(cache, world) == 0  # read past it


def test_the_costs_the_page_states():
    assert {name: costs(paths) for name, paths in COSTED.items()} == {
        "lease, reads on the replica": {"a miss": Cost(3, 0, 1),
                                        "a miss after a write": Cost(3, 0, 1),
                                        "a write": Cost(1, 1, 0)},
        "fill from the primary": {"a miss": Cost(3, 1, 0),
                                  "a miss after a write": Cost(3, 1, 0),
                                  "a write": Cost(1, 1, 0)},
        "remote markers": {"a miss": Cost(4, 0, 1), "a miss after a write": Cost(4, 1, 0),
                           "a write": Cost(2, 1, 0)},
        "tombstones": {"a miss": Cost(2, 0, 1), "a miss after a write": Cost(2, 1, 1),
                       "a write": Cost(1, 2, 0)},
        "replica's apply stream": {"a miss": Cost(3, 0, 1),
                                   "a miss after a write": Cost(3, 0, 1),
                                   "a write": Cost(0, 1, 0)},
        "delete twice": {"a miss": Cost(3, 0, 1), "a miss after a write": Cost(3, 0, 1),
                         "a write": Cost(2, 1, 0)},
    }
    assert consumer_poll_cost() == Cost(1, 0, 1)


# --- inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("read", [fix.read for fix in FIXES.values()])
def test_reads_need_a_replica_and_a_valid_id(cache, db, read):
    with pytest.raises(TypeError, match="a primary with a replica"):
        read(cache, db, 1)
    with pytest.raises(ValueError, match="user_id must be a positive integer, got 0"):
        read(cache, ReplicatedDatabase(), 0)


@pytest.mark.parametrize("write", [update_user_with_marker, update_user_tombstone,
                                   update_user_only, replica_lag.update_user_delete_twice])
def test_writes_refuse_bad_input(cache, write):
    world = ReplicatedDatabase()
    world.add_user(1, "old")
    with pytest.raises(ValueError, match="name must be a non-empty string, got ''"):
        write(cache, world, 1, "")
    with pytest.raises(LookupError, match="no user with id 9"):
        write(cache, world, 9, "x")
    while world.replicate():  # the failed UPDATE is logged, and changes nothing there
        pass
    for copy in (world, world.replica):
        assert copy.query("SELECT name, version FROM users") == [("old", 1)]


def test_unknown_names_are_clear_errors():
    with pytest.raises(LookupError, match="no strategy named 'x'; strategies: update-on"):
        strategy("x")
    with pytest.raises(LookupError, match="no fix named 'x'; fixes: fill from"):
        replica_lag.fix("x")
    with pytest.raises(LookupError, match="no scenario named 'x'; scenarios: overlapping"):
        explore_lag(strategy("leases"), "x")
    with pytest.raises(TypeError, match="a replica with a change stream"):
        invalidate_from_replica(None, ReplicatedDatabase())
    assert [strategy(name).write for name in STRATEGIES] == [
        write for _, write in STRATEGIES.values()]  # the comparison's paths, reused


@pytest.mark.parametrize(("race", "verdict"), [
    (replica_lag.stale_fill, STALE),
    (replica_lag.beyond_the_budget, STALE),
    (replica_lag.tombstone_read, None),
])
def test_the_drawn_replays_end_as_the_page_says(race, verdict):
    run = race()
    assert run.verdict == verdict
    assert mermaid_problems(replica_lag.draw(run)) == []
