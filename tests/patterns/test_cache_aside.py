"""Cache-aside: each claim of docs/patterns/cache-aside.md, on fakeredis and on real Redis."""

from __future__ import annotations

import pytest

from snippets.backends import user_key
from snippets.patterns.cache_aside import get_user, update_user


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
