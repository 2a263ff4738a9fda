"""GET /health, /health/live and /health/ready.

/health and /health/ready ask the primary. /health/ready also lists each
database with its state: the primary (up, since it answered) and each read
replica as its last check found it (service/db/replicas.py, every second):
`up`, `lagging` (further behind than REPLICA_MAX_LAG_SECONDS) or `down`, and
its lag in seconds (null while down). A replica that is down or lagging
leaves the service ready: its reads go to the other replicas or the primary.
"""

from __future__ import annotations

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.datastructures import State

from service.api.errors import RETRY_AFTER, ServiceUnavailable, read
from service.db.health import applied_migrations, ping
from service.db.pool import Database
from service.db.replicas import State as ReplicaState
from service.migrate import migration_ids

EXPECTED_MIGRATIONS = tuple(migration_ids())


class Health(msgspec.Struct, frozen=True):
    status: str


class DatabaseState(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # "primary", or a replica's host:port
    role: str  # "primary" or "replica"
    state: ReplicaState
    lag_seconds: float | None  # behind the primary; null while unknown (down)


class Readiness(msgspec.Struct, frozen=True):
    status: str
    migrations: int
    databases: list[DatabaseState]


PRIMARY_UP = DatabaseState(name="primary", role="primary", state="up", lag_seconds=0.0)


class HealthController(Controller):
    path = "/health"
    tags = ["health"]  # noqa: RUF012

    @read("/", "Database health", "getHealth", 503, 504)
    async def health(self, state: State) -> Health:
        """200 when the database answers a query, 503 when it does not."""
        db: Database = state.db
        async with db.primary() as conn:
            await ping(conn)
        return Health(status="ok")

    @get("/live", summary="Liveness", operation_id="getLiveness")
    async def live(self) -> Health:
        """200 whenever the process answers; no database involved."""
        return Health(status="ok")

    @read("/ready", "Readiness", "getReadiness", 503, 504)
    async def ready(self, state: State) -> Readiness:
        """200 when the pool reaches the primary and every migration is applied; lists each
        database (the primary and every read replica) with its state and lag."""
        db: Database = state.db
        try:
            async with db.primary() as conn:
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
        replicas = db.replicas.statuses() if db.replicas is not None else []
        databases = [PRIMARY_UP] + [
            DatabaseState(name=r.name, role="replica", state=r.state, lag_seconds=r.lag_seconds)
            for r in replicas
        ]
        return Readiness(status="ok", migrations=len(applied), databases=databases)
