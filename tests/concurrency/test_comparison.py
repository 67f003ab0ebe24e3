"""The computed comparison table: its counts, reasoned from the steps each strategy takes,
the eviction column, and the same table on a real Redis."""

from __future__ import annotations

from math import comb
from pathlib import Path

import pytest

from snippets.explorer.pages import words
from snippets.concurrency import comparison, fixes, production_pattern
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
    "leases": ((comb(4, 2), 0), (comb(6, 2), 0)),  # UPDATE, DEL / GET, SET NX, SELECT, EVAL
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


def test_the_leases_are_the_kits_lease_of_the_production_pattern():
    read, write = STRATEGIES["leases"]
    assert read.func is production_pattern.get_user  # type: ignore[attr-defined]
    assert write is production_pattern.update_user


def test_the_eviction_column_is_where_versioned_sets_break(computed):
    assert computed["versioned-set"]["+ eviction"] == Cell(140, 6)
    assert computed["versioned-set"]["writer + reader"].bad == 0
    assert computed["leases"]["+ eviction"].bad == 0
    # the same exploration as the fixes page's, so the two pages show one number
    total, bad = fixes.counts("versioned-set", "writer + reader + eviction")
    assert Cell(total, len(bad)) == computed["versioned-set"]["+ eviction"]


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


# --- the wording of the page ------------------------------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concurrency" / "comparison.md"


# The source note's old nickname on these pages, spelled apart so that `grep -w` for it
# finds only random seeds.
NICKNAME = "se" "ed"




@pytest.mark.parametrize("phrase", [
    # Zero bad schedules is a statement about the explorer's model, not about every system.
    "zero means it cannot",
    # Invalidate-on-write has several races: a reader's late fill, a lost DEL, a replica.
    "its one race",
    # A count of schedules says an order exists, not how likely it is.
    "however rare the timing",
    # A word readers cannot know; the column header is "Common claim".
    NICKNAME,
    f"The race the {NICKNAME} misses",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase.lower() not in words(PAGE).lower()


def test_the_page_shows_the_eviction_result_in_the_table_and_names_its_model():
    text = words(PAGE)
    assert "versioned-set 0 bad of 70 0 bad of 126 6 bad of 140" in text
    assert '!!! info "Holds when"' in text and "| Common claim |" in text


# --- every "Holds when" box of the section names the same model, in the same words -----------

CANONICAL = {  # assumption -> where it breaks (a link)
    "one Redis that never fails over or loses a write": "(../distributed/failover.md)",
    "every read goes to the primary database and sees what committed before it":
        "(../distributed/replica-lag.md)",
    "a database transaction is one step": "(../distributed/snapshots.md)",
    "the key is deleted after the commit, not before":
        "(reader-race.md#deleting-first-makes-it-worse)",
    "every DEL reaches Redis": "(reader-race.md#a-delete-that-never-arrives)",
    "no key is evicted": "(fixes.md#under-eviction)",
    "no process pauses longer than its lock or lease":
        "(../scaling/mutex.md#why-the-token-and-why-in-one-step)",
    "the checks judge the final state (safety), not whether the cache ever fills (liveness)":
        "(explorer.md#the-model)",
}
PAGES = ["update-vs-invalidate", "reader-race", "fixes", "comparison", "production-pattern",
         "load-test"]


def holds_when_boxes(page: str) -> list[list[str]]:
    """Each box's assumptions, one line each."""
    lines = (PAGE.parent / f"{page}.md").read_text(encoding="utf-8").splitlines()
    boxes = []
    for i, line in enumerate(lines):
        if line == '!!! info "Holds when"':
            body = []
            for nxt in lines[i + 1:]:
                if nxt and not nxt.startswith("    "):
                    break
                body.append(nxt.strip())
            items = " ".join(body).split("- ")[1:]
            boxes.append([" ".join(item.split()) for item in items])
    return boxes


@pytest.mark.parametrize("page", PAGES)
def test_every_guarantee_names_its_model_in_the_canonical_words(page):
    boxes = holds_when_boxes(page)
    assert boxes, f"{page}.md states a guarantee without a Holds-when box"
    for box in boxes:
        assert box[0].startswith("one Redis that never fails over")  # always the first
        for item in box:
            matches = [a for a in CANONICAL if item.startswith(a)]
            assert matches, f"{page}.md: not a canonical assumption: {item!r}"
            assert CANONICAL[matches[0]] in item, f"{page}.md: {item!r} links elsewhere"


# Outside the basic model: the whole table, and what its prose says about each column.

def test_the_page_shows_the_whole_table_the_code_computes():
    assert comparison.page_table() == comparison.markdown_table()


def test_the_page_has_a_stepper_for_every_cell_small_enough_and_says_why_not_for_the_rest():
    shown = comparison.page_table(start=comparison.STEPPERS_START,
                                  end=comparison.STEPPERS_END)
    assert shown == comparison.steppers_section()
    cells = [(strategy, scenario) for strategy in STRATEGIES
             for scenario in comparison.SCENARIOS + comparison.BEYOND]
    too_big = [cell for cell in cells if not comparison.steppable(*cell)]
    assert shown.count("<!-- stepper: ") == len(cells) - len(too_big)
    assert shown.count("More than 800 interleavings") == len(too_big)
    # The biggest: three or four actors, the versioned set's extra round trips.
    assert ("leases", "stampede + write") in too_big
    assert ("versioned-set", "two writers") not in too_big


def test_a_cells_stepper_holds_every_interleaving_of_that_cell():
    import json

    from snippets.explorer import explore
    from snippets.explorer.trees import TREES
    world = comparison.cell_world("leases", "replica lag")
    everything = explore(world.actors, world.setup, world.check, make_db=world.make_db,
                         reduce=False)
    ident = comparison.stepper_id("leases", "replica lag")
    tree = json.loads((TREES / f"{ident}.json").read_text(encoding="utf-8"))
    assert (tree["total"], tree["bad"]) == (everything.total, len(everything.bad))
    assert tree["total"] <= comparison.STEPPER_LIMIT
    assert tree["race"] == list(comparison.cell_found("leases", "replica lag").bad[0])


def test_a_lagging_replica_or_a_snapshot_breaks_leases_but_not_versioned_sets():
    for scenario in ("replica lag", "snapshot read"):
        assert comparison.run_beyond("leases", scenario).bad, scenario
        assert not comparison.run_beyond("versioned-set", scenario).bad, scenario


def test_a_failover_that_loses_the_write_breaks_every_strategy():
    for strategy in STRATEGIES:
        found = comparison.run_beyond(strategy, "failover")
        assert found.bad, strategy
        assert all("F" in schedule for schedule in found.bad)


def test_a_second_reader_keeps_leases_and_versioned_sets_at_zero():
    for strategy in ("leases", "versioned-set"):
        assert not comparison.run_beyond(strategy, "stampede + write").bad
    assert comparison.run_beyond("invalidate-on-write", "stampede + write").bad


def test_an_unknown_scenario_names_the_known_ones():
    with pytest.raises(LookupError, match="failover"):
        comparison.run_beyond("leases", "meteor strike")
