"""deal_totals (migration 0010) and deal_price_totals (0013) answer exactly as the live queries.

After API writes (create, update of price, availability and hotel, delete),
a load, a changed reload, a concurrent writer and the migrations' own
backfills, every shape the totals serve equals the live query over deals:
GET /deals/stats (min_stars, is_available) against deal_stats_by_city, the
exact total of GET /deals (city, min_stars, is_available) against
count_deals, and the exact total of a price range (whole units, partial ones
at its ends, a range inside one unit) against count_deals too; and
deal_price_totals holds each unit's live number of deals.
"""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service import migrate
from service.db.catalogue import CATALOGUE
from service.db.deals import (
    COUNT_DEALS,
    COUNT_DEALS_IN_PRICE_RANGE,
    DealFilters,
    count_deals,
    price_bounds,
)
from service.db.rows import CityStats
from service.db.stats import count_deals_from_totals, deal_stats, totals_answer
from service.load import generator
from service.load.steps import load_file
from tests.known import Known, city_stats
from tests.loadkit import row, rows, write

Client: TypeAlias = AsyncTestClient[Litestar]
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

STARS = (None, 1, 3, 4, 5)
AVAILABLE = (None, True, False)
PRICE_RANGES = [  # price_min, price_max as the API passes them (a missing bound is None)
    ("100", "150"),  # whole units, and 150.00 alone at the end
    ("99.99", "300.01"),  # partial units at both ends
    ("120.10", "120.60"),  # inside one unit
    ("77.77", "77.77"),
    ("10.01", None),
    (None, "99.99"),
    (None, None),
    ("0.01", "1.00"),
    ("150", "100"),  # min above max: nothing
]


async def live_stats(conn: Conn, min_stars: int | None, available: bool | None) -> list[CityStats]:
    """What the deals themselves give for a shape deal_totals answers too."""
    shape = DealFilters(min_stars=min_stars, is_available=available)
    return await deal_stats(conn, shape, live=True)


async def assert_totals_exact(conn: Conn, client: Client | None = None) -> int:
    """Every shape deal_totals serves equals the live query; returns the number of deals."""
    cities = [None, *(r[0] for r in await conn.fetch("SELECT DISTINCT city FROM hotels"))]
    for min_stars, available in itertools.product(STARS, AVAILABLE):
        live = await live_stats(conn, min_stars, available)
        shape = DealFilters(min_stars=min_stars, is_available=available)
        assert totals_answer(shape)  # so deal_stats answers from deal_totals
        assert await deal_stats(conn, shape) == live, (min_stars, available)
        for city in cities:
            spelt = city.upper() if city is not None else None  # the folded match, as the API's
            filters = DealFilters(city=spelt, min_stars=min_stars, is_available=available)
            assert await count_deals_from_totals(conn, filters) == await count_deals(
                conn, filters=filters
            ), (city, min_stars, available)
    if client is not None:  # and through the API, which picks deal_totals for these shapes
        shapes: list[tuple[dict[str, Any], int | None, bool | None]] = [
            ({}, None, None),
            ({"min_stars": 4}, 4, None),
            ({"is_available": "false"}, None, False),
        ]
        for params, min_stars, available in shapes:
            stats = (await client.get("/deals/stats", params=params)).json()
            live = await live_stats(conn, min_stars, available)
            assert stats == [
                {"city": s.city, "avg_price": str(s.avg_price), "deal_count": s.deal_count}
                for s in live
            ]
    for low, high in PRICE_RANGES:
        filters = DealFilters(
            price_min=None if low is None else Decimal(low),
            price_max=None if high is None else Decimal(high),
        )
        live = await COUNT_DEALS(conn, *filters.args())
        assert await COUNT_DEALS_IN_PRICE_RANGE(conn, *price_bounds(filters)) == live, (low, high)
    units = (  # each unit of price's number of deals, as kept and as the deals give it
        "SELECT price_floor, sum(deal_count) FROM deal_price_totals "
        "GROUP BY 1 HAVING sum(deal_count) <> 0 ORDER BY 1"
    )
    live_units = "SELECT floor(price_per_night), count(*) FROM deals GROUP BY 1 ORDER BY 1"
    assert [tuple(r) for r in await conn.fetch(units)] == [
        tuple(r) for r in await conn.fetch(live_units)
    ]
    total: int = await conn.fetchval("SELECT count(*) FROM deals")
    if client is not None:
        page = (await client.get("/deals", params={"limit": 1})).json()
        assert page["total"] == total
        # the API's price page carries the same total
        for low, high in [("100", "150"), ("99.99", "300.01"), ("120.10", "120.60")]:
            params = {"price_min": low, "price_max": high, "limit": 1}
            page = (await client.get("/deals", params=params)).json()
            filters = DealFilters(price_min=Decimal(low), price_max=Decimal(high))
            assert page["total"] == await COUNT_DEALS(conn, *filters.args()), (low, high)
    return total


