"""One typed function per query of sql/health.sql."""

from __future__ import annotations

from service.db.catalogue import Connection, Many, Value

PING = Value("ping")
APPLIED_MIGRATIONS = Many("applied_migrations")


async def ping(conn: Connection) -> int:
    value: int = await PING(conn)
    return value


async def applied_migrations(conn: Connection) -> list[str]:
    return [row["migration_id"] for row in await APPLIED_MIGRATIONS(conn)]
