"""Query plans on 1,000,000 deals: `python -m bench.bench_plans`.

For each list query shape (no filter, each filter, each sort, keyset pages)
and each stats shape, EXPLAIN (ANALYZE, BUFFERS) of the named query from the
catalogue, with the parameters the API binds for that request, as the pool
plans it: a `-- plan: generic` query's generic plan, the others' custom plan
(each sees its values). Then a PASS/FAIL table:

- the city filter, the price range and keyset pages scan no deals sequentially;
- a keyset page at the end of the table costs at most 1.5x the first page
  (the median of repeated runs), with the offset page at the same depth
  printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from bench.common import embedded_server, loaded_database
from service.db.catalogue import CATALOGUE
from service.db.deals import DealFilters

PAGE = 20
NO_FILTERS: tuple[Any, ...] = (None, None, None, None, None, None)
SEQ_SCAN_ON_DEALS = re.compile(r"Seq Scan on deals\s")
EXECUTION_TIME = re.compile(r"Execution Time: ([\d.]+) ms")


@dataclass
class Shape:
    label: str  # the request it stands for
    query: str  # the catalogue name
    args: tuple[Any, ...]
    no_seq_scan: bool = False  # checked: no Seq Scan on deals
    plan: list[str] = field(default_factory=list)

    @property
    def seq_scan(self) -> bool:
        return any(SEQ_SCAN_ON_DEALS.search(line) for line in self.plan)

    @property
    def execution_ms(self) -> float:
        for line in self.plan:
            match = EXECUTION_TIME.search(line)
            if match:
                return float(match[1])
        return float("nan")


def list_shapes() -> list[Shape]:
    def offset_page(
        label: str, query: str, args: tuple[Any, ...], *, no_seq_scan: bool = False
    ) -> list[Shape]:
        """An offset page: the page query (no keyset, limit 20, skip 0) and its count=exact."""
        keyset = (None,) if query == "list_deals_by_id" else (None, None)
        count = "count_deals" if args[4] is None else "count_deals_in_category"
        return [
            Shape(label, query, (*args, *keyset, PAGE, 0), no_seq_scan=no_seq_scan),
            Shape(f"{label} (total)", count, args, no_seq_scan=no_seq_scan),
        ]

    by_id = "list_deals_by_id"
    return [
        # The filter shapes with a query of their own (service/db/deals.py), generic plans:
        Shape("GET /deals (its own query)", "list_all_deals_by_id", (0, PAGE, 0)),
        Shape("GET /deals (total, deal_totals)", "count_deals_from_totals", (None, None, None)),
        Shape(
            "GET /deals?city=Paris&min_stars=3 (its own query)",
            "list_deals_in_city_by_id",
            ("Paris", 3, 0, PAGE, 0),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals?city=Paris&min_stars=3 (total, deal_totals)",
            "count_deals_from_totals",
            ("Paris", 3, None),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals (page and total as JSON)",
            "list_all_deals_by_id_json",
            (0, PAGE, 0, True),
        ),
        Shape(
            "GET /deals?city=Paris&min_stars=3 (page and total as JSON)",
            "list_deals_in_city_by_id_json",
            ("Paris", 3, 0, PAGE, 0, True),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals?price_min=100&price_max=150 (page and total as JSON)",
            "list_deals_in_price_range_by_id_json",
            (Decimal(100), Decimal(150), 0, PAGE, 0, True),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals?price_min=100&price_max=100.05 (page and total as JSON)",
            "list_deals_in_price_range_by_id_json",
            (Decimal(100), Decimal("100.05"), 0, PAGE, 0, True),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals?price_min=100&price_max=150 (its own query)",
            "list_deals_in_price_range_by_id",
            (Decimal(100), Decimal(150), 0, PAGE, 0),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals?price_min=100&price_max=100.05 (its own query)",
            "list_deals_in_price_range_by_id",
            (Decimal(100), Decimal("100.05"), 0, PAGE, 0),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals?price_min=100&price_max=150 (total, own)",
            "count_deals_in_price_range",
            (Decimal(100), Decimal(150)),
            no_seq_scan=True,
        ),
        Shape(
            "GET /deals?category=luxury (its own query)",
            "list_deals_in_category_by_id",
            ("luxury", 0, PAGE, 0),
            no_seq_scan=True,
        ),
        Shape("GET /deals?category=luxury (total, own)", "count_category_deals", ("luxury",)),
        # The general optional-filter queries, custom plans:
        *offset_page("GET /deals", by_id, NO_FILTERS),
        *offset_page(
            "GET /deals?city=Paris", by_id, DealFilters(city="Paris").args(), no_seq_scan=True
        ),
        *offset_page(
            "GET /deals?city=Paris&min_stars=3",
            by_id,
            DealFilters(city="Paris", min_stars=3).args(),
            no_seq_scan=True,
        ),
        *offset_page("GET /deals?min_stars=3", by_id, DealFilters(min_stars=3).args()),
        *offset_page(
            "GET /deals?price_min=100&price_max=150",
            by_id,
            DealFilters(price_min=Decimal(100), price_max=Decimal(150)).args(),
            no_seq_scan=True,
        ),
        *offset_page("GET /deals?category=luxury", by_id, DealFilters(category="luxury").args()),
        *offset_page("GET /deals?is_available=true", by_id, DealFilters(is_available=True).args()),
        *offset_page("GET /deals?sort=price", "list_deals_by_price", NO_FILTERS),
        *offset_page("GET /deals?sort=-price", "list_deals_by_price_desc", NO_FILTERS),
        *offset_page("GET /deals?sort=created_at", "list_deals_by_created_at", NO_FILTERS),
        *offset_page("GET /deals?sort=-created_at", "list_deals_by_created_at_desc", NO_FILTERS),
        Shape(
            "GET /deals?sort=price&price_min=100&price_max=150",
            "list_deals_by_price",
            (
                *DealFilters(price_min=Decimal(100), price_max=Decimal(150)).args(),
                None,
                None,
                PAGE,
                0,
            ),
            no_seq_scan=True,
        ),
    ]


def stats_shapes() -> list[Shape]:
    """Each stats shape with the query the API sends for it (service/db/stats.py)."""

    def stats(label: str, query: str, *args: Any) -> Shape:
        return Shape(f"GET /deals/stats{label}", query, args)

    return [
        stats("", "deal_stats_from_totals", None, None),
        stats("?min_stars=3", "deal_stats_from_totals", 3, None),
        stats(
            "?price_min=100&price_max=150", "deal_stats_in_price_range", Decimal(100), Decimal(150)
        ),
        stats("?category=luxury", "deal_stats_by_city", None, None, None, "luxury", None),
        stats("?is_available=true", "deal_stats_from_totals", None, True),
    ]


@dataclass
class Depth:
    """Keyset pages at the start and at the end of one sort, and the offset page as deep."""

    sort: str
    first: Shape
    end: Shape
    offset: Shape
    times_ms: dict[str, float] = field(default_factory=dict)


# sort -> (query, the keyset columns, ORDER BY of the whole table)
SORTS = {
    "id": ("list_deals_by_id", "id", "id"),
    "price": ("list_deals_by_price", "price_per_night, id", "price_per_night, id"),
    "-created_at": (
        "list_deals_by_created_at_desc",
        "created_at, id",
        "created_at DESC, id DESC",
    ),
}


async def depth_shapes(conn: asyncpg.Connection[asyncpg.Record]) -> list[Depth]:
    """The API's keyset page asks limit+1 rows after the previous page's last row."""
    total: int = await conn.fetchval("SELECT count(*) FROM deals")
    depths = []
    for sort, (query, columns, order) in SORTS.items():
        # The row just before the last page: its key is what the previous cursor holds.
        skip = total - PAGE
        row = await conn.fetchrow(
            f"SELECT {columns} FROM deals ORDER BY {order} OFFSET $1 LIMIT 1", skip - 1
        )
        assert row is not None
        end_args: tuple[Any, ...] = tuple(row.values())
        first_args: tuple[Any, ...] = (None,) * len(end_args)  # no cursor yet
        offset_args = first_args
        depths.append(
            Depth(
                sort=sort,
                first=Shape(f"keyset first page, sort={sort}", query,
                            (*NO_FILTERS, *first_args, PAGE + 1, 0), no_seq_scan=True),
                end=Shape(f"keyset last page, sort={sort}", query,
                          (*NO_FILTERS, *end_args, PAGE + 1, 0), no_seq_scan=True),
                offset=Shape(f"offset page skip={skip}, sort={sort}", query,
                             (*NO_FILTERS, *offset_args, PAGE, skip)),
            )
        )  # fmt: skip
    return depths


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str | datetime):
        return "'" + str(value).replace("'", "''") + "'"
    return str(value)


async def explain(conn: asyncpg.Connection[asyncpg.Record], shape: Shape) -> None:
    """EXPLAIN ANALYZE of the plan the pool runs: a `-- plan: generic` query's generic
    plan (PREPAREd, EXECUTEd under force_generic_plan), else the custom plan."""
    query = CATALOGUE[shape.query]
    if query.plan == "generic" and query.params:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE bench_plan AS {query.sql}")
        try:
            values = ", ".join(literal(v) for v in shape.args)
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_plan({values})")
        finally:
            await conn.execute("DEALLOCATE bench_plan")
            await conn.execute("SET plan_cache_mode = force_custom_plan")
    else:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query.sql}", *shape.args)
    shape.plan = [row[0] for row in rows]


async def median_ms(conn: asyncpg.Connection[asyncpg.Record], shape: Shape, repeats: int) -> float:
    """The median wall time of running the query as the API does (prepared, custom plans)."""
    sql = CATALOGUE[shape.query].sql
    await conn.fetch(sql, *shape.args)  # warm the cache and the statement
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await conn.fetch(sql, *shape.args)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def show_args(args: tuple[Any, ...]) -> str:
    def one(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    return " ".join(f"${n}={one(v)}" for n, v in enumerate(args, start=1))


def print_plan(shape: Shape) -> None:
    print(f"\n== {shape.label}: {shape.query}  {show_args(shape.args)}")
    for line in shape.plan:
        print(f"   {line}")


async def run(url: str, repeats: int, offset_repeats: int) -> bool:
    conn = await asyncpg.connect(
        url,
        server_settings={"application_name": "bench-plans", "plan_cache_mode": "force_custom_plan"},
    )
    try:
        shapes = list_shapes() + stats_shapes()
        depths = await depth_shapes(conn)
        for shape in shapes:
            await explain(conn, shape)
            print_plan(shape)
        for depth in depths:
            for shape in (depth.first, depth.end, depth.offset):
                await explain(conn, shape)
                print_plan(shape)
        for depth in depths:
            depth.times_ms["first"] = await median_ms(conn, depth.first, repeats)
            depth.times_ms["end"] = await median_ms(conn, depth.end, repeats)
            depth.times_ms["offset"] = await median_ms(conn, depth.offset, offset_repeats)
    finally:
        await conn.close()
    return report(shapes, depths, repeats, offset_repeats)


def report(shapes: list[Shape], depths: list[Depth], repeats: int, offset_repeats: int) -> bool:
    ok = True
    print("\n== plan times (EXPLAIN ANALYZE execution time)")
    for shape in shapes:
        seq = "Seq Scan on deals" if shape.seq_scan else ""
        print(f"{shape.label:<52} {shape.query:<30} {shape.execution_ms:>9.2f} ms  {seq}")

    print("\n== PASS/FAIL")
    checked = [s for s in shapes if s.no_seq_scan]
    checked += [s for d in depths for s in (d.first, d.end)]
    for shape in checked:
        passed = not shape.seq_scan
        ok &= passed
        verdict = "PASS" if passed else "FAIL"
        what = "Seq Scan on deals" if shape.seq_scan else "no Seq Scan on deals"
        print(f"{verdict}  {shape.label:<52} {shape.query:<30} {what}")
    print(
        f"\nkeyset page at the end vs the first page (median wall time of {repeats} runs; "
        f"offset page as deep: median of {offset_repeats}); goal end/first <= 1.5"
    )
    for depth in depths:
        t = depth.times_ms
        ratio = t["end"] / t["first"]
        passed = ratio <= 1.5
        ok &= passed
        print(
            f"{'PASS' if passed else 'FAIL'}  sort={depth.sort:<12} first {t['first']:7.3f} ms  "
            f"end {t['end']:7.3f} ms  end/first {ratio:5.2f}   "
            f"offset as deep {t['offset']:9.1f} ms = {t['offset'] / t['first']:7.0f}x first"
        )
    print(f"\n{'all PASS' if ok else 'some FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=21, help="runs of each keyset page")
    parser.add_argument("--offset-repeats", type=int, default=3, help="runs of the deep offset")
    args = parser.parse_args()
    url = loaded_database(embedded_server(), args.rows)
    ok = asyncio.run(run(url, args.repeats, args.offset_repeats))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
