"""City matching, API contract v2: case-insensitive for all of Unicode and insensitive to
Unicode normalization, the same on a database of any locale (C included).

Both sides of every city filter become lower(upper(normalize(x, NFC) COLLATE "pg_c_utf8"))
(sql/deals.sql says why that expression); hotels_city_folded_idx (migration 0007) serves it.
The spellings are written with escapes where the bytes matter: "mu\u0308nchen" is u followed
by U+0308 COMBINING DIAERESIS, the decomposed (NFD) form of "münchen".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service import migrate
from service.api.app import create_app
from service.db.catalogue import CATALOGUE
from service.load.steps import load_file
from service.settings import Settings
from tests import loadkit, pg
from tests.conftest import settings_for

Client = AsyncTestClient[Litestar]
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

HOTELS = [
    # name, city as stored, country
    ("Hofbräu", "München", "Germany"),  # precomposed ü (NFC)
    ("Isar", "Mu\u0308nchen", "Germany"),  # decomposed: u + combining diaeresis
    ("Paulista", "São Paulo", "Brazil"),
    ("Aros", "Århus", "Denmark"),
    ("Pera", "İstanbul", "Turkey"),  # U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE
    ("Bosphorus", "Istanbul", "Turkey"),
    ("Tigris", "Diyarbak\u0131r", "Turkey"),  # U+0131 LATIN SMALL LETTER DOTLESS I
    ("Aegean", "Κως", "Greece"),  # ends in U+03C2 GREEK SMALL LETTER FINAL SIGMA
    ("Lahn", "Gießen", "Germany"),
    ("Seine", "Paris", "France"),
]
MUNICH = {"Hofbräu", "Isar"}
ISTANBUL = {"Pera", "Bosphorus"}

CASES: list[tuple[str, set[str]]] = [
    # München, stored precomposed (Hofbräu) and decomposed (Isar): every spelling finds both.
    ("München", MUNICH),
    ("MÜNCHEN", MUNICH),
    ("münchen", MUNICH),
    ("mu\u0308nchen", MUNICH),
    ("MU\u0308NCHEN", MUNICH),
    ("Munchen", set()),  # accents count: only case and normalization are ignored
    ("São Paulo", {"Paulista"}),
    ("SÃO PAULO", {"Paulista"}),
    ("são paulo", {"Paulista"}),
    ("Sa\u0303o Paulo", {"Paulista"}),  # a + combining tilde
    ("Sao Paulo", set()),
    ("Århus", {"Aros"}),
    ("ÅRHUS", {"Aros"}),
    ("A\u030arhus", {"Aros"}),  # A + combining ring above
    ("\u212brhus", {"Aros"}),  # U+212B ANGSTROM SIGN: NFC makes it Å
    # İstanbul: simple lower(İ) is plain i (the full mapping would give i + U+0307), and
    # upper(dotless i, U+0131) is I, so İstanbul and Istanbul are one city in every spelling.
    ("İstanbul", ISTANBUL),
    ("İSTANBUL", ISTANBUL),
    ("istanbul", ISTANBUL),
    ("ISTANBUL", ISTANBUL),
    ("Istanbul", ISTANBUL),
    ("\u0131stanbul", ISTANBUL),
    ("I\u0307stanbul", ISTANBUL),  # I + combining dot above: NFC makes it İ
    # Turkish (DİYARBAKIR) and non-Turkish (DIYARBAKIR) upper case both find the dotless-i one.
    ("Diyarbak\u0131r", {"Tigris"}),
    ("DIYARBAKIR", {"Tigris"}),
    ("DİYARBAKIR", {"Tigris"}),
    ("diyarbakir", {"Tigris"}),
    # Final sigma: U+03C2 and U+03C3 are one letter in two forms; upper() makes both U+03A3.
    ("Κως", {"Aegean"}),
    ("ΚΩΣ", {"Aegean"}),
    ("κωσ", {"Aegean"}),
    # ß has no one-letter upper case but ẞ (U+1E9E); ß -> ss is a full mapping, not used.
    ("Gießen", {"Lahn"}),
    ("GIEẞEN", {"Lahn"}),
    ("gießen", {"Lahn"}),
    ("GIESSEN", set()),
    ("giessen", set()),
    ("paris", {"Seine"}),
    ("PARIS", {"Seine"}),
]
SORTS = ["id", "price", "-price", "created_at", "-created_at"]


async def seed(conn: Conn) -> None:
    """The hotels, each with one deal in category 'luxury'."""
    for n, (name, city, country) in enumerate(HOTELS, start=1):
        hotel_id = await conn.fetchval(
            "INSERT INTO hotels (name, city, country, phone, star_rating) "
            "VALUES ($1, $2, $3, $4, 4) RETURNING id",
            name,
            city,
            country,
            f"+1-555-{n:04d}",
        )
        await conn.execute(
            "INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, original_price, "
            "discount_percent, checkin_date, checkout_date) "
            "VALUES ($1::bigint, $2, 'Suite', 100 + $1::bigint, 200, 10, "
            "'2027-01-01', '2027-01-03')",
            n,
            hotel_id,
        )
    await conn.execute("INSERT INTO categories (name) VALUES ('luxury')")
    await conn.execute(
        "INSERT INTO deal_categories (deal_id, category_id) "
        "SELECT d.id, c.id FROM deals d, categories c"
    )
    await conn.execute("ANALYZE")


async def get_ok(client: Client, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def answers(client: Client, city: str) -> dict[str, tuple[set[str], int]]:
    """The hotel names and the exact total from every query the city filter is in."""
    found = {}
    for sort in SORTS:  # list_deals_by_* and count_deals
        body = await get_ok(client, "/deals", city=city, sort=sort, count="exact")
        found[f"deals sort={sort}"] = ({d["hotel"]["name"] for d in body["items"]}, body["total"])
    body = await get_ok(client, "/deals", city=city, category="LUXURY", count="exact")
    found["deals category"] = ({d["hotel"]["name"] for d in body["items"]}, body["total"])
    body = await get_ok(client, "/hotels", city=city, count="exact")  # list_ and count_hotels
    found["hotels"] = ({h["name"] for h in body["items"]}, body["total"])
    return found


def expected(names: set[str]) -> dict[str, tuple[set[str], int]]:
    return {
        **{f"deals sort={sort}": (names, len(names)) for sort in SORTS},
        "deals category": (names, len(names)),
        "hotels": (names, len(names)),
    }


@pytest.fixture(scope="module")
async def cities(admin_url: str, template_db: str) -> AsyncIterator[Client]:
    """An app over one database of the seeded hotels, shared by the module's tests that
    only read them; the database refuses writes (tests.pg.refuse_writes)."""
    name, url = pg.clone(admin_url, template_db)
    try:
        async with pg.connected(url) as conn:
            await seed(conn)
        pg.refuse_writes(admin_url, name)
        async with AsyncTestClient(app=create_app(settings_for(url))) as client:
            yield client
    finally:
        pg.drop(admin_url, name)


@pytest.mark.parametrize(("city", "names"), CASES, ids=[ascii(c) for c, _ in CASES])
async def test_city_matches_whatever_its_case_and_normalization(
    cities: Client, city: str, names: set[str]
) -> None:
    assert await answers(cities, city) == expected(names)


LOCALES = {
    "C": "LOCALE 'C'",
    "builtin C.UTF-8": "LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'",
    "libc C.utf8": "LOCALE 'C.utf8'",
}


@pytest.fixture(params=list(LOCALES))
def locale_db(request: pytest.FixtureRequest, admin_url: str) -> Iterator[str]:
    """A new UTF8 database of the given default locale, migrated from scratch."""
    name = f"test_city_locale_{list(LOCALES).index(request.param)}"
    pg.drop(admin_url, name)
    try:
        pg.admin_execute(
            admin_url,
            f'CREATE DATABASE "{name}" TEMPLATE template0 {LOCALES[request.param]} '
            "ENCODING 'UTF8'",
        )
    except Exception as exc:
        if request.param == "C":
            raise
        pytest.skip(f"this server has no {request.param} locale: {exc}")
    url = pg.with_database(admin_url, name)
    migrate.apply(url)
    yield url
    pg.drop(admin_url, name)


async def test_every_locale_answers_the_same(locale_db: str) -> None:
    conn = await asyncpg.connect(locale_db)
    try:
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
        await seed(conn)
    finally:
        await conn.close()
    settings = Settings(database_url=locale_db, pool_min_size=1, pool_max_size=2)
    async with AsyncTestClient(app=create_app(settings)) as client:
        for city, names in CASES:
            assert await answers(client, city) == expected(names), city


@pytest.fixture(scope="module")
async def planner(admin_url: str, template_db: str) -> AsyncIterator[Conn]:
    """2,000 hotels in 500 cities with 20,000 deals, analyzed: enough rows that the
    planner reaches for an index on a selective city. One database for the module's
    plan tests, which only read it (it refuses writes: tests.pg.refuse_writes)."""
    name, url = pg.clone(admin_url, template_db)
    try:
        async with pg.connected(url) as conn:
            await fill_for_the_planner(conn)
        pg.refuse_writes(admin_url, name)
        async with pg.connected(url) as conn:
            await conn.execute("SET plan_cache_mode = force_custom_plan")  # as the pool runs them
            yield conn
    finally:
        pg.drop(admin_url, name)


async def fill_for_the_planner(conn: Conn) -> None:
    await conn.execute(
        "INSERT INTO hotels (name, city, country, phone, star_rating) "
        "SELECT 'Hotel ' || i, 'Città ' || i % 500, 'Country', '+1-' || i, 1 + i % 5 "
        "FROM generate_series(1, 2000) AS i"
    )
    await conn.execute(
        "INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, original_price, "
        "discount_percent, checkin_date, checkout_date) "
        "SELECT i, 1 + i * 7919 % 2000, 'Suite', 50 + i % 300, 400, 10, "
        "date '2027-01-01' + i % 90, date '2027-01-03' + i % 90 "
        "FROM generate_series(1, 20000) AS i"
    )
    await conn.execute("INSERT INTO categories (name) VALUES ('budget'), ('luxury')")
    await conn.execute(
        "INSERT INTO deal_categories (deal_id, category_id) SELECT id, 1 + id % 2 FROM deals"
    )
    await conn.execute("ANALYZE")


CITY = re.compile(r"\$1::text IS NULL OR lower\(upper\(normalize\(h\.city")
LIMIT = re.compile(r"LIMIT \$(\d+)::int")


def city_queries() -> list[str]:
    # find_deal_by_upstream_id filters the one row deals_deal_id_key finds: no index for the city
    names = [
        name
        for name, query in CATALOGUE.items()
        if CITY.search(query.sql) and name != "find_deal_by_upstream_id"
    ]
    assert sorted(names) == sorted(
        [
            "list_hotels",
            "count_hotels",
            "list_deals_by_id",
            "list_deals_by_price",
            "list_deals_by_price_desc",
            "list_deals_by_created_at",
            "list_deals_by_created_at_desc",
            "count_deals",
            "count_deals_in_category",
            "count_deals_from_totals",
        ]
    )
    return names


@pytest.mark.parametrize("name", city_queries())
async def test_the_city_filter_is_served_by_its_index(planner: Conn, name: str) -> None:
    query = CATALOGUE[name]
    args: list[object] = [None] * query.params
    args[0] = "CITTÀ 7"  # upper case, where the rows hold "Città 7"
    if name == "count_deals_in_category":
        args[4] = "budget"  # the category of every deal in Città 7 (even ids)
    limit = LIMIT.search(query.sql)
    if limit:
        args[int(limit.group(1)) - 1] = 20
        args[int(limit.group(1))] = 0  # OFFSET
    plan = "\n".join(row[0] for row in await planner.fetch(f"EXPLAIN {query.sql}", *args))
    assert "hotels_city_folded_idx" in plan, plan
    assert "= 'città 7'::text COLLATE pg_c_utf8" in plan, plan  # $1 folded once, at planning
    if query.kind == "many":
        rows = await planner.fetch(query.sql, *args)
        assert len(rows) == (4 if name == "list_hotels" else 20)
    else:
        assert await planner.fetchval(query.sql, *args) == (4 if name == "count_hotels" else 40)


async def test_the_loader_stores_hotel_names_in_nfc(
    client: Client, conn: Conn, database_url: str, tmp_path: Path
) -> None:
    decomposed = {"hotel_name": "Cafe\u0301 Isar", "hotel_city": "Mu\u0308nchen"}
    records = [
        loadkit.row(1, **decomposed, hotel_country="O\u0308sterreich", hotel_phone="+49 1"),
        # The same hotel (phone), its later record precomposed: one hotel, stored once.
        loadkit.row(2, hotel_name="Café Isar", hotel_city="München", hotel_phone="+49 1",
                    hotel_country="Österreich", created_at="2026-01-16T10:00:00Z"),
        # Another hotel decomposed, alone: stored composed all the same.
        loadkit.row(3, hotel_name="A\u030arhus Inn", hotel_city="A\u030arhus",
                    hotel_country="Danmark", hotel_phone="+45 1"),
    ]  # fmt: skip
    summary = await load_file(database_url, loadkit.write(tmp_path / "nfd.csv", records))
    assert summary.rows_loaded == 3
    rows = await conn.fetch("SELECT name, city, country FROM hotels ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("Café Isar", "München", "Österreich"),
        ("Århus Inn", "Århus", "Danmark"),
    ]
    for row in rows:
        for value in row:
            assert unicodedata.is_normalized("NFC", value), ascii(value)
    body = await get_ok(client, "/deals", city="MÜNCHEN", count="exact")
    assert (sorted(d["deal_id"] for d in body["items"]), body["total"]) == ([1, 2], 2)
    body = await get_ok(client, "/hotels", city="a\u030aRHUS", count="exact")
    assert ([h["name"] for h in body["items"]], body["total"]) == (["Århus Inn"], 1)
