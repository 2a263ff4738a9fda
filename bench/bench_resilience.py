"""Overload and restart, measured: `python -m bench.bench_resilience`.

1. Overload: one worker with a pool of 4 under 4, 32, 256 and 1000 connections.
   Prints the good (2xx) throughput beside the peak, how much was shed with
   503 + Retry-After, and p50/p99: p99 must stay near the acquire timeout plus
   the query, not grow with the queue.
2. Rolling restart: two workers under load, SIGHUP mid-run (uvicorn starts a
   new worker, then drains the old one). Prints failed requests: the goal is 0.
3. SIGTERM under load: the exit code (goal 0) of a server stopped mid-run.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from bench.common import LoadResult, api_server, embedded_server, loaded_database, row, run_wrk

POOL = {"POOL_MIN_SIZE": "4", "POOL_MAX_SIZE": "4", "POOL_ACQUIRE_TIMEOUT": "0.5"}


def good_rate(result: LoadResult, seconds: int) -> float:
    return (result.requests - result.non_2xx) / seconds


def overload(url: str, path: str, seconds: int, acquire_timeout: float) -> None:
    print(f"\n== overload: 1 worker, pool of 4, acquire timeout {acquire_timeout} s: {path}")
    env = {**POOL, "POOL_ACQUIRE_TIMEOUT": str(acquire_timeout)}
    with api_server(url, env=env) as (base, _process):
        results = {}
        for connections in (4, 32, 256, 1000):
            result = run_wrk(f"{base}{path}", connections=connections, seconds=seconds)
            results[connections] = result
            print(row(f"{connections} connections", result))
        peak = max(good_rate(r, seconds) for r in results.values())
        worst = results[1000]
        print(
            f"good throughput at 1000 connections: {good_rate(worst, seconds):.0f}/s = "
            f"{good_rate(worst, seconds) / peak:.2f}x the peak {peak:.0f}/s; "
            f"shed {worst.non_2xx} with 503; p99 {worst.p99_ms:.0f} ms "
            f"(bound: acquire timeout {acquire_timeout * 1000:.0f} ms + the query)"
        )


def rolling_restart(url: str, path: str, seconds: int) -> None:
    print(f"\n== rolling restart: 2 workers, SIGHUP after {seconds // 3} s of {seconds} s: {path}")
    with api_server(url, workers=2, env=POOL) as (base, process):
        timer = threading.Timer(seconds / 3, os.kill, (process.pid, signal.SIGHUP))
        timer.start()
        result = run_wrk(f"{base}{path}", connections=16, seconds=seconds)
        timer.join()
        print(row("16 connections across SIGHUP", result))
        failed = result.non_2xx + result.socket_errors
        print(f"failed requests across the restart: {failed} (goal 0)")


def sigterm_exit(url: str, path: str) -> None:
    print("\n== SIGTERM under load: 1 worker")
    with api_server(url, env=POOL) as (base, process):
        timer = threading.Timer(2, process.send_signal, (signal.SIGTERM,))
        timer.start()
        started = time.monotonic()
        run_wrk(f"{base}{path}", connections=16, seconds=4)
        timer.join()
        code = process.wait(timeout=30)
        elapsed = time.monotonic() - started
        print(f"exit code after SIGTERM: {code} (goal 0); stopped within {elapsed:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--path", default="/deals?limit=20")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--acquire-timeout", type=float, default=0.5)
    parser.add_argument("--only", choices=["overload", "restart", "sigterm"])
    args = parser.parse_args()
    server = embedded_server()
    url = loaded_database(server, args.rows)
    if args.only in (None, "overload"):
        overload(url, args.path, args.seconds, args.acquire_timeout)
    if args.only in (None, "restart"):
        rolling_restart(url, args.path, args.seconds)
    if args.only in (None, "sigterm"):
        sigterm_exit(url, args.path)


if __name__ == "__main__":
    main()
