"""The asyncpg pool, owned by the app's lifespan, and the per-request connection.

The service starts even when the database is down: the pool then opens
connections on demand, so it recovers by itself when the database returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import msgspec

from service.db.catalogue import SESSION_MODE, Connection
from service.db.listener import POLL_SECONDS, EventListener
from service.db.replicas import CLOSE_SECONDS, PRIMARY_READS, Replicas, close_pools
from service.settings import Settings, redact_url

log = logging.getLogger("service.db")


class Overloaded(Exception):
    """More requests wait for a connection than POOL_MAX_WAITERS allows; refused at once."""


class Turns:
    """The pool's connections handed out first come, first served.

    asyncpg's pool wakes its longest waiter when a connection comes back, but a request
    that asks before the woken one runs takes the connection (asyncio.Queue.get lets a
    newcomer through while the queue is not empty), and the waiter queues again at the
    back. Under load some requests lose their turn again and again: with 32 clients on a
    pool of 10, p99 reached 6 to 9 times p50 (bench_http). Here a connection that comes
    back is handed to the longest waiter directly, and a newcomer takes one only when
    nobody waits; so the pool's own queue never has to wait.

    A wait ends after `timeout` seconds (TimeoutError). The waiters' deadlines come in
    their order, so one timer, every REAP_EVERY seconds while anyone waits, ends the
    waits that are over, rather than a timer per waiting request (asyncio's timers are a
    heap with Python comparisons: a push and a cancel per request under load).
    """

    REAP_EVERY = 0.05  # a wait ends at most this long after its deadline

    def __init__(self, size: int, timeout: float) -> None:
        self.free = size
        self.timeout = timeout
        self.waiters: deque[tuple[asyncio.Future[bool], float]] = deque()
        self._reaper: asyncio.AbstractEventLoop | None = None  # the loop its timer runs on

    def take_now(self) -> bool:
        """A turn at once, when one is free and nobody waits for it."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """A turn, after every request that asked before, within the timeout (else
        TimeoutError); cancelled: a turn handed over meanwhile is passed on."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self.waiters.append((turn, loop.time() + self.timeout))
        if self._reaper is not loop:
            self._reaper = loop
            loop.call_later(self.REAP_EVERY, self._reap, loop)
        try:
            handed = await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.result():
                self.give()  # handed a turn just as the wait was cancelled: pass it on
            raise
        if not handed:
            raise TimeoutError("no connection within the acquire timeout")

    def give(self) -> None:
        """A turn back: to the longest waiter still waiting, else free."""
        while self.waiters:
            turn, _ = self.waiters.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self.free += 1

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        """End the waits that are past their deadline (the oldest first); again later
        while anyone waits."""
        now = loop.time()
        waiters = self.waiters
        while waiters and (waiters[0][0].done() or waiters[0][1] <= now):
            turn, _ = waiters.popleft()
            if not turn.done():
                turn.set_result(False)
        if waiters:
            loop.call_later(self.REAP_EVERY, self._reap, loop)
        else:
            self._reaper = None


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
    LISTEN or SET; its settings are the connection's startup defaults, or SET
    LOCAL through PgBouncer).
    """


def session_settings(settings: Settings) -> dict[str, str]:
    """The settings every query of the API runs with."""
    return {
        "statement_timeout": str(settings.statement_timeout_ms),
        # a transaction left open (a bug, a stuck client) ends instead of
        # holding its locks and its connection forever
        "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
        # Plan each execution with its values, so the optional filters
        # `($1 IS NULL OR ...)` fold away; a query whose `-- plan:` line
        # says generic switches its session first (catalogue.use_plan), never
        # inside a transaction, so never through PgBouncer (SET LOCAL there).
        "plan_cache_mode": SESSION_MODE,
    }


def connect_kwargs(settings: Settings, application_name: str, *, pooler: bool) -> dict[str, Any]:
    """asyncpg's connection arguments for DATABASE_POOLER.

    none: every setting travels in the startup packet; asyncpg caches named
    prepared statements (one round trip per query).
    pgbouncer (transaction mode): the startup packet carries application_name
    only (PgBouncer 1.18 refuses any parameter it does not track: "unsupported
    startup parameter"); session_settings become SET LOCAL in each transaction
    (begin_statement). No statement cache: a named statement lives on one server
    connection and the next transaction may get another ("prepared statement
    __asyncpg_stmt_N__ does not exist"). asyncpg then sends unnamed statements,
    their Describe and their Bind/Execute in one Sync, so each stays on one server.
    """
    if pooler:
        return {
            "server_settings": {"application_name": application_name},
            "statement_cache_size": 0,
        }
    return {"server_settings": {"application_name": application_name, **session_settings(settings)}}


def begin_statement(settings: Settings) -> str:
    """BEGIN and the session_settings as SET LOCAL: one simple-protocol round trip.

    Not in sql/: PostgreSQL binds no parameter in SET or in a multi-statement
    text; the values are the service's own validated settings, quoted here.
    """
    sets = "".join(
        f"; SET LOCAL {name} = '{value.replace(chr(39), chr(39) * 2)}'"
        for name, value in session_settings(settings).items()
    )
    return f"BEGIN{sets}"


class Database:
    def __init__(self, settings: Settings) -> None:
        if not settings.database_url:
            raise ValueError("Database needs a DATABASE_URL")
        self.settings = settings
        self.url = settings.database_url
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._turns = Turns(settings.pool_max_size, settings.pool_acquire_timeout)
        self._waiting = 0
        self.close_seconds = CLOSE_SECONDS  # how long close() waits for borrowed connections
        # Through PgBouncer every pooled connection is used inside a transaction that
        # starts with the settings (connect_kwargs); None: no transaction for reads.
        self._begin = begin_statement(settings) if settings.database_pooler == "pgbouncer" else None
        # GET /events?wait: one LISTEN connection per worker (service/db/listener.py);
        # LISTEN needs a session, which PgBouncer in transaction mode does not give.
        listen = settings.direct_url if self._begin is None else settings.database_direct_url
        if listen is None:
            log.warning(
                "DATABASE_POOLER=pgbouncer without DATABASE_DIRECT_URL: GET /events?wait "
                "reads the feed again every %g s instead of LISTENing (LISTEN needs a "
                "session); set DATABASE_DIRECT_URL to PostgreSQL itself",
                POLL_SECONDS,
            )
        self.listener = EventListener(listen, settings.pool_acquire_timeout)
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
            # DATABASE_POOLER applies to DATABASE_URL; replicas are reached directly
            **connect_kwargs(s, "deals-api", pooler=self._begin is not None and url == self.url),
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
            await close_pools([pool], self.close_seconds)

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
        (first come, first served: Turns, so latency stays bounded by the timeout
        plus the query). Beyond POOL_MAX_WAITERS queued requests the excess is
        refused at once: a valve against unbounded queues. A tight valve hurts:
        clients that retry at once flood the event loop with cheap refusals
        (measured in bench/).
        """
        pool = self.pool  # released into the pool it came from, even once close() began
        turns = self._turns
        if not turns.take_now():
            if self._waiting >= self.settings.pool_max_waiters:
                raise Overloaded(f"{self._waiting} requests already wait for a connection")
            self._waiting += 1
            try:
                await turns.take()
            finally:
                self._waiting -= 1
        try:
            # With a turn, a connection is idle in the pool or there is room to open one
            # (within the pool's connect timeout, POOL_ACQUIRE_TIMEOUT): asyncpg's queue
            # does not make it wait, so no timeout here (acquire(timeout=) costs a task
            # and a timer per call). The one exception, a connection still on its way back
            # from a cancelled request, is bounded by that release's own timeout.
            conn = await pool.acquire()
        except BaseException:
            turns.give()
            raise
        try:
            if self._begin is None:
                yield conn
            else:
                async with self._in_transaction(conn):
                    yield conn
        finally:
            try:
                await pool.release(conn, timeout=self.settings.pool_acquire_timeout)
            finally:
                turns.give()

    @asynccontextmanager
    async def _in_transaction(self, conn: Connection) -> AsyncIterator[None]:
        """DATABASE_POOLER=pgbouncer: BEGIN with the settings, COMMIT, or ROLLBACK on error."""
        assert self._begin is not None
        await conn.execute(self._begin)
        try:
            yield
        except BaseException:
            try:
                await conn.execute("ROLLBACK")
            except Exception:  # the connection broke, and the pool took it back
                log.debug("no ROLLBACK: the connection is gone", exc_info=True)
            raise
        await conn.execute("COMMIT")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        if self._begin is not None:  # every pooled connection is in one already
            async with self.primary() as conn:
                yield conn
            return
        async with self.primary() as conn, conn.transaction():
            yield conn
