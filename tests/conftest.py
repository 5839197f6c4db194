"""Fixtures for the tests that run real processes (integration, chaos).

- ``free_port``      a TCP port on 127.0.0.1 nothing listens on
- ``database``       a parametrized fixture: ``sqlite``, ``postgresql``, ``mariadb``; for the
                     latter two a fresh database per test (see helpers/databases.py), whose
                     URL it yields (None for SQLite: the server home's default)
- ``deployment``     a factory: ``deployment(db_url=None, **server_settings)`` makes a server
                     home in the test's folder, starts its server and returns a
                     :class:`helpers.deployment.Deployment`; everything it started is
                     stopped at teardown, also when the test failed

Server settings for fast tests go to ``conf/xwserver.conf``, e.g.
``deployment(**FAST_LEASES)`` (lease_s=3, heartbeat_interval_s=0.5, reaper_interval_s=0.5).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # ``helpers`` is importable whatever pytest's import mode
    sys.path.insert(0, str(HERE))

from helpers.databases import fresh_database  # noqa: E402
from helpers.deployment import Deployment, MakeDeployment  # noqa: E402
from helpers.net import free_port as _free_port  # noqa: E402

#: parameters of the ``database`` fixture, marked so that ``-m "not postgres"`` etc. work
DATABASES = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture
def free_port() -> int:
    return _free_port()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    with fresh_database(request.param) as url:
        yield url


@pytest.fixture
def deployment(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeDeployment]:
    if "database" in request.fixturenames:
        # set the database up first so that it is dropped only after the servers stopped
        request.getfixturevalue("database")
    made: list[Deployment] = []

    def make(db_url: str | None = None, *, start: bool = True, **settings: object) -> Deployment:
        dep = Deployment(tmp_path / f"deployment{len(made) + 1}", db_url=db_url, settings=settings)
        made.append(dep)
        dep.init()
        if start:
            dep.start_server()
        return dep

    try:
        yield make
    finally:
        errors = []
        for dep in reversed(made):
            try:
                dep.close()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
