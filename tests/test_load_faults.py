"""Loads under faults: the database restarted mid-load, and the API writing the same deals."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from service import migrate
from service.embedded import EmbeddedPostgres
from service.load import generator as generate
from service.load.steps import LoadSummary, load_file
from service.settings import Settings
from tests import ROOT, loadkit
from tests.inloop import app_and_client
from tests.loadkit import row, write


async def test_database_restarted_during_a_load_leaves_it_as_it_was(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    try:
        migrate.apply(url)
        await load_file(url, write(tmp_path / "first.csv", loadkit.rows(5)))
        # The lock below holds the load at its first write to deals however small the
        # file is: a few thousand rows are enough to have staged, checked and hotels written.
        big = tmp_path / "big.csv"
        generate.generate(big, 5_000, 150, seed=3)
        conn = await asyncpg.connect(url)
        before = await loadkit.snapshot(conn)
        # Hold the load mid-transaction, deterministically: a SHARE lock on deals lets it
        # COPY, check and write hotels, then makes its first write to deals wait.
        # (from a connection of its own: pg_stat_activity keeps one snapshot per transaction)
        locker = await asyncpg.connect(url)
        await locker.execute("BEGIN; LOCK TABLE deals IN SHARE MODE")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "load", str(big),
            cwd=ROOT, env={**os.environ, "DATABASE_URL": url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deals-load' "
            "AND wait_event_type = 'Lock'"
        ):
            assert process.returncode is None, "the load ended before the restart"
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await conn.close()
        server.stop()  # fast shutdown: the load's backend is terminated mid-work
        locker.terminate()
        server.start()
        _out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 3, err.decode()
        message = err.decode().lower()
        assert "database" in message
        assert "traceback" not in message
        conn = await asyncpg.connect(url)
        assert await loadkit.snapshot(conn) == before
        await conn.close()
    finally:
        server.stop()


DEALS = 400
PATCHED = range(1, 41)


async def patch_until_done(client: httpx.AsyncClient, deal_db_id: int, room: str) -> int:
    """Read the ETag, PATCH with If-Match, retry when a load got in between; the new version."""
    for _ in range(100):
        current = await client.get(f"/deals/{deal_db_id}")
        response = await client.patch(
            f"/deals/{deal_db_id}",
            json={"room_type": room},
            headers={"If-Match": current.headers["etag"]},
        )
        if response.status_code == 200:
            version: int = response.json()["version"]
            return version
        assert response.status_code == 412, response.text
        await asyncio.sleep(0.001)
    raise AssertionError("the PATCH never got through")


async def test_a_load_and_api_writes_on_the_same_deals_lose_nothing(
    database_url: str, conn: asyncpg.Connection[asyncpg.Record], tmp_path: Path
) -> None:
    await load_file(database_url, write(tmp_path / "v1.csv", loadkit.rows(DEALS)))
    ids = {r["deal_id"]: r["id"] for r in await conn.fetch("SELECT id, deal_id FROM deals")}
    changed = write(
        tmp_path / "v2.csv", [row(n, price_per_night="130.00") for n in range(1, DEALS + 1)]
    )
    # 40 writers on 8 connections queue behind the load's row locks: on a busy machine
    # longer than the default 2 s acquire timeout, whose 503 is not what this test is about.
    settings = Settings(
        database_url=database_url, pool_min_size=4, pool_max_size=8, pool_acquire_timeout=120
    )
    async with app_and_client(settings) as (_app, client):
        results = await asyncio.gather(
            load_file(database_url, changed),
            *(patch_until_done(client, ids[n], f"API room {n}") for n in PATCHED),
        )
    summary, api_versions = results[0], results[1:]
    assert isinstance(summary, LoadSummary)
    assert summary.deals_updated == DEALS
    for n, api_version in zip(PATCHED, api_versions, strict=True):
        stored = await loadkit.deal(conn, n)
        assert str(stored["price_per_night"]) == "130.00"  # the load's change is never lost
        assert stored["version"] == 3  # 1, then one change by each writer
        if stored["room_type"] == f"API room {n}":
            assert api_version == 3, n  # the API wrote last
        else:
            assert stored["room_type"] == "Deluxe", n  # the load wrote last, from the file
            assert api_version == 2, n
    untouched = await conn.fetch("SELECT version FROM deals WHERE deal_id > $1", max(PATCHED))
    assert {r["version"] for r in untouched} == {2}
