"""The servers the tests start for themselves (tests/engines.py)."""

from __future__ import annotations

import os
import shutil

import pytest
import redis

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
