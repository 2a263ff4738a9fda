"""`deals serve` as a separate process, for tests that need a real server and its signals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str) -> bool:
    """Whether GET `url` answers 200 (False while nothing listens or it answers otherwise)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def started(
    args: list[str],
    *,
    what: str,
    ready: Callable[[], bool],
    timeout: float = 10,
    output: IO[bytes] | int = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    detail: Callable[[], str] = str,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (PostgreSQL's helpers, PgBouncer, Redis, `deals serve`) while the
    block runs: started with its output to `output`, waited for until `ready()` says it
    answers, then terminated (killed when it does not stop within 30 s). A process that
    exits or stays silent past `timeout` fails the test, with `detail()` (its log) said."""
    process = subprocess.Popen(
        args, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, f"{what} exited at start-up{detail()}"
            assert time.monotonic() < deadline, f"{what} did not answer{detail()}"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class Server:
    base: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(database_url: str, log: Path, **env: str) -> Iterator[Server]:
    """Serve on a free 127.0.0.1 port until the block ends; output goes to `log`
    (a file, never an unread pipe that could fill and stall the server). No drain on
    SIGTERM unless a test asks for one (SHUTDOWN_DRAIN_SECONDS): the default second of
    draining would only make each server take a second longer to stop."""
    port = free_port()
    environment = {
        **os.environ,
        "SHUTDOWN_DRAIN_SECONDS": "0",
        "DATABASE_URL": database_url,
        "API_PORT": str(port),
        **env,
    }
    base = f"http://127.0.0.1:{port}"
    with (
        log.open("wb") as out,
        started(
            [sys.executable, "-m", "service", "serve"],
            what="the server",
            ready=lambda: answers(f"{base}/health/live"),
            timeout=30,
            output=out,
            env=environment,
        ) as process,
    ):
        yield Server(base, port, process, log)


@contextmanager
def serving_clone(
    admin_url: str, template: str, log: Path, **env: str
) -> Iterator[tuple[Server, str]]:
    """`deals serve` on a clone of `template` of its own: (the server, the clone's URL)."""
    from tests import pg  # the server helpers need no database module otherwise

    name, database_url = pg.clone(admin_url, template)
    try:
        with serving(database_url, log, **env) as server:
            yield server, database_url
    finally:
        pg.drop(admin_url, name)
