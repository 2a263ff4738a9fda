"""Serving with uvicorn, plus a drain on SIGTERM so restarts lose no request.

uvicorn alone closes idle keep-alive connections at once on SIGTERM; a
client that sent its next request at that moment gets a reset (seen in
bench/bench_resilience.py as read errors during a rolling SIGHUP restart).
Here the first SIGTERM stops accepting, answers every request for
SHUTDOWN_DRAIN_SECONDS with `Connection: close` so keep-alive clients move
on cleanly, then lets uvicorn finish requests in flight and close the pool.

Each worker settles its heap once the app is built (settle_heap): the garbage
collector no longer re-walks the ~85,000 objects of the imports and the app on
every full collection, and no longer collects the requests in flight every
700 allocations, only to find nothing to free.
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import multiprocess

from service import logs
from service.compat import DRAINING, DrainingServer, drain_uvicorn_workers
from service.settings import Settings


def drain_middleware(app: Any) -> Any:
    """ASGI middleware: while draining, every response closes its connection."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if not DRAINING.is_set() or scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_closing)

    return middleware


# The young generation's collection threshold in a serving worker (CPython's default: 700).
# A request's objects are freed by reference counting as it ends, but the ~2,000 of the
# requests in flight (32 connections) pass 700 within a request's life: with the default,
# a collection ran every 40-80 requests, found no garbage, and moved the survivors to
# older generations, whose passes then walked the whole heap (measured with gc.callbacks
# under wrk on GET /deals/{id}: 7-27 us of CPU per request, a full pass ~100 ms every
# ~5,000 requests). At 10,000, none ran in 8 s of wrk; a cycle is still collected,
# after at most 10,000 more allocations than frees.
GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Once the app is built: what exists now (modules, the app, its routes and schemas)
    lives as long as the process, so it leaves the collector's generations (gc.freeze),
    and the young generation is collected less often (GEN0_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _gen0, *older = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, *older)


def metrics_folder(workers: int) -> None:
    """With several workers, where they write their metrics (prometheus-client's multiprocess
    mode): PROMETHEUS_MULTIPROC_DIR when set, else a new temporary folder; emptied first, so
    one run's counts do not mix with another's. One worker keeps its figures in memory."""
    if workers <= 1:
        return
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    else:
        folder = tempfile.mkdtemp(prefix="deals-metrics-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # the spawned workers inherit it


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` writes the stack of every thread of that process to its stderr (the
    log) and lets it run on: what a server that hangs, or does not stop, is doing."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def run(settings: Settings, *, host: str, port: int, workers: int) -> None:
    dump_stacks_on_sigusr1()  # the supervisor, or the one process that serves
    metrics_folder(workers)
    config = uvicorn.Config(
        "service.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=logs.config(settings),
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_graceful_shutdown=20,
    )
    DrainingServer.drain_seconds = settings.shutdown_drain_seconds
    # uvicorn re-raises SIGTERM after a graceful stop; a graceful stop is a success.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    if workers > 1:
        sock = config.bind_socket()
        drain_uvicorn_workers()
        multiprocess.Multiprocess(config, sockets=[sock]).run()
    else:
        DrainingServer(config).run()
