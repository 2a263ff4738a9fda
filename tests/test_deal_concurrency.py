"""Many clients writing one deal at once: optimistic locking loses no update."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import httpx

from service.settings import Settings
from tests.inloop import app_and_client
from tests.known import Known

CLIENTS = 12


async def test_same_version_patches_at_once_exactly_one_wins(
    database_url: str, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    deal = known.deals[4]
    settings = Settings(database_url=database_url, pool_min_size=CLIENTS, pool_max_size=CLIENTS)
    async with app_and_client(settings) as (_app, client):
        responses = await asyncio.gather(
            *(
                client.patch(f"/deals/{deal.id}", json={"room_type": f"Room {n}", "version": 1})
                for n in range(CLIENTS)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (CLIENTS - 1)
    winner = next(r for r in responses if r.status_code == 200).json()
    losers = [r.json()["error"] for r in responses if r.status_code == 409]
    assert all(e["code"] == "VERSION_CONFLICT" for e in losers)
    assert all(e["details"] == [{"current_version": 2}] for e in losers)
    stored = await conn.fetchrow("SELECT room_type, version FROM deals WHERE id = $1", deal.id)
    assert stored is not None
    assert (stored["room_type"], stored["version"]) == (winner["room_type"], 2)


async def add_one_cent(client: httpx.AsyncClient, deal_id: int) -> int:
    """Read, add 0.01 to the price, write with the version read; retry on 409."""
    for attempt in range(1, 200):
        current = (await client.get(f"/deals/{deal_id}")).json()
        price = Decimal(current["price_per_night"]) + Decimal("0.01")
        response = await client.patch(
            f"/deals/{deal_id}",
            json={"price_per_night": str(price), "version": current["version"]},
        )
        if response.status_code == 200:
            return attempt
        assert response.status_code == 409, response.text
    raise AssertionError("no progress")


async def assert_no_update_lost(
    settings: Settings, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """CLIENTS clients each add one cent to the same deal, retrying on 409: every cent counts."""
    deal = known.deals[2]
    start = await conn.fetchval("SELECT price_per_night FROM deals WHERE id = $1", deal.id)
    async with app_and_client(settings) as (_app, client):
        await asyncio.gather(*(add_one_cent(client, deal.id) for _ in range(CLIENTS)))
    row = await conn.fetchrow("SELECT price_per_night, version FROM deals WHERE id = $1", deal.id)
    assert row is not None
    assert row["price_per_night"] == start + Decimal("0.01") * CLIENTS
    assert row["version"] == 1 + CLIENTS


async def test_read_modify_write_with_retries_loses_no_update(
    database_url: str, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    settings = Settings(database_url=database_url, pool_min_size=4, pool_max_size=CLIENTS)
    await assert_no_update_lost(settings, known, conn)
