"""No N+1: a request sends the same statements whatever the page size, each under its name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.db.catalogue import Connection
from service.db.pool import Database
from tests.known import Known

Client = AsyncTestClient[Litestar]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL text of every statement the app sends, through asyncpg's query logger."""
    sent: list[str] = []

    def log(record: asyncpg.connection.LoggedQuery) -> None:
        sent.append(record.query)

    original = Database.connection

    @asynccontextmanager
    async def connection(self: Database) -> AsyncIterator[Connection]:
        async with original(self) as conn:
            conn.add_query_logger(log)
            try:
                yield conn
            finally:
                conn.remove_query_logger(log)

    monkeypatch.setattr(Database, "connection", connection)
    return sent


async def names_sent(client: Client, sent: list[str], path: str) -> list[str]:
    sent.clear()
    response = await client.get(path)
    assert response.status_code == 200, response.text
    await asyncio.sleep(0)  # asyncpg calls query loggers with call_soon
    return [text.splitlines()[0] for text in sent]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/deals", ["list_deals_by_id :many", "count_deals :val"]),
        ("/deals?count=none", ["list_deals_by_id :many"]),
        ("/deals?count=estimated&sort=price", ["list_deals_by_price :many", "list_deals_by_id"]),
        (
            "/deals?city=paris&min_stars=3&sort=-created_at",
            ["list_deals_by_created_at_desc :many", "count_deals :val"],
        ),
        ("/deals?category=luxury", ["list_deals_by_id :many", "count_deals_in_category :val"]),
        ("/deals?category=luxury&cursor=&sort=-price", ["list_deals_by_price_desc :many"]),
        ("/deals?cursor=&sort=created_at", ["list_deals_by_created_at :many"]),
        ("/hotels", ["list_hotels :many", "count_hotels :val"]),
    ],
)
async def test_statements_do_not_grow_with_page_size(
    client: Client, known: Known, statements: list[str], path: str, expected: list[str]
) -> None:
    sep = "&" if "?" in path else "?"
    for limit in (1, 50):
        sent = await names_sent(client, statements, f"{path}{sep}limit={limit}")
        assert len(sent) == len(expected), sent
        for line, name in zip(sent, expected, strict=True):
            # The header travels with the SQL, so logs and pg_stat_statements name the query.
            assert f"-- name: {name}" in line, line


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/deals/{id}", "-- name: get_deal :one"),
        ("/deals/stats?category=luxury", "-- name: deal_stats_by_city :many"),
        ("/hotels/{hotel}", "-- name: get_hotel :one"),
        ("/categories", "-- name: list_categories :many"),
    ],
)
async def test_one_statement_each(
    client: Client, known: Known, statements: list[str], path: str, expected: str
) -> None:
    path = path.format(id=known.deals[0].id, hotel=known.hotels[0]["id"])
    assert await names_sent(client, statements, path) == [expected]


async def test_each_deal_has_its_categories_from_one_statement(
    client: Client, known: Known, statements: list[str]
) -> None:
    sent = await names_sent(client, statements, "/deals?limit=30&count=none")
    assert len(sent) == 1
    response = await client.get("/deals", params={"limit": 30, "count": "none"})
    assert [item["categories"] for item in response.json()["items"]] == [
        d.categories for d in known.deals
    ]
