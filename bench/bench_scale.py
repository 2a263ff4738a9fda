"""Every read endpoint at 50k, 1M and 10M deals: `python -m bench.bench_scale`.

For each size, a database loaded the way production loads it (`deals
generate` then `deals load`, with the loader's wall time and peak RSS from
/usr/bin/time -v), migrated to the newest migration, then one `deals serve`
worker per size (STATS_CACHE_SECONDS=0), all up at once, and a bounded load
of each endpoint, asked of every size back to back (so that the load of the
shared machine drifts little between the sizes compared), from
httpx: CONCURRENCY clients (one: each request alone, so a figure is what it
takes, not a queue) for SECONDS seconds (at least MIN_REQUESTS requests, or
MIN_SLOW_REQUESTS for what grows: p99 is then the slowest), p50/p99. Same queries, same
settings at every size (STATEMENT_TIMEOUT_MS raised so that the live shapes
at 10M finish).

The loaded databases are kept in a data directory of their own (--data,
default /work/bigdata/scale) and reused by the next run when they hold the
expected number of deals; --fresh rebuilds them. The CSVs go to --csv-dir.

What should stay flat (detail, keyset pages, first pages without an exact
count, filtered first pages) is checked against its 50k figure (PASS within
2x); what grows is printed with its growth factor. The growing shapes are
measured twice where a remedy exists, in the same run: the exact count and
the stats are asked once in a shape the summary serves (no price or category
filter) and once with price_min=0.01, a filter every deal passes (so the
same answer) that sends them to the live query over deals.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import httpx
import psycopg

from bench.common import DEALS, api_server, settle
from service import migrate
from service.api.paging import Position, encode_cursor, fingerprint
from service.embedded import EmbeddedPostgres

SIZES = (50_000, 1_000_000, 10_000_000)
CONCURRENCY = 1
SECONDS = 6.0
MIN_REQUESTS = 8
MIN_SLOW_REQUESTS = 3
NO_FILTERS = fingerprint(None, None, None, None, None, None)


@dataclass(frozen=True)
class Loaded:
    rows: int
    url: str
    load_seconds: float | None  # None when the database was reused
    load_peak_rss_mb: float | None


def peak_of(time_v: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) from the report of /usr/bin/time -v."""
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v)[1])  # type: ignore[index]
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", time_v)[1]  # type: ignore[index]
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds, rss / 1024


