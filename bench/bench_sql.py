"""The service's statements against a plain query per answer: `python -m bench.bench_sql`.

For each answer the API gives (issue 16), pgbench runs on the same database:
- the service's statements, read from the catalogue by name, with the values
  the API binds, -M prepared, under the plan_cache_mode each query's
  `-- plan:` line gives it (the pool's sessions run them so: catalogue.py);
- a plain query for the same answer, which builds the JSON in PostgreSQL
  (the four of ../shared/bench/reference-sql, and the same style for the
  other shapes), -M prepared under the server's default (auto).
Each side is warmed up once, then run --rounds times (4 s each), the two
alternately and the order swapped every round, so that a drift of the
machine's load hits both alike; the median run of each is kept. Then a
table, service vs plain, at 50,000 and 1,000,000 deals. One run, one
machine: the ratio per row is what is judged (goal >= 1.0).

Measured on the way (single client, asyncpg, median of 200 runs, 1M deals):
get_deal 0.42 ms with force_custom_plan, 0.09 ms generic (auto settles on it
after 5 runs); list_deals_by_id 0.56 ms named vs 0.95 ms as an unnamed
statement (always custom, but asyncpg prepares it first: a round trip);
under auto, PostgreSQL turned 3 of the 5 optional-filter list queries generic
on a 20,000-deal database after a few deep or category pages, hence the
explicit per-query modes.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import ROOT
from bench.common import LoadResult, embedded_server, loaded_database, run_pgbench
from service import migrate
from service.db.catalogue import CATALOGUE, PLAN_MODES, SESSION_MODE

RANDOM_ID = object()  # the deal id, drawn per transaction as pgbench's :id
REFERENCE = ROOT.parent / "shared" / "bench" / "reference-sql"
PAGE = 20
CITY = "Paris"
NO_FILTERS: tuple[Any, ...] = (None,) * 6

# The JSON of one deal, as the plain queries build it (reference-sql's columns).
DEAL_JSON = """
        SELECT d.id,
               json_build_object('id', h.id, 'name', h.name, 'city', h.city,
                                 'country', h.country, 'phone', h.phone,
                                 'star_rating', h.star_rating) AS hotel,
               d.room_type,
               d.price_per_night::text AS price_per_night,
               d.original_price::text AS original_price,
               d.discount_percent::text AS discount_percent,
               d.checkin_date, d.checkout_date, d.is_available,
               COALESCE((SELECT json_agg(c.name ORDER BY c.name)
                           FROM deal_categories dc
                           JOIN categories c ON c.id = dc.category_id
                          WHERE dc.deal_id = d.id), '[]'::json) AS categories,
               d.created_at
          FROM deals d
          JOIN hotels h ON h.id = d.hotel_id"""


def plain_page(where: str, order: str, total: str | None, limit: int = PAGE) -> str:
    items = (
        f"COALESCE((SELECT json_agg(p) FROM ({DEAL_JSON}\n         {where}\n"
        f"         ORDER BY {order} LIMIT {limit}) p), '[]'::json)"
    )
    if total is None:
        return f"SELECT json_build_object('items', {items});\n"
    return f"SELECT json_build_object('items', {items},\n    'total', ({total}));\n"


@dataclass(frozen=True)
class Answer:
    label: str
    statements: Sequence[tuple[str, tuple[Any, ...]]]  # (catalogue name, the API's values)
    plain: str  # a pgbench script: reference-sql's file name, or the SQL itself
    defines: dict[str, str] = field(default_factory=dict)  # -D for both scripts

    def plain_script(self) -> str:
        if self.plain.endswith(".sql") and "\n" not in self.plain:
            return (REFERENCE / self.plain).read_text()
        return self.plain


PLAIN_STATS_IN_PRICE_RANGE = """\
SELECT COALESCE(json_agg(s ORDER BY s.deal_count DESC, s.city), '[]'::json)
  FROM (SELECT h.city,
               round(avg(d.price_per_night), 2)::text AS avg_price,
               count(*) AS deal_count
          FROM deals d
          JOIN hotels h ON h.id = d.hotel_id
         WHERE d.price_per_night BETWEEN 100 AND 150
         GROUP BY h.city) s;
