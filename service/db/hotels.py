"""One typed function per query of sql/hotels.sql."""

from __future__ import annotations

from service.db.catalogue import Connection, Many, One, Value
from service.db.rows import Hotel, hotel_from_row

GET_HOTEL = One("get_hotel")
LIST_HOTELS = Many("list_hotels")
COUNT_HOTELS = Value("count_hotels")
# With no city, queries with no filter to fold: one generic plan each (`-- plan:`).
LIST_ALL_HOTELS = Many("list_all_hotels")
COUNT_ALL_HOTELS = Value("count_all_hotels")
LIST_ALL_HOTELS_COUNTED = Many("list_all_hotels_counted")


async def get_hotel(conn: Connection, *, id: int) -> Hotel | None:
    row = await GET_HOTEL(conn, id)
    return None if row is None else hotel_from_row(row)


async def list_hotels(conn: Connection, *, city: str | None, limit: int, skip: int) -> list[Hotel]:
    if city is None:
        return [hotel_from_row(row) for row in await LIST_ALL_HOTELS(conn, limit, skip)]
    return [hotel_from_row(row) for row in await LIST_HOTELS(conn, city, limit, skip)]


async def list_hotels_counted(
    conn: Connection, *, city: str | None, limit: int, skip: int
) -> tuple[list[Hotel], int]:
    """A page and count_hotels' total; with no city one statement (list_all_hotels_counted)."""
    if city is not None:
        return await list_hotels(conn, city=city, limit=limit, skip=skip), await count_hotels(
            conn, city=city
        )
    rows = await LIST_ALL_HOTELS_COUNTED(conn, limit, skip)
    if rows:
        total: int = rows[0]["total"]
        return [hotel_from_row(row) for row in rows], total
    # an empty page carries no total: past the last hotel, or none at all
    return [], await count_hotels(conn, city=None) if skip or limit < 1 else 0


async def count_hotels(conn: Connection, *, city: str | None) -> int:
    count: int = await (COUNT_ALL_HOTELS(conn) if city is None else COUNT_HOTELS(conn, city))
    return count


async def estimate_hotels(conn: Connection, *, city: str | None) -> int:
    """The planner's estimate of count_hotels: EXPLAIN of list_hotels with no limit."""
    return await LIST_HOTELS.estimate(conn, city, None, 0)
