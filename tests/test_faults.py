"""Faults the service must survive: no connection free, slow queries, unexpected errors, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.cli.main import main
from service.db.pool import Database
from service.settings import Settings
from tests.client import error_body
from tests.inloop import app_and_client, database_of
from tests.test_health import assert_error


@pytest.mark.read_only
async def test_pool_acquire_timeout_gives_503(database_url: str) -> None:
    settings = Settings(
        database_url=database_url, pool_min_size=1, pool_max_size=1, pool_acquire_timeout=0.3
    )
    async with app_and_client(settings) as (app, client):
        async with database_of(app).connection():  # the only connection is busy
            response = await client.get("/health")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert_error(response.json(), "POOL_TIMEOUT")
        assert (await client.get("/health")).status_code == 200


@pytest.mark.read_only
async def test_overload_is_shed_at_once_beyond_the_waiters_limit(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        pool_min_size=1,
        pool_max_size=1,
        pool_acquire_timeout=0.5,
        pool_max_waiters=2,
    )
    async with app_and_client(settings) as (app, client):
        async with database_of(app).connection():
            responses = await asyncio.gather(*(client.get("/health") for _ in range(6)))
        codes = sorted(r.json()["error"]["code"] for r in responses)
        assert codes == ["OVERLOADED"] * 4 + ["POOL_TIMEOUT"] * 2
        assert all(r.status_code == 503 and r.headers["retry-after"] == "1" for r in responses)
        assert database_of(app).gauges().waiting == 0
        assert (await client.get("/health")).status_code == 200


@pytest.mark.read_only
async def test_statement_timeout_gives_504(
    database_url: str, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    settings = Settings(database_url=database_url, pool_min_size=1, statement_timeout_ms=200)
    async with AsyncTestClient(app=create_app(settings)) as client:
        async with conn.transaction():
            # The readiness query waits on this lock until the statement timeout stops it.
            await conn.execute("LOCK TABLE _yoyo_migration IN ACCESS EXCLUSIVE MODE")
            response = await client.get("/health/ready")
        assert response.status_code == 504
        assert_error(response.json(), "STATEMENT_TIMEOUT")
        assert "_yoyo_migration" not in response.text
        assert (await client.get("/health/ready")).status_code == 200


async def test_unexpected_error_gives_500_without_sql_or_trace(
    database_url: str,
    conn: asyncpg.Connection[asyncpg.Record],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await conn.execute("ALTER TABLE _yoyo_migration RENAME COLUMN migration_id TO renamed")
    settings = Settings(database_url=database_url, pool_min_size=1)
    async with AsyncTestClient(app=create_app(settings)) as client:
        with caplog.at_level(logging.ERROR, logger="service.errors"):
            response = await client.get("/health/ready", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == error_body(
        "INTERNAL_ERROR", "an unexpected error happened; it has been logged", "boom-1"
    )
    assert "Traceback" in caplog.text
    assert "migration_id" in caplog.text  # the detail is in the log, not the body


SECRET = "pw-s3cret-9f2c"


async def test_password_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://deals:{SECRET}@127.0.0.1:1/deals"
    settings = Settings(database_url=url, pool_min_size=1, pool_acquire_timeout=0.5)
    with caplog.at_level(logging.DEBUG):
        async with AsyncTestClient(app=create_app(settings)) as client:
            response = await client.get("/health")
            assert response.status_code == 503
            assert SECRET not in response.text
    assert SECRET not in caplog.text
    assert "deals:***@127.0.0.1:1" in caplog.text


def test_db_url_hides_the_password_unless_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://deals:{SECRET}@db.internal:5432/deals")
    assert main(["db", "url"]) == 0
    assert capsys.readouterr().out.strip() == "postgresql://deals:***@db.internal:5432/deals"
    assert main(["db", "url", "--show-password"]) == 0
    assert SECRET in capsys.readouterr().out


@pytest.mark.read_only
async def test_gauges_report_the_pool(database_url: str) -> None:
    db = Database(Settings(database_url=database_url, pool_min_size=2, pool_max_size=3))
    await db.open()
    try:
        async with db.connection():
            gauges = db.gauges()
        assert (gauges.size, gauges.idle, gauges.max, gauges.waiting) == (2, 1, 3, 0)
    finally:
        with contextlib.suppress(Exception):
            await db.close()


@pytest.mark.read_only
async def test_a_connection_coming_back_goes_to_the_longest_waiter_not_to_a_newcomer(
    database_url: str,
) -> None:
    """Requests that ask just as a connection comes back (in the loop's iteration that
    returns it, as new requests do under load) queue behind the one that already waited.
    With asyncpg's queue alone they took it, and the waiter went to the back of the line."""
    db = Database(Settings(database_url=database_url, pool_min_size=1, pool_max_size=1))
    await db.open()
    served: list[str] = []
    newcomers: list[asyncio.Task[None]] = []

    async def use(name: str) -> None:
        async with db.connection() as conn:
            served.append(name)
            await conn.fetchval("SELECT 1")

    def ask_now() -> None:
        newcomers.extend(asyncio.create_task(use(f"newcomer {i}")) for i in range(3))

    try:
        holding, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with db.connection():
                holding.set()
                await done.wait()
                asyncio.get_running_loop().call_soon(ask_now)  # runs as the connection goes back

        holder = asyncio.create_task(hold())
        await holding.wait()
        waiter = asyncio.create_task(use("waiter"))
        for _ in range(100):
            if db.gauges().waiting == 1:
                break
            await asyncio.sleep(0)
        assert db.gauges().waiting == 1
        done.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), 10)
        await asyncio.wait_for(asyncio.gather(*newcomers), 10)
        assert served == ["waiter", "newcomer 0", "newcomer 1", "newcomer 2"]
    finally:
        with contextlib.suppress(Exception):
            await db.close()
