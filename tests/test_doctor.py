"""`deals doctor`: each check turns fail or warn on the fault it looks for, names
what it found (route, table, query name, pid) with the fix, and ok once the
fault is gone. /metrics is mostly a test double: canned Prometheus text served by
http.server on 127.0.0.1; one test reads the real /metrics of `deals serve`."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import pytest

from service.cli.main import main
from service.db import doctor as doctor_sql
from service.db.catalogue import CATALOGUE
from service.db.deals import LIST_DEALS
from service.doctor import checks
from service.doctor.metrics import Metrics, parse
from service.doctor.report import Check, Thresholds
from service.load.generator import generate
from service.load.steps import load_file
from tests.known import Known
from tests.serving import serving

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
NAMES = ["n_plus_one", "missing_index", "pool", "bloat"]
TABLES = "hotels, deals, categories, deal_categories"


def histogram(route: str, per_request: int, requests: int) -> str:
    """db_queries_per_request of `requests` requests of `route`, each running `per_request`."""
    lines = []
    for le in (1, 2, 3, 5, 10, 25, 50):
        lines.append(
            f'db_queries_per_request_bucket{{route="{route}",le="{le}.0"}} '
            f"{requests if per_request <= le else 0}.0"
        )
    lines += [
        f'db_queries_per_request_bucket{{route="{route}",le="+Inf"}} {requests}.0',
        f'db_queries_per_request_sum{{route="{route}"}} {per_request * requests}.0',
        f'db_queries_per_request_count{{route="{route}"}} {requests}.0',
    ]
    return "\n".join(lines)


def metrics_text(*routes: tuple[str, int, int], in_use: int = 1, waiters: int = 0) -> str:
    return "\n".join(
        [
            "# HELP db_queries_per_request Statements run per request.",
            "# TYPE db_queries_per_request histogram",
            *(histogram(*route) for route in routes),
            "# HELP db_pool_connections Connections of the pool.",
            "# TYPE db_pool_connections gauge",
            f'db_pool_connections{{state="in_use"}} {in_use}.0',
            f'db_pool_connections{{state="idle"}} {10 - in_use}.0',
            "# TYPE db_pool_max_size gauge",
            "db_pool_max_size 10.0",
            "# TYPE db_pool_waiters gauge",
            f"db_pool_waiters {waiters}.0",
            "",
        ]
    )


HEALTHY = metrics_text(("/deals", 2, 40), ("/deals/{id}", 1, 100), ("/deals/stats", 1, 5))
N_PLUS_ONE = metrics_text(("/deals", 21, 40), ("/deals/{id}", 1, 100))


class MetricsDouble:
    """A /metrics that answers whatever `text` holds."""

    def __init__(self) -> None:
        self.text = HEALTHY
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = double.text.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[MetricsDouble]:
    double = MetricsDouble()
    yield double
    double.close()


Doctor = Callable[..., tuple[int, str]]


@pytest.fixture
def doctor(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Doctor:
    """`deals doctor ARGS...` against this test's database: (exit code, what it printed)."""

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setenv("DATABASE_URL", database_url)
        code = main(["doctor", *args])
        return code, capsys.readouterr().out

    return run


def by_name(found: list[Check]) -> dict[str, Check]:
    assert [c.name for c in found] == NAMES
    return {c.name: c for c in found}


async def diagnose(url: str, thresholds: Thresholds | None = None) -> dict[str, Check]:
    return by_name(await checks.diagnose(url, thresholds=thresholds))


async def flush_stats(conn: Conn) -> None:
    """This session's table counters reach pg_stat_user_tables now, not within a second."""
    await conn.execute("SELECT pg_stat_force_next_flush()")


async def load_generated(url: str, tmp_path: Path, rows: int) -> None:
    path = tmp_path / "deals.csv"
    generate(path, count=rows, seed=3)
    await load_file(url, path)


# --- the command -----------------------------------------------------------------------


def test_a_healthy_service_passes_and_json_lists_the_four_checks(
    doctor: Doctor,
    api: MetricsDouble,
) -> None:
    code, out = doctor("--api", api.url, "--json")
    document = json.loads(out)
    assert [c["name"] for c in document["checks"]] == NAMES
    assert [c["status"] for c in document["checks"]] == ["ok"] * 4
    assert all(
        set(c) == {"name", "status", "summary", "evidence", "fix"} for c in document["checks"]
    )
    n_plus_one = document["checks"][0]
    assert "/deals: 2.0 statements per request over 40 requests" in n_plus_one["evidence"][0]
    pool = document["checks"][2]
    assert (
        "API pool: 1 of 10 connections in use (10%), 0 request(s) waiting for one"
        in (pool["evidence"])
    )
    assert code == 0


