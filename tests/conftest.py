"""Fixtures shared by every test: a cache on each backend, and a fresh database.

The ``cache`` fixture runs a test twice: on fakeredis, always, and on the real Redis at
``REDIS_URL``. Without ``REDIS_URL`` the real-Redis run is skipped on a developer's machine,
but with ``CI=true`` it fails: CI must prove every claim on a real server too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engines import Server, needs_postgres, start_postgres
from snippets.backends import Cache, Database, FakeClock, make_db, make_fake_cache, make_redis_cache

IN_CI = os.environ.get("CI", "").lower() == "true"


def real_redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        if IN_CI:
            pytest.fail("CI=true but REDIS_URL is not set: the real-Redis tests must run in CI")
        pytest.skip("no real Redis: install redis-server (the tests start their own) "
                    "or set REDIS_URL")
    return url


@pytest.fixture(params=["fakeredis", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "fakeredis":
        client = make_fake_cache()
    else:
        client = make_redis_cache(real_redis_url())  # fails loudly if no server answers
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def db() -> Iterator[Database]:
    database = make_db()
    yield database
    database.close()


@pytest.fixture
def ada(db: Database) -> Database:
    """The database with one user: id 1, named Ada."""
    db.add_user(1, "Ada")
    return db


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run a snippet's printing function (``main``, ``bench``) on fakeredis, as a plain
    ``python -m snippets.<name>`` does, and return what it printed, line by line."""
    monkeypatch.delenv("REDIS_URL", raising=False)

    def run(function, *args, **kwargs) -> list[str]:
        function(*args, **kwargs)
        return capsys.readouterr().out.splitlines()

    return run


# The built site, its server and Chromium, shared by the browser tests (tests/test_site.py,
# tests/test_stepper.py): defined once, here, so a session builds and launches them once.
from tests.site_fixtures import base_url, browser, open_page, site_dir  # noqa: E402, F401


@pytest.fixture(scope="module")
def postgres_primary() -> Iterator[Server]:
    """A throwaway PostgreSQL primary on loopback, for one test module."""
    needs_postgres()
    server = start_postgres()
    yield server
    assert server.stop() is None, "PostgreSQL died during the tests"
