"""One typed function per query of sql/health.sql."""

from __future__ import annotations

import msgspec

from service.db.catalogue import Connection, Many, One, Value

PING = Value("ping")
APPLIED_MIGRATIONS = Many("applied_migrations")
WAL_POSITION = Value("wal_position")
REPLAY_STATUS = One("replay_status")


class ReplayStatus(msgspec.Struct, frozen=True, kw_only=True):
    standby: bool  # pg_is_in_recovery(): false on a primary (or a promoted replica)
    replayed: int | None  # WAL bytes replayed; None when not a standby
    commit_age: float | None  # seconds since the last replayed commit; None before any


async def ping(conn: Connection) -> int:
    value: int = await PING(conn)
    return value


async def applied_migrations(conn: Connection) -> list[str]:
    return [row["migration_id"] for row in await APPLIED_MIGRATIONS(conn)]


async def wal_position(conn: Connection) -> int:
    """The primary's WAL write position, in bytes from 0/0."""
    value: int = await WAL_POSITION(conn)
    return value


async def replay_status(conn: Connection) -> ReplayStatus:
    row = await REPLAY_STATUS(conn)
    assert row is not None, "a SELECT without FROM returns one row"
    return ReplayStatus(
        standby=row["standby"], replayed=row["replayed"], commit_age=row["commit_age"]
    )