def test_a_route_at_21_statements_per_request_fails_by_name(
    doctor: Doctor,
    api: MetricsDouble,
) -> None:
    api.text = N_PLUS_ONE
    code, out = doctor("--api", api.url)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["fail", "n_plus_one"]
    assert "/deals runs 21.0 statements per request (over 3)" in lines[0]
    assert any(line.strip().startswith("fix: /deals: fetch what a page needs") for line in lines)
    assert [line.split()[1] for line in lines if not line.startswith(" ")] == NAMES
    assert code == 1
    # the threshold is an option
    code, out = doctor("--api", api.url, "--max-queries", "25")
    assert out.startswith("ok    n_plus_one")
    assert code == 0


def test_without_api_n_plus_one_is_not_checked(
    doctor: Doctor,
) -> None:
    code, out = doctor("--json")
    first = json.loads(out)["checks"][0]
    assert first == {
        "name": "n_plus_one",
        "status": "ok",
        "summary": "not checked: pass --api URL (its /metrics)",
        "evidence": [],
        "fix": "",
    }
    assert code == 0


def test_an_unreadable_metrics_warns(
    doctor: Doctor,
) -> None:
    double = MetricsDouble()
    url = double.url
    double.close()  # nothing listens there any more
    code, out = doctor("--api", url, "--json")
    first = json.loads(out)["checks"][0]
    assert first["status"] == "warn"
    assert first["summary"].startswith(f"not checked: GET {url}/metrics failed")
    assert code == 0


def test_a_saturated_api_pool_fails(
    doctor: Doctor,
    api: MetricsDouble,
) -> None:
    api.text = metrics_text(("/deals", 2, 40), in_use=10, waiters=7)
    code, out = doctor("--api", api.url, "--json")
    pool = json.loads(out)["checks"][2]
    assert pool["status"] == "fail"
    assert "10 of 10 connections in use (100%), 7 request(s) waiting" in pool["summary"]
    assert "POOL_MAX_SIZE" in pool["fix"]
    assert code == 1


def get(url: str) -> None:
    # a connection of its own each time: with two workers the kernel spreads them over both
    request = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, url


def settled_metrics(base: str, max_size: float) -> Metrics:
    """/metrics once every worker has published its pool and no connection is in use.

    The pool gauges are refreshed by each worker every second: one refreshed while a
    request above held a connection says 1 in use until its next refresh."""
    deadline = time.monotonic() + 15
    while True:
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            found = parse(response.read().decode())
        if (found.pool_max_size, found.pool_in_use) == (max_size, 0) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.parametrize("workers", [1, 2])
