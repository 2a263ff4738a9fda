"""What /metrics and the access log cost: `python -m bench.bench_ops_cost`.

On the 50,000-deal data set, two `deals serve` (1 worker each, the same tree)
run side by side: one with METRICS=true ACCESS_LOG=true, one with both false
(Server-Timing, on every response whatever they say, is in both). With 2 CPUs
or more (`--no-pin` to leave them free) the servers run on CPU 0, PostgreSQL
and wrk on the others: a server then never waits for the CPU behind its own
database or load generator, and what it serves is what it can compute.
wrk (127.0.0.1 only) loads them in turn, one second each, --seconds times
(the order swapped every second), so that a drift of the machine's speed
(another tenant of the host) slows both alike; before, 5 to 8 s of one then
of the other left two identical servers 8-10% apart in a round. Every round
starts new server processes: two processes of the same configuration can
differ by several percent (hash seed, memory layout), which one pair kept
for every round would report as the cost of the measures. Per endpoint it
prints the median req/s of each and their ratio, and each round's ratio on /
off (its two servers loaded in the same seconds): the goal is on that
paired ratio's median, on >= 0.95x off (at most 5% slower with the measures
on). The ratio of the medians compares servers of different rounds, and so
carries the machine's drift between rounds: it is printed beside it, as the
server process's CPU time per request (/proc) is.

The access log is really written: LOG_LEVEL=info (the benches' other servers
run at warning, which would skip the line), the server's stderr going to
/dev/null, so the formatting and the write are paid, not a consumer.
`--log-format json` measures the JSON lines instead of text; `--each` adds a
server with only METRICS and one with only ACCESS_LOG, to split the cost;
`--calibrate` adds a second server with both on, and prints on / on again:
the spread of a ratio between two identical servers, which a difference of
a few percent must exceed to mean anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field

from bench.common import (
    DEALS,
    LoadResult,
    api_server,
    chosen,
    embedded_server,
    loaded_database,
    postgres_on,
    stat_fields,
    wrk_api,
    wrk_options,
)

GOAL = 0.95  # req/s with the measures on, over req/s with them off


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    random_id: bool = False


ENDPOINTS = [
    Endpoint("GET /deals/{id}", "/deals", random_id=True),
    Endpoint("GET /deals?limit=20", "/deals?limit=20"),
]


@dataclass(frozen=True)
class Config:
    label: str
    metrics: bool
    access_log: bool

    def env(self) -> dict[str, str]:
        return {
            "METRICS": str(self.metrics).lower(),
            "ACCESS_LOG": str(self.access_log).lower(),
        }


ON = Config("on", metrics=True, access_log=True)
OFF = Config("off", metrics=False, access_log=False)
AGAIN = Config("on, again", metrics=True, access_log=True)  # --calibrate: on against on
METRICS_ONLY = Config("metrics only", metrics=True, access_log=False)
ACCESS_LOG_ONLY = Config("access log only", metrics=False, access_log=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Runs:
    results: list[LoadResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # the server's CPU per request

    @property
    def median(self) -> float:
        return statistics.median(r.requests_per_s for r in self.results)

    @property
    def median_cpu_us(self) -> float:
        return statistics.median(self.cpu_us)

    @property
    def errors(self) -> int:
        return sum(r.non_2xx + r.socket_errors for r in self.results)


def load(base: str, endpoint: Endpoint, args: argparse.Namespace, seconds: int) -> LoadResult:
    return wrk_api(f"{base}{endpoint.path}", args, seconds, endpoint.random_id, args.others)


def order(configs: Sequence[Config], round_number: int) -> list[Config]:
    """The configurations of one round: forwards on even rounds, backwards on odd ones."""
    return list(configs) if round_number % 2 == 0 else list(reversed(configs))


def paired_rates(on: Runs, off: Runs) -> list[float]:
    """Each round's req/s on / off: two servers loaded in the same seconds, in turn."""
    pairs = zip(on.results, off.results, strict=True)
    return [a.requests_per_s / b.requests_per_s for a, b in pairs]


