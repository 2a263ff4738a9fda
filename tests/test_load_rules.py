"""One test per rule of the deals CSV spec, in strict mode (nothing written) and skip mode."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeAlias

import asyncpg
import pytest

from service.load.source import COLUMNS
from service.load.steps import BadRows, ProblemLine, load_file
from tests import loadkit, pg
from tests.loadkit import row, rows, write

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

# (column, bad value, the reason reported); "" is an empty field
RULES = [
    ("deal_id", "", "is empty"),
    ("deal_id", "abc", "is not an integer"),
    ("deal_id", "1.5", "is not an integer"),
    ("deal_id", "99999999999999999999", "is not an integer"),
    ("deal_id", "0", "must be greater than 0"),
    ("deal_id", "-7", "must be greater than 0"),
    ("hotel_name", "", "is empty"),
    ("hotel_name", "   ", "is empty"),
    ("hotel_city", "", "is empty"),
    ("hotel_country", " ", "is empty"),
    ("hotel_phone", "", "is empty"),
    ("hotel_star_rating", "", "is empty"),
    ("hotel_star_rating", "four", "is not an integer"),
    ("hotel_star_rating", "4.5", "is not an integer"),
    ("hotel_star_rating", "0", "must be from 1 to 5"),
    ("hotel_star_rating", "6", "must be from 1 to 5"),
    ("room_type", "", "is empty"),
    ("room_type", "  ", "is empty"),
    ("price_per_night", "", "is empty"),
    ("price_per_night", "cheap", "is not a decimal number"),
    ("price_per_night", "NaN", "is not a decimal number"),
    ("price_per_night", "0", "must be greater than 0"),
    ("price_per_night", "-1.50", "must be greater than 0"),
    ("price_per_night", "10.005", "has more than 2 decimal places"),
    ("price_per_night", "100000000", "is too large (at most 99999999.99)"),
    ("original_price", "", "is empty"),
    ("original_price", "1,50", "is not a decimal number"),
    ("original_price", "0.00", "must be greater than 0"),
    ("original_price", "0.001", "has more than 2 decimal places"),  # would round to 0.00
    ("original_price", "150.001", "has more than 2 decimal places"),
    ("original_price", "Infinity", "is too large (at most 99999999.99)"),
    ("discount_percent", "", "is empty"),
    ("discount_percent", "ten", "is not a decimal number"),
    ("discount_percent", "-1", "must be from 0 to 100"),
    ("discount_percent", "100.01", "must be from 0 to 100"),
    ("checkin_date", "", "is empty"),
    ("checkin_date", "2026/03/01", "is not a date in YYYY-MM-DD form"),
    ("checkin_date", "2026-02-30", "is not a date in YYYY-MM-DD form"),
    ("checkin_date", "20260301", "is not a date in YYYY-MM-DD form"),
    ("checkin_date", "March 1, 2026", "is not a date in YYYY-MM-DD form"),
    ("checkout_date", "", "is empty"),
    ("checkout_date", "2026-13-01", "is not a date in YYYY-MM-DD form"),
    ("checkout_date", "2026-03-01", "must be later than checkin_date"),
    ("checkout_date", "2026-02-27", "must be later than checkin_date"),
    ("is_available", "", "is empty"),
    ("is_available", "maybe", "is not one of true/false, t/f, 1/0, yes/no"),
    ("is_available", "on", "is not one of true/false, t/f, 1/0, yes/no"),
    ("created_at", "", "is empty"),
    ("created_at", "yesterday", "is not an ISO 8601 timestamp"),
    ("created_at", "now", "is not an ISO 8601 timestamp"),
    ("created_at", "01/15/2026 10:00", "is not an ISO 8601 timestamp"),
    ("created_at", "2026-01-15T25:00:00", "is not an ISO 8601 timestamp"),
]
BAD_LINE = 4  # header, two good rows, then the bad one


@pytest.fixture(scope="module")
def shared_url(admin_url: str, template_db: str) -> Iterator[str]:
    """One database for the rule cases: each loads its own deal_ids (strict ones load nothing)."""
    name, url = pg.clone(admin_url, template_db)
    yield url
    pg.drop(admin_url, name)


@pytest.fixture
async def shared(shared_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    async with pg.connected(shared_url) as connection:
        yield connection


def file_with(tmp_path: Path, column: str, value: str, first: int = 1) -> Path:
    """Five rows, deal_ids first..first+4; the third breaks one rule."""
    records = rows(5, start=first)
    records[2] = row(first + 2, **{column: value})
    return write(tmp_path / "bad.csv", records)


def ids(case: tuple[str, str, str]) -> str:
    return f"{case[0]}={case[1]!r}"


@pytest.mark.parametrize("case", RULES, ids=ids)
async def test_strict_mode_reports_and_writes_nothing(
    shared_url: str, shared: Conn, tmp_path: Path, case: tuple[str, str, str]
) -> None:
    column, value, reason = case
    before = await loadkit.counts(shared)
    with pytest.raises(BadRows) as caught:
        await load_file(shared_url, file_with(tmp_path, column, value, first=10_001))
    assert caught.value.exit_code == 1
    assert caught.value.rows_rejected == 1
    assert caught.value.problems == [
        ProblemLine(line=BAD_LINE, column=column, value=value or None, reason=reason)
    ]
    assert await loadkit.counts(shared) == before
    assert await shared.fetchval("SELECT count(*) FROM deals WHERE deal_id > 10000") == 0


@pytest.mark.parametrize("case", RULES, ids=ids)
async def test_skip_mode_loads_the_rest_and_rejects_the_row(
    shared_url: str, shared: Conn, tmp_path: Path, case: tuple[str, str, str]
) -> None:
    column, value, reason = case
    first = 100 * (RULES.index(case) + 1)
    rejects = tmp_path / "rejects.csv"
    path = file_with(tmp_path, column, value, first=first)
    summary = await load_file(shared_url, path, skip_bad_rows=True, rejects=rejects)
    assert (summary.rows_read, summary.rows_loaded, summary.rows_rejected) == (5, 4, 1)
    assert summary.rows_read == summary.rows_loaded + summary.rows_rejected
    assert summary.deals_new == 4
    with rejects.open(newline="") as f:
        written = list(csv.reader(f))
    original = next(r for i, r in enumerate(csv.reader(path.open(newline=""))) if i == 3)
    assert written == [
        ["line", "reason", *COLUMNS],
        [str(BAD_LINE), f"{column} {reason}", *original],
    ]
    stored = await shared.fetch(
        "SELECT deal_id FROM deals WHERE deal_id BETWEEN $1 AND $1 + 99 ORDER BY 1", first
    )
    assert [r["deal_id"] for r in stored] == [first, first + 1, first + 3, first + 4]


async def test_a_row_reports_every_bad_value(database_url: str, tmp_path: Path) -> None:
    records = rows(3)
    records[1] = row(2, price_per_night="-1", checkin_date="x", is_available="?")
    with pytest.raises(BadRows) as caught:
        await load_file(database_url, write(tmp_path / "m.csv", records))
    assert [(p.line, p.column) for p in caught.value.problems] == [
        (3, "price_per_night"),
        (3, "checkin_date"),
        (3, "is_available"),
    ]
    assert (caught.value.rows_rejected, caught.value.problem_count) == (1, 3)


@pytest.mark.parametrize("skip", [False, True], ids=["strict", "skip"])
async def test_deal_id_must_be_unique_in_the_file(
    database_url: str, conn: Conn, tmp_path: Path, skip: bool
) -> None:
    records = [*rows(4), row(2, room_type="Suite")]  # deal 2 again, on line 6
    path = write(tmp_path / "dup.csv", records)
    rejects = tmp_path / "r.csv"
    if not skip:
        with pytest.raises(BadRows) as caught:
            await load_file(database_url, path)
        assert [(p.line, p.column, p.value, p.reason) for p in caught.value.problems] == [
            (3, "deal_id", "2", "appears 2 times in the file"),
            (6, "deal_id", "2", "appears 2 times in the file"),
        ]
        assert (await loadkit.counts(conn))["deals"] == 0
        return
    summary = await load_file(database_url, path, skip_bad_rows=True, rejects=rejects)
    assert (summary.rows_read, summary.rows_loaded, summary.rows_rejected) == (5, 3, 2)
    assert [r[0] for r in csv.reader(rejects.open(newline=""))] == ["line", "3", "6"]
    assert sorted(r["deal_id"] for r in await conn.fetch("SELECT deal_id FROM deals")) == [1, 3, 4]


async def test_accepted_spellings(database_url: str, conn: Conn, tmp_path: Path) -> None:
    spellings = ["TRUE", "False", "t", "F", "1", "0", "yes", "NO", " true "]
    records = [row(n, is_available=v) for n, v in enumerate(spellings, start=1)]
    records.append(row(20, created_at="2026-01-15T10:00:00Z", checkin_date=" 2026-03-01 "))
    records.append(row(21, created_at="2026-01-15T10:00:00.123+0530", deal_id=" 21 "))
    summary = await load_file(database_url, write(tmp_path / "ok.csv", records))
    assert summary.rows_loaded == len(records)
    available = await conn.fetch(
        "SELECT is_available FROM deals WHERE deal_id < 20 ORDER BY deal_id"
    )
    assert [r["is_available"] for r in available] == [True, False] * 4 + [True]


def two_claims(first_phone: str, second_phone: str) -> list[dict[str, str | None]]:
    """Two phones claiming 'Hotel 0, Paris, France'."""
    same = {"hotel_name": "Hotel Twin", "hotel_city": "Lyon", "hotel_country": "France"}
    return [
        row(1),
        row(10, hotel_phone=first_phone, **same),
        row(11, hotel_phone=second_phone, **same),
        row(12, hotel_phone=second_phone, **same),
        row(13, hotel_phone=first_phone, **same),
    ]


async def test_two_phones_claiming_one_hotel_fail_a_strict_load(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    path = write(tmp_path / "twin.csv", two_claims("+1 111", "+1 222"))
    with pytest.raises(BadRows) as caught:
        await load_file(database_url, path)
    reason = "hotel (Hotel Twin, Lyon, France) belongs to phone +1 111 (line 6)"
    assert [(p.line, p.column, p.value, p.reason) for p in caught.value.problems] == [
        (4, "hotel_phone", "+1 222", reason),
        (5, "hotel_phone", "+1 222", reason),
    ]
    assert await loadkit.counts(conn) == dict.fromkeys(loadkit.TABLES, 0)


async def test_skip_mode_keeps_the_phone_seen_first(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    path = write(tmp_path / "twin.csv", two_claims("+1 111", "+1 222"))
    summary = await load_file(database_url, path, skip_bad_rows=True, rejects=tmp_path / "r.csv")
    assert (summary.rows_read, summary.rows_loaded, summary.rows_rejected) == (5, 3, 2)
    phones = await conn.fetch("SELECT phone FROM hotels WHERE name = 'Hotel Twin'")
    assert [r["phone"] for r in phones] == ["+1 111"]


async def test_a_phone_claiming_a_database_hotel_is_rejected(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await load_file(database_url, write(tmp_path / "a.csv", rows(3)))
    hotel_id = await conn.fetchval("SELECT id FROM hotels WHERE phone = '+33 1 00 00 01'")
    path = write(tmp_path / "b.csv", [row(7, hotel_phone="+44 20 7946 0000"), row(8)])
    with pytest.raises(BadRows) as caught:
        await load_file(database_url, path)
    assert [p.reason for p in caught.value.problems] == [
        f"hotel (Hotel 1, Paris, France) belongs to hotel {hotel_id} (phone +33 1 00 00 01)"
        " in the database"
    ]
    summary = await load_file(database_url, path, skip_bad_rows=True, rejects=tmp_path / "r.csv")
    assert (summary.rows_loaded, summary.rows_rejected) == (1, 1)


async def test_a_renamed_hotel_frees_its_name(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await load_file(database_url, write(tmp_path / "a.csv", rows(3)))
    renamed = row(4, hotel_name="Hotel One Renamed", created_at="2026-02-01T00:00:00Z")
    newcomer = row(5, hotel_phone="+1 999", hotel_name="Hotel 1")
    summary = await load_file(database_url, write(tmp_path / "b.csv", [renamed, newcomer]))
    assert (summary.hotels_new, summary.hotels_updated, summary.rows_rejected) == (1, 1, 0)
    names = {r["phone"]: r["name"] for r in await conn.fetch("SELECT phone, name FROM hotels")}
    assert names["+1 999"] == "Hotel 1"
    assert names["+33 1 00 00 01"] == "Hotel One Renamed"


async def test_rejecting_a_phone_can_reject_another(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await load_file(database_url, write(tmp_path / "a.csv", rows(3)))  # phone ...01 is 'Hotel 1'
    records = [
        row(10, hotel_phone="+1 300", hotel_name="Hotel Z"),  # first to claim Hotel Z
        row(11, hotel_name="Hotel Z"),  # phone ...01 renames to Hotel Z: loses, keeps Hotel 1
        row(12, hotel_phone="+1 400", hotel_name="Hotel 1"),  # so this claim loses too
    ]
    summary = await load_file(
        database_url, write(tmp_path / "b.csv", records), skip_bad_rows=True, rejects=tmp_path / "r"
    )
    assert (summary.rows_loaded, summary.rows_rejected) == (1, 2)
    names = {r["phone"]: r["name"] for r in await conn.fetch("SELECT phone, name FROM hotels")}
    assert names["+33 1 00 00 01"] == "Hotel 1"
    assert names["+1 300"] == "Hotel Z"
    assert "+1 400" not in names


async def test_a_deal_id_repeated_on_a_bad_row_rejects_both(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    records = [*rows(4), row(2, price_per_night="free")]
    with pytest.raises(BadRows) as caught:
        await load_file(database_url, write(tmp_path / "dup.csv", records))
    assert [(p.line, p.column, p.reason) for p in caught.value.problems] == [
        (3, "deal_id", "appears 2 times in the file"),
        (6, "deal_id", "appears 2 times in the file"),
        (6, "price_per_night", "is not a decimal number"),
    ]


# Values at and around every rule's edges, good and bad, for the typed pass.
EDGES: dict[str, list[str | None]] = {
    "deal_id": [None, "", " ", "0", "-5", "abc", "1.5", "9223372036854775808", " 77 ", "+8",
                "1e3", "9223372036854775807"],
    "hotel_name": [None, "", " ", "  x  ", "\t", "x", " \u00a0 "],
    "hotel_phone": ["", " ", " +1 555 "],
    "hotel_star_rating": [None, "0", "1", "5", "6", " 3 ", "3.0", "x", "-1", "+4", "32768"],
    "room_type": ["", "   ", "Suite", "\n"],
    "price_per_night": [None, "0", "0.00", "-1", "1.234", "1.230", "99999999.99", "100000000",
                        "99999999.995", "NaN", "nan", "Infinity", "-Infinity", "1e3", "1e-3",
                        " 5.5 ", "abc", ".5", "5.", "00012.10", "1,5", "0.001"],
    "original_price": ["0.01", "-0.01", "1.999", "1e8", "inf"],
    "discount_percent": [None, "0", "100", "100.01", "-0.01", "NaN", "12.345", "abc", "1e2",
                         "Infinity", "99.999", " 5 "],
    "checkin_date": [None, "2026-03-01", " 2026-03-01 ", "2026-3-1", "2026-13-01", "2026-02-30",
                     "03/01/2026", "20260301", "2026-03-01T00:00", "0000-01-01", "2026-03-04",
                     "2026-03-05"],
    "checkout_date": ["2026-03-02", "2026-03-01", "2026-02-28", " 2026-03-09", "2026-03-0"],
    "is_available": [None, "true", "TRUE", " yes ", "No", "1", "0", "t", "F", "y", "maybe", "on"],
    "created_at": [None, "2026-01-01T10:00:00", "2026-01-01 10:00:00+02", "2026-01-01", "x",
                   "2026-01-01T25:00:00", "Jan 1 2026", " 2026-01-01T10:00:00Z ",
                   "2026-01-01T10:00:00+25:00", "2026-02-30T10:00:00"],
}  # fmt: skip


async def staged_edges(conn: Conn, tmp_path: Path) -> list[tuple[str, str | None]]:
    """Each edge of EDGES alone in a record (record n is edge n - 1), COPYed into the
    load's work tables as a load does: inside the caller's transaction."""
    from service.db import load as sql
    from service.load.report import Progress
    from service.load.source import Source
    from service.load.steps import Loader

    edges = [(column, value) for column, values in EDGES.items() for value in values]
    records = [row(n, **{column: value}) for n, (column, value) in enumerate(edges, start=1)]
    path = write(tmp_path / "edges.csv", records)
    await sql.configure_load(conn, work_mem="64MB")
    await sql.create_work_tables(conn)
    with Source(path) as source:
        assert await Loader(conn, source, None, Progress(), True, 20).copy() == len(records)
    return edges


async def test_the_typed_pass_and_the_rules_agree_on_every_edge(conn: Conn, tmp_path: Path) -> None:
    """insert_typed_rows (over the tested values) decides ok for every record;
    find_bad_values names the problems.

    Run over every record (not only the not-ok ones, as in a load), the rules must
    find a problem exactly where ok is false: else a good row would be rejected
    without a reason (the load fails: count_unexplained_rows) or a bad one loaded.
    """
    from service.db import load as sql

    async with conn.transaction():  # the work tables go at commit; nothing else is written
        edges = await staged_edges(conn, tmp_path)
        await sql.create_tested_values(conn)
        await sql.insert_typed_rows(conn)
        not_ok = {
            r["record"] for r in await conn.fetch("SELECT record FROM load_rows WHERE NOT ok")
        }
        untyped = await conn.fetchval(
            "SELECT count(*) FROM load_rows AS r WHERE r.ok AND NOT (r IS NOT NULL)"
        )  # an ok record has every value typed (categories aside, never NULL here)
        await conn.execute("UPDATE load_rows SET ok = false")  # the rules look at every record
        await sql.find_bad_values(conn)
        with_problems = {r["record"] for r in await conn.fetch("SELECT record FROM load_errors")}
        # all marked not ok now: the good ones are what the load's guard would catch
        unexplained = await sql.count_unexplained_rows(conn)
    assert with_problems == not_ok
    assert unexplained == len(edges) - len(not_ok) > 0
    assert untyped == 0
    for column in EDGES:  # each column has good and bad edges
        mine = {n for n, (c, _) in enumerate(edges, start=1) if c == column}
        assert mine & not_ok, column
        assert mine - not_ok, column


async def test_the_cast_pass_types_every_edge_as_the_typed_pass_or_raises(
    conn: Conn, tmp_path: Path
) -> None:
    """create_cast_values, the load's first try, casts without testing: for each edge
    alone insert_typed_rows then either gives the very row it gives over the tested
    values (ok included) or raises, and it raises only for a record the tested pass
    finds not ok (the load then falls back to the tested values, which name the
    problem)."""
    from service.db import load as sql

    raised: set[int] = set()
    cast: dict[int, tuple[object, ...]] = {}
    async with conn.transaction():  # the work tables go at commit; nothing else is written
        edges = await staged_edges(conn, tmp_path)
        await sql.create_tested_values(conn)
        await sql.insert_typed_rows(conn)
        typed = {r["record"]: tuple(r) for r in await conn.fetch("SELECT * FROM load_rows")}
        for n in typed:  # each record alone, in a savepoint rolled back after it
            await conn.execute("SAVEPOINT one")
            try:
                await conn.execute("DELETE FROM load_rows")
                await conn.execute("DELETE FROM load_staging WHERE record <> $1", n)
                await conn.execute("DROP VIEW load_values")
                await sql.create_cast_values(conn)
                assert await sql.insert_typed_rows(conn) == 1
                found = await conn.fetchrow("SELECT * FROM load_rows")
                assert found is not None
                cast[n] = tuple(found)
            except asyncpg.DataError:
                raised.add(n)
            await conn.execute("ROLLBACK TO SAVEPOINT one")
    assert {n: typed[n] for n in cast} == cast
    assert raised
    assert any(not r[1] for r in cast.values())  # some cast yet not ok: the rules decide those
    assert all(not typed[n][1] for n in raised), [edges[n - 1] for n in raised if typed[n][1]]


@pytest.mark.parametrize(
    ("records", "typing"),
    [
        (rows(3), ["create_cast_values"]),
        ([*rows(2), row(3, price_per_night="abc")], ["create_cast_values", "create_tested_values"]),
    ],
    ids=["clean", "a value that does not parse"],
)
async def test_a_clean_file_is_typed_by_the_cast_pass_alone(
    database_url: str, tmp_path: Path, records: list[dict[str, str | None]], typing: list[str]
) -> None:
    """The load's typing tries the cast values first; only a value that does not parse
    sends it back to the tested values (which name the problem)."""
    from service.db import catalogue

    ran: list[str] = []

    def seen(name: str, seconds: float, failed: str | None) -> None:
        ran.append(name)

    catalogue.observe_queries(seen)
    try:
        await load_file(database_url, write(tmp_path / "t.csv", records), skip_bad_rows=True)
    finally:
        catalogue.QUERY_OBSERVERS.remove(seen)
    assert [
        name for name in ran if name.startswith("create_") and name.endswith("_values")
    ] == typing
    assert ("create_tested_values" in ran) == (len(typing) == 2)
