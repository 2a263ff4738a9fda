"""Known rows for the read tests, inserted with plain SQL, and the answers expected of them.

Five hotels (the Lisbon one has no deals), five categories and 30 deals
whose prices and created_at values tie often, so that sorts and cursors
must break ties by id. The expectations are computed here in Python, next
to the data, independently of the service's SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg

HOTELS = [
    # name, city, country, phone, star_rating
    ("Grand Hotel", "Paris", "France", "+33-1-0001", 5),
    ("Le Petit", "Paris", "France", "+33-1-0002", 3),
    ("Mitte Inn", "Berlin", "Germany", "+49-30-0001", 4),
    ("Roma Centro", "Rome", "Italy", "+39-06-0001", 2),
    ("Empty Lodge", "Lisbon", "Portugal", "+351-21-0001", 1),
]
CATEGORIES = ["budget", "business", "family", "luxury", "romantic"]
PRICES = [Decimal(p) for p in ("100.00", "150.50", "99.99", "100.00", "250.00", "75.25", "100.00")]
CATEGORY_SETS = [
    [],
    ["luxury"],
    ["budget", "family"],
    ["business", "luxury", "romantic"],
    ["family"],
]
ROOM_TYPES = ["Standard", "Deluxe", "Suite"]
BASE_TIME = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
DEALS = 30


@dataclass
class KnownDeal:
    id: int
    deal_id: int | None
    hotel: dict[str, Any]
    room_type: str
    price_per_night: Decimal
    original_price: Decimal
    discount_percent: Decimal
    checkin_date: date
    checkout_date: date
    is_available: bool
    categories: list[str]
    created_at: datetime

    def json(self) -> dict[str, Any]:
        """The deal as the API encodes it."""
        return {
            "id": self.id,
            "deal_id": self.deal_id,
            "hotel": self.hotel,
            "room_type": self.room_type,
            "price_per_night": str(self.price_per_night),
            "original_price": str(self.original_price),
            "discount_percent": str(self.discount_percent),
            "checkin_date": self.checkin_date.isoformat(),
            "checkout_date": self.checkout_date.isoformat(),
            "is_available": self.is_available,
            "categories": self.categories,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "version": 1,
        }


@dataclass
class Known:
    hotels: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    deals: list[KnownDeal] = field(default_factory=list)

    def select(
        self,
        *,
        city: str | None = None,
        min_stars: int | None = None,
        price_min: Decimal | None = None,
        price_max: Decimal | None = None,
        category: str | None = None,
        is_available: bool | None = None,
    ) -> list[KnownDeal]:
        """The deals matching every filter given, by id."""
        return [
            d
            for d in self.deals
            if (city is None or d.hotel["city"].lower() == city.lower())
            and (min_stars is None or d.hotel["star_rating"] >= min_stars)
            and (price_min is None or d.price_per_night >= price_min)
            and (price_max is None or d.price_per_night <= price_max)
            and (category is None or category.lower() in d.categories)
            and (is_available is None or d.is_available == is_available)
        ]


def ordered(deals: list[KnownDeal], sort: str) -> list[int]:
    """The ids in the order of a sort, the id breaking ties in the same direction."""
    keys = {
        "id": lambda d: (d.id,),
        "price": lambda d: (d.price_per_night, d.id),
        "-price": lambda d: (d.price_per_night, d.id),
        "created_at": lambda d: (d.created_at, d.id),
        "-created_at": lambda d: (d.created_at, d.id),
    }
    return [d.id for d in sorted(deals, key=keys[sort], reverse=sort.startswith("-"))]


def city_stats(deals: list[KnownDeal]) -> list[dict[str, Any]]:
    """GET /deals/stats computed by hand: round half up, as PostgreSQL's round(numeric, 2)."""
    by_city: dict[str, list[Decimal]] = {}
    for deal in deals:
        by_city.setdefault(deal.hotel["city"], []).append(deal.price_per_night)
    rows = [
        {
            "city": city,
            "avg_price": str(
                (sum(prices, Decimal(0)) / len(prices)).quantize(
                    Decimal("0.01"), rounding=ROUND_HALF_UP
                )
            ),
            "deal_count": len(prices),
        }
        for city, prices in by_city.items()
    ]
    return sorted(rows, key=lambda row: (-row["deal_count"], row["city"]))


async def seed(conn: asyncpg.Connection[asyncpg.Record]) -> Known:
    known = Known()
    for name, city, country, phone, stars in HOTELS:
        hotel_id = await conn.fetchval(
            "INSERT INTO hotels (name, city, country, phone, star_rating) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            name,
            city,
            country,
            phone,
            stars,
        )
        known.hotels.append(
            {
                "id": hotel_id,
                "name": name,
                "city": city,
                "country": country,
                "phone": phone,
                "star_rating": stars,
            }
        )
    for name in CATEGORIES:
        known.categories[name] = await conn.fetchval(
            "INSERT INTO categories (name) VALUES ($1) RETURNING id", name
        )
    for i in range(DEALS):
        hotel = known.hotels[i % 4]
        price = PRICES[i % len(PRICES)]
        checkin = date(2025, 6, 1) + timedelta(days=i)
        deal = KnownDeal(
            id=0,
            deal_id=None if i == DEALS - 1 else 1000 + i,
            hotel=hotel,
            room_type=ROOM_TYPES[i % 3],
            price_per_night=price,
            original_price=price + Decimal("50.00"),
            discount_percent=Decimal("16.67"),
            checkin_date=checkin,
            checkout_date=checkin + timedelta(days=2),
            is_available=i % 3 != 0,
            categories=CATEGORY_SETS[i % len(CATEGORY_SETS)],
            created_at=BASE_TIME + timedelta(hours=i % 5),
        )
        deal.id = await conn.fetchval(
            "INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, original_price, "
            "discount_percent, checkin_date, checkout_date, is_available, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            deal.deal_id,
            hotel["id"],
            deal.room_type,
            deal.price_per_night,
            deal.original_price,
            deal.discount_percent,
            deal.checkin_date,
            deal.checkout_date,
            deal.is_available,
            deal.created_at,
        )
        for name in deal.categories:
            await conn.execute(
                "INSERT INTO deal_categories (deal_id, category_id) VALUES ($1, $2)",
                deal.id,
                known.categories[name],
            )
        known.deals.append(deal)
    await conn.execute("ANALYZE hotels, deals, categories, deal_categories")
    return known
