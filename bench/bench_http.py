"""HTTP load beside the database's own ceiling: `python -m bench.bench_http`.

On the 50,000-deal data set, for each endpoint: pgbench runs the SQL the API
sends for it (the named queries of the catalogue with the values the API
binds, -M prepared, in the plan_cache_mode each query's `-- plan:` line gives
it, as the pool runs them) and the plain query for the same answer
(bench/bench_sql.py); then wrk loads `deals serve` with the same concurrency
for as long, and GET /health, one trivial statement, as the framework's own
ceiling (again right after the detail in each round, for the detail's ratio
to it). One run, one machine: wrk, the service and PostgreSQL share its
cores, so ratios within the run are what is judged, not absolute numbers.
Each measured run also reports the CPU time per request of the API server's
processes and of PostgreSQL's backends (/proc): on a machine shared with other
work req/s swings 2-3x from one run to the next, CPU per request far less.

Goals (issue 16, one worker): GET /deals/{id} >= 0.7x /health's req/s; with
--against the branch's start, the first page with its total and the city
page >= 1.3x that commit's req/s in the same run; p99 <= 5x p50 everywhere.
(Issue 4's ratios to pgbench are printed too: detail >= 0.12, city >= 0.3,
default list >= 0.5, stats >= 0.8, stats cached >= 20x real time.)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import ROOT
from bench.bench_sql import answers, mode_of, service_script
from bench.common import (
    OUT,
    LoadResult,
    api_server,
    chosen,
    embedded_server,
    loaded_database,
    postmaster_pid,
    processes,
    run_pgbench,
    run_wrk,
    wrk_api,
    wrk_options,
)
from service import migrate

PAGE = 20
CITY = "Paris"
MAX_P99_OVER_P50 = 5.0
CACHED_OVER_REAL_TIME = 20.0
DETAIL_OVER_HEALTH = 0.7
FASTER_THAN_BEFORE = 1.3


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # for wrk; {id} is drawn by bench/random_deal.lua
    answer: str  # bench_sql's answer: the service's statements and the plain query
    goal: float  # API req/s over pgbench tps (issue 4)
    faster: float = 0.0  # with --against: req/s over that commit's, at least (issue 16)


ENDPOINTS = [
    Endpoint("GET /deals/{id}", "/deals/{id}", "detail GET /deals/{id}", 0.12),
    Endpoint(
        f"GET /deals?city={CITY}&min_stars=3",
        f"/deals?city={CITY}&min_stars=3",
        "city page + total (Paris, 3+ stars)",
        0.3,
        FASTER_THAN_BEFORE,
    ),
    Endpoint(
        "GET /deals?limit=20",
        f"/deals?limit={PAGE}",
        "first page + exact total",
        0.5,
        FASTER_THAN_BEFORE,
    ),
    # One cheap statement since deal_totals (migration 0010): like the detail, bound by
    # the framework, not by its SQL (11,782 tps against the API's 2,606-2,783 req/s).
    Endpoint("GET /deals/stats", "/deals/stats", "stats", 0.12),
]


@dataclass(frozen=True)
class Cpu:
    """CPU time per request during a measured wrk run (utime + stime from /proc), of the
    server's processes and of PostgreSQL's backends: steadier than req/s on a busy machine,
    whose other work takes cores from the server but adds no CPU time to its requests."""

    api_us: float
    pg_us: float


TICKS = os.sysconf("SC_CLK_TCK")
SERVER_GROUPS: dict[str, int] = {}  # a server's base URL -> its process group (api_server's)


def cpu_seconds(match: str, value: int) -> float:
    """utime + stime of every process whose stat field `match` (pgrp, ppid) is value."""
    field = {"ppid": 1, "pgrp": 2}[match]  # after the command's closing parenthesis
    total = 0
    for _pid, fields in processes():
        if int(fields[field]) == value:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postmaster() -> int:
    return postmaster_pid(OUT / "pg" / "pg")


@dataclass
class Measured:
    endpoint: Endpoint
    pgbench: LoadResult
    plain: LoadResult
    api: LoadResult
    before: LoadResult | None = None  # --against's commit, same run
    health: LoadResult | None = None
    cpu: Cpu | None = None
    before_cpu: Cpu | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.api.requests_per_s / self.pgbench.requests_per_s

    @property
    def over_health(self) -> float:
        return self.api.requests_per_s / self.health.requests_per_s if self.health else 0.0

    @property
    def over_before(self) -> float:
        return self.api.requests_per_s / self.before.requests_per_s if self.before else 0.0

    @property
    def passed(self) -> bool:
        ok = (
            self.ratio >= self.endpoint.goal
            and self.api.p99_over_p50 <= MAX_P99_OVER_P50
            and clean(self.api)
        )
        if self.endpoint.path == "/deals/{id}" and self.health is not None:
            ok &= self.over_health >= DETAIL_OVER_HEALTH
        if self.endpoint.faster and self.before is not None:
            ok &= self.over_before >= self.endpoint.faster
        return ok


def clean(result: LoadResult) -> bool:
    return result.non_2xx == 0 and result.socket_errors == 0


def load_api(
    base: str, endpoint: Endpoint, args: argparse.Namespace
) -> tuple[LoadResult, Cpu | None]:
    """--warmup s of wrk, then --seconds measured, with the CPU each request cost."""
    random_id = "{id}" in endpoint.path
    url = f"{base}{endpoint.path.replace('/{id}', '')}"
    if args.warmup:
        wrk_api(url, args, args.warmup, random_id)
    group = SERVER_GROUPS.get(base)
    if group is None:
        return wrk_api(url, args, args.seconds, random_id), None
    pg = postmaster()
    api_before, pg_before = cpu_seconds("pgrp", group), cpu_seconds("ppid", pg)
    result = wrk_api(url, args, args.seconds, random_id)
    api, db = cpu_seconds("pgrp", group) - api_before, cpu_seconds("ppid", pg) - pg_before
    per = 1e6 / max(result.requests, 1)
    return result, Cpu(api_us=api * per, pg_us=db * per)


def load_pgbench(
    url: str, endpoint: Endpoint, args: argparse.Namespace
) -> tuple[LoadResult, LoadResult]:
    """pgbench of the service's statements (in their plan mode), then of the plain query."""
    answer = next(a for a in answers(args.rows) if a.label == endpoint.answer)
    script, defines = service_script(answer)
    (OUT / f"pgbench-{endpoint.path.strip('/').replace('/', '-')[:40]}.sql").write_text(script)
    runs = [
        (script, defines, f"-c plan_cache_mode={mode_of(answer.statements)}"),
        (answer.plain_script(), answer.defines, ""),
    ]
    results = []
    for text, values, options in runs:
        for seconds in (args.warmup, args.seconds):
            if seconds:
                result = run_pgbench(
                    url, text, clients=args.connections, seconds=seconds,
                    defines=values, options=options,
                )  # fmt: skip
        results.append(result)
    return results[0], results[1]


