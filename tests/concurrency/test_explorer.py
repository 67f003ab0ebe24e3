"""The interleaving explorer: it finds a known race, finds none where there is none,
replays exactly, draws valid Mermaid, and refuses bad input clearly."""

from __future__ import annotations

import re
import threading
from math import factorial

import pytest
import redis

from snippets.backends import Cache, Database, make_fake_cache
from snippets.concurrency import explorer as worked_example
from snippets.concurrency.explorer import writer
from snippets.explorer import (
    Returns,
    Schedule,
    dependent,
    explore,
    mermaid_problems,
    redis_footprint,
    replay,
    reusing,
    runtime,
)
from snippets.explorer import footprints as fp
from snippets.explorer import pages as docs_tool
from snippets.scenarios import cache_agrees_with_db, user_not_cached

WRITERS = {"A": writer("A"), "B": writer("B")}


def incr(key: str, times: int):
    def actor(cache: Cache, db: Database) -> None:
        for _ in range(times):
            cache.incr(key)
    return actor


def invalidating_writer(name: str):
    def write(cache: Cache, db: Database) -> None:
        db.execute("UPDATE users SET name = ? WHERE id = 1", (name,))
        cache.delete("user:1")
    return write


# Finding races, and not finding them.

def test_finds_the_lost_update_of_two_update_on_write_writers(cache):
    result = explore(WRITERS, user_not_cached, cache_agrees_with_db, make_cache=reusing(cache))
    # Each writer is UPDATE then SET. The two UPDATEs conflict, the two SETs conflict, an
    # UPDATE and a SET commute: 2 x 2 orders, and the two where the SETs run in the
    # opposite order of the UPDATEs leave the cache disagreeing with the DB.
    assert result.total == 4
    assert sorted(map(str, result.bad)) == ["A B B A", "B A A B"]
    assert sum(result.outcomes.values()) == 4


def test_without_reduction_every_interleaving_is_run():
    result = explore(WRITERS, user_not_cached, cache_agrees_with_db, reduce=False)
    assert result.total == factorial(4) // (factorial(2) * factorial(2))  # 6
    assert sorted(map(str, result.bad)) == ["A B B A", "B A A B"]
    assert result.pruned == 0


def test_finds_no_race_where_there_is_none(cache):
    actors = {"A": invalidating_writer("A"), "B": invalidating_writer("B")}
    result = explore(actors, user_not_cached, cache_agrees_with_db, make_cache=reusing(cache))
    assert result.total > 1
    assert result.bad == []


@pytest.mark.parametrize("sizes", [(3, 3), (2, 2, 2), (1, 4)])
def test_counts_every_interleaving_of_conflicting_steps(sizes):
    # All steps write one key: nothing commutes, so even with reduction the count is
    # the multinomial coefficient (a+b+...)! / (a! b! ...).
    actors = {chr(65 + i): incr("k", n) for i, n in enumerate(sizes)}
    expected = factorial(sum(sizes))
    for n in sizes:
        expected //= factorial(n)
    assert explore(actors).total == expected
    assert explore(actors, reduce=False).total == expected


def test_steps_on_different_keys_commute_and_count_once():
    actors = {"A": incr("a", 3), "B": incr("b", 3)}
    assert explore(actors).total == 1
    assert explore(actors, reduce=False).total == 20


@pytest.mark.parametrize("scenario", ["writers", "reader"])
def test_reduction_loses_no_outcome(scenario):
    """Counting equivalent orders once must still reach every distinct final state."""
    from snippets.patterns.cache_aside import get_user, update_user
    if scenario == "writers":
        actors = WRITERS
    else:
        actors = {"W": lambda c, d: update_user(c, d, 1, "new"),
                  "R1": lambda c, d: get_user(c, d, 1), "R2": lambda c, d: get_user(c, d, 1)}
    reduced = explore(actors, user_not_cached, cache_agrees_with_db)
    full = explore(actors, user_not_cached, cache_agrees_with_db, reduce=False)
    assert set(reduced.outcomes) == set(full.outcomes)
    assert reduced.total < full.total or scenario == "writers"
    assert bool(reduced.bad) == bool(full.bad)


