"""The suite's tiers, and the fixtures of the tests that run real processes (integration, chaos).

Every test gets one tier mark at collection, from where it lives and what it uses, so that
``-m`` picks a tier without a list to keep up to date:

- ``unit``      no server: the shared vocabulary, the client, the worker, the server's pieces
- ``domain``    the server's functions on a database session (``domain`` fixture), no HTTP
- ``contract``  the HTTP API of an in-process server over TLS (the ``xw`` harness,
                tests/unit/conftest.py), on SQLite plus a smoke set per database
- ``e2e``       real processes (tests/integration, tests/chaos; ``chaos`` marks the latter):
                on SQLite, and on PostgreSQL where the ``database`` fixture is used

A test on PostgreSQL or MariaDB is marked ``postgres`` or ``mariadb`` whichever way it got
there (a fixture's parameter or its own ``parametrize``). ``make test-fast`` runs
``unit``, ``domain`` and ``contract`` on SQLite; ``make test`` runs everything.

Fixtures:

- ``free_port``      a TCP port on 127.0.0.1 nothing listens on
- ``database``       a parametrized fixture: ``sqlite``, ``postgresql``; for the latter a fresh
                     database per test (see helpers/databases.py), whose URL it yields (None
                     for SQLite: the server home's default). MariaDB's SQL is held by the
                     domain and contract tiers: real processes on it would run the same
                     statements again, at seconds a test
- ``deployment``     a factory: ``deployment(db_url=None, **server_settings)`` makes a server
                     home in the test's folder, starts its server and returns a
                     :class:`helpers.deployment.Deployment`; everything it started is
                     stopped at teardown, also when the test failed

Server settings for fast tests go to ``conf/xwserver.conf``, e.g.
``deployment(**FAST_LEASES)`` (lease_s=3, heartbeat_interval_s=0.5, reaper_interval_s=0.5).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # ``helpers`` is importable whatever pytest's import mode
    sys.path.insert(0, str(HERE))

# The suite starts hundreds of Python processes (pytest-xdist's workers, servers, workers, the
# client CLI) and every in-process server loads the migration scripts twice (bootstrap, then
# serve). With PYTHONDONTWRITEBYTECODE set in the environment each of them compiles the
# project's sources again: about a third of an in-process server's start and ~0.2 s of CPU per
# process. The bytecode goes where Python keeps it (``__pycache__``, ignored by git); the
# processes started from here (xdist's workers included) inherit the setting.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

from helpers.databases import fresh_database  # noqa: E402
from helpers.deployment import Deployment, MakeDeployment  # noqa: E402
from helpers.net import free_port as _free_port  # noqa: E402

#: parameters of the ``database`` fixture, marked so that ``-m "not postgres"`` etc. work
DATABASES = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
]

#: the folders whose tests run real processes
E2E_FOLDERS = {"integration", "chaos"}
#: the marks of a test run on a database server, by the name of its backend
SERVER_DATABASE_MARKS = {"postgresql": "postgres", "mariadb": "mariadb"}


def tier(item: pytest.Item) -> str:
    """The tier of a collected test (see the module's docstring)."""
    folder = item.path.parent.name
    fixtures = set(getattr(item, "fixturenames", ()))
    if folder in E2E_FOLDERS or "deployment" in fixtures:
        return "e2e"
    if "domain" in fixtures:
        return "domain"
    if "db_templates" in fixtures:  # the in-process HTTPS server and its module-scoped variants
        return "contract"
    return "unit"


def shared_fixtures(item: pytest.Item) -> list[str]:
    """The module-scoped fixtures a test uses (a server and its world, a deployment...)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return sorted(
        name for name, defs in info.name2fixturedefs.items() if defs and defs[-1].scope in ("module", "class")
    )


def in_group(item: pytest.Item, group: str) -> None:
    """Give ``item`` the node id suffix ``@group`` by which pytest-xdist's ``loadgroup`` keeps a
    group's tests in one worker.

    pytest-xdist (3.8) adds it by setting ``item._nodeid``, which pytest 9 no longer reads (a
    node's id is ``item._id``): the groups were silently ignored, each worker built every
    module-scoped server and deployment of its own (the access matrix's, twice per database;
    the CLI modules' deployments), and a group's tests were spread. Done here for both pytest
    versions (on pytest 8 pytest-xdist adds the suffix once more: the last one names the group)."""
    suffix = f"@{group}"
    if item.nodeid.endswith(suffix):
        return
    node_id = getattr(item, "_id", None)
    if node_id is not None and hasattr(type(node_id), "parse"):  # pytest 9
        item._id = type(node_id).parse(item.nodeid + suffix)
    else:  # pytest 8
        item._nodeid = item.nodeid + suffix
    assert item.nodeid.endswith(suffix), item.nodeid


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier(item))
        shared = shared_fixtures(item)
        if shared:
            # under ``pytest -n N --dist loadgroup`` the tests sharing a module's fixture run in
            # one worker process, which sets it up once (else each worker would build its own)
            group = f"{item.path.name}:{'+'.join(shared)}"
            item.add_marker(pytest.mark.xdist_group(group))
            if getattr(config.option, "loadgroup", False):  # a worker of --dist loadgroup
                in_group(item, group)
        if item.path.parent.name == "chaos":
            item.add_marker("chaos")
        params = getattr(getattr(item, "callspec", None), "params", {})
        for name in ("backend", "database"):
            mark = SERVER_DATABASE_MARKS.get(str(params.get(name)))
            if mark is not None and item.get_closest_marker(mark) is None:
                item.add_marker(mark)


#: a rough cost in seconds on an idle 2-core machine, by tier, to put the long work first
TIER_COST_S = {"e2e": 8.0, "contract": 0.15, "domain": 0.1, "unit": 0.05}


def cost_s(item: pytest.Item) -> float:
    """A test's rough cost: its own timeout mark says it is long (a third of it), a real
    process costs seconds, a test of the contract tier on a database server about a second."""
    timeout = item.get_closest_marker("timeout")
    if timeout is not None and timeout.args:
        return float(timeout.args[0]) / 3
    tiers = [t for t in TIER_COST_S if item.get_closest_marker(t) is not None]
    cost = TIER_COST_S[tiers[0]] if tiers else TIER_COST_S["unit"]
    if item.get_closest_marker("chaos") is not None:
        cost *= 3
    elif item.get_closest_marker("slow") is not None and cost < 1:
        cost = 30.0  # an in-process server driven hard (the schemathesis runs)
    shared = item.get_closest_marker("xdist_group") is not None  # a module's server or deployment
    if item.get_closest_marker("postgres") or item.get_closest_marker("mariadb"):
        # a database of its own costs about a second; a cell of a shared server far less
        cost = cost * 2 if shared else max(cost * 2, 1.0)
    return cost / 3 if shared else cost


class LongestFirst:
    """A plugin: orders the collected tests, after pytest's own ordering by fixtures."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        longest_first(items)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LongestFirst(), "xw-longest-first")


def longest_first(items: list[pytest.Item]) -> None:
    """The work units, longest first: a test, or the tests of one ``xdist_group`` (kept together
    and in their order). pytest-xdist hands units out in this order (``make test`` passes
    ``--no-loadscope-reorder``, else it would order them by their count of tests), so no
    minute-long test starts last while the other worker has nothing left to do."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        group = item.get_closest_marker("xdist_group")
        key = str(group.args[0] if group is not None and group.args else item.nodeid)
        units.setdefault(key, []).append(item)
    ordered = sorted(units.values(), key=lambda unit: -sum(cost_s(i) for i in unit))
    items[:] = [item for unit in ordered for item in unit]


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
