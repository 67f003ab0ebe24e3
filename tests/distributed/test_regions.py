"""Regions: each claim of docs/distributed/regions.md, checked."""

from __future__ import annotations

import pytest

from snippets.backends import make_db, make_fake_cache
from snippets.distributed import regions
from snippets.distributed.regions import (FIXES, TwoRegions, explore_fix, get_user_eu,
                                          marker_key, setup, update_user)
from snippets.explorer import mermaid_problems

STALE = "stale in the EU: it caches 'old', the primary says 'new'"


@pytest.mark.parametrize(("name", "bad", "total"), [
    ("cross-region DEL", 5, 11),
    ("cross-region DEL + lease", 4, 14),
    ("EU change stream", 1, 11),
    ("EU change stream + lease", 0, 12),
    ("remote marker", 5, 18),
    ("remote marker + lease", 0, 20),
])
def test_the_page_counts(name, bad, total):
    found = explore_fix(name)
    assert (len(found.bad), found.total) == (bad, total), found.summary()


def test_a_cross_region_del_before_the_replica_applies_leaves_the_eu_stale():
    run = regions.stale_refill()
    assert run.verdict == STALE
    assert run.returns["Reader"] == "old"
    assert run.returns.finished_before("Writer", "Reader")  # not a concurrent read
    assert mermaid_problems(run.mermaid()) == []


def test_the_marked_reader_reads_the_primary_and_fills_the_new_row():
    text = regions.marker_read()
    assert "a1->>D: SELECT name FROM users WHERE id = 1" in text  # the primary
    assert 'EVAL FILL 2 user:1 user:1:lease "t1" "new" 300' in text
    assert mermaid_problems(text) == []


def test_the_eu_stream_fix_sends_nothing_across_regions_and_markers_send_two():
    trips = {name: regions.write_trips(name)["EU Redis"] for name in FIXES}
    assert trips["EU change stream + lease"] == 0
    assert trips["remote marker + lease"] == 2 and trips["cross-region DEL"] == 1


@pytest.mark.parametrize("name", FIXES)
def test_an_eu_miss_reads_the_primary_only_when_the_key_is_marked(name):
    marked = name.startswith("remote marker")
    assert regions.eu_miss_reads(name, marked=False) == (1, 0)
    assert regions.eu_miss_reads(name, marked=True) == ((0, 1) if marked else (1, 0))


def test_the_replica_streams_only_what_it_has_applied():
    cache, world = make_fake_cache(), TwoRegions()
    setup(cache, world)
    update_user(cache, world, 1, "new")
    assert world.replica.query("SELECT COUNT(*) FROM changes") == [(0,)]
    world.replicate()
    assert world.replica.query("SELECT seq, user_id FROM changes") == [(1, 1)]


def test_the_marker_shares_the_keys_cluster_slot_and_expires():
    from redis.crc import key_slot
    assert key_slot(marker_key("user:1").encode()) == key_slot(b"user:1")
    cache, world = make_fake_cache(), TwoRegions()
    setup(cache, world)
    regions.update_user_with_marker(cache, world, 1, "new")
    assert 0 < world.eu_cache.ttl(marker_key("user:1")) <= regions.MARKER_TTL


def test_bad_input_is_a_clear_error():
    cache, world = make_fake_cache(), TwoRegions()
    setup(cache, world)
    with pytest.raises(LookupError, match="no user with id 9"):
        update_user(cache, world, 9, "x")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        update_user(cache, world, 1, "")
    with pytest.raises(TypeError, match="two-region world"):
        get_user_eu(make_db(), 1)
    with pytest.raises(LookupError, match="no fix named 'x'"):
        explore_fix("x")
