"""Keyset pagination: every row exactly once, however sort keys tie; no forged cursors."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.paging import CursorError, Position, decode_cursor, encode_cursor, fingerprint
from tests.known import Known, ordered

Client = AsyncTestClient[Litestar]
SORTS = ["id", "price", "-price", "created_at", "-created_at"]

# Every test here only reads: they share one seeded (or empty) read-only database.
pytestmark = pytest.mark.read_only


async def walk(client: Client, limit: int, **params: Any) -> tuple[list[int], int]:
    """Every id of a cursor walk, and how many pages it took."""
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        response = await client.get("/deals", params={**params, "cursor": cursor, "limit": limit})
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        pages += 1
        seen += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            return seen, pages
        assert len(body["items"]) == limit
        cursor = body["next_cursor"]
        assert pages < 100, "the walk does not end"


@pytest.mark.parametrize("sort", SORTS)
async def test_walk_over_filtered_set_returns_each_row_once(
    client: Client, known: Known, sort: str
) -> None:
    # 20 available deals; prices take 6 values and created_at 5, so keys tie a lot.
    expected = ordered(known.select(is_available=True), sort)
    assert len(expected) == 20
    for limit in (1, 3, 4):
        seen, pages = await walk(client, limit, sort=sort, is_available="true")
        assert seen == expected, limit
        assert len(set(seen)) == len(seen)
        assert pages == -(-len(expected) // limit)  # no empty page at the end


@pytest.mark.parametrize("sort", SORTS)
async def test_walk_with_combined_filters(client: Client, known: Known, sort: str) -> None:
    expected = ordered(known.select(city="paris", category="family"), sort)
    seen, _ = await walk(client, 2, sort=sort, city="PARIS", category="family")
    assert seen == expected
    assert expected


async def test_walk_matches_offset_pages(client: Client, known: Known) -> None:
    seen, pages = await walk(client, 7, sort="-price")
    response = await client.get("/deals", params={"sort": "-price", "limit": 100})
    assert seen == [item["id"] for item in response.json()["items"]]
    assert pages == 5


async def test_empty_result_and_last_page(client: Client, known: Known) -> None:
    response = await client.get("/deals", params={"cursor": "", "city": "Nowhere"})
    assert response.json() == {"items": [], "next_cursor": None}
    response = await client.get("/deals", params={"cursor": "", "limit": 30})
    body = response.json()
    assert (len(body["items"]), body["next_cursor"]) == (30, None)


async def first_cursor(client: Client, **params: Any) -> str:
    response = await client.get("/deals", params={"cursor": "", "limit": 2, **params})
    cursor: str = response.json()["next_cursor"]
    assert cursor
    return cursor


def assert_cursor_422(response: Any, message: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == [{"field": "cursor", "source": "query", "message": message}]


async def test_tampered_cursor_422(client: Client, known: Known) -> None:
    cursor = await first_cursor(client, sort="price")
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    # Point the cursor somewhere else, keeping its format: the HMAC no longer matches.
    forged = bytes(raw).replace(b'"price"', b'"pricf"')
    raw[5] ^= 1
    for bad in (
        base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="),
        base64.urlsafe_b64encode(forged).decode().rstrip("="),
        cursor[:-2],
        cursor + "AA",
        "%%%%",
        "A" * 40,
    ):
        response = await client.get("/deals", params={"cursor": bad, "sort": "price"})
        assert_cursor_422(response, "the cursor is not valid")


async def test_cursor_of_another_sort_or_filters_422(client: Client, known: Known) -> None:
    cursor = await first_cursor(client, sort="price", city="paris")
    response = await client.get(
        "/deals", params={"cursor": cursor, "sort": "-price", "city": "paris"}
    )
    assert_cursor_422(response, "the cursor was made for sort=price, not sort=-price")
    response = await client.get("/deals", params={"cursor": cursor, "sort": "price"})
    assert_cursor_422(response, "the cursor was made for other filters")
    response = await client.get(
        "/deals", params={"cursor": cursor, "sort": "price", "city": "berlin"}
    )
    assert_cursor_422(response, "the cursor was made for other filters")
    # The same filters spelled differently are the same filters.
    response = await client.get(
        "/deals", params={"cursor": cursor, "sort": "price", "city": "PARIS"}
    )
    assert response.status_code == 200
    # The page size may change between pages.
    response = await client.get(
        "/deals", params={"cursor": cursor, "sort": "price", "city": "Paris", "limit": 5}
    )
    assert len(response.json()["items"]) == 5


def test_cursor_round_trip_and_fingerprint() -> None:
    digest = fingerprint("paris", None, None, None, None, True)
    position = Position(sort="price", key="100.00", last_id=7, filters=digest)
    token = encode_cursor(position)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(token, sort="price", filters=digest) == position
    with pytest.raises(CursorError):
        decode_cursor(token, sort="id", filters=digest)
    assert fingerprint(Decimal("100")) == fingerprint(Decimal("100.00"))
    assert fingerprint(Decimal("100")) != fingerprint(Decimal("100.01"))
