"""GET /metrics, Server-Timing, the access log, JSON logs, and the service's connections.

Figures are compared as differences before and after, since the counters of one
process add up over every app the tests create.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.db.pool import Database
from service.migrate import yoyo_url
from service.settings import Settings
from tests.known import Known
from tests.serving import serving

Client = AsyncTestClient[Litestar]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_counted_by_route_template(client: Client, known: Known) -> None:
    before = await scrape(client)
    ids = [deal.id for deal in known.deals[:5]]
    for id in ids:
        assert (await client.get(f"/deals/{id}")).status_code == 200
    assert (await client.get("/deals/999999")).status_code == 404
    after = await scrape(client)
    route = {"method": "GET", "route": "/deals/{id}"}
    ok = value(after, "http_requests_total", **route, status="200")
    assert ok - value(before, "http_requests_total", **route, status="200") == 5
    missing = value(after, "http_requests_total", **route, status="404")
    assert missing - value(before, "http_requests_total", **route, status="404") == 1
    count = value(after, "http_request_duration_seconds_count", **route)
    assert count - value(before, "http_request_duration_seconds_count", **route) == 6
    # one statement per detail: get_deal
    per_request = value(after, "db_queries_per_request_sum", route="/deals/{id}")
    assert per_request - value(before, "db_queries_per_request_sum", route="/deals/{id}") == 6
    calls = value(after, "db_query_duration_seconds_count", query="get_deal")
    assert calls - value(before, "db_query_duration_seconds_count", query="get_deal") == 6


def test_the_fast_histogram_counts_as_the_client_does() -> None:
    """FastHistogram.observe, and observe_all (what a scrape does with a request's
    pending figures), write the buckets and sum Histogram.observe would, a value on a
    bound included (`x <= bound`), in the text a scrape reads."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from service.api.metrics import LATENCY, FastHistogram

    values = [0.0, 0.001, 0.0010001, 0.004, 0.25, 0.2500001, 10.0, 11.0, 1e9, *LATENCY, 0.004]

    def scraped(how: str) -> str:
        registry = CollectorRegistry()
        child = Histogram("h", "h", ["route"], buckets=LATENCY, registry=registry).labels("/x")
        if how == "all at once":
            FastHistogram(child).observe_all(values)
        else:
            observe = FastHistogram(child).observe if how == "fast" else child.observe
            for x in values:
                observe(x)
        text = generate_latest(registry).decode()
        return "\n".join(line for line in text.splitlines() if "_created" not in line)

    client = scraped("client")
    assert scraped("fast") == client
    assert scraped("all at once") == client
    assert 'h_bucket{le="0.001",route="/x"} 3.0' in client  # 0.0, 0.001 and LATENCY's own
    assert 'h_bucket{le="0.005",route="/x"} 8.0' in client  # five values, LATENCY's three


async def test_a_thousand_ids_make_no_new_series(client: Client, known: Known) -> None:
    # Every series the ids below can touch exists before the compared scrape, whatever
    # tests ran before this one: the route's with both statuses they get (an id that
    # exists, one that does not), and GET /metrics' own, made once a scrape has answered.
    assert (await client.get(f"/deals/{known.deals[0].id}")).status_code == 200
    assert (await client.get("/deals/99999999")).status_code == 404
    await scrape(client)
    before = await scrape(client)
    for id in range(100_000, 101_000):
        await client.get(f"/deals/{id}")
    after = await scrape(client)
    assert len(after) == len(before)  # every sample already existed: no series per id
    assert not any(dict(labels).get("route", "").startswith("/deals/1") for _n, labels in after)


async def test_a_page_with_its_count_is_two_statements(client: Client, known: Known) -> None:
    before = await scrape(client)
    for limit in (1, 20, 100):
        await client.get(f"/deals?limit={limit}&sort=price")
    after = await scrape(client)
    ran = value(after, "db_queries_per_request_sum", route="/deals")
    ran -= value(before, "db_queries_per_request_sum", route="/deals")
    assert ran == 6  # the page and the exact count, whatever the page size