def paired(on: Runs, off: Runs, label: str = "on / off") -> str:
    """The ratios of each round's two runs, run one after the other on the same machine:
    their median and range, which a drift of the machine's load between rounds moves less
    than the ratio of the medians."""
    rates = paired_rates(on, off)
    cpu = [a / b for a, b in zip(on.cpu_us, off.cpu_us, strict=True)]
    return (
        f"per round: req/s {label} median {statistics.median(rates):.3f} "
        f"({min(rates):.3f}-{max(rates):.3f}), CPU per request {label} median "
        f"{statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f})"
    )


def report(
    endpoints: Sequence[Endpoint], configs: Sequence[Config], runs: dict[tuple[str, str], Runs]
) -> bool:
    """Medians per endpoint and server: req/s and its ratio to off, the server's CPU per
    request and its ratio to off (steadier than req/s on a busy machine)."""
    print(
        f"\n{'endpoint':<22} {'server':<16} {'req/s':>8} {'x off':>6} "
        f"{'CPU us/req':>10} {'x off':>6}"
    )
    ok = True
    for endpoint in endpoints:
        off = runs[(endpoint.name, OFF.label)]
        for c in configs:
            found = runs[(endpoint.name, c.label)]
            print(
                f"{endpoint.name:<22} {c.label:<16} {found.median:>8.0f} "
                f"{found.median / off.median:>6.3f} {found.median_cpu_us:>10.0f} "
                f"{found.median_cpu_us / off.median_cpu_us:>6.3f}"
                + (f"  errors {found.errors}" if found.errors else "")
            )
        on = runs[(endpoint.name, ON.label)]
        if any(c is AGAIN for c in configs):
            again = runs[(endpoint.name, AGAIN.label)]
            print(
                f"{endpoint.name:<22} calibration, the same configuration twice: "
                f"{paired(on, again, 'on / on again')}"
            )
        ratio = statistics.median(paired_rates(on, off))
        passed = ratio >= GOAL and on.errors == 0 and off.errors == 0
        ok &= passed
        print(
            f"{endpoint.name:<22} on / off = {ratio:.3f} req/s, the median of the rounds' "
            f"(goal >= {GOAL:.2f}): {'PASS' if passed else 'FAIL'}; the ratio of the "
            f"medians {on.median / off.median:.3f}"
        )
        print(f"{endpoint.name:<22} {paired(on, off)}\n")
    print("all PASS" if ok else "some FAIL")
    return ok


def combined(slices: Sequence[LoadResult]) -> LoadResult:
    """One result of equally long wrk runs: their mean req/s, their requests and errors
    summed, the median of their p50 and of their p99."""
    return LoadResult(
        requests_per_s=statistics.fmean(r.requests_per_s for r in slices),
        p50_ms=statistics.median(r.p50_ms for r in slices),
        p99_ms=statistics.median(r.p99_ms for r in slices),
        requests=sum(r.requests for r in slices),
        non_2xx=sum(r.non_2xx for r in slices),
        socket_errors=sum(r.socket_errors for r in slices),
    )


