"""Read replicas: a pool per DATABASE_REPLICA_URLS entry, how far behind each one is,
and which one serves a read.

Routing. Database.connection() (the GET handlers' reads) takes a connection
of the least busy fit replica (connections in use plus requests waiting;
ties in turn). A replica is fit while its last check reached it and found it
at most REPLICA_MAX_LAG_SECONDS behind, and fewer than POOL_MAX_WAITERS
requests wait for its pool. With none fit, or when the request asked for
`X-Read-Consistency: primary` (PRIMARY_READS), the read goes to the primary,
as do writes and the reads inside them (Database.transaction()) and GET
/events (its LISTEN/NOTIFY wake-ups come from the primary). A statement that
fails on a replica because the replica is gone moves the read to the primary
once (service/db/reads.py) and marks the replica down until a check reaches it.

Lag. Each worker checks every CHECK_EVERY seconds, on connections of its own
(one per database, beside the pools, so a busy pool never delays a check):
first the primary's WAL write position (pg_current_wal_lsn(), kept with the
time it was asked for), then each replica's replay position
(pg_last_wal_replay_lsn()) and the age of its last replayed commit
(pg_last_xact_replay_timestamp()). See lag_seconds: a replica that has
replayed up to the primary's position has lag 0, however long the primary
has been idle; one behind is as stale as the newest primary position it has
reached, or its last replayed commit, whichever is more recent. Timestamps
alone would call a caught-up replica of an idle primary an hour behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from service.db.catalogue import Connection
from service.db.health import replay_status, wal_position
from service.db.reads import REPLICA_GONE, ReadConnection
from service.settings import Settings, database_address, redact_url

log = logging.getLogger("service.db.replicas")

CHECK_EVERY = 1.0  # seconds between two checks of every replica, per worker
# Set per request by the X-Read-Consistency hook (service/api/consistency.py): True sends
# the request's reads to the primary.
PRIMARY_READS: ContextVar[bool] = ContextVar("primary_reads", default=False)

State = Literal["up", "down", "lagging"]
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# (url, min_size, max_size or None for POOL_MAX_SIZE): a pool with the primary's settings,
# opened with no connection when the server cannot be reached yet.
OpenPool = Callable[[str, int, int | None], Awaitable[Pool]]
PrimaryConnection = Callable[[], AbstractAsyncContextManager[Connection]]
# A check that fails with one of these finds the database unreachable (or refusing).
CHECK_FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    *REPLICA_GONE,
)


class ReplicaStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # host:port, never the URL's credentials
    state: State
    lag_seconds: float | None  # None while unknown (down)


def lag_seconds(
    replayed: int,
    commit_age: float | None,
    samples: deque[tuple[int, float]],
    now: float,
) -> float | None:
    """How stale a replica is, at most, in seconds: 0 when it has replayed the primary's
    newest known position as of `now`; None when nothing tells.

    `samples` are the primary's WAL positions, oldest first, each with the (monotonic)
    time it was asked for: the primary had at most that position then. A replica that has
    replayed a sampled position holds everything the primary held at that time; one whose
    last replayed commit is `commit_age` seconds old (the primary's clock against the
    replica's) holds every commit up to then. Its data is as fresh as the later of the
    two, so the lag is the smaller age. A replica behind every sample kept, with no commit
    replayed since it started, is at least as old as the oldest sample: that is returned.
    With no sample either (the primary has not answered yet), nothing is known: None.
    """
    reached = next((at for position, at in reversed(samples) if position <= replayed), None)
    bounds = [max(0.0, now - reached)] if reached is not None else []
    if commit_age is not None:
        bounds.append(max(0.0, commit_age))
    if bounds:
        return min(bounds)
    return max(0.0, now - samples[0][1]) if samples else None


@dataclass(eq=False)
class Replica:
    url: str
    name: str
    pool: Pool | None = None  # the reads'
    monitor: Pool | None = None  # one connection, for the checks
    state: State = "down"
    lag: float | None = None
    why: str = "not checked yet"  # what the last check found, for the log
    waiting: int = 0  # requests waiting for its pool
    in_use: int = 0  # reads holding one of its connections

    def busy(self) -> int:
        return self.in_use + self.waiting

    def status(self) -> ReplicaStatus:
        lag = None if self.lag is None else round(self.lag, 3)
        return ReplicaStatus(name=self.name, state=self.state, lag_seconds=lag)


@dataclass(eq=False)
class Replicas:
    """The replicas of one worker, their checks, and the choice of one for a read."""

    settings: Settings
    open_pool: OpenPool
    every: float = CHECK_EVERY
    replicas: list[Replica] = field(init=False)
    samples: deque[tuple[int, float]] = field(init=False)
    _primary: Pool | None = field(default=None, init=False)  # one connection, for the checks
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _turn: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        urls = self.settings.database_replica_urls
        self.replicas = [Replica(url=url, name=database_address(url)) for url in urls]
        # Positions of the last minute (or 10 x the lag limit): enough to name a lag well
        # past the limit; beyond them lag_seconds falls back on the replayed commit's age.
        keep = max(60.0, 10 * self.settings.replica_max_lag_seconds) / self.every
        self.samples = deque(maxlen=int(keep) + 1)

    @property
    def timeout(self) -> float:
        return self.settings.pool_acquire_timeout

    async def open(self) -> None:
        """Open the pools, check every replica once, then keep checking in the background."""
        assert self.settings.database_url is not None
        self._primary = await self.open_pool(self.settings.database_url, 0, 1)

        async def open_replica(replica: Replica) -> None:
            log.info("read replica %s: %s", replica.name, redact_url(replica.url))
            replica.pool = await self.open_pool(replica.url, self.settings.pool_min_size, None)
            replica.monitor = await self.open_pool(replica.url, 0, 1)

        await asyncio.gather(*(open_replica(replica) for replica in self.replicas))
        await self.check()
        self._task = asyncio.create_task(self._watch(), name="replica checks")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        pools = [self._primary] + [p for r in self.replicas for p in (r.pool, r.monitor)]
        await close_pools([p for p in pools if p is not None])
        self._primary = None
        for replica in self.replicas:
            replica.pool = replica.monitor = None

    def statuses(self) -> list[ReplicaStatus]:
        return [replica.status() for replica in self.replicas]

    # --- the checks ---------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.check()
            except Exception:  # a bug here must not end the checks for good
                log.exception("the replica check failed")
            await asyncio.sleep(max(0.0, self.every - (time.monotonic() - started)))

    async def check(self) -> None:
        """One check of every replica: the primary's position first, then theirs."""
        asked = time.monotonic()
        try:
            assert self._primary is not None
            async with asyncio.timeout(self.timeout), self._primary.acquire() as conn:
                self.samples.append((await wal_position(conn), asked))
            now = asked  # compared with the position the primary had at `asked`
        except CHECK_FAILURES as exc:
            # Unknown how far the primary has gone since its last answer: the replicas'
            # lag grows from then, and past the limit the reads go to the primary (whose
            # failure they then report) rather than to a replica nobody can vouch for.
            log.debug("replica check: the primary's WAL position is unknown (%r)", exc)
            now = time.monotonic()
        await asyncio.gather(*(self._check(replica, now) for replica in self.replicas))

    async def _check(self, replica: Replica, now: float) -> None:
        try:
            assert replica.monitor is not None
            async with asyncio.timeout(self.timeout), replica.monitor.acquire() as conn:
                status = await replay_status(conn)
        except CHECK_FAILURES as exc:
            self._set(replica, "down", None, f"unreachable: {describe(exc)}")
            return
        if not status.standby:
            # a promoted replica, or a URL of a primary: its data may part from the primary's
            self._set(replica, "down", None, "not a standby: pg_is_in_recovery() is false")
            return
        if status.replayed is None:  # recovering, nothing replayed yet
            self._set(replica, "lagging", None, "it has replayed nothing yet")
            return
        lag = lag_seconds(status.replayed, status.commit_age, self.samples, now)
        limit = self.settings.replica_max_lag_seconds
        if lag is None:
            self._set(replica, "lagging", None, "lag unknown: the primary has not answered yet")
        elif lag > limit:
            self._set(replica, "lagging", lag, f"{lag:.1f} s behind (limit {limit:g} s)")
        else:
            self._set(replica, "up", lag, "caught up")

    def _set(self, replica: Replica, state: State, lag: float | None, why: str) -> None:
        before = replica.state
        replica.state, replica.lag, replica.why = state, lag, why
        if state == before:
            return
        if state == "up":
            log.info("read replica %s is back in use: %s", replica.name, why)
        else:
            log.warning("read replica %s is %s, skipped: %s", replica.name, state, why)

    def failed(self, replica: Replica, exc: BaseException) -> None:
        """A read lost the replica: down until a check reaches it again."""
        self._set(replica, "down", None, f"a read failed: {describe(exc)}")

    # --- the choice of a replica --------------------------------------------------------

    def pick(self) -> Replica | None:
        """The least busy fit replica (in turn among equals), or None: read on the primary."""
        limit = self.settings.pool_max_waiters
        fit = [r for r in self.replicas if r.state == "up" and r.waiting < limit]
        if not fit:
            return None
        self._turn = turn = (self._turn + 1) % len(fit)
        return min(fit[turn:] + fit[:turn], key=Replica.busy)

    def connection(self, primary: PrimaryConnection) -> AbstractAsyncContextManager[Connection]:
        """A read's connection: on the replica picked, else the primary's (`primary()`)."""
        return ReplicaRead(self, primary)

    async def acquire(self, replica: Replica) -> PoolConnectionProxy[asyncpg.Record] | None:
        """The replica's pooled connection; None when it cannot give one in time (the read then
        goes to the primary; a replica that refuses is marked down)."""
        pool = replica.pool
        assert pool is not None
        replica.waiting += 1
        try:
            conn = await pool.acquire(timeout=self.timeout)
        except TimeoutError:  # busy (or slow to connect): not down, the check will tell
            return None
        except REPLICA_GONE as exc:
            self.failed(replica, exc)
            return None
        finally:
            replica.waiting -= 1
        replica.in_use += 1
        return conn


class ReplicaRead(AbstractAsyncContextManager[Connection]):
    """One read's connection, a replica's (moving to the primary if the replica fails it) or
    the primary's. A class rather than a generator: this runs on every read."""

    __slots__ = ("conn", "fallback", "primary", "replica", "replicas")

    def __init__(self, replicas: Replicas, primary: PrimaryConnection) -> None:
        self.replicas = replicas
        self.primary = primary
        self.replica: Replica | None = None
        self.conn: PoolConnectionProxy[asyncpg.Record] | None = None  # the replica's, held
        self.fallback: AbstractAsyncContextManager[Connection] | None = None  # the primary's

    async def __aenter__(self) -> Connection:
        replica = self.replicas.pick()
        if replica is not None:
            conn = await self.replicas.acquire(replica)
            if conn is not None:
                self.replica, self.conn = replica, conn
                # It stands in for the pooled connection (service/db/reads.py).
                return cast(Connection, ReadConnection(conn, replica.name, self.move))
        return await self.on_primary()

    async def on_primary(self) -> Connection:
        self.fallback = self.primary()
        return await self.fallback.__aenter__()

    async def move(self, exc: BaseException) -> Connection:
        """The replica failed a statement: the read goes on on the primary."""
        replica, conn = self.replica, self.conn
        if isinstance(exc, REPLICA_GONE) and replica is not None and conn is not None:
            self.replicas.failed(replica, exc)
            # never back into the pool in whatever state it is (asyncpg may have taken it
            # back already, when the server ended it: nothing to do then)
            with suppress(asyncpg.InterfaceError):
                conn.terminate()
        return await self.on_primary()

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            if self.fallback is not None:
                await self.fallback.__aexit__(*exc_info)
        finally:
            replica, conn = self.replica, self.conn
            if replica is not None and conn is not None:
                replica.in_use -= 1
                assert replica.pool is not None
                await replica.pool.release(conn)


CLOSE_SECONDS = 10.0


async def close_pools(
    pools: list[asyncpg.Pool[asyncpg.Record]], seconds: float = CLOSE_SECONDS
) -> None:
    """Close pools gracefully, but within `seconds`: asyncpg's close() waits for every
    acquired connection to come back, so one that never does (a request cut off by a
    shutdown) would hold the process forever. Past the deadline the rest are terminated."""
    if not pools:
        return
    closing = asyncio.gather(*(pool.close() for pool in pools))
    try:
        await asyncio.wait_for(asyncio.shield(closing), seconds)
    except TimeoutError:
        log.warning("the database pools did not close within %g s: connections terminated", seconds)
        for pool in pools:
            pool.terminate()
        await asyncio.gather(closing, return_exceptions=True)


def describe(exc: BaseException) -> str:
    """The failure in a few words, for the log (never a URL: asyncpg's messages hold none)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
