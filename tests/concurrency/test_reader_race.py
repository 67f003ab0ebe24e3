"""The reader race, a stale fill after the delete: each claim of
docs/concurrency/reader-race.md, on fakeredis and on a real Redis."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import pytest

from snippets.explorer.pages import words
from snippets.backends import DEFAULT_TTL
from snippets.concurrency import reader_race
from snippets.concurrency.reader_race import (LONE_WRITER, delete_then_update, draw,
                                              loses_deletes, no_stale_read_after_write,
                                              writer_and_reader, writer_and_two_readers)
from snippets.concurrency.update_vs_invalidate import user_in_cache
from snippets.explorer import explore, mermaid_problems, replay, reusing
from snippets.patterns.cache_aside import get_user, update_user
from snippets.scenarios import cache_agrees_with_db, user_not_cached


def interleavings(reader_steps: int, writer_steps: int) -> set[str]:
    return {" ".join(order) for order in set(permutations("R" * reader_steps + "W" * writer_steps))}


def positions(schedule: str, actor: str) -> list[int]:
    return [i for i, name in enumerate(schedule.split()) if name == actor]


def reads_old_and_sets_after(schedule: str, update: int, delete: int) -> bool:
    """The reader (GET, SELECT, SET) reads before the UPDATE and sets after the DEL; the
    writer's UPDATE and DEL are its steps number ``update`` and ``delete``."""
    reader, writer = positions(schedule, "R"), positions(schedule, "W")
    return reader[1] < writer[update] and reader[2] > writer[delete]


def test_invalidate_on_write_with_a_reader_is_bad_in_exactly_the_reader_race(cache):
    result = explore(writer_and_reader(update_user), user_not_cached, cache_agrees_with_db,
                     reduce=False, make_cache=reusing(cache))
    everything = interleavings(3, 2)
    assert result.total == len(everything) == 10
    expected = {s for s in everything if reads_old_and_sets_after(s, update=0, delete=1)}
    assert expected == {"R R W W R"}
    assert {str(s) for s in result.bad} == expected


def test_delete_first_is_bad_whenever_a_reader_fills_between_delete_and_commit(cache):
    # The writer: existence check, DEL, UPDATE. Bad if the reader reads before the UPDATE
    # and sets after the DEL: a wider window than delete-after's.
    result = explore(writer_and_reader(delete_then_update), user_not_cached,
                     cache_agrees_with_db, reduce=False, make_cache=reusing(cache))
    everything = interleavings(3, 3)
    expected = {s for s in everything if reads_old_and_sets_after(s, update=2, delete=1)}
    assert result.total == len(everything) == 20
    assert {str(s) for s in result.bad} == expected
    assert len(expected) == 12


def test_the_stale_value_stays_until_the_ttl_and_is_served_from_cache(cache):
    run = replay(writer_and_reader(update_user), user_not_cached, "R R W W R",
                 check=cache_agrees_with_db, make_cache=reusing(cache))
    assert run.returns["R"] == "old"
    assert cache.get("user:1") == "old"
    assert 0 < cache.ttl("user:1") <= DEFAULT_TTL
    run.db.reset_counts()
    assert get_user(cache, run.db, 1) == "old" and run.db.reads == 0


def test_a_read_that_starts_after_the_write_can_return_the_old_value(cache):
    run = replay(writer_and_two_readers(update_user), user_not_cached, "R R W W R R2",
                 check=no_stale_read_after_write, make_cache=reusing(cache))
    assert run.returns.finished_before("W", "R2")
    assert run.returns["R2"] == "old"
    assert run.verdict == "R2 began after W finished, yet read 'old'"


def test_every_bad_schedule_with_two_readers_is_a_late_fill_of_the_old_value():
    result = reader_race.explore_two_readers(update_user)
    assert result.bad and len(result.bad) < result.total
    for schedule in result.bad:
        steps = replay(writer_and_two_readers(update_user), user_not_cached, schedule).steps
        delete = next(i for i, s in enumerate(steps) if s.op.startswith("DEL"))
        late_fills = [s for s in steps[delete:] if s.op.startswith('SET user:1 "old"')]
        assert late_fills, f"{schedule}: bad without a late fill"


