"""The asyncpg pool, owned by the app's lifespan, and the per-request connection.

The service starts even when the database is down: the pool then opens
connections on demand, so it recovers by itself when the database returns.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import msgspec

from service.db.catalogue import SESSION_MODE, Connection
from service.db.listener import EventListener
from service.db.replicas import PRIMARY_READS, Replicas
from service.settings import Settings, redact_url

log = logging.getLogger("service.db")


class Overloaded(Exception):
    """More requests wait for a connection than POOL_MAX_WAITERS allows; refused at once."""


class PoolGauges(msgspec.Struct, frozen=True):
    size: int
    idle: int
    max: int
    waiting: int


async def keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own ROLLBACK of an open transaction.

    asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` on every release: a round trip per request, for
    session state this service never creates (no advisory locks, cursors,
    LISTEN or SET; its settings are the connection's startup defaults).
    """


class Database:
    def __init__(self, settings: Settings) -> None:
        if not settings.database_url:
            raise ValueError("Database needs a DATABASE_URL")
        self.settings = settings
        self.url = settings.database_url
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._waiting = 0
        # GET /events?wait: one LISTEN connection per worker (service/db/listener.py)
        self.listener = EventListener(self.url, settings.pool_acquire_timeout)
        # DATABASE_REPLICA_URLS: the reads' pools, their lag checks (service/db/replicas.py)
        self.replicas = (
            Replicas(settings, self._open_pool) if settings.database_replica_urls else None
        )

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("the database pool is not open")
        return self._pool

    def _make_pool(
        self, url: str, min_size: int, max_size: int | None = None
    ) -> asyncpg.Pool[asyncpg.Record]:
        """A pool of the primary (url) or of a replica, every connection set up alike."""
        s = self.settings
        return asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size or s.pool_max_size,
            timeout=s.pool_acquire_timeout,  # connect timeout
            command_timeout=None,
            max_inactive_connection_lifetime=300,
            reset=keep_session,
            server_settings={
                "application_name": "deals-api",
                "statement_timeout": str(s.statement_timeout_ms),
                # a transaction left open (a bug, a stuck client) ends instead of
                # holding its locks and its connection forever
                "idle_in_transaction_session_timeout": str(s.idle_in_transaction_timeout_ms),
                # Plan each execution with its values, so the optional filters
                # `($1 IS NULL OR ...)` fold away; a query whose `-- plan:` line
                # says generic switches its session first (catalogue.use_plan).
                "plan_cache_mode": SESSION_MODE,
            },
        )

    async def _open_pool(
        self, url: str, min_size: int, max_size: int | None = None
    ) -> asyncpg.Pool[asyncpg.Record]:
        try:
            return await self._make_pool(url, min_size, max_size)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning(
                "database %s is not reachable at start-up (%s); serving anyway, "
                "connections open on demand",
                redact_url(url),
                exc.__class__.__name__,
            )
            return await self._make_pool(url, 0, max_size)

    async def open(self) -> None:
        self._pool = await self._open_pool(self.url, self.settings.pool_min_size)
        if self.replicas is not None:
            await self.replicas.open()

    async def close(self) -> None:
        await self.listener.close()
        if self.replicas is not None:
            await self.replicas.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def gauges(self) -> PoolGauges:
        """Pool figures for health pages and, later, Prometheus gauges."""
        pool = self._pool
        if pool is None:
            return PoolGauges(size=0, idle=0, max=self.settings.pool_max_size, waiting=0)
        return PoolGauges(
            size=pool.get_size(),
            idle=pool.get_idle_size(),
            max=pool.get_max_size(),
            waiting=self._waiting,
        )

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A read's connection: a fit replica's when there are replicas (the request did not
        ask for the primary with X-Read-Consistency), else the primary's. Writes, and the
        reads inside them, take transaction(); reads that must see the primary, primary()."""
        if self.replicas is None or PRIMARY_READS.get():
            return self.primary()
        return self.replicas.connection(self.primary)

    @asynccontextmanager
    async def primary(self) -> AsyncIterator[Connection]:
        """A pooled connection within the acquire timeout (else TimeoutError), or Overloaded.

        Under overload the acquire timeout sheds what cannot be served in time
        (FIFO, so latency stays bounded by the timeout plus the query). Beyond
        POOL_MAX_WAITERS queued requests the excess is refused at once: a valve
        against unbounded queues. A tight valve hurts: clients that retry at once
        flood the event loop with cheap refusals (measured in bench/).
        """
        if self._waiting >= self.settings.pool_max_waiters:
            raise Overloaded(f"{self._waiting} requests already wait for a connection")
        self._waiting += 1
        try:
            conn = await self.pool.acquire(timeout=self.settings.pool_acquire_timeout)
        finally:
            self._waiting -= 1
        try:
            yield conn
        finally:
            await self.pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        async with self.primary() as conn, conn.transaction():
            yield conn
