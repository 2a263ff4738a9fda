"""A typed function per query of sql/stats.sql (deal_stats runs deal_stats_by_city), and
which one answers a shape.

deal_totals (migration 0010) answers what filters only by hotel and
is_available, exactly and in step with every write; a price range or a
category needs the deals themselves (the live queries).
"""

from __future__ import annotations

from decimal import Decimal

from service.db.catalogue import Connection, Many, Record, Value
from service.db.rows import CityStats

DEAL_STATS_BY_CITY = Many("deal_stats_by_city")
DEAL_STATS_FROM_TOTALS = Many("deal_stats_from_totals")
COUNT_DEALS_FROM_TOTALS = Value("count_deals_from_totals")


def totals_answer(
    *, price_min: Decimal | None, price_max: Decimal | None, category: str | None
) -> bool:
    """Whether deal_totals can answer these filters (no price range, no category)."""
    return price_min is None and price_max is None and category is None


async def deal_stats(
    conn: Connection,
    *,
    min_stars: int | None,
    price_min: Decimal | None,
    price_max: Decimal | None,
    category: str | None,
    is_available: bool | None,
    live: bool = False,
) -> list[CityStats]:
    """GET /deals/stats: from deal_totals where it can answer, else the live query
    (deal_stats_by_city); live=True asks the deals themselves whatever the filters
    (the tests hold the two answers equal)."""
    if not live and totals_answer(price_min=price_min, price_max=price_max, category=category):
        return await deal_stats_from_totals(conn, min_stars=min_stars, is_available=is_available)
    rows = await DEAL_STATS_BY_CITY(conn, min_stars, price_min, price_max, category, is_available)
    return city_stats(rows)


def city_stats(rows: list[Record]) -> list[CityStats]:
    return [
        CityStats(city=row["city"], avg_price=row["avg_price"], deal_count=row["deal_count"])
        for row in rows
    ]


async def deal_stats_from_totals(
    conn: Connection, *, min_stars: int | None, is_available: bool | None
) -> list[CityStats]:
    rows = await DEAL_STATS_FROM_TOTALS(conn, min_stars, is_available)
    return city_stats(rows)


async def count_deals_from_totals(
    conn: Connection, *, city: str | None, min_stars: int | None, is_available: bool | None
) -> int:
    count: int = await COUNT_DEALS_FROM_TOTALS(conn, city, min_stars, is_available)
    return count