async def test_unknown_routes_share_one_label_and_errors_count(client: Client) -> None:
    before = await scrape(client)
    for path in ("/nowhere", "/nowhere/else", "/x/y/z"):
        await client.get(path)
    after = await scrape(client)
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    assert (
        value(after, "http_requests_total", **labels)
        - value(before, "http_requests_total", **labels)
        == 3
    )


async def test_failed_queries_count_by_sqlstate(client: Client, conn: asyncpg.Connection) -> None:
    await conn.execute("ALTER TABLE _yoyo_migration RENAME COLUMN migration_id TO renamed")
    before = await scrape(client)
    assert (await client.get("/health/ready")).status_code == 500
    after = await scrape(client)
    labels = {"query": "applied_migrations", "sqlstate": "42703"}  # undefined column
    assert (
        value(after, "db_query_errors_total", **labels)
        - value(before, "db_query_errors_total", **labels)
        == 1
    )


async def test_pool_gauges_and_the_stats_cache(client: Client, known: Known) -> None:
    samples = await scrape(client)
    assert value(samples, "db_pool_max_size") >= 4
    assert ("db_pool_connections", (("state", "idle"),)) in samples
    assert ("db_pool_waiters", ()) in samples
    before = samples
    await client.get("/deals/stats")
    after = await scrape(client)
    misses = value(after, "stats_cache_requests_total", result="miss")
    assert misses - value(before, "stats_cache_requests_total", result="miss") == 1


async def test_server_timing_on_every_answer(client: Client, known: Known) -> None:
    for path in ("/deals?limit=5", "/health/live", "/nowhere"):
        timing = (await client.get(path)).headers["server-timing"]
        db, app = (part.split(";dur=") for part in timing.split(", "))
        assert (db[0], app[0]) == ("db", "app")
        assert float(db[1]) <= float(app[1])
    live = (await client.get("/health/live")).headers["server-timing"]
    assert live.startswith("db;dur=0.0, ")  # no statement


async def test_server_timing_with_metrics_and_the_access_log_off(database_url: str) -> None:
    """Server-Timing is on every API response (ops.md), not a part of the measures that
    METRICS and ACCESS_LOG turn off."""
    settings = Settings(database_url=database_url, metrics=False, access_log=False)
    async with AsyncTestClient(app=create_app(settings)) as plain:
        for path in ("/deals?limit=5", "/health/live", "/nowhere"):
            answer = await plain.get(path)
            db, app = (part.split(";dur=") for part in answer.headers["server-timing"].split(", "))
            assert (db[0], app[0]) == ("db", "app"), path
        assert (await plain.get("/metrics")).status_code == 404


