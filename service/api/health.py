"""GET /health, /health/live and /health/ready."""

from __future__ import annotations

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.datastructures import State

from service.api.errors import RETRY_AFTER, ServiceUnavailable, error_responses
from service.db.health import applied_migrations, ping
from service.db.pool import Database
from service.migrate import migration_ids

EXPECTED_MIGRATIONS = tuple(migration_ids())


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True):
    status: str
    migrations: int


class HealthController(Controller):
    path = "/health"
    tags = ["health"]  # noqa: RUF012

    @get(
        "/",
        summary="Database health",
        operation_id="getHealth",
        responses=error_responses(503, 504),
    )
    async def health(self, state: State) -> Health:
        """200 when the database answers a query, 503 when it does not."""
        db: Database = state.db
        async with db.connection() as conn:
            await ping(conn)
        return Health(status="ok")

    @get("/live", summary="Liveness", operation_id="getLiveness")
    async def live(self) -> Health:
        """200 whenever the process answers; no database involved."""
        return Health(status="ok")

    @get(
        "/ready",
        summary="Readiness",
        operation_id="getReadiness",
        responses=error_responses(503, 504),
    )
    async def ready(self, state: State) -> Readiness:
        """200 when the pool reaches the database and every migration is applied."""
        db: Database = state.db
        try:
            async with db.connection() as conn:
                applied = await applied_migrations(conn)
        except asyncpg.UndefinedTableError:
            applied = []
        missing = [m for m in EXPECTED_MIGRATIONS if m not in applied]
        if missing:
            raise ServiceUnavailable(
                f"{len(missing)} migration(s) not applied",
                code="NOT_MIGRATED",
                details=missing,
                headers=RETRY_AFTER,
            )
        return Readiness(status="ok", migrations=len(applied))
