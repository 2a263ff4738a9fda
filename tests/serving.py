"""`deals serve` as a separate process, for tests that need a real server and its signals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            with urllib.request.urlopen(f"{base}/health/live", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


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
    (a file, never an unread pipe that could fill and stall the server)."""
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url, "API_PORT": str(port), **env}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", port, process, log)
    try:
        wait_until_serving(server.base, process)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
