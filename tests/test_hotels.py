"""GET /hotels, GET /hotels/{id} and GET /categories against known rows."""

from __future__ import annotations

import pytest

from tests.client import Client, error_body, get_ok
from tests.known import CATEGORIES, Known

# Every test here only reads: they share one seeded (or empty) read-only database.
pytestmark = pytest.mark.read_only


async def test_hotels_page(client: Client, known: Known) -> None:
    body = await get_ok(client, "/hotels")
    assert body == {"items": known.hotels, "total": 5, "skip": 0, "limit": 20}


@pytest.mark.parametrize(
    ("city", "count"), [("paris", 2), ("PARIS", 2), ("Lisbon", 1), ("Nice", 0)]
)
async def test_hotels_by_city(client: Client, known: Known, city: str, count: int) -> None:
    body = await get_ok(client, "/hotels", city=city)
    assert body["items"] == [h for h in known.hotels if h["city"].lower() == city.lower()]
    assert body["total"] == count


async def test_hotels_pagination_and_count_modes(client: Client, known: Known) -> None:
    body = await get_ok(client, "/hotels", skip=3, limit=1)
    assert (body["items"], body["total"]) == ([known.hotels[3]], 5)
    body = await get_ok(client, "/hotels", skip=5)
    assert (body["items"], body["total"]) == ([], 5)
    assert (await get_ok(client, "/hotels", count="none"))["total"] is None
    assert (await get_ok(client, "/hotels", count="estimated"))["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [({"skip": "-1"}, "skip"), ({"limit": "101"}, "limit"), ({"count": "all"}, "count")],
)
async def test_hotels_422(client: Client, params: dict[str, str], field: str) -> None:
    response = await client.get("/hotels", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field


async def test_one_hotel_and_404(client: Client, known: Known) -> None:
    hotel = known.hotels[2]
    assert await get_ok(client, f"/hotels/{hotel['id']}") == hotel
    response = await client.get("/hotels/424242", headers={"X-Request-ID": "h-1"})
    assert response.status_code == 404
    assert response.json() == error_body("NOT_FOUND", "hotel 424242 does not exist", "h-1")


async def test_categories(client: Client, known: Known) -> None:
    body = await get_ok(client, "/categories")
    assert body == [{"id": known.categories[name], "name": name} for name in sorted(CATEGORIES)]


async def test_categories_empty(client: Client) -> None:
    assert await get_ok(client, "/categories") == []
