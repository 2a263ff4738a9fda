"""The pages PostgreSQL encodes (page_json) are, byte for byte, what the Structs encode.

GET /deals with no filter, a city or a price range (offset pages by id) answers
with the JSON that list_all_deals_by_id_json, list_deals_in_city_by_id_json and
list_deals_in_price_range_by_id_json build; every
other page is encoded by msgspec from the row Structs. The two must not differ
in a byte: key order, money as strings, dates, created_at in UTC (a Z, and
microseconds only when there are some), null, empty and sorted category lists,
and the escapes of text (quotes, backslashes, control characters; other
characters as they are).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import msgspec
import pytest

from service.api.responses import DealPage, deal_page_json
from service.db import deals
from service.db.deals import DealFilters, json_shape, page_json
from service.db.stats import count_deals_from_totals

HOTELS = [
    # name, city, country, phone, star_rating
    ('The "Quoted" \\ Backslash', "Paris", "France", "+33-1", 5),
    ("Tab\tNew\nline\rCR\x01\x1f\x7f end", "PARIS", "France", "+33-2", 3),
    ("Müller & Söhne \u2028 😀 ünïcödé", "München", "Deutschland", "+49-1", 4),
    ("Plain", "Lyon", "France", "+33-3", 1),
]
CREATED = [
    datetime(2024, 7, 25, 3, 47, 11, tzinfo=UTC),
    datetime(2024, 7, 25, 3, 47, 11, 1, tzinfo=UTC),
    datetime(2024, 12, 31, 23, 59, 59, 120000, tzinfo=UTC),
    datetime(1999, 1, 2, 0, 0, 0, 999999, tzinfo=UTC),
]
PRICES = ["0.01", "99999999.99", "100.00", "12.30", "7.05"]
DISCOUNTS = ["0.00", "100.00", "16.67", "5.50"]
CATEGORIES = ["budget", "luxury", "family", 'a "quoted" one', "zeta"]
DEALS = 23


async def seed(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    hotels = [
        await conn.fetchval(
            "INSERT INTO hotels (name, city, country, phone, star_rating) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            *hotel,
        )
        for hotel in HOTELS
    ]
    categories = [
        await conn.fetchval("INSERT INTO categories (name) VALUES ($1) RETURNING id", name)
        for name in CATEGORIES
    ]
    for i in range(DEALS):
        checkin = date(2025, 1, 1) + timedelta(days=37 * i)
        id = await conn.fetchval(
            "INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, original_price, "
            "discount_percent, checkin_date, checkout_date, is_available, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            None if i % 4 == 3 else 10**12 + i,
            hotels[i % len(hotels)],
            ["Standard", 'Suite "Royale"', "Room\\42\u00e9"][i % 3],
            Decimal(PRICES[i % len(PRICES)]),
            Decimal(PRICES[(i + 1) % len(PRICES)]),
            Decimal(DISCOUNTS[i % len(DISCOUNTS)]),
            checkin,
            checkin + timedelta(days=1 + i),
            i % 3 != 0,
            CREATED[i % len(CREATED)] + timedelta(days=i),
        )
        # reversed, so that the names' order is the query's doing
        for category in reversed(categories[: i % 4]):
            await conn.execute(
                "INSERT INTO deal_categories (deal_id, category_id) VALUES ($1, $2)", id, category
            )
    await conn.execute("UPDATE deals SET version = 7 WHERE id % 5 = 0")


CASES = [
    # filters, limit, skip
    (DealFilters(), 20, 0),
    (DealFilters(), 100, 0),
    (DealFilters(), 5, 20),
    (DealFilters(), 20, 100),
    (DealFilters(city="paris"), 100, 0),
    (DealFilters(city="Paris", min_stars=4), 3, 1),
    (DealFilters(city="MÜNCHEN"), 100, 0),
    (DealFilters(city="lyon", min_stars=1), 2, 4),
    (DealFilters(city="nowhere"), 20, 0),
    (DealFilters(price_min=Decimal("7.05"), price_max=Decimal(100)), 100, 0),
    (DealFilters(price_min=Decimal("12.30")), 4, 2),
    (DealFilters(price_max=Decimal("0.01")), 20, 0),
    (DealFilters(price_min=Decimal("100000000")), 20, 0),
]


@pytest.mark.parametrize(("filters", "limit", "skip"), CASES)
async def test_a_page_from_postgresql_is_the_structs_json(
    conn: asyncpg.Connection[asyncpg.Record], filters: DealFilters, limit: int, skip: int
) -> None:
    await seed(conn)
    assert json_shape("id", filters)
    items = await deals.list_deals(
        conn, sort="id", filters=filters, key=None, last_id=None, limit=limit, skip=skip
    )
    total = await deals.count_deals(conn, filters=filters)
    if deals.price_only(filters):  # counted live: deal_totals does not know prices
        assert total == await deals.COUNT_DEALS(conn, *filters.args())
    else:
        assert total == await count_deals_from_totals(conn, filters)
    expected = msgspec.json.encode(DealPage(items=items, total=total, skip=skip, limit=limit))
    encoded = await page_json(conn, filters=filters, limit=limit, skip=skip, with_total=True)
    assert deal_page_json(encoded.items, encoded.total, skip, limit) == expected
    uncounted = await page_json(conn, filters=filters, limit=limit, skip=skip, with_total=False)
    assert uncounted.total is None
    assert deal_page_json(uncounted.items, None, skip, limit) == msgspec.json.encode(
        DealPage(items=items, total=None, skip=skip, limit=limit)
    )


def test_page_json_serves_the_offset_pages_by_id_of_no_filter_a_city_and_a_price_range() -> None:
    assert json_shape("id", DealFilters())
    assert json_shape("id", DealFilters(city="Paris", min_stars=3))
    assert json_shape("id", DealFilters(price_min=Decimal(1), price_max=Decimal(2)))
    assert not json_shape("price", DealFilters(price_min=Decimal(1)))
    assert not json_shape("id", DealFilters(price_min=Decimal(1), is_available=True))
    assert not json_shape("price", DealFilters())
    assert not json_shape("id", DealFilters(min_stars=3))
    assert not json_shape("id", DealFilters(city="Paris", is_available=True))
    assert not json_shape("id", DealFilters(category="luxury"))
