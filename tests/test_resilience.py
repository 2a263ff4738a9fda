"""The database goes away and comes back under a running service; SIGTERM drains requests."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest

from service import migrate
from service.embedded import EmbeddedPostgres
from service.settings import Settings
from tests.inloop import app_and_client
from tests.serving import serving


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so stopping it disturbs no other test."""
    server = EmbeddedPostgres(tmp_path / "pg")
    migrate.apply(server.start())
    try:
        yield server
    finally:
        server.stop()


async def get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    # A hang guard, not a speed assertion: a request must never block forever.
    return await asyncio.wait_for(client.get(path), timeout=15)


async def eventually_ok(client: httpx.AsyncClient, path: str) -> int:
    """Attempts until 200 (at most 40); returns how many it took."""
    for attempt in range(1, 41):
        if (await get(client, path)).status_code == 200:
            return attempt
        await asyncio.sleep(0.25)
    raise AssertionError(f"{path} did not recover")


def settings_for(server: EmbeddedPostgres) -> Settings:
    return Settings(database_url=server.url(), pool_min_size=2, pool_acquire_timeout=1.0)


async def test_database_restart_under_running_service(own_server: EmbeddedPostgres) -> None:
    async with app_and_client(settings_for(own_server)) as (_app, client):
        assert (await get(client, "/health")).status_code == 200

        own_server.stop()
        for path in ("/health", "/health/ready"):
            down = await get(client, path)
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
            assert down.headers["retry-after"] == "1"

        own_server.start()
        await eventually_ok(client, "/health")
        assert (await get(client, "/health/ready")).status_code == 200


async def test_service_starts_while_database_is_down(own_server: EmbeddedPostgres) -> None:
    own_server.stop()
    async with app_and_client(settings_for(own_server)) as (_app, client):
        assert (await get(client, "/health/live")).status_code == 200
        assert (await get(client, "/health")).status_code == 503
        assert (await get(client, "/health/ready")).status_code == 503
        own_server.start()
        await eventually_ok(client, "/health/ready")


def fetch_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        status: int = response.status
        return status


@pytest.mark.read_only
def test_sigterm_finishes_requests_in_flight_and_exits_0(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path / "server.log", LOG_LEVEL="info") as server:
        with psycopg.connect(database_url) as blocker, ThreadPoolExecutor(1) as pool:
            # Hold a lock so that a readiness request is in flight when SIGTERM arrives.
            blocker.execute("LOCK TABLE _yoyo_migration IN ACCESS EXCLUSIVE MODE")
            in_flight = pool.submit(fetch_status, f"{server.base}/health/ready")
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert server.process.poll() is None, "the server quit with a request in flight"
            blocker.commit()  # release the lock: the request completes
            assert in_flight.result(timeout=30) == 200
        assert server.process.wait(timeout=30) == 0
        assert "Application shutdown complete" in server.output()


@pytest.mark.read_only
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigusr1_writes_every_threads_stack_and_the_server_serves_on(
    database_url: str, tmp_path: Path, workers: str
) -> None:
    """What a server that hangs is doing: SIGUSR1 to the process that serves (the worker,
    with --workers 2 as without) writes its threads' stacks to the log."""
    with serving(database_url, tmp_path / "server.log", API_WORKERS=workers) as server:
        pid = server.process.pid
        serving_pids = [pid]
        if workers != "1":  # the supervisor's spawned workers serve
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            serving_pids = [
                int(child)
                for child in children
                if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text()
            ]
        assert len(serving_pids) == int(workers)
        for serving_pid in serving_pids:
            os.kill(serving_pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while server.output().count("Current thread") < len(serving_pids):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        output = server.output()
        assert 'File "' in output
        assert "uvicorn" in output  # the serving loop's frames
        assert fetch_status(f"{server.base}/health/live") == 200
        assert server.process.poll() is None


@pytest.mark.read_only
def test_sigterm_drains_keep_alive_connections_with_connection_close(
    database_url: str, tmp_path: Path
) -> None:
    with serving(database_url, tmp_path / "server.log", SHUTDOWN_DRAIN_SECONDS="3") as server:
        keep_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        keep_alive.request("GET", "/health/live")
        first = keep_alive.getresponse()
        first.read()
        assert first.status == 200
        assert first.getheader("connection") is None

        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # The open connection is still served, and told to close.
        keep_alive.request("GET", "/health/live")
        during = keep_alive.getresponse()
        during.read()
        assert during.status == 200
        assert during.getheader("connection") == "close"
        # New connections are no longer accepted.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2)
        assert server.process.wait(timeout=30) == 0


async def test_sigterm_before_the_sockets_are_bound_still_stops_the_server() -> None:
    # A SIGTERM during start-up (the lifespan still connecting) comes before uvicorn has
    # set `servers`; the drain must still schedule the stop instead of raising in a callback
    # and leaving the process running until a second signal.
    from uvicorn import Config

    from service.compat import DRAINING, DrainingServer

    server = DrainingServer(Config(app=lambda *_: None))
    server.drain_seconds = 0.05
    server._loop = asyncio.get_running_loop()
    assert not hasattr(server, "servers")
    try:
        server.handle_exit(signal.SIGTERM, None)
        for _ in range(100):  # bounded: at most 5 s
            if server.should_exit:
                break
            await asyncio.sleep(0.05)
        assert server.should_exit
    finally:
        DRAINING.clear()


async def test_a_connection_held_while_the_pool_closes_goes_back_to_its_pool(
    database_url: str,
) -> None:
    # A request still running when shutdown closes the pool releases its connection into
    # the pool it came from (not "the pool is not open"), and close() then completes.
    from service.db.pool import Database

    db = Database(Settings(database_url=database_url, pool_min_size=1, pool_max_size=2))
    await db.open()
    holding, finish = asyncio.Event(), asyncio.Event()

    async def request() -> int:
        async with db.primary() as conn:
            holding.set()
            await finish.wait()
            value: int = await conn.fetchval("SELECT 1")
            return value

    task = asyncio.create_task(request())
    await holding.wait()
    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # close() waits for the borrowed connection
    finish.set()
    assert await asyncio.wait_for(task, timeout=15) == 1
    await asyncio.wait_for(closing, timeout=15)  # a hang guard


async def test_a_connection_never_returned_does_not_hold_the_pools_close_forever(
    database_url: str,
) -> None:
    from service.db.pool import Database

    db = Database(Settings(database_url=database_url, pool_min_size=1, pool_max_size=2))
    await db.open()
    db.close_seconds = 0.2
    borrowed = db.primary()
    conn = await borrowed.__aenter__()  # never exited: a request cut off mid-way
    await asyncio.wait_for(db.close(), timeout=15)  # a hang guard, far above close_seconds
    with pytest.raises(asyncpg.InterfaceError):  # terminated once the deadline passed
        await conn.fetchval("SELECT 1")
