"""Reads on a replica vs on the primary: `python -m bench.bench_replicas`.

On the 50,000-deal data set (bench/out/pg), a hot standby is made with
pg_basebackup -R (tests/replica.py) and listens on a unix socket like the
primary. `deals serve` then runs twice per round, alternately: with every read
on the primary, and with DATABASE_REPLICA_URLS naming the standby; wrk loads
GET /deals/{id} (random ids) and the city page (GET /deals?city=Paris&
min_stars=3: page + exact total) for the same time each. The standby's own
pg_stat_database (xact_commit, read once the server's connections are closed,
so every backend has flushed its counts) shows it served the reads.

Then, in-process and without HTTP, the CPU time (process_time, so other
processes' load counts less) of a read's connection taken and given back
through Database.connection(): on the primary, and routed to the standby.

Both databases run on this one machine, sharing its two cores with wrk and the
service: the ratio shows what routing costs (the lag checks, one more pool),
not what a replica on a machine of its own gains (there the read capacity adds
up: each replica brings its own CPUs and cache).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass

import msgspec
import psycopg

from bench.common import (
    LoadResult,
    api_server,
    embedded_server,
    loaded_database,
    warmed_wrk,
    wrk_options,
)
from service.db.deals import get_deal
from service.db.pool import Database
from service.settings import Settings
from tests.replica import Standby

CITY_PAGE = "/deals?city=Paris&min_stars=3"


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    random_id: bool


TARGETS = [
    Target("GET /deals/{id}", "/deals", True),
    Target(f"GET {CITY_PAGE}", CITY_PAGE, False),
]


def commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def load(base: str, target: Target, args: argparse.Namespace) -> LoadResult:
    return warmed_wrk(f"{base}{target.path}", args, target.random_id)


async def cpu_per_read(db: Database, reads: int, query: bool) -> float:
    """Microseconds of this process's CPU per read: the connection taken (and get_deal run)."""
    started = time.process_time()
    for i in range(reads):
        async with db.connection() as conn:
            if query:
                await get_deal(conn, id=1 + i % 1000)
    return (time.process_time() - started) / reads * 1e6


async def routing_cost(url: str, replica_url: str, rounds: int) -> dict[str, tuple[float, float]]:
    """(primary, routed) medians of cpu_per_read, connection only and with get_deal."""
    settings = Settings(database_url=url, pool_min_size=2, pool_max_size=4)
    plain = Database(settings)
    routed = Database(msgspec.structs.replace(settings, database_replica_urls=(replica_url,)))
    await plain.open()
    await routed.open()
    try:
        found = {}
        for label, query in (("connection taken and given back", False), ("+ get_deal", True)):
            runs = [
                (await cpu_per_read(plain, 3000, query), await cpu_per_read(routed, 3000, query))
                for _ in range(rounds)
            ]
            found[label] = (
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
            )
        return found
    finally:
        await plain.close()
        await routed.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    wrk_options(parser, seconds=8)
    parser.add_argument("--rounds", type=int, default=2, help="primary/replica runs alternated")
    args = parser.parse_args()

    server = embedded_server()
    url = loaded_database(server, args.rows)
    database = url.split("?", 1)[0].rsplit("/", 1)[1]
    standby = Standby(server.url("postgres"))
    try:
        standby.create()
        standby.start()
        standby.caught_up()
        replica_url = standby.url(database, socket=True)
        pool = {"POOL_MIN_SIZE": str(args.pool_size), "POOL_MAX_SIZE": str(args.pool_size)}
        modes = {"primary": pool, "replica": {**pool, "DATABASE_REPLICA_URLS": replica_url}}
        results: dict[tuple[str, str], list[LoadResult]] = {}
        served: dict[str, int] = {}
        cost = asyncio.run(routing_cost(url, replica_url, rounds=3))
        for _ in range(args.rounds):
            for mode, env in modes.items():
                before = commits(replica_url)
                with api_server(url, env=env) as (base, _process):
                    for target in TARGETS:
                        result = load(base, target, args)
                        results.setdefault((mode, target.name), []).append(result)
                        print(f"{mode:<8} {target.name:<40} {result.requests_per_s:8.0f} req/s")
                served[mode] = served.get(mode, 0) + commits(replica_url) - before
    finally:
        standby.remove()

    print(
        f"\n{args.rows} deals, {args.connections} connections, {args.seconds} s x "
        f"{args.rounds} rounds per cell, pool {args.pool_size}; primary and standby on this "
        "one machine: the ratio is routing's overhead, not a second machine's gain"
    )
    header = f"{'endpoint':<40} {'primary':>9} {'replica':>9} {'ratio':>6}"
    print(f"{header}  p50/p99 ms primary | replica")
    for target in TARGETS:
        on = {mode: results[(mode, target.name)] for mode in modes}
        rps = {mode: statistics.mean(r.requests_per_s for r in runs) for mode, runs in on.items()}
        p50 = {mode: statistics.mean(r.p50_ms for r in runs) for mode, runs in on.items()}
        p99 = {mode: statistics.mean(r.p99_ms for r in runs) for mode, runs in on.items()}
        bad = sum(r.non_2xx + r.socket_errors for runs in on.values() for r in runs)
        print(
            f"{target.name:<40} {rps['primary']:9.0f} {rps['replica']:9.0f} "
            f"{rps['replica'] / rps['primary']:6.2f}  "
            f"{p50['primary']:.2f}/{p99['primary']:.2f} | {p50['replica']:.2f}/{p99['replica']:.2f}"
            + (f"  ({bad} failed requests)" if bad else "")
        )
    print(
        f"transactions the standby committed in bench_{args.rows}: "
        f"{served['primary']} with reads on the primary, {served['replica']} with them on it"
    )
    for label, (primary, routed) in cost.items():
        print(
            f"CPU per read, {label}: {primary:.1f} us on the primary, {routed:.1f} us routed "
            f"to the replica ({routed - primary:+.1f} us; median of 3 x 3000, in-process)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
