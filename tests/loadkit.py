"""Helpers for the loader tests: valid rows, CSV files, table snapshots, the CLI."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from service.load.source import COLUMNS
from tests import ROOT

TABLES = ("hotels", "deals", "categories", "deal_categories")


def row(n: int, **overrides: str | None) -> dict[str, str | None]:
    """A valid row: deal n at one of three hotels (by n % 3); overrides replace values."""
    hotel = n % 3
    values: dict[str, str | None] = {
        "deal_id": str(n),
        "hotel_name": f"Hotel {hotel}",
        "hotel_city": "Paris",
        "hotel_country": "France",
        "hotel_phone": f"+33 1 00 00 0{hotel}",
        "hotel_star_rating": "4",
        "room_type": "Deluxe",
        "price_per_night": "120.50",
        "original_price": "150.00",
        "discount_percent": "19.67",
        "checkin_date": "2026-03-01",
        "checkout_date": "2026-03-04",
        "is_available": "true",
        "categories": "luxury,romantic",
        "created_at": "2026-01-15T10:00:00+01:00",
    }
    values.update(overrides)
    return values


def rows(count: int, start: int = 1) -> list[dict[str, str | None]]:
    return [row(n) for n in range(start, start + count)]


def csv_bytes(
    records: Iterable[dict[str, str | None]],
    columns: Sequence[str] = COLUMNS,
    *,
    bom: bool = False,
    newline: str = "\n",
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(columns)
    for record in records:
        writer.writerow(["" if record.get(c) is None else record[c] for c in columns])
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def write(path: Path, records: Iterable[dict[str, str | None]], **options: Any) -> Path:
    path.write_bytes(csv_bytes(records, **options))
    return path


async def counts(conn: asyncpg.Connection[asyncpg.Record]) -> dict[str, int]:
    return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def snapshot(conn: asyncpg.Connection[asyncpg.Record]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four tables, with xmin: equal snapshots mean nothing was rewritten."""
    return {
        t: [tuple(r) for r in await conn.fetch(f"SELECT xmin::text, * FROM {t} ORDER BY 2, 3")]
        for t in TABLES
    }


async def deal(conn: asyncpg.Connection[asyncpg.Record], deal_id: int) -> asyncpg.Record:
    record = await conn.fetchrow(
        """
        SELECT d.*, h.phone, h.name AS hotel_name, h.star_rating,
               ARRAY(SELECT c.name FROM deal_categories dc
                     JOIN categories c ON c.id = dc.category_id
                     WHERE dc.deal_id = d.id ORDER BY c.name) AS categories
        FROM deals d JOIN hotels h ON h.id = d.hotel_id
        WHERE d.deal_id = $1
        """,
        deal_id,
    )
    assert record is not None, deal_id
    return record


def cli(*args: str, database_url: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`deals ...` as a separate process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
