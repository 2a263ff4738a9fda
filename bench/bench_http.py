"""HTTP load beside the database's own ceiling: `python -m bench.bench_http`.

On the 50,000-deal data set, for each endpoint: pgbench runs the SQL the API
sends for it (the named queries of the catalogue with the values the API
binds, -M prepared, plan_cache_mode=force_custom_plan like the pool), then
wrk loads `deals serve` with the same concurrency for as long. One run, one
machine: wrk, the service and PostgreSQL share its cores, so the ratio
API req/s / pgbench tps is what is judged, not the absolute numbers.

Goals (issue 4): GET /deals/{id} >= 0.12x pgbench, the city list >= 0.3x,
the default list (page + exact total) >= 0.5x, stats in real time >= 0.8x and
with the cache on >= 20x its real-time rate; p99 <= 5x p50 everywhere.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.common import (
    OUT,
    LoadResult,
    api_server,
    embedded_server,
    loaded_database,
    run_pgbench,
    run_wrk,
)
from service.db.catalogue import CATALOGUE

RANDOM_ID = object()  # stands for the random deal id, drawn per request
NO_FILTERS: tuple[Any, ...] = (None,) * 6
PAGE = 20
CITY = "Paris"
MAX_P99_OVER_P50 = 5.0
CACHED_OVER_REAL_TIME = 20.0
CUSTOM_PLANS = "-c plan_cache_mode=force_custom_plan"
LUA_RANDOM_DEAL = ROOT / "bench" / "random_deal.lua"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # for wrk; {id} is drawn by bench/random_deal.lua
    statements: Sequence[tuple[str, tuple[Any, ...]]]  # (named query, the API's values)
    goal: float  # API req/s over pgbench tps


ENDPOINTS = [
    Endpoint(
        "GET /deals/{id}",
        "/deals/{id}",
        [("get_deal", (RANDOM_ID,))],
        0.12,
    ),
    Endpoint(
        f"GET /deals?city={CITY}&min_stars=3",
        f"/deals?city={CITY}&min_stars=3",
        [
            ("list_deals_by_id", (CITY, 3, None, None, None, None, None, PAGE, 0)),
            ("count_deals", (CITY, 3, None, None, None, None)),
        ],
        0.3,
    ),
    Endpoint(
        "GET /deals?limit=20",
        f"/deals?limit={PAGE}",
        [("list_deals_by_id", (*NO_FILTERS, None, PAGE, 0)), ("count_deals", NO_FILTERS)],
        0.5,
    ),
    Endpoint(
        "GET /deals/stats",
        "/deals/stats",
        [("deal_stats_by_city", (None,) * 5)],
        0.8,
    ),
]


def pgbench_script(endpoint: Endpoint, rows: int) -> tuple[str, dict[str, str]]:
    """The endpoint's statements as a pgbench script (one transaction) and its -D values.

    Each $n becomes a pgbench variable bound as a parameter (-M prepared), or
    NULL where the API binds None: with custom plans both fold the same way.
    """
    lines: list[str] = []
    defines: dict[str, str] = {}
    for number, (name, values) in enumerate(endpoint.statements, start=1):
        query = CATALOGUE[name]
        assert len(values) == query.params, name

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
    if any(v is RANDOM_ID for _, values in endpoint.statements for v in values):
        lines.insert(0, f"\\set id random(1, {rows})")
    return "\n".join(lines) + "\n", defines


@dataclass
class Measured:
    endpoint: Endpoint
    pgbench: LoadResult
    api: LoadResult
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.api.requests_per_s / self.pgbench.requests_per_s

    @property
    def passed(self) -> bool:
        return (
            self.ratio >= self.endpoint.goal
            and self.api.p99_over_p50 <= MAX_P99_OVER_P50
            and clean(self.api)
        )


def clean(result: LoadResult) -> bool:
    return result.non_2xx == 0 and result.socket_errors == 0


def load_api(base: str, endpoint: Endpoint, args: argparse.Namespace) -> LoadResult:
    random_id = "{id}" in endpoint.path
    path = endpoint.path.replace("/{id}", "")
    script = LUA_RANDOM_DEAL if random_id else None
    script_args = [str(args.rows)] if random_id else []
    if args.warmup:
        run_wrk(
            f"{base}{path}",
            connections=args.connections,
            seconds=args.warmup,
            script=script,
            script_args=script_args,
        )
    return run_wrk(
        f"{base}{path}",
        connections=args.connections,
        seconds=args.seconds,
        script=script,
        script_args=script_args,
    )


def load_pgbench(url: str, endpoint: Endpoint, args: argparse.Namespace) -> LoadResult:
    script, defines = pgbench_script(endpoint, args.rows)
    (OUT / f"pgbench-{endpoint.path.strip('/').replace('/', '-')[:40]}.sql").write_text(script)
    if args.warmup:
        run_pgbench(
            url,
            script,
            clients=args.connections,
            seconds=args.warmup,
            defines=defines,
            options=CUSTOM_PLANS,
        )
    return run_pgbench(
        url,
        script,
        clients=args.connections,
        seconds=args.seconds,
        defines=defines,
        options=CUSTOM_PLANS,
    )


def server_env(args: argparse.Namespace, stats_cache_seconds: float) -> dict[str, str]:
    return {
        "POOL_MIN_SIZE": str(args.pool_size),
        "POOL_MAX_SIZE": str(args.pool_size),
        "STATS_CACHE_SECONDS": str(stats_cache_seconds),
        **dict(item.split("=", 1) for item in args.env),
    }


def fmt(result: LoadResult) -> str:
    return f"{result.p50_ms:7.2f} {result.p99_ms:8.2f} {result.p99_over_p50:8.1f}"


def report(measured: list[Measured], cached: LoadResult | None) -> bool:
    print(
        f"\n{'endpoint':<34} {'API req/s':>10} {'pgbench tps':>12} {'ratio':>6} {'goal':>6} "
        f"{'p50 ms':>7} {'p99 ms':>8} {'p99/p50':>8}  verdict"
    )
    ok = True
    for m in measured:
        ok &= m.passed
        print(
            f"{m.endpoint.name:<34} {m.api.requests_per_s:>10.0f} "
            f"{m.pgbench.requests_per_s:>12.0f} {m.ratio:>6.2f} {m.endpoint.goal:>6.2f} "
            f"{fmt(m.api)}  {'PASS' if m.passed else 'FAIL'}"
            + ("" if clean(m.api) else f"  non-2xx {m.api.non_2xx} errors {m.api.socket_errors}")
        )
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
    print("\npgbench (same SQL, same concurrency): p50/p99 ms per transaction")
    for m in measured:
        print(f"  {m.endpoint.name:<34} {fmt(m.pgbench)}")
    print(f"\n{'all PASS' if ok else 'some FAIL'}")
    return ok


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
    return dest


@contextmanager
def servers(
    url: str, args: argparse.Namespace, stats_cache_seconds: float
) -> Iterator[list[tuple[str, str]]]:
    """(label, base URL) of this tree's server and, with --against, the other commit's."""
    with ExitStack() as stack:
        env = server_env(args, stats_cache_seconds)
        base, _ = stack.enter_context(api_server(url, workers=args.workers, env=env))
        found = [("this tree", base)]
        if args.against:
            tree = export(args.against)
            other = {**env, "PYTHONPATH": str(tree)}
            command = [sys.executable, "-m", "service", "serve"]
            base, _ = stack.enter_context(
                api_server(url, workers=args.workers, env=other, command=command)
            )
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
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each run")
    parser.add_argument("--connections", type=int, default=32)
    # 2 workers with a pool of 10 each: a lone worker's event loop stalls whenever
    # PostgreSQL or wrk takes its core, and every request in flight waits (detail p99/p50
    # 4-7.5 with 1 worker, 2-4 with 2); pools of 4 or 5 gained nothing (README "Benchmarks").
    parser.add_argument("--workers", type=int, default=2, help="API_WORKERS of deals serve")
    parser.add_argument("--pool-size", type=int, default=10, help="POOL_MIN_SIZE = POOL_MAX_SIZE")
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
    chosen = [
        e for e in ENDPOINTS if not args.only or any(s in e.name for s in args.only.split(","))
    ]
    print(
        f"{args.rows} deals; {args.connections} connections, {args.seconds} s each; "
        f"deals serve: {args.workers} worker(s), pool {args.pool_size}"
        + (f"; env {' '.join(args.env)}" if args.env else "")
    )
    measured: list[Measured] = []
    with servers(url, args, 0) as bases:
        for endpoint in chosen:
            database = load_pgbench(url, endpoint, args)
            for _ in range(args.rounds):
                for label, base in bases:
                    api = load_api(base, endpoint, args)
                    if label == "this tree":
                        measured.append(Measured(endpoint, database, api))
                    print(
                        f"{endpoint.name:<34} {label:<12} API {api.requests_per_s:8.0f} req/s "
                        f"p50 {api.p50_ms:6.2f} p99 {api.p99_ms:7.2f}   pgbench "
                        f"{database.requests_per_s:8.0f} tps = "
                        f"{api.requests_per_s / database.requests_per_s:5.2f}x",
                        flush=True,
                    )
    cached = None
    if not args.no_cache_run and any(e.path == "/deals/stats" for e in chosen):
        with servers(url, args, 60) as bases:
            for label, base in bases:
                api = load_api(base, ENDPOINTS[-1], args)
                cached = api if label == "this tree" else cached
                print(f"{'GET /deals/stats (cache on)':<34} {label:<12} API "
                      f"{api.requests_per_s:8.0f} req/s", flush=True)  # fmt: skip
    ok = report(measured, cached)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
