"""A typed function per query of sql/stats.sql, and which one answers a shape.

deal_totals (migration 0010) answers what filters only by hotel and
is_available, exactly and in step with every write; a price range or a
category needs the deals themselves (the live queries).
"""

from __future__ import annotations

from service.db.catalogue import Connection, Many, Record, Value
from service.db.deals import DealFilters, price_bounds, price_only
from service.db.rows import CityStats

DEAL_STATS_BY_CITY = Many("deal_stats_by_city")
DEAL_STATS_IN_PRICE_RANGE = Many("deal_stats_in_price_range")
DEAL_STATS_FROM_TOTALS = Many("deal_stats_from_totals")
COUNT_DEALS_FROM_TOTALS = Value("count_deals_from_totals")


def totals_answer(filters: DealFilters) -> bool:
    """Whether deal_totals can answer these filters (no price range, no category)."""
    return filters.price_min is None and filters.price_max is None and filters.category is None


async def deal_stats(
    conn: Connection, filters: DealFilters, *, live: bool = False
) -> list[CityStats]:
    """GET /deals/stats: from deal_totals where it can answer; else a price range
    alone by its own query (deal_stats_in_price_range), anything else by the live
    query (deal_stats_by_city). live=True asks deal_stats_by_city whatever the
    filters (the tests hold the answers equal). The answer is by city: filters.city
    is not one of its filters."""
    f = filters
    if not live and totals_answer(f):
        return city_stats(await DEAL_STATS_FROM_TOTALS(conn, f.min_stars, f.is_available))
    if not live and price_only(f):
        return city_stats(await DEAL_STATS_IN_PRICE_RANGE(conn, *price_bounds(f)))
    rows = await DEAL_STATS_BY_CITY(
        conn, f.min_stars, f.price_min, f.price_max, f.category, f.is_available
    )
    return city_stats(rows)


def city_stats(rows: list[Record]) -> list[CityStats]:
    return [
        CityStats(city=row["city"], avg_price=row["avg_price"], deal_count=row["deal_count"])
        for row in rows
    ]


async def count_deals_from_totals(conn: Connection, filters: DealFilters) -> int:
    """The deals matching filters that totals_answer accepts, from deal_totals."""
    f = filters
    count: int = await COUNT_DEALS_FROM_TOTALS(conn, f.city, f.min_stars, f.is_available)
    return count
