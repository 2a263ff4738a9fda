"""A read's connection on a replica, which moves to the primary when the replica fails it.

Database.connection() hands a read this instead of the replica's pooled
connection when replicas are configured. Its statements run on the replica;
when one fails there because the replica is gone (the connection broke, the
server shuts down, restarts or refuses) or because replay cancelled it (a hot
standby conflict: 40001, or 40P01 for a buffer pin), the statement runs once
more on a primary connection and the rest of the read stays there. A read runs
no explicit transaction (each statement is atomic on its own), so moving
between statements loses nothing. The catalogue's kind helpers call only
fetch, fetchrow, fetchval and execute; anything else is passed to the
connection in use, unchanged (a cursor, which needs a transaction that reads
never open, does not move). So it stands in for the pooled connection it wraps
(Database.connection() hands it on typed as one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from service.db.catalogue import Connection

# The replica is gone, for now: the read moves, and the replica is marked down.
REPLICA_GONE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    asyncpg.exceptions.InterfaceError,  # "connection is closed"
    asyncpg.exceptions.AdminShutdownError,  # 57P01
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03
    # asyncpg's protocol left out of step by a server that ended the connection while it
    # was idle ("cannot switch to state 12; another operation (2) is in progress")
    asyncpg.exceptions.InternalClientError,
)
# Replay cancelled the statement (max_standby_streaming_delay): the read moves, the
# replica stays up. On a replica no other read can fail with these.
RECOVERY_CONFLICT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,  # 40001
    asyncpg.exceptions.DeadlockDetectedError,  # 40P01
)
MOVES = REPLICA_GONE + RECOVERY_CONFLICT

# Given what failed on the replica: a primary connection (held until the read ends).
Move = Callable[[BaseException], Awaitable[Connection]]
T = TypeVar("T")


class ReadConnection:
    """A replica's pooled connection that moves, once, to the primary."""

    __slots__ = ("_conn", "_move", "replica")

    def __init__(self, conn: Connection, replica: str, move: Move) -> None:
        self._conn = conn
        self._move: Move | None = move
        self.replica = replica  # the replica's name; "" once the read has moved

    async def _moved(self, exc: BaseException) -> Connection:
        if self._move is None or not isinstance(exc, MOVES):
            raise exc
        move, self._move = self._move, None
        self._conn = await move(exc)
        self.replica = ""
        return self._conn

    async def _run(self, statement: Callable[[Connection], Awaitable[T]]) -> T:
        """The statement on the connection in use; once more on the primary when the
        replica fails it (and the read stays there)."""
        try:
            return await statement(self._conn)
        except MOVES as exc:
            conn = await self._moved(exc)
        return await statement(conn)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda conn: conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda conn: conn.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run(lambda conn: conn.fetchval(query, *args))

    async def execute(self, query: str, *args: Any) -> str:
        return await self._run(lambda conn: conn.execute(query, *args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)
