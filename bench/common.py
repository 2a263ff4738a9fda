"""Shared pieces of the benchmarks: a bench database, a server, wrk and pgbench.

Benchmarks print ratios measured in one run on this machine; absolute numbers
on a shared 2-core box are noise. Everything talks to 127.0.0.1 or unix sockets.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg

from bench import ROOT
from service import migrate
from service.embedded import EmbeddedPostgres, bin_dir

OUT = ROOT / "bench" / "out"
DEALS = [sys.executable, "-m", "service"]


def wrk_options(
    parser: argparse.ArgumentParser, *, seconds: int, warmup_help: str = "before each run"
) -> None:
    """The options of every wrk benchmark: --rows (of the loaded database), --seconds and
    --warmup of each run, --connections (wrk's) and --pool-size (the API's pool)."""
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seconds", type=int, default=seconds, help="wrk duration of each run")
    parser.add_argument("--warmup", type=int, default=2, help=f"seconds of load {warmup_help}")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=10, help="POOL_MIN_SIZE = POOL_MAX_SIZE")


# Each request GETs /deals/{id} with a random id of the --rows loaded (args after `--`).
LUA_RANDOM_DEAL = ROOT / "bench" / "random_deal.lua"


def wrk_api(
    url: str, args: argparse.Namespace, seconds: int, random_id: bool, cpus: str | None = None
) -> LoadResult:
    """wrk with --connections on `url`, or on `url`/{a random id} when random_id; on the
    CPUs listed by `cpus` (taskset's list, one wrk thread each) when given."""
    return run_wrk(
        url,
        connections=args.connections,
        seconds=seconds,
        script=LUA_RANDOM_DEAL if random_id else None,
        script_args=[str(args.rows)] if random_id else [],
        cpus=cpus,
    )


def warmed_wrk(url: str, args: argparse.Namespace, random_id: bool) -> LoadResult:
    """--warmup seconds of wrk_api on `url` (not measured), then --seconds measured."""
    if args.warmup:
        wrk_api(url, args, args.warmup, random_id)
    return wrk_api(url, args, args.seconds, random_id)


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


def chosen(items: Sequence[N], only: str) -> list[N]:
    """The items whose name holds one of the comma-separated substrings of --only (all
    of them when it is empty)."""
    return [i for i in items if not only or any(s in i.name for s in only.split(","))]


def embedded_server() -> EmbeddedPostgres:
    """A PostgreSQL of the benchmarks' own, in bench/out/pg (not the developer's .data/)."""
    server = EmbeddedPostgres(OUT / "pg")
    server.start()
    return server


def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = server.url(name)
    migrate.apply(url)
    return url


SEED = ROOT / "bench" / "seed.sql"


def loaded_database(server: EmbeddedPostgres, rows: int) -> str:
    """A migrated database holding `rows` deals seeded by bench/seed.sql (built once, reused).

    Seeded set-based in SQL, deterministically, so that every bench measures the same data.
    """
    name = f"bench_{rows}"
    url = server.url(name)
    try:
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT count(*) FROM deals").fetchone()
        if found is not None and found[0] == rows:
            migrate.apply(url)  # a database seeded by an older tree: its schema brought up to date
            settle(url)
            return url
    except psycopg.Error:
        pass
    url = fresh_database(server, name)
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT set_config('bench.rows', %s, false)", (str(rows),))
        with conn.transaction():
            conn.execute(SEED.read_bytes())
        conn.execute("VACUUM ANALYZE")
    settle(url)
    print(f"seeded {rows} deals in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return url


def settle(url: str, tries: int = 5) -> None:
    """VACUUM ANALYZE until the visibility map covers the tables, as on a settled database.

    A VACUUM that runs while another snapshot is open (an autovacuum worker's,
    say) cannot mark pages all-visible; index-only scans then look costly and
    the planner picks other plans than production would.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(tries):
            covered = conn.execute(
                "SELECT coalesce(min(relallvisible::float / greatest(relpages, 1)), 1) "
                "FROM pg_class WHERE relname IN ('deals', 'deal_categories', 'hotels') "
                "AND relpages > 0"
            ).fetchone()
            if covered is not None and covered[0] >= 0.95:
                return
            conn.execute("VACUUM ANALYZE")
            time.sleep(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def api_server(
    database_url: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`deals serve` on a free 127.0.0.1 port; yields (base URL, process). `cwd`: the
    directory it runs in (another commit's tree, whose `service` then comes first)."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "API_PORT": str(port),
        "API_WORKERS": str(workers),
        "LOG_LEVEL": "warning",
        **(env or {}),
    }
    process = subprocess.Popen(
        command or [*DEALS, "serve"],
        env=environment,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health/ready", process)
        yield base, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200")


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int

    @property
    def p99_over_p50(self) -> float:
        return self.p99_ms / self.p50_ms if self.p50_ms else float("inf")


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_cpus(cpus: str) -> list[int]:
    """taskset's list ("1", "1-3", "0,2") as the CPUs it names."""
    found: list[int] = []
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        found += range(int(first), int(last or first) + 1)
    return found


def stat_fields(pid: int | str) -> list[str]:
    """A process's /proc/PID/stat fields after its command's closing parenthesis: the
    state first, then ppid, pgrp, ... (utime and stime are [11] and [12])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def processes() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and stat_fields (Linux /proc); one that ends meanwhile is
    skipped."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            yield int(pid), stat_fields(pid)
        except OSError:
            continue


def postmaster_pid(pgdata: Path) -> int:
    """The pid of the PostgreSQL serving this data directory (its postmaster.pid)."""
    return int((pgdata / "postmaster.pid").read_text().split()[0])


@contextmanager
def postgres_on(server: EmbeddedPostgres, cpus: str) -> Iterator[None]:
    """PostgreSQL on the CPUs listed (taskset's list) meanwhile: its postmaster and the
    processes it runs now, and so the backends it forks from then on (a pool's
    connections); all CPUs again after."""
    postmaster = postmaster_pid(server.pgdata)

    def pin(to: str) -> None:
        children = [pid for pid, fields in processes() if int(fields[1]) == postmaster]
        for pid in [postmaster, *children]:
            subprocess.run(["taskset", "-a", "-p", "-c", to, str(pid)], capture_output=True)

    pin(cpus)
    try:
        yield
    finally:
        pin(f"0-{(os.cpu_count() or 1) - 1}")


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: apt-get install wrk (Debian's package)")
    return found


def run_wrk(
    url: str,
    *,
    connections: int = 32,
    seconds: int = 10,
    threads: int = 2,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    cpus: str | None = None,
) -> LoadResult:
    """wrk against one URL (127.0.0.1 only); requests/s and p50/p99 from --latency.

    script: a wrk Lua script that makes the requests (args after `--`). cpus: the CPUs
    wrk runs on (taskset's list), one thread each, instead of `threads` anywhere.
    """
    assert url.startswith("http://127.0.0.1:"), "load tests talk to loopback only"
    lua = ["-s", str(script)] if script else []
    pinned = ["taskset", "-c", cpus] if cpus else []
    if cpus:
        threads = len(parse_cpus(cpus))
    out = subprocess.run(
        [*pinned, wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "--timeout", "10s", *lua, url, *(["--", *script_args] if script_args else [])],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors_match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    socket_errors = sum(int(g) for g in errors_match.groups()) if errors_match else 0
    return LoadResult(
        requests_per_s=rps,
        p50_ms=p50,
        p99_ms=p99,
        requests=total,
        non_2xx=int(non2xx_match[1]) if non2xx_match else 0,
        socket_errors=socket_errors,
    )


def run_pgbench(
    database_url: str,
    script: str,
    *,
    clients: int = 32,
    seconds: int = 10,
    threads: int = 2,
    defines: Mapping[str, str] | None = None,
    options: str = "",
) -> LoadResult:
    """pgbench running a custom script (the same SQL the API sends) over the unix socket.

    defines: pgbench variables (-D name=value) the script reads as :name.
    options: server settings for its sessions (PGOPTIONS), e.g. "-c plan_cache_mode=...".
    """
    OUT.mkdir(parents=True, exist_ok=True)
    script_path = OUT / "pgbench-script.sql"
    script_path.write_text(script)
    for stale in OUT.glob("pgbench.*"):
        stale.unlink()
    variables = [f"-D{name}={value}" for name, value in (defines or {}).items()]
    out = subprocess.run(
        [str(bin_dir() / "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
         "-j", str(threads), "-T", str(seconds), "-r", "--log", "--log-prefix",
         str(OUT / "pgbench"), *variables, "-f", str(script_path), database_url],
        check=True, capture_output=True, text=True, cwd=OUT,
        env={**os.environ, "PGOPTIONS": options},
    ).stdout  # fmt: skip
    tps = float(re.search(r"tps = ([\d.]+)", out)[1])  # type: ignore[index]
    total = int(re.search(r"number of transactions actually processed: (\d+)", out)[1])  # type: ignore[index]
    latencies = sorted(_pgbench_latencies_ms())
    p50 = latencies[len(latencies) // 2] if latencies else 0.0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return LoadResult(tps, p50, p99, total, 0, 0)


def _pgbench_latencies_ms() -> list[float]:
    values: list[float] = []
    for log in OUT.glob("pgbench.*"):
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                values.append(int(parts[2]) / 1000.0)
        log.unlink()
    return values


def row(label: str, result: LoadResult) -> str:
    return (
        f"{label:<44} {result.requests_per_s:>9.0f} req/s  p50 {result.p50_ms:>7.2f} ms  "
        f"p99 {result.p99_ms:>7.2f} ms  p99/p50 {result.p99_over_p50:>5.1f}  "
        f"non-2xx {result.non_2xx:>6}  socket errors {result.socket_errors}"
    )
