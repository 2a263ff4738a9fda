"""RATE_LIMIT: requests per client per window, counted in the worker or in Redis.

A fixed window (`200/s`, `1000/m`, `5000/h`) aligned on the clock: a client
(the token's `sub` when it has a valid token, else the peer address) may
make that many requests from the window's start; the next one gets 429
TOO_MANY_REQUESTS with Retry-After, the seconds until the window ends. Every
answer that was counted carries RateLimit-Limit, RateLimit-Remaining and
RateLimit-Reset (seconds to the window's end; draft-ietf-httpapi-ratelimit-headers).
/health* and /metrics are not counted: probes and scrapes are not clients.

Without REDIS_URL each worker counts alone, so with API_WORKERS=N a client
may get up to N times the limit. With REDIS_URL the workers share one counter
per client and window: INCR and EXPIRE in one pipeline, one round trip. When
Redis does not answer, requests go through uncounted (a warning, at most one
every 10 s): the limit protects the service, and an outage of it should not
take the API down.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:  # redis is imported where it is used: only with REDIS_URL set
    from redis.asyncio import Redis

log = logging.getLogger("service.ratelimit")

RATE: Final = re.compile(r"([1-9][0-9]{0,8})/([smh])")
UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600}
KEY_PREFIX: Final = "deals:rl:"
WARN_EVERY: Final = 10.0


@dataclass(frozen=True)
class Rate:
    limit: int
    window: int  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        found = RATE.fullmatch(text)
        if found is None:
            raise ValueError(text)
        return cls(int(found[1]), UNIT_SECONDS[found[2]])


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window ends

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset)
        return headers


class Counter(Protocol):
    async def count(self, client: str, window: int, ttl: int) -> int | None:
        """The client's requests in this window, this one included; None: not counted."""


class LocalCounter:
    """This worker's counts; only the current window's are kept."""

    def __init__(self) -> None:
        self.window = -1
        self.counts: dict[str, int] = {}

    async def count(self, client: str, window: int, ttl: int) -> int | None:
        if window != self.window:
            self.window, self.counts = window, {}
        self.counts[client] = count = self.counts.get(client, 0) + 1
        return count


def redis_failures() -> tuple[type[Exception], ...]:
    """What a call to a Redis that does not answer raises. redis is imported here, by the
    holders of a client (RedisCounter, the stats cache), not at start-up."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


class RedisCounter:
    """One counter per client and window, shared by every worker that uses this Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.failures = redis_failures()
        self.warned = -math.inf

    async def count(self, client: str, window: int, ttl: int) -> int | None:
        # The client (a subject or an address) is hashed: a key of fixed size and alphabet.
        digest = hashlib.blake2b(client.encode(), digest_size=16).hexdigest()
        key = f"{KEY_PREFIX}{window}:{digest}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, ttl)
                count, _ = await pipe.execute()
        except self.failures as exc:
            now = time.monotonic()
            if now - self.warned >= WARN_EVERY:
                self.warned = now
                log.warning(
                    "rate limit not enforced: Redis did not answer (%s)", type(exc).__name__
                )
            return None
        return int(count)


class Limiter:
    def __init__(
        self, rate: Rate, counter: Counter, clock: Callable[[], float] = time.time
    ) -> None:
        self.rate = rate
        self.counter = counter
        self.clock = clock

    async def hit(self, client: str) -> Verdict | None:
        """Count one request of this client; None when it could not be counted."""
        now = self.clock()
        window = int(now // self.rate.window)
        reset = max(1, math.ceil((window + 1) * self.rate.window - now))
        count = await self.counter.count(client, window, self.rate.window + 1)
        if count is None:
            return None
        return Verdict(
            allowed=count <= self.rate.limit,
            limit=self.rate.limit,
            remaining=max(0, self.rate.limit - count),
            reset=reset,
        )
