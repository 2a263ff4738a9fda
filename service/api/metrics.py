"""Prometheus metrics (GET /metrics), Server-Timing and the access log, for every request.

The names are the operators' contract (shared/spec/ops.md). Every request is
measured by one ASGI wrapper around the whole app, so unknown routes and
errors count too; its route label is the route's template (`/deals/{id}`),
never the raw path, so the number of series stays flat whatever ids clients
send. Every statement is measured where it runs (service/db/catalogue.py
calls `observe_query`), which also counts the statements of the request.

With `deals serve --workers N` each worker writes its figures to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set up by
`deals serve`), and one scrape of any worker reads them all; a worker that
restarts loses no count. The pool gauges are refreshed by each worker every
second and summed over live workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from time import perf_counter, time
from typing import Any

from litestar import Litestar, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from service.api.request_id import request_id
from service.db.catalogue import observe_queries
from service.db.pool import Database
from service.logs import AccessFields, access_handler, emit_access, write_access_lines

ACCESS = "service.access"
access = logging.getLogger(ACCESS)

# The text format generate_latest writes (Litestar adds the charset).
TEXT_FORMAT = "text/plain; version=0.0.4"
UNMATCHED = "unmatched"  # the route label of a request no route answered
LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to its last byte.",
    ["method", "route"],
    buckets=LATENCY,
)
QUERIES_PER_REQUEST = Histogram(
    "db_queries_per_request",
    "SQL statements one request ran.",
    ["route"],
    buckets=(0, 1, 2, 3, 4, 5, 8, 13, 21, 34, 55),
)
QUERY_DURATION = Histogram(
    "db_query_duration_seconds", "Time of one named query.", ["query"], buckets=LATENCY
)
QUERY_ERRORS = Counter(
    "db_query_errors_total", "Named queries that failed, by SQLSTATE.", ["query", "sqlstate"]
)
POOL_CONNECTIONS = Gauge(
    "db_pool_connections", "Pool connections by state.", ["state"], multiprocess_mode="livesum"
)
POOL_MAX = Gauge(
    "db_pool_max_size", "Most connections the pools may open.", [], multiprocess_mode="livesum"
)
POOL_WAITERS = Gauge(
    "db_pool_waiters", "Requests waiting for a connection.", [], multiprocess_mode="livesum"
)
STATS_CACHE = Counter(
    "stats_cache_requests_total", "GET /deals/stats answers, from the cache or not.", ["result"]
)


class RequestMeasures:
    """What the statements of one request add up to (observe_query adds to it)."""

    __slots__ = ("db_seconds", "queries", "statements")

    def __init__(self) -> None:
        self.queries = 0
        self.db_seconds = 0.0
        # (query name, seconds) of the statements to observe when the request is recorded
        # (flush_measures); None once it is: a later statement is observed at once.
        self.statements: list[tuple[str, float]] | None = []


CURRENT: ContextVar[RequestMeasures | None] = ContextVar("request_measures", default=None)


class FastHistogram:
    """One labelled child of a Histogram, observed without the client's per-call work.

    `Histogram.labels(...).observe(x)` checks the metric is observable and walks
    the buckets in a Python loop on every call; here the bucket is found by
    bisection (the first upper bound >= x, as the client does: `x <= bound`) and
    the same two values are incremented, so the exposition is the client's own,
    in single-process and multiprocess mode alike.
    """

    __slots__ = ("bounds", "buckets", "sum")

    def __init__(self, child: Histogram) -> None:
        self.bounds: list[float] = list(child._upper_bounds)  # the last one is +Inf
        self.buckets: list[Callable[[float], None]] = [b.inc for b in child._buckets]
        self.sum: Callable[[float], None] = child._sum.inc

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)](1)
        self.sum(value)


class RouteMeasures:
    """The three request metrics of one (method, route, status), bound once."""

    __slots__ = ("duration", "queries", "requests")

    def __init__(self, method: str, route: str, status: int) -> None:
        self.requests: Callable[[float], None] = HTTP_REQUESTS.labels(
            method, route, str(status)
        )._value.inc
        self.duration = FastHistogram(HTTP_DURATION.labels(method, route))
        self.queries = FastHistogram(QUERIES_PER_REQUEST.labels(route))

    def record(self, seconds: float, queries: int) -> None:
        self.requests(1)
        self.duration.observe(seconds)
        self.queries.observe(queries)


# The labelled children, bound once per label set: `.labels()` per call costs a few
# microseconds (label checks, a lock, a dict), paid on every request and every statement.
_QUERY_DURATIONS: dict[str, FastHistogram] = {}


def observe_query(name: str, seconds: float, failed: str | None) -> None:
    """A statement ran: counted in its request's measures, observed with them
    (flush_measures), or at once outside a request."""
    if failed is not None:
        QUERY_ERRORS.labels(name, failed).inc()
    measures = CURRENT.get()
    if measures is not None:
        measures.queries += 1
        measures.db_seconds += seconds
        if measures.statements is not None:
            measures.statements.append((name, seconds))
            return
    query_duration(name).observe(seconds)


def observe_statements(measures: RequestMeasures) -> None:
    """Observe the statements a request ran; any later one is observed as it ends."""
    statements, measures.statements = measures.statements, None
    for name, seconds in statements or ():
        query_duration(name).observe(seconds)


def query_duration(name: str) -> FastHistogram:
    child = _QUERY_DURATIONS.get(name)
    if child is None:
        child = _QUERY_DURATIONS[name] = FastHistogram(QUERY_DURATION.labels(name))
    return child


def count_stats_cache(hit: bool) -> None:
    STATS_CACHE.labels("hit" if hit else "miss").inc()


# What requests finished since the last flush: (the wrapper, method, route, status,
# seconds, statements, and for a direct access line its handler, time and raw path).
Finished = tuple[
    "Measured", str, str, int, float, RequestMeasures, "logging.StreamHandler[Any] | None",
    float, str, bytes, str,
]  # fmt: skip
_FINISHED: list[Finished] = []


def flush_measures() -> None:
    """Record the requests finished since the last flush: their metrics, and their access
    lines in one write per handler.

    A request's end only queues its figures (Measured.finish); this runs right after,
    once the event loop's current callbacks are done (call_soon), so the lines of a busy
    loop iteration are formatted together and written with one system call, and before
    /metrics answers. Until then a scrape of this worker would miss them, so metrics_page
    flushes first."""
    if not _FINISHED:
        return
    finished = _FINISHED[:]
    _FINISHED.clear()
    lines: dict[logging.StreamHandler[Any], list[tuple[float, AccessFields]]] = {}
    for (
        measured,
        method,
        route,
        status,
        seconds,
        measures,
        handler,
        at,
        path,
        query,
        rid,
    ) in finished:
        if measured.metrics:
            observe_statements(measures)
            key = (method, route, status)
            children = measured.children.get(key)
            if children is None:
                children = measured.children[key] = RouteMeasures(method, route, status)
            children.record(seconds, measures.queries)
        if handler is not None:
            if query:
                path = f"{path}?{hide_tokens(query.decode('latin-1'))}"
            fields = (
                rid, method, route, path, status, round(seconds * 1000, 2),
                round(measures.db_seconds * 1000, 2), measures.queries,
            )  # fmt: skip
            lines.setdefault(handler, []).append((at, fields))
    for handler, written in lines.items():
        write_access_lines(handler, ACCESS, written)


class Measured:
    """ASGI wrapper: metrics, Server-Timing and the access line of every HTTP request.

    A plain ASGI callable reading the raw scope (no Litestar Request, no header
    parsing): its cost is paid by every request, so it stays a few microseconds,
    and what can wait (metrics, the access line) is recorded by flush_measures.
    """

    def __init__(self, app: ASGIApp, *, metrics: bool, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        # (method, route, status) -> its children of the three request metrics
        self.children: dict[tuple[str, str, int], RouteMeasures] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        measures = RequestMeasures()
        token = CURRENT.set(measures)
        status = 500

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # appended as is: no handler sets Server-Timing, so there is none to replace
                entry = (
                    b"server-timing",
                    b"db;dur=%.1f, app;dur=%.1f"
                    % (measures.db_seconds * 1000, (perf_counter() - started) * 1000),
                )
                headers = message.get("headers")
                if type(headers) is list:
                    headers.append(entry)
                else:
                    message["headers"] = [*(headers or ()), entry]
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        finally:
            CURRENT.reset(token)
            self.finish(scope, status, perf_counter() - started, measures)

    def finish(self, scope: Scope, status: int, seconds: float, measures: RequestMeasures) -> None:
        method: str = scope["method"]  # type: ignore[typeddict-item]  # an HTTP scope
        route: str = scope.get("path_template") or UNMATCHED
        handler = None
        rid = ""
        if self.access_log and access.isEnabledFor(logging.INFO):
            rid = request_id(scope)
            handler = access_handler(access)
            if handler is None:  # another logging set-up (a test's): through logging, now
                query: bytes = scope["query_string"]
                path = scope["path"]
                if query:
                    path = f"{path}?{hide_tokens(query.decode('latin-1'))}"
                emit_access(
                    access, (rid, method, route, path, status, round(seconds * 1000, 2),
                    round(measures.db_seconds * 1000, 2), measures.queries),
                )  # fmt: skip
        if not self.metrics and handler is None:
            return  # the statements were counted for Server-Timing; no metric to observe
        _FINISHED.append(
            (
                self, method, route, status, seconds, measures, handler, time(),
                scope["path"], scope["query_string"], rid,
            )
        )  # fmt: skip
        if len(_FINISHED) == 1:
            try:
                asyncio.get_running_loop().call_soon(flush_measures)
            except RuntimeError:  # no event loop: now
                flush_measures()


# RFC 6750 2.3's access_token (which the API refuses) and the like: never written to a log.
TOKEN_PARAMETER = re.compile(r"((?:^|&)[^=&]*(?:token|secret|password)[^=&]*=)[^&]*", re.I)


def hide_tokens(query: str) -> str:
    """The query string with the value of any token-like parameter replaced by ***."""
    return TOKEN_PARAMETER.sub(r"\1***", query) if query else query


LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def forget_dead_workers(folder: str) -> None:
    """Drop the live gauges of workers that died (uvicorn restarts them with new pids)."""
    for path in Path(folder).glob("gauge_live*.db"):
        found = LIVE_GAUGE_FILE.fullmatch(path.name)
        if found is None:
            continue
        pid = int(found[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, someone else's


def registry() -> CollectorRegistry:
    """Every worker's figures in multiprocess mode; this process's otherwise."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return REGISTRY
    forget_dead_workers(folder)
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected, path=folder)  # type: ignore[no-untyped-call]
    return collected


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_page() -> Response[bytes]:
    """Prometheus text format."""
    flush_measures()  # the requests this worker finished since its last flush
    return Response(generate_latest(registry()), media_type=TEXT_FORMAT)