async def test_the_access_line_has_its_fields(
    client: Client, known: Known, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        await client.get("/deals?limit=3&city=Paris&sort=price", headers={"X-Request-ID": "acc-1"})
    [line] = [r for r in caplog.records if r.name == "service.access"]
    assert line.getMessage() == "GET /deals?limit=3&city=Paris&sort=price 200"
    fields = {k: getattr(line, k) for k in ("request_id", "method", "route", "status", "queries")}
    assert fields == {
        "request_id": "acc-1",
        "method": "GET",
        "route": "/deals",
        "status": 200,
        "queries": 2,
    }
    assert line.duration_ms >= line.db_ms > 0  # type: ignore[attr-defined]


async def test_service_connections_name_themselves_and_time_out_when_idle_in_transaction(
    client: Client, conn: asyncpg.Connection, database_url: str
) -> None:
    await client.get("/health")
    row = await conn.fetchrow(
        "SELECT application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND application_name = 'deals-api'"
    )
    assert row is not None
    db = Database(Settings(database_url=database_url, pool_min_size=1))
    await db.open()
    try:
        async with db.connection() as pooled:
            assert await pooled.fetchval("SHOW idle_in_transaction_session_timeout") == "1min"
            assert await pooled.fetchval("SHOW application_name") == "deals-api"
    finally:
        await db.close()
    with psycopg.connect(yoyo_url(database_url).replace("+psycopg", "")) as direct:
        assert direct.execute("SHOW application_name").fetchone() == ("deals-migrate",)


@pytest.fixture
def multiproc_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "metrics"
    folder.mkdir()
    return folder


def get(url: str) -> int:
    request = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_one_scrape_counts_the_requests_of_every_worker(
    database_url: str, tmp_path: Path, multiproc_dir: Path
) -> None:
    with serving(
        database_url,
        tmp_path / "server.log",
        API_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
    ) as server:
        # A new connection each: the kernel spreads them over the workers, once both
        # listen. The start-up probe waits for one; on a busy machine the other may start
        # later, so requests go on (bounded) until both have written their counts.
        sent = 0
        deadline = time.monotonic() + 60
        while True:
            for _ in range(100):
                assert get(f"{server.base}/health/live") == 200
            sent += 100
            pids = {path.stem.rsplit("_", 1)[-1] for path in multiproc_dir.glob("counter_*.db")}
            if (len(pids) >= 2 and sent >= 200) or time.monotonic() > deadline:
                break
        while True:  # each worker refreshes its pool gauges every second
            with urllib.request.urlopen(f"{server.base}/metrics", timeout=10) as response:
                samples = parse(response.read().decode())
            if value(samples, "db_pool_max_size") == 20 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    labels = {"method": "GET", "route": "/health/live", "status": "200"}
    # the start-up probe of tests/serving.py asked /health/live until it answered
    assert value(samples, "http_requests_total", **labels) >= sent
    assert value(samples, "http_requests_total", **labels) <= sent + 300
    assert len(pids) == 2, pids  # both workers answered and wrote their counts
    assert value(samples, "db_pool_max_size") == 20  # two pools of 10, summed


def test_log_format_json_makes_every_line_json(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with serving(database_url, log, LOG_FORMAT="json") as server:
        assert get(f"{server.base}/deals?limit=2&sort=price") == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(f"{server.base}/nowhere")
        assert missing.value.code == 404
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "service.access"} <= loggers  # start-up lines and access lines
    access = [line for line in lines if line["logger"] == "service.access"]
    by_path = {line["path"]: line for line in access}
    page = by_path["/deals?limit=2&sort=price"]
    assert (page["method"], page["route"], page["status"], page["queries"]) == (
        "GET", "/deals", 200, 2,
    )  # fmt: skip
    assert {"request_id", "duration_ms", "db_ms"} <= set(page)
    assert by_path["/nowhere"]["route"] == "unmatched"


def test_the_access_line_counts_the_statements_with_metrics_off(
    database_url: str, tmp_path: Path
) -> None:
    """METRICS=false keeps the access line's queries and db_ms (and Server-Timing's db)
    true: the statements are counted whenever a request is measured at all. A server of
    its own, since the statement observer is registered once per process."""
    log = tmp_path / "server.log"
    with serving(database_url, log, LOG_FORMAT="json", METRICS="false") as server:
        page_url = f"{server.base}/deals?limit=2&sort=price"  # a page and its total
        with urllib.request.urlopen(page_url, timeout=10) as answer:
            assert answer.status == 200
            db_timing = answer.headers["server-timing"].split(", ")[0]
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    [page] = [
        line
        for line in lines
        if line["logger"] == "service.access" and line["path"] == "/deals?limit=2&sort=price"
    ]
    assert page["queries"] == 2
    assert page["db_ms"] > 0
    assert float(db_timing.removeprefix("db;dur=")) > 0


def answering(route: str) -> Callable[..., Any]:
    """A bare ASGI app that answers 200 {} as the route `route`, its messages through the
    service's before-send hook as Litestar sends them (for Measured alone)."""
    from service.api.requests import echo_request_headers

    async def app(scope: dict[str, object], receive: object, send: Callable[..., Any]) -> None:
        scope["path_template"] = route
        for message in (
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": b"{}"},
        ):
            await echo_request_headers(message, scope)  # type: ignore[arg-type]
            await send(message)

    return app


def request(path: str) -> dict[str, object]:
    """The HTTP scope of a GET of path, as uvicorn hands it over."""
    return {"type": "http", "method": "GET", "path": path, "query_string": b"",
            "headers": [], "state": {}}  # fmt: skip


async def sink(message: object) -> None:
    """receive and send of a request whose messages go nowhere."""


async def test_access_lines_are_written_together_each_with_its_requests_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests that end within ACCESS_WRITE_EVERY have their lines written in one write,
    after it; each line's time is its own request's end, not the write's; the app's
    shutdown writes what is still queued."""
    from service import logs
    from service.api import metrics

    writes: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            writes.append(text)

        def flush(self) -> None:
            pass

    app = answering("/deals/{id}")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure(Settings(database_url="postgresql://x@127.0.0.1:1/x", log_level="info"))
    (handler,) = root.handlers
    handler.setStream(Stream())  # type: ignore[attr-defined]
    measured = metrics.Measured(app, metrics=True, access_log=True)
    try:
        monkeypatch.setattr(metrics, "ACCESS_WRITE_EVERY", 1.0)
        await asyncio.gather(*(measured(request(f"/deals/{n}"), sink, sink) for n in (1, 2, 3)))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        await measured(request("/deals/4"), sink, sink)  # type: ignore[arg-type]
        assert writes == []  # queued, not written yet
        for _ in range(100):  # bounded: 10 s
            if writes:
                break
            await asyncio.sleep(0.1)
        monkeypatch.setattr(metrics, "ACCESS_WRITE_EVERY", 60.0)
        await measured(request("/deals/5"), sink, sink)  # type: ignore[arg-type]
        assert len(writes) == 1
        await metrics.write_access_at_shutdown(None)  # type: ignore[arg-type]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    together, at_shutdown = writes
    lines = together.splitlines()
    assert [line.split(" ")[5] for line in lines] == [f"/deals/{n}" for n in (1, 2, 3, 4)]
    assert at_shutdown.split(" ")[5] == "/deals/5"

    def at(line: str) -> datetime:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

    assert at(lines[3]) - at(lines[2]) >= timedelta(milliseconds=50)  # the sleep between


async def test_pending_figures_are_observed_when_they_grow_long_unscraped() -> None:
    """A worker nobody scrapes keeps no more than LONGEST requests' figures pending."""
    from service.api import metrics

    app = answering("/pending/{id}")
    counted = metrics.HTTP_REQUESTS.labels("GET", "/pending/{id}", "200")._value
    before = counted.get()
    measured = metrics.Measured(app, metrics=True, access_log=False)
    for n in range(metrics.LONGEST + 5):
        await measured(request(f"/pending/{n}"), sink, sink)  # type: ignore[arg-type]
    pending = metrics._ROUTES[("GET", "/pending/{id}", 200)]
    assert len(pending.durations.values) == len(pending.queries.values) == 5
    assert counted.get() - before == metrics.LONGEST


@pytest.mark.parametrize(
    "query",
    [
        b"limit=20",
        b"Access_Token=abc&limit=2",
        b"limit=2&client_SECRET=s3&x=1",
        b"password=p&token=t",
        b"q=tokens-are-words",  # a value that only looks like one: the substitution decides
        b"x=%E9t%E9&" + b"a" * 300,  # longer than any query string kept
    ],
)
def test_a_query_string_is_shown_as_hide_tokens_shows_it(query: bytes) -> None:
    """shown_query skips the substitution when no token-like word is in the query string,
    and remembers what it showed: the same text as the substitution's, every time."""
    from service.api import metrics

    expected = metrics.TOKEN_PARAMETER.sub(r"\1***", query.decode("latin-1"))
    assert metrics.shown_query(query) == metrics.shown_query(query) == expected
    assert (query in metrics._shown) == (len(query) <= metrics.SHOWN_LONGEST)
