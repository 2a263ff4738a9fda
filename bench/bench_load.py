"""`deals load` against the floor: a plain psql \\copy of the same file into an unlogged text table.

    .venv/bin/python -m bench.bench_load [--rows 50000 1000000] [--runs 1] [--explain]

For each size, one generated file (cached in bench/out/, with a copy whose
every 100th row has a new price: 1% changed); each run, against the floor
(psql \\copy, the cost of reading the bytes at all):
- `deals load FILE` as the goal states it (50,000 rows only), wall time with
  process start;
- fresh: the file into a fresh, empty, migrated database; reload unchanged:
  the same file again; reload 1%: the 1%-changed copy. Each a process of its
  own (bench/load_once.py: wall time with process start, peak RSS from
  wait4, and the seconds of each phase). Events cannot be turned off (the
  feed must see every change): "no events" is the wall time less the events
  and feed phases, and "lock" is how long the feed's order lock was held
  (feed phase and commit), the time concurrent API writes wait;
- HTTP: POST /deals/import of the file to `deals serve` on a fresh database,
  wall time and the server's peak RSS (VmHWM) against its RSS before.
Timings on a shared machine are noisy: compare the ratios of one run.
--explain prints EXPLAIN (ANALYZE, BUFFERS, WAL) of the two statements that
bound a large load, so an SRE sees where the time goes, then each of them
again with only its table's unique indexes and with each other index added:
the price of every index, against the floor, with the WAL it writes; then
the change feed's share: building the events' JSON, and appending them to
the events table (its indexes priced the same way, and a BRIN index on `at`
tried in place of the B-tree).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
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


@dataclass
class Once:
    wall: float
    rss_mb: float
    phases: dict[str, float]
    summary: dict[str, Any]

    @property
    def events(self) -> float:
        return self.phases.get("events", 0.0) + self.phases.get("feed", 0.0)

    @property
    def lock(self) -> float:
        return self.phases.get("feed", 0.0) + self.phases.get("commit", 0.0)


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


def changed_copy(path: Path) -> Path:
    """The file with every 100th row's price_per_night raised by 1.00: a 1% change."""
    out = path.with_name(path.stem + "-1pct.csv")
    if not out.exists():
        import csv

        with path.open(newline="") as src, out.open("w", newline="") as dst:
            reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
            header = next(reader)
            writer.writerow(header)
            price = header.index("price_per_night")
            for n, record in enumerate(reader, start=1):
                if n % 100 == 0:
                    record[price] = f"{float(record[price]) + 1:.2f}"
                writer.writerow(record)
    return out