def test_footprints_and_conflicts():
    get, set_, other = (redis_footprint(a) for a in (["GET", "k"], ["SET", "k", "v"], ["SET", "j", "v"]))
    assert not dependent(get, get)
    assert dependent(get, set_) and dependent(set_, set_)
    assert not dependent(set_, other)
    assert dependent(redis_footprint(["FLUSHDB"]), other)  # unknown commands touch every key
    assert redis_footprint(["DEL", "a", "b"]) == {("cache", "a", True), ("cache", "b", True)}
    assert redis_footprint(["EVAL", "return 1", 1, "k", "arg"]) == {
        ("cache", "k", True), ("cache", fp.SCRIPTS, True)}
    evalsha = redis_footprint(["EVALSHA", "abc", 1, "k"])
    assert dependent(redis_footprint(["SCRIPT", "LOAD", "return 1"]), evalsha)  # NOSCRIPT or not
    assert not dependent(evalsha, redis_footprint(["EVALSHA", "abc", 1, "j"]))
    assert fp.sql_footprint("  select 1") == fp.DB_READ
    assert fp.sql_footprint("UPDATE users SET name = 'x' RETURNING id") == fp.DB_WRITE
    assert not dependent(fp.DB_READ, fp.DB_READ)
    assert dependent(fp.DB_READ, fp.DB_WRITE)
    assert not dependent(fp.DB_WRITE, set_)


# Replay.

def test_replay_runs_exactly_that_schedule_every_time():
    first = replay(WRITERS, user_not_cached, "A B B A", check=cache_agrees_with_db)
    again = replay(WRITERS, user_not_cached, Schedule.parse("A B B A"), check=cache_agrees_with_db)
    assert first.steps == again.steps
    assert [str(step) for step in first.steps] == [
        'A: UPDATE users SET name = "A" WHERE id = 1 -> 1',
        'B: UPDATE users SET name = "B" WHERE id = 1 -> 1',
        'B: SET user:1 "B" -> OK',
        'A: SET user:1 "A" -> OK',
    ]
    assert first.verdict == "stale: the cache holds 'A' but the DB says 'B'"
    assert first.cache.get("user:1") == "A"
    assert first.db.query("SELECT name FROM users WHERE id = 1") == [("B",)]


def test_every_explored_bad_schedule_replays_to_a_bad_state():
    result = explore(WRITERS, user_not_cached, cache_agrees_with_db)
    for schedule in result.bad:
        run = replay(WRITERS, user_not_cached, schedule, check=cache_agrees_with_db)
        assert run.schedule == schedule and run.verdict is not None


def test_schedule_prints_short_and_parses_back():
    schedule = Schedule(("A", "B", "B", "A"))
    assert str(schedule) == "A B B A"
    assert Schedule.parse(str(schedule)) == schedule
    assert Schedule.parse(["A", "B"]) == ("A", "B")


def test_returns_record_values_exceptions_and_timing():
    def reader(cache: Cache, db: Database) -> str | None:
        return cache.get("user:1")

    def failing(cache: Cache, db: Database) -> None:
        cache.set("user:1", "x")
        raise redis.ConnectionError("lost")

    run = replay({"W": failing, "R": reader}, None, "W R")
    assert isinstance(run.returns["W"], redis.ConnectionError)
    assert run.returns["R"] == "x"
    assert run.returns.finished_before("W", "R") and not run.returns.finished_before("R", "W")
    with pytest.raises(LookupError, match="no actor named 'X'"):
        run.returns.finished_before("X", "R")
    outcome = next(iter(explore({"W": failing, "R": reader}).outcomes))
    assert "W raised ConnectionError" in outcome


def test_a_failing_call_is_a_step_drawn_with_a_cross():
    def flaky() -> Cache:
        cache = make_fake_cache()
        real = cache.execute_command

        def execute_command(*args, **options):
            if args[0] == "DEL":
                raise redis.ConnectionError("connection lost")
            return real(*args, **options)
        cache.execute_command = execute_command
        return cache

    run = replay({"W": invalidating_writer("new")}, user_not_cached, "W W", make_cache=flaky)
    assert [step.failed for step in run.steps] == [False, True]
    assert run.steps[1].result == "error ConnectionError"
    assert "    R--xa0: error ConnectionError" in run.mermaid().splitlines()