def test_against_the_real_metrics_of_deals_serve(
    doctor: Doctor,
    database_url: str,
    known: Known,
    workers: int,
    tmp_path: Path,
) -> None:
    """The real exposition, not the double: `_created` samples, the le="0.0" bucket, and with
    two workers the multiprocess collector's sums (livesum gauges, merged histograms)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    with serving(
        database_url,
        tmp_path / "server.log",
        API_WORKERS=str(workers),
        POOL_MIN_SIZE="2",
        POOL_MAX_SIZE="4",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    ) as server:
        for _ in range(3):
            get(f"{server.base}/deals?limit=5&sort=price")  # the page and its total: 2 statements
        for deal in known.deals[:5]:
            get(f"{server.base}/deals/{deal.id}")  # 1 statement
        assert settled_metrics(server.base, 4.0 * workers).pool_max_size == 4.0 * workers
        code, out = doctor("--api", server.base, "--json")
    found = {c["name"]: c for c in json.loads(out)["checks"]}
    n_plus_one = found["n_plus_one"]
    assert n_plus_one["status"] == "ok", n_plus_one
    assert n_plus_one["summary"] == "every route at most 3 statements per request " + (
        "(the most: /deals 2.0)"
    )
    assert n_plus_one["evidence"][:2] == [
        "/deals: 2.0 statements per request over 3 requests (up to 2 in one)",
        "/deals/{id}: 1.0 statements per request over 5 requests (up to 1 in one)",
    ]
    # the rest: /health/live (the start-up probe) and /metrics, no statement each
    assert all(" 0.0 statements per request " in line for line in n_plus_one["evidence"][2:])
    pool = found["pool"]
    assert pool["status"] == "ok", pool
    size = 4 * workers
    assert (
        f"API pool: 0 of {size} connections in use (0%), 0 request(s) waiting for one"
        in (pool["evidence"])
    )
    assert pool["summary"].endswith(
        f"; 0 of {size} connections in use (0%), 0 request(s) waiting for one"
    )
    assert code == 0


# --- missing_index ---------------------------------------------------------------------


async def drive_price_pages(conn: Conn, times: int = 10) -> None:
    for _ in range(times):
        page = await LIST_DEALS["price"](conn, *[None] * 8, 20, 0)
        assert len(page) == 20
    await flush_stats(conn)


async def reset_stats(conn: Conn, *, statements: bool = True) -> None:
    await flush_stats(conn)  # the scans of this session's DROP or CREATE INDEX go too
    await conn.execute("SELECT pg_stat_reset()")
    if statements:
        await conn.execute("SELECT pg_stat_statements_reset()")


async def test_missing_index_names_the_table_the_query_and_the_index(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    if "pg_stat_statements" not in await conn.fetchval("SHOW shared_preload_libraries"):
        pytest.skip("this server does not preload pg_stat_statements")
    await load_generated(database_url, tmp_path, 20_000)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await conn.execute("DROP INDEX deals_price_id_idx")
    await reset_stats(conn)
    await drive_price_pages(conn)

    found = (await diagnose(database_url))["missing_index"]
    assert found.status == "fail", found.evidence
    assert found.summary == "deals: 10 sequential scans of 20,000 rows by list_deals_by_price"
    # (the planner's probes of deals_pkey for the ends of the id range count as index scans)
    assert found.evidence[0].startswith(
        "deals: 20,000 rows; 10 sequential scans read 200,000 rows (20,000 per scan); "
    )
    assert "  deals_price_id_idx (0005_filter_indexes) is missing from deals" in found.evidence
    where = CATALOGUE["list_deals_by_price"]
    assert any(
        line.startswith(f"  list_deals_by_price ({where.file}:{where.line}): 10 calls, ")
        for line in found.evidence
    )
    assert "  list_deals_by_price relies on deals_price_id_idx, which this database lacks" in (
        found.evidence
    )
    assert found.fix.splitlines()[0] == (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_price_id_idx ON deals (price_per_night, id);"
    )

    await conn.execute(found.fix.splitlines()[0])  # the fix, as printed
    await reset_stats(conn)
    await drive_price_pages(conn)
    found = (await diagnose(database_url))["missing_index"]
    assert found.status == "ok", found.evidence


async def test_missing_index_without_pg_stat_statements_reads_the_tables_alone(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await load_generated(database_url, tmp_path, 12_000)
    await conn.execute("DROP INDEX deals_price_id_idx")
    await reset_stats(conn, statements=False)
    await drive_price_pages(conn, times=3)
    server = doctor_sql.Server(
        database="x",
        version="18",
        max_connections=100,
        reserved_connections=3,
        statements_preloaded=False,
        statements_installed=False,
    )
    found = await checks.missing_index(conn, server, Thresholds())
    assert found.status == "fail"
    assert found.summary == "deals: 3 sequential scans of 12,000 rows"
    assert found.evidence[-1] == (
        "pg_stat_statements is not in shared_preload_libraries: evidence from "
        "pg_stat_user_tables only, no query names"
    )
    assert found.fix.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_price_id_idx")


# --- pool ------------------------------------------------------------------------------


async def test_a_session_idle_in_transaction_is_named_until_it_commits(
    database_url: str,
) -> None:
    holder = await asyncpg.connect(database_url, server_settings={"application_name": "deals-api"})
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.fetchval("SELECT 1")
        pid = holder.get_server_pid()
        await asyncio.sleep(0.6)

        warn = Thresholds(idle_in_transaction_warn=0.5, idle_in_transaction_fail=60)
        found = (await diagnose(database_url, warn))["pool"]
        assert found.status == "warn"
        assert found.summary.startswith(
            f"1 session idle in transaction: pid {pid} (deals-api) for "
        )
        assert found.evidence[0].startswith(f"pid {pid} deals-api: idle in transaction for ")
        assert found.evidence[0].endswith("; last query: SELECT 1")
        assert f"SELECT pg_terminate_backend({pid});" in found.fix

        fail = Thresholds(idle_in_transaction_warn=0.5, idle_in_transaction_fail=0.5)
        assert (await diagnose(database_url, fail))["pool"].status == "fail"

        await transaction.commit()
        found = (await diagnose(database_url, fail))["pool"]
        assert found.status == "ok", found
        assert found.summary.startswith("no session idle in transaction; ")
    finally:
        await holder.close()


# --- bloat -----------------------------------------------------------------------------


async def test_dead_rows_are_flagged_with_the_vacuum_to_run(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await load_generated(database_url, tmp_path, 3_000)
    await conn.execute(f"VACUUM (ANALYZE) {TABLES}")
    assert (await diagnose(database_url))["bloat"].status == "ok"

    await conn.execute("ALTER TABLE deals SET (autovacuum_enabled = false)")
    await conn.execute("UPDATE deals SET is_available = NOT is_available")
    await flush_stats(conn)
    found = (await diagnose(database_url))["bloat"]
    assert found.status == "fail"
    assert found.summary.startswith("deals: 3,000 dead rows (50%)")
    deals = next(line for line in found.evidence if line.startswith("deals: "))
    assert "3,000 rows changed since its last analyze" in deals
    assert deals.endswith("; autovacuum_enabled=false")
    assert found.fix.splitlines() == [
        "VACUUM (ANALYZE) deals;",
        "ALTER TABLE deals RESET (autovacuum_enabled);",
    ]

    await conn.execute(found.fix.splitlines()[0])
    found = (await diagnose(database_url))["bloat"]
    assert found.status == "ok", found