async def rows_per_key(conn: Conn) -> int:
    """The most rows any key has, in deal_totals and in deal_price_totals."""
    most: int = await conn.fetchval(
        "SELECT coalesce(max(n), 0) FROM "
        "(SELECT count(*) AS n FROM deal_totals GROUP BY hotel_id, is_available "
        " UNION ALL SELECT count(*) FROM deal_price_totals GROUP BY price_floor) AS k"
    )
    return most


async def test_the_migration_backfills_the_seeded_deals(conn: Conn, known: Known) -> None:
    assert await assert_totals_exact(conn) == len(known.deals)
    assert await rows_per_key(conn) == 1


async def test_rollback_and_apply_again_backfill_exactly(
    database_url: str, conn: Conn, known: Known
) -> None:
    # the migrations that depend on it go first, the newest first
    after = [
        "0013_deal_price_totals",
        "0012_drop_deals_hotel_id_idx",
        "0011_deals_hotel_id_id_idx",
    ]
    assert await asyncio.to_thread(migrate.rollback, database_url, 1 + len(after)) == [
        *after,
        "0010_deal_totals",
    ]
    assert await conn.fetchval("SELECT to_regclass('deal_totals')") is None
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'deals'::regclass "
            "AND tgname LIKE 'deal_totals%'"
        )
        == 0
    )
    await conn.execute("UPDATE deals SET price_per_night = price_per_night + 0.01 WHERE id % 2 = 0")
    assert await asyncio.to_thread(migrate.apply, database_url) == [
        "0010_deal_totals",
        *reversed(after),
    ]
    assert await assert_totals_exact(conn) == len(known.deals)


async def test_price_totals_rollback_and_apply_again_backfill_exactly(
    database_url: str, conn: Conn, known: Known
) -> None:
    assert await asyncio.to_thread(migrate.rollback, database_url, 1) == ["0013_deal_price_totals"]
    assert await conn.fetchval("SELECT to_regclass('deal_price_totals')") is None
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'deals'::regclass "
            "AND tgname LIKE 'deal_price_totals%'"
        )
        == 0
    )
    await conn.execute("UPDATE deals SET price_per_night = price_per_night + 0.5 WHERE id % 3 = 0")
    assert await asyncio.to_thread(migrate.apply, database_url) == ["0013_deal_price_totals"]
    assert await assert_totals_exact(conn) == len(known.deals)
    assert await rows_per_key(conn) == 1


async def test_api_writes_keep_the_totals_exact(client: Client, conn: Conn, known: Known) -> None:
    hotel_a, hotel_b = known.hotels[0]["id"], known.hotels[-1]["id"]
    body: dict[str, Any] = {
        "hotel_id": hotel_a,
        "room_type": "Suite",
        "price_per_night": "120.55",
        "original_price": "150.00",
        "discount_percent": "19.67",
        "checkin_date": "2027-03-01",
        "checkout_date": "2027-03-04",
        "categories": ["luxury"],
    }
    created = []
    for price in ("120.55", "99.99", "300.01"):
        response = await client.post("/deals", json={**body, "price_per_night": price})
        assert response.status_code == 201, response.text
        created.append(response.json()["id"])
    assert await assert_totals_exact(conn, client) == len(known.deals) + 3

    changes: list[tuple[int, dict[str, Any]]] = [
        (created[0], {"price_per_night": "10.01"}),
        (created[1], {"is_available": False}),
        (created[2], {"hotel_id": hotel_b}),
        (created[0], {"hotel_id": hotel_b, "is_available": False, "price_per_night": "77.77"}),
        (known.deals[0].id, {"categories": ["family"]}),  # only links: the totals stay
        (known.deals[1].id, {"room_type": "Twin"}),  # not a totalled column
    ]
    for deal, change in changes:
        etag = (await client.get(f"/deals/{deal}")).headers["etag"]
        response = await client.patch(f"/deals/{deal}", json=change, headers={"If-Match": etag})
        assert response.status_code == 200, (change, response.text)
        await assert_totals_exact(conn)

    for deal in (created[1], known.deals[2].id):
        etag = (await client.get(f"/deals/{deal}")).headers["etag"]
        response = await client.delete(f"/deals/{deal}", headers={"If-Match": etag})
        assert response.status_code == 204, response.text
    assert await assert_totals_exact(conn, client) == len(known.deals) + 1
    # each write folded its key's earlier rows into its own
    assert await rows_per_key(conn) == 1


