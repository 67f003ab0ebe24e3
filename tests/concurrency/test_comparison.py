"""The computed comparison table: its counts, reasoned from the steps each strategy takes,
and the same table on a real Redis."""

from __future__ import annotations

from math import comb

import pytest

from snippets.concurrency.comparison import STRATEGIES, Cell, run_scenario, table
from snippets.explorer import reusing


def test_strategies_are_the_six_read_write_pairs():
    assert list(STRATEGIES) == ["update-on-write", "invalidate-on-write", "delete-first",
                                "leases", "versioned-set", "double-delete"]
    for read, write in STRATEGIES.values():
        assert callable(read) and callable(write)


# Each actor's steps stay in order, so a writer of w steps and another actor of r steps
# interleave in comb(w + r, w) ways (when the step counts do not depend on the order).
EXPECTED = {
    # strategy: ((two writers: schedules, bad), (writer + reader: schedules, bad))
    "update-on-write": ((comb(4, 2), 2), (comb(5, 2), 1)),  # UPDATE, SET / GET, SELECT, SET
    "invalidate-on-write": ((comb(4, 2), 0), (comb(5, 2), 1)),  # UPDATE, DEL
    "delete-first": ((comb(6, 3), 0), (comb(6, 3), 12)),  # SELECT, DEL, UPDATE
    "leases": ((comb(4, 2), 0), (comb(8, 2), 0)),  # UPDATE, MULTI / a 6-step read
    "double-delete": ((comb(6, 3), 0), (comb(6, 3), 1)),  # UPDATE, DEL, DEL
}


@pytest.fixture(scope="module")
def computed() -> dict[str, dict[str, Cell]]:
    return table()  # on fakeredis, once for this file


@pytest.mark.parametrize("strategy", list(EXPECTED))
def test_counts_follow_from_the_steps(computed, strategy):
    row = computed[strategy]
    writers, reader = EXPECTED[strategy]
    assert row["two writers"] == Cell(*writers)
    assert row["writer + reader"] == Cell(*reader)


def test_versioned_sets_are_never_bad(computed):
    # Their step counts depend on the order (a refused fill stops early, a refused EXEC
    # retries), so only the verdict is fixed: none bad, over more than the 4 + 4 steps' 70.
    row = computed["versioned-set"]
    assert row["two writers"].bad == row["writer + reader"].bad == 0
    assert row["two writers"].schedules >= comb(8, 4)


def test_the_table_is_the_same_on_real_redis(computed, cache):
    assert table(make_cache=reusing(cache)) == computed


def test_unknown_strategy_or_scenario_is_a_clear_error():
    with pytest.raises(LookupError, match="no strategy named 'write-around'; strategies: update-on-write"):
        run_scenario("write-around", "two writers")
    with pytest.raises(LookupError, match="no scenario named 'three writers'; scenarios: two writers"):
        run_scenario("leases", "three writers")


def test_every_bad_schedule_leaves_the_cache_disagreeing_with_the_db():
    result = run_scenario("update-on-write", "two writers")
    assert {str(s) for s in result.bad} == {"A B B A", "B A A B"}
    assert all(result.verdicts[o] for o in result.outcomes if "DB user 1='B'" in o and "user:1='A'" in o)
