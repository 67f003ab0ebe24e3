"""Fixtures shared by every test: a cache on each backend, and a fresh database on each.

The ``cache`` fixture runs a test twice: on fakeredis, always, and on the real Redis at
``REDIS_URL``. Without ``REDIS_URL`` the real-Redis run is skipped on a developer's machine,
but with ``CI=true`` it fails: CI must prove every claim on a real server too.

The ``db`` fixture (and ``ada``) runs a test on SQLite and on PostgreSQL: the one at
``DATABASE_URL``, else one the session starts itself (tests/engines.py) when PostgreSQL is
installed and ``START_POSTGRES`` is not ``0``. Missing, it skips outside CI and fails in CI,
as Redis does. A test that needs SQLite itself says why with
``@pytest.mark.sqlite_only(reason)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engines import Server, needs_postgres, start_postgres
from snippets.backends import Cache, Database, FakeClock, make_db, make_fake_cache, make_redis_cache
from snippets.postgres import make_postgres_db

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


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """``DATABASE_URL``, else a throwaway PostgreSQL of this process's own, started at its
    first PostgreSQL test (about 2 s; under pytest-xdist, one per worker). Every ``db``
    gets a schema of its own on it, so tests and workers never see each other's rows."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    if os.environ.get("START_POSTGRES", "1") == "0":
        if IN_CI:
            pytest.fail("CI=true but START_POSTGRES=0 and DATABASE_URL is not set: "
                        "the PostgreSQL tests must run in CI")
        pytest.skip("START_POSTGRES=0 and DATABASE_URL is not set: no PostgreSQL")
    needs_postgres()  # skips (fails in CI), naming the package to install
    server = start_postgres()
    yield server.url
    assert server.stop() is None, "PostgreSQL died during the tests"


@pytest.hookimpl(tryfirst=True)  # before pytest reads the test's parametrize marks
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``sqlite_only("why")`` (or its module: ``pytestmark``) that uses ``db``
    gets SQLite alone: the test parametrizes ``db`` itself, which overrides its params."""
    if metafunc.definition.get_closest_marker("sqlite_only") and "db" in metafunc.fixturenames:
        metafunc.definition.add_marker(
            pytest.mark.parametrize("db", ["sqlite"], indirect=True))


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    if request.param == "sqlite":
        database = make_db()
    else:
        database = make_postgres_db(request.getfixturevalue("database_url"))
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
