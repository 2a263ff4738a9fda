from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.migrate import migration_ids
from service.settings import Settings

Client = AsyncTestClient[Litestar]


def assert_error(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


@pytest.mark.read_only
async def test_health_ok(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.read_only
async def test_live_and_ready(client: Client) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "migrations": len(migration_ids()),
        "databases": [{"name": "primary", "role": "primary", "state": "up", "lag_seconds": 0.0}],
    }


async def test_ready_503_when_not_migrated(
    client: Client, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    await conn.execute("DELETE FROM _yoyo_migration WHERE migration_id = '0005_filter_indexes'")
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert_error(response.json(), "NOT_MIGRATED")
    assert response.json()["error"]["details"] == ["0005_filter_indexes"]


@pytest.mark.read_only
async def test_unknown_route_404(client: Client) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert_error(response.json(), "NOT_FOUND")


@pytest.mark.read_only
async def test_wrong_method_405(client: Client) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert_error(response.json(), "METHOD_NOT_ALLOWED")


@pytest.mark.read_only
async def test_docs_and_schema(client: Client) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    schema = (await client.get("/docs/openapi.json")).json()
    assert schema["openapi"].startswith("3.")
    assert "/health" in schema["paths"]


async def test_database_unreachable_503() -> None:
    # Nothing listens on port 1: connecting fails at once.
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/deals",
        pool_min_size=1,
        pool_acquire_timeout=1.0,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert_error(response.json(), "DATABASE_UNAVAILABLE")
        assert "127.0.0.1" not in response.text
        assert (await client.get("/health/live")).status_code == 200
