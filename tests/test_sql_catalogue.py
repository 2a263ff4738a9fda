"""The SQL catalogue parses strictly, and every query prepares against the migrated schema."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from service.api.responses import DealPage, deal_page_json
from service.db import catalogue as sqlcat
from service.db import deals, stats
from service.db import load as load_sql
from service.db.pool import Database
from service.db.rows import deal_from_row
from tests.conftest import settings_for

SEED = Path(__file__).parent.parent / "bench" / "seed.sql"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "x.sql").write_text(text)
    return tmp_path


def test_parses_header_doc_and_kind(tmp_path: Path) -> None:
    cat = sqlcat.load(
        write(
            tmp_path,
            "-- name: get_thing :one\n-- Serves GET /thing.\n-- Uses pk.\nSELECT $1::int\n",
        )
    )
    query = cat["get_thing"]
    assert query.kind == "one"
    assert query.doc == "Serves GET /thing.\nUses pk."
    assert query.sql == "-- name: get_thing :one\nSELECT /* get_thing */ $1::int"
    assert (query.file, query.line, query.params) == ("x.sql", 1, 1)


def test_duplicate_name_fails(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: same :exec\nSELECT 1\n")
    (tmp_path / "b.sql").write_text("-- name: same :exec\nSELECT 2\n")
    with pytest.raises(sqlcat.CatalogueError, match="duplicate query name same"):
        sqlcat.load(tmp_path)


def test_unknown_kind_fails(tmp_path: Path) -> None:
    with pytest.raises(sqlcat.CatalogueError, match="unknown kind :some"):
        sqlcat.load(write(tmp_path, "-- name: q :some\nSELECT 1\n"))


def test_placeholder_gap_fails(tmp_path: Path) -> None:
    with pytest.raises(sqlcat.CatalogueError, match="gap"):
        sqlcat.load(write(tmp_path, "-- name: q :one\nSELECT $1::int, $3::int\n"))


def test_placeholders_in_strings_and_comments_do_not_count(tmp_path: Path) -> None:
    cat = sqlcat.load(write(tmp_path, "-- name: q :one\nSELECT '$2', $1::int -- $5\n"))
    assert cat["q"].params == 1


async def test_every_query_prepares(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    assert sqlcat.CATALOGUE, "the catalogue is empty"
    async with conn.transaction():
        # the loader's queries read its TEMP work tables, which live inside a load's transaction
        await load_sql.create_work_tables(conn)
        await load_sql.create_cast_values(conn)  # load_values, which insert_typed_rows reads
        # the doctor reads pg_stat_statements, which it installs where it is preloaded
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for query in sqlcat.CATALOGUE.values():
            statement = await conn.prepare(query.sql)
            assert len(statement.get_parameters()) == query.params, query.name


async def test_pg_stat_statements_names_the_query(
    conn: asyncpg.Connection[asyncpg.Record],
) -> None:
    preloaded = await conn.fetchval("SHOW shared_preload_libraries")
    if "pg_stat_statements" not in preloaded:
        pytest.skip("this server does not preload pg_stat_statements")
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    query = sqlcat.CATALOGUE["get_deal"]
    await conn.fetch(query.sql, 1)
    texts = await conn.fetch(
        "SELECT query FROM pg_stat_statements WHERE query LIKE '%/* get_deal */%' "
        "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert len(texts) == 1


def test_plan_line_is_parsed_and_kept_in_the_doc(tmp_path: Path) -> None:
    text = "-- name: q :one\n-- Serves GET /q.\n-- plan: generic (a key probe)\nSELECT $1::int\n"
    query = sqlcat.load(write(tmp_path, text))["q"]
    assert query.plan == "generic"
    assert query.doc == "Serves GET /q.\nplan: generic (a key probe)"
    assert sqlcat.load(write(tmp_path, "-- name: q :one\nSELECT $1::int\n"))["q"].plan is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("-- plan: generik\n", "query q has plan: generik; expected plan: generic, custom or any"),
        ("-- plan:\n", "query q has plan: ; expected plan: generic, custom or any"),
        ("-- plan: custom\n-- plan: generic\n", "query q has two plan lines"),
    ],
)
def test_a_wrong_plan_line_fails(tmp_path: Path, lines: str, message: str) -> None:
    with pytest.raises(sqlcat.CatalogueError) as caught:
        sqlcat.load(write(tmp_path, f"-- name: q :one\n{lines}SELECT $1::int\n"))
    assert str(caught.value) == f"x.sql:1: {message}"


def test_the_read_queries_declare_their_plan() -> None:
    undeclared = [
        q.name for q in sqlcat.CATALOGUE.values() if q.file in PLANNED_FILES and q.plan is None
    ]
    assert undeclared == []
    planned = {q.name for q in sqlcat.CATALOGUE.values() if q.plan not in (None, "any")}
    assert planned == set(PLAN_RUNS)


PLANNED_FILES = {"deals.sql", "hotels.sql"}
NO_FILTER: tuple[None, ...] = (None,) * 6
KEYSETS = {
    "list_deals_by_id": (None,),
    "list_deals_by_price": (None, None),
    "list_deals_by_price_desc": (None, None),
    "list_deals_by_created_at": (None, None),
    "list_deals_by_created_at_desc": (None, None),
}
# Each query with a `-- plan:` line and argument sets the API binds for it.
PLAN_RUNS: dict[str, list[tuple[Any, ...]]] = {
    "get_deal": [(1,), (2,), (10**9,)],
    "find_deal_by_upstream_id": [(*NO_FILTER, 1), ("Paris", 3, None, None, "luxury", True, 2)],
    **{
        name: [
            (*NO_FILTER, *keyset, 20, 0),
            ("paris", 3, None, None, None, None, *keyset, 20, 0),
            (None, None, Decimal(100), Decimal(150), None, True, *keyset, 5, 0),
            (None, None, None, None, "luxury", None, *keyset, 20, 40),
        ]
        for name, keyset in KEYSETS.items()
    },
    "list_all_deals_by_id": [(0, 20, 0), (15000, 21, 0), (0, 20, 400)],
    "list_all_deals_by_price": [(Decimal(0), 0, 20, 0), (Decimal(500), 10, 21, 0)],
    "list_all_deals_by_price_desc": [(Decimal(10) ** 8, 0, 20, 0), (Decimal(50), 7, 21, 40)],
    "list_all_deals_by_created_at": [(datetime.min.replace(tzinfo=UTC), 0, 20, 0)],
    "list_all_deals_by_created_at_desc": [(datetime.max.replace(tzinfo=UTC), 0, 20, 0)],
    "list_deals_in_city_by_id": [
        ("Paris", None, 0, 20, 0),
        ("nowhere", 3, 0, 20, 0),
        ("LYON", 5, 1000, 21, 0),
    ],
    "list_all_deals_by_id_json": [(0, 20, 0, True), (15000, 21, 0, False), (0, 20, 400, True)],
    "list_deals_in_city_by_id_json": [
        ("Paris", None, 0, 20, 0, True),
        ("nowhere", 3, 0, 20, 0, True),
        ("LYON", 5, 1000, 21, 0, False),
    ],
    "count_deals": [
        NO_FILTER,
        ("paris", 3, None, None, None, None),
        (None, None, Decimal(100), Decimal(150), None, None),
    ],
    "count_deals_in_category": [
        (None, None, None, None, "luxury", None),
        ("paris", None, None, None, "family", True),
    ],
    "list_deals_in_price_range_by_id": [
        (Decimal(100), Decimal(150), 0, 20, 0),
        (Decimal(100), Decimal("100.02"), 0, 21, 0),
        (Decimal(0), Decimal(40), 19_000, 20, 40),
    ],
    "list_deals_in_price_range_by_id_json": [
        (Decimal(100), Decimal(150), 0, 20, 0, True),
        (Decimal(100), Decimal("100.02"), 0, 21, 0, False),
        (Decimal(0), Decimal(40), 19_000, 20, 40, True),
    ],
    "list_deals_in_category_by_id": [("luxury", 0, 20, 0), ("Budget", 15_000, 21, 0)],
    "count_deals_in_price_range": [(Decimal(100), Decimal(150)), (Decimal(0), Decimal(40))],
    "deal_stats_in_price_range": [
        (Decimal(100), Decimal(150)),
        (Decimal(0), Decimal(10) ** 8),
        (Decimal("899.5"), Decimal(10) ** 8),
    ],
    "count_category_deals": [("luxury",), ("Budget",), ("nothing",)],
    "estimate_all_deals": [()],
    "get_hotel": [(1,), (10**9,)],
    "list_hotels": [(None, 20, 0), ("paris", 20, 0)],
    "count_hotels": [(None,), ("paris",)],
    "list_all_hotels": [(20, 0), (50, 100)],
    "count_all_hotels": [()],
    "list_all_hotels_counted": [(20, 0), (50, 140)],
}
RUNS = 7  # more than the 5 custom plans PostgreSQL's auto mode would make first
HELPERS: dict[str, Any] = {"one": sqlcat.One, "many": sqlcat.Many, "val": sqlcat.Value}


@pytest.fixture
async def bench_rows(conn: asyncpg.Connection[asyncpg.Record]) -> int:
    """bench/seed.sql's 150 hotels and 20,000 deals in this test's database."""
    await conn.execute("SELECT set_config('bench.rows', '20000', false)")
    async with conn.transaction():
        await conn.execute(SEED.read_text())
    await conn.execute("VACUUM ANALYZE")
    return 20_000


async def test_postgresql_plans_each_query_as_its_plan_line_says(
    bench_rows: int, database_url: str
) -> None:
    """Run through its helper on a pool connection, a `generic` query gets a generic
    plan every time (so it is planned once), a `custom` one a custom plan every time."""
    database = Database(settings_for(database_url))
    await database.open()
    found: dict[str, tuple[str, int, int]] = {}
    try:
        async with database.connection() as pooled:
            for name, runs in PLAN_RUNS.items():
                query = sqlcat.CATALOGUE[name]
                helper = HELPERS[query.kind](name)
                for args in runs:
                    for _ in range(RUNS):
                        await helper(pooled, *args)
                row = await pooled.fetchrow(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement = $1",
                    query.sql,
                )
                assert row is not None, name
                found[name] = (str(query.plan), row["generic_plans"], row["custom_plans"])
    finally:
        await database.close()
    expected = {
        name: (plan, total, 0) if plan == "generic" else (plan, 0, total)
        for name, (plan, _, _) in found.items()
        for total in [RUNS * len(PLAN_RUNS[name])]
    }
    assert found == expected


async def test_a_session_is_switched_only_when_the_plan_changes(
    conn: asyncpg.Connection[asyncpg.Record],
) -> None:
    """One SET per change of plan, none inside a transaction, and none for a query
    whose plan the session already has."""
    await conn.execute("SET plan_cache_mode = force_custom_plan")  # as the pool starts it
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query.split("\n")[-1]))
    get_deal, count = sqlcat.One("get_deal"), sqlcat.Value("count_deals")
    totals = sqlcat.Value("count_deals_from_totals")  # plan: any, in either mode
    await totals(conn, None, None, None)
    await get_deal(conn, 1)
    await get_deal(conn, 2)
    await totals(conn, "Paris", 3, None)
    await count(conn, *NO_FILTER)
    async with conn.transaction():
        await get_deal(conn, 3)  # stays custom: a rollback would undo a SET
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    await count(conn, *NO_FILTER)
    sets = [line for line in sent if line.startswith("SET plan_cache_mode")]
    assert sets == [
        "SET plan_cache_mode = force_generic_plan",
        "SET plan_cache_mode = force_custom_plan",
    ]
    assert sqlcat.session_mode(conn) == "force_custom_plan"


SHAPE_CASES: list[tuple[str | None, int | None, int | None, int, int, int]] = [
    # city, min_stars, last_id, limit, skip, rows on the page
    (None, None, None, 20, 0, 20),
    (None, None, 19_990, 21, 0, 10),
    (None, None, None, 50, 19_980, 20),
    ("Paris", None, None, 20, 0, 20),
    ("paris", 3, None, 21, 0, 21),
    ("PARIS", 5, 7_000, 100, 0, 84),
    ("Lyon", None, None, 20, 300, 20),
    ("Thessaloniki", 1, 19_900, 20, 0, 4),
    ("nowhere", None, None, 20, 0, 0),
]


async def test_a_shape_query_answers_as_the_general_one(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """list_all_deals_by_id and list_deals_in_city_by_id (and their counts) give the
    same rows as list_deals_by_id (and count_deals) for the same request."""
    found = []
    for city, min_stars, last_id, limit, skip, _ in SHAPE_CASES:
        filters = deals.DealFilters(city=city, min_stars=min_stars)
        page = await deals.list_deals(
            conn, sort="id", filters=filters, key=None, last_id=last_id, limit=limit, skip=skip
        )
        general = await deals.LIST_DEALS["id"](conn, *filters.args(), last_id, limit, skip)
        assert page == [deal_from_row(row) for row in general], (city, min_stars, last_id)
        total = await deals.count_deals(conn, filters=filters)
        assert total == await deals.COUNT_DEALS(conn, *filters.args()), (city, min_stars)
        found.append(len(page))
    assert found == [case[-1] for case in SHAPE_CASES]


async def test_a_count_shape_answers_as_the_general_count(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """count_deals_in_price_range and count_category_deals count what count_deals and
    count_deals_in_category count."""
    cases = [
        deals.DealFilters(price_min=Decimal(100), price_max=Decimal(150)),
        deals.DealFilters(price_min=Decimal("99.99"), price_max=Decimal("300.01")),
        deals.DealFilters(price_min=Decimal("120.10"), price_max=Decimal("120.60")),
        deals.DealFilters(price_min=Decimal("899.5")),
        deals.DealFilters(price_max=Decimal(40)),
        deals.DealFilters(category="luxury"),
        deals.DealFilters(category="FAMILY"),
        deals.DealFilters(category="nothing"),
    ]
    found = []
    for filters in cases:
        general = deals.COUNT_DEALS if filters.category is None else deals.COUNT_DEALS_IN_CATEGORY
        count = await deals.count_deals(conn, filters=filters)
        assert count == await general(conn, *filters.args()), filters
        found.append(count > 0)
    assert found == [True, True, True, True, True, True, True, False]


async def test_stats_of_a_price_range_answer_as_the_general_query(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """deal_stats_in_price_range gives deal_stats_by_city's answer for a price range alone."""
    sizes = []
    for low, high in [("100", "150"), ("99.5", "101"), ("899.5", None), (None, "31"),
                      ("1000", None)]:  # fmt: skip
        filters = deals.DealFilters(
            price_min=None if low is None else Decimal(low),
            price_max=None if high is None else Decimal(high),
        )
        answer = await stats.deal_stats(conn, filters)
        assert answer == await stats.deal_stats(conn, filters, live=True), (low, high)
        sizes.append(sum(city.deal_count for city in answer))
    in_range = deals.DealFilters(price_min=Decimal(100), price_max=Decimal(150))
    assert sizes[0] == await deals.COUNT_DEALS(conn, *in_range.args())
    assert [size > 0 for size in sizes] == [True, True, True, True, False]