def load_once(db: str, path: Path) -> Once:
    """bench/load_once.py in a process of its own: wall, peak RSS, phases, summary."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.load_once", db, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    _pid, status, usage = os.wait4(process.pid, 0)  # one JSON line out: no pipe fills
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    out = process.stdout.read() if process.stdout else b""
    err = process.stderr.read() if process.stderr else b""
    rss = usage.ru_maxrss / 1024
    if process.returncode != 0:
        raise SystemExit(f"load failed ({process.returncode}): {err.decode() or out.decode()}")
    found = json.loads(out)
    return Once(wall, rss, found["phases"], found["summary"])


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def http_import(url: str, path: Path) -> tuple[float, float, float, dict[str, Any]]:
    """POST /deals/import of the file to `deals serve` on a fresh database: wall
    seconds, the server's RSS before and its peak (MB), and the answer."""
    import http.client

    from bench.common import api_server

    db = fresh_database(url, "bench_load_http")
    with api_server(db, env={"ACCESS_LOG": "false"}) as (base, process):
        before = vm_kb(process.pid, "VmRSS") / 1024
        port = int(base.rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        started = time.perf_counter()
        with path.open("rb") as body:
            connection.request(
                "POST",
                "/deals/import",
                body=body,
                headers={"Content-Type": "text/csv", "Content-Length": str(path.stat().st_size)},
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
        wall = time.perf_counter() - started
        peak = vm_kb(process.pid, "VmHWM") / 1024
        connection.close()
    if response.status != 200:
        raise SystemExit(f"import failed ({response.status}): {answer}")
    return wall, before, peak, answer


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
            for query in (sql.insert_deals, sql.insert_new_links):
                plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF)\n" + query.sql)
                print(f"\n{query.name} ({rows_read:,} rows):")
                print("\n".join("  " + r[0] for r in plan))
            await conn.execute("ROLLBACK TO SAVEPOINT plans")
            print(f"\nwhat bounds them ({rows_read:,} rows; seconds, x the {floor_s:.2f} s floor):")
            await bounds(conn, sql.insert_deals.sql, "deals", floor_s, before=None)
            await bounds(conn, sql.insert_new_links.sql, "deal_categories", floor_s,
                         before=sql.insert_deals.sql)  # fmt: skip
            await events_bounds(conn, floor_s, rows_read)
            await transaction.rollback()
    finally:
        await conn.close()


async def events_bounds(conn: asyncpg.Connection[Any], floor_s: float, rows: int) -> None:
    """What the change feed costs a load of `rows` new deals, against the floor: building
    the events' JSON (build_load_events, into the TEMP load_events: no WAL), then
    appending them to the feed (insert_load_events) as bounds() prices an index, with
    the WAL each writes, and a BRIN index on `at` in place of events_at_idx's B-tree."""
    from service.db import load as sql

    await conn.execute("SAVEPOINT events")
    try:
        await conn.execute(sql.insert_deals.sql)
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, WAL, COSTS OFF, FORMAT JSON)\n" + sql.build_load_events.sql
        )
        built = json.loads(plan)[0]
        seconds = float(built["Execution Time"]) / 1000
        wal = built["Plan"].get("WAL Bytes", 0) / 1e6
        print(f"\nthe change feed ({rows:,} events; seconds, x the {floor_s:.2f} s floor, WAL):")
        print(f"  {'events: JSON built into load_events (TEMP)':<50} {seconds:6.2f} s "
              f"{seconds / floor_s:6.1f}x {wal:7.0f} MB")  # fmt: skip
    finally:
        await conn.execute("ROLLBACK TO SAVEPOINT events")
    before = sql.insert_deals.sql + ";\n" + sql.build_load_events.sql
    brin = ("BRIN (at) for events_at_idx", "CREATE INDEX ON bound_copy USING brin (at)")
    await bounds(conn, sql.insert_load_events.sql, "events", floor_s, before, [brin])


