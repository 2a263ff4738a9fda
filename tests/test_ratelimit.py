"""RATE_LIMIT per client, counted by the worker or, with REDIS_URL, by every worker together;
and the stats cache shared in Redis."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.api.ratelimit import Limiter, LocalCounter, Rate
from service.settings import Settings, SettingsError
from tests.known import Known
from tests.redisserver import redis_server
from tests.serving import serving
from tests.test_auth import SECRET, bearer, claims, hs256

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def fresh_window(window: int, need: float) -> None:
    """Wait for the next window when this one has less than `need` seconds left."""
    left = window - time.time() % window
    if left < need:
        time.sleep(left + 0.05)


def limited(database_url: str, rate: str, **changes: Any) -> Settings:
    return Settings(
        database_url=database_url, pool_min_size=1, pool_max_size=4, rate_limit=rate, **changes
    )


def assert_headers(response: Any, limit: int, remaining: int, window: int) -> None:
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == str(remaining)
    assert 1 <= int(response.headers["ratelimit-reset"]) <= window


@pytest.mark.read_only
async def test_over_the_limit_is_a_429_with_retry_after(database_url: str) -> None:
    fresh_window(3600, 5)
    async with AsyncTestClient(app=create_app(limited(database_url, "3/h"))) as client:
        for remaining in (2, 1, 0):
            response = await client.get("/categories")
            assert response.status_code == 200
            assert_headers(response, 3, remaining, 3600)
        over = await client.get("/categories")
        assert over.status_code == 429
        error = over.json()["error"]
        assert error["code"] == "TOO_MANY_REQUESTS"
        assert error["message"].startswith("over the rate limit of 3 requests in 3600 s; retry in")
        assert_headers(over, 3, 0, 3600)
        assert over.headers["retry-after"] == over.headers["ratelimit-reset"]
        # Probes are not clients: never counted, never refused.
        for _ in range(5):
            health = await client.get("/health")
            assert health.status_code == 200
            assert "ratelimit-limit" not in health.headers


@pytest.mark.read_only
async def test_the_client_is_the_tokens_subject_else_the_address(
    database_url: str, known: Known
) -> None:
    fresh_window(3600, 5)
    settings = limited(database_url, "2/h", auth_jwt_secret=SECRET)
    async with AsyncTestClient(app=create_app(settings)) as client:
        alice = bearer(hs256(claims(sub="alice")))
        again = bearer(hs256(claims(sub="alice", jti="another token, the same subject")))
        bob = bearer(hs256(claims(sub="bob")))
        assert (await client.get("/categories", headers=alice)).status_code == 200
        assert (await client.get("/categories", headers=again)).status_code == 200
        assert (await client.get("/categories", headers=alice)).status_code == 429
        assert (await client.get("/categories", headers=bob)).status_code == 200
        # Without a valid token the peer address counts, and the refusals count too.
        first = await client.get("/categories")
        assert first.status_code == 401
        assert_headers(first, 2, 1, 3600)
        assert (await client.get("/categories", headers=bearer("junk"))).status_code == 401
        assert (await client.get("/categories")).status_code == 429


async def test_a_new_window_starts_a_new_count() -> None:
    now = [1000.0]
    limiter = Limiter(Rate.parse("2/s"), LocalCounter(), clock=lambda: now[0])
    verdicts = [await limiter.hit("c") for _ in range(3)]
    assert [v.allowed for v in verdicts if v] == [True, True, False]
    now[0] = 1001.5
    verdict = await limiter.hit("c")
    assert verdict is not None
    assert (verdict.allowed, verdict.remaining, verdict.reset) == (True, 1, 1)
    assert Rate.parse("1000/m") == Rate(1000, 60)
    assert Rate.parse("5000/h") == Rate(5000, 3600)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RATE_LIMIT": "fast"},
            "RATE_LIMIT='fast' must be requests per second, minute or hour: 200/s, 1000/m, 5000/h",
        ),
        (
            {"RATE_LIMIT": "0/s"},
            "RATE_LIMIT='0/s' must be requests per second, minute or hour: 200/s, 1000/m, 5000/h",
        ),
        (
            {"REDIS_URL": "http://u:secret@cache:6379"},
            "REDIS_URL='http://u:***@cache:6379' must start with redis://, rediss:// or unix://",
        ),
    ],
)
def test_bad_rate_limit_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


# --- shared in Redis --------------------------------------------------------------------


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # a new connection each time
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_two_workers_hold_one_limit_together(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with serving(
        database_url, log, API_WORKERS="2", REDIS_URL=redis_url, RATE_LIMIT="20/h"
    ) as server:
        time.sleep(1)  # both workers up (serving waits for the first to answer)
        fresh_window(3600, 15)  # an hour's window: rarely a wait, where a minute's was 1 in 4
        statuses = [status_of(f"{server.base}/categories") for _ in range(40)]
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 20, statuses
    assert statuses[:20] == [200] * 20


@pytest.mark.read_only
async def test_a_redis_that_does_not_answer_lets_requests_through(
    database_url: str, tmp_path: Path
) -> None:
    from tests.serving import free_port

    settings = limited(
        database_url, "1/h", redis_url=f"redis://127.0.0.1:{free_port()}/0", stats_cache_seconds=60
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        for _ in range(3):
            response = await client.get("/categories")
            assert response.status_code == 200
            assert "ratelimit-limit" not in response.headers
        assert (await client.get("/deals/stats")).status_code == 200


async def test_the_stats_cache_is_shared_through_redis(
    database_url: str, redis_url: str, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    settings = Settings(
        database_url=database_url,
        pool_min_size=1,
        pool_max_size=2,
        redis_url=redis_url,
        stats_cache_seconds=60,
    )
    async with (
        AsyncTestClient(app=create_app(settings)) as one,
        AsyncTestClient(app=create_app(settings)) as other,
    ):
        first = await one.get("/deals/stats", params={"min_stars": 1})
        assert first.status_code == 200
        await conn.execute("UPDATE deals SET price_per_night = price_per_night + 10")
        # Another worker (another app) answers from Redis: the answer cached before the change.
        cached = await other.get("/deals/stats", params={"min_stars": 1})
        assert cached.json() == first.json()
        # Other filters are another entry, computed afresh.
        fresh = await other.get("/deals/stats", params={"min_stars": 2})
        assert fresh.status_code == 200
    without_cache = Settings(database_url=database_url, pool_min_size=1, pool_max_size=2)
    async with AsyncTestClient(app=create_app(without_cache)) as plain:
        now = await plain.get("/deals/stats", params={"min_stars": 1})
        assert now.json() != first.json()
