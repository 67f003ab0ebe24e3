"""CDC, for real: PostgreSQL's own change stream (logical decoding, test_decoding) read
by a consumer that deletes the keys of every changed user, in commit order, whoever made
the change: the application, or psql behind its back. A real Redis holds the cache.
"""

from __future__ import annotations

import subprocess

import pytest

from snippets.backends import make_redis_cache, user_key
from snippets.distributed import cdc
from snippets.patterns.cache_aside import get_user
from tests.conftest import real_redis_url
from tests.engines import Server, postgres_bin



def psql(server: Server, sql: str) -> None:
    """A change made behind the application's back, by hand."""
    subprocess.run([postgres_bin("psql"), server.url, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                   check=True, capture_output=True)


def test_the_consumer_invalidates_every_committed_change_in_commit_order(postgres_primary):
    from snippets.postgres import PostgresDatabase, create_slot, poll_slot
    db = PostgresDatabase(postgres_primary.url)
    cache = make_redis_cache(real_redis_url())
    try:
        db.execute("DROP TABLE IF EXISTS users")
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                   " version INTEGER NOT NULL DEFAULT 1)")
        db.add_user(1, "old")
        db.add_user(2, "old")
        create_slot(db)
        assert poll_slot(cache, db) == []  # nothing committed since the slot began
        assert get_user(cache, db, 1) == "old" and get_user(cache, db, 2) == "old"

        cdc.update_user(db, 2, "new")  # the application: the database only
        psql(postgres_primary, "UPDATE users SET name = 'by hand' WHERE id = 1")  # by hand
        assert cache.get(user_key(1)) == "old" and cache.get(user_key(2)) == "old"

        assert poll_slot(cache, db) == [2, 1]  # in commit order
        assert cache.get(user_key(1)) is None and cache.get(user_key(2)) is None
        assert get_user(cache, db, 1) == "by hand" and get_user(cache, db, 2) == "new"
        assert poll_slot(cache, db) == []  # consumed: handed out once
    finally:
        cache.close()
        db.conn.execute("SELECT pg_drop_replication_slot('cache_invalidation')")
        db.close()


def test_a_poll_that_fails_before_consuming_hands_the_changes_out_again(postgres_primary):
    from snippets.postgres import PostgresDatabase, create_slot, poll_slot
    db = PostgresDatabase(postgres_primary.url)
    cache = make_redis_cache(real_redis_url())
    try:
        db.execute("DELETE FROM users WHERE id = 1")
        db.add_user(1, "old")
        create_slot(db, "retried")
        cdc.update_user(db, 1, "again")

        class Unreachable:
            def delete(self, *keys: str) -> int:
                raise ConnectionError("Redis is unreachable")

        with pytest.raises(ConnectionError):
            poll_slot(Unreachable(), db, "retried")  # type: ignore[arg-type]
        assert poll_slot(cache, db, "retried") == [1]  # still there: at least once
    finally:
        cache.close()
        db.conn.execute("SELECT pg_drop_replication_slot('retried')")
        db.close()