def test_a_transaction_is_one_step():
    def move(cache: Cache, db: Database) -> None:
        with db.transaction():
            db.execute("UPDATE users SET name = 'x' WHERE id = 1")
            db.execute("UPDATE users SET version = version + 1 WHERE id = 1")

    run = replay({"T": move}, user_not_cached, "T")
    assert [step.op for step in run.steps] == [
        "BEGIN, UPDATE users SET name = 'x' WHERE id = 1, "
        "UPDATE users SET version = version + 1 WHERE id = 1, COMMIT"]


def test_a_transaction_can_be_drawn_as_a_block_of_its_statements():
    def move(cache: Cache, db: Database) -> None:
        with db.transaction():
            db.execute("UPDATE users SET name = 'x' WHERE id = 1")
            db.query("SELECT version FROM users WHERE id = 1")

    run = replay({"T": move}, user_not_cached, "T")
    [step] = run.steps
    assert step.inner == (("UPDATE users SET name = 'x' WHERE id = 1", "1"),
                          ("SELECT version FROM users WHERE id = 1", "1"))
    block = run.mermaid(transactions_as_blocks=True).split("\n")[4:]
    assert block == [
        "    critical BEGIN, one transaction: one step",
        "    a0->>D: UPDATE users SET name = 'x' WHERE id = 1", "    D-->>a0: 1",
        "    a0->>D: SELECT version FROM users WHERE id = 1", "    D-->>a0: 1",
        "    a0->>D: COMMIT", "    D-->>a0: committed",
        "    end",
        "    Note over a0: done"]
    assert mermaid_problems(run.mermaid(transactions_as_blocks=True)) == []
    assert "a0->>D: BEGIN, UPDATE" in run.mermaid()  # one message by default


def test_redis_py_transaction_helper_retries_under_the_explorer(cache):
    """cache.transaction(func, *watches) runs WATCH, func, EXEC and retries on WatchError:
    every interleaving with a concurrent INCR ends with both increments counted."""
    def double(cache: Cache, db: Database) -> None:
        def body(pipe) -> None:
            value = int(pipe.get("n") or 0)
            pipe.multi()
            pipe.set("n", value * 2)
        cache.transaction(body, "n")

    def add_one(cache: Cache, db: Database) -> None:
        cache.incr("n")

    result = explore({"D": double, "I": add_one}, lambda c, d: c.set("n", 1),
                     lambda c, d, r: None if c.get("n") in ("3", "4") else f"n = {c.get('n')}",
                     reduce=False, make_cache=reusing(cache))
    assert result.bad == []
    assert {o.split(",")[0] for o in result.outcomes} == {"cache n='3'", "cache n='4'"}
    retried = replay({"D": double, "I": add_one}, lambda c, d: c.set("n", 1), "D D I D D D D",
                     make_cache=reusing(cache))
    assert [s.op for s in retried.steps if s.actor == "D"] == [
        "WATCH n", "GET n", "MULTI, SET n 2, EXEC", "WATCH n", "GET n", "MULTI, SET n 4, EXEC"]
    assert cache.get("n") == "4"


def test_watch_multi_exec_steps_and_a_refused_exec(cache):
    """WATCH and GET run at once (a step each); MULTI ... EXEC is one step, refused if a
    watched key changed in between."""
    def checked_set(cache: Cache, db: Database) -> str:
        with cache.pipeline() as pipe:
            pipe.watch("k")
            pipe.get("k")
            pipe.multi()
            pipe.set("k", "mine")
            try:
                pipe.execute()
            except redis.WatchError:
                return "refused"
        return "set"

    def other(cache: Cache, db: Database) -> None:
        cache.set("k", "theirs")

    actors = {"A": checked_set, "B": other}
    refused = replay(actors, None, "A A B A", make_cache=reusing(cache))
    assert [step.op for step in refused.steps] == [
        "WATCH k", "GET k", 'SET k "theirs"', 'MULTI, SET k "mine", EXEC']
    assert refused.returns["A"] == "refused" and refused.cache.get("k") == "theirs"
    accepted = replay(actors, None, "B A A A", make_cache=reusing(cache))
    assert accepted.returns["A"] == "set" and accepted.cache.get("k") == "mine"
    assert explore(actors, make_cache=reusing(cache)).total == 4  # B before A, or after one of A's 3


# Diagrams.

def check_mermaid(text: str) -> None:
    assert mermaid_problems(text) == []


