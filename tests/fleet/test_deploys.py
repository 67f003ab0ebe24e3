"""Deploys and schema changes: two shapes under one key break, a version in the key
keeps them apart, a write must delete every live version's key, and a version bump's
cold keys can be re-filled from the old ones. Redis paths run on both backends."""

from __future__ import annotations

import json

import pytest

from snippets.explorer import mermaid_problems, reusing
from snippets.fleet import deploys
from snippets.fleet.deploys import (
    LIVE_VERSIONS,
    get_user_v1,
    get_user_v2,
    get_user_versioned,
    mixed_fleet,
    old_code_cached,
    old_code_reads_new_name,
    rolling_deploy,
    switch_cost,
    update_user,
    versioned_key,
)
from snippets.explorer import explore


def test_new_code_fails_on_old_entries_under_one_key(cache, ada):
    assert get_user_v1(cache, ada, 1) == "Ada"
    with pytest.raises(KeyError, match="email"):
        get_user_v2(cache, ada, 1)


def test_old_code_reads_an_entry_that_only_gained_a_field(cache, ada):
    assert get_user_v2(cache, ada, 1) == ("Ada", "ada@example.com")
    assert get_user_v1(cache, ada, 1) == "Ada"


def test_versioned_keys_keep_both_shapes(cache, ada):
    assert get_user_versioned(cache, ada, 1, 1) == "Ada"
    assert get_user_versioned(cache, ada, 1, 2) == "Ada"
    assert json.loads(cache.get("user:v1:1")) == {"name": "Ada"}
    assert json.loads(cache.get("user:v2:1")) == {"name": "Ada",
                                                  "email": "ada@example.com"}


def test_a_write_deletes_every_live_versions_key(cache, ada):
    for version in LIVE_VERSIONS:
        get_user_versioned(cache, ada, 1, version)
    assert update_user(cache, ada, 1, "Grace") == 2
    assert cache.exists("user:v1:1", "user:v2:1") == 0


def test_deleting_only_its_own_key_is_stale_in_every_order(cache):
    result = explore(mixed_fleet((2,)), old_code_cached, old_code_reads_new_name,
                     make_cache=reusing(cache), reduce=False)
    assert (len(result.bad), result.total) == (3, 3)


def test_deleting_every_live_key_holds_in_every_order(cache):
    result = explore(mixed_fleet(LIVE_VERSIONS), old_code_cached,
                     old_code_reads_new_name, make_cache=reusing(cache), reduce=False)
    assert (len(result.bad), result.total) == (0, 7)


def test_the_page_counts():
    assert len(rolling_deploy((2,)).bad) == 3 and rolling_deploy(LIVE_VERSIONS).bad == []


def test_a_version_bump_costs_one_db_read_per_key_unless_it_falls_back():
    assert switch_cost(50, fallback=False) == 50
    assert switch_cost(50, fallback=True) == 0


def test_the_drawn_replay_ends_stale():
    run = deploys.only_its_own_key()
    assert run.verdict == "stale: v1 reads 'old', the DB says 'new'"
    assert mermaid_problems(deploys.only_its_own_key_diagram()) == []


def test_bad_input_is_a_clear_error(cache, ada):
    with pytest.raises(ValueError, match="version must be a positive integer"):
        versioned_key(1, 0)
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        versioned_key(0, 1)
    with pytest.raises(ValueError, match="at least one schema version"):
        update_user(cache, ada, 1, "x", ())
    with pytest.raises(LookupError, match="no user with id 9"):
        update_user(cache, ada, 9, "x")
    with pytest.raises(ValueError, match="users must be a positive integer"):
        switch_cost(0, fallback=True)