def server_env(args: argparse.Namespace, stats_cache_seconds: float) -> dict[str, str]:
    return {
        "POOL_MIN_SIZE": str(args.pool_size),
        "POOL_MAX_SIZE": str(args.pool_size),
        "STATS_CACHE_SECONDS": str(stats_cache_seconds),
        **dict(item.split("=", 1) for item in args.env),
    }


def fmt(result: LoadResult) -> str:
    return f"{result.p50_ms:7.2f} {result.p99_ms:8.2f} {result.p99_over_p50:8.1f}"


def cpu_text(cpu: Cpu | None) -> str:
    return "" if cpu is None else f"   cpu/req API {cpu.api_us:5.0f} us, PG {cpu.pg_us:5.0f} us"


def report(measured: list[Measured], cached: LoadResult | None, against: str | None) -> bool:
    print(
        f"\n{'endpoint':<34} {'API req/s':>10} {'service tps':>12} {'plain tps':>10} "
        f"{'/health':>8} {'before':>7} {'p50 ms':>7} {'p99 ms':>8} {'p99/p50':>8}  verdict"
    )
    ok = True
    for m in measured:
        ok &= m.passed
        health = f"{m.over_health:>7.2f}x" if m.health else f"{'':>8}"
        before = f"{m.over_before:>6.2f}x" if m.before else f"{'':>7}"
        print(
            f"{m.endpoint.name:<34} {m.api.requests_per_s:>10.0f} "
            f"{m.pgbench.requests_per_s:>12.0f} {m.plain.requests_per_s:>10.0f} "
            f"{health} {before} {fmt(m.api)}  {'PASS' if m.passed else 'FAIL'}"
            + ("" if clean(m.api) else f"  non-2xx {m.api.non_2xx} errors {m.api.socket_errors}")
        )
        if m.before is not None:
            print(f"{'  ' + str(against):<34} {m.before.requests_per_s:>10.0f} "
                  f"{'':>12} {'':>10} {'':>8} {'':>7} {fmt(m.before)}")  # fmt: skip
    ceiling = next((m.health for m in measured if m.health), None)
    if ceiling is not None:
        print(f"{'GET /health (the ceiling)':<34} {ceiling.requests_per_s:>10.0f} "
              f"{'':>12} {'':>10} {'':>8} {'':>7} {fmt(ceiling)}")  # fmt: skip
    print(
        f"\ngoals: detail >= {DETAIL_OVER_HEALTH}x /health; with --against, the city page and "
        f"the first page >= {FASTER_THAN_BEFORE}x before; API/service tps >= issue 4's goal; "
        f"p99/p50 <= {MAX_P99_OVER_P50}"
    )
    for m in measured:
        print(f"  {m.endpoint.name:<34} API/service tps {m.ratio:5.2f} (goal {m.endpoint.goal})")
    real_time = next((m for m in measured if m.endpoint.path == "/deals/stats"), None)
    if cached is not None and real_time is not None:
        ratio = cached.requests_per_s / real_time.api.requests_per_s
        passed = (
            ratio >= CACHED_OVER_REAL_TIME and cached.p99_over_p50 <= MAX_P99_OVER_P50
        ) and clean(cached)
        ok &= passed
        print(
            f"{'GET /deals/stats (cache on)':<34} {cached.requests_per_s:>10.0f} "
            f"{'(real time)':>12} {ratio:>6.1f} {CACHED_OVER_REAL_TIME:>6.1f} "
            f"{fmt(cached)}  {'PASS' if passed else 'FAIL'}"
        )
    print("\nCPU per request in the measured run (us; API worker | PostgreSQL backends)")
    for m in measured:
        if m.cpu is not None:
            line = f"  {m.endpoint.name:<34} {m.cpu.api_us:6.0f} | {m.cpu.pg_us:6.0f}"
            if m.before_cpu is not None:
                b, total = m.before_cpu, m.cpu.api_us + m.cpu.pg_us
                line += (
                    f"   {against}: {b.api_us:6.0f} | {b.pg_us:6.0f}"
                    f"   its API+PG over this tree's {(b.api_us + b.pg_us) / total:5.2f}x"
                )
            print(line)
    print("\npgbench (same SQL, same concurrency): p50/p99 ms per transaction, service | plain")
    for m in measured:
        print(f"  {m.endpoint.name:<34} {fmt(m.pgbench)} | {fmt(m.plain)}")
    print(f"\n{'all PASS' if ok else 'some FAIL'}")
    return ok