def test_the_mermaid_checker_catches_what_it_should():
    good = replay(WRITERS, user_not_cached, "A B B A").mermaid()
    assert mermaid_problems(good) == []
    assert mermaid_problems("graph TD\n    a0->>R: x") != []
    assert mermaid_problems(good + "\n    a9->>R: GET k") != []  # undeclared
    assert mermaid_problems(good + "\n    a0->>R: GET k; DEL k") != []  # a semicolon
    assert mermaid_problems(good + "\n    participant z as Z") != []  # too late
    assert mermaid_problems(good + "\n    critical x") == ["a block is not closed with end"]
    assert mermaid_problems(good + "\n    end") != []


def test_generated_diagram_is_well_formed_mermaid():
    run = replay(WRITERS, user_not_cached, "A B B A", check=cache_agrees_with_db)
    text = run.mermaid(labels={"A": "Writer A", "B": "Writer B"})
    check_mermaid(text)
    assert text.split("\n")[:5] == [
        "sequenceDiagram", "    participant a0 as Writer A", "    participant a1 as Writer B",
        "    participant R as Redis", "    participant D as Database"]
    assert '    a1->>R: SET user:1 "B"' in text
    assert text.endswith("    Note over R,D: stale: the cache holds 'A' but the DB says 'B'")
    assert len(re.findall(r"\w->>", text)) == 4 and text.count("-->>") == 4  # request, reply


def test_diagram_text_is_cleaned_of_what_breaks_mermaid():
    def odd(cache: Cache, db: Database) -> None:
        cache.set("k", "a;b#c{d}<e>")

    text = replay({"A": odd}, None, "A").mermaid()
    check_mermaid(text)
    assert '"a,bcde"' in text


