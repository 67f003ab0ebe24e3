"""The shared kit: input checks, fault injection, the shared invariant, and the tool that
keeps the pages' transcripts fresh."""

from __future__ import annotations

import shutil

import pytest

from snippets.backends import check_int, check_number, make_db, make_fake_cache
from snippets.explorer import pages as docs_tool
from snippets.faults import Crash, Faults, Intercept
from snippets.scenarios import agrees_with_db, cache_agrees_with_db, user_not_cached


@pytest.mark.parametrize(("value", "minimum", "message"), [
    (0, 1, "n must be a positive integer, got 0"),
    (True, 1, "n must be a positive integer, got True"),
    (1.5, 1, "n must be a positive integer, got 1.5"),
    (-1, 0, "n must be an integer >= 0, got -1"),
])
def test_check_int_names_the_argument_and_the_bad_value(value, minimum, message):
    with pytest.raises(ValueError) as error:
        check_int("n", value, minimum)
    assert str(error.value) == message
    assert check_int("n", minimum, minimum) == minimum


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_check_number_refuses_what_is_not_a_finite_number_above_the_minimum(value):
    with pytest.raises(ValueError, match=r"x must be a number > 0, got"):
        check_number("x", value)
    assert check_number("x", 2) == 2.0


def test_faults_crash_just_before_the_chosen_step_and_the_call_never_happens():
    faults = Faults(crash_at=[2])
    cache = faults.wrap(make_fake_cache(), "cache")
    db = faults.wrap(make_db(), "db")
    cache.set("user:1", "a")
    with pytest.raises(Crash, match="crash at step 2: before db.execute UPDATE users"):
        db.execute("UPDATE users SET name = 'b' WHERE id = 1")
    assert faults.steps == ["cache.set user:1", "db.execute UPDATE users"]
    assert faults.crashed == ["db.execute UPDATE users"]
    assert cache.get("user:1") == "a"  # a step that did not crash ran
    assert db.writes == 0  # the crashed one did not


def test_a_killed_process_sends_nothing_more():
    faults = Faults()
    cache = faults.wrap(make_fake_cache(), "cache", methods=["set"])
    faults.kill()
    with pytest.raises(Crash):
        cache.set("k", "v")
    assert cache.get("k") is None  # not counted, not blocked: only `set` is wrapped


def test_crash_is_not_an_exception_so_pattern_code_cannot_swallow_it():
    assert issubclass(Crash, BaseException) and not issubclass(Crash, Exception)


@pytest.mark.parametrize(("crash_at", "error"), [([0], ValueError), ([True], ValueError)])
def test_bad_fault_arguments_are_clear_errors(crash_at, error):
    with pytest.raises(error, match="crash_at holds steps 1, 2, ..."):
        Faults(crash_at=crash_at)
    with pytest.raises(TypeError, match="methods must be a list"):
        Faults().wrap(make_fake_cache(), "cache", methods="set")
    with pytest.raises(ValueError, match="has no method 'nope'"):
        Faults().wrap(make_fake_cache(), "cache", methods=["nope"])


def test_intercept_runs_the_hook_once_before_the_next_call():
    cache, seen = make_fake_cache(), []
    wrapped = Intercept(cache, "delete", lambda: seen.append(cache.get("k")))
    cache.set("k", "v")
    wrapped.delete("k")
    wrapped.delete("k")
    assert seen == ["v"]
    with pytest.raises(ValueError, match="no method 'nope'"):
        Intercept(cache, "nope", lambda: None)


def test_the_invariant_accepts_nothing_or_the_db_value_and_names_a_stale_one():
    cache, db = make_fake_cache(), make_db()
    user_not_cached(cache, db)
    assert cache_agrees_with_db(cache, db, {}) is None  # nothing cached
    cache.set("user:1", "old")
    assert cache_agrees_with_db(cache, db, {}) is None  # the DB's value
    cache.set("user:1", "new")
    assert cache_agrees_with_db(cache, db, {}) == "stale: the cache holds 'new' but the DB says 'old'"
    cache.hset("h", "name", "x")
    assert agrees_with_db(lambda c: c.hget("h", "name"))(cache, db, {}) is not None


def test_a_stale_transcript_is_rewritten_from_a_fresh_run(tmp_path):
    page = tmp_path / "concurrency" / "explorer.md"
    page.parent.mkdir()
    shutil.copy(docs_tool.DOCS / "concurrency" / "explorer.md", page)
    assert docs_tool.update_transcripts([page], write=False) == []
    good = page.read_text(encoding="utf-8")
    page.write_text(good.replace("  replay of A B B A:", "  replay of B A A B:"), encoding="utf-8")
    assert docs_tool.update_transcripts([page], write=False) == ["explorer.md"]
    assert docs_tool.update_transcripts([page], write=True) == ["explorer.md"]
    assert page.read_text(encoding="utf-8") == good