def csv_for(rows: int, csv_dir: Path) -> Path:
    path = csv_dir / f"deals_{rows}.csv"
    if not path.exists():
        started = time.monotonic()
        subprocess.run([*DEALS, "generate", "--rows", str(rows), "-o", str(path)], check=True)
        print(f"generated {rows:,} rows in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return path


def deal_count(url: str) -> int | None:
    try:
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT count(*) FROM deals").fetchone()
    except psycopg.Error:
        return None
    return None if found is None else int(found[0])


def loaded(server: EmbeddedPostgres, rows: int, csv_dir: Path, *, fresh: bool) -> Loaded:
    """A database holding the generated file of `rows` deals, loaded by `deals load`."""
    name = f"scale_{rows}"
    url = server.url(name)
    if not fresh and deal_count(url) == rows:
        started = time.monotonic()
        applied = migrate.apply(url)  # a reused database gets the newest migrations (backfills)
        if applied:
            took = time.monotonic() - started
            print(f"{name}: applied {', '.join(applied)} in {took:.1f} s", file=sys.stderr)
        settle(url)
        return Loaded(rows, url, None, None)
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    migrate.apply(url)
    path = csv_for(rows, csv_dir)
    done = subprocess.run(
        ["/usr/bin/time", "-v", *DEALS, "load", str(path)],
        env={**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"deals load failed: {done.stderr[-2000:]}")
    seconds, rss = peak_of(done.stderr)
    print(f"loaded {rows:,} deals in {seconds:.1f} s, peak RSS {rss:.0f} MB", file=sys.stderr)
    settle(url)
    return Loaded(rows, url, seconds, rss)


TRIGGERS = tuple(  # deal_totals' (migration 0010) and deal_price_totals' (0013)
    f"{table}_{event}"
    for table in ("deal_totals", "deal_price_totals")
    for event in ("insert", "update", "delete", "truncate")
)
TOTALS = "the totals' triggers"


def without_totals(url: str) -> None:
    """The database without migrations 0010's and 0013's triggers: writes maintain nothing."""
    with psycopg.connect(url, autocommit=True) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON deals".encode())


def recreate(server: EmbeddedPostgres, name: str, template: str | None = None) -> str:
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        copy = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{copy}'.encode())
    return server.url(name)


def drop(server: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def load_cost(server: EmbeddedPostgres, rows: int, csv_dir: Path, rounds: int) -> None:
    """`deals load` of the same file into an empty database, with and without TRIGGERS."""
    path = csv_for(rows, csv_dir)
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(rounds):
        for label in ("without", "with"):
            url = recreate(server, f"cost_load_{label}")
            migrate.apply(url)
            if label == "without":
                without_totals(url)
            done = subprocess.run(
                ["/usr/bin/time", "-v", *DEALS, "load", str(path)],
                env={**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "warning"},
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            took, rss = peak_of(done.stderr)
            seconds[label].append(took)
            print(
                f"load {rows:,} {label} {TOTALS}: {took:.1f} s, peak RSS {rss:.0f} MB",
                file=sys.stderr,
            )
            drop(server, f"cost_load_{label}")
    plain, kept = statistics.median(seconds["without"]), statistics.median(seconds["with"])
    print(
        f"deals load of {rows:,} rows (median of {rounds}): {plain:.1f} s without {TOTALS}, "
        f"{kept:.1f} s with: x{kept / plain:.3f} ({kept - plain:+.1f} s)"
    )


WRITES = {
    "insert": "INSERT INTO deals (hotel_id, room_type, price_per_night, original_price, "
    "discount_percent, checkin_date, checkout_date) SELECT hotel_id, room_type, price_per_night, "
    "original_price, discount_percent, checkin_date, checkout_date FROM deals WHERE id = $1",
    "update price": "UPDATE deals SET price_per_night = price_per_night + 0.01, "
    "version = version + 1 WHERE id = $1",
    "update is_available": "UPDATE deals SET is_available = NOT is_available, "
    "version = version + 1 WHERE id = $1",
    "delete": "DELETE FROM deals WHERE id = $1",
}


async def write_cost(server: EmbeddedPostgres, template: str, per_round: int, rounds: int) -> None:
    """One deal written per transaction, as the API writes, with and without TRIGGERS."""
    urls = {}
    for label in ("without", "with"):
        urls[label] = recreate(server, f"cost_write_{label}", template)
        if label == "without":
            without_totals(urls[label])
    spent: dict[tuple[str, str], float] = {}
    done: dict[tuple[str, str], int] = {}
    conns = {label: await asyncpg.connect(url) for label, url in urls.items()}
    try:
        ids = [r[0] for r in await conns["with"].fetch("SELECT id FROM deals ORDER BY id")]
        cursor = 0
        for _ in range(rounds):
            for kind, sql in WRITES.items():
                chosen = ids[cursor : cursor + per_round]
                cursor += per_round
                for label, conn in conns.items():
                    started = time.perf_counter()
                    for deal in chosen:
                        async with conn.transaction():
                            await conn.execute(sql, deal)
                    key = (kind, label)
                    spent[key] = spent.get(key, 0.0) + time.perf_counter() - started
                    done[key] = done.get(key, 0) + len(chosen)
    finally:
        for conn in conns.values():
            await conn.close()
        for label in urls:
            drop(server, f"cost_write_{label}")
    for kind in WRITES:
        plain = spent[(kind, "without")] / done[(kind, "without")] * 1000
        kept = spent[(kind, "with")] / done[(kind, "with")] * 1000
        print(
            f"one {kind:<20} per transaction: {plain:.3f} ms without {TOTALS}, "
            f"{kept:.3f} ms with: x{kept / plain:.2f} ({kept - plain:+.3f} ms)"
        )


@dataclass(frozen=True)
class Shape:
    label: str
    path: str  # or a list of paths, cycled (detail)
    flat: bool  # should stay within 2x of its 50k figure


def shapes(url: str, rows: int) -> list[Shape]:
    with psycopg.connect(url) as conn:
        ids = [
            r[0]
            for r in conn.execute("SELECT id FROM deals ORDER BY id").fetchall()[
                :: max(1, rows // 200)
            ]
        ]
        middle = conn.execute(
            "SELECT id, price_per_night FROM deals ORDER BY id OFFSET %s LIMIT 1", (rows // 2,)
        ).fetchone()
    assert middle is not None
    by_id = encode_cursor(Position(sort="id", key=None, last_id=middle[0], filters=NO_FILTERS))
    by_price = encode_cursor(
        Position(sort="price", key=str(middle[1]), last_id=middle[0], filters=NO_FILTERS)
    )
    return [
        Shape("GET /deals/{id}", "|".join(f"/deals/{i}" for i in ids), True),
        Shape("first page, count=none", "/deals?count=none", True),
        Shape("first page, count=estimated", "/deals?count=estimated", True),
        Shape("first page, exact (summary)", "/deals", True),
        Shape("first page, exact (live)", "/deals?price_min=0.01", False),
        Shape("keyset page, middle (id)", f"/deals?cursor={by_id}", True),
        Shape("keyset page, middle (price)", f"/deals?sort=price&cursor={by_price}", True),
        Shape("offset page, middle", f"/deals?count=none&skip={rows // 2}", False),
        Shape("city page, count=none", "/deals?city=paris&count=none", True),
        Shape("city page, exact (summary)", "/deals?city=paris", True),
        Shape("city page, exact (live)", "/deals?city=paris&price_min=0.01", False),
        Shape("price range, count=none", "/deals?price_min=100&price_max=110&count=none", True),
        Shape("category, count=none", "/deals?category=family&count=none", True),
        Shape("GET /hotels", "/hotels", True),
        Shape("stats (summary)", "/deals/stats", True),
        Shape(
            "stats, min_stars+available (summary)",
            "/deals/stats?min_stars=4&is_available=true",
            True,
        ),
        Shape("stats (live)", "/deals/stats?price_min=0.01", False),
        Shape("stats, category (live)", "/deals/stats?category=family", False),
    ]


@dataclass(frozen=True)
class Figure:
    p50_ms: float
    p99_ms: float
    requests: int
    db_ms: float = 0.0  # PostgreSQL's execution time per request (pg_stat_statements)


def statements_reset(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")


def statements_ms(admin_url: str, database: str) -> float:
    """Execution time of every statement run in `database` since the reset, in ms."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT coalesce(sum(s.total_exec_time), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
            (database,),
        ).fetchone()
    return float(found[0]) if found else 0.0


async def measure(base: str, shape: Shape, seconds: float) -> Figure:
    """CONCURRENCY clients, one after another's answer: the time a request takes, no queue."""
    clients = CONCURRENCY
    least = MIN_REQUESTS if shape.flat else MIN_SLOW_REQUESTS
    paths = shape.path.split("|")
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:

        async def one_client(k: int) -> None:
            i = k
            while time.monotonic() < deadline or len(latencies) < least:
                started = time.perf_counter()
                answer = await client.get(paths[i % len(paths)])
                latencies.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"{shape.path}: {answer.status_code} {answer.text[:300]}")
                i += clients

        if shape.flat:
            await client.get(paths[0])  # warm the plan and the pages once
        await asyncio.gather(*(one_client(k) for k in range(clients)))
    latencies.sort()
    return Figure(
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        requests=len(latencies),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--data", type=Path, default=Path("/work/bigdata/scale"))
    parser.add_argument("--csv-dir", type=Path, default=Path("/work/bigdata"))
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--fresh", action="store_true", help="reload even a matching database")
    parser.add_argument("--prepare-only", action="store_true", help="load, then stop")
    parser.add_argument("--keep-server", action="store_true", help="leave PostgreSQL running")
    parser.add_argument(
        "--costs",
        action="store_true",
        help="instead: what deal_totals' and deal_price_totals' triggers add to a 1M load and "
        "to one write (with vs without)",
    )
    parser.add_argument("--cost-rows", type=int, default=1_000_000)
    parser.add_argument("--cost-rounds", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.csv_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgres(args.data)
    server.start()
    try:
        if args.costs:
            loaded(server, SIZES[0], args.csv_dir, fresh=False)
            asyncio.run(write_cost(server, f"scale_{SIZES[0]}", per_round=200, rounds=5))
            load_cost(server, args.cost_rows, args.csv_dir, args.cost_rounds)
            return
        databases = [loaded(server, rows, args.csv_dir, fresh=args.fresh) for rows in sizes]
        if args.prepare_only:
            return
        results: dict[str, dict[int, Figure]] = {}
        env = {
            "STATS_CACHE_SECONDS": "0",
            "STATEMENT_TIMEOUT_MS": "600000",  # the live shapes at 10M take longer than 5 s
            "LOG_LEVEL": "warning",
            "ACCESS_LOG": "false",
        }
        # One server per size, all up at once: each shape is asked of every size back to back,
        # so that the load of this shared machine drifts as little as possible between them.
        with ExitStack() as stack:
            bases = [
                stack.enter_context(api_server(db.url, workers=1, env=env))[0] for db in databases
            ]
            by_size = [shapes(db.url, db.rows) for db in databases]
            for k in range(len(by_size[0])):
                for db, base, own in zip(databases, bases, by_size, strict=True):
                    shape = own[k]
                    statements_reset(server.url("postgres"))
                    figure = asyncio.run(measure(base, shape, args.seconds))
                    spent = statements_ms(server.url("postgres"), f"scale_{db.rows}")
                    asked = figure.requests + (1 if shape.flat else 0)  # and the warm-up
                    figure = replace(figure, db_ms=spent / asked)
                    results.setdefault(shape.label, {})[db.rows] = figure
                    print(
                        f"{db.rows:>10,} {shape.label:<38} p50 {figure.p50_ms:9.2f} ms  "
                        f"p99 {figure.p99_ms:9.2f} ms  database {figure.db_ms:9.2f} ms/request "
                        f"({figure.requests} requests)",
                        file=sys.stderr,
                    )
        report(
            databases,
            results,
            shapes_flat={s.label: s.flat for s in shapes(databases[0].url, databases[0].rows)},
        )
    finally:
        if not args.keep_server:
            server.stop()


def report(
    databases: list[Loaded], results: dict[str, dict[int, Figure]], shapes_flat: dict[str, bool]
) -> None:
    sizes = [db.rows for db in databases]
    for db in databases:
        if db.load_seconds is not None:
            print(
                f"deals load of {db.rows:,} rows: {db.load_seconds:.1f} s, "
                f"peak RSS {db.load_peak_rss_mb:.0f} MB"
            )
    head = "".join(f" {f'{n:,}':>28}" for n in sizes)
    print(f"\n{'endpoint: p50 / p99 / database ms':<38}{head}  growth (db)  verdict")
    base = sizes[0]
    for label, by_size in results.items():
        cells = "".join(
            f" {by_size[n].p50_ms:>8.1f}/{by_size[n].p99_ms:<8.1f}/{by_size[n].db_ms:<9.2f}"
            for n in sizes
            if n in by_size
        )
        # PostgreSQL's time per request is the verdict: on a shared machine the HTTP figures
        # carry the scheduler's noise (tens of ms), the statements' own time much less.
        growth = by_size[sizes[-1]].db_ms / max(by_size[base].db_ms, 0.001)
        if shapes_flat[label]:
            verdict = "PASS (flat)" if growth <= 2.0 else "FAIL (should stay within 2x)"
        else:
            verdict = f"grows {growth:.0f}x"
        print(f"{label:<38}{cells}  {growth:>10.2f}x  {verdict}")


if __name__ == "__main__":
    main()