"""


def answers(rows: int) -> list[Answer]:
    deep = rows - 100  # a keyset page near the end of the table
    return [
        Answer(
            "detail GET /deals/{id}",
            [("get_deal", (RANDOM_ID,))],
            "detail.sql",
            {"minid": "1", "maxid": str(rows)},
        ),
        Answer(
            "first page + exact total",
            [("list_all_deals_by_id_json", (0, PAGE, 0, True))],
            "list.sql",
        ),
        Answer(
            "city page + total (Paris, 3+ stars)",
            [("list_deals_in_city_by_id_json", (CITY, 3, 0, PAGE, 0, True))],
            "list_city.sql",
            {"city": CITY.lower()},
        ),
        # GET /deals/stats with no filter, as the API answers it (service/db/stats.py)
        Answer("stats", [("deal_stats_from_totals", (None, None))], "stats.sql"),
        # a price range, which deal_totals cannot answer: the deals in it
        Answer(
            "stats, price 100-150",
            [("deal_stats_in_price_range", ("100", "150"))],
            PLAIN_STATS_IN_PRICE_RANGE,
        ),
        Answer(
            "price range 100-150 + total",
            [("list_deals_in_price_range_by_id_json", ("100", "150", 0, PAGE, 0, True))],
            plain_page(
                "WHERE d.price_per_night BETWEEN 100 AND 150",
                "d.id",
                "SELECT count(*) FROM deals WHERE price_per_night BETWEEN 100 AND 150",
            ),
        ),
        Answer(
            "category luxury + total",
            [
                ("list_deals_in_category_by_id", ("luxury", 0, PAGE, 0)),
                ("count_category_deals", ("luxury",)),
            ],
            plain_page(
                "WHERE d.id IN (SELECT dc.deal_id FROM deal_categories dc JOIN categories c"
                " ON c.id = dc.category_id WHERE c.name = 'luxury')",
                "d.id",
                "SELECT count(*) FROM deal_categories dc JOIN categories c"
                " ON c.id = dc.category_id WHERE c.name = 'luxury'",
            ),
        ),
        Answer(
            "keyset page by id, deep",
            [("list_all_deals_by_id", (deep, PAGE + 1, 0))],
            plain_page(f"WHERE d.id > {deep}", "d.id", None, PAGE + 1),
        ),
        Answer(
            "keyset page by price (first)",
            [("list_all_deals_by_price", ("0", 0, PAGE + 1, 0))],
            plain_page("", "d.price_per_night, d.id", None, PAGE + 1),
        ),
        Answer(
            "hotels page + total",
            [("list_all_hotels_counted", (PAGE, 0))],
            "SELECT json_build_object('items', COALESCE((SELECT json_agg(h) FROM ("
            "SELECT id, name, city, country, phone, star_rating FROM hotels ORDER BY id "
            f"LIMIT {PAGE}) h), '[]'::json), 'total', (SELECT count(*) FROM hotels));\n",
        ),
        Answer(
            "first page + count=estimated",
            [
                ("list_all_deals_by_id", (0, PAGE, 0)),
                ("estimate_all_deals", ()),
            ],
            plain_page(
                "",
                "d.id",
                "SELECT reltuples::bigint FROM pg_class WHERE oid = 'deals'::regclass",
            ),
        ),
    ]


def mode_of(statements: Sequence[tuple[str, tuple[Any, ...]]]) -> str:
    """The plan_cache_mode the pool runs these statements in (one per answer, by design)."""
    modes = set()
    for name, _ in statements:
        query = CATALOGUE[name.removeprefix("EXPLAIN ")]
        # EXPLAIN plans every time; a `plan: any` query runs in the mode of the others
        if query.params and not name.startswith("EXPLAIN ") and query.plan != "any":
            modes.add(PLAN_MODES[query.plan or "custom"])
    if len(modes) > 1:
        raise SystemExit(f"statements {statements} mix plan modes {modes}")
    return modes.pop() if modes else SESSION_MODE


def service_script(answer: Answer) -> tuple[str, dict[str, str]]:
    """The answer's statements as one pgbench script and its -D values.

    Each $n becomes a pgbench variable (bound as a parameter with -M prepared),
    or NULL where the API binds None: the queries that get NULLs are custom,
    whose plans fold a NULL parameter as they fold the literal.
    """
    lines: list[str] = []
    defines = dict(answer.defines)
    for number, (name, values) in enumerate(answer.statements, start=1):
        if name.startswith("EXPLAIN "):
            # count=estimated: EXPLAIN of the page query with no limit, values inlined
            # (and its header line left out: pgbench would read `:many` as a variable)
            query = CATALOGUE[name.removeprefix("EXPLAIN ")]
            statement = query.sql.split("\n", 1)[1]
            inlined = ["NULL" if v is None else str(v) for v in values]

            def inline(match: re.Match[str], inlined: list[str] = inlined) -> str:
                return f"{inlined[int(match[1]) - 1]}::"

            sql = re.sub(r"\$(\d+)::", inline, statement)
            lines.append(f"EXPLAIN (FORMAT JSON) {sql};")
            continue
        query = CATALOGUE[name]
        assert len(values) == query.params, name

        # A generic plan keeps `$n IS NULL`, which a NULL literal would fold away.
        assert query.plan != "generic" or None not in values, f"{name}: NULL for a generic plan"

        def bind(match: re.Match[str], number: int = number, values: Any = values) -> str:
            value = values[int(match[1]) - 1]
            if value is RANDOM_ID:
                return ":id"
            if value is None:
                return "NULL"
            variable = f"s{number}p{match[1]}"
            defines[variable] = str(value)
            return f":{variable}"

        lines.append(re.sub(r"\$(\d+)", bind, query.sql) + ";")
    if any(v is RANDOM_ID for _, values in answer.statements for v in values):
        lines.insert(0, "\\set id random(:minid, :maxid)")
    return "\n".join(lines) + "\n", defines


@dataclass
class Row:
    answer: Answer
    rows: int
    service: LoadResult
    plain: LoadResult

    @property
    def ratio(self) -> float:
        return self.service.requests_per_s / self.plain.requests_per_s


def measure(url: str, answer: Answer, args: argparse.Namespace) -> tuple[LoadResult, LoadResult]:
    """(service, plain): each side warmed up once, then --rounds runs of each, alternately and
    the order swapped every round, so that a drift of the machine's load hits both alike;
    the median run of each side."""
    script, defines = service_script(answer)
    sides = {
        "service": (script, defines, f"-c plan_cache_mode={mode_of(answer.statements)}"),
        "plain": (answer.plain_script(), answer.defines, ""),
    }
    runs: dict[str, list[LoadResult]] = {side: [] for side in sides}
    for text, extra, opts in sides.values():
        if args.warmup:
            run_pgbench(
                url, text, clients=args.clients, seconds=args.warmup, defines=extra, options=opts
            )
    for round_number in range(args.rounds):
        for side in list(sides) if round_number % 2 == 0 else reversed(list(sides)):
            text, extra, opts = sides[side]
            result = run_pgbench(
                url, text, clients=args.clients, seconds=args.seconds, defines=extra, options=opts
            )
            runs[side].append(result)
    service, plain = (
        sorted(runs[side], key=lambda r: r.requests_per_s)[len(runs[side]) // 2] for side in sides
    )
    return service, plain


def report(measured: list[Row]) -> bool:
    ok = True
    sizes = sorted({m.rows for m in measured})
    print(f"\n{'answer':<38}" + "".join(
        f" {'service':>9} {'plain':>8} {'ratio':>6}" for _ in sizes))  # fmt: skip
    print(f"{'(pgbench tps; ' + ', '.join(f'{s:,}' for s in sizes) + ' deals)':<38}")
    for label in dict.fromkeys(m.answer.label for m in measured):
        cells = ""
        for size in sizes:
            found = [m for m in measured if m.answer.label == label and m.rows == size]
            if not found:
                cells += f" {'':>9} {'':>8} {'':>6}"
                continue
            m = found[0]
            ok &= m.ratio >= 1.0
            cells += (
                f" {m.service.requests_per_s:>9.0f} {m.plain.requests_per_s:>8.0f} {m.ratio:>6.2f}"
            )
        print(f"{label:<38}{cells}")
    print(f"\n{'all >= 1.0' if ok else 'some below 1.0'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, action="append", help="50000 and 1000000 by default")
    parser.add_argument("--seconds", type=int, default=4, help="of each measured run")
    parser.add_argument("--warmup", type=int, default=2, help="of each side, once")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each side, alternately (median kept)"
    )
    parser.add_argument("--clients", type=int, default=8, help="as reference-sql/README runs")
    parser.add_argument("--only", default="", help="comma-separated substrings of answers")
    parser.add_argument("--show", action="store_true", help="print each service script")
    args = parser.parse_args()
    server = embedded_server()
    measured: list[Row] = []
    for rows in args.rows or [50_000, 1_000_000]:
        url = loaded_database(server, rows)
        migrate.apply(url)  # a bench database built before the newest migration
        for answer in answers(rows):
            if args.only and not any(s in answer.label for s in args.only.split(",")):
                continue
            if args.show:
                print(service_script(answer)[0])
            service, plain = measure(url, answer, args)
            measured.append(Row(answer, rows, service, plain))
            print(
                f"{rows:>9} {answer.label:<38} service {service.requests_per_s:8.0f} tps "
                f"({mode_of(answer.statements)})  plain {plain.requests_per_s:8.0f} tps  "
                f"= {service.requests_per_s / plain.requests_per_s:5.2f}x",
                flush=True,
            )
    raise SystemExit(0 if report(measured) else 1)


if __name__ == "__main__":
    main()
