"""`deals load` against the floor: a plain psql \\copy of the same file into an unlogged text table.

    .venv/bin/python -m bench.bench_load [--rows 50000 1000000] [--runs 3] [--explain]

For each size, one generated file (cached in bench/out/); each run loads it
into a fresh, empty, migrated database: first the floor (psql \\copy, the
cost of reading the bytes at all), then `deals load` as a subprocess (wall
time with process start, peak RSS from wait4). Timings on a shared machine
are noisy: compare the ratios of one run, and look at the median of several.
--explain prints EXPLAIN (ANALYZE, BUFFERS, WAL) of the two statements that
bound a large load, so an SRE sees where the time goes, then each of them
again with only its table's unique indexes and with each other index added:
the price of every index, against the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench import ROOT
from bench.common import embedded_server
from service import migrate
from service.embedded import bin_dir
from service.load import generator as generate
from service.load.source import COLUMNS
from service.settings import Settings

OUT = ROOT / "bench" / "out"
TEMPLATE = "bench_load_template"
FLOOR_TABLE = "CREATE UNLOGGED TABLE floor_copy (" + ", ".join(f"{c} text" for c in COLUMNS) + ")"
GOALS = "goals: 50,000 rows < 1 s wall; 1,000,000 rows <= 10x the floor, <= 150 MB peak RSS, "
GOALS += "RSS(1M)/RSS(50k) <= 1.3"


@dataclass
class Run:
    floor: float
    load: float
    rss_mb: float


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def psql(url: str, command: str) -> None:
    """The embedded server's bundled psql, as an operator would run it."""
    subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", command],
        check=True,
        capture_output=True,
    )


def admin(url: str, command: str) -> None:
    psql(with_database(url, "postgres"), command)


def fresh_database(url: str, name: str) -> str:
    admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(url, f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    # start every measurement from a clean WAL position (CHECKPOINT needs a superuser)
    with contextlib.suppress(subprocess.CalledProcessError):
        admin(url, "CHECKPOINT")
    return with_database(url, name)


def sample(rows: int) -> Path:
    path = OUT / f"deals-{rows}.csv"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        generate.generate(path, rows, 150, seed=1)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def floor(url: str, path: Path) -> float:
    """Wall seconds of a psql \\copy of the file into an unlogged all-text table."""
    db = fresh_database(url, "bench_load_floor")
    psql(db, FLOOR_TABLE)
    started = time.perf_counter()
    psql(db, f"\\copy floor_copy from '{path}' (format csv, header true)")
    return time.perf_counter() - started


def load(url: str, path: Path) -> tuple[float, float]:
    """Wall seconds (process start included) and peak RSS in MB of `deals load`."""
    db = fresh_database(url, "bench_load_run")
    deals = Path(sys.executable).parent / "deals"
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(deals), "load", str(path), "--json"],
        env={**os.environ, "DATABASE_URL": db},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"deals load failed ({process.returncode}): {err or out}")
    return wall, usage.ru_maxrss / 1024


async def explain(url: str, path: Path, floor_s: float) -> None:
    """EXPLAIN ANALYZE the deals insert and the links insert of a load, then roll back.

    Then what bounds them: each insert again into an empty copy of its table, with
    only the unique indexes and then with one other index more, so the price of
    each index shows, set against the floor.
    """
    from service.db import load as sql
    from service.load.report import Progress
    from service.load.source import Source
    from service.load.steps import Loader

    db = fresh_database(url, "bench_load_explain")
    conn = await asyncpg.connect(db)
    try:
        with Source(path) as source:
            transaction = conn.transaction()
            await transaction.start()
            await sql.configure_load(conn, work_mem="256MB")
            await sql.create_work_tables(conn)
            loader = Loader(conn, source, None, Progress(), False, 20)
            rows_read = await loader.copy()
            await loader.check(rows_read)
            await loader.write_hotels()
            await sql.insert_load_links(conn)
            await sql.insert_categories(conn)
            await sql.find_existing_deals(conn)
            print(f"foreign keys checked {await loader.choose_fk_checks()}")
            await conn.execute("SAVEPOINT plans")
            for query in (sql.INSERT_DEALS, sql.INSERT_NEW_LINKS):
                plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF)\n" + query.sql)
                print(f"\n{query.name} ({rows_read:,} rows):")
                print("\n".join("  " + r[0] for r in plan))
            await conn.execute("ROLLBACK TO SAVEPOINT plans")
            print(f"\nwhat bounds them ({rows_read:,} rows; seconds, x the {floor_s:.2f} s floor):")
            await bounds(conn, sql.INSERT_DEALS.sql, "deals", floor_s, before=None)
            await bounds(conn, sql.INSERT_NEW_LINKS.sql, "deal_categories", floor_s,
                         before=sql.INSERT_DEALS.sql)  # fmt: skip
            await transaction.rollback()
    finally:
        await conn.close()


