"""`deals load` on good files: counts, upsert semantics, one transaction, locks, statistics."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import TypeAlias

import asyncpg
import psycopg
import pytest

from service.doctor import checks
from service.doctor.report import Thresholds
from service.load import generator as generate
from service.load.report import Progress
from service.load.source import COLUMNS
from service.load.steps import load_file
from tests import loadkit
from tests.loadkit import row, rows, write

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"


@pytest.fixture(scope="session")
def sample_50k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's reference file: 50,000 rows, 150 hotels; generated once per session."""
    path = tmp_path_factory.mktemp("sample") / "deals-50k.csv"
    generate.generate(path, 50_000, 150, seed=1)
    return path


def expected(path: Path) -> tuple[int, Counter[str], dict[str, tuple[str, str, str, int]], int]:
    """From the file itself: links, links per category, the hotel each phone should get,
    and the phones whose rows disagree."""
    links: Counter[str] = Counter()
    latest: dict[str, tuple[dt.datetime, int, tuple[str, str, str, int]]] = {}
    seen: dict[str, set[tuple[str, str, str, int]]] = {}
    with path.open(newline="") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            links.update({c.strip().lower() for c in r["categories"].split(",") if c.strip()})
            at = dt.datetime.fromisoformat(r["created_at"])
            at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
            values = (r["hotel_name"], r["hotel_city"], r["hotel_country"])
            hotel = (*values, int(r["hotel_star_rating"]))
            seen.setdefault(r["hotel_phone"], set()).add(hotel)
            if r["hotel_phone"] not in latest or (at, line) > latest[r["hotel_phone"]][:2]:
                latest[r["hotel_phone"]] = (at, line, hotel)
    disagreeing = sum(len(v) > 1 for v in seen.values())
    return sum(links.values()), links, {p: v[2] for p, v in latest.items()}, disagreeing


async def test_generated_file_loads_exactly(
    database_url: str, conn: Conn, sample_50k: Path
) -> None:
    total_links, per_category, hotels, disagreeing = expected(sample_50k)
    summary = await load_file(database_url, sample_50k)

    assert (summary.rows_read, summary.rows_loaded, summary.rows_rejected) == (50_000, 50_000, 0)
    assert (summary.hotels_new, summary.hotels_updated) == (150, 0)
    assert summary.hotels_disagreeing == disagreeing > 0
    assert (summary.deals_new, summary.deals_updated, summary.deals_unchanged) == (50_000, 0, 0)
    assert summary.categories_new == 5
    assert summary.category_links_added == total_links
    assert summary.category_links_removed == 0
    assert await loadkit.counts(conn) == {
        "hotels": 150,
        "deals": 50_000,
        "categories": 5,
        "deal_categories": total_links,
    }
    stored = await conn.fetch(
        """SELECT c.name, count(*) FROM deal_categories dc
           JOIN categories c ON c.id = dc.category_id GROUP BY c.name"""
    )
    assert {r["name"]: r["count"] for r in stored} == per_category
    # every hotel holds the values of its latest row
    stored_hotels = await conn.fetch("SELECT phone, name, city, country, star_rating FROM hotels")
    assert {r["phone"]: tuple(r)[1:] for r in stored_hotels} == hotels
    assert await conn.fetchval("SELECT count(*) FROM deals WHERE version <> 1") == 0


