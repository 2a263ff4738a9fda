"""One typed function per query of sql/stats.sql."""

from __future__ import annotations

from decimal import Decimal

from service.db.catalogue import Connection, Many
from service.db.rows import CityStats

DEAL_STATS_BY_CITY = Many("deal_stats_by_city")


async def deal_stats_by_city(
    conn: Connection,
    *,
    min_stars: int | None,
    price_min: Decimal | None,
    price_max: Decimal | None,
    category: str | None,
    is_available: bool | None,
) -> list[CityStats]:
    rows = await DEAL_STATS_BY_CITY(conn, min_stars, price_min, price_max, category, is_available)
    return [
        CityStats(city=row["city"], avg_price=row["avg_price"], deal_count=row["deal_count"])
        for row in rows
    ]