def measured(
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]],
    configs: Sequence[Config],
    endpoint: Endpoint,
    args: argparse.Namespace,
) -> dict[str, tuple[LoadResult, float]]:
    """Each server warmed up, then --seconds of load each, one second at a time, in turn:
    a drift of the machine's speed (another tenant's load) that lasts more than a second
    or two then slows them all alike. Per server: the combined result, and its CPU time
    per request."""
    if args.warmup:
        for c in configs:
            load(servers[c.label][0], endpoint, args, args.warmup)
    slices: dict[str, list[LoadResult]] = {c.label: [] for c in configs}
    cpu = dict.fromkeys(slices, 0.0)
    for number in range(args.seconds):
        for c in order(configs, number):
            base, process = servers[c.label]
            before = cpu_seconds(process.pid)  # 1 worker: the server process serves
            slices[c.label].append(load(base, endpoint, args, 1))
            cpu[c.label] += cpu_seconds(process.pid) - before
    found = {}
    for label, results in slices.items():
        result = combined(results)
        found[label] = (result, cpu[label] / max(result.requests, 1) * 1e6)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    wrk_options(parser, seconds=8, warmup_help="of each server, before each measured run")
    parser.add_argument(
        "--rounds", type=int, default=8, help="rounds per endpoint, new servers each"
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--each", action="store_true", help="also serve with METRICS alone and ACCESS_LOG alone"
    )
    noise = "also a second server with both on: on / on again is the bench's own noise"
    parser.add_argument("--calibrate", action="store_true", help=noise)
    parser.add_argument(
        "--only", default="", help="comma-separated substrings of endpoint names to run"
    )
    pin = "the server on CPU 0, PostgreSQL and wrk on the others (the default with 2+ CPUs)"
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None, help=pin)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    can_pin = cpus >= 2 and shutil.which("taskset") is not None
    if args.pin is None:
        args.pin = can_pin
    elif args.pin and not can_pin:
        raise SystemExit("--pin needs 2 CPUs or more and taskset (util-linux)")
    others = "1" if cpus == 2 else f"1-{cpus - 1}"
    args.others = others if args.pin else None  # PostgreSQL's and wrk's CPUs

    server = embedded_server()
    url = loaded_database(server, args.rows)
    serve = ["taskset", "-c", "0", *DEALS, "serve"] if args.pin else None

    endpoints = chosen(ENDPOINTS, args.only)
    configs = [
        ON,
        OFF,
        *([METRICS_ONLY, ACCESS_LOG_ONLY] if args.each else []),
        *([AGAIN] if args.calibrate else []),
    ]
    common = {
        "POOL_MIN_SIZE": str(args.pool_size),
        "POOL_MAX_SIZE": str(args.pool_size),
        "LOG_LEVEL": "info",
        "LOG_FORMAT": args.log_format,
    }
    print(
        f"{args.rows} deals; deals serve: 1 worker, pool {args.pool_size}, "
        f"LOG_FORMAT={args.log_format}; "
        + (f"the server on CPU 0, PostgreSQL and wrk on {args.others}; " if args.pin else "")
        + f"wrk {args.connections} connections, "
        f"{args.rounds} rounds of {args.seconds} s per server and endpoint; "
        f"load average {load_average()}"
    )
    runs = {(e.name, c.label): Runs() for e in endpoints for c in configs}
    with postgres_on(server, args.others) if args.others else nullcontext():
        measure_rounds(args, url, endpoints, configs, common, serve, runs)
    ok = report(endpoints, configs, runs)
    print(f"load average {load_average()}")  # a figure means little without it
    raise SystemExit(0 if ok else 1)


def measure_rounds(
    args: argparse.Namespace,
    url: str,
    endpoints: Sequence[Endpoint],
    configs: Sequence[Config],
    common: dict[str, str],
    serve: list[str] | None,
    runs: dict[tuple[str, str], Runs],
) -> None:
    """--rounds rounds, each with new servers of every configuration, each loaded in turn
    on each endpoint."""
    for number in range(args.rounds):
        # Fresh server processes every round: one process can be several percent faster or
        # slower than another of the same configuration (its hash seed, its memory layout,
        # its place among the others), so each round draws new ones for every configuration.
        with ExitStack() as stack:
            servers = {
                c.label: stack.enter_context(
                    api_server(url, env={**common, **c.env()}, command=serve)
                )
                for c in order(configs, number)
            }
            for endpoint in endpoints:
                found = measured(servers, order(configs, number), endpoint, args)
                for c in order(configs, number):
                    result, cpu_us = found[c.label]
                    runs[(endpoint.name, c.label)].results.append(result)
                    runs[(endpoint.name, c.label)].cpu_us.append(cpu_us)
                    print(
                        f"{endpoint.name:<22} round {number + 1} {c.label:<16} "
                        f"{result.requests_per_s:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:7.2f} ms  CPU {cpu_us:5.0f} us/request",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
