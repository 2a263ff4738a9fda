"""What the measures cost per request, in process: `python -m bench.profile_ops_cost`.

bench_ops_cost measures req/s with wrk, which on the shared machine swings by
more than the few microseconds looked for here. This builds the app as
`deals serve` does (app_from_env: its logging, its settled heap) in a fresh
process per configuration (off, on, metrics only, access log only), against
the 50,000-deal bench database, and drives requests through its ASGI callable
with a minimal driver (a dict for a scope, a list for the messages sent: no
HTTP, no client library), --concurrency at once as wrk's connections are.

Per configuration and endpoint it prints the process's cost per request and
its difference to off:
- by default the CPU time (time.process_time), the median of --rounds fresh
  processes: noisy on a busy machine;
- with --callgrind, the instructions the process ran (valgrind's callgrind,
  counting only the measured requests): the same within ~1% from run to run
  whatever the machine's load, at concurrency 1 within 0.1%. It needs valgrind
  and a C compiler (a 10-line helper that switches the counting on and off is
  built into bench/out); a run takes minutes, so use few requests (400);
- with --profile, also cProfile's calls per request and the functions whose
  calls or own time differ most from off's.

The access log is written as the server writes it (LOG_LEVEL=info, stderr sent
to /dev/null: the formatting and the write are paid). Under callgrind the pool
gauges' refresh is left out: it runs once a second of wall time, which is once
per ~30 requests under valgrind instead of once per thousands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import OUT

CONFIGS = {
    "off": {"METRICS": "false", "ACCESS_LOG": "false"},
    "on": {"METRICS": "true", "ACCESS_LOG": "true"},
    "metrics": {"METRICS": "true", "ACCESS_LOG": "false"},
    "access": {"METRICS": "false", "ACCESS_LOG": "true"},
}
ENDPOINTS = {"detail": ("/deals/{id}", b""), "list": ("/deals", b"limit=20")}

# Switches callgrind's counting on (zeroed) and off (dumped) around the measured requests.
TOGGLE_C = """#include <valgrind/callgrind.h>
void counting_on(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void counting_off(void) { CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }
"""
TOGGLE = OUT / "callgrind_toggle.so"
GRIND = OUT / "callgrind"
# How many times slower a process runs under callgrind (its instructions at the rate
# measured here): what stretches a wall-clock interval of the service to as many requests.
SLOWER = 50


def scope_of(path: str, query: bytes, state: dict[str, Any]) -> dict[str, Any]:
    """The scope uvicorn (httptools) gives a wrk request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1:8000")],
        "state": state.copy(),
    }


async def drive(app: Any, endpoint: str, requests: int, concurrency: int, rows: int) -> None:
    """`requests` requests of the endpoint, `concurrency` at a time; each must answer 200."""
    template, query = ENDPOINTS[endpoint]
    ids = random.Random(1)
    left = [requests]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def client() -> None:
        while left[0] > 0:
            left[0] -= 1
            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                sent.append(message)

            path = template.replace("{id}", str(ids.randint(1, rows)))
            await app(scope_of(path, query, {}), receive, send)
            if sent[0]["status"] != 200:
                raise SystemExit(f"{path}?{query.decode()}: {sent[0]['status']}")

    await asyncio.gather(*[client() for _ in range(concurrency)])