async def bounds(
    conn: asyncpg.Connection[Any],
    insert: str,
    table: str,
    floor_s: float,
    before: str | None,
    instead: list[tuple[str, str]] | None = None,
) -> None:
    """Seconds of `insert` into a fresh copy of `table`: with its unique indexes only,
    then with each other index added, then with all. Each run in a rolled-back savepoint
    on a new, empty copy (a rolled-back insert leaves its dead entries in the indexes).
    With the WAL each writes; `instead` adds (label, DDL on bound_copy) indexes to try
    each with the unique ones in place of the others."""
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

    async def seconds(chosen: list[asyncpg.Record], extra: str = "") -> tuple[float, float]:
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
            if extra:
                await conn.execute(extra)
            plan = await conn.fetchval(
                "EXPLAIN (ANALYZE, WAL, COSTS OFF, FORMAT JSON)\n" + into_copy
            )
            found = json.loads(plan)[0]
            return float(found["Execution Time"]) / 1000, found["Plan"].get("WAL Bytes", 0) / 1e6
        finally:
            await conn.execute("ROLLBACK TO SAVEPOINT bound")

    def line(label: str, value: tuple[float, float], signed: str = "") -> None:
        ratio = value[0] / floor_s
        print(
            f"  {table + ': ' + label:<50} {value[0]:{signed}6.2f} s {ratio:{signed}6.1f}x "
            f"{value[1]:{signed}7.0f} MB"
        )

    def minus(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        return a[0] - b[0], a[1] - b[1]

    base = await seconds(unique)
    line("heap and unique indexes", base)
    for index in others:
        line("+ " + index["name"], minus(await seconds([*unique, index]), base), "+")
    for label, ddl in instead or []:
        line("+ " + label, minus(await seconds(unique, ddl), base), "+")
    line("all indexes, as a load writes them", await seconds(list(indexes)))


def scenario(
    rows: int, label: str, floor_s: float, wall: float, once: Once | None, rss: float
) -> str:
    """One line of the table: wall and ratio, without the events phase, lock held, phases."""
    if once is None:
        return (
            f"{rows:>10,} {label:<20} {floor_s:>7.2f} {wall:>8.2f} {wall / floor_s:>6.1f}x "
            f"{'':>9} {'':>7} {'':>6}  {rss:,.0f} MB"
        )
    bare = wall - once.events
    phases = " ".join(f"{k} {v:.2f}" for k, v in once.phases.items())
    s = once.summary
    counts = f"new {s['deals_new']:,} updated {s['deals_updated']:,}"
    return (
        f"{rows:>10,} {label:<20} {floor_s:>7.2f} {wall:>8.2f} {wall / floor_s:>6.1f}x "
        f"{bare:>9.2f} {bare / floor_s:>6.1f}x {once.lock:>6.2f}  {rss:,.0f} MB; {counts}; {phases}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_load", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=1, help="runs per size")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the heavy steps")
    args = parser.parse_args(argv)

    # DATABASE_URL when set, else the benchmarks' own server in bench/out/pg: never
    # the developer's .data/, whose databases a benchmark must not create or drop.
    url = Settings.from_env().database_url or embedded_server().url()
    admin(url, f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    admin(url, f'CREATE DATABASE "{TEMPLATE}"')
    migrate.apply(with_database(url, TEMPLATE))

    results: dict[int, list[Run]] = {}
    lines: list[str] = []
    for rows in args.rows:
        path = sample(rows)
        changed = changed_copy(path)
        results[rows] = []
        for _ in range(args.runs):
            floor_s = floor(url, path)
            if rows <= 50_000:  # the goal's own command, process start included
                cli_s, cli_rss = load(url, path)
                results[rows].append(Run(floor_s, cli_s, cli_rss))
                lines.append(scenario(rows, "deals load (CLI)", floor_s, cli_s, None, cli_rss))
            db = fresh_database(url, "bench_load_run")
            for label, file in (
                ("fresh", path),
                ("reload unchanged", path),
                ("reload 1% changed", changed),
            ):
                once = load_once(db, file)
                lines.append(scenario(rows, label, floor_s, once.wall, once, once.rss_mb))
                print(lines[-1], file=sys.stderr)
            wall, before, peak, answer = http_import(url, path)
            assert answer["rows_loaded"] == rows, answer
            lines.append(
                f"{rows:>10,} {'HTTP import':<20} {floor_s:>7.2f} {wall:>8.2f} "
                f"{wall / floor_s:>6.1f}x {'':>8} {'':>7} {'':>6}  server RSS {before:,.0f} MB "
                f"before, peak {peak:,.0f} MB"
            )
            print(lines[-1], file=sys.stderr)

    print(
        f"\n{'rows':>10} {'scenario':<20} {'floor s':>7} {'wall s':>8} {'ratio':>7} "
        f"{'no events':>9} {'ratio':>7} {'lock s':>6}  peak RSS / phases"
    )
    print("\n".join(lines))
    print(GOALS)
    for name in ("bench_load_floor", "bench_load_run", "bench_load_http"):
        admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.explain:
        largest = max(args.rows)
        asyncio.run(explain(url, sample(largest), floor(url, sample(largest))))
        admin(url, 'DROP DATABASE IF EXISTS "bench_load_explain" WITH (FORCE)')
    admin(url, f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
