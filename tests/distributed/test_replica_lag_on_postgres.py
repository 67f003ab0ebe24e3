"""Fills from a lagging replica, for real: a PostgreSQL primary and a hot standby that
applies each commit LAG_MS late (``recovery_min_apply_delay``), and a real Redis.

The request writes, and then reads while the standby is still behind: the one order of
the explorer's "read after write" scenario in which replication comes last. Each read
path ends with a stale key exactly when the explorer finds a bad schedule for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from snippets.backends import make_redis_cache
from snippets.distributed import replica_lag
from snippets.explorer.pages import DOCS
from tests.conftest import real_redis_url
from tests.engines import Server, needs_postgres, start_standby

LAG_MS = 1_500  # longer than a write and a read take, by far: the read sees the old row

# What each read path leaves behind, and the same verdict from the explorer.
STALE = {
    "invalidate-on-write": True,
    "leases": True,
    "double-delete": True,
    "versioned-set": False,
    "fill from the primary": False,
    "remote markers": False,
    "tombstones": False,
}


def paths(name: str) -> replica_lag.Fix:
    return replica_lag.fix(name) if name in replica_lag.FIXES else replica_lag.strategy(name)


@pytest.fixture(scope="module")
def servers(postgres_primary: Server) -> Iterator[tuple[Server, Server]]:
    """The primary of tests/conftest.py, and a standby of it that lags LAG_MS."""
    standby = start_standby(postgres_primary, LAG_MS)
    yield postgres_primary, standby
    assert standby.stop() is None, "the standby died during the tests"


@pytest.mark.parametrize("name", list(STALE))
def test_a_read_within_the_lag_leaves_a_stale_key_exactly_when_the_explorer_says(
        servers, name):
    from snippets.postgres import PrimaryWithStandby
    primary, standby = servers
    world = PrimaryWithStandby(primary.url, standby.url)
    cache = make_redis_cache(real_redis_url())
    fix = paths(name)
    try:
        world.execute("DELETE FROM users")
        world.add_user(1, "old")
        world.replicate()  # the standby has user 1 as "old"

        fix.write(cache, world, 1, "new")
        [(on_standby,)] = world.replica.query("SELECT name FROM users WHERE id = 1")
        assert on_standby == "old", "the standby applied the write already: no lag to test"
        fix.read(cache, world, 1)  # another request, within the lag
        world.replicate()  # the standby catches up
        after = fix.read(cache, world, 1)
    finally:
        cache.close()
        world.close()
    assert (after != "new") == STALE[name], f"{name}: the next read returns {after!r}"
    explored = replica_lag.explore_lag(fix, "read after write")
    assert bool(explored.bad) == STALE[name]


def write_then_read_with_a_stream(world, cache, poll) -> tuple[list[int], list[int], str]:
    """Write user 1, poll within the lag, read; let the standby catch up, poll, read."""
    from snippets.postgres import create_slot
    world.execute("DELETE FROM users")
    cache.flushdb()
    world.add_user(1, "old")
    world.replicate()
    create_slot(world, "lag_test")  # after the setup: only the write is news
    try:
        replica_lag.update_user_only(cache, world, 1, "new")
        in_the_lag = poll(cache, world)
        assert replica_lag.LEASE_ON_REPLICA(cache, world, 1) == "old"  # the standby's row
        world.replicate()
        after = poll(cache, world)
        return in_the_lag, after, replica_lag.LEASE_ON_REPLICA(cache, world, 1)
    finally:
        world.conn.execute("SELECT pg_drop_replication_slot('lag_test')")


def test_the_standbys_apply_stream_deletes_only_what_the_standby_has_applied(servers):
    """The replica page's last fix, for real: invalidation driven by what the standby has
    replayed (snippets.postgres.poll_applied). The same slot read without waiting for the
    standby deletes while the standby still has the old row, and the old row comes back."""
    from snippets.postgres import PrimaryWithStandby, poll_applied, poll_slot
    primary, standby = servers
    world = PrimaryWithStandby(primary.url, standby.url)
    cache = make_redis_cache(real_redis_url())
    try:
        applied = write_then_read_with_a_stream(
            world, cache, lambda cache, db: poll_applied(cache, db, "lag_test"))
        too_soon = write_then_read_with_a_stream(
            world, cache, lambda cache, db: poll_slot(cache, db, "lag_test", leases=True))
    finally:
        cache.close()
        world.close()
    assert applied == ([], [1], "new")  # nothing deleted in the lag; then the key went
    assert too_soon == ([1], [], "old")  # deleted in the lag; the old row filled again


def test_the_page_shows_these_results():
    page = (DOCS / "distributed" / "replica-lag.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (.+?) \| (stale|fresh) \|$", page, re.M))
    assert rows == {**{name: "stale" if stale else "fresh" for name, stale in STALE.items()},
                    "the replica's apply stream": "fresh"}
    assert f"{LAG_MS:,} ms" in page


def test_the_load_run_prints_its_table_and_a_lease_filled_from_the_primary_ends_fresh():
    """tools/replica_lag_load.py, briefly: processes on the real servers, its table."""
    import subprocess
    import sys
    needs_postgres()
    tool = DOCS.parent / "tools" / "replica_lag_load.py"
    done = subprocess.run([sys.executable, str(tool), "--seconds", "1", "--readers", "1",
                           "--writers", "1", "fill from the primary"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [row] = [line for line in done.stdout.splitlines() if line.startswith("| fill")]
    _, name, reads, per_million, keys, _ = row.split("|")
    assert name.strip() == "fill from the primary" and int(reads) > 0
    assert int(keys) == 0  # the lease refuses any fill that a later write's DEL raced