async def started(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]]]:
    """The app's lifespan, started: its task and the queue that stops it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    answer = await outbox.get()
    if answer["type"] != "lifespan.startup.complete":
        raise SystemExit(f"startup: {answer}")
    return task, inbox


@contextlib.asynccontextmanager
async def no_refresh(_db: object) -> AsyncIterator[None]:
    yield


def functions_of(profile: cProfile.Profile, requests: int) -> dict[str, tuple[float, float]]:
    """Per function: its calls and its own time in microseconds, per request."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    found: dict[str, tuple[float, float]] = {}
    for (file, line, name), (_cc, calls, own, _total, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = f"{os.path.basename(file)}:{line}({name})"
        found[key] = (calls / requests, own / requests * 1e6)
    return found


def child(args: argparse.Namespace) -> None:
    """One configuration in this process: print {endpoint: figures} as JSON."""
    import uvloop

    devnull = os.open(os.devnull, os.O_WRONLY)
    real_stderr = os.dup(2)
    os.dup2(devnull, 2)  # the access lines are written, to nowhere, as in the bench
    from service.api import app as api
    from service.api import metrics

    toggle = ctypes.CDLL(str(TOGGLE)) if args.callgrind else None
    if toggle is not None:
        api.pool_gauges = no_refresh  # type: ignore[attr-defined,assignment]
        # the access lines' wall-clock window, as many requests long as natively
        metrics.ACCESS_WRITE_EVERY *= SLOWER
    writes = [0, 0]  # access-line writes and lines, counted to print lines per write
    namespace = vars(metrics)  # where Measured finds write_access_lines
    write_lines = namespace["write_access_lines"]

    def counted(handler: Any, logger: str, lines: list[Any]) -> None:
        writes[0] += 1
        writes[1] += len(lines)
        write_lines(handler, logger, lines)

    namespace["write_access_lines"] = counted
    app = api.app_from_env()
    out: dict[str, Any] = {}

    async def main() -> None:
        task, inbox = await started(app)
        for endpoint in args.endpoints.split(","):
            await drive(app, endpoint, args.warmup, args.concurrency, args.rows)
            profile = cProfile.Profile() if args.profile else None
            cpu = time.process_time()
            if profile is not None:
                profile.enable()
            writes[:] = 0, 0
            # The metrics are observed in batches (every LONGEST requests in one process):
            # the warm-up's are observed now, uncounted, and the measured requests' at the
            # end, counted. Otherwise a batch of 1,024 requests' values could fall into a
            # window of 400 and be charged to them.
            metrics.observe_pending()
            if toggle is not None:
                toggle.counting_on()
            await drive(app, endpoint, args.requests, args.concurrency, args.rows)
            metrics.observe_pending()  # the measured requests' values, counted with them
            metrics.write_access()  # the last lines' write, counted with the requests
            if toggle is not None:
                toggle.counting_off()
            if profile is not None:
                profile.disable()
            figures: dict[str, Any] = {
                "us": (time.process_time() - cpu) / args.requests * 1e6,
                "lines_per_write": writes[1] / writes[0] if writes[0] else 0.0,
            }
            if profile is not None:
                figures["functions"] = functions_of(profile, args.requests)
                figures["calls"] = sum(n for n, _ in figures["functions"].values())
            out[endpoint] = figures
        await inbox.put({"type": "lifespan.shutdown"})
        await task

    try:
        uvloop.run(main())
    finally:
        os.dup2(real_stderr, 2)
    print(json.dumps(out))


def build_toggle() -> None:
    if TOGGLE.exists():
        return
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind and a C compiler (cc)")
    source = OUT / "callgrind_toggle.c"
    OUT.mkdir(parents=True, exist_ok=True)
    source.write_text(TOGGLE_C)
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(TOGGLE), str(source)], check=True
    )


def instructions(dump: Path) -> int:
    """The instructions a callgrind dump counted (its `totals:` line)."""
    with dump.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit(f"{dump}: no totals")