async def test_a_load_and_a_changed_reload_keep_the_totals_exact(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    # the loader still skips the per-row foreign-key triggers: deal_totals' fire ALWAYS
    assert await conn.fetchval(CATALOGUE["may_skip_row_triggers"].sql) is True
    sample = tmp_path / "sample.csv"
    generator.generate(sample, 3_000, 40, seed=7)
    summary = await load_file(database_url, sample)
    assert summary.deals_new == 3_000
    assert await assert_totals_exact(conn) == 3_000

    first = rows(12, start=10_000_001)
    await load_file(database_url, write(tmp_path / "a.csv", first))
    second = rows(12, start=10_000_001)
    second[0] = row(10_000_001, price_per_night="99.00")
    second[1] = row(10_000_002, is_available="false")
    second[2] = row(  # moves to another hotel
        10_000_003,
        hotel_name="Elsewhere",
        hotel_city="Oslo",
        hotel_country="Norway",
        hotel_phone="+47 1",
    )
    second[3] = row(10_000_004, hotel_star_rating="2")  # re-rates its hotel: no deal changes
    second.append(row(10_000_013))
    changed = await load_file(database_url, write(tmp_path / "b.csv", second))
    assert (changed.deals_new, changed.deals_updated) == (1, 3)
    assert await assert_totals_exact(conn) == 3_013
    again = await load_file(database_url, write(tmp_path / "b.csv", second))
    assert (again.deals_new, again.deals_updated) == (0, 0)
    assert await assert_totals_exact(conn) == 3_013


async def test_a_writer_never_waits_for_a_transaction_holding_its_key(
    database_url: str, conn: Conn, known: Known
) -> None:
    hotel = known.hotels[0]["id"]
    insert = (
        "INSERT INTO deals (hotel_id, room_type, price_per_night, original_price, "
        "discount_percent, checkin_date, checkout_date) "
        "VALUES ($1, 'Suite', $2::numeric, 500, 0, '2027-01-01', '2027-01-02')"
    )
    holder = await asyncpg.connect(database_url)
    other = await asyncpg.connect(database_url)
    try:
        long = holder.transaction()
        await long.start()
        await holder.execute(insert, hotel, "500.00")  # folds (locks) the key's rows until commit
        await other.execute("SET lock_timeout = '2s'")
        for price in ("500.10", "500.20", "500.30"):  # each commits at once: skips the held rows
            await other.execute(insert, hotel, price)
        assert await assert_totals_exact(conn) == len(known.deals) + 3
        await long.commit()
    finally:
        await holder.close()
        await other.close()
    assert await assert_totals_exact(conn) == len(known.deals) + 4
    await conn.execute(insert, hotel, "500.40")  # a later write folds them all again
    assert await rows_per_key(conn) == 1


async def test_truncate_empties_the_totals(conn: Conn, known: Known) -> None:
    await conn.execute("TRUNCATE deals CASCADE")
    assert await conn.fetchval("SELECT count(*) FROM deal_totals") == 0
    assert await conn.fetchval("SELECT count(*) FROM deal_price_totals") == 0
    assert await assert_totals_exact(conn) == 0


@pytest.mark.read_only
async def test_shapes_with_a_price_or_a_category_keep_the_live_query(
    client: Client, known: Known
) -> None:
    # deal_totals cannot answer these: the answers still match the known deals
    body = (await client.get("/deals/stats", params={"price_min": "100"})).json()
    assert body == city_stats(known.select(price_min=Decimal("100")))
    page = (await client.get("/deals", params={"category": "luxury", "limit": 1})).json()
    assert page["total"] == len(known.select(category="luxury"))
