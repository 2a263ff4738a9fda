"""POST /deals/import: a CSV body through the loader, as `deals load` loads a file."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.load import generator as generate
from service.load.steps import load_file
from tests import loadkit, pg
from tests.client import Client
from tests.conftest import settings_for
from tests.loadkit import csv_bytes, row, rows
from tests.serving import Server, serving

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
CSV = {"Content-Type": "text/csv"}
EMPTY = {"hotels": 0, "deals": 0, "categories": 0, "deal_categories": 0}


@pytest.fixture(scope="session")
def sample_50k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`deals generate --rows 50000 --seed 1`: 50,000 rows, 150 hotels."""
    path = tmp_path_factory.mktemp("import") / "deals-50k.csv"
    generate.generate(path, 50_000, 150, seed=1)
    return path


async def contents(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four tables and of the feed (but the time each event was written)."""
    tables = {t: f"SELECT * FROM {t} ORDER BY 1, 2" for t in loadkit.TABLES}
    tables["events"] = "SELECT id, type, deal, deal_id, version, data FROM events ORDER BY id"
    return {t: [tuple(r) for r in await conn.fetch(query)] for t, query in tables.items()}


async def test_the_50k_file_through_http_gives_the_database_deals_load_gives(
    admin_url: str, template_db: str, client: Client, conn: Conn, sample_50k: Path
) -> None:
    name, other_url = pg.clone(admin_url, template_db)
    try:
        loaded = await load_file(other_url, sample_50k)
        other = await asyncpg.connect(other_url)
        try:
            expected = await contents(other)
        finally:
            await other.close()
    finally:
        pg.drop(admin_url, name)

    body = await asyncio.to_thread(sample_50k.read_bytes)
    response = await client.post("/deals/import", content=body, headers=CSV)

    assert response.status_code == 200, response.text
    answer = response.json()
    summary = msgspec.structs.asdict(loaded)
    assert sorted(answer) == sorted([*summary, "rejected"])
    for key in ("file", "seconds", "rows_per_second"):
        del answer[key], summary[key]
    assert answer == {**summary, "rejected": []}
    assert answer["rows_loaded"] == answer["deals_new"] == 50_000
    assert len(expected["events"]) == 50_000
    assert await contents(conn) == expected


def bad_file() -> bytes:
    """Five rows; line 3 has two bad values, line 5 one."""
    records = rows(5)
    records[1] = row(2, price_per_night="12.345", checkin_date="03/01/2026")
    records[3] = row(4, hotel_star_rating="6")
    return csv_bytes(records)


async def test_strict_bad_rows_are_a_422_with_every_problem_and_nothing_written(
    client: Client, conn: Conn
) -> None:
    response = await client.post("/deals/import", content=bad_file(), headers=CSV)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_ROWS"
    assert error["message"] == "body: 2 of 5 rows are bad (3 problems); nothing was written"
    assert error["details"] == [
        {
            "line": 3,
            "column": "price_per_night",
            "value": "12.345",
            "reason": "has more than 2 decimal places",
        },
        {
            "line": 3,
            "column": "checkin_date",
            "value": "03/01/2026",
            "reason": "is not a date in YYYY-MM-DD form",
        },
        {"line": 5, "column": "hotel_star_rating", "value": "6", "reason": "must be from 1 to 5"},
    ]
    assert await loadkit.counts(conn) == EMPTY
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_skip_bad_rows_loads_the_good_ones_and_lists_the_bad(
    client: Client, conn: Conn
) -> None:
    response = await client.post(
        "/deals/import", params={"mode": "skip-bad-rows"}, content=bad_file(), headers=CSV
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rows_read"], body["rows_loaded"], body["rows_rejected"]) == (5, 3, 2)
    assert body["deals_new"] == 3
    assert body["rejected"] == [
        {
            "line": 3,
            "reason": "price_per_night has more than 2 decimal places; "
            "checkin_date is not a date in YYYY-MM-DD form",
        },
        {"line": 5, "reason": "hotel_star_rating must be from 1 to 5"},
    ]
    stored = await conn.fetch("SELECT deal_id FROM deals ORDER BY deal_id")
    assert [r["deal_id"] for r in stored] == [1, 3, 5]
    assert await conn.fetchval("SELECT count(*) FROM events") == 3


async def test_skipped_rows_listed_are_at_most_1000_and_counted_exactly(
    client: Client, conn: Conn
) -> None:
    records = [row(n, room_type="" if n % 2 else "Suite") for n in range(1, 2_501)]
    response = await client.post(
        "/deals/import", params={"mode": "skip-bad-rows"}, content=csv_bytes(records), headers=CSV
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rows_read"], body["rows_loaded"], body["rows_rejected"]) == (2_500, 1_250, 1_250)
    assert len(body["rejected"]) == 1_000
    assert body["rejected"][0] == {"line": 2, "reason": "room_type is empty"}
    assert body["rejected"][-1] == {"line": 2 * 999 + 2, "reason": "room_type is empty"}
    assert await conn.fetchval("SELECT count(*) FROM deals") == 1_250


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [("application/json", "application/json"), (None, "nothing"), ("text/plain", "text/plain")],
)
@pytest.mark.read_only
async def test_another_content_type_is_a_415(
    client: Client, conn: Conn, content_type: str | None, shown: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/deals/import", content=csv_bytes(rows(3)), headers=headers)

    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert (error["code"], error["message"], error["details"]) == (
        "UNSUPPORTED_MEDIA_TYPE",
        f"send the body as text/csv, not {shown}",
        [],
    )
    assert await loadkit.counts(conn) == EMPTY


@pytest.mark.read_only
async def test_an_unknown_mode_is_refused(client: Client, conn: Conn) -> None:
    response = await client.post(
        "/deals/import", params={"mode": "lenient"}, content=csv_bytes(rows(3)), headers=CSV
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]) == (
        "VALIDATION_ERROR",
        [{"field": "mode", "source": "query", "message": "Invalid enum value 'lenient'"}],
    )
    assert await loadkit.counts(conn) == EMPTY


@pytest.mark.read_only
async def test_a_malformed_body_is_a_422_malformed_file(client: Client, conn: Conn) -> None:
    response = await client.post("/deals/import", content=b"deal_id,price\n1,2\n", headers=CSV)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "MALFORMED_FILE"
    assert error["message"].startswith("body: header: missing columns hotel_name, ")
    assert await loadkit.counts(conn) == EMPTY


@pytest.fixture
async def small_client(database_url: str) -> AsyncIterator[Client]:
    """IMPORT_MAX_BYTES of 10,000 and a lock wait of half a second."""
    settings = msgspec.structs.replace(
        settings_for(database_url), import_max_bytes=10_000, import_lock_wait_seconds=0.5
    )
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.mark.read_only
async def test_a_content_length_over_import_max_bytes_is_a_413(
    small_client: Client, conn: Conn
) -> None:
    body = csv_bytes(rows(100))
    assert len(body) > 10_000
    response = await small_client.post("/deals/import", content=body, headers=CSV)

    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["message"] == (
        f"the body is {len(body):,} bytes; at most 10,000 (IMPORT_MAX_BYTES); nothing was written"
    )
    assert await loadkit.counts(conn) == EMPTY


async def test_a_load_holding_the_lock_past_the_wait_is_a_503(
    small_client: Client, conn: Conn, database_url: str
) -> None:
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(hashtext('deals.load'))")
            response = await small_client.post(
                "/deals/import", content=csv_bytes(rows(3)), headers=CSV
            )
    finally:
        await holder.close()

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["code"] == "LOAD_BUSY"
    assert error["message"] == (
        "another load has been running for the 0.5 s this one may wait; "
        "nothing was written: try again later"
    )
    assert await loadkit.counts(conn) == EMPTY


async def test_two_imports_at_once_both_load_one_after_the_other(
    client: Client, conn: Conn
) -> None:
    first, second = csv_bytes(rows(300, start=1)), csv_bytes(rows(300, start=301))

    answers = await asyncio.gather(
        client.post("/deals/import", content=first, headers=CSV),
        client.post("/deals/import", content=second, headers=CSV),
    )

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert [a.json()["deals_new"] for a in answers] == [300, 300]
    assert await conn.fetchval("SELECT count(*) FROM deals") == 600
    # serialized: each import's events form one unbroken run of ids, one run after the other
    runs = await conn.fetch(
        """SELECT min(id) AS low, max(id) AS high, count(*) AS n FROM events
           GROUP BY deal_id > 300 ORDER BY 1"""
    )
    assert [(r["high"] - r["low"] + 1, r["n"]) for r in runs] == [(300, 300), (300, 300)]
    assert runs[0]["high"] + 1 == runs[1]["low"]


# --- a real server: the body arrives over a socket, as a client sends it -------------


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Any:
    with serving(
        database_url, tmp_path / "server.log", IMPORT_MAX_BYTES="200000", ACCESS_LOG="false"
    ) as running:
        yield running


def raw_post(server: Server, head: dict[str, str], pieces: list[bytes]) -> bytes:
    """Send a POST /deals/import as raw bytes, piece by piece, and return the answer's
    bytes. An answer that comes before the body ends (a 413) stops the sending."""
    lines = ["POST /deals/import HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in head.items()]
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered early
                sock.sendall(piece)
            # the server closes after its answer (Connection: close)
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:  # reset by a server that closed with our bytes unread
            pass
    return answer


async def copy_running(conn: Conn) -> None:
    """Until the import's COPY is under way in the database."""
    for _ in range(300):
        if await conn.fetchval(
            "SELECT count(*) FROM pg_stat_progress_copy WHERE datname = current_database()"
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the import's COPY never started")


async def wait_for_no_load(conn: Conn) -> None:
    """Until no loader connection is left (the aborted one has rolled back and closed)."""
    for _ in range(300):
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deals-load'"
        )
        if left == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the aborted load's connection is still there")


async def test_an_upload_aborted_half_way_writes_nothing_and_the_server_goes_on(
    server: Server, conn: Conn
) -> None:
    body = csv_bytes(rows(1000))
    assert len(body) < 200_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = (
            f"POST /deals/import HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        await copy_running(conn)
    # the client is gone mid-COPY
    await wait_for_no_load(conn)
    assert await loadkit.counts(conn) == EMPTY
    assert await conn.fetchval("SELECT count(*) FROM events") == 0

    answer = await asyncio.to_thread(
        raw_post,
        server,
        {"Content-Type": "text/csv", "Content-Length": str(len(body)), "Connection": "close"},
        [body],
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert await conn.fetchval("SELECT count(*) FROM deals") == 1000
    assert "Traceback" not in server.output()


async def test_a_chunked_upload_over_import_max_bytes_is_a_413_over_the_wire(
    server: Server, conn: Conn
) -> None:
    body = csv_bytes(rows(3000))
    assert len(body) > 200_000
    pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    chunked = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]

    answer = await asyncio.to_thread(
        raw_post,
        server,
        {"Content-Type": "text/csv", "Transfer-Encoding": "chunked", "Connection": "close"},
        chunked,
    )

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b'"code":"PAYLOAD_TOO_LARGE"' in answer
    await wait_for_no_load(conn)
    assert await loadkit.counts(conn) == EMPTY
