"""Databases for the tests.

A test that may write gets a database of its own, cloned from a template: the
migrated, empty one, or the one seeded with tests/known.py when the test asks
for `known` (the rows, their ids and the statistics are copied with it, so
nothing is seeded per test).

A test marked `read_only` (`pytestmark = pytest.mark.read_only` for a module)
shares one database for the whole session instead, seeded or empty by the same
rule, and one app and client over it. Those databases refuse writes
(default_transaction_read_only), so a test marked by mistake fails instead of
changing what the other tests read.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import cast

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.settings import Settings
from tests import pg
from tests.known import Known, seed

# Under pytest-xdist (`make pytest` runs `-n auto`) every worker is a process with its
# session fixtures, its own embedded server among them; the worker's id in the template
# names keeps workers apart on a server they share (DEALS_TEST_DATABASE_URL).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
TEMPLATE = f"deals_template{'_' + WORKER if WORKER else ''}"
SEEDED_TEMPLATE = f"deals_seeded_template{'_' + WORKER if WORKER else ''}"

Client = AsyncTestClient[Litestar]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "read_only: the test only reads; it shares the session's read-only database"
    )


# The modules whose tests take longest (start servers, load 50,000 rows, restart
# PostgreSQL, build the wheel), longest first, from `pytest --durations`. Under
# pytest-xdist (`make pytest`: --dist worksteal) they are collected first, so they start
# first: an idle worker steals from the end of another's queue, which then holds short
# tests, and no long test is left to start last. A module's tests stay together, so its
# module-scoped fixtures are built once per worker. A name that is gone only stops counting.
LONGEST_FIRST = [
    "test_import.py",
    "test_metrics.py",
    "test_ratelimit.py",
    "test_load.py",
    "test_auth.py",
    "test_resilience.py",
    "test_wheel.py",
    "test_doctor.py",
    "test_load_files.py",
    "test_load_faults.py",
    "test_cli_errors.py",
    "test_readme_examples.py",
    "test_fuzz.py",
    "test_replicas.py",
    "test_pgbouncer.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # in one process the order changes nothing but the output
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    # sorted() is stable: the other modules, and the tests inside each, keep their order
    items[:] = sorted(items, key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def logging_as_found() -> Iterator[None]:
    """The root logger as the test found it: a test that runs a command in-process
    (`main([...])`) has logs.configure put a handler on the root that writes to the
    test's captured stderr, which pytest closes when the test ends. Left there, every
    later log line of the worker failed in it and printed a `--- Logging error ---`
    traceback (thousands a run, seconds of CPU). Handlers the test added are removed and
    the root's level is restored; pytest's own handlers come and go with each phase."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


def read_only(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("read_only") is not None


def seeded(request: pytest.FixtureRequest) -> bool:
    return "known" in request.fixturenames


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    logging.getLogger("yoyo").setLevel(logging.WARNING)
    with pg.server() as (url, source):
        print(f"\ntests use PostgreSQL from {source}")
        yield url


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    """The migrated, empty template; built once per session."""
    pg.create_template(admin_url, TEMPLATE)
    yield TEMPLATE
    pg.drop(admin_url, TEMPLATE)


@pytest.fixture(scope="session")
async def seeded_template(admin_url: str, template_db: str) -> AsyncIterator[tuple[str, Known]]:
    """The migrated template with the known rows (seeded and analyzed once), and those rows."""
    pg.drop(admin_url, SEEDED_TEMPLATE)
    _name, url = pg.clone(admin_url, template_db, SEEDED_TEMPLATE)
    connection = await asyncpg.connect(url)
    try:
        known = await seed(connection)
    finally:
        await connection.close()  # a template must have no connection when it is copied
    yield SEEDED_TEMPLATE, known
    pg.drop(admin_url, SEEDED_TEMPLATE)


def shared_clone(admin_url: str, template: str) -> Iterator[str]:
    name, url = pg.clone(admin_url, template)
    pg.refuse_writes(admin_url, name)
    yield url
    pg.drop(admin_url, name)


@pytest.fixture(scope="session")
def shared_empty_url(admin_url: str, template_db: str) -> Iterator[str]:
    """One migrated, empty, read-only database for every read_only test without `known`."""
    yield from shared_clone(admin_url, template_db)


@pytest.fixture(scope="session")
def shared_seeded_url(admin_url: str, seeded_template: tuple[str, Known]) -> Iterator[str]:
    """One seeded, read-only database for every read_only test with `known`."""
    yield from shared_clone(admin_url, seeded_template[0])


def settings_for(database_url: str) -> Settings:
    return Settings(database_url=database_url, pool_min_size=1, pool_max_size=4)


@pytest.fixture(scope="session")
async def shared_empty_client(shared_empty_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings_for(shared_empty_url))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def shared_seeded_client(shared_seeded_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings_for(shared_seeded_url))) as test_client:
        yield test_client


@pytest.fixture
def database_url(request: pytest.FixtureRequest, admin_url: str) -> Iterator[str]:
    """This test's database: its own clone, or the shared read-only one for read_only tests."""
    if read_only(request):
        yield cast(
            str, request.getfixturevalue(f"shared_{'seeded' if seeded(request) else 'empty'}_url")
        )
        return
    spares: pg.Spares = request.getfixturevalue(
        f"{'seeded' if seeded(request) else 'empty'}_spares"
    )
    name, url = spares.take()
    yield url
    spares.give_back(name)


@pytest.fixture(scope="session")
def empty_spares(admin_url: str, template_db: str) -> Iterator[pg.Spares]:
    """Clones of the empty template, made a test ahead (tests.pg.Spares)."""
    spares = pg.Spares(admin_url, template_db)
    yield spares
    spares.close()


@pytest.fixture(scope="session")
def seeded_spares(admin_url: str, seeded_template: tuple[str, Known]) -> Iterator[pg.Spares]:
    """Clones of the seeded template, made a test ahead (tests.pg.Spares)."""
    spares = pg.Spares(admin_url, seeded_template[0])
    yield spares
    spares.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return settings_for(database_url)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    async with pg.connected(database_url) as connection:
        yield connection


@pytest.fixture
async def own_client(settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Client:
    """An app over this test's database: the shared one for read_only tests."""
    if read_only(request):
        which = "seeded" if seeded(request) else "empty"
        return cast(Client, request.getfixturevalue(f"shared_{which}_client"))
    return cast(Client, request.getfixturevalue("own_client"))


@pytest.fixture
def known(seeded_template: tuple[str, Known]) -> Known:
    """Known hotels, categories and deals in this test's database (tests/known.py)."""
    return copy.deepcopy(seeded_template[1])
