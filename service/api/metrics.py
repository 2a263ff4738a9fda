"""Prometheus metrics (GET /metrics), Server-Timing and the access log, for every request.

The names are the operators' contract (shared/spec/ops.md). Every request is
measured by one ASGI wrapper around the whole app, so unknown routes and
errors count too; its route label is the route's template (`/deals/{id}`),
never the raw path, so the number of series stays flat whatever ids clients
send. Every statement is measured where it runs (service/db/catalogue.py
calls `observe_query`), which also counts the statements of the request.

Every request pays for its measures, so its end only appends its figures to
plain lists (Pending): a scrape observes them in one step per bucket (counted in
C), and its access line is queued, to be written with the others that end
within ACCESS_WRITE_EVERY (write_access_lines: one write for all of them, each
line with its own request's end as its time).

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
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from time import perf_counter, time_ns
from typing import Any

from litestar import Litestar, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from service.api.request_id import request_id
from service.db.catalogue import observe_queries
from service.db.pool import Database
from service.logs import AccessFields, access_handler, emit_access, write_access_lines

ACCESS = "service.access"
INFO = logging.INFO
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
    """One request's measures: its start, its status, and what its statements add up to
    (observe_query adds to them). The app's before-send hook (service/api/requests.py)
    sets the status and adds Server-Timing from them (server_timing), so Measured need
    not wrap send: one coroutine less per message."""

    __slots__ = ("db_seconds", "metrics", "queries", "started", "status")

    def __init__(self, metrics: bool) -> None:
        self.started = perf_counter()
        self.metrics = metrics  # whether its statements are observed in their histograms
        self.status = 500  # until a response starts
        self.queries = 0
        self.db_seconds = 0.0

    def server_timing(self, status: int) -> tuple[bytes, bytes]:
        """The response starts with this status: its Server-Timing header, so far."""
        self.status = status
        return (
            b"server-timing",
            b"db;dur=%.1f, app;dur=%.1f"
            % (self.db_seconds * 1000, (perf_counter() - self.started) * 1000),
        )


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

    def observe_all(self, values: list[float]) -> None:
        """observe() each value: one increment per bucket and one of the sum, whatever the
        number of values. The values are sorted once (in C); a bucket's count is then the
        number of values up to its bound less those up to the bound before, each found by
        bisection: a few steps per bucket, not per value. (Finding each value's bucket
        with bisect cost about 1,200 instructions a value.)"""
        ordered = sorted(values)
        counted = 0
        for bucket, bound in zip(self.buckets, self.bounds, strict=True):
            upto = bisect_right(ordered, bound)  # the values <= bound, as the client counts
            if upto > counted:
                bucket(upto - counted)
                counted = upto
                if counted == len(ordered):
                    break
        self.sum(sum(values))  # in the order observed, as observe() would add them


# A request's end only appends its figures to plain lists (Pending): no lock, no call
# into the client. They are observed together (observe_all) before a scrape reads them,
# when a list grows long, and, when workers share their values through files
# (multiprocess mode), once per event-loop iteration (flush_measures), so a scrape
# answered by another worker counts every request already answered.
SHARED = values.ValueClass is not values.MutexValue
LONGEST = 1024  # requests a route's lists hold before every pending value is observed


class Pending:
    """The values of one FastHistogram not yet observed."""

    __slots__ = ("histogram", "values")

    def __init__(self, child: Histogram) -> None:
        self.histogram = FastHistogram(child)
        self.values: list[float] = []

    def observe(self) -> None:
        if self.values:
            self.histogram.observe_all(self.values)
            self.values = []


class RoutePending:
    """The three request metrics of one (method, route, status): its requests counted
    when observed, as many as its pending durations."""

    __slots__ = ("durations", "queries", "requests")

    def __init__(self, method: str, route: str, status: int) -> None:
        self.requests: Callable[[float], None] = HTTP_REQUESTS.labels(
            method, route, str(status)
        )._value.inc
        self.durations = Pending(HTTP_DURATION.labels(method, route))
        self.queries = Pending(QUERIES_PER_REQUEST.labels(route))

    def observe(self) -> None:
        if self.durations.values:
            self.requests(len(self.durations.values))
            self.durations.observe()
            self.queries.observe()


# (method, route, status) -> its pending metrics; query name -> its statements' durations
_ROUTES: dict[tuple[str, str, int], RoutePending] = {}
_QUERY_DURATIONS: dict[str, Pending] = {}


def observe_pending() -> None:
    """Observe every pending value."""
    for route in _ROUTES.values():
        route.observe()
    for query in _QUERY_DURATIONS.values():
        query.observe()


def observe_query(name: str, seconds: float, failed: str | None) -> None:
    """A statement ran: counted in its request's measures, and (unless its request is
    measured with METRICS=false) pending in its query's histogram."""
    if failed is not None:
        QUERY_ERRORS.labels(name, failed).inc()
    measures = CURRENT.get()
    if measures is not None:
        measures.queries += 1
        measures.db_seconds += seconds
        if not measures.metrics:
            return  # counted for the access line and Server-Timing; no histogram to feed
    pending = _QUERY_DURATIONS.get(name)
    if pending is None:
        pending = _QUERY_DURATIONS[name] = Pending(QUERY_DURATION.labels(name))
    pending.values.append(seconds)
    # a request's end observes or schedules (Measured.finish); outside a request, here
    if measures is None:
        if SHARED:
            schedule_flush()
        elif len(pending.values) >= LONGEST:
            pending.observe()


