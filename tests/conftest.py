from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.settings import Settings
from tests import pg
from tests.known import Known, seed

TEMPLATE = "deals_template"


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


@pytest.fixture
def database_url(admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh migrated database for this test, cloned from the template in milliseconds."""
    name, url = pg.clone(admin_url, template_db)
    yield url
    pg.drop(admin_url, name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, pool_min_size=1, pool_max_size=4)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def known(conn: asyncpg.Connection[asyncpg.Record]) -> Known:
    """Known hotels, categories and deals in this test's database (tests/known.py)."""
    return await seed(conn)
