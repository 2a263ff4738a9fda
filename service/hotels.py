"""GET /hotels and GET /hotels/{id}, with one typed function per query of sql/hotels.sql."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State

from service.db import Connection, Database
from service.errors import NotFound, error_responses
from service.models import Hotel, HotelPage, hotel_from_row
from service.paging import estimate_rows
from service.params import DEFAULT_LIMIT, City, Count, HotelId, Limit, Skip
from service.sqlcat import q

GET_HOTEL = q("get_hotel")
LIST_HOTELS = q("list_hotels")
COUNT_HOTELS = q("count_hotels")


async def get_hotel(conn: Connection, *, hotel_id: int) -> Hotel | None:
    row = await conn.fetchrow(GET_HOTEL.sql, hotel_id)
    return None if row is None else hotel_from_row(row)


async def list_hotels(conn: Connection, *, city: str | None, limit: int, skip: int) -> list[Hotel]:
    rows = await conn.fetch(LIST_HOTELS.sql, city, limit, skip)
    return [hotel_from_row(row) for row in rows]


async def count_hotels(conn: Connection, *, city: str | None) -> int:
    count: int = await conn.fetchval(COUNT_HOTELS.sql, city)
    return count


async def estimate_hotels(conn: Connection, *, city: str | None) -> int:
    """The planner's estimate of count_hotels: EXPLAIN of list_hotels with no limit."""
    return await estimate_rows(conn, LIST_HOTELS, city, None, 0)


class HotelsController(Controller):
    path = "/hotels"
    tags = ["hotels"]  # noqa: RUF012

    @get("/", summary="List hotels", responses=error_responses(422, 503, 504))
    async def list_hotels(
        self,
        state: State,
        city: City = None,
        skip: Skip = 0,
        limit: Limit = DEFAULT_LIMIT,
        count: Count = "exact",
    ) -> HotelPage:
        """Hotels by id, optionally in one city, so that clients can find a hotel_id."""
        db: Database = state.db
        async with db.connection() as conn:
            items = await list_hotels(conn, city=city, limit=limit, skip=skip)
            total: int | None = None
            if count == "exact":
                total = await count_hotels(conn, city=city)
            elif count == "estimated":
                total = await estimate_hotels(conn, city=city)
        return HotelPage(items=items, total=total, skip=skip, limit=limit)

    @get("/{hotel_id:int}", summary="One hotel", responses=error_responses(404, 422, 503, 504))
    async def hotel_by_id(self, state: State, hotel_id: HotelId) -> Hotel:
        """One hotel; 404 when there is none."""
        db: Database = state.db
        async with db.connection() as conn:
            hotel = await get_hotel(conn, hotel_id=hotel_id)
        if hotel is None:
            raise NotFound(f"hotel {hotel_id} does not exist")
        return hotel