async def bounds(
    conn: asyncpg.Connection[Any], insert: str, table: str, floor_s: float, before: str | None
) -> None:
    """Seconds of `insert` into a fresh copy of `table`: with its unique indexes only,
    then with each other index added, then with all. Each run in a rolled-back savepoint
    on a new, empty copy (a rolled-back insert leaves its dead entries in the indexes)."""
    indexes = await conn.fetch(
        """SELECT c.relname AS name, i.indisunique AS is_unique,
                  pg_get_indexdef(i.indexrelid) AS ddl
           FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
           WHERE i.indrelid = $1::regclass ORDER BY c.relname""",
        table,
    )
    unique = [r for r in indexes if r["is_unique"]]
    others = [r for r in indexes if not r["is_unique"]]
    into_copy = re.sub(rf"\bINTO\s+{table}\b", "INTO bound_copy", insert, count=1)

    async def seconds(chosen: list[asyncpg.Record]) -> float:
        await conn.execute("SAVEPOINT bound")
        try:
            if before is not None:
                await conn.execute(before)
            await conn.execute(
                f"CREATE TABLE bound_copy (LIKE {table} INCLUDING DEFAULTS INCLUDING IDENTITY "
                "INCLUDING CONSTRAINTS)"
            )
            for index in chosen:
                ddl = index["ddl"].replace(f" {index['name']} ON ", f" bound_{index['name']} ON ")
                await conn.execute(re.sub(rf" ON (\w+\.)?{table} ", " ON bound_copy ", ddl))
            plan = await conn.fetchval("EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON)\n" + into_copy)
            return float(json.loads(plan)[0]["Execution Time"]) / 1000
        finally:
            await conn.execute("ROLLBACK TO SAVEPOINT bound")

    def line(label: str, value: float, signed: str = "") -> None:
        ratio = value / floor_s
        print(f"  {table + ': ' + label:<50} {value:{signed}6.2f} s {ratio:{signed}6.1f}x")

    base = await seconds(unique)
    line("heap and unique indexes", base)
    for index in others:
        line("+ " + index["name"], await seconds([*unique, index]) - base, "+")
    line("all indexes, as a load writes them", await seconds(list(indexes)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_load", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3, help="runs per size; medians shown")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the heavy steps")
    args = parser.parse_args(argv)

    # DATABASE_URL when set, else the benchmarks' own server in bench/out/pg: never
    # the developer's .data/, whose databases a benchmark must not create or drop.
    url = Settings.from_env().database_url or embedded_server().url()
    admin(url, f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    admin(url, f'CREATE DATABASE "{TEMPLATE}"')
    migrate.apply(with_database(url, TEMPLATE))

    results: dict[int, list[Run]] = {}
    for rows in args.rows:
        path = sample(rows)
        results[rows] = []
        for _ in range(args.runs):
            floor_s = floor(url, path)
            load_s, rss = load(url, path)
            results[rows].append(Run(floor_s, load_s, rss))
            print(
                f"  {rows:>9,} rows: floor {floor_s:6.2f} s  load {load_s:6.2f} s  "
                f"ratio {load_s / floor_s:5.1f}x  rss {rss:5.0f} MB",
                file=sys.stderr,
            )

    print(f"\n{'rows':>10} {'MB':>7} {'floor s':>8} {'load s':>8} {'ratio':>7} {'rows/s':>9} "
          f"{'peak RSS':>9}")  # fmt: skip
    rss_at: dict[int, float] = {}
    for rows, runs in results.items():
        size = sample(rows).stat().st_size / 1e6
        floor_s = statistics.median(r.floor for r in runs)
        load_s = statistics.median(r.load for r in runs)
        ratio = statistics.median(r.load / r.floor for r in runs)
        rss_at[rows] = max(r.rss_mb for r in runs)
        print(
            f"{rows:>10,} {size:>7.1f} {floor_s:>8.2f} {load_s:>8.2f} {ratio:>6.1f}x "
            f"{rows / load_s:>9,.0f} {rss_at[rows]:>6.0f} MB"
        )
    if len(rss_at) > 1:
        small, large = min(rss_at), max(rss_at)
        print(f"peak RSS {large:,} rows / {small:,} rows: {rss_at[large] / rss_at[small]:.2f}")
    print(GOALS)
    for name in ("bench_load_floor", "bench_load_run"):
        admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.explain:
        largest = max(args.rows)
        asyncio.run(
            explain(url, sample(largest), statistics.median(r.floor for r in results[largest]))
        )
        admin(url, 'DROP DATABASE IF EXISTS "bench_load_explain" WITH (FORCE)')
    admin(url, f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
