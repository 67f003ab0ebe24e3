"""Update vs invalidate on write: each claim of docs/concurrency/update-vs-invalidate.md."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import pytest

from snippets.explorer.pages import words
from snippets.concurrency import update_vs_invalidate
from snippets.concurrency.update_vs_invalidate import (Misses, overlapping_misses, two_writers,
                                                       update_user_and_cache, user_in_cache)
from snippets.explorer import explore, mermaid_problems, replay, reusing
from snippets.patterns.cache_aside import get_user, update_user
from snippets.scenarios import cache_agrees_with_db


def every_interleaving() -> set[str]:
    """All orders of A's two steps and B's two steps, each actor's own steps in order."""
    return {" ".join(order) for order in set(permutations("AABB"))}


def sets_out_of_order(schedule: str) -> bool:
    """Update-on-write is A: UPDATE, SET and B: UPDATE, SET. The DB keeps the last UPDATE,
    the cache the last SET: they disagree when those belong to different requests."""
    names = schedule.split()
    updates = [n for i, n in enumerate(names) if n not in names[:i]]  # first steps, in order
    sets = [n for i, n in enumerate(names) if n in names[:i]]  # second steps, in order
    return updates[-1] != sets[-1]


def test_update_on_write_is_bad_exactly_when_the_sets_run_out_of_order(cache):
    result = explore(two_writers(update_user_and_cache), user_in_cache, cache_agrees_with_db,
                     reduce=False, make_cache=reusing(cache))
    assert result.total == len(every_interleaving()) == 6
    expected = {s for s in every_interleaving() if sets_out_of_order(s)}
    assert expected == {"A B B A", "B A A B"}
    assert {str(s) for s in result.bad} == expected


def test_invalidate_on_write_is_never_bad_with_two_writers(cache):
    result = explore(two_writers(update_user), user_in_cache, cache_agrees_with_db,
                     reduce=False, make_cache=reusing(cache))
    assert result.total == 6 and result.bad == []
    assert all(outcome.startswith("cache empty") for outcome in result.outcomes)


def test_the_common_advices_scenario_db_b_cache_a(cache):
    run = replay(two_writers(update_user_and_cache), user_in_cache, "A B B A",
                 check=cache_agrees_with_db, make_cache=reusing(cache))
    assert run.db.query("SELECT name FROM users WHERE id = 1") == [("B",)]
    assert cache.get("user:1") == "A"
    assert 0 < cache.ttl("user:1") <= 300  # stale until the TTL, unless written again
    assert run.verdict == "stale: the cache holds 'A' but the DB says 'B'"


def test_same_order_with_invalidation_leaves_the_cache_empty():
    run = update_vs_invalidate.invalidate_same_order()
    assert run.verdict is None and run.cache.get("user:1") is None
    assert get_user(run.cache, run.db, 1) == "B"


def test_the_writers_start_from_old_in_the_db_and_in_the_cache(cache, db):
    user_in_cache(cache, db)
    assert db.query("SELECT name FROM users WHERE id = 1") == [("old",)]
    assert cache.get("user:1") == "old"


def test_update_on_write_alone_sets_the_new_value_with_a_ttl(cache, db):
    db.add_user(1, "old")
    update_user_and_cache(cache, db, 1, "new", ttl=60)
    assert cache.get("user:1") == "new" and 0 < cache.ttl("user:1") <= 60
    assert db.query("SELECT name, version FROM users WHERE id = 1") == [("new", 2)]


@pytest.mark.parametrize(("args", "error", "message"), [
    ((0, "x"), ValueError, "user_id must be a positive integer, got 0"),
    ((1, ""), ValueError, "name must be a non-empty string, got ''"),
    ((1, None), ValueError, "name must be a non-empty string, got None"),
    ((1, "x", 0), ValueError, "ttl must be a positive number of seconds, got 0"),
    ((7, "x"), LookupError, "no user with id 7"),
])
def test_bad_input_is_refused_and_nothing_is_written(cache, db, args, error, message):
    db.add_user(1, "old")
    cache.set("user:7", "someone else's")
    with pytest.raises(error, match=message):
        update_user_and_cache(cache, db, *args)
    assert db.query("SELECT name FROM users WHERE id = 1") == [("old",)]
    assert cache.get("user:1") is None and cache.get("user:7") == "someone else's"


@pytest.mark.parametrize("draw", [update_vs_invalidate.two_writers_race_diagram,
                                  update_vs_invalidate.invalidate_same_order_diagram])
def test_the_drawn_replays_are_well_formed_mermaid(draw):
    assert mermaid_problems(draw()) == []


# --- what one DEL of a hot key costs ---------------------------------------------------------


@pytest.mark.parametrize("readers", [1, 10, 50])
def test_one_delete_of_a_hot_key_costs_one_db_read_per_overlapping_reader(readers):
    """Not "one extra database read": every reader that misses before the refill reads."""
    cache_aside = lambda cache, db, sleep: get_user(cache, db, 1)  # noqa: E731
    assert overlapping_misses(cache_aside, readers=readers) == Misses(readers, readers)


def test_readers_that_arrive_after_the_refill_hit():
    """The control: a reader that arrives once the first fill has landed costs nothing."""
    def late_reader(cache, db, sleep):
        sleep(0.1)  # in virtual time: after the first reader's 50 ms read and its fill
        return get_user(cache, db, 1)

    first = lambda cache, db, sleep: get_user(cache, db, 1)  # noqa: E731
    both = iter([first, late_reader])
    assert overlapping_misses(lambda c, d, s: next(both)(c, d, s), readers=2) == Misses(1, 1)


# --- the wording of the page ------------------------------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concurrency" / "update-vs-invalidate.md"


# The source note's old nickname on these pages, spelled apart so that `grep -w` for it
# finds only random seeds.
NICKNAME = "se" "ed"




@pytest.mark.parametrize("phrase", [
    # A DEL of a hot key sends every reader that misses before the refill to the DB.
    "it costs only one extra database read",
    "only cost is one extra database read",
    # The old title of the reader-race page, and a word readers cannot know.
    f"The race the {NICKNAME} misses",
    NICKNAME,
    # A count of schedules is not a share of requests.
    "1 of 10 interleavings",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase.lower() not in words(PAGE).lower()


def test_the_page_counts_what_one_delete_costs_and_names_its_model():
    text = words(PAGE)
    assert "Misses(db_reads=10, fills=10)" in text
    assert '!!! info "Holds when"' in text
    assert "../appendix/common-claims.md" in text and "| Common claim |" in text
