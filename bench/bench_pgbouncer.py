"""PgBouncer in transaction mode vs PostgreSQL directly: `python -m bench.bench_pgbouncer`.

On the 50,000-deal data set, one run, one machine (wrk, the API, PgBouncer and
PostgreSQL share its two cores): ratios within the run are what is judged.

1. Round trips, one asyncpg connection, GET /deals/{id}'s query in a loop: the
   statement cache on (direct), off, off inside `BEGIN; SET LOCAL ...` / COMMIT
   (what DATABASE_POOLER=pgbouncer does per request), and that through PgBouncer.
2. One API process, wrk with 32 connections, GET /deals/{id} and GET
   /deals?limit=20: direct; DATABASE_POOLER=pgbouncer straight at PostgreSQL
   (the mode's cost alone); through PgBouncer (the mode and the extra hop).
3. Four API processes (POOL_MAX_SIZE=20 each: 80 client connections) under 256
   wrk connections on GET /deals/{id}: direct (up to 80 server connections) vs
   through PgBouncer with default_pool_size=20 (on a copy of the database);
   pg_stat_activity's client backends of each database sampled every 0.2 s
   (the sampler's own excluded).

Each HTTP mode runs in turns, --rounds times, and the median round is shown:
the shared machine's load drifts within minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

from bench import ROOT
from bench.common import LoadResult, api_server, embedded_server, loaded_database, row, run_wrk
from service.db.catalogue import CATALOGUE
from service.db.pool import begin_statement
from service.embedded import EmbeddedPostgres
from service.settings import Settings

DEALS = 50_000
LUA_RANDOM_DEAL = ROOT / "bench" / "random_deal.lua"
SERVER_POOL = 20  # PgBouncer's default_pool_size
WORKERS = 4
WORKER_POOL = 20  # POOL_MAX_SIZE of each worker
SCALE_CONNECTIONS = 256
CUSTOM = {"plan_cache_mode": "force_custom_plan"}


@contextmanager
def bouncer(admin_url: str, pool_size: int) -> Iterator[Any]:
    if not (shutil.which("pgbouncer") or os.access("/usr/sbin/pgbouncer", os.X_OK)):
        raise SystemExit("pgbouncer is needed: apt-get install -y pgbouncer")
    from tests.pgbouncer import pgbouncer  # the tests' starter: free port, trust, transaction mode

    with (
        tempfile.TemporaryDirectory(prefix="bench-pgbouncer-") as folder,
        pgbouncer(Path(folder), admin_url, pool_size=pool_size, max_client_conn=2000) as b,
    ):
        yield b


# 1. Round trips ---------------------------------------------------------------------------


async def round_trips(url: str, loops: int, mode: str, settings: Settings) -> float:
    """Seconds per GET /deals/{id} query in `mode`: cached, unnamed, unnamed+tx."""
    sql = CATALOGUE["get_deal"].sql
    cache = 100 if mode == "cached" else 0
    # as the pool: force_custom_plan in the startup packet, where PgBouncer is not in between
    startup = {} if url.startswith("postgresql://") and "127.0.0.1" in url else CUSTOM
    conn = await asyncpg.connect(url, statement_cache_size=cache, server_settings=startup)
    begin = begin_statement(settings)
    try:
        await conn.fetchrow(sql, 1)
        started = time.perf_counter()
        for n in range(loops):
            if mode == "unnamed+tx":
                await conn.execute(begin)
            await conn.fetchrow(sql, 1 + n * 7919 % DEALS)
            if mode == "unnamed+tx":
                await conn.execute("COMMIT")
        return (time.perf_counter() - started) / loops
    finally:
        await conn.close()


def bench_round_trips(direct: str, pooled: str, loops: int, rounds: int = 10) -> None:
    """Each mode in turn, `rounds` times (the machine's load drifts): the median round."""
    settings = Settings(database_url=direct)
    runs = [
        ("direct, statement cache on (pooler none)", direct, "cached"),
        ("direct, cache off", direct, "unnamed"),
        ("direct, cache off, BEGIN+SET LOCAL/COMMIT", direct, "unnamed+tx"),
        ("PgBouncer, cache off", pooled, "unnamed"),
        ("PgBouncer, cache off, BEGIN+SET LOCAL/COMMIT", pooled, "unnamed+tx"),
    ]
    seen: dict[str, list[float]] = {label: [] for label, _url, _mode in runs}
    for _ in range(rounds):
        for label, url, mode in runs:
            seen[label].append(asyncio.run(round_trips(url, loops // rounds, mode, settings)))
    each = loops // rounds
    print(f"\n1. one connection, get_deal in a loop: the median of {rounds} rounds of {each}")
    base = statistics.median(seen[runs[0][0]])
    for label, _url, _mode in runs:
        seconds = statistics.median(seen[label])
        print(f"  {label:<48} {seconds * 1e6:8.0f} us/query  x{seconds / base:.2f}")


def ratios(result: LoadResult, base: LoadResult) -> str:
    return (
        f"req/s x{result.requests_per_s / base.requests_per_s:.2f}, "
        f"p50 x{result.p50_ms / base.p50_ms:.2f}, p99 x{result.p99_ms / base.p99_ms:.2f}"
    )


# 2. One API process -------------------------------------------------------------------------


def load(base: str, path: str, seconds: int, connections: int) -> LoadResult:
    if path == "/deals/{id}":
        return run_wrk(
            base,
            connections=connections,
            seconds=seconds,
            script=LUA_RANDOM_DEAL,
            script_args=[str(DEALS)],
        )
    return run_wrk(base + path, connections=connections, seconds=seconds)


def median_result(results: list[LoadResult]) -> LoadResult:
    """The round with the median req/s (its latencies and errors with it)."""
    return sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]


# Same for every mode: a request waits for a pooled connection up to 10 s rather than
# getting a 503 at 2 s, so that req/s compares the paths, not the load shedding.
SERVER_ENV = {"ACCESS_LOG": "false", "POOL_ACQUIRE_TIMEOUT": "10"}


def bench_one_process(direct: str, pooled: str, args: argparse.Namespace) -> None:
    """The three servers run side by side; each round loads each in turn (the shared
    machine's load drifts), and the median round of each is shown."""
    modes = [
        ("direct", direct, {}),
        ("DATABASE_POOLER=pgbouncer, direct", direct, {"DATABASE_POOLER": "pgbouncer"}),
        (
            "through PgBouncer",
            pooled,
            {"DATABASE_POOLER": "pgbouncer", "DATABASE_DIRECT_URL": direct},
        ),
    ]
    print(f"\n2. one API process, wrk -c32, the median of {args.rounds} rounds of {args.seconds} s")
    with ExitStack() as stack:
        bases = [
            stack.enter_context(api_server(url, env={**SERVER_ENV, **env}))[0]
            for _label, url, env in modes
        ]
        for path in ("/deals/{id}", "/deals?limit=20"):
            for base in bases:
                load(base, path, 3, 32)  # warm-up: pools, caches
            seen: list[list[LoadResult]] = [[] for _ in modes]
            for _ in range(args.rounds):
                for n, base in enumerate(bases):
                    seen[n].append(load(base, path, args.seconds, 32))
            results = [median_result(r) for r in seen]
            for (label, _url, _env), result in zip(modes, results, strict=True):
                print(f"  {row(f'GET {path} {label}', result)}")
            for (label, _url, _env), result in zip(modes[1:], results[1:], strict=True):
                print(f"  ratio {label} / direct: {ratios(result, results[0])}")


# 3. Four API processes, 256 connections ---------------------------------------------------


class Sampler:
    """The most client backends of one database seen in pg_stat_activity while it runs."""

    QUERY = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.most = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                found = conn.execute(self.QUERY.encode()).fetchone()
                self.samples.append(int(found[0]) if found else 0)
                self._stop.wait(0.2)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.most = max(self.samples, default=0)


def clone(server: EmbeddedPostgres, template: str, name: str) -> str:
    """A copy of the bench database, so that each scale-out mode counts its own backends."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'.encode())
    return server.url(name)


def bench_scale_out(direct: str, copy: str, b: Any, args: argparse.Namespace) -> None:
    """Both servers up at once (4 workers take ~30 s to start on the loaded machine), each on
    its own copy of the data, so pg_stat_activity counts each mode's backends; in turns."""
    print(
        f"\n3. {WORKERS} API processes (POOL_MAX_SIZE={WORKER_POOL} each), wrk "
        f"-c{SCALE_CONNECTIONS} GET /deals/{{id}}, the median of {args.rounds} rounds "
        f"of {args.seconds} s"
    )
    modes = [
        ("direct", direct, direct, {}),
        (
            f"PgBouncer default_pool_size={SERVER_POOL}",
            b.url(copy),
            copy,
            {"DATABASE_POOLER": "pgbouncer", "DATABASE_DIRECT_URL": copy},
        ),
    ]
    seen: list[list[LoadResult]] = [[] for _ in modes]
    most = [0 for _ in modes]
    with ExitStack() as stack:
        bases = []
        for _label, url, _db, env in modes:
            server_env = {**SERVER_ENV, "POOL_MAX_SIZE": str(WORKER_POOL), **env}
            base, _process = stack.enter_context(api_server(url, workers=WORKERS, env=server_env))
            load(base, "/deals/{id}", 3, SCALE_CONNECTIONS)  # warm-up
            bases.append(base)
        for _ in range(args.rounds):
            for n, (_label, _url, database, _env) in enumerate(modes):
                with Sampler(database) as sampler:
                    seen[n].append(load(bases[n], "/deals/{id}", args.seconds, SCALE_CONNECTIONS))
                most[n] = max(most[n], sampler.most)
    results = [median_result(r) for r in seen]
    for (label, _url, _db, _env), result, connections in zip(modes, results, most, strict=True):
        print(f"  {row(label, result)}")
        print(f"    client backends of its database in pg_stat_activity, most seen: {connections}")
    print(f"  ratio PgBouncer / direct: {ratios(results[1], results[0])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="turns of each HTTP mode")
    parser.add_argument("--loops", type=int, default=5000, help="queries per round-trip mode")
    parser.add_argument("--only", choices=["trips", "one", "scale"], action="append")
    args = parser.parse_args()
    parts = set(args.only or ["trips", "one", "scale"])
    server = embedded_server()
    direct = loaded_database(server, DEALS)
    with bouncer(server.url("postgres"), SERVER_POOL) as b:
        pooled = b.url(direct)
        print(f"PgBouncer {b.port}: transaction mode, default_pool_size={SERVER_POOL}")
        if "trips" in parts:
            bench_round_trips(direct, pooled, args.loops)
        if "one" in parts:
            bench_one_process(direct, pooled, args)
        if "scale" in parts:
            copy = clone(server, f"bench_{DEALS}", f"bench_{DEALS}_pgbouncer")
            bench_scale_out(direct, copy, b, args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
