"""The Litestar app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import ControllerRouterHandler

from service import logs
from service.api.auth import access_middleware, declare_security, rate_limited
from service.api.categories import CategoriesController
from service.api.consistency import ReadConsistency
from service.api.deals import DealsController
from service.api.errors import handle_exception
from service.api.events import EventsController
from service.api.health import HealthController
from service.api.hotels import HotelsController
from service.api.http import (
    GZIP,
    DocsAssetsController,
    cors_config,
    http_layer,
    local_swagger_ui,
)
from service.api.imports import ImportController
from service.api.metrics import instrument, metrics_page, pool_gauges
from service.api.openapi import declare_rate_limit, finish_openapi
from service.api.replica_metrics import replica_gauges
from service.api.requests import echo_request_headers, reject_unknown_parameters
from service.api.stats import StatsCache, StatsController
from service.compat import (
    finish_openapi_when_built,
    fix_options_allow,
    keep_integer_bounds_exact,
)
from service.db.pool import Database
from service.serve import drain_middleware, dump_stacks_on_sigusr1, settle_heap
from service.settings import Settings

log = logging.getLogger("service.app")

OPENAPI_JSON = "/docs/openapi.json"

ROUTES: Sequence[ControllerRouterHandler] = [
    HealthController,
    DealsController,
    ImportController,
    StatsController,
    HotelsController,
    CategoriesController,
    EventsController,
    DocsAssetsController,
]


def create_app(settings: Settings) -> Litestar:
    """The app for these settings; the lifespan owns the database pool."""
    db = Database(settings)
    # The workers' shared rate-limit counters and stats cache (it connects when first used).
    redis = None
    if settings.redis_url:
        from redis.asyncio import Redis  # only here: 56 ms of every start-up without Redis

        redis = Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await db.open()
        try:
            yield
        finally:
            await db.close()
            if redis is not None:
                await redis.aclose()

    keep_integer_bounds_exact()  # before Litestar builds the OpenAPI document
    routes = [*ROUTES, metrics_page] if settings.metrics else ROUTES
    lifespans: list[Callable[[Litestar], AbstractAsyncContextManager[None]]] = [lifespan]
    if settings.metrics:
        lifespans.append(lambda _app: pool_gauges(db))
    if settings.metrics and (replicas := db.replicas) is not None:
        lifespans.append(lambda _app: replica_gauges(replicas))
    consistency = ReadConsistency()  # X-Read-Consistency: primary
    app = Litestar(
        route_handlers=routes,
        lifespan=lifespans,
        state=State(
            {
                "db": db,
                "settings": settings,
                "stats_cache": StatsCache(settings.stats_cache_seconds, redis=redis),
            }
        ),
        exception_handlers={Exception: handle_exception},
        before_request=reject_unknown_parameters,
        before_send=[echo_request_headers],
        request_max_body_size=settings.max_body_bytes,
        compression_config=GZIP,
        openapi_config=OpenAPIConfig(
            title="Deals API",
            version="1.0.0",
            description=(
                "Hotel deals over PostgreSQL. Money and percentages are exact decimals "
                'encoded as JSON strings ("129.99"). Every error has one shape: '
                '{"error": {"code", "message", "details", "request_id"}}.'
            ),
            path="/docs",
            render_plugins=[
                local_swagger_ui(path="/"),
                JsonRenderPlugin(path="/openapi.json"),
            ],
            use_handler_docstrings=True,
        ),
        debug=False,
        logging_config=None,  # logging is configured once, by service.logs
        middleware=[drain_middleware, *access_middleware(settings, redis), consistency.middleware],
    )
    consistency.declare(app)

    def document(app: Litestar) -> None:
        finish_openapi(app)
        consistency.document(app)
        if settings.auth_on:
            declare_security(app)
        if settings.rate_limit is not None:
            declare_rate_limit(app, rate_limited)

    # The document is built and finished when first used (GET /docs/openapi.json), not here
    finish_openapi_when_built(app, document)
    fix_options_allow(app)
    # Before routing: HEAD, gzip negotiation, CORS (service/api/http.py).
    # Measured inside the HTTP layer: it sees the scope the router fills (path_template).
    instrument(app, metrics=settings.metrics, access_log=settings.access_log)
    app.asgi_handler = http_layer(app.asgi_handler, cors_config(settings.cors_origins))
    return app


def app_from_env() -> Litestar:
    """The uvicorn factory, run in each worker: settings from the environment
    (DATABASE_URL is set by `deals serve`), then the worker's heap settled (settle_heap)."""
    settings = Settings.from_env()
    logs.configure(settings)
    dump_stacks_on_sigusr1()  # each worker as well (serve.run registers its supervisor)
    app = create_app(settings)
    settle_heap()
    return app