def count_stats_cache(hit: bool) -> None:
    STATS_CACHE.labels("hit" if hit else "miss").inc()


# The access lines (their times and fields) queued since the last write, and the handler
# they are written to. A line's fields are taken when its request ends: nothing else of
# the request (its scope, its measures) is kept while the line waits.
_FINISHED: list[AccessFields] = []
_handler: list[logging.StreamHandler[Any] | None] = [None]
_scheduled = [False]
# Access lines wait at most this long (seconds) to be written together. A write costs
# what several lines cost to format (the handler's lock, the stream, the system call):
# at 3,000 requests a second, 10 ms puts about 30 lines in each.
ACCESS_WRITE_EVERY = 0.01
_write_timer: list[asyncio.TimerHandle | None] = [None]


def schedule_flush() -> None:
    """flush_measures once the event loop's current callbacks are done (at once without a
    running loop)."""
    if _scheduled[0]:
        return
    _scheduled[0] = True
    try:
        asyncio.get_running_loop().call_soon(flush_measures)
    except RuntimeError:  # no event loop: now
        flush_measures()


def flush_measures() -> None:
    """In multiprocess mode, observe the pending metrics: run once the event loop's current
    callbacks are done (schedule_flush), so that a scrape answered by another worker counts
    every request this one has answered."""
    _scheduled[0] = False
    observe_pending()


def access_fields(
    scope: Scope, route: str, status: int, seconds: float, measures: RequestMeasures
) -> AccessFields:
    """The access line's time (now, its request's end, in milliseconds since the epoch) and
    fields. Its durations are in hundredths of a millisecond, rounded (service/logs.py
    writes them as milliseconds to two decimals): round(x, 2) goes through a decimal
    string, several times the cost, and a float's text is found with big numbers."""
    path: str = scope["path"]
    query: bytes = scope["query_string"]
    if query:
        path = f"{path}?{shown_query(query)}"
    # X-Request-ID's echo (service/api/requests.py) has found or made it already
    rid = scope["state"].get("request_id") or request_id(scope)
    return (
        time_ns() // 1_000_000, rid, scope["method"], route, path, status,  # type: ignore[typeddict-item]
        int(seconds * 100_000 + 0.5), int(measures.db_seconds * 100_000 + 0.5),
        measures.queries,
    )  # fmt: skip


def write_access() -> None:
    """Write the queued access lines in one write: ACCESS_WRITE_EVERY after the first of
    them, or now (the app's shutdown: none is left behind)."""
    timer = _write_timer[0]
    if timer is not None:
        timer.cancel()  # when the timer itself runs: nothing
        _write_timer[0] = None
    if not _FINISHED:
        return
    lines = _FINISHED[:]
    _FINISHED.clear()
    handler = _handler[0]
    if handler is None:  # never: lines are queued only with a handler
        return
    write_access_lines(handler, ACCESS, lines)


