"""GET /deals/stats equals a computation by hand; the cache serves within its TTL only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.api.stats import StatsCache
from service.db.rows import CityStats
from service.settings import Settings
from tests.known import Known, city_stats

Client = AsyncTestClient[Litestar]


async def stats(client: Client, **params: Any) -> Any:
    response = await client.get("/deals/stats", params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.read_only
async def test_stats_by_hand(client: Client, known: Known) -> None:
    # Paris 16 deals, Berlin 7, Rome 7: Berlin and Rome tie and go by city.
    body = await stats(client)
    assert [(row["city"], row["deal_count"]) for row in body] == [
        ("Paris", 16),
        ("Berlin", 7),
        ("Rome", 7),
    ]
    assert body == city_stats(known.deals)


STATS_FILTERS: list[dict[str, Any]] = [
    {"min_stars": 3},
    {"min_stars": 5},
    {"price_min": "100"},
    {"price_max": "100"},
    {"price_min": "99.99", "price_max": "150.50"},
    {"category": "luxury"},
    {"category": "Family"},
    {"is_available": True},
    {"is_available": False},
    {"min_stars": 3, "category": "family", "is_available": True, "price_max": "200"},
    {"category": "nonexistent"},
]


@pytest.mark.read_only
async def test_stats_filters(client: Client, known: Known) -> None:
    for filters in STATS_FILTERS:
        select: dict[str, Any] = {
            k: Decimal(v) if k.startswith("price") else v for k, v in filters.items()
        }
        params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in filters.items()}
        assert await stats(client, **params) == city_stats(known.select(**select)), filters


async def test_average_rounds_half_up(
    client: Client, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    hotel = await conn.fetchval(
        "INSERT INTO hotels (name, city, country, phone, star_rating) "
        "VALUES ('H', 'Oslo', 'Norway', '1', 3) RETURNING id"
    )
    for price in ("10.00", "10.01", "20.00", "20.00", "20.01"):
        await conn.execute(
            "INSERT INTO deals (hotel_id, room_type, price_per_night, original_price, "
            "discount_percent, checkin_date, checkout_date) "
            "VALUES ($1, 'Standard', $2::numeric, 30, 0, '2025-01-01', '2025-01-02')",
            hotel,
            price,
        )
    # (10.00 + 10.01) / 2 = 10.005 -> 10.01, half away from zero (banker's would give 10.00).
    assert await stats(client, price_max="10.01") == [
        {"city": "Oslo", "avg_price": "10.01", "deal_count": 2}
    ]
    # 80.02 / 5 = 16.004 -> 16.00
    assert await stats(client) == [{"city": "Oslo", "avg_price": "16.00", "deal_count": 5}]


@pytest.mark.read_only
async def test_stats_empty_and_422(client: Client) -> None:
    assert await stats(client) == []
    response = await client.get("/deals/stats", params={"price_min": "5", "price_max": "4"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "price_min"


@pytest.fixture
async def cached_client(settings: Settings) -> AsyncIterator[Client]:
    cached = msgspec.structs.replace(settings, stats_cache_seconds=300.0)
    async with AsyncTestClient(app=create_app(cached)) as test_client:
        yield test_client


async def add_paris_deal(conn: asyncpg.Connection[asyncpg.Record], known: Known) -> None:
    await conn.execute(
        "INSERT INTO deals (hotel_id, room_type, price_per_night, original_price, "
        "discount_percent, checkin_date, checkout_date) "
        "VALUES ($1, 'Suite', 1000, 1000, 0, '2025-01-01', '2025-01-02')",
        known.hotels[0]["id"],
    )


async def test_cache_serves_the_same_answer_within_ttl(
    cached_client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    before = await stats(cached_client)
    before_stars = await stats(cached_client, min_stars=5)
    await add_paris_deal(conn, known)
    assert await stats(cached_client) == before
    assert await stats(cached_client, min_stars=5) == before_stars
    # Other filters are another entry, computed now: (975.74 + 1000) / 9 = 219.526...
    fresh = await stats(cached_client, min_stars=4)
    assert fresh[0] == {"city": "Paris", "avg_price": "219.53", "deal_count": 9}


async def test_no_cache_by_default(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    before = await stats(client)
    await add_paris_deal(conn, known)
    after = await stats(client)
    assert after != before
    assert after[0]["deal_count"] == before[0]["deal_count"] + 1


ANSWER = [CityStats(city="X", avg_price=Decimal("1.00"), deal_count=1)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cache_expires_after_ttl() -> None:
    clock = Clock()
    cache = StatsCache(10, clock=clock)
    calls = 0

    async def compute() -> list[CityStats]:
        nonlocal calls
        calls += 1
        return ANSWER

    for _ in range(3):
        assert await cache.get("k", compute) == ANSWER
    assert calls == 1
    clock.now += 9.9
    await cache.get("k", compute)
    assert calls == 1
    clock.now += 0.2
    await cache.get("k", compute)
    assert calls == 2


async def test_cache_off_at_zero() -> None:
    cache = StatsCache(0)
    calls = 0

    async def compute() -> list[CityStats]:
        nonlocal calls
        calls += 1
        return ANSWER

    await cache.get("k", compute)
    await cache.get("k", compute)
    assert (calls, len(cache)) == (2, 0)


async def test_cache_is_bounded_least_recently_used_out() -> None:
    cache = StatsCache(60, max_entries=3)

    async def compute() -> list[CityStats]:
        return ANSWER

    for key in ("a", "b", "c"):
        await cache.get(key, compute)
    await cache.get("a", compute)  # a is now the most recent
    await cache.get("d", compute)
    assert len(cache) == 3
    assert list(cache._entries) == ["c", "a", "d"]


async def test_concurrent_misses_share_one_query_and_failures_are_not_cached() -> None:
    cache = StatsCache(60)
    calls = 0
    release = asyncio.Event()

    async def slow() -> list[CityStats]:
        nonlocal calls
        calls += 1
        await release.wait()
        return ANSWER

    waiting = [asyncio.ensure_future(cache.get("k", slow)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [ANSWER] * 5
    assert calls == 1

    async def failing() -> list[CityStats]:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get("bad", failing)
    await asyncio.sleep(0)
    assert "bad" not in cache._entries
