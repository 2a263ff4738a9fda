"""The Structs that query rows become (frozen, keyword-only), and their converters.

The API answers with them as they are. Money and percentages are Decimals,
which msgspec encodes as JSON strings ("129.99"): exact, and documented as
strings in the OpenAPI schema. Dates are "YYYY-MM-DD", created_at ISO 8601
with its offset. Any query that selects the columns of get_deal
(sql/deals.sql) can build a Deal from its row.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import asyncpg
import msgspec

from service.types import Money, Percent, Stars


class Hotel(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    city: str
    country: str
    phone: str
    star_rating: Stars


class Deal(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    deal_id: Annotated[
        int | None, msgspec.Meta(description="The upstream id; null for deals created here.")
    ]
    hotel: Hotel
    room_type: str
    price_per_night: Money
    original_price: Money
    discount_percent: Percent
    checkin_date: date
    checkout_date: date
    is_available: bool
    categories: Annotated[list[str], msgspec.Meta(description="Category names, sorted.")]
    created_at: datetime
    version: Annotated[int, msgspec.Meta(description="Raised by every change (the ETag).")]


class Category(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str


class CityStats(msgspec.Struct, frozen=True, kw_only=True):
    city: str
    avg_price: Annotated[
        Decimal,
        msgspec.Meta(
            description=(
                "Average price per night, rounded half away from zero to 2 places "
                "(PostgreSQL round(numeric, 2)), as a JSON string."
            ),
            examples=["129.99"],
        ),
    ]
    deal_count: int


def hotel_from_row(row: asyncpg.Record) -> Hotel:
    return Hotel(
        id=row["id"],
        name=row["name"],
        city=row["city"],
        country=row["country"],
        phone=row["phone"],
        star_rating=row["star_rating"],
    )


def deal_from_row(row: asyncpg.Record) -> Deal:
    """A Deal from a row with get_deal's columns (hotel columns prefixed hotel_)."""
    return Deal(
        id=row["id"],
        deal_id=row["deal_id"],
        hotel=Hotel(
            id=row["hotel_id"],
            name=row["hotel_name"],
            city=row["hotel_city"],
            country=row["hotel_country"],
            phone=row["hotel_phone"],
            star_rating=row["hotel_star_rating"],
        ),
        room_type=row["room_type"],
        price_per_night=row["price_per_night"],
        original_price=row["original_price"],
        discount_percent=row["discount_percent"],
        checkin_date=row["checkin_date"],
        checkout_date=row["checkout_date"],
        is_available=row["is_available"],
        categories=row["categories"],
        created_at=row["created_at"],
        version=row["version"],
    )