def test_a_lost_delete_leaves_the_old_value_until_the_ttl(cache):
    faulty = reusing(loses_deletes(cache))  # FLUSHDB still works; DEL does not
    result = reader_race.explore_lost_delete(make_cache=faulty)
    assert result.total == 1 and len(result.bad) == 1
    run = replay(LONE_WRITER, user_in_cache, "W W", check=cache_agrees_with_db,
                 make_cache=faulty)
    assert type(run.returns["W"]).__name__ == "ConnectionError"
    assert run.db.query("SELECT name FROM users WHERE id = 1") == [("new",)]
    assert cache.get("user:1") == "old" and 0 < cache.ttl("user:1") <= DEFAULT_TTL
    assert [step.failed for step in run.steps] == [False, True]


def test_delete_first_alone_deletes_then_updates(cache, db):
    db.add_user(1, "old")
    get_user(cache, db, 1)
    delete_then_update(cache, db, 1, "new")
    assert cache.get("user:1") is None
    assert db.query("SELECT name, version FROM users WHERE id = 1") == [("new", 2)]


@pytest.mark.parametrize(("args", "error", "message"), [
    ((0, "x"), ValueError, "user_id must be a positive integer, got 0"),
    ((1, ""), ValueError, "name must be a non-empty string, got ''"),
    ((7, "x"), LookupError, "no user with id 7"),
])
def test_delete_first_refuses_bad_input_before_deleting(cache, db, args, error, message):
    db.add_user(1, "old")
    get_user(cache, db, 1)
    cache.set("user:7", "someone else's")
    with pytest.raises(error, match=message):
        delete_then_update(cache, db, *args)
    assert cache.get("user:1") == "old" and cache.get("user:7") == "someone else's"
    assert db.writes == 0


@pytest.mark.parametrize("race", [reader_race.reader_race,
                                  reader_race.stale_for_the_next_reader,
                                  reader_race.delete_first_race, reader_race.lost_delete])
def test_every_race_drawn_on_the_page_is_bad_and_well_formed(race):
    run = race()
    assert run.verdict is not None
    text = draw(run)
    assert mermaid_problems(text) == []
    assert text.endswith(f"Note over R,D: {run.verdict}")  # the diagram says what is wrong


# --- the wording of the page ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "concurrency" / "reader-race.md"
TITLE = "The reader race: a stale fill after the delete"


# The source note's old nickname on these pages, spelled apart so that `grep -w` for it
# finds only random seeds.
NICKNAME = "se" "ed"




@pytest.mark.parametrize("phrase", [
    # No measurement on the site supports a rate per day; a count of orders is not one.
    "several times a day",
    "Rarely under light load",
    # Counts of schedules read as shares of requests.
    "1 of 10 interleavings",
    "1 of 10 bad against 12 of 20",
    # The event-driven page publishes from the application after the commit: a dual
    # write, with the same gap as the DEL, not the database's change log.
    "change log ([event-driven",
    "driven by the database's own change log",
    # The old title, and a word readers cannot know.
    f"The race the {NICKNAME} misses",
    NICKNAME,
])
def test_the_page_no_longer_claims(phrase):
    assert phrase.lower() not in words(PAGE).lower()


def test_the_page_and_its_nav_entry_say_what_the_race_is():
    assert PAGE.read_text(encoding="utf-8").startswith(f"# {TITLE}\n")
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f'- "{TITLE}": concurrency/reader-race.md' in nav


def test_the_page_says_what_makes_a_delete_reliable_and_names_its_model():
    text = words(PAGE)
    assert "([change data capture](../distributed/cdc.md))" in text
    assert "[event-driven invalidation](../patterns/event-driven.md) does, is the same gap" in text
    assert '!!! info "Holds when"' in text