def imported_from(tree: Path) -> Path:
    """Where `python -m service` run in `tree` imports the package from. `-m` puts the
    working directory first on sys.path, ahead of PYTHONPATH and of this checkout's
    editable install: run anywhere else, the other commit's server would be this tree's."""
    found = subprocess.run(
        [sys.executable, "-c", "import service; print(service.__file__)"],
        cwd=tree, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return Path(found).parent


def export(ref: str) -> Path:
    """The tree of a git commit, exported to bench/out for a server to run from."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    dest = OUT / f"ref-{sha[:12]}"
    if not dest.exists():
        dest.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", sha], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    imported = imported_from(dest)
    if imported != dest / "service":
        raise SystemExit(f"--against {ref}: its server would import {imported}")
    return dest


@contextmanager
def servers(
    url: str, args: argparse.Namespace, stats_cache_seconds: float
) -> Iterator[list[tuple[str, str]]]:
    """(label, base URL) of this tree's server and, with --against, the other commit's."""
    with ExitStack() as stack:
        env = server_env(args, stats_cache_seconds)
        base, process = stack.enter_context(api_server(url, workers=args.workers, env=env))
        SERVER_GROUPS[base] = process.pid  # api_server starts a new session: pgid = pid
        found = [("this tree", base)]
        if args.against:
            tree = export(args.against)
            command = [sys.executable, "-m", "service", "serve"]
            base, process = stack.enter_context(
                api_server(url, workers=args.workers, env=env, command=command, cwd=tree)
            )
            SERVER_GROUPS[base] = process.pid
            found.append((args.against, base))
        for variant in args.variant:
            # The same tree with other workers and pool size: wWpP.
            match = re.fullmatch(r"w(\d+)p(\d+)", variant)
            if not match:
                raise SystemExit(f"--variant {variant}: expected wWpP, e.g. w2p5")
            other = {**env, "POOL_MIN_SIZE": match[2], "POOL_MAX_SIZE": match[2]}
            base, _ = stack.enter_context(api_server(url, workers=int(match[1]), env=other))
            found.append((variant, base))
        if args.granian:
            # This tree's app under granian instead of uvicorn (pip install granian).
            serve = (
                f'exec "{Path(sys.executable).parent / "granian"}" --interface asgi --factory '
                f"--loop uvloop --http 1 --no-ws --workers {args.workers} "
                '--host 127.0.0.1 --port "$API_PORT" service.api.app:app_from_env'
            )
            base, _ = stack.enter_context(
                api_server(url, workers=args.workers, env=env, command=["sh", "-c", serve])
            )
            found.append(("granian", base))
        yield found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    wrk_options(parser, seconds=10)
    # 2 workers with a pool of 10 each: a lone worker's event loop stalls whenever
    # PostgreSQL or wrk takes its core, and every request in flight waits (detail p99/p50
    # 4-7.5 with 1 worker, 2-4 with 2); pools of 4 or 5 gained nothing (README "Benchmarks").
    parser.add_argument("--workers", type=int, default=2, help="API_WORKERS of deals serve")
    parser.add_argument(
        "--only", default="", help="comma-separated substrings of endpoint names to run"
    )
    parser.add_argument("--no-cache-run", action="store_true", help="skip stats with the cache")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="more server settings"
    )
    parser.add_argument(
        "--against",
        metavar="GIT_REF",
        help="also load a server running that commit, alternately with this tree's (A/B)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="A/B rounds per endpoint")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="wWpP",
        help="also load this tree with W workers and a pool of P (e.g. w2p5), alternately",
    )
    parser.add_argument(
        "--granian", action="store_true", help="also load this tree's app served by granian"
    )
    args = parser.parse_args()

    url = loaded_database(embedded_server(), args.rows)
    picked = chosen(ENDPOINTS, args.only)
    print(
        f"{args.rows} deals; {args.connections} connections, {args.seconds} s each; "
        f"deals serve: {args.workers} worker(s), pool {args.pool_size}"
        + (f"; env {' '.join(args.env)}" if args.env else "")
    )
    measured: list[Measured] = []
    migrate.apply(url)  # a bench database built before the newest migration
    with servers(url, args, 0) as bases:
        health = run_wrk(f"{bases[0][1]}/health", connections=args.connections,
                         seconds=args.seconds)  # fmt: skip
        print(f"{'GET /health':<34} {'this tree':<12} API {health.requests_per_s:8.0f} req/s "
              f"p50 {health.p50_ms:6.2f} p99 {health.p99_ms:7.2f}", flush=True)  # fmt: skip
        for endpoint in picked:
            database, plain = load_pgbench(url, endpoint, args)
            for _ in range(args.rounds):
                found: dict[str, LoadResult] = {}
                cpus: dict[str, Cpu | None] = {}
                for label, base in bases:
                    api, cpus[label] = load_api(base, endpoint, args)
                    found[label] = api
                    print(
                        f"{endpoint.name:<34} {label:<12} API {api.requests_per_s:8.0f} req/s "
                        f"p50 {api.p50_ms:6.2f} p99 {api.p99_ms:7.2f}   service "
                        f"{database.requests_per_s:8.0f} tps, plain {plain.requests_per_s:8.0f}"
                        + cpu_text(cpus[label]),
                        flush=True,
                    )
                # The detail's goal is a ratio to /health: taken right after it, in every
                # round, so that a drift of the machine's load between them is short.
                beside = health
                if endpoint.path == "/deals/{id}":
                    beside = run_wrk(f"{bases[0][1]}/health", connections=args.connections,
                                     seconds=args.seconds)  # fmt: skip
                    print(f"{'GET /health (beside the detail)':<34} {'this tree':<12} API "
                          f"{beside.requests_per_s:8.0f} req/s", flush=True)  # fmt: skip
                measured.append(
                    Measured(
                        endpoint,
                        database,
                        plain,
                        found["this tree"],
                        before=found.get(args.against) if args.against else None,
                        health=beside,
                        cpu=cpus["this tree"],
                        before_cpu=cpus.get(args.against) if args.against else None,
                    )
                )
    cached = None
    if not args.no_cache_run and any(e.path == "/deals/stats" for e in picked):
        with servers(url, args, 60) as bases:
            for label, base in bases:
                api, _ = load_api(base, ENDPOINTS[-1], args)
                cached = api if label == "this tree" else cached
                print(f"{'GET /deals/stats (cache on)':<34} {label:<12} API "
                      f"{api.requests_per_s:8.0f} req/s", flush=True)  # fmt: skip
    ok = report(measured, cached, args.against)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