def refresh_pool_gauges(db: Database) -> None:
    gauges = db.gauges()
    POOL_CONNECTIONS.labels("in_use").set(gauges.size - gauges.idle)
    POOL_CONNECTIONS.labels("idle").set(gauges.idle)
    POOL_MAX.set(gauges.max)
    POOL_WAITERS.set(gauges.waiting)


@asynccontextmanager
async def refreshing(refresh: Callable[[], None], every: float = 1.0) -> AsyncIterator[None]:
    """A lifespan: `refresh` (gauges from in-process figures) run every second meanwhile."""

    async def loop() -> None:
        while True:
            refresh()
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()


def pool_gauges(db: Database) -> AbstractAsyncContextManager[None]:
    """A lifespan: the pool gauges refreshed every second while the app runs."""
    return refreshing(lambda: refresh_pool_gauges(db))


def instrument(app: Litestar, *, metrics: bool, access_log: bool) -> None:
    """Wrap the whole app (routing and errors included) in the measures it asks for."""
    if metrics or access_log:
        # the access line's queries and db_ms, and Server-Timing's db, need the statements
        # counted even with METRICS=false (their histograms are then never observed)
        observe_queries(observe_query)
        app.asgi_handler = Measured(app.asgi_handler, metrics=metrics, access_log=access_log)
