"""The servers the tests start for themselves (tests/engines.py)."""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest
import redis

from snippets.backends import Database, make_db_from_env
from snippets.postgres import PostgresDatabase, make_postgres_db
from tests.engines import needs_redis_server, start_redis


def test_a_started_redis_answers_on_loopback_and_is_gone_after_stop():
    needs_redis_server()
    server = start_redis()
    assert server.url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(server.url)
    try:
        assert client.ping() and client.set("k", "v") and client.get("k") == b"v"
    finally:
        client.close()
    assert server.stop() is None
    assert server.process.poll() is not None and not server.directory.exists()


def test_a_redis_that_died_keeps_its_log_for_a_look():
    needs_redis_server()
    server = start_redis()
    server.process.kill()
    server.process.wait()
    note = server.stop()
    assert note is not None and str(server.log) in note
    assert server.log.exists()
    shutil.rmtree(server.directory)


def test_the_session_has_a_redis_when_redis_server_is_installed():
    """Without REDIS_URL, the root conftest.py started one: the real-Redis tests run."""
    needs_redis_server()
    if os.environ.get("START_REDIS") == "0":
        pytest.skip("START_REDIS=0: the session was asked not to start a Redis")
    url = os.environ.get("REDIS_URL")
    assert url, "REDIS_URL is not set although redis-server is installed"
    client = redis.Redis.from_url(url)
    try:
        assert client.ping()
    finally:
        client.close()


def test_each_postgres_db_has_its_own_users_and_close_drops_them(database_url):
    """Many ``db``s share one PostgreSQL (every test, every pytest-xdist worker): each is
    an empty ``users`` table in a schema of its own, gone after ``close()``."""
    first, second = make_postgres_db(database_url), make_postgres_db(database_url)
    first.add_user(1, "Ada")
    assert first.query("SELECT name FROM users") == [("Ada",)]
    assert second.query("SELECT name FROM users") == []
    schemas = [first.schema, second.schema]
    first.close()
    second.close()
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT schema_name FROM information_schema.schemata"
                            " WHERE schema_name = ANY(%s)", (schemas,)).fetchall()
    assert left == []


def test_database_url_selects_postgres_as_redis_url_selects_redis(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    db = make_db_from_env()
    assert isinstance(db, PostgresDatabase)
    db.close()
    monkeypatch.delenv("DATABASE_URL")
    db = make_db_from_env()
    assert type(db) is Database  # SQLite
    db.close()
