"""The service's own /metrics (Prometheus text format, docs: shared/spec/ops.md), read
for n_plus_one (db_queries_per_request by route) and pool (db_pool_*)."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

QUERIES_PER_REQUEST = "db_queries_per_request"
POOL_CONNECTIONS = "db_pool_connections"
POOL_MAX_SIZE = "db_pool_max_size"
POOL_WAITERS = "db_pool_waiters"
TIMEOUT_SECONDS = 5.0


class MetricsError(Exception):
    """/metrics could not be read or parsed."""


@dataclass
class RouteQueries:
    """db_queries_per_request of one route, summed over workers (and any other label)."""

    route: str
    count: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def most(self) -> float:
        """The upper bound of the highest bucket holding a request: the most it ran (at most)."""
        for le in sorted(self.buckets):
            if self.buckets[le] >= self.count:
                return le
        return math.inf

    def above(self, bound: float) -> float:
        """How many requests ran more statements than the lowest bucket bound >= `bound`."""
        bounds = [le for le in sorted(self.buckets) if le >= bound]
        return self.count - self.buckets[bounds[0]] if bounds else 0.0


@dataclass
class Metrics:
    routes: dict[str, RouteQueries] = field(default_factory=dict)
    pool_in_use: float | None = None
    pool_idle: float | None = None
    pool_max_size: float | None = None
    pool_waiters: float | None = None


def metrics_url(api: str) -> str:
    api = api.rstrip("/")
    return api if api.endswith("/metrics") else f"{api}/metrics"


def fetch(api: str, token: str | None = None, timeout: float = TIMEOUT_SECONDS) -> str:
    url = metrics_url(api)
    if not url.startswith(("http://", "https://")):
        raise MetricsError(f"--api must be an http:// or https:// URL, not {api!r}")
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})  # noqa: S310
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        raise MetricsError(f"GET {url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MetricsError(f"GET {url} failed: {reason}") from None
    return body.decode("utf-8", errors="replace")


def parse(text: str) -> Metrics:
    found = Metrics()
    routes: dict[str, RouteQueries] = {}
    gauges: dict[str, float] = defaultdict(float)
    seen: set[str] = set()
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise MetricsError(f"/metrics is not Prometheus text: {exc}") from None
    for family in families:
        for sample in family.samples:
            if family.name == QUERIES_PER_REQUEST:
                route = sample.labels.get("route", "")
                entry = routes.setdefault(route, RouteQueries(route))
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels.get("le", "+Inf"))
                    entry.buckets[le] = entry.buckets.get(le, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    entry.total += sample.value
                elif sample.name.endswith("_count"):
                    entry.count += sample.value
            elif family.name == POOL_CONNECTIONS:
                state = sample.labels.get("state", "")
                gauges[f"{POOL_CONNECTIONS}:{state}"] += sample.value
                seen.add(f"{POOL_CONNECTIONS}:{state}")
            elif family.name in (POOL_MAX_SIZE, POOL_WAITERS):
                gauges[family.name] += sample.value  # one per worker: the service's total
                seen.add(family.name)
    found.routes = dict(sorted(routes.items()))

    def gauge(key: str) -> float | None:
        return gauges[key] if key in seen else None

    found.pool_in_use = gauge(f"{POOL_CONNECTIONS}:in_use")
    found.pool_idle = gauge(f"{POOL_CONNECTIONS}:idle")
    found.pool_max_size = gauge(POOL_MAX_SIZE)
    found.pool_waiters = gauge(POOL_WAITERS)
    return found
