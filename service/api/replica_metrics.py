"""The read replicas' gauges on GET /metrics (ops/README.md's table; the alert rules
DealsReplicaLagging and DealsReplicaDown read them):

- `db_replica_lag_seconds{replica}`: how far the replica's replay is behind the
  primary, as its last check measured it (service/db/replicas.py); NaN while
  the replica is down, when nothing can be measured;
- `db_replica_up{replica}`: 1 when the last check reached the replica (up or
  lagging), 0 when it did not.

`replica` is the replica's host:port. Each worker checks every replica and
refreshes its gauges every second; with several workers the multiprocess
mode `livemax` exports the worst lag any live worker sees and `up` when any
reaches the replica, which the rules' `max by (replica)` reads either way.
Kept apart from service/api/metrics.py, whose per-request path they do not touch.
"""

from __future__ import annotations

import math
from contextlib import AbstractAsyncContextManager

from prometheus_client import Gauge

from service.api.metrics import refreshing
from service.db.replicas import Replicas

REPLICA_LAG = Gauge(
    "db_replica_lag_seconds",
    "Seconds the read replica's replay is behind the primary (NaN while it is down).",
    ["replica"],
    multiprocess_mode="livemax",
)
REPLICA_UP = Gauge(
    "db_replica_up",
    "1 when the service reaches the read replica, 0 when it does not.",
    ["replica"],
    multiprocess_mode="livemax",
)


def refresh_replica_gauges(replicas: Replicas) -> None:
    for status in replicas.statuses():
        lag = status.lag_seconds
        REPLICA_LAG.labels(status.name).set(math.nan if lag is None else lag)
        REPLICA_UP.labels(status.name).set(0 if status.state == "down" else 1)


def replica_gauges(replicas: Replicas) -> AbstractAsyncContextManager[None]:
    """A lifespan: the replica gauges refreshed every second while the app runs."""
    return refreshing(lambda: refresh_replica_gauges(replicas))
