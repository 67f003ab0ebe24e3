"""Snapshots, for real: a PostgreSQL reader in a REPEATABLE READ transaction, and a real
Redis. The reader's snapshot begins (its first read), a write then commits and
invalidates, and only then does the reader miss and fill: from its snapshot, so the old
row, unless the strategy refuses that fill or the fill reads outside the transaction.
"""

from __future__ import annotations

import re

import pytest

from snippets.backends import make_redis_cache
from snippets.concurrency.comparison import STRATEGIES
from snippets.explorer.pages import DOCS
from tests.conftest import real_redis_url
from tests.engines import Server


# This one order, each strategy: does the cache end stale? (Worked out by hand: the write
# has finished before the fill, so a write that leaves the new value, or its version, in
# the cache refuses or outlives the fill; one that only deletes does not.)
STALE = {
    "update-on-write": False,  # the write SET "new": the reader hits it
    "invalidate-on-write": True,
    "delete-first": True,
    "leases": True,  # the lease was taken after the DEL: nothing refuses the fill
    "versioned-set": False,  # the fill carries an older version than the cache's
    "double-delete": True,  # both deletes came before the fill
}


def run(primary: Server, strategy: str, fill_outside: bool) -> str | None:
    """The order above; then the invariant of the comparison page: None if the next
    read returns what the database holds, else what it returns instead."""
    from snippets.concurrency.fixes import current_name
    from snippets.postgres import PostgresDatabase
    read, write = STRATEGIES[strategy]
    writer, reader = PostgresDatabase(primary.url), PostgresDatabase(primary.url)
    cache = make_redis_cache(real_redis_url())
    try:
        writer.execute("DELETE FROM users")
        writer.add_user(1, "old")
        reader.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.query("SELECT count(*) FROM users")  # the snapshot begins here
        write(cache, writer, 1, "new")  # commits, then invalidates (or sets)
        read(cache, writer if fill_outside else reader, 1)
        reader.conn.execute("COMMIT")
        verdict = current_name(read)(cache, writer, None)
    finally:
        cache.close(), writer.close(), reader.close()
    return verdict


@pytest.mark.parametrize("strategy", list(STALE))
def test_a_fill_from_an_older_snapshot_leaves_the_old_value(postgres_primary, strategy):
    verdict = run(postgres_primary, strategy, fill_outside=False)
    assert (verdict is not None) == STALE[strategy], verdict


@pytest.mark.parametrize("strategy", list(STALE))
def test_a_fill_read_outside_the_transaction_is_fresh_for_every_strategy(
        postgres_primary, strategy):
    assert run(postgres_primary, strategy, fill_outside=True) is None


def test_the_page_shows_these_results():
    page = (DOCS / "distributed" / "snapshots.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (.+?) \| (stale|fresh) \| fresh \|$", page, re.M))
    assert rows == {name: "stale" if stale else "fresh" for name, stale in STALE.items()}
