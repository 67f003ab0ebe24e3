"""Cache-aside: each claim of docs/patterns/cache-aside.md, on fakeredis and on real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from snippets.explorer.pages import words
from snippets.backends import user_key
from snippets.explorer import replay, reusing
from snippets.patterns.cache_aside import get_user, update_user
from snippets.scenarios import user_not_cached

PAGE = Path(__file__).resolve().parents[2] / "docs" / "patterns" / "cache-aside.md"


def test_miss_costs_exactly_one_db_read_and_fills_the_cache(cache, ada):
    assert get_user(cache, ada, 1) == "Ada"
    assert ada.reads == 1
    assert cache.get("user:1") == "Ada"


def test_hit_costs_no_db_read(cache, ada):
    get_user(cache, ada, 1)
    ada.reset_counts()
    for _ in range(5):
        assert get_user(cache, ada, 1) == "Ada"
    assert ada.reads == 0


def test_cached_entry_carries_the_ttl(cache, ada):
    get_user(cache, ada, 1, ttl=60)
    assert 0 < cache.ttl("user:1") <= 60


def test_unknown_user_reads_db_and_caches_nothing(cache, db):
    assert get_user(cache, db, 42) is None
    assert db.reads == 1
    assert cache.exists("user:42") == 0


def test_write_updates_db_then_deletes_the_key(cache, ada):
    get_user(cache, ada, 1)
    update_user(cache, ada, 1, "Ada Lovelace")
    assert cache.exists("user:1") == 0
    assert ada.query("SELECT name, version FROM users WHERE id = 1") == [("Ada Lovelace", 2)]


def test_read_after_write_misses_once_then_serves_the_new_value(cache, ada):
    get_user(cache, ada, 1)
    update_user(cache, ada, 1, "Ada Lovelace")
    ada.reset_counts()
    assert get_user(cache, ada, 1) == "Ada Lovelace"
    assert get_user(cache, ada, 1) == "Ada Lovelace"
    assert ada.reads == 1


def test_stale_window_between_commit_and_delete(cache, ada):
    """The common advice's 'small stale window': after the UPDATE commits, before the DEL."""
    get_user(cache, ada, 1)
    ada.execute("UPDATE users SET name = 'Ada Lovelace' WHERE id = 1")  # write, step 1
    assert get_user(cache, ada, 1) == "Ada"  # a reader in the window sees the old value
    cache.delete(user_key(1))  # write, step 2
    assert get_user(cache, ada, 1) == "Ada Lovelace"


def test_updating_a_missing_user_raises_and_touches_no_key(cache, db):
    cache.set("user:7", "someone else's value")  # must survive the failed write
    with pytest.raises(LookupError, match="no user with id 7"):
        update_user(cache, db, 7, "Nobody")
    assert cache.get("user:7") == "someone else's value"


@pytest.mark.parametrize("bad_id", [0, -1, "1", 1.0, True, None])
def test_bad_user_id_is_a_clear_error(cache, db, bad_id):
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        get_user(cache, db, bad_id)
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        update_user(cache, db, bad_id, "x")
    assert db.reads == db.writes == 0


@pytest.mark.parametrize("bad_ttl", [0, -5, 1.5, "60", None])
def test_bad_ttl_is_a_clear_error(cache, ada, bad_ttl):
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        get_user(cache, ada, 1, ttl=bad_ttl)
    assert ada.reads == 0


@pytest.mark.parametrize("bad_name", ["", None, 3])
def test_empty_name_is_a_clear_error_and_writes_nothing(cache, ada, bad_name):
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        update_user(cache, ada, 1, bad_name)
    assert ada.writes == 0
    assert ada.query("SELECT name FROM users WHERE id = 1") == [("Ada",)]


# --- what a delete and a missing row cost ---------------------------------------------------


def readers(n):
    return {f"R{i}": lambda cache, db: get_user(cache, db, 1) for i in range(n)}


@pytest.mark.parametrize("n", [2, 10, 50])
def test_one_delete_of_a_hot_key_costs_one_db_read_per_reader_in_flight(cache, n):
    """Not "one extra database read": every reader that asks before the first fill
    lands reads the database (a stampede)."""
    actors = readers(n)
    all_ask_first = " ".join(actors) + " " + " ".join(f"{r} {r}" for r in actors)
    run = replay(actors, user_not_cached, all_ask_first, make_cache=reusing(cache))
    assert run.db.reads == n
    assert cache.get("user:1") == "old"


def test_one_delete_costs_one_db_read_when_the_fill_lands_first(cache):
    actors = readers(10)
    one_fills_first = "R0 R0 R0 " + " ".join(list(actors)[1:])
    run = replay(actors, user_not_cached, one_fills_first, make_cache=reusing(cache))
    assert run.db.reads == 1


def test_a_missing_row_is_never_cached_so_every_read_of_it_reads_the_db(cache, db):
    for _ in range(100):
        assert get_user(cache, db, 42) is None
    assert db.reads == 100  # no bound here; docs/fleet/negative-caching.md caches the absence
    assert cache.dbsize() == 0




@pytest.mark.parametrize("phrase", [
    # on a hot key one DEL costs one DB read per reader in flight; missing rows cost one
    # per read, forever
    "the only cost is one extra database read",
    "A cache miss causes a DB hit | yes, exactly one |",
    # "bounded" without the model: the TTL bounds it only if every write sets one, etc.
    "every failure it has is bounded",
    "the TTL is the bound on any damage",
    # "never" without its model; a reader's fill can write a wrong value
    "a delete can never write a wrong value",
    # the source is quoted as the common advice; table headers say "Common claim"
    "Claim (from the common advice)",
])
def test_the_page_no_longer_claims(phrase):
    assert phrase not in words(PAGE)


def test_the_page_counts_ten_db_reads_for_ten_readers_in_flight():
    assert "10 for one `DEL` with 10 readers in flight" in words(PAGE)