async def test_a_sort_with_no_filter_pages_as_the_general_query(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """list_all_deals_by_price (and -price, created_at, -created_at): the first page,
    an offset page and the keyset page after a row, as the optional-filter query."""
    sizes = []
    for sort in ("price", "-price", "created_at", "-created_at"):
        general = deals.LIST_DEALS[sort]
        for skip in (0, 19_990):
            page = await deals.list_deals(
                conn, sort=sort, filters=deals.NO_FILTERS, key=None, last_id=None,
                limit=21, skip=skip,
            )  # fmt: skip
            rows = await general(conn, *NO_FILTER, None, None, 21, skip)
            assert page == [deal_from_row(row) for row in rows], (sort, skip)
            sizes.append(len(page))
        last = page[4]
        key = last.price_per_night if "price" in sort else last.created_at
        after = await deals.list_deals(
            conn, sort=sort, filters=deals.NO_FILTERS, key=key, last_id=last.id,
            limit=21, skip=0,
        )  # fmt: skip
        rows = await general(conn, *NO_FILTER, key, last.id, 21, 0)
        assert after == [deal_from_row(row) for row in rows], sort
        sizes.append(len(after))
    assert sizes == [21, 10, 5] * 4


PRICE_CASES: list[tuple[str | None, str | None, int | None, int, int]] = [
    # price_min, price_max, last_id, limit, skip
    ("100", "150", None, 20, 0),  # wide: the walk by id
    ("100", "150", 19_000, 21, 0),
    ("100", "150", None, 20, 300),
    ("100", "100.10", None, 21, 0),  # narrow: the range's index entries
    ("100", "101", 5_000, 20, 3),
    ("899.5", None, None, 20, 0),
    (None, "31", None, 50, 0),
    ("100", "150", 19_950, 20, 0),  # the walk reaches the end of the table
    ("100", "150", 20_000, 20, 0),  # nothing after the cursor
    ("1000", None, None, 20, 0),  # an empty range
]


async def test_a_price_range_page_answers_as_the_general_one(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """list_deals_in_price_range_by_id, whichever branch runs (generic plan, as the pool
    runs it), gives list_deals_by_id's rows for the same request."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    found = []
    for low, high, last_id, limit, skip in PRICE_CASES:
        filters = deals.DealFilters(
            price_min=None if low is None else Decimal(low),
            price_max=None if high is None else Decimal(high),
        )
        page = await deals.list_deals(
            conn, sort="id", filters=filters, key=None, last_id=last_id, limit=limit, skip=skip
        )
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        general = await deals.LIST_DEALS["id"](conn, *filters.args(), last_id, limit, skip)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        assert page == [deal_from_row(row) for row in general], (low, high, last_id, skip)
        found.append(len(page))
    assert found == [20, 21, 20, 3, 10, 4, 21, 2, 0, 0]


async def test_a_price_range_json_page_encodes_the_general_ones_rows(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """list_deals_in_price_range_by_id_json, whichever branch runs (generic plan), is the
    JSON of list_deals_by_id's rows for the same request, with count_deals' total."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    for low, high, last_id, limit, skip in PRICE_CASES:
        filters = deals.DealFilters(
            price_min=None if low is None else Decimal(low),
            price_max=None if high is None else Decimal(high),
        )
        bounds = deals.price_bounds(filters)
        row = await deals.LIST_DEALS_IN_PRICE_RANGE_BY_ID_JSON(
            conn, *bounds, last_id or 0, limit, skip, True
        )
        uncounted = await deals.LIST_DEALS_IN_PRICE_RANGE_BY_ID_JSON(
            conn, *bounds, last_id or 0, limit, skip, False
        )
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        general = await deals.LIST_DEALS["id"](conn, *filters.args(), last_id, limit, skip)
        total = await deals.COUNT_DEALS(conn, *filters.args())
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        assert row is not None
        assert uncounted is not None
        page = DealPage(
            items=[deal_from_row(r) for r in general], total=total, skip=skip, limit=limit
        )
        expected = msgspec.json.encode(page)
        assert deal_page_json(row["items"], row["total"], skip, limit) == expected, (low, high)
        assert uncounted["total"] is None
        assert uncounted["items"] == row["items"]


async def test_a_category_page_answers_as_the_general_one(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """list_deals_in_category_by_id gives list_deals_by_id's rows for the same request."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    found = []
    for category, last_id, limit, skip in [
        ("luxury", None, 20, 0),
        ("FAMILY", 12_345, 21, 0),
        ("budget", None, 20, 500),
        ("romantic", 19_990, 20, 0),
        ("nothing", None, 20, 0),
    ]:
        filters = deals.DealFilters(category=category)
        page = await deals.list_deals(
            conn, sort="id", filters=filters, key=None, last_id=last_id, limit=limit, skip=skip
        )
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        general = await deals.LIST_DEALS["id"](conn, *filters.args(), last_id, limit, skip)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        assert page == [deal_from_row(row) for row in general], (category, last_id, skip)
        found.append(len(page))
    assert found[:3] == [20, 21, 20]
    assert 0 < found[3] < 20
    assert found[4] == 0


async def test_the_estimate_with_no_filter_is_the_planners(
    bench_rows: int, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    """estimate_all_deals reads, from pg_class, the number EXPLAIN of the page query gives;
    before the table was ever analyzed it leaves the estimate to EXPLAIN."""
    estimate = await deals.estimate_deals(conn, filters=deals.NO_FILTERS)
    explained = await deals.LIST_ALL_DEALS_BY_ID.estimate(conn, 0, None, 0)
    assert estimate == explained == bench_rows
    await conn.execute("INSERT INTO deals (hotel_id, room_type, price_per_night, original_price,"
                       " discount_percent, checkin_date, checkout_date)"
                       " SELECT hotel_id, room_type, price_per_night, original_price,"
                       " discount_percent, checkin_date, checkout_date FROM deals")  # fmt: skip
    # the table doubled since the last ANALYZE: both scale reltuples to its pages now
    estimate = await deals.estimate_deals(conn, filters=deals.NO_FILTERS)
    assert estimate == await deals.LIST_ALL_DEALS_BY_ID.estimate(conn, 0, None, 0)
    assert estimate > bench_rows * 3 // 2
    await conn.execute("UPDATE pg_class SET reltuples = -1 WHERE oid = 'deals'::regclass")
    assert await deals.ESTIMATE_ALL_DEALS(conn) is None
    assert await deals.estimate_deals(conn, filters=deals.NO_FILTERS) == (
        await deals.LIST_ALL_DEALS_BY_ID.estimate(conn, 0, None, 0)
    )
