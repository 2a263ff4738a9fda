"""An app and an HTTP client on the test's own event loop.

Litestar's AsyncTestClient runs the app in a portal thread with its own loop;
tests that also touch the app's pool (to hold connections, count statements)
need both on one loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from litestar import Litestar

from service.api.app import create_app
from service.db.pool import Database
from service.settings import Settings


@asynccontextmanager
async def app_and_client(settings: Settings) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield app, client


def database_of(app: Litestar) -> Database:
    db: Database = app.state.db
    return db