def test_diagram_fences_are_found_and_rewritten(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("x\n<!-- diagram: snippets.concurrency.explorer:_test_diagram -->\n```mermaid\nold\n```\n")
    worked_example._test_diagram = lambda: replay(WRITERS, user_not_cached, "A A B B")  # type: ignore[attr-defined]
    try:
        assert docs_tool.page_diagrams(page) == [("snippets.concurrency.explorer:_test_diagram", "old")]
        assert docs_tool.update_diagrams([page], write=False) == ["page.md: snippets.concurrency.explorer:_test_diagram"]
        assert "old" in page.read_text()
        docs_tool.update_diagrams([page], write=True)
        assert docs_tool.update_diagrams([page], write=False) == []
        [(_, body)] = docs_tool.page_diagrams(page)
        check_mermaid(body)
    finally:
        del worked_example._test_diagram  # type: ignore[attr-defined]


# Bad input, and actors that misbehave.

@pytest.mark.parametrize(("actors", "error", "message"), [
    ([writer("A")], TypeError, "actors must be a mapping"),
    ({}, ValueError, "actors is empty"),
    ({"two words": writer("A")}, ValueError, "actor names are short identifiers"),
    ({"A": "not a function"}, TypeError, "actor 'A' must be a function"),
])
def test_bad_actors_are_a_clear_error(actors, error, message):
    with pytest.raises(error, match=message):
        explore(actors)
    with pytest.raises(error, match=message):
        replay(actors, None, "A")


@pytest.mark.parametrize(("schedule", "message"), [
    ("A C", "step 2 names 'C', which is not an actor"),
    ("A A B", "ends after 3 steps, but B still had steps to take"),
    ("A A A B B", "step 3 names 'A', which had already finished"),
    ("A A B B B", "has 5 steps, but every actor finished after 4"),
])
def test_a_schedule_that_does_not_fit_is_a_clear_error(schedule, message):
    with pytest.raises(ValueError, match=message):
        replay(WRITERS, user_not_cached, schedule)


def test_other_bad_arguments():
    with pytest.raises(TypeError, match="a schedule is a string"):
        Schedule.parse(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="check must be a function"):
        explore(WRITERS, user_not_cached, check="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels name no actor: C"):
        replay(WRITERS, user_not_cached, "A A B B").mermaid(labels={"C": "x"})


def test_an_actor_that_loops_is_stopped():
    def forever(cache: Cache, db: Database) -> None:
        while True:
            cache.incr("k")

    with pytest.raises(RuntimeError, match="more than 50 steps"):
        explore({"A": forever}, max_steps=50)


def test_an_actor_blocked_outside_the_cache_is_reported(monkeypatch):
    monkeypatch.setattr(runtime, "RUN_TIMEOUT", 0.2)
    released = threading.Event()

    def blocked(cache: Cache, db: Database) -> None:
        released.wait()

    try:
        with pytest.raises(RuntimeError, match="blocked outside the cache and the database"):
            replay({"A": blocked}, None, "")
    finally:
        released.set()


def test_too_many_schedules_is_a_clear_error():
    with pytest.raises(RuntimeError, match="more than 10 schedules"):
        explore({"A": incr("k", 3), "B": incr("k", 3)}, max_schedules=10)


def test_summary_lists_bad_outcomes_first_with_an_example():
    lines = explore(WRITERS, user_not_cached, cache_agrees_with_db).summary().splitlines()
    assert lines[0] == "4 distinct schedules, 2 bad"
    assert lines[1].startswith("    1 BAD (stale: the cache holds")
    assert lines[2].strip().startswith("e.g. ")


def test_narration_explores_then_replays(capsys):
    worked_example.main()
    out = capsys.readouterr().out
    assert out.startswith("4 distinct schedules, 2 bad")
    assert "replay of A B B A:" in out
    assert out.rstrip().endswith("stale: the cache holds 'A' but the DB says 'B'")


def test_returns_are_a_dict_with_timing():
    returns = Returns()
    returns["A"] = 1
    assert dict(returns) == {"A": 1} and returns.began == {} and returns.ended == {}


def test_the_pages_diagram_is_the_replay_of_the_first_bad_schedule():
    page = docs_tool.DOCS / "concurrency" / "explorer.md"
    [(ref, text)] = docs_tool.page_diagrams(page)
    assert ref == "snippets.concurrency.explorer:lost_update"
    assert text == docs_tool.render(ref)
    check_mermaid(text)
    assert str(worked_example.lost_update().schedule) == "A B B A"


def test_every_generated_diagram_in_the_docs_is_up_to_date():
    """Any page may draw a replay (``<!-- diagram: module:function -->``); none may drift."""
    pages = sorted(docs_tool.DOCS.rglob("*.md"))
    assert docs_tool.update_diagrams(pages, write=False) == [], (
        "run: python -m snippets.explorer --diagrams")


# DPOR, sleep sets and every interleaving agree.

def cache_aside_world():
    from snippets.patterns.cache_aside import get_user, update_user
    return {"W1": lambda cache, db: update_user(cache, db, 1, "a"),
            "W2": lambda cache, db: update_user(cache, db, 1, "b"),
            "R": lambda cache, db: get_user(cache, db, 1)}


@pytest.mark.parametrize("actors", [
    WRITERS,
    {"A": incr("k", 3), "B": incr("k", 2), "C": incr("j", 2)},
    {"W": invalidating_writer("new"), "R1": lambda c, d: c.get("user:1"),
     "R2": lambda c, d: d.query("SELECT name FROM users")},
    cache_aside_world(),
], ids=["two writers", "counters", "writer and two readers", "cache-aside, 3 actors"])
def test_dpor_and_sleep_sets_find_every_outcome_every_interleaving_finds(actors):
    full = explore(actors, user_not_cached, cache_agrees_with_db, reduce=False)
    sleep = explore(actors, user_not_cached, cache_agrees_with_db, reduce="sleep")
    dpor = explore(actors, user_not_cached, cache_agrees_with_db)
    assert set(dpor.outcomes) == set(sleep.outcomes) == set(full.outcomes)
    assert dpor.verdicts == sleep.verdicts == full.verdicts
    assert dpor.total == sleep.total <= full.total  # one schedule per class, both ways
    assert dpor.pruned <= sleep.pruned  # DPOR cuts fewer runs short


def delete_first_world():
    from snippets.concurrency.reader_race import delete_then_update
    from snippets.patterns.cache_aside import get_user
    return {"W": lambda cache, db: delete_then_update(cache, db, 1, "new"),
            "R": lambda cache, db: get_user(cache, db, 1)}


@pytest.mark.parametrize("world", [cache_aside_world, delete_first_world,
                                   lambda: WRITERS],
                         ids=["cache-aside, 3 actors", "delete first", "two writers"])
@pytest.mark.parametrize("reduce", [False, True])
def test_prefix_replay_counts_exactly_what_runs_from_scratch_count(world, reduce):
    """The default world replays shared prefixes and restores the stores; a custom
    one (here the same fakeredis made anew each run) runs every step. Same schedules,
    same outcomes, same bad ones."""
    actors = world()
    replayed = explore(actors, user_not_cached, cache_agrees_with_db, reduce=reduce)
    scratch = explore(actors, user_not_cached, cache_agrees_with_db, reduce=reduce,
                      make_cache=make_fake_cache)
    assert replayed.outcomes == scratch.outcomes
    assert replayed.bad == scratch.bad and replayed.examples == scratch.examples


def test_a_bad_reduction_is_a_clear_error():
    with pytest.raises(ValueError, match="reduce is True, False, 'sleep' or 'dpor'"):
        explore(WRITERS, reduce="fast")


def test_the_pages_figures_for_each_reduction_are_computed():
    """The prose under the explorer page's table repeats its last row: recompute it."""
    from snippets.explorer.bench import counters
    from snippets.explorer.pages import DOCS, words

    sleep = explore(counters(3, 4, 3), user_not_cached, reduce="sleep")
    dpor = explore(counters(3, 4, 3), user_not_cached)
    assert dpor.total == sleep.total and dpor.pruned == 0
    assert (f"DPOR and sleep sets find the same {dpor.total} classes of schedules of the "
            f"last workload; sleep sets need {sleep.total + sleep.pruned} runs for them, "
            f"DPOR {dpor.total + dpor.pruned}.") in words(DOCS / "concurrency" / "explorer.md")


def everything(result):
    """All an exploration reports, in the order it reports it."""
    return (result.total, result.pruned, list(result.outcomes.items()), result.bad,
            list(result.examples.items()), list(result.verdicts.items()))


def stale_read_after_write(cache: Cache, db: Database, returns: Returns) -> str | None:
    """A check that reads timing: a reader that began after the writer finished must
    not return the old name."""
    if returns.finished_before("W", "R") and returns["R"] == "old":
        return "R began after the write and read the old name"
    return None


@pytest.mark.parametrize(("world", "check"), [
    (lambda: WRITERS, cache_agrees_with_db),
    (lambda: {"A": incr("k", 2), "B": incr("k", 2), "C": incr("j", 2)}, None),
    (cache_aside_world, cache_agrees_with_db),
    (delete_first_world, stale_read_after_write),
    (lambda: delete_first_world() | {"R2": lambda c, d: c.get("user:1")}, cache_agrees_with_db),
], ids=["two writers", "counters", "cache-aside, 3 actors", "timing check", "delete first + GET"])
@pytest.mark.parametrize("reduce", [False, "sleep"])
def test_reusing_subtrees_finds_exactly_what_the_full_walk_finds(world, check, reduce,
                                                                  monkeypatch):
    """A point of the search reached again adds the leaves of its subtree instead of
    walking it again: same total, outcomes, bad schedules and examples, in the same
    order, as walking every run."""
    from snippets.explorer import search
    actors = world()
    reused = explore(actors, user_not_cached, check, reduce=reduce)
    monkeypatch.setattr(search, "REUSE", False)
    walked = explore(actors, user_not_cached, check, reduce=reduce)
    assert everything(reused) == everything(walked)


def test_prefix_replay_takes_a_step_for_real_when_a_run_asks_something_else():
    """An actor that sends a random value (the lease's token) asks something else in
    every run: replaying the last run's step would leave the last run's value in the
    store. Every run must see its own value back, as it does from scratch."""
    import secrets

    def own_token(cache, db):
        token = secrets.token_hex(4)
        cache.set("k", token)
        return cache.get("k") == token or cache.get("k")

    actors = {"A": own_token, "B": lambda cache, db: cache.exists("k")}
    found = explore(actors, reduce=False)
    assert found.total == 3  # B before A's SET, between SET and GET, after the GET
    assert all("A returned True" in outcome for outcome in found.outcomes), found.outcomes


def test_an_empty_diagram_fence_is_filled_and_nothing_after_it_is_touched(tmp_path):
    page = tmp_path / "page.md"
    after = "\nText.\n\n```bash\nmake test\n```\n"
    page.write_text("<!-- diagram: snippets.concurrency.explorer:lost_update -->\n"
                    "```mermaid\n```\n" + after)
    docs_tool.update_diagrams([page], write=True)
    text = page.read_text()
    assert text.endswith("```\n" + after)
    [(_, body)] = docs_tool.page_diagrams(page)
    assert body == docs_tool.render("snippets.concurrency.explorer:lost_update")
