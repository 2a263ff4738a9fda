"""What the token check costs: `python -m bench.bench_auth_cost`.

GET /deals/{id} (a random id per request, as bench/bench_http.py) against two
`deals serve` of this tree on the same database: one open, one with
AUTH_JWT_SECRET that is sent a valid HS256 token (deals token's) on every
request. wrk loads them in alternating rounds, so drift of the machine (other
work, CPU frequency) falls on both alike; the figure judged is the ratio of
their summed requests, token / open. Goal (the auth issue): the check costs
at most 10%, a ratio of 0.90 or more.
"""

from __future__ import annotations

import argparse
import secrets
import time
from statistics import median

from bench import ROOT
from bench.common import (
    LoadResult,
    api_server,
    embedded_server,
    loaded_database,
    run_wrk,
    wrk_options,
)
from service.cli.token import mint

LUA = ROOT / "bench" / "random_deal.lua"
GOAL = 0.90


def load(base: str, args: argparse.Namespace, token: str | None, seconds: int) -> LoadResult:
    return run_wrk(
        f"{base}/deals",
        connections=args.connections,
        seconds=seconds,
        script=LUA,
        script_args=[str(args.rows), *([token] if token else [])],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    wrk_options(parser, seconds=10, warmup_help="before round 1")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each")
    parser.add_argument("--workers", type=int, default=2, help="API_WORKERS of deals serve")
    args = parser.parse_args()

    url = loaded_database(embedded_server(), args.rows)
    secret = secrets.token_urlsafe(48)
    token = mint(secret, ["deals:read"], ttl=3600, sub="bench", aud=None, now=time.time())
    env = {"POOL_MIN_SIZE": str(args.pool_size), "POOL_MAX_SIZE": str(args.pool_size)}
    print(
        f"{args.rows} deals; GET /deals/{{id}}; {args.connections} connections, "
        f"{args.rounds} x {args.seconds} s each; deals serve: {args.workers} worker(s), "
        f"pool {args.pool_size}"
    )
    with (
        api_server(url, workers=args.workers, env=env) as (open_base, _),
        api_server(url, workers=args.workers, env={**env, "AUTH_JWT_SECRET": secret}) as (
            guarded_base,
            _,
        ),
    ):
        if args.warmup:
            load(open_base, args, None, args.warmup)
            load(guarded_base, args, token, args.warmup)
        opened: list[LoadResult] = []
        guarded: list[LoadResult] = []
        print(f"\n{'round':<6} {'open req/s':>11} {'token req/s':>12} {'ratio':>6}")
        for number in range(1, args.rounds + 1):
            # Alternate which goes first, so neither always follows the other's load.
            if number % 2:
                opened.append(load(open_base, args, None, args.seconds))
                guarded.append(load(guarded_base, args, token, args.seconds))
            else:
                guarded.append(load(guarded_base, args, token, args.seconds))
                opened.append(load(open_base, args, None, args.seconds))
            print(
                f"{number:<6} {opened[-1].requests_per_s:>11.0f} "
                f"{guarded[-1].requests_per_s:>12.0f} "
                f"{guarded[-1].requests_per_s / opened[-1].requests_per_s:>6.3f}"
            )
    bad = sum(r.non_2xx + r.socket_errors for r in [*opened, *guarded])
    ratio = sum(r.requests for r in guarded) / sum(r.requests for r in opened)
    per_round = median(
        g.requests_per_s / o.requests_per_s for g, o in zip(guarded, opened, strict=True)
    )
    print(
        f"\nopen p50/p99 ms {median(r.p50_ms for r in opened):.2f}/"
        f"{median(r.p99_ms for r in opened):.2f}; token "
        f"{median(r.p50_ms for r in guarded):.2f}/{median(r.p99_ms for r in guarded):.2f}"
    )
    print(f"token / open: {ratio:.3f} overall, {per_round:.3f} median of rounds")
    print(f"cost of the check: {(1 - ratio) * 100:.1f}% (goal <= {(1 - GOAL) * 100:.0f}%)")
    if bad:
        print(f"non-2xx or socket errors: {bad}")
    print("PASS" if ratio >= GOAL and not bad else "FAIL")


if __name__ == "__main__":
    main()