async def test_reload_changes_nothing_and_rewrites_nothing(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    path = write(tmp_path / "r.csv", rows(60))
    await load_file(database_url, path)
    before = await loadkit.snapshot(conn)
    again = await load_file(database_url, path)
    after = await loadkit.snapshot(conn)
    assert after == before  # same rows, same xmin: not one row was rewritten
    assert (again.deals_new, again.deals_updated, again.deals_unchanged) == (0, 0, 60)
    assert (again.hotels_new, again.hotels_updated, again.categories_new) == (0, 0, 0)
    assert (again.category_links_added, again.category_links_removed) == (0, 0)


async def test_changed_reload_updates_and_raises_versions(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    first = rows(10)
    await load_file(database_url, write(tmp_path / "a.csv", first))
    second = rows(10)
    second[0] = row(1, price_per_night="99.00")  # a value changes
    second[1] = row(2, categories="Family, luxury")  # the category set changes
    second[2] = row(3, categories="romantic,luxury")  # same set, other order and case: no change
    second[9] = row(10, hotel_star_rating="5")  # its hotel's latest row (a tie: the last line wins)
    second.append(row(11))  # a new deal
    summary = await load_file(database_url, write(tmp_path / "b.csv", second))

    assert (summary.deals_new, summary.deals_updated, summary.deals_unchanged) == (1, 2, 8)
    assert (summary.hotels_new, summary.hotels_updated) == (0, 1)
    assert summary.categories_new == 1
    assert (summary.category_links_added, summary.category_links_removed) == (3, 1)
    d1, d2, d3, d4 = [await loadkit.deal(conn, n) for n in (1, 2, 3, 10)]
    assert (d1["price_per_night"], d1["version"]) == (Decimal("99.00"), 2)
    assert (d2["categories"], d2["version"]) == (["family", "luxury"], 2)
    assert (d3["categories"], d3["version"]) == (["luxury", "romantic"], 1)
    assert (d4["star_rating"], d4["version"]) == (5, 1)  # the hotel changed, not the deal
    assert await conn.fetchval("SELECT count(*) FROM deals WHERE version > 1") == 2


async def test_header_by_name_with_bom_crlf_and_quoting(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    columns = list(reversed(COLUMNS))
    name = 'The "Grand", by the sea\nEast Wing'
    records = [row(1, hotel_name=name), row(2), row(3)]
    path = write(tmp_path / "d.csv", records, columns=columns, bom=True, newline="\r\n")
    summary = await load_file(database_url, path)
    assert (summary.rows_read, summary.rows_loaded) == (3, 3)
    assert (await loadkit.deal(conn, 1))["hotel_name"] == name


async def test_values_are_typed_trimmed_and_normalized(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    records = [
        row(1, created_at="2026-01-15T10:00:00", is_available="YES", categories=""),
        row(2, created_at="2026-01-15 10:00:00.5-05:00", is_available=" f "),
        row(3, categories=" Luxury , ,romantic,LUXURY,", hotel_name="  Hotel 0  "),
        row(4, discount_percent="33.333", price_per_night=" 1e2 ", categories=None),
    ]
    await load_file(database_url, write(tmp_path / "v.csv", records))
    d1, d2, d3, d4 = [await loadkit.deal(conn, n) for n in (1, 2, 3, 4)]
    assert d1["created_at"] == dt.datetime(2026, 1, 15, 10, tzinfo=dt.UTC)  # no offset: UTC
    assert d2["created_at"] == dt.datetime(2026, 1, 15, 15, 0, 0, 500000, tzinfo=dt.UTC)
    assert (d1["is_available"], d2["is_available"]) == (True, False)
    assert (d1["categories"], d3["categories"], d4["categories"]) == (
        [],
        ["luxury", "romantic"],
        [],
    )
    assert d3["hotel_name"] == "Hotel 0"
    assert (d4["discount_percent"], d4["price_per_night"]) == (Decimal("33.33"), Decimal("100.00"))


async def test_latest_created_at_wins_and_the_later_line_breaks_a_tie(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    phone = {"hotel_phone": "+1 555 0100"}
    records = [
        row(1, **phone, hotel_name="Old Name", created_at="2026-01-01T12:00:00+00:00"),
        row(2, **phone, hotel_name="New Name", created_at="2026-01-01T13:30:00+02:00"),  # 11:30Z
        row(3, **phone, hotel_name="Newest", hotel_star_rating="2", created_at="2026-01-02"),
        row(4, **phone, hotel_name="Newest", hotel_star_rating="3", created_at="2026-01-02"),
    ]
    summary = await load_file(database_url, write(tmp_path / "h.csv", records))
    assert summary.hotels_disagreeing == 1
    hotel = await conn.fetchrow(
        "SELECT name, star_rating FROM hotels WHERE phone = $1", phone["hotel_phone"]
    )
    assert tuple(hotel or ()) == ("Newest", 3)


async def test_if_empty_loads_once(database_url: str, conn: Conn, tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", rows(5))
    first = await load_file(database_url, path, if_empty=True)
    second = await load_file(
        database_url, write(tmp_path / "f.csv", rows(5, start=100)), if_empty=True
    )
    assert (first.skipped, first.deals_new) == (False, 5)
    assert (second.skipped, second.rows_read) == (True, 0)
    assert (await loadkit.counts(conn))["deals"] == 5


async def test_tables_are_analyzed(database_url: str, conn: Conn, tmp_path: Path) -> None:
    await load_file(database_url, write(tmp_path / "s.csv", rows(30)))
    reltuples = await conn.fetch(
        "SELECT relname, reltuples FROM pg_class WHERE relname = ANY($1::text[])",
        list(loadkit.TABLES),
    )
    assert {r["relname"]: r["reltuples"] for r in reltuples} == {
        "hotels": 3,
        "deals": 30,
        "categories": 2,
        "deal_categories": 60,
    }


async def test_the_tables_are_left_ready_for_index_only_scans(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    """VACUUM (ANALYZE) after the commit: every page all-visible, and the doctor's bloat
    check clean right after a load."""
    path = tmp_path / "g.csv"
    generate.generate(path, count=5_000, seed=5)
    await load_file(database_url, path)
    pages = await conn.fetch(
        "SELECT relname, relpages, relallvisible FROM pg_class WHERE relname = ANY($1::text[])",
        list(loadkit.TABLES),
    )
    assert {r["relname"]: r["relallvisible"] for r in pages} == {
        r["relname"]: r["relpages"] for r in pages
    }
    vacuumed = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_user_tables "
        "WHERE relname = ANY($1::text[]) AND last_vacuum IS NOT NULL",
        list(loadkit.TABLES),
    )
    assert vacuumed == 4
    found = await checks.bloat(conn, Thresholds())
    assert found.status == "ok", found.evidence


async def test_a_given_connection_is_used_and_left_open(conn: Conn, tmp_path: Path) -> None:
    summary = await load_file(conn, write(tmp_path / "c.csv", rows(4)))
    assert summary.deals_new == 4
    assert await conn.fetchval("SELECT count(*) FROM deals") == 4
    # again on the same connection: its TEMP work tables were dropped at commit
    again = await load_file(conn, write(tmp_path / "d.csv", rows(6)))
    assert (again.deals_new, again.deals_unchanged) == (2, 4)


class FailAt(Progress):
    def __init__(self, phase: str) -> None:
        self.at = phase

    def phase(self, name: str) -> None:
        if name == self.at:
            raise RuntimeError(f"failure injected at {name}")


@pytest.mark.parametrize("phase", ["checking", "hotels", "deals", "links", "commit"])
async def test_a_failure_at_any_step_leaves_the_database_as_it_was(
    database_url: str, conn: Conn, tmp_path: Path, phase: str
) -> None:
    await load_file(database_url, write(tmp_path / "a.csv", rows(6)))
    before = await loadkit.snapshot(conn)
    changed = [row(n, price_per_night="1.00", categories="budget") for n in range(1, 10)]
    with pytest.raises(RuntimeError, match="failure injected"):
        await load_file(database_url, write(tmp_path / "b.csv", changed), progress=FailAt(phase))
    assert await loadkit.snapshot(conn) == before


class ReadDuring(Progress):
    """At each phase, another session reads every table with a 1 s lock_timeout."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[str, int] = {}

    def phase(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as reader:
            reader.execute("SET lock_timeout = '1s'")
            for table in loadkit.TABLES:
                reader.execute(f"SELECT count(*) FROM {table}")
            found = reader.execute("SELECT count(*) FROM deals").fetchone()
            self.seen[name] = found[0] if found else -1


async def test_readers_are_not_blocked_during_a_load(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await load_file(database_url, write(tmp_path / "a.csv", rows(6)))
    spy = ReadDuring(database_url)
    changed = [row(n, price_per_night="2.00") for n in range(1, 12)]
    await load_file(database_url, write(tmp_path / "b.csv", changed), progress=spy)
    assert set(spy.seen) >= {"reading", "checking", "hotels", "deals", "links", "commit", "vacuum"}
    # before the commit readers see the old state; after it, the new one
    assert spy.seen["commit"] == 6
    assert spy.seen["vacuum"] == 11


async def test_a_second_load_waits_for_the_first(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    messages: list[str] = []
    waited = asyncio.Event()

    def notify(message: str) -> None:
        messages.append(message)
        waited.set()

    async with conn.transaction():  # another load holds the lock
        assert await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('deals.load'))")
        second = asyncio.create_task(
            load_file(database_url, write(tmp_path / "w.csv", rows(3)), notify=notify)
        )
        await asyncio.wait_for(waited.wait(), timeout=30)
        await asyncio.sleep(0.2)
        assert not second.done()
    summary = await asyncio.wait_for(second, timeout=30)
    assert messages == ["another load is running; waiting for it"]
    assert summary.deals_new == 3


async def test_cli_prints_a_summary_and_json(database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "j.csv", rows(7))
    result = await asyncio.to_thread(loadkit.cli, "load", str(path), database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "7 read, 7 loaded, 0 rejected" in result.stdout
    again = await asyncio.to_thread(
        loadkit.cli, "load", str(path), "--json", database_url=database_url
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert set(summary) == {
        "file", "rows_read", "rows_loaded", "rows_rejected", "hotels_new", "hotels_updated",
        "hotels_disagreeing", "deals_new", "deals_updated", "deals_unchanged", "categories_new",
        "category_links_added", "category_links_removed", "seconds", "rows_per_second",
        "rejects_file", "foreign_key_checks", "skipped",
    }  # fmt: skip
    assert (summary["rows_read"], summary["deals_unchanged"]) == (7, 7)


async def test_a_vacuum_that_fails_after_the_commit_is_a_warning_not_a_failed_load(
    database_url: str,
) -> None:
    from service.load.steps import ConnectionWatchdog, vacuum_after_commit

    conn = await asyncpg.connect(database_url)
    said: list[str] = []
    try:
        watchdog = ConnectionWatchdog(conn)
        assert await vacuum_after_commit(conn, watchdog, said.append) is True
        assert said == []
        # VACUUM refuses to run inside a transaction block: a failure after the commit
        await conn.execute("BEGIN")
        assert await vacuum_after_commit(conn, watchdog, said.append) is False
        watchdog.stop()
    finally:
        await conn.close()
    assert said == [
        "warning: the load is committed, but its VACUUM (ANALYZE) failed "
        "(ActiveSQLTransactionError: VACUUM cannot run inside a transaction block); "
        "run it by hand: VACUUM (ANALYZE) hotels, deals, categories, deal_categories"
    ]
