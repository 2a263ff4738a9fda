"""No N+1: a request sends the same statements whatever the page size, each under its name.

The app runs on the test's own event loop (tests/inloop.py), over the session's
shared read-only seeded database: asyncpg hands each statement to the query
logger with call_soon on the connection's loop, so the test must wait on that
loop, not on a portal thread's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from service.db.catalogue import Connection
from service.db.pool import Database
from tests.conftest import settings_for
from tests.inloop import app_and_client
from tests.known import Known

pytestmark = pytest.mark.read_only
Client = httpx.AsyncClient


@pytest.fixture(scope="module")
async def client(shared_seeded_url: str) -> AsyncIterator[Client]:
    """One in-loop app for the module. Its lifespan is entered and left in one task
    (anyio's cancel scopes demand it), which lives on the session's loop meanwhile."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[Client] = loop.create_future()
    done = asyncio.Event()

    async def serve() -> None:
        async with app_and_client(settings_for(shared_seeded_url)) as (_app, test_client):
            ready.set_result(test_client)
            await done.wait()

    task = loop.create_task(serve())
    either: list[asyncio.Future[Any]] = [task, ready]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the app failed to start: raise its error here
    yield ready.result()
    done.set()
    await task


Sent = list[tuple[asyncio.AbstractEventLoop, str]]


@pytest.fixture
async def statements(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """The SQL text of every statement the app sends, through asyncpg's query logger,
    with the loop each logger call ran on."""
    sent: Sent = []

    def log(record: asyncpg.connection.LoggedQuery) -> None:
        sent.append((asyncio.get_running_loop(), record.query))

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


async def logged(sent: Sent) -> list[str]:
    """Every statement logged so far. asyncpg schedules each logger call with call_soon
    on the connection's loop, which is this one, when the statement ends; a callback
    scheduled now runs after all of them (a loop runs its callbacks in order), so once
    it has run none is pending."""
    here = asyncio.get_running_loop()
    drained = here.create_future()
    here.call_soon(drained.set_result, None)
    await drained
    assert all(loop is here for loop, _ in sent), "the app's statements ran on another loop"
    return [query for _, query in sent]


async def names_sent(client: Client, sent: Sent, path: str) -> list[str]:
    await logged(sent)
    sent.clear()
    response = await client.get(path)
    assert response.status_code == 200, response.text
    # a session switched to another plan_cache_mode (service/db/catalogue.py) is no statement
    # of the answer: tests/test_sql_catalogue.py counts those
    texts = [text for text in await logged(sent) if not text.startswith("SET plan_cache_mode")]
    return [text.splitlines()[0] for text in texts]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/deals", ["list_all_deals_by_id_json :one"]),  # the page and its total, as JSON
        ("/deals?price_min=1", ["list_deals_in_price_range_by_id_json :one"]),
        ("/deals?city=paris&min_stars=3", ["list_deals_in_city_by_id_json :one"]),
        ("/deals?count=none", ["list_all_deals_by_id_json :one"]),
        (
            "/deals?count=estimated&sort=price",
            ["list_all_deals_by_price :many", "estimate_all_deals :val"],
        ),
        (
            "/deals?count=estimated&city=paris",
            ["list_deals_in_city_by_id :many", "list_deals_by_id"],
        ),
        ("/deals?count=estimated", ["list_all_deals_by_id :many", "estimate_all_deals :val"]),
        (
            "/deals?city=paris&min_stars=3&sort=-created_at",
            ["list_deals_by_created_at_desc :many", "count_deals_from_totals :val"],
        ),
        (
            "/deals?category=luxury",
            ["list_deals_in_category_by_id :many", "count_category_deals :val"],
        ),
        (
            "/deals?category=luxury&is_available=true",
            ["list_deals_by_id :many", "count_deals_in_category :val"],
        ),
        ("/deals?price_max=100", ["list_deals_in_price_range_by_id_json :one"]),
        (
            "/deals?price_max=100&count=estimated",
            ["list_deals_in_price_range_by_id :many", "list_deals_by_id"],
        ),
        ("/deals?category=luxury&cursor=&sort=-price", ["list_deals_by_price_desc :many"]),
        ("/deals?cursor=&sort=created_at", ["list_all_deals_by_created_at :many"]),
        ("/hotels", ["list_all_hotels_counted :many"]),
        ("/hotels?count=none", ["list_all_hotels :many"]),
        ("/hotels?city=paris", ["list_hotels :many", "count_hotels :val"]),
    ],
)
async def test_statements_do_not_grow_with_page_size(
    client: Client, known: Known, statements: Sent, path: str, expected: list[str]
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
        ("/deals/stats?min_stars=3", "-- name: deal_stats_from_totals :many"),
        ("/deals/stats?price_max=150", "-- name: deal_stats_in_price_range :many"),
        ("/hotels/{hotel}", "-- name: get_hotel :one"),
        ("/categories", "-- name: list_categories :many"),
    ],
)
async def test_one_statement_each(
    client: Client, known: Known, statements: Sent, path: str, expected: str
) -> None:
    path = path.format(id=known.deals[0].id, hotel=known.hotels[0]["id"])
    assert await names_sent(client, statements, path) == [expected]


async def test_each_deal_has_its_categories_from_one_statement(
    client: Client, known: Known, statements: Sent
) -> None:
    sent = await names_sent(client, statements, "/deals?limit=30&count=none")
    assert len(sent) == 1
    response = await client.get("/deals", params={"limit": 30, "count": "none"})
    assert [item["categories"] for item in response.json()["items"]] == [
        d.categories for d in known.deals
    ]