def run_child(config: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {
        **os.environ,
        "DATABASE_URL": args.url,
        "LOG_LEVEL": "info",
        "LOG_FORMAT": args.log_format,
        "POOL_MIN_SIZE": "10",
        "POOL_MAX_SIZE": "10",
        **CONFIGS[config],
    }
    command = [sys.executable, "-m", "bench.profile_ops_cost", "--child"]
    command += ["--endpoints", args.endpoints, "--requests", str(args.requests)]
    command += ["--warmup", str(args.warmup), "--concurrency", str(args.concurrency)]
    command += ["--rows", str(args.rows), "--log-format", args.log_format]
    command += ["--profile"] if args.profile else []
    dumps = GRIND / f"{config}.{os.getpid()}"
    if args.callgrind:
        # valgrind runs the process ~SLOWER times slower: no pool or statement timeout may
        # fire
        env.update(POOL_ACQUIRE_TIMEOUT="600", STATEMENT_TIMEOUT_MS="0", PYTHONHASHSEED="0")
        GRIND.mkdir(parents=True, exist_ok=True)
        for old in GRIND.glob(f"{dumps.name}*"):
            old.unlink()
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={dumps}", *command, "--callgrind",
        ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{config}: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if args.callgrind:  # one dump per endpoint, numbered in the order measured
        for number, endpoint in enumerate(args.endpoints.split(","), start=1):
            dump = Path(f"{dumps}.{number}")
            result[endpoint]["ir"] = instructions(dump) / args.requests
            dump.unlink()
        Path(dumps).unlink(missing_ok=True)
    return result


def report(args: argparse.Namespace, found: dict[str, list[dict[str, Any]]]) -> None:
    unit, figure = ("instructions", "ir") if args.callgrind else ("CPU us", "us")
    configs, endpoints = list(found), args.endpoints.split(",")

    def median(config: str, endpoint: str, key: str = figure) -> float:
        return float(statistics.median(run[endpoint][key] for run in found[config]))

    print(f"\n{'endpoint':<8} {'config':<8} {unit + '/req':>16} {'- off':>9}", end="")
    print(f" {'calls/req':>9} {'- off':>6}" if args.profile else "")
    for endpoint in endpoints:
        off = median("off", endpoint) if "off" in found else 0.0
        for config in configs:
            value = median(config, endpoint)
            line = f"{endpoint:<8} {config:<8} {value:>16.1f} {value - off:>+9.1f}"
            if args.profile:
                calls = median(config, endpoint, "calls")
                off_calls = median("off", endpoint, "calls") if "off" in found else 0.0
                line += f" {calls:>9.1f} {calls - off_calls:>+6.1f}"
            print(line)
    if not args.profile or "off" not in found:
        return
    for endpoint in endpoints:
        base = found["off"][0][endpoint]["functions"]
        for config in configs[1:] if configs[0] == "off" else configs:
            if config == "off":
                continue
            functions = found[config][0][endpoint]["functions"]
            rows = []
            for key in set(functions) | set(base):
                calls, own = functions.get(key, (0.0, 0.0))
                off_calls, off_own = base.get(key, (0.0, 0.0))
                if abs(calls - off_calls) >= 0.01:
                    rows.append((calls - off_calls, own - off_own, calls, own, key))
            rows.sort(key=lambda row: -abs(row[0]))
            print(f"\n{endpoint}, {config} against off: calls per request, own us per request")
            for more_calls, more_own, calls, own, key in rows[: args.top]:
                print(
                    f"  {more_calls:+6.2f} ({calls:6.2f})  {more_own:+6.2f} us ({own:6.2f})  {key}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--configs", default="off,on,metrics,access")
    parser.add_argument("--endpoints", default="detail,list")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per config")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--profile", action="store_true", help="cProfile calls and own time")
    parser.add_argument("--callgrind", action="store_true", help="instructions (valgrind)")
    parser.add_argument("--top", type=int, default=25, help="functions shown with --profile")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from bench.common import embedded_server, loaded_database

    if args.callgrind:
        build_toggle()
    args.url = loaded_database(embedded_server(), args.rows)
    configs = args.configs.split(",")
    found: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    print(
        f"{args.requests} requests (after {args.warmup}) per endpoint, {args.concurrency} "
        f"at a time; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    key = "ir" if args.callgrind else "us"
    for number in range(args.rounds):
        for config in configs if number % 2 == 0 else reversed(configs):
            found[config].append(run_child(config, args))
            figures = found[config][-1]
            print(
                f"round {number + 1} {config:<8} "
                + "  ".join(
                    f"{e} {figures[e][key]:10.1f} ({figures[e]['lines_per_write']:.1f} lines"
                    " per access-line write)"
                    for e in args.endpoints.split(",")
                ),
                flush=True,
            )
    report(args, found)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
