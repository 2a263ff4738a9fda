"""GET /deals/stats: per-city price statistics, optionally answered from memory.

With STATS_CACHE_SECONDS above 0, an answer computed for some filters is
served again to the same filters for that many seconds (measured from when
its query started, so no answer is older than that). The cache lives in the
process (one per worker), holds at most MAX_ENTRIES filter combinations
(least recently used out first), and concurrent misses for the same filters
share one query. A failed query is not cached.

With REDIS_URL the workers share the cache there instead: an answer is
stored for STATS_CACHE_SECONDS under a key made of its filters, and any
worker serves it again. Concurrent misses in one worker still share one
query. When Redis does not answer, the query runs and its answer is used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING

import msgspec
from litestar import Controller
from litestar.datastructures import State

from service.api.errors import read
from service.api.metrics import count_stats_cache
from service.api.params import (
    CategoryName,
    IsAvailable,
    MinStars,
    PriceMax,
    PriceMin,
    deal_filters,
)
from service.api.ratelimit import redis_failures
from service.db.pool import Database
from service.db.rows import CityStats
from service.db.stats import deal_stats

if TYPE_CHECKING:  # redis is imported where it is used: only with REDIS_URL set
    from redis.asyncio import Redis

MAX_ENTRIES = 256
REDIS_PREFIX = "deals:stats:"

log = logging.getLogger("service.stats")


Stats = list[CityStats]


class StatsCache:
    """Answers by key for ttl seconds; ttl 0 turns the cache off."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        redis: Redis | None = None,
    ) -> None:
        self.ttl = ttl
        self.redis = redis
        self.failures = redis_failures() if redis is not None else ()
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, asyncio.Future[Stats]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Stats]]) -> Stats:
        if self.ttl <= 0:
            count_stats_cache(hit=False)
            return await compute()
        if self.redis is not None:
            return await self._shared(self.redis, key, compute)
        now = self._clock()
        entry = self._entries.get(key)
        count_stats_cache(hit=entry is not None and entry[0] > now)
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(key)
            future = entry[1]
        else:
            # A task of its own: a client that goes away does not cancel the others' answer.
            future = asyncio.ensure_future(compute())
            future.add_done_callback(lambda done: self._forget_failure(key, done))
            self._entries[key] = (now + self.ttl, future)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return await asyncio.shield(future)

    async def _shared(
        self, redis: Redis, key: Hashable, compute: Callable[[], Awaitable[Stats]]
    ) -> Stats:
        name = REDIS_PREFIX + _encode(key).decode()
        try:
            found = await redis.get(name)
        except self.failures as exc:
            log.warning("stats cache: Redis did not answer (%s)", type(exc).__name__)
            found = None
        if found is not None:
            count_stats_cache(hit=True)
            return _decode(found)
        count_stats_cache(hit=False)
        # The same filters missed together in this worker: one query (shared by their futures).
        pending = self._entries.get(key)
        if pending is not None and not pending[1].done():
            return await asyncio.shield(pending[1])
        future = asyncio.ensure_future(compute())
        self._entries[key] = (self._clock() + self.ttl, future)
        try:
            stats = await asyncio.shield(future)
        finally:
            if self._entries.get(key, (0, None))[1] is future:
                del self._entries[key]
        try:
            await redis.set(name, _encode(stats), px=max(1, round(self.ttl * 1000)))
        except self.failures as exc:
            log.warning("stats cache: Redis did not answer (%s)", type(exc).__name__)
        return stats

    def _forget_failure(self, key: Hashable, done: asyncio.Future[Stats]) -> None:
        if done.cancelled() or done.exception() is not None:
            entry = self._entries.get(key)
            if entry is not None and entry[1] is done:
                del self._entries[key]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Stats).decode


class StatsController(Controller):
    path = "/deals/stats"
    tags = ["deals"]  # noqa: RUF012

    @read("/", "Deal statistics by city", "getDealStats", 422, 503, 504)
    async def stats(
        self,
        state: State,
        min_stars: MinStars = None,
        price_min: PriceMin = None,
        price_max: PriceMax = None,
        category: CategoryName = None,
        is_available: IsAvailable = None,
    ) -> list[CityStats]:
        """Per city: the average price per night and the number of deals matching the filters.

        Most deals first, then by city. avg_price is rounded half away from zero
        to 2 places. Without a price range or a category the answer comes from
        per-hotel totals that every write keeps in step (exact, no lag); with
        one, from the deals themselves. With STATS_CACHE_SECONDS above 0 the
        answer may be that old.
        """
        name = category.lower() if category is not None else None
        filters = deal_filters(None, min_stars, price_min, price_max, name, is_available)
        db: Database = state.db

        async def compute() -> Stats:
            async with db.connection() as conn:
                return await deal_stats(conn, filters)

        cache: StatsCache = state.stats_cache
        return await cache.get(filters.args()[1:], compute)