async def write_access_at_shutdown(_app: Litestar) -> None:
    """The app's shutdown hook: the access lines still queued are written."""
    write_access()


class Measured:
    """ASGI wrapper: metrics, Server-Timing and the access line of every HTTP request.

    A plain ASGI callable reading the raw scope (no Litestar Request, no header
    parsing): its cost is paid by every request, so it stays a few microseconds:
    its figures are appended to lists (RoutePending), and its access line is
    formatted and written by write_access with the others that end about then.
    """

    def __init__(self, app: ASGIApp, *, metrics: bool, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        measures = RequestMeasures(self.metrics)
        token = CURRENT.set(measures)
        try:
            await self.app(scope, receive, send)
        finally:
            CURRENT.reset(token)
            # the request's end, here rather than in a method of its own: one call less
            seconds = perf_counter() - measures.started
            route: str = scope.get("path_template") or UNMATCHED
            if self.metrics:
                key = (scope["method"], route, measures.status)
                pending = _ROUTES.get(key)
                if pending is None:
                    pending = _ROUTES[key] = RoutePending(*key)
                durations = pending.durations.values
                durations.append(seconds)
                pending.queries.values.append(measures.queries)
                if SHARED:
                    schedule_flush()
                elif len(durations) >= LONGEST:
                    observe_pending()  # its statements' durations with it
            # lines queued: INFO was enabled ACCESS_WRITE_EVERY ago at most, no need to ask
            if self.access_log and (_FINISHED or access.isEnabledFor(INFO)):
                fields = access_fields(scope, route, measures.status, seconds, measures)
                if _FINISHED or self.first_line(fields):
                    _FINISHED.append(fields)

    @staticmethod
    def first_line(fields: AccessFields) -> bool:
        """The first access line since the last write: whether it is queued, to be written
        by write_access with the others that end within ACCESS_WRITE_EVERY, or was written
        now through logging (another logging set-up than configure's, as a test's)."""
        _handler[0] = access_handler(access)
        if _handler[0] is None:
            emit_access(access, fields)
            return False
        loop = asyncio.get_running_loop()  # an ASGI app runs in one
        _write_timer[0] = loop.call_later(ACCESS_WRITE_EVERY, write_access)
        return True


# RFC 6750 2.3's access_token (which the API refuses) and the like: never written to a log.
TOKEN_PARAMETER = re.compile(r"((?:^|&)[^=&]*(?:token|secret|password)[^=&]*=)[^&]*", re.I)


def hide_tokens(query: str) -> str:
    """The query string (latin-1 text, as decoded from the request) with the value of any
    token-like parameter replaced by ***."""
    lowered = query.lower()
    if "token" not in lowered and "secret" not in lowered and "password" not in lowered:
        return query  # the common case, without the substitution's template machinery
    return TOKEN_PARAMETER.sub(r"\1***", query)


# A request's query string as its access line shows it, for the query strings seen lately:
# a page's query string comes again and again, and decoding it and looking for tokens in
# it cost more than the rest of its line's fields. Only short ones are kept, and the
# cache starts over when full, so it holds at most SHOWN_KEPT * SHOWN_LONGEST bytes.
SHOWN_KEPT = 1024
SHOWN_LONGEST = 256
_shown: dict[bytes, str] = {}


def shown_query(query: bytes) -> str:
    """hide_tokens of the raw query string, remembered for the query strings seen lately."""
    shown = _shown.get(query)
    if shown is None:
        shown = hide_tokens(query.decode("latin-1"))
        if len(query) <= SHOWN_LONGEST:
            if len(_shown) >= SHOWN_KEPT:
                _shown.clear()
            _shown[query] = shown
    return shown


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
    observe_pending()  # the requests this worker finished since the last observation
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
    """Wrap the whole app (routing and errors included) in its measures: Server-Timing on
    every response (ops.md: whatever METRICS and ACCESS_LOG say), and the metrics and
    the access line it asks for."""
    # Server-Timing's db, and the access line's queries and db_ms, need the statements
    # counted even with METRICS=false (their histograms are then never observed)
    observe_queries(observe_query)
    app.asgi_handler = Measured(app.asgi_handler, metrics=metrics, access_log=access_log)
    if access_log:
        app.on_shutdown.append(write_access_at_shutdown)
