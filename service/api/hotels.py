"""GET /hotels and GET /hotels/{id}, so that clients can find a hotel_id."""

from __future__ import annotations

from litestar import Controller
from litestar.datastructures import State

from service.api.errors import NotFound, read
from service.api.params import DEFAULT_LIMIT, City, Count, HotelId, Limit, Skip
from service.api.responses import HotelPage
from service.db.hotels import estimate_hotels, get_hotel, list_hotels, list_hotels_counted
from service.db.pool import Database
from service.db.rows import Hotel


class HotelsController(Controller):
    path = "/hotels"
    tags = ["hotels"]  # noqa: RUF012

    @read("/", "List hotels", "listHotels", 422, 503, 504)
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
            total: int | None = None
            if count == "exact":
                items, total = await list_hotels_counted(conn, city=city, limit=limit, skip=skip)
            else:
                items = await list_hotels(conn, city=city, limit=limit, skip=skip)
                if count == "estimated":
                    total = await estimate_hotels(conn, city=city)
        return HotelPage(items=items, total=total, skip=skip, limit=limit)

    @read("/{id:int}", "One hotel", "getHotel", 404, 422, 503, 504)
    async def hotel_by_id(self, state: State, id: HotelId) -> Hotel:
        """One hotel; 404 when there is none."""
        db: Database = state.db
        async with db.connection() as conn:
            hotel = await get_hotel(conn, id=id)
        if hotel is None:
            raise NotFound(f"hotel {id} does not exist")
        return hotel
