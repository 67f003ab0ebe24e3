"""TTL expiry: each claim of docs/patterns/ttl.md.

Redis's own expiry rules run on the ``cache`` fixture (fakeredis, and a real Redis when
REDIS_URL is set), without sleeping: they read the TTL that Redis reports. Anything that needs
time to pass runs on ClockedCache, the clocked model, which is checked against Redis here.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from snippets.explorer.pages import words
from snippets.patterns import cache_aside
from snippets.patterns.ttl import (
    CHANGES_IN_PLACE, REPLACES_THE_VALUE, ClockedCache, DeletesLost, expiry_spread, get_user,
    jittered_ttl, stale_fill_window, stale_window, stale_window_table, ttl_after, update_user,
)


@pytest.fixture
def model(clock):
    return ClockedCache(clock)


# --- Redis's own expiry rules, on fakeredis and on a real Redis --------------------------


def test_ex_sets_a_ttl_in_seconds(cache):
    cache.set("k", "v", ex=60)
    assert cache.ttl("k") == 60  # rounded to the nearest second: 60 until 59.5 s are left
    assert 59_000 < cache.pttl("k") <= 60_000


def test_px_sets_a_ttl_in_milliseconds(cache):
    cache.set("k", "v", px=1700)
    assert 1_000 < cache.pttl("k") <= 1_700


def test_ttl_is_minus_2_for_a_missing_key_and_minus_1_without_expiry(cache):
    assert cache.ttl("missing") == -2
    assert cache.pttl("missing") == -2
    cache.set("k", "v")
    assert cache.ttl("k") == -1


def test_plain_set_clears_the_ttl(cache):
    cache.set("k", "v", ex=60)
    cache.set("k", "w")
    assert cache.ttl("k") == -1
    assert cache.get("k") == "w"


def test_keepttl_keeps_the_ttl_and_replaces_the_value(cache):
    cache.set("k", "v", ex=60)
    cache.set("k", "w", keepttl=True)
    assert 0 < cache.ttl("k") <= 60
    assert cache.get("k") == "w"


def test_persist_removes_the_ttl_and_says_whether_there_was_one(cache):
    cache.set("k", "v", ex=60)
    assert cache.persist("k") is True
    assert cache.ttl("k") == -1
    assert cache.persist("k") is False


@pytest.mark.parametrize("seconds", [0, -5])
def test_expire_with_a_non_positive_time_deletes_at_once(cache, seconds):
    cache.set("k", "v")
    assert cache.expire("k", seconds) is True
    assert cache.exists("k") == 0


def test_set_with_pxat_or_exat_in_the_past_deletes_at_once(cache):
    past_ms = int(time.time() * 1000) - 1_000
    assert cache.set("k", "v", pxat=past_ms) is True
    assert cache.exists("k") == 0
    assert cache.set("k", "v", exat=past_ms // 1000 - 1) is True
    assert cache.exists("k") == 0
    cache.set("k", "v")
    assert cache.pexpireat("k", past_ms) is True
    assert cache.exists("k") == 0


def test_exat_in_the_future_sets_the_ttl_to_the_time_left(cache):
    cache.set("k", "v", exat=int(time.time()) + 100)
    assert 98 <= cache.ttl("k") <= 100


def test_expire_on_a_missing_key_does_nothing(cache):
    assert cache.expire("missing", 60) is False
    assert cache.exists("missing") == 0


def test_in_place_changes_keep_the_ttl(cache):
    cache.set("hits", 1, ex=60)
    cache.incr("hits")
    cache.set("s", "a", ex=60)
    cache.append("s", "b")
    assert 0 < cache.ttl("hits") <= 60
    assert 0 < cache.ttl("s") <= 60


@pytest.mark.parametrize("command", REPLACES_THE_VALUE)
def test_every_command_that_replaces_the_value_clears_the_ttl(cache, command):
    assert ttl_after(cache, REPLACES_THE_VALUE[command]) == -1
    assert cache.get("k") == "w"  # it did replace the value


@pytest.mark.parametrize("command", CHANGES_IN_PLACE)
def test_commands_that_change_the_value_in_place_keep_the_ttl(cache, command):
    assert 0 < ttl_after(cache, CHANGES_IN_PLACE[command]) <= 60
    assert cache.get("k") != "v"  # it did change the value


def test_rename_copy_and_restore_bring_the_ttl_of_what_they_bring(cache):
    cache.set("src", "w", ex=30)
    cache.set("k", "v", ex=60)
    cache.copy("src", "k", replace=True)
    assert 0 < cache.ttl("k") <= 30
    cache.set("k", "v", ex=60)
    cache.restore("k", 30_000, cache.dump("src"), replace=True)
    assert 0 < cache.ttl("k") <= 30
    cache.set("k", "v", ex=60)
    cache.rename("src", "k")
    assert 0 < cache.ttl("k") <= 30


def test_a_deleted_key_set_again_has_no_ttl(cache):
    cache.set("k", "v", ex=60)
    cache.delete("k")
    cache.set("k", "v")
    assert cache.ttl("k") == -1


# --- the model answers as Redis does --------------------------------------------------------

SCRIPT = [
    ("set", ("k", "v"), {"ex": 60}), ("ttl", ("k",), {}),
    ("set", ("k", "w"), {"keepttl": True}), ("ttl", ("k",), {}), ("get", ("k",), {}),
    ("set", ("k", "x"), {}), ("ttl", ("k",), {}),
    ("expire", ("k", 30), {}), ("ttl", ("k",), {}),
    ("persist", ("k",), {}), ("persist", ("k",), {}), ("ttl", ("k",), {}),
    ("expire", ("k", 0), {}), ("exists", ("k",), {}), ("get", ("k",), {}), ("ttl", ("k",), {}),
    ("expire", ("k", 10), {}), ("persist", ("k",), {}),
    ("set", ("k", "v"), {"px": 1700}), ("ttl", ("k",), {}),
    ("set", ("n", 5), {}), ("get", ("n",), {}),
    ("delete", ("k", "k", "missing"), {}), ("exists", ("k", "n"), {}),
    ("set", ("n", 6), {"keepttl": True}), ("ttl", ("n",), {}),
]


def run_script(target):
    return [getattr(target, name)(*args, **kwargs) for name, args, kwargs in SCRIPT]


def test_the_model_answers_every_command_as_redis_does(cache, model):
    expected = run_script(cache)
    assert run_script(model) == expected
    # and the script is not vacuous: it saw a TTL, a cleared TTL and a deleted key
    assert {60, 30, -1, -2} <= {result for result in expected if isinstance(result, int)}


def test_the_model_expires_a_key_exactly_when_its_ttl_runs_out(model, clock):
    model.set("k", "v", ex=60)
    clock.advance(59.999)
    assert model.get("k") == "v"
    clock.advance(0.001)
    assert model.get("k") is None
    assert model.ttl("k") == -2


def test_the_model_counts_px_in_milliseconds(model, clock):
    model.set("k", "v", px=1500)
    clock.advance(1.499)
    assert model.exists("k") == 1
    clock.advance(0.001)
    assert model.exists("k") == 0


def test_the_model_keeps_the_old_deadline_with_keepttl(model, clock):
    model.set("k", "v", ex=60)
    clock.advance(30)
    model.set("k", "w", keepttl=True)
    assert model.ttl("k") == 30
    clock.advance(30)
    assert model.get("k") is None


def test_in_the_model_a_plain_set_lives_forever(model, clock):
    model.set("k", "v", ex=60)
    model.set("k", "w")
    clock.advance(1_000_000)
    assert model.get("k") == "w"


@pytest.mark.parametrize(
    "options, message",
    [({"ex": 0}, "ex must be a positive integer, got 0"),
     ({"ex": -1}, "ex must be a positive integer, got -1"),
     ({"ex": 1.5}, "ex must be a positive integer, got 1.5"),
     ({"px": 0}, "px must be a positive integer, got 0"),
     ({"ex": 60, "keepttl": True}, "give at most one of ex, px, keepttl"),
     ({"ex": 60, "px": 60_000}, "give at most one of ex, px, keepttl")],
)
def test_the_model_refuses_bad_expiry_options_and_stores_nothing(model, options, message):
    with pytest.raises(ValueError, match=message):
        model.set("k", "v", **options)
    assert model.get("k") is None


@pytest.mark.parametrize("bad", [1.5, "60", None, True])
def test_the_model_refuses_a_non_integer_expire_and_keeps_the_ttl(model, bad):
    model.set("k", "v", ex=60)
    with pytest.raises(ValueError, match="seconds must be an integer"):
        model.expire("k", bad)
    assert model.ttl("k") == 60


def test_the_model_needs_a_clock():
    with pytest.raises(TypeError, match="clock must be callable"):
        ClockedCache(0.0)


# --- jitter --------------------------------------------------------------------------------


def test_jitter_draws_every_whole_second_in_the_range_and_nothing_outside():
    rng = random.Random(1)
    draws = {jittered_ttl(60, 0.1, rng) for _ in range(2_000)}
    assert draws == set(range(54, 61))  # int(60 * 0.1) = 6 seconds may come off


def test_zero_jitter_is_the_ttl_itself():
    assert jittered_ttl(60, 0.0, random.Random(1)) == 60
    assert jittered_ttl(5, 0.1, random.Random(1)) == 5  # 0.5 s rounds down to no jitter


def test_jitter_is_reproducible_with_a_seed():
    first = [jittered_ttl(300, 0.2, random.Random(42)) for _ in range(5)]
    again = [jittered_ttl(300, 0.2, random.Random(42)) for _ in range(5)]
    assert first == again


@pytest.mark.parametrize("bad", [-0.1, 1, 1.0, 1.5, math.nan, "0.1", None, True])
def test_bad_jitter_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="jitter must be a fraction in"):
        jittered_ttl(60, bad)


@pytest.mark.parametrize("bad", [0, -60, 1.5, "60", None])
def test_bad_ttl_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        jittered_ttl(bad, 0.1)


def test_a_bad_random_source_is_a_clear_error():
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        jittered_ttl(60, 0.1, rng=42)


def test_get_user_stores_the_jittered_ttl_in_redis(cache, db):
    for user_id in range(1, 21):
        db.add_user(user_id, f"user {user_id}")
    rng = random.Random(7)
    for user_id in range(1, 21):
        assert get_user(cache, db, user_id, ttl=60, jitter=0.5, rng=rng) == f"user {user_id}"
    expected = random.Random(7)
    for user_id in range(1, 21):
        want = jittered_ttl(60, 0.5, expected)
        assert want - 1 <= cache.ttl(f"user:{user_id}") <= want
    assert len({cache.ttl(f"user:{user_id}") for user_id in range(1, 21)}) > 1


def test_get_user_without_jitter_is_cache_aside(cache, ada):
    assert get_user(cache, ada, 1, ttl=60) == "Ada"
    assert cache.ttl("user:1") == 60
    assert get_user(cache, ada, 1, ttl=60) == "Ada"
    assert ada.reads == 1


def test_bad_input_to_get_user_reads_nothing(cache, ada):
    with pytest.raises(ValueError, match="jitter"):
        get_user(cache, ada, 1, jitter=2)
    with pytest.raises(ValueError, match="user_id"):
        get_user(cache, ada, 0)
    assert ada.reads == 0
    assert cache.exists("user:1") == 0


# --- the TTL-only write ---------------------------------------------------------------------


def test_a_ttl_only_write_leaves_the_cache_stale_with_its_ttl_running(cache, ada):
    get_user(cache, ada, 1, ttl=60)
    update_user(ada, 1, "Ada Lovelace")
    assert ada.query("SELECT name, version FROM users WHERE id = 1") == [("Ada Lovelace", 2)]
    assert get_user(cache, ada, 1, ttl=60) == "Ada"  # stale...
    assert 0 < cache.ttl("user:1") <= 60  # ...but for at most the TTL


def test_updating_a_missing_user_raises(db):
    with pytest.raises(LookupError, match="no user with id 9"):
        update_user(db, 9, "Nobody")


@pytest.mark.parametrize("bad_id, bad_name", [(0, "x"), (1, ""), (1, None), ("1", "x")])
def test_bad_input_to_the_write_changes_nothing(ada, bad_id, bad_name):
    with pytest.raises(ValueError, match="user_id|name"):
        update_user(ada, bad_id, bad_name)
    assert ada.writes == 0
    assert ada.query("SELECT name, version FROM users WHERE id = 1") == [("Ada", 1)]


# --- the stale window is bounded by the TTL ----------------------------------------------------


@pytest.mark.parametrize(
    "ttl_s, write_at, window",
    [(60, 0, 60), (60, 10, 50), (60, 59, 1), (5, 2, 3),
     (5, 7, 3)],  # after a refill at t=5 the entry dies at t=10: stale from 7 to 10
)
def test_the_stale_window_lasts_until_the_entry_expires(ttl_s, write_at, window):
    assert stale_window(ttl_s, write_at) == window


def test_the_worst_stale_window_is_the_ttl_and_the_mean_is_half_of_it():
    rows = stale_window_table([1, 5, 30, 60])
    # a write at second w of the TTL is stale for ttl - w s: worst ttl, mean (ttl + 1) / 2
    assert [(row.ttl, row.worst, row.mean) for row in rows] == [
        (1, 1, 1.0), (5, 5, 3.0), (30, 30, 15.5), (60, 60, 30.5),
    ]


@pytest.mark.parametrize("ttl_s, pause, window", [(60, 0, 60), (60, 30, 90), (5, 100, 105)])
def test_a_stale_fill_restarts_the_ttl_so_the_window_is_the_ttl_plus_the_pause(
        ttl_s, pause, window):
    """Counted from the write, the bound is not the TTL: a fill that read the row before
    the write and stored it ``pause`` s later is stale for the TTL plus the pause."""
    assert stale_fill_window(ttl_s, pause) == window


@pytest.mark.parametrize("args, message", [
    ((0, 1), "ttl must be a positive number of seconds"),
    ((60, -1), "pause must be an integer >= 0, got -1"),
    ((60, 1.5), "pause must be an integer >= 0, got 1.5"),
])
def test_bad_input_to_the_stale_fill_replay_is_a_clear_error(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        stale_fill_window(*args)


@pytest.mark.parametrize("bad", [[], [0], [5, -1], [1.5]])
def test_bad_ttls_for_the_table_are_a_clear_error(bad):
    with pytest.raises(ValueError, match="ttl"):
        stale_window_table(bad)


@pytest.mark.parametrize("bad", [-1, 1.5, None])
def test_bad_write_time_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=re.escape(f"write_at must be an integer >= 0, got {bad!r}")):
        stale_window(60, bad)


# --- synchronized expiry and jitter -------------------------------------------------------


def test_without_jitter_every_key_misses_in_the_same_second():
    spread = expiry_spread(200, 10, 0.0, seed=0)
    assert list(spread) == list(range(1, 11))  # every second, for plotting
    assert spread == {**{second: 0 for second in range(1, 10)}, 10: 200}


def test_jitter_spreads_the_misses_over_the_shaved_seconds():
    spread = expiry_spread(1000, 60, 0.1, seed=0)
    busy = {second for second, misses in spread.items() if misses}
    assert busy == set(range(54, 61))  # ttl - int(ttl * jitter) .. ttl
    assert sum(spread.values()) == 1000  # the same misses, only spread out
    assert max(spread.values()) < 1000 / 7 * 1.3  # near an even share of 7 seconds


def test_the_spread_is_reproducible_with_its_seed():
    assert expiry_spread(300, 30, 0.25, seed=3) == expiry_spread(300, 30, 0.25, seed=3)
    assert expiry_spread(300, 30, 0.25, seed=3) != expiry_spread(300, 30, 0.25, seed=4)


@pytest.mark.parametrize(
    "args, message",
    [((0, 60, 0.1, 0), "n_keys must be a positive integer, got 0"),
     ((1.5, 60, 0.1, 0), "n_keys must be a positive integer, got 1.5"),
     ((10, 0, 0.1, 0), "ttl must be a positive number of seconds, got 0"),
     ((10, 60, 1.0, 0), r"jitter must be a fraction in \[0, 1\), got 1.0"),
     ((10, 60, -0.5, 0), r"jitter must be a fraction in \[0, 1\), got -0.5"),
     ((10, 60, 0.1, "0"), "seed must be an integer, got '0'")],
)
def test_bad_input_to_the_spread_is_a_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        expiry_spread(*args)


def test_the_measurements_leave_the_global_random_state_alone():
    state = random.getstate()
    expiry_spread(50, 10, 0.2, seed=1)
    stale_window_table([3])
    assert random.getstate() == state


def test_importing_the_module_prints_and_writes_nothing(tmp_path):
    # a fresh interpreter, so the import really runs; in an empty directory, to see any file
    done = subprocess.run([sys.executable, "-c", "import snippets.patterns.ttl"], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert (done.stdout, done.stderr) == ("", "")
    assert list(tmp_path.iterdir()) == []


# --- the safety net beneath the other patterns -------------------------------------------


def test_a_lost_delete_is_stale_exactly_until_the_ttl(model, clock, ada):
    cache_aside.get_user(model, ada, 1, ttl=60)
    clock.advance(10)
    with pytest.raises(redis.ConnectionError, match="injected fault: DEL user:1 lost"):
        cache_aside.update_user(DeletesLost(model), ada, 1, "Ada Lovelace")
    assert ada.query("SELECT name FROM users WHERE id = 1") == [("Ada Lovelace",)]
    clock.advance(49.999)
    assert cache_aside.get_user(model, ada, 1, ttl=60) == "Ada"
    clock.advance(0.001)
    assert cache_aside.get_user(model, ada, 1, ttl=60) == "Ada Lovelace"


def test_on_redis_the_key_left_by_a_lost_delete_is_due_to_expire(cache, ada):
    cache_aside.get_user(cache, ada, 1, ttl=60)
    with pytest.raises(redis.ConnectionError):
        cache_aside.update_user(DeletesLost(cache), ada, 1, "Ada Lovelace")
    assert cache.get("user:1") == "Ada"
    assert 0 < cache.ttl("user:1") <= 60


def test_the_fault_passes_everything_but_delete_through(cache):
    lossy = DeletesLost(cache)
    lossy.set("k", "v", ex=60)
    assert lossy.get("k") == "v" and lossy.ttl("k") == 60
    with pytest.raises(redis.ConnectionError):
        lossy.delete("k")
    assert cache.get("k") == "v"


# --- the page and the notebook no longer state what was wrong ----------------------------

ROOT = Path(__file__).resolve().parents[2]




@pytest.mark.parametrize("phrase", [
    # GETSET, SET ... GET, MSET, RENAME, COPY and RESTORE onto the key clear the TTL too
    "only replacing it with `SET` clears it",
    "It holds only if **every** `SET` carries a TTL",
    "yes, if every `SET` has a TTL",
    # a stale fill restarts the TTL: stale for the TTL plus the fill's delay, from the write
    "the whole TTL, never longer",
    "yes, exactly: up to one full TTL",
    "The worst case **is** the TTL",
    # the source is quoted as the common advice; table headers say "Common claim"
    "Claim (from the common advice)",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase not in words(ROOT / "docs" / "patterns" / "ttl.md")


def test_the_page_shows_the_stale_fill_counterexample_as_measured():
    assert f"(60, {stale_fill_window(60, 30)})" in words(ROOT / "docs" / "patterns" / "ttl.md")  # (60, 90)


def test_the_notebook_no_longer_calls_the_ttl_the_bound_on_staleness():
    notebook = json.loads((ROOT / "docs" / "notebooks" / "ttl.ipynb").read_text(encoding="utf-8"))
    markdown = " ".join(" ".join("".join(cell["source"]).split())
                        for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    # wrong: a fill that read the row before the write restarts the TTL after it
    assert "the TTL is the bound on staleness" not in markdown
    assert "restarts the TTL" in markdown
